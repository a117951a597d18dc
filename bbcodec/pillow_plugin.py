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
quality.DEFAULT), `effort` (effort.MIN..effort.MAX, default 1: encoder time for size)
and `threads` (1..parallel.MAX_THREADS, default 1; None: the cores the process may use,
as bbcodec.encode's default). Unlike bbcodec.encode / decode and the CLI, the plugin
codes in the calling process unless save() is given threads: it runs inside other
applications, and forking workers (parallel.Forked) in a process whose native threads
(a GUI toolkit's, a server's) may hold locks is not safe, which parallel.can_fork
cannot see. load() always decodes in the calling process (Pillow passes it no
options); bbcodec.decode(data, threads=N) decodes with N workers.

A bbcodec.Error becomes what Pillow's callers expect: SyntaxError while opening (so
Image.open tries other formats and then raises UnidentifiedImageError), OSError while
loading pixels or saving (a failed worker process too: parallel.WorkerError), and
ValueError for a bad quality, effort or threads option (QualityError, EffortError,
ThreadsError, which are).
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile

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
        except Error as e:
            raise SyntaxError(str(e)) from None
        self._size = (self._header.width, self._header.height)
        self._mode = "L" if self._header.channels == 1 else "RGB"
        self.info["quality"] = self._header.quality_value
        self.tile = []
        self._decoded = False

    def load(self):  # noqa: ANN201 - Pillow's signature
        if not self._decoded:
            from . import codec

            try:
                pixels = codec.decode(self._data, threads=THREADS).image
            except Error as e:
                raise OSError(f"cannot decode .bbc image: {e}") from e
            self.fp = io.BytesIO(pixels.tobytes())
            tile = getattr(ImageFile, "_Tile", None)  # a NamedTuple since Pillow 11
            args = ("raw", (0, 0, *self.size), 0, self.mode)
            self.tile = [tile(*args) if tile else args]
            self._decoded = True
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import codec, images

    quality = im.encoderinfo.get("quality")  # None: quality.DEFAULT
    effort = im.encoderinfo.get("effort", efforts.DEFAULT)
    threads = im.encoderinfo.get("threads", THREADS)
    codec.check(quality, effort=effort, threads=threads)  # Quality/Effort/ThreadsError (ValueErrors) before any work
    try:
        data = codec.encode(images.to_array(im, str(filename) or "image"), quality, effort=effort,
                            threads=threads).data
    except Error as e:
        raise OSError(f"cannot write .bbc image: {e}") from e
    fp.write(data)


def register() -> None:
    Image.register_open(FORMAT, BbcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".bbc")
    Image.register_mime(FORMAT, "image/x-bbc")
