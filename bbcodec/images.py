"""Reading images users have into the codec's 8-bit RGB (with their alpha plane and
metadata), and writing decoded images with theirs.

The size is checked from the file header before any pixel is decoded, so a huge
image is refused without allocating it. Whatever goes wrong while an image is read
(a damaged file, corrupt EXIF or TIFF metadata, a mode that cannot be converted) is an
ImageError with one line: bad input, never a crash. Pillow's own settings are left as
they are (its decompression-bomb limit, Image.MAX_IMAGE_PIXELS, is above the codec's
limit, so it refuses only what the codec would refuse anyway); its warnings are kept
quiet, since the codec decides what it takes.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from .codec import Extras
from .coding.format import MAX_PIXELS, check_dimensions
from .errors import FormatError, ImageError

# File endings taken as images when a folder is scanned (bench, training data).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"})
ORIENTATION = 0x0112  # EXIF tag


def _reason(e: BaseException) -> str:
    """An exception as a short single line."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def open_image(data: bytes, name: str = "input") -> Image.Image:
    """Open image bytes with Pillow, checking the size before decoding pixels."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            try:
                check_dimensions(*im.size)
            except FormatError as e:
                raise ImageError(f"{name}: {e}") from None
            im.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"of {pixels.group(1)} pixels " if pixels else ""
        raise ImageError(f"{name}: image {size}exceeds the limit of {MAX_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to read this image") from None
    except Exception as e:  # any failure of a damaged file is bad input, not a crash
        missing = _missing_loader(im if "im" in locals() else None, e)
        if missing:
            raise ImageError(f"{name}: {missing}") from None
        raise ImageError(f"{name} is a damaged image: {_reason(e)}") from None
    return im


def _missing_loader(im: Image.Image | None, e: Exception) -> str | None:
    """Why a well-formed image of a format Pillow needs an outside program or library for
    cannot be read here, or None (then the file is taken as damaged)."""
    kind = getattr(im, "format", None)
    text = str(e)
    if kind == "EPS" or "Ghostscript" in text:
        return "EPS images need Ghostscript to be read, and it is not installed (apt-get install ghostscript)"
    if kind == "WMF" or "WMF" in text or "EMF" in text:
        return "WMF/EMF images cannot be read here: Pillow draws them only on Windows"
    return None


def read_image(data: bytes, name: str = "input") -> np.ndarray:
    """Image file bytes -> the codec's input array (to_array of open_image)."""
    return to_array(open_image(data, name), name)


@dataclass(frozen=True)
class Picture:
    """An image as the codec takes it: its pixels (HxWx3 RGB or HxW grayscale uint8,
    upright, in sRGB where the file said how to get there), what it carries besides
    (codec.Extras: its alpha plane and metadata), and notes on what reading it changed
    that a user should hear of (a first frame of an animation, 16 bits made 8, ...)."""

    pixels: np.ndarray
    extras: Extras = Extras()
    notes: tuple[str, ...] = ()


def read_picture(data: bytes, name: str = "input", flatten: str | None = None) -> Picture:
    """Image file bytes -> a Picture (picture of open_image)."""
    return picture(open_image(data, name), name, flatten, data)


def picture(im: Image.Image, name: str = "input", flatten: str | None = None, data: bytes | None = None
            ) -> Picture:
    """Any Pillow image -> a Picture: to_array's pixels, the alpha plane kept (or, with
    flatten, a colour name or #rrggbb, the image composed over that colour), the ICC
    profile, EXIF (its orientation applied to the pixels and reset) and XMP kept, a PNG
    gamma (gAMA, cHRM without iCCP or sRGB) converted to sRGB as a viewer shows it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _picture(im, name, flatten, data)
    except (ImageError, FormatError):
        raise
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to convert this image") from None
    except Exception as e:
        raise ImageError(f"{name} is a damaged or unsupported image: {_reason(e)}") from None


UINT16_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def to_array(im: Image.Image, name: str = "input") -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB, or HxW uint8 for grayscale; upright.

    EXIF orientation is applied. Transparent images are refused: the codec has no
    alpha channel and dropping it would silently change what the user sees (fully
    opaque alpha is dropped). Grayscale of more than 8 bits is converted by its range:
    16-bit (0..65535) as round(v / 257), floating point (0..1) as round(v * 255); a
    32-bit integer image, or a float image outside 0..1, is refused. Palette, CMYK and
    other colour modes are converted to RGB by Pillow (16-bit colour arrives as 8 bits,
    Pillow keeping the high byte); an animation gives its first frame. Any failure
    (corrupt EXIF, a mode Pillow cannot convert) is an ImageError.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _to_array(im, name)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to convert this image") from None
    except Exception as e:
        raise ImageError(f"{name} is a damaged or unsupported image: {_reason(e)}") from None


def _upright(im: Image.Image) -> Image.Image:
    """im turned as its EXIF orientation says (im itself, not a copy, when upright)."""
    if im.getexif().get(ORIENTATION, 1) in (1, None):
        return im
    return ImageOps.exif_transpose(im) or im


def _int_is_16_bit(im: Image.Image) -> bool:
    """Whether a mode-I image holds 16-bit unsigned samples (0..65535): what Pillow makes
    of a 16-bit PNG or PGM (any maxval above 255 is scaled to 65535) or of a 16-bit
    unsigned TIFF. Other mode-I images (32-bit, signed) have no range the codec knows."""
    if im.format in ("PNG", "PPM"):
        return True
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        return tuple(np.atleast_1d(tags.get(258, ()))) == (16,) and tags.get(339, 1) in (1, (1,))
    return False


def _to_array(im: Image.Image, name: str) -> np.ndarray:
    pic = _picture(im, name, None)
    if pic.extras.alpha is not None:
        raise ImageError(f"{name} has transparency, which this use of bbcodec does not take; flatten it first")
    return pic.pixels


ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
GRAY_MODES = ("1", "L", "LA", "La")


def _gray_bits(im: Image.Image, data: bytes | None) -> int:
    """The bit depth of a grayscale PNG below 8 bits (else 8): Pillow scales its samples
    to 0..255 but leaves its tRNS value as stored."""
    if data is not None and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 0:
        return min(int(data[24]), 8)
    raw = getattr(getattr(im, "png", None), "im_rawmode", "") or ""
    return int(raw[2:]) if raw in ("L;1", "L;2", "L;4") else 8


def _alpha(im: Image.Image, gray_bits: int = 8) -> np.ndarray | None:
    """The alpha plane of an upright image (a mode with alpha, or a tRNS colour), None
    when it has none or every pixel is opaque."""
    if im.mode not in ALPHA_MODES and "transparency" not in im.info:
        return None
    if im.mode == "L" and gray_bits < 8 and isinstance(im.info["transparency"], int):
        value = im.info["transparency"] * (255 // (2**gray_bits - 1))
        plane = np.where(np.asarray(im) == value, 0, 255).astype(np.uint8)
        return None if plane.min() == 255 else plane
    if im.mode in UINT16_MODES or im.mode == "I":  # a 16-bit gray tRNS: the one transparent value
        plane = np.where(np.asarray(im) == im.info["transparency"], 0, 255).astype(np.uint8)
    else:
        plane = np.asarray(im.convert("LA" if im.mode in GRAY_MODES else "RGBA"))[..., -1]
    return None if plane.size == 0 or plane.min() == 255 else np.ascontiguousarray(plane)


def _opaque(im: Image.Image) -> Image.Image:
    """The colour of an image with alpha, without it (straight colour: premultiplied modes
    are converted back)."""
    if im.mode in ("LA", "La") or (im.mode in GRAY_MODES and "transparency" in im.info):
        return im.convert("LA").convert("L")
    if im.mode in ALPHA_MODES or (im.mode in ("P", "RGB") and "transparency" in im.info):
        return im.convert("RGBA").convert("RGB")
    if "transparency" in im.info:
        im = im.copy()
        del im.info["transparency"]
    return im


def _bits_16(im: Image.Image, data: bytes | None) -> bool:
    """Whether the source held more than 8 bits per sample (made 8 by the codec)."""
    if im.mode in UINT16_MODES or im.mode in ("I", "F"):
        return True
    if data is not None and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:
        return data[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        return any(int(b) > 8 for b in np.atleast_1d(getattr(im, "tag_v2", {}).get(258, (8,))))
    return False


def _exif(im: Image.Image) -> bytes | None:
    """The source's EXIF as a TIFF structure, its orientation reset (the pixels are
    turned upright), or None (none, or unreadable)."""
    raw = im.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def _xmp(im: Image.Image) -> bytes | None:
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode()
    return bytes(xmp) if xmp else None


def _picture(im: Image.Image, name: str, flatten: str | None, data: bytes | None = None) -> Picture:
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"an animation of {frames} frames: its first frame was coded")
    try:
        exif = _exif(im)
    except Exception:  # corrupt EXIF: the pixels are still good
        exif = None
        notes.append("its EXIF could not be read and was left out")
    icc = im.info.get("icc_profile") or None
    xmp = _xmp(im)
    gamma = _png_gamma(im)
    bits = _gray_bits(im, data)
    im = _upright(im)
    alpha = _alpha(im, bits)
    if alpha is not None and flatten is not None:
        bg = colour(flatten)
        pixels = _pixels(_opaque(im.convert("RGBA")), name)
        a = alpha.astype(np.uint32)[:, :, None]
        pixels = ((pixels.astype(np.uint32) * a + np.array(bg, np.uint32) * (255 - a) + 127) // 255).astype(np.uint8)
        alpha = None
    else:
        pixels = _pixels(_opaque(im) if alpha is not None or "transparency" in im.info else im, name)
    if _bits_16(im, data):
        notes.append("its samples of more than 8 bits were rounded to 8 bits")
    if gamma is not None:
        pixels = _to_srgb(pixels, *gamma)
        notes.append(f"its PNG gamma {gamma[0]:g}{' and chromaticities' if gamma[1] else ''} were converted to sRGB")
    return Picture(pixels, Extras(alpha, icc, exif, xmp), tuple(notes))


def colour(text: str) -> tuple[int, int, int]:
    try:
        r, g, b = ImageColor.getrgb(text)[:3]
    except ValueError:
        raise ImageError(f"unknown colour {text!r} (give a name such as white, or #rrggbb)") from None
    return r, g, b


# The PNG spec's sRGB: gAMA 45455 with these chromaticities (white, red, green, blue x, y).
SRGB_GAMMA = 0.45455
SRGB_CHROMATICITY = (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)


def _png_gamma(im: Image.Image) -> tuple[float, tuple[float, ...] | None] | None:
    """(file gamma, chromaticities or None) of a PNG whose colours are not sRGB as they
    are stored: a gAMA or cHRM without an iCCP or sRGB chunk (which take precedence, by
    the PNG spec); None for sRGB (gAMA 45455, cHRM absent or sRGB's) and for the rest."""
    if im.format != "PNG" or "icc_profile" in im.info or "srgb" in im.info:
        return None
    gamma = float(im.info.get("gamma", SRGB_GAMMA))
    chroma = im.info.get("chromaticity")
    if chroma is not None and np.allclose(chroma, SRGB_CHROMATICITY, atol=0.002):
        chroma = None
    if chroma is None and abs(gamma - SRGB_GAMMA) < 0.0005:
        return None
    if not gamma > 0:
        return None
    return gamma, None if chroma is None else tuple(float(c) for c in chroma)


def _xyz_from_rgb(chroma: tuple[float, ...]) -> np.ndarray:
    """The linear RGB -> XYZ matrix of a white point and primaries (x, y each)."""
    wx, wy, *prim = chroma
    xy = np.array(prim).reshape(3, 2)
    P = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return P * np.linalg.solve(P, white)


def _to_srgb(pixels: np.ndarray, gamma: float, chroma: tuple[float, ...] | None) -> np.ndarray:
    """8-bit samples of a PNG's gamma (and primaries) -> sRGB, as a viewer displays them:
    decoded to linear light (v ** (1 / gamma)), the primaries mapped to sRGB's through
    XYZ (white points adapted by Bradford), clipped, sRGB-encoded, rounded."""
    lin = (pixels.astype(np.float64) / 255.0) ** (1.0 / gamma)
    if chroma is not None and pixels.ndim == 3:
        bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
        src, dst = _xyz_from_rgb(chroma), _xyz_from_rgb(SRGB_CHROMATICITY)
        w_src, w_dst = bradford @ src.sum(axis=1), bradford @ dst.sum(axis=1)
        adapt = np.linalg.inv(bradford) @ np.diag(w_dst / w_src) @ bradford
        lin = lin @ (np.linalg.inv(dst) @ adapt @ src).T
    lin = np.clip(lin, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.rint(srgb * 255).astype(np.uint8)


def _pixels(im: Image.Image, name: str) -> np.ndarray:
    """The pixels of an image without alpha: HxWx3 uint8 RGB or HxW uint8 grayscale."""
    if im.mode in ("1", "L", "LA", "La"):
        return np.ascontiguousarray(np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.uint8))
    if im.mode in UINT16_MODES or im.mode == "I" or im.mode.startswith("I;"):
        arr = np.asarray(im)
        if im.mode not in UINT16_MODES and not (_int_is_16_bit(im) and (arr.size == 0 or 0 <= arr.min() <= arr.max() <= 65535)):
            raise ImageError(f"{name} is {_integer_kind(im)}, whose brightness range bbcodec cannot know; "
                             "convert it to 8 or 16 bits first")
        return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257), no ties
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and not (np.isfinite(arr).all() and 0 <= arr.min() and arr.max() <= 1):
            raise ImageError(f"{name} is a floating-point image with values outside 0..1, which bbcodec cannot map "
                             "to 8 bits; convert it first")
        return np.rint(arr * 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8))


def _integer_kind(im: Image.Image) -> str:
    """'a signed 16-bit integer image' and the like, from a TIFF's tags (else 32-bit)."""
    tags = getattr(im, "tag_v2", {})
    bits = np.atleast_1d(tags.get(258, (32,)))
    fmt = np.atleast_1d(tags.get(339, (1,)))
    signed = "signed" if int(fmt[0]) == 2 else "unsigned" if int(fmt[0]) == 1 else "non-integer"
    if im.mode == "I;16S":
        return "a signed 16-bit integer image"
    return f"a{'n' if signed == 'unsigned' else ''} {signed} {int(bits[0])}-bit integer image"


def to_rgb(im: Image.Image, name: str = "input") -> np.ndarray:
    """Like to_array, but grayscale is repeated into three channels."""
    arr = to_array(im, name)
    return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr


def any_picture(image: object, flatten: str | None = None) -> tuple[Picture, str]:
    """What the API's encode takes -> (a Picture, the name errors give it): a Pillow image,
    a path of an image file, or a uint8 array (HxW, HxWx2 with alpha, HxWx3, HxWx4 with
    alpha); anything else, and a .bbc file, is an ImageError."""
    import os

    if isinstance(image, Image.Image):
        return picture(image, "image", flatten), "image"
    if isinstance(image, (str, os.PathLike)):
        from .coding.format import MAGIC
        from .files import read_input

        name = os.fspath(image)
        data = read_input(name, sniff=lambda prefix: check_prefix(prefix, name))
        if data[:4] == MAGIC:
            raise ImageError(f"{name} is already a .bbc file (bbcodec.decode turns it back into an image)")
        return read_picture(data, name, flatten), name
    if not isinstance(image, np.ndarray):
        raise ImageError(f"cannot encode a {type(image).__name__}: give a Pillow image, a path or a uint8 array")
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (2, 3, 4))):
        raise ImageError(f"encode takes a uint8 array of HxW, HxWx2, HxWx3 or HxWx4, not {image.dtype} "
                         f"{'x'.join(map(str, image.shape))}")
    if image.ndim == 3 and image.shape[2] in (2, 4):  # with alpha: as Pillow would take it
        return picture(Image.fromarray(np.ascontiguousarray(image)), "array", flatten), "array"
    return Picture(image), "array"


def check_prefix(prefix: bytes, name: str = "input") -> None:
    """Refuse the first bytes of an input that no image format Pillow reads starts like
    (so that an endless stream of zeros is refused after its first bytes)."""
    if not prefix:
        raise ImageError(f"{name} is empty (0 bytes)")
    Image.init()
    if any(accept is not None and accept(prefix) for _, accept in Image.OPEN.values()):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.open(io.BytesIO(prefix)).close()  # formats without a signature (TGA): by their header
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read") from None
    except Exception:  # noqa: BLE001 - a header Pillow recognised: read the rest and see
        return


def png_bytes(img: np.ndarray) -> bytes:
    return image_bytes(img, "PNG")[0]


ALPHA_FORMATS = ("PNG", "TIFF", "WEBP", "BMP")  # the output formats that hold an alpha plane


def image_bytes(img: np.ndarray, fmt: str = "PNG", extras: Extras | None = None) -> tuple[bytes, tuple[str, ...]]:
    """A decoded image (HxW, HxWx2 LA, HxWx3 RGB or HxWx4 RGBA) as a file of Pillow
    format fmt (lossy ones at quality 95) with the extras' metadata the format holds
    (PNG, TIFF, JPEG, WebP: ICC, EXIF, XMP), and notes on what it left out. An image with
    alpha in a format without is refused (ImageError), not flattened without a word."""
    extras = extras or Extras()
    if img.ndim == 3 and img.shape[2] in (2, 4) and fmt not in ALPHA_FORMATS:
        raise ImageError(f"{fmt} cannot hold the image's transparency; write PNG, TIFF or WebP")
    params: dict = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    notes = []
    kept = []
    holds = fmt in ("PNG", "TIFF", "JPEG", "WEBP")
    if extras.icc and holds:
        params["icc_profile"] = extras.icc
        kept.append("icc")
    if extras.exif and holds:
        params["exif"] = b"Exif\x00\x00" + extras.exif
        kept.append("exif")
    if extras.xmp and holds:
        kept.append("xmp")
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", extras.xmp.decode("utf-8", "replace"))
            params["pnginfo"] = info
        elif fmt == "TIFF":
            params["tiffinfo"] = {700: extras.xmp}
        else:
            params["xmp"] = extras.xmp
    left = [k for k in ("icc", "exif", "xmp") if getattr(extras, k) and k not in kept]
    if left:
        notes.append(f"{fmt} cannot hold its {', '.join(left).upper()} metadata, which was left out")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **params)
    return buf.getvalue(), tuple(notes)


def reduce_colours(img: np.ndarray, colours: int) -> np.ndarray:
    """An HxWx3 uint8 image in at most `colours` colours: Pillow's median cut, without
    dithering (which would cost a lossless coder more than it gives the eye on text and
    flat fills). For coding/lossless.smaller_file, which may not import Pillow."""
    im = Image.fromarray(img).quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return np.asarray(im.convert("RGB"))
