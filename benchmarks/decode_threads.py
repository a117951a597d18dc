"""Decode seconds for 1 and 2 (or more) threads, q4, files as `bbcodec encode` writes
them by default (figures, not a test).

    python benchmarks/decode_threads.py kodak [--rounds 3] [--threads 1,2] [--images 4]
    python benchmarks/decode_threads.py 12mp [--rounds 2]
    python benchmarks/decode_threads.py kodak --tune psnr --aq 0 --no-linear-filter

The default weights (or --tune's), their tuning's adaptive quantisation (or --aq's) and
the encoder's linear filter where it pays (not with --no-linear-filter).

kodak: the first --images Kodak images (kodim01-04 by default; 24: all, 6 of them
portrait 512x768, which decode ~6 % slower: more, smaller wavefronts); 12mp: kodim01
tiled to 4000x3000. Each file is encoded once, then decoded in alternating rounds (1, 2,
2, 1, ...); each row gives the load average before and after it, since other work on
the machine changes every figure. The summary is the sum over images of each image's
median, and its mean per image.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bbcodec import codec as entry
from bbcodec.coding import format
from bbcodec.coding import loop as codec

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["kodak", "12mp"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--images", type=int, default=4, help="kodak: how many (1..24)")
    p.add_argument("--tune", choices=["visual", "psnr"], default=None, help="weights (default: the default ones)")
    p.add_argument("--aq", type=float, default=None, help="adaptive quantisation (default: the tuning's)")
    p.add_argument("--no-linear-filter", dest="linear", action="store_false")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    w = entry.choose_weights(None, args.tune)
    if args.what == "kodak":
        imgs = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(KODAK.glob("*.png"))[: args.images]]
    else:
        k = np.asarray(Image.open(KODAK / "kodim01.png").convert("RGB"))
        imgs = [np.ascontiguousarray(np.tile(k, (6, 6, 1))[:3000, :4000])]
    files = [entry.encode(img, 4, tune=args.tune, aq=args.aq, linear_filter=args.linear, lossless=False).data
             for img in imgs]
    versions = sorted({data[4] for data in files})
    print(f"load average at start {os.getloadavg()[0]:.2f}; weights {w.name}, aq {entry.aq_strength(w, args.aq):g}, "
          f"format versions {versions}", flush=True)
    codec.decode(*format.unpack(files[0]), w.model, threads=max(threads))  # warm: weights, fast networks
    seconds: dict[int, list[list[float]]] = {n: [] for n in threads}
    for r in range(args.rounds):
        for n in threads if r % 2 == 0 else threads[::-1]:
            before = os.getloadavg()[0]
            per = []
            for data in files:
                t = time.perf_counter()
                codec.decode(*format.unpack(data), w.model, threads=n)
                per.append(time.perf_counter() - t)
            seconds[n].append(per)
            shown = [round(x, 3) for x in per] if len(per) <= 8 else f"{len(per)} images"
            print(f"{args.what} threads={n} round {r}: {sum(per):.3f} s {shown} "
                  f"load {before:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    for n in threads:
        med = np.median(np.array(seconds[n]), axis=0)
        print(f"{args.what} threads={n}: {med.sum():.3f} s (sum of per-image medians; {med.mean():.3f} s an image, "
              f"the slowest {med.max():.3f} s)")


if __name__ == "__main__":
    main()
