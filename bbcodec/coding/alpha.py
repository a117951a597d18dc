"""The alpha plane of a version 3 file (chunk ALPH, docs/format.md 8): exact, lossless.

One byte names the filter, then the filtered plane is compressed as a raw LZMA2 stream
(xz's filter, no container) whose dictionary holds the whole plane: filter 0 keeps the
bytes, 1 stores each byte's difference from its left neighbour, 2 from the one above
(mod 256; outside the image the neighbour is 0). Undoing a filter is a cumulative sum
along rows or columns, so decoding is a few numpy passes whatever the size. The encoder
picks the filter whose bytes compress smallest at LZMA's fastest preset (a cheap guess
that ranks them as the slow ones do), then compresses once, at the strongest preset up
to EXTREME_PIXELS (repeated shapes found across the plane: a sheet of sprites 3.4x
smaller than at the default preset) and at the default one above. LZMA2 rather than deflate: its window holds the whole plane, so
repeated shapes far apart cost little (on Kodak-sized masks, 1.0-3x smaller than
deflate; benchmarks/alpha.py compares it with WebP's lossless alpha).
"""

from __future__ import annotations

import lzma

import numpy as np

from ..errors import FormatError

FILTERS = (0, 1, 2)  # none, left, up
EXTREME_PIXELS = 1 << 22  # planes up to 4 MP get xz's strongest preset (9e), larger ones its default (6, ~1 s at 12 MP)


def _lzma2(width: int, height: int, preset: int | None = None) -> list[dict]:
    """The LZMA2 filter chain of a plane: a dictionary as large as the plane (4 KiB at least)."""
    chain: dict = {"id": lzma.FILTER_LZMA2, "dict_size": max(4096, width * height)}
    if preset is not None:
        chain["preset"] = preset
    return [chain]


def _filtered(alpha: np.ndarray, kind: int) -> np.ndarray:
    """The plane with filter kind applied: differences mod 256 (uint8 arithmetic wraps)."""
    if kind == 0:
        return alpha
    return np.diff(alpha, axis=1 if kind == 1 else 0, prepend=np.uint8(0))


def encode(alpha: np.ndarray) -> bytes:
    """An HxW uint8 alpha plane -> the ALPH chunk's data."""
    if alpha.ndim != 2 or alpha.dtype != np.uint8:
        raise ValueError("an alpha plane is an HxW uint8 array")
    height, width = alpha.shape
    planes = [np.ascontiguousarray(_filtered(alpha, k)).tobytes() for k in FILTERS]
    kind = min(FILTERS, key=lambda k: len(lzma.compress(planes[k], format=lzma.FORMAT_RAW,
                                                         filters=_lzma2(width, height, 1))))
    preset = 9 | lzma.PRESET_EXTREME if alpha.size <= EXTREME_PIXELS else 6
    return bytes([kind]) + lzma.compress(planes[kind], format=lzma.FORMAT_RAW, filters=_lzma2(width, height, preset))


def decode(data: bytes, width: int, height: int) -> np.ndarray:
    """The ALPH chunk's data -> the HxW uint8 plane; FormatError for anything but exactly
    width x height bytes of a known filter (never decompressing more than that)."""
    if not data or data[0] not in FILTERS:
        raise FormatError(f"alpha chunk: unknown filter {data[0] if data else None}")
    unpack = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma2(width, height))
    try:
        raw = unpack.decompress(data[1:], width * height)
    except lzma.LZMAError as e:
        raise FormatError(f"alpha chunk: corrupt LZMA2 stream ({e})") from None
    if len(raw) != width * height or not unpack.eof or unpack.unused_data:
        raise FormatError(f"alpha chunk: not exactly {width}x{height} bytes")
    plane = np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
    if data[0] == 0:
        return plane.copy()
    return np.cumsum(plane, axis=1 if data[0] == 1 else 0, dtype=np.uint8)
