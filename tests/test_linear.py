"""The encoder-fitted linear filter (format version 7, coding/linear.py): its section's
codes, its arithmetic against a plain integer reference, the format's rules, and the
encoder's choice (only where it pays; never for flat blocks; off on request)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

import bbcodec
from bbcodec import codec
from bbcodec.coding import format, linear
from bbcodec.coding import loop as loop_codec
from bbcodec.coding.effort import rd_lambda
from bbcodec.errors import FilterError, FormatError
from bbcodec.model import weights as weights_mod


def reference(f: linear.LinearFilter, img: np.ndarray) -> np.ndarray:
    """docs/format.md section 12 in plain int64, pixel window by pixel window."""
    k = f.kernel()
    height, width = img.shape[:2]
    x = img.astype(np.int64) - 128
    out = np.empty_like(img)
    for y in range(height):
        for c in range(width):
            win = x[np.clip(np.arange(y - 1, y + 2), 0, height - 1)][:, np.clip(np.arange(c - 1, c + 2), 0, width - 1)]
            for o in range(3):
                acc = int(f.coefs[o, -1]) + int((k[o] * win).sum())
                h = (1 << (f.shift - 1)) if f.shift else 0
                out[y, c, o] = min(255, max(0, int(img[y, c, o]) + ((acc + h) >> f.shift)))
    return out


def random_filter(rng: np.random.Generator, shape: int, shift: int, big: int = 600) -> linear.LinearFilter:
    n = 3 * len(linear.TAPS[shape]) + 1
    return linear.LinearFilter(shape, shift, rng.integers(-big, big + 1, size=(3, n)).astype(np.int64))


@pytest.mark.parametrize("shape", [0, 1, 2])
@pytest.mark.parametrize("shift", [0, 1, 9])
def test_apply_is_the_specified_integer_arithmetic_at_edges_and_clipping(shape, shift):
    rng = np.random.default_rng(shape * 10 + shift)
    img = rng.integers(0, 256, size=(9, 13, 3)).astype(np.uint8)
    img[0] = 255  # clipping at both ends
    img[-1] = 0
    f = random_filter(rng, shape, shift, big=40 if shift == 0 else 600)
    out = f.apply(img)
    assert np.array_equal(out, reference(f, img))
    assert not np.array_equal(out, img)


def test_apply_is_the_same_in_strips_and_on_a_one_pixel_image(monkeypatch):
    rng = np.random.default_rng(1)
    f = random_filter(rng, 2, 8)
    img = rng.integers(0, 256, size=(37, 21, 3)).astype(np.uint8)
    whole = f.apply(img)
    monkeypatch.setattr(linear, "STRIP", 50)  # two rows at a time
    assert np.array_equal(f.apply(img), whole)
    one = rng.integers(0, 256, size=(1, 1, 3)).astype(np.uint8)
    assert np.array_equal(f.apply(one), reference(f, one))


def test_bands_of_rows_make_the_whole_image_with_strips_of_any_size(monkeypatch):
    """k processes each filter band i of k (lockstep.PostLoop): every row reads only the
    input image, so the bands together are the one-pass image, bit for bit."""
    rng = np.random.default_rng(2)
    f = random_filter(rng, 2, 9)
    img = rng.integers(0, 256, size=(29, 17, 3)).astype(np.uint8)
    whole = f.apply(img)
    for k, strip in ((2, 65536), (3, 40), (5, 17), (29, 1000)):
        monkeypatch.setattr(linear, "STRIP", strip)
        out = np.zeros_like(img)
        for i in range(k):
            assert f.apply(img, out, (i, k)) is out
        assert np.array_equal(out, whole)
    out = np.zeros_like(img)
    f.apply(img, out, (0, 2))
    assert np.array_equal(out[:14], whole[:14]) and not out[14:].any()  # band 0 of 2: rows 0..13 alone


def test_the_decoders_processes_share_the_filter_in_bands(default_weights, monkeypatch):
    """With workers, each process applies the file's filter to a band of the rows of the
    post-filtered image, flat blocks painted before and after; the image is the
    one-process decode's, which is the encoder's."""
    from bbcodec.coding import streams

    monkeypatch.setattr(streams, "MIN_CHUNK", 1)
    monkeypatch.setattr(streams, "default_count", lambda rows, cols: min(4, rows))
    w = default_weights
    img = wheel()
    img[:32, :40] = (12, 200, 40)  # flat blocks, repainted over both filters
    data, rec = loop_codec.encode(img, 4, w.model, w.prefix, threads=1, linear=True)
    h, payload = format.unpack(data)
    assert h.version == format.LINEAR and h.streams == 4 and h.flat is not None
    bands = []
    apply = linear.LinearFilter.apply

    def spy(self, img, out=None, band=(0, 1)):
        bands.append(band)  # the lead's calls (the workers' are in their own processes)
        return apply(self, img, out, band)

    monkeypatch.setattr(linear.LinearFilter, "apply", spy)
    for n in (1, 2, 3):
        bands.clear()
        assert np.array_equal(loop_codec.decode(h, payload, w.model, threads=n), rec)
        assert bands == [(0, n)]


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_the_section_reads_back_what_was_written_at_its_shortest_order(shape):
    rng = np.random.default_rng(shape)
    for big in (1, 30, 5000, (1 << 24) - 1):
        f = random_filter(rng, shape, 11, big)
        f.coefs[:, :-1] //= max(1, int(f.tap_sums().max()) >> 16)  # the taps within their bound; the constant as it is
        section = f.to_bytes()
        back = linear.LinearFilter.parse(section)
        assert (back.shape, back.shift) == (shape, 11) and np.array_equal(back.coefs, f.coefs)
        assert len(section) == linear.section_bytes(f.coefs) == 3 + -(-min(
            sum(len(linear._code(v, k)) for v in f.coefs.ravel().tolist()) for k in range(17)) // 8)


def test_a_symmetric_tap_weighs_the_pixel_and_its_mirror_alike():
    coefs = np.zeros((3, 16), dtype=np.int64)
    coefs[1, 5 + 3] = 7  # output G, input G, tap (1, 0) and (-1, 0)
    k = linear.LinearFilter(1, 4, coefs).kernel()
    assert k[1, 2, 1, 1] == k[1, 0, 1, 1] == 7 and np.count_nonzero(k) == 2


def broken_sections() -> list[tuple[bytes, str]]:
    good = linear.LinearFilter(0, 6, np.arange(12, dtype=np.int64).reshape(3, 4) - 5).to_bytes()
    zero = linear.LinearFilter(0, 6, np.zeros((3, 4), dtype=np.int64))
    return [
        (good[:3], "at least 4"),
        (bytes([3]) + good[1:], "out of range"),
        (good[:1] + bytes([21]) + good[2:], "out of range"),
        (good[:2] + bytes([17]) + good[3:], "out of range"),
        (good[:-1], "run past"),
        (good + b"\x00", "bytes after"),
        (bytes([0, 6, 0]) + b"\x80" * 2, "run past"),  # codes "1" (0) only: too few
        (bytes([0, 6, 0]) + b"\xff\xf0", "every coefficient is 0"),  # 12 codes of 0 then padding
        (bytes([0, 6, 0]) + b"\xff\xf1", "padding bits"),
        (bytes([0, 6, 0]) + b"\x00" * 4 + b"\x01" + b"\xff" * 8, "24 bits or more"),  # 39 leading zeros
        (zero.to_bytes(), "every coefficient is 0"),
        (bytes([0, 6, 0]) + b"\xff" * 5000, "more than its 12 codes can take"),  # refused before reading
        (linear.LinearFilter(1, 6, np.full((3, 16), 1 << 13, dtype=np.int64)).to_bytes(), "sum to 2"),
    ]


@pytest.mark.parametrize(("section", "message"), broken_sections())
def test_a_broken_section_is_refused_with_what_is_wrong(section, message):
    with pytest.raises(FormatError, match=message):
        linear.LinearFilter.parse(section)


def test_a_coefficient_of_24_bits_is_refused_even_with_few_zeros():
    code = linear._code(1 << 24, 0)  # 25 zeros (allowed) and 26 bits: 2^24, one too big
    assert code.index("1") == 25
    stream = code + "1" * 11  # 11 more codes of 0
    stream += "0" * (-len(stream) % 8)
    section = bytes([0, 6, 0]) + int(stream, 2).to_bytes(len(stream) // 8, "big")
    with pytest.raises(FormatError, match="24 bits or more"):
        linear.LinearFilter.parse(section)
    ok = "1" * 3 + linear._code((1 << 24) - 1, 0) + "1" * 8  # the first output colour's constant
    ok += "0" * (-len(ok) % 8)
    assert linear.LinearFilter.parse(bytes([0, 6, 0]) + int(ok, 2).to_bytes(len(ok) // 8, "big")).coefs[0, 3] == (1 << 24) - 1


@pytest.fixture(scope="module")
def default_weights():
    return weights_mod.default()


def wheel(size: int = 96) -> np.ndarray:
    """Saturated hues round a circle on white, a picture whose colour errors a linear
    filter corrects well (the synthetic set's colour wheel, smaller)."""
    y, x = np.mgrid[0:size, 0:size] - size / 2 + 0.5
    hue = (np.arctan2(y, x) / (2 * np.pi) + 0.5) * 6
    rgb = np.clip(np.stack([np.abs(hue - 3) - 1, 2 - np.abs(hue - 2), 2 - np.abs(hue - 4)], axis=2), 0, 1)
    inside = (x * x + y * y < (size / 2 - 4) ** 2)[:, :, None]
    return np.where(inside, rgb * 255, 255).astype(np.uint8)


def test_the_encoder_writes_a_filter_that_pays_and_every_decoder_agrees(default_weights):
    w = default_weights
    img = wheel()
    off, rec_off = loop_codec.encode(img, 4, w.model, w.prefix, threads=1, linear=False)
    files = set()
    for n in (1, 2):
        on, rec_on = loop_codec.encode(img, 4, w.model, w.prefix, threads=n, linear=True)
        files.add(on)
        h, payload = format.unpack(on)
        assert h.version == format.LINEAR and np.array_equal(loop_codec.decode(h, payload, w.model, threads=n), rec_on)
    assert len(files) == 1
    h_off, payload_off = format.unpack(off)
    assert payload == payload_off  # the filter comes after the coding loop
    assert (h.flat.modes, h.flat.colours) == (h_off.flat.modes, h_off.flat.colours)  # the white corners
    f = linear.LinearFilter.parse(h.linear)
    flat = np.repeat(np.repeat(np.frombuffer(h.flat.modes, np.uint8).reshape(12, 12), 8, 0), 8, 1).astype(bool)
    assert np.array_equal(f.apply(rec_off)[~flat], rec_on[~flat]) and np.array_equal(rec_off[flat], rec_on[flat])
    err = lambda rec: float(((img.astype(float) - rec) ** 2).sum())  # noqa: E731
    lam = rd_lambda(4 * 256)
    assert 8 * (len(on) - len(off)) + lam * (err(rec_on) - err(rec_off)) / 3 < 0  # it pays at the file's lambda


def test_no_filter_where_none_pays(default_weights):
    w = default_weights
    img = wheel()
    _, rec = loop_codec.encode(img, 4, w.model, w.prefix, threads=1)
    assert linear.fit(img, rec, rd_lambda(4 * 256)) is not None
    assert linear.fit(img, rec, 1e-9) is None  # where bits are all that count, its bytes never pay
    assert linear.fit(img, img, 1e9) is None  # nothing left to correct


def test_the_fit_reads_every_row(default_weights):
    """Fitted on every other row, the filter of a noise texture in a white frame on grey
    (the synthetic set's) was worse on the other rows than none, so none was sent."""
    from bbcodec import synthetic

    w = default_weights
    img = synthetic.texture_on_flat()
    _, rec = loop_codec.encode(img, 4, w.model, w.prefix, threads=1)
    f = linear.fit(img, rec, rd_lambda(4 * 256))
    assert f is not None
    err = lambda a: float(((img.astype(float) - a) ** 2).sum())  # noqa: E731
    assert err(f.apply(rec)) < 0.9 * err(rec)


def test_flat_blocks_stay_exact_under_the_filter(default_weights):
    w = default_weights
    img = wheel(96)
    img[:32, :40] = (12, 200, 40)  # whole flat blocks, and a flat area past the block grid
    data, rec = loop_codec.encode(img, 4, w.model, w.prefix, threads=1, linear=True)
    h, payload = format.unpack(data)
    assert h.version == format.LINEAR and h.flat is not None
    assert np.frombuffer(h.flat.modes, np.uint8).reshape(12, 12)[:4, :5].all()
    assert not h.adaptive and set(h.flat.dq) == {0}  # version 7 block modes: flat blocks, no offsets
    assert (rec[:32, :40] == (12, 200, 40)).all()
    assert np.array_equal(loop_codec.decode(h, payload, w.model), rec)


def test_version_7_with_offsets_and_chunks_round_trips(default_weights):
    img = wheel(128)
    img[:64, :64] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None]  # smooth: raised by AQ
    enc = codec.encode(img, 3, aq=1.0, lossless=False, extras=codec.Extras(xmp=b"<x/>"))
    h, _ = format.unpack(enc.data)
    assert h.version == format.LINEAR and h.adaptive and h.linear
    dec = codec.decode(enc.data)
    assert np.array_equal(dec.image, enc.reconstruction) and dec.extras.xmp == b"<x/>"


def set_filter_length(data: bytes, f: int) -> bytes:
    body = data[:48] + struct.pack("<I", f) + data[52:-4]
    import zlib

    return body + struct.pack("<I", zlib.crc32(body))


def test_a_damaged_filter_length_or_section_is_refused(default_weights):
    w = default_weights
    data, _ = loop_codec.encode(wheel(), 4, w.model, w.prefix, threads=1, linear=True)
    (f,) = struct.unpack_from("<I", data, 48)
    for bad in (f + 4, f - 1, 0, 3):
        with pytest.raises(FormatError):
            format.unpack(set_filter_length(data, bad))
    with pytest.raises(FormatError, match="truncated"):
        format.unpack(data[:55])


def test_block_modes_without_a_flat_block_or_an_offset_are_refused_in_version_7():
    section = linear.LinearFilter(0, 6, np.ones((3, 4), dtype=np.int64)).to_bytes()
    header = format.Header(16, 16, 1024, bytes(8), bytes(8), 3, streams=1, linear=section,
                           flat=format.BlockModes(bytes(4), b"", bytes(4)))
    with pytest.raises(FormatError, match="no flat block and no quality offset"):
        format.pack(header, b"")
    fine = format.pack(format.Header(16, 16, 1024, bytes(8), bytes(8), 3, streams=1, linear=section), b"")
    h, _ = format.unpack(fine)
    assert h.version == format.LINEAR and h.flat is None and h.linear == section and len(fine) == 56 + len(section)


def test_the_option_turns_it_off_everywhere(tmp_path, default_weights):
    img = wheel()
    on = bbcodec.encode(img, 4, lossless=False)
    off = bbcodec.encode(img, 4, lossless=False, linear_filter=False)
    assert on[4] == format.LINEAR and off[4] < format.LINEAR
    path = tmp_path / "w.bbc"
    Image.fromarray(img).save(path, quality=4, lossless=False, linear_filter=False)
    assert path.read_bytes() == off
    with pytest.raises(FilterError, match="True or False"):
        bbcodec.encode(img, 4, linear_filter="no")
    with pytest.raises(ValueError, match="True or False"):
        Image.fromarray(img).save(tmp_path / "x.bbc", linear_filter=1)
    assert not (tmp_path / "x.bbc").exists() or (tmp_path / "x.bbc").stat().st_size == 0


def test_the_cli_option(tmp_path, default_weights):
    src = tmp_path / "w.png"
    Image.fromarray(wheel()).save(src)
    for name, more in (("off", ["--no-linear-filter"]), ("on", [])):
        r = run_cli("encode", str(src), str(tmp_path / f"{name}.bbc"), "-q", "4", "--no-lossless", *more)
        assert r.returncode == 0, r.stderr
    off, on = (tmp_path / "off.bbc").read_bytes(), (tmp_path / "on.bbc").read_bytes()
    assert off[4] < format.LINEAR == on[4]
    assert off == bbcodec.encode(wheel(), 4, lossless=False, linear_filter=False)
    text = run_cli("info", str(tmp_path / "on.bbc")).stdout.decode()
    section = format.unpack(on)[0].linear
    assert f"linear filter:  {linear.SHAPES[section[0]]}, {len(section)} bytes" in text
    assert bbcodec.read_info(on).linear_filter_bytes == len(section) and bbcodec.read_info(off).linear_filter is None


def test_a_cluster_run_checks_the_option_before_any_work(tmp_path):
    from bbcodec import cluster

    (tmp_path / "in").mkdir()
    with pytest.raises(FilterError, match="True or False"):
        cluster.encode_folder(tmp_path / "in", tmp_path / "out", "local:1", linear_filter=None)
    assert not (tmp_path / "out").exists()

