"""Everything a user may throw at bbcodec: odd images in, corrupt files in.

Odd images are generated here (not stored). Corrupt files are explored with
hypothesis: every outcome must be a clean success (the exact image) or exit code 1
with one line on stderr and no output file; never a traceback or a hang.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TIFF_LONG, TIFF_RATIONAL, TIFF_SHORT, random_image, tiff_file, tiff_ifd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, UnidentifiedImageError

from bbcodec.cli import cli

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


def assert_clean_failure(result, out: Path | None = None) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bbcodec: error:"), result.output
    if out is not None:
        assert not out.exists()
    return lines[0]


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def _exif_rotated(path: Path) -> Path:
    im = Image.fromarray(random_image(16, 24, seed=1))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _save(im, path, format="JPEG", exif=exif.tobytes())


def _animated(path: Path) -> Path:
    frames = [Image.new("RGB", (10, 6), c) for c in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], format="GIF")
    return path


def _huge_png(path: Path, side: int, height: int | None = None) -> Path:
    """A PNG header claiming side x side (or side x height) pixels (no pixel data needed
    to refuse it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side if height is None else height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


RGB = random_image(13, 19, seed=2)
# name -> (maker, expected decoded mode and size, or an error fragment)
ODD_IMAGES = {
    "gray L": (lambda p: _save(Image.fromarray(RGB[..., 0]), p.with_suffix(".png")), ("L", (19, 13))),
    "gray LA opaque": (lambda p: _save(Image.fromarray(RGB[..., 0]).convert("LA"), p.with_suffix(".png")), ("L", (19, 13))),
    "gray LA transparent": (lambda p: _save(Image.new("LA", (5, 5), (9, 100)), p.with_suffix(".png")), ("LA", (5, 5))),
    "RGBA opaque": (lambda p: _save(Image.fromarray(RGB).convert("RGBA"), p.with_suffix(".png")), ("RGB", (19, 13))),
    "RGBA transparent": (lambda p: _save(Image.new("RGBA", (5, 5), (1, 2, 3, 0)), p.with_suffix(".png")), ("RGBA", (5, 5))),
    "palette": (lambda p: _save(Image.fromarray(RGB).quantize(16), p.with_suffix(".png")), ("RGB", (19, 13))),
    "palette transparent": (lambda p: _save(Image.fromarray(RGB).quantize(16), p.with_suffix(".png"), transparency=0), ("RGBA", (19, 13))),
    "16-bit gray": (lambda p: _save(Image.fromarray(RGB[..., 1].astype(np.uint16) * 257).convert("I;16"), p.with_suffix(".png")), ("L", (19, 13))),
    "CMYK JPEG": (lambda p: _save(Image.fromarray(RGB).convert("CMYK"), p.with_suffix(".jpg"), format="JPEG"), ("RGB", (19, 13))),
    "EXIF rotated JPEG": (lambda p: _exif_rotated(p.with_suffix(".jpg")), ("RGB", (16, 24))),
    "WebP": (lambda p: _save(Image.fromarray(RGB), p.with_suffix(".webp"), format="WEBP"), ("RGB", (19, 13))),
    "TIFF": (lambda p: _save(Image.fromarray(RGB), p.with_suffix(".tif"), format="TIFF"), ("RGB", (19, 13))),
    "BMP": (lambda p: _save(Image.fromarray(RGB), p.with_suffix(".bmp"), format="BMP"), ("RGB", (19, 13))),
    "animated GIF": (lambda p: _animated(p.with_suffix(".gif")), ("RGB", (10, 6))),
    "1x1": (lambda p: _save(Image.new("RGB", (1, 1), "white"), p.with_suffix(".png")), ("RGB", (1, 1))),
    "1xN": (lambda p: _save(Image.fromarray(random_image(40, 1)), p.with_suffix(".png")), ("RGB", (1, 40))),
    "Nx1": (lambda p: _save(Image.fromarray(random_image(1, 33)), p.with_suffix(".png")), ("RGB", (33, 1))),
    "huge pixel count": (lambda p: _huge_png(p.with_suffix(".png"), 60000), "exceeds"),
    "huge side": (lambda p: _huge_png(p.with_suffix(".png"), 100000, 1), "outside"),
    "decompression bomb": (lambda p: _huge_png(p.with_suffix(".png"), 100000), "exceeds"),
    "zero bytes": (lambda p: (p.with_suffix(".png").write_bytes(b""), p.with_suffix(".png"))[1], "empty"),
    "not an image": (lambda p: (p.with_suffix(".png").write_text("hello"), p.with_suffix(".png"))[1], "not an image"),
    "truncated PNG": (lambda p: (p.with_suffix(".png").write_bytes(_png_bytes()[:60]), p.with_suffix(".png"))[1], "damaged"),
    "empty directory": (lambda p: (p.mkdir(), p)[1], "no images"),
    "missing path": (lambda p: p / "nope.png", "no such file"),
}


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(random_image(32, 32)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("case", list(ODD_IMAGES))
def test_odd_images_encode_cleanly_or_are_refused_with_one_line(case, tmp_path):
    maker, expected = ODD_IMAGES[case]
    src = maker(tmp_path / "input")
    out = tmp_path / "out.bbc"
    result = invoke("encode", str(src), str(out), "--quiet")
    if isinstance(expected, str):
        assert expected in assert_clean_failure(result, out)
        return
    assert result.exit_code == 0, result.output
    rec = tmp_path / "rec.png"
    assert invoke("decode", str(out), str(rec), "--quiet").exit_code == 0
    with Image.open(rec) as im:
        assert (im.mode, im.size) == expected


@pytest.fixture(scope="module")
def sample(bbc: Path) -> tuple[Path, bytes]:
    """conftest's .bbc file: its folder and its bytes."""
    return bbc.parent, bbc.read_bytes()


def _decode_bytes(data: bytes, folder: Path):
    bad = folder / "bad.bbc"
    bad.write_bytes(data)
    out = folder / "out.png"
    out.unlink(missing_ok=True)
    return invoke("decode", str(bad), str(out), "--quiet"), out


@FAST
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_any_truncation_fails_cleanly(sample, cut):
    folder, data = sample
    result, out = _decode_bytes(data[: cut % len(data)], folder)
    assert_clean_failure(result, out)


@FAST
@given(bits=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8, unique=True))
def test_bit_flips_anywhere_fail_cleanly(sample, bits):
    folder, data = sample
    bad = bytearray(data)
    for b in bits:
        bad[(b // 8) % len(bad)] ^= 1 << (b % 8)
    if bytes(bad) == data:
        return
    result, out = _decode_bytes(bytes(bad), folder)
    assert_clean_failure(result, out)


@FAST
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_edits_behind_a_valid_crc_decode_exactly_or_fail_cleanly(sample, edits):
    """With the CRC re-sealed, edits reach the header checks, the decoder and the digest."""
    folder, data = sample
    body = bytearray(data[:-4])
    for pos, value in edits:
        body[pos % len(body)] = value
    sealed = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    result, out = _decode_bytes(sealed, folder)
    if result.exit_code == 0:  # the edit changed nothing the decoder uses (e.g. the same byte)
        assert out.exists()
    else:
        assert_clean_failure(result, out)


@FAST
@given(garbage=st.binary(min_size=0, max_size=300))
def test_random_garbage_fails_cleanly(sample, garbage):
    folder, _ = sample
    result, out = _decode_bytes(garbage, folder)
    assert_clean_failure(result, out)


def test_garbage_with_the_right_magic_and_a_valid_crc_fails_cleanly(sample):
    folder, data = sample
    rng = np.random.default_rng(0)
    for _ in range(20):
        body = bytearray(data[:40]) + bytearray(rng.integers(0, 256, len(data) - 44, dtype=np.uint8).tobytes())
        sealed = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        result, out = _decode_bytes(sealed, folder)
        assert_clean_failure(result, out)


# Defect 2: a file's cost is bounded by what it holds -----------------------------------

def _sealed(width: int, height: int, payload: bytes, quality_x256: int = 1024, version: int = 2,
            streams: int = 1) -> bytes:
    """A .bbc file with a valid CRC naming the shipped weights, whatever its payload."""
    from bbcodec.coding import format as fmt
    from bbcodec.model import weights

    w = weights.default()
    head = fmt.HEADER.pack(fmt.MAGIC, version, 3, quality_x256, width, height, w.prefix, b"\0" * 8,
                           len(payload), w.family_id, streams if version > 1 else 0)
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def test_an_empty_payload_is_refused_from_the_header(tmp_path):
    """Version 1 codes every symbol, so it has at least one word; a version 2 payload may
    be empty (every symbol of scale index 0), and refused at its first coded symbol."""
    data = _sealed(8192, 8192, b"", version=1)
    assert len(data) == 44
    assert "empty payload" in assert_clean_failure(_decode_bytes(data, tmp_path)[0])
    assert "empty payload" in assert_clean_failure(invoke("info", str(tmp_path / "bad.bbc")))
    assert "ends before symbol" in assert_clean_failure(_decode_bytes(_sealed(8192, 8192, b""), tmp_path)[0])


@pytest.mark.parametrize("streams", [2, 64])
def test_a_stream_table_that_does_not_fit_the_payload_is_refused(streams, tmp_path):
    table = struct.pack("<I", 5) + bytes(4 * (streams - 2))  # stream 0 claims 5 words of none
    message = assert_clean_failure(_decode_bytes(_sealed(512, 512, table + b"\0" * 8, streams=streams), tmp_path)[0])
    assert "stream 0 of 5 words runs past the end of the payload" in message
    short = _sealed(512, 512, b"", streams=streams)  # shorter than the table itself
    assert "stream lengths" in assert_clean_failure(_decode_bytes(short, tmp_path)[0])
    too_many = _sealed(64, 64, bytes(4 * 8), streams=9)  # 8 block rows: at most 8 streams
    assert "stream count 9 is outside 1..8" in assert_clean_failure(_decode_bytes(too_many, tmp_path)[0])


@pytest.mark.parametrize("payload", [b"\0" * 64, b"\xff" * 64, b"\0" * 4096])
def test_a_payload_too_short_for_the_declared_size_is_refused_when_it_runs_out(payload):
    """Past its last word the range decoder reads zeros for ever; the decoder re-encodes
    what it decodes and stops once that needs more words than the payload has, instead
    of decoding all 512x512 blocks to fail on the digest."""
    import bbcodec

    with pytest.raises(bbcodec.DecodeError, match="ends before symbol|range decoder failed"):
        bbcodec.decode(_sealed(512, 512, payload))


def test_a_44_byte_file_declaring_8192x8192_costs_milliseconds_not_minutes(tmp_path):
    """Was 146 s and 1 GB: now refused after the first few wavefronts (or, empty, from
    the header), in a process capped at 3 GiB."""
    import subprocess
    import sys
    import time

    for payload in (b"", b"\0" * 4096):
        path = tmp_path / "huge.bbc"
        path.write_bytes(_sealed(8192, 8192, payload))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", f"""
import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from bbcodec.cli import main; import sys; sys.argv = ['bbcodec', 'decode', {str(path)!r}, {str(tmp_path / 'o.png')!r}]
main()"""], capture_output=True, timeout=90)
        assert proc.returncode == 1 and proc.stderr.decode().count("\n") == 1, proc.stderr
        assert time.perf_counter() - t0 < 30


def test_pillow_opens_without_decoding_and_load_fails_fast():
    import time

    with pytest.raises(UnidentifiedImageError):  # empty version 1 payload: refused by open()
        Image.open(io.BytesIO(_sealed(8192, 8192, b"", version=1)))
    t0 = time.perf_counter()
    with Image.open(io.BytesIO(_sealed(8192, 8192, b"\0" * 4096))) as im:
        assert im.size == (8192, 8192)
        with pytest.raises(OSError, match="ends before symbol"):
            im.load()
    assert time.perf_counter() - t0 < 20


# Defect 8: the payload is exactly the encoder's output ----------------------------------

def test_a_valid_file_with_one_more_word_is_refused(sample):
    """A valid file with an extra 4-byte word appended to its payload (length field and
    CRC updated) used to decode; trailing data is an error (docs/format.md, check 9)."""
    folder, data = sample
    n = struct.unpack_from("<I", data, 32)[0]
    for extra in (b"\0\0\0\0", b"\x01\x02\x03\x04", b"\xff\xff\xff\xff"):
        body = bytearray(data[:-4]) + extra
        struct.pack_into("<I", body, 32, n + 4)
        sealed = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        result, out = _decode_bytes(sealed, folder)
        assert "left after the last symbol" in assert_clean_failure(result, out)


def test_a_payload_length_of_2_gib_or_more_is_refused_by_every_reader(tmp_path):
    from bbcodec.coding import format as fmt

    body = bytearray(_sealed(8, 8, b"\0" * 8)[:-4])
    for n in (2**31, 2**32 - 4):
        struct.pack_into("<I", body, 32, n)
        path = tmp_path / "big.bbc"
        path.write_bytes(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))) + b"\0" * 100)
        for args in (("info", str(path)), ("decode", str(path), str(tmp_path / "o.png"))):
            assert "2 GiB" in assert_clean_failure(invoke(*args), tmp_path / "o.png")
        with pytest.raises(fmt.FormatError, match="2 GiB"), open(path, "rb") as f:
            fmt.read_from(f)
        with pytest.raises(UnidentifiedImageError):
            Image.open(path)


# Defect 3: any failure while reading an image is bad input ------------------------------

def _jpeg_with_exif(path: Path, exif: bytes) -> Path:
    Image.fromarray(random_image(12, 16, seed=5)).save(path, format="JPEG", exif=b"Exif\0\0" + exif)
    return path


BAD_METADATA = {
    # rotated, with a RATIONAL where EXIF has a SHORT: re-writing the EXIF after the
    # rotation raised struct.error (exit 70)
    "EXIF tag of the wrong type": lambda p: _jpeg_with_exif(p.with_suffix(".jpg"), tiff_ifd(
        [(0x0112, TIFF_SHORT, 1, struct.pack("<H", 6)), (0x0128, TIFF_RATIONAL, 1, struct.pack("<II", 1, 1))])),
    "EXIF IFD pointing past the end": lambda p: _jpeg_with_exif(p.with_suffix(".jpg"), tiff_ifd(
        [(0x0112, TIFF_SHORT, 1, struct.pack("<H", 6)), (0x8769, TIFF_LONG, 1, struct.pack("<I", 10**6))])),
    # a gray TIFF whose StripOffsets is a RATIONAL: Pillow's load raised TypeError (exit 70)
    "TIFF strip offset of the wrong type": lambda p: tiff_file(p.with_suffix(".tif"), strip_offset_type=TIFF_RATIONAL),
    "TIFF as written (the control)": lambda p: tiff_file(p.with_suffix(".tif"), strip_offset_type=TIFF_LONG),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_corrupt_metadata_is_bad_input_or_ignored_never_an_internal_error(case, tmp_path):
    src = BAD_METADATA[case](tmp_path / "input")
    out = tmp_path / "out.bbc"
    result = invoke("encode", str(src), str(out), "--quiet")
    if result.exit_code == 0:
        assert out.exists() and result.output == ""
    else:
        assert_clean_failure(result, out)
    if case == "TIFF as written (the control)":  # the hand-made TIFF is valid
        assert result.exit_code == 0


def test_an_exception_of_any_kind_while_reading_an_image_is_an_image_error(monkeypatch):
    """Whatever Pillow raises (here a ZeroDivisionError from EXIF parsing) is ImageError."""
    from bbcodec import images

    def broken(self):  # noqa: ANN001
        raise ZeroDivisionError("division by zero in a TIFF tag")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    with pytest.raises(images.ImageError, match="division by zero"):
        images.read_image(_png_bytes(), "x.png")


def test_a_folder_run_goes_on_after_an_internal_error_and_prints_its_summary(tmp_path, monkeypatch):
    from bbcodec import files

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (src / name).write_bytes(_png_bytes())
    real = files.encode_file

    def encode_file(s, d, opts):  # noqa: ANN001
        if s.endswith("b.png"):
            raise RuntimeError("a bug")
        return real(s, d, opts)

    monkeypatch.setattr(files, "encode_file", encode_file)
    result = invoke("encode", str(src), str(tmp_path / "out"))
    assert result.exit_code == 70
    lines = result.output.strip().splitlines()
    assert "internal error: RuntimeError: a bug" in lines[0] and "b.png" in lines[0]
    assert lines[-1].startswith("encoded 2 of 3 files")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bbc", "c.bbc"]


# Defect 5: more than 8 bits per sample, converted by the real bit depth ----------------

def _reference_16(v: np.ndarray) -> np.ndarray:
    return np.floor(v.astype(np.float64) / 257 + 0.5).astype(np.uint8)


GRAY_16 = np.array([[0, 1, 128, 129, 255], [256, 257, 385, 386, 1000], [32767, 32768, 65278, 65279, 65535]], np.uint16)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_gray_is_scaled_by_its_bit_depth_not_by_its_values(fmt):
    from bbcodec import images

    for arr in (GRAY_16, np.arange(256, dtype=np.uint16).reshape(16, 16), np.full((4, 4), 256, np.uint16)):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        assert np.array_equal(images.read_image(buf.getvalue(), "x"), _reference_16(arr))


def test_a_pgm_of_any_maxval_keeps_its_brightness():
    from bbcodec import images

    for maxval, values in ((1023, [0, 100, 512, 1023]), (65535, [0, 257, 32768, 65535]), (255, [0, 7, 128, 255])):
        raw = np.array(values, ">u2" if maxval > 255 else np.uint8).tobytes()
        got = images.read_image(f"P5 4 1 {maxval}\n".encode() + raw, "x.pgm")
        assert np.abs(got[0].astype(int) - np.rint(np.array(values) * 255 / maxval)).max() <= 1, got


def test_float_images_map_0_to_1_and_refuse_other_ranges():
    from bbcodec import images

    v = np.array([[0.0, 0.25, 0.5, 1 / 255, 1.0]], np.float32)
    buf = io.BytesIO()
    Image.fromarray(v).save(buf, format="TIFF")
    assert np.array_equal(images.read_image(buf.getvalue(), "x"), np.rint(v.astype(np.float64) * 255).astype(np.uint8))
    for bad in (v * 255, v - 0.5, np.array([[np.nan, 0.5]], np.float32)):
        buf = io.BytesIO()
        Image.fromarray(bad.astype(np.float32)).save(buf, format="TIFF")
        with pytest.raises(images.ImageError, match="outside 0..1"):
            images.read_image(buf.getvalue(), "x")


def test_32_bit_integer_images_are_refused():
    from bbcodec import images

    buf = io.BytesIO()
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(buf, format="TIFF")
    with pytest.raises(images.ImageError, match="32-bit integer"):
        images.read_image(buf.getvalue(), "x")


def test_16_bit_gray_round_trips_at_its_real_brightness(tmp_path):
    """A 16-bit image with values 0..255 is nearly black (those are 0..1 in 8 bits): it
    used to come back at full brightness."""
    src = tmp_path / "dark.png"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint16), (16, 1))).save(src)
    assert invoke("encode", str(src), str(tmp_path / "d.bbc"), "--quiet").exit_code == 0
    assert invoke("decode", str(tmp_path / "d.bbc"), str(tmp_path / "d.png"), "--quiet").exit_code == 0
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode == "L" and np.asarray(im).mean() < 4  # the source's mean is 0.5 in 8 bits
