"""Adaptive quantisation (format version 6): each block at its own quality, decoded
exactly for any threads and effort, its offsets checked, chosen where the eye needs them,
and off (the old versions and bytes) when its strength is 0."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import one_error_line, random_image, run_cli

import bbcodec
from bbcodec import codec as entry
from bbcodec.coding import aq, format, streams
from bbcodec.coding import loop as codec
from bbcodec.errors import AQError, FormatError, LosslessError
from bbcodec.model import blocks


@pytest.fixture
def every_wavefront_split(monkeypatch):
    """Small images cut among processes as large ones are (as in test_parallel.py)."""
    monkeypatch.setattr(streams, "MIN_CHUNK", 1)
    monkeypatch.setattr(streams, "default_count", lambda rows, cols: min(4, rows))


def textured_and_smooth(kodak_crop: np.ndarray) -> np.ndarray:
    """A 96x128 picture: noise-like texture on the left, a smooth ramp on the right, a
    photo crop below, a flat corner (regions of every kind of activity)."""
    img = np.empty((96, 128, 3), np.uint8)
    img[:, :64] = random_image(96, 64, seed=3)
    y, x = np.mgrid[0:96, 0:64]
    img[:, 64:] = np.stack([x * 3, y * 2, 100 + x], axis=2).astype(np.uint8)
    img[48:, 32:96] = np.tile(kodak_crop, (1, 1, 1))[:48, :64]
    img[80:, 112:] = (20, 40, 60)
    return img


def round_trip(img, quality, w, threads=1, **kw):
    data, rec = codec.encode(img, quality, w.model, w.prefix, threads=threads, **kw)
    return data, rec, codec.decode(*format.unpack(data), w.model, threads=threads)


def block_qualities(data: bytes) -> np.ndarray:
    header, _ = format.unpack(data)
    rows, cols = blocks.grid_shape(header.height, header.width)
    dq = np.frombuffer(header.flat.dq, np.int8).reshape(rows, cols)
    return header.quality_x256 + format.DQ_STEP * dq.astype(int)


def test_offsets_raise_smooth_areas_and_leave_texture(kodak_crop):
    img = textured_and_smooth(kodak_crop)
    dq = aq.offsets(img, 4 * 256, 0.3)
    assert dq is not None and dq.dtype == np.int8 and dq.shape == blocks.grid_shape(96, 128)
    assert (dq[:8, :8] == 0).all() and (dq[:8, 8:] > 0).all()  # texture as it is, the ramp higher
    assert (dq % aq.STEP == 0).all() and dq.min() >= 0 and dq.max() * format.DQ_STEP <= aq.MAX_OFFSET * 256
    stronger = aq.offsets(img, 4 * 256, 0.6)
    assert np.abs(stronger).sum() > np.abs(dq).sum()
    flat = np.zeros(dq.shape, bool)
    flat[10:, 14:] = True
    assert not aq.offsets(img, 4 * 256, 0.3, flat)[flat].any()
    qx = 7.5 * 256 + format.DQ_STEP * aq.offsets(img, 7.5 * 256, 1.0).astype(int)  # within 1..8
    assert qx.max() == 2048 and (qx == 7.5 * 256).any()
    assert aq.offsets(img, 8 * 256, 1.0) is None  # nothing above 8
    assert aq.offsets(img, 1024, 0.0) is None
    assert aq.offsets(np.full((64, 64, 3), 9, np.uint8), 1024, 0.5) is None  # one activity: no offset


def test_blocks_beside_flat_ones_are_raised_even_in_texture(kodak_crop):
    img = textured_and_smooth(kodak_crop)
    flat = np.zeros(blocks.grid_shape(96, 128), bool)
    flat[2:4, 2:4] = True  # inside the textured half, which keeps its quality otherwise
    dq = aq.offsets(img, 4 * 256, 0.4, flat)
    near = aq.beside(flat) & ~flat
    assert near.sum() == 16 - 4 and not dq[flat].any()
    assert aq.NEAR_FLAT * 0.4 == 1 and (dq[near] == 256 // format.DQ_STEP).all()  # 1 quality at the default strength
    assert (dq[:8, :8][~(near | flat)[:8, :8]] == 0).all()  # the rest of the texture as it was
    assert aq.offsets(img, 8 * 256, 0.4, flat) is None  # nothing above 8
    assert aq.offsets(img, 4 * 256, 0.0, flat) is None  # --aq 0: no offset of any kind
    high = aq.offsets(img, 4 * 256, 1.0, flat)
    assert high[near].max() * format.DQ_STEP == aq.MAX_OFFSET * 256  # at most MAX_OFFSET


def test_files_and_images_are_the_same_for_any_threads(weights, kodak_crop, every_wavefront_split):
    img = textured_and_smooth(kodak_crop)
    files = set()
    for n in (1, 2, 3):
        data, rec, dec = round_trip(img, 4.5, weights, threads=n, aq=0.3)
        assert np.array_equal(rec, dec)
        files.add(data)
    assert len(files) == 1 and data[4] == format.ADAPTIVE
    assert len(np.unique(block_qualities(data))) > 1


def test_a_block_at_an_offset_is_coded_as_at_that_quality(weights, kodak_crop, monkeypatch, every_wavefront_split):
    """The per-block arithmetic is each quality's own: offsets of +1/4 quality everywhere
    give the payload and (before the post-loop filter, which runs at the file's quality)
    the image of quality 4.25, for any threads and at effort 2."""
    import dataclasses

    img = textured_and_smooth(kodak_crop)
    monkeypatch.setattr(codec, "aq_offsets", lambda im, q, s, flat: np.full(blocks.grid_shape(*im.shape[:2]),
                                                                           aq.STEP, np.int8) if s else None)
    unfiltered = dataclasses.replace(weights.model, postfilter=None)
    for threads, effort in ((1, 1), (3, 1), (1, 2)):
        data, rec, dec = round_trip(img, 4, weights, threads=threads, aq=0.3, effort=effort, flat=False)
        assert data[4] == format.ADAPTIVE and np.array_equal(dec, rec)
        plain = codec.encode(img, 4.25, weights.model, weights.prefix, threads=threads, effort=effort, flat=False)[0]
        assert format.unpack(data)[1] == format.unpack(plain)[1]
        a = codec.encode(img, 4, unfiltered, weights.prefix, threads=threads, aq=0.3, effort=effort, flat=False)[1]
        b = codec.encode(img, 4.25, unfiltered, weights.prefix, threads=threads, effort=effort, flat=False)[1]
        assert np.array_equal(a, b)


def test_higher_effort_codes_the_same_qualities_exactly(weights, kodak_crop):
    img = textured_and_smooth(kodak_crop)
    one = codec.encode(img, 3, weights.model, weights.prefix, aq=0.4)[0]
    data, rec, dec = round_trip(img, 3, weights, aq=0.4, effort=2)
    assert np.array_equal(rec, dec) and np.array_equal(block_qualities(data), block_qualities(one))
    assert data != one


def test_without_aq_files_keep_their_versions_and_bytes(weights, psnr_weights, kodak_crop):
    img = textured_and_smooth(kodak_crop)
    old = codec.encode(img, 4, weights.model, weights.prefix)[0]  # the coding loop's default: no offsets
    assert old[4] == format.FLAT
    assert entry.encode(img, 4, aq=0, lossless=False, linear_filter=False).data == old
    assert entry.encode(img, 4, weights=psnr_weights.path, lossless=False, linear_filter=False).data == codec.encode(
        img, 4, psnr_weights.model, psnr_weights.prefix)[0]  # the psnr tuning: no offsets by default
    visual = entry.encode(img, 4, lossless=False, linear_filter=False)  # the visual tuning's default strength
    assert visual.data[4] == format.ADAPTIVE
    assert visual.data == codec.encode(img, 4, weights.model, weights.prefix, aq=entry.aq_strength(weights, None))[0]


def test_smooth_areas_come_back_closer_and_texture_as_it_was(weights, kodak_crop):
    """What the offsets are for: the smooth side gains PSNR; the textured side keeps the
    file's quality and so about its error."""
    img = textured_and_smooth(kodak_crop)
    _, base = codec.encode(img, 4, weights.model, weights.prefix)
    _, rec = codec.encode(img, 4, weights.model, weights.prefix, aq=0.5)

    def err(a, part):
        return float(np.mean((a[part].astype(float) - img[part]) ** 2))

    smooth, texture = np.s_[:40, 72:], np.s_[:40, :56]
    assert err(rec, smooth) < 0.9 * err(base, smooth)
    assert abs(err(rec, texture) / err(base, texture) - 1) < 0.1


def small_v6(dq: bytes = b"\x04\x00\x00\xfc\x00\x00", modes: bytes = b"\x00" * 6, colours: bytes = b"") -> bytes:
    section = format.BlockModes(modes, colours, dq)
    return format.pack(format.Header(17, 9, 4 * 256, b"\xaa" * 8, b"\xbb" * 8, flat=section), b"\x01\x02\x03\x04")


def deflate(raw: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(raw) + z.flush()


def with_section(data: bytes, section: bytes) -> bytes:
    (k,) = struct.unpack_from("<I", data, 44)
    body = data[:44] + struct.pack("<I", len(section)) + section + data[48 + k : len(data) - 4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_the_version_6_section_packs_and_unpacks():
    data = small_v6()
    header, payload = format.unpack(data)
    assert header.version == format.ADAPTIVE and header.adaptive and payload == b"\x01\x02\x03\x04"
    assert header.flat == format.BlockModes(b"\x00" * 6, b"", b"\x04\x00\x00\xfc\x00\x00")
    assert format.read_from(io.BytesIO(data)) == data
    assert bbcodec.read_info(data).quality_range == (3.75, 4.25)
    with_flat = small_v6(b"\x00\x08\x00\x00\x00\x00", b"\x01" + b"\x00" * 5, b"abc")
    assert format.unpack(with_flat)[0].flat.colours == b"abc" and bbcodec.read_info(with_flat).flat_blocks == 1
    assert format.unpack(format.add_chunks(data, {b"XMP ": b"<x/>"}))[0].version == format.ADAPTIVE


BAD_V6 = {  # 2 x 3 blocks, RGB, quality 4
    "all offsets 0": (deflate(b"\x00" * 12), "all 0"),
    "a flat block's offset": (deflate(b"\x01" + b"\x00" * 5 + b"abc" + b"\x04" + b"\x00" * 5), "flat block"),
    "a quality above 8": (deflate(b"\x00" * 6 + b"\x41" + b"\x00" * 5), "outside 1..8"),
    "a quality below 1": (deflate(b"\x00" * 6 + b"\xcf" + b"\x00" * 5), "outside 1..8"),
    "too few offsets": (deflate(b"\x00" * 6 + b"\x04\x00"), "2 quality offsets where 6"),
    "too many offsets": (deflate(b"\x00" * 6 + b"\x04" + b"\x00" * 6), "more data"),
}


@pytest.mark.parametrize("case", list(BAD_V6))
def test_a_bad_version_6_section_is_one_clear_format_error(case):
    section, message = BAD_V6[case]
    with pytest.raises(FormatError, match=f"(block modes|quality offsets): .*{message}"):
        format.unpack(with_section(small_v6(), section))


def test_the_encoder_never_writes_a_bad_section():
    with pytest.raises(FormatError, match="all 0"):
        small_v6(b"\x00" * 6)
    with pytest.raises(FormatError, match="outside"):
        small_v6(b"\x7f" + b"\x00" * 5)


def test_options_are_checked_before_any_work(kodak_crop, tmp_path):
    for bad in (-0.1, 1.5, float("nan"), "0.3", True):
        with pytest.raises(AQError, match="aq must be a number within 0..1"):
            bbcodec.encode(kodak_crop, aq=bad)
    with pytest.raises(LosslessError, match="no aq"):
        bbcodec.encode(kodak_crop, lossless=True, aq=0.3)
    from PIL import Image

    with pytest.raises(ValueError, match="aq must be"):
        Image.fromarray(kodak_crop).save(io.BytesIO(), "BBC", aq=3)
    src = tmp_path / "in.png"
    Image.fromarray(kodak_crop).save(src)
    proc = run_cli("encode", str(src), str(tmp_path / "o.bbc"), "--aq", "2")
    assert proc.returncode == 2 and b"--aq" in proc.stderr and not (tmp_path / "o.bbc").exists()
    proc = run_cli("encode", str(src), str(tmp_path / "o.bbc"), "--aq", "0.3", "--lossless")
    assert proc.returncode == 2 and b"no aq" in proc.stderr


def test_the_cli_and_the_plugin_take_aq_and_info_shows_the_block_qualities(kodak_crop, tmp_path):
    from PIL import Image

    img = textured_and_smooth(kodak_crop)
    src = tmp_path / "in.png"
    Image.fromarray(img).save(src)
    for strength in ("0", "0.5"):
        proc = run_cli("encode", str(src), str(tmp_path / f"a{strength}.bbc"), "--aq", strength, "--no-lossless",
                       "--no-linear-filter")
        assert proc.returncode == 0, proc.stderr
    off, on = (tmp_path / "a0.bbc").read_bytes(), (tmp_path / "a0.5.bbc").read_bytes()
    assert off[4] == format.FLAT and on[4] == format.ADAPTIVE
    assert on == bbcodec.encode(img, aq=0.5, lossless=False, linear_filter=False)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "BBC", aq=0.5, lossless=False, linear_filter=False)
    assert buf.getvalue() == on
    low, high = bbcodec.read_info(on).quality_range
    assert low == 4 < high
    info = run_cli("info", str(tmp_path / "a0.5.bbc")).stdout.decode()
    assert f"block quality:  {low:g} .. {high:g}" in info
    proc = run_cli("decode", str(tmp_path / "a0.5.bbc"), str(tmp_path / "o.png"))
    assert proc.returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), bbcodec.decode(on))


def test_the_cli_refuses_a_corrupt_version_6_file_with_one_line(weights, kodak_crop, tmp_path):
    data = codec.encode(textured_and_smooth(kodak_crop), 4, weights.model, weights.prefix, aq=0.5)[0]
    rows, cols = blocks.grid_shape(96, 128)
    bad = tmp_path / "bad.bbc"
    bad.write_bytes(with_section(data, deflate(bytes(rows * cols) + bytes([0x70]) + bytes(rows * cols - 1))))
    assert "quality offsets" in one_error_line(run_cli("decode", str(bad), str(tmp_path / "o.png")))


def test_rate_control_meets_a_target_with_offsets(kodak_crop):
    img = textured_and_smooth(kodak_crop)
    r = entry.encode(img, target_bpp=1.0, aq=0.5, lossless=False, linear_filter=False)
    assert r.target_met and 8 * len(r.data) / img[:, :, 0].size <= 1.0 and r.data[4] == format.ADAPTIVE
