"""Block-level masked convolution, the one primitive of the Kamisli 2022 codec.

The image lives on a grid of 8x8 blocks (space-to-depth, 192 channels per block).
A 3x3 convolution on that grid with mask "A" sees only the causal neighbours of a
block, never the block itself nor anything not yet decoded::

        UL  U  UR          1 1 1
        L   .  -     ->    1 0 0
        -   -  -           0 0 0

Each network adds a 1x1 convolution on the current block's own input (the block for
analysis, its latents for synthesis) to this masked convolution on the reconstruction.
A later layer with kernel 3 (the paper's high-rate model, kernels [3,3,1,1]) uses mask
"B", which also keeps the centre: it sees the hidden features of the block and of its
four causal neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Kernel taps that mask A keeps, in the order the codec gathers neighbours: UL, U, UR, L.
NEIGHBOUR_TAPS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (0, 2), (1, 0))
CENTRE_TAP = (1, 1)


def block_mask(centre: bool) -> torch.Tensor:
    """3x3 mask with ones at the causal neighbour taps (and the centre for mask B)."""
    m = torch.zeros(3, 3)
    for ky, kx in NEIGHBOUR_TAPS + ((CENTRE_TAP,) if centre else ()):
        m[ky, kx] = 1.0
    return m


class BlockMaskedConv2d(nn.Conv2d):
    """3x3 conv over the block grid that sees only UL, U, UR and L (mask A), or those
    and the block itself (mask B); zero outside the image."""

    mask: torch.Tensor

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True, centre: bool = False) -> None:
        super().__init__(in_ch, out_ch, kernel_size=3, padding=1, bias=bias)
        self.centre = centre
        self.register_buffer("mask", block_mask(centre), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)

    def neighbour_matrix(self) -> torch.Tensor:
        """Weight as (out, 4*in) for [UL, U, UR, L] vectors, or (out, 5*in) with the centre
        last for mask B: the layout the codec gathers."""
        taps = NEIGHBOUR_TAPS + ((CENTRE_TAP,) if self.centre else ())
        return torch.cat([self.weight[:, :, ky, kx] for ky, kx in taps], dim=1)

    def on_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The same layer on gathered rows (B, 4 in) or (B, 5 in) -> (B, out): the form
        the coding loop uses, one row per block."""
        return F.linear(rows, self.neighbour_matrix(), self.bias)


class _LowerBoundGrad(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would push x up from the bound."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, bound = ctx.saved_tensors
        keep = (x >= bound) | (grad < 0)
        return grad * keep.to(grad.dtype), None


class LowerBound(nn.Module):
    bound: torch.Tensor

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LowerBoundGrad.apply(x, self.bound)


class NonNegative(nn.Module):
    """Parametrise v >= minimum as v = max(p, sqrt(minimum + eps^2))^2 - eps^2 (Balle 2016)."""

    pedestal: torch.Tensor

    def __init__(self, minimum: float = 0.0, offset: float = 2.0**-18) -> None:
        super().__init__()
        self.register_buffer("pedestal", torch.tensor([offset**2]))
        self.lower_bound = LowerBound((minimum + offset**2) ** 0.5)

    def init(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.max(v + self.pedestal, self.pedestal))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.lower_bound(p) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalised divisive normalisation (Balle et al. 2016), or its inverse:
    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)  (inverse: multiply instead).

    Parameters and buffers are laid out as CompressAI's GDN (same state-dict keys), so
    checkpoints move between the two; ours needs no compressai import, which keeps
    training runnable on machines that only have torch.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = NonNegative(minimum=beta_min)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma_reparam = NonNegative()
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        norm = F.conv2d(x * x, self.gamma_reparam(self.gamma).reshape(c, c, 1, 1), self.beta_reparam(self.beta))
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
