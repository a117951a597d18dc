"""Flat blocks (format version 4): blocks of one colour come back exactly, cost a few
bytes, and leave the other blocks and the files of images without them as they were."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line, random_image, run_cli, tiny_frozen

from bbcodec import codec as entry
from bbcodec.coding import format, streams
from bbcodec.coding import loop as codec
from bbcodec.errors import FormatError
from bbcodec.model import blocks
from bbcodec.model.weights import Weights

COLOURS = [(0, 200, 0), (0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255), (255, 0, 255), (17, 130, 250)]


def flat_image(colour: tuple[int, ...], h: int = 64, w: int = 64) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = colour
    return img


def round_trip(img: np.ndarray, quality: float, w: Weights, threads: int = 1, **kw) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(file, the encoder's image, the decoder's image)."""
    data, rec = codec.encode(img, quality, w.model, w.prefix, threads=threads, **kw)
    return data, rec, codec.decode(*format.unpack(data), w.model, threads=threads)


def mixed_image(kodak_crop: np.ndarray) -> np.ndarray:
    """A photo pasted on a flat background, beside text-like strokes: flat, half-flat
    and coded blocks, with block edges not on the photo's."""
    img = flat_image((240, 240, 235), 90, 133)
    img[13:61, 30:94] = kodak_crop
    img[70:78, 5:120:3] = 0  # vertical strokes, one pixel wide
    img[66:86, 124] = (200, 0, 0)
    return img


def flat_blocks_exact(img: np.ndarray, out: np.ndarray) -> int:
    """How many flat blocks img has (asserting each comes back exactly in out)."""
    found = blocks.Flat.find(img)
    assert found is not None
    for r, c in zip(*np.nonzero(found.mask), strict=True):
        cut = np.s_[8 * r : 8 * r + 8, 8 * c : 8 * c + 8]
        assert np.array_equal(out[cut], img[cut])
    return int(found.mask.sum())


@pytest.mark.parametrize("colour", COLOURS)
def test_a_flat_colour_decodes_exactly_in_under_70_bytes_at_every_quality(colour, weights):
    for quality in (1, 4, 8):
        data, rec, out = round_trip(flat_image(colour), quality, weights)
        assert data[4] == format.FLAT and len(data) <= 70  # the goal: <= 120 at quality 4
        assert np.array_equal(out, flat_image(colour)) and np.array_equal(rec, out)
        header, payload = format.unpack(data)
        assert payload == b"" and header.flat is not None and header.flat.modes == b"\x01" * 64


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (3, 250, 77)])
def test_a_single_pixel_decodes_exactly(colour, weights):
    data, rec, out = round_trip(flat_image(colour, 1, 1), 4, weights)
    assert out.tolist() == [[list(colour)]] and np.array_equal(rec, out) and len(data) <= 64
    data, rec, out = round_trip(np.full((1, 1), colour[1], np.uint8), 4, weights)
    assert out.tolist() == [[colour[1]]] and format.unpack(data)[0].channels == 1


def test_edge_blocks_are_flat_by_their_pixels_inside_the_image():
    img = random_image(21, 30, seed=3).copy()
    img[16:, 24:] = (9, 8, 7)  # the corner block: 5 x 6 pixels inside, 3 x 2 padding
    img[16:, 16:24] = (1, 2, 3)
    img[20, 17] = (1, 2, 4)  # one pixel off: not flat
    found = blocks.Flat.find(img)
    assert found is not None and np.argwhere(found.mask).tolist() == [[2, 3]]
    assert found.colour[2, 3].tolist() == [9, 8, 7]
    assert blocks.Flat.find(random_image(21, 30, seed=3)) is None


@pytest.mark.parametrize("effort", [1, 2, 3])
def test_half_flat_images_keep_their_flat_blocks_exact_and_the_decoder_the_encoders_image(effort, weights,
                                                                                         kodak_crop):
    img = mixed_image(kodak_crop)
    data, rec, out = round_trip(img, 4, weights, effort=effort)
    assert data[4] == format.FLAT and np.array_equal(rec, out)
    assert flat_blocks_exact(img, out) > 80
    photo = np.s_[16:56, 32:88]  # whole blocks of the photo: coded, near it
    assert np.abs(out[photo].astype(int) - img[photo]).mean() < 8


def test_gray_images_carry_one_byte_per_flat_block(weights, kodak_crop):
    img = mixed_image(kodak_crop)[:, :, 1].copy()
    data, rec, out = round_trip(img, 3, weights)
    header = format.unpack(data)[0]
    assert header.channels == 1 and header.flat is not None
    assert len(header.flat.colours) == header.flat.modes.count(1) == blocks.Flat.find(np.dstack([img] * 3)).mask.sum()
    assert np.array_equal(rec, out) and out.ndim == 2
    flat_blocks_exact(np.dstack([img] * 3), np.dstack([out] * 3))


@pytest.fixture
def every_wavefront_split(monkeypatch):
    """Small images cut among processes as large ones are (as in test_parallel.py)."""
    monkeypatch.setattr(streams, "MIN_CHUNK", 1)
    monkeypatch.setattr(streams, "default_count", lambda rows, cols: min(4, rows))


def test_files_and_images_are_the_same_for_any_threads(weights, family2_weights, kodak_crop, every_wavefront_split):
    img = mixed_image(kodak_crop)
    for w in (weights, family2_weights):
        results = {tuple(hashlib.sha256(x.tobytes() if isinstance(x, np.ndarray) else x).hexdigest()
                         for x in round_trip(img, 5, w, threads=n)) for n in (1, 2, 3)}
        assert len(results) == 1
        (_, rec, dec), = results
        assert rec == dec


@pytest.mark.parametrize("kernels", [(3, 3, 1, 1), (3, 1, 3, 3)])
def test_kernel_3_hidden_layers_read_zero_features_of_flat_blocks_for_any_threads(kernels, every_wavefront_split):
    model = tiny_frozen(kernels=kernels, seed=4)
    w = Weights(name="tiny", path=Path("tiny"), sha256="ab" * 32, model=model)
    img = random_image(41, 90, seed=7).copy()
    img[8:24, 16:48] = (30, 60, 90)  # flat blocks above and left of coded ones, in the rolling rows
    img[32:, 56:] = 255
    results = {round_trip(img, 3.5, w, threads=n)[0] for n in (1, 2, 3)}
    assert len(results) == 1 and next(iter(results))[4] == format.FLAT
    ctx = blocks.BlockContext(3, 4, rolling=True)
    ctx.at(np.array([1]), np.array([2])).with_neighbours("k", np.ones((1, 5)))
    ctx.clear(np.array([1]), np.array([2]))
    assert not ctx.at(np.array([2]), np.array([1])).with_neighbours("k", np.ones((1, 5)))[:, 10:15].any()  # UR


def test_natural_images_keep_the_old_version_and_bytes(weights, kodak_crop):
    data, rec = codec.encode(kodak_crop, 4, weights.model, weights.prefix, threads=1)
    assert data[4] == format.VERSION and blocks.Flat.find(kodak_crop) is None
    assert codec.encode(kodak_crop, 4, weights.model, weights.prefix, threads=1, flat=False)[0] == data
    # without flat blocks an image with flat areas is coded by the networks, as before version 4
    old = codec.encode(flat_image((0, 200, 0)), 4, weights.model, weights.prefix, flat=False)[0]
    assert old[4] == format.VERSION and len(old) > 100


def test_alpha_and_metadata_ride_along_in_version_4(weights, kodak_crop):
    from bbcodec.codec import Extras

    img = mixed_image(kodak_crop)
    alpha = np.zeros(img.shape[:2], np.uint8)
    alpha[10:60, 20:100] = 200
    extras = Extras(alpha, b"icc" * 5, None, b"<x/>")
    r = entry.encode(img, 4, lossless=False, extras=extras, aq=0, linear_filter=False)  # also smaller in fewer colours
    assert r.data[4] == format.FLAT and set(format.read_chunks(r.data)) == {b"ICCP", b"XMP ", b"ALPH"}
    d = entry.decode(r.data)
    assert np.array_equal(d.image, r.reconstruction) and np.array_equal(d.extras.alpha, alpha)
    assert (d.extras.icc, d.extras.xmp) == (b"icc" * 5, b"<x/>")
    flat_blocks_exact(img, d.image)
    plain = entry.encode(img, 4, lossless=False, aq=0, linear_filter=False).data  # without chunks: version 4, none
    assert plain[4] == format.FLAT and struct.unpack_from("<I", plain, 40) == (0,)
    assert format.add_chunks(plain, extras.chunks()) == r.data
    assert format.read_from(io.BytesIO(r.data)) == r.data


def with_section(data: bytes, section: bytes) -> bytes:
    """A version 4 file with another block-mode section, its lengths and CRC redone."""
    (k,) = struct.unpack_from("<I", data, 44)
    body = data[:44] + struct.pack("<I", len(section)) + section + data[48 + k : len(data) - 4]
    return body + struct.pack("<I", zlib.crc32(body))


def deflate(raw: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(raw) + z.flush()


BAD_SECTIONS = {  # for a 17x9 image: 2 x 3 blocks, RGB
    "too few modes": (deflate(b"\x01\x00\x00"), "3 bytes where 6"),
    "a mode of 2": (deflate(b"\x01\x00\x00\x02\x00\x00" + b"abc"), "other than 0"),
    "no flat block": (deflate(b"\x00" * 6), "no flat block"),
    "too few colours": (deflate(b"\x01\x00\x00\x01\x00\x00abcde"), "5 colour bytes where 6"),
    "too many colours": (deflate(b"\x01" + b"\x00" * 5 + b"abcd"), "more data"),
    "a bomb": (deflate(b"\x01" + b"\x00" * 5 + bytes(1 << 24)), "more data"),
    "bytes after the stream": (deflate(b"\x01" + b"\x00" * 5 + b"abc") + b"\x00", "after the end"),
    "no end": (deflate(b"\x01" + b"\x00" * 5 + b"abc")[:-1], "no end|colour bytes|invalid"),
    "not deflate": (b"\xff" * 9, "invalid deflate"),
    "empty": (b"", "0 bytes where 6"),
}


def small_v4() -> bytes:
    modes = format.BlockModes(b"\x01" + b"\x00" * 5, b"abc")
    return format.pack(format.Header(17, 9, 4 * 256, b"\xaa" * 8, b"\xbb" * 8, flat=modes), b"\x01\x02\x03\x04")


def test_the_block_mode_section_packs_and_unpacks():
    data = small_v4()
    header, payload = format.unpack(data)
    assert header.version == format.FLAT and payload == b"\x01\x02\x03\x04"
    assert header.flat == format.BlockModes(b"\x01" + b"\x00" * 5, b"abc")
    assert len(data) == 52 + len(header.flat.deflated()) + 4
    assert format.read_from(io.BytesIO(data)) == data
    with pytest.raises(FormatError, match="truncated"):
        format.unpack(data[:50])
    with pytest.raises(FormatError, match="at least one flat block"):
        format.pack(format.Header(17, 9, 1024, b"\xaa" * 8, b"\xbb" * 8, version=format.FLAT), b"")


@pytest.mark.parametrize("case", list(BAD_SECTIONS))
def test_a_bad_block_mode_section_is_one_clear_format_error(case):
    section, message = BAD_SECTIONS[case]
    with pytest.raises(FormatError, match=f"block modes: .*({message})"):
        format.unpack(with_section(small_v4(), section))


def test_the_cli_refuses_a_corrupt_block_mode_section_with_one_line(weights, tmp_path):
    data = codec.encode(flat_image((5, 6, 7), 9, 17), 4, weights.model, weights.prefix)[0]
    for i, section in enumerate([BAD_SECTIONS["a mode of 2"][0], BAD_SECTIONS["no end"][0]]):
        bad = tmp_path / f"bad{i}.bbc"
        bad.write_bytes(with_section(data, section))
        assert "block modes" in one_error_line(run_cli("decode", str(bad), str(tmp_path / "out.png")))
    bad.write_bytes(data[:60])
    assert "truncated" in one_error_line(run_cli("decode", str(bad), str(tmp_path / "out.png")))


def test_flat_blocks_are_in_no_process_share_and_every_block_is_in_one_wave():
    from bbcodec.coding import lockstep

    rows, cols = 9, 11
    mask = np.random.default_rng(1).random((rows, cols)) < 0.4
    seen = np.zeros((rows, cols), int)
    for (shares, (fr, fc)), (r, c) in zip(lockstep.waves(rows, cols, 3, 2, mask), blocks.wavefronts(rows, cols),
                                          strict=True):
        assert mask[fr, fc].all() and set(zip(fr, fc, strict=True)) <= set(zip(r, c, strict=True))
        for i, (sr, sc) in enumerate(shares):
            assert not mask[sr, sc].any() and all(s in streams.owned(3, 2, i) for s in sr % 3)
            assert list(sr % 3) == sorted(sr % 3)  # stream order, as streams.runs reads it
            seen[sr, sc] += 1
        seen[fr, fc] += 1
    assert (seen == 1).all()


def test_info_counts_the_flat_blocks(weights, kodak_crop, tmp_path):
    import bbcodec

    img = mixed_image(kodak_crop)
    data = codec.encode(img, 4, weights.model, weights.prefix)[0]
    expected = int(blocks.Flat.find(img).mask.sum())
    assert expected > 0 and bbcodec.read_info(data).flat_blocks == expected
    (tmp_path / "m.bbc").write_bytes(data)
    proc = run_cli("info", str(tmp_path / "m.bbc"))
    assert proc.returncode == 0 and f"flat blocks:    {expected} (" in proc.stdout.decode()
