"""Image quality metrics of bench: PSNR, MS-SSIM and SSIMULACRA2 of a decoded 8-bit RGB
image against its original.

MS-SSIM is computed here in numpy, as pytorch-msssim computes it (Wang et al. 2003: an
11x11 Gaussian window of sigma 1.5 without padding, 5 scales, 2x2 average pooling, the
RGB channels averaged, data range 255), so bench needs no torch; tests/test_bench.py
checks it against pytorch-msssim. SSIMULACRA2 (the JPEG XL project's metric: about 30
low, 50 medium, 70 high and 90 visually lossless quality) comes from the `ssimulacra2`
package, a numpy/scipy port of libjxl's tools/ssimulacra2.
"""

from __future__ import annotations

import io

import numpy as np

from .rd import psnr  # noqa: F401 - one place for the three metrics

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIDE = 161  # (11 - 1) * 2**4 + 1: the window still fits at the coarsest scale
SSIMULACRA2_MIN_SIDE = 8


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (N, H, W) maps with the 1-D window g on H and W
    (an axis shorter than the window is left unfiltered, as pytorch-msssim does)."""
    from scipy.ndimage import correlate1d

    r = len(g) // 2
    for axis in (1, 2):
        if x.shape[axis] < len(g):
            continue
        x = correlate1d(x, g, axis=axis, mode="constant")
        x = x[:, r:-r] if axis == 1 else x[:, :, r:-r]
    return x


def _ssim(x: np.ndarray, y: np.ndarray, g: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and contrast-structure terms."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    maps = np.concatenate([x, y, x * x, y * y, x * y])  # (5 * channels, H, W)
    mu1, mu2, e11, e22, e12 = np.split(_filter(maps, g), 5)
    s11, s22, s12 = e11 - mu1 * mu1, e22 - mu2 * mu2, e12 - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs
    return ssim.mean(axis=(1, 2)), cs.mean(axis=(1, 2))


def _pool(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (C, H, W), stride 2; an odd side padded with a zero on both
    ends first (torch's avg_pool2d with padding = side % 2, zeros counted)."""
    x = np.pad(x, [(0, 0)] + [(s % 2, s % 2) for s in x.shape[1:]])
    h, w = x.shape[1] // 2, x.shape[2] // 2
    return x[:, : 2 * h, : 2 * w].reshape(-1, h, 2, w, 2).mean(axis=(2, 4))


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float | None:
    """MS-SSIM of two (H, W, 3) images (0..data_range); None when a side is under 161
    pixels (too small for 5 scales)."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    g = _gaussian()
    x, y = (np.atleast_3d(v).astype(np.float64).transpose(2, 0, 1) for v in (a, b))
    terms = []
    for i in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim(x, y, g, data_range)
        if i < len(MS_SSIM_WEIGHTS) - 1:
            terms.append(np.maximum(cs, 0))
            x, y = _pool(x), _pool(y)
    terms.append(np.maximum(ssim, 0))
    w = np.asarray(MS_SSIM_WEIGHTS)[:, None]
    return float(np.mean(np.prod(np.stack(terms) ** w, axis=0)))


def ms_ssim_db(v: float) -> float:
    """MS-SSIM in dB, -10 log10(1 - v): the scale RD plots and BD-rates use."""
    return float(-10 * np.log10(max(1e-10, 1 - v)))


def ssimulacra2(a: np.ndarray, b: np.ndarray) -> float | None:
    """SSIMULACRA2 score of b against the original a (8-bit RGB); None when a side is
    under 8 pixels (the metric needs one 8x8 scale)."""
    from ssimulacra2 import compute_ssimulacra2

    if min(a.shape[:2]) < SSIMULACRA2_MIN_SIDE:
        return None
    return float(compute_ssimulacra2(_ppm(a), _ppm(b)))


def _ppm(img: np.ndarray) -> io.BytesIO:
    """An uncompressed in-memory file: the package reads images through Image.open."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PPM")
    buf.seek(0)
    return buf
