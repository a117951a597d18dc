"""Lossless images (format version 5, docs/format.md 10): the pixels themselves, through
one reversible transform and LZMA2.

Text, user interfaces, charts, line art, ramps and flat colours cost less exactly than
the photo-trained networks spend on them lossily (a 512x256 page of small text: 3.9 kB
exact against 12.1 kB at quality 1), so the encoder writes such an image losslessly
whenever that file is the smaller (`lossless=None`, the default), or always when asked.
For photos the exact file is several times larger: a cheap estimate (`estimate`) rules
them out before any LZMA work (about 20 ms for a Kodak image): their files do not change.

Transforms (the header's transform field), each as the decoder undoes it:
  0 interleaved  the pixels as stored, row by row, channels interleaved
  1 left         per channel plane, each byte minus its left neighbour (mod 256)
  2 gradient     per channel plane, each byte minus (left + up - up-left) (mod 256)
  3 palette      at most 256 colours: the count - 1, the colours, then one index per pixel
Every inverse is a cumulative sum or a table lookup, so decoding stays in numpy.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from ..errors import DecodeError, FormatError
from . import format, lzma2
from .format import TRANSFORMS

# LZMA is tried where estimate() is at most this times the lossy file plus SLACK bytes: zlib
# overshoots LZMA by up to 3.4x on the synthetic set's larger files, 6x on its tiny ones
MARGIN, SLACK = 5.0, 2000


def _planes(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 planes of an HxW or HxWxC image."""
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


def _diff(a: np.ndarray, axis: int) -> np.ndarray:
    """Each byte minus its neighbour before it along axis (0 before the first), mod 256:
    uint8 arithmetic wraps, as alpha.py's filters do."""
    return np.diff(a, axis=axis, prepend=np.uint8(0))


# A transform gives (prefix bytes, rows): its data is the prefix, then rows (P, H, X) uint8
# in C order, row y of each of the P planes holding what image row y gives.
Transformed = tuple[bytes, np.ndarray]


def _interleaved(img: np.ndarray) -> Transformed:
    return b"", img.reshape(1, img.shape[0], -1)


def _left(img: np.ndarray) -> Transformed:
    return b"", _diff(_planes(img), 2)


def _gradient(img: np.ndarray) -> Transformed:
    """left + up - up-left predicted: the left residuals' difference from the row above."""
    return b"", _diff(_left(img)[1], 1)


def _colour_keys(img: np.ndarray) -> np.ndarray:
    """One uint32 per pixel: its channel bytes packed."""
    if img.ndim == 2:
        return img.astype(np.uint32)
    c = img.astype(np.uint32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _palette(img: np.ndarray) -> Transformed | None:
    """Colours in the order of their packed value; None above 256 colours."""
    sample, _ = _sample(img)
    if len(np.unique(_colour_keys(sample))) > 256:  # a photo is ruled out on a few rows
        return None
    keys, index = np.unique(_colour_keys(img), return_inverse=True)
    if len(keys) > 256:
        return None
    shifts = np.array([0] if img.ndim == 2 else [16, 8, 0], np.uint32)
    colours = ((keys[:, None] >> shifts) & 255).astype(np.uint8)
    return bytes([len(keys) - 1]) + colours.tobytes(), index.astype(np.uint8).reshape(1, *img.shape[:2])


FORWARD: dict[int, Callable[[np.ndarray], Transformed | None]] = {
    0: _interleaved, 1: _left, 2: _gradient, 3: _palette}
PALETTE = 3


def _band_rows(h: int) -> np.ndarray | None:
    """Every eighth band of 8 rows (None: all rows, for an image under 128 rows)."""
    return None if h < 128 else np.flatnonzero((np.arange(h) // 8) % 8 == 0)


def _sample(img: np.ndarray) -> tuple[np.ndarray, float]:
    rows = _band_rows(img.shape[0])
    return (img, 1.0) if rows is None else (img[rows], len(rows) / img.shape[0])


def candidates(img: np.ndarray) -> dict[int, Transformed]:
    """Each applicable transform's output, by transform id."""
    out = {}
    for t, forward in FORWARD.items():
        got = forward(img)
        if got is not None:
            out[t] = got
    return out


def _sampled(img: np.ndarray) -> tuple[dict[int, Transformed], float]:
    """Each transform's rows for an eighth of the image's rows (all of a small image),
    computed from those rows and the ones above them only, and the share of rows."""
    rows = _band_rows(img.shape[0])
    if rows is None:
        return candidates(img), 1.0
    cur = img[rows]
    above = img[np.maximum(rows - 1, 0)]
    above[rows == 0] = 0  # the gradient's row above the first is zeros
    left_cur = _left(cur)[1]
    out: dict[int, Transformed] = {0: _interleaved(cur), 1: (b"", left_cur), 2: (b"", left_cur - _left(above)[1])}
    palette = _palette(cur)
    if palette is not None:
        out[PALETTE] = palette
    return out, len(rows) / img.shape[0]


def estimate(img: np.ndarray) -> dict[int, int]:
    """Transform -> about how many bytes it would take: zlib (level 6) on an eighth of its
    rows, scaled. 1-6x LZMA's size on the synthetic set, and about 20 ms for a Kodak
    image: enough to rank the transforms and to rule photos out. The palette is listed
    where those rows have at most 256 colours (the whole image may have more)."""
    sampled, share = _sampled(img)
    return {t: int(len(zlib.compress(prefix + r.tobytes(), 6)) / share) for t, (prefix, r) in sampled.items()}


def worth_trying(estimates: dict[int, int], lossy_bytes: int) -> bool:
    """Whether LZMA may beat a lossy file of lossy_bytes (MARGIN, SLACK: zlib's overshoot)."""
    return min(estimates.values()) <= MARGIN * lossy_bytes + SLACK


def encode(img: np.ndarray, transform: int | None = None, estimates: dict[int, int] | None = None,
           limit: int | None = None) -> tuple[int, bytes] | None:
    """(transform, LZMA2 stream) of an HxW or HxWx3 uint8 image: the given transform, or
    the smallest of the two that estimate() ranks first and the palette where it applies;
    None if none fits in limit bytes."""
    if transform is not None:
        tries = [transform]
    else:
        est = estimate(img) if estimates is None else estimates
        tries = sorted(est, key=lambda t: est[t])[:2]
        if PALETTE in est and PALETTE not in tries:  # zlib ranks it too low (text: 4.2 for 3.8 kB)
            tries.append(PALETTE)
    best: tuple[int, bytes] | None = None
    for t in tries:
        got = FORWARD[t](img)
        if got is None and transform is None:
            continue  # the palette of a sample's colours: the image has more than 256
        if got is None:
            raise ValueError(f"transform {TRANSFORMS[t]} does not apply to this image")
        stream = lzma2.compress(got[0] + got[1].tobytes(), limit=limit if best is None else len(best[1]) - 1)
        if stream is not None and (best is None or len(stream) < len(best[1])):
            best = (t, stream)
    return best


def _inflate(stream: bytes, n: int) -> bytes:
    return lzma2.decompress(stream, n, "lossless data")


def decode(header: format.Header, stream: bytes) -> np.ndarray:
    """The HxW (channels 1) or HxWx3 uint8 image of a version 5 file (its header and
    data), once its digest matches (check 10)."""
    img = _pixels(header.streams & 0xFF, stream, header.width, header.height, header.channels)
    if format.image_digest(img.tobytes()) != header.image_digest:
        raise DecodeError("decoded image does not match the encoder's (digest mismatch): corrupt file")
    return img


def _pixels(transform: int, stream: bytes, width: int, height: int, channels: int) -> np.ndarray:
    """The pixels of a version 5 file's data (check 13)."""
    if transform not in range(len(TRANSFORMS)):
        raise FormatError(f"unknown lossless transform {transform}")
    pixels = width * height * channels
    if transform == PALETTE:
        count = lzma2.first_byte(stream, "lossless data") + 1
        table = _inflate(stream, 1 + count * channels + width * height)
        colours = np.frombuffer(table, np.uint8, count * channels, 1).reshape(count, channels)
        index = np.frombuffer(table, np.uint8, offset=1 + count * channels)
        if int(index.max(initial=0)) >= count:
            raise FormatError(f"lossless data: a palette index at or above the {count} colours")
        img = colours[index].reshape(height, width, channels)
    else:
        data = np.frombuffer(_inflate(stream, pixels), np.uint8)
        if transform == 0:
            img = data.reshape(height, width, channels)
        else:  # uint8 sums wrap around: mod 256, as the residuals were taken
            acc = np.cumsum(data.reshape(channels, height, width), axis=2, dtype=np.uint8)
            if transform == 2:
                acc = np.cumsum(acc, axis=1, dtype=np.uint8)
            img = acc.transpose(1, 2, 0)
    return img[:, :, 0].copy() if channels == 1 else np.ascontiguousarray(img)


def _file(img: np.ndarray, quality_x256: int, transform: int, stream: bytes, reduced: bool = False) -> bytes:
    header = format.Header(width=img.shape[1], height=img.shape[0], quality_x256=quality_x256,
                           weights_sha256=format.NO_WEIGHTS, image_digest=format.image_digest(img.tobytes()),
                           model_id=0, channels=1 if img.ndim == 2 else 3, version=format.LOSSLESS,
                           streams=transform | (format.REDUCED if reduced else 0))
    return format.pack(header, stream)


def _limit(below: int) -> int:
    """The most LZMA2 bytes a version 5 file smaller than below bytes (without chunks) holds."""
    return below - 1 - format.header_size(format.LOSSLESS) - format.TRAILER_SIZE


def encode_file(img: np.ndarray, quality_x256: int, transform: int | None = None) -> bytes:
    """A version 5 file of an HxW or HxWx3 uint8 image (quality_x256 recorded), by the
    given transform or the best of encode()'s; smaller_file() is the default's choice."""
    got = encode(img, transform)
    assert got is not None  # no limit
    return _file(img, quality_x256, *got)


# Fewer colours: where even the exact file is larger than the lossy one, the image with
# its colours reduced (median cut, no dithering) may still be smaller and closer to it.
COLOURS = (256, 128, 64, 32, 16, 8, 4)
REDUCE_MARGIN = 12.0  # tried where estimate() is at most this times the lossy file plus SLACK


Reducer = Callable[[np.ndarray, int], np.ndarray]  # (HxWx3 image, colours) -> the image in at most that many


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference, a few rows at a time (no image-sized float array)."""
    step = max(1, (1 << 20) // max(1, a[0].size))
    total = sum(float(np.sum((a[y : y + step].astype(np.float64) - b[y : y + step]) ** 2))
                for y in range(0, a.shape[0], step))
    return total / a.size


def smaller_file(img: np.ndarray, quality_x256: int, lossy_bytes: int, lossy_rec: np.ndarray,
                 reduce_colours: Reducer) -> tuple[bytes, np.ndarray, int | None] | None:
    """A version 5 file, the image it decodes to and its colours (None: img exactly)
    that beats a lossy file of lossy_bytes decoding to lossy_rec: the image exactly if
    that is smaller; else (RGB) the most
    colours of COLOURS whose image (by reduce_colours: images.reduce_colours, Pillow's
    median cut) is closer to img than the lossy one (by MSE) and whose file is smaller,
    found by halving; else None. Text, user interfaces and charts at
    low qualities: a 512x256 page of large text in 4 colours is 3.4 kB at 32.1 dB (84
    SSIMULACRA2) where quality 1 gives 3.8 kB at 26.5 dB (40)."""
    limit = _limit(lossy_bytes)
    if limit <= 0:
        return None
    estimates = estimate(img)
    if worth_trying(estimates, lossy_bytes):
        got = encode(img, None, estimates, limit)
        if got is not None:
            return _file(img, quality_x256, *got), img, None
    if img.ndim == 2 or min(estimates.values()) > REDUCE_MARGIN * lossy_bytes + SLACK:
        return None
    sample, _ = _sample(img)
    lossy_mse = _mse(img, lossy_rec)
    if _mse(sample, reduce_colours(sample, COLOURS[0])) > lossy_mse:  # its own colours fit it best
        return None  # a photo at a high quality: ruled out on an eighth of its rows
    closer = []  # (colours, image) closer to img than the lossy file, most colours first
    for colours in COLOURS:
        reduced = reduce_colours(img, colours)
        if _mse(img, reduced) > lossy_mse:
            break  # fewer colours are no closer
        closer.append((colours, reduced))
    best: tuple[bytes, np.ndarray, int | None] | None = None
    lo, hi = 0, len(closer) - 1  # closer[lo..hi]: fewer colours, smaller files
    while lo <= hi:
        mid = (lo + hi) // 2
        colours, reduced = closer[mid]
        got = encode(reduced, PALETTE, limit=limit)
        if got is None:
            lo = mid + 1
        else:
            same = np.array_equal(reduced, img)  # at most 256 colours already: exact after all
            best = (_file(reduced, quality_x256, *got, reduced=not same), reduced, None if same else colours)
            hi = mid - 1
    return best
