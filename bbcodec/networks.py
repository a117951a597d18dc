"""Training-time networks of the block codec (Kamisli 2022, model "v9"), variable rate.

Three networks share one causal view of the reconstruction (UL, U, UR, L blocks):

* analysis  g_a: block (192) + neighbours -> latents y (M)
* synthesis g_s: latents y_hat (M) + neighbours -> block (192)
* entropy   h_e: neighbours only -> mean and log-scale of each latent

What we changed from the paper: one model serves every quality. A quality q in [1, 8]
selects (and between integers interpolates) a per-channel gain on the latents (Cui et
al. 2021 "gain units") and a bias on the first layer of each network; the paper
trains eight models. The entropy net outputs log-scales so that the decoder can pick a
scale-table entry by comparisons only (see exact.py).

This module is for training (noise, likelihoods). Coding goes through codec.py, which
runs the frozen integer version of these networks (exact.py) and never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GDN, BlockMaskedConv2d

BLOCK = 8  # block side in pixels
BLOCK_CH = 3 * BLOCK * BLOCK  # 192 values per block after space-to-depth
NUM_QUALITIES = 8
# CompressAI's lambdas x 255^2, one per quality 1..8: loss = bpp + lambda * MSE with the
# MSE of pixels scaled to 0..1 (= bpp + lambda / 255^2 * MSE on the 0..255 scale).
LAMBDAS = tuple(255.0**2 * v for v in (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18))
SCALE_MIN = 0.11  # smallest Gaussian scale, as CompressAI's scale table
LEAKY_SLOPE = 1.0 / 128  # a power of two, so the integer decoder applies it exactly


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


def quality_weights(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split qualities in [1, 8] into (lower index, upper index, fraction) for interpolation."""
    qf = (q - 1.0).clamp(0.0, NUM_QUALITIES - 1.0)
    lo = qf.floor().long().clamp(max=NUM_QUALITIES - 2)
    return lo, lo + 1, (qf - lo.to(qf.dtype))


def lerp_table(table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Rows of a (8, C) table interpolated at qualities q (B,) -> (B, C)."""
    lo, hi, t = quality_weights(q)
    t = t[:, None]
    return table[lo] * (1.0 - t) + table[hi] * t


def lambda_of(q: torch.Tensor) -> torch.Tensor:
    """Rate-distortion lambda at (fractional) qualities, geometric between the anchors."""
    logs = torch.tensor([math.log(v) for v in LAMBDAS], dtype=q.dtype, device=q.device)
    return torch.exp(lerp_table(logs[:, None], q)[:, 0])


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    return F.pixel_unshuffle(x, BLOCK)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(x, BLOCK)


def to_net(pixels: torch.Tensor) -> torch.Tensor:
    """0..255 pixels -> the networks' input scale, (p - 128) / 128 (zero = mid grey)."""
    return (pixels - 128.0) / 128.0


class _Stack(nn.Module):
    """First layer = 1x1 on the block's own input (optional) + masked 3x3 on neighbours
    + a per-quality bias; then nonlinearity / 1x1 conv pairs."""

    def __init__(self, cur_ch: int, widths: list[int], out_ch: int, act: str, kernels: tuple[int, ...] = (3, 1, 1, 1),
                 skip: bool = False) -> None:
        super().__init__()
        self.cur = nn.Conv2d(cur_ch, widths[0], 1, bias=False) if cur_ch else None
        # Zero at first: a model grown from one without it starts where that one was.
        self.skip = nn.Conv2d(cur_ch, out_ch, 1, bias=False) if skip and cur_ch else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
        self.nb = BlockMaskedConv2d(BLOCK_CH, widths[0])
        self.qbias = nn.Parameter(torch.zeros(NUM_QUALITIES, widths[0]))
        self.acts = nn.ModuleList()
        self.convs = nn.ModuleList()
        chans = [*widths, out_ch]
        for c_in, c_out, k in zip(chans[:-1], chans[1:], kernels[1:], strict=True):
            self.acts.append(_activation(act, c_in))
            self.convs.append(BlockMaskedConv2d(c_in, c_out, centre=True) if k == 3 else nn.Conv2d(c_in, c_out, 1))

    def forward(self, cur: torch.Tensor | None, nb: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        h = self.nb(nb) + lerp_table(self.qbias, q)[:, :, None, None]
        if self.cur is not None:
            h = h + self.cur(cur)
        for act, conv in zip(self.acts, self.convs, strict=True):
            h = conv(act(h))
        if self.skip is not None:
            h = h + self.skip(cur)
        return h


def _activation(kind: str, ch: int) -> nn.Module:
    if kind == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE)
    return GDN(ch, inverse=(kind == "igdn"))


@dataclass
class Output:
    """What one training forward pass returns (all per sample, shape (B,))."""

    x_hat: torch.Tensor  # reconstruction, 0..255 float (not rounded)
    bits: torch.Tensor  # estimated bits for the latents
    mse: torch.Tensor  # mean squared error on the 0..255 scale


class BlockCodecNet(nn.Module):
    """Analysis, synthesis and entropy-parameter networks plus per-quality gains."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        k = cfg.kernels
        self.g_a = _Stack(BLOCK_CH, w, cfg.M, "gdn", k, cfg.skip)
        self.g_s = _Stack(cfg.M, w[::-1], BLOCK_CH, "igdn", k, cfg.skip)
        self.h_e = _Stack(0, cfg.entropy_widths, 2 * cfg.M, "leaky", k)
        # log gains: higher quality -> larger gain -> finer effective quantiser.
        init = torch.tensor([0.35 * (k - 3.5) for k in range(NUM_QUALITIES)])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, cfg.M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, cfg.M))

    def forward(
        self, x: torch.Tensor, nb: torch.Tensor, q: torch.Tensor, noise: bool = True
    ) -> Output:
        """x, nb: (B, 3, H, W) pixels 0..255 (H, W multiples of 8); q: (B,) qualities.

        nb is the image the causal neighbours are taken from: the original in open-loop
        training, an earlier reconstruction in closed-loop rounds.
        """
        xs, ns = space_to_depth(to_net(x)), space_to_depth(to_net(nb))
        # Under autocast the stacks may run in bfloat16; quantisation and rates stay fp32.
        y = _full(self.g_a(xs, ns, q))
        params = _full(self.h_e(None, ns, q))
        mu, log_s = params.chunk(2, dim=1)
        g = torch.exp(lerp_table(self.log_gain, q))[:, :, None, None]
        ig = torch.exp(lerp_table(self.log_inv_gain, q))[:, :, None, None]
        y, mu = y * g, mu * g
        scale = (torch.exp(log_s.clamp(-10.0, 10.0)) * g).clamp(min=SCALE_MIN)
        if noise:
            y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_rate = torch.round(y - mu) + mu
        bits = _gaussian_bits(y_rate - mu, scale).flatten(1).sum(1)
        # Straight-through rounding around the mean, as the coder does (Minnen 2020).
        y_hat = mu + (y - mu) + (torch.round(y - mu) - (y - mu)).detach()
        xs_hat = _full(self.g_s(y_hat * ig, ns, q))
        x_hat = depth_to_space(xs_hat) * 128.0 + 128.0
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        return Output(x_hat=x_hat, bits=bits, mse=mse)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, nb: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """8-bit reconstruction with hard rounding, blocks in parallel from the given
        neighbours (one asymptotic-closed-loop step)."""
        out = self.forward(x, nb, q, noise=False)
        return out.x_hat.round().clamp(0, 255)


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision autocast output -> fp32 (fp32 and fp64 pass unchanged)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _gaussian_bits(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(v) for a unit-width bin of a zero-mean Gaussian (CompressAI's likelihood)."""
    v = v.abs()
    upper = _std_cdf((0.5 - v) / scale)
    lower = _std_cdf((-0.5 - v) / scale)
    p = (upper - lower).clamp(min=1e-9)
    return -torch.log2(p)


def _std_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2.0**-0.5))
