"""Block-level masked convolution, the one primitive of the Kamisli 2022 codec.

The image lives on a grid of 8x8 blocks (space-to-depth, 192 channels per block).
A 3x3 convolution on that grid with mask "A" sees only the causal neighbours of a
block, never the block itself nor anything not yet decoded::

        UL  U  UR          1 1 1
        L   .  -     ->    1 0 0
        -   -  -           0 0 0

Each network adds a 1x1 convolution on the current block's own input (the block for
analysis, its latents for synthesis) to this masked convolution on the reconstruction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Kernel taps that mask A keeps, in the order the codec gathers neighbours: UL, U, UR, L.
NEIGHBOUR_TAPS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (0, 2), (1, 0))


def mask_a() -> torch.Tensor:
    """3x3 mask with ones at the causal neighbour taps."""
    m = torch.zeros(3, 3)
    for ky, kx in NEIGHBOUR_TAPS:
        m[ky, kx] = 1.0
    return m


class BlockMaskedConv2d(nn.Conv2d):
    """3x3 conv over the block grid that sees only UL, U, UR and L (zero outside the image)."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True) -> None:
        super().__init__(in_ch, out_ch, kernel_size=3, padding=1, bias=bias)
        self.register_buffer("mask", mask_a(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)

    def neighbour_matrix(self) -> torch.Tensor:
        """Weight as (out, 4*in) for a gathered [UL, U, UR, L] neighbour vector."""
        return torch.cat([self.weight[:, :, ky, kx] for ky, kx in NEIGHBOUR_TAPS], dim=1)
