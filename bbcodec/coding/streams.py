"""The payload's substreams (format version 2, docs/format.md 4): which symbols each
range coder holds, and the coders of the streams one process owns.

The symbols of block row r go to stream r mod S, each stream its own range coder, in
the bitstream order of docs/format.md 3 restricted to its blocks. A wavefront's blocks
of different streams share nothing in the coder, so the processes coding one image
each own some streams (owned()) and decode them at once, where a single coder made
the one process running it the bound on any thread count (#19). Symbols whose scale
index is 0 (the table's smallest scale, at which any other symbol costs over 17 bits)
are not coded: they are 0 (a third to two thirds of a Kodak image's symbols, whose
decoding was as slow per symbol as any other's).

Version 1 files are one stream that codes every symbol (S = 1, skip = False).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from ..errors import EntropyError
from ..model import blocks
from . import entropy, format

# Blocks each process has at least in the image's widest wavefront: an image with
# narrower wavefronts is coded by fewer processes (a hand-off per wavefront costs about
# what a few blocks of work do; loop.processes), and has no more default streams.
MIN_CHUNK = 12
ROWS_PER_STREAM = 20  # the encoder's default: about a stream per 20 block rows ...
DEFAULT_STREAMS = 16  # ... up to this many (about 4 bytes each: table entry, coder flush)
assert DEFAULT_STREAMS <= format.MAX_STREAMS


def default_count(rows: int, cols: int) -> int:
    """The encoder's stream count for an image of rows x cols blocks: the largest power
    of two up to rows / 20, the processes its widest wavefront keeps busy (MIN_CHUNK
    blocks each) and 16, so that 2, 4, 8 or 16 processes share the streams evenly: 1
    below 320 pixels high, 2 for Kodak (landscape and portrait), 16 for 4000x3000 (as
    many processes as a 16-core laptop has). Each stream of a process costs it calls
    per wavefront and group: on 2 threads, Kodak decoded 3.5 % faster with 2 streams
    than with 4 (landscape; portrait 6.5 %), a 4000x3000 image 1.5 % slower with 16
    than with 8 (52 bytes larger of 1.5 MB)."""
    most = min(rows // ROWS_PER_STREAM, blocks.widest(rows, cols) // MIN_CHUNK, DEFAULT_STREAMS)
    return 1 << (max(1, most).bit_length() - 1)


def owned(streams: int, processes: int, i: int) -> list[int]:
    """The streams process i of `processes` codes: s with s mod processes == i."""
    return list(range(i, streams, processes))


def shares(r: np.ndarray, c: np.ndarray, streams: int, processes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The blocks (r, c) of a wavefront (consecutive rows, ascending) that each process
    codes: those of the streams it owns, in stream order (each stream's in bitstream
    order): the batch order of the networks does not matter, and a stream's symbols are
    then a contiguous run of the batch. Slices, not sorts: stream s's rows are every
    S-th from its first."""
    if streams == 1:
        return [(r, c)] + [(r[:0], c[:0])] * (processes - 1)
    first = int(r[0]) if len(r) else 0
    assert len(r) < 2 or int(r[-1]) - first == len(r) - 1, "a wavefront's rows are consecutive"
    out = []
    for i in range(processes):
        runs = [slice((s - first) % streams, None, streams) for s in owned(streams, processes, i)]
        if len(runs) == 1:
            out.append((r[runs[0]], c[runs[0]]))
        else:
            out.append((np.concatenate([r[k] for k in runs]), np.concatenate([c[k] for k in runs])))
    return out


def runs(r: np.ndarray, streams: int, owned: list[int]) -> list[tuple[int, int, int]]:
    """(stream, start, end) of each owned stream's run of blocks of rows r (in stream
    order, all of owned streams: a process's share)."""
    if len(owned) == 1:
        return [(owned[0], 0, len(r))]
    ends = np.searchsorted(r % streams, owned, side="right")
    starts = np.searchsorted(r % streams, owned, side="left")
    return [(s, int(a), int(b)) for s, a, b in zip(owned, starts, ends, strict=True)]


def join(parts: list[bytes]) -> bytes:
    """Stream payloads -> the file's payload: the word counts of all streams but the last
    (u32 each), then every stream's words in stream order."""
    table = b"".join(struct.pack("<I", len(p) // 4) for p in parts[:-1])
    return table + b"".join(parts)


def split(payload: bytes, streams: int) -> list[bytes]:
    """The file's payload -> the payload of each stream (EntropyError if the table does
    not fit the payload)."""
    if len(payload) % 4:
        raise EntropyError("payload length is not a multiple of 4")
    head = 4 * (streams - 1)
    if len(payload) < head:
        raise EntropyError(f"payload of {len(payload) // 4} words is shorter than its table of {streams - 1} stream lengths")
    counts = struct.unpack_from(f"<{streams - 1}I", payload)
    parts, at = [], head
    for k, n in enumerate(counts):
        if at + 4 * n > len(payload):
            raise EntropyError(f"stream {k} of {n} words runs past the end of the payload")
        parts.append(payload[at : at + 4 * n])
        at += 4 * n
    return parts + [payload[at:]]


class Writer:
    """The range encoders of some streams (one process's) of an image."""

    def __init__(self, owned: list[int], streams: int, scale_table: np.ndarray, max_symbol: int,
                 skip: bool = True) -> None:
        self.streams, self.table, self.skip = streams, scale_table, skip
        self.owned = owned
        self.coders = {s: entropy.SymbolEncoder(max_symbol) for s in owned}

    def write(self, r: np.ndarray, sym: np.ndarray, idx: np.ndarray, groups: list[np.ndarray | slice]) -> None:
        """Code a wavefront's symbols (B, M) and scale indices, of the blocks of rows r of
        this writer's streams in stream order (as shares() gives them), group by group."""
        spans = runs(r, self.streams, self.owned)
        for cols in groups:
            g_sym, g_idx = sym[:, cols], idx[:, cols]
            for s, a, b in spans:
                s_sym, s_idx = g_sym[a:b], g_idx[a:b]
                if self.skip:
                    keep = s_idx > 0
                    s_sym, s_idx = s_sym[keep], s_idx[keep]
                self.coders[s].encode(s_sym, self.table[s_idx])

    def payloads(self) -> dict[int, bytes]:
        return {s: coder.payload() for s, coder in self.coders.items()}


class Reader:
    """The range decoders of some streams (one process's) of an image.

    A stream that fails (its decoder, or check 9) is recorded and then reads zeros, so
    that every process finishes the wavefront; failure() then names the lowest failed
    stream: the same error for any split of the streams among processes."""

    def __init__(self, parts: list[bytes], owned: list[int], scale_table: np.ndarray, max_symbol: int,
                 skip: bool) -> None:
        self.streams, self.table, self.skip, self.owned = len(parts), scale_table, skip, owned
        self.decoders = {s: entropy.SymbolDecoder(parts[s], max_symbol) for s in owned}
        self.failed: dict[int, str] = {}
        self._decoded: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {s: [] for s in owned}  # to account

    def read(self, spans: list[tuple[int, int, int]], idx: np.ndarray, out: np.ndarray) -> None:
        """Decode one group's symbols of a wavefront's blocks (this reader's, in stream
        order; spans = runs() of their rows) into out (zeros, B x the group's channels),
        from their scale indices."""
        keep = idx > 0 if self.skip else np.ones(idx.shape, dtype=bool)
        stds = self.table[idx[keep]]  # every stream's, each a contiguous run (rows in stream order)
        if len(spans) == 1:  # one stream (of this process): its symbols straight into out
            out[keep] = self._decode(spans[0][0], stds)
            return
        ends = np.cumsum(keep.sum(axis=1)).tolist()
        values = np.zeros(len(stds))
        for s, a, b in spans:
            lo, hi = ends[a - 1] if a else 0, ends[b - 1] if b else 0
            values[lo:hi] = self._decode(s, stds[lo:hi])
        out[keep] = values

    def _decode(self, s: int, stds: np.ndarray) -> np.ndarray | int:
        """Stream s's next len(stds) symbols (0 for none, or once the stream has failed)."""
        if not len(stds) or s in self.failed:
            return 0
        try:
            part = self.decoders[s].decode_flat(stds)
        except EntropyError as e:
            self.failed[s] = str(e)
            return 0
        self._decoded[s].append((part, stds))
        return part

    def check(self, last: bool = False) -> None:
        """Check 9 on every stream after a wavefront (last: after the last symbol): the
        wavefront's symbols re-encoded at once, a call per stream."""
        for s, dec in self.decoders.items():
            done, self._decoded[s] = self._decoded[s], []
            if s in self.failed:
                continue
            if done:
                dec.account(np.concatenate([v for v, _ in done]), np.concatenate([d for _, d in done]))
            try:
                dec.finish() if last else dec.check_words()
            except EntropyError as e:
                self.failed[s] = str(e)

    def failure(self) -> tuple[int, str] | None:
        """(stream, message) of the lowest failed stream, or None."""
        return min(self.failed.items()) if self.failed else None


def raise_first(failures: Sequence[tuple[int, str] | None], streams: int) -> None:
    """Raise the EntropyError of the lowest failed stream among processes' failure()s."""
    found = [f for f in failures if f is not None]
    if found:
        s, message = min(found)
        raise EntropyError(message if streams == 1 else f"stream {s}: {message}")
