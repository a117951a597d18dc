"""bbcodec against WebP at the same file size on a synthetic set (figures, one run).

    python benchmarks/synthetic.py write DIR
    python benchmarks/synthetic.py compare DIR [--qualities 1,4,8] [--jobs 2] [--only text,ui]

`write` makes the images of bbcodec/synthetic.py as PNG in DIR (flat colours,
gradients, text, a UI screenshot, a chart, line art, patterns, saturated colours, pixel
art, a texture on a flat background: generated, never among the training photos).

`compare` codes every PNG of DIR with bbcodec (the Python API, one thread) at the
qualities, and with WebP at bench's sweep (bbcodec/baselines.py: method 6, qualities
5..95, through bench.run_one). For each bbcodec point it gives WebP's PSNR and
SSIMULACRA2 at the same number of bytes, interpolated linearly in log bytes on WebP's
curve of that image (where two WebP settings give the same bytes, the better one), and
says when the point lies outside WebP's range: smaller than WebP's smallest file or
larger than its largest. A point is worse when WebP's SSIMULACRA2 at its size is
higher; outside WebP's range, only when it is dominated (larger than WebP's largest
file and below its score), better when it dominates (smaller than WebP's smallest file
and above its score), otherwise undecided, not counted. On images under 8 pixels a side SSIMULACRA2 is undefined: the
bytes and the maximum error are printed instead. Flat images also get the maximum
absolute error of each codec.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bbcodec import bench, metrics, rd, synthetic  # noqa: E402
from bbcodec.baselines import BASELINES  # noqa: E402
from bbcodec.jobs import map_jobs  # noqa: E402
from bbcodec.model.tuning import TUNES  # noqa: E402

WEBP = BASELINES["webp"]


def _load(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def one(task: tuple[str, str, float, str | None]) -> dict:
    """(codec, path, quality, tune) coded, decoded and measured: bytes, PSNR, SSIMULACRA2
    (None under 8 px a side), maximum absolute error; tune: bbcodec's weights."""
    codec, path, q, tune = task
    img = _load(path)
    if codec == "bbcodec":
        import bbcodec

        data = bbcodec.encode(img, q, threads=1, tune=tune)
        out = np.asarray(bbcodec.decode(data, threads=1).convert("RGB"))
        row = {"bytes": len(data), "psnr": rd.psnr(img, out), "ssimulacra2": metrics.ssimulacra2(img, out)}
    else:
        row = bench.run_one((codec, path, q, True, None, None, True))
        out = bench.decode_baseline(row.pop("data"))
    row.update(codec=codec, quality=q, image=Path(path).stem,
               max_err=int(np.abs(img.astype(np.int16) - out.astype(np.int16)).max()))
    return row


def webp_at(size: int, curve: list[dict]) -> tuple[float, float, str]:
    """WebP's (PSNR, SSIMULACRA2) at size bytes on its curve of one image, and where size
    lies: "in", "below" (smaller than WebP's smallest file: its values there) or "above"
    (larger than its largest: its values there)."""
    best: dict[int, dict] = {}
    for r in curve:  # one point per byte count: the best score
        if r["bytes"] not in best or r["ssimulacra2"] > best[r["bytes"]]["ssimulacra2"]:
            best[r["bytes"]] = r
    pts = [best[b] for b in sorted(best)]
    if size < pts[0]["bytes"]:
        return pts[0]["psnr"], pts[0]["ssimulacra2"], "below"
    if size > pts[-1]["bytes"]:
        return pts[-1]["psnr"], pts[-1]["ssimulacra2"], "above"
    lb = np.log([p["bytes"] for p in pts])
    psnr = np.interp(np.log(size), lb, [min(p["psnr"], 99.0) for p in pts])  # inf (exact) as 99 dB
    return float(psnr), float(np.interp(np.log(size), lb, [p["ssimulacra2"] for p in pts])), "in"


def verdict(ours: float, theirs: float, where: str) -> str:
    """worse / better / undecided for a bbcodec point against WebP at its size."""
    if where == "in":
        return "worse" if ours < theirs else "better"
    if where == "above":  # more bytes than WebP's largest file
        return "worse" if ours < theirs else "undecided"
    return "better" if ours >= theirs else "undecided"  # fewer bytes than WebP's smallest


def _db(v: float) -> str:
    return "  exact" if v == float("inf") or v >= 99 else f"{v:7.2f}"


def compare(folder: Path, qualities: list[float], jobs: int, only: list[str], tune: str | None = None) -> None:
    paths = sorted(p for p in folder.glob("*.png") if not only or any(o in p.stem for o in only))
    if not paths:
        raise SystemExit(f"no PNG images in {folder}")
    tasks: list[tuple[str, str, float, str | None]] = [("bbcodec", str(p), q, tune) for p in paths for q in qualities]
    tasks += [("webp", str(p), float(q), None) for p in paths for q in WEBP.qualities]
    started = time.time()
    print(f"{len(paths)} images of {folder}; bbcodec qualities {','.join(f'{q:g}' for q in qualities)} "
          f"(one thread), WebP {WEBP.description}, qualities {','.join(map(str, WEBP.qualities))}; "
          f"{len(tasks)} encodes, {jobs} processes; load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = list(map_jobs(one, tasks, jobs))
    worse: list[str] = []
    undecided = points = scored = 0
    flat_lines, tiny_lines = [], []
    for p in paths:
        img = _load(str(p))
        h, w = img.shape[:2]
        ours = [r for r in rows if r["image"] == p.stem and r["codec"] == "bbcodec"]
        webp = [r for r in rows if r["image"] == p.stem and r["codec"] == "webp"]
        is_flat = bool((img == img[0, 0]).all())
        wb = sorted(r["bytes"] for r in webp)
        print(f"\n{p.stem} ({w}x{h}{', flat' if is_flat else ''}): WebP {wb[0]}..{wb[-1]} bytes")
        if ours[0]["ssimulacra2"] is None:
            for r in ours:
                tiny_lines.append(f"{p.stem} q{r['quality']:g}: bbcodec {r['bytes']} bytes, max error {r['max_err']}")
                print(f"  q{r['quality']:<4g} {r['bytes']:6d} B  max error {r['max_err']}  (SSIMULACRA2 undefined "
                      f"under {metrics.SSIMULACRA2_MIN_SIDE} px)")
            print("  WebP: " + ", ".join(f"q{r['quality']:g} {r['bytes']} B err {r['max_err']}" for r in webp))
            tiny_lines.append(f"{p.stem}: WebP {wb[0]}..{wb[-1]} bytes, max error "
                              f"{min(r['max_err'] for r in webp)}..{max(r['max_err'] for r in webp)}")
            continue
        scored += 1
        print(f"  {'q':<5} {'bytes':>6} {'PSNR':>7} {'SSIMU2':>7} | {'WebP PSNR':>9} {'SSIMU2':>7} | "
              f"{'diff':>7}  verdict")
        for r in ours:
            wp, ws, where = webp_at(r["bytes"], webp)
            v = verdict(r["ssimulacra2"], ws, where)
            note = {"in": "", "below": f" (below WebP's range: its smallest, {wb[0]} B)",
                    "above": f" (above WebP's range: its largest, {wb[-1]} B)"}[where]
            print(f"  q{r['quality']:<4g} {r['bytes']:6d} {_db(r['psnr'])} {r['ssimulacra2']:7.2f} | "
                  f"{_db(wp):>9} {ws:7.2f} | {r['ssimulacra2'] - ws:+7.2f}  {v}{note}")
            points += 1
            undecided += v == "undecided"
            if v == "worse":
                worse.append(f"{p.stem} q{r['quality']:g}: {r['ssimulacra2']:.2f} against {ws:.2f} "
                             f"({r['ssimulacra2'] - ws:+.2f}){note}")
        if is_flat:
            flat_lines.append(f"{p.stem}: bbcodec " + ", ".join(f"q{r['quality']:g} {r['max_err']}" for r in ours)
                              + f"; WebP {min(r['max_err'] for r in webp)}..{max(r['max_err'] for r in webp)}")
    images_worse = {line.split(" q")[0] for line in worse}
    print(f"\nsummary: bbcodec worse than WebP at equal size in SSIMULACRA2 on {len(images_worse)} of "
          f"{scored} images "
          f"({len(worse)} of {points} points; {undecided} undecided: outside WebP's range, "
          f"smaller and scoring lower or larger and scoring higher)")
    for line in worse:
        print(f"  worse: {line}")
    for line in flat_lines:
        print(f"  flat, max abs error: {line}")
    for line in tiny_lines:
        print(f"  too small for SSIMULACRA2: {line}")
    print(f"{time.time() - started:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the synthetic set as PNG")
    w.add_argument("dir", type=Path)
    c = sub.add_parser("compare", help="bbcodec against WebP at equal size on the PNGs of DIR")
    c.add_argument("dir", type=Path)
    c.add_argument("--qualities", default="1,2,4,8")
    c.add_argument("--jobs", type=int, default=2, choices=(1, 2))
    c.add_argument("--only", default="", help="comma list: only images whose name contains one of these")
    c.add_argument("--tune", choices=TUNES, default=None, help="bbcodec's weights (default: the default ones)")
    a = p.parse_args()
    if a.command == "write":
        for path in synthetic.write(a.dir):
            from PIL import Image

            with Image.open(path) as im:
                print(f"{path}  {im.width}x{im.height}")
    else:
        compare(a.dir, [float(v) for v in a.qualities.split(",")], a.jobs, [o for o in a.only.split(",") if o], a.tune)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
