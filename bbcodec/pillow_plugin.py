"""Pillow plugin: after `import bbcodec`, Image.open reads .bbc and Image.save writes it.

    >>> import bbcodec
    >>> from PIL import Image
    >>> import io
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (12, 10), "orange").save(buf, format="BBC", quality=5)
    >>> Image.open(io.BytesIO(buf.getvalue())).size
    (12, 10)

Registered the way Pillow's own plugins are (register_open / register_save /
register_extension). Opening reads the file (no further than its header says) and
checks its container only (docs/format.md, section 2, checks 1-7), never decoding:
pixels are decoded on load(), which refuses a payload that cannot hold the declared
image as soon as it runs out (so a tiny file declaring 8192x8192 costs milliseconds).
Saving takes `quality` (a number within quality.MIN..quality.MAX, default
quality.DEFAULT) or `target_bpp` / `target_psnr`, `tune` (as bbcodec.encode's), `effort`
(effort.MIN..effort.MAX, default 1: encoder time for size), `threads`
(1..workers.MAX_THREADS, default 1; None: the cores the process may use, as
bbcodec.encode's default), `lossless`, `aq`, `linear_filter`, `metadata` and `flatten`
(as bbcodec.encode's), and `icc_profile`, `exif`, `xmp` (bytes: what to store instead of the image's own, as
Pillow's PNG and WebP writers take them). Any other option is refused (ValueError): an
option silently ignored would be a surprise. An image with alpha is stored with it
(mode RGBA / LA when opened), its metadata in `im.info` as Pillow's readers put it.

Unlike bbcodec.encode / decode and the CLI, the plugin codes in the calling process unless save() is given threads: it runs inside other
applications, and forking workers (coding/workers.Forked) in a process whose native threads
(a GUI toolkit's, a server's) may hold locks is not safe, which workers.can_fork
cannot see. load() always decodes in the calling process (Pillow passes it no
options); bbcodec.decode(data, threads=N) decodes with N workers.

A bbcodec.Error becomes what Pillow's callers expect: while opening, SyntaxError for
bytes that are not a .bbc file (so Image.open tries other formats) and, for a damaged
.bbc file, UnidentifiedImageError saying what is wrong with it; OSError while
loading pixels or saving (a failed worker process too: WorkerError), and
ValueError for a bad quality, tune, effort, threads, lossless or aq option (QualityError,
WeightsError, EffortError, ThreadsError, LosslessError, AQError, which are). A lossless file
(format version 5) has `info["lossless"]` True.
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

from .coding import effort as efforts
from .coding import format as fmt
from .errors import Error

FORMAT = "BBC"
THREADS = 1  # workers per image unless save() is given threads=: no fork in a host application


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == fmt.MAGIC


class BbcImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "bbcodec learned block-based image"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            self._data = fmt.read_from(self.fp)
            self._header = fmt.unpack(self._data)[0]
            chunks = fmt.read_chunks(self._data)
        except Error as e:
            if self._data_starts_like_bbc():
                raise UnidentifiedImageError(f"cannot identify image file: a damaged .bbc file: {e}") from None
            raise SyntaxError(str(e)) from None
        self._size = (self._header.width, self._header.height)
        alpha = b"ALPH" in chunks
        self._mode = ("LA" if alpha else "L") if self._header.channels == 1 else ("RGBA" if alpha else "RGB")
        self.info["quality"] = self._header.quality_value
        if self._header.lossless and not self._header.reduced:
            self.info["lossless"] = True
        if chunks.get(b"ICCP"):
            self.info["icc_profile"] = chunks[b"ICCP"]
        if chunks.get(b"EXIF"):
            self.info["exif"] = b"Exif\x00\x00" + chunks[b"EXIF"]
        if chunks.get(b"XMP "):
            self.info["xmp"] = chunks[b"XMP "]
        self.tile = []
        self._decoded = False

    def _data_starts_like_bbc(self) -> bool:
        """Whether the stream holds a .bbc header's magic and version (then a failure is
        a damaged .bbc file, not another format)."""
        assert self.fp is not None
        self.fp.seek(0)
        head = self.fp.read(5)
        return head[:4] == fmt.MAGIC and len(head) == 5 and head[4] in fmt.VERSIONS

    def load(self):  # noqa: ANN201 - Pillow's signature
        if not self._decoded:
            from . import codec

            try:
                pixels = codec.decode(self._data, threads=THREADS).pixels
            except Error as e:
                raise OSError(f"cannot decode .bbc image: {e}") from e
            self.fp = io.BytesIO(pixels.tobytes())
            tile = getattr(ImageFile, "_Tile", None)  # a NamedTuple since Pillow 11
            args = ("raw", (0, 0, *self.size), 0, self.mode)
            self.tile = [tile(*args) if tile else args]
            self._decoded = True
        return super().load()


OPTIONS = {"quality", "target_bpp", "target_psnr", "tune", "effort", "threads", "lossless", "aq", "linear_filter", "metadata",
           "flatten", "icc_profile", "exif", "xmp"}


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import codec, images

    info = im.encoderinfo
    unknown = sorted(set(info) - OPTIONS)
    if unknown:
        raise ValueError(f"bbcodec does not take the save option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)} (it takes {', '.join(sorted(OPTIONS))})")
    quality, bpp, psnr = info.get("quality"), info.get("target_bpp"), info.get("target_psnr")
    effort = info.get("effort", efforts.DEFAULT)
    threads, tune, lossless, aq = info.get("threads", THREADS), info.get("tune"), info.get("lossless"), info.get("aq")
    linear_filter = info.get("linear_filter", True)
    codec.check(quality, bpp, psnr, effort, threads, tune, lossless=lossless, aq=aq,
                linear_filter=linear_filter)  # ValueErrors before any work
    kinds = codec.parse_metadata(info.get("metadata", "all"))
    flatten = info.get("flatten")
    if flatten is not None:
        images.colour(flatten)
    try:
        pic = images.picture(im, str(filename) or "image", flatten)
        kept = pic.extras.keeping(kinds)
        extras = codec.Extras(kept.alpha,
                              _bytes(info["icc_profile"]) if info.get("icc_profile") else kept.icc,
                              _exif_body(info["exif"]) if info.get("exif") else kept.exif,
                              _bytes(info["xmp"]) if info.get("xmp") else kept.xmp)
        data = codec.encode(pic.pixels, quality, target_bpp=bpp, target_psnr=psnr, tune=tune,
                            effort=effort, threads=threads, lossless=lossless, aq=aq,
                            linear_filter=linear_filter, extras=extras).data
    except Error as e:
        raise OSError(f"cannot write .bbc image: {e}") from e
    fp.write(data)


def _bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError(f"icc_profile and xmp are bytes, not {type(value).__name__}")


def _exif_body(value: object) -> bytes:
    """An exif option (bytes, with or without the b"Exif\\0\\0" header, or an Image.Exif)
    -> the TIFF structure the EXIF chunk holds."""
    if isinstance(value, Image.Exif):
        value = value.tobytes()
    data = _bytes(value)
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def register() -> None:
    Image.register_open(FORMAT, BbcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".bbc")
    Image.register_mime(FORMAT, "image/x-bbc")
