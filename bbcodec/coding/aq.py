"""Adaptive quantisation: the encoder's choice of a quality offset per block (format version 6).

The eye sees an error in a smooth area, and hardly the same error in texture, which
masks it (x264's and libaom's AQ rest on the same fact). So the encoder raises the
quality of regions whose blocks are smoother than the image's average: each REGION x
REGION pixels get the offset

    strength x max(0, the image's mean of A - A),  A = log2(1 + mean of its 8x8 blocks' luma variances)

in qualities, clipped to MAX_OFFSET, rounded to STEP and kept within 1..8 for every block;
flat blocks (coded by their colour) get 0, and the coded blocks beside one (any of its 8
neighbours) at least NEAR_FLAT x strength: a flat block is exact, so every error of the
block next to it (ringing off a sharp edge onto a clean background, as round a UI's
frame or a clipped highlight) shows there as on nothing else. Textured regions keep the file's quality:
lowering it saves bits the eye would not miss but costs PSNR for little SSIMULACRA2. The
file stores each block's offset (format version 6, coding/format.py) and the decoder
follows it, so the rule is the encoder's to change.

Measured on 8 held-out photos at qualities 2, 4, 6, real files, with the weights f231cf7c,
against no offsets (BD-rate at equal SSIMULACRA2 / MS-SSIM / PSNR): this rule at strength
0.4 over 64x64 regions -3.3 / -1.2 / +1.2 % (0.55: -3.3 / -1.2 / +1.5 %; 0.75: -3.4 / -1.4 /
+2.0 %); both ways (smooth up, texture down, as x264's mode 1) at 0.25 -3.2 / -1.1 / +3.6 %,
and on Kodak -1.5 % SSIMULACRA2 for +5.3 % PSNR; texture down only -0.4 / -0.8 / +2.7 %;
over 32x32 regions at 0.3, both ways, -3.8 / -2.1 / +6.6 %; per 8x8 block, worse than none.
The blocks beside flat ones at 1 quality (strength 0.4): on the synthetic set
(docs/performance.md) texture on flat at q4 went from 0.6 SSIMULACRA2 points below WebP at
the same size to 1.0 above, the colour wheel (saturated hues within white corners) from
2.0 below to 1.7 above.
"""

from __future__ import annotations

import numpy as np

from ..model import blocks
from ..model import quality as Q
from .format import DQ_STEP

REGION = 64  # pixels a side of a region of one offset (a multiple of 8)
MAX_OFFSET = 1.5  # qualities, the most a region is raised
STEP = 4  # offsets in multiples of 4 DQ_STEPs: a quarter of a quality (few distinct qualities per image)
NEAR_FLAT = 2.5  # x strength: the least offset of a coded block beside a flat one (1 quality at 0.4)
LUMA = np.array([0.299, 0.587, 0.114])


def activity(img: np.ndarray, region: int = REGION) -> np.ndarray:
    """log2(1 + mean luma variance of the 8x8 blocks) of each region of the image's block
    grid, broadcast to its blocks: (rows, cols) floats. The picture's edge is repeated
    to whole blocks, as the coder pads it."""
    h, w = img.shape[:2]
    rows, cols = blocks.grid_shape(h, w)
    luma = np.pad(img.astype(np.float64) @ LUMA, ((0, rows * 8 - h), (0, cols * 8 - w)), mode="edge")
    k = region // 8
    var = np.full((-(-rows // k) * k, -(-cols // k) * k), np.nan)  # whole regions; NaN: no block there
    var[:rows, :cols] = luma.reshape(rows, 8, cols, 8).var(axis=(1, 3))
    per_region = np.log2(1 + np.nanmean(var.reshape(var.shape[0] // k, k, var.shape[1] // k, k), axis=(1, 3)))
    return np.repeat(np.repeat(per_region, k, axis=0), k, axis=1)[:rows, :cols]


def offsets(img: np.ndarray, quality_x256: int, strength: float, flat: np.ndarray | None = None,
            region: int = REGION) -> np.ndarray | None:
    """Each block's quality offset in DQ_STEPs (rows, cols) int8, 0 or above, or None
    where every one is 0 (strength 0, or an image of one activity). flat: the flat
    blocks' mask."""
    if strength == 0:
        return None
    a = activity(img, region)
    k = region // 8
    off = np.clip(strength * (a[::k, ::k].mean() - a), 0, MAX_OFFSET)
    unit = STEP * DQ_STEP
    if flat is not None:
        off = np.maximum(off, np.where(beside(flat), min(MAX_OFFSET, NEAR_FLAT * strength), 0))
    dq = np.rint(off * Q.STEP / unit).astype(np.int64) * STEP
    low, high = -((quality_x256 - Q.MIN_X256) // unit) * STEP, ((Q.MAX_X256 - quality_x256) // unit) * STEP
    dq = np.clip(dq, low, high)
    if flat is not None:
        dq[flat] = 0
    return dq.astype(np.int8) if dq.any() else None


def beside(flat: np.ndarray) -> np.ndarray:
    """The blocks (rows, cols) with a flat block among their 8 neighbours, flat or not."""
    padded = np.pad(flat, 1)
    rows, cols = flat.shape
    near = np.zeros_like(flat)
    for dy in range(3):
        for dx in range(3):
            near |= padded[dy : dy + rows, dx : dx + cols]
    return near

