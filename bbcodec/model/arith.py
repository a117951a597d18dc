"""Integer arithmetic of the frozen networks: the same bits on every machine.

Every network in the coding loop runs on integers carried in float64:

* weights are integers |w| < 2^15 with a power-of-two scale per output channel;
* activations are integers |a| <= 2^15 - 1 with a power-of-two scale per layer;
* a matrix product of such integers over <= 2048 inputs stays below 2^53, so it is
  exact in float64 whatever the summation order, thread count, BLAS or CPU;
* rescaling is a product by a power of two (exact) then round-half-even;
  nonlinearities use only IEEE operations that are correctly rounded everywhere (sqrt,
  division, multiplication).

So encoder and decoder agree to the bit on any machine, and numpy is enough: no torch
on the coding path. This module holds the numbers the bitstream fixes and the
operations every network is built of (stack.py: the auto-encoder and entropy stacks;
groups.py, filter.py: the family-3 parts); docs/format.md 5 describes them, since the
bitstream depends on them.
"""

from __future__ import annotations

import math

import numpy as np

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


def scale_indices(bounds: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """Scale-table index of each log-scale: comparisons with the table's bounds only."""
    return bounds.searchsorted(log_scale, side="right")


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


_LEAKY = 2.0**-LEAKY_SHIFT


def kernel(W: np.ndarray) -> np.ndarray:
    """Weights W (out, in) as mm takes them: W.T, contiguous (in, out), made once per
    network (the fast forms of stack.py, groups.py, filter.py)."""
    return np.ascontiguousarray(W.T)


def mm(x: np.ndarray, K: np.ndarray) -> np.ndarray:
    """x @ W.T (B, out) for K = kernel(W): a product of two C-ordered arrays, which
    OpenBLAS runs up to 40 % faster than (W @ x.T).T or x @ W.T with W (out, in) at a
    wavefront's 7 to 28 blocks (benchmarks/speed.py, part 4); exact integers in any
    order, so the same bits."""
    return x @ K


_MAX, _MIN = np.maximum.reduce, np.minimum.reduce  # x.max() and x.min() without their Python wrappers


def saturate(x: np.ndarray) -> None:
    """Clip to +-ACT_MAX in place (a min and max first: rarely needed, and a clip is slower)."""
    if x.size and (_MAX(x, axis=None) > ACT_MAX or _MIN(x, axis=None) < -ACT_MAX):
        np.clip(x, -ACT_MAX, ACT_MAX, out=x)


LeakyLayers = list[tuple[np.ndarray, np.ndarray]]  # (kernel (in, out), bias (out,)) per layer


def leaky_chain(x: np.ndarray, layers: LeakyLayers) -> np.ndarray:
    """The layers of fold_leaky (kernels, as mm takes them) on a rescaled first
    accumulator x (overwritten): per layer, requantise (rint, clip), leaky ReLU,
    product and bias."""
    for W, b in layers:
        x = mm(leaky(x), W)
        x += b
    return x


def requantise_in_place(x: np.ndarray) -> np.ndarray:
    """A rescaled accumulator (or latent) x as activation integers, in place: rint, then
    clipped to +-ACT_MAX (requantise's work once the rescaling is folded in)."""
    np.rint(x, out=x)
    saturate(x)
    return x


def leaky(x: np.ndarray) -> np.ndarray:
    """The leaky ReLU's integers of a rescaled accumulator x, in place: requantise (rint,
    clip), then max(a, rint(a / 128))."""
    requantise_in_place(x)
    t = np.multiply(x, _LEAKY)
    np.rint(t, out=t)
    return np.maximum(x, t, out=x)
