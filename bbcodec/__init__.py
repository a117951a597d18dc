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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

# What `import bbcodec` loads: Pillow and the container modules (format, quality, effort,
# errors), because the Pillow plugin below registers .bbc with Pillow right away.
# numpy, constriction, the networks and the weights load on the first encode or
# decode (the imports inside the functions), so importing stays quick.
from . import pillow_plugin
from .coding import effort as _effort
from .errors import (
    AQError,
    ClusterError,
    DecodeError,
    EffortError,
    EntropyError,
    Error,
    ExtraError,
    FileError,
    FilterError,
    FormatError,
    ImageError,
    LosslessError,
    QualityError,
    ThreadsError,
    WeightsError,
    WorkerError,
)

if TYPE_CHECKING:  # annotations only
    import numpy as np
    from PIL import Image

    from .coding.format import Header

__version__ = "0.1.0"
__all__ = [
    "encode", "decode", "read_info", "Info", "__version__",
    "Error", "FormatError", "DecodeError", "EntropyError", "ExtraError", "ImageError", "QualityError", "WeightsError",
    "FileError", "EffortError", "ThreadsError", "WorkerError", "ClusterError", "LosslessError", "AQError",
    "FilterError",
]

pillow_plugin.register()


def encode(image: Image.Image | np.ndarray | str | os.PathLike[str], quality: float | None = None, *,
           target_bpp: float | None = None, target_psnr: float | None = None,
           weights: str | os.PathLike[str] | None = None, tune: str | None = None,
           effort: int = _effort.DEFAULT, threads: int | None = None, lossless: bool | None = None,
           aq: float | None = None, linear_filter: bool = True, metadata: str = "all",
           flatten: str | None = None) -> bytes:
    """Compress an image to .bbc bytes. The image is a Pillow image, a path of an image
    file (anything Pillow reads), or a uint8 array: HxWx3 (RGB), HxW (grayscale), HxWx4
    (RGBA) or HxWx2 (grayscale and alpha).

    quality: from quality.MIN (smallest file) to quality.MAX (best image); None (the
    default) is quality.DEFAULT (see bbcodec.model.quality); fractions step between the
    trained qualities. target_bpp / target_psnr (instead of quality, which must then be
    left out): the largest file not above that many bits per pixel / the smallest file
    reaching that PSNR in dB (the nearest end when out of reach, as `bbcodec encode
    --target-bpp`). tune: "visual" (weights tuned for the eye: SSIMULACRA2, MS-SSIM) or
    "psnr" (weights trained on RGB MSE, for PSNR tables); None (the default) is the
    default weights, tuned for the eye. weights: a weights file (.npz) to use instead
    (not with tune); decoding finds the weights of any file by its hash.
    effort: 1 (default, fast) to effort.MAX: more encoder time for a smaller file at the
    same quality (bbcodec.coding.effort); every effort decodes with the same decoder.
    threads: processes coding the image (default: the cores this process may use), at
    most one per payload stream (bbcodec.coding.streams.default_count: 2 for Kodak-sized
    images, 16 for 4000x3000); the bytes are the same for any number. Efforts
    above 1 code in this process alone, except for the effort-1 pass some of them make
    first (coding.loop.encode).
    lossless: None (the default): the image exactly (format version 5, no networks)
    whenever that file is smaller than the lossy one, as for text, screenshots, charts
    and ramps; True: always exactly (then without quality, targets, effort, tune or
    weights); False: never.
    aq: the strength of adaptive quantisation, 0 (off) to 1: areas of the picture
    smoother than its average get a higher quality, since the eye sees errors there
    (format version 6; bbcodec.coding.aq); None (the default) is the weights' tuning's
    (model.tuning.AQ_STRENGTH: visual 0.4, psnr 0).
    linear_filter: whether the encoder may fit a small linear filter to the decoded
    picture and send it (format version 7; bbcodec.coding.linear), written only where
    its bytes buy more quality than they cost; False keeps files readable by decoders
    of format versions 1 to 6.
    metadata: what to keep of the image's ICC profile, EXIF and XMP: "all" (default),
    "none", or a comma list of icc, exif, xmp. An alpha plane is kept exactly, unless
    flatten names a colour (a name or #rrggbb) to compose the image over. What reading
    the image changed (an animation's first frame, 16 bits made 8) is said by a warning.
    Bad options raise a bbcodec.Error before the image is read (codec.check).
    """
    import warnings

    from . import codec, images

    codec.check(quality, target_bpp, target_psnr, effort, threads, tune, weights, lossless, aq, linear_filter)
    kinds = codec.parse_metadata(metadata)
    if flatten is not None:
        images.colour(flatten)
    pic, name = images.any_picture(image, flatten)
    for note in pic.notes:
        warnings.warn(f"{name}: {note}", UserWarning, stacklevel=2)
    return codec.encode(pic.pixels, quality, target_bpp=target_bpp, target_psnr=target_psnr, weights=weights,
                        tune=tune, effort=effort, threads=threads, lossless=lossless, aq=aq,
                        linear_filter=linear_filter, extras=pic.extras.keeping(kinds),
                        name=None if name == "image" else name).data


def _file_bytes(data: object, what: str) -> bytes:
    """.bbc bytes from bytes-like data or a path; a FormatError for anything else."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        from .files import read_bbc

        return read_bbc(os.fspath(data))
    raise FormatError(f"{what} takes the bytes of a .bbc file or its path, not a {type(data).__name__}")


def decode(data: bytes | str | os.PathLike[str], *, threads: int | None = None) -> Image.Image:
    """Decompress a .bbc file (its bytes, or its path) to a Pillow image: mode RGB, or L
    for grayscale files, RGBA / LA when the file has an alpha plane; its ICC profile,
    EXIF and XMP in im.info ("icc_profile", "exif", "xmp"), as Pillow's own readers put
    them. threads as for encode (the pixels are the same for any number)."""
    from PIL import Image

    from . import codec
    from .coding.workers import check_threads

    check_threads(threads)
    r = codec.decode(_file_bytes(data, "decode"), threads=threads)
    im = Image.fromarray(r.pixels)
    if r.extras.icc:
        im.info["icc_profile"] = r.extras.icc
    if r.extras.exif:
        im.info["exif"] = b"Exif\x00\x00" + r.extras.exif
    if r.extras.xmp:
        im.info["xmp"] = r.extras.xmp
    return im


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
    chunks: dict[str, int] = field(default_factory=dict)  # what the file carries besides the pixels, and its bytes
    flat_blocks: int = 0  # 8x8 blocks of one colour, not coded by the networks (version 4)
    lossless: str | None = None  # version 5: the pixels exactly, by this transform (coding/lossless.py)
    reduced: bool = False  # version 5: the encoder reduced the image's colours before storing it
    quality_range: tuple[float, float] | None = None  # versions 6, 7: the lowest and highest quality of its coded blocks
    linear_filter: str | None = None  # version 7: the fitted linear filter's shape (coding/linear.py)
    linear_filter_bytes: int = 0  # and its section's bytes

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, in order (the keys of `bbcodec info --json`)."""
        return asdict(self)


def read_info(data: bytes | str | os.PathLike[str], check_crc: bool = True) -> Info:
    """Header fields of a .bbc file (its bytes, or its path), after checking size and CRC
    (check_crc=False: the fields of a file whose CRC is bad, when they are valid
    otherwise), and the sizes of what it carries besides the pixels (alpha, icc, exif, xmp)."""
    from .coding import format

    data = _file_bytes(data, "read_info")
    header, payload = format.unpack(data, check_crc)
    try:
        chunks = format.chunk_sizes(data)
    except FormatError:  # a damaged chunk area, shown with check_crc=False
        chunks = {}
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
        streams=1 if header.lossless else header.streams,
        chunks=chunks,
        flat_blocks=0 if header.flat is None else header.flat.modes.count(1),
        lossless=header.transform,
        reduced=header.reduced,
        quality_range=_quality_range(header),
        linear_filter=None if header.linear is None else _linear_shape(header.linear),
        linear_filter_bytes=len(header.linear or b""),
    )


def _linear_shape(section: bytes) -> str:
    from .coding.linear import SHAPES

    return SHAPES[section[0]]


def _quality_range(header: Header) -> tuple[float, float] | None:
    """The lowest and highest quality of a version 6 or 7 file's coded blocks (adaptive
    quantisation), else None."""
    if not header.adaptive:
        return None
    from .coding.format import DQ_STEP
    from .model import quality as q

    assert header.flat is not None
    dq = [o for o, m in zip(header.flat.offsets(), header.flat.modes, strict=True) if not m]
    return q.from_x256(header.quality_x256 + DQ_STEP * min(dq)), q.from_x256(header.quality_x256 + DQ_STEP * max(dq))
