"""The command line behaves like the tools users know (issue 18): own weights, outputs by
extension, several inputs, messages that name the file, JSON errors, info on damaged
files, progress and terminals, the API's inputs and targets, bench notes, freeze."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

import bbcodec
from bbcodec import files
from bbcodec.model import weights as wmod

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, stdin: bytes | None = None, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bbcodec.cli", *args], input=stdin, capture_output=True,
                          timeout=120, env={**os.environ, **(env or {})}, **kw)


def one_error_line(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray(random_image(20, 27, seed=4)).save(path)
    return path


@pytest.fixture(scope="module")
def bbc(png: Path) -> Path:
    out = png.with_name("in.bbc")
    assert run("encode", str(png), str(out), "--quiet").returncode == 0
    return out


@pytest.fixture(scope="module")
def own_weights(tmp_path_factory) -> Path:
    """Weights that are not shipped: the default ones under another name (so another
    hash), named NAME-<sha256[:8]>.npz, in a folder of their own without SHA256SUMS."""
    default = wmod.default().path
    with np.load(default) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["name"] = "mine"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    path = tmp_path_factory.mktemp("own") / f"mine-{digest[:8]}.npz"
    path.write_bytes(buf.getvalue())
    return path


# -- point 2: own weights ---------------------------------------------------------------

def test_encode_with_own_weights_and_decode_finds_them_by_hash(png, own_weights, tmp_path):
    out = tmp_path / "own.bbc"
    proc = run("encode", str(png), str(out), "--weights", str(own_weights), "-v")
    assert proc.returncode == 0, proc.stderr
    assert f"weights {own_weights.name}" in proc.stderr.decode()
    info = json.loads(run("info", str(out), "--json").stdout)
    assert own_weights.name.split("-")[1][:8] == info["weights_sha256"][:8]
    line = one_error_line(run("decode", str(out), str(tmp_path / "r.png")))
    assert "not installed" in line and "looked in" in line
    proc = run("decode", str(out), str(tmp_path / "r.png"), env={"BBCODEC_WEIGHTS": str(own_weights.parent)})
    assert proc.returncode == 0, proc.stderr
    # the API takes the same file, and gives the same bytes
    assert bbcodec.encode(png, weights=own_weights) == out.read_bytes()
    assert "no such file" in one_error_line(run("encode", str(png), str(tmp_path / "x.bbc"), "--weights",
                                                str(tmp_path / "nope.npz")))


def test_a_weights_folder_named_by_the_environment_provides_the_default(png, own_weights, tmp_path):
    proc = run("encode", str(png), str(tmp_path / "a.bbc"), "-v", env={"BBCODEC_WEIGHTS": str(own_weights.parent)})
    assert proc.returncode == 0 and f"weights {own_weights.name}" in proc.stderr.decode()


def test_freeze_registers_the_file_and_writes_a_model_card_stub(tmp_path, png):
    torch = pytest.importorskip("torch")
    from conftest import tiny_model

    model = tiny_model()
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"cfg": model.cfg.to_dict(), "model": model.state_dict(), "step": 7}, ckpt)
    calib = tmp_path / "calib"
    calib.mkdir()
    Image.fromarray(random_image(256, 264, seed=1)).save(calib / "c.png")
    out = tmp_path / "w"
    (out).mkdir()
    (out / "SHA256SUMS").write_text(f"{'a' * 64}  other.npz\n")
    args = ["freeze", str(ckpt), "--calib", str(calib), "--name", "tiny", "--out", str(out), "--crops", "2"]
    proc = run(*args, "--default")
    assert proc.returncode == 0, proc.stderr
    (npz,) = out.glob("tiny-*.npz")
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    assert (out / "SHA256SUMS").read_text() == f"{digest}  {npz.name}\n{'a' * 64}  other.npz\n"
    card = (out / "MODEL_CARD.md").read_text()
    assert f"`{npz.name}`" in card and digest in card and "training steps: 7" in card
    assert run(*args).returncode == 0  # again, as not the default: the line moves, nothing doubles
    assert (out / "SHA256SUMS").read_text() == f"{'a' * 64}  other.npz\n{digest}  {npz.name}\n"
    assert (out / "MODEL_CARD.md").read_text() == card
    (out / "SHA256SUMS").write_text(f"{digest}  {npz.name}\n")
    proc = run("encode", str(png), str(tmp_path / "t.bbc"), "-v", env={"BBCODEC_WEIGHTS": str(out)})
    assert proc.returncode == 0 and f"weights {npz.name}" in proc.stderr.decode()
    assert run("decode", str(tmp_path / "t.bbc"), str(tmp_path / "t.png"),
               env={"BBCODEC_WEIGHTS": str(out)}).returncode == 0


# -- point 3: outputs by extension ----------------------------------------------------

@pytest.mark.parametrize(("name", "fmt"), [("r.png", "PNG"), ("r.tiff", "TIFF"), ("r.tif", "TIFF"),
                                           ("r.bmp", "BMP"), ("r.ppm", "PPM"), ("r.pgm", "PPM")])
def test_decode_writes_the_lossless_format_its_extension_names(bbc, tmp_path, name, fmt):
    ref = np.asarray(bbcodec.decode(bbc.read_bytes()))
    proc = run("decode", str(bbc), str(tmp_path / name))
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / name) as im:
        assert im.format == fmt and np.array_equal(np.asarray(im.convert("RGB")), ref)


def test_decode_refuses_lossy_extensions_unless_asked(bbc, tmp_path):
    for name in ("r.jpg", "r.webp", "r.avif"):
        line = one_error_line(run("decode", str(bbc), str(tmp_path / name)))
        assert name in line and "lossy" in line and "--format" in line
        assert not (tmp_path / name).exists()
    proc = run("decode", str(bbc), str(tmp_path / "r.jpg"), "--format", "jpeg")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "r.jpg") as im:
        assert im.format == "JPEG"
    out = run("decode", str(bbc), "-").stdout
    assert out[:8] == b"\x89PNG\r\n\x1a\n"


def test_encode_refuses_a_foreign_output_extension_and_a_bbc_input(png, bbc, tmp_path):
    line = one_error_line(run("encode", str(png), str(tmp_path / "o.webp")))
    assert "o.webp" in line and ".bbc" in line and "--force" in line and not (tmp_path / "o.webp").exists()
    assert run("encode", str(png), str(tmp_path / "o.webp"), "--force", "--quiet").returncode == 0
    assert (tmp_path / "o.webp").read_bytes()[:4] == b"\x8bBBC"
    line = one_error_line(run("encode", str(bbc), str(tmp_path / "x.bbc")))
    assert str(bbc) in line and "already a .bbc" in line
    assert "already a .bbc" in one_error_line(run("encode", "-", str(tmp_path / "y.bbc"), stdin=bbc.read_bytes()))
    assert run("encode", str(png), os.devnull, "--quiet").returncode == 0  # devices are fine


# -- point 4: several inputs, output folders, skipped names, --recursive ---------------

def test_several_inputs_into_an_output_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(random_image(9 + i, 13, seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "packed"
    proc = run("encode", *[str(src / f"p{i}.png") for i in range(3)], str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.bbc", "p1.bbc", "p2.bbc"]
    assert "encoded 3 of 3 files" in proc.stderr.decode()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert run("encode", str(src / "p0.png"), str(existing), "--quiet").returncode == 0
    assert [p.name for p in existing.iterdir()] == ["p0.bbc"]
    back = tmp_path / "back"
    proc = run("decode", *[str(out / f"p{i}.bbc") for i in range(3)], str(back) + "/", "--format", "tiff")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in back.iterdir()) == ["p0.tiff", "p1.tiff", "p2.tiff"]
    two = run("info", str(out / "p0.bbc"), str(out / "p1.bbc"))
    assert two.returncode == 0 and two.stdout.decode().count("format version:") == 2
    assert [r["height"] for r in json.loads(run("info", str(out / "p0.bbc"), str(out / "p2.bbc"), "--json").stdout)] \
        == [9, 11]
    assert run("encode", str(src / "p0.png"), str(src / "p1.png"), "-").returncode == 2
    assert run("encode", str(src / "p0.png")).returncode == 2
    typo = run("encode", str(src / "p0.png"), str(src / "p1.png"), str(tmp_path / "x.bbc"))  # not a folder
    assert typo.returncode == 2 and b"looks like a file name" in typo.stderr and not (tmp_path / "x.bbc").exists()


def test_folders_skip_non_images_by_name_and_recurse_when_asked(tmp_path):
    src = tmp_path / "photos"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(random_image(8, 8, seed=1)).save(src / "a.png")
    Image.fromarray(random_image(8, 9, seed=2)).save(src / "sub" / "b.png")
    Image.fromarray(random_image(8, 10, seed=3)).save(src / "sub" / "deeper" / "c.jpg")
    (src / "notes.txt").write_text("not an image")
    proc = run("encode", str(src), str(tmp_path / "flat"))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "encoded 1 of 1 files" in err and "1 other files left out (not images: notes.txt)" in err
    assert "1 subfolders left out (--recursive includes them)" in err
    proc = run("encode", str(src), str(tmp_path / "deep"), "--recursive", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["done"] == 3 and report["summary"]["skipped"] == 1
    assert report["skipped"] == [str(src / "notes.txt")]
    got = sorted(str(p.relative_to(tmp_path / "deep")) for p in (tmp_path / "deep").rglob("*.bbc"))
    assert got == ["a.bbc", "sub/b.bbc", "sub/deeper/c.bbc"]
    proc = run("decode", str(tmp_path / "deep"), str(tmp_path / "back"), "-r", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back" / "sub" / "deeper" / "c.png").exists()


# -- point 5: messages --------------------------------------------------------------------

def test_decode_verbose_and_no_quality(bbc, tmp_path):
    proc = run("decode", str(bbc), str(tmp_path / "r.png"), "-v")
    assert proc.returncode == 0
    default = (ROOT / "weights" / "SHA256SUMS").read_text().split()[1]
    assert "quality 4" in proc.stderr.decode() and f"weights {default}" in proc.stderr.decode()
    proc = run("decode", str(bbc), str(tmp_path / "r.png"), "-q", "4")
    assert proc.returncode == 2 and b"decode takes no quality" in proc.stderr


def test_errors_name_the_file_and_stdin(png, tmp_path):
    line = one_error_line(run("decode", str(png), str(tmp_path / "r.png")))
    assert line.startswith(f"bbcodec: error: {png}: not a .bbc file")
    line = one_error_line(run("encode", "-", str(tmp_path / "a.bbc"), stdin=b"hello"))
    assert line == "bbcodec: error: stdin is not an image Pillow can read", line  # as images.py says it
    line = one_error_line(run("decode", "-", str(tmp_path / "a.png"), stdin=b"hello"))
    assert line.startswith("bbcodec: error: stdin: not a .bbc file"), line


def test_json_failures_print_a_json_error_object(png, tmp_path):
    proc = run("decode", str(png), str(tmp_path / "r.png"), "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"input": str(png), "error": f"{png}: not a .bbc file (bad magic bytes)"}
    proc = run("encode", str(tmp_path / "nope.png"), str(tmp_path / "a.bbc"), "--json")
    assert proc.returncode == 1 and "no such file" in json.loads(proc.stdout)["error"]
    proc = run("info", str(png), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["input"] == str(png)
    (tmp_path / "empty").mkdir()
    proc = run("encode", str(tmp_path / "empty"), str(tmp_path / "out"), "--json")
    assert proc.returncode == 1 and "no images in" in json.loads(proc.stdout)["error"]


def test_info_shows_the_header_of_a_file_with_a_bad_crc(bbc, tmp_path):
    data = bytearray(bbc.read_bytes())
    data[-6] ^= 0xFF  # a payload byte: the header is intact
    bad = tmp_path / "bad.bbc"
    bad.write_bytes(bytes(data))
    proc = run("info", str(bad))
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert "size:           27x20" in out and "quality:        4" in out and "crc32:          BAD" in out
    assert f"{bad}: corrupt .bbc file (CRC-32 mismatch)" in proc.stderr.decode()
    report = json.loads(run("info", str(bad), "--json").stdout)
    assert report["crc32"] == "bad" and report["width"] == 27


def test_info_shows_one_model_name_from_the_model_card(bbc):
    default = (ROOT / "weights" / "SHA256SUMS").read_text().split()[1]
    name = default.rsplit("-", 1)[0]
    out = run("info", str(bbc)).stdout.decode()
    (model,) = [line for line in out.splitlines() if line.startswith("model:")]
    assert model.split(None, 1)[1] == name
    assert f"## {name}" in (ROOT / "weights" / "MODEL_CARD.md").read_text() or name in \
        (ROOT / "weights" / "MODEL_CARD.md").read_text()


# -- point 6: progress and terminals --------------------------------------------------

def test_large_images_report_progress_over_every_block(png, tmp_path):
    seen: list[int] = []

    class Bar:
        def __init__(self, total: int) -> None:
            seen.append(total)

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *a) -> None:  # noqa: ANN002
            pass

        def update(self, n: int) -> None:
            seen.append(n)

    files.encode_file(str(png), str(tmp_path / "a.bbc"), files.EncodeOptions(), progress_for=Bar)
    total, *steps = seen
    assert total == 24 * 32 and sum(steps) == total  # 3x4 blocks of 8x8
    seen.clear()
    files.decode_file(str(tmp_path / "a.bbc"), str(tmp_path / "a.png"), progress_for=Bar)
    assert sum(seen[1:]) == seen[0] == total
    from bbcodec import cli

    assert cli._progress(10**8, quiet=False, as_json=False) is None  # stderr is not a terminal here


def test_binary_is_not_written_to_a_terminal(png, bbc):
    import pty

    leader, follower = pty.openpty()
    try:
        for args in (("encode", str(png), "-"), ("decode", str(bbc), "-")):
            proc = subprocess.run([sys.executable, "-m", "bbcodec.cli", *args], stdout=follower,
                                  stderr=subprocess.PIPE, timeout=120)
            assert proc.returncode == 2 and b"terminal" in proc.stderr, proc.stderr
    finally:
        os.close(leader)
        os.close(follower)


# -- point 7: the API -----------------------------------------------------------------

def test_api_takes_a_path_a_pillow_image_or_an_array_and_rate_targets(png):
    arr = np.asarray(Image.open(png))
    data = bbcodec.encode(arr)
    assert bbcodec.encode(png) == bbcodec.encode(str(png)) == bbcodec.encode(Image.open(png)) == data
    pixels = arr.shape[0] * arr.shape[1]
    target = 8 * len(bbcodec.encode(png, 6)) / pixels
    small = bbcodec.encode(png, target_bpp=target)
    assert 8 * len(small) / pixels <= target and bbcodec.read_info(small).quality >= 5.9
    def psnr(data: bytes) -> float:
        rec = np.asarray(bbcodec.decode(data)).astype(float)
        return float(10 * np.log10(255**2 / np.mean((rec - arr) ** 2)))

    goal = psnr(bbcodec.encode(png, 5)) - 0.01
    assert psnr(bbcodec.encode(png, target_psnr=goal)) >= goal
    with pytest.raises(bbcodec.Error, match="no such file"):
        bbcodec.encode("nope.png")
    with pytest.raises(bbcodec.ImageError):
        bbcodec.encode(object())  # type: ignore[arg-type]
    with pytest.raises(bbcodec.Error):
        bbcodec.encode(png, target_bpp=1, target_psnr=30)
    for name in ("Error", "FormatError", "DecodeError", "ImageError", "WeightsError", "FileError", "QualityError"):
        assert issubclass(getattr(bbcodec, name), bbcodec.Error)


# -- point 8: bench notes -------------------------------------------------------------

def test_bench_without_matplotlib_says_no_plot_and_notes_msssim_and_the_paper_set(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bbcodec import bench, cli, report

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(random_image(24, 32, seed=2)).save(folder / "a.png")
    monkeypatch.setattr(report, "plots", lambda *a, **k: [])
    result = CliRunner().invoke(cli.cli, ["bench", str(folder), "--out", str(tmp_path / "r"), "--qualities", "2,6",
                                          "--codecs", "bbcodec,jpeg", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    (wrote,) = [line for line in out.splitlines() if line.startswith("wrote")]
    assert "rd.png" not in wrote and not (tmp_path / "r" / "rd.png").exists()
    assert "plots skipped (rd.png, rd-ms-ssim.png, rd-ssimulacra2.png not written)" in out
    page = (tmp_path / "r" / "index.html").read_text()  # the page without plots: its tables
    assert "BD-rate on PSNR" in page and "<img src='rd.png'" not in page
    assert "note: MS-SSIM '-':" in out
    assert "the paper's curve is on all 24 Kodak images; this run used 1 images" in out
    assert bench.is_full_kodak([Path(f"kodim{i:02d}.png") for i in range(1, 25)])


# -- point 9: training commands -------------------------------------------------------

def test_freeze_and_train_help_show_every_default_and_the_right_name():
    pytest.importorskip("torch")
    text = run("freeze", "--help").stdout.decode()
    assert text.startswith("usage: bbcodec freeze")
    assert "[default: weights]" in text and "[default: 16]" in text and "SHA256SUMS" in text
    text = subprocess.run([sys.executable, "-m", "bbcodec.train.freeze", "--help"], capture_output=True,
                          text=True, timeout=120).stdout
    assert text.startswith("usage: python -m bbcodec.train.freeze")
    text = run("train", "--help").stdout.decode()
    assert text.startswith("usage: bbcodec train") and "[default: 20000]" in text
    assert b"freeze" in run("--help").stdout
