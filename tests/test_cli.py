"""The command line as a user runs it: real processes, exit codes, one-line errors, files
and folders, outputs by extension, own weights, JSON, info on damaged files, progress
and terminals, bench notes, freeze and train."""

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
from conftest import one_error_line, random_image, run_cli, tiff_file
from PIL import Image

import bbcodec
from bbcodec import files
from bbcodec.model import weights as wmod

ROOT = Path(__file__).resolve().parents[1]
def test_encode_decode_round_trip_matches_the_digest(png, bbc, tmp_path):
    out = tmp_path / "rec.png"
    proc = run_cli("decode", str(bbc), str(out))
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        rec = np.asarray(im)
    assert rec.shape == (21, 30, 3)
    import hashlib

    info = json.loads(run_cli("info", str(bbc), "--json").stdout)
    assert hashlib.sha256(rec.tobytes()).hexdigest()[:16] == info["image_digest"]


def test_stdin_and_stdout_work_like_files(png, bbc):
    enc = run_cli("encode", "-", "-", "-q", "3", "--quiet", stdin=png.read_bytes())
    assert enc.returncode == 0 and enc.stdout == bbc.read_bytes()
    dec = run_cli("decode", "-", "-", "--quiet", stdin=enc.stdout)
    assert dec.returncode == 0 and dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_prints_the_header_fields(bbc):
    proc = run_cli("info", str(bbc))
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for field in ("format version:", "size:           30x21", "quality:        3", "bits per pixel:", "weights sha256:", "image digest:"):
        assert field in text
    data = json.loads(run_cli("info", str(bbc), "--json").stdout)
    assert list(data) == ["version", "width", "height", "channels", "quality", "model_id", "weights_sha256",
                          "image_digest", "payload_bytes", "file_bytes", "bpp", "streams", "chunks", "flat_blocks", "lossless", "reduced",
                          "quality_range", "linear_filter", "linear_filter_bytes", "weights", "model", "family", "crc32"]
    version = bbc.read_bytes()[4]
    assert data["version"] == version and data["streams"] == 1 and f"format version: {version}, 1 stream\n" in text
    assert data["crc32"] == "ok" and data["weights"].endswith(".npz") and data["model"].startswith("bb8")
    assert data["width"] == 30 and data["height"] == 21 and data["quality"] == 3.0
    assert data["file_bytes"] == bbc.stat().st_size
    assert abs(data["bpp"] - 8 * bbc.stat().st_size / (30 * 21)) < 1e-9


def test_verbose_encode_reports_bpp_and_psnr(png, tmp_path):
    proc = run_cli("encode", str(png), str(tmp_path / "x.bbc"), "-v")
    assert proc.returncode == 0
    assert "bpp" in proc.stderr.decode() and "PSNR" in proc.stderr.decode()


@pytest.mark.parametrize("cut", [0, 3, 20, 43, -1, -5])
def test_truncated_files_fail_with_one_line_and_no_output(bbc, tmp_path, cut):
    bad = tmp_path / "bad.bbc"
    data = bbc.read_bytes()
    bad.write_bytes(data[:cut] if cut >= 0 else data[: len(data) + cut])
    out = tmp_path / "out.png"
    one_error_line(run_cli("decode", str(bad), str(out)))
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_a_bit_flip_fails_and_leaves_an_existing_output_untouched(bbc, tmp_path):
    data = bytearray(bbc.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.bbc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    assert "CRC" in one_error_line(run_cli("decode", str(bad), str(out)))
    assert out.read_bytes() == b"precious"


def test_bad_inputs_get_one_clear_line(tmp_path, png):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "empty" in one_error_line(run_cli("encode", str(empty), str(tmp_path / "a.bbc")))
    assert "not an image" in one_error_line(run_cli("encode", str(text), str(tmp_path / "a.bbc")))
    assert "no such file" in one_error_line(run_cli("encode", str(tmp_path / "nope.png"), str(tmp_path / "a.bbc")))
    assert "not a .bbc" in one_error_line(run_cli("decode", str(png), str(tmp_path / "b.png")))
    assert "over the input" in one_error_line(run_cli("encode", str(png), str(png), "--force"))
    assert not (tmp_path / "a.bbc").exists()


def test_transparent_images_keep_their_alpha_exactly_or_are_flattened_when_asked(tmp_path):
    rng = np.random.default_rng(5)
    rgba = np.concatenate([random_image(13, 17, seed=5), rng.integers(0, 256, (13, 17, 1), dtype=np.uint8)], axis=2)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    proc = run_cli("encode", str(path), str(tmp_path / "a.bbc"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["carries"] == ["alpha"] and report["alpha_bytes"] > 0
    assert run_cli("decode", str(tmp_path / "a.bbc"), str(tmp_path / "a.png")).returncode == 0
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])  # bit-exact alpha
    assert "PPM cannot hold" in one_error_line(run_cli("decode", str(tmp_path / "a.bbc"), str(tmp_path / "a.ppm")))
    assert not (tmp_path / "a.ppm").exists()
    assert run_cli("encode", str(path), str(tmp_path / "f.bbc"), "--flatten", "white").returncode == 0
    assert run_cli("decode", str(tmp_path / "f.bbc"), str(tmp_path / "f.png")).returncode == 0
    with Image.open(tmp_path / "f.png") as im:
        assert im.mode == "RGB"
    bad = run_cli("encode", str(path), str(tmp_path / "g.bbc"), "--flatten", "nocolour")
    assert bad.returncode == 2 and "unknown colour 'nocolour'" in bad.stderr.decode()


def test_unknown_weights_are_named(bbc, tmp_path):
    data = bytearray(bbc.read_bytes()[:-4])
    data[16:24] = b"\x12\x34\x56\x78\x9a\xbc\xde\xf0"
    import struct
    import zlib

    bad = tmp_path / "other.bbc"
    bad.write_bytes(bytes(data) + struct.pack("<I", zlib.crc32(bytes(data))))
    assert "123456789abcdef0" in one_error_line(run_cli("decode", str(bad), str(tmp_path / "o.png")))


def test_help_and_version():
    proc = run_cli("--help")
    assert proc.returncode == 0 and b"bbcodec encode photo.png" in proc.stdout
    assert b"Exit codes" in run_cli("encode", "--help").stdout
    assert run_cli("--version").stdout.decode().startswith("bbcodec, version")
    assert run_cli("encode", "a", "b", "-q", "9").returncode == 2


def test_a_folder_encodes_every_image_and_reports_the_bad_one(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(random_image(12 + i, 20, seed=i)).save(src / f"p{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    proc = run_cli("encode", str(src), str(out), "-q", "5", "--jobs", "2")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "skipped" in err and "broken.png" in err and "encoded 3 of 4 files" in err
    assert sorted(p.name for p in out.iterdir()) == ["p0.bbc", "p1.bbc", "p2.bbc"]
    back = tmp_path / "back"
    proc = run_cli("decode", str(out), str(back), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert list(report) == ["summary", "files", "skipped", "subfolders_left_out"]
    assert list(report["summary"]) == SUMMARY_KEYS
    assert report["summary"]["done"] == 3 and report["summary"]["failed"] == 0
    assert [list(f) for f in report["files"]] == [DECODE_KEYS] * 3
    with Image.open(back / "p2.png") as im:
        assert im.size == (20, 14)
    proc = run_cli("encode", str(src), str(tmp_path / "again"), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert list(report["summary"]) == SUMMARY_KEYS
    assert report["summary"]["files"] == 4 and report["summary"]["failed"] == 1
    assert report["files"][0] == {"input": str(src / "broken.png"), "error": report["files"][0]["error"]}
    assert [list(f) for f in report["files"][1:]] == [ENCODE_KEYS + ["psnr"]] * 3
    s = report["summary"]
    assert s["bytes_after"] == sum(f["bytes"] for f in report["files"][1:])
    assert s["mean_bpp"] == pytest.approx(sum(f["bpp"] for f in report["files"][1:]) / 3)


SUMMARY_KEYS = ["files", "done", "failed", "bytes_before", "bytes_after", "mean_bpp", "bpp_overall", "skipped"]
RESULT_KEYS = ["input", "output", "width", "height", "channels", "quality", "input_bytes", "bytes", "bpp", "seconds",
               "weights"]
DECODE_KEYS = [*RESULT_KEYS, "lossless"]
ENCODE_KEYS = [*RESULT_KEYS, "effort", "lossless"]


def test_encode_json_summary_and_rate_targets(png, tmp_path):
    import numpy as np

    proc = run_cli("encode", str(png), str(tmp_path / "a.bbc"), "--json")
    summary = json.loads(proc.stdout)
    assert list(summary) == [*ENCODE_KEYS, "psnr"]
    assert summary["bytes"] == (tmp_path / "a.bbc").stat().st_size and "psnr" in summary
    low = json.loads(run_cli("encode", str(png), str(tmp_path / "b.bbc"), "--json", "-q", "1").stdout)
    high = json.loads(run_cli("encode", str(png), str(tmp_path / "c.bbc"), "--json", "-q", "8").stdout)
    target = float(np.sqrt(low["bpp"] * high["bpp"]))
    hit = json.loads(run_cli("encode", str(png), str(tmp_path / "d.bbc"), "--json", "--target-bpp", str(target)).stdout)
    assert list(hit) == [*ENCODE_KEYS, "target_met", "encodes", "psnr"]
    assert hit["target_met"] and hit["bpp"] <= target and low["quality"] < hit["quality"] < high["quality"]
    goal = (low["psnr"] + high["psnr"]) / 2
    hit = json.loads(run_cli("encode", str(png), str(tmp_path / "e.bbc"), "--json", "--target-psnr", str(goal)).stdout)
    assert hit["target_met"] and hit["psnr"] >= goal
    assert run_cli("encode", str(png), str(tmp_path / "f.bbc"), "-q", "3", "--target-bpp", "1").returncode == 2


def test_an_unknown_model_id_is_refused_by_name(bbc, tmp_path):
    import struct
    import zlib

    data = bytearray(bbc.read_bytes()[:-4])
    struct.pack_into("<H", data, 36, 7)
    bad = tmp_path / "model7.bbc"
    bad.write_bytes(bytes(data) + struct.pack("<I", zlib.crc32(bytes(data))))
    assert "unknown model id 7" in one_error_line(run_cli("decode", str(bad), str(tmp_path / "o.png")))


# Defect 4: folder runs never map two inputs to one output, nor overwrite an original -----

def test_a_folder_with_clashing_names_gives_one_output_per_input(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(["a.png", "a.gif", "a.png.gif", "b.png"]):
        Image.fromarray(random_image(8 + i, 12, seed=i)).save(src / name)
    out = tmp_path / "out"
    proc = run_cli("encode", str(src), str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["done"] == 4
    outputs = [f["output"] for f in report["files"]]
    assert len(set(outputs)) == 4
    assert sorted(p.name for p in out.iterdir()) == ["a.gif.bbc", "a.png.bbc", "a.png.gif.bbc", "b.bbc"]
    heights = {Path(f["output"]).name: f["height"] for f in report["files"]}
    assert heights == {"a.png.bbc": 8, "a.gif.bbc": 9, "a.png.gif.bbc": 10, "b.bbc": 11}


def test_folder_output_names_are_planned_without_clashes():
    from bbcodec import files

    cases = [["a.png", "a.gif", "a.png.gif"], ["a.png", "A.jpg"], ["x.tar.gz", "x.tar", "x.tar.png", "x.png"],
             ["a", "a.bbc", "a.png"], ["c.png", "c.png.png", "c.png.png.png"]]
    for names in cases:
        pairs = files.plan_names([Path(n) for n in names], Path("out"), ".bbc")
        outs = [d.casefold() for _, d in pairs]
        assert len(pairs) == len(names) and len(set(outs)) == len(outs), pairs


def test_decoding_a_folder_into_itself_never_overwrites_the_originals(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(random_image(10, 14, seed=len(name))).save(folder / f"{name}.png")
    assert run_cli("encode", str(folder), str(folder), "--quiet").returncode == 0
    originals = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    (folder / "b.png").unlink()  # b's original is gone: its decode may be written
    del originals["b.png"]
    proc = run_cli("decode", str(folder), str(folder))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "a.png, a file of the input folder" in err and "decoded 1 of 2 files" in err
    assert {p.name: p.read_bytes() for p in folder.glob("a.png")} == originals
    assert (folder / "b.png").exists()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = run_cli("encode", str(folder), str(folder))  # .bbc files are left out by name (not re-encoded)
    assert again.returncode == 1  # a.bbc and b.bbc exist in the input folder: never overwritten
    err = again.stderr.decode()
    assert "a.bbc, a file of the input folder" in err and "2 other files left out (not images: a.bbc, b.bbc)" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing that was there is touched


# Defect 9: smaller ones ------------------------------------------------------------------

@pytest.mark.parametrize("option", [("-q", "nan"), ("--target-bpp", "nan"), ("--target-psnr", "inf"),
                                    ("--target-psnr", "nan")])
def test_non_finite_numbers_are_usage_errors(png, tmp_path, option):
    proc = run_cli("encode", str(png), str(tmp_path / "x.bbc"), *option)
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr and b"not a finite number" in proc.stderr
    assert not (tmp_path / "x.bbc").exists()


def test_quiet_means_quiet_even_when_pillow_complains(tmp_path):
    """An EXIF field claiming more bytes than the file has makes Pillow warn; --quiet
    printed the warning; a TIFF that libtiff complains about printed libtiff's lines."""
    import struct

    ifd = (b"II*\0" + struct.pack("<IH", 8, 2) + struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", 6, 0)
           + struct.pack("<HHII", 0x010E, 2, 1000, 4000) + struct.pack("<I", 0))
    path = tmp_path / "warns.jpg"
    Image.fromarray(random_image(12, 16, seed=2)).save(path, format="JPEG", exif=b"Exif\0\0" + ifd)
    proc = run_cli("encode", str(path), str(tmp_path / "w.bbc"), "--quiet")
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    tif = tmp_path / "odd.tif"
    Image.fromarray(random_image(12, 16, seed=2)).save(tif, format="TIFF", compression="tiff_adobe_deflate")
    data = bytearray(tif.read_bytes())
    data[20:24] = b"\xff\xff\xff\x0f"  # damage the compressed strip
    tif.write_bytes(bytes(data))
    proc = run_cli("encode", str(tif), str(tmp_path / "t.bbc"), "--quiet")
    assert proc.returncode in (0, 1)
    assert len(proc.stderr.decode().splitlines()) == (0 if proc.returncode == 0 else 1), proc.stderr
    # 66 samples per pixel: Pillow logs an error ("More samples per pixel than can be
    # decoded"), which Python printed on stderr beside bbcodec's own line
    tiff_file(tif, samples=66)
    proc = run_cli("encode", str(tif), str(tmp_path / "s.bbc"), "--quiet")
    assert proc.returncode == 1 and len(proc.stderr.decode().strip().splitlines()) == 1, proc.stderr


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
    proc = run_cli("encode", str(png), str(out), "--weights", str(own_weights), "-v")
    assert proc.returncode == 0, proc.stderr
    assert f"weights {own_weights.name}" in proc.stderr.decode()
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert own_weights.name.split("-")[1][:8] == info["weights_sha256"][:8]
    line = one_error_line(run_cli("decode", str(out), str(tmp_path / "r.png")))
    assert "not installed" in line and "looked in" in line
    proc = run_cli("decode", str(out), str(tmp_path / "r.png"), env={"BBCODEC_WEIGHTS": str(own_weights.parent)})
    assert proc.returncode == 0, proc.stderr
    # the API takes the same file, and gives the same bytes
    assert bbcodec.encode(png, weights=own_weights) == out.read_bytes()
    assert "no such file" in one_error_line(run_cli("encode", str(png), str(tmp_path / "x.bbc"), "--weights",
                                                str(tmp_path / "nope.npz")))


def test_a_weights_folder_named_by_the_environment_provides_the_default(png, own_weights, tmp_path):
    proc = run_cli("encode", str(png), str(tmp_path / "a.bbc"), "-v", env={"BBCODEC_WEIGHTS": str(own_weights.parent)})
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
    proc = run_cli(*args, "--default")
    assert proc.returncode == 0, proc.stderr
    (npz,) = out.glob("tiny-*.npz")
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    assert (out / "SHA256SUMS").read_text() == f"{digest}  {npz.name}\n{'a' * 64}  other.npz\n"
    card = (out / "MODEL_CARD.md").read_text()
    assert f"`{npz.name}`" in card and digest in card and "training steps: 7" in card
    assert run_cli(*args).returncode == 0  # again, as not the default: the line moves, nothing doubles
    assert (out / "SHA256SUMS").read_text() == f"{'a' * 64}  other.npz\n{digest}  {npz.name}\n"
    assert (out / "MODEL_CARD.md").read_text() == card
    (out / "SHA256SUMS").write_text(f"{digest}  {npz.name}\n")
    proc = run_cli("encode", str(png), str(tmp_path / "t.bbc"), "-v", env={"BBCODEC_WEIGHTS": str(out)})
    assert proc.returncode == 0 and f"weights {npz.name}" in proc.stderr.decode()
    assert run_cli("decode", str(tmp_path / "t.bbc"), str(tmp_path / "t.png"),
               env={"BBCODEC_WEIGHTS": str(out)}).returncode == 0


# -- point 3: outputs by extension ----------------------------------------------------

@pytest.mark.parametrize(("name", "fmt"), [("r.png", "PNG"), ("r.tiff", "TIFF"), ("r.tif", "TIFF"),
                                           ("r.bmp", "BMP"), ("r.ppm", "PPM"), ("r.pgm", "PPM")])
def test_decode_writes_the_lossless_format_its_extension_names(bbc, tmp_path, name, fmt):
    ref = np.asarray(bbcodec.decode(bbc.read_bytes()))
    proc = run_cli("decode", str(bbc), str(tmp_path / name))
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / name) as im:
        assert im.format == fmt and np.array_equal(np.asarray(im.convert("RGB")), ref)


def test_decode_refuses_lossy_extensions_unless_asked(bbc, tmp_path):
    for name in ("r.jpg", "r.webp", "r.avif"):
        line = one_error_line(run_cli("decode", str(bbc), str(tmp_path / name)))
        assert name in line and "lossy" in line and "--format" in line
        assert not (tmp_path / name).exists()
    proc = run_cli("decode", str(bbc), str(tmp_path / "r.jpg"), "--format", "jpeg")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "r.jpg") as im:
        assert im.format == "JPEG"
    out = run_cli("decode", str(bbc), "-").stdout
    assert out[:8] == b"\x89PNG\r\n\x1a\n"


def test_encode_refuses_a_foreign_output_extension_and_a_bbc_input(png, bbc, tmp_path):
    line = one_error_line(run_cli("encode", str(png), str(tmp_path / "o.webp")))
    assert "o.webp" in line and ".bbc" in line and "--force" in line and not (tmp_path / "o.webp").exists()
    assert run_cli("encode", str(png), str(tmp_path / "o.webp"), "--force", "--quiet").returncode == 0
    assert (tmp_path / "o.webp").read_bytes()[:4] == b"\x8bBBC"
    line = one_error_line(run_cli("encode", str(bbc), str(tmp_path / "x.bbc")))
    assert str(bbc) in line and "already a .bbc" in line
    assert "already a .bbc" in one_error_line(run_cli("encode", "-", str(tmp_path / "y.bbc"), stdin=bbc.read_bytes()))
    assert run_cli("encode", str(png), os.devnull, "--quiet").returncode == 0  # devices are fine


# -- point 4: several inputs, output folders, skipped names, --recursive ---------------

def test_several_inputs_into_an_output_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(random_image(9 + i, 13, seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "packed"
    proc = run_cli("encode", *[str(src / f"p{i}.png") for i in range(3)], str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.bbc", "p1.bbc", "p2.bbc"]
    assert "encoded 3 of 3 files" in proc.stderr.decode()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert run_cli("encode", str(src / "p0.png"), str(existing), "--quiet").returncode == 0
    assert [p.name for p in existing.iterdir()] == ["p0.bbc"]
    back = tmp_path / "back"
    proc = run_cli("decode", *[str(out / f"p{i}.bbc") for i in range(3)], str(back) + "/", "--format", "tiff")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in back.iterdir()) == ["p0.tiff", "p1.tiff", "p2.tiff"]
    two = run_cli("info", str(out / "p0.bbc"), str(out / "p1.bbc"))
    assert two.returncode == 0 and two.stdout.decode().count("format version:") == 2
    assert [r["height"] for r in json.loads(run_cli("info", str(out / "p0.bbc"), str(out / "p2.bbc"), "--json").stdout)] \
        == [9, 11]
    assert run_cli("encode", str(src / "p0.png"), str(src / "p1.png"), "-").returncode == 2
    assert run_cli("encode", str(src / "p0.png")).returncode == 2
    typo = run_cli("encode", str(src / "p0.png"), str(src / "p1.png"), str(tmp_path / "x.bbc"))  # not a folder
    assert typo.returncode == 2 and b"looks like a file name" in typo.stderr and not (tmp_path / "x.bbc").exists()


def test_folders_skip_non_images_by_name_and_recurse_when_asked(tmp_path):
    src = tmp_path / "photos"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(random_image(8, 8, seed=1)).save(src / "a.png")
    Image.fromarray(random_image(8, 9, seed=2)).save(src / "sub" / "b.png")
    Image.fromarray(random_image(8, 10, seed=3)).save(src / "sub" / "deeper" / "c.jpg")
    (src / "notes.txt").write_text("not an image")
    proc = run_cli("encode", str(src), str(tmp_path / "flat"))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "encoded 1 of 1 files" in err and "1 other files left out (not images: notes.txt)" in err
    assert "1 subfolders left out (--recursive includes them)" in err
    proc = run_cli("encode", str(src), str(tmp_path / "deep"), "--recursive", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["done"] == 3 and report["summary"]["skipped"] == 1
    assert report["skipped"] == [str(src / "notes.txt")]
    got = sorted(str(p.relative_to(tmp_path / "deep")) for p in (tmp_path / "deep").rglob("*.bbc"))
    assert got == ["a.bbc", "sub/b.bbc", "sub/deeper/c.bbc"]
    proc = run_cli("decode", str(tmp_path / "deep"), str(tmp_path / "back"), "-r", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back" / "sub" / "deeper" / "c.png").exists()


# -- point 5: messages --------------------------------------------------------------------

def test_decode_verbose_and_no_quality(bbc, tmp_path):
    proc = run_cli("decode", str(bbc), str(tmp_path / "r.png"), "-v")
    assert proc.returncode == 0
    default = (ROOT / "weights" / "SHA256SUMS").read_text().split()[1]
    assert "quality 3" in proc.stderr.decode() and f"weights {default}" in proc.stderr.decode()
    proc = run_cli("decode", str(bbc), str(tmp_path / "r.png"), "-q", "4")
    assert proc.returncode == 2 and b"decode takes no quality" in proc.stderr


def test_errors_name_the_file_and_stdin(png, tmp_path):
    line = one_error_line(run_cli("decode", str(png), str(tmp_path / "r.png")))
    assert line.startswith(f"bbcodec: error: {png}: not a .bbc file")
    line = one_error_line(run_cli("encode", "-", str(tmp_path / "a.bbc"), stdin=b"hello"))
    assert line == "bbcodec: error: stdin is not an image Pillow can read", line  # as images.py says it
    line = one_error_line(run_cli("decode", "-", str(tmp_path / "a.png"), stdin=b"hello"))
    assert line.startswith("bbcodec: error: stdin: not a .bbc file"), line


def test_json_failures_print_a_json_error_object(png, tmp_path):
    proc = run_cli("decode", str(png), str(tmp_path / "r.png"), "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"input": str(png), "error": f"{png}: not a .bbc file (bad magic bytes)"}
    proc = run_cli("encode", str(tmp_path / "nope.png"), str(tmp_path / "a.bbc"), "--json")
    assert proc.returncode == 1 and "no such file" in json.loads(proc.stdout)["error"]
    proc = run_cli("info", str(png), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["input"] == str(png)
    (tmp_path / "empty").mkdir()
    proc = run_cli("encode", str(tmp_path / "empty"), str(tmp_path / "out"), "--json")
    assert proc.returncode == 1 and "no images in" in json.loads(proc.stdout)["error"]


def test_info_shows_the_header_of_a_file_with_a_bad_crc(bbc, tmp_path):
    data = bytearray(bbc.read_bytes())
    data[-6] ^= 0xFF  # a payload byte: the header is intact
    bad = tmp_path / "bad.bbc"
    bad.write_bytes(bytes(data))
    proc = run_cli("info", str(bad))
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert "size:           30x21" in out and "quality:        3" in out and "crc32:          BAD" in out
    assert f"{bad}: corrupt .bbc file (CRC-32 mismatch)" in proc.stderr.decode()
    report = json.loads(run_cli("info", str(bad), "--json").stdout)
    assert report["crc32"] == "bad" and report["width"] == 30


def test_info_shows_one_model_name_from_the_model_card(bbc):
    default = (ROOT / "weights" / "SHA256SUMS").read_text().split()[1]
    name = default.rsplit("-", 1)[0]
    out = run_cli("info", str(bbc)).stdout.decode()
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
    text = run_cli("freeze", "--help").stdout.decode()
    assert text.startswith("usage: bbcodec freeze")
    assert "[default: weights]" in text and "[default: 16]" in text and "SHA256SUMS" in text
    text = subprocess.run([sys.executable, "-m", "bbcodec.train.freeze", "--help"], capture_output=True,
                          text=True, timeout=120).stdout
    assert text.startswith("usage: python -m bbcodec.train.freeze")
    text = run_cli("train", "--help").stdout.decode()
    assert text.startswith("usage: bbcodec train") and "[default: 20000]" in text
    assert b"freeze" in run_cli("--help").stdout
