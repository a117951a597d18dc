"""Reading images users have into the codec's 8-bit RGB, and writing PNGs.

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

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
        raise ImageError(f"{name} is a damaged image: {_reason(e)}") from None
    return im


def read_image(data: bytes, name: str = "input") -> np.ndarray:
    """Image file bytes -> the codec's input array (to_array of open_image)."""
    return to_array(open_image(data, name), name)


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
    im = _upright(im)
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            raise ImageError(f"{name} has transparency, which bbcodec cannot store; flatten it first")
    if im.mode in ("1", "L", "LA", "La"):
        return np.ascontiguousarray(np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.uint8))
    if im.mode in UINT16_MODES or im.mode == "I":
        arr = np.asarray(im)
        if im.mode == "I" and not (_int_is_16_bit(im) and (arr.size == 0 or 0 <= arr.min() <= arr.max() <= 65535)):
            raise ImageError(f"{name} is a 32-bit integer image, whose brightness range bbcodec cannot know; "
                             "convert it to 8 or 16 bits first")
        return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257), no ties
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and not (np.isfinite(arr).all() and 0 <= arr.min() and arr.max() <= 1):
            raise ImageError(f"{name} is a floating-point image with values outside 0..1, which bbcodec cannot map "
                             "to 8 bits; convert it first")
        return np.rint(arr * 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8))


def to_rgb(im: Image.Image, name: str = "input") -> np.ndarray:
    """Like to_array, but grayscale is repeated into three channels."""
    arr = to_array(im, name)
    return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr


def png_bytes(img: np.ndarray) -> bytes:
    return image_bytes(img, "PNG")


def image_bytes(img: np.ndarray, fmt: str = "PNG") -> bytes:
    """A decoded image as a file of Pillow format fmt (lossy ones at quality 95)."""
    buf = io.BytesIO()
    extra = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(img).save(buf, format=fmt, **extra)
    return buf.getvalue()
