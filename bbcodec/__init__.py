"""bbcodec: a learned block-based image codec with a real, bit-exact bitstream.

Based on Kamisli, "End-to-End Learned Block-Based Image Compression with Block-Level
Masked Convolutions and Asymptotic Closed-Loop Training" (arXiv 2203.11686).

>>> import bbcodec
>>> from PIL import Image
>>> data = bbcodec.encode(Image.new("RGB", (16, 16), "teal"), quality=4)
>>> bbcodec.read_info(data)["width"]
16
>>> bbcodec.decode(data).size
(16, 16)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and Pillow load lazily, so the CLI can set BLAS threads first
    import numpy as np
    from PIL import Image

__version__ = "0.1.0"
__all__ = ["encode", "decode", "read_info", "__version__"]

from . import pillow_plugin  # noqa: E402 - registers .bbc with Pillow on import

pillow_plugin.register()


def encode(image: Image.Image | np.ndarray, quality: float = 4) -> bytes:
    """Compress a Pillow image, or an HxWx3 / HxW (grayscale) uint8 array, to .bbc bytes.

    quality: 1 (smallest) .. 8 (best); fractions step between the trained qualities.
    """
    import numpy as np
    from PIL import Image

    from . import codec, images, weights

    if isinstance(image, Image.Image):
        arr = images.to_array(image)
    else:
        arr = np.asarray(image)
    data, _ = codec.encode(arr, quality, weights.default())
    return data


def decode(data: bytes) -> Image.Image:
    """Decompress .bbc bytes to a Pillow image (mode RGB, or L for grayscale files)."""
    from PIL import Image

    from . import codec, format, weights

    header, payload = format.unpack(data)
    return Image.fromarray(codec.decode(header, payload, weights.for_header(header)))


def read_info(data: bytes) -> dict[str, Any]:
    """Header fields of .bbc bytes (after checking size and CRC) as a dict."""
    from . import format

    header, payload = format.unpack(data)
    return {
        "version": header.version,
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "quality": header.quality,
        "model_id": header.model_id,
        "weights_sha256": header.weights_sha256.hex(),
        "image_digest": header.image_digest.hex(),
        "payload_bytes": len(payload),
        "file_bytes": len(data),
        "bpp": 8 * len(data) / (header.width * header.height),
    }
