"""The one encoder and decoder (bbcodec/codec.py) behind the API, the CLI and the Pillow
plugin: the coding loop's bytes through each, options checked in one place, errors that
name their input where they are made, and commands that start without numpy or torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import random_image
from PIL import Image

import bbcodec
from bbcodec import codec, files, ratecontrol
from bbcodec.cli import cli
from bbcodec.coding import loop

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args))


def test_every_entry_gives_the_coding_loops_bytes(tmp_path, kodak_crop, weights):
    direct, rec = loop.encode(kodak_crop, 5, weights.model, weights.prefix, threads=1,
                              aq=codec.aq_strength(weights, None))  # the default tuning's adaptive quantisation
    assert bbcodec.encode(kodak_crop, 5) == direct
    assert codec.encode(kodak_crop, 5).data == direct
    Image.fromarray(kodak_crop).save(tmp_path / "in.png")
    res = invoke("encode", str(tmp_path / "in.png"), str(tmp_path / "cli.bbc"), "-q", "5", "--quiet")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli.bbc").read_bytes() == direct
    Image.fromarray(kodak_crop).save(tmp_path / "pil.bbc", quality=5)
    assert (tmp_path / "pil.bbc").read_bytes() == direct
    # and back, the same pixels through each
    assert np.array_equal(codec.decode(direct).image, rec)
    assert np.array_equal(np.asarray(bbcodec.decode(direct)), rec)
    with Image.open(tmp_path / "pil.bbc") as im:
        assert np.array_equal(np.asarray(im), rec)
    res = invoke("decode", str(tmp_path / "cli.bbc"), str(tmp_path / "out.png"), "--quiet")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "out.png") as im:
        assert np.array_equal(np.asarray(im), rec)


def test_the_default_quality_and_a_target_through_every_entry(tmp_path, weights):
    img = random_image(24, 40, seed=4)
    aq = codec.aq_strength(weights, None)
    assert bbcodec.encode(img) == loop.encode(img, bbcodec.model.quality.DEFAULT, weights.model, weights.prefix, aq=aq,
                                        linear=True)[0]
    r = ratecontrol.encode_to_target(img, weights, target_bpp=1.5, aq=aq, linear=True)
    assert bbcodec.encode(img, target_bpp=1.5) == r.data
    Image.fromarray(img).save(tmp_path / "in.png")
    res = invoke("encode", str(tmp_path / "in.png"), str(tmp_path / "t.bbc"), "--target-bpp", "1.5", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert (tmp_path / "t.bbc").read_bytes() == r.data
    assert (report["quality"], report["target_met"], report["encodes"]) == (r.quality, r.met, r.probes)


BAD_RATES = [
    {"quality": 4, "target_bpp": 0.5}, {"quality": 4, "target_psnr": 30}, {"target_bpp": 0.5, "target_psnr": 30},
    {"quality": True}, {"quality": "4"}, {"quality": float("nan")}, {"quality": 9}, {"quality": 0.5},
    {"target_bpp": 0}, {"target_bpp": -1.0}, {"target_bpp": float("inf")}, {"target_psnr": float("nan")},
    {"target_bpp": "0.5"}, {"target_psnr": True},
]


@pytest.mark.parametrize("options", BAD_RATES, ids=[str(o) for o in BAD_RATES])
def test_bad_rate_options_are_one_line_quality_errors_before_any_reading(options, tmp_path):
    with pytest.raises(bbcodec.QualityError) as e:
        bbcodec.encode(tmp_path / "not-read.png", **options)  # refused before the path is read
    assert isinstance(e.value, bbcodec.Error) and "\n" not in str(e.value)
    with pytest.raises(bbcodec.QualityError):
        codec.check(**options)


def test_numpy_numbers_are_numbers():
    img = random_image(8, 8, seed=1)
    assert bbcodec.encode(img, np.float32(5)) == bbcodec.encode(img, 5) == bbcodec.encode(img, np.int64(5))
    codec.check(target_bpp=np.float64(0.5))


def test_the_cli_and_pillow_refuse_a_quality_with_a_target_through_the_one_check(tmp_path):
    Image.fromarray(random_image(8, 8)).save(tmp_path / "in.png")
    res = invoke("encode", str(tmp_path / "in.png"), str(tmp_path / "a.bbc"), "-q", "4", "--target-bpp", "0.5")
    assert res.exit_code == 2 and "give only one of quality, target_bpp and target_psnr" in res.output
    assert not (tmp_path / "a.bbc").exists()
    for bad in ("4", True):
        with pytest.raises(bbcodec.QualityError):  # a ValueError, as Pillow's callers expect
            Image.fromarray(random_image(8, 8)).save(tmp_path / "p.bbc", quality=bad)


def test_errors_of_the_coding_name_the_image_where_they_are_made(tmp_path, monkeypatch):
    def encode(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        raise bbcodec.ImageError("cannot code this one")

    monkeypatch.setattr(loop, "encode", encode)
    with pytest.raises(bbcodec.ImageError, match="^cannot code this one$"):
        codec.encode(random_image(8, 8))
    with pytest.raises(bbcodec.ImageError, match="^x.png: cannot code this one$"):
        codec.encode(random_image(8, 8), name="x.png")
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(random_image(8, 8)).save(src / "a.png")
    res = invoke("encode", str(src / "a.png"), str(tmp_path / "a.bbc"))
    assert res.exit_code == 1
    assert res.output.strip() == f"bbcodec: error: {src / 'a.png'}: cannot code this one"
    res = invoke("encode", str(src), str(tmp_path / "out"), "--json")  # a folder: the same message
    assert res.exit_code == 1
    assert json.loads(res.stdout)["files"] == [{"input": str(src / "a.png"),
                                                "error": f"{src / 'a.png'}: cannot code this one"}]


def test_a_file_needing_other_weights_is_named(tmp_path):
    import struct
    import zlib

    body = bytearray(bbcodec.encode(random_image(8, 8, seed=3))[:-4])
    body[16:24] = b"\x12\x34\x56\x78\x9a\xbc\xde\xf0"
    bad = tmp_path / "other.bbc"
    bad.write_bytes(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    res = invoke("decode", str(bad), str(tmp_path / "o.png"))
    assert res.exit_code == 1
    assert res.output.startswith(f"bbcodec: error: {bad}: this file needs weights with sha256 123456789abcdef0")


def test_a_bad_weights_file_is_named_not_the_image(tmp_path):
    Image.fromarray(random_image(8, 8)).save(tmp_path / "in.png")
    w = tmp_path / "mine-12345678.npz"
    w.write_bytes(b"not weights")
    res = invoke("encode", str(tmp_path / "in.png"), str(tmp_path / "a.bbc"), "--weights", str(w))
    assert res.exit_code == 1
    assert res.output.strip() == f"bbcodec: error: weights {w} do not match the hash in their name"


def test_the_cli_takes_its_lists_from_their_owners():
    from bbcodec import baselines, bench

    assert bench.BASELINES is baselines.BASELINES and baselines.CODECS == ("bbcodec", *bench.BASELINES)
    res = invoke("bench", ".", "--codecs", "bbcodec,gif")
    assert res.exit_code == 2 and f"choose from {', '.join(baselines.CODECS)}" in res.output
    assert f"default: {','.join(baselines.CODECS)}" in " ".join(invoke("bench", "--help").output.split())
    res = invoke("decode", "a.bbc", "b", "--format", "gif")
    assert res.exit_code == 2 and all(f"'{f}'" in res.output for f in files.FORMATS)


# A Python that cannot import torch, as where the wheel is installed without [train].
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
sys.argv = ["bbcodec", *sys.argv[1:]]
from bbcodec.cli import main
main()
"""


def _bbcodec(*args: str, torch: bool) -> subprocess.CompletedProcess:
    code = NO_TORCH if not torch else "import sys; sys.argv[0] = 'bbcodec'; from bbcodec.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["train", "freeze"])
def test_train_and_freeze_help_work_without_torch(command):
    proc = _bbcodec(command, "--help", torch=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: bbcodec {command}") and "[default: " in proc.stdout
    if command == "train":
        assert "--N N" in proc.stdout and "[default: 192]" in proc.stdout  # ModelConfig's, read without torch
    argv = ["--data", "d", "--out", "o"] if command == "train" else ["c.pt", "--calib", "c", "--name", "n"]
    proc = _bbcodec(command, *argv, torch=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bbcodec: error: {'training' if command == 'train' else 'freezing'} needs torch (No module named 'torch'); "
        "install with: pip install 'bbcodec[train]'"]


@pytest.mark.parametrize("command", ["train", "freeze"])
def test_the_help_without_torch_is_the_help_with_it(command):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("--device defaults to cuda here, cpu without torch")
    assert _bbcodec(command, "--help", torch=False).stdout == _bbcodec(command, "--help", torch=True).stdout


def test_install_hints_name_the_wheel():
    hints = [f"{p.relative_to(ROOT)}: {line.strip()}" for p in sorted((ROOT / "bbcodec").rglob("*.py"))
             for line in p.read_text(encoding="utf-8").splitlines() if "pip install" in line]
    assert hints and not [h for h in hints if "pip install -e" in h or "'.[" in h], hints
