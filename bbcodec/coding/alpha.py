"""The alpha plane of a version 3 file (chunk ALPH, docs/format.md 8): exact, lossless.

One byte names the filter, then the filtered plane is compressed as a raw LZMA2 stream
(xz's filter, no container) whose dictionary holds the whole plane: filter 0 keeps the
bytes, 1 stores each byte's difference from its left neighbour, 2 from the one above
(mod 256; outside the image the neighbour is 0). Undoing a filter is a cumulative sum
along rows or columns, so decoding is a few numpy passes whatever the size. The encoder
picks the filter whose bytes compress smallest at LZMA's fastest preset (a cheap guess
that ranks them as the slow ones do), then compresses once (lzma2.py: the strongest
preset up to 4 MP, finding repeated shapes across the plane: a sheet of sprites 3.4x
smaller than at the default preset). On Kodak-sized masks LZMA2 is 1.0-3x smaller than
deflate; benchmarks/alpha.py compares it with WebP's lossless alpha.
"""

from __future__ import annotations

import lzma

import numpy as np

from ..errors import FormatError
from . import lzma2

FILTERS = (0, 1, 2)  # none, left, up


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
                                                         filters=lzma2.chain(alpha.size, 1))))
    stream = lzma2.compress(planes[kind])
    assert stream is not None  # no limit
    return bytes([kind]) + stream


def decode(data: bytes, width: int, height: int) -> np.ndarray:
    """The ALPH chunk's data -> the HxW uint8 plane; FormatError for anything but exactly
    width x height bytes of a known filter (never decompressing more than that)."""
    if not data or data[0] not in FILTERS:
        raise FormatError(f"alpha chunk: unknown filter {data[0] if data else None}")
    raw = lzma2.decompress(data[1:], width * height, "alpha chunk")
    plane = np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
    if data[0] == 0:
        return plane.copy()
    return np.cumsum(plane, axis=1 if data[0] == 1 else 0, dtype=np.uint8)
