"""The Python API: encode/decode/read_info, and its docstring example."""

from __future__ import annotations

import doctest

import numpy as np
from conftest import random_image
from PIL import Image

import bbcodec


def test_docstring_examples_run():
    result = doctest.testmod(bbcodec, verbose=False)
    assert result.attempted >= 3 and result.failed == 0


def test_api_round_trip_from_array_and_from_pillow():
    arr = random_image(19, 23, seed=5)
    data = bbcodec.encode(arr, quality=6)
    assert data == bbcodec.encode(Image.fromarray(arr), quality=6)
    img = bbcodec.decode(data)
    assert img.mode == "RGB" and img.size == (23, 19)
    info = bbcodec.read_info(data)
    assert isinstance(info, bbcodec.Info)
    assert info.quality == 6.0 and info.file_bytes == len(data) and (info.width, info.height) == (23, 19)
    assert np.asarray(img).shape == (19, 23, 3)


def test_read_info_returns_a_frozen_info_with_the_keys_of_before_and_then_streams_and_chunks():
    import dataclasses

    import pytest

    data = bbcodec.encode(random_image(14, 13, seed=1))
    info = bbcodec.read_info(data)
    assert list(info.to_dict()) == ["version", "width", "height", "channels", "quality", "model_id",
                                    "weights_sha256", "image_digest", "payload_bytes", "file_bytes", "bpp",
                                    "streams", "chunks", "flat_blocks", "lossless", "reduced", "quality_range",
                                    "linear_filter", "linear_filter_bytes"]
    assert info.version == 2 and info.streams == 1 and info.chunks == {}  # 2 block rows: one stream
    assert info.flat_blocks == 0 and info.lossless is None
    assert info.to_dict()["width"] == info.width == 13 and info.quality == bbcodec.model.quality.DEFAULT
    assert info.bpp == 8 * len(data) / 182 and len(info.weights_sha256) == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.width = 1


def test_pillow_plugin_round_trips_through_open_and_save(tmp_path):
    import doctest as dt

    from bbcodec import pillow_plugin

    assert dt.testmod(pillow_plugin).failed == 0
    arr = random_image(21, 18, seed=6)
    path = tmp_path / "x.bbc"
    Image.fromarray(arr).save(path, quality=3)  # format chosen from the extension
    with Image.open(path) as im:
        assert im.format == "BBC" and im.size == (18, 21) and im.info["quality"] == 3.0
        pixels = np.asarray(im)
    assert np.array_equal(pixels, np.asarray(bbcodec.decode(path.read_bytes())))
    gray = tmp_path / "g.bbc"
    Image.fromarray(arr[..., 0]).save(gray)
    with Image.open(gray) as im:
        assert im.mode == "L"


def test_pillow_refuses_a_corrupt_bbc_file_as_unidentified(tmp_path):
    import pytest
    from PIL import UnidentifiedImageError

    path = tmp_path / "bad.bbc"
    data = bytearray(bbcodec.encode(random_image(8, 8), 4))
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


def test_reading_an_image_leaves_pillows_pixel_limit_alone():
    """open_image used to set Image.MAX_IMAGE_PIXELS = None for the whole process."""
    from bbcodec import images

    before = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 12345678
        images.read_image(images.png_bytes(random_image(9, 9)), "x")
        assert Image.MAX_IMAGE_PIXELS == 12345678
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_pillow_open_reads_the_header_and_does_not_decode(tmp_path, monkeypatch):
    from bbcodec.coding import loop as codec

    path = tmp_path / "x.bbc"
    path.write_bytes(bbcodec.encode(random_image(16, 16, seed=2)))
    calls = []
    monkeypatch.setattr(codec, "decode", lambda *a, **k: calls.append(1))
    with Image.open(path) as im:
        assert im.size == (16, 16) and im.mode == "RGB"
    assert calls == []
