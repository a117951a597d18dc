"""Reading images users have into the codec's 8-bit RGB, and writing PNGs.

The size is checked from the file header before any pixel is decoded, so a huge
image is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import Error
from .format import FormatError, check_dimensions

# File endings taken as images when a folder is scanned (bench, training data).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"})


class ImageError(Error, ValueError):
    """The input is not an image the codec can take."""


def open_image(data: bytes, name: str = "input") -> Image.Image:
    """Open image bytes with Pillow, checking the size before decoding pixels."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = None  # our own limit (checked below, before decoding) replaces Pillow's
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
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageError(f"{name} is not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name} is a damaged image: {e}") from None
    return im


GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def to_array(im: Image.Image, name: str = "input") -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB, or HxW uint8 for grayscale; upright.

    EXIF orientation is applied. Transparent images are refused: the codec has no
    alpha channel and dropping it would silently change what the user sees (fully
    opaque alpha is dropped). 16-bit images are scaled to 8 bits (x / 257); palette,
    CMYK and other colour modes are converted to RGB by Pillow; an animation gives its
    first frame.
    """
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            raise ImageError(f"{name} has transparency, which bbcodec cannot store; flatten it first")
    if im.mode in GRAY_MODES:
        if im.mode in ("1", "L", "LA", "La"):
            return np.ascontiguousarray(np.asarray(im.convert("L"), dtype=np.uint8))
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        return np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def to_rgb(im: Image.Image, name: str = "input") -> np.ndarray:
    """Like to_array, but grayscale is repeated into three channels."""
    arr = to_array(im, name)
    return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()
