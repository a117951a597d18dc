"""Freeze a training checkpoint into the integer weights file the codec ships.

    python -m bbcodec.train.freeze runs/n192/ckpt.pt --calib ../shared/data/train \
        --name bb8-n192m48 --out weights/

Weights become integers with a power-of-two scale per output channel; activation
scales come from calibration crops (training images, never Kodak) and are stored, so
the file alone fixes the decoder's arithmetic (see bbcodec/exact.py). The file is named
NAME-<sha256[:8]>.npz (CompressAI's convention) and its hash goes into every .bbc.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..exact import ACT_MAX, FAMILY_SKIP, FAMILY_V9, PIXEL_EXP, WEIGHTS_FORMAT
from ..layers import BlockMaskedConv2d
from ..networks import (
    NUM_QUALITIES,
    SCALE_MIN,
    BlockCodecNet,
    ModelConfig,
    _Stack,
    lerp_table,
    space_to_depth,
    to_net,
)
from .data import CropSampler, load_images

W_MAX = 2**15 - 1  # largest integer weight
SUM_LIMIT = 2.0**50  # worst-case partial sums stay 8x below 2^53 (see exact.check_exact)
MAX_SYMBOL = 2047  # symbols are clipped to [-MAX_SYMBOL, MAX_SYMBOL]
SCALE_LEVELS = 64  # CompressAI's scale table: 64 log-spaced scales from 0.11 to 256
SCALE_MAX = 256.0
MARGIN = 2.0  # activation range = MARGIN x the largest value seen in calibration


def exponent_for(max_abs: float, limit: float) -> int:
    """Largest e with max_abs * 2^e <= limit (0 for an all-zero tensor)."""
    if max_abs <= 0:
        return 0
    return int(math.floor(math.log2(limit / max_abs)))


def _per_channel_exp(w: torch.Tensor, limit: float, base: int, cap: int) -> np.ndarray:
    """Exponent per output row so that |w| * 2^(e - base) <= limit, capped."""
    m = w.abs().flatten(1).max(1).values.double().numpy()
    e = np.array([base + exponent_for(v, limit) if v > 0 else base for v in m], dtype=np.int64)
    return np.minimum(e, cap)


def _cap_for_sums(e: np.ndarray, worst_real: np.ndarray) -> np.ndarray:
    """Lower exponents where the worst-case accumulator, worst_real * 2^e, passes SUM_LIMIT.

    worst_real: per output channel, max over inputs of |sum w x + b| in real units.
    """
    cap = np.floor(np.log2(SUM_LIMIT / np.maximum(worst_real, 1e-300))).astype(np.int64)
    return np.minimum(e, cap)


def _ints(x: torch.Tensor | np.ndarray, exp: np.ndarray | int) -> np.ndarray:
    """rint(x * 2^exp) with exp broadcast over the first axis."""
    x = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    e = np.asarray(exp, dtype=np.int64)
    if e.ndim == 1:
        e = e.reshape(-1, *([1] * (x.ndim - 1)))
    return np.rint(np.ldexp(x, e))


@torch.no_grad()
def calibrate(model: BlockCodecNet, crops: torch.Tensor) -> dict[str, list[float]]:
    """Largest |value| at each requantisation point, over crops x all qualities."""
    peaks: dict[str, list[float]] = {}

    def track(name: str, i: int, v: torch.Tensor) -> None:
        lst = peaks.setdefault(name, [0.0] * 8)
        lst[i] = max(lst[i], float(v.abs().max()))

    def run_stack(name: str, st: _Stack, cur: torch.Tensor | None, nb: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        h = st.nb(nb) + lerp_table(st.qbias, q)[:, :, None, None]
        if st.cur is not None:
            h = h + st.cur(cur)
        for i, (act, conv) in enumerate(zip(st.acts, st.convs, strict=True)):
            track(name + ".pre", i, h)
            h = act(h)
            track(name + ".post", i, h)
            h = conv(h)
        return h if st.skip is None else h + st.skip(cur)

    for k in range(NUM_QUALITIES):
        q = torch.full((crops.shape[0],), float(k + 1))
        for nb_img in (crops, model.reconstruct(crops, crops, q)):
            xs, ns = space_to_depth(to_net(crops)), space_to_depth(to_net(nb_img))
            y = run_stack("ga", model.g_a, xs, ns, q)
            mu, _ = run_stack("he", model.h_e, None, ns, q).chunk(2, 1)
            g = torch.exp(lerp_table(model.log_gain, q))[:, :, None, None]
            ig = torch.exp(lerp_table(model.log_inv_gain, q))[:, :, None, None]
            y_hat = (torch.round(y * g - mu * g) + mu * g) * ig
            track("latent", 0, y_hat)
            run_stack("gs", model.g_s, y_hat, ns, q)
    return peaks


def freeze_stack(
    st: _Stack, name: str, kinds: list[str], peaks: dict[str, list[float]], f_cur: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    Wnb = st.nb.neighbour_matrix().detach()
    qb = st.qbias.detach().double() + st.nb.bias.detach().double()[None]
    bias_max = qb.abs().max(0).values.numpy()
    # First layer: both inputs must land on one accumulator exponent per channel.
    e0 = _per_channel_exp(Wnb, W_MAX, PIXEL_EXP, cap=PIXEL_EXP + 40)
    cur_max = 1.0 if name == "ga" else ACT_MAX * 2.0**-f_cur  # largest |own input|, real units
    worst = Wnb.abs().sum(1).double().numpy() + bias_max  # pixel inputs are within [-1, 1)
    if st.cur is not None:
        Wc = st.cur.weight.detach()[:, :, 0, 0]
        e0 = np.minimum(e0, _per_channel_exp(Wc, W_MAX, f_cur, cap=f_cur + 40))
        worst = worst + cur_max * Wc.abs().sum(1).double().numpy()
    e0 = _cap_for_sums(e0, worst)
    if st.cur is not None:
        out[f"{name}.0.Wcur"] = _ints(Wc, e0 - f_cur).astype(np.int16)
    out[f"{name}.0.Wnb"] = _ints(Wnb, e0 - PIXEL_EXP).astype(np.int16)
    out[f"{name}.0.qbias"] = np.rint(np.ldexp(qb.numpy(), e0[None, :])).astype(np.int64)
    out[f"{name}.0.e"] = e0
    out[f"{name}.0.fcur"] = np.array(f_cur)
    last = len(st.convs) - 1
    for i, (act, conv) in enumerate(zip(st.acts, st.convs, strict=True)):
        p = f"{name}.{i + 1}."
        kind = kinds[i]
        fa = exponent_for(MARGIN * peaks[name + ".pre"][i], ACT_MAX)
        fh = fa if kind == "leaky" else exponent_for(MARGIN * peaks[name + ".post"][i], ACT_MAX)
        out[p + "f"] = np.array([fa, fh])
        if kind != "leaky":
            beta = act.beta_reparam(act.beta).detach().double()
            gamma = act.gamma_reparam(act.gamma).detach().double().reshape(beta.numel(), -1)
            c = gamma.shape[1]
            g_limit = math.floor(2.0**52 / (c * ACT_MAX**2))
            fg = exponent_for(float(gamma.max()), g_limit)
            fg -= fg % 2  # even, so sqrt(2^fg) is a power of two
            out[p + "G"] = _ints(gamma, fg).astype(np.int64)
            out[p + "B"] = np.maximum(1.0, _ints(beta, fg + 2 * fa)).astype(np.int64)
            out[p + "fg"] = np.array(fg)
        # A mask-B 3x3 layer becomes one matrix on [UL, U, UR, L, centre] features.
        k = 3 if isinstance(conv, BlockMaskedConv2d) else 1
        W = conv.neighbour_matrix().detach() if k == 3 else conv.weight.detach()[:, :, 0, 0]
        out[p + "k"] = np.array(k)
        e = _per_channel_exp(W, W_MAX, fh, cap=fh + 40)
        worst = ACT_MAX * 2.0**-fh * W.abs().sum(1).double().numpy() + conv.bias.detach().abs().double().numpy()
        if i == last and st.skip is not None:  # the shortcut adds into the same accumulator
            Ws = st.skip.weight.detach()[:, :, 0, 0]
            e = np.minimum(e, _per_channel_exp(Ws, W_MAX, f_cur, cap=f_cur + 40))
            worst = worst + cur_max * Ws.abs().sum(1).double().numpy()
        e = _cap_for_sums(e, worst)
        if i == last and st.skip is not None:
            out[p + "Wskip"] = _ints(Ws, e - f_cur).astype(np.int16)
        out[p + "W"] = _ints(W, e - fh).astype(np.int16)
        out[p + "b"] = _ints(conv.bias.detach(), e).astype(np.int64)
        out[p + "e"] = e
    return out


def freeze(model: BlockCodecNet, crops: torch.Tensor, name: str, info: dict) -> dict[str, np.ndarray]:
    """All arrays of a weights file for model (see exact.load_frozen for the layout).

    Works on a float64 CPU copy, so a model still training is left as it was.
    """
    model = copy.deepcopy(model).cpu().double().eval()
    crops = crops.double()
    peaks = calibrate(model, crops)
    f_latent = exponent_for(MARGIN * peaks["latent"][0], ACT_MAX)
    arrays: dict[str, np.ndarray] = {}
    arrays.update(freeze_stack(model.g_a, "ga", ["gdn"] * 3, peaks, PIXEL_EXP))
    arrays.update(freeze_stack(model.g_s, "gs", ["igdn"] * 3, peaks, f_latent))
    arrays.update(freeze_stack(model.h_e, "he", ["leaky"] * 3, peaks, 0))
    arrays["gain"] = torch.exp(model.log_gain.detach()).numpy()
    arrays["inv_gain"] = torch.exp(model.log_inv_gain.detach()).numpy()
    arrays["log_gain"] = model.log_gain.detach().numpy()
    table = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))
    arrays["scale_table"] = table
    arrays["scale_bounds"] = 0.5 * (np.log(table[:-1]) + np.log(table[1:]))
    arrays["f_latent"] = np.array(f_latent)
    meta = {
        "format": WEIGHTS_FORMAT,
        "version": 2 if model.cfg.skip else 1,  # 1: no shortcuts (read by every decoder)
        "name": name,
        "N": model.cfg.N,
        "M": model.cfg.M,
        "kernels": list(model.cfg.kernels),
        "skip": model.cfg.skip,
        "family": FAMILY_SKIP if model.cfg.skip else FAMILY_V9,
        "max_symbol": MAX_SYMBOL,
        **info,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    return arrays


def write_weights(arrays: dict[str, np.ndarray], folder: Path, name: str) -> Path:
    """Save as folder/NAME-<sha256[:8]>.npz and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = folder / f"{name}-{digest[:8]}.npz"
    tmp.replace(final)
    return final


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", type=Path)
    p.add_argument("--calib", type=Path, required=True, help="calibration images, folder or packed .npz (not Kodak)")
    p.add_argument("--name", required=True, help="model name, e.g. bb8-n192m48")
    p.add_argument("--out", type=Path, default=Path("weights"))
    p.add_argument("--crops", type=int, default=16)
    p.add_argument("--raw", action="store_true", help="freeze the last step's weights instead of their moving average")
    args = p.parse_args(argv)
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    model = BlockCodecNet(ModelConfig.from_dict(ck["cfg"]))
    model.load_state_dict(ck["model"] if args.raw or "ema" not in ck else ck["ema"])
    crops = CropSampler(load_images(args.calib, 256), 256, seed=1234).batch(args.crops)
    arrays = freeze(model, crops, args.name, {"train_steps": int(ck["step"])})
    final = write_weights(arrays, args.out, args.name)
    print(f"{final} sha256={hashlib.sha256(final.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
