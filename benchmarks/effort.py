"""Encoder effort levels: BD-rate against effort 1 and encode seconds per image, one run.

    python benchmarks/effort.py [--folder ../shared/data/kodak] [--images 24] [--efforts 1,2,3]
                                [--qualities 1,2,3,4,5,6,7,8] [--jobs 2]

Every file is decoded by the unchanged decoder and must give the encoder's image (the
run stops otherwise). Per effort: the mean bpp / PSNR-RGB at each quality (as
`bbcodec bench` averages), BD-rate and BD-PSNR against effort 1, and the mean encode
seconds per image (one process per job, one BLAS thread each: with --jobs 2 on a 2-core
machine each encode has one core).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bbcodec.coding import format
from bbcodec.coding import loop as codec
from bbcodec.jobs import map_jobs, share_cores  # noqa: E402
from bbcodec.model import weights
from bbcodec.rd import bd_psnr, bd_rate, psnr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def one(task: tuple[str, float, int, int]) -> tuple[float, float, float]:
    """(bpp, PSNR, encode seconds) of one image at one quality and effort, coded with
    threads processes."""
    path, q, effort, threads = task
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    w = weights.default()
    t0 = time.perf_counter()
    data, rec = codec.encode(img, q, w.model, w.prefix, effort=effort, threads=threads)
    seconds = time.perf_counter() - t0
    if not np.array_equal(codec.decode(*format.unpack(data), w.model), rec):
        raise SystemExit(f"{path} q{q} effort {effort}: the decoder's image differs from the encoder's")
    return 8 * len(data) / (img.shape[0] * img.shape[1]), psnr(img, rec), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=KODAK)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--efforts", default="1,2,3")
    p.add_argument("--qualities", default="1,2,3,4,5,6,7,8")
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args()
    paths = sorted(str(f) for f in a.folder.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))[: a.images]
    efforts = [int(v) for v in a.efforts.split(",")]
    qualities = [float(v) for v in a.qualities.split(",")]
    print(f"{len(paths)} images of {a.folder}, weights {weights.default().name}, jobs {a.jobs}", flush=True)
    curves: dict[int, np.ndarray] = {}
    for effort in efforts:
        tasks = [(path, q, effort, share_cores(a.jobs)) for q in qualities for path in paths]
        res = np.array(list(map_jobs(one, tasks, a.jobs))).reshape(len(qualities), len(paths), 3)
        curve = res[:, :, :2].mean(axis=1)
        curves[effort] = curve
        line = f"effort {effort}: {res[:, :, 2].mean():6.2f} s/image (max {res[:, :, 2].max():.1f})"
        if effort != efforts[0]:
            base = curves[efforts[0]]
            line += (f"  BD-rate vs effort {efforts[0]} {bd_rate(base[:, 0], base[:, 1], curve[:, 0], curve[:, 1]):+.2f} %"
                     f"  BD-PSNR {bd_psnr(base[:, 0], base[:, 1], curve[:, 0], curve[:, 1]):+.3f} dB")
        print(line)
        print("   " + "  ".join(f"q{q:g} {b:.4f}/{s:.2f}" for q, (b, s) in zip(qualities, curve, strict=True)), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
