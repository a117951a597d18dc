"""Where the bits go: open loop, training's closed-loop view, and the real codec.

    python benchmarks/closed_loop_gap.py [--weights W.npz] [--images 4] [--set kodak|heldout]

For each quality, bpp (from the model's likelihoods) / PSNR of the float model when
every block's neighbours come from
  K=0   the original image (open loop: what the auto-encoder alone could do),
  K=k   the model's own reconstruction refined k times in parallel (training uses K=2),
and of the real codec (integer networks, range coder, bytes of the file). The columns
converge as K grows; the distance from K=0 to "real" is what the closed loop costs,
the distance from "real" to the anchors is the model itself. Images are cropped to
multiples of 8 so that every column sees the same pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bbcodec import rd
from bbcodec.coding import loop as codec
from bbcodec.model import weights
from bbcodec.train.data import image_paths
from bbcodec.train.unfreeze import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KS = (0, 2, 8, 32)


def load_set(name: str, n: int) -> list[np.ndarray]:
    """n images spread over Kodak or the held-out tenth of the training photos."""
    paths = image_paths(SHARED / "kodak", "all") if name == "kodak" else image_paths(SHARED / "train", "val")
    paths = paths[:: max(1, len(paths) // n)][:n]
    imgs = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        imgs.append(np.ascontiguousarray(a[: a.shape[0] // 8 * 8, : a.shape[1] // 8 * 8]))
    return imgs


@torch.no_grad()
def gap_row(net: torch.nn.Module, w: weights.Weights, imgs: list[np.ndarray], q: float) -> list[tuple[float, float]]:
    """(bpp, PSNR) averaged over imgs for each K, then for the real codec."""
    cols: list[list[tuple[float, float]]] = [[] for _ in range(len(KS) + 1)]
    qt = torch.tensor([q], dtype=torch.float64)
    for img in imgs:
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
        nb, done = x, 0
        for j, k in enumerate(KS):
            for _ in range(k - done):
                nb = net.reconstruct(x, nb, qt)
            done = k
            out = net(x, nb, qt, noise=False)
            rec = out.x_hat.round().clamp(0, 255)[0].permute(1, 2, 0).numpy()
            cols[j].append((float(out.bits[0]) / (img.shape[0] * img.shape[1]), rd.psnr(img, rec)))
        data, rec = codec.encode(img, q, w.model, w.prefix)
        cols[-1].append((8 * len(data) / (img.shape[0] * img.shape[1]), rd.psnr(img, rec)))
    return [(float(np.mean([b for b, _ in c])), float(np.mean([p for _, p in c]))) for c in cols]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="weights .npz [default: the default weights]")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--set", choices=("kodak", "heldout"), default="kodak")
    p.add_argument("--qualities", default="1,4,8")
    args = p.parse_args()
    torch.set_num_threads(1)
    w = weights.load(args.weights.resolve()) if args.weights else weights.default()
    net = load_model(w.path).double().eval()
    imgs = load_set(args.set, args.images)
    print(f"weights {w.path.name}; {len(imgs)} {args.set} images; bpp / PSNR (dB)")
    head = ["q"] + [f"K={k}" + (" (open loop)" if k == 0 else "") for k in KS] + ["real codec"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for q in (float(v) for v in args.qualities.split(",")):
        row = gap_row(net, w, imgs, q)
        print(f"| {q:g} | " + " | ".join(f"{b:.3f} / {s:.2f}" for b, s in row) + " |", flush=True)


if __name__ == "__main__":
    main()
