"""Reading images users have into the codec's 8-bit RGB, and writing PNGs.

The size is checked from the file header before any pixel is decoded, so a huge
image is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .format import FormatError, check_dimensions


class ImageError(ValueError):
    """The input is not an image the codec can take."""


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
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageError(f"{name} is not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name} is a damaged image: {e}") from None
    return im


def to_rgb(im: Image.Image, name: str = "input") -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB, upright (EXIF orientation applied).

    Transparent images are refused: the codec has no alpha channel and dropping it
    would silently change what the user sees. 16-bit images keep their top 8 bits.
    """
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            raise ImageError(f"{name} has transparency, which bbcodec cannot store; flatten it first")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.int64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        gray = np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()
