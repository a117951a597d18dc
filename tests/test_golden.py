"""A committed .bbc file must keep decoding to its committed checksum.

Regenerate (after shipping new weights, and review the diff) with
    BBCODEC_REGEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from bbcodec import codec, format, weights

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden-q4.bbc"
EXPECTED = DATA / "golden-q4.json"


def golden_image() -> np.ndarray:
    """A 37x53 test picture from integer arithmetic only (no library resampling)."""
    y, x = np.mgrid[0:37, 0:53]
    r = (x * 4 + y * 2) % 256
    g = ((x - 26) ** 2 + (y - 18) ** 2) % 256
    b = np.where((x // 9 + y // 7) % 2 == 0, 40, 210) + (x % 5)
    return np.stack([r, g, b], axis=2).astype(np.uint8)


def test_golden_file_decodes_to_the_committed_checksum_and_re_encodes_identically():
    w = weights.default()
    if os.environ.get("BBCODEC_REGEN"):
        data, rec = codec.encode(golden_image(), 4, w)
        GOLDEN.write_bytes(data)
        EXPECTED.write_text(json.dumps({
            "weights": w.path.name,
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "pixels_sha256": hashlib.sha256(rec.tobytes()).hexdigest(),
        }, indent=1) + "\n")
    expected = json.loads(EXPECTED.read_text())
    data = GOLDEN.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"]
    header, payload = format.unpack(data)
    img = codec.decode(header, payload, weights.for_header(header))
    assert hashlib.sha256(img.tobytes()).hexdigest() == expected["pixels_sha256"]
    assert codec.encode(golden_image(), 4, w)[0] == data
