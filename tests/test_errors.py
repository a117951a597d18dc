"""One error base class: every error bbcodec raises on purpose is a bbcodec.Error."""

from __future__ import annotations

import ast
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image
from PIL import Image, UnidentifiedImageError

import bbcodec
from bbcodec import bench, errors, files, images
from bbcodec.coding import effort, entropy
from bbcodec.coding import format as fmt
from bbcodec.coding import loop as codec
from bbcodec.coding import workers as parallel
from bbcodec.model import quality, weights

# (class, also a ValueError as before Error existed)
ERRORS = [
    (fmt.FormatError, True),
    (codec.DecodeError, True),
    (entropy.EntropyError, True),
    (images.ImageError, True),
    (quality.QualityError, True),
    (weights.WeightsError, True),
    (bench.BenchError, True),
    (effort.EffortError, True),
    (parallel.ThreadsError, True),
    (files.FileError, False),
    (parallel.WorkerError, False),  # a RuntimeError, as it was before it was an Error
    (errors.ClusterError, False),
]


@pytest.mark.parametrize(("cls", "is_value_error"), ERRORS, ids=[c.__name__ for c, _ in ERRORS])
def test_every_codec_error_is_a_bbcodec_error(cls, is_value_error):
    assert issubclass(cls, bbcodec.Error) and cls is not bbcodec.Error
    assert issubclass(cls, ValueError) == is_value_error
    assert isinstance(cls("message"), errors.Error)


def test_the_errors_users_catch_are_exported_by_the_package():
    for name in ("Error", "FormatError", "DecodeError", "EntropyError", "ImageError", "QualityError",
                 "WeightsError", "FileError", "EffortError", "ThreadsError", "WorkerError", "ClusterError"):
        assert name in bbcodec.__all__ and name in dir(bbcodec)
    assert bbcodec.Error is errors.Error
    for name in bbcodec.__all__:  # every exported error is the one errors.py defines
        if name.endswith("Error"):
            assert getattr(bbcodec, name) is getattr(errors, name)
    with pytest.raises(AttributeError):
        bbcodec.NoSuchError  # noqa: B018


def test_bbcodec_error_catches_a_bad_file():
    with pytest.raises(bbcodec.Error, match="not a .bbc file") as caught:
        bbcodec.decode(b"junk")
    assert isinstance(caught.value, bbcodec.FormatError) and isinstance(caught.value, ValueError)
    with pytest.raises(bbcodec.Error):
        bbcodec.read_info(b"junk")


def test_bbcodec_error_catches_bad_images_and_qualities():
    with pytest.raises(bbcodec.ImageError, match="not a NoneType|cannot encode a NoneType"):
        bbcodec.encode(None)
    with pytest.raises(bbcodec.ImageError, match="uint8 array"):
        bbcodec.encode(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(bbcodec.QualityError):
        bbcodec.encode(random_image(8, 8), quality=quality.MAX + 1)
    with pytest.raises(bbcodec.Error):
        bbcodec.encode(random_image(8, 8), quality="best")


def test_the_errors_module_imports_nothing():
    tree = ast.parse(Path(errors.__file__).read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)


def test_importing_the_cli_loads_no_numpy():
    code = "import sys, bbcodec.cli; assert 'numpy' not in sys.modules, 'numpy loaded'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _unknown_weights_file() -> bytes:
    """A well-formed .bbc (valid CRC) naming weights that are not installed."""
    body = bytearray(bbcodec.encode(random_image(8, 8, seed=3))[:-4])
    body[16:24] = b"\x12\x34\x56\x78\x9a\xbc\xde\xf0"
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def test_pillow_gets_the_exceptions_it_expects():
    with pytest.raises(UnidentifiedImageError):  # SyntaxError from _open, as Pillow's plugins do
        Image.open(io.BytesIO(fmt.MAGIC + b"junk" * 20))
    with Image.open(io.BytesIO(_unknown_weights_file())) as im:  # the header is fine
        assert im.size == (8, 8)
        with pytest.raises(OSError, match="123456789abcdef0") as caught:
            im.load()
    assert isinstance(caught.value.__cause__, bbcodec.WeightsError)
    with pytest.raises(ValueError, match="does not take the save option method"):
        Image.new("RGB", (4, 4)).save(io.BytesIO(), format="BBC", method=6)
    damaged = bytearray(bbcodec.encode(random_image(8, 8, seed=3)))
    damaged[-1] ^= 1  # the CRC
    with pytest.raises(UnidentifiedImageError, match="damaged .bbc file: corrupt .bbc file .CRC-32 mismatch"):
        Image.open(io.BytesIO(bytes(damaged)))
    with pytest.raises(ValueError, match="quality"):
        Image.new("RGB", (4, 4)).save(io.BytesIO(), format="BBC", quality=quality.MAX + 1)


def test_folder_runs_turn_errors_into_failed_entries(tmp_path):
    (tmp_path / "good.png").write_bytes(images.png_bytes(random_image(9, 11, seed=1)))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    pairs = files.scan_folder(tmp_path, out, decode=False).pairs
    results = list(files.run_folder("encode", pairs, files.EncodeOptions(), jobs=1))
    bad, good = results  # sorted by name
    assert isinstance(bad, files.Failed) and "not an image" in bad.error
    assert bad.to_dict() == {"input": str(tmp_path / "bad.png"), "error": bad.error}
    assert isinstance(good, files.EncodeResult) and good.quality == quality.DEFAULT and good.psnr is None
    summary = files.summarize("encode", results)
    assert (summary.files, summary.done, summary.failed) == (2, 1, 1)
    assert summary.bytes_after == (out / "good.bbc").stat().st_size
    assert summary.bpp_overall == pytest.approx(good.bpp)
    with pytest.raises(bbcodec.Error):
        files.decode_file(str(tmp_path / "bad.png"), str(out / "x.png"))
