"""Train the grouped scale context of network family 3 on a frozen codec's cache.

The heads (bbcodec/model/groups.py) only change the scales the coder uses, never the symbols,
so training needs no image at all: the cache (bbcodec.train.cache) holds, per block, the
entropy network's last hidden activation, its log-scales and the symbols of real encodes.
The loss is the exact rate of those symbols under the corrected Gaussians; on the
held-out cache, the bits the coder would spend with quantised scales are the measure.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model.arith import ACT_MAX, LEAKY_SHIFT, MAX_SYMBOL, SCALE_MAX, SCALE_MIN, scale_bounds
from ..model.groups import GroupedScales, GroupHead
from ..nn.networks import NUM_QUALITIES, EntropyTerms, gaussian_bits, lerp_table
from .freeze import first_layer, freeze_leaky_tail

S_SHIFT = 3  # the heads see |symbol| * 2^-3 (a fixed power of two: the same in integers)


@dataclass
class Cache:
    """Blocks of a cache folder: hidden (n, C) int16, log_scale (n, M), sym (n, M), q (n,)."""

    hidden: torch.Tensor
    log_scale: torch.Tensor
    sym: torch.Tensor
    q: torch.Tensor

    def __len__(self) -> int:
        return len(self.q)


def load_cache(folder: Path) -> Cache:
    h, ls, s, q = [], [], [], []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as z:
            h.append(z["h"])
            ls.append(z["log_scale"])
            s.append(z["sym"])
            q.append(np.full(len(z["h"]), int(z["q"]), np.int64))
    if not h:
        raise SystemExit(f"no cache files in {folder}")
    t = [torch.from_numpy(np.concatenate(x)) for x in (h, ls, s, q)]
    return Cache(*t)


@dataclass
class ContextConfig:
    sizes: list[int] = field(default_factory=lambda: [2, 2, 4, 8, 16, 32, 64])  # for M = 128
    K: int = 64  # hidden units of each head
    depth: int = 1  # hidden layers of each head
    f_h: int = 0  # exponent of the hidden-feature integers (the entropy net's last activation)


class GroupedScalesNet(nn.Module):
    """Float form of groups.GroupedScales: log-scales (B, M) corrected group by group."""

    perm: torch.Tensor

    def __init__(self, cfg: ContextConfig, C: int, perm: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("perm", perm.clone())
        self.starts = [int(x) for x in np.cumsum([0, *cfg.sizes])]
        self.first = nn.ModuleList()
        self.qbias = nn.ParameterList()
        self.rest = nn.ModuleList()
        self.heads: list[tuple[nn.Linear, nn.Parameter, list[nn.Linear]]] = []  # typed views of the above
        for g in range(1, len(cfg.sizes)):
            first = nn.Linear(C + self.starts[g], cfg.K)
            qbias = nn.Parameter(torch.zeros(NUM_QUALITIES, cfg.K))
            layers = [nn.Linear(cfg.K, cfg.K) for _ in range(cfg.depth - 1)]
            last = nn.Linear(cfg.K, cfg.sizes[g])
            nn.init.zeros_(last.weight)  # start from the entropy network's scales
            nn.init.zeros_(last.bias)
            self.first.append(first)
            self.qbias.append(qbias)
            self.rest.append(nn.ModuleList([*layers, last]))
            self.heads.append((first, qbias, [*layers, last]))

    @property
    def hidden_width(self) -> int:
        """C, the entropy network's hidden features each head reads (before the symbols)."""
        return self.heads[0][0].in_features - self.starts[1]

    def forward(self, hidden: torch.Tensor, log_scale: torch.Tensor, sym: torch.Tensor, q: torch.Tensor,
                trace: dict[str, float] | None = None) -> torch.Tensor:
        """Integer hidden features, log-scales, symbols (original channel order), integer
        qualities -> corrected log-scales in coding (perm) order."""
        dt = self.qbias[0].dtype
        return self.correct(hidden.to(dt) * 2.0**-self.cfg.f_h, log_scale.to(dt), sym.to(dt), q, trace)

    def correct(self, hidden: torch.Tensor, log_scale: torch.Tensor, sym: torch.Tensor, q: torch.Tensor,
                trace: dict[str, float] | None = None) -> torch.Tensor:
        """forward on real values: the hidden activation as a real number (the integers
        times 2^-f_h), symbols (original order) as reals; an integer q takes its bias row,
        a fractional one interpolates the rows as the decoder does (docs/format.md 5.7)."""
        ls = log_scale[:, self.perm]
        a = sym[:, self.perm].abs() * 2.0**-S_SHIFT
        out = [ls[:, : self.starts[1]]]
        for g, (first, qbias, tail) in enumerate(self.heads, start=1):
            bias = lerp_table(qbias, q) if q.is_floating_point() else qbias[q - 1]
            z = first(torch.cat([hidden, a[:, : self.starts[g]]], 1)) + bias
            for i, layer in enumerate(tail):
                if trace is not None:
                    key = f"{g}.{i}"
                    trace[key] = max(trace.get(key, 0.0), float(z.detach().abs().max()))
                z = layer(nn.functional.leaky_relu(z, 2.0**-LEAKY_SHIFT))
            out.append(ls[:, self.starts[g] : self.starts[g + 1]] + z)
        return torch.cat(out, 1)


def grid_bits(net: GroupedScalesNet, terms: EntropyTerms, q: torch.Tensor) -> torch.Tensor:
    """Bits per sample (B,) of a training forward's latents under the heads' scales: the
    rate the family-3 coder spends, for training the auto-encoder with its heads."""
    B = terms.residual.shape[0]

    def rows(t: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B * h * w, C)
        return t.float().permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    blocks = terms.residual[0, 0].numel()
    ls = net.correct(rows(terms.hidden), rows(terms.log_scale), rows(terms.symbols), q.float().repeat_interleave(blocks))
    bits = rate_bits(rows(terms.residual)[:, net.perm], ls)
    return bits.reshape(B, -1).sum(1)


def rate_bits(sym: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Bits of integer symbols under zero-mean Gaussians of these log-scales (unit bins):
    the auto-encoder's rate (gaussian_bits), with the scales the coder's table spans.
    (Before, torch.special.ndtr of the upper tail: 0 bits of gradient and a flat 29.9
    bits from about 5 sigma in float32.)"""
    return gaussian_bits(sym.to(log_scale.dtype), torch.exp(log_scale).clamp(SCALE_MIN, SCALE_MAX))


def quantised_bits(sym: torch.Tensor, log_scale: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """rate_bits with the scales the coder uses (the table entry each log-scale selects)."""
    bounds = torch.from_numpy(scale_bounds(table.numpy()))
    idx = torch.searchsorted(bounds, log_scale.double().contiguous(), right=True)
    return rate_bits(sym, torch.log(table[idx]))


def channel_order(cache: Cache) -> torch.Tensor:
    """Channels by decreasing mean log-scale: the busiest are coded first, as context."""
    return torch.argsort(cache.log_scale.float().mean(0), descending=True)


def evaluate(net: GroupedScalesNet, cache: Cache, table: torch.Tensor) -> list[tuple[int, float, float]]:
    """Per quality: (quality, bits per block without the heads, with them)."""
    rows = []
    with torch.no_grad():
        for q in range(1, NUM_QUALITIES + 1):
            i = torch.nonzero(cache.q == q).flatten()
            if not len(i):
                continue
            b0 = b1 = 0.0
            for j in range(0, len(i), 16384):
                k = i[j : j + 16384]
                s = cache.sym[k][:, net.perm]
                new = net(cache.hidden[k], cache.log_scale[k], cache.sym[k], cache.q[k]).double()
                b0 += float(quantised_bits(s, cache.log_scale[k][:, net.perm].double(), table).sum())
                b1 += float(quantised_bits(s, new, table).sum())
            rows.append((q, b0 / len(i), b1 / len(i)))
    return rows


def train(cache: Cache, cfg: ContextConfig, steps: int, batch: int = 2048, lr: float = 1e-3,
          seed: int = 0, log_every: int = 1000, init: GroupedScalesNet | None = None) -> GroupedScalesNet:
    """Adam on the rate of random cached blocks; lr drops 5x for the last 30 %.

    init: heads trained for an earlier version of the same base networks (a fine-tuned
    auto-encoder), continued with their channel order: far fewer steps than from zero."""
    torch.manual_seed(seed)
    if init is None:
        net = GroupedScalesNet(cfg, cache.hidden.shape[1], channel_order(cache))
    else:
        if init.cfg.sizes != cfg.sizes or init.hidden_width != cache.hidden.shape[1]:
            raise SystemExit("the initial heads do not fit these base networks (groups or hidden width differ)")
        net = copy.deepcopy(init)
        net.cfg = replace(init.cfg, f_h=cfg.f_h)  # features are read as floats: their exponent is the base's
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        if step == int(0.7 * steps):
            for group in opt.param_groups:
                group["lr"] = lr / 5
        i = torch.randint(0, len(cache), (batch,), generator=gen)
        new = net(cache.hidden[i], cache.log_scale[i], cache.sym[i], cache.q[i])
        s = cache.sym[i][:, net.perm]
        loss = rate_bits(s, new).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log_every and (step + 1) % log_every == 0:
            base = rate_bits(s, cache.log_scale[i][:, net.perm]).sum(1).mean()
            print(f"context step {step + 1}: {loss.item():.2f} bits/block (without: {float(base):.2f}) "
                  f"{time.time() - t0:.0f}s", flush=True)
    return net


def freeze_context(net: GroupedScalesNet, calib: Cache) -> GroupedScales:
    """The integer heads of a trained net; activation ranges from the calibration blocks."""
    net = net.double().eval()
    peaks: dict[str, float] = {}
    with torch.no_grad():
        for j in range(0, len(calib), 16384):
            sl = slice(j, j + 16384)
            net(calib.hidden[sl], calib.log_scale[sl].double(), calib.sym[sl], calib.q[sl], trace=peaks)
    heads = []
    for g, (first, qbias_f, tail) in enumerate(net.heads, start=1):
        C = first.in_features - net.starts[g]
        W = first.weight
        qb = qbias_f.detach().double() + first.bias.detach().double()[None]
        (Wh, Ws), qbias, e0 = first_layer([(W[:, :C], net.cfg.f_h, ACT_MAX), (W[:, C:], S_SHIFT, MAX_SYMBOL)], qb)
        acts, layers = freeze_leaky_tail([(la.weight, la.bias) for la in tail], [peaks[f"{g}.{i}"] for i in range(len(tail))])
        heads.append(GroupHead(Wh, Ws, qbias, e0, acts, layers))
    gs = GroupedScales(net.perm.numpy().astype(np.int64), list(net.cfg.sizes), heads)
    gs.check(len(gs.perm), heads[0].W_h.shape[1])
    return gs


def to_dict(net: GroupedScalesNet) -> dict:
    """What a context.pt holds (also kept in a training checkpoint): config, width, weights."""
    return {"config": asdict(net.cfg), "C": net.hidden_width, "state": net.state_dict()}


def from_dict(d: dict) -> GroupedScalesNet:
    net = GroupedScalesNet(ContextConfig(**d["config"]), d["C"], d["state"]["perm"])
    net.load_state_dict(d["state"])
    return net


def save(net: GroupedScalesNet, path: Path) -> None:
    torch.save(to_dict(net), path)


def load(path: Path) -> GroupedScalesNet:
    return from_dict(torch.load(path, map_location="cpu", weights_only=True))


def table_tensor(table: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(table, dtype=np.float64))


def report(rows: list[tuple[int, float, float]]) -> str:
    lines = [f"q{q}: {b0:.2f} -> {b1:.2f} bits/block ({b1 / b0 - 1:+.2%})" for q, b0, b1 in rows]
    total0 = sum(math.log(b0) for _, b0, _ in rows)
    total1 = sum(math.log(b1) for _, _, b1 in rows)
    lines.append(f"geometric mean over qualities: {math.exp((total1 - total0) / len(rows)) - 1:+.2%}")
    return "\n".join(lines)
