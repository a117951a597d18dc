"""Turn a shipped integer weights file back into a float training checkpoint.

    python -m bbcodec.train.unfreeze weights/bb8-n192m48-fd9f0bb0.npz runs/n192m48/init.pt

Training checkpoints are not committed (too large), so the shipped .npz is the only
durable copy of a model's training. Every frozen array is an integer times a power of
two, so inverting freeze() is exact up to its rounding (15-bit weights): a later run
can start from it with --init (and grow its latents) instead of from scratch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model import layout as model_io
from ..model.arith import PIXEL_EXP
from ..model.frozen import FrozenModel
from ..model.stack import Stack
from ..nn.layers import CENTRE_TAP, GDN, NEIGHBOUR_TAPS
from ..nn.networks import BlockCodecNet, MaskedStack, ModelConfig


def _real(ints: np.ndarray, exp: np.ndarray | int) -> torch.Tensor:
    """ints * 2^-exp, exp broadcast over the first axis (the inverse of freeze._ints)."""
    e = np.asarray(exp, dtype=np.int64)
    if e.ndim == 1:
        e = e.reshape(-1, *([1] * (ints.ndim - 1)))
    return torch.from_numpy(np.ldexp(np.asarray(ints, np.float64), -e)).float()


def _set_taps(weight: torch.Tensor, matrix: torch.Tensor, centre: bool) -> None:
    """Write an (out, taps*in) neighbour matrix into a 3x3 conv weight (other taps zero)."""
    taps = NEIGHBOUR_TAPS + ((CENTRE_TAP,) if centre else ())
    weight.zero_()
    for t, (ky, kx) in enumerate(taps):
        weight[:, :, ky, kx] = matrix.reshape(weight.shape[0], len(taps), -1)[:, t]


def _unfreeze_stack(st: MaskedStack, fs: Stack) -> None:
    """Write the real values of an integer stack into its float counterpart."""
    _set_taps(st.nb.weight, _real(fs.W_nb, fs.e0 - PIXEL_EXP), centre=False)
    if st.nb.bias is not None:
        st.nb.bias.zero_()  # freeze folded it into the per-quality bias
    st.qbias.copy_(_real(fs.qbias.T, fs.e0).T)
    if st.cur is not None and fs.W_cur is not None:
        st.cur.weight.copy_(_real(fs.W_cur, fs.e0 - fs.f_cur)[:, :, None, None])
    for act, conv, fa, layer in zip(st.acts, st.convs, fs.acts, fs.layers, strict=True):
        assert isinstance(conv, nn.Conv2d) and conv.bias is not None
        W = _real(layer.W, layer.e - fa.fh)
        if layer.k == 3:
            _set_taps(conv.weight, W, centre=True)
        else:
            conv.weight.copy_(W[:, :, None, None])
        conv.bias.copy_(_real(layer.b, layer.e))
        if isinstance(act, GDN) and fa.G is not None and fa.B is not None:
            act.gamma.copy_(act.gamma_reparam.init(_real(fa.G, fa.fg)))
            act.beta.copy_(act.beta_reparam.init(_real(fa.B, fa.fg + 2 * fa.fa)))
    if st.skip is not None and fs.W_skip is not None:
        st.skip.weight.copy_(_real(fs.W_skip, fs.layers[-1].e - fs.f_cur)[:, :, None, None])


def unfreeze(frozen: FrozenModel) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and float state dict of the model a weights file was frozen from."""
    cfg = ModelConfig.from_dict(frozen.config)
    model = BlockCodecNet(cfg)
    fstacks = frozen.stacks()
    with torch.no_grad():
        for name, st in model.stacks().items():
            _unfreeze_stack(st, fstacks[name])
        model.log_gain.copy_(torch.from_numpy(frozen.log_gain).float())
        model.log_inv_gain.copy_(torch.from_numpy(np.log(frozen.inv_gain)).float())
    return cfg, model.state_dict()


def load_model(path: Path) -> BlockCodecNet:
    """The float model of a weights .npz (exact up to its 15-bit rounding)."""
    cfg, state = unfreeze(model_io.read(str(path)))
    model = BlockCodecNet(cfg)
    model.load_state_dict(state)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="a weights .npz written by bbcodec.train.freeze")
    p.add_argument("out", type=Path, help="checkpoint to write (use it with bbcodec train --init)")
    args = p.parse_args(argv)
    frozen = model_io.read(str(args.weights))
    cfg, state = unfreeze(frozen)
    steps = int(frozen.info.get("train_steps", 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "cfg": cfg.to_dict(), "step": steps, "from": str(args.weights)}, args.out)
    print(f"{args.out}: {cfg} from {args.weights.name} ({steps} training steps)")


if __name__ == "__main__":
    main()
