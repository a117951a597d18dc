"""bbcodec bench on two small images, checked against an independent computation."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

import bbcodec


def _psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


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
    proc = subprocess.run(
        [sys.executable, "-m", "bbcodec.cli", "bench", str(folder), "--out", str(out),
         "--qualities", "2,5", "--codecs", "bbcodec,jpeg", "--jobs", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return images, out, proc.stdout


def test_bbcodec_curve_matches_an_independent_encode(report):
    images, out, _ = report
    res = json.loads((out / "bbcodec.json").read_text())
    assert res["name"] == "bbcodec" and set(res["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb"}
    for i, q in enumerate((2.0, 5.0)):
        bpps, psnrs = [], []
        for img in images.values():
            data = bbcodec.encode(img, quality=q)
            bpps.append(8 * len(data) / (img.shape[0] * img.shape[1]))
            psnrs.append(_psnr(img, np.asarray(bbcodec.decode(data))))
        assert res["results"]["quality"][i] == q
        assert res["results"]["bpp"][i] == pytest.approx(np.mean(bpps), rel=1e-12)
        assert res["results"]["psnr-rgb"][i] == pytest.approx(np.mean(psnrs), rel=1e-9)


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
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
