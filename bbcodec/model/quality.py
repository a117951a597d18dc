"""Quality: the one knob of the codec, and how a file stores it.

A quality is a number in [1, 8]: the integers are the trained operating points (one
rate-distortion lambda each), fractions interpolate between them. A file stores it as
quality_x256 = round(quality * 256), a u16 in 256..2048 (docs/format.md, 1 and 5.7).
No numpy, no torch: the container module imports this.
"""

from __future__ import annotations

from ..errors import QualityError

NUM_QUALITIES = 8  # trained qualities 1..8
MIN, MAX = 1, NUM_QUALITIES
DEFAULT = 4  # the default of the CLI, the API and the Pillow plugin
TRAINED = tuple(range(MIN, MAX + 1))  # 1, 2, .. 8: what bbcodec bench sweeps by default
STEP = 256  # stored as quality * 256
MIN_X256, MAX_X256 = MIN * STEP, MAX * STEP  # 256 .. 2048
# The rate-distortion lambda each trained quality was trained at (CompressAI's values:
# loss = bpp + lambda * MSE of 0..1 pixels); the effort levels' choices weigh with them.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)


def to_x256(quality: float) -> int:
    """Quality in [1, 8] -> the file's quality_x256 (nearest 1/256)."""
    try:
        q = int(round(float(quality) * STEP))
    except (TypeError, ValueError, OverflowError):
        raise QualityError(f"quality must be a number within {MIN}..{MAX}, got {quality!r}") from None
    if not valid_x256(q):
        raise QualityError(f"quality must be within {MIN}..{MAX}, got {quality}")
    return q


def from_x256(quality_x256: int) -> float:
    return quality_x256 / STEP


def valid_x256(quality_x256: int) -> bool:
    return MIN_X256 <= quality_x256 <= MAX_X256


def interpolation(quality_x256: int) -> tuple[int, float]:
    """(k, t): the quality lies between trained rows k and k+1 (0-based), at fraction t.

    Exact for every stored value (t is a multiple of 1/256), so every machine
    interpolates the per-quality tables identically (docs/format.md 5.7).
    """
    k = min((quality_x256 - MIN_X256) // STEP, NUM_QUALITIES - 2)
    return k, (quality_x256 - MIN_X256 - STEP * k) / STEP
