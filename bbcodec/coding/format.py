"""The .bbc container, versions 1 to 7 (specified in docs/format.md). No torch, no numpy.

    offset size field
    0      4    magic            8B 42 42 43 ("\\x8bBBC")
    4      1    version          2 (1: read, never written)
    5      1    channels         3 (RGB) or 1 (grayscale)
    6      2    quality_x256     u16, quality * 256, 256..2048
    8      4    width            u32, 1..65535
    12     4    height           u32, 1..65535
    16     8    weights_sha256   first 8 bytes of the weights file's SHA-256
    24     8    image_digest     first 8 bytes of SHA-256 of the decoded pixels
    32     4    payload_length   u32, a multiple of 4
    36     2    model_id         u16, network family id (model/layout.FAMILIES)
    38     2    streams          u16, payload substreams S, 1..min(64, block rows) (version 1: zero, S = 1)
    40     n    payload          S - 1 stream lengths (u32 words), then S streams of
                                 range-coder words, u32 little-endian (streams.py)
    40+n   4    crc32            CRC-32 (zlib) of bytes 0 .. 40+n-1

Version 3 is version 2 with chunks (an ICC profile, EXIF, XMP, an alpha plane): a u32
chunks_length m at offset 40, the payload at 44, then the chunks (each a 4-byte type, a
u32 length and the data), then the CRC of everything before it. A file without chunks
is written as version 2, which every decoder since version 2 reads.

Version 4 is version 3 with a block-mode section: which 8x8 blocks are flat (one colour,
not coded by the networks) and their colours, as raw deflate, at offset 48 after a u32
chunks_length (0: no chunks) and a u32 modes_length. Only an image with a flat block is
written as version 4, so that other files stay what older decoders read.

Version 5 is a lossless image (coding/lossless.py): no networks (model_id 0, weights
field zero), the streams field holds the transform, a u32 chunks_length at offset 40,
then payload_length bytes of LZMA2 (any length), the chunks and the CRC.

Version 6 is version 4 whose block modes also give every block a quality offset
(adaptive quantisation, coding/aq.py): after the modes and colours, one signed byte per
block, in 1/16 of a quality. Only an image with a block off the header's quality is
written as version 6; it need not have a flat block.

Version 7 is version 6 with an encoder-fitted linear filter (coding/linear.py): a u32
filter_length after modes_length (offset 48), the filter's section after the block
modes, whose section may be empty (modes_length 0: no flat block, no offset).

All integers little-endian. A reader checks the size and CRC before trusting any field,
and reads a stream no further than the header says (read_from).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import IO

from ..errors import FormatError
from ..model import quality as Q

MAGIC = b"\x8bBBC"
VERSION = 2  # what the encoder writes for an image without chunks
CHUNKED = 3  # what it writes for one with chunks
FLAT = 4  # what it writes for one with flat blocks (with or without chunks)
LOSSLESS = 5  # what it writes for an image coded exactly, without the networks
ADAPTIVE = 6  # what it writes for an image whose blocks have qualities of their own
LINEAR = 7  # what it writes for an image with an encoder-fitted linear filter (linear.py)
VERSIONS = (1, 2, 3, 4, 5, 6, 7)  # what the decoder reads
DQ_STEP = 16  # a version 6 quality offset's unit, in quality_x256 (1/16 of a quality)
TRANSFORMS = ("interleaved", "left", "gradient", "palette")  # version 5's transform field (coding/lossless.py)
REDUCED = 0x100  # version 5's transform field: the encoder reduced the image's colours first (informative)
NO_WEIGHTS = bytes(8)  # version 5's weights field
HEADER = struct.Struct("<4sBBHII8s8sIHH")
HEADER_SIZE = HEADER.size  # 40
TRAILER_SIZE = 4
MAX_SIDE = 65535
MAX_PIXELS = 1 << 26  # 67 megapixels (8192 x 8192); refused before anything is allocated
MAX_PAYLOAD = 1 << 31  # payload_length must be below this (2 GiB)
MAX_FILE_SIZE = HEADER_SIZE + 8 + MAX_PAYLOAD - 4 + TRAILER_SIZE  # the largest valid .bbc file
READ_CHUNK = 1 << 20  # streams are read in pieces this big (Ctrl-C works in between)
CHANNELS = (1, 3)  # grayscale is coded as RGB and decoded back to one channel
MAX_STREAMS = 64  # payload substreams (version 2): at most this many, and one per block row
CHUNKS = (b"ICCP", b"EXIF", b"XMP ", b"ALPH")  # the chunk types of version 3, in the order written
CHUNK_HEAD = struct.Struct("<4sI")  # type, length


def header_size(version: int) -> int:
    """Bytes before the payload (versions 4, 6 and 7: before the block modes): 40, 44 in
    versions 3 and 5 (their chunks_length), 48 in versions 4 and 6 (chunks_length,
    modes_length), 52 in version 7 (and filter_length)."""
    return HEADER_SIZE + {CHUNKED: 4, FLAT: 8, LOSSLESS: 4, ADAPTIVE: 8, LINEAR: 12}.get(version, 0)


def has_chunks_length(version: int) -> bool:
    """Whether a version's header holds chunks_length (at offset 40)."""
    return version in (CHUNKED, FLAT, LOSSLESS, ADAPTIVE, LINEAR)


def has_modes(version: int) -> bool:
    """Whether a version's files have the block-mode section (modes_length at offset 44)."""
    return version in (FLAT, ADAPTIVE, LINEAR)


@dataclass(frozen=True)
class BlockModes:
    """The block modes of versions 4 and 6, inflated: one byte per 8x8 block in raster
    order (0: coded, 1: flat), then the colour of each flat block in raster order (R, G,
    B, or one grey byte); in version 6 then one signed byte per block, its quality offset
    in units of DQ_STEP (0 for a flat block; dq empty in version 4)."""

    modes: bytes
    colours: bytes
    dq: bytes = b""

    def deflated(self) -> bytes:
        """The section as the encoder writes it: raw deflate (zlib, level 9)."""
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        return z.compress(self.modes + self.colours + self.dq) + z.flush()

    def offsets(self) -> tuple[int, ...]:
        """The quality offsets as integers, one per block (empty in version 4)."""
        return struct.unpack(f"{len(self.dq)}b", self.dq)

    @classmethod
    def inflate(cls, section: bytes, blocks: int, channels: int, quality_x256: int | None = None,
                linear: bool = False) -> BlockModes:
        """The section of a file of `blocks` blocks, checked (check 12 of docs/format.md
        2): it must inflate to exactly `blocks` mode bytes, each 0 or 1, then `channels`
        colour bytes per 1, then (version 6: quality_x256 given) `blocks` quality offsets,
        and end there. In version 4 a block must be flat; in version 6 an offset must be
        0 for a flat block, keep its block's quality within the range, and not all be 0
        (version 7, linear: unless a block is flat). Never inflates more than that."""
        d = zlib.decompressobj(-15)
        adaptive = quality_x256 is not None
        try:
            modes = d.decompress(section, blocks)
            if len(modes) < blocks:
                raise FormatError(f"block modes: {len(modes)} bytes where {blocks} (one per block) are needed")
            if modes.translate(None, b"\x00\x01"):
                raise FormatError("block modes: a mode byte other than 0 (coded) or 1 (flat)")
            need = channels * modes.count(1)
            if not need and not adaptive:
                raise FormatError("block modes: no flat block (such an image is written as version 2 or 3)")
            colours = d.decompress(d.unconsumed_tail, need) if need else b""
            if len(colours) < need:
                raise FormatError(f"block modes: {len(colours)} colour bytes where {need} are needed")
            dq = d.decompress(d.unconsumed_tail, blocks) if adaptive else b""
            if adaptive and len(dq) < blocks:
                raise FormatError(f"block modes: {len(dq)} quality offsets where {blocks} (one per block) are needed")
            more = d.decompress(d.unconsumed_tail, 1)
        except zlib.error as e:
            raise FormatError(f"block modes: invalid deflate data ({e})") from None
        if more or not d.eof:
            raise FormatError("block modes: more data than its blocks need, or no end of the deflate stream")
        if d.unused_data or d.unconsumed_tail:
            raise FormatError("block modes: bytes after the end of the deflate stream")
        found = cls(modes, colours, dq)
        if quality_x256 is not None:
            check_offsets(found, quality_x256, linear)
        return found


def check_offsets(section: BlockModes, quality_x256: int, linear: bool = False) -> None:
    """Version 6's rules on the quality offsets (check 12); in version 7 (linear) they
    may all be 0 where a block is flat."""
    if section.dq.count(0) == len(section.dq) and not (linear and section.colours):
        raise FormatError("quality offsets: all 0 (such an image is written as version 2, 3 or 4)" if not linear
                          else "block modes: no flat block and no quality offset (write modes_length 0)")
    offsets = section.offsets()
    if any(o and m for o, m in zip(offsets, section.modes, strict=True)):
        raise FormatError("quality offsets: a flat block has an offset other than 0")
    if not (Q.valid_x256(quality_x256 + DQ_STEP * min(offsets)) and Q.valid_x256(quality_x256 + DQ_STEP * max(offsets))):
        raise FormatError(f"quality offsets: a block's quality is outside {Q.MIN}..{Q.MAX}")


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    quality_x256: int
    weights_sha256: bytes  # 8-byte prefix
    image_digest: bytes  # 8-byte prefix of SHA-256 over the decoded HxWxC uint8 pixels
    model_id: int = 1
    channels: int = 3
    version: int = VERSION
    streams: int = 1  # payload substreams (version 2; version 1 has one); version 5: the transform
    flat: BlockModes | None = None  # versions 4, 6 and 7: the flat blocks, their colours (and quality offsets)
    linear: bytes | None = None  # version 7: the linear filter's section (coding/linear.py parses it)

    @property
    def adaptive(self) -> bool:
        """Whether blocks have quality offsets (versions 6 and 7)."""
        return self.flat is not None and self.flat.dq.count(0) != len(self.flat.dq)

    @property
    def lossless(self) -> bool:
        """Whether the file holds the pixels exactly, without the networks (version 5)."""
        return self.version == LOSSLESS

    @property
    def transform(self) -> str | None:
        """Version 5's transform, by name (None in other versions)."""
        return TRANSFORMS[self.streams & 0xFF] if self.lossless else None

    @property
    def reduced(self) -> bool:
        """Version 5: whether the encoder reduced the image's colours before storing it."""
        return self.lossless and bool(self.streams & REDUCED)

    @property
    def quality_value(self) -> float:
        """The quality as a number in [1, 8] (the field stores it times 256)."""
        return Q.from_x256(self.quality_x256)

    @property
    def skips_zero_scale(self) -> bool:
        """Whether symbols of scale index 0 are left out of the payload (version 2)."""
        return self.version >= 2


def image_digest(pixels: bytes | memoryview) -> bytes:
    """The 8-byte digest of decoded pixels that a file carries."""
    return hashlib.sha256(pixels).digest()[:8]


def check_dimensions(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise FormatError(f"image size {width}x{height} is outside 1..{MAX_SIDE} per side")
    if width * height > MAX_PIXELS:
        raise FormatError(f"image of {width}x{height} pixels exceeds the limit of {MAX_PIXELS} pixels")


def check_streams(streams: int, height: int) -> None:
    """Refuse a stream count outside 1 .. min(MAX_STREAMS, block rows) (check 6)."""
    rows = -(-height // 8)
    if not 1 <= streams <= min(MAX_STREAMS, rows):
        raise FormatError(f"stream count {streams} is outside 1..{min(MAX_STREAMS, rows)} for an image "
                          f"{height} pixels high")


def _check_payload_length(n: int, version: int, streams: int) -> None:
    """Check 6's rules on payload_length (below 2 GiB is checked first, by file_size)."""
    if n % 4:
        raise FormatError("invalid payload length (not a multiple of 4)")
    if version == 1 and n == 0:  # every symbol is coded, and any symbol costs the coder a word
        raise FormatError("empty payload (a version 1 .bbc file holds at least one payload word)")
    if n < 4 * (streams - 1):
        raise FormatError(f"payload of {n} bytes is shorter than its table of {streams - 1} stream lengths")


def pack(header: Header, payload: bytes, chunks: dict[bytes, bytes] | None = None) -> bytes:
    """Header (+ block modes, in versions 4 and 6) + payload (+ chunks, in versions 3, 4
    and 6) + CRC-32 -> file bytes. With header.flat the file is written as version 6
    when it has quality offsets, else version 4; else with chunks as version 3 (whatever
    header.version says), else as header.version."""
    if header.lossless:
        _check_lossless(header.model_id, header.weights_sha256, header.streams, len(payload))
    elif header.linear is not None:
        parse_linear(header.linear)
        header = dataclass_replace(header, version=LINEAR)
        given = header.flat
        if given is not None:
            if not given.dq:  # version 7's block modes always hold the offsets
                header = dataclass_replace(header, flat=BlockModes(given.modes, given.colours, bytes(len(given.modes))))
            check_offsets(header.flat, header.quality_x256, linear=True)  # type: ignore[arg-type]
    elif header.flat is not None:
        given = header.flat
        header = dataclass_replace(header, version=ADAPTIVE if given.dq else FLAT)
        if given.dq:
            check_offsets(given, header.quality_x256)
    elif chunks:
        header = dataclass_replace(header, version=CHUNKED)
    elif header.version in (CHUNKED, FLAT, ADAPTIVE, LINEAR):
        what = {CHUNKED: "chunk", FLAT: "flat block", ADAPTIVE: "quality offset", LINEAR: "linear filter"}[header.version]
        raise FormatError(f"a version {header.version} file has at least one {what} (without, write version 2)")
    check_dimensions(header.width, header.height)
    if not Q.valid_x256(header.quality_x256):
        raise FormatError(f"quality {header.quality_value} outside {Q.MIN}..{Q.MAX}")
    if header.version not in VERSIONS or (header.version == 1 and header.streams != 1):
        raise FormatError(f"cannot write version {header.version} with {header.streams} streams")
    if len(payload) >= MAX_PAYLOAD:
        raise FormatError("payload length must be below 2 GiB")
    if not header.lossless:
        check_streams(header.streams, header.height)
        _check_payload_length(len(payload), header.version, header.streams)
    head = HEADER.pack(
        MAGIC,
        header.version,
        header.channels,
        header.quality_x256,
        header.width,
        header.height,
        header.weights_sha256,
        header.image_digest,
        len(payload),
        header.model_id,
        header.streams if header.version >= 2 else 0,
    )
    tail = _pack_chunks(chunks) if chunks else b""
    modes = header.flat.deflated() if header.flat is not None else b""
    linear = header.linear or b""
    if len(payload) + len(tail) + len(modes) + len(linear) >= MAX_PAYLOAD:
        raise FormatError("payload, block modes, linear filter and chunks must be below 2 GiB")
    lengths = {CHUNKED: struct.pack("<I", len(tail)), FLAT: struct.pack("<II", len(tail), len(modes)),
               LOSSLESS: struct.pack("<I", len(tail)), ADAPTIVE: struct.pack("<II", len(tail), len(modes)),
               LINEAR: struct.pack("<III", len(tail), len(modes), len(linear))}
    body = head + lengths.get(header.version, b"") + modes + linear + payload + tail
    return body + struct.pack("<I", zlib.crc32(body))


def _check_lossless(model_id: int, weights_sha256: bytes, transform: int, n: int) -> None:
    """Check 6's rules for version 5."""
    if model_id or weights_sha256 != NO_WEIGHTS:
        raise FormatError("a lossless (version 5) file names no model: model_id and weights must be zero")
    if transform & 0xFF >= len(TRANSFORMS) or transform & ~(0xFF | REDUCED):
        raise FormatError(f"unknown lossless transform {transform}")
    if n == 0:
        raise FormatError("empty lossless data")


def _pack_chunks(chunks: dict[bytes, bytes]) -> bytes:
    """The chunk area: each known type given, in CHUNKS order, as type, length, data."""
    unknown = [k for k in chunks if k not in CHUNKS]
    if unknown:
        raise FormatError(f"unknown chunk types {unknown}")
    return b"".join(CHUNK_HEAD.pack(k, len(chunks[k])) + chunks[k] for k in CHUNKS if k in chunks)


def add_chunks(data: bytes, chunks: dict[bytes, bytes]) -> bytes:
    """A file with chunks added (version 3, or its own version 4 or 6), or as it is when
    chunks is empty."""
    if not chunks:
        return data
    header, payload = unpack(data)
    return pack(header, payload, {**read_chunks(data), **chunks})


def file_size(data: bytes) -> int:
    """The size a .bbc file must have, from its first 44 bytes (48 in versions 3 and 5, 52
    in versions 4 and 6, 56 in version 7) or more (checks 1-3 and the payload limit of docs/format.md, section 2)."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError("not a .bbc file (bad magic bytes)")
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise FormatError(f"truncated .bbc file ({len(data)} bytes, header needs {HEADER_SIZE + TRAILER_SIZE})")
    version = data[4]
    if version not in VERSIONS:
        raise FormatError(f"unsupported .bbc version {version} (this decoder reads versions "
                          f"{', '.join(map(str, VERSIONS))})")
    (n,) = struct.unpack_from("<I", data, 32)
    if n >= MAX_PAYLOAD:
        raise FormatError(f"payload length {n} is not below the limit of {MAX_PAYLOAD} bytes (2 GiB)")
    start = header_size(version)
    if start == HEADER_SIZE:
        return HEADER_SIZE + n + TRAILER_SIZE
    if len(data) < start + TRAILER_SIZE:
        raise FormatError(f"truncated .bbc file ({len(data)} bytes, a version {version} header needs "
                          f"{start + TRAILER_SIZE})")
    _, k, m = _sections(data)
    if n + m + k >= MAX_PAYLOAD:
        raise FormatError(f"payload, block modes, linear filter and chunks of {n + m + k} bytes are not below the "
                          f"limit of {MAX_PAYLOAD} bytes (2 GiB)")
    return start + k + n + m + TRAILER_SIZE


def read_upto(fp: IO[bytes], limit: int) -> bytes:
    """At most limit bytes of a binary stream (fewer at its end), read in pieces."""
    parts, got = [], 0
    while got < limit:
        piece = fp.read(min(READ_CHUNK, limit - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def read_from(fp: IO[bytes]) -> bytes:
    """The bytes of one .bbc file from a stream, never reading more than its header
    allows: the header, then the payload and CRC it declares, then one byte more to
    tell trailing data. Refuses what is not a .bbc file after its first bytes (so a
    stream of zeros or a huge foreign file costs nothing); unpack() checks the rest."""
    head = read_upto(fp, HEADER_SIZE + TRAILER_SIZE)
    if len(head) == HEADER_SIZE + TRAILER_SIZE and head[:4] == MAGIC and has_chunks_length(head[4]):
        head += read_upto(fp, header_size(head[4]) - HEADER_SIZE)  # chunks_length (and modes_length)
    size = file_size(head)
    data = head + read_upto(fp, size + 1 - len(head))
    if len(data) > size:
        raise FormatError(f"unexpected bytes after the end of the .bbc data (its header says {size} bytes)")
    return data


def crc_ok(data: bytes) -> bool:
    """Whether the CRC-32 of a complete .bbc file (file_size(data) bytes) matches."""
    end = file_size(data) - TRAILER_SIZE
    (crc,) = struct.unpack_from("<I", data, end)
    return zlib.crc32(data[:end]) == crc


def unpack(data: bytes, check_crc: bool = True) -> tuple[Header, bytes]:
    """File bytes -> (header, payload), after checking magic, version, size and CRC
    (check_crc=False: all but the CRC, for `bbcodec info` to show a damaged header)."""
    expected = file_size(data)
    magic, version, channels, q256, width, height, wsha, digest, n, model_id, streams = HEADER.unpack_from(data)
    if len(data) < expected:
        raise FormatError(f"truncated .bbc file ({len(data)} bytes, header says {expected})")
    if len(data) > expected:
        raise FormatError(f"{len(data) - expected} unexpected bytes after the end of the .bbc data")
    if check_crc and not crc_ok(data):
        raise FormatError("corrupt .bbc file (CRC-32 mismatch)")
    if channels not in CHANNELS:
        raise FormatError(f"unsupported channel count {channels}")
    if not Q.valid_x256(q256):
        raise FormatError(f"invalid quality field {q256}")
    if version == 1:
        if streams:
            raise FormatError("invalid reserved field (version 1: zero)")
        streams = 1
    check_dimensions(width, height)
    if version == LOSSLESS:
        _check_lossless(model_id, wsha, streams, n)
    else:
        check_streams(streams, height)
        _check_payload_length(n, version, streams)
    start, k, m = _sections(data)
    if version == CHUNKED or m:
        _parse_chunks(data[start + k + n : expected - TRAILER_SIZE])
    f = struct.unpack_from("<I", data, HEADER_SIZE + 8)[0] if version == LINEAR else 0
    modes, linear = data[start : start + k - f], data[start + k - f : start + k] if version == LINEAR else None
    flat = None
    if has_modes(version) and (modes or version != LINEAR):  # check 12, then 14
        rows, cols = -(-height // 8), -(-width // 8)
        flat = BlockModes.inflate(modes, rows * cols, channels,
                                  q256 if version in (ADAPTIVE, LINEAR) else None, version == LINEAR)
    if linear is not None:
        parse_linear(linear)
    header = Header(width, height, q256, wsha, digest, model_id, channels, version, streams, flat, linear)
    return header, data[start + k : start + k + n]


def parse_linear(section: bytes) -> None:
    """Check 14 on a version 7 file's linear filter section (coding/linear.py)."""
    from .linear import LinearFilter  # numpy: only for version 7 files

    LinearFilter.parse(section)


def _sections(data: bytes) -> tuple[int, int, int]:
    """(offset of what follows the header fields, bytes of the block modes and the
    linear filter (version 7) together, chunks_length) of a file with all its header
    fields (file_size checks that first)."""
    version = data[4]
    start = header_size(version)
    m = struct.unpack_from("<I", data, HEADER_SIZE)[0] if has_chunks_length(version) else 0
    k = struct.unpack_from("<I", data, HEADER_SIZE + 4)[0] if has_modes(version) else 0
    if version == LINEAR:
        k += struct.unpack_from("<I", data, HEADER_SIZE + 8)[0]
    return start, k, m


def _parse_chunks(area: bytes) -> dict[bytes, bytes]:
    """The chunks of a version 3 chunk area, checked (check 11 of docs/format.md 2)."""
    if not area:
        raise FormatError("a version 3 file without chunks")
    chunks: dict[bytes, bytes] = {}
    at = 0
    while at < len(area):
        if len(area) - at < CHUNK_HEAD.size:
            raise FormatError("truncated chunk header")
        kind, k = CHUNK_HEAD.unpack_from(area, at)
        if kind not in CHUNKS:
            raise FormatError(f"unknown chunk type {kind!r}")
        if kind in chunks:
            raise FormatError(f"chunk {kind.decode()} given twice")
        if k > len(area) - at - CHUNK_HEAD.size:
            raise FormatError(f"chunk {kind.decode()} of {k} bytes runs past the end of the file")
        chunks[kind] = area[at + CHUNK_HEAD.size : at + CHUNK_HEAD.size + k]
        at += CHUNK_HEAD.size + k
    return chunks


CHUNK_NAMES = {b"ALPH": "alpha", b"ICCP": "icc", b"EXIF": "exif", b"XMP ": "xmp"}  # as info and the API name them


def chunk_sizes(data: bytes) -> dict[str, int]:
    """The bytes of each chunk of a .bbc file, by what it holds (alpha, icc, exif, xmp)."""
    return {CHUNK_NAMES[k]: len(v) for k, v in read_chunks(data).items()}


def read_chunks(data: bytes) -> dict[bytes, bytes]:
    """The chunks of a .bbc file by type (none before version 3, maybe none in versions
    4 to 6); unpack checks them."""
    if not has_chunks_length(data[4]):
        return {}
    (n,) = struct.unpack_from("<I", data, 32)
    start, k, m = _sections(data)
    return _parse_chunks(data[start + k + n : start + k + n + m]) if m else {}
