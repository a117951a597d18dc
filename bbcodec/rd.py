"""Rate-distortion summaries: Bjontegaard deltas with piecewise cubic interpolation.

As CompressAI and JPEG AI report them: log-rate as a monotone piecewise cubic (PCHIP)
function of PSNR (and back), integrated over the PSNR range both curves cover.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    from scipy.interpolate import PchipInterpolator

    order = np.argsort(x)
    f = PchipInterpolator(x[order], y[order])
    return float(f.integrate(lo, hi))


def bd_rate(bpp_a, psnr_a, bpp_b, psnr_b) -> float:
    """Average bitrate change of curve b relative to a, in percent (negative = b smaller)."""
    pa, pb = np.asarray(psnr_a, float), np.asarray(psnr_b, float)
    la, lb = np.log(np.asarray(bpp_a, float)), np.log(np.asarray(bpp_b, float))
    lo, hi = max(pa.min(), pb.min()), min(pa.max(), pb.max())
    if hi <= lo:
        return float("nan")
    diff = (_pchip_integral(pb, lb, lo, hi) - _pchip_integral(pa, la, lo, hi)) / (hi - lo)
    return float((np.exp(diff) - 1) * 100)


def bd_psnr(bpp_a, psnr_a, bpp_b, psnr_b) -> float:
    """Average PSNR change of curve b relative to a, in dB (positive = b better)."""
    la, lb = np.log(np.asarray(bpp_a, float)), np.log(np.asarray(bpp_b, float))
    lo, hi = max(la.min(), lb.min()), min(la.max(), lb.max())
    if hi <= lo:
        return float("nan")
    pa, pb = np.asarray(psnr_a, float), np.asarray(psnr_b, float)
    return (_pchip_integral(lb, pb, lo, hi) - _pchip_integral(la, pa, lo, hi)) / (hi - lo)


def load_curve(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, bpp, psnr) from a CompressAI-layout results JSON."""
    d = json.loads(Path(path).read_text())
    r = d["results"]
    return d.get("name", Path(path).stem), np.asarray(r["bpp"], float), np.asarray(r["psnr-rgb"], float)
