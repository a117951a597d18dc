"""8x8 block geometry: padding, space-to-depth, neighbour gathering and the wavefront order.

A block at (row r, col c) depends on the reconstructed blocks UL, U, UR and L::

    (r-1,c-1) (r-1,c) (r-1,c+1)
    (r,  c-1)  [r,c]

so any order that visits those four first is valid (row by row, say). The codec uses
the wavefronts t = 2*r + c, all blocks with the same t at once (rows ascending): UR of
(r, c) has t' = 2(r-1) + c + 1 = t - 1 and L has t - 1, so every wavefront only needs
earlier ones. For a 3x6 grid::

      0 1 2 3 4 5
      2 3 4 5 6 7
      4 5 6 7 8 9

The wavefront order is also the order of the symbols in the bitstream (docs/format.md).

The coding loop keeps only the front: in any order that respects the dependencies
(row by row, wavefront, one block at a time), a block reads its column's previous row and
its neighbour columns' current and previous rows, and no block of the same wavefront
writes those. So a Canvas needs two block rows per column (rolling), whatever the
image height; the blocks themselves go straight into the output image (put_pixels).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np

BLOCK = 8
BLOCK_CH = 3 * BLOCK * BLOCK  # 192: channel index = colour * 64 + dy * 8 + dx
NEIGHBOURS = 4  # UL, U, UR, L


Zeros = Callable[[tuple[int, ...], Any], np.ndarray]  # np.zeros, or memory that forked processes share


def grid_shape(height: int, width: int) -> tuple[int, int]:
    """Number of block rows and columns covering an image (ceil division)."""
    return -(-height // BLOCK), -(-width // BLOCK)


def widest(rows: int, cols: int) -> int:
    """Blocks in the largest wavefront of a rows x cols grid (wavefronts below)."""
    return min(rows, (cols + 1) // 2)


def pad_to_blocks(img: np.ndarray) -> np.ndarray:
    """Pad an HxWx3 image to multiples of 8 by repeating the last row/column (img itself
    when no padding is needed)."""
    h, w = img.shape[:2]
    rows, cols = grid_shape(h, w)
    if (rows * BLOCK, cols * BLOCK) == (h, w):
        return img
    return np.pad(img, ((0, rows * BLOCK - h), (0, cols * BLOCK - w), (0, 0)), mode="edge")


def to_blocks(img: np.ndarray) -> np.ndarray:
    """Padded HxWx3 uint8 image -> (rows, cols, 192) int16, centred (pixel - 128)."""
    h, w = img.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    b = img.reshape(rows, BLOCK, cols, BLOCK, 3).transpose(0, 2, 4, 1, 3)
    return b.reshape(rows, cols, BLOCK_CH).astype(np.int16) - 128


def block_grid(img: np.ndarray) -> np.ndarray:
    """Padded HxWx3 image -> (rows, 8, cols, 8, 3): a view (axes are only split), for
    block_rows to gather blocks from without converting the whole image."""
    h, w = img.shape[:2]
    return img.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3)


def block_rows(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(B, 192) float64 centred pixels of the blocks at (rows, cols) of a block_grid:
    to_blocks(img)[rows, cols] as float64."""
    b = grid[rows, :, cols].transpose(0, 3, 1, 2)  # (B, 8, 8, 3) -> (B, 3, 8, 8)
    return b.reshape(len(rows), BLOCK_CH).astype(np.float64) - 128


def from_blocks(blocks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(rows, cols, 192) centred blocks -> HxWx3 uint8 image cropped to height x width."""
    rows, cols = blocks.shape[:2]
    img = blocks.astype(np.uint8)  # two's complement: v + 128 is v mod 256 plus 128, in uint8
    img += np.uint8(128)
    img = img.reshape(rows, cols, 3, BLOCK, BLOCK).transpose(0, 3, 1, 4, 2)
    return np.ascontiguousarray(img.reshape(rows * BLOCK, cols * BLOCK, 3)[:height, :width])


def new_canvas(rows: int, cols: int) -> np.ndarray:
    """Reconstruction grid with a border of zeros (mid grey) above, left and right.

    Block (r, c) lives at canvas[r + 1, c + 1]; out-of-image neighbours read zeros.
    """
    return np.zeros((rows + 1, cols + 2, BLOCK_CH), dtype=np.int16)


def gather_neighbours(canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(B, 4*C) float64 vectors [UL, U, UR, L] for blocks at (rows, cols) of a canvas
    of C channels (pixels, or hidden features of a kernel-3 layer)."""
    parts = (
        canvas[rows, cols],  # UL
        canvas[rows, cols + 1],  # U
        canvas[rows, cols + 2],  # UR
        canvas[rows + 1, cols],  # L
    )
    return np.concatenate(parts, axis=1).astype(np.float64)


def gather_pixels(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(B, 192) float64 centred pixels of the blocks at (rows, cols) of an unpadded HxWx3
    image, padded as pad_to_blocks pads (the last row and column repeated): no copy of
    the image is made."""
    h, w = img.shape[:2]
    span = np.arange(BLOCK)
    y = np.minimum(rows[:, None] * BLOCK + span, h - 1)  # (B, 8): edge padding = clamped indices
    x = np.minimum(cols[:, None] * BLOCK + span, w - 1)
    b = img[y[:, :, None], x[:, None, :]]  # (B, 8, 8, 3)
    out = np.empty((len(rows), 3, BLOCK, BLOCK))
    np.subtract(b.transpose(0, 3, 1, 2), 128.0, out=out)
    return out.reshape(len(rows), BLOCK_CH)


def put_pixels(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    """Write centred blocks (B, 192) into an unpadded HxWx3 uint8 image, cropping the
    blocks that cross its right or bottom edge."""
    h, w = img.shape[:2]
    px = values.astype(np.uint8)  # two's complement: v + 128 is v mod 256 plus 128, in uint8
    px += np.uint8(128)
    px = px.reshape(len(rows), 3, BLOCK, BLOCK).transpose(0, 2, 3, 1)  # (B, dy, dx, colour)
    R, C = h // BLOCK, w // BLOCK  # whole blocks
    inside = (rows < R) & (cols < C)
    whole = img[: R * BLOCK, : C * BLOCK].reshape(R, BLOCK, C, BLOCK, 3)  # a view: axes are only split
    if inside.all():
        whole[rows, :, cols] = px
        return
    whole[rows[inside], :, cols[inside]] = px[inside]
    for i in np.flatnonzero(~inside):
        y, x = int(rows[i]) * BLOCK, int(cols[i]) * BLOCK
        img[y : y + BLOCK, x : x + BLOCK] = px[i, : h - y, : w - x]


class Canvas:
    """Reconstructed blocks (or a layer's hidden features) as their later neighbours read
    them: a border of zeros (mid grey) above, left and right; block (r, c) at row r + 1,
    column c + 1 of new_canvas's layout. rolling keeps two block rows per column (enough
    for any order that respects the dependencies, see the module docstring), else all."""

    def __init__(self, rows: int, cols: int, channels: int = BLOCK_CH, dtype: type = np.int16,
                 rolling: bool = True, zeros: Zeros = np.zeros) -> None:
        self.rows, self.cols, self.rolling, self.channels = rows, cols, rolling, channels
        shape = (2 if rolling else rows + 1, cols + 2, channels)
        self.data: np.ndarray = zeros(shape, dtype)  # zeros: coding/workers.shared_zeros for forked workers

    def _row(self, r: np.ndarray) -> np.ndarray:
        return (r + 1) % 2 if self.rolling else r + 1

    def put(self, r: np.ndarray, c: np.ndarray, values: np.ndarray) -> None:
        self.data[self._row(r), c + 1] = values

    def neighbours(self, r: np.ndarray, c: np.ndarray, ones: bool = False) -> np.ndarray:
        """(B, 4 C) float64 vectors [UL, U, UR, L] of the blocks at (r, c), as
        gather_neighbours; ones: one more column of ones (FrozenModel.prepare's bias)."""
        C = self.channels
        out = np.empty((len(r), 4 * C + ones))
        up, here = self._row(r - 1), self._row(r)
        out[:, :C] = self.data[up, c]  # UL
        out[:, C : 2 * C] = self.data[up, c + 1]  # U
        out[:, 2 * C : 3 * C] = self.data[up, c + 2]  # UR
        out[:, 3 * C : 4 * C] = self.data[here, c]  # L
        if ones:
            out[:, 4 * C] = 1.0
        return out


def wavefronts(rows: int, cols: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row indices, col indices) of each wavefront t = 2r + c, rows ascending."""
    for t in range(2 * (rows - 1) + cols):
        r = np.arange(max(0, (t - cols + 2) // 2), min(rows - 1, t // 2) + 1)
        yield r, t - 2 * r


class BlockContext:
    """Where the current blocks are, and the hidden features of blocks already done (one
    Canvas per kernel-3 layer): what a layer that reads its causal neighbours' features
    needs, in the integer and the float model alike.

    at() moves this context; chunk() gives a context of its own for part of a
    wavefront, sharing the feature canvases (the blocks of one wavefront never read
    what the others write), so that workers can each code a chunk; add_features makes a
    canvas up front (in shared memory, for worker processes). rolling: keep two block
    rows of features (the coding loop), else the whole grid (any order).
    """

    def __init__(self, rows: int, cols: int, rolling: bool = False) -> None:
        self.rows, self.cols, self.rolling = rows, cols, rolling
        self.r = self.c = np.zeros(0, dtype=np.int64)
        self._features: dict[Hashable, Canvas] = {}

    def at(self, r: np.ndarray, c: np.ndarray) -> BlockContext:
        self.r, self.c = r, c
        return self

    def chunk(self, r: np.ndarray, c: np.ndarray) -> BlockContext:
        """A context at (r, c) sharing this one's feature canvases."""
        ctx = BlockContext(self.rows, self.cols, self.rolling)
        ctx._features = self._features
        return ctx.at(r, c)

    def add_features(self, layer: Hashable, channels: int, dtype: type, zeros: Zeros = np.zeros) -> None:
        """Make the feature canvas of a layer now (with_neighbours makes it on first use)."""
        self._features[layer] = Canvas(self.rows, self.cols, channels, dtype, self.rolling, zeros)

    def with_neighbours(self, layer: Hashable, h: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Store h (B, C) for the current blocks under the key `layer`; return
        [UL, U, UR, L, h] (B, 5 C). The canvas holds dtype (int16 for integer features)."""
        canvas = self._features.get(layer)
        if canvas is None:  # first use, with no workers: for forked ones coding/loop._Blocks makes every
            # canvas up front in shared memory (one made here after the fork would be this process's own)
            canvas = self._features.setdefault(layer, Canvas(self.rows, self.cols, h.shape[1], dtype, self.rolling))
        canvas.put(self.r, self.c, h)
        return np.concatenate([canvas.neighbours(self.r, self.c), h], axis=1)

    def clear(self, r: np.ndarray, c: np.ndarray) -> None:
        """Zero features for blocks (r, c), which no layer ran on (flat blocks, Flat)."""
        for canvas in self._features.values():
            canvas.put(r, c, np.zeros((len(r), canvas.channels), canvas.data.dtype))


class Flat:
    """The flat blocks of an image (format version 4): blocks whose pixels inside the
    image are all one colour. They are not coded by the networks: their reconstruction
    is that colour exactly, on the canvas (their later neighbours read it) and in the
    output image, and their hidden features (kernel-3 layers) are zeros."""

    STRIP = 32  # block rows searched at once (bounds find's temporary memory)

    def __init__(self, mask: np.ndarray, colour: np.ndarray) -> None:
        self.mask = mask  # (rows, cols) bool
        self.colour = colour  # (rows, cols, 3) uint8: each flat block's colour (0 elsewhere)

    @classmethod
    def find(cls, img: np.ndarray) -> Flat | None:
        """The flat blocks of an HxWx3 uint8 image, or None if it has none. Edge padding
        (pad_to_blocks) repeats a block's own pixels, so a padded block is flat exactly
        when its part inside the image is."""
        rows, cols = grid_shape(*img.shape[:2])
        mask = np.zeros((rows, cols), dtype=bool)
        colour = np.zeros((rows, cols, 3), dtype=np.uint8)
        for r0 in range(0, rows, cls.STRIP):
            grid = block_grid(pad_to_blocks(img[r0 * BLOCK : (r0 + cls.STRIP) * BLOCK]))
            first = grid[:, :1, :, :1]  # each block's top-left pixel
            mask[r0 : r0 + len(grid)] = (grid == first).all(axis=(1, 3, 4))
            colour[r0 : r0 + len(grid)] = first[:, 0, :, 0]
        if not mask.any():
            return None
        colour[~mask] = 0
        return cls(mask, colour)

    def values(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(B, 192) int16 centred pixels of flat blocks (r, c)."""
        v = self.colour[r, c].astype(np.int16) - 128
        return np.repeat(v, BLOCK * BLOCK, axis=1)  # channel = colour * 64 + dy * 8 + dx

    def paint(self, img: np.ndarray, chunk: int = 4096) -> None:
        """Every flat block's colour into an HxWx3 image (after the post-loop filter)."""
        r, c = np.nonzero(self.mask)
        for i in range(0, len(r), chunk):
            put_pixels(img, r[i : i + chunk], c[i : i + chunk], self.values(r[i : i + chunk], c[i : i + chunk]))
