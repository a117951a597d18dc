"""Pictures as people have them: colour profiles, EXIF and XMP kept (format version 3),
transparency kept exactly or flattened when asked, PNG gamma converted to sRGB, and
nothing changed or ignored without a word."""

from __future__ import annotations

import io
import json
import lzma
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line, random_image, run_cli
from PIL import Image, ImageCms

import bbcodec
from bbcodec.coding import alpha, format, lzma2

# -- a non-sRGB profile, made here (Adobe RGB (1998)'s primaries and gamma 2.2) ----------

ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
D50 = (0.9642, 1.0, 0.8249)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def icc_profile(primaries=ADOBE_RGB, gamma: float = 2.2) -> bytes:
    """An ICC v2 matrix/TRC RGB display profile: the primaries (x, y), D65 white adapted
    to the PCS's D50 by Bradford, one gamma curve."""
    wx, wy = 0.3127, 0.329
    P = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    M = P * np.linalg.solve(P, white)  # RGB -> XYZ (D65)
    B = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    adapt = np.linalg.inv(B) @ np.diag((B @ np.array(D50)) / (B @ white)) @ B
    M50 = adapt @ M
    desc = b"desc" + bytes(4) + struct.pack(">I", 12) + b"test AdobeRGB\0"[:12] + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256)) + bytes(2)
    text = b"text" + bytes(4) + b"no copyright\0"
    tags = [(b"desc", desc), (b"wtpt", _xyz_tag(*D50)), (b"rXYZ", _xyz_tag(*M50[:, 0])),
            (b"gXYZ", _xyz_tag(*M50[:, 1])), (b"bXYZ", _xyz_tag(*M50[:, 2])), (b"rTRC", curve),
            (b"gTRC", curve), (b"bTRC", curve), (b"cprt", text)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"none" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(4) + bytes(4) + bytes(8) + bytes(8) + bytes(4) + _s15(D50[0]) + _s15(D50[1])
              + _s15(D50[2]) + bytes(4) + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def _to_srgb(pixels: np.ndarray, profile: bytes) -> np.ndarray:
    """What a colour-managed viewer shows of pixels in a profile: converted to sRGB."""
    src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    out = ImageCms.profileToProfile(Image.fromarray(pixels), src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return np.asarray(out)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def photo(kodak_crop) -> np.ndarray:
    return np.ascontiguousarray(np.tile(kodak_crop, (2, 2, 1)))  # 96x128


def test_a_profiled_image_keeps_its_profile_and_its_colours(photo, tmp_path):
    """An Adobe-RGB-tagged PNG: the profile travels, so the colour-managed comparison (both
    through the profile to sRGB) gives the codec's normal PSNR, not a colour shift."""
    profile = icc_profile()
    src = tmp_path / "adobe.png"
    Image.fromarray(photo).save(src, icc_profile=profile)
    assert run_cli("encode", str(src), str(tmp_path / "a.bbc")).returncode == 0
    assert bbcodec.read_info(tmp_path / "a.bbc").chunks["icc"] == len(profile)
    assert run_cli("decode", str(tmp_path / "a.bbc"), str(tmp_path / "a.png")).returncode == 0
    with Image.open(tmp_path / "a.png") as im:
        assert im.info["icc_profile"] == profile
        decoded = np.asarray(im.convert("RGB"))
    plain = _psnr(photo, decoded)
    managed = _psnr(_to_srgb(photo, profile), _to_srgb(decoded, profile))
    assert managed > plain - 3 and managed > 28  # a wider gamut magnifies the same errors a little
    # without the profile a viewer would show the numbers as sRGB: a visible shift
    assert _psnr(_to_srgb(photo, profile), decoded) < managed - 3


def _jpeg_with_metadata(path: Path, pixels: np.ndarray, orientation: int = 6) -> tuple[bytes, dict]:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"  # Make
    exif[0x0110] = "Model 7"  # Model
    exif[0x0131] = "some software"
    exif[0x0112] = orientation
    xmp = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
           + b"<rdf:Description>" + b"x" * 15000 + b"</rdf:Description></x:xmpmeta><?xpacket end='w'?>")
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif, xmp=xmp)
    return xmp, {0x010F: "Camera maker", 0x0110: "Model 7"}


def test_exif_and_xmp_are_kept_the_orientation_applied_and_reset(photo, tmp_path):
    src = tmp_path / "camera.jpg"
    xmp, tags = _jpeg_with_metadata(src, photo[:, :100])
    proc = run_cli("encode", str(src), str(tmp_path / "c.bbc"), "--json", "--aq", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["carries"] == ["exif", "xmp"] and (report["width"], report["height"]) == (96, 100)  # upright
    info = run_cli("info", str(tmp_path / "c.bbc")).stdout.decode()
    assert "format version: 3" in info and "exif (" in info and f"xmp ({len(xmp)} bytes)" in info
    assert run_cli("decode", str(tmp_path / "c.bbc"), str(tmp_path / "c.png")).returncode == 0
    with Image.open(tmp_path / "c.png") as im:
        assert im.size == (96, 100) and im.info["xmp"] in (xmp, xmp.decode())
        exif = im.getexif()
        assert {k: exif[k] for k in tags} == tags and exif[0x0112] == 1
    with Image.open(tmp_path / "c.bbc") as im:  # the Pillow plugin, as Pillow's readers do
        assert im.info["xmp"] == xmp and im.getexif()[0x010F] == "Camera maker"
    tiff = tmp_path / "c.tiff"
    assert run_cli("decode", str(tmp_path / "c.bbc"), str(tiff)).returncode == 0
    with Image.open(tiff) as im:
        assert im.getexif().get_ifd(0x8769) is not None and im.info.get("xmp") == xmp


@pytest.mark.parametrize(("keep", "carries"), [("none", []), ("icc", ["icc"]), ("exif,xmp", ["exif", "xmp"])])
def test_metadata_chooses_what_to_keep_like_cwebp(keep, carries, photo, tmp_path):
    src = tmp_path / "camera.jpg"
    _jpeg_with_metadata(src, photo)
    with Image.open(src) as im:
        im.save(tmp_path / "tagged.jpg", exif=im.info["exif"], xmp=im.info["xmp"], icc_profile=icc_profile(),
                quality=95)
    proc = run_cli("encode", str(tmp_path / "tagged.jpg"), str(tmp_path / "t.bbc"), "--metadata", keep, "--json",
                   "--aq", "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout).get("carries", []) == carries
    data = (tmp_path / "t.bbc").read_bytes()
    assert data[4] == (3 if carries else 2)  # without chunks: version 2, as before (no quality offsets: --aq 0)
    adaptive = run_cli("encode", str(tmp_path / "tagged.jpg"), str(tmp_path / "a.bbc"), "--metadata", keep)
    assert adaptive.returncode == 0  # with the default offsets (where the picture gets any), the same chunks
    assert set(format.read_chunks((tmp_path / "a.bbc").read_bytes())) == set(format.read_chunks(data))
    bad = run_cli("encode", str(src), str(tmp_path / "x.bbc"), "--metadata", "gps")
    assert bad.returncode == 2 and "metadata must be" in bad.stderr.decode()


def _png_chunks(width: int, height: int, depth: int, colour: int, raw: bytes, extra: list[tuple[bytes, bytes]]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, v) for k, v in extra)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_4_bit_gray_png_with_a_transparent_value_keeps_its_transparency(tmp_path):
    """A tRNS colour of a 4-bit grayscale PNG: once silently flattened (white), now an
    exact alpha plane."""
    width, height = 8, 4
    values = np.arange(32).reshape(height, width) % 16
    rows = [bytes([0]) + bytes((int(a) << 4) | int(b) for a, b in zip(r[0::2], r[1::2], strict=True)) for r in values]
    src = tmp_path / "g4t.png"
    src.write_bytes(_png_chunks(width, height, 4, 0, b"".join(rows), [(b"tRNS", struct.pack(">H", 3))]))
    assert run_cli("encode", str(src), str(tmp_path / "g.bbc")).returncode == 0
    assert run_cli("decode", str(tmp_path / "g.bbc"), str(tmp_path / "g.png")).returncode == 0
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "LA"
        assert np.array_equal(np.asarray(im)[..., 1], np.where(values == 3, 0, 255))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_round_trips_bit_exactly_through_the_api_the_cli_and_pillow(mode, tmp_path):
    rng = np.random.default_rng(len(mode))
    rgb = random_image(21, 34, seed=4)
    a = np.where(rng.random((21, 34)) < 0.3, 0, rng.integers(0, 256, (21, 34))).astype(np.uint8)
    if mode == "RGBA":
        im = Image.fromarray(np.concatenate([rgb, a[..., None]], axis=2))
    elif mode == "LA":
        im = Image.fromarray(np.stack([rgb[..., 0], a], axis=2))
    else:
        im = Image.fromarray(rgb).quantize(32)
        im.info["transparency"] = 5
    want = np.asarray(im.convert("LA" if mode == "LA" else "RGBA"))[..., -1]
    data = bbcodec.encode(im)
    out = bbcodec.decode(data)
    assert out.mode == ("LA" if mode == "LA" else "RGBA") and np.array_equal(np.asarray(out)[..., -1], want)
    buf = io.BytesIO()
    im.save(buf, format="BBC")
    assert buf.getvalue() == data
    with Image.open(io.BytesIO(data)) as back:
        assert back.mode == out.mode and np.array_equal(np.asarray(back), np.asarray(out))
    flat = bbcodec.decode(bbcodec.encode(im, flatten="#ff0000"))
    assert flat.mode in ("RGB", "L")


def test_the_alpha_plane_codes_exactly_and_refuses_what_is_not_one():
    rng = np.random.default_rng(0)
    for plane in (rng.integers(0, 256, (7, 9), dtype=np.uint8), np.zeros((1, 1), np.uint8),
                  np.tile(np.arange(256, dtype=np.uint8), (3, 1))):
        data = alpha.encode(plane)
        assert np.array_equal(alpha.decode(data, plane.shape[1], plane.shape[0]), plane)
    data = alpha.encode(rng.integers(0, 256, (7, 9), dtype=np.uint8))
    def packed(raw: bytes) -> bytes:
        return bytes([0]) + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=lzma2.chain(63, 6))

    for bad, why in ((bytes([3]) + data[1:], "unknown filter"), (data[:-3], "corrupt|not exactly"),
                     (packed(bytes(64)), "not exactly"), (data + b"\0", "not exactly"),
                     (bytes([0]) + zlib.compress(bytes(63)), "corrupt|not exactly")):
        with pytest.raises(bbcodec.FormatError, match=why):
            alpha.decode(bad, 9, 7)
    bomb = packed(bytes(1 << 24))  # 16 MB of zeros for a 9x7 plane: never decompressed whole
    with pytest.raises(bbcodec.FormatError, match="not exactly"):
        alpha.decode(bomb, 9, 7)


def test_version_3_chunks_are_checked():
    data = bbcodec.encode(_transparent())
    header, payload = format.unpack(data)
    assert header.version == 3 and set(format.read_chunks(data)) == {b"ALPH"}
    for chunks, why in (({b"ALPH": b"x", b"JUNK": b""}, "unknown chunk"),):
        with pytest.raises(bbcodec.FormatError, match=why):
            format.pack(header, payload, chunks)
    body = bytearray(data[:-4])
    body[44 + len(payload) : 48 + len(payload)] = b"ALPX"  # an unknown type, behind a valid CRC
    with pytest.raises(bbcodec.FormatError, match="unknown chunk type"):
        format.unpack(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    assert format.unpack(format.add_chunks(data, {b"XMP ": b"<x/>"}))[0].version == 3
    assert format.read_chunks(format.add_chunks(data, {b"XMP ": b"<x/>"}))[b"XMP "] == b"<x/>"


def _transparent() -> Image.Image:
    im = Image.fromarray(random_image(8, 8)).convert("RGBA")
    im.putalpha(Image.fromarray(np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))))
    return im


def test_png_gamma_is_converted_to_srgb_as_a_viewer_shows_it(tmp_path):
    """PngSuite's g03..g25 idea: one scene stored with file gammas 0.35 .. 2.5 (samples =
    display ** (1 / (gamma * 2.2))... as the PNG spec's formula reads them) decodes to
    the same brightness, within a few levels; an sRGB-tagged one is left as it is."""
    scene = np.tile(np.linspace(0.05, 0.95, 64), (16, 1))  # linear light
    means = {}
    for gamma in (0.35, 0.45455, 0.55, 0.7, 1.0, 2.5):
        samples = np.rint(255 * scene ** gamma).astype(np.uint8)  # encoded with the file gamma
        raw = b"".join(b"\x00" + row.tobytes() for row in samples)
        src = tmp_path / f"g{gamma}.png"
        src.write_bytes(_png_chunks(64, 16, 8, 0, raw, [(b"gAMA", struct.pack(">I", round(gamma * 100000)))]))
        proc = run_cli("encode", str(src), str(tmp_path / "g.bbc"), "-q", "8", "--json")
        assert proc.returncode == 0, proc.stderr
        notes = json.loads(proc.stdout).get("notes", [])
        assert bool(notes) == (gamma != 0.45455)
        means[gamma] = float(np.asarray(bbcodec.decode(tmp_path / "g.bbc"), dtype=np.float64).mean())
    assert max(means.values()) - min(means.values()) < 4, means


def test_what_reading_changes_is_said_and_options_are_never_ignored(tmp_path):
    frames = [Image.fromarray(random_image(6, 10, seed=k)) for k in range(5)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    proc = run_cli("encode", str(gif), str(tmp_path / "a.bbc"))
    assert proc.returncode == 0
    assert "bbcodec: note: " in proc.stderr.decode() and "an animation of 5 frames" in proc.stderr.decode()
    deep = tmp_path / "deep.png"
    Image.fromarray((random_image(9, 9).astype(np.uint16) * 257)[..., 0]).save(deep)
    proc = run_cli("encode", str(deep), str(tmp_path / "d.bbc"), "--json")
    assert "rounded to 8 bits" in " ".join(json.loads(proc.stdout)["notes"])
    with pytest.warns(UserWarning, match="animation of 5 frames"):
        bbcodec.encode(gif)
    assert "cannot tell an image format from .pam" in one_error_line(
        run_cli("decode", str(tmp_path / "a.bbc"), str(tmp_path / "a.pam")))
    with pytest.raises(bbcodec.ImageError, match="already a .bbc file"):
        bbcodec.encode(tmp_path / "a.bbc")
    target = bbcodec.encode(random_image(24, 32), target_bpp=1.0)
    buf = io.BytesIO()
    Image.fromarray(random_image(24, 32)).save(buf, format="BBC", target_bpp=1.0)
    assert buf.getvalue() == target
    buf = io.BytesIO()
    Image.fromarray(random_image(24, 32)).save(buf, format="BBC", icc_profile=icc_profile())
    assert Image.open(io.BytesIO(buf.getvalue())).info["icc_profile"] == icc_profile()


@pytest.mark.parametrize("bad", [None, 123, 4.5, np.zeros(10, np.uint8), ["x"]], ids=repr)
def test_the_api_refuses_what_is_not_a_bbc_file_with_a_bbcodec_error(bad):
    for call in (bbcodec.decode, bbcodec.read_info):
        with pytest.raises(bbcodec.Error, match="takes the bytes of a .bbc file or its path"):
            call(bad)


def test_decode_and_read_info_take_a_path(tmp_path):
    data = bbcodec.encode(random_image(9, 12))
    (tmp_path / "x.bbc").write_bytes(data)
    assert np.array_equal(np.asarray(bbcodec.decode(tmp_path / "x.bbc")), np.asarray(bbcodec.decode(data)))
    assert bbcodec.read_info(str(tmp_path / "x.bbc")) == bbcodec.read_info(data)


def test_integer_tiffs_and_missing_loaders_are_named_for_what_they_are(tmp_path):
    proc = run_cli("encode", str(_signed_tiff(tmp_path)), str(tmp_path / "s.bbc"))
    assert "a signed 16-bit integer image" in one_error_line(proc)  # not "32-bit"
    eps = tmp_path / "a.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n")
    line = one_error_line(run_cli("encode", str(eps), str(tmp_path / "e.bbc")))
    import shutil

    if shutil.which("gs") is None:  # else Pillow reads it
        assert "EPS images need Ghostscript" in line and "damaged" not in line
    wmf = tmp_path / "a.wmf"  # a placeable WMF header and an empty metafile
    wmf.write_bytes(struct.pack("<IHhhhhHIH", 0x9AC6CDD7, 0, 0, 0, 100, 100, 1440, 0, 0)
                    + struct.pack("<HHHIHIH", 1, 9, 0x300, 12, 0, 3, 0) + struct.pack("<IH", 3, 0))
    line = one_error_line(run_cli("encode", str(wmf), str(tmp_path / "w.bbc")))
    assert "WMF/EMF images cannot be read here" in line


def _signed_tiff(tmp_path: Path) -> Path:
    """A 10x10 TIFF of signed 16-bit samples (SampleFormat 2)."""
    from conftest import TIFF_LONG, TIFF_SHORT, tiff_ifd

    def short(tag: int, v: int) -> tuple[int, int, int, bytes]:
        return tag, TIFF_SHORT, 1, struct.pack("<H", v)

    pixels = np.arange(-50, 50, dtype="<i2").tobytes()
    ifd = tiff_ifd([short(256, 10), short(257, 10), short(258, 16), short(259, 1), short(262, 1),
                    (273, TIFF_LONG, 1, struct.pack("<I", 300)), short(277, 1), short(278, 10),
                    (279, TIFF_LONG, 1, struct.pack("<I", len(pixels))), short(339, 2)])
    path = tmp_path / "signed.tif"
    path.write_bytes(ifd.ljust(300, b"\0") + pixels)
    return path
