"""What weights can be tuned for. A weights file names its tuning in its meta record
("tune"); --tune picks the first installed file of a tuning (model/weights.py). Imports
nothing heavy: the CLI lists the choices before any numpy is loaded."""

from __future__ import annotations

from ..errors import WeightsError

# "visual": for the eye (a training distortion with SSIMULACRA2 in it; the shipped default);
# "psnr": RGB MSE, the paper's objective (every file without a "tune" in its meta).
TUNES = ("visual", "psnr")
UNTUNED = "psnr"


def check_tune(tune: object) -> None:
    """Refuse a tuning that is not one of TUNES (None: the default weights, any tuning)."""
    if tune is not None and tune not in TUNES:
        raise WeightsError(f"tune must be one of {', '.join(TUNES)}, got {tune!r}")
