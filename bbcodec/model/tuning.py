"""What weights can be tuned for. A weights file names its tuning in its meta record
("tune"); --tune picks the first installed file of a tuning (model/weights.py). Imports
nothing heavy: the CLI lists the choices before any numpy is loaded."""

from __future__ import annotations

from ..errors import AQError, WeightsError

# "visual": for the eye (a training distortion with SSIMULACRA2 in it; the shipped default);
# "psnr": RGB MSE, the paper's objective (every file without a "tune" in its meta).
TUNES = ("visual", "psnr")
UNTUNED = "psnr"
# The strength of adaptive quantisation (coding/aq.py) each tuning's weights are used with
# unless told (--aq): the eye's weights spend more bits on smooth areas, PSNR's do not
# (an offset costs PSNR).
AQ_STRENGTH = {"visual": 0.4, "psnr": 0.0}
MAX_AQ = 1.0


def check_aq(aq: object) -> None:
    """Refuse an adaptive-quantisation strength that is not a number in 0..MAX_AQ (None:
    the weights' tuning's)."""
    from numbers import Real

    if aq is not None and (not isinstance(aq, Real) or isinstance(aq, bool) or not 0 <= float(aq) <= MAX_AQ):
        raise AQError(f"aq must be a number within 0..{MAX_AQ:g} (0: off), got {aq!r}")


def check_tune(tune: object) -> None:
    """Refuse a tuning that is not one of TUNES (None: the default weights, any tuning)."""
    if tune is not None and tune not in TUNES:
        raise WeightsError(f"tune must be one of {', '.join(TUNES)}, got {tune!r}")
