"""The alpha plane of a version 3 file (chunk ALPH, docs/format.md 8): exact, lossless.

One byte names the filter, then the filtered plane is deflated (zlib, RFC 1950):
filter 0 keeps the bytes, 1 stores each byte's difference from its left neighbour, 2
from the one above (mod 256; outside the image the neighbour is 0). Undoing a filter is
a cumulative sum along rows or columns, so decoding is a few numpy passes whatever the
size; the encoder keeps the smallest of the three.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..errors import FormatError

FILTERS = (0, 1, 2)  # none, left, up


def _filtered(alpha: np.ndarray, kind: int) -> np.ndarray:
    """The plane with filter kind applied: differences mod 256 (uint8 arithmetic wraps)."""
    if kind == 0:
        return alpha
    return np.diff(alpha, axis=1 if kind == 1 else 0, prepend=np.uint8(0))


def encode(alpha: np.ndarray) -> bytes:
    """An HxW uint8 alpha plane -> the ALPH chunk's data (the smallest filter's)."""
    if alpha.ndim != 2 or alpha.dtype != np.uint8:
        raise ValueError("an alpha plane is an HxW uint8 array")
    best = b""
    for kind in FILTERS:
        data = bytes([kind]) + zlib.compress(np.ascontiguousarray(_filtered(alpha, kind)).tobytes(), 9)
        if not best or len(data) < len(best):
            best = data
    return best


def decode(data: bytes, width: int, height: int) -> np.ndarray:
    """The ALPH chunk's data -> the HxW uint8 plane; FormatError for anything but exactly
    width x height bytes of a known filter (never inflating more than that)."""
    if not data or data[0] not in FILTERS:
        raise FormatError(f"alpha chunk: unknown filter {data[0] if data else None}")
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data[1:], width * height)
    except zlib.error as e:
        raise FormatError(f"alpha chunk: corrupt deflate stream ({e})") from None
    if len(raw) != width * height or inflate.unconsumed_tail or not inflate.eof or inflate.unused_data:
        raise FormatError(f"alpha chunk: not exactly {width}x{height} bytes")
    plane = np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
    if data[0] == 0:
        return plane.copy()
    axis = 1 if data[0] == 1 else 0
    return np.cumsum(plane, axis=axis, dtype=np.uint8)
