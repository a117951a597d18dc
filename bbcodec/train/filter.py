"""Train the post-loop filter of network family 3 on a frozen codec's decoded images.

The filter (bbcodec/model/filter.py) runs after the coding loop, so nothing in the loop
depends on it: it is trained on pairs (real decoded image, original) from the cache
(bbcodec.train.cache) with the codec frozen, and judged on the held-out photos' real
decodes. Its loss is the distortion of the auto-encoder it follows: RGB MSE for the
`psnr` tuning; for the `visual` tuning the same mix with SSIMULACRA2 as its training
(train.distortion, `perceptual`), since a filter fitted to MSE alone smooths what the eye
wants kept (the MSE filter of bb8-n192m128s3vgf-ae8be89c added +0.4 dB but cost 0.2 to
1.5 SSIMULACRA2 points at every quality on the held-out decodes).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..images import IMAGE_SUFFIXES
from ..model.arith import LEAKY_SHIFT, PIXEL_EXP
from ..model.filter import PostFilter
from ..nn.networks import NUM_QUALITIES, lerp_table
from .freeze import first_layer, freeze_leaky_tail

Pair = tuple[np.ndarray, np.ndarray, int]  # (decoded, original, quality)


@dataclass
class FilterConfig:
    P: int = 2  # cell size in pixels
    K: int = 32  # hidden units per cell
    depth: int = 2  # hidden layers (the first reads 3x3 cells, the others one cell)


class FilterNet(nn.Module):
    """Float form of postfilter.PostFilter, on images in [-1, 1) (pixel - 128) / 128."""

    def __init__(self, cfg: FilterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C = 3 * cfg.P * cfg.P
        self.first = nn.Conv2d(C, cfg.K, 3)
        self.qbias = nn.Parameter(torch.zeros(NUM_QUALITIES, cfg.K))
        layers = [nn.Conv2d(cfg.K, cfg.K, 1) for _ in range(cfg.depth - 1)] + [nn.Conv2d(cfg.K, C, 1)]
        nn.init.zeros_(layers[-1].weight)  # start as the identity
        nn.init.zeros_(layers[-1].bias)  # type: ignore[arg-type]
        self.rest = nn.ModuleList(layers)
        self.tail: list[nn.Conv2d] = layers  # typed view of rest

    def forward(self, x: torch.Tensor, q: torch.Tensor, trace: dict[str, float] | None = None) -> torch.Tensor:
        """x (B, 3, H, W), H and W multiples of P; q (B,) integer qualities, or fractional
        ones (float: the biases interpolated as the decoder does, for the joint fine-tune)."""
        P = self.cfg.P
        cells = F.pixel_unshuffle(F.pad(x, (P, P, P, P), mode="replicate"), P)
        bias = lerp_table(self.qbias, q) if q.is_floating_point() else self.qbias[q - 1]
        z = self.first(cells) + bias[:, :, None, None]
        for i, layer in enumerate(self.tail):
            if trace is not None:
                trace[str(i)] = max(trace.get(str(i), 0.0), float(z.detach().abs().max()))
            z = layer(F.leaky_relu(z, 2.0**-LEAKY_SHIFT))
        return x + F.pixel_shuffle(z, P)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 128 - 1  # a copy: decodes may be read-only


def load_pairs(cache_dir: Path, photos: Path) -> list[Pair]:
    """(decoded, original, quality) of every cached image; originals from the photo folder."""
    by_stem = {p.stem: p for p in photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs, originals = [], {}
    for f in sorted(cache_dir.glob("*.npz")):
        stem = f.stem.rsplit("_q", 1)[0]
        if stem not in originals:
            with Image.open(by_stem[stem]) as im:
                originals[stem] = np.asarray(im.convert("RGB"))
        with np.load(f) as z:
            pairs.append((z["rec"], originals[stem], int(z["q"])))
    return pairs


PERCEPTUAL_CROP = 272  # 256 pixels inside the left-out margins: SSIMULACRA2's 6 scales


def _loss(out: torch.Tensor, y: torch.Tensor, perceptual: float) -> torch.Tensor:
    """Per crop: the distortion (log of), inside the 8-pixel margins, of [-1, 1) images."""
    out, y = out[..., 8:-8, 8:-8], y[..., 8:-8, 8:-8]
    mse = ((out - y) ** 2).mean((1, 2, 3)) * 128.0**2
    if perceptual <= 0:
        return torch.log(mse + 1e-8 * 128.0**2)
    from .train import distortion

    return torch.log(distortion((y + 1) * 128, (out + 1) * 128, mse, perceptual) + 1e-10)


def train(pairs: list[Pair], cfg: FilterConfig, steps: int, batch: int = 16, crop: int | None = None,
          lr: float = 5e-4, seed: int = 0, log_every: int = 1000, init: FilterNet | None = None,
          perceptual: float = 0.0) -> FilterNet:
    """Adam on the mean log distortion of random crops (for MSE: their mean PSNR), so that
    high qualities count as much as low ones (crops aligned to the 8x8 block grid; their
    outer 8 pixels, where the crop's edge replaces the picture, are left out of the loss).
    perceptual: the share of SSIMULACRA2 in the distortion, as train.distortion (crops
    then PERCEPTUAL_CROP, else 96, unless crop says). init: a filter trained on the
    decodes of an earlier version of the same base networks, continued (cfg is then its
    own)."""
    if crop is None:
        crop = PERCEPTUAL_CROP if perceptual > 0 else 96
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    usable = [p for p in pairs if min(p[0].shape[:2]) >= crop]
    net = FilterNet(cfg) if init is None else copy.deepcopy(init)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = time.time()
    for step in range(steps):
        if step == int(0.75 * steps):
            for group in opt.param_groups:
                group["lr"] = lr / 5
        xs, ys, qs = [], [], []
        for k in rng.integers(0, len(usable), batch):
            rec, org, q = usable[k]
            i = 8 * rng.integers(0, (rec.shape[0] - crop) // 8 + 1)
            j = 8 * rng.integers(0, (rec.shape[1] - crop) // 8 + 1)
            xs.append(to_tensor(rec[i : i + crop, j : j + crop]))
            ys.append(to_tensor(org[i : i + crop, j : j + crop]))
            qs.append(q)
        x, y = torch.stack(xs), torch.stack(ys)
        out = net(x, torch.tensor(qs))
        loss = _loss(out, y, perceptual).mean()  # the mean dB change: every quality counts alike
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log_every and (step + 1) % log_every == 0:
            with torch.no_grad():
                base = _loss(x, y, perceptual).mean()
            print(f"filter step {step + 1}: {10 / np.log(10) * float(base - loss.detach()):+.3f} dB of distortion on the "
                  f"batch {time.time() - t0:.0f}s", flush=True)
    return net


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def ssimulacra2(a: np.ndarray, b: np.ndarray) -> float:
    """The score bench reports (the `ssimulacra2` package), of original a and decode b."""
    from .. import metrics

    score = metrics.ssimulacra2(a, b)
    assert score is not None, "ssimulacra2 is not installed (the bench extra)"
    return score


def evaluate(net: FilterNet | PostFilter, pairs: list[Pair], biases: dict[int, np.ndarray] | None = None,
             metric: Callable[[np.ndarray, np.ndarray], float] = psnr) -> list[tuple[int, float, float]]:
    """Per quality: (quality, mean metric (of original, decode) of the decodes, of the
    filtered decodes). A PostFilter (integers) needs its per-quality biases."""
    sums: dict[int, list[float]] = {}
    for rec, org, q in pairs:
        if isinstance(net, PostFilter):
            assert biases is not None
            out = net.apply(rec, biases[q])
        else:
            out = apply_float(net, rec, q)
        s = sums.setdefault(q, [0.0, 0.0, 0])
        s[0] += metric(org, rec)
        s[1] += metric(org, out)
        s[2] += 1
    return [(q, s[0] / s[2], s[1] / s[2]) for q, s in sorted(sums.items())]


@torch.no_grad()
def apply_float(net: FilterNet, rec: np.ndarray, q: int) -> np.ndarray:
    """The float filter on a whole image (edges repeated to whole cells), rounded to uint8."""
    P = net.cfg.P
    h, w = rec.shape[:2]
    x = F.pad(to_tensor(rec)[None], (0, -w % P, 0, -h % P), mode="replicate")
    out = net(x, torch.tensor([q]))[0, :, :h, :w]
    return torch.round((out + 1) * 128).clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)


def report(rows: list[tuple[int, float, float]], unit: str = " dB") -> str:
    lines = [f"q{q}: {a:.3f} -> {b:.3f}{unit} ({b - a:+.3f})" for q, a, b in rows]
    lines.append(f"mean gain {np.mean([b - a for _, a, b in rows]):+.3f}{unit}")
    return "\n".join(lines)


def freeze_filter(net: FilterNet, calib: list[Pair]) -> PostFilter:
    """The integer filter of a trained net; activation ranges from calibration decodes."""
    net = net.double().eval()
    peaks: dict[str, float] = {}
    P = net.cfg.P
    with torch.no_grad():
        for rec, _, q in calib:
            h, w = rec.shape[:2]
            x = F.pad(to_tensor(rec)[None].double(), (0, -w % P, 0, -h % P), mode="replicate")
            net(x, torch.tensor([q]), trace=peaks)
    W0 = net.first.weight.flatten(1)  # (K, C * 3 * 3): channel, cell row, cell column
    assert net.first.bias is not None
    qb = net.qbias.detach().double() + net.first.bias.detach().double()[None]
    (W0i,), qbias, e0 = first_layer([(W0, PIXEL_EXP, 128)], qb)
    layers = []
    for la in net.tail:
        assert la.bias is not None
        layers.append((la.weight.flatten(1), la.bias))
    acts, ints = freeze_leaky_tail(layers, [peaks[str(i)] for i in range(len(layers))])
    pf = PostFilter(P, W0i, qbias, e0, acts, ints)
    pf.check()
    return pf


def unfreeze_filter(pf: PostFilter) -> FilterNet:
    """The float net of an integer filter (freeze_filter's inverse up to its rounding):
    the filter of a shipped family-3 file continued on new decodes. Inputs are pixel/128
    (PIXEL_EXP), an accumulator at exponent e is a float times 2^e, activations at fa."""
    cfg = FilterConfig(P=pf.P, K=pf.W0.shape[0], depth=len(pf.layers))
    net = FilterNet(cfg).double()
    with torch.no_grad():
        e0 = torch.from_numpy(pf.e0.astype(np.float64))
        net.first.weight.copy_((torch.from_numpy(pf.W0) * 2.0 ** (PIXEL_EXP - e0)[:, None]).view_as(net.first.weight))
        net.first.bias.zero_()  # type: ignore[union-attr]
        net.qbias.copy_(torch.from_numpy(pf.qbias) * 2.0 ** -e0[None])
        for layer, act, frozen in zip(net.tail, pf.acts, pf.layers, strict=True):
            e = torch.from_numpy(frozen.e.astype(np.float64))
            layer.weight.copy_((torch.from_numpy(frozen.W) * 2.0 ** (act.fa - e)[:, None]).view_as(layer.weight))
            layer.bias.copy_(torch.from_numpy(frozen.b) * 2.0 ** -e)  # type: ignore[union-attr]
    return net.float()


def to_dict(net: FilterNet) -> dict:
    """What a filter.pt holds (also kept in a training checkpoint): its config and weights."""
    return {"config": asdict(net.cfg), "state": net.state_dict()}


def from_dict(d: dict) -> FilterNet:
    net = FilterNet(FilterConfig(**d["config"]))
    net.load_state_dict(d["state"])
    return net


def save(net: FilterNet, path: Path) -> None:
    torch.save(to_dict(net), path)


def load(path: Path) -> FilterNet:
    return from_dict(torch.load(path, map_location="cpu", weights_only=True))


def load_any(path: Path) -> FilterNet:
    """A filter to continue: a saved float one (filter.pt) or a family-3 weights file's, unfrozen."""
    if path.suffix != ".npz":
        return load(path)
    from ..model import weights

    pf = weights.from_file(path).model.postfilter
    if pf is None:
        raise SystemExit(f"{path}: these weights have no post-loop filter")
    return unfreeze_filter(pf)
