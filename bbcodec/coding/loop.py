"""The coding loop: the only place where the networks meet the entropy coder.

Encoder, for each wavefront of blocks (model/blocks.py):
  neighbours -> entropy params (mean, scale index)      [exact integer nets]
  block + neighbours -> latents; symbols = round(latent - mean), clipped
  symbols + mean -> synthesis -> reconstructed block, written to the canvas
and the wavefront's symbols are range-coded, in wavefront order, each block row's into
its stream (symbols of scale index 0 are left out: they are 0). The decoder runs the
same loop with symbols read from the coder instead of computed from the image. Both
use the integer arithmetic of bbcodec.model, so their canvases agree bit for bit on any
machine; the file's image digest proves it. After the loop, the post-loop filter
(family 3) makes the decoded image.

Flat blocks (one colour, format version 4, blocks.Flat) are left out of the networks'
batches and of the streams: each is painted as its wavefront starts (canvas, zero
features, output image) and again over the post-loop filter's output, so that it comes
back exactly and its neighbours see exactly that colour.

One loop serves both directions (_run): a Side is what one process does with its blocks
of a wavefront (_Encoder: compute and write symbols; _Decoder: read them), and
lockstep.py shares the wavefronts among n processes (n = 1: this process alone).
Files and images are the same for any n. The float model, efforts above 1 (choosing,
rdoq.Chooser) and processes that cannot fork safely (workers.can_fork) code in this
process alone.

Memory: the canvas keeps two block rows per column (blocks.Canvas), blocks go straight
into the output image, and symbols are coded as each wavefront passes, so besides the
input and output images the loop holds O(width) data.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from ..errors import DecodeError, EntropyError, ImageError
from ..model import blocks
from ..model import quality as Q
from ..model.blocks import BlockContext, Canvas
from ..model.frozen import FrozenModel, Groups, Neighbours, Scales
from ..model.groups import Read
from . import effort as efforts
from . import format, lockstep, rdoq, streams
from .aq import offsets as aq_offsets
from .linear import LinearFilter
from .linear import fit as fit_linear
from .workers import Forked, can_fork, check_threads, default_threads, reply, shared_zeros


class CodingModel(Protocol):
    """What the loop needs of a model: the integer networks (model.frozen.FrozenModel) for
    real files, or a float model (nn.networks.FloatCodingModel) to measure what
    exactness costs.

    Pixels are centred integers (pixel - 128) as float64 rows, one per block; `nb` is
    whatever neighbours() made of the neighbour pixels; `params` whatever params_at
    returned for the quality.
    """

    @property
    def M(self) -> int: ...
    @property
    def max_symbol(self) -> int: ...
    scale_table: np.ndarray
    family: int

    def params_at(self, quality_x256: int) -> Any: ...
    def neighbours(self, pixels: np.ndarray, params: Any) -> Any: ...
    def entropy_params(self, nb: Any, params: Any, ctx: BlockContext) -> tuple[np.ndarray, Scales]: ...
    def scale_groups(self, scales: Scales, sym: np.ndarray, params: Any) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]: ...
    def decode_symbols(self, scales: Scales, params: Any, read: Read) -> np.ndarray: ...
    def group_columns(self) -> Groups: ...
    def finish(self, img: np.ndarray, params: Any) -> np.ndarray: ...
    def analyse(self, block: np.ndarray, nb: Any, params: Any, ctx: BlockContext) -> np.ndarray: ...
    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: Any, params: Any,
                   ctx: BlockContext) -> np.ndarray: ...


# observe(r, c, symbols, scales, reconstruction) after each wavefront's blocks (r, c) are
# coded, in the process that coded them (the encoder's symbols as written; the training
# cache keeps them, effort 3 keeps the reconstructions as a proxy).
Observe = Callable[[np.ndarray, np.ndarray, np.ndarray, Scales, np.ndarray], None]
# choose(r, c, nb, mean, scales, y, qp) -> (symbols, their reconstruction): rdoq.Chooser.
Choose = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Scales, np.ndarray, Any],
                  tuple[np.ndarray, np.ndarray]]

UNNAMED = bytes(8)  # the weights id of files made only to be measured (training's validation, caches)

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


def processes(threads: int | None, rows: int, cols: int, model: CodingModel, n_streams: int) -> int:
    """Processes coding an image, this one included: as many as asked (default: the
    cores), no more than its payload streams (each process owns whole streams) or its
    largest wavefront keeps busy; 1 (this process alone) where workers cannot be forked
    safely (workers.can_fork), or for a model other than the integer networks (the
    float model runs torch, which is not to be forked)."""
    n = default_threads() if threads is None else threads
    n = min(n, n_streams, max(1, blocks.widest(rows, cols) // streams.MIN_CHUNK))
    return n if n > 1 and can_fork() and isinstance(model, FrozenModel) else 1


class _Blocks:
    """What both directions share in every process: the model at one quality (or each
    block's: quality, the (rows, cols) quality_x256 of format version 6), the canvas of
    reconstructed blocks (two block rows), the feature canvases of kernel-3 layers and
    the output image; in shared memory for n > 1 processes, made before the fork."""

    def __init__(self, model: CodingModel, qp: Any, rows: int, cols: int, height: int, width: int, n: int,
                 flat: blocks.Flat | None = None, quality: np.ndarray | None = None) -> None:
        self.model, self.qp, self.flat, self.quality = model, qp, flat, quality
        zeros = shared_zeros if n > 1 else np.zeros
        self.canvas = Canvas(rows, cols, zeros=zeros)
        self.ctx = BlockContext(rows, cols, rolling=True)
        if n > 1:
            assert isinstance(model, FrozenModel)
            for st in model.stacks().values():
                for i, layer in enumerate(st.layers):
                    if layer.k == 3:
                        self.ctx.add_features((id(st), i), layer.W.shape[1] // 5, np.int16, zeros=zeros)
        self.image = zeros((height, width, 3), np.uint8)

    def start(self, r: np.ndarray, c: np.ndarray, given: Neighbours | None
              ) -> tuple[BlockContext, Any, Any, np.ndarray, Scales]:
        """(block context, parameters, neighbours, means, scales) of blocks (r, c) of one
        wavefront (given: their first layers' products at the image's quality,
        lockstep.FirstLayers; each block's bias then comes with the parameters)."""
        at = self.ctx.chunk(r, c)
        qp = self.qp
        nb = given if given is not None else self.model.neighbours(self.canvas.neighbours(r, c, ones=True), qp)
        if self.quality is not None:
            assert isinstance(self.model, FrozenModel)
            qp = self.model.block_params(self.qp, self.quality[r, c])
            nb = nb.at(qp)
        mean, scales = self.model.entropy_params(nb, qp, at)
        return at, qp, nb, mean, scales

    def put(self, r: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
        """Reconstructed blocks into the canvas and the output image."""
        self.canvas.put(r, c, out)
        blocks.put_pixels(self.image, r, c, out)

    def paint(self, r: np.ndarray, c: np.ndarray) -> None:
        """Flat blocks (r, c) of a wavefront: their colour, and zero hidden features."""
        assert self.flat is not None
        self.put(r, c, self.flat.values(r, c))
        self.ctx.clear(r, c)


class _Encoder:
    """One process's side of the encoder: its streams' symbols, computed and written."""

    def __init__(self, at: _Blocks, img: np.ndarray, writer: streams.Writer, choose: Choose | None,
                 observe: Observe | None) -> None:
        self.b, self.img, self.writer, self.choose, self.observe = at, img, writer, choose, observe
        self.groups = at.model.group_columns()

    def blocks(self, r: np.ndarray, c: np.ndarray, given: Neighbours | None) -> bytes:
        model, L = self.b.model, self.b.model.max_symbol
        at, qp, nb, mean, scales = self.b.start(r, c, given)
        y = model.analyse(blocks.gather_pixels(self.img, r, c), nb, qp, at)
        if self.choose is None:
            sym = np.clip(np.rint(y - mean), -L, L)
            idx = _indices(model, scales, sym, qp)
            out = model.synthesise(sym, mean, nb, qp, at)
        else:  # in this process alone: nb was computed here
            chosen, out = self.choose(r, c, nb.plain, mean, scales, y, qp)
            sym = np.array(chosen, dtype=np.float64)
            idx = _indices(model, scales, sym, qp)
            if not np.array_equal(sym, chosen):  # a symbol the payload leaves out (rare): 0, as decoded
                out = model.synthesise(sym, mean, nb, qp, at)
        self.b.put(r, c, out)
        self.writer.write(r, sym, idx, self.groups)
        if self.observe is not None:
            self.observe(r, c, sym, scales, out)
        return b""

    def end(self) -> bytes:
        """The payloads of this process's streams, as one message."""
        return b"".join(struct.pack("<II", s, len(p)) + p for s, p in self.writer.payloads().items())


def _payloads(messages: list[bytes]) -> dict[int, bytes]:
    """Every process's stream payloads (_Encoder.end's messages), by stream."""
    parts = {}
    for data in messages:
        at = 0
        while at < len(data):
            s, n = struct.unpack_from("<II", data, at)
            parts[s] = data[at + 8 : at + 8 + n]
            at += 8 + n
    return parts


class _Decoder:
    """One process's side of the decoder: its streams' symbols, read. Its replies report
    its lowest failed stream (streams.Reader.failure), b"" while none has failed."""

    def __init__(self, at: _Blocks, reader: streams.Reader, n_streams: int) -> None:
        self.b, self.reader, self.S = at, reader, n_streams

    def blocks(self, r: np.ndarray, c: np.ndarray, given: Neighbours | None) -> bytes:
        model, rd = self.b.model, self.reader
        at, qp, nb, mean, scales = self.b.start(r, c, given)
        spans = streams.runs(r, self.S, rd.owned)
        sym = model.decode_symbols(scales, qp, lambda idx, out: rd.read(spans, idx, out))
        rd.check()  # check 9, once per wavefront (docs/format.md 2)
        self.b.put(r, c, model.synthesise(sym, mean, nb, qp, at))
        return _failure(rd.failure())

    def end(self) -> bytes:
        self.reader.check(last=True)
        return _failure(self.reader.failure())


def _failure(found: tuple[int, str] | None) -> bytes:
    return b"" if found is None else f"{found[0]}:{found[1]}".encode()


def _raise_first(replies: list[bytes], n_streams: int) -> None:
    """The lowest failed stream's EntropyError among the processes' replies (the same
    error for any number of processes)."""
    found = []
    for data in replies:
        if data:
            s, _, message = data.decode().partition(":")
            found.append((int(s), message))
    streams.raise_first(found, n_streams)


Side = _Encoder | _Decoder


def _run(at: _Blocks, n: int, n_streams: int, side: Callable[[int], Side], first_layers: tuple[str, ...],
         progress: Callable[[int], None] | None, on_reply: Callable[[list[bytes]], None],
         then: Callable[[np.ndarray], np.ndarray] = lambda img: img,
         filtered: bool = True, linear: LinearFilter | None = None) -> tuple[list[bytes], np.ndarray]:
    """The loop over every wavefront, shared by n processes (lockstep.py): side(i) is
    process i's work; on_reply(replies) sees each wavefront's replies and then the
    ends'. Returns every process's end message (this one's first) and then(the decoded
    image), which runs while the workers exit: unless not filtered, the image after the
    post-loop filter and then the linear filter, if given (lockstep.PostLoop), its flat
    blocks painted again after each."""
    rows, cols = at.canvas.rows, at.canvas.cols
    waves = lockstep.waves(rows, cols, n_streams, n, None if at.flat is None else at.flat.mask)
    first = None
    if n > 1:
        assert isinstance(at.model, FrozenModel)
        first = lockstep.FirstLayers(at.model, at.qp, at.canvas, first_layers, n, blocks.widest(rows, cols))
    post = lockstep.PostLoop(at.model, at.qp, at.image, n if filtered else 1, at.flat, linear)

    def follow(i: int, conn: Any) -> None:  # worker i + 1
        mine = side(i + 1)
        lockstep.follow(conn, waves, i + 1, mine.blocks, first)
        lockstep.expect(conn, lockstep.Msg.END)
        reply(conn, mine.end())
        post.follow(i + 1, conn)

    mine = side(0)
    with Forked(n - 1, follow) as workers:
        for wave, replies in lockstep.lead(workers, waves, mine.blocks, first, at.paint):
            on_reply(replies)
            if progress is not None:
                progress((sum(len(r) for r, _ in wave.shares) + len(wave.flat[0])) * blocks.BLOCK * blocks.BLOCK)
        ends = [mine.end(), *lockstep.end(workers)]
        on_reply(ends)
        img = post.run(workers) if filtered else at.image
        return ends, then(img)


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


def _encode_payload(model: CodingModel, qp: Any, img: np.ndarray, n_streams: int, n: int,
                    choose: Choose | None = None, progress: Callable[[int], None] | None = None,
                    observe: Observe | None = None, filtered: bool = True,
                    flat: blocks.Flat | None = None, quality: np.ndarray | None = None) -> tuple[bytes, np.ndarray]:
    """An HxWx3 image -> (payload of n_streams streams, the decoder's image), by n
    processes (1 with choose), its flat blocks (if any) not coded, each block at its
    quality (quality_x256, (rows, cols)) if given."""
    height, width = img.shape[:2]
    rows, cols = blocks.grid_shape(height, width)
    at = _Blocks(model, qp, rows, cols, height, width, n, flat, quality)

    def side(i: int) -> _Encoder:
        writer = streams.Writer(streams.owned(n_streams, n, i), n_streams, model.scale_table, model.max_symbol)
        return _Encoder(at, img, writer, choose, observe)

    ends, rec = _run(at, n, n_streams, side, ("ga", "he", "gs"), progress, lambda replies: None, filtered=filtered)
    parts = _payloads(ends)
    return streams.join([parts[s] for s in range(n_streams)]), rec


@_one_blas_thread
def encode(img: np.ndarray, quality: float, model: CodingModel, weights_id: bytes, *,
           effort: int = efforts.DEFAULT, threads: int | None = None, n_streams: int | None = None,
           progress: Callable[[int], None] | None = None, observe: Observe | None = None,
           flat: bool = True, aq: float = 0.0, linear: bool = False) -> tuple[bytes, np.ndarray]:
    """HxWx3 RGB or HxW grayscale uint8 -> (.bbc bytes, the decoder's exact output).

    weights_id: the first 8 bytes of the weights file's SHA-256, for the header (how a
    decoder finds the weights). Grayscale is coded as RGB with equal channels and
    decoded back to one channel. threads: how many processes share the wavefronts'
    blocks (default: the cores this process may use; see lockstep.py); the bytes are
    the same for any number. n_streams: the payload's substreams (default
    streams.default_count; at most one per block row and 64): a decoder uses at most
    that many processes; each costs ~4 bytes. progress, if given, is called with the
    number of pixels of each wavefront's blocks; observe (Observe) with each
    wavefront's symbols (of its coded blocks). flat: whether blocks of one colour are
    left to the block modes of format version 4 (blocks.Flat; the file is version 4
    only if the image has one). aq: the strength of adaptive quantisation (aq.py; 0:
    none), the file version 6 when it gives a block an offset. linear: whether the
    encoder may fit a linear filter to the decoded image (linear.py; the file version 7
    when one pays for its bytes; off here by default, on in codec.encode's).

    effort > 1 (effort.py) codes the image more than once: at effort 1 for a proxy of
    the blocks not yet coded (level.needs_proxy; this pass uses the workers as above),
    then choosing each block's symbols (rdoq.Chooser) in this process alone, whatever
    threads says: the Chooser judges each wavefront's blocks against the whole canvas
    and the padded image's block grid, which it holds whole.
    """
    level = efforts.LEVELS[efforts.check(effort)]
    threads = check_threads(threads)
    gray = img.ndim == 2
    if gray:
        img = np.broadcast_to(img[:, :, None], (*img.shape, 3))  # a view, no copy
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ImageError("encode expects an HxWx3 (RGB) or HxW (grayscale) uint8 array")
    height, width = img.shape[:2]
    format.check_dimensions(width, height)
    rows, cols = blocks.grid_shape(height, width)
    if n_streams is None:
        n_streams = streams.default_count(rows, cols)
    format.check_streams(n_streams, height)
    quality_x256 = Q.to_x256(quality)
    qp = model.params_at(quality_x256)
    n = processes(threads, rows, cols, model, n_streams)
    found = blocks.Flat.find(img) if flat else None
    dq = aq_offsets(img, quality_x256, aq, None if found is None else found.mask)
    per_block = None if dq is None else quality_x256 + format.DQ_STEP * dq.astype(np.int64)
    choose = None
    if level is not None:
        frozen = rdoq.check_model(model)
        proxy = None
        if level.needs_proxy:  # the effort-1 reconstruction of every block, unfiltered
            proxy = shared_zeros(blocks.new_canvas(rows, cols).shape, np.int16)

            def keep(r: np.ndarray, c: np.ndarray, sym: np.ndarray, scales: Scales, out: np.ndarray) -> None:
                proxy[r + 1, c + 1] = out

            _encode_payload(model, qp, img, n_streams, n, observe=keep, filtered=False, flat=found, quality=per_block)
        choose = rdoq.Chooser(frozen, qp, blocks.block_grid(blocks.pad_to_blocks(img)), proxy, level, found, per_block)
        del proxy
        n = 1
    payload, rec = _encode_payload(model, qp, img, n_streams, n, choose, progress, observe, flat=found,
                                   quality=per_block)
    del choose
    fitted = None
    if linear:
        coded = None if found is None else np.repeat(np.repeat(~found.mask, 8, 0), 8, 1)[:height, :width]
        fitted = fit_linear(img, rec, efforts.rd_lambda(quality_x256), coded,
                            header_bytes=format.header_size(format.LINEAR)
                            - format.header_size(format.ADAPTIVE if found is not None or dq is not None else format.VERSION))
        if fitted is not None:
            rec = lockstep.apply_linear(rec, fitted, found)
    if gray:
        rec = to_gray(rec)
    header = format.Header(width=width, height=height, quality_x256=quality_x256, weights_sha256=weights_id,
                           image_digest=digest(rec), model_id=model.family, channels=1 if gray else 3,
                           streams=n_streams, flat=_modes(found, dq, gray, rows, cols),
                           linear=None if fitted is None else fitted.to_bytes())
    return format.pack(header, payload), rec


def _modes(flat: blocks.Flat | None, dq: np.ndarray | None, gray: bool, rows: int, cols: int
           ) -> format.BlockModes | None:
    """The block modes a file carries (None: none, version 2 or 3): a byte per block (1:
    flat), each flat block's colour, and (version 6) each block's quality offset."""
    if flat is None and dq is None:
        return None
    mask = np.zeros((rows, cols), dtype=bool) if flat is None else flat.mask
    colours = b"" if flat is None else flat.colour[flat.mask][:, :1 if gray else 3].tobytes()
    return format.BlockModes(mask.astype(np.uint8).tobytes(), colours, b"" if dq is None else dq.tobytes())


def _flat(header: format.Header) -> blocks.Flat | None:
    """The flat blocks of a file (versions 4 and 6), from its block modes (None: none)."""
    if header.flat is None or not header.flat.colours:
        return None
    rows, cols = blocks.grid_shape(header.height, header.width)
    mask = np.frombuffer(header.flat.modes, dtype=np.uint8).reshape(rows, cols).astype(bool)
    colour = np.zeros((rows, cols, 3), dtype=np.uint8)
    colour[mask] = np.frombuffer(header.flat.colours, dtype=np.uint8).reshape(-1, header.channels)
    return blocks.Flat(mask, colour)


def _quality(header: format.Header) -> np.ndarray | None:
    """Each block's quality_x256 (rows, cols) of a version 6 file, else None."""
    if not header.adaptive:
        return None
    assert header.flat is not None
    rows, cols = blocks.grid_shape(header.height, header.width)
    dq = np.frombuffer(header.flat.dq, dtype=np.int8).reshape(rows, cols).astype(np.int64)
    return header.quality_x256 + format.DQ_STEP * dq


@_one_blas_thread
def decode(header: format.Header, payload: bytes, model: CodingModel, *, threads: int | None = None,
           progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Header + payload (from format.unpack) -> HxWx3 (or HxW grayscale) uint8, digest-checked
    (progress and threads as for encode; a version 1 file, of one stream, is decoded in
    this process alone). A stream that fails is reported at the end of its wavefront,
    the lowest such stream's error first (streams.Reader), so a corrupt file fails the
    same way for any number of threads."""
    threads = check_threads(threads)
    qp = model.params_at(header.quality_x256)
    rows, cols = blocks.grid_shape(header.height, header.width)
    S = header.streams
    linear = None if header.linear is None else LinearFilter.parse(header.linear)  # applied by lockstep.PostLoop

    def checked(img: np.ndarray) -> np.ndarray:
        """The decoded image (grayscale as one channel) once its digest matches (check 10)."""
        out = to_gray(img) if header.channels == 1 else img
        if digest(out) != header.image_digest:
            raise DecodeError("decoded image does not match the encoder's (digest mismatch): corrupt file or "
                              "non-exact decoder")
        return out

    try:
        parts = streams.split(payload, S)
        n = processes(threads, rows, cols, model, S)
        at = _Blocks(model, qp, rows, cols, header.height, header.width, n, _flat(header), _quality(header))

        def side(i: int) -> _Decoder:
            reader = streams.Reader(parts, streams.owned(S, n, i), model.scale_table, model.max_symbol,
                                    header.skips_zero_scale)
            return _Decoder(at, reader, S)

        _, out = _run(at, n, S, side, ("he", "gs"), progress, lambda replies: _raise_first(replies, S), checked,
                      linear=linear)
    except EntropyError as e:
        raise DecodeError(f"corrupt payload: {e}") from None
    return out
