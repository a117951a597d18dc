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
    assert info["quality"] == 6.0 and info["file_bytes"] == len(data)
    assert np.asarray(img).shape == (19, 23, 3)
