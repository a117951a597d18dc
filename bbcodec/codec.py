"""The coding loop: the only place where the networks meet the entropy coder.

Encoder, for each wavefront of blocks (blocks.py):
  neighbours -> entropy params (mean, scale index)      [exact integer nets]
  block + neighbours -> latents; symbols = round(latent - mean), clipped
  symbols + mean -> synthesis -> reconstructed block, written to the canvas
then all symbols are range-coded in wavefront order. The decoder runs the same loop
with symbols read from the coder instead of computed from the image. Both use
exact.py's integer arithmetic, so their canvases agree bit for bit on any machine;
the file's image digest proves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from . import blocks, entropy, errors, format, rdoq
from . import effort as efforts
from . import quality as Q
from .blocks import BlockContext
from .exact import Scales
from .images import ImageError
from .weights import Weights

Schedule = Callable[[int, int], Iterator[tuple[np.ndarray, np.ndarray]]]
# Encoder schedules: any order that respects the dependencies gives the same file.
SCHEDULES: dict[str, Schedule] = {"wavefront": blocks.wavefronts, "raster": blocks.raster}
# Decoder schedules: must follow the bitstream's wavefront order, batched or not.
DECODE_SCHEDULES: dict[str, Schedule] = {"wavefront": blocks.wavefronts, "sequential": blocks.sequential}


class CodingModel(Protocol):
    """What the loop needs of a model: the integer networks (exact.FrozenModel) for real
    files, or a float model (networks.FloatCodingModel) to measure what exactness costs.

    Pixels and neighbour vectors are centred integers (pixel - 128) as float64 rows, one
    per block; `params` is whatever params_at returned for the quality.
    """

    @property
    def M(self) -> int: ...
    @property
    def max_symbol(self) -> int: ...
    scale_table: np.ndarray
    family: int

    def params_at(self, quality_x256: int) -> Any: ...
    def entropy_params(self, nb: np.ndarray, params: Any, ctx: BlockContext) -> tuple[np.ndarray, Scales]: ...
    def scale_groups(self, scales: Scales, sym: np.ndarray, params: Any) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]: ...
    def group_columns(self) -> list[np.ndarray | slice]: ...
    def finish(self, img: np.ndarray, params: Any) -> np.ndarray: ...
    def analyse(self, block: np.ndarray, nb: np.ndarray, params: Any, ctx: BlockContext) -> np.ndarray: ...
    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: np.ndarray, params: Any,
                   ctx: BlockContext) -> np.ndarray: ...


class DecodeError(errors.Error, ValueError):
    """The file is well-formed but does not decode to the image it describes."""


def _one_blas_thread(fn: Callable) -> Callable:
    """Run fn with a single BLAS thread: the per-wavefront matrices are small, and a
    second thread only adds hand-offs (and spins against any other busy process)."""

    @wraps(fn)
    def inner(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return inner


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Decoded RGB -> one channel, round((R + G + B) / 3) in integers."""
    return ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)


def digest(img: np.ndarray) -> bytes:
    """The file's image digest of decoded pixels (no copy of a contiguous image)."""
    return format.image_digest(np.ascontiguousarray(img).data)


Choose = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Scales, np.ndarray], tuple[np.ndarray, np.ndarray]]


@_one_blas_thread
def encode(img: np.ndarray, quality: float, weights: Weights, schedule: str = "wavefront",
           progress: Callable[[int], None] | None = None, effort: int = efforts.DEFAULT) -> tuple[bytes, np.ndarray]:
    """HxWx3 RGB or HxW grayscale uint8 -> (.bbc bytes, the decoder's exact output).

    Grayscale is coded as RGB with equal channels and decoded back to one channel.
    Memory: besides the image and its reconstruction, the canvases of integer blocks
    (the pixels and each kernel-3 layer's features, int16); block pixels are gathered
    per wavefront and symbols are range-coded as they come (wavefront schedule) or kept
    as int16 with uint8 scale indices (raster), never as whole-image float64 arrays.
    progress, if given, is called with the number of pixels of each step's blocks.
    effort > 1 (effort.py) codes the image more than once: at effort 1 for a proxy of the
    blocks not yet coded, then choosing each block's symbols (rdoq.py); wavefront only.
    """
    level = efforts.LEVELS[efforts.check(effort)]
    if level is not None and schedule != "wavefront":
        raise efforts.EffortError("efforts above 1 code in wavefront order only (not the raster schedule)")
    gray = img.ndim == 2
    if gray:
        img = np.broadcast_to(img[:, :, None], (*img.shape, 3))  # a view, no copy
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ImageError("encode expects an HxWx3 (RGB) or HxW (grayscale) uint8 array")
    height, width = img.shape[:2]
    format.check_dimensions(width, height)
    model = weights.model
    quality_x256 = Q.to_x256(quality)
    qp = model.params_at(quality_x256)
    grid = blocks.block_grid(blocks.pad_to_blocks(img))
    choose = None
    if level is not None:
        frozen = rdoq.check_model(model)
        proxy = None
        if level.needs_proxy:
            _, proxy = _code(model, qp, grid, schedule, None, None)
        choose = rdoq.Chooser(frozen, qp, grid, proxy, level)
        del proxy
    payload, canvas = _code(model, qp, grid, schedule, choose, progress)
    del grid, choose
    rec = model.finish(blocks.from_blocks(canvas[1:, 1:-1], height, width), qp)
    del canvas
    if gray:
        rec = to_gray(rec)
    header = format.Header(
        width=width,
        height=height,
        quality_x256=quality_x256,
        weights_sha256=weights.prefix,
        image_digest=digest(rec),
        model_id=weights.family_id,
        channels=1 if gray else 3,
    )
    return format.pack(header, payload), rec


def _code(model: CodingModel, qp: Any, grid: np.ndarray, schedule: str, choose: Choose | None,
          progress: Callable[[int], None] | None) -> tuple[bytes, np.ndarray]:
    """The encoder's loop over a block grid -> (range-coded payload, reconstruction canvas).
    choose(r, c, nb, mean, scales, y) picks the symbols and returns them with their
    reconstruction, which it has computed (default: y - mean rounded, synthesised here)."""
    rows, cols = grid.shape[0], grid.shape[2]
    canvas = blocks.new_canvas(rows, cols)
    ctx = BlockContext(rows, cols)
    L = model.max_symbol
    coder = entropy.SymbolEncoder(L)
    in_order = schedule == "wavefront"  # symbols come in bitstream order: code them at once
    if not in_order:
        assert L < 2**15 and len(model.scale_table) <= 256
        symbols = np.zeros((rows, cols, model.M), dtype=np.int16)
        scale_idx = np.zeros((rows, cols, model.M), dtype=np.uint8)
    for r, c in SCHEDULES[schedule](rows, cols):
        nb = blocks.gather_neighbours(canvas, r, c)
        ctx.at(r, c)
        mean, scales = model.entropy_params(nb, qp, ctx)
        y = model.analyse(blocks.block_rows(grid, r, c), nb, qp, ctx)
        if choose is None:
            sym = np.clip(np.rint(y - mean), -L, L)
            canvas[r + 1, c + 1] = model.synthesise(sym, mean, nb, qp, ctx)
        else:
            sym, canvas[r + 1, c + 1] = choose(r, c, nb, mean, scales, y)
        if in_order:
            for group, idx in model.scale_groups(scales, sym, qp):
                coder.encode(sym[:, group], model.scale_table[idx])
        else:  # kept for the wavefront-order pass below
            indices = np.empty(sym.shape, dtype=np.uint8)
            for group, idx in model.scale_groups(scales, sym, qp):
                indices[:, group] = idx
            symbols[r, c], scale_idx[r, c] = sym, indices
        if progress is not None:
            progress(len(r) * blocks.BLOCK * blocks.BLOCK)
    if not in_order:
        order = model.group_columns()
        for r, c in blocks.wavefronts(rows, cols):
            for group in order:
                coder.encode(symbols[r, c][:, group], model.scale_table[scale_idx[r, c][:, group]])
    return coder.payload(), canvas


@_one_blas_thread
def decode(header: format.Header, payload: bytes, weights: Weights, schedule: str = "wavefront",
           progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Header + payload (from format.unpack) -> HxWx3 (or HxW grayscale) uint8, digest-checked
    (progress as for encode)."""
    model = weights.model
    if schedule == "sequential" and len(model.group_columns()) > 1:
        raise ValueError("one block at a time reads a block's symbols together: network families 1 and 2 "
                         "only (family 3 writes a wavefront group by group)")
    qp = model.params_at(header.quality_x256)
    rows, cols = blocks.grid_shape(header.height, header.width)
    canvas = blocks.new_canvas(rows, cols)
    ctx = BlockContext(rows, cols)
    dec = entropy.SymbolDecoder(payload, model.max_symbol)
    try:
        for r, c in DECODE_SCHEDULES[schedule](rows, cols):
            nb = blocks.gather_neighbours(canvas, r, c)
            ctx.at(r, c)
            mean, scales = model.entropy_params(nb, qp, ctx)
            sym = np.zeros(mean.shape)
            for group, idx in model.scale_groups(scales, sym, qp):
                sym[:, group] = dec.decode(model.scale_table[idx])
            canvas[r + 1, c + 1] = model.synthesise(sym, mean, nb, qp, ctx)
            if progress is not None:
                progress(len(r) * blocks.BLOCK * blocks.BLOCK)
        dec.finish()
    except entropy.EntropyError as e:
        raise DecodeError(f"corrupt payload: {e}") from None
    del ctx
    img = model.finish(blocks.from_blocks(canvas[1:, 1:-1], header.height, header.width), qp)
    del canvas
    if header.channels == 1:
        img = to_gray(img)
    if digest(img) != header.image_digest:
        raise DecodeError("decoded image does not match the encoder's (digest mismatch): corrupt file or non-exact decoder")
    return img
