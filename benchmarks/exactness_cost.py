"""What the integer (bit-exact) networks cost in rate-distortion against float64 ones.

    python benchmarks/exactness_cost.py CKPT WEIGHTS.npz [--images 6]

Runs the same closed-loop coder twice on Kodak: once with the float64 networks of a
training checkpoint (torch; exact only on this machine), once with the integer networks
frozen from it (the shipped codec). Both quantise scales to the same table and are range
coded for real, so the only difference is the arithmetic. Prints bpp/PSNR per quality
and the BD-rate of integer against float.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bbcodec import blocks, codec, entropy, format, rd, weights
from bbcodec.networks import BlockCodecNet, ModelConfig, _Stack, lerp_table

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def run_stack(st: _Stack, cur: torch.Tensor | None, nb: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The float network on gathered vectors: identical maths to the training convs."""
    h = nb @ st.nb.neighbour_matrix().T + st.nb.bias + lerp_table(st.qbias, q)
    if st.cur is not None:
        h = h + cur @ st.cur.weight[:, :, 0, 0].T
    for act, conv in zip(st.acts, st.convs, strict=True):
        h = act(h[:, :, None, None])[:, :, 0, 0]
        h = h @ conv.weight[:, :, 0, 0].T + conv.bias
    return h


@torch.no_grad()
def float_codec(model: BlockCodecNet, img: np.ndarray, quality: float, table: np.ndarray, bounds: np.ndarray) -> tuple[int, np.ndarray]:
    """(bytes incl. container overhead, reconstruction) of the float closed-loop coder."""
    h, w = img.shape[:2]
    src = blocks.to_blocks(blocks.pad_to_blocks(img))
    rows, cols = src.shape[:2]
    canvas = blocks.new_canvas(rows, cols)
    q = torch.tensor([quality], dtype=torch.float64)
    g = torch.exp(lerp_table(model.log_gain, q))
    ig = torch.exp(lerp_table(model.log_inv_gain, q))
    lg = lerp_table(model.log_gain, q)
    syms, stds = [], []
    for r, c in blocks.wavefronts(rows, cols):
        nb = torch.from_numpy(blocks.gather_neighbours(canvas, r, c)) / 128.0
        qb = q.expand(len(r))
        mu, ls = run_stack(model.h_e, None, nb, qb).chunk(2, 1)
        y = run_stack(model.g_a, torch.from_numpy(src[r, c].astype(np.float64)) / 128.0, nb, qb) * g
        mean = mu * g
        sidx = np.searchsorted(bounds, (ls + lg).numpy(), side="right")
        sym = torch.clamp(torch.round(y - mean), -2047, 2047)
        x = run_stack(model.g_s, (sym + mean) * ig, nb, qb)
        canvas[r + 1, c + 1] = torch.clamp(torch.round(x * 128.0), -128, 127).numpy().astype(np.int16)
        syms.append(sym.numpy())
        stds.append(table[sidx])
    payload = entropy.encode_symbols(np.concatenate(syms), np.concatenate(stds), 2047)
    return format.HEADER_SIZE + format.TRAILER_SIZE + len(payload), blocks.from_blocks(canvas[1:, 1:-1], h, w)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", type=Path)
    p.add_argument("weights", type=Path)
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--qualities", default="1,2,3,4,5,6,7,8")
    args = p.parse_args()
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    model = BlockCodecNet(ModelConfig.from_dict(ck["cfg"]))
    model.load_state_dict(ck["model"])
    model = model.double().eval()
    w = weights.load(args.weights.resolve())
    table, bounds = w.model.scale_table, w.model.scale_bounds
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(KODAK.glob("*.png"))[: args.images]]
    curves = {"float64": ([], []), "integer": ([], [])}
    print(f"{'q':>3} {'float bpp':>10} {'float PSNR':>11} {'int bpp':>8} {'int PSNR':>9}")
    for q in (float(v) for v in args.qualities.split(",")):
        fb, fp, ib, ip = [], [], [], []
        for img in imgs:
            n, rec = float_codec(model, img, q, table, bounds)
            fb.append(8 * n / img.shape[0] / img.shape[1])
            fp.append(psnr(img, rec))
            data, rec = codec.encode(img, q, w)
            ib.append(8 * len(data) / img.shape[0] / img.shape[1])
            ip.append(psnr(img, rec))
        for key, b, s in (("float64", fb, fp), ("integer", ib, ip)):
            curves[key][0].append(np.mean(b))
            curves[key][1].append(np.mean(s))
        print(f"{q:3g} {np.mean(fb):10.4f} {np.mean(fp):11.3f} {np.mean(ib):8.4f} {np.mean(ip):9.3f}")
    (fb, fp), (ib, ip) = curves["float64"], curves["integer"]
    print(f"BD-rate of integer against float64: {rd.bd_rate(fb, fp, ib, ip):+.2f} %  (BD-PSNR {rd.bd_psnr(fb, fp, ib, ip):+.3f} dB)")


if __name__ == "__main__":
    main()
