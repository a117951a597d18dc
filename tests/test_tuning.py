"""--tune: weights name their tuning in their meta; the default is the first file, and
--tune picks the first file of a tuning, in the CLI, the API, the Pillow plugin and the
folder runs; every file decodes with the weights its header names, whatever the tuning."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image, run_cli, tiny_frozen
from PIL import Image

import bbcodec
from bbcodec.coding import format
from bbcodec.errors import WeightsError
from bbcodec.model import weights
from bbcodec.model.tuning import TUNES


def _write(folder: Path, name: str, info: dict, seed: int) -> Path:
    """A tiny weights file with this meta provenance, registered (in order) in folder."""
    from bbcodec.train.freeze import register, write_weights

    model = dataclasses.replace(tiny_frozen(seed=seed), name=name, info=info)
    path = write_weights(model, folder)
    register(path)
    return path


@pytest.fixture
def tuned(tmp_path, monkeypatch) -> dict[str, Path]:
    """A weights folder: an untuned file first (the default), then a visual one, then an
    explicit psnr one; $BBCODEC_WEIGHTS names it."""
    pytest.importorskip("torch")  # the freezer's writer
    folder = tmp_path / "w"
    files = {"untuned": _write(folder, "old", {"train_steps": 1}, 0),
             "visual": _write(folder, "eye", {"tune": "visual"}, 1),
             "psnr": _write(folder, "mse", {"tune": "psnr"}, 2)}
    monkeypatch.setenv("BBCODEC_WEIGHTS", str(folder))
    weights.load.cache_clear()
    return files


def _named(data: bytes) -> bytes:
    return format.unpack(data)[0].weights_sha256


def test_a_tuning_picks_the_first_file_of_that_tuning_and_files_without_one_are_psnr(tuned):
    assert weights.default().path == tuned["untuned"]
    assert weights.default("visual").path == tuned["visual"]
    assert weights.default("psnr").path == tuned["untuned"]  # the first psnr-tuned file
    assert weights.default("visual").tune == "visual" and weights.default().tune == "psnr"
    assert weights.tune_of(tuned["psnr"]) == "psnr"


def test_no_weights_of_a_tuning_is_one_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    folder = tmp_path / "w"
    _write(folder, "old", {}, 0)
    monkeypatch.setenv("BBCODEC_WEIGHTS", str(folder))
    monkeypatch.setattr(weights, "candidate_dirs", lambda: [folder])  # not the shipped ones
    with pytest.raises(WeightsError, match="no weights tuned for visual found"):
        weights.default("visual")


def test_the_api_codes_with_the_tuning_asked_for_and_decodes_either(tuned):
    img = random_image(24, 40, seed=3)
    files = {t: bbcodec.encode(img, 4, tune=t, threads=1) for t in TUNES}
    for t, data in files.items():
        assert _named(data) == weights.load(tuned[t if t == "visual" else "untuned"]).prefix
        assert np.asarray(bbcodec.decode(data)).shape == img.shape
    assert files["visual"] != files["psnr"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tune": "eye"}, "tune must be one of visual, psnr"),
    ({"tune": "psnr", "weights": "x.npz"}, "give weights or tune, not both"),
])
def test_bad_tunings_are_refused_before_the_image_is_read(kwargs, message):
    with pytest.raises(WeightsError, match=message):
        bbcodec.encode("no such image.png", 4, **kwargs)


def test_the_cli_takes_tune_and_refuses_it_with_weights(tuned, tmp_path):
    png = tmp_path / "a.png"
    Image.fromarray(random_image(16, 24, seed=1)).save(png)
    for t in TUNES:
        proc = run_cli("encode", str(png), str(tmp_path / f"{t}.bbc"), "--tune", t, "-v")
        assert proc.returncode == 0, proc.stderr
        expected = tuned["visual"] if t == "visual" else tuned["untuned"]
        assert f"weights {expected.name}" in proc.stderr.decode()
        assert run_cli("decode", str(tmp_path / f"{t}.bbc"), str(tmp_path / f"{t}.png")).returncode == 0
    for bad, message in [(["--tune", "eye"], "Error: Invalid value for '--tune': 'eye' is not one of"),
                         (["--tune", "psnr", "--weights", str(tuned["psnr"])], "Error: give weights or tune, not both")]:
        proc = run_cli("encode", str(png), str(tmp_path / "c.bbc"), *bad)
        assert proc.returncode == 2 and proc.stderr.decode().strip().splitlines()[-1].startswith(message)
        assert "Traceback" not in proc.stderr.decode() and not (tmp_path / "c.bbc").exists()


def test_the_pillow_plugin_takes_tune(tuned):
    im = Image.fromarray(random_image(16, 16, seed=2))
    buf = io.BytesIO()
    im.save(buf, format="BBC", quality=4, tune="visual")
    assert _named(buf.getvalue()) == weights.load(tuned["visual"]).prefix
    with pytest.raises(ValueError, match="tune must be"):
        im.save(io.BytesIO(), format="BBC", tune="eye")


def test_freeze_names_the_tuning_the_checkpoint_was_trained_for(tmp_path):
    torch = pytest.importorskip("torch")
    from conftest import tiny_model

    from bbcodec.train import freeze

    model = tiny_model()
    calib = tmp_path / "calib"
    calib.mkdir()
    Image.fromarray(random_image(256, 264, seed=1)).save(calib / "c.png")
    for perceptual, option, expected in [("0.0", [], "psnr"), ("0.75", [], "visual"), ("0.75", ["--tune", "psnr"], "psnr")]:
        ckpt = tmp_path / "ckpt.pt"
        torch.save({"cfg": model.cfg.to_dict(), "model": model.state_dict(), "step": 7,
                    "args": {"perceptual": perceptual}}, ckpt)
        out = tmp_path / f"w{perceptual}{len(option)}"
        freeze.main([str(ckpt), "--calib", str(calib), "--name", "t", "--out", str(out), "--crops", "1", "--no-card",
                     *option])
        (npz,) = out.glob("t-*.npz")
        assert weights.tune_of(npz) == expected
