"""The command line as a user runs it: real processes, exit codes, stderr, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image, tiff_file
from PIL import Image


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bbcodec.cli", *args], input=stdin, capture_output=True, timeout=120
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bbcodec: error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray(random_image(21, 30, seed=7)).save(path)
    return path


@pytest.fixture(scope="module")
def bbc(png: Path) -> Path:
    out = png.with_suffix(".bbc")
    proc = run("encode", str(png), str(out), "-q", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_encode_decode_round_trip_matches_the_digest(png, bbc, tmp_path):
    out = tmp_path / "rec.png"
    proc = run("decode", str(bbc), str(out))
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        rec = np.asarray(im)
    assert rec.shape == (21, 30, 3)
    import hashlib

    info = json.loads(run("info", str(bbc), "--json").stdout)
    assert hashlib.sha256(rec.tobytes()).hexdigest()[:16] == info["image_digest"]


def test_stdin_and_stdout_work_like_files(png, bbc):
    enc = run("encode", "-", "-", "-q", "3", "--quiet", stdin=png.read_bytes())
    assert enc.returncode == 0 and enc.stdout == bbc.read_bytes()
    dec = run("decode", "-", "-", "--quiet", stdin=enc.stdout)
    assert dec.returncode == 0 and dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_prints_the_header_fields(bbc):
    proc = run("info", str(bbc))
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for field in ("format version:", "size:           30x21", "quality:        3", "bits per pixel:", "weights sha256:", "image digest:"):
        assert field in text
    data = json.loads(run("info", str(bbc), "--json").stdout)
    assert list(data) == ["version", "width", "height", "channels", "quality", "model_id", "weights_sha256",
                          "image_digest", "payload_bytes", "file_bytes", "bpp", "streams", "weights", "model",
                          "family", "crc32"]
    assert data["version"] == 2 and data["streams"] == 1 and "format version: 2, 1 stream\n" in text
    assert data["crc32"] == "ok" and data["weights"].endswith(".npz") and data["model"].startswith("bb8")
    assert data["width"] == 30 and data["height"] == 21 and data["quality"] == 3.0
    assert data["file_bytes"] == bbc.stat().st_size
    assert abs(data["bpp"] - 8 * bbc.stat().st_size / (30 * 21)) < 1e-9


def test_verbose_encode_reports_bpp_and_psnr(png, tmp_path):
    proc = run("encode", str(png), str(tmp_path / "x.bbc"), "-v")
    assert proc.returncode == 0
    assert "bpp" in proc.stderr.decode() and "PSNR" in proc.stderr.decode()


@pytest.mark.parametrize("cut", [0, 3, 20, 43, -1, -5])
def test_truncated_files_fail_with_one_line_and_no_output(bbc, tmp_path, cut):
    bad = tmp_path / "bad.bbc"
    data = bbc.read_bytes()
    bad.write_bytes(data[:cut] if cut >= 0 else data[: len(data) + cut])
    out = tmp_path / "out.png"
    one_error_line(run("decode", str(bad), str(out)))
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_a_bit_flip_fails_and_leaves_an_existing_output_untouched(bbc, tmp_path):
    data = bytearray(bbc.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.bbc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    assert "CRC" in one_error_line(run("decode", str(bad), str(out)))
    assert out.read_bytes() == b"precious"


def test_bad_inputs_get_one_clear_line(tmp_path, png):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "empty" in one_error_line(run("encode", str(empty), str(tmp_path / "a.bbc")))
    assert "not an image" in one_error_line(run("encode", str(text), str(tmp_path / "a.bbc")))
    assert "no such file" in one_error_line(run("encode", str(tmp_path / "nope.png"), str(tmp_path / "a.bbc")))
    assert "not a .bbc" in one_error_line(run("decode", str(png), str(tmp_path / "b.png")))
    assert "over the input" in one_error_line(run("encode", str(png), str(png), "--force"))
    assert not (tmp_path / "a.bbc").exists()


def test_transparent_images_are_refused(tmp_path):
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (9, 9), (10, 20, 30, 100)).save(path)
    assert "transparency" in one_error_line(run("encode", str(path), str(tmp_path / "a.bbc")))


def test_unknown_weights_are_named(bbc, tmp_path):
    data = bytearray(bbc.read_bytes()[:-4])
    data[16:24] = b"\x12\x34\x56\x78\x9a\xbc\xde\xf0"
    import struct
    import zlib

    bad = tmp_path / "other.bbc"
    bad.write_bytes(bytes(data) + struct.pack("<I", zlib.crc32(bytes(data))))
    assert "123456789abcdef0" in one_error_line(run("decode", str(bad), str(tmp_path / "o.png")))


def test_help_and_version():
    proc = run("--help")
    assert proc.returncode == 0 and b"bbcodec encode photo.png" in proc.stdout
    assert b"Exit codes" in run("encode", "--help").stdout
    assert run("--version").stdout.decode().startswith("bbcodec, version")
    assert run("encode", "a", "b", "-q", "9").returncode == 2


def test_a_folder_encodes_every_image_and_reports_the_bad_one(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(random_image(12 + i, 20, seed=i)).save(src / f"p{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    proc = run("encode", str(src), str(out), "-q", "5", "--jobs", "2")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "skipped" in err and "broken.png" in err and "encoded 3 of 4 files" in err
    assert sorted(p.name for p in out.iterdir()) == ["p0.bbc", "p1.bbc", "p2.bbc"]
    back = tmp_path / "back"
    proc = run("decode", str(out), str(back), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert list(report) == ["summary", "files", "skipped", "subfolders_left_out"]
    assert list(report["summary"]) == SUMMARY_KEYS
    assert report["summary"]["done"] == 3 and report["summary"]["failed"] == 0
    assert [list(f) for f in report["files"]] == [DECODE_KEYS] * 3
    with Image.open(back / "p2.png") as im:
        assert im.size == (20, 14)
    proc = run("encode", str(src), str(tmp_path / "again"), "--json")
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
DECODE_KEYS = ["input", "output", "width", "height", "channels", "quality", "input_bytes", "bytes", "bpp", "seconds",
               "weights"]
ENCODE_KEYS = [*DECODE_KEYS, "effort"]


def test_encode_json_summary_and_rate_targets(png, tmp_path):
    import numpy as np

    proc = run("encode", str(png), str(tmp_path / "a.bbc"), "--json")
    summary = json.loads(proc.stdout)
    assert list(summary) == [*ENCODE_KEYS, "psnr"]
    assert summary["bytes"] == (tmp_path / "a.bbc").stat().st_size and "psnr" in summary
    low = json.loads(run("encode", str(png), str(tmp_path / "b.bbc"), "--json", "-q", "1").stdout)
    high = json.loads(run("encode", str(png), str(tmp_path / "c.bbc"), "--json", "-q", "8").stdout)
    target = float(np.sqrt(low["bpp"] * high["bpp"]))
    hit = json.loads(run("encode", str(png), str(tmp_path / "d.bbc"), "--json", "--target-bpp", str(target)).stdout)
    assert list(hit) == [*ENCODE_KEYS, "target_met", "encodes", "psnr"]
    assert hit["target_met"] and hit["bpp"] <= target and low["quality"] < hit["quality"] < high["quality"]
    goal = (low["psnr"] + high["psnr"]) / 2
    hit = json.loads(run("encode", str(png), str(tmp_path / "e.bbc"), "--json", "--target-psnr", str(goal)).stdout)
    assert hit["target_met"] and hit["psnr"] >= goal
    assert run("encode", str(png), str(tmp_path / "f.bbc"), "-q", "3", "--target-bpp", "1").returncode == 2


def test_an_unknown_model_id_is_refused_by_name(bbc, tmp_path):
    import struct
    import zlib

    data = bytearray(bbc.read_bytes()[:-4])
    struct.pack_into("<H", data, 36, 7)
    bad = tmp_path / "model7.bbc"
    bad.write_bytes(bytes(data) + struct.pack("<I", zlib.crc32(bytes(data))))
    assert "unknown model id 7" in one_error_line(run("decode", str(bad), str(tmp_path / "o.png")))


# Defect 4: folder runs never map two inputs to one output, nor overwrite an original -----

def test_a_folder_with_clashing_names_gives_one_output_per_input(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(["a.png", "a.gif", "a.png.gif", "b.png"]):
        Image.fromarray(random_image(8 + i, 12, seed=i)).save(src / name)
    out = tmp_path / "out"
    proc = run("encode", str(src), str(out), "--json")
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
    assert run("encode", str(folder), str(folder), "--quiet").returncode == 0
    originals = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    (folder / "b.png").unlink()  # b's original is gone: its decode may be written
    del originals["b.png"]
    proc = run("decode", str(folder), str(folder))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "a.png, a file of the input folder" in err and "decoded 1 of 2 files" in err
    assert {p.name: p.read_bytes() for p in folder.glob("a.png")} == originals
    assert (folder / "b.png").exists()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = run("encode", str(folder), str(folder))  # .bbc files are left out by name (not re-encoded)
    assert again.returncode == 1  # a.bbc and b.bbc exist in the input folder: never overwritten
    err = again.stderr.decode()
    assert "a.bbc, a file of the input folder" in err and "2 other files left out (not images: a.bbc, b.bbc)" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing that was there is touched


# Defect 9: smaller ones ------------------------------------------------------------------

@pytest.mark.parametrize("option", [("-q", "nan"), ("--target-bpp", "nan"), ("--target-psnr", "inf"),
                                    ("--target-psnr", "nan")])
def test_non_finite_numbers_are_usage_errors(png, tmp_path, option):
    proc = run("encode", str(png), str(tmp_path / "x.bbc"), *option)
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
    proc = run("encode", str(path), str(tmp_path / "w.bbc"), "--quiet")
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    tif = tmp_path / "odd.tif"
    Image.fromarray(random_image(12, 16, seed=2)).save(tif, format="TIFF", compression="tiff_adobe_deflate")
    data = bytearray(tif.read_bytes())
    data[20:24] = b"\xff\xff\xff\x0f"  # damage the compressed strip
    tif.write_bytes(bytes(data))
    proc = run("encode", str(tif), str(tmp_path / "t.bbc"), "--quiet")
    assert proc.returncode in (0, 1)
    assert len(proc.stderr.decode().splitlines()) == (0 if proc.returncode == 0 else 1), proc.stderr
    # 66 samples per pixel: Pillow logs an error ("More samples per pixel than can be
    # decoded"), which Python printed on stderr beside bbcodec's own line
    tiff_file(tif, samples=66)
    proc = run("encode", str(tif), str(tmp_path / "s.bbc"), "--quiet")
    assert proc.returncode == 1 and len(proc.stderr.decode().strip().splitlines()) == 1, proc.stderr
