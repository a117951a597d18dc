"""Turn a shipped integer weights file back into a float training checkpoint.

    python -m bbcodec.train.unfreeze weights/bb8-n192m48-fd9f0bb0.npz runs/n192m48/init.pt

Training checkpoints are not committed (too large), so the shipped .npz is the only
durable copy of a model's training. Every frozen array is an integer times a power of
two, so inverting freeze() is exact up to its rounding (15-bit weights): a later run
can start from it with --init (and grow its latents) instead of from scratch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..exact import PIXEL_EXP
from ..layers import CENTRE_TAP, NEIGHBOUR_TAPS
from ..networks import BlockCodecNet, ModelConfig


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


def unfreeze(arrays: dict[str, np.ndarray]) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and float state dict of the model a weights file was frozen from."""
    meta = json.loads(bytes(arrays["meta"]).decode())
    cfg = ModelConfig(N=meta["N"], M=meta["M"], kernels=tuple(meta["kernels"]), skip=bool(meta.get("skip", False)))
    model = BlockCodecNet(cfg)
    with torch.no_grad():
        for name, st in (("ga", model.g_a), ("gs", model.g_s), ("he", model.h_e)):
            e0 = arrays[f"{name}.0.e"]
            f_cur = int(arrays[f"{name}.0.fcur"])
            _set_taps(st.nb.weight, _real(arrays[f"{name}.0.Wnb"], e0 - PIXEL_EXP), centre=False)
            st.nb.bias.zero_()  # freeze folded it into the per-quality bias
            st.qbias.copy_(_real(arrays[f"{name}.0.qbias"].T, e0).T)
            if st.cur is not None:
                st.cur.weight.copy_(_real(arrays[f"{name}.0.Wcur"], e0 - f_cur)[:, :, None, None])
            for i, (act, conv) in enumerate(zip(st.acts, st.convs, strict=True)):
                p = f"{name}.{i + 1}."
                fa, fh = (int(v) for v in arrays[p + "f"])
                e = arrays[p + "e"]
                W = _real(arrays[p + "W"], e - fh)
                if int(arrays[p + "k"]) == 3:
                    _set_taps(conv.weight, W, centre=True)
                else:
                    conv.weight.copy_(W[:, :, None, None])
                conv.bias.copy_(_real(arrays[p + "b"], e))
                if p + "G" in arrays:
                    fg = int(arrays[p + "fg"])
                    act.gamma.copy_(act.gamma_reparam.init(_real(arrays[p + "G"], fg)))
                    act.beta.copy_(act.beta_reparam.init(_real(arrays[p + "B"], fg + 2 * fa)))
                if p + "Wskip" in arrays:
                    st.skip.weight.copy_(_real(arrays[p + "Wskip"], e - f_cur)[:, :, None, None])
        model.log_gain.copy_(torch.from_numpy(np.asarray(arrays["log_gain"], np.float64)).float())
        model.log_inv_gain.copy_(torch.from_numpy(np.log(np.asarray(arrays["inv_gain"], np.float64))).float())
    return cfg, model.state_dict()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="a weights .npz written by bbcodec.train.freeze")
    p.add_argument("out", type=Path, help="checkpoint to write (use it with bbcodec train --init)")
    args = p.parse_args(argv)
    with np.load(args.weights, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    cfg, state = unfreeze(arrays)
    steps = int(json.loads(bytes(arrays["meta"]).decode()).get("train_steps", 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "cfg": cfg.to_dict(), "step": steps, "from": str(args.weights)}, args.out)
    print(f"{args.out}: {cfg} from {args.weights.name} ({steps} training steps)")


if __name__ == "__main__":
    main()
