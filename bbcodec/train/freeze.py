"""Freeze a training checkpoint into the integer weights file the codec ships.

    bbcodec freeze runs/n192/ckpt.pt --calib ../shared/data/train --name bb8-n192m48 --out weights/

Writes OUT/NAME-<sha256[:8]>.npz, its line in OUT/SHA256SUMS (added, or updated for a
file of the same name; --default puts it first, which makes it the default of that
folder) and a stub section for OUT/MODEL_CARD.md to fill in, so that
BBCODEC_WEIGHTS=OUT finds, verifies and uses it with no hand edits.

Weights become integers with a power-of-two scale per output channel; activation
scales come from calibration crops (training images, never Kodak) and are stored, so
the file alone fixes the decoder's arithmetic (see bbcodec/model/arith.py). The file is named
NAME-<sha256[:8]>.npz (CompressAI's convention) and its hash goes into every .bbc.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import math
from pathlib import Path

import numpy as np

from ..model import layout as model_io
from ..model.arith import ACT_MAX, ACTIVATIONS, PIXEL_EXP, W_MAX, scale_bounds, scale_table
from ..model.frozen import FrozenModel
from ..model.stack import Activation, Layer, Stack
from ..model.tuning import TUNES, UNTUNED
from . import TORCH, need_torch

if TORCH is None:  # else only the options (train/__init__.py)
    import torch
    from torch import nn

    from ..nn.layers import GDN, BlockMaskedConv2d
    from ..nn.networks import NUM_QUALITIES, BlockCodecNet, MaskedStack, ModelConfig
    from .data import CropSampler, load_images

SUM_LIMIT = 2.0**50  # worst-case partial sums stay 8x below 2^53 (see frozen.check_exact)
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
    cap = np.floor(np.log2(SUM_LIMIT / np.maximum(worst_real, 1e-30))).astype(np.int64)
    return np.minimum(e, cap)


def _ints(x: torch.Tensor | np.ndarray, exp: np.ndarray | int) -> np.ndarray:
    """rint(x * 2^exp) with exp broadcast over the first axis."""
    x = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    e = np.asarray(exp, dtype=np.int64)
    if e.ndim == 1:
        e = e.reshape(-1, *([1] * (x.ndim - 1)))
    return np.rint(np.ldexp(x, e))


def calibrate(model: BlockCodecNet, crops: torch.Tensor) -> dict[str, list[float]]:
    """Largest |value| at each requantisation point (networks.Trace), over crops x all
    qualities, open loop and one closed-loop round."""
    peaks: dict[str, list[float]] = {}

    def track(point: str, i: int, v: torch.Tensor) -> None:
        lst = peaks.setdefault(point, [0.0] * 8)
        lst[i] = max(lst[i], float(v.abs().max()))

    with torch.no_grad():
        for k in range(NUM_QUALITIES):
            q = torch.full((crops.shape[0],), float(k + 1), dtype=crops.dtype)
            for nb_img in (crops, model.reconstruct(crops, crops, q)):
                model(crops, nb_img, q, noise=False, trace=track)
    return peaks


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=conv.weight.dtype)


def freeze_stack(st: MaskedStack, peaks: dict[str, list[float]], f_cur: int) -> Stack:
    """The integer form of one float stack (docs/format.md 5.1)."""
    name = st.name
    Wnb = st.nb.neighbour_matrix().detach()
    qb = st.qbias.detach().double() + _bias(st.nb).double()[None]
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
    acts, layers = [], []
    W_skip = None
    last = len(st.convs) - 1
    kind = ACTIVATIONS[name]
    for i, (act, conv) in enumerate(zip(st.acts, st.convs, strict=True)):
        fa = exponent_for(MARGIN * peaks[name + ".pre"][i], ACT_MAX)
        fh = fa if kind == "leaky" else exponent_for(MARGIN * peaks[name + ".post"][i], ACT_MAX)
        if not isinstance(act, GDN):
            acts.append(Activation(kind, fa, fh))
        else:
            beta = act.beta_reparam(act.beta).detach().double()
            gamma = act.gamma_reparam(act.gamma).detach().double().reshape(beta.numel(), -1)
            c = gamma.shape[1]
            g_limit = math.floor(2.0**52 / (c * ACT_MAX**2))
            fg = exponent_for(float(gamma.max()), g_limit)
            fg -= fg % 2  # even, so sqrt(2^fg) is a power of two
            acts.append(Activation(kind, fa, fh, _ints(gamma, fg), np.maximum(1.0, _ints(beta, fg + 2 * fa)), fg))
        # A mask-B 3x3 layer becomes one matrix on [UL, U, UR, L, centre] features.
        assert isinstance(conv, nn.Conv2d)
        k = 3 if isinstance(conv, BlockMaskedConv2d) else 1
        W = conv.neighbour_matrix().detach() if isinstance(conv, BlockMaskedConv2d) else conv.weight.detach()[:, :, 0, 0]
        e = _per_channel_exp(W, W_MAX, fh, cap=fh + 40)
        worst = ACT_MAX * 2.0**-fh * W.abs().sum(1).double().numpy() + _bias(conv).abs().double().numpy()
        if i == last and st.skip is not None:  # the shortcut adds into the same accumulator
            Ws = st.skip.weight.detach()[:, :, 0, 0]
            e = np.minimum(e, _per_channel_exp(Ws, W_MAX, f_cur, cap=f_cur + 40))
            worst = worst + cur_max * Ws.abs().sum(1).double().numpy()
        e = _cap_for_sums(e, worst)
        if i == last and st.skip is not None:
            W_skip = _ints(Ws, e - f_cur)
        layers.append(Layer(_ints(W, e - fh), _ints(_bias(conv), e), e, k))
    return Stack(
        W_nb=_ints(Wnb, e0 - PIXEL_EXP),
        W_cur=_ints(Wc, e0 - f_cur) if st.cur is not None else None,
        qbias=np.rint(np.ldexp(qb.numpy(), e0[None, :])),
        e0=e0,
        f_cur=f_cur,
        acts=acts,
        layers=layers,
        W_skip=W_skip,
    )


def freeze(model: BlockCodecNet, crops: torch.Tensor, name: str, info: dict) -> FrozenModel:
    """The integer model of a float model, activation ranges calibrated on crops.

    Works on a float64 CPU copy, so a model still training is left as it was.
    """
    model = copy.deepcopy(model).cpu().double().eval()
    peaks = calibrate(model, crops.double())
    f_latent = exponent_for(MARGIN * peaks["latent"][0], ACT_MAX)
    f_cur = {"ga": PIXEL_EXP, "gs": f_latent, "he": 0}
    stacks = {s: freeze_stack(st, peaks, f_cur[s]) for s, st in model.stacks().items()}
    table = scale_table()
    return FrozenModel(
        name=name,
        family=model_io.family_of(model.cfg.skip),
        ga=stacks["ga"],
        gs=stacks["gs"],
        he=stacks["he"],
        gain=torch.exp(model.log_gain.detach()).numpy(),
        inv_gain=torch.exp(model.log_inv_gain.detach()).numpy(),
        log_gain=model.log_gain.detach().numpy(),
        scale_table=table,
        scale_bounds=scale_bounds(table),
        f_latent=f_latent,
        config=model.cfg.to_dict(),
        info=info,
    )


def write_weights(model: FrozenModel, folder: Path) -> Path:
    """Save as folder/NAME-<sha256[:8]>.npz and return the path."""
    name = model.name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.tmp.npz"
    np.savez_compressed(tmp, **model_io.to_arrays(model))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = folder / f"{name}-{digest[:8]}.npz"
    tmp.replace(final)
    return final


def register(path: Path, make_default: bool = False) -> str:
    """Add (or update) path's line in the SHA256SUMS beside it; first if make_default.
    Returns the SHA-256 of the file."""
    from ..model.weights import SUMS

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sums = path.parent / SUMS
    lines = sums.read_text().splitlines() if sums.exists() else []
    kept = [line for line in lines if line.split()[1:2] != [path.name] and line.split()[1:2] != ["*" + path.name]]
    entry = f"{digest}  {path.name}"
    lines = [entry, *kept] if make_default else [*kept, entry]
    tmp = sums.with_name(SUMS + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(sums)
    return digest


def card_stub(model: FrozenModel, path: Path, digest: str, calib: str) -> str:
    """A MODEL_CARD.md section for a newly frozen weights file, to fill in."""
    cfg = model.config
    return f"""
## {model.name}

* file: `{path.name}`, sha256 `{digest}`
* network family: {model_io.FAMILIES.get(model.family, model.family)} (model id {model.family}); N={cfg.get("N")},
  M={cfg.get("M")}, kernels {",".join(map(str, cfg.get("kernels", [])))}, shortcut {bool(cfg.get("skip"))}
* training steps: {model.info.get("train_steps", "unknown")}; tuned for {model.info.get("tune", UNTUNED)}; calibrated on `{calib}`
* data, training time, hardware: (fill in)
* results: (fill in: `bbcodec bench ../shared/data/kodak --out report/` with
  `BBCODEC_WEIGHTS={path.parent}` and this file first in its SHA256SUMS)
"""


def add_card_stub(model: FrozenModel, path: Path, digest: str, calib: str) -> Path:
    """Append the stub section to MODEL_CARD.md beside path (created if missing)."""
    card = path.parent / "MODEL_CARD.md"
    text = card.read_text() if card.exists() else "# Model card\n"
    if f"`{path.name}`" not in text:
        card.write_text(text.rstrip("\n") + "\n" + card_stub(model, path, digest, calib))
    return card


def main(argv: list[str] | None = None, prog: str = "bbcodec freeze") -> None:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("ckpt", type=Path, help="training checkpoint (runs/NAME/ckpt.pt)")
    p.add_argument("--calib", type=Path, required=True,
                   help="calibration images, folder or packed .npz (not Kodak) [required]")
    p.add_argument("--name", required=True, help="model name, e.g. bb8-n192m48 [required]")
    p.add_argument("--out", type=Path, default=Path("weights"), help="folder of the weights file")
    p.add_argument("--crops", type=int, default=16, help="256x256 calibration crops")
    p.add_argument("--raw", action="store_true",
                   help="freeze the last step's weights instead of their moving average")
    p.add_argument("--default", action="store_true",
                   help="list the file first in OUT/SHA256SUMS, which makes it that folder's default")
    p.add_argument("--no-card", action="store_true", help="do not add a stub section to OUT/MODEL_CARD.md")
    p.add_argument("--tune", choices=TUNES, default=None,
                   help="what the weights are tuned for, in their meta (default: visual when the checkpoint was "
                        "trained with --perceptual above 0, else psnr)")
    args = p.parse_args(argv)
    need_torch("freezing")
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    model = BlockCodecNet(ModelConfig.from_dict(ck["cfg"]))
    model.load_state_dict(ck["model"] if args.raw or "ema" not in ck else ck["ema"])
    crops = CropSampler(load_images(args.calib, 256), 256, seed=1234).batch(args.crops)
    trained_for = "visual" if float((ck.get("args") or {}).get("perceptual", 0)) > 0 else UNTUNED
    frozen = freeze(model, crops, args.name, {"train_steps": int(ck["step"]), "tune": args.tune or trained_for})
    final = write_weights(frozen, args.out)
    digest = register(final, args.default)
    print(f"{final} sha256={digest}")
    print(f"registered in {final.parent / 'SHA256SUMS'}" + (" as the default" if args.default else ""))
    if not args.no_card:
        print(f"model card stub added to {add_card_stub(frozen, final, digest, str(args.calib))}")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every option's default (as `bbcodec train`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.required and action.default not in (None, False, argparse.SUPPRESS):
            text += " [default: %(default)s]"
        return text


if __name__ == "__main__":
    main(prog="python -m bbcodec.train.freeze")


def freeze_leaky_tail(linears: list[tuple[torch.Tensor, torch.Tensor]], peaks: list[float]
                      ) -> tuple[list[Activation], list[Layer]]:
    """(leaky activation, layer) pairs of a small head (group heads, post-filter): layer i
    (weight (out, in), bias) follows an activation whose input peaked at peaks[i]."""
    acts, layers = [], []
    for (W, b), peak in zip(linears, peaks, strict=True):
        W, b = W.detach().double(), b.detach().double()
        fa = exponent_for(MARGIN * peak, ACT_MAX)
        acts.append(Activation("leaky", fa, fa))
        e = _per_channel_exp(W, W_MAX, fa, cap=fa + 40)
        e = _cap_for_sums(e, (ACT_MAX * 2.0**-fa * W.abs().sum(1) + b.abs()).numpy())
        layers.append(Layer(_ints(W, e - fa), _ints(b, e), e))
    return acts, layers


def first_layer(parts: list[tuple[torch.Tensor, int, float]], qbias: torch.Tensor
                ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Integer first layer of a small head on several inputs, each (weight (K, in), exponent
    of its input integers, largest |input integer|): one accumulator exponent per output
    channel for all of them. Returns (integer weights, integer per-quality bias, e0)."""
    K = qbias.shape[1]
    e0 = np.full(K, 10**6, dtype=np.int64)
    worst = qbias.detach().double().abs().max(0).values.numpy()
    for W, f, max_int in parts:
        W = W.detach().double()
        e0 = np.minimum(e0, _per_channel_exp(W, W_MAX, f, cap=f + 40))
        worst = worst + max_int * 2.0**-f * W.abs().sum(1).numpy()
    e0 = _cap_for_sums(e0, worst)
    ints = [_ints(W.detach(), e0 - f) for W, f, _ in parts]
    return ints, np.rint(np.ldexp(qbias.detach().double().numpy(), e0[None, :])), e0
