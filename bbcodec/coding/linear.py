"""The encoder-fitted linear filter of format version 7 (docs/format.md section 12).

The networks and the post-loop filter are fixed for every picture; what is left of each
picture's error often still correlates with the decoded pixels (a colour cast, slight
blur, ringing next to sharp edges). As VVC's adaptive loop filter does, the encoder fits
a small linear filter to that picture alone, by least squares from its decoded image to
its source, and sends the coefficients: each output colour is corrected by a sum over a
3x3 window of all three decoded colours plus a constant. It costs 27 multiply-adds per
value (81 per pixel) and a few dozen bytes, and is written only where those bytes buy
more than they cost at the file's lambda (the training lambda, effort.rd_lambda).

Integers throughout: coefficients in units of 2^-shift, rounded half up by a shift, so
every decoder gets the same pixels. A row's taps sum to below 2^MAX_TAP_BITS in
magnitude, so that every partial sum of the window's products is an integer below 2^24
(|pixel - 128| <= 128): exact in float32, whose matrix products are twice as fast as
float64's; the constant is added in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from ..model.filter import bands

# the window offsets (dy, dx) of each shape's taps, per input colour; a symmetric tap
# weighs the pixel and its mirror image about the centre alike
POINT = ((0, 0),)
FULL = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
SYMMETRIC = ((0, 0), (0, 1), (1, -1), (1, 0), (1, 1))  # each but the centre also stands for (-dy, -dx)
SHAPES = ("point", "symmetric 3x3", "full 3x3")  # the section's shape byte: 0, 1, 2
TAPS = (POINT, SYMMETRIC, FULL)
MAX_SHIFT = 20
MAX_ORDER = 16  # Exp-Golomb order
MAX_BITS = 24  # |coefficient| < 2^24
MAX_TAP_BITS = 17  # the magnitudes of an output colour's 27 window weights sum to below 2^17
STRIP = 65536  # pixels filtered or fitted at a time (bounded memory)


@dataclass(frozen=True)
class LinearFilter:
    """shape (index into SHAPES), shift, and coefs (3, 3 T + 1) int64: for each output
    colour R, G, B, each input colour's T taps in the shape's order, then the constant."""

    shape: int
    shift: int
    coefs: np.ndarray

    def kernel(self) -> np.ndarray:
        """(3, 3, 3, 3) integers [output colour, dy + 1, dx + 1, input colour] of the full 3x3
        window that the shape's coefficients stand for."""
        return (self.coefs @ _expansion(self.shape).astype(np.int64))[:, :27].reshape(3, 3, 3, 3)

    def apply(self, img: np.ndarray, out: np.ndarray | None = None, band: tuple[int, int] = (0, 1)) -> np.ndarray:
        """The filtered copy of an HxWx3 uint8 image: each value plus
        floor((sum of kernel x (window - 128) + constant + 2^(shift - 1)) / 2^shift), clipped
        to 0..255, the window's pixels outside the image those of the nearest edge.
        out: where to write (default a new array); band (i, k): only the i-th of k bands
        of rows (filter.bands), so that k processes can share the work (each row reads
        only the input image)."""
        height, width = img.shape[:2]
        W = self.kernel().transpose(1, 2, 3, 0).reshape(27, 3).astype(np.float32)  # [(dy, dx, colour)][out]
        const = self.coefs[:, -1].astype(np.float64) + (float(1 << (self.shift - 1)) if self.shift else 0.0)
        scale = 2.0 ** -self.shift
        if out is None:
            out = np.empty_like(img)
        step = max(1, STRIP // max(width, 1))
        first, end = bands(height, band[1])[band[0]]
        for y0 in range(first, end, step):
            y1 = min(end, y0 + step)
            acc = _windows(img, y0, y1, np.float32) @ W  # exact: every partial sum an integer below 2^24
            res = np.floor((acc.astype(np.float64) + const) * scale).reshape(y1 - y0, width, 3) + img[y0:y1]
            out[y0:y1] = np.clip(res, 0, 255)
        return out

    def tap_sums(self) -> np.ndarray:
        """Each output colour's sum of |window weight| over its 27 (MAX_TAP_BITS' bound)."""
        return np.abs(self.kernel()).reshape(3, 27).sum(1)

    def to_bytes(self) -> bytes:
        """The section: shape, shift and Exp-Golomb order bytes, then every coefficient
        (coefs' order, row by row) as a signed Exp-Golomb code, MSB first, zero-padded to
        a byte; at the order that makes it shortest."""
        values = self.coefs.ravel().tolist()
        order = int(_bits_per_order(self.coefs).argmin())
        bits = "".join(_code(v, order) for v in values)
        bits += "0" * (-len(bits) % 8)
        return bytes([self.shape, self.shift, order]) + int(bits, 2).to_bytes(len(bits) // 8, "big")

    @classmethod
    def parse(cls, section: bytes) -> LinearFilter:
        """The section of a file, checked (check 14 of docs/format.md 2)."""
        if len(section) < 4:
            raise FormatError(f"linear filter: {len(section)} bytes (at least 4)")
        shape, shift, order = section[:3]
        if shape >= len(SHAPES) or shift > MAX_SHIFT or order > MAX_ORDER:
            raise FormatError(f"linear filter: shape {shape}, shift {shift} or order {order} out of range")
        n = 3 * (3 * len(TAPS[shape]) + 1)
        if len(section) > 3 + -(-n * (2 * (MAX_BITS + 1) + MAX_ORDER + 1) // 8):  # before any bit string is made
            raise FormatError(f"linear filter: {len(section)} bytes, more than its {n} codes can take")
        bits = bin(int.from_bytes(section[3:], "big"))[2:].zfill(8 * (len(section) - 3))
        values, at = [], 0
        for _ in range(n):
            zeros = bits.find("1", at) - at
            if zeros < 0 or at + 2 * zeros + order + 1 > len(bits):
                raise FormatError("linear filter: the coefficients run past the end of the section")
            if zeros > MAX_BITS + 1:
                raise FormatError(f"linear filter: a coefficient of {MAX_BITS} bits or more")
            u = int(bits[at + zeros : at + 2 * zeros + order + 1], 2) - (1 << order)
            at += 2 * zeros + order + 1
            v = (u + 1) // 2 if u % 2 else -(u // 2)
            if abs(v) >= 1 << MAX_BITS:
                raise FormatError(f"linear filter: a coefficient of {MAX_BITS} bits or more")
            values.append(v)
        if len(bits) - at >= 8 or bits[at:].count("1"):
            raise FormatError("linear filter: bytes after its coefficients, or padding bits that are not 0")
        if not any(values):
            raise FormatError("linear filter: every coefficient is 0 (such an image is written without one)")
        found = cls(shape, shift, np.array(values, dtype=np.int64).reshape(3, -1))
        if found.tap_sums().max() >= 1 << MAX_TAP_BITS:
            raise FormatError(f"linear filter: an output colour's weights sum to 2^{MAX_TAP_BITS} or more")
        return found


def _windows(img: np.ndarray, y0: int, y1: int, dtype: type) -> np.ndarray:
    """(pixels, 27): the centred 3x3 windows (dy, dx, colour) of the pixels of rows y0 to
    y1 - 1, the image extended by its edge pixels: each window is 3 rows of 9
    consecutive values of a strip of the extended image (one copy)."""
    height, width = img.shape[:2]
    y = np.clip(np.arange(y0 - 1, y1 + 1), 0, height - 1)
    x = np.clip(np.arange(-1, width + 1), 0, width - 1)
    strip: np.ndarray = img[y][:, x].astype(dtype).reshape(len(y), 3 * (width + 2))
    strip -= 128
    rs, vs = strip.strides
    n = y1 - y0
    win = np.lib.stride_tricks.as_strided(strip, (n, width, 3, 9), (rs, 3 * vs, rs, vs), writeable=False)
    return win.reshape(n * width, 27)


def _code(v: int, order: int) -> str:
    u = (2 * v - 1 if v > 0 else -2 * v) + (1 << order)
    return "0" * (u.bit_length() - 1 - order) + format(u, "b")


def _bits_per_order(coefs: np.ndarray) -> np.ndarray:
    """The bits of all coefficients' codes at each order 0..MAX_ORDER (frexp's exponent
    is the bit length of an integer below 2^53, exactly)."""
    v = coefs.ravel().astype(np.int64)
    u = np.where(v > 0, 2 * v - 1, -2 * v)
    k = np.arange(MAX_ORDER + 1)[:, None]
    length = np.frexp((u[None, :] + (1 << k)).astype(np.float64))[1]
    return (2 * length - 1 - k).sum(axis=1)


def section_bytes(coefs: np.ndarray) -> int:
    """The bytes of the section of these coefficients (to_bytes' length, without writing it)."""
    return 3 + -(-int(_bits_per_order(coefs).min()) // 8)


def _features(img: np.ndarray, y0: int, y1: int) -> np.ndarray:
    """(pixels, 28): the full window's 27 centred values (dy, dx, colour) and a 1, as
    kernel() lays the weights out, of rows y0 to y1 - 1."""
    x = _windows(img, y0, y1, np.float64)
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def _expansion(shape: int) -> np.ndarray:
    """(3 T + 1, 28): how a shape's per-output-colour coefficients map onto the full
    window's (so the full window's normal equations serve every shape)."""
    taps = TAPS[shape]
    A = np.zeros((3 * len(taps) + 1, 28))
    for i in range(3):
        for t, (dy, dx) in enumerate(taps):
            A[i * len(taps) + t, ((dy + 1) * 3 + dx + 1) * 3 + i] = 1
            if shape == 1 and (dy, dx) != (0, 0):
                A[i * len(taps) + t, ((1 - dy) * 3 + 1 - dx) * 3 + i] = 1
    A[-1, -1] = 1
    return A


def fit(src: np.ndarray, rec: np.ndarray, lam: float, keep: np.ndarray | None = None,
        header_bytes: int = 12) -> LinearFilter | None:
    """The filter that most lowers bits + lam x SSE / 3 (effort.rd_lambda's units) of rec,
    the decoded HxWx3 image, against src, counting the section and the header_bytes that
    version 7 adds (12 over version 2, 4 over versions 4 and 6); None where no filter
    pays. keep: the pixels whose error counts (HxW bool; None: all; flat blocks,
    repainted after the filter, do not)."""
    height, width = rec.shape[:2]
    G, C, base = np.zeros((28, 28)), np.zeros((28, 3)), 0.0
    step = max(1, STRIP // max(width, 1))
    for y0 in range(0, height, step):  # every row (tests/test_linear.py: every other one is not enough)
        y1 = min(height, y0 + step)
        X = _features(rec, y0, y1)
        Y = (src[y0:y1].astype(np.float64) - rec[y0:y1]).reshape(-1, 3)
        if keep is not None:
            m = keep[y0:y1].ravel()
            X, Y = X[m], Y[m]
        G += X.T @ X
        C += X.T @ Y
        base += float((Y * Y).sum())
    if not base:
        return None
    best: tuple[float, LinearFilter] | None = None
    for shape in range(len(SHAPES)):
        A = _expansion(shape)
        Gs, Cs = A @ G @ A.T, A @ C
        w = np.linalg.solve(Gs + 1e-3 * np.eye(len(Gs)), Cs)  # (3 T + 1, 3)
        for shift in range(4, 15):
            q = np.rint(w * 2.0**shift)
            if not q.any() or np.abs(q).max() >= 1 << MAX_BITS:
                continue
            wq = q / 2.0**shift
            gain = float(np.einsum("ic,ij,jc->", wq, Gs, wq) - 2 * (wq * Cs).sum())  # change of SSE, unrounded
            f = LinearFilter(shape, shift, q.T.astype(np.int64))
            if f.tap_sums().max() >= 1 << MAX_TAP_BITS:
                continue
            J = 8 * (section_bytes(f.coefs) + header_bytes) + lam * gain / 3
            if best is None or J < best[0]:
                best = (J, f)
    if best is None:
        return None
    f = best[1]
    out = f.apply(rec)
    change = 0  # of the SSE, exactly, strip by strip (no whole-image copy)
    for y0 in range(0, height, step):
        y1 = min(height, y0 + step)
        s, a, b = (x[y0:y1].astype(np.int32) for x in (src, out, rec))
        d = (s - a) ** 2 - (s - b) ** 2
        change += int((d if keep is None else d[keep[y0:y1]]).sum())
    return f if 8 * (section_bytes(f.coefs) + header_bytes) + lam * change / 3 < 0 else None
