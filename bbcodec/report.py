"""The page bbcodec bench writes: index.html beside the JSON curves and the CSV tables,
with the RD plots on three metrics, the BD-rate tables, the codecs side by side at the
same file size on a few images, how the seconds were taken and the versions of
everything that made the numbers. Plain HTML and PNG files in one folder: no network,
no script; without matplotlib the page has the tables and no plots."""

from __future__ import annotations

import datetime
import html
import math
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .baselines import BASELINES

if TYPE_CHECKING:
    from .bench import Plan

CROP = 256  # side of the side-by-side crops, in pixels (the whole image if smaller)
SUFFIX = {"bbcodec": "bbc", "jpeg": "jpg", "webp": "webp", "avif": "avif", "jxl": "jxl"}
PLOTS = (  # file, results key, y label
    ("rd.png", "psnr-rgb", "PSNR RGB (dB)"),
    ("rd-ms-ssim.png", "ms-ssim-rgb", "MS-SSIM RGB (dB: -10 log10(1 - MS-SSIM))"),
    ("rd-ssimulacra2.png", "ssimulacra2", "SSIMULACRA2 (90: visually lossless)"),
)
X_MAX = 2.0  # bpp: the plots' range, bbcodec's (quality 8 is about 2 bpp on Kodak)


# -- the environment ------------------------------------------------------------------

def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """The versions of everything that made the numbers, and the machine."""
    from PIL import features

    from . import __version__
    from .coding.workers import cores
    from .model import weights

    w = weights.default()
    pil = {name: features.version(name) for name in ("libjpeg_turbo", "webp", "avif")}
    try:
        from PIL import AvifImagePlugin

        pil["avif encoder (aom)"] = AvifImagePlugin.get_codec_version("aom")
    except (ImportError, AttributeError):
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "bbcodec": __version__,
        "weights": f"{w.path.name} (sha256 {w.sha256[:16]})",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": _version("pillow"),
        "libjpeg-turbo (Pillow)": pil["libjpeg_turbo"],
        "libwebp (Pillow)": pil["webp"],
        "libavif (Pillow)": pil["avif"],
        "aom (AVIF encoder)": pil.get("avif encoder (aom)"),
        "pillow-jxl-plugin (libjxl)": _version("pillow-jxl-plugin"),
        "ssimulacra2": _version("ssimulacra2"),
        "scipy": _version("scipy"),
        "matplotlib": _version("matplotlib"),
        "cpu": _cpu_model(),
        "cores": f"{cores()} usable of {os.cpu_count()}",
        "os": platform.platform(),
    }


def load_average() -> str | None:
    """The system's load average (1, 5, 15 minutes), where there is one."""
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except (AttributeError, OSError):
        return None


# -- the plots --------------------------------------------------------------------------

def plots(cur: dict[str, dict], stored: dict[str, dict], out_dir: Path, title: str, paper_note: str = "") -> list[str]:
    """RD plots on each metric (PNG files in out_dir); the files written, none without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from .bench import PAPER_8X8, metric_values

    written = []
    for fname, key, ylabel in PLOTS:
        fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
        ys: list[float] = []
        series = [(name, c["results"], False) for name, c in cur.items()] + [(n, r, True) for n, r in stored.items()]
        if key == "psnr-rgb":
            series.append(("paper 8x8 (published, Kodak)", PAPER_8X8, True))
        for name, r, other in series:
            vals = metric_values(r, key)
            if vals is None:
                continue
            ys += [v for b, v in zip(r["bpp"], vals, strict=True) if b <= X_MAX]
            if name.startswith("paper"):
                ax.plot(r["bpp"], vals, "k--", marker="x", ms=4, lw=1, label=name)
            elif other:
                ax.plot(r["bpp"], vals, ls=":", marker=".", ms=3, lw=1, label=name)
            else:
                ax.plot(r["bpp"], vals, marker="o", ms=3, lw=2.2 if name == "bbcodec" else 1.2, label=name,
                        zorder=3 if name == "bbcodec" else 2)
        if not ys:
            plt.close(fig)
            continue
        lo, hi = min(ys), max(ys)
        if key == "ssimulacra2":
            lo = max(lo, 0.0)  # below 0: unusable; JPEG's lowest settings reach -60
        pad = 0.04 * (hi - lo or 1)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(0, X_MAX)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"{title}{paper_note if key == 'psnr-rgb' else ''}: {ylabel.split(' (')[0]}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out_dir / fname)
        plt.close(fig)
        written.append(fname)
    return written


# -- side by side -----------------------------------------------------------------------

def pick_settings(rows: list[dict], image: str, size: int, codecs: list[str]) -> dict[str, tuple[dict, bool]]:
    """Per baseline, its row on image whose file is the largest not above size bytes (or,
    when even its smallest file is larger, that one, flagged True)."""
    picked = {}
    for name in codecs:
        mine = [r for r in rows if r["codec"] == name and r["image"] == image]
        if not mine:
            continue
        fits = [r for r in mine if r["bytes"] <= size]
        picked[name] = (max(fits, key=lambda r: r["bytes"]), False) if fits else (min(mine, key=lambda r: r["bytes"]), True)
    return picked


def crop_where_they_differ(original: np.ndarray, decoded: list[np.ndarray], side: int = CROP) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the side x side window where the codecs' errors
    differ most: the largest sum over the window of the variance, across codecs, of each
    pixel's absolute error (mean over RGB)."""
    h, w = original.shape[:2]
    ch, cw = min(side, h), min(side, w)
    if len(decoded) < 2 or (ch, cw) == (h, w):
        return 0, 0, ch, cw
    ref = original.astype(np.float64)
    err = np.stack([np.abs(d.astype(np.float64) - ref).mean(axis=2) for d in decoded])
    var = err.var(axis=0)
    ii = np.pad(var.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image
    sums = ii[ch:, cw:] - ii[:-ch, cw:] - ii[ch:, :-cw] + ii[:-ch, :-cw]  # (h - ch + 1, w - cw + 1)
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), ch, cw


def side_by_side(p: Plan, rows: list[dict], files: dict[tuple, bytes], out_dir: Path) -> list[dict]:
    """For each image of the view: bbcodec at the plan's quality and each baseline at its
    setting nearest that size, not above; writes the files, their decoded PNGs and crops
    under out_dir/side-by-side/; returns what the page shows."""
    from PIL import Image

    import bbcodec

    from .bench import _load, decode_baseline

    folder = out_dir / "side-by-side"
    folder.mkdir(exist_ok=True)
    baselines = [c for c in dict.fromkeys(r["codec"] for r in rows) if c != "bbcodec"]
    views = []
    for path in p.side_images:
        name, stem = path.name, path.stem
        ours = next((r for r in rows if r["codec"] == "bbcodec" and r["image"] == name and r["quality"] == p.side_quality), None)
        if ours is None:
            continue
        original = _load(path)
        chosen = [(ours, False)] + list(pick_settings(rows, name, ours["bytes"], baselines).values())
        decoded = []
        for r, _ in chosen:
            data = files[(r["codec"], name, r["quality"])]
            rec = np.asarray(bbcodec.decode(data).convert("RGB")) if r["codec"] == "bbcodec" else decode_baseline(data)
            decoded.append(rec)
        # Where the codecs at the same size differ (one whose smallest file is larger
        # would otherwise decide it alone).
        same = [d for (_, above), d in zip(chosen, decoded, strict=True) if not above]
        top, left, ch, cw = crop_where_they_differ(original, same if len(same) > 1 else decoded)
        tiles = []
        for label, img, row, above in [("original", original, None, False)] + [
                (r["codec"], d, r, a) for (r, a), d in zip(chosen, decoded, strict=True)]:
            full = f"side-by-side/{stem}-{label}.png"
            crop = f"side-by-side/{stem}-{label}-crop.png"
            Image.fromarray(img).save(out_dir / full, optimize=False, compress_level=1)
            Image.fromarray(img[top:top + ch, left:left + cw]).save(out_dir / crop)
            tile = {"codec": label, "full": full, "crop": crop}
            if row is not None:
                compressed = f"side-by-side/{stem}-{label}-q{row['quality']:g}.{SUFFIX.get(label, 'bin')}"
                (out_dir / compressed).write_bytes(files[(label, name, row["quality"])])
                tile.update({"file": compressed, "quality": row["quality"], "bytes": row["bytes"], "bpp": row["bpp"],
                             "psnr": row["psnr"], "ms_ssim": row["ms_ssim"], "ssimulacra2": row["ssimulacra2"],
                             "above": above})
            tiles.append(tile)
        views.append({"image": name, "size": original.shape[:2], "crop": (top, left, ch, cw),
                      "target_bytes": ours["bytes"], "quality": p.side_quality, "tiles": tiles})
    return views


# -- the page ---------------------------------------------------------------------------

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1640px; padding: 0 16px; color: #1b1b1b; background: #fff; }
p, dl { max-width: 1150px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 6px; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
td.good { color: #0a6b2b; font-weight: 600; } td.bad { color: #a11; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots img { width: 570px; max-width: 100%; border: 1px solid #ddd; }
.tiles { display: flex; flex-wrap: wrap; gap: 14px; }
.tile { width: 256px; font-size: 13px; }
.tile img { display: block; width: 256px; height: auto; image-rendering: pixelated; border: 1px solid #999; }
.tile .name { font-weight: 600; font-size: 15px; margin-top: 3px; }
.tile.bbcodec .name { color: #1f5fbf; }
.warn { color: #a11; }
.note { color: #555; font-size: 14px; }
code { background: #f4f4f4; padding: 0 3px; }
dl.env { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; }
dl.env dt { color: #555; } dl.env dd { margin: 0; font-family: ui-monospace, monospace; }
"""


def _e(v: object) -> str:
    return html.escape(str(v))


def _bd_td(v: float | None) -> str:
    from .bench import bd_cell

    cls = "" if v is None or math.isnan(v) else (" class=good" if v < 0 else " class=bad")
    return f"<td{cls}>{_e(bd_cell(v))}</td>"


def _fmt(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _busy(result: dict, env: dict) -> str:
    """A warning when other work ran on the machine during the run (its load average
    above what the run's own processes make)."""
    from .coding.workers import cores

    loads = [float(v.split()[0]) for k, v in env.items() if k.startswith("load average") and v]
    if not loads or max(loads) <= min(cores(), result.get("jobs", 1)) + 0.5:
        return ""
    return (f"<p class=warn>The machine was busy with other work during this run (load average up to "
            f"{max(loads):.1f} on {cores()} cores): the seconds are longer than on an idle machine, by different "
            "amounts for each codec. Compare seconds from a run on an idle machine.</p>")


def write_html(result: dict, env: dict, out_dir: Path) -> Path:
    """index.html in out_dir: what the run measured, laid out for a person."""
    from .bench import METRICS

    cur, bd = result["curves"], result["bd"]
    n = result["images"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>bbcodec bench: {_e(Path(result['folder']).name)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>bbcodec bench: {_e(Path(result['folder']).name)}, {n} image{'s' if n != 1 else ''}</h1>",
             f"<p class=sub>bbcodec {_e(env['bbcodec'])}, weights {_e(env['weights'])}; run {_e(env['date'])}"
             f" in {result['seconds']:.0f} s; {_e(result.get('command') or '')}</p>",
             "<p>Every number comes from real files: bits per pixel (bpp) = 8 &times; file size / pixels, "
             "headers included; quality is measured on the decoded 8-bit RGB image with three metrics, "
             "higher is better for each: <b>PSNR</b> (dB), <b>MS-SSIM</b> (shown in dB, "
             "&minus;10&nbsp;log<sub>10</sub>(1&nbsp;&minus;&nbsp;MS-SSIM)), and <b>SSIMULACRA2</b> "
             "(the JPEG XL project's perceptual metric: about 30 low, 50 medium, 70 high, 90 visually lossless quality). "
             "Curves are averages over the images at each setting.</p>"
             "<p>The metrics can disagree: PSNR and MS-SSIM reward a smooth reconstruction, SSIMULACRA2 also "
             "penalises lost texture (blur) and ringing. The crops below show what the numbers mean.</p>"]

    # BD-rates
    if bd:
        parts.append("<h2>BD-rate: bbcodec against each codec</h2>"
                     "<p>The average difference in file size for the same quality, over the quality range both "
                     "curves cover (Bjøntegaard, piecewise cubic): <b>negative means bbcodec needs fewer bits</b> "
                     "(green), positive more (red). <i>n/a</i>: the two curves share no quality range; "
                     "&ldquo;-&rdquo;: that curve has no such metric.</p><table><tr><th>against</th>"
                     + "".join(f"<th>BD-rate on {label}</th>" for _, label in METRICS) + "<th>BD-PSNR</th></tr>")
        for e in bd:
            label = _e(e["anchor"])
            if e["anchor"].startswith("paper") and not result.get("full_kodak", True):
                label += " &dagger;"
            desc = cur[e["anchor"]]["description"] if e["anchor"] in cur else ""
            dpsnr = "n/a" if math.isnan(e["bd-psnr"]) else f"{e['bd-psnr']:+.2f} dB"
            parts.append(f"<tr><td title='{_e(desc)}'>{label}</td>" + "".join(_bd_td(e[k]) for k, _ in METRICS)
                         + f"<td>{dpsnr}</td></tr>")
        parts.append("</table>")
        if not result.get("full_kodak", True):
            parts.append(f"<p class=note>&dagger; The paper's curve (PSNR only) was measured on all 24 Kodak "
                         f"images; this run used {n} image{'s' if n != 1 else ''} of {_e(result['folder'])}: "
                         "not the same set, so that row is only indicative.</p>")

    # plots
    if result.get("plots"):
        parts.append("<h2>Rate-distortion curves</h2><p>Quality against bits per pixel, one plot per metric "
                     "(up and to the left is better). Dotted lines: stored curves; dashed: the paper.</p><div class=plots>")
        parts += [f"<a href='{_e(f)}'><img src='{_e(f)}' alt='{_e(f)}'></a>" for f in result["plots"]]
        parts.append("</div>")

    # side by side
    if result.get("side_by_side"):
        parts.append("<h2>Side by side at the same file size</h2>"
                     "<p>bbcodec at quality {q} beside each other codec at its setting whose file is the largest "
                     "not above bbcodec's, for the first images of the folder (the settings step by 5 or 10, so a codec can "
                     "land well below: its bytes are under its crop). Each crop ({c}&times;{c} pixels, shown "
                     "1:1) is where the codecs' errors differ most (chosen by the variance across codecs of each "
                     "pixel's error); click a crop for the whole decoded image. SSIMULACRA2: about 30 low, 50 medium, "
                     "70 high, 90 visually lossless.</p>".format(
                         q=f"{result['side_by_side'][0]['quality']:g}", c=CROP))
        for v in result["side_by_side"]:
            top, left, ch, cw = v["crop"]
            h, w = v["size"]
            parts.append(f"<h3>{_e(v['image'])}: bbcodec quality {v['quality']:g}, {v['target_bytes']:,} bytes "
                         f"({8 * v['target_bytes'] / (h * w):.3f} bpp); the others at most that</h3>"
                         f"<p class=note>crop {cw}&times;{ch} at x {left}, y {top} of {v['size'][1]}&times;{v['size'][0]}</p>"
                         "<div class=tiles>")
            for t in v["tiles"]:
                parts.append(f"<div class='tile {_e(t['codec'])}'><a href='{_e(t['full'])}'>"
                             f"<img src='{_e(t['crop'])}' alt='{_e(t['codec'])} crop' width={cw} height={ch}></a>"
                             f"<div class=name>{_e(t['codec'])}</div>")
                if "bytes" in t:
                    setting = f"quality {t['quality']:g}"
                    warn = " <span class=warn>(larger than bbcodec's: the smallest file its settings make)</span>" if t["above"] else ""
                    parts.append(f"<div>{t['bytes']:,} bytes, {t['bpp']:.3f} bpp{warn}</div>"
                                 f"<div>PSNR {t['psnr']:.2f} dB, SSIMULACRA2 {_fmt(t['ssimulacra2'], '.1f')}</div>"
                                 f"<div class=note>{setting}; <a href='{_e(t['file'])}'>file</a>, "
                                 f"<a href='{_e(t['full'])}'>decoded PNG</a></div>")
                else:
                    parts.append(f"<div class=note><a href='{_e(t['full'])}'>full image</a></div>")
                parts.append("</div>")
            parts.append("</div>")

    # the table of points
    parts.append("<h2>Every setting</h2><p>Averages over the images. Seconds are wall-clock per image, "
                 "<b>every codec in one thread</b> in the same process model: bbcodec with "
                 "<code>threads=1</code> (its encoder and decoder in the worker process), the other codecs "
                 "in-process through Pillow with AVIF and JPEG XL limited to one thread (JPEG and WebP use one); "
                 f"{result.get('jobs', 1)} such worker process{'es' if result.get('jobs', 1) != 1 else ''} ran at once "
                 f"on {_e(env['cores'])} cores. bbcodec's own <code>--threads</code> makes it faster on more cores "
                 "(docs/performance.md).</p>" + _busy(result, env)
                 + "<table><tr><th>codec</th><th>quality setting</th><th>bpp</th><th>PSNR (dB)</th><th>MS-SSIM</th>"
                 "<th>SSIMULACRA2</th><th>encode s</th><th>decode s</th></tr>")
    for name, c in cur.items():
        r = c["results"]
        for i, q in enumerate(r["quality"]):
            parts.append(f"<tr><td title='{_e(c['description'])}'>{_e(name)}</td><td>{q:g}</td><td>{r['bpp'][i]:.4f}</td>"
                         f"<td>{r['psnr-rgb'][i]:.2f}</td><td>{_fmt(r['ms-ssim-rgb'][i], '.4f')}</td>"
                         f"<td>{_fmt(r['ssimulacra2'][i], '.2f')}</td><td>{r['encoding_time'][i]:.3f}</td>"
                         f"<td>{r['decoding_time'][i]:.3f}</td></tr>")
    parts.append("</table><p class=note>Quality settings: bbcodec 1..8, the others their quality parameter 0..100. "
                 + "; ".join(f"{_e(b.name)}: {_e(b.description)}" for b in BASELINES.values() if b.name in cur)
                 + ".</p>")

    # notes, files, environment
    if result["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in result["notes"]) + "</ul>")
    data_files = [f"{name}.json" for name in cur] + ["per_image.csv", "bd_rate.csv", "environment.json"]
    parts.append("<h2>Data</h2><p>The same numbers as files: "
                 + ", ".join(f"<a href='{_e(f)}'>{_e(f)}</a>" for f in data_files)
                 + " (curves in CompressAI's results layout: <code>bpp</code>, <code>psnr-rgb</code>, "
                 "<code>ms-ssim-rgb</code>, <code>ssimulacra2</code>, seconds).</p>")
    parts.append("<h2>What made these numbers</h2><dl class=env>"
                 + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v if v is not None else '-')}</dd>" for k, v in env.items())
                 + "</dl></body></html>\n")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
