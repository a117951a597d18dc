"""bbcodec bench: rate-distortion and speed against JPEG, WebP, AVIF and JPEG XL.

Every figure comes from real files: bpp is 8 x file size / pixels (headers included),
PSNR, MS-SSIM and SSIMULACRA2 are measured on the decoded 8-bit RGB image (metrics.py),
seconds are wall-clock per image, every codec in one thread (bbcodec with threads=1,
AVIF and JPEG XL told to use one thread), one task per process at a time. Baselines run
through Pillow (JPEG: libjpeg-turbo 4:2:0; WebP; AVIF 4:4:4) and the pillow-jxl-plugin
package (JPEG XL); a missing one is skipped with a note. Curves are averaged over images
per quality, as CompressAI does, and written in CompressAI's results layout so they plot
beside ../shared/anchors; report.py writes the HTML page.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rd
from .baselines import BASELINES, CODECS, Baseline  # noqa: F401 - the codecs, bench's own
from .errors import BenchError
from .jobs import map_jobs
from .model import quality as Q

# What bench imports beyond bbcodec's own dependencies, all in the bench extra: needed
# (module, package) first, then those whose absence only leaves something out.
NEEDED = (("scipy", "scipy"), ("ssimulacra2", "ssimulacra2"))
OPTIONAL = (("matplotlib", "matplotlib"), ("pillow_jxl", "pillow-jxl-plugin"))
INSTALL_HINT = "bbcodec bench needs: pip install 'bbcodec[bench]'"

# The metrics of a curve (results key, label); BD-rates and plots take MS-SSIM in dB.
METRICS = (("psnr-rgb", "PSNR"), ("ms-ssim-rgb", "MS-SSIM"), ("ssimulacra2", "SSIMULACRA2"))

# Kamisli 2022, 8x8 blocks, Kodak, as published (the paper's Fig. / table values).
PAPER_8X8 = {
    "bpp": [0.117, 0.197, 0.307, 0.468, 0.66, 0.915, 1.235, 1.629],
    "psnr-rgb": [27.19, 29.08, 30.85, 32.81, 34.84, 36.84, 38.87, 40.82],
}


def missing_packages() -> list[str]:
    """The needed packages of the bench extra that do not import."""
    missing = []
    for module, package in NEEDED:
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


def check_dependencies() -> None:
    """Raise a BenchError naming the extra to install when a needed package is missing."""
    if missing := missing_packages():
        raise BenchError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


def available_baselines(names: list[str]) -> tuple[list[str], list[str]]:
    """(usable codec names, notes about skipped ones)."""
    from PIL import Image, features

    Image.init()  # load Pillow's format plugins so Image.SAVE is complete
    usable, notes = [], []
    for name in names:
        if name == "bbcodec":
            usable.append(name)
            continue
        b = BASELINES[name]
        if b.plugin:
            try:
                __import__(b.plugin)
            except ImportError:
                notes.append(f"{name}: skipped, install the {b.plugin.replace('_', '-')}-plugin package")
                continue
        if b.pil_format in ("WEBP", "AVIF") and not features.check(b.pil_format.lower()):
            notes.append(f"{name}: skipped, this Pillow was built without {b.pil_format}")
            continue
        if b.pil_format not in Image.SAVE:
            notes.append(f"{name}: skipped, Pillow cannot write {b.pil_format}")
            continue
        usable.append(name)
    return usable, notes


def list_images(folder: Path, limit: int | None) -> tuple[list[Path], list[str]]:
    """Readable RGB-able images in folder (sorted), and notes on the files skipped."""
    from .errors import ImageError
    from .images import IMAGE_SUFFIXES, open_image, to_rgb

    if not folder.is_dir():
        raise BenchError(f"{folder} is not a folder")
    paths, notes = [], []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            to_rgb(open_image(p.read_bytes(), p.name), p.name)
        except (ImageError, OSError) as e:
            notes.append(f"skipped {p.name}: {e}")
            continue
        paths.append(p)
        if limit and len(paths) >= limit:
            break
    if not paths:
        raise BenchError(f"no readable images in {folder}")
    return paths, notes


def _load(path: Path) -> np.ndarray:
    from .images import open_image, to_rgb

    return to_rgb(open_image(path.read_bytes(), path.name), path.name)


Task = tuple[str, str, float, bool, str | None, float | None, bool]  # codec, image, quality, keep, tune, aq, linear


def run_one(task: Task) -> dict:
    """Encode, decode and measure one (codec, image, quality, keep, tune, aq, linear): every
    codec in one thread, so that the seconds compare; keep: also return the file's bytes
    ("data"); tune: bbcodec's weights (model/tuning.py; None: the default ones); aq: its
    adaptive-quantisation strength (None: the weights' tuning's); linear: whether its
    encoder may send a linear filter (format version 7)."""
    from . import metrics

    codec_name, path, quality, keep, tune, aq, linear = task
    img = _load(Path(path))
    if codec_name == "bbcodec":
        from . import codec

        t0 = time.perf_counter()
        enc = codec.encode(img, quality, tune=tune, threads=1, aq=aq,  # as `bbcodec encode`: exact where smaller
                           linear_filter=linear)
        t1 = time.perf_counter()
        out = codec.decode(enc.data, threads=1).image
        t2 = time.perf_counter()
        data, rec = enc.data, enc.reconstruction
        if not np.array_equal(out, rec):
            raise RuntimeError("decoder disagrees with encoder")
    else:
        from PIL import Image

        b = BASELINES[codec_name]
        one_thread()
        buf = io.BytesIO()
        t0 = time.perf_counter()
        Image.fromarray(img).save(buf, format=b.pil_format, **b.params(int(quality)), **b.one_thread)
        t1 = time.perf_counter()
        data = buf.getvalue()
        out = decode_baseline(data)
        t2 = time.perf_counter()
    h, w_ = img.shape[:2]
    row = {
        "codec": codec_name,
        "image": Path(path).name,
        "quality": quality,
        "bytes": len(data),
        "bpp": 8 * len(data) / (h * w_),
        "psnr": rd.psnr(img, out),
        "ms_ssim": metrics.ms_ssim(img, out),
        "ssimulacra2": metrics.ssimulacra2(img, out),
        "enc_s": t1 - t0,
        "dec_s": t2 - t1,
    }
    if keep:
        row["data"] = data
    return row


def one_thread() -> None:
    """Pillow's AVIF and JPEG XL decoders in one thread (module settings; their encoders
    take Baseline.one_thread). Imports the JPEG XL plugin, which registers the format."""
    try:
        from PIL import AvifImagePlugin  # Pillow 11.2 and later

        AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    except ImportError:
        pass
    try:
        from pillow_jxl import JpegXLImagePlugin

        JpegXLImagePlugin.DECODE_THREADS = 0  # 0: no thread pool
    except ImportError:
        pass


def decode_baseline(data: bytes) -> np.ndarray:
    """A baseline's file decoded by Pillow to 8-bit RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def curves(rows: list[dict], tune: str | None = None, aq: float | None = None,
           linear: bool = True) -> dict[str, dict]:
    """Per codec: CompressAI-layout results averaged over images per quality (bbcodec's
    with the weights of tune, None: the default ones; aq and linear as run_one's)."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["codec"] for r in rows):
        qs = sorted({r["quality"] for r in rows if r["codec"] == name})
        res: dict[str, list] = {k: [] for k in ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "ssimulacra2",
                                                "encoding_time", "decoding_time")}
        for q in qs:
            sel = [r for r in rows if r["codec"] == name and r["quality"] == q]
            res["quality"].append(q)
            res["bpp"].append(float(np.mean([r["bpp"] for r in sel])))
            res["psnr-rgb"].append(float(np.mean([r["psnr"] for r in sel])))
            for key, col in (("ms-ssim-rgb", "ms_ssim"), ("ssimulacra2", "ssimulacra2")):
                vals = [r[col] for r in sel if r[col] is not None]
                res[key].append(float(np.mean(vals)) if len(vals) == len(sel) else None)
            res["encoding_time"].append(float(np.mean([r["enc_s"] for r in sel])))
            res["decoding_time"].append(float(np.mean([r["dec_s"] for r in sel])))
        if name == "bbcodec":
            from .model import weights

            desc = f"bbcodec, weights {weights.default(tune).path.name}, one thread"
            if aq is not None:
                desc += f", aq {aq:g}"
            if not linear:
                desc += ", no linear filter"
        else:
            desc = BASELINES[name].description
        out[name] = {"name": name, "description": desc, "results": res}
    return out


ENVIRONMENT = "environment.json"  # what made a bench's numbers, beside its curves


def load_anchors(folder: Path) -> tuple[dict[str, dict], list[str]]:
    """Stored curves to compare against without re-running those codecs: every
    CompressAI-layout JSON in folder with PSNR, as {"<file stem> (stored)": results}. The
    output folder of an earlier bench serves as it is (its ENVIRONMENT file is not a curve)."""
    if not folder.is_dir():
        raise BenchError(f"{folder}: not a folder of result JSON files")
    out, notes = {}, []
    for path in sorted(p for p in folder.glob("*.json") if p.name != ENVIRONMENT):
        try:
            results = json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BenchError(f"{path}: not a CompressAI results file ({type(e).__name__}: {e})") from None
        if "psnr-rgb" not in results:
            notes.append(f"{path.name}: no psnr-rgb curve, not compared")
            continue
        _, bpp, psnr = rd.load_curve(path)
        if len(bpp) < 2 or len(bpp) != len(psnr):
            raise BenchError(f"{path}: needs at least two (bpp, psnr-rgb) points")
        curve = {"bpp": bpp.tolist(), "psnr-rgb": psnr.tolist()}
        for key in ("ms-ssim-rgb", "ssimulacra2"):  # other metrics where the file has them
            vals = results.get(key)
            if isinstance(vals, list) and len(vals) == len(bpp) and all(isinstance(v, (int, float)) for v in vals):
                curve[key] = [float(v) for v in vals]
        out[f"{path.stem} (stored)"] = curve
    if not out:
        raise BenchError(f"{folder}: no result JSON files with psnr-rgb")
    return out, notes


def metric_values(results: dict, key: str) -> list[float] | None:
    """A curve's values of one metric in the form BD-rates and plots use (MS-SSIM in dB),
    or None when the curve lacks it or any point of it."""
    from .metrics import ms_ssim_db

    vals = results.get(key)
    if not vals or any(v is None for v in vals):
        return None
    return [ms_ssim_db(v) for v in vals] if key == "ms-ssim-rgb" else [float(v) for v in vals]


def bd_table(cur: dict[str, dict], stored: dict[str, dict] | None = None) -> list[dict]:
    """bbcodec against every measured curve, the stored ones and the paper: per anchor
    {"anchor", "psnr-rgb", "ms-ssim-rgb", "ssimulacra2" (BD-rates in %, None where a
    curve lacks the metric, nan where the curves do not overlap), "bd-psnr" (dB)}."""
    if "bbcodec" not in cur:
        return []
    ours = cur["bbcodec"]["results"]
    anchors = {k: v["results"] for k, v in cur.items() if k != "bbcodec"}
    anchors.update(stored or {})
    anchors["paper 8x8 (Kamisli 2022)"] = PAPER_8X8
    table = []
    for name, a in anchors.items():
        entry: dict = {"anchor": name}
        for key, _ in METRICS:
            qa, qb = metric_values(a, key), metric_values(ours, key)
            entry[key] = None if qa is None or qb is None else rd.bd_rate(a["bpp"], qa, ours["bpp"], qb)
        entry["bd-psnr"] = rd.bd_psnr(a["bpp"], a["psnr-rgb"], ours["bpp"], ours["psnr-rgb"])
        table.append(entry)
    return table


@dataclass
class Plan:
    """What a bench run will do: the images, the tasks (run_one's), notes, stored curves to
    compare with, and the images and bbcodec quality of the side-by-side view (keep: the
    task returns its file for that view); tune: bbcodec's weights (None: the default
    ones); aq: its adaptive-quantisation strength (None: the weights' tuning's); linear:
    whether its encoder may send a linear filter."""

    folder: Path
    paths: list[Path]
    tasks: list[Task]
    notes: list[str]
    stored: dict[str, dict]
    side_images: list[Path]
    side_quality: float | None
    tune: str | None = None
    aq: float | None = None
    linear: bool = True


SIDE_BY_SIDE_IMAGES = 3  # the first images of the folder, shown codec beside codec
SIDE_BY_SIDE_QUALITY = 2.0  # bbcodec's quality there (the nearest the run has); a low rate, where codecs differ


def plan(folder: Path, qualities: list[float], codecs: list[str], limit: int | None,
         anchors: Path | None = None, tune: str | None = None, aq: float | None = None,
         linear: bool = True) -> Plan:
    """Check the folder, the codecs, the tuning, aq and the stored curves once, and list
    every task."""
    from .model.tuning import check_aq, check_tune

    check_tune(tune)
    check_aq(aq)
    if bad := [q for q in qualities if not Q.MIN <= q <= Q.MAX]:
        raise BenchError(f"qualities must be within {Q.MIN}..{Q.MAX}, got {', '.join(f'{q:g}' for q in bad)}")
    stored, anchor_notes = load_anchors(anchors) if anchors is not None else ({}, [])
    paths, notes = list_images(folder, limit)
    usable, skipped = available_baselines(codecs)
    side = paths[:SIDE_BY_SIDE_IMAGES] if "bbcodec" in usable and len(usable) > 1 else []
    side_q = min(qualities, key=lambda q: (abs(q - SIDE_BY_SIDE_QUALITY), q)) if side else None
    tasks = []
    for name in usable:
        qs = qualities if name == "bbcodec" else BASELINES[name].qualities
        tasks += [(name, str(p), float(q), p in side and (name != "bbcodec" or q == side_q),
                   tune if name == "bbcodec" else None, aq if name == "bbcodec" else None, linear)
                  for q in qs for p in paths]
    return Plan(folder, paths, tasks, notes + skipped + anchor_notes, stored, side, side_q, tune, aq, linear)


def run(p: Plan, out_dir: Path, jobs: int, progress: Callable[[int], None] | None = None,
        command: str = "") -> dict:
    """Run a plan; returns {"rows", "curves", "bd", "notes", ...} and writes out_dir: the
    curves (CompressAI-layout JSON), per_image.csv, bd_rate.csv, environment.json, the
    plots and index.html (report.py)."""
    from . import report

    started, load_start = time.time(), report.load_average()
    rows = list(map_jobs(run_one, p.tasks, jobs, progress))
    files = {(r["codec"], r["image"], r["quality"]): r.pop("data") for r in rows if "data" in r}
    notes = list(p.notes)
    cur = curves(rows, p.tune, p.aq, p.linear)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, c in cur.items():
        (out_dir / f"{name}.json").write_text(json.dumps(c, indent=1) + "\n")
    with open(out_dir / "per_image.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    bd = bd_table(cur, p.stored)
    with open(out_dir / "bd_rate.csv", "w", newline="") as f:
        bw = csv.writer(f)
        bw.writerow(["anchor"] + [f"bd_rate_{key}_percent" for key, _ in METRICS] + ["bd_psnr_db"])
        for e in bd:
            bw.writerow([e["anchor"]] + ["" if e[k] is None else f"{e[k]:.4f}" for k, _ in METRICS]
                        + [f"{e['bd-psnr']:.4f}"])
    full_kodak = is_full_kodak(p.paths)
    if any(v is None for c in cur.values() for v in c["results"]["ms-ssim-rgb"]):
        notes.append("MS-SSIM '-': an image is too small (MS-SSIM needs 161 px per side)")
    if any(v is None for c in cur.values() for v in c["results"]["ssimulacra2"]):
        notes.append("SSIMULACRA2 '-': an image is too small (SSIMULACRA2 needs 8 px per side)")
    result = {"rows": rows, "curves": cur, "bd": bd, "notes": notes, "images": len(p.paths), "tasks": len(p.tasks),
              "full_kodak": full_kodak, "folder": str(p.folder), "jobs": jobs, "command": command,
              "seconds": time.time() - started}
    env = report.environment()
    env["load average at the start (1, 5, 15 min)"] = load_start
    env["load average at the end"] = report.load_average()
    (out_dir / ENVIRONMENT).write_text(json.dumps(env, indent=1) + "\n")
    title = f"{p.folder.name}: {len(p.paths)} images"
    result["plots"] = report.plots(cur, p.stored, out_dir, title, "" if full_kodak else " (paper curve: full Kodak)")
    if not result["plots"]:
        notes.append("plots skipped (rd.png, rd-ms-ssim.png, rd-ssimulacra2.png not written): install matplotlib, "
                     "pip install 'bbcodec[bench]'")
    result["side_by_side"] = report.side_by_side(p, rows, files, out_dir) if p.side_images else []
    report.write_html(result, env, out_dir)
    result["seconds"] = time.time() - started
    return result


KODAK_NAMES = frozenset(f"kodim{i:02d}.png" for i in range(1, 25))


def is_full_kodak(paths: list[Path]) -> bool:
    """Whether the images are the 24 Kodak images the paper's curve was measured on."""
    return {p.name.lower() for p in paths} == KODAK_NAMES


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def bd_cell(v: float | None) -> str:
    """A BD-rate as the report prints it: '+1.2 %', 'n/a' (curves do not overlap), '-'
    (a curve lacks the metric)."""
    if v is None:
        return "-"
    return "n/a" if math.isnan(v) else f"{v:+.1f} %"


def format_report(result: dict) -> str:
    lines = [f"{'codec':<8} {'q':>5} {'bpp':>8} {'PSNR':>7} {'MS-SSIM':>8} {'SSIMU2':>7} {'enc s':>7} {'dec s':>7}"]
    for name, c in result["curves"].items():
        r = c["results"]
        for i, q in enumerate(r["quality"]):
            lines.append(f"{name:<8} {q:5g} {r['bpp'][i]:8.4f} {r['psnr-rgb'][i]:7.2f} "
                         f"{_num(r['ms-ssim-rgb'][i], '.4f'):>8} {_num(r['ssimulacra2'][i], '.2f'):>7} "
                         f"{r['encoding_time'][i]:7.4f} {r['decoding_time'][i]:7.4f}")
    lines.append("(seconds per image, every codec in one thread; SSIMU2: SSIMULACRA2, 30 low .. 90 visually lossless)")
    if result["bd"]:
        lines.append("bbcodec against (BD-rate on each metric, negative = fewer bits for the same quality; "
                     "n/a: the curves do not overlap; BD-PSNR):")
        lines.append(f"  {'':<26} {'PSNR':>9} {'MS-SSIM':>9} {'SSIMU2':>9} {'BD-PSNR':>9}")
        for e in result["bd"]:
            ps = "" if math.isnan(e["bd-psnr"]) else f"{e['bd-psnr']:+.2f} dB"
            lines.append(f"  {e['anchor']:<26} " + " ".join(f"{bd_cell(e[k]):>9}" for k, _ in METRICS) + f" {ps:>9}")
            if e["anchor"].startswith("paper") and not result.get("full_kodak", True):
                lines.append(f"    (the paper's curve is on all 24 Kodak images; this run used {result['images']} "
                             f"images of {result.get('folder', 'the folder')}: not the same set)")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)
