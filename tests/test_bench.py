"""bbcodec bench on small images, checked against an independent computation: the
curves, the metrics (MS-SSIM against pytorch-msssim), the BD-rate tables, the page and
its images (and, marked slow, the page rendered by a real browser), the missing-extra
message."""

from __future__ import annotations

import csv
import html.parser
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import KODAK, random_image
from PIL import Image

import bbcodec
from bbcodec import bench, metrics


def _psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def _bench(folder: Path, out: Path, qualities: str, codecs: str, *more: str) -> str:
    """`bbcodec bench` in a real process, one job; its stdout (it must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bbcodec.cli", "bench", str(folder), "--out", str(out),
         "--qualities", qualities, "--codecs", codecs, "--jobs", "1", *more],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory, kodak_crop):
    root = tmp_path_factory.mktemp("bench")
    folder = root / "imgs"
    folder.mkdir()
    images = {"a.png": kodak_crop, "b.png": random_image(24, 40, seed=11)}
    for name, img in images.items():
        Image.fromarray(img).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    out = root / "report"
    return images, out, _bench(folder, out, "2,5", "bbcodec,jpeg")


def test_bbcodec_curve_matches_an_independent_encode(report):
    images, out, _ = report
    res = json.loads((out / "bbcodec.json").read_text())
    assert res["name"] == "bbcodec" and set(res["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "ssimulacra2"}
    for i, q in enumerate((2.0, 5.0)):
        bpps, psnrs, s2 = [], [], []
        for img in images.values():
            data = bbcodec.encode(img, quality=q)
            rec = np.asarray(bbcodec.decode(data))
            bpps.append(8 * len(data) / (img.shape[0] * img.shape[1]))
            psnrs.append(_psnr(img, rec))
            s2.append(metrics.ssimulacra2(img, rec))
        assert res["results"]["quality"][i] == q
        assert res["results"]["bpp"][i] == pytest.approx(np.mean(bpps), rel=1e-12)
        assert res["results"]["psnr-rgb"][i] == pytest.approx(np.mean(psnrs), rel=1e-9)
        assert res["results"]["ssimulacra2"][i] == pytest.approx(np.mean(s2), rel=1e-9)
    assert res["results"]["ms-ssim-rgb"] == [None, None]  # the images are under 161 px


@pytest.mark.parametrize("tune", ["psnr", "visual"])
def test_bench_tune_measures_the_weights_of_that_tuning(tmp_path, tune):
    from bbcodec.model import weights

    img = random_image(24, 40, seed=5)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "a.png")
    _bench(tmp_path / "imgs", tmp_path / "out", "3", "bbcodec", "--tune", tune)
    res = json.loads((tmp_path / "out" / "bbcodec.json").read_text())
    assert res["results"]["bpp"] == [8 * len(bbcodec.encode(img, 3, tune=tune)) / img[..., 0].size]
    assert weights.default(tune).path.name in res["description"]


def test_bench_without_the_linear_filter_measures_files_without_one(tmp_path):
    from bbcodec.synthetic import texture_on_flat

    img = texture_on_flat()[:96, 96:224]  # the frame's corner: a filter pays here
    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "a.png")
    for flag, out in (("--no-linear-filter", "off"), ("--linear-filter", "on")):
        _bench(tmp_path / "imgs", tmp_path / out, "4", "bbcodec", flag)
    off = json.loads((tmp_path / "off" / "bbcodec.json").read_text())
    on = json.loads((tmp_path / "on" / "bbcodec.json").read_text())
    with_, without = (bbcodec.encode(img, 4, linear_filter=lf) for lf in (True, False))
    assert with_[4] == 7 and without[4] < 7  # the option matters for this image
    assert off["results"]["bpp"] == [8 * len(without) / img[..., 0].size] and "no linear filter" in off["description"]
    assert on["results"]["bpp"] == [8 * len(with_) / img[..., 0].size] and "linear" not in on["description"]


def test_jpeg_curve_matches_pillow(report):
    images, out, _ = report
    res = json.loads((out / "jpeg.json").read_text())["results"]
    i = res["quality"].index(50)
    bpps, psnrs = [], []
    for img in images.values():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=50, subsampling=2)
        bpps.append(8 * len(buf.getvalue()) / (img.shape[0] * img.shape[1]))
        psnrs.append(_psnr(img, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))))
    assert res["bpp"][i] == pytest.approx(np.mean(bpps)) and res["psnr-rgb"][i] == pytest.approx(np.mean(psnrs))


def test_report_has_table_csv_plot_and_bd_rates(report):
    _, out, stdout = report
    assert "bbcodec against" in stdout and "jpeg" in stdout and "paper 8x8" in stdout
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 2 * 2 + 2 * 13 and {r["image"] for r in rows} == {"a.png", "b.png"}
    assert {"bytes", "bpp", "psnr", "ms_ssim", "ssimulacra2", "enc_s", "dec_s"} <= set(rows[0])
    assert all(-200 < float(r["ssimulacra2"]) <= 100 for r in rows) and {r["ms_ssim"] for r in rows} == {""}
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "rd-ssimulacra2.png").exists() and not (out / "rd-ms-ssim.png").exists()  # no MS-SSIM here
    env = json.loads((out / "environment.json").read_text())
    assert env["bbcodec"] == bbcodec.__version__ and env["weights"].startswith("bb8-") and env["cpu"] and env["pillow"]
    header = [line for line in stdout.splitlines() if "BD-PSNR" in line and "SSIMU2" in line]
    assert len(header) == 1 and header[0].split() == ["PSNR", "MS-SSIM", "SSIMU2", "BD-PSNR"]


@pytest.mark.parametrize("content", ["empty", "text"])
def test_a_folder_without_images_gets_one_clear_line(tmp_path, content):
    if content == "text":
        (tmp_path / "x.png").write_text("not really a png")
    proc = subprocess.run([sys.executable, "-m", "bbcodec.cli", "bench", str(tmp_path), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert "no readable images" in proc.stderr


def test_stored_curves_are_compared_without_rerunning_their_codecs(report, tmp_path):
    """--anchors: a stored copy of a measured curve gives the same BD-rate as measuring it."""
    _, out, stdout = report
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    for name in ("bbcodec", "jpeg"):
        (anchors / f"{name}.json").write_text((out / f"{name}.json").read_text())
    (anchors / "ssim-only.json").write_text(json.dumps({"name": "x", "results": {"bpp": [0.1, 0.2], "ms-ssim-rgb": [0.9, 0.95]}}))
    proc = subprocess.run(
        [sys.executable, "-m", "bbcodec.cli", "bench", str(out.parent / "imgs"), "--out", str(tmp_path / "r"),
         "--qualities", "2,5", "--codecs", "bbcodec", "--anchors", str(anchors), "--jobs", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr

    def bd_line(text: str, name: str) -> str:
        table = text.split("bbcodec against")[1].splitlines()
        return next(line.strip()[len(name):].strip() for line in table if line.strip().startswith(name + " "))

    assert bd_line(proc.stdout, "jpeg (stored)") == bd_line(stdout, "jpeg")
    assert bd_line(proc.stdout, "bbcodec (stored)").split()[0] in ("+0.0", "-0.0")
    assert "ssim-only.json: no psnr-rgb curve" in proc.stdout
    assert not (tmp_path / "r" / "jpeg.json").exists()  # jpeg was not re-run
    again = subprocess.run(  # an earlier bench's output folder, as it is, serves as anchors
        [sys.executable, "-m", "bbcodec.cli", "bench", str(out.parent / "imgs"), "--out", str(tmp_path / "r2"),
         "--qualities", "2,5", "--codecs", "bbcodec", "--anchors", str(out), "--jobs", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0 and (out / "environment.json").exists(), again.stderr
    assert bd_line(again.stdout, "jpeg (stored)") == bd_line(stdout, "jpeg")


@pytest.mark.parametrize("content", ["{not json", '{"results": {"bpp": [1.0], "psnr-rgb": [30.0]}}', None])
def test_bad_stored_curves_get_one_clear_line(tmp_path, kodak_crop, content):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(kodak_crop).save(folder / "a.png")
    anchors = tmp_path / "anchors"
    if content is not None:
        anchors.mkdir()
        (anchors / "bad.json").write_text(content)
    proc = subprocess.run([sys.executable, "-m", "bbcodec.cli", "bench", str(folder), "--codecs", "bbcodec",
                           "--anchors", str(anchors), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "anchors" in proc.stderr and not (tmp_path / "r").exists()


# -- the metrics ------------------------------------------------------------------------

def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A crop of a Kodak image (a smooth random image without Kodak)."""
    path = KODAK / ("kodim23.png" if seed % 2 else "kodim01.png")
    if path.exists():
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[50:50 + h, 60:60 + w].copy()
    return random_image(h, w, seed=seed)


def test_numpy_ms_ssim_is_pytorch_msssims():
    """bench's MS-SSIM (numpy, no torch) gives pytorch-msssim's value to within 1e-4,
    odd sides (zero-padded pooling) included."""
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("pytorch_msssim").ms_ssim
    rng = np.random.default_rng(3)
    cases = [(_photo(512, 512, 1), 10), (_photo(161, 203, 2), 30), (_photo(177, 250, 1), 80)]
    noisy = np.clip(random_image(190, 171, seed=4).astype(int) + rng.integers(-25, 26, (190, 171, 3)), 0, 255)
    pairs = [(img, _jpeg(img, q)) for img, q in cases] + [(random_image(190, 171, seed=4), noisy.astype(np.uint8))]
    for a, b in pairs:
        ta, tb = (torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None] for x in (a, b))
        want = float(reference(ta, tb, data_range=255.0))
        assert metrics.ms_ssim(a, b) == pytest.approx(want, abs=1e-4)
    assert metrics.ms_ssim(cases[1][0], cases[1][0]) == pytest.approx(1.0)
    assert metrics.ms_ssim(_photo(160, 300, 1), _photo(160, 300, 1)) is None  # too small for 5 scales


def test_ssimulacra2_ranks_what_people_see():
    img = _photo(192, 256, 1)
    assert metrics.ssimulacra2(img, img) == pytest.approx(100.0)
    scores = [metrics.ssimulacra2(img, _jpeg(img, q)) for q in (10, 40, 90)]
    assert scores[0] < scores[1] < scores[2] < 100  # type: ignore[operator]
    assert metrics.ssimulacra2(img[:7], img[:7]) is None


# -- BD-rates on each metric --------------------------------------------------------------

def _curve(bpp, scale=1.0):
    bpp = np.asarray(bpp, float)
    return {"bpp": list(bpp * scale), "psnr-rgb": list(30 + 4 * np.log2(bpp)),
            "ms-ssim-rgb": list(1 - 0.05 / bpp), "ssimulacra2": list(60 + 10 * np.log2(bpp))}


def test_bd_rates_are_given_on_each_metric_and_dashes_where_a_curve_lacks_one():
    ours = _curve([0.25, 0.5, 1.0, 2.0])
    cur = {"bbcodec": {"results": ours}, "other": {"results": _curve([0.25, 0.5, 1.0, 2.0], scale=1.25)}}
    stored = {"psnr only (stored)": {k: v for k, v in _curve([0.3, 0.6, 1.2], 1.1).items() if k in ("bpp", "psnr-rgb")},
              "far (stored)": _curve([100, 200, 400])}
    table = {e["anchor"]: e for e in bench.bd_table(cur, stored)}
    assert set(table) == {"other", "psnr only (stored)", "far (stored)", "paper 8x8 (Kamisli 2022)"}
    for key, _ in bench.METRICS:  # the same quality for 1/1.25 of the bits on every metric
        assert table["other"][key] == pytest.approx(-20.0, abs=1e-6)
    assert table["psnr only (stored)"]["psnr-rgb"] == pytest.approx(100 / 1.1 - 100, abs=1e-6)
    assert table["psnr only (stored)"]["ms-ssim-rgb"] is None and table["psnr only (stored)"]["ssimulacra2"] is None
    assert table["paper 8x8 (Kamisli 2022)"]["ssimulacra2"] is None
    assert all(math.isnan(table["far (stored)"][k]) for k, _ in bench.METRICS)  # no common quality range
    assert [bench.bd_cell(v) for v in (-20.0, None, math.nan)] == ["-20.0 %", "-", "n/a"]


# -- the page -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """bench on two Kodak crops large enough for MS-SSIM, with three codecs."""
    root = tmp_path_factory.mktemp("page")
    folder = root / "imgs"
    folder.mkdir()
    for i, name in enumerate(("p.png", "q.png")):
        Image.fromarray(_photo(176, 208, i + 1)).save(folder / name)
    out = root / "report"
    return out, _bench(folder, out, "1,3", "bbcodec,jpeg,webp")


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])


def test_the_page_shows_plots_tables_and_crops_and_every_file_it_names_is_there(page):
    out, stdout = page
    text = (out / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(text)
    assert "script" not in parser.tags and "://" not in "".join(parser.images + parser.links)  # no network, no script
    assert not [f for f in parser.images + parser.links if not (out / f).is_file()]
    assert {"rd.png", "rd-ms-ssim.png", "rd-ssimulacra2.png"} <= set(parser.images)
    for stem in ("p", "q"):
        for codec in ("original", "bbcodec", "jpeg", "webp"):
            crop = f"side-by-side/{stem}-{codec}-crop.png"
            assert crop in parser.images and f"side-by-side/{stem}-{codec}.png" in parser.links
            with Image.open(out / crop) as im:
                assert im.size == (208, 176)  # the image is smaller than a crop: all of it
    for f in ("bbcodec.json", "jpeg.json", "webp.json", "per_image.csv", "bd_rate.csv", "environment.json"):
        assert f in parser.links
    for words in ("BD-rate on PSNR", "BD-rate on MS-SSIM", "BD-rate on SSIMULACRA2", "every codec in one thread",
                  "libwebp (Pillow)", "pillow-jxl-plugin", "cpu", bbcodec.__version__):
        assert words in text, words
    assert "index.html" in stdout.splitlines()[-1]


def test_the_bd_rate_table_file_has_each_metric(page):
    out, _ = page
    rows = {r["anchor"]: r for r in csv.DictReader(open(out / "bd_rate.csv"))}
    assert set(rows) == {"jpeg", "webp", "paper 8x8 (Kamisli 2022)"}
    cur = {n: json.loads((out / f"{n}.json").read_text()) for n in ("bbcodec", "jpeg", "webp")}
    want = {e["anchor"]: e for e in bench.bd_table(cur)}
    for name in ("jpeg", "webp"):
        for key, _ in bench.METRICS:
            v = want[name][key]
            assert rows[name][f"bd_rate_{key}_percent"] == ("nan" if math.isnan(v) else f"{v:.4f}")
    assert rows["paper 8x8 (Kamisli 2022)"]["bd_rate_ssimulacra2_percent"] == ""


def test_side_by_side_shows_each_codec_at_its_largest_file_not_above_bbcodecs(page):
    out, _ = page
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    for image in ("p.png", "q.png"):
        stem = image[:-4]
        (ours,) = [r for r in rows if r["codec"] == "bbcodec" and r["image"] == image and float(r["quality"]) == 1]
        size = int(ours["bytes"])
        data = (out / f"side-by-side/{stem}-bbcodec-q1.bbc").read_bytes()
        assert len(data) == size
        decoded = np.asarray(Image.open(out / f"side-by-side/{stem}-bbcodec.png"))
        assert np.array_equal(decoded, np.asarray(bbcodec.decode(data)))
        for codec, suffix in (("jpeg", "jpg"), ("webp", "webp")):
            mine = [r for r in rows if r["codec"] == codec and r["image"] == image]
            fits = [r for r in mine if int(r["bytes"]) <= size]
            best = max(fits, key=lambda r: int(r["bytes"])) if fits else min(mine, key=lambda r: int(r["bytes"]))
            path = out / f"side-by-side/{stem}-{codec}-q{float(best['quality']):g}.{suffix}"
            assert path.stat().st_size == int(best["bytes"])
            with Image.open(path) as im:
                want = np.asarray(im.convert("RGB"))
            assert np.array_equal(np.asarray(Image.open(out / f"side-by-side/{stem}-{codec}.png")), want)


def test_the_crop_is_where_the_codecs_differ_most():
    from bbcodec import report

    original = random_image(400, 600, seed=5)
    same = original.copy()
    worse = original.copy()
    worse[300:340, 500:560] = 0  # one codec wrong only here
    top, left, h, w = report.crop_where_they_differ(original, [same, worse])
    assert (h, w) == (256, 256) and top <= 300 and top + h >= 340 and left <= 500 and left + w >= 560
    assert report.crop_where_they_differ(original[:100, :200], [same[:100, :200], worse[:100, :200]]) == (0, 0, 100, 200)


# -- without the bench extra --------------------------------------------------------------

# A Python where the bench extra is not installed (a plain `pip install bbcodec`).
NO_BENCH_EXTRA = """
import sys
BLOCKED = ("scipy", "ssimulacra2", "matplotlib", "pillow_jxl")
class NoBenchExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoBenchExtra())
sys.argv = ["bbcodec", *sys.argv[1:]]
from bbcodec.cli import main
main()
"""


def test_a_plain_install_names_the_extra_in_one_line_before_any_work(tmp_path, kodak_crop):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(kodak_crop).save(folder / "a.png")
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-c", NO_BENCH_EXTRA, "bench", str(folder), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "bbcodec: error: bbcodec bench needs: pip install 'bbcodec[bench]' (missing: scipy, ssimulacra2)"]
    assert not out.exists()
    proc = subprocess.run([sys.executable, "-c", NO_BENCH_EXTRA, "bench", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "bbcodec[bench]" in proc.stdout


# -- in a real browser (slow: may install Chromium) -----------------------------------------

def _chromium() -> str:
    """Chromium's path; installed from the system packages when missing (as root)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=1200)
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("no Chromium, and `apt-get install -y chromium` did not install one")
    return path


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars", *args],
        capture_output=True, text=True, timeout=120)


CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  document.body.setAttribute("data-loaded", document.images.length + " " + JSON.stringify(bad));
});
</script></body>"""


@pytest.mark.slow
def test_the_page_renders_in_a_real_browser(page, tmp_path):
    """Chromium, headless, opens the page: every image and plot loads, and a screenshot of
    it is not blank."""
    out, _ = page
    chromium = _chromium()
    site = tmp_path / "site"
    shutil.copytree(out, site)
    # A copy of the page with a script that reports which images failed to load.
    (site / "check.html").write_text((site / "index.html").read_text().replace("</body>", CHECK_IMAGES))
    proc = _headless(chromium, tmp_path / "profile1", "--virtual-time-budget=10000", "--dump-dom",
                     (site / "check.html").as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.split('data-loaded="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    count, bad = loaded.split(" ", 1)
    assert json.loads(bad) == [] and int(count) == 3 + 2 * 4  # three plots, two images of four crops

    shot = tmp_path / "page.png"
    proc = _headless(chromium, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,3000",
                     "--virtual-time-budget=10000", (site / "index.html").as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    assert px.shape[:2] == (3000, 1200)
    not_white = (px.min(axis=2) < 235).mean()
    colour = (px.max(axis=2) - px.min(axis=2) > 60).mean()  # the plots' lines and the photos
    assert not_white > 0.05 and colour > 0.01, (not_white, colour)
