"""Latents coded in groups that see each other (network family 3; docs/format.md 5.5).

A block's M symbols are coded in groups of channels: `perm` orders the channels and
`sizes` cuts that order into groups. The first group is coded with the entropy network's
scales; each later group's log-scales are the entropy network's plus a correction that a
small head computes from the entropy network's last hidden features and the magnitudes
of the symbols of the earlier groups of the same block: the channel-conditional model of
Minnen & Singh (2020) and ELIC (2022), for the scales only. The means are left alone, so
the symbols and the reconstruction are exactly those of the same networks without the
heads: only the rate changes, which is why the heads can be trained on a cache of a
frozen codec's real encodes (bbcodec.train.groups).

Integer arithmetic as in arith.py: integers in float64 below 2^53, power-of-two scales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .arith import (
    ACT_MAX,
    EXACT_LIMIT,
    MAX_SYMBOL,
    kernel,
    leaky_chain,
    mm,
    rescaled,
    scale_indices,
)
from .stack import Activation, Layer, fold_leaky

# read(idx, out): the decoder's reading of a group's symbols (B, n) from their scale-table
# indices into out, a zeroed view (coding/streams.Reader.read over the wavefront's spans).
Read = Callable[[np.ndarray, np.ndarray], None]


@dataclass
class GroupHead:
    """The log-scale correction of one group: a first layer on (hidden features at
    exponent f_h, |symbols| of the earlier groups as integers) plus a per-quality bias,
    then (activation, layer) pairs; the last accumulator is the correction at exponent e."""

    W_h: np.ndarray  # (K, C) on the entropy network's last hidden activation
    W_s: np.ndarray  # (K, start) on |symbols| of the earlier groups, in perm order
    qbias: np.ndarray  # (8, K) accumulator units
    e0: np.ndarray  # (K,)
    acts: list[Activation]
    layers: list[Layer]

    def run(self, hw: np.ndarray, a: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """hw = h @ W_h^T (GroupedScales.hidden_products computes all heads' at once)."""
        acc = hw + a @ self.W_s.T + bias
        e = self.e0
        for act, layer in zip(self.acts, self.layers, strict=True):
            acc = act(acc, e) @ layer.W.T + layer.b
            e = layer.e
        return np.ldexp(acc, -e.astype(np.int64))  # exact: the real value of the accumulator

    @cached_property
    def fast(self) -> FastHead:
        """The fast form of this head, built on first use (the arrays must not change after)."""
        return FastHead.of(self)

    def worst_sums(self) -> list[float]:
        """Largest partial sum of each layer for any input (hidden features and
        activations within ACT_MAX, symbols within MAX_SYMBOL)."""
        first = ACT_MAX * np.abs(self.W_h).sum(1) + MAX_SYMBOL * np.abs(self.W_s).sum(1) + np.abs(self.qbias).max(0)
        return [float(first.max())] + [float((ACT_MAX * np.abs(la.W).sum(1) + np.abs(la.b)).max()) for la in self.layers]


@dataclass
class FastHead:
    """A GroupHead with every power-of-two rescaling folded into its integers, as
    stack.FastStack does for the stacks (same bits: integers times powers of two, whose
    sums are exact in any order): the first layer's weights (W_h: GroupedScales.products)
    and per-quality bias by 2^(fa_1 - e0) per channel, so that its requantisation is rint
    and clip; each layer's by 2^(fa_next - e), the last by 2^-e, so that it gives the
    correction itself. Leaky activations only (the heads' only kind)."""

    s0: np.ndarray  # (K,) 2^(fa_1 - e0)
    K_h: np.ndarray  # (C, K): W_h rescaled, as mm's kernel
    K_s: np.ndarray  # (start, K): W_s rescaled, as mm's kernel
    layers: list[tuple[np.ndarray, np.ndarray]]  # (kernel, b) rescaled

    @classmethod
    def of(cls, head: GroupHead) -> FastHead:
        s0, layers = fold_leaky(head.acts, head.e0, head.layers, 0)
        return cls(np.ldexp(1.0, s0), kernel(rescaled(head.W_h, s0)), kernel(rescaled(head.W_s, s0)), layers)

    def run(self, hw: np.ndarray, a: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """GroupHead.run, with hw = h @ W_h^T of the rescaled W_h."""
        return self.run_biased(hw + bias * self.s0, a)

    def run_biased(self, hwb: np.ndarray, a: np.ndarray) -> np.ndarray:
        """run, with hwb = hw + bias * s0 (GroupedScales.heads_bias, added to every
        head's products in one pass): integers times 2^s0, whose sums are exact in any
        order."""
        x = mm(a, self.K_s)
        x += hwb
        return leaky_chain(x, self.layers)


@dataclass
class GroupedScales:
    """Channel order, group sizes and one head per group after the first."""

    perm: np.ndarray  # (M,) channel indices in coding order
    sizes: list[int]
    heads: list[GroupHead]

    def __post_init__(self) -> None:
        # The heads' first layers on h, rescaled (FastHead), side by side: one product for all.
        self._fast = [head.fast for head in self.heads]
        self._K_h = np.concatenate([f.K_h for f in self._fast], axis=1) if self.heads else np.zeros((0, 0))
        head_ends = np.cumsum([head.W_h.shape[0] for head in self.heads]).tolist()
        self._heads_at = [slice(e - head.W_h.shape[0], e) for head, e in zip(self.heads, head_ends, strict=True)]
        ends = np.cumsum(self.sizes)
        self._columns = [self.perm[e - n : e] for n, e in zip(self.sizes, ends, strict=True)]
        self._earlier = [self.perm[: e - n] for n, e in zip(self.sizes, ends, strict=True)]  # of each group
        self._spans = [(int(e - n), int(e)) for n, e in zip(self.sizes, ends, strict=True)]  # in coding order
        self._inverse = np.argsort(self.perm)

    def hidden_products(self, hidden: np.ndarray) -> list[np.ndarray]:
        """h @ W_h^T of every head (rescaled as FastHead), in one matrix product."""
        return self.split_products(self.products(hidden))

    def products(self, hidden: np.ndarray) -> np.ndarray:
        """hidden_products side by side (B, sum of K): computed once for many rows of the
        same blocks by rdoq.py (Scales.products)."""
        return mm(hidden, self._K_h)

    def split_products(self, products: np.ndarray) -> list[np.ndarray]:
        """products (B, sum of K) -> hidden_products' list, one array per head."""
        return [products[:, k] for k in self._heads_at]

    def columns(self) -> list[np.ndarray]:
        """The channels of each group, in coding order."""
        return self._columns

    def heads_bias(self, biases: list[np.ndarray]) -> np.ndarray:
        """Every head's first-layer bias (one per head, accumulator units, a row per block
        or one for all) times its FastHead.s0, side by side as products' columns: made
        once per quality (frozen.QualityParams.heads_bias), added to the products of each
        wavefront in one pass."""
        return np.concatenate([b * f.s0 for f, b in zip(self._fast, biases, strict=True)], axis=-1)

    def correction(self, g: int, hw: list[np.ndarray], sym: np.ndarray, heads_bias: np.ndarray) -> np.ndarray:
        """Log-scale correction (B, sizes[g]) of group g >= 1 from the hidden features'
        products (hidden_products), the heads' biases (heads_bias) and the symbols
        already known of the earlier groups (GroupHead.run's bits)."""
        hwb = hw[g - 1] + heads_bias[..., self._heads_at[g - 1]]
        return self._fast[g - 1].run_biased(hwb, np.abs(sym[:, self._earlier[g]]))

    def decode(self, log_scale: np.ndarray, hidden: np.ndarray, bounds: np.ndarray,
               heads_bias: np.ndarray, read: Read) -> np.ndarray:
        """frozen.decode_symbols with groups: the symbols and their magnitudes kept in
        coding order (perm), where each group is a slice, and put back in channel order
        once at the end; the same indices as frozen.scale_groups (tested)."""
        B, M = log_scale.shape
        ls = log_scale[:, self.perm]
        hwb = self.products(hidden)
        hwb += heads_bias
        sym = np.zeros((B, M))
        mag = np.empty((B, M))  # |sym|, filled group by group
        for g, (lo, hi) in enumerate(self._spans):
            part = ls[:, lo:hi]
            if g:
                plo, phi = self._spans[g - 1]
                np.abs(sym[:, plo:phi], out=mag[:, plo:phi])
                part = part + self._fast[g - 1].run_biased(hwb[:, self._heads_at[g - 1]], mag[:, :lo])
            read(scale_indices(bounds, part), sym[:, lo:hi])
        return sym[:, self._inverse]

    def check(self, M: int, C: int) -> None:
        """Refuse a malformed layout (M latent channels, C hidden features) or heads that
        could leave the exact integer range."""
        if sorted(self.perm.tolist()) != list(range(M)) or sum(self.sizes) != M or min(self.sizes) < 1:
            raise ValueError("group layout is not a partition of the latent channels")
        if len(self.sizes) < 2:
            raise ValueError("grouped scales need two coding groups or more (one group is network family 2)")
        if len(self.heads) != len(self.sizes) - 1:
            raise ValueError("one head per group after the first is needed")
        for g, head in enumerate(self.heads, start=1):
            if (head.W_h.shape[1] != C or head.W_s.shape[1] != int(np.sum(self.sizes[:g]))
                    or head.layers[-1].W.shape[0] != self.sizes[g]):
                raise ValueError(f"head {g} does not match its group")
            if max(head.worst_sums()) >= EXACT_LIMIT:
                raise ValueError(f"head {g} could exceed exact float64 integers")
