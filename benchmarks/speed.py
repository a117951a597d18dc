"""Encode/decode speed and memory of the shipped weights (figures, not a test).

    python benchmarks/speed.py [--images 4] [--sizes 0.25,1,4,16] [--threads 1]

1. Kodak 768x512 at qualities 1, 4, 8: median encode and decode seconds, blocks/s,
   achieved GFLOP/s against a plain float64 and float32 matrix product timed here.
2. Scaling: one Kodak image resized to 0.25 .. 16 megapixels, each size encoded and
   decoded in a fresh process: seconds, seconds per megapixel, peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def _stack_macs(stack) -> int:
    """Multiply-adds per block of one integer stack (matrix products and GDN)."""
    macs = stack.W_nb.size + (stack.W_cur.size if stack.W_cur is not None else 0)
    for act, layer in zip(stack.acts, stack.layers, strict=True):
        macs += layer.W.size + (act.G.size if act.G is not None else 0)
    return macs


def gemm_gflops(dtype: str, n: int = 1024, reps: int = 5) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def kodak_table(n_images: int) -> None:
    import numpy as np
    from PIL import Image

    from bbcodec import codec, format, weights

    w = weights.default()
    m = w.model
    dec_macs = _stack_macs(m.he) + _stack_macs(m.gs)
    enc_macs = dec_macs + _stack_macs(m.ga)
    paths = sorted(KODAK.glob("*.png"))[:n_images]
    f64, f32 = gemm_gflops("float64"), gemm_gflops("float32")
    print(f"weights {w.path.name}: {enc_macs / 1e6:.2f}M MACs/block to encode, {dec_macs / 1e6:.2f}M to decode")
    print(f"plain matrix product here: float64 {f64:.1f} GFLOP/s, float32 {f32:.1f} GFLOP/s")
    print(f"{'q':>3} {'enc s':>7} {'dec s':>7} {'enc blk/s':>10} {'dec blk/s':>10} {'dec GFLOP/s':>12} {'of f64':>7} {'of f32':>7}")
    for q in (1, 4, 8):
        enc, dec, nblocks = [], [], 0
        for p in paths:
            with Image.open(p) as im:
                img = np.asarray(im.convert("RGB"))
            t0 = time.perf_counter()
            data, _ = codec.encode(img, q, w)
            t1 = time.perf_counter()
            codec.decode(*format.unpack(data), w)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
            nblocks = -(-img.shape[0] // 8) * -(-img.shape[1] // 8)
        e, d = float(np.median(enc)), float(np.median(dec))
        g = 2 * dec_macs * nblocks / d / 1e9
        print(f"{q:3d} {e:7.2f} {d:7.2f} {nblocks / e:10.0f} {nblocks / d:10.0f} {g:12.1f} {g / f64:7.1%} {g / f32:7.1%}")


CHILD = """
import sys, time, resource, json, numpy as np
from PIL import Image
from bbcodec import codec, format, weights
mp = float(sys.argv[2])
with Image.open(sys.argv[1]) as im:
    im = im.convert("RGB")
    s = (mp * 1e6 / (im.width * im.height)) ** 0.5
    img = np.asarray(im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))), Image.Resampling.BICUBIC))
w = weights.default()
t0 = time.perf_counter(); data, _ = codec.encode(img, 4, w); t1 = time.perf_counter()
codec.decode(*format.unpack(data), w); t2 = time.perf_counter()
print(json.dumps({"w": img.shape[1], "h": img.shape[0], "enc": t1 - t0, "dec": t2 - t1,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scaling(sizes: list[float]) -> None:
    src = sorted(KODAK.glob("*.png"))[0]
    print(f"{'MP':>6} {'size':>11} {'enc s':>7} {'dec s':>7} {'enc s/MP':>9} {'dec s/MP':>9} {'peak MB':>8}")
    for mp in sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(mp)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        real = r["w"] * r["h"] / 1e6
        print(f"{real:6.2f} {r['w']:>5}x{r['h']:<5} {r['enc']:7.2f} {r['dec']:7.2f} {r['enc'] / real:9.2f} {r['dec'] / real:9.2f} {r['rss_mb']:8.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--sizes", default="0.25,1,4,16")
    p.add_argument("--threads", default="1", help="OPENBLAS_NUM_THREADS for the codec")
    args = p.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = args.threads
    kodak_table(args.images)
    if args.sizes:
        scaling([float(s) for s in args.sizes.split(",")])
    print(f"benchmark process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
