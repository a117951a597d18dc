"""The coding loop: the only place where the networks meet the entropy coder.

Encoder, for each wavefront of blocks (blocks.py):
  neighbours -> entropy params (mean, scale index)      [exact integer nets]
  block + neighbours -> latents; symbols = round(latent - mean), clipped
  symbols + mean -> synthesis -> reconstructed block, written to the canvas
and the wavefront's symbols are range-coded, in wavefront order, each block row's into
its stream (symbols of scale index 0 are left out: they are 0). The decoder runs the
same loop with symbols read from the coder instead of computed from the image. Both
use exact.py's integer arithmetic, so their canvases agree bit for bit on any machine;
the file's image digest proves it.

Parallel coding (threads > 1): the payload is cut into streams by block row (streams.py,
docs/format.md 4.1), and each process owns whole streams. Per wavefront, each process
codes the blocks of its streams: entropy network, the symbols group by group (family 3:
a later group's scales corrected from the earlier groups'), range coding of its own
streams, synthesis into the shared canvas and output image; the wavefront ends when all
have (two messages per worker: go, done). Where every process has blocks in a
wavefront, the first layers' neighbour products come first, each process computing
its share of the weights' rows for all the wavefront's blocks (_FirstLayers: one more
hand-off, and each process packs a part of those weights instead of all of them).
Exact arithmetic makes every block's result
independent of the cut, and each stream is coded in its own order, so files and images
are the same for any number of processes (at most the streams: a version 1 file, of one
stream, is decoded in this process alone). The calling process is one of them; the
others are processes forked for the image (parallel.Forked), sharing the canvas and
the output image. Threads would not do: the range coder (constriction) holds Python's
GIL while it runs, and the networks need it between their many numpy calls, so threads
took turns rather than working at once (measured: a thread of matrix products beside a
thread of range coding made 98 products/s instead of 2888). The float model, efforts
above 1 (choosing) and processes that cannot fork safely (no os.fork, or other threads
running) code in the calling process alone. The post-loop filter (model.finish) runs
after the loop, each process filtering a band of the image's rows (_PostLoop).

Memory: the canvas keeps two block rows per column (blocks.Canvas), blocks go
straight into the output image, and symbols are coded as each wavefront passes, so
besides the input and output images the loop holds O(width) data.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from ..errors import DecodeError, ImageError
from ..model import blocks
from ..model import quality as Q
from ..model.blocks import BlockContext, Canvas
from ..model.exact import FrozenModel, Prepared, Read, Scales, mm
from ..model.weights import Weights
from . import effort as efforts
from . import entropy, format, rdoq, streams
from . import workers as parallel
from .workers import Forked, can_fork, default_threads, receive, reply, shared_zeros

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
    def decode_symbols(self, scales: Scales, params: Any, read: Read) -> np.ndarray: ...
    def group_columns(self) -> list[np.ndarray | slice]: ...
    def finish(self, img: np.ndarray, params: Any) -> np.ndarray: ...
    def analyse(self, block: np.ndarray, nb: Any, params: Any, ctx: BlockContext) -> np.ndarray: ...
    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: Any, params: Any,
                   ctx: BlockContext) -> np.ndarray: ...


def _workers(threads: int | None, rows: int, cols: int, model: CodingModel, n_streams: int) -> int:
    """Processes coding an image, this one included: as many as asked (default: the
    cores), no more than its payload streams (each process owns whole streams) or its
    largest wavefront keeps busy; 0 (this process alone) for one, where workers cannot
    be forked safely (parallel.can_fork), or for a model other than the integer networks
    (the float model of networks.py runs torch, which is not to be forked)."""
    n = default_threads() if threads is None else threads  # checked by encode and decode
    n = min(n, n_streams, max(1, blocks.widest(rows, cols) // streams.MIN_CHUNK))
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


_BLAS = ThreadpoolController()  # numpy's BLAS, loaded by now; found once (0.4 ms a search)


def _one_blas_thread(fn: Callable) -> Callable:
    """Run fn with a single BLAS thread: the per-wavefront matrices are small, and a
    second thread only adds hand-offs (and spins against any other busy process)."""

    @wraps(fn)
    def inner(*args, **kwargs):
        with _BLAS.limit(limits=1, user_api="blas"):
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
           threads: int | None = None, n_streams: int | None = None) -> tuple[bytes, np.ndarray]:
    """HxWx3 RGB or HxW grayscale uint8 -> (.bbc bytes, the decoder's exact output).

    Grayscale is coded as RGB with equal channels and decoded back to one channel.
    threads: how many processes share the wavefronts' blocks (default: the cores this
    process may use; see the module docstring); the bytes are the same for any number.
    n_streams: the payload's substreams (default streams.default_count; at most one per
    block row and 64): a decoder uses at most that many processes; each costs ~4 bytes.
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
    if n_streams is None:
        n_streams = streams.default_count(*blocks.grid_shape(height, width))
    format.check_streams(n_streams, height)
    model = weights.model
    quality_x256 = Q.to_x256(quality)
    qp = model.params_at(quality_x256)
    choose = None
    if level is not None:
        frozen = rdoq.check_model(model)
        proxy = None
        if level.needs_proxy:  # the effort-1 canvas, whole (and with the workers, if any)
            proxy = _code(model, qp, img, schedule, threads, None, None, n_streams, whole_canvas=True)[2]
        choose = rdoq.Chooser(frozen, qp, blocks.block_grid(blocks.pad_to_blocks(img)), proxy, level)
        del proxy
    payload, rec, _ = _code(model, qp, img, schedule, threads, choose, progress, n_streams)
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
        streams=n_streams,
    )
    return format.pack(header, payload), rec


def _indices(model: CodingModel, scales: Scales, sym: np.ndarray, qp: Any) -> np.ndarray:
    """The scale-table index of each symbol (B, M), group by group (a group's may depend
    on the earlier groups' symbols); the symbols of index 0 are set to 0 in sym first,
    since the payload leaves them out and the decoder reads 0 (docs/format.md 4)."""
    idx = np.empty(sym.shape, dtype=np.uint8)
    for group, g_idx in model.scale_groups(scales, sym, qp):  # the encoder knows every group's symbols
        g_sym = sym[:, group]
        g_sym[g_idx == 0] = 0
        sym[:, group] = g_sym
        idx[:, group] = g_idx
    return idx


def _blocks_done(progress: Callable[[int], None] | None) -> Callable[[int], None]:
    """n blocks done -> progress(their pixels), or nothing without a progress callback."""
    if progress is None:
        return lambda n_blocks: None
    return lambda n_blocks: progress(n_blocks * blocks.BLOCK * blocks.BLOCK)


Shares = list[tuple[np.ndarray, np.ndarray]]  # a wavefront's blocks of each process (streams.shares)


def _waves(rows: int, cols: int, n_streams: int, n: int) -> list[Shares]:
    """Each wavefront's blocks of each of n processes (streams.shares)."""
    return [streams.shares(r, c, n_streams, n) for r, c in blocks.wavefronts(rows, cols) if len(r)]


class _FirstLayers:
    """The first layers' neighbour products (Prepared.first) of a wavefront's blocks,
    computed by its n processes together: each process multiplies every block's
    neighbours by its n-th of the weights' rows, into memory they share, then takes its
    own blocks' rows of all of them. OpenBLAS packs a product's whole weight matrix
    whatever the batch, the bulk of a small product's time, so each process packing 1/n
    of the weights for all blocks beats packing all of them for 1/n of the blocks (a
    Kodak wavefront's 14 blocks of 2 processes: 255 -> 186 us for the decoder's two,
    one more hand-off). Integer sums, exact in any order: the same values as the
    process's own product. Used where every process has blocks in the wavefront."""

    def __init__(self, model: FrozenModel, qp: Any, canvas: Canvas, names: tuple[str, ...], n: int,
                 widest: int) -> None:
        self.canvas, self.weights = canvas, model.first_layers(qp)
        stacked = np.concatenate([self.weights[k] for k in names])
        ends = np.cumsum([len(self.weights[k]) for k in names]).tolist()
        self.columns = {k: slice(e - len(self.weights[k]), e) for k, e in zip(names, ends, strict=True)}
        cuts = [len(stacked) * i // n for i in range(n + 1)]
        self.rows = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        self.parts = [np.ascontiguousarray(stacked[k]) for k in self.rows]
        self.out = shared_zeros((widest, len(stacked)), np.float64)  # made before the workers are forked

    @staticmethod
    def splits(shares: Shares) -> bool:
        return all(len(r) for r, _ in shares)

    def compute(self, shares: Shares, i: int) -> None:
        """Process i's rows of every block's products (blocks in process order)."""
        r = np.concatenate([r for r, _ in shares])
        c = np.concatenate([c for _, c in shares])
        self.out[: len(r), self.rows[i]] = mm(self.canvas.neighbours(r, c, ones=True), self.parts[i])

    def prepared(self, shares: Shares, i: int) -> Prepared:
        """Process i's blocks' products, once every process has computed its rows."""
        start = sum(len(r) for r, _ in shares[:i])
        own = self.out[start : start + len(shares[i][0])]
        return Prepared(None, self.weights, {k: np.asfortranarray(own[:, cols]) for k, cols in self.columns.items()})


Work = Callable[[np.ndarray, np.ndarray, Prepared | None], bytes]  # blocks (r, c), their first layers if given


def _lockstep(workers: Forked, waves: list[Shares], work: Work, first: _FirstLayers | None = None
              ) -> Iterator[tuple[Shares, list[bytes]]]:
    """This process's side of the wavefront loop: per wavefront, tell the workers with
    blocks in it to go, (with first, where all have blocks: compute this process's rows
    of the first layers, wait for theirs, tell them to go on), do this process's blocks
    (work), and yield the wavefront's shares with the workers' replies (the wavefront is
    then done in every process)."""
    for shares in waves:
        busy = [i for i in range(1, len(shares)) if len(shares[i][0])]
        for i in busy:
            workers.send(i - 1, b"g")
        given = None
        if first is not None and first.splits(shares):
            first.compute(shares, 0)
            for i in busy:
                workers.recv(i - 1)
            for i in busy:
                workers.send(i - 1, b"b")
            given = first.prepared(shares, 0)
        r, c = shares[0]
        if len(r):
            work(r, c, given)
        yield shares, [workers.recv(i - 1) for i in busy]


def _serve_lockstep(conn: Any, waves: list[Shares], i: int, work: Work, first: _FirstLayers | None = None) -> None:
    """Worker i's side (i >= 1): its blocks of each wavefront once told to go (and its
    rows of the first layers, as _lockstep); work's bytes are its reply."""
    for shares in waves:
        r, c = shares[i]
        if len(r):
            receive(conn)  # go: the blocks before this wavefront are done
            given = None
            if first is not None and first.splits(shares):
                first.compute(shares, i)
                reply(conn)
                receive(conn)  # every process's rows are in
                given = first.prepared(shares, i)
            reply(conn, work(r, c, given))


def _pack_parts(parts: dict[int, bytes]) -> bytes:
    """A worker's stream payloads as one message: (stream, length, bytes) each."""
    return b"".join(struct.pack("<II", s, len(p)) + p for s, p in parts.items())


def _unpack_parts(data: bytes) -> dict[int, bytes]:
    parts, at = {}, 0
    while at < len(data):
        s, n = struct.unpack_from("<II", data, at)
        parts[s] = data[at + 8 : at + 8 + n]
        at += 8 + n
    return parts


def _code(model: CodingModel, qp: Any, img: np.ndarray, schedule: str, threads: int | None,
          choose: Choose | None, progress: Callable[[int], None] | None, n_streams: int,
          whole_canvas: bool = False) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """The encoder's loop over an HxWx3 image -> (payload of n_streams streams, the
    decoder's image, and with whole_canvas the reconstruction canvas of every block in
    blocks.new_canvas's layout, else None). The image is post-filtered unless
    whole_canvas (the proxy pass of encode, which needs only the canvas).
    choose(r, c, nb, mean, scales, y) picks the symbols and returns them with their
    reconstruction, which it has computed (default: y - mean rounded, synthesised here;
    nb the plain (B, 768) neighbour vectors): with choose the loop runs in this process
    alone (it is called per wavefront, in wavefront order)."""
    height, width = img.shape[:2]
    rows, cols = blocks.grid_shape(height, width)
    in_order = schedule == "wavefront"  # symbols come in bitstream order: code them at once
    n = _workers(threads, rows, cols, model, n_streams) if in_order and choose is None else 0
    canvas, ctx, rec = _shared_state(model, rows, cols, height, width, n > 0, rolling=not whole_canvas)
    neighbours = _neighbours(model, canvas, qp)
    L, M = model.max_symbol, model.M
    groups = model.group_columns()

    def code(r: np.ndarray, c: np.ndarray, given: Prepared | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(symbols, scale indices) of blocks (r, c), reconstructed into the canvas (given:
        their first layers' products, _FirstLayers)."""
        at = ctx.chunk(r, c)
        nb = neighbours(r, c) if given is None else given
        mean, scales = model.entropy_params(nb, qp, at)
        y = model.analyse(blocks.gather_pixels(img, r, c), nb, qp, at)
        if choose is None:
            sym = np.clip(np.rint(y - mean), -L, L)
            idx = _indices(model, scales, sym, qp)
            out = model.synthesise(sym, mean, nb, qp, at)
        else:
            if isinstance(nb, Prepared):  # choose runs in this process alone: never given products
                assert nb.nb is not None
                plain = nb.nb[:, : 4 * blocks.BLOCK_CH]
            else:
                plain = nb
            chosen, out = choose(r, c, plain, mean, scales, y)
            sym = np.array(chosen, dtype=np.float64)
            idx = _indices(model, scales, sym, qp)
            if not np.array_equal(sym, chosen):  # a symbol the payload leaves out (rare): 0, as decoded
                out = model.synthesise(sym, mean, nb, qp, at)
        canvas.put(r, c, out)
        blocks.put_pixels(rec, r, c, out)
        return sym, idx

    def writer(i: int, k: int) -> streams.Writer:
        return streams.Writer(streams.owned(n_streams, k, i), n_streams, model.scale_table, L)

    done = _blocks_done(progress)

    if not in_order:
        assert L < 2**15 and len(model.scale_table) <= 256
        symbols = np.zeros((rows, cols, M), dtype=np.int16)
        scale_idx = np.zeros((rows, cols, M), dtype=np.uint8)
        for r, c in SCHEDULES[schedule](rows, cols):
            symbols[r, c], scale_idx[r, c] = code(r, c)
            done(len(r))
        w = writer(0, 1)
        for r, c in blocks.wavefronts(rows, cols):
            ((r, c),) = streams.shares(r, c, n_streams, 1)  # in stream order
            w.write(r, symbols[r, c], scale_idx[r, c], groups)
        parts = w.payloads()
    elif not n:
        w = writer(0, 1)
        for r, c in blocks.wavefronts(rows, cols):
            ((r, c),) = streams.shares(r, c, n_streams, 1)  # in stream order
            w.write(r, *code(r, c), groups)
            done(len(r))
        parts = w.payloads()
    else:
        waves = _waves(rows, cols, n_streams, n)

        def code_into(w: streams.Writer) -> Work:
            def work(r: np.ndarray, c: np.ndarray, given: Prepared | None) -> bytes:
                w.write(r, *code(r, c, given), groups)
                return b""
            return work

        def serve(i: int, conn: Any) -> None:  # worker i + 1: the blocks of its streams in each wavefront
            w = writer(i + 1, n)
            _serve_lockstep(conn, waves, i + 1, code_into(w), first)
            reply(conn, _pack_parts(w.payloads()))
            post.serve(i, conn)

        post = _PostLoop(model, qp, rec, 1 if whole_canvas else n)  # the proxy pass: no filter (one: no bands)
        assert isinstance(model, FrozenModel)
        first = _FirstLayers(model, qp, canvas, ("ga", "he", "gs"), n, blocks.widest(rows, cols))
        w = writer(0, n)
        with Forked(n - 1, serve) as workers:
            for shares, _ in _lockstep(workers, waves, code_into(w), first):
                done(sum(len(r) for r, _ in shares))
            parts = w.payloads()
            for i in range(n - 1):
                parts.update(_unpack_parts(workers.recv(i)))
            filtered = rec if whole_canvas else post.run(workers)  # the post-loop filter (family 3), in bands
    payload = streams.join([parts[s] for s in range(n_streams)])
    if whole_canvas:
        return payload, rec, canvas.data
    return payload, filtered if n else model.finish(rec, qp), None  # the post-loop filter (family 3)


def _failure(found: tuple[int, str] | None) -> bytes:
    """A worker's report of its streams' first failure (streams.Reader.failure), or b""."""
    return b"" if found is None else f"{found[0]}:{found[1]}".encode()


def _failure_of(data: bytes) -> tuple[int, str] | None:
    if not data:
        return None
    s, _, message = data.decode().partition(":")
    return int(s), message


@_one_blas_thread
def decode(header: format.Header, payload: bytes, weights: Weights, schedule: str = "wavefront",
           progress: Callable[[int], None] | None = None, threads: int | None = None) -> np.ndarray:
    """Header + payload (from format.unpack) -> HxWx3 (or HxW grayscale) uint8, digest-checked
    (progress and threads as for encode; a version 1 file, of one stream, is decoded in
    this process alone).

    The processes own whole streams (streams.owned): per wavefront, each decodes the
    symbols of its streams' blocks, group by group, and synthesises those blocks; the
    wavefront ends when all have (two messages per worker: go, done). A stream that
    fails is reported at the end of its wavefront, the lowest such stream's error first
    (streams.Reader), so a corrupt file fails the same way for any number of threads."""
    threads = parallel.check_threads(threads)  # whatever the schedule's use of it
    model = weights.model
    if schedule == "sequential" and len(model.group_columns()) > 1:
        raise ValueError("one block at a time reads a block's symbols together: network families 1 and 2 "
                         "only (family 3 writes a wavefront group by group)")
    qp = model.params_at(header.quality_x256)
    rows, cols = blocks.grid_shape(header.height, header.width)
    S = header.streams
    try:
        parts = streams.split(payload, S)
    except entropy.EntropyError as e:
        raise DecodeError(f"corrupt payload: {e}") from None
    n = _workers(threads, rows, cols, model, S) if schedule == "wavefront" else 0
    canvas, ctx, img = _shared_state(model, rows, cols, header.height, header.width, n > 0)
    neighbours = _neighbours(model, canvas, qp)

    def reader(i: int, k: int) -> streams.Reader:
        return streams.Reader(parts, streams.owned(S, k, i), model.scale_table, model.max_symbol,
                              header.skips_zero_scale)

    def run(r: np.ndarray, c: np.ndarray, rd: streams.Reader, given: Prepared | None = None) -> None:
        """Decode and reconstruct blocks (r, c) of one wavefront, all of rd's streams (in
        stream order, streams.shares; given: their first layers' products, _FirstLayers)."""
        at = ctx.chunk(r, c)
        nb = neighbours(r, c) if given is None else given
        mean, scales = model.entropy_params(nb, qp, at)
        spans = streams.runs(r, S, rd.owned)
        sym = model.decode_symbols(scales, qp, lambda idx, out: rd.read(spans, idx, out))
        rd.check()  # check 9, once per wavefront (docs/format.md 2)
        out = model.synthesise(sym, mean, nb, qp, at)
        canvas.put(r, c, out)
        blocks.put_pixels(img, r, c, out)

    done = _blocks_done(progress)

    def checked(filtered: np.ndarray) -> np.ndarray:
        """The decoded image (grayscale as one channel) once its digest matches (check 10)."""
        out = to_gray(filtered) if header.channels == 1 else filtered
        if digest(out) != header.image_digest:
            raise DecodeError("decoded image does not match the encoder's (digest mismatch): corrupt file or non-exact decoder")
        return out

    try:
        if not n:
            rd = reader(0, 1)
            for r, c in DECODE_SCHEDULES[schedule](rows, cols):
                ((r, c),) = streams.shares(r, c, S, 1)
                run(r, c, rd)
                streams.raise_first([rd.failure()], S)
                done(len(r))
            rd.check(last=True)
            streams.raise_first([rd.failure()], S)
            return checked(model.finish(img, qp))  # the post-loop filter (family 3)
        else:
            waves = _waves(rows, cols, S, n)

            def decode_with(rd: streams.Reader) -> Work:
                def work(r: np.ndarray, c: np.ndarray, given: Prepared | None) -> bytes:
                    run(r, c, rd, given)
                    return _failure(rd.failure())
                return work

            def serve(i: int, conn: Any) -> None:  # worker i + 1: the blocks of its streams in each wavefront
                rd = reader(i + 1, n)
                _serve_lockstep(conn, waves, i + 1, decode_with(rd), first)
                receive(conn)  # the end: the last check
                rd.check(last=True)
                reply(conn, _failure(rd.failure()))
                post.serve(i, conn)

            post = _PostLoop(model, qp, img, n)
            assert isinstance(model, FrozenModel)
            first = _FirstLayers(model, qp, canvas, ("he", "gs"), n, blocks.widest(rows, cols))
            rd = reader(0, n)
            with Forked(n - 1, serve) as workers:
                for shares, replies in _lockstep(workers, waves, decode_with(rd), first):
                    streams.raise_first([rd.failure()] + [_failure_of(x) for x in replies], S)
                    done(sum(len(r) for r, _ in shares))
                for i in range(n - 1):
                    workers.send(i, b"e")
                rd.check(last=True)
                streams.raise_first([rd.failure()] + [_failure_of(workers.recv(i)) for i in range(n - 1)], S)
                return checked(post.run(workers))  # while the workers exit (close reaps them)
    except entropy.EntropyError as e:
        raise DecodeError(f"corrupt payload: {e}") from None
