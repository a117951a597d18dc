"""Committed .bbc files must keep decoding to their committed checksums: one per shipped
weights file and format version (version 1 files were made before version 2 existed;
versions 3, 4, 6 and 7, chunks, flat blocks, quality offsets and a linear filter, one
each, of the default weights; version 5, lossless, one per transform and no weights), so files written with earlier default
weights or versions stay readable; a file of the current version must also be what the
encoder writes today, byte for byte.

Add the golden file of new weights (after shipping them; review the diff) with
    BBCODEC_REGEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from bbcodec.coding import format
from bbcodec.coding import loop as codec
from bbcodec.model import weights

DATA = Path(__file__).parent / "data"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def golden_image() -> np.ndarray:
    """A 37x53 test picture from integer arithmetic only (no library resampling)."""
    y, x = np.mgrid[0:37, 0:53]
    r = (x * 4 + y * 2) % 256
    g = ((x - 26) ** 2 + (y - 18) ** 2) % 256
    b = np.where((x // 9 + y // 7) % 2 == 0, 40, 210) + (x % 5)
    return np.stack([r, g, b], axis=2).astype(np.uint8)


GOLDEN_STREAMS = 3  # the current version's golden files code 3 streams (of the image's 5 block rows)


def golden_paths(name: str, version: int = format.VERSION) -> tuple[Path, Path]:
    """The .bbc and .json of one weights file (NAME-<sha8>.npz) and format version."""
    stem = ("golden-q4-" if version == 1 else f"golden-v{version}-q4-") + name.removesuffix(".npz")
    return DATA / f"{stem}.bbc", DATA / f"{stem}.json"


def regenerate(golden: Path, expected_path: Path, name: str, data: bytes, pixels: np.ndarray, **more: object) -> None:
    """Write a golden file and what it must decode to (BBCODEC_REGEN, for new weights)."""
    golden.write_bytes(data)
    expected_path.write_text(json.dumps({
        "weights": name,
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        **more,
    }, indent=1) + "\n")


SHIPPED = list(weights.registered(WEIGHTS_DIR))
CASES = [(n, v) for n in SHIPPED for v in format.VERSIONS
         if v not in (format.CHUNKED, format.FLAT, format.LOSSLESS, format.ADAPTIVE, format.LINEAR)
         and (v == format.VERSION or golden_paths(n, v)[0].exists())]  # 3, 4, 5: below


def test_every_shipped_weights_file_has_a_golden_file():
    assert SHIPPED, "no weights listed in weights/SHA256SUMS"
    assert any(v == 1 for _, v in CASES), "the version 1 golden files are gone"
    if os.environ.get("BBCODEC_REGEN"):
        return
    missing = [n for n in SHIPPED if not golden_paths(n)[0].exists()]
    assert not missing, f"no golden file for {missing}: run with BBCODEC_REGEN=1"


@pytest.mark.parametrize(("name", "version"), CASES)
def test_golden_file_decodes_to_the_committed_checksum_and_re_encodes_identically(name, version):
    w = weights.load(WEIGHTS_DIR / name)
    golden, expected_path = golden_paths(name, version)
    if os.environ.get("BBCODEC_REGEN") and not golden.exists():
        regenerate(golden, expected_path, name, *codec.encode(golden_image(), 4, w.model, w.prefix,
                                                             n_streams=GOLDEN_STREAMS))
    expected = json.loads(expected_path.read_text())
    assert expected["weights"] == name
    data = golden.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"]
    header, payload = format.unpack(data)
    assert header.version == version
    found = weights.for_file(header.weights_sha256, header.model_id)  # the decoder finds these weights from the header alone
    assert found.path.name == name
    img = codec.decode(header, payload, found.model)
    assert hashlib.sha256(img.tobytes()).hexdigest() == expected["pixels_sha256"]
    if version == format.VERSION:
        assert header.streams == GOLDEN_STREAMS
        assert codec.encode(golden_image(), 4, w.model, w.prefix, n_streams=GOLDEN_STREAMS)[0] == data


def golden_extras():
    """What the version 3 golden file carries besides its pixels: an alpha plane (a
    gradient with a transparent hole), an ICC profile, EXIF and XMP (made-up bytes: the
    container keeps them as they are)."""
    from bbcodec.codec import Extras

    y, x = np.mgrid[0:37, 0:53]
    alpha = np.where((x - 26) ** 2 + (y - 18) ** 2 < 64, 0, (x * 5) % 256).astype(np.uint8)
    return Extras(alpha, b"an ICC profile" * 7, b"II*\0" + bytes(range(40)), b"<x:xmpmeta>golden</x:xmpmeta>")


def with_golden(version: int) -> list[str]:
    """The shipped weights with a golden file of this version, and the default (made with
    BBCODEC_REGEN): a file of every weights that ever was the default keeps decoding."""
    return [n for i, n in enumerate(SHIPPED) if i == 0 or golden_paths(n, version)[0].exists()]


@pytest.mark.parametrize("name", with_golden(format.CHUNKED))
def test_the_version_3_golden_file_decodes_with_its_alpha_and_metadata_and_re_encodes_identically(name):
    from bbcodec import codec as entry

    golden, expected_path = golden_paths(name, format.CHUNKED)
    w = weights.load(WEIGHTS_DIR / name)
    if os.environ.get("BBCODEC_REGEN") and not golden.exists():
        data = entry.encode(golden_image(), 4, weights=WEIGHTS_DIR / name, lossless=False, linear_filter=False,
                            extras=golden_extras()).data
        regenerate(golden, expected_path, name, data, entry.decode(data).pixels)
    expected = json.loads(expected_path.read_text())
    data = golden.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"] and data[4] == format.CHUNKED
    r = entry.decode(data)
    assert r.weights.path.name == name == expected["weights"] and r.pixels.shape == (37, 53, 4)
    assert hashlib.sha256(r.pixels.tobytes()).hexdigest() == expected["pixels_sha256"]
    want = golden_extras()
    assert np.array_equal(r.extras.alpha, want.alpha)
    assert (r.extras.icc, r.extras.exif, r.extras.xmp) == (want.icc, want.exif, want.xmp)
    assert entry.encode(golden_image(), 4, weights=w.path, lossless=False, linear_filter=False, extras=want).data == data


def golden_flat_image() -> np.ndarray:
    """golden_image() on a flat background, with flat bands: flat blocks (version 4)
    beside coded ones, and edge blocks flat by their pixels inside the image."""
    img = np.empty((37, 53, 3), np.uint8)
    img[:] = (30, 144, 255)
    img[9:30, 12:41] = golden_image()[9:30, 12:41]
    img[32:, :] = (250, 250, 250)
    img[:, 48:] = 0
    return img


@pytest.mark.parametrize("name", with_golden(format.FLAT))
def test_the_version_4_golden_file_decodes_with_its_flat_blocks_and_re_encodes_identically(name):
    golden, expected_path = golden_paths(name, format.FLAT)
    w = weights.load(WEIGHTS_DIR / name)
    if os.environ.get("BBCODEC_REGEN") and not golden.exists():
        data, rec = codec.encode(golden_flat_image(), 4, w.model, w.prefix, n_streams=GOLDEN_STREAMS)
        regenerate(golden, expected_path, name, data, rec, flat_blocks=format.unpack(data)[0].flat.modes.count(1),
                   zlib=zlib.ZLIB_RUNTIME_VERSION)  # the section's deflate bytes are this zlib's
    expected = json.loads(expected_path.read_text())
    data = golden.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"] and data[4] == format.FLAT
    header, payload = format.unpack(data)
    assert header.flat is not None and header.flat.modes.count(1) == expected["flat_blocks"] > 0
    found = weights.for_file(header.weights_sha256, header.model_id)
    assert found.path.name == name == expected["weights"]
    img = codec.decode(header, payload, found.model)
    assert hashlib.sha256(img.tobytes()).hexdigest() == expected["pixels_sha256"]
    again = codec.encode(golden_flat_image(), 4, w.model, w.prefix, n_streams=GOLDEN_STREAMS)[0]
    # the same fields, modes and payload; the deflated section is zlib's (its bytes, where
    # another zlib compresses differently, may differ: a decoder takes any valid deflate)
    assert format.unpack(again) == (header, payload)
    assert again == data or zlib.ZLIB_RUNTIME_VERSION != expected["zlib"]


def golden_palette_image() -> np.ndarray:
    """Five colours in stripes and checks: a palette image."""
    y, x = np.mgrid[0:37, 0:53]
    table = np.array([[255, 255, 255], [0, 0, 0], [200, 30, 30], [30, 90, 200], [250, 200, 0]], np.uint8)
    return table[((x // 5) * 3 + (y // 4) * 2 + (x * y) % 3) % 5]


LOSSLESS_GOLDEN = {  # file name part -> (transform, image)
    "interleaved": (0, golden_image), "left": (1, golden_image), "gradient": (2, golden_image),
    "palette": (3, golden_palette_image), "gradient-grey": (2, lambda: golden_image()[:, :, 0].copy()),
}


@pytest.mark.parametrize("case", LOSSLESS_GOLDEN)
def test_the_version_5_golden_files_decode_exactly_and_re_encode_identically(case):
    from bbcodec import codec as entry
    from bbcodec.coding import lossless

    transform, make = LOSSLESS_GOLDEN[case]
    golden, expected_path = DATA / f"golden-v5-{case}.bbc", DATA / f"golden-v5-{case}.json"
    if os.environ.get("BBCODEC_REGEN") and not golden.exists():
        data = lossless.encode_file(make(), 1024, transform=transform)
        regenerate(golden, expected_path, "none", data, make(), transform=format.TRANSFORMS[transform])
    expected = json.loads(expected_path.read_text())
    data = golden.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"] and data[4] == format.LOSSLESS
    r = entry.decode(data)
    assert r.weights is None and r.header.transform == expected["transform"]
    assert hashlib.sha256(r.image.tobytes()).hexdigest() == expected["pixels_sha256"]
    assert np.array_equal(r.image, make())
    assert lossless.encode_file(make(), 1024, transform=transform) == data


GOLDEN_AQ = 0.5  # the version 6 golden file's adaptive-quantisation strength


def golden_aq_image() -> np.ndarray:
    """74x106: golden_image() (texture) and golden_flat_image() (flat blocks) beside each
    other, over a smooth ramp and the flat image again: regions of several activities,
    so that the encoder's offsets differ (coding/aq.py), with flat blocks among them."""
    y, x = np.mgrid[0:37, 0:53]
    ramp = np.stack([x * 4, y * 6, 255 - x * 3], axis=2).astype(np.uint8)
    return np.concatenate([np.concatenate([golden_image(), golden_flat_image()], axis=1),
                           np.concatenate([ramp, golden_flat_image()], axis=1)], axis=0)


def its_offsets(monkeypatch: pytest.MonkeyPatch, header: format.Header) -> None:
    """The encoder's offsets made the file's own: how the encoder chooses them (aq.py) may
    change; coding a block at its offset's quality must not."""
    rows, cols = -(-header.height // 8), -(-header.width // 8)
    dq = np.frombuffer(header.flat.dq, np.int8).reshape(rows, cols).copy()
    monkeypatch.setattr(codec, "aq_offsets", lambda *args, **kw: dq)


@pytest.mark.parametrize("name", with_golden(format.ADAPTIVE))
def test_the_version_6_golden_file_decodes_with_its_block_qualities_and_re_encodes_identically(name, monkeypatch):
    golden, expected_path = golden_paths(name, format.ADAPTIVE)
    w = weights.load(WEIGHTS_DIR / name)
    if os.environ.get("BBCODEC_REGEN") and not golden.exists():
        data, rec = codec.encode(golden_aq_image(), 4, w.model, w.prefix, n_streams=GOLDEN_STREAMS, aq=GOLDEN_AQ)
        regenerate(golden, expected_path, name, data, rec, dq_sha256=hashlib.sha256(format.unpack(data)[0].flat.dq)
                   .hexdigest(), zlib=zlib.ZLIB_RUNTIME_VERSION)
    expected = json.loads(expected_path.read_text())
    data = golden.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"] and data[4] == format.ADAPTIVE
    header, payload = format.unpack(data)
    assert header.adaptive and header.flat.modes.count(1) > 0
    assert hashlib.sha256(header.flat.dq).hexdigest() == expected["dq_sha256"] and len(set(header.flat.dq)) > 1
    found = weights.for_file(header.weights_sha256, header.model_id)
    assert found.path.name == name == expected["weights"]
    img = codec.decode(header, payload, found.model)
    assert hashlib.sha256(img.tobytes()).hexdigest() == expected["pixels_sha256"]
    its_offsets(monkeypatch, header)
    again = codec.encode(golden_aq_image(), 4, w.model, w.prefix, n_streams=GOLDEN_STREAMS, aq=GOLDEN_AQ)[0]
    assert format.unpack(again) == (header, payload)
    assert again == data or zlib.ZLIB_RUNTIME_VERSION != expected["zlib"]


@pytest.mark.parametrize("name", with_golden(format.LINEAR))
def test_the_version_7_golden_file_decodes_with_its_linear_filter_and_re_encodes_identically(name, monkeypatch):
    """golden_aq_image() with offsets, flat blocks and a linear filter: every section of
    version 7 at once."""
    golden, expected_path = golden_paths(name, format.LINEAR)
    w = weights.load(WEIGHTS_DIR / name)

    def encode() -> tuple[bytes, np.ndarray]:
        return codec.encode(golden_aq_image(), 4, w.model, w.prefix, n_streams=GOLDEN_STREAMS, aq=GOLDEN_AQ,
                            linear=True)

    if os.environ.get("BBCODEC_REGEN") and not golden.exists():
        data, rec = encode()
        regenerate(golden, expected_path, name, data, rec,
                   linear_sha256=hashlib.sha256(format.unpack(data)[0].linear).hexdigest(), zlib=zlib.ZLIB_RUNTIME_VERSION)
    expected = json.loads(expected_path.read_text())
    data = golden.read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"] and data[4] == format.LINEAR
    header, payload = format.unpack(data)
    assert header.adaptive and header.flat.modes.count(1) > 0
    assert hashlib.sha256(header.linear).hexdigest() == expected["linear_sha256"]
    found = weights.for_file(header.weights_sha256, header.model_id)
    assert found.path.name == name == expected["weights"]
    img = codec.decode(header, payload, found.model)
    assert hashlib.sha256(img.tobytes()).hexdigest() == expected["pixels_sha256"]
    its_offsets(monkeypatch, header)
    again = encode()[0]
    assert format.unpack(again) == (header, payload)
    assert again == data or zlib.ZLIB_RUNTIME_VERSION != expected["zlib"]
