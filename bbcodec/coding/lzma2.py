"""Raw LZMA2 streams (xz's LZMA2 filter without its container, liblzma's FORMAT_RAW), as
the alpha chunk (docs/format.md 8) and lossless images (10) hold them: one dictionary
rule, one encoder that can give up early, one decoder that never inflates more than
asked. LZMA2 rather than deflate: its window holds the whole image, so repeated glyphs,
sprites and shapes far apart cost little.
"""

from __future__ import annotations

import lzma

from ..errors import FormatError

MAX_DICT = 1 << 26  # dictionary: the data's size, at least 4 KiB, at most 64 MiB
EXTREME_BYTES = 1 << 22  # data up to 4 MiB gets xz's strongest preset (9e), more its default (6, ~1 s at 12 MB)
PIECE = 1 << 16  # bytes fed to the compressor at a time, between checks of a size limit


def dict_size(n: int) -> int:
    """The dictionary both sides use for n bytes of data."""
    return max(4096, min(n, MAX_DICT))


def chain(n: int, preset: int | None = None) -> list[dict]:
    """The filter chain for n bytes of data (preset: the encoder's)."""
    f: dict = {"id": lzma.FILTER_LZMA2, "dict_size": dict_size(n)}
    if preset is not None:
        f["preset"] = preset
    return [f]


def preset_for(n: int) -> int:
    return 9 | lzma.PRESET_EXTREME if n <= EXTREME_BYTES else 6


def compress(data: bytes, preset: int | None = None, limit: int | None = None) -> bytes | None:
    """data as a raw LZMA2 stream (preset: preset_for its size), or None as soon as the
    stream would exceed limit bytes (the compressor emits as it goes, a few hundred kB
    behind its input, so hopeless data is given up early)."""
    c = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=chain(len(data), preset_for(len(data))
                                                                   if preset is None else preset))
    if limit is None:
        return c.compress(data) + c.flush()
    parts, size = [], 0
    for at in range(0, len(data), PIECE):
        parts.append(c.compress(data[at : at + PIECE]))
        size += len(parts[-1])
        if size > limit:
            return None
    parts.append(c.flush())
    stream = b"".join(parts)
    return stream if len(stream) <= limit else None


def decompress(stream: bytes, n: int, what: str) -> bytes:
    """Exactly the n bytes of a raw LZMA2 stream that ends there, with nothing after it;
    a FormatError naming what otherwise. Never inflates more than n + 1 bytes."""
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=chain(n))
    try:
        out = d.decompress(stream, max_length=n)
        more = d.decompress(b"", max_length=1) if len(out) == n and not d.eof else b""
    except lzma.LZMAError as e:
        raise FormatError(f"{what}: corrupt LZMA2 stream ({e})") from None
    if len(out) < n or more or not d.eof or d.unused_data:
        raise FormatError(f"{what}: not exactly {n} bytes in one LZMA2 stream")
    return out


def first_byte(stream: bytes, what: str) -> int:
    """The first byte a raw LZMA2 stream decompresses to, decompressing nothing more (a
    literal: any dictionary reads it); a FormatError naming what otherwise."""
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=chain(1))
    try:
        first = d.decompress(stream, max_length=1)
    except lzma.LZMAError as e:
        raise FormatError(f"{what}: corrupt LZMA2 stream ({e})") from None
    if not first:
        raise FormatError(f"{what}: empty")
    return first[0]
