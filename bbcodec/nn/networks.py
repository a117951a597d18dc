"""Training-time networks of the block codec (Kamisli 2022, model "v9"), variable rate.

Three networks share one causal view of the reconstruction (UL, U, UR, L blocks):

* analysis  g_a: block (192) + neighbours -> latents y (M)
* synthesis g_s: latents y_hat (M) + neighbours -> block (192)
* entropy   h_e: neighbours only -> mean and log-scale of each latent

What we changed from the paper: one model serves every quality. A quality q in [1, 8]
selects (and between integers interpolates) a per-channel gain on the latents (Cui et
al. 2021 "gain units") and a bias on the first layer of each network; the paper
trains eight models. The entropy net outputs log-scales so that the decoder can pick a
scale-table entry by comparisons only (see bbcodec/model/arith.py).

This module owns the float forward pass: training (noise, likelihoods) runs it on
whole crops as convolutions; FloatCodingModel runs the same stacks on gathered
neighbour vectors inside the real coding loop (coding/loop.py), which is how the cost of the
integer networks is measured; freezing calibrates on it through a trace hook. Real
files go through the frozen integer version of these networks (bbcodec/model/), which never
imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.arith import (
    ACTIVATIONS,
    LEAKY_SHIFT,
    MAX_SYMBOL,
    PIXEL_EXP,
    SCALE_MIN,
    scale_bounds,
    scale_table,
)
from ..model.blocks import BLOCK, BLOCK_CH, BlockContext
from ..model.frozen import Scales, decode_symbols, scale_groups
from ..model.groups import Read
from ..model.quality import LAMBDAS as QUALITY_LAMBDAS
from ..model.quality import NUM_QUALITIES, from_x256
from .config import ModelConfig
from .layers import GDN, BlockMaskedConv2d

# trace(point, layer, value): called with every value that freezing must bound: the
# input ("pre") and output ("post") of each activation of stack s as point "s.pre" /
# "s.post", and the synthesis input as "latent" (layer 0).
Trace = Callable[[str, int, torch.Tensor], None]
# CompressAI's lambdas x 255^2, one per quality 1..8: loss = bpp + lambda * MSE with the
# MSE of pixels scaled to 0..1 (= bpp + lambda / 255^2 * MSE on the 0..255 scale).
LAMBDAS = tuple(255.0**2 * v for v in QUALITY_LAMBDAS)
LEAKY_SLOPE = 2.0**-LEAKY_SHIFT  # a power of two, so the integer decoder applies it exactly


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


class MaskedStack(nn.Module):
    """One network: first layer = 1x1 on the block's own input (optional) + masked 3x3
    on the neighbours + a per-quality bias; then nonlinearity / layer pairs, a layer of
    kernel 3 being a mask-B conv on hidden features; optionally a linear shortcut from
    the own input to the output.

    Two forms of the same function: on grids (training: (B, C, H, W) block grids, the
    neighbour image as a grid) and on gathered rows (the coding loop: (B, C) rows, one
    per block, the neighbours' pixels as [UL, U, UR, L] vectors and a BlockContext for
    kernel-3 layers).
    """

    def __init__(self, name: str, cur_ch: int, widths: list[int], out_ch: int,
                 kernels: tuple[int, ...] = (3, 1, 1, 1), skip: bool = False) -> None:
        super().__init__()
        self.name = name  # "ga", "gs" or "he", as in weights files
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
            self.acts.append(_activation(ACTIVATIONS[name], c_in))
            self.convs.append(BlockMaskedConv2d(c_in, c_out, centre=True) if k == 3 else nn.Conv2d(c_in, c_out, 1))

    def forward(self, cur: torch.Tensor | None, nb: torch.Tensor, q: torch.Tensor, trace: Trace | None = None,
                ctx: BlockContext | None = None) -> torch.Tensor:
        gathered = nb.dim() == 2
        bias = lerp_table(self.qbias, q)
        if gathered:  # rows -> (B, C, 1, 1), so that 1x1 convs and GDN apply unchanged
            h = (self.nb.on_rows(nb) + bias)[:, :, None, None]
            cur = None if cur is None else cur[:, :, None, None]
        else:
            h = self.nb(nb) + bias[:, :, None, None]
        if self.cur is not None:
            h = h + self.cur(cur)
        for i, (act, conv) in enumerate(zip(self.acts, self.convs, strict=True)):
            if trace is not None:
                trace(self.name + ".pre", i, h)
            h = act(h)
            if trace is not None:
                trace(self.name + ".post", i, h)
            if gathered and isinstance(conv, BlockMaskedConv2d):
                assert ctx is not None, "a kernel-3 layer needs the block context"
                rows = torch.from_numpy(ctx.with_neighbours((id(self), i), h[:, :, 0, 0].numpy()))
                h = conv.on_rows(rows.to(h.dtype))[:, :, None, None]
            else:
                h = conv(h)
        if self.skip is not None:
            h = h + self.skip(cur)
        return h[:, :, 0, 0] if gathered else h


def _activation(kind: str, ch: int) -> nn.Module:
    if kind == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE)
    return GDN(ch, inverse=(kind == "igdn"))


@dataclass
class EntropyTerms:
    """What the coder's rate is made of, per block (grids (B, ., H/8, W/8)): for a rate
    model other than the entropy network's own Gaussians (family 3's grouped heads)."""

    residual: torch.Tensor  # (B, M, h, w) latent minus mean, noisy as in bits
    symbols: torch.Tensor  # (B, M, h, w) the same, rounded (straight-through): the coder's symbols
    log_scale: torch.Tensor  # (B, M, h, w) the coder's log-scales (gain included)
    hidden: torch.Tensor  # (B, C, h, w) the entropy network's last hidden activation


@dataclass
class Output:
    """What one training forward pass returns (all per sample, shape (B,))."""

    x_hat: torch.Tensor  # reconstruction, 0..255 float (not rounded)
    bits: torch.Tensor  # estimated bits for the latents
    mse: torch.Tensor  # mean squared error on the 0..255 scale
    entropy: EntropyTerms  # what bits was computed from


class BlockCodecNet(nn.Module):
    """Analysis, synthesis and entropy-parameter networks plus per-quality gains."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        k = cfg.kernels
        self.g_a = MaskedStack("ga", BLOCK_CH, w, cfg.M, k, cfg.skip)
        self.g_s = MaskedStack("gs", cfg.M, w[::-1], BLOCK_CH, k, cfg.skip)
        self.h_e = MaskedStack("he", 0, cfg.entropy_widths, 2 * cfg.M, k)
        # log gains: higher quality -> larger gain -> finer effective quantiser.
        init = torch.tensor([0.35 * (k - 3.5) for k in range(NUM_QUALITIES)])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, cfg.M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, cfg.M))

    def stacks(self) -> dict[str, MaskedStack]:
        """The three networks by their names in weights files."""
        return {st.name: st for st in (self.g_a, self.g_s, self.h_e)}

    def forward(
        self, x: torch.Tensor, nb: torch.Tensor, q: torch.Tensor, noise: bool = True, trace: Trace | None = None
    ) -> Output:
        """x, nb: (B, 3, H, W) pixels 0..255 (H, W multiples of 8); q: (B,) qualities.

        nb is the image the causal neighbours are taken from: the original in open-loop
        training, an earlier reconstruction in closed-loop rounds.
        """
        xs, ns = space_to_depth(to_net(x)), space_to_depth(to_net(nb))
        last = len(self.h_e.acts) - 1
        kept: dict[str, torch.Tensor] = {}

        def keep_hidden(point: str, i: int, h: torch.Tensor) -> None:
            if point == "he.post" and i == last:
                kept["hidden"] = h
            if trace is not None:
                trace(point, i, h)

        # Under autocast the stacks may run in bfloat16; quantisation and rates stay fp32.
        y = _full(self.g_a(xs, ns, q, trace))
        params = _full(self.h_e(None, ns, q, keep_hidden))
        mu, log_s = params.chunk(2, dim=1)
        log_g = lerp_table(self.log_gain, q)[:, :, None, None]
        g = torch.exp(log_g)
        ig = torch.exp(lerp_table(self.log_inv_gain, q))[:, :, None, None]
        y, mu = y * g, mu * g
        log_s = log_s.clamp(-10.0, 10.0)
        scale = (torch.exp(log_s) * g).clamp(min=SCALE_MIN)
        if noise:
            y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_rate = torch.round(y - mu) + mu
        bits = gaussian_bits(y_rate - mu, scale).flatten(1).sum(1)
        # Straight-through rounding around the mean, as the coder does (Minnen 2020).
        sym = (y - mu) + (torch.round(y - mu) - (y - mu)).detach()
        y_hat = mu + sym
        if trace is not None:
            trace("latent", 0, y_hat * ig)
        xs_hat = _full(self.g_s(y_hat * ig, ns, q, trace))
        x_hat = depth_to_space(xs_hat) * 128.0 + 128.0
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        terms = EntropyTerms(y_rate - mu, sym, log_s + log_g, _full(kept["hidden"]))
        return Output(x_hat=x_hat, bits=bits, mse=mse, entropy=terms)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, nb: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """8-bit reconstruction with hard rounding, blocks in parallel from the given
        neighbours (one asymptotic-closed-loop step)."""
        out = self.forward(x, nb, q, noise=False)
        return out.x_hat.round().clamp(0, 255)


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision autocast output -> fp32 (fp32 and fp64 pass unchanged)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def gaussian_bits(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(v) for a unit-width bin of a zero-mean Gaussian (CompressAI's likelihood),
    from the lower tail (erfc): exact far into it, where float32's upper tail cancels."""
    v = v.abs()
    upper = _std_cdf((0.5 - v) / scale)
    lower = _std_cdf((-0.5 - v) / scale)
    p = (upper - lower).clamp(min=1e-9)
    return -torch.log2(p)


def _std_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2.0**-0.5))


@dataclass
class FloatParams:
    """What FloatCodingModel derives from a quality (as the training forward pass does)."""

    q: torch.Tensor  # (1,) quality
    gain: torch.Tensor  # (M,)
    inv_gain: torch.Tensor
    log_gain: torch.Tensor


class FloatCodingModel:
    """A float64 BlockCodecNet behind the interface of the coding loop (codec.CodingModel):
    the real closed loop and range coder, with float instead of integer networks. Exact
    only on the machine that runs it; for measuring, never for files."""

    family = 0  # no family: such files are not meant to be decoded

    def __init__(self, net: BlockCodecNet) -> None:
        self.net = net.double().eval()
        self.scale_table = scale_table()
        self.scale_bounds = scale_bounds(self.scale_table)

    @property
    def M(self) -> int:
        return self.net.cfg.M

    @property
    def max_symbol(self) -> int:
        return MAX_SYMBOL

    @torch.no_grad()
    def params_at(self, quality_x256: int) -> FloatParams:
        q = torch.tensor([from_x256(quality_x256)], dtype=torch.float64)
        lg = lerp_table(self.net.log_gain, q)[0]
        return FloatParams(q, torch.exp(lg), torch.exp(lerp_table(self.net.log_inv_gain, q)[0]), lg)

    def _run(self, st: MaskedStack, cur: torch.Tensor | None, nb: np.ndarray, p: FloatParams,
             ctx: BlockContext) -> torch.Tensor:
        rows = torch.from_numpy(nb) * 2.0**-PIXEL_EXP
        return st(cur, rows, p.q.expand(rows.shape[0]), ctx=ctx)

    def neighbours(self, pixels: np.ndarray, p: FloatParams) -> np.ndarray:
        """The (B, 768) neighbour pixels (the loop's may carry a column of ones)."""
        return pixels[:, : 4 * BLOCK_CH]

    @torch.no_grad()
    def entropy_params(self, nb: np.ndarray, p: FloatParams, ctx: BlockContext) -> tuple[np.ndarray, Scales]:
        mu, log_s = self._run(self.net.h_e, None, nb, p, ctx).chunk(2, dim=1)
        return (mu * p.gain).numpy(), Scales((log_s + p.log_gain).numpy())

    def scale_groups(self, scales: Scales, sym: np.ndarray, p: FloatParams) -> Iterator[tuple[np.ndarray | slice, np.ndarray]]:
        return scale_groups(None, self.scale_bounds, scales, sym, None)

    def decode_symbols(self, scales: Scales, p: FloatParams, read: Read) -> np.ndarray:
        return decode_symbols(None, self.scale_bounds, scales, None, read)

    def group_columns(self) -> list[np.ndarray | slice]:
        return [slice(None)]

    def finish(self, img: np.ndarray, p: FloatParams) -> np.ndarray:
        return img

    @torch.no_grad()
    def analyse(self, block: np.ndarray, nb: np.ndarray, p: FloatParams, ctx: BlockContext) -> np.ndarray:
        cur = torch.from_numpy(block) * 2.0**-PIXEL_EXP
        return (self._run(self.net.g_a, cur, nb, p, ctx) * p.gain).numpy()

    @torch.no_grad()
    def synthesise(self, symbols: np.ndarray, mean: np.ndarray, nb: np.ndarray, p: FloatParams,
                   ctx: BlockContext) -> np.ndarray:
        y_hat = (torch.from_numpy(symbols + mean)) * p.inv_gain
        out = self._run(self.net.g_s, y_hat, nb, p, ctx).numpy()
        return np.clip(np.rint(np.ldexp(out, PIXEL_EXP)), -128, 127).astype(np.int16)
