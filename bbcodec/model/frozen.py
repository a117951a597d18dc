"""The frozen model: the integer networks and coding constants of one weights file.

model/layout.py reads and writes it; bbcodec.train.freeze builds one from a float
model. The coding loop (coding/loop.py) asks it, per wavefront of blocks, for the
entropy parameters, the latents and the reconstruction, always giving the blocks'
neighbours in one form (Neighbours); network family 3 adds grouped scales (groups.py)
and a post-loop filter (filter.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import quality as Q
from .arith import (
    ACT_MAX,
    EXACT_LIMIT,
    MAX_SYMBOL,
    PIXEL_EXP,
    kernel,
    mm,
    requantise_in_place,
    scale_indices,
)
from .blocks import BLOCK_CH, BlockContext
from .filter import PostFilter
from .groups import GroupedScales, Read
from .stack import Stack

Groups = list[np.ndarray | slice]  # the channels of each coding group, in bitstream order


@dataclass
class QualityParams:
    """Everything that depends on the (possibly fractional) quality, derived exactly.

    One quality for a batch of blocks (vectors), or one per block (FrozenModel.block_params:
    a row per block of every vector, which the networks' arithmetic broadcasts alike;
    quality_x256 then (B,), first_layers the base quality's and shift the rescaled
    difference of each block's first-layer biases from the base's, which
    Neighbours.first adds)."""

    quality_x256: int | np.ndarray
    gain: np.ndarray  # (M,) latent gain
    inv_gain: np.ndarray  # (M,) gain before synthesis
    log_gain: np.ndarray  # (M,) added to the predicted log-scale
    bias: dict[str, np.ndarray]  # first-layer bias of each stack, and of the post-loop filter ("pf"; not per block)
    first_layers: dict[str, np.ndarray]  # per stack, [W_nb, bias] rescaled (FirstLayerWeights)
    shift: dict[str, np.ndarray] | None = None  # per block: per stack, (B, C0)
    heads_bias: np.ndarray | None = None  # family 3: the group heads' biases, rescaled (GroupedScales.heads_bias)

    def rows(self, idx: np.ndarray) -> QualityParams:
        """The parameters of blocks idx (repeats allowed) of a per-block batch; itself
        for one quality."""
        if self.shift is None:
            return self
        return QualityParams(np.asarray(self.quality_x256)[idx], self.gain[idx], self.inv_gain[idx], self.log_gain[idx],
                             {k: b[idx] for k, b in self.bias.items()}, self.first_layers,
                             {k: v[idx] for k, v in self.shift.items()},
                             None if self.heads_bias is None else self.heads_bias[idx])


class FirstLayerWeights(dict):
    """A quality's first-layer weights of each stack, [W_nb, bias] rescaled as FastStack,
    as mm's kernel (769, C0): a product with neighbour pixels and a column of ones gives
    the neighbour term and the bias at once. Each made when first asked for (a decoder
    never needs the analysis network's)."""

    def __init__(self, stacks: dict[str, Stack], bias: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.stacks, self.bias = stacks, bias

    def __missing__(self, name: str) -> np.ndarray:
        fast = self.stacks[name].fast
        self[name] = kernel(np.concatenate([fast.Wnb, (self.bias[name] * fast.s0)[:, None]], axis=1))
        return self[name]


@dataclass
class Neighbours:
    """The neighbours of a batch of blocks, in the one form the networks take them: per
    stack, the first layer's neighbour term with its bias, rescaled (B, C0) -- computed
    from the neighbour pixels when first asked for (FrozenModel.neighbours), or given,
    computed elsewhere (by several processes at once, coding/lockstep.FirstLayers; for
    many candidate blocks at once, FrozenModel.from_products)."""

    pixels: np.ndarray | None  # (B, 769): [UL, U, UR, L] centred pixels and a column of ones
    weights: dict[str, np.ndarray]  # per stack, (769, C0): QualityParams.first_layers
    given: dict[str, np.ndarray] | None = None  # per stack, first()'s result
    shift: dict[str, np.ndarray] | None = None  # per stack, (B, C0): QualityParams.shift, added

    def first(self, name: str) -> np.ndarray:
        """The first layer's neighbour term and bias of one stack, rescaled (B, C0); a
        given one is used once (the entropy network overwrites it). With blocks of
        several qualities, each block's bias (an exact integer sum in any order)."""
        if self.given is not None:
            out = self.given[name]
        else:
            assert self.pixels is not None
            out = mm(self.pixels, self.weights[name])
        return out if self.shift is None else out + self.shift[name]

    def at(self, qp: QualityParams) -> Neighbours:
        """These neighbours for blocks at qp's qualities (the same object for one quality)."""
        if qp.shift is None:
            return self
        return Neighbours(self.pixels, self.weights, self.given, qp.shift)

    @property
    def plain(self) -> np.ndarray:
        """The (B, 768) neighbour pixels (computed ones only)."""
        assert self.pixels is not None
        return self.pixels[:, : 4 * BLOCK_CH]


@dataclass
class Scales:
    """What the entropy network says of a wavefront's scales: the log-scales, and its last
    hidden activation, from which (family 3) later groups' corrections come."""

    log_scale: np.ndarray  # (B, M)
    hidden: np.ndarray | None = None
    # The group heads' products of hidden (GroupedScales.products, side by side), when
    # computed ahead: once for many rows of the same blocks (rdoq.py).
    products: np.ndarray | None = None

    def rows(self, idx: np.ndarray) -> Scales:
        """The scales of rows idx (repeats allowed), products computed once and shared."""
        return Scales(self.log_scale[idx], None if self.hidden is None else self.hidden[idx],
                      None if self.products is None else self.products[idx])


def scale_groups(groups: GroupedScales | None, bounds: np.ndarray, scales: Scales, sym: np.ndarray,
                 heads_bias: np.ndarray | None) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]:
    """(channels, scale-table indices) of each coding group of a wavefront, in bitstream
    order: all channels at once without groups (families 1 and 2); else group by group,
    each later group's log-scales corrected from the symbols of the earlier ones, which
    the caller has put into sym (decoded, or the encoder's) before asking."""
    if groups is None:
        yield slice(None), scale_indices(bounds, scales.log_scale)
        return
    if scales.products is not None:
        hw = groups.split_products(scales.products)
    else:
        assert scales.hidden is not None
        hw = groups.hidden_products(scales.hidden)
    for g, cols in enumerate(groups.columns()):
        log_scale = scales.log_scale[:, cols]
        if g:
            assert heads_bias is not None
            log_scale = log_scale + groups.correction(g, hw, sym, heads_bias)
        yield cols, scale_indices(bounds, log_scale)


def decode_symbols(groups: GroupedScales | None, bounds: np.ndarray, scales: Scales,
                   heads_bias: np.ndarray | None, read: Read) -> np.ndarray:
    """The decoder's symbols of a wavefront (B, M), group by group in bitstream order:
    read(idx, out) decodes a group's symbols (B, n) from their scale indices into out, a
    zeroed view, before the next group's indices are computed from them. The indices
    are scale_groups' (the encoder's); the groups are kept here in coding order, so that
    each is a slice, not a gather (GroupedScales.decode)."""
    if groups is None:
        sym = np.zeros(scales.log_scale.shape)
        read(scale_indices(bounds, scales.log_scale), sym)
        return sym
    assert scales.hidden is not None
    assert heads_bias is not None
    return groups.decode(scales.log_scale, scales.hidden, bounds, heads_bias, read)


@dataclass
class FrozenModel:
    """The integer networks and coding constants of one weights file (layout.py reads and
    writes the file; freeze builds one from a float model)."""

    name: str
    family: int  # network family id, written into .bbc headers (layout.FAMILIES)
    ga: Stack
    gs: Stack
    he: Stack
    gain: np.ndarray  # (8, M)
    inv_gain: np.ndarray  # (8, M)
    log_gain: np.ndarray  # (8, M)
    scale_table: np.ndarray  # (S,) Gaussian scales the coder may use
    scale_bounds: np.ndarray  # (S-1,) log-scale thresholds between table entries
    f_latent: int  # exponent of the synthesis input integers
    config: dict = field(default_factory=dict)  # N, M, kernels, skip of the float model
    info: dict = field(default_factory=dict)  # provenance (train_steps, ...), not used to code
    groups: GroupedScales | None = None  # family 3: latents coded in groups (groups.py)
    postfilter: PostFilter | None = None  # family 3, optional: the post-loop filter (filter.py)

    @property
    def M(self) -> int:
        return int(self.gain.shape[1])

    @property
    def max_symbol(self) -> int:
        return MAX_SYMBOL

    @cached_property
    def _params(self) -> dict[int, QualityParams]:
        return {}

    def params_at(self, quality_x256: int) -> QualityParams:
        """Parameters at quality q = quality_x256 / 256 (kept for the last few qualities
        asked for: their first-layer weights are megabytes; not to be changed)."""
        qp = self._params.get(quality_x256)
        if qp is None:
            if len(self._params) >= 16:
                self._params.clear()
            qp = self._params[quality_x256] = self._derive(quality_x256)
        return qp

    def _derive(self, quality_x256: int) -> QualityParams:
        """Parameters at quality q, linear between integer qualities. Only dyadic
        products and sums: identical on every IEEE machine."""
        k, t = Q.interpolation(quality_x256)

        def lerp(table: np.ndarray) -> np.ndarray:
            return table[k] * (1.0 - t) + table[k + 1] * t

        bias = {name: np.rint(lerp(s.qbias)) for name, s in self.stacks().items()}
        heads_bias = None
        if self.groups is not None:
            heads_bias = self.groups.heads_bias([np.rint(lerp(h.qbias)) for h in self.groups.heads])
        if self.postfilter is not None:
            bias["pf"] = np.rint(lerp(self.postfilter.qbias))
        return QualityParams(quality_x256, lerp(self.gain), lerp(self.inv_gain), lerp(self.log_gain), bias,
                             FirstLayerWeights(self.stacks(), bias), heads_bias=heads_bias)

    def block_params(self, base: QualityParams, quality_x256: np.ndarray) -> QualityParams:
        """The parameters of a batch of blocks at qualities quality_x256 (B,) (format
        version 6's quality offsets), one row each: every block's the same integers as
        params_at its quality gives; the first layers' bias differences from base's as
        shift (Neighbours.at)."""
        qs, inverse = np.unique(quality_x256, return_inverse=True)
        return self._quality_rows(base, tuple(int(q) for q in qs)).rows(inverse)

    @cached_property
    def _tables(self) -> dict[tuple[int, tuple[int, ...]], QualityParams]:
        return {}

    def _quality_rows(self, base: QualityParams, qs: tuple[int, ...]) -> QualityParams:
        """block_params' table: one row per quality of qs (a wavefront's few distinct ones),
        kept for the image, since the same few sets recur on every wavefront."""
        key = (int(np.asarray(base.quality_x256)), qs)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= 64:
                self._tables.clear()
            ps = [self.params_at(q) for q in qs]

            def stacked(get) -> np.ndarray:
                return np.stack([get(p) for p in ps])

            # the stacks' biases (the heads' come rescaled in heads_bias; the filter's is the image's)
            bias = {k: stacked(lambda p, k=k: p.bias[k]) for k in self.stacks()}
            shift = {k: (bias[k] - base.bias[k]) * st.fast.s0 for k, st in self.stacks().items()}
            heads = None if self.groups is None else stacked(lambda p: p.heads_bias)
            table = self._tables[key] = QualityParams(np.asarray(qs), stacked(lambda p: p.gain), stacked(lambda p: p.inv_gain),
                                                      stacked(lambda p: p.log_gain), bias, base.first_layers, shift, heads)
        return table

    def stacks(self) -> dict[str, Stack]:
        return {"ga": self.ga, "gs": self.gs, "he": self.he}

    def neighbours(self, pixels: np.ndarray, qp: QualityParams) -> Neighbours:
        """Neighbours from (B, 768) neighbour pixels, or (B, 769) with a last column of
        ones (blocks.Canvas.neighbours(ones=True)), which carries the first layers' biases."""
        if pixels.shape[1] == 4 * BLOCK_CH:
            pixels = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1)
        return Neighbours(pixels, qp.first_layers)

    def from_products(self, products: dict[str, np.ndarray], qp: QualityParams) -> Neighbours:
        """Neighbours from each stack's unscaled neighbour product nb @ W_nb.T, computed by
        the caller (in parts, for many candidates: integer sums are exact in any order)."""
        given = {k: (p + qp.bias[k]) * self.stacks()[k].fast.s0 for k, p in products.items()}
        return Neighbours(None, qp.first_layers, given)

    def entropy_params(self, nb: Neighbours, qp: QualityParams, ctx: BlockContext | None = None
                       ) -> tuple[np.ndarray, Scales]:
        """Neighbours -> (means in the gained latent domain, what scale_groups needs)."""
        out, hidden = self.he.fast.run_with_hidden(None, nb.first("he"), ctx)
        mean = out[:, : self.M] * qp.gain
        log_scale = out[:, self.M :] + qp.log_gain
        return mean, Scales(log_scale, hidden)

    def scale_groups(self, scales: Scales, sym: np.ndarray, qp: QualityParams) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]:
        """The channels of each coding group and their scale-table indices, in bitstream
        order; a group's indices may depend on sym's earlier groups (filled in by then)."""
        return scale_groups(self.groups, self.scale_bounds, scales, sym, qp.heads_bias)

    def decode_symbols(self, scales: Scales, qp: QualityParams, read: Read) -> np.ndarray:
        """A wavefront's symbols as the decoder reads them (decode_symbols)."""
        return decode_symbols(self.groups, self.scale_bounds, scales, qp.heads_bias, read)

    def group_columns(self) -> Groups:
        """The channels of each coding group, in bitstream order."""
        return [slice(None)] if self.groups is None else list(self.groups.columns())

    def finish(self, img: np.ndarray, qp: QualityParams, out: np.ndarray | None = None,
               band: tuple[int, int] = (0, 1)) -> np.ndarray:
        """The decoded image after the coding loop: post-filtered when the model has a filter.
        With out and band (i, k): only the i-th of k bands of the filter's rows, into out
        (k processes, each its band, make the whole image; see PostFilter.apply)."""
        if self.postfilter is None:
            return img
        return self.postfilter.apply(img, qp.bias["pf"], out=out, band=band)

    def analyse(self, block: np.ndarray, nb: Neighbours, qp: QualityParams,
                ctx: BlockContext | None = None) -> np.ndarray:
        """Centred block pixels (B, 192) + neighbours -> gained latents (B, M)."""
        return self.ga.fast.run_with_hidden(block, nb.first("ga"), ctx)[0] * qp.gain

    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: Neighbours, qp: QualityParams,
                   ctx: BlockContext | None = None) -> np.ndarray:
        """Symbols around the mean -> centred reconstructed block pixels (B, 192) int16."""
        cur = symbols + mean
        cur *= qp.inv_gain
        cur *= 2.0**self.f_latent  # = ldexp (a power of two), and faster
        requantise_in_place(cur)
        out = self.gs.fast.run_with_hidden(cur, nb.first("gs"), ctx)[0]
        out *= 2.0**PIXEL_EXP
        np.rint(out, out=out)
        return np.clip(out, -128, 127, out=out).astype(np.int16)


def check_exact(model: FrozenModel) -> None:
    """Refuse weights whose worst-case partial sums could leave the exact integer range.

    With |inputs| bounded (pixels by 128, activations by ACT_MAX), a dot product's partial
    sums are bounded by sum |w| * bound + |bias|; every one must stay below 2^53 for the
    result to be the same in any summation order.
    """
    for name, st in model.stacks().items():
        worst = 128 * np.abs(st.W_nb).sum(1) + np.abs(st.qbias).max(0)
        if st.W_cur is not None:
            cur_max = 128 if name == "ga" else ACT_MAX
            worst = worst + cur_max * np.abs(st.W_cur).sum(1)
        bounds = [worst.max()]
        for i, (act, layer) in enumerate(zip(st.acts, st.layers, strict=True)):
            worst = ACT_MAX * np.abs(layer.W).sum(1) + np.abs(layer.b)
            if i == len(st.layers) - 1 and st.W_skip is not None:
                worst = worst + (128 if name == "ga" else ACT_MAX) * np.abs(st.W_skip).sum(1)
            bounds.append(worst.max())
            if act.G is not None and act.B is not None:
                bounds.append((ACT_MAX**2 * act.G.sum(1) + act.B).max())
        if max(bounds) >= EXACT_LIMIT:
            raise ValueError(f"weights of {name} could exceed exact float64 integers")
    if model.groups is not None:
        model.groups.check(model.M, model.he.layers[-1].W.shape[1])
    if model.postfilter is not None:
        model.postfilter.check()
