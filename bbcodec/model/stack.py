"""The integer stacks of the auto-encoder and the entropy network, and their fast form.

A Stack is what bbcodec.train.freeze makes of a float stack (nn.networks.MaskedStack),
layer for layer, and what model/layout.py reads from a weights file; run_reference_with_hidden
is docs/format.md 5.1 step by step. The coding loop runs its FastStack: the same
integers with every power-of-two rescaling folded into the weights, so that a
requantisation is rint and clip only; it gives the same bits (see FastStack).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .arith import (
    ACT_MAX,
    LEAKY_SHIFT,
    LeakyLayers,
    kernel,
    leaky,
    mm,
    requantise,
    requantise_in_place,
    rescaled,
)
from .blocks import BlockContext


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


def fold_leaky(acts: list[Activation], e0: np.ndarray, layers: list[Layer], out_exp: int
               ) -> tuple[np.ndarray, LeakyLayers]:
    """A chain of (leaky activation, layer) pairs in the fast form of FastStack: (the
    exponent shift of the first accumulator, 2^(fa_1 - e0) per channel, to fold into the
    first layer; each layer's (W, b) rescaled by 2^(fa_next - e), the last by
    2^(out_exp - e), W as mm's kernel, so that leaky_chain gives the output at exponent
    out_exp)."""
    assert all(a.kind == "leaky" for a in acts)
    n = len(layers)
    folded = []
    for i, layer in enumerate(layers):
        shift = np.asarray(acts[i + 1].fa - layer.e if i + 1 < n else out_exp - layer.e, dtype=np.int64)
        folded.append((kernel(rescaled(layer.W, shift)), rescaled(layer.b, shift)))
    return np.asarray(acts[0].fa - e0, dtype=np.int64), folded


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

    def run_reference_with_hidden(self, cur: np.ndarray | None, nb: np.ndarray, bias: np.ndarray,
                                  ctx: BlockContext | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Integer inputs -> (output accumulator as exact real values (B, out), the last
        hidden activation), as docs/format.md (5.1) writes it, step by step: what the
        fast form (FastStack.run_with_hidden) must equal. ctx (where blocks are, and the
        feature canvases) is needed only by kernel-3 layers, which read the hidden
        features of the causal neighbours."""
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

    @cached_property
    def fast(self) -> FastStack:
        """The fast form of this stack, built on first use (the arrays must not change after)."""
        return FastStack.of(self)


@dataclass
class _Step:
    """One (activation, layer) pair of a FastStack."""

    kind: str  # "gdn", "igdn" or "leaky"
    G: np.ndarray | None  # (C, C): G rescaled so that the GDN needs no ldexp, as mm's kernel
    B: np.ndarray | None  # (C,): B likewise
    W: np.ndarray  # (C, out), or (5 C, out) for kernel 3: W rescaled, as mm's kernel (arith.kernel)
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
    Wnb: np.ndarray  # (C0, 768) W_nb rescaled (frozen.FirstLayerWeights makes the kernels)
    Wcur: np.ndarray | None  # (C0, cin) W_cur rescaled
    steps: list[_Step]
    Wskip: np.ndarray | None  # (out, cin) W_skip rescaled to the output
    stack: Stack
    Kcur: np.ndarray | None = None  # mm's kernel of Wcur, or of [Wcur; Wskip]: both products of cur in one

    def __post_init__(self) -> None:
        if self.Wcur is not None:
            both = self.Wcur if self.Wskip is None else np.concatenate([self.Wcur, self.Wskip])
            self.Kcur = kernel(both)
        else:  # a shortcut on the own input: only beside W_cur
            assert self.Wskip is None

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
                G, B = kernel(rescaled(act.G, -2 * k)), rescaled(act.B, -2 * k)
            steps.append(_Step(act.kind, G, B, kernel(rescaled(layer.W, shift[i])),
                               rescaled(layer.b, shift[i]), layer.k))
        return cls(
            s0=np.ldexp(1.0, s0),
            Wnb=np.ascontiguousarray(rescaled(st.W_nb, s0)),
            Wcur=None if st.W_cur is None else np.ascontiguousarray(rescaled(st.W_cur, s0)),
            steps=steps,
            Wskip=None if st.W_skip is None else np.ascontiguousarray(rescaled(st.W_skip, shift[-1])),
            stack=st,
        )

    def run_with_hidden(self, cur: np.ndarray | None, first: np.ndarray, ctx: BlockContext | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Stack.run_reference_with_hidden's bits: the outputs, and the last layer's input
        (the integers of the last activation, the same as the reference's: the
        rescalings are folded into the weights after it, never into it). first: the
        neighbour part of the first layer with its bias, rescaled (frozen.Neighbours);
        overwritten when the stack has no own input (the entropy network)."""
        skip = None
        if self.Kcur is not None:  # cur's first-layer (and shortcut) products at once
            assert cur is not None
            x = mm(cur, self.Kcur)
            if self.Wskip is not None:
                C0 = len(self.s0)
                x, skip = x[:, :C0], x[:, C0:]
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


def _activate(step: _Step, x: np.ndarray) -> np.ndarray:
    """Activation (B, C) integers of a rescaled accumulator x (overwritten)."""
    if step.G is None:
        return leaky(x)
    requantise_in_place(x)
    s = mm(x * x, step.G)  # beta + gamma x^2, times 2^(-2k)
    s += step.B
    np.sqrt(s, out=s)
    if step.kind == "gdn":
        np.divide(x, s, out=s)
    else:
        np.multiply(x, s, out=s)
    return requantise_in_place(s)
