"""The post-loop filter of network family 3 (docs/format.md 5.6).

No block of the coding loop sees the blocks below and to its right, so those edges are
never corrected. Once the loop is done, this filter corrects the whole decoded image:
the image is cut into P x P pixel cells (3 P^2 values each, as in blocks.py's channel
order: colour, then row, then column); a first layer reads each cell's 3x3 neighbourhood
of cells (3P x 3P pixels, both sides of every nearby edge) plus a per-quality bias, then
per-cell layers give a residual added to the cell's pixels. It runs outside the loop, so
no block depends on it, and in strips of cell rows, so its memory grows with the width.

Arithmetic as in arith.py: integers in float64 below 2^53, power-of-two scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .arith import ACT_MAX, EXACT_LIMIT, PIXEL_EXP, LeakyLayers, kernel, leaky_chain, mm, rescaled
from .stack import Activation, Layer, fold_leaky

STRIP_CELLS = 2048  # cells filtered at a time (whole cell rows, at least one): fastest here (2 MB of windows)


@dataclass
class PostFilter:
    """Cell size P; first layer W0 (K, 3P^2 * 9) on the centred pixels of the 3x3 cells
    around a cell (order: channel, cell row, cell column) plus a per-quality bias; then
    (activation, layer) pairs; the last accumulator is the cell's residual (3P^2) at
    exponent e, rounded to integers at the pixel scale."""

    P: int
    W0: np.ndarray
    qbias: np.ndarray  # (8, K) accumulator units
    e0: np.ndarray  # (K,)
    acts: list[Activation]
    layers: list[Layer]

    def residual(self, windows: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """(n, 27 P^2) centred pixels -> (n, 3 P^2) integer residuals."""
        acc = windows @ self.W0.T + bias
        e = self.e0
        for act, layer in zip(self.acts, self.layers, strict=True):
            acc = act(acc, e) @ layer.W.T + layer.b
            e = layer.e
        return np.rint(np.ldexp(acc, PIXEL_EXP - e.astype(np.int64)))

    def fast_residual(self, patches: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """residual() of the same windows laid out as pixel patches (patch_order: the
        3P x 3P pixels around a cell, row by row, each pixel's colours together, as the
        image holds them), in the order (cell row, cell column, colour) of pixels
        (residual_order), with every power-of-two rescaling folded into the integers (as
        stack.FastStack): a requantisation is rint and clip, and the last layer gives the
        residual at the pixel scale. The same sums in another order, so the same bits
        (tested against residual)."""
        W0, s0, layers = self._fast
        x = mm(patches, W0)
        x += bias * s0
        x = leaky_chain(x, layers)
        return np.rint(x, out=x)

    @cached_property
    def _fast(self) -> tuple[np.ndarray, np.ndarray, LeakyLayers]:
        """(W0, the first bias' factor, [(W, b)] per layer), rescaled, as mm's kernels,
        W0's inputs in patch_order and the last layer's outputs in residual_order; built
        on first use."""
        s0, layers = fold_leaky(self.acts, self.e0, self.layers, PIXEL_EXP)
        W0 = kernel(rescaled(self.W0, s0)[:, patch_order(self.P)])
        last = residual_order(self.P)
        layers[-1] = (np.ascontiguousarray(layers[-1][0][:, last]), layers[-1][1][last])
        return W0, np.ldexp(1.0, s0), layers

    def worst_sums(self) -> list[float]:
        first = 128 * np.abs(self.W0).sum(1) + np.abs(self.qbias).max(0)
        return [float(first.max())] + [float((ACT_MAX * np.abs(la.W).sum(1) + np.abs(la.b)).max()) for la in self.layers]

    def check(self) -> None:
        C = 3 * self.P * self.P
        if self.P not in (1, 2, 4, 8) or self.W0.shape[1] != 9 * C or self.layers[-1].W.shape[0] != C:
            raise ValueError("post-filter layers do not match its cell size")
        if max(self.worst_sums()) >= EXACT_LIMIT:
            raise ValueError("post-filter weights could exceed exact float64 integers")

    def apply(self, img: np.ndarray, bias: np.ndarray, strip_cells: int | None = None,
              out: np.ndarray | None = None, band: tuple[int, int] = (0, 1)) -> np.ndarray:
        """Filtered copy of an HxWx3 uint8 image (the decoded one), strip by strip.

        The image is extended by repeating its edge pixels to whole cells plus one cell on
        every side; each cell of the image is corrected from its 3x3 cells, and the result
        is cropped back to HxW (reference_apply, docs/format.md 5.6, step by step). Here
        the windows are read straight from the strip's pixels (patches: no cell layout),
        the filter's weights permuted to match (_fast). strip_cells: cells filtered at a
        time (default STRIP_CELLS, read when called); any value gives the same image.
        out: where to write (default a new array); band (i, k): only the i-th of k bands
        of cell rows (bands), so that k processes can share the work (each cell reads
        only the input image).
        """
        P = self.P
        height, width = img.shape[:2]
        rows, cols = -(-height // P), -(-width // P)
        x = np.clip(np.arange(-P, (cols + 1) * P), 0, width - 1)
        if out is None:
            out = np.empty_like(img)
        step = max(1, (STRIP_CELLS if strip_cells is None else strip_cells) // cols)
        first, end = bands(rows, band[1])[band[0]]
        for r0 in range(first, end, step):
            n = min(end, r0 + step) - r0
            y = np.clip(np.arange((r0 - 1) * P, (r0 + n + 1) * P), 0, height - 1)
            strip = img[y][:, x].reshape((n + 2) * P, (cols + 2) * P * 3) - 128.0  # edges repeated, centred
            res = self.fast_residual(patches(strip, P, n, cols), bias)  # (n cols, P P 3)
            res = res.reshape(n, cols, P, 3 * P).transpose(0, 2, 1, 3).reshape(n * P, cols * P * 3)
            res += strip[P : (n + 1) * P, 3 * P : (cols + 1) * 3 * P]  # the cells' own pixels
            np.clip(res, -128, 127, out=res)
            res += 128
            top, bottom = r0 * P, min(height, (r0 + n) * P)
            out[top:bottom] = res.astype(np.uint8).reshape(n * P, cols * P, 3)[: bottom - top, :width]
        return out

    def reference_apply(self, img: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """apply as docs/format.md 5.6 writes it, in one strip: the image in cells
        (to_cells), each cell's 3x3 window of cells, residual() (what apply must equal)."""
        P = self.P
        height, width = img.shape[:2]
        rows, cols = -(-height // P), -(-width // P)
        y = np.clip(np.arange(-P, (rows + 1) * P), 0, height - 1)
        x = np.clip(np.arange(-P, (cols + 1) * P), 0, width - 1)
        cells = to_cells(img[y][:, x], P)  # (rows + 2, cols + 2, 3 P^2)
        view = np.lib.stride_tricks.sliding_window_view(cells, (3, 3), axis=(0, 1))  # type: ignore[call-overload]
        win = view.reshape(rows * cols, -1).astype(np.float64)  # (channel, cell row, cell column)
        centre = cells[1:-1, 1:-1].reshape(rows * cols, -1)
        new = np.clip(centre + self.residual(win, bias), -128, 127).astype(np.int16)
        return from_cells(new.reshape(rows, cols, -1), P)[:height, :width]


def bands(rows: int, k: int) -> list[tuple[int, int]]:
    """rows cut into k contiguous bands (start, end) of nearly equal size, top to bottom."""
    cuts = [rows * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def patch_order(P: int) -> np.ndarray:
    """W0's columns (window index: cell channel 9 + cell row 3 + cell column) in the order
    of patches' values: pixel row, pixel column, colour over the 3P x 3P window."""
    py, px, ch = np.meshgrid(np.arange(3 * P), np.arange(3 * P), np.arange(3), indexing="ij")
    return ((ch * P * P + py % P * P + px % P) * 9 + py // P * 3 + px // P).ravel()


def residual_order(P: int) -> np.ndarray:
    """The residual's channels (colour P^2 + dy P + dx) in pixel order: dy, dx, colour."""
    dy, dx, ch = np.meshgrid(np.arange(P), np.arange(P), np.arange(3), indexing="ij")
    return (ch * P * P + dy * P + dx).ravel()


def patches(strip: np.ndarray, P: int, n: int, cols: int) -> np.ndarray:
    """(n cols, 27 P^2): the 3P x 3P pixel window of each of n x cols cells, from a
    centred strip ((n + 2) P rows, (cols + 2) P pixels x 3 colours, C-ordered), in
    patch_order: each window row is 9P consecutive values of a strip row (one copy)."""
    rs, vs = strip.strides
    view = np.lib.stride_tricks.as_strided(strip, (n, cols, 3 * P, 9 * P), (P * rs, 3 * P * vs, rs, vs), writeable=False)
    return view.reshape(n * cols, 27 * P * P)


def to_cells(img: np.ndarray, P: int) -> np.ndarray:
    """(hP, wP, 3) uint8 -> (h, w, 3 P^2) int16 centred, channel = colour P^2 + dy P + dx."""
    h, w = img.shape[0] // P, img.shape[1] // P
    c = img.reshape(h, P, w, P, 3).transpose(0, 2, 4, 1, 3).reshape(h, w, 3 * P * P)
    return c.astype(np.int16) - 128


def from_cells(cells: np.ndarray, P: int) -> np.ndarray:
    """Inverse of to_cells: (h, w, 3 P^2) centred -> (hP, wP, 3) uint8."""
    h, w = cells.shape[:2]
    img = (cells + 128).astype(np.uint8).reshape(h, w, 3, P, P).transpose(0, 3, 1, 4, 2)
    return img.reshape(h * P, w * P, 3)
