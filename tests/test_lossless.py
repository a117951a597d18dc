"""Lossless images (format version 5, coding/lossless.py, docs/format.md 10): exact round
trips through every transform, the encoder's choice against the lossy file, the options
that go with it, and files that break the rules."""

from __future__ import annotations

import io
import json
import lzma
import re
import struct
import zlib

import numpy as np
import pytest
from conftest import KODAK, random_image, run_cli
from PIL import Image, ImageDraw

import bbcodec
from bbcodec import codec, images, rd, synthetic
from bbcodec.coding import format, lossless, lzma2


def page(w: int = 160, h: int = 96) -> np.ndarray:
    """Black text on white: what the photo-trained networks code worst, LZMA best."""
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for y in range(2, h - 10, 12):
        draw.text((3, y), "The quick brown fox jumps 0123", fill=(0, 0, 0), font=synthetic.font(11))
    return np.asarray(im)


def ramp(w: int = 64, h: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 6, 255 - x * 2], axis=2).astype(np.uint8)


IMAGES = {
    "page": page(), "ramp": ramp(), "noise": np.random.default_rng(1).integers(0, 256, (23, 37, 3), np.uint8),
    "grey ramp": ramp()[:, :, 1].copy(), "one pixel": np.array([[[9, 200, 77]]], np.uint8),
    "grey page": page()[:, :, 0].copy(),
}


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("transform", range(len(format.TRANSFORMS)))
def test_every_transform_gives_the_image_back_exactly(name, transform):
    img = IMAGES[name]
    if transform == lossless.PALETTE and lossless.FORWARD[transform](img) is None:
        with pytest.raises(ValueError, match="palette"):
            lossless.encode_file(img, 1024, transform=transform)
        return
    data = lossless.encode_file(img, 1024, transform=transform)
    header, _ = format.unpack(data)
    assert header.version == format.LOSSLESS and header.transform == format.TRANSFORMS[transform]
    assert header.model_id == 0 and header.weights_sha256 == bytes(8)
    out = codec.decode(data)
    assert out.weights is None and out.image.dtype == np.uint8 and np.array_equal(out.image, img)


def test_the_default_writes_whichever_file_is_smaller():
    for img in (page(), ramp(256, 128)):
        exact, lossy = bbcodec.encode(img, 4), bbcodec.encode(img, 4, lossless=False)
        assert exact[4] == format.LOSSLESS and lossy[4] != format.LOSSLESS and len(exact) < len(lossy)
        assert np.array_equal(np.asarray(bbcodec.decode(exact)), img)
    exact = bbcodec.encode(page(), lossless=True)
    aim = 8 * len(exact) / page()[:, :, 0].size * 1.01  # below every quality's lossy file
    hit = codec.encode(page(), target_bpp=aim)
    assert hit.weights is None and hit.target_met is True and 8 * len(hit.data) / page()[:, :, 0].size <= aim
    photo = random_image(64, 96, seed=3)  # smooth noise: the exact file is far larger
    assert bbcodec.encode(photo, 4) == bbcodec.encode(photo, 4, lossless=False)


def test_the_smaller_file_is_chosen_at_every_quality_of_the_synthetic_set():
    chosen = set()
    for make in (synthetic.gradient_radial, synthetic.text_colour, synthetic.colour_patches, synthetic.line_art,
                 synthetic.colour_wheel):
        img = np.ascontiguousarray(make()[:96, :128])
        for q in (1, 8):
            auto, lossy = codec.encode(img, q), codec.encode(img, q, lossless=False)
            assert len(auto.data) <= len(lossy.data), make.__name__
            chosen.add(auto.data[4] == format.LOSSLESS)
            if auto.data[4] == format.LOSSLESS:
                err = [float(np.mean((img.astype(float) - e.reconstruction) ** 2)) for e in (auto, lossy)]
                assert err[0] <= err[1] and (auto.colours is not None or err[0] == 0)
                assert np.array_equal(codec.decode(auto.data).image, auto.reconstruction)
                assert bbcodec.read_info(auto.data).quality == q  # the quality asked for, recorded
    assert chosen == {True, False}


def test_where_even_the_exact_file_is_larger_fewer_colours_may_beat_the_lossy_one():
    img = synthetic.text_large()
    lossy = codec.encode(img, 1, lossless=False)
    got = codec.encode(img, 1)
    mse = lambda rec: float(np.mean((img.astype(float) - rec) ** 2))  # noqa: E731
    assert got.weights is None and got.colours in lossless.COLOURS
    assert len(got.data) < len(lossy.data) and mse(got.reconstruction) < mse(lossy.reconstruction)
    assert len(np.unique(got.reconstruction.reshape(-1, 3), axis=0)) <= got.colours
    assert np.array_equal(codec.decode(got.data).image, got.reconstruction)
    info = bbcodec.read_info(got.data)
    assert info.lossless == "palette" and info.reduced
    with Image.open(io.BytesIO(got.data)) as im:
        assert "lossless" not in im.info  # not the source's pixels
    exact = codec.encode(img, lossless=True).data
    assert exact[4] == format.LOSSLESS and len(exact) > len(lossy.data)


@pytest.mark.skipif(not (KODAK / "kodim20.png").exists(), reason="needs Kodak")
def test_a_photo_is_ruled_out_by_the_estimate_without_lzma(monkeypatch):
    def no_lzma(*a, **k):
        raise AssertionError("LZMA run on a photo")

    reduced = []
    colours = images.reduce_colours
    monkeypatch.setattr(lzma2, "compress", no_lzma)
    monkeypatch.setattr(images, "reduce_colours", lambda img, n: reduced.append(img.shape) or colours(img, n))
    photo = np.asarray(Image.open(KODAK / "kodim20.png").convert("RGB"))[:256]
    for q in (1, 8):
        assert bbcodec.encode(photo, q, threads=1)[4] != format.LOSSLESS
    assert all(shape[0] < photo.shape[0] for shape in reduced)  # at most a sample of its rows was reduced


def test_forced_lossless_takes_no_lossy_option_and_keeps_alpha_and_metadata():
    img = np.dstack([ramp(), (np.arange(64 * 40) % 251).reshape(40, 64).astype(np.uint8)])
    icc = b"an ICC profile" * 3
    im = Image.fromarray(img, "RGBA")
    im.info["icc_profile"] = icc
    data = bbcodec.encode(im, lossless=True)
    info = bbcodec.read_info(data)
    assert info.version == 5 and info.lossless is not None and info.quality == 8 and "alpha" in info.chunks
    back = bbcodec.decode(data)
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), img) and back.info["icc_profile"] == icc
    for bad in ({"quality": 3}, {"target_bpp": 1.0}, {"effort": 2}, {"tune": "psnr"}, {"lossless": "yes"},
                {"lossless": 1}, {"lossless": np.True_}):
        with pytest.raises(bbcodec.LosslessError):
            bbcodec.encode(img[:, :, :3], **{"lossless": True, **bad})


def test_the_pillow_plugin_saves_and_opens_lossless_files():
    buf = io.BytesIO()
    Image.fromarray(page()).save(buf, format="BBC", lossless=True)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.info.get("lossless") is True and np.array_equal(np.asarray(im), page())
    with pytest.raises(ValueError, match="lossless"):
        Image.fromarray(page()).save(io.BytesIO(), format="BBC", lossless=True, quality=2)


def test_the_cli_writes_reads_and_describes_a_lossless_file(tmp_path):
    src, out, back = tmp_path / "page.png", tmp_path / "page.bbc", tmp_path / "back.png"
    Image.fromarray(page()).save(src)
    proc = run_cli("encode", str(src), str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["lossless"] is True and report["weights"] is None and "psnr" not in report
    assert run_cli("decode", str(out), str(back)).returncode == 0
    assert np.array_equal(np.asarray(Image.open(back)), page())
    text = run_cli("info", str(out)).stdout.decode()
    assert "5, lossless" in text and "transform and LZMA2" in text and "weights sha256" not in text
    lossy = run_cli("encode", str(src), str(tmp_path / "lossy.bbc"), "--no-lossless", "--json")
    assert json.loads(lossy.stdout)["lossless"] is False
    big = tmp_path / "big.png"
    Image.fromarray(synthetic.text_large()).save(big)
    fewer = run_cli("encode", str(big), str(tmp_path / "big.bbc"), "-q", "1", "-v")
    said = (fewer.stdout + fewer.stderr).decode()
    found = re.search(r"reduced to (\d+) colours \(smaller and closer than quality 1\).* PSNR ([\d.]+) dB", said)
    assert fewer.returncode == 0 and found and 2 <= int(found[1]) <= 256, said  # how many: the lossy file's to beat
    back = np.asarray(bbcodec.decode((tmp_path / "big.bbc").read_bytes()))
    assert len(np.unique(back.reshape(-1, 3), axis=0)) <= int(found[1])
    assert f"{rd.psnr(synthetic.text_large(), back):.2f}" == found[2]
    assert "fewer colours" in run_cli("info", str(tmp_path / "big.bbc")).stdout.decode()
    for opt in (["-q", "3"], ["--tune", "psnr"], ["-e", "2"]):
        proc = run_cli("encode", str(src), str(out), "--lossless", *opt)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and "Error: lossless coding has no" in err and "Traceback" not in err, err
    assert np.array_equal(np.asarray(bbcodec.decode(out.read_bytes())), page())  # not clobbered


# -- files that break the rules (check 6 and check 13 of docs/format.md 2) ----------


def fields(data: bytes, **changes: int) -> bytes:
    """A copy of a version 5 file with header fields changed (offset: fmt, value) and the CRC redone."""
    body = bytearray(data[:-4])
    where = {"model_id": (36, "H"), "transform": (38, "H"), "weights": (16, "Q"), "version": (4, "B")}
    for k, v in changes.items():
        at, f = where[k]
        struct.pack_into("<" + f, body, at, v)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def with_stream(data: bytes, stream: bytes) -> bytes:
    """A version 5 file with its LZMA2 data replaced (payload_length and CRC redone)."""
    header, _ = format.unpack(data)
    return format.pack(header, stream)


def test_bad_header_fields_are_refused():
    data = lossless.encode_file(ramp(), 1024)
    for change, why in (({"model_id": 3}, "names no model"), ({"weights": 5}, "names no model"),
                        ({"transform": 4}, "unknown lossless transform"),
                        ({"transform": 0x200}, "unknown lossless transform")):
        with pytest.raises(bbcodec.FormatError, match=why):
            bbcodec.decode(fields(data, **change))


def test_bad_lzma_data_is_refused_without_inflating_more_than_the_image():
    img = ramp()
    data = lossless.encode_file(img, 1024, transform=0)
    _, stream = format.unpack(data)
    n = img.size
    raw = lzma.compress(bytes(n + 1), format=lzma.FORMAT_RAW, filters=lzma2.chain(n, 6))
    bomb = lzma.compress(bytes(1 << 24), format=lzma.FORMAT_RAW, filters=lzma2.chain(n, 6))
    for bad, why in ((stream[:-2], "corrupt|not exactly"), (stream + b"\0", "not exactly"),
                     (raw, "not exactly"), (bomb, "not exactly"), (b"\xff" * 9, "corrupt|not exactly")):
        with pytest.raises(bbcodec.FormatError, match=why):
            bbcodec.decode(with_stream(data, bad))
    with pytest.raises(bbcodec.FormatError, match="empty lossless data"):
        format.pack(format.unpack(data)[0], b"")


def test_a_palette_index_beyond_the_colours_is_refused():
    img = page()
    data = lossless.encode_file(img, 1024, transform=lossless.PALETTE)
    prefix, index = lossless.FORWARD[lossless.PALETTE](img)
    table = prefix + index.tobytes()
    assert lzma2.decompress(format.unpack(data)[1], len(table), "test") == table
    count = table[0] + 1
    bad = bytearray(table)
    bad[1 + 3 * count] = count  # the first pixel's index: one past the last colour
    forged = lzma2.compress(bytes(bad))
    with pytest.raises(bbcodec.FormatError, match="palette index"):
        bbcodec.decode(with_stream(data, forged))


def test_a_changed_pixel_fails_the_digest():
    img = ramp()
    data = lossless.encode_file(img, 1024, transform=0)
    other = img.copy()
    other[0, 0, 0] ^= 1
    forged = lzma2.compress(other.tobytes())
    with pytest.raises(bbcodec.DecodeError, match="digest"):
        bbcodec.decode(with_stream(data, forged))
