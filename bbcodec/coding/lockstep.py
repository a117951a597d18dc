"""The lockstep: n processes share each wavefront's blocks of one image.

The payload is cut into streams by block row (streams.py, docs/format.md 4.1) and each
process owns whole streams (streams.owned); within a wavefront each codes the blocks of
its streams (streams.shares), and the wavefront ends when all have. The lead (process 0,
the caller) and its n - 1 workers (forked for the image, workers.Forked) exchange one-
byte messages (Msg) per wavefront; with n = 1 there are no workers and the lockstep is
a plain loop over the wavefronts. Exact arithmetic makes every block's result
independent of the cut, and each stream is coded in its own order, so files and images
are the same for any n.

Where every process has blocks in a wavefront, the first layers' neighbour products
come first (FirstLayers): each process multiplies every block's neighbours by its part
of the stacked first-layer weights, into memory they share, then takes its own blocks'
rows (one more hand-off; OpenBLAS packs a product's whole weight matrix per call, so
each process packing a part of it halves that work on two). Flat blocks (format
version 4) are in no share: the lead paints them as their wavefront starts. After the
loop, each process filters a band of the image's rows, with the post-loop filter and
then with the file's linear filter (PostLoop).

Threads would not do: the range coder (constriction) holds Python's GIL while it runs,
and the networks need it between their many numpy calls, so threads took turns rather
than working at once (measured: a thread of matrix products beside a thread of range
coding made 98 products/s instead of 2888).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ..model import blocks
from ..model.arith import mm
from ..model.blocks import Canvas
from ..model.frozen import FrozenModel, Neighbours, QualityParams
from . import streams
from .linear import LinearFilter
from .workers import Channel, Forked, receive, reply, shared_zeros


class Msg:
    """The lead's messages to a worker (a worker's replies carry data: workers.reply)."""

    GO = b"g"  # the wavefronts before are done: code your blocks of the next one
    PRODUCTS = b"p"  # every process's output channels of the first-layer products are in: take your blocks' rows
    END = b"e"  # the last wavefront is done: send what your side has at the end
    FILTER = b"f"  # filter your band of the image's rows
    LINEAR = b"l"  # the filtered image is whole: apply the linear filter to your band of its rows


def expect(conn: Channel, msg: bytes) -> None:
    """Wait for the lead's message msg (anything else is a bug in the protocol)."""
    got = receive(conn)
    if got != msg:
        raise RuntimeError(f"lockstep: expected {msg!r}, got {got[:8]!r}")


Shares = list[tuple[np.ndarray, np.ndarray]]  # a wavefront's coded blocks (r, c) of each process
# Code blocks (r, c) of one wavefront, given their first layers' products or None, and
# return the process's reply for that wavefront (b"" or a report, e.g. a stream's failure).
Work = Callable[[np.ndarray, np.ndarray, Neighbours | None], bytes]
# Paint a wavefront's flat blocks (r, c) (blocks.Flat), in the lead, before its coded ones.
Paint = Callable[[np.ndarray, np.ndarray], None]


class Wave(NamedTuple):
    shares: Shares  # the blocks the networks code, of each process
    flat: tuple[np.ndarray, np.ndarray]  # the flat blocks (r, c) (format version 4), painted by the lead


def waves(rows: int, cols: int, n_streams: int, n: int, flat: np.ndarray | None = None) -> list[Wave]:
    """Each wavefront's blocks of each of n processes, each share in stream order
    (streams.shares), the flat blocks (flat: the (rows, cols) mask) left out of the
    shares and kept apart."""
    out = []
    for r, c in blocks.wavefronts(rows, cols):
        if not len(r):
            continue
        shares = streams.shares(r, c, n_streams, n)
        if flat is None:
            out.append(Wave(shares, (r[:0], c[:0])))
            continue
        f = flat[r, c]
        coded = [(sr[keep], sc[keep]) for sr, sc in shares for keep in [~flat[sr, sc]]]
        out.append(Wave(coded, (r[f], c[f])))
    return out


class FirstLayers:
    """The first layers' neighbour products (Neighbours.first) of a wavefront's blocks,
    computed by its n processes together: each process multiplies every block's
    neighbours by its n-th of the stacked weights' output channels, into memory they
    share (made here, before the workers are forked), then takes its own blocks' rows
    of them."""

    def __init__(self, model: FrozenModel, qp: QualityParams, canvas: Canvas, names: tuple[str, ...], n: int,
                 widest: int) -> None:
        self.canvas, self.weights = canvas, qp.first_layers
        stacked = np.concatenate([self.weights[k] for k in names], axis=1)  # kernels (769, sum of C0)
        ends = np.cumsum([self.weights[k].shape[1] for k in names]).tolist()
        self.columns = {k: slice(e - self.weights[k].shape[1], e) for k, e in zip(names, ends, strict=True)}
        cuts = [stacked.shape[1] * i // n for i in range(n + 1)]
        self.outputs = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]  # each process's
        self.parts = [np.ascontiguousarray(stacked[:, k]) for k in self.outputs]
        self.out = shared_zeros((widest, stacked.shape[1]), np.float64)

    @staticmethod
    def splits(shares: Shares) -> bool:
        """Whether every process has blocks in the wavefront (else each computes its own)."""
        return all(len(r) for r, _ in shares)

    def compute(self, shares: Shares, i: int) -> None:
        """Process i's output channels of every block's products (blocks in process order)."""
        r = np.concatenate([r for r, _ in shares])
        c = np.concatenate([c for _, c in shares])
        self.out[: len(r), self.outputs[i]] = mm(self.canvas.neighbours(r, c, ones=True), self.parts[i])

    def take(self, shares: Shares, i: int) -> Neighbours:
        """Process i's blocks' products, once every process has computed its output channels."""
        start = sum(len(r) for r, _ in shares[:i])
        own = self.out[start : start + len(shares[i][0])]
        return Neighbours(None, self.weights, {k: np.ascontiguousarray(own[:, cols]) for k, cols in self.columns.items()})


def lead(workers: Forked, waves: list[Wave], work: Work, first: FirstLayers | None = None,
         paint: Paint | None = None) -> Iterator[tuple[Wave, list[bytes]]]:
    """Process 0's side of the loop: per wavefront, paint its flat blocks (into memory
    the workers share: nothing of this wavefront reads them), tell the workers with
    blocks in it to go (with first, where all have blocks: compute this process's rows
    of the first layers, wait for theirs, tell them to take theirs), do this process's
    blocks, and yield the wavefront with every busy process's reply, this one's first
    (the wavefront is then done in every process)."""
    for wave in waves:
        shares = wave.shares
        if paint is not None and len(wave.flat[0]):
            paint(*wave.flat)
        busy = [i for i in range(1, len(shares)) if len(shares[i][0])]
        for i in busy:
            workers.send(i - 1, Msg.GO)
        given = None
        if first is not None and first.splits(shares):
            first.compute(shares, 0)
            for i in busy:
                workers.recv(i - 1)
            for i in busy:
                workers.send(i - 1, Msg.PRODUCTS)
            given = first.take(shares, 0)
        r, c = shares[0]
        own = work(r, c, given) if len(r) else b""
        yield wave, [own] + [workers.recv(i - 1) for i in busy]


def follow(conn: Channel, waves: list[Wave], i: int, work: Work, first: FirstLayers | None = None) -> None:
    """Worker i's side (i >= 1): its blocks of each wavefront once told to go (and its
    rows of the first layers, as lead); work's bytes are its reply."""
    for wave in waves:
        shares = wave.shares
        r, c = shares[i]
        if len(r):
            expect(conn, Msg.GO)  # the blocks before this wavefront are done
            given = None
            if first is not None and first.splits(shares):
                first.compute(shares, i)
                reply(conn)
                expect(conn, Msg.PRODUCTS)
                given = first.take(shares, i)
            reply(conn, work(r, c, given))


def end(workers: Forked) -> list[bytes]:
    """Each worker's last reply (its side's end), once the last wavefront is done."""
    n = len(workers.conns)
    for i in range(n):
        workers.send(i, Msg.END)
    return [workers.recv(i) for i in range(n)]


def apply_linear(img: np.ndarray, f: LinearFilter, flat: blocks.Flat | None) -> np.ndarray:
    """img after the linear filter f, its flat blocks painted again (docs/format.md 12):
    the last step of decoding (PostLoop), which the encoder repeats for its
    reconstruction once it has fitted f."""
    out = f.apply(img)
    if flat is not None:
        flat.paint(out)
    return out


class PostLoop:
    """What follows the loop, shared by the lead and its n - 1 workers: the post-loop
    filter (model.finish), the flat blocks painted again, then the file's linear filter
    (format version 7), if any, and the flat blocks again. Process i filters band i of
    n of each filter's rows into an output in shared memory (made here, before the
    workers are forked); each row reads only the filter's input, so the bands make the
    same image as one pass. Without workers, run() does it all in this process."""

    def __init__(self, model: Any, qp: Any, img: np.ndarray, n: int, flat: blocks.Flat | None = None,
                 linear: LinearFilter | None = None) -> None:
        self.model, self.qp, self.img, self.n, self.flat, self.linear = model, qp, img, n, flat, linear
        self.shared = n > 1 and isinstance(model, FrozenModel) and model.postfilter is not None
        self.out = shared_zeros(img.shape, np.uint8) if self.shared else img
        self.linear_out = shared_zeros(img.shape, np.uint8) if n > 1 and linear is not None else None

    def _band(self, i: int) -> None:
        self.model.finish(self.img, self.qp, self.out, (i, self.n))

    def _linear_band(self, i: int) -> None:
        assert self.linear is not None
        self.linear.apply(self.out, self.linear_out, (i, self.n))

    def follow(self, i: int, conn: Channel) -> None:
        """Worker i's bands (i >= 1), after the loop."""
        if self.shared:
            expect(conn, Msg.FILTER)
            self._band(i)
            reply(conn)
        if self.linear_out is not None:
            expect(conn, Msg.LINEAR)
            self._linear_band(i)
            reply(conn)

    def _together(self, workers: Forked, msg: bytes, band: Callable[[int], None]) -> None:
        for i in range(self.n - 1):
            workers.send(i, msg)
        band(0)
        for i in range(self.n - 1):
            workers.recv(i)

    def run(self, workers: Forked) -> np.ndarray:
        """The finished image (with the workers' help, where they were forked for it)."""
        if self.shared:
            self._together(workers, Msg.FILTER, self._band)
            img = self.out
        else:
            img = self.model.finish(self.img, self.qp)
            # workers, if any, filter the linear bands of self.out: the loop's image, which
            # finish returns as it is without a post-loop filter
            assert self.linear_out is None or img is self.out
        if self.flat is not None:
            self.flat.paint(img)  # exactly their colour, whatever the filter did
        if self.linear is None:
            return img
        if self.linear_out is None:
            return apply_linear(img, self.linear, self.flat)
        self._together(workers, Msg.LINEAR, self._linear_band)
        if self.flat is not None:
            self.flat.paint(self.linear_out)
        return self.linear_out
