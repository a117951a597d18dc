"""bbcodec: a learned block-based image codec with a real, bit-exact bitstream.

Based on Kamisli, "End-to-End Learned Block-Based Image Compression with Block-Level
Masked Convolutions and Asymptotic Closed-Loop Training" (arXiv 2203.11686).

>>> import bbcodec
>>> from PIL import Image
>>> data = bbcodec.encode(Image.new("RGB", (16, 16), "teal"))
>>> bbcodec.read_info(data).width
16
>>> bbcodec.decode(data).size
(16, 16)

Every error bbcodec raises on purpose is a bbcodec.Error (bad input or a failed
operation, with a one-line message); anything else is a bug.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

# What `import bbcodec` loads: Pillow and the container modules (format, quality, effort,
# errors), because the Pillow plugin below registers .bbc with Pillow right away.
# numpy, constriction, the networks and the weights load on the first encode or
# decode (the imports inside the functions), so importing stays quick.
from . import pillow_plugin
from .coding import effort as _effort
from .errors import (
    ClusterError,
    DecodeError,
    EffortError,
    EntropyError,
    Error,
    FileError,
    FormatError,
    ImageError,
    QualityError,
    ThreadsError,
    WeightsError,
    WorkerError,
)

if TYPE_CHECKING:  # annotations only
    import numpy as np
    from PIL import Image

__version__ = "0.1.0"
__all__ = [
    "encode", "decode", "read_info", "Info", "__version__",
    "Error", "FormatError", "DecodeError", "EntropyError", "ImageError", "QualityError", "WeightsError", "FileError",
    "EffortError", "ThreadsError", "WorkerError", "ClusterError",
]

pillow_plugin.register()


def encode(image: Image.Image | np.ndarray | str | os.PathLike[str], quality: float | None = None, *,
           target_bpp: float | None = None, target_psnr: float | None = None,
           weights: str | os.PathLike[str] | None = None, effort: int = _effort.DEFAULT,
           threads: int | None = None) -> bytes:
    """Compress an image to .bbc bytes. The image is a Pillow image, a path of an image
    file (anything Pillow reads), or an HxWx3 / HxW (grayscale) uint8 array.

    quality: from quality.MIN (smallest file) to quality.MAX (best image); None (the
    default) is quality.DEFAULT (see bbcodec.model.quality); fractions step between the
    trained qualities. target_bpp / target_psnr (instead of quality, which must then be
    left out): the largest file not above that many bits per pixel / the smallest file
    reaching that PSNR in dB (the nearest end when out of reach, as `bbcodec encode
    --target-bpp`). weights: a weights file (.npz) to use instead of the default;
    decoding finds it by its hash in the searched folders.
    effort: 1 (default, fast) to effort.MAX: more encoder time for a smaller file at the
    same quality (bbcodec.coding.effort); every effort decodes with the same decoder.
    threads: processes coding the image (default: the cores this process may use), at
    most one per payload stream (bbcodec.coding.streams.default_count: 2 for Kodak-sized
    images, 16 for 4000x3000); the bytes are the same for any number. Efforts
    above 1 code in this process alone, except for the effort-1 pass some of them make
    first (coding.loop.encode). Bad options raise a bbcodec.Error before the image is read
    (codec.check).
    """
    import numpy as np
    from PIL import Image

    from . import codec, images

    codec.check(quality, target_bpp, target_psnr, effort, threads)
    name = None
    if isinstance(image, Image.Image):
        arr = images.to_array(image)
    elif isinstance(image, (str, os.PathLike)):
        from .files import read_input

        name = os.fspath(image)
        arr = images.read_image(read_input(name), name)
    else:
        arr = np.asarray(image)
        if not isinstance(image, np.ndarray) and arr.dtype == object:
            raise images.ImageError(f"cannot encode a {type(image).__name__}: give a Pillow image, a path "
                                    "or a uint8 array")
    return codec.encode(arr, quality, target_bpp=target_bpp, target_psnr=target_psnr, weights=weights,
                        effort=effort, threads=threads, name=name).data


def decode(data: bytes, *, threads: int | None = None) -> Image.Image:
    """Decompress .bbc bytes to a Pillow image (mode RGB, or L for grayscale files);
    threads as for encode (the pixels are the same for any number)."""
    from PIL import Image

    from . import codec

    return Image.fromarray(codec.decode(data, threads=threads).image)


@dataclass(frozen=True)
class Info:
    """The header of a .bbc file, and its sizes (what `bbcodec info` prints)."""

    version: int
    width: int
    height: int
    channels: int  # 3 (RGB) or 1 (grayscale)
    quality: float
    model_id: int
    weights_sha256: str  # hex, first 8 bytes of the weights file's SHA-256
    image_digest: str  # hex, first 8 bytes of SHA-256 of the decoded pixels
    payload_bytes: int
    file_bytes: int
    bpp: float  # bits per pixel of the whole file
    streams: int = 1  # payload streams: the most processes that decode it at once (version 1: one)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, in order (the keys of `bbcodec info --json`)."""
        return asdict(self)


def read_info(data: bytes, check_crc: bool = True) -> Info:
    """Header fields of .bbc bytes, after checking size and CRC (check_crc=False: the
    fields of a file whose CRC is bad, when they are valid otherwise)."""
    from .coding import format

    header, payload = format.unpack(data, check_crc)
    return Info(
        version=header.version,
        width=header.width,
        height=header.height,
        channels=header.channels,
        quality=header.quality_value,
        model_id=header.model_id,
        weights_sha256=header.weights_sha256.hex(),
        image_digest=header.image_digest.hex(),
        payload_bytes=len(payload),
        file_bytes=len(data),
        bpp=8 * len(data) / (header.width * header.height),
        streams=header.streams,
    )
