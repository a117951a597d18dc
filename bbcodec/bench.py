"""bbcodec bench: rate-distortion and speed against JPEG, WebP, AVIF and JPEG XL.

Every figure comes from real files: bpp is 8 x file size / pixels (headers included),
PSNR and MS-SSIM are measured on the decoded 8-bit RGB image, seconds are wall-clock
per image. Baselines run through Pillow (JPEG: libjpeg-turbo 4:2:0; WebP; AVIF 4:4:4)
and the pillow-jxl-plugin package (JPEG XL); a missing one is skipped with a note.
Curves are averaged over images per quality, as CompressAI does, and written in
CompressAI's results layout so they plot beside ../shared/anchors.
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
from .jobs import map_jobs, share_cores
from .model import quality as Q

# Kamisli 2022, 8x8 blocks, Kodak, as published (the paper's Fig. / table values).
PAPER_8X8 = {
    "bpp": [0.117, 0.197, 0.307, 0.468, 0.66, 0.915, 1.235, 1.629],
    "psnr-rgb": [27.19, 29.08, 30.85, 32.81, 34.84, 36.84, 38.87, 40.82],
}


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


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim) on 0..255 RGB; None if unavailable or the image is too small."""
    if min(a.shape[:2]) <= 160:
        return None
    try:
        import torch
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError:
        return None
    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255.0))


def run_one(task: tuple[str, str, float, int | None]) -> dict:
    """Encode, decode and measure one (codec, image, quality, threads per image: None, the
    cores)."""
    codec_name, path, quality, threads = task
    img = _load(Path(path))
    if codec_name == "bbcodec":
        from .coding import format
        from .coding import loop as codec
        from .model import weights

        w = weights.default()
        t0 = time.perf_counter()
        data, rec = codec.encode(img, quality, w.model, w.prefix, threads=threads)
        t1 = time.perf_counter()
        out = codec.decode(*format.unpack(data), w.model, threads=threads)
        t2 = time.perf_counter()
        if not np.array_equal(out, rec):
            raise RuntimeError("decoder disagrees with encoder")
    else:
        from PIL import Image

        b = BASELINES[codec_name]
        if b.plugin:
            __import__(b.plugin)
        buf = io.BytesIO()
        t0 = time.perf_counter()
        Image.fromarray(img).save(buf, format=b.pil_format, **b.params(int(quality)))
        t1 = time.perf_counter()
        data = buf.getvalue()
        with Image.open(io.BytesIO(data)) as im:
            out = np.asarray(im.convert("RGB"))
        t2 = time.perf_counter()
    h, w_ = img.shape[:2]
    return {
        "codec": codec_name,
        "image": Path(path).name,
        "quality": quality,
        "bytes": len(data),
        "bpp": 8 * len(data) / (h * w_),
        "psnr": rd.psnr(img, out),
        "ms_ssim": ms_ssim(img, out),
        "enc_s": t1 - t0,
        "dec_s": t2 - t1,
    }


def curves(rows: list[dict]) -> dict[str, dict]:
    """Per codec: CompressAI-layout results averaged over images per quality."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["codec"] for r in rows):
        qs = sorted({r["quality"] for r in rows if r["codec"] == name})
        res: dict[str, list] = {k: [] for k in ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")}
        for q in qs:
            sel = [r for r in rows if r["codec"] == name and r["quality"] == q]
            ms = [r["ms_ssim"] for r in sel if r["ms_ssim"] is not None]
            res["quality"].append(q)
            res["bpp"].append(float(np.mean([r["bpp"] for r in sel])))
            res["psnr-rgb"].append(float(np.mean([r["psnr"] for r in sel])))
            res["ms-ssim-rgb"].append(float(np.mean(ms)) if len(ms) == len(sel) else None)
            res["encoding_time"].append(float(np.mean([r["enc_s"] for r in sel])))
            res["decoding_time"].append(float(np.mean([r["dec_s"] for r in sel])))
        if name == "bbcodec":
            from .model import weights

            desc = f"bbcodec, weights {weights.default().path.name}"
        else:
            desc = BASELINES[name].description
        out[name] = {"name": name, "description": desc, "results": res}
    return out


def load_anchors(folder: Path) -> tuple[dict[str, dict], list[str]]:
    """Stored curves to compare against without re-running those codecs: every
    CompressAI-layout JSON in folder with PSNR, as {"<file stem> (stored)": results}."""
    if not folder.is_dir():
        raise BenchError(f"{folder}: not a folder of result JSON files")
    out, notes = {}, []
    for path in sorted(folder.glob("*.json")):
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
        out[f"{path.stem} (stored)"] = {"bpp": bpp.tolist(), "psnr-rgb": psnr.tolist()}
    if not out:
        raise BenchError(f"{folder}: no result JSON files with psnr-rgb")
    return out, notes


def bd_table(cur: dict[str, dict], stored: dict[str, dict] | None = None) -> list[tuple[str, float, float]]:
    """(anchor, BD-rate %, BD-PSNR dB) of bbcodec against every measured curve, the
    stored ones and the paper."""
    if "bbcodec" not in cur:
        return []
    ours = cur["bbcodec"]["results"]
    anchors = {k: v["results"] for k, v in cur.items() if k != "bbcodec"}
    anchors.update(stored or {})
    anchors["paper 8x8 (Kamisli 2022)"] = PAPER_8X8
    return [
        (name, rd.bd_rate(a["bpp"], a["psnr-rgb"], ours["bpp"], ours["psnr-rgb"]),
         rd.bd_psnr(a["bpp"], a["psnr-rgb"], ours["bpp"], ours["psnr-rgb"]))
        for name, a in anchors.items()
    ]


def plot(cur: dict[str, dict], stored: dict[str, dict], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for name, c in cur.items():
        r = c["results"]
        ax.plot(r["bpp"], r["psnr-rgb"], marker="o", ms=3, lw=2 if name == "bbcodec" else 1.2, label=name)
    for name, r in stored.items():
        ax.plot(r["bpp"], r["psnr-rgb"], ls=":", marker=".", ms=3, lw=1, label=name)
    ax.plot(PAPER_8X8["bpp"], PAPER_8X8["psnr-rgb"], "k--", marker="x", ms=4, lw=1, label="paper 8x8 (published, Kodak)")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_xlim(0, 2.0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


@dataclass
class Plan:
    """What a bench run will do: the images, the (codec, image, quality) tasks, notes,
    and stored curves to compare with."""

    folder: Path
    paths: list[Path]
    tasks: list[tuple[str, str, float]]
    notes: list[str]
    stored: dict[str, dict]


def plan(folder: Path, qualities: list[float], codecs: list[str], limit: int | None,
         anchors: Path | None = None) -> Plan:
    """Check the folder, the codecs and the stored curves once, and list every task."""
    if bad := [q for q in qualities if not Q.MIN <= q <= Q.MAX]:
        raise BenchError(f"qualities must be within {Q.MIN}..{Q.MAX}, got {', '.join(f'{q:g}' for q in bad)}")
    stored, anchor_notes = load_anchors(anchors) if anchors is not None else ({}, [])
    paths, notes = list_images(folder, limit)
    usable, skipped = available_baselines(codecs)
    tasks = []
    for name in usable:
        qs = qualities if name == "bbcodec" else BASELINES[name].qualities
        tasks += [(name, str(p), float(q)) for q in qs for p in paths]
    return Plan(folder, paths, tasks, notes + skipped + anchor_notes, stored)


def run(p: Plan, out_dir: Path, jobs: int, progress: Callable[[int], None] | None = None) -> dict:
    """Run a plan; returns {"rows", "curves", "bd", "notes", ...} and writes out_dir."""
    threads = share_cores(jobs)  # each of the jobs codes with its share of the cores
    rows = list(map_jobs(run_one, [(*t, threads) for t in p.tasks], jobs, progress))
    notes = list(p.notes)
    cur = curves(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, c in cur.items():
        (out_dir / f"{name}.json").write_text(json.dumps(c, indent=1) + "\n")
    with open(out_dir / "per_image.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    bd = bd_table(cur, p.stored)
    full_kodak = is_full_kodak(p.paths)
    title = f"{p.folder.name}: {len(p.paths)} images" + ("" if full_kodak else " (paper curve: full Kodak)")
    plotted = plot(cur, p.stored, out_dir / "rd.png", title)
    if not plotted:
        notes.append("plot skipped (rd.png not written): install matplotlib, pip install 'bbcodec[bench]'")
    if any(ms is None for c in cur.values() for ms in c["results"]["ms-ssim-rgb"]):
        notes.append("MS-SSIM '-': " + ("pytorch-msssim is not installed (pip install 'bbcodec[bench]')"
                                        if not _has_msssim() else "an image is too small (MS-SSIM needs 161 px per side)"))
    return {"rows": rows, "curves": cur, "bd": bd, "notes": notes, "images": len(p.paths), "tasks": len(p.tasks),
            "plot": plotted, "full_kodak": full_kodak, "folder": str(p.folder)}


KODAK_NAMES = frozenset(f"kodim{i:02d}.png" for i in range(1, 25))


def is_full_kodak(paths: list[Path]) -> bool:
    """Whether the images are the 24 Kodak images the paper's curve was measured on."""
    return {p.name.lower() for p in paths} == KODAK_NAMES


def _has_msssim() -> bool:
    try:
        import pytorch_msssim  # noqa: F401
    except ImportError:
        return False
    return True


def format_report(result: dict) -> str:
    lines = [f"{'codec':<8} {'q':>5} {'bpp':>8} {'PSNR':>7} {'MS-SSIM':>8} {'enc s':>7} {'dec s':>7}"]
    for name, c in result["curves"].items():
        r = c["results"]
        for i, q in enumerate(r["quality"]):
            ms = r["ms-ssim-rgb"][i]
            lines.append(f"{name:<8} {q:5g} {r['bpp'][i]:8.4f} {r['psnr-rgb'][i]:7.2f} "
                         f"{'-' if ms is None else f'{ms:.4f}':>8} {r['encoding_time'][i]:7.4f} {r['decoding_time'][i]:7.4f}")
    if result["bd"]:
        lines.append("bbcodec against (BD-rate, negative = fewer bits; BD-PSNR):")
        for name, rate, dpsnr in result["bd"]:
            rs = "n/a (no overlap)" if math.isnan(rate) else f"{rate:+.1f} %"
            ps = "" if math.isnan(dpsnr) else f"{dpsnr:+.2f} dB"
            lines.append(f"  {name:<26} {rs:>16} {ps:>10}")
            if name.startswith("paper") and not result.get("full_kodak", True):
                lines.append(f"    (the paper's curve is on all 24 Kodak images; this run used {result['images']} "
                             f"images of {result.get('folder', 'the folder')}: not the same set)")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)
