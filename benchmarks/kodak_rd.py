"""Kodak rate-distortion of the shipped weights through the real codec (files, 8-bit).

    python benchmarks/kodak_rd.py [--images 24] [--qualities 1,2,...,8] [--jobs 2]

Prints mean bpp (from real .bbc sizes, header included) and PSNR of the decoded 8-bit
images per quality, encode/decode seconds, and BD-rates against the anchors in
../shared/anchors. Each file is decoded and checked against the encoder's digest.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bbcodec import codec, format, rd, weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ANCHORS = {
    "JPEG 4:2:0 (Pillow)": SHARED / "anchors/kodak/jpeg-420.json",
    "WebP (Pillow)": SHARED / "anchors/kodak/webp.json",
    "AVIF 4:4:4 (Pillow)": SHARED / "anchors/kodak/avif-444.json",
    "JPEG XL (Pillow)": SHARED / "anchors/kodak/jxl.json",
    "Kamisli 2022 8x8 (paper)": SHARED / "anchors/kodak-published/kamisli2022-8x8.json",
    "Balle 2018 hyperprior (paper)": SHARED / "anchors/kodak-published/paper-bmshj2018-hyperprior.json",
}


def one(args: tuple[Path, float]) -> dict:
    path, q = args
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    w = weights.default()
    t0 = time.perf_counter()
    data, rec = codec.encode(img, q, w)
    t1 = time.perf_counter()
    header, payload = format.unpack(data)
    out = codec.decode(header, payload, w)
    t2 = time.perf_counter()
    assert np.array_equal(out, rec)
    mse = np.mean((img.astype(np.float64) - out) ** 2)
    return {"image": path.name, "quality": q, "bytes": len(data), "bpp": 8 * len(data) / img.shape[0] / img.shape[1],
            "psnr": 10 * np.log10(255**2 / mse), "enc_s": t1 - t0, "dec_s": t2 - t1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kodak", type=Path, default=SHARED / "data/kodak")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--qualities", default="1,2,3,4,5,6,7,8")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the curve in CompressAI's layout")
    args = p.parse_args()
    paths = sorted(args.kodak.glob("*.png"))[: args.images]
    qs = [float(q) for q in args.qualities.split(",")]
    jobs = [(pth, q) for q in qs for pth in paths]
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(one, jobs))
    print(f"weights: {weights.default().path.name}; {len(paths)} images")
    print(f"{'q':>4} {'bpp':>8} {'PSNR':>8} {'enc s':>7} {'dec s':>7}")
    curve = {"bpp": [], "psnr-rgb": []}
    for q in qs:
        r = [x for x in rows if x["quality"] == q]
        bpp, psnr = np.mean([x["bpp"] for x in r]), np.mean([x["psnr"] for x in r])
        curve["bpp"].append(float(bpp))
        curve["psnr-rgb"].append(float(psnr))
        print(f"{q:4g} {bpp:8.4f} {psnr:8.2f} {np.mean([x['enc_s'] for x in r]):7.2f} {np.mean([x['dec_s'] for x in r]):7.2f}")
    print("BD-rate of bbcodec against (negative = bbcodec smaller), BD-PSNR:")
    for name, path in ANCHORS.items():
        if path.exists():
            _, b, s = rd.load_curve(path)
            print(f"  {name:32s} {rd.bd_rate(b, s, curve['bpp'], curve['psnr-rgb']):+7.1f} %  "
                  f"{rd.bd_psnr(b, s, curve['bpp'], curve['psnr-rgb']):+6.2f} dB")
    if args.json:
        args.json.write_text(json.dumps({"name": "bbcodec", "description": weights.default().path.name, "results": curve}, indent=1))


if __name__ == "__main__":
    main()
