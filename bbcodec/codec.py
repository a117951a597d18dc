"""The coding loop: the only place where the networks meet the entropy coder.

Encoder, for each wavefront of blocks (blocks.py):
  neighbours -> entropy params (mean, scale index)      [exact integer nets]
  block + neighbours -> latents; symbols = round(latent - mean), clipped
  symbols + mean -> synthesis -> reconstructed block, written to the canvas
and the wavefront's symbols are range-coded, in wavefront order. The decoder runs the
same loop with symbols read from the coder instead of computed from the image. Both
use exact.py's integer arithmetic, so their canvases agree bit for bit on any machine;
the file's image digest proves it.

Parallel coding (threads > 1): the blocks of a wavefront are independent, so a large
wavefront is cut into chunks (contiguous runs of blocks in bitstream order), one per
worker; each chunk has its own position (BlockContext.chunk) and writes only its own
blocks. Exact arithmetic makes every block's result independent of the cut, and the
range coder takes the chunks' symbols in bitstream order, so files and images are the
same for any number of workers. The calling process codes the first chunk and runs
the range coder; the others are processes forked for the image (parallel.Forked),
sharing the canvas and the output image. Threads would not do: the range coder
(constriction) holds Python's GIL while it runs, and the networks need it between
their many numpy calls, so threads took turns rather than working at once (measured:
a thread of matrix products beside a thread of range coding made 98 products/s
instead of 2888; split wavefronts ran slower on two threads than on one). The encoder
codes a wavefront's symbols while the workers compute the next; the decoder decodes
each chunk's symbols as soon as its scale indices arrive, and that worker synthesises
its blocks while the next chunks' symbols are decoded. Small wavefronts, the float
model, and processes that cannot fork safely (no os.fork, or other threads running)
are coded in the calling process alone.

Network family 3 (coding groups, post-loop filter): the symbols of a wavefront are
written group by group (docs/format.md 3), and a later group's scales depend on the
earlier groups' symbols. The encoder knows them all, so its workers return each chunk's
symbols and scale indices of every group and this process codes the wavefront group by
group over the chunks in order. The decoder's workers run the entropy network and the
group heads' products of the hidden features (the heads' largest part) for their
chunks, into shared memory; this process decodes the wavefront group by group over all
its blocks, computing each later group's scale corrections for the whole wavefront at
once, and hands each worker its blocks' symbols as soon as the last group's are decoded,
so that the worker synthesises them while this process decodes the rest (its own chunk
comes last in the wavefront for that). So per worker and wavefront the messages are
four (go, scales ready, symbols ready, done), however many groups. The post-loop filter
(model.finish) runs after the loop, each process filtering a band of the image's rows
(_PostLoop), for both.

Memory: the canvas keeps two block rows per column (blocks.Canvas), blocks go
straight into the output image, and symbols are coded as each wavefront passes, so
besides the input and output images the loop holds O(width) data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from . import blocks, entropy, errors, format, parallel, rdoq
from . import effort as efforts
from . import quality as Q
from .blocks import BlockContext, Canvas
from .exact import FrozenModel, Prepared, Scales
from .images import ImageError
from .parallel import Forked, can_fork, default_threads, receive, reply, shared_zeros, split
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
    def entropy_params(self, nb: Any, params: Any, ctx: BlockContext) -> tuple[np.ndarray, Scales]: ...
    def scale_groups(self, scales: Scales, sym: np.ndarray, params: Any) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]: ...
    def group_columns(self) -> list[np.ndarray | slice]: ...
    def finish(self, img: np.ndarray, params: Any) -> np.ndarray: ...
    def analyse(self, block: np.ndarray, nb: Any, params: Any, ctx: BlockContext) -> np.ndarray: ...
    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: Any, params: Any,
                   ctx: BlockContext) -> np.ndarray: ...


# Blocks a chunk has at least: a wavefront of fewer than twice this many is coded by
# the calling process alone (a hand-off costs about what a few blocks of work do).
MIN_CHUNK = 12
# The decoding process's own chunk, against each worker's: it also runs the range
# coder, which takes about 0.4 of the networks' time (benchmarks/speed.py, part 3).
# (0.25 and 0.2 measured no better; the encoder's coder, 0.1 of its networks' time,
# runs while the workers compute the next wavefront, so its chunks are equal.)
DECODER_SHARE = 0.5
# A decoding worker's chunk goes in this many pieces (of at least MIN_CHUNK / 2
# blocks), so that the coder decodes one piece while the worker computes the next
# piece's entropy network, and the worker synthesises it while the coder goes on.
PIECES = 2
# Network family 3 (coding groups): the decoding process's own chunk, against each
# worker's. Besides its chunk's networks it decodes every group of the wavefront and
# computes the later groups' scale corrections.
GROUP_DECODER_SHARE = 0.5
# and the least blocks of a worker's chunk there (the workers' networks run while this
# process waits or decodes, so smaller wavefronts are worth splitting than above).
GROUP_MIN_CHUNK = 6


def _workers(threads: int | None, rows: int, cols: int, model: CodingModel) -> int:
    """Processes coding an image, this one included: as many as asked (default: the
    cores), no more than its largest wavefront keeps busy; 0 (this process alone) for
    one, where workers cannot be forked safely (parallel.can_fork), or for a model
    other than the integer networks (the float model of networks.py runs torch, which
    is not to be forked)."""
    n = default_threads() if threads is None else threads  # checked by encode and decode
    widest = min(rows, (cols + 1) // 2)  # blocks in the largest wavefront
    n = min(n, max(1, widest // MIN_CHUNK))
    return n if n > 1 and can_fork() and isinstance(model, FrozenModel) else 0


def _shared_state(model: CodingModel, rows: int, cols: int, height: int, width: int,
                  shared: bool, rolling: bool = True) -> tuple[Canvas, BlockContext, np.ndarray]:
    """The canvas, the block context and the output image; in shared memory for workers
    (with a feature canvas made up front for each kernel-3 layer of the integer model)."""
    canvas = Canvas(rows, cols, rolling=rolling, shared=shared)  # rolling: two block rows
    ctx = BlockContext(rows, cols, rolling=True)
    if not shared:
        return canvas, ctx, np.empty((height, width, 3), dtype=np.uint8)
    assert isinstance(model, FrozenModel)
    for st in model.stacks().values():
        for i, layer in enumerate(st.layers):
            if layer.k == 3:
                ctx.add_features((id(st), i), layer.W.shape[1] // 5, np.int16, shared=True)
    return canvas, ctx, shared_zeros((height, width, 3), np.uint8)


def _neighbours(model: CodingModel, canvas: Canvas, qp: Any) -> Callable:
    """(r, c) -> what the model's networks take as neighbours: the vectors, in the form
    exact.FrozenModel.prepare gives them where the model has it."""
    prepare = getattr(model, "prepare", None)
    if prepare is None:
        return canvas.neighbours
    return lambda r, c: prepare(canvas.neighbours(r, c, ones=True), qp)


class _PostLoop:
    """The post-loop filter (model.finish) shared by this process and its n - 1 forked
    workers: process i filters band i of n of the filter's rows into an output in shared
    memory (made here, before the workers are forked). Each cell reads only the loop's
    image, so the bands make the same image as one pass. Without workers or a filter,
    run() is model.finish in this process."""

    def __init__(self, model: CodingModel, qp: Any, img: np.ndarray, n: int) -> None:
        self.model, self.qp, self.img, self.n = model, qp, img, n
        self.shared = n > 1 and isinstance(model, FrozenModel) and model.postfilter is not None
        self.out = shared_zeros(img.shape, np.uint8) if self.shared else img

    def _band(self, i: int) -> None:
        assert isinstance(self.model, FrozenModel)
        self.model.finish(self.img, self.qp, self.out, (i, self.n))

    def serve(self, i: int, conn: Any) -> None:
        """Worker i + 1's band, after the loop."""
        if self.shared:
            receive(conn)
            self._band(i + 1)
            reply(conn)

    def run(self, workers: Forked | None = None) -> np.ndarray:
        """The filtered image (with the workers' help, where they were forked for it)."""
        if not self.shared or workers is None:
            return self.model.finish(self.img, self.qp)
        for i in range(self.n - 1):
            workers.send(i, b"f")
        self._band(0)
        for i in range(self.n - 1):
            workers.recv(i)
        return self.out


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
           progress: Callable[[int], None] | None = None, effort: int = efforts.DEFAULT,
           threads: int | None = None) -> tuple[bytes, np.ndarray]:
    """HxWx3 RGB or HxW grayscale uint8 -> (.bbc bytes, the decoder's exact output).

    Grayscale is coded as RGB with equal channels and decoded back to one channel.
    threads: how many processes share the wavefronts' blocks (default: the cores this
    process may use; see the module docstring); the bytes are the same for any number.
    Memory: besides the image and its reconstruction, two block rows of canvas per
    column (and of each kernel-3 layer's features); blocks are gathered from the image
    per wavefront and symbols are range-coded as they come (wavefront schedule) or
    kept as int16 with uint8 scale indices (raster), never as whole-image arrays.
    progress, if given, is called with the number of pixels of each step's blocks.

    effort > 1 (effort.py) codes the image more than once: at effort 1 for a proxy of the
    blocks not yet coded (level.needs_proxy; this pass uses the workers as above), then
    choosing each block's symbols (rdoq.Chooser); wavefront only. The choosing pass runs
    in this process alone, whatever threads says: the Chooser judges each wavefront's
    blocks against the whole canvas (its own, the proxy's, of new_canvas's layout) and
    the padded image's block grid, which the workers do not share. It holds those
    whole-image arrays, as before #19.
    """
    level = efforts.LEVELS[efforts.check(effort)]
    threads = parallel.check_threads(threads)  # whatever the effort and schedule use of it
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
    choose = None
    if level is not None:
        frozen = rdoq.check_model(model)
        proxy = None
        if level.needs_proxy:  # the effort-1 canvas, whole (and with the workers, if any)
            proxy = _code(model, qp, img, schedule, threads, None, None, whole_canvas=True)[2]
        choose = rdoq.Chooser(frozen, qp, blocks.block_grid(blocks.pad_to_blocks(img)), proxy, level)
        del proxy
    payload, rec, _ = _code(model, qp, img, schedule, threads, choose, progress)
    del choose
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


def _code(model: CodingModel, qp: Any, img: np.ndarray, schedule: str, threads: int | None,
          choose: Choose | None, progress: Callable[[int], None] | None,
          whole_canvas: bool = False) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """The encoder's loop over an HxWx3 image -> (range-coded payload, the decoder's
    image, and with whole_canvas the reconstruction canvas of every block in
    blocks.new_canvas's layout, else None). The image is post-filtered unless
    whole_canvas (the proxy pass of encode, which needs only the canvas).
    choose(r, c, nb, mean, scales, y) picks the symbols and returns them with their
    reconstruction, which it has computed (default: y - mean rounded, synthesised here;
    nb the plain (B, 768) neighbour vectors): with choose the loop runs in this process
    alone (it is called per wavefront, in wavefront order)."""
    height, width = img.shape[:2]
    rows, cols = blocks.grid_shape(height, width)
    in_order = schedule == "wavefront"  # symbols come in bitstream order: code them at once
    n = _workers(threads, rows, cols, model) if in_order and choose is None else 0
    canvas, ctx, rec = _shared_state(model, rows, cols, height, width, n > 0, rolling=not whole_canvas)
    neighbours = _neighbours(model, canvas, qp)
    L, M = model.max_symbol, model.M
    coder = entropy.SymbolEncoder(L)

    def code(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        r, c = chunk
        at = ctx.chunk(r, c)
        nb = neighbours(r, c)
        mean, scales = model.entropy_params(nb, qp, at)
        y = model.analyse(blocks.gather_pixels(img, r, c), nb, qp, at)
        if choose is None:
            sym = np.clip(np.rint(y - mean), -L, L)
            out = model.synthesise(sym, mean, nb, qp, at)
        else:
            plain = nb.nb[:, : 4 * blocks.BLOCK_CH] if isinstance(nb, Prepared) else nb
            sym, out = choose(r, c, plain, mean, scales, y)
        canvas.put(r, c, out)
        blocks.put_pixels(rec, r, c, out)
        idx = np.empty(sym.shape, dtype=np.uint8)
        for group, g_idx in model.scale_groups(scales, sym, qp):  # the encoder knows every group's symbols
            idx[:, group] = g_idx
        return sym, idx

    order = model.group_columns()

    def emit(parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Range-code a wavefront's (symbols, scale indices), given as contiguous runs of
        its blocks in wavefront order: group by group, each group's channels of every
        block in wavefront order (docs/format.md 3; one group for families 1 and 2)."""
        for group in order:
            for sym, idx in parts:
                coder.encode(sym[:, group], model.scale_table[idx[:, group]])

    if not in_order:
        assert L < 2**15 and len(model.scale_table) <= 256
        symbols = np.zeros((rows, cols, M), dtype=np.int16)
        scale_idx = np.zeros((rows, cols, M), dtype=np.uint8)
        for r, c in SCHEDULES[schedule](rows, cols):
            symbols[r, c], scale_idx[r, c] = code((r, c))
            if progress is not None:
                progress(len(r) * blocks.BLOCK * blocks.BLOCK)
        for r, c in blocks.wavefronts(rows, cols):
            emit([(symbols[r, c], scale_idx[r, c])])
    elif not n:
        for r, c in blocks.wavefronts(rows, cols):
            emit([code((r, c))])
            if progress is not None:
                progress(len(r) * blocks.BLOCK * blocks.BLOCK)
    else:
        waves = [(r, c) for r, c in blocks.wavefronts(rows, cols) if len(r)]

        def serve(i: int, conn: Any) -> None:  # worker i + 1: chunk i + 1 of each wavefront cut in chunks
            for r, c in waves:
                chunks = split(r, c, n, MIN_CHUNK)
                if len(chunks) > 1:
                    receive(conn)  # go: the blocks before this wavefront are done
                    if i + 1 < len(chunks):
                        sym, idx = code(chunks[i + 1])
                        reply(conn, sym.astype(np.int16).tobytes() + idx.astype(np.uint8).tobytes())
                    else:
                        reply(conn)
            post.serve(i, conn)

        pending: list[tuple[np.ndarray, np.ndarray]] = []  # coded while the next wavefront runs
        post = _PostLoop(model, qp, rec, 1 if whole_canvas else n)  # the proxy pass: no filter (one: no bands)
        with Forked(n - 1, serve) as workers:
            for r, c in waves:
                chunks = split(r, c, n, MIN_CHUNK)
                if len(chunks) > 1:
                    for i in range(n - 1):
                        workers.send(i, b"g")
                parts = [code(chunks[0])]  # this process codes the first chunk
                emit(pending)
                if len(chunks) > 1:
                    for i in range(n - 1):
                        data = workers.recv(i)
                        if i + 1 < len(chunks):
                            b = len(chunks[i + 1][0]) * M
                            parts.append((np.frombuffer(data[: 2 * b], np.int16).reshape(-1, M),
                                          np.frombuffer(data[2 * b :], np.uint8).reshape(-1, M)))
                pending = parts
                if progress is not None:
                    progress(len(r) * blocks.BLOCK * blocks.BLOCK)
            emit(pending)
            filtered = rec if whole_canvas else post.run(workers)  # the post-loop filter (family 3), in bands
    if whole_canvas:
        return coder.payload(), rec, canvas.data
    return coder.payload(), filtered if n else model.finish(rec, qp), None  # the post-loop filter (family 3)


@_one_blas_thread
def decode(header: format.Header, payload: bytes, weights: Weights, schedule: str = "wavefront",
           progress: Callable[[int], None] | None = None, threads: int | None = None) -> np.ndarray:
    """Header + payload (from format.unpack) -> HxWx3 (or HxW grayscale) uint8, digest-checked
    (progress and threads as for encode)."""
    threads = parallel.check_threads(threads)  # whatever the schedule's use of it
    model = weights.model
    if schedule == "sequential" and len(model.group_columns()) > 1:
        raise ValueError("one block at a time reads a block's symbols together: network families 1 and 2 "
                         "only (family 3 writes a wavefront group by group)")
    qp = model.params_at(header.quality_x256)
    rows, cols = blocks.grid_shape(header.height, header.width)
    n = _workers(threads, rows, cols, model) if schedule == "wavefront" else 0
    canvas, ctx, img = _shared_state(model, rows, cols, header.height, header.width, n > 0)
    neighbours = _neighbours(model, canvas, qp)
    dec = entropy.SymbolDecoder(payload, model.max_symbol)
    M = model.M

    def predict(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[Any, BlockContext, np.ndarray, Scales]:
        r, c = chunk
        at = ctx.chunk(r, c)
        nb = neighbours(r, c)
        mean, scales = model.entropy_params(nb, qp, at)
        return nb, at, mean, scales

    def one_group(scales: Scales) -> np.ndarray:  # the scale indices of a one-group model (forked path)
        ((_, idx),) = model.scale_groups(scales, np.empty(0), qp)
        return idx

    def reconstruct(nb: Any, at: BlockContext, mean: np.ndarray, sym: np.ndarray) -> None:
        out = model.synthesise(sym, mean, nb, qp, at)
        canvas.put(at.r, at.c, out)
        blocks.put_pixels(img, at.r, at.c, out)

    def one(r: np.ndarray, c: np.ndarray) -> None:  # a wavefront (or block) in this process
        nb, at, mean, scales = predict((r, c))
        sym = np.zeros(mean.shape)
        for group, idx in model.scale_groups(scales, sym, qp):  # group g reads sym's earlier groups
            sym[:, group] = dec.decode(model.scale_table[idx], check=False)
        dec.check_words()  # once per wavefront (docs/format.md, check 9), as the forked loops do
        reconstruct(nb, at, mean, sym)

    def grouped(n: int) -> np.ndarray:
        """The forked loop for a model with coding groups (network family 3): per
        wavefront, each process runs the entropy network and the group heads' products of
        its chunk (the workers' chunks first, in bitstream order, this process's last),
        into shared memory; this process then decodes the wavefront group by group, each
        group's scales corrected from the earlier groups' symbols, over all its blocks
        at once; a worker synthesises its chunk as soon as the last group's symbols of
        its blocks are decoded, while this process decodes the rest. Four messages per
        worker and wavefront: go, scales ready, symbols ready, done."""
        assert isinstance(model, FrozenModel)
        waves = [(r, c) for r, c in blocks.wavefronts(rows, cols) if len(r)]
        widest = max(len(r) for r, _ in waves)
        scale_buf = shared_zeros((widest, M + model.products_width), np.float64)  # [log-scales, products]
        sym_buf = shared_zeros((widest, M), np.float64)
        last = len(model.group_columns()) - 1

        def cut(r: np.ndarray, c: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
            chunks = split(r, c, n, min(MIN_CHUNK, GROUP_MIN_CHUNK), GROUP_DECODER_SHARE, last=True)
            return chunks, np.cumsum([0] + [len(cr) for cr, _ in chunks])

        def scales_of(chunk: tuple[np.ndarray, np.ndarray], a: int, b: int) -> tuple[Any, BlockContext, np.ndarray]:
            nb, at, mean, scales = predict(chunk)
            scales = model.with_products(scales)
            scale_buf[a:b, :M] = scales.log_scale
            scale_buf[a:b, M:] = scales.products
            return nb, at, mean

        def serve(i: int, conn: Any) -> None:  # worker i + 1: chunk i of each wavefront cut in chunks
            for r, c in waves:
                chunks, ends = cut(r, c)
                if i + 1 < len(chunks):
                    receive(conn)  # go: the blocks before this wavefront are done
                    nb, at, mean = scales_of(chunks[i], ends[i], ends[i + 1])
                    reply(conn)  # its scales are in scale_buf
                    receive(conn)  # its symbols are in sym_buf
                    reconstruct(nb, at, mean, sym_buf[ends[i] : ends[i + 1]])
                    reply(conn)  # done
            post.serve(i, conn)

        post = _PostLoop(model, qp, img, n)
        with Forked(n - 1, serve) as workers:
            for r, c in waves:
                chunks, ends = cut(r, c)
                if len(chunks) == 1:
                    one(r, c)
                else:
                    k, B = len(chunks) - 1, len(r)
                    for i in range(k):
                        workers.send(i, b"g")
                    nb, at, mean = scales_of(chunks[k], ends[k], B)
                    for i in range(k):
                        workers.recv(i)
                    sym = sym_buf[:B]  # a group's scales read the earlier groups' columns, set by then
                    scales = Scales(scale_buf[:B, :M], None, scale_buf[:B, M:])
                    done = []  # (symbols, stds) to account, in bitstream order, once the workers have theirs
                    for g, (group, idx) in enumerate(model.scale_groups(scales, sym, qp)):
                        stds = model.scale_table[idx]
                        if g < last:
                            sym[:, group] = part = dec.decode_only(stds)
                            done.append((part, stds))
                            continue
                        for i in range(k + 1):  # the last group chunk by chunk, each worker told at once
                            part = dec.decode_only(stds[ends[i] : ends[i + 1]])
                            sym[ends[i] : ends[i + 1], group] = part
                            if i < k:
                                workers.send(i, b"s")
                            done.append((part, stds[ends[i] : ends[i + 1]]))
                    for part, stds in done:
                        dec.account(part, stds)
                    dec.check_words()  # once per wavefront (docs/format.md, check 9)
                    reconstruct(nb, at, mean, sym[ends[k] :])
                    for i in range(k):
                        workers.recv(i)
                if progress is not None:
                    progress(len(r) * blocks.BLOCK * blocks.BLOCK)
            dec.finish()
            return post.run(workers)

    try:
        if not n:
            for r, c in DECODE_SCHEDULES[schedule](rows, cols):
                one(r, c)
                if progress is not None:
                    progress(len(r) * blocks.BLOCK * blocks.BLOCK)
            dec.finish()
            filtered = model.finish(img, qp)  # the post-loop filter (family 3)
        elif len(model.group_columns()) > 1:
            filtered = grouped(n)
        else:
            waves = [(r, c) for r, c in blocks.wavefronts(rows, cols) if len(r)]

            def pieces(chunk: tuple[np.ndarray, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
                return split(*chunk, PIECES, MIN_CHUNK // 2)

            def serve(i: int, conn: Any) -> None:  # worker i + 1: entropy network, symbols, synthesis
                for r, c in waves:
                    chunks = split(r, c, n, MIN_CHUNK, DECODER_SHARE)
                    if len(chunks) > 1:
                        receive(conn)  # go
                        if i + 1 < len(chunks):
                            done = []
                            for piece in pieces(chunks[i + 1]):
                                nb, at, mean, scales = predict(piece)
                                idx = one_group(scales)
                                reply(conn, idx.astype(np.uint8).tobytes())
                                done.append((nb, at, mean, idx.shape))
                            for nb, at, mean, shape in done:
                                sym = np.frombuffer(receive(conn), np.int16).reshape(shape)
                                reconstruct(nb, at, mean, sym.astype(np.float64))
                        reply(conn)  # done
                post.serve(i, conn)

            post = _PostLoop(model, qp, img, n)
            with Forked(n - 1, serve) as workers:
                for r, c in waves:
                    chunks = split(r, c, n, MIN_CHUNK, DECODER_SHARE)
                    if len(chunks) == 1:
                        one(r, c)
                    else:
                        for i in range(n - 1):
                            workers.send(i, b"g")
                        # This process: the first chunk, and every piece's symbols as soon as
                        # its entropy network is done, in bitstream order; a worker
                        # synthesises a piece while the next pieces' symbols are decoded.
                        nb, at, mean, scales = predict(chunks[0])
                        stds = model.scale_table[one_group(scales)]
                        sym0 = dec.decode_only(stds)
                        later = []
                        for i, chunk in enumerate(chunks[1:]):
                            for cr, _ in pieces(chunk):
                                s_i = model.scale_table[np.frombuffer(workers.recv(i), np.uint8).reshape(len(cr), M)]
                                sym = dec.decode_only(s_i)
                                workers.send(i, sym.astype(np.int16).tobytes())
                                later.append((sym, s_i))
                        dec.account(sym0, stds)
                        for sym, s_i in later:
                            dec.account(sym, s_i)
                        reconstruct(nb, at, mean, sym0.astype(np.float64))
                        dec.check_words()  # once per wavefront (docs/format.md, check 9)
                        for i in range(n - 1):
                            workers.recv(i)
                    if progress is not None:
                        progress(len(r) * blocks.BLOCK * blocks.BLOCK)
                dec.finish()
                filtered = post.run(workers)
    except entropy.EntropyError as e:
        raise DecodeError(f"corrupt payload: {e}") from None
    img = filtered
    if header.channels == 1:
        img = to_gray(img)
    if digest(img) != header.image_digest:
        raise DecodeError("decoded image does not match the encoder's (digest mismatch): corrupt file or non-exact decoder")
    return img
