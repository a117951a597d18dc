"""Pick the quality that meets a size or PSNR target, like cwebp's -size / -psnr.

Qualities step in 1/256 (the file's quality field); bpp and PSNR grow with quality, so
a bisection down to 1/32 of a quality step (at most ten real encodes) finds the best
one: the largest file not above a bpp target, or the smallest file reaching a PSNR
target. When no quality meets the target the nearest end
(1 or 8) is returned and met is False.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import codec
from . import quality as Q
from .rd import psnr
from .weights import Weights


@dataclass
class RateResult:
    data: bytes
    reconstruction: np.ndarray
    quality: float
    bpp: float
    psnr: float
    met: bool  # whether the target was reached
    probes: int  # encodes spent


def encode_to_target(img: np.ndarray, weights: Weights, target_bpp: float | None = None,
                     target_psnr: float | None = None) -> RateResult:
    """Encode img at the quality that best meets exactly one of the two targets."""
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    pixels = img.shape[0] * img.shape[1]
    cache: dict[int, RateResult] = {}

    def probe(q256: int) -> RateResult:
        if q256 not in cache:
            q = Q.from_x256(q256)
            data, rec = codec.encode(img, q, weights)
            cache[q256] = RateResult(data, rec, q, 8 * len(data) / pixels, psnr(img, rec), False, 0)
        return cache[q256]

    # Feasible qualities are a prefix of [1, 8] for a size target (smaller is fine) and a
    # suffix for a PSNR target. Walk from the end that is feasible if anything is.
    if target_bpp is not None:
        first, last, bpp_max = Q.MIN_X256, Q.MAX_X256, target_bpp
        ok: Callable[[RateResult], bool] = lambda r: r.bpp <= bpp_max  # noqa: E731
    else:
        assert target_psnr is not None
        first, last, psnr_min = Q.MAX_X256, Q.MIN_X256, target_psnr
        ok = lambda r: r.psnr >= psnr_min  # noqa: E731
    if not ok(probe(first)):
        best, met = probe(first), False
    elif ok(probe(last)):
        best, met = probe(last), True
    else:  # invariant: first feasible, last not
        while abs(last - first) > Q.STEP // 32:  # 1/32 of a quality step is as fine as it is worth
            mid = (first + last) // 2
            first, last = (mid, last) if ok(probe(mid)) else (first, mid)
        best, met = probe(first), True
    best.met, best.probes = met, len(cache)
    return best
