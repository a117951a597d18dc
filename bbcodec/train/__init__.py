"""Training of the block codec (never imported by the codec itself).

Training needs torch; reading the options does not, so that `bbcodec train --help` and
`bbcodec freeze --help` show every option and default without it: train.py and
freeze.py import torch only where TORCH is not None, and their main() raises
need_torch()'s error after parsing.
"""

from __future__ import annotations

from ..errors import ExtraError

TORCH: ModuleNotFoundError | None  # why torch cannot be imported, or None
try:
    import torch  # noqa: F401 - imported here once, for train.py and freeze.py
except ModuleNotFoundError as e:
    if e.name != "torch":
        raise
    TORCH = e
else:
    TORCH = None


def need_torch(what: str) -> None:
    """Raise ExtraError (one line, naming the extra) when torch is missing."""
    if TORCH is not None:
        raise ExtraError(f"{what} needs torch ({TORCH}); install with: pip install 'bbcodec[train]'")
