"""Pick the quality that meets a size or PSNR target, like cwebp's -size / -psnr.

Qualities step in 1/256 (the file's quality field); bpp and PSNR grow with quality, so
a bisection down to 1/32 of a quality step (at most ten real encodes) finds the best
one: the largest file not above a bpp target, or the smallest file reaching a PSNR
target. When no quality meets the target the nearest end
(1 or 8) is returned and met is False.

At an effort above 1 (seconds per encode instead of a fraction of one) the search runs
at effort 1 first, then again at the asked effort within one quality step either side
of that answer (about eight encodes), widening to the whole range only if the answer
at effort 1 does not hold at that effort.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .coding import effort as efforts
from .coding import loop as codec
from .coding.workers import check_threads
from .model import quality as Q
from .model.weights import Weights
from .rd import psnr


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
                     target_psnr: float | None = None, effort: int = efforts.DEFAULT,
                     threads: int | None = None, aq: float = 0.0, linear: bool = False) -> RateResult:
    """Encode img at the quality (and effort) that best meets exactly one of the two
    targets (threads, aq, the adaptive-quantisation strength, and linear as loop.encode's)."""
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    effort = efforts.check(effort)
    threads = check_threads(threads)
    pixels = img.shape[0] * img.shape[1]
    probes = 0

    def prober(e: int) -> Callable[[int], RateResult]:
        cache: dict[int, RateResult] = {}

        def probe(q256: int) -> RateResult:
            nonlocal probes
            if q256 not in cache:
                q = Q.from_x256(q256)
                data, rec = codec.encode(img, q, weights.model, weights.prefix, effort=e, threads=threads, aq=aq,
                                         linear=linear)
                cache[q256] = RateResult(data, rec, q, 8 * len(data) / pixels, psnr(img, rec), False, 0)
                probes += 1
            return cache[q256]

        return probe

    # Feasible qualities are a prefix of [1, 8] for a size target (smaller is fine) and a
    # suffix for a PSNR target. Walk from the end that is feasible if anything is.
    if target_bpp is not None:
        first, last, bpp_max = Q.MIN_X256, Q.MAX_X256, target_bpp
        ok: Callable[[RateResult], bool] = lambda r: r.bpp <= bpp_max  # noqa: E731
    else:
        assert target_psnr is not None
        first, last, psnr_min = Q.MAX_X256, Q.MIN_X256, target_psnr
        ok = lambda r: r.psnr >= psnr_min  # noqa: E731
    best, met = _search(prober(efforts.DEFAULT), ok, first, last)
    if effort != efforts.DEFAULT:  # again at the asked effort, near effort 1's answer
        probe = prober(effort)
        step = Q.STEP if last > first else -Q.STEP  # from the feasible end toward the other
        near = Q.to_x256(best.quality) if met else first
        lo_q, hi_q = min(first, last), max(first, last)
        a, b = (int(np.clip(near - step, lo_q, hi_q)), int(np.clip(near + step, lo_q, hi_q)))
        best, met = _search(probe, ok, a, b)
        if (not met and a != first) or (met and Q.to_x256(best.quality) == b != last):
            best, met = _search(probe, ok, first, last)  # the answer lies outside the bracket
    best.met, best.probes = met, probes
    return best


def _search(probe: Callable[[int], RateResult], ok: Callable[[RateResult], bool], first: int, last: int
            ) -> tuple[RateResult, bool]:
    """(the probe nearest `last` that is ok, True) by bisection, when ok holds at first;
    else (probe(first), False). ok must hold on a prefix of first..last."""
    if not ok(probe(first)):
        return probe(first), False
    if ok(probe(last)):
        return probe(last), True
    while abs(last - first) > Q.STEP // 32:  # 1/32 of a quality step is as fine as it is worth
        mid = (first + last) // 2
        first, last = (mid, last) if ok(probe(mid)) else (first, mid)
    return probe(first), True
