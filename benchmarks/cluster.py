"""Throughput of folder runs: `--jobs J` on this machine against a local Dask cluster of J
worker processes (one thread each) on the same machine (figures, not a test).

    python benchmarks/cluster.py [--workers 2] [--images 8] [--big 2] [--json out.json]

For Kodak images (the first --images of ../shared/data/kodak, 768x512) and for --big
images of 12 MP (4000x3000, a Kodak image tiled), encode (default options) and, for
Kodak, decode: images per second and per core, wall time from the run's start to its
last output, for

* jobs:    files.run_folder(..., jobs=J), what `bbcodec encode IN OUT --jobs J` runs
           (its process pool started, and the weights loaded, inside the timing);
* cluster: cluster.FolderRun on a LocalCluster of J workers (127.0.0.1 only), what
           `bbcodec encode IN OUT --cluster ADDRESS` runs: "cold" is the first run on a
           fresh cluster (workers load the weights), "warm" a second run into a new folder
           (a long-lived cluster's case), the best of --repeat rounds, alternating which of
           jobs and cluster goes first. The cluster's start is timed apart.

Outputs of both are checked byte-identical. The machine's load changes every figure:
`uptime` is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
sys.path.insert(0, str(ROOT))

from bbcodec import cluster as cl  # noqa: E402
from bbcodec import files  # noqa: E402


def make_inputs(tmp: Path, n_kodak: int, n_big: int) -> tuple[Path, Path]:
    kodak, big = tmp / "kodak", tmp / "big"
    kodak.mkdir()
    big.mkdir()
    for i in range(n_kodak):
        shutil.copy(KODAK / f"kodim{i + 1:02d}.png", kodak / f"kodim{i + 1:02d}.png")
    for i in range(n_big):
        with Image.open(KODAK / f"kodim{i + 1:02d}.png") as im:
            arr = np.asarray(im.convert("RGB"))
        reps = (-(-3000 // arr.shape[0]), -(-4000 // arr.shape[1]), 1)
        Image.fromarray(np.ascontiguousarray(np.tile(arr, reps)[:3000, :4000])).save(big / f"big{i}.png",
                                                                                     compress_level=1)
    return kodak, big


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_folder(kind: str, src: Path, dst: Path, client=None, jobs: int = 1) -> float:  # noqa: ANN001
    """Seconds to code the folder src into dst: with --jobs (client None) or on the cluster."""
    plan = files.scan_folder(src, dst, decode=(kind == "decode"))
    dst.mkdir()

    def go() -> None:
        run = files.run_folder(kind, plan.pairs, None, jobs) if client is None else \
            cl.FolderRun(kind, plan.pairs, None, client)
        out = list(run)
        assert not [r for r in out if isinstance(r, files.Failed)], out

    return timed(go)


def same(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    return names == sorted(p.name for p in b.iterdir() if not p.name.startswith(".")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="--jobs and cluster workers (cores used)")
    ap.add_argument("--images", type=int, default=8, help="Kodak images")
    ap.add_argument("--big", type=int, default=2, help="12 MP images")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; the best of each is shown")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), f"; cores {os.cpu_count()}")
    j = args.workers
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        kodak, big = make_inputs(tmp, args.images, args.big)
        t0 = time.perf_counter()
        local = LocalCluster(n_workers=j, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0")
        client = Client(local, set_as_default=False)
        client.wait_for_workers(j)
        t_start = time.perf_counter() - t0
        print(f"local cluster of {j} workers started in {t_start:.1f} s")
        t_cold = run_folder("encode", kodak, tmp / "k-cold", client)
        rows.append(("Kodak 768x512", "encode", f"cluster {j} workers, cold", args.images, t_cold))
        cases = [("Kodak 768x512", "encode", kodak, args.images), ("Kodak 768x512", "decode", tmp / "k-cold",
                                                                  args.images)]
        if args.big:
            cases.append(("12 MP 4000x3000", "encode", big, args.big))
        best: dict[tuple[str, str, str], float] = {}
        for r in range(args.repeat):  # alternating which goes first: the load of a shared machine drifts
            for size, kind, src, _ in cases:
                for how in (("jobs", "cluster") if r % 2 == 0 else ("cluster", "jobs")):
                    dst = tmp / f"{kind}-{size[:5]}-{how}-{r}"
                    secs = (run_folder(kind, src, dst, jobs=j) if how == "jobs" else run_folder(kind, src, dst, client))
                    print(f"round {r}: {size} {kind} {how}: {secs:.1f} s", flush=True)
                    best[(size, kind, how)] = min(secs, best.get((size, kind, how), float("inf")))
                assert same(tmp / f"{kind}-{size[:5]}-jobs-{r}", tmp / f"{kind}-{size[:5]}-cluster-{r}")
        assert same(tmp / "k-cold", tmp / "encode-Kodak-jobs-0")
        for size, kind, _, count in cases:
            rows += [(size, kind, f"--jobs {j}", count, best[(size, kind, "jobs")]),
                     (size, kind, f"cluster {j} workers, warm", count, best[(size, kind, "cluster")])]
        client.close()
        local.close()
    print("\n| images | coding | run | files | seconds | images/s | images/s per core |\n|---|---|---|---|---|---|---|")
    out = []
    for size, kind, how, count, secs in rows:
        print(f"| {size} | {kind} | {how} | {count} | {secs:.1f} | {count / secs:.3f} | {count / secs / j:.3f} |")
        out.append({"images": size, "coding": kind, "run": how, "files": count, "seconds": secs,
                    "images_per_s": count / secs, "images_per_s_per_core": count / secs / j})
    if args.json:
        args.json.write_text(json.dumps({"cluster_start_s": t_start, "rows": out}, indent=2))


if __name__ == "__main__":
    main()
