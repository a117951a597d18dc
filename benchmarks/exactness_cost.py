"""What the integer (bit-exact) networks cost in rate-distortion against float64 ones.

    python benchmarks/exactness_cost.py [--weights W.npz] [--ckpt CKPT] [--images 6]

Runs the real coding loop (coding/loop.encode: closed loop, scale table, range coder, real
bytes) twice on Kodak: once with the frozen integer networks of a weights file (the
shipped codec), once with float64 networks (networks.FloatCodingModel, the same forward
pass training uses). The float networks are those of --ckpt, or by default the weights
file's own networks read back as floats (train/unfreeze.py: its integer weights are
exact in float), so the difference is what integer activations and requantisation
cost. Prints bpp/PSNR per quality and the BD-rate of integer against float. For family-3
weights, their auto-encoder alone (the float model has no coding groups or filter).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bbcodec import rd
from bbcodec.coding import loop as codec
from bbcodec.model import quality as Q
from bbcodec.model import weights
from bbcodec.nn.networks import BlockCodecNet, FloatCodingModel, ModelConfig
from bbcodec.train.unfreeze import load_model

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def float_model(args: argparse.Namespace, w: weights.Weights) -> FloatCodingModel:
    """The float model to compare with, behind the coding loop's model interface."""
    if args.ckpt is not None:
        ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        net = BlockCodecNet(ModelConfig.from_dict(ck["cfg"]))
        net.load_state_dict(ck.get("ema", ck["model"]))
    else:
        net = load_model(w.path)
    return FloatCodingModel(net)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="weights .npz [default: the default weights]")
    p.add_argument("--ckpt", type=Path, default=None, help="float checkpoint the weights were frozen from")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--qualities", default=",".join(map(str, Q.TRAINED)))
    args = p.parse_args()
    torch.set_num_threads(1)
    w = weights.load(args.weights.resolve()) if args.weights else weights.default()
    if w.model.groups is not None or w.model.postfilter is not None:
        # The float model has no coding groups or post-loop filter: compare the integer
        # networks they share (family 3's without its parts, as the family-2 file it was built on).
        bare = dataclasses.replace(w.model, groups=None, postfilter=None, family=2)
        w = dataclasses.replace(w, model=bare)
        print(f"{w.name} is network family 3: its auto-encoder alone, without the coding groups and the filter")
    wf = float_model(args, w)
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(KODAK.glob("*.png"))[: args.images]]
    print(f"weights {w.path.name}, float64 from {args.ckpt or 'the same file'}, {len(imgs)} Kodak images")
    curves: dict[str, tuple[list[float], list[float]]] = {"float64": ([], []), "integer": ([], [])}
    print(f"{'q':>3} {'float bpp':>10} {'float PSNR':>11} {'int bpp':>8} {'int PSNR':>9}")
    for q in (float(v) for v in args.qualities.split(",")):
        row = []
        for key, model in (("float64", wf), ("integer", w.model)):
            bpp, psnr = [], []
            for img in imgs:
                data, rec = codec.encode(img, q, model, w.prefix)
                bpp.append(8 * len(data) / img.shape[0] / img.shape[1])
                psnr.append(rd.psnr(img, rec))
            curves[key][0].append(float(np.mean(bpp)))
            curves[key][1].append(float(np.mean(psnr)))
            row += [np.mean(bpp), np.mean(psnr)]
        print(f"{q:3g} {row[0]:10.4f} {row[1]:11.3f} {row[2]:8.4f} {row[3]:9.3f}")
    (fb, fp), (ib, ip) = curves["float64"], curves["integer"]
    print(f"BD-rate of integer against float64: {rd.bd_rate(fb, fp, ib, ip):+.2f} %  "
          f"(BD-PSNR {rd.bd_psnr(fb, fp, ib, ip):+.3f} dB)")


if __name__ == "__main__":
    main()
