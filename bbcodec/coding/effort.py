"""Encoder effort, the knob (like cjxl -e): what each level spends, and its checks.

Effort 1 is the plain encoder; higher levels choose symbols by rate and distortion
(rdoq.py) for smaller files at the same quality, at more encoder time. The decoder and
the format are the same at every effort: a file does not record the effort it was made
at. No numpy (the CLI imports this to check its option).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral

from ..errors import EffortError
from ..model import quality as Q

DEFAULT = 1


@dataclass(frozen=True)
class Level:
    """What one effort level spends."""

    rdoq: tuple[float, ...]  # lambda multipliers of the RDOQ candidates
    lookahead: int  # dependents judged with each candidate (0..4: right, below, below-left, below-right)
    lam: float  # multiplier of the quality's training lambda in every decision
    boundary: float = 0.3  # RDOQ tries symbols whose latent lies within this of a rounding boundary
    passes: int = 1  # RDOQ rounds (each tries single changes to the last round's result)

    @property
    def needs_proxy(self) -> bool:
        """Whether a look-ahead reads blocks not yet coded (the right neighbour reads only
        coded blocks and this wavefront's; the blocks below read the next wavefronts')."""
        return self.lookahead > 1


# Effort 1 is the plain encoder. The training lambda undervalues distortion against the
# rate of the real files (their RD slope is ~1.4x steeper at q2-q7 on training photos,
# and the blocks' context makes distortion dearer still): lam 1.6 was best of 1.3 / 1.6 /
# 2.0 on 8 training photos (tuned there, never on Kodak).
LEVELS: dict[int, Level | None] = {
    1: None,
    2: Level(rdoq=(1.0,), lookahead=1, lam=1.6, boundary=0.15),  # no proxy pass
    3: Level(rdoq=(0.5, 1.0), lookahead=4, lam=1.6, passes=2),
}
MIN, MAX = min(LEVELS), max(LEVELS)


def check(effort: object) -> int:
    """A valid effort as an int, else EffortError (before any work)."""
    if isinstance(effort, bool) or not isinstance(effort, Integral):
        raise EffortError(f"effort must be an integer within {MIN}..{MAX}, got {effort!r}")
    value = int(effort)
    if not MIN <= value <= MAX:
        raise EffortError(f"effort must be within {MIN}..{MAX}, got {value}")
    return value


def rd_lambda(quality_x256: int) -> float:
    """The training lambda at a (fractional) quality, geometric between trained ones, as
    bits per unit of (sum of squared 0..255 errors / 3): the cost of a block is
    bits + lambda x SSE / 3, i.e. 64 x (bpp + lambda x MSE)."""
    k, t = Q.interpolation(quality_x256)
    return math.exp((1 - t) * math.log(Q.LAMBDAS[k]) + t * math.log(Q.LAMBDAS[k + 1]))


