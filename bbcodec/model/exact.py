"""Integer inference of the frozen networks: the same bits on every machine.

Every network in the coding loop runs on integers carried in float64:

* weights are integers |w| < 2^15 with a power-of-two scale per output channel;
* activations are integers |a| <= 2^15 - 1 with a power-of-two scale per layer;
* a matrix product of such integers over <= 2048 inputs stays below 2^53, so it is
  exact in float64 whatever the summation order, thread count, BLAS or CPU;
* rescaling is ldexp (exact) then round-half-even; nonlinearities use only IEEE
  operations that are correctly rounded everywhere (sqrt, division, multiplication).

So encoder and decoder agree to the bit on any machine, and numpy is enough: no torch
on the coding path. The loop runs a derived form of each stack (Stack.plan, FastStack):
the same integers with every power-of-two rescaling folded into the weights, so that a
requantisation is rint and clip only; it gives the same bits (see FastStack).
bbcodec.train.freeze builds a FrozenModel from a float model and model_io maps it to
the arrays of a weights file and back; docs/format.md describes this arithmetic, since
the bitstream depends on it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, overload

import numpy as np

from . import quality as Q
from .blocks import BLOCK_CH, BlockContext

if TYPE_CHECKING:
    from .filter import PostFilter
    from .groups import GroupedScales

# Numbers the bitstream fixes (docs/format.md 4 and 5); the freezer and the float
# reference model read them from here.
ACT_MAX = 2**15 - 1  # activations are clipped to +-ACT_MAX after every requantisation
W_MAX = 2**15 - 1  # integer weights are within +-W_MAX
PIXEL_EXP = 7  # network input (pixel - 128) / 128 = integer (pixel - 128) at scale 2^-7
LEAKY_SHIFT = 7  # leaky ReLU slope 2^-7: a power of two, exact before rounding
MAX_SYMBOL = 2047  # symbols are clipped to [-MAX_SYMBOL, MAX_SYMBOL]
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64  # CompressAI's scale table
EXACT_LIMIT = 2.0**53  # integers up to here are exact in float64
ACTIVATIONS = {"ga": "gdn", "gs": "igdn", "he": "leaky"}  # the nonlinearity of each network


def scale_table() -> np.ndarray:
    """The Gaussian scales a freezer writes into a weights file (64, log-spaced)."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def scale_bounds(table: np.ndarray) -> np.ndarray:
    """Log-scale thresholds between table entries: an index is found by comparisons only."""
    return 0.5 * (np.log(table[:-1]) + np.log(table[1:]))


def requantise(acc: np.ndarray, exp_from: np.ndarray | int, exp_to: int) -> np.ndarray:
    """Integers at scale 2^-exp_from -> nearest integers at scale 2^-exp_to, clipped."""
    shift = np.asarray(exp_to - np.asarray(exp_from), dtype=np.int64)
    # acc * 2^shift is ldexp(acc, shift), exactly (a power of two, integers far from
    # overflow), and faster than ldexp per element; so are maximum/minimum than clip.
    x = np.rint(acc * np.ldexp(1.0, shift))
    np.maximum(x, -ACT_MAX, out=x)
    return np.minimum(x, ACT_MAX, out=x)


@dataclass
class Layer:
    """One layer: integer weights W (out, in) -- for kernel 3, (out, 5 in) on the
    [UL, U, UR, L, centre] hidden features --, bias in accumulator units, and the
    accumulator's per-channel exponent."""

    W: np.ndarray
    b: np.ndarray
    e: np.ndarray
    k: int = 1


@dataclass
class Activation:
    """Requantise the accumulator to exponent fa, apply the nonlinearity, output at fh."""

    kind: str  # "gdn", "igdn" or "leaky"
    fa: int
    fh: int
    G: np.ndarray | None = None  # GDN gamma as integers at scale 2^-fg
    B: np.ndarray | None = None  # GDN beta as integers at scale 2^-(fg + 2 fa)
    fg: int = 0

    def __call__(self, acc: np.ndarray, e: np.ndarray) -> np.ndarray:
        a = requantise(acc, e, self.fa)
        if self.kind == "leaky":
            # = where(a >= 0, a, rint(a 2^-7)) for integers a: rint(a 2^-7) <= a when a >= 0
            # and >= a when a < 0
            return np.maximum(a, np.rint(a * 2.0**-LEAKY_SHIFT))
        assert self.G is not None and self.B is not None
        s = self.B + (a * a) @ self.G.T  # exact: every term and partial sum < 2^53
        if self.kind == "gdn":  # x / sqrt(beta + gamma x^2)
            h = np.ldexp(a / np.sqrt(s), self.fg // 2 + self.fh)
        else:  # inverse GDN: x * sqrt(beta + gamma x^2)
            h = np.ldexp(a * np.sqrt(s), self.fh - 2 * self.fa - self.fg // 2)
        return np.clip(np.rint(h), -ACT_MAX, ACT_MAX)


@dataclass
class Stack:
    """First layer on (own input, neighbours) + per-quality bias, then act/layer pairs.

    An integer stack mirrors networks.MaskedStack layer for layer (freeze builds it).
    """

    W_nb: np.ndarray  # (C0, 768) on the gathered [UL, U, UR, L] neighbour pixels
    W_cur: np.ndarray | None  # (C0, cin) on the block's own input, or None (entropy net)
    qbias: np.ndarray  # (8, C0) first-layer bias per quality, accumulator units
    e0: np.ndarray  # (C0,) first accumulator exponent
    f_cur: int  # exponent of the own-input integers
    acts: list[Activation]
    layers: list[Layer]
    W_skip: np.ndarray | None = None  # (out, cin) shortcut on the own input, at the last exponent

    def run(self, cur: np.ndarray | None, nb: np.ndarray | None, bias: np.ndarray | None,
            ctx: BlockContext | None = None, first: np.ndarray | None = None,
            nb_product: np.ndarray | None = None) -> np.ndarray:
        """Integer inputs -> output accumulator as exact real values (B, out).

        ctx (where blocks are, and the feature canvases) is needed only by kernel-3
        layers, which read the hidden features of the causal neighbours. first, if
        given, is the neighbour part of the first layer with its bias, as
        FrozenModel.prepare computes it (then nb and bias are not used).
        """
        return self.plan().run(cur, nb, bias, ctx, first, nb_product)

    def run_with_hidden(self, cur: np.ndarray | None, nb: np.ndarray | None, bias: np.ndarray | None,
                        ctx: BlockContext | None = None, first: np.ndarray | None = None,
                        nb_product: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """run, and the last hidden activation (the input of the last layer, integers;
        for a kernel-3 last layer, with its neighbours' features, as the layer reads it).
        nb_product, if given (and first not), is nb @ W_nb.T computed by the caller (in
        parts: integer sums are exact in any order), and nb is not read."""
        return self.plan().run_with_hidden(cur, nb, bias, ctx, first, nb_product)

    def run_reference_with_hidden(self, cur: np.ndarray | None, nb: np.ndarray, bias: np.ndarray,
                                  ctx: BlockContext | None = None) -> tuple[np.ndarray, np.ndarray]:
        """run_with_hidden as docs/format.md (5.1) writes it, step by step: what the fast
        form must equal."""
        acc = nb @ self.W_nb.T + bias
        if self.W_cur is not None:
            acc += cur @ self.W_cur.T
        e = self.e0
        for i, (act, layer) in enumerate(zip(self.acts, self.layers, strict=True)):
            h = act(acc, e)
            if layer.k == 3:
                assert ctx is not None, "a kernel-3 layer needs the block context"
                h = ctx.with_neighbours((id(self), i), h, np.int16)
            acc = h @ layer.W.T + layer.b
            e = layer.e
        if self.W_skip is not None:
            acc += cur @ self.W_skip.T
        return np.ldexp(acc, -e.astype(np.int64)), h

    def plan(self) -> FastStack:
        """The fast form of this stack, built on first use (the arrays must not change after)."""
        fast = self.__dict__.get("_fast")
        if fast is None:
            with _PLAN_LOCK:
                fast = self.__dict__.get("_fast")
                if fast is None:
                    fast = self.__dict__["_fast"] = FastStack.of(self)
        return fast


_PLAN_LOCK = threading.Lock()


def scale_indices(bounds: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """Scale-table index of each log-scale: comparisons with the table's bounds only."""
    return bounds.searchsorted(log_scale, side="right")


def scale_groups(context: GroupedScales | None, bounds: np.ndarray, scales: Scales, sym: np.ndarray,
                 biases: dict[str, np.ndarray]) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]:
    """(channels, scale-table indices) of each coding group of a wavefront, in bitstream
    order: all channels at once without a context (families 1 and 2); else group by
    group, each later group's log-scales corrected from the symbols of the earlier ones,
    which the caller has put into sym (decoded, or the encoder's) before asking."""
    if context is None:
        yield slice(None), scale_indices(bounds, scales.log_scale)
        return
    if scales.products is not None:
        hw = context.split_products(scales.products)
    else:
        assert scales.hidden is not None
        hw = context.hidden_products(scales.hidden)
    for g, cols in enumerate(context.columns()):
        log_scale = scales.log_scale[:, cols]
        if g:
            log_scale = log_scale + context.correction(g, hw, sym, biases[f"ctx{g}"])
        yield cols, scale_indices(bounds, log_scale)


Read = Callable[[np.ndarray, np.ndarray], None]


def decode_symbols(context: GroupedScales | None, bounds: np.ndarray, scales: Scales,
                   biases: dict[str, np.ndarray], read: Read) -> np.ndarray:
    """The decoder's symbols of a wavefront (B, M), group by group in bitstream order:
    read(idx, out) decodes a group's symbols (B, n) from their scale indices into out, a
    zeroed view, before the next group's indices are computed from them. The indices
    are scale_groups' (the encoder's); the groups are kept here in coding order, so that
    each is a slice, not a gather (GroupedScales.decode)."""
    if context is None:
        sym = np.zeros(scales.log_scale.shape)
        read(scale_indices(bounds, scales.log_scale), sym)
        return sym
    assert scales.hidden is not None
    return context.decode(scales.log_scale, scales.hidden, bounds, biases, read)


@dataclass
class Scales:
    """What the entropy network says of a wavefront's scales: the log-scales, and (network
    family 3) its last hidden activation, from which later groups' corrections come."""

    log_scale: np.ndarray  # (B, M)
    hidden: np.ndarray | None = None
    # The group heads' products of hidden (GroupedScales.products, side by side), when
    # computed ahead: once for many rows of the same blocks (rdoq.py).
    products: np.ndarray | None = None

    def rows(self, idx: np.ndarray) -> Scales:
        """The scales of rows idx (repeats allowed), products computed once and shared."""
        return Scales(self.log_scale[idx], None if self.hidden is None else self.hidden[idx],
                      None if self.products is None else self.products[idx])


def rescaled(a: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """a * 2^shift, checked exact (no overflow, no subnormal): a power-of-two rescaling;
    an array of shifts applies per output channel (a's leading axis)."""
    shift = np.asarray(shift, dtype=np.int64)
    shift = shift.reshape(shift.shape + (1,) * (a.ndim - shift.ndim))
    factor, inverse = np.ldexp(1.0, shift), np.ldexp(1.0, -shift)  # per channel: a product is faster than ldexp
    if not (np.isfinite(factor) & np.isfinite(inverse) & (factor > 0) & (inverse > 0)).all():
        raise ValueError("a rescaled weight is not exact in float64")
    out = a * factor  # exact, as ldexp, wherever the check below holds
    if not np.array_equal(out * inverse, a) or not np.isfinite(out).all():
        raise ValueError("a rescaled weight is not exact in float64")
    return out


@dataclass
class _Step:
    """One (activation, layer) pair of a FastStack."""

    kind: str  # "gdn", "igdn" or "leaky"
    G: np.ndarray | None  # (C, C): G rescaled so that the GDN needs no ldexp
    B: np.ndarray | None  # (C,): B likewise
    W: np.ndarray  # (out, C), or (out, 5 C) for kernel 3: W rescaled
    b: np.ndarray  # (out,): the bias, rescaled
    k: int


@dataclass
class FastStack:
    """A Stack with every power-of-two rescaling folded into its integers: same bits, fewer passes.

    Stack.run requantises an accumulator acc at exponent e as rint(ldexp(acc, fa - e)).
    Here each layer's weights and bias are multiplied by 2^(fa - e) per output channel
    (2^-e for the last layer), so the product gives ldexp(acc, fa - e) directly: a
    product of integers by a power of two is exact, and every partial sum is one of
    check_exact's integers times that power of two, so exact as well, in any order.
    The GDN's gamma and beta are multiplied by 2^(-2k) (k the ldexp after the division,
    2^(2k) for the inverse GDN), so that sqrt(s) carries the factor 2^(-k) exactly
    (sqrt, division and multiplication are correctly rounded, and rounding commutes
    with a power of two away from overflow and subnormals, which rescaled checks). The
    leaky ReLU max(a, rint(a/128)) equals where(a >= 0, a, rint(a/128)).
    """

    s0: np.ndarray  # (C0,) 2^(fa_1 - e0): the first accumulator's rescaling
    Wnb: np.ndarray  # (C0, 768) W_nb rescaled
    Wcur: np.ndarray | None  # (C0, cin) W_cur rescaled
    steps: list[_Step]
    Wskip: np.ndarray | None  # (out, cin) W_skip rescaled to the output
    stack: Stack
    Wboth: np.ndarray | None = None  # [Wcur; Wskip] (C0 + out, cin): both products of cur in one

    def __post_init__(self) -> None:
        if self.Wskip is not None:  # a shortcut on the own input: only beside W_cur
            assert self.Wcur is not None
            self.Wboth = np.ascontiguousarray(np.concatenate([self.Wcur, self.Wskip]))

    @classmethod
    def of(cls, st: Stack) -> FastStack:
        n = len(st.layers)
        # shift[i]: from layer i's accumulator exponent to what consumes it next
        shift = [np.asarray(st.acts[i + 1].fa - st.layers[i].e if i + 1 < n else -st.layers[i].e, dtype=np.int64)
                 for i in range(n)]
        s0 = np.asarray(st.acts[0].fa - st.e0, dtype=np.int64)
        steps = []
        for i, (act, layer) in enumerate(zip(st.acts, st.layers, strict=True)):
            G = B = None
            if act.kind != "leaky":
                assert act.G is not None and act.B is not None
                k = act.fg // 2 + act.fh if act.kind == "gdn" else -(act.fh - 2 * act.fa - act.fg // 2)
                G, B = np.ascontiguousarray(rescaled(act.G, -2 * k)), rescaled(act.B, -2 * k)
            steps.append(_Step(act.kind, G, B, np.ascontiguousarray(rescaled(layer.W, shift[i])),
                               rescaled(layer.b, shift[i]), layer.k))
        return cls(
            s0=np.ldexp(1.0, s0),
            Wnb=np.ascontiguousarray(rescaled(st.W_nb, s0)),
            Wcur=None if st.W_cur is None else np.ascontiguousarray(rescaled(st.W_cur, s0)),
            steps=steps,
            Wskip=None if st.W_skip is None else np.ascontiguousarray(rescaled(st.W_skip, shift[-1])),
            stack=st,
        )

    def first(self, nb: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """The neighbour part of the first layer with its bias, rescaled (B, C0)."""
        x = mm(nb, self.Wnb)
        x += bias * self.s0
        return x

    def run(self, cur: np.ndarray | None, nb: np.ndarray | None, bias: np.ndarray | None,
            ctx: BlockContext | None = None, first: np.ndarray | None = None,
            nb_product: np.ndarray | None = None) -> np.ndarray:
        """Stack.run: first (from prepare, or computed here from nb and bias) -> outputs."""
        return self.run_with_hidden(cur, nb, bias, ctx, first, nb_product)[0]

    def run_with_hidden(self, cur: np.ndarray | None, nb: np.ndarray | None, bias: np.ndarray | None,
                        ctx: BlockContext | None = None, first: np.ndarray | None = None,
                        nb_product: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stack.run_with_hidden: the outputs, and the last layer's input without the
        ones column: the integers of the last activation, the same as the reference's
        (the rescalings are folded into the weights after it, never into it). nb_product
        (Stack.run_with_hidden's: nb @ W_nb.T, unscaled) stands for nb: (nb_product +
        bias) x 2^s0 is first exactly (integers times a power of two)."""
        if first is None:
            assert bias is not None
            if nb_product is not None:
                first = (nb_product + bias) * self.s0  # a new array: the caller's is reused
            else:
                assert nb is not None
                first = self.first(nb, bias)
        skip = None
        if self.Wboth is not None:  # cur's first-layer and shortcut products at once (columns of one F-ordered array)
            assert cur is not None
            both = mm(cur, self.Wboth)
            C0 = len(self.s0)
            x, skip = both[:, :C0], both[:, C0:]
            x += first
        elif self.Wcur is not None:
            assert cur is not None
            x = mm(cur, self.Wcur)
            x += first
        else:
            x = first  # overwritten: each prepared first layer is used once
        hidden = x
        for i, step in enumerate(self.steps):
            hidden = _activate(step, x)
            if step.k != 1:
                assert ctx is not None, "a kernel-3 layer needs the block context"
                hidden = ctx.with_neighbours((id(self.stack), i), hidden, np.int16)
            x = mm(hidden, step.W)
            x += step.b
        if skip is not None:
            x += skip
        return x, hidden


_LEAKY = 2.0**-LEAKY_SHIFT


def mm(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x @ W.T (B, out), computed as (W @ x.T).T: OpenBLAS is up to a third faster with the
    many output channels as the product's rows than with the few blocks of a wavefront
    (benchmarks/speed.py, part 4); exact integers either way. An F-ordered result."""
    return (W @ x.T).T


_MAX, _MIN = np.maximum.reduce, np.minimum.reduce  # x.max() and x.min() without their Python wrappers


def saturate(x: np.ndarray) -> None:
    """Clip to +-ACT_MAX in place (a min and max first: rarely needed, and a clip is slower)."""
    if x.size and (_MAX(x, axis=None) > ACT_MAX or _MIN(x, axis=None) < -ACT_MAX):
        np.clip(x, -ACT_MAX, ACT_MAX, out=x)


LeakyLayers = list[tuple[np.ndarray, np.ndarray]]


def fold_leaky(acts: list[Activation], e0: np.ndarray, layers: list[Layer], out_exp: int
               ) -> tuple[np.ndarray, LeakyLayers]:
    """A chain of (leaky activation, layer) pairs in the fast form of FastStack: (the
    exponent shift of the first accumulator, 2^(fa_1 - e0) per channel, to fold into the
    first layer; each layer's (W, b) rescaled by 2^(fa_next - e), the last by
    2^(out_exp - e), so that leaky_chain gives the output at exponent out_exp)."""
    assert all(a.kind == "leaky" for a in acts)
    n = len(layers)
    folded = []
    for i, layer in enumerate(layers):
        shift = np.asarray(acts[i + 1].fa - layer.e if i + 1 < n else out_exp - layer.e, dtype=np.int64)
        folded.append((np.ascontiguousarray(rescaled(layer.W, shift)), rescaled(layer.b, shift)))
    return np.asarray(acts[0].fa - e0, dtype=np.int64), folded


def leaky_chain(x: np.ndarray, layers: LeakyLayers) -> np.ndarray:
    """The layers of fold_leaky on a rescaled first accumulator x (overwritten): per
    layer, requantise (rint, clip), leaky ReLU, product and bias."""
    for W, b in layers:
        x = mm(_leaky(x), W)
        x += b
    return x


def _requantise_in_place(x: np.ndarray) -> np.ndarray:
    """A rescaled accumulator (or latent) x as activation integers, in place: rint, then
    clipped to +-ACT_MAX (requantise's work once the rescaling is folded in)."""
    np.rint(x, out=x)
    saturate(x)
    return x


def _leaky(x: np.ndarray) -> np.ndarray:
    """The leaky ReLU's integers of a rescaled accumulator x, in place: requantise (rint,
    clip), then max(a, rint(a / 128))."""
    _requantise_in_place(x)
    t = np.multiply(x, _LEAKY)
    np.rint(t, out=t)
    return np.maximum(x, t, out=x)


def _activate(step: _Step, x: np.ndarray) -> np.ndarray:
    """Activation (B, C) integers of a rescaled accumulator x (overwritten)."""
    if step.G is None:
        return _leaky(x)
    _requantise_in_place(x)
    s = mm(x * x, step.G)  # beta + gamma x^2, times 2^(-2k)
    s += step.B
    np.sqrt(s, out=s)
    if step.kind == "gdn":
        np.divide(x, s, out=s)
    else:
        np.multiply(x, s, out=s)
    return _requantise_in_place(s)


@dataclass
class QualityParams:
    """Everything that depends on the (possibly fractional) quality, derived exactly."""

    quality_x256: int
    gain: np.ndarray  # (M,) latent gain
    inv_gain: np.ndarray  # (M,) gain before synthesis
    log_gain: np.ndarray  # (M,) added to the predicted log-scale
    bias: dict[str, np.ndarray]  # first-layer bias of each stack (and of each group head, filter)


@dataclass
class FrozenModel:
    """The integer networks and coding constants of one weights file (model_io reads and
    writes the file; freeze builds one from a float model)."""

    name: str
    family: int  # network family id, written into .bbc headers (model_io.FAMILIES)
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
    context: GroupedScales | None = None  # family 3: latents coded in groups (groups.py)
    postfilter: PostFilter | None = None  # family 3, optional: the post-loop filter (postfilter.py)

    @property
    def M(self) -> int:
        return int(self.gain.shape[1])

    @property
    def max_symbol(self) -> int:
        return MAX_SYMBOL

    def params_at(self, quality_x256: int) -> QualityParams:
        """Parameters at quality q = quality_x256 / 256, linear between integer qualities.

        Only dyadic products and sums: identical on every IEEE machine.
        """
        k, t = Q.interpolation(quality_x256)

        def lerp(table: np.ndarray) -> np.ndarray:
            return table[k] * (1.0 - t) + table[k + 1] * t

        bias = {name: np.rint(lerp(s.qbias)) for name, s in self.stacks().items()}
        if self.context is not None:
            bias.update({f"ctx{g}": np.rint(lerp(h.qbias)) for g, h in enumerate(self.context.heads, start=1)})
        if self.postfilter is not None:
            bias["pf"] = np.rint(lerp(self.postfilter.qbias))
        return QualityParams(quality_x256, lerp(self.gain), lerp(self.inv_gain), lerp(self.log_gain), bias)

    def stacks(self) -> dict[str, Stack]:
        return {"ga": self.ga, "gs": self.gs, "he": self.he}

    def prepare(self, nb: np.ndarray, qp: QualityParams) -> Prepared:
        """Neighbours in the form the fast networks take them (what entropy_params,
        analyse and synthesise take in place of nb): (B, 768) neighbour pixels, or
        (B, 769) with a last column of ones, which carries the first layers' biases."""
        if nb.shape[1] == 4 * BLOCK_CH:
            nb = np.concatenate([nb, np.ones((len(nb), 1))], axis=1)
        return Prepared(nb, self.first_layers(qp))

    def first_layers(self, qp: QualityParams) -> dict[str, np.ndarray]:
        """[W_nb, bias] of each stack, rescaled (FastStack), (C0, 769); cached per quality,
        each made on first use (a decoder never needs the analysis network's)."""
        cache = self.__dict__.setdefault("_first_cache", {})
        if qp.quality_x256 not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[qp.quality_x256] = _FirstLayerWeights(self.stacks(), qp.bias)
        return cache[qp.quality_x256]

    def entropy_params(self, nb: np.ndarray | Prepared | None, qp: QualityParams,
                       ctx: BlockContext | None = None, nb_product: np.ndarray | None = None
                       ) -> tuple[np.ndarray, Scales]:
        """Neighbours -> (means in the gained latent domain, what scale_groups needs);
        nb_product (nb None) as for Stack.run_with_hidden (here and in analyse, synthesise)."""
        if self.context is None:
            out, hidden = self._run("he", None, nb, qp, ctx, nb_product), None
        else:
            out, hidden = self._run("he", None, nb, qp, ctx, nb_product, with_hidden=True)
        mean = out[:, : self.M] * qp.gain
        log_scale = out[:, self.M :] + qp.log_gain
        return mean, Scales(log_scale, hidden)

    def scale_groups(self, scales: Scales, sym: np.ndarray, qp: QualityParams) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]:
        """The channels of each coding group and their scale-table indices, in bitstream
        order; a group's indices may depend on sym's earlier groups (filled in by then)."""
        return scale_groups(self.context, self.scale_bounds, scales, sym, qp.bias)

    def decode_symbols(self, scales: Scales, qp: QualityParams, read: Read) -> np.ndarray:
        """A wavefront's symbols as the decoder reads them (exact.decode_symbols)."""
        return decode_symbols(self.context, self.scale_bounds, scales, qp.bias, read)

    def group_columns(self) -> list[np.ndarray | slice]:
        """The channels of each coding group, in bitstream order."""
        return [slice(None)] if self.context is None else list(self.context.columns())

    def finish(self, img: np.ndarray, qp: QualityParams, out: np.ndarray | None = None,
               band: tuple[int, int] = (0, 1)) -> np.ndarray:
        """The decoded image after the coding loop: post-filtered when the model has a filter.
        With out and band (i, k): only the i-th of k bands of the filter's rows, into out
        (k processes, each its band, make the whole image; see PostFilter.apply)."""
        if self.postfilter is None:
            return img
        return self.postfilter.apply(img, qp.bias["pf"], out=out, band=band)

    def analyse(self, block: np.ndarray, nb: np.ndarray | Prepared | None, qp: QualityParams,
                ctx: BlockContext | None = None, nb_product: np.ndarray | None = None) -> np.ndarray:
        """Centred block pixels (B, 192) + neighbours -> gained latents (B, M)."""
        return self._run("ga", block, nb, qp, ctx, nb_product) * qp.gain

    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: np.ndarray | Prepared | None, qp: QualityParams,
                   ctx: BlockContext | None = None, nb_product: np.ndarray | None = None) -> np.ndarray:
        """Symbols around the mean -> centred reconstructed block pixels (B, 192) int16."""
        cur = symbols + mean
        cur *= qp.inv_gain
        cur *= 2.0**self.f_latent  # = ldexp (a power of two), and faster
        _requantise_in_place(cur)
        out = self._run("gs", cur, nb, qp, ctx, nb_product)
        out *= 2.0**PIXEL_EXP
        np.rint(out, out=out)
        return np.clip(out, -128, 127, out=out).astype(np.int16)

    @overload
    def _run(self, name: str, cur: np.ndarray | None, nb: np.ndarray | Prepared | None, qp: QualityParams,
             ctx: BlockContext | None, nb_product: np.ndarray | None = None) -> np.ndarray: ...

    @overload
    def _run(self, name: str, cur: np.ndarray | None, nb: np.ndarray | Prepared | None, qp: QualityParams,
             ctx: BlockContext | None, nb_product: np.ndarray | None,
             with_hidden: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    def _run(self, name: str, cur: np.ndarray | None, nb: np.ndarray | Prepared | None, qp: QualityParams,
             ctx: BlockContext | None, nb_product: np.ndarray | None = None,
             with_hidden: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """A stack's outputs (and, with_hidden, its last hidden activation) by the fast form."""
        st = self.stacks()[name]
        if isinstance(nb, Prepared):
            out = st.run_with_hidden(cur, None, None, ctx, first=nb.first(name))
        else:
            out = st.run_with_hidden(cur, nb, qp.bias[name], ctx, nb_product=nb_product)
        return out if with_hidden else out[0]


class _FirstLayerWeights(dict):
    """FrozenModel.first_layers' dict: a stack's [W_nb, bias] made when first asked for."""

    def __init__(self, stacks: dict[str, Stack], bias: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.stacks, self.bias = stacks, bias

    def __missing__(self, name: str) -> np.ndarray:
        fast = self.stacks[name].plan()
        self[name] = np.ascontiguousarray(np.concatenate([fast.Wnb, (self.bias[name] * fast.s0)[:, None]], axis=1))
        return self[name]


@dataclass
class Prepared:
    """Neighbours of a batch of blocks as FrozenModel.prepare leaves them, or the products
    first() gives, computed elsewhere (codec._FirstLayers: by several processes at once)."""

    nb: np.ndarray | None  # (B, 769): the neighbour pixels and a column of ones
    weights: dict[str, np.ndarray]  # per stack, (C0, 769): [W_nb, bias] rescaled (FastStack)
    given: dict[str, np.ndarray] | None = None  # per stack, first()'s result, each used once

    def first(self, name: str) -> np.ndarray:
        """The first layer's neighbour term and bias of one stack, rescaled (B, C0)."""
        if self.given is not None:
            return self.given[name]
        assert self.nb is not None
        return mm(self.nb, self.weights[name])


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
    if model.context is not None:
        model.context.check(model.M, model.he.layers[-1].W.shape[1])
    if model.postfilter is not None:
        model.postfilter.check()
