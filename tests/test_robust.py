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
from conftest import random_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

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


def _huge_png(path: Path, side: int) -> Path:
    """A PNG header claiming side x side pixels (no pixel data needed to refuse it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


RGB = random_image(13, 19, seed=2)
# name -> (maker, expected decoded mode and size, or an error fragment)
ODD_IMAGES = {
    "gray L": (lambda p: _save(Image.fromarray(RGB[..., 0]), p.with_suffix(".png")), ("L", (19, 13))),
    "gray LA opaque": (lambda p: _save(Image.fromarray(RGB[..., 0]).convert("LA"), p.with_suffix(".png")), ("L", (19, 13))),
    "gray LA transparent": (lambda p: _save(Image.new("LA", (5, 5), (9, 100)), p.with_suffix(".png")), "transparency"),
    "RGBA opaque": (lambda p: _save(Image.fromarray(RGB).convert("RGBA"), p.with_suffix(".png")), ("RGB", (19, 13))),
    "RGBA transparent": (lambda p: _save(Image.new("RGBA", (5, 5), (1, 2, 3, 0)), p.with_suffix(".png")), "transparency"),
    "palette": (lambda p: _save(Image.fromarray(RGB).quantize(16), p.with_suffix(".png")), ("RGB", (19, 13))),
    "palette transparent": (lambda p: _save(Image.fromarray(RGB).quantize(16), p.with_suffix(".png"), transparency=0), "transparency"),
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
    "huge side": (lambda p: _huge_png(p.with_suffix(".png"), 100000), "outside"),
    "zero bytes": (lambda p: (p.with_suffix(".png").write_bytes(b""), p.with_suffix(".png"))[1], "empty"),
    "not an image": (lambda p: (p.with_suffix(".png").write_text("hello"), p.with_suffix(".png"))[1], "not an image"),
    "truncated PNG": (lambda p: (p.with_suffix(".png").write_bytes(_png_bytes()[:60]), p.with_suffix(".png"))[1], "damaged"),
    "empty directory": (lambda p: (p.mkdir(), p)[1], "no files"),
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
def sample(tmp_path_factory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("robust")
    src = folder / "in.png"
    Image.fromarray(random_image(20, 27, seed=4)).save(src)
    out = folder / "in.bbc"
    assert invoke("encode", str(src), str(out), "--quiet").exit_code == 0
    return folder, out.read_bytes()


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
