"""The one encoder and the one decoder behind every entry point: bbcodec.encode / decode
(the API), files.encode_file / decode_file (the CLI) and the Pillow plugin.

check refuses bad options, before any work, in this one place; encode chooses the weights
and calls the coding loop (coding/loop.py), or the rate control (ratecontrol.py) for a
size or PSNR target; decode finds the weights a file names and calls the loop's decoder.
numpy arrays in, .bbc bytes out, and back: files are files.py's, Pillow images images.py's.

Imports no numpy until it codes (files.py imports this, and the CLI files.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, TypeGuard

from .coding import effort as efforts
from .errors import Error, FilterError, LosslessError, QualityError, WeightsError
from .model import quality as Q

if TYPE_CHECKING:  # annotations only
    import numpy as np

    from .coding.format import Header
    from .model.weights import Weights

METADATA = ("icc", "exif", "xmp")  # what --metadata names (cwebp's -metadata; all kept by default)


@dataclass(frozen=True)
class Extras:
    """What a file carries besides the coded pixels (the chunks of format version 3,
    docs/format.md 8): an alpha plane, kept exactly, and the metadata of the source."""

    alpha: np.ndarray | None = None  # HxW uint8, straight (not premultiplied); None: opaque
    icc: bytes | None = None  # an ICC profile: what the pixels' numbers mean
    exif: bytes | None = None  # EXIF as a TIFF structure ("II*\0" or "MM\0*"), orientation reset
    xmp: bytes | None = None  # an XMP packet, UTF-8

    def keeping(self, metadata: frozenset[str] | set[str]) -> Extras:
        """These extras with only the metadata named (of METADATA); the alpha plane stays."""
        return Extras(self.alpha, *(getattr(self, k) if k in metadata else None for k in METADATA))

    def chunks(self) -> dict[bytes, bytes]:
        """The chunks to write (none for an opaque image without metadata: version 2)."""
        from .coding import alpha

        out = {k: v for k, v in ((b"ICCP", self.icc), (b"EXIF", self.exif), (b"XMP ", self.xmp)) if v}
        if self.alpha is not None:
            out[b"ALPH"] = alpha.encode(self.alpha)
        return out

    @classmethod
    def of_chunks(cls, chunks: dict[bytes, bytes], width: int, height: int) -> Extras:
        from .coding import alpha

        plane = alpha.decode(chunks[b"ALPH"], width, height) if b"ALPH" in chunks else None
        return cls(plane, chunks.get(b"ICCP"), chunks.get(b"EXIF"), chunks.get(b"XMP "))

    def names(self) -> list[str]:
        """What these extras hold, as `bbcodec info` lists them."""
        return [k for k in ("alpha", *METADATA) if getattr(self, k) is not None]


def parse_metadata(value: str) -> frozenset[str]:
    """A --metadata value (all, none, or a comma list of icc, exif, xmp) -> the kinds kept."""
    words = [w.strip().lower() for w in value.split(",") if w.strip()]
    if words == ["all"]:
        return frozenset(METADATA)
    if words == ["none"]:
        return frozenset()
    bad = [w for w in words if w not in METADATA]
    if bad or not words:
        raise QualityError(f"metadata must be all, none, or a comma list of {', '.join(METADATA)}; got {value!r}")
    return frozenset(words)


# progress_for(pixels) gives a progress bar for an image of that many pixels (a context
# manager whose value has update(pixels done), as click's) or None.
ProgressFor = Callable[[int], Any]


def _is_number(value: object) -> TypeGuard[float]:
    """A real number (an int, a float, numpy's), not a bool or a string."""
    return isinstance(value, Real) and not isinstance(value, bool)


def check(quality: object = None, target_bpp: object = None, target_psnr: object = None,
          effort: object = efforts.DEFAULT, threads: object = None, tune: object = None,
          weights: object = None, lossless: object = None, aq: object = None, linear_filter: object = True) -> None:
    """Refuse bad encoding options with a one-line bbcodec.Error, before any work: more than
    one of quality / target_bpp / target_psnr, a quality that is not a number within
    quality.MIN..MAX, a target that is not a finite number above 0 (QualityError), a bad
    effort (EffortError), threads (ThreadsError), a tune not of model.tuning.TUNES, or a
    tune beside a weights file (WeightsError); an adaptive-quantisation strength aq not
    in 0..tuning.MAX_AQ (AQError); linear_filter other than True or False
    (FilterError); lossless other than None, True or False, or True
    beside an option of the lossy coder (LosslessError). None is the default of each."""
    if type(linear_filter) is not bool:
        raise FilterError(f"linear_filter must be True or False, got {linear_filter!r}")
    if lossless is not None and type(lossless) is not bool:
        raise LosslessError(f"lossless must be True, False or None (the smaller file), got {lossless!r}")
    if lossless is True:
        lossy = [name for name, v, default in (
            ("quality", quality, None), ("target_bpp", target_bpp, None), ("target_psnr", target_psnr, None),
            ("effort", effort, efforts.DEFAULT), ("tune", tune, None), ("weights", weights, None), ("aq", aq, None))
            if v != default]
        if lossy:
            raise LosslessError(f"lossless coding has no {' or '.join(lossy)} (those are the lossy coder's options)")
    given = [name for name, v in (("quality", quality), ("target_bpp", target_bpp), ("target_psnr", target_psnr))
             if v is not None]
    if len(given) > 1:
        raise QualityError(f"give only one of quality, target_bpp and target_psnr, not {' and '.join(given)}")
    if quality is not None:
        if not _is_number(quality) or not math.isfinite(quality):
            raise QualityError(f"quality must be a number within {Q.MIN}..{Q.MAX}, got {quality!r}")
        Q.to_x256(quality)  # QualityError outside the range
    for name, target in (("target_bpp", target_bpp), ("target_psnr", target_psnr)):
        if target is not None and not (_is_number(target) and math.isfinite(target) and target > 0):
            raise QualityError(f"{name} must be a finite number above 0, got {target!r}")
    efforts.check(effort)
    from .coding.workers import check_threads
    from .model.tuning import check_aq, check_tune

    check_tune(tune)
    check_aq(aq)
    if weights is not None and tune is not None:
        raise WeightsError("give weights or tune, not both (a weights file has its own tuning)")
    check_threads(threads)


@contextmanager
def naming(name: str | None) -> Iterator[None]:
    """A bbcodec.Error raised inside is about the input called name (when not None) and its
    message does not name it: raised again, of its own class, with the name in front."""
    try:
        yield
    except Error as e:
        if name is None:
            raise
        raise type(e)(f"{name}: {e}") from e


@contextmanager
def _progress(progress_for: ProgressFor | None, shape: tuple[int, ...]) -> Iterator[Callable[[int], None] | None]:
    """The update function of the progress bar progress_for gives for an image of shape
    (height, width, ...), or None."""
    bar = None
    if progress_for is not None:
        from .model.blocks import BLOCK, grid_shape

        rows, cols = grid_shape(*shape[:2])
        bar = progress_for(rows * cols * BLOCK * BLOCK)
    if bar is None:
        yield None
        return
    with bar as b:
        yield b.update


def choose_weights(path: str | os.PathLike[str] | None = None, tune: str | None = None) -> Weights:
    """The weights of a weights file (verified; a WeightsError names it), or the first
    installed of a tuning (model.tuning.TUNES), or the default ones."""
    from .model import weights

    return weights.default(tune) if path is None else weights.from_file(path)


def aq_strength(w: Weights, aq: float | None) -> float:
    """The adaptive-quantisation strength to code with: aq, or the weights' tuning's."""
    if aq is not None:
        return float(aq)
    from .model.tuning import AQ_STRENGTH
    from .model.weights import tune_of

    return AQ_STRENGTH[tune_of(w.path)]


@dataclass(frozen=True)
class Encoded:
    """An encoded image and what the callers report of it."""

    data: bytes  # the .bbc file
    reconstruction: np.ndarray  # the decoder's image, exactly
    quality: float  # the quality coded at (with a target: the one chosen; lossless: the one asked for)
    weights: Weights | None  # None: coded losslessly (format version 5), without the networks
    seconds: float  # coding time, without choosing the weights
    target_met: bool | None = None  # with a target: whether it was met (else the nearest end was used)
    encodes: int | None = None  # with a target: encodes tried
    extras: Extras = Extras()  # what the file carries besides the pixels
    colours: int | None = None  # lossless file of the image with its colours reduced to this many


def encode(img: np.ndarray, quality: float | None = None, *, target_bpp: float | None = None,
           target_psnr: float | None = None, weights: str | os.PathLike[str] | None = None,
           tune: str | None = None, effort: int = efforts.DEFAULT, threads: int | None = None,
           lossless: bool | None = None, aq: float | None = None, linear_filter: bool = True,
           extras: Extras = Extras(),
           progress_for: ProgressFor | None = None, name: str | None = None) -> Encoded:
    """Encode an HxWx3 (RGB) or HxW (grayscale) uint8 array: at quality (None:
    quality.DEFAULT), or at the quality that best meets target_bpp or target_psnr
    (ratecontrol.py); with the weights of a file, of a tuning, or the default ones
    (choose_weights). lossless: None (the default) writes the image exactly instead
    whenever that file is smaller (text, UIs, line art, ramps: coding/lossless.py), True
    always, False never. aq: the strength of adaptive quantisation (coding/aq.py; None:
    the weights' tuning's, tuning.AQ_STRENGTH). linear_filter: whether the encoder may
    send a linear filter fitted to the picture (coding/linear.py, format version 7).
    Options as bbcodec.encode's (checked by check); progress_for (a bar for an image
    coded at a quality) as the coding loop's progress; name, if given, leads the message
    of an error about the image (naming)."""
    check(quality, target_bpp, target_psnr, effort, threads, tune, weights, lossless, aq, linear_filter)
    if extras.alpha is not None and extras.alpha.shape != img.shape[:2]:
        raise ValueError("the alpha plane must have the image's height and width")
    t0 = time.perf_counter()
    if lossless:
        with naming(name):
            data = _with_chunks(_lossless(img, Q.MAX), extras)
        return Encoded(data, img, float(Q.MAX), None, time.perf_counter() - t0, extras=extras)
    w = choose_weights(weights, tune)
    strength = aq_strength(w, aq)
    t0 = time.perf_counter()
    with naming(name):
        if target_bpp is not None or target_psnr is not None:
            from . import ratecontrol

            r = ratecontrol.encode_to_target(img, w, target_bpp, target_psnr, effort, threads=threads, aq=strength,
                                                linear=linear_filter)
            data, rec, q, met, probes = r.data, r.reconstruction, float(r.quality), r.met, r.probes
        else:
            from .coding import loop

            q, met, probes = float(Q.DEFAULT if quality is None else quality), None, None
            with _progress(progress_for, img.shape) as update:
                data, rec = loop.encode(img, q, w.model, w.prefix, progress=update, effort=effort, threads=threads,
                                        aq=strength, linear=linear_filter)
        smaller = _smaller(img, q, data, rec) if lossless is None else None
        if smaller is not None:  # smaller and closer: a target the lossy file met, it meets
            if met is False:  # measured as rate control measures: without the chunks
                from . import rd

                met = (8 * len(smaller[0]) / (img.shape[0] * img.shape[1]) <= target_bpp if target_bpp is not None
                       else rd.psnr(img, smaller[1]) >= (target_psnr or 0))
            data = _with_chunks(smaller[0], extras)
            return Encoded(data, smaller[1], q, None, time.perf_counter() - t0, met, probes, extras, smaller[2])
        data = _with_chunks(data, extras)
    return Encoded(data, rec, q, w, time.perf_counter() - t0, met, probes, extras)


def _lossless(img: np.ndarray, quality: float) -> bytes:
    """A version 5 file of img exactly (quality recorded as asked)."""
    from .coding import lossless

    return lossless.encode_file(img, Q.to_x256(quality))


def _smaller(img: np.ndarray, quality: float, lossy: bytes, rec: np.ndarray
             ) -> tuple[bytes, np.ndarray, int | None] | None:
    """A version 5 file, its image and colours, smaller than the lossy file and closer to
    img than its reconstruction rec (exact, or with fewer colours: lossless.smaller_file)."""
    from . import images
    from .coding import lossless

    return lossless.smaller_file(img, Q.to_x256(quality), len(lossy), rec, images.reduce_colours)


def _with_chunks(data: bytes, extras: Extras) -> bytes:
    chunks = extras.chunks()
    if not chunks:
        return data
    from .coding import format

    return format.add_chunks(data, chunks)


@dataclass(frozen=True)
class Decoded:
    """A decoded .bbc file."""

    image: np.ndarray  # HxWx3 (RGB) or HxW (grayscale) uint8: the coded pixels
    header: Header
    weights: Weights | None  # None: a lossless file (format version 5), decoded without networks
    seconds: float  # decoding time, without finding the weights
    extras: Extras = Extras()  # the file's alpha plane and metadata

    @property
    def pixels(self) -> np.ndarray:
        """The image with its alpha plane, if any: HxWx4 (RGBA) or HxWx2 (LA), else image."""
        import numpy as np

        if self.extras.alpha is None:
            return self.image
        gray = self.image.ndim == 2
        colour = self.image[:, :, None] if gray else self.image
        return np.concatenate([colour, self.extras.alpha[:, :, None]], axis=2)


def decode(data: bytes, *, threads: int | None = None, progress_for: ProgressFor | None = None,
           name: str | None = None) -> Decoded:
    """Decode .bbc bytes with the weights its header names (threads as bbcodec.decode's,
    progress_for as encode's); name, if given, leads the message of an error about the
    file (naming)."""
    from .coding import format, loop
    from .coding.workers import check_threads
    from .model import weights

    threads = check_threads(threads)
    with naming(name):
        header, payload = format.unpack(data)
        if header.lossless:
            from .coding import lossless

            t0 = time.perf_counter()
            w = None
            img = lossless.decode(header, payload)
        else:
            w = weights.for_file(header.weights_sha256, header.model_id)
            t0 = time.perf_counter()
            with _progress(progress_for, (header.height, header.width)) as update:
                img = loop.decode(header, payload, w.model, progress=update, threads=threads)
        extras = Extras.of_chunks(format.read_chunks(data), header.width, header.height)
    return Decoded(img, header, w, time.perf_counter() - t0, extras)
