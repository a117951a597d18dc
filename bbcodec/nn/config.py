"""The sizes of the networks (no torch here: `bbcodec train --help` shows them without it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the networks; the paper's low-rate model is N=768, M=96."""

    N: int = 192  # width of the first hidden layer
    M: int = 128  # latents per 8x8 block (48 caps PSNR near 34 dB, see train/grow.py)
    # Kernel of each of the four layers of every network: the first is the masked 3x3
    # on the reconstruction; a later 3 is a mask-B conv on hidden features (high rate:
    # (3, 3, 1, 1)); 1 is a per-block 1x1.
    kernels: tuple[int, ...] = (3, 1, 1, 1)
    # Linear shortcut from each auto-encoder network's own input to its output (analysis:
    # block -> latents, synthesis: latents -> block), added to the last layer. Not in the
    # paper: it gives the networks a transform-coding path that is learnt in a few
    # hundred steps, while the nonlinear path alone kept our first model below 34 dB.
    skip: bool = False

    def __post_init__(self) -> None:
        if len(self.kernels) != 4 or self.kernels[0] != 3 or any(k not in (1, 3) for k in self.kernels):
            raise ValueError(f"kernels must be 4 values, the first 3, the others 1 or 3: {self.kernels}")

    @property
    def widths(self) -> list[int]:
        """Hidden widths of analysis (synthesis mirrors them): N, 7N/8, 6N/8."""
        return [self.N, 7 * self.N // 8, 6 * self.N // 8]

    @property
    def entropy_widths(self) -> list[int]:
        """Hidden widths of the entropy net: 12N/8, 10N/8, 8N/8."""
        return [12 * self.N // 8, 10 * self.N // 8, self.N]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kernels"] = list(self.kernels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{**d, "kernels": tuple(d.get("kernels", (3, 1, 1, 1))), "skip": bool(d.get("skip", False))})
