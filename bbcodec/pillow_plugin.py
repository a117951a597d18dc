"""Pillow plugin: after `import bbcodec`, Image.open reads .bbc and Image.save writes it.

    >>> import bbcodec
    >>> from PIL import Image
    >>> import io
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (12, 10), "orange").save(buf, format="BBC", quality=5)
    >>> Image.open(io.BytesIO(buf.getvalue())).size
    (12, 10)

Registered the way Pillow's own plugins are (register_open / register_save /
register_extension). Opening reads and checks the header only; pixels are decoded on
load(). Saving takes `quality` (1..8, default 4).
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile

from . import format as fmt

FORMAT = "BBC"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == fmt.MAGIC


class BbcImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "bbcodec learned block-based image"

    def _open(self) -> None:
        data = self.fp.read()
        try:
            self._header, self._payload = fmt.unpack(data)
        except fmt.FormatError as e:
            raise SyntaxError(str(e)) from None
        self._size = (self._header.width, self._header.height)
        self._mode = "L" if self._header.channels == 1 else "RGB"
        self.info["quality"] = self._header.quality
        self.tile = []
        self._decoded = False

    def load(self):  # noqa: ANN201 - Pillow's signature
        if not self._decoded:
            from . import codec, weights

            pixels = codec.decode(self._header, self._payload, weights.for_header(self._header))
            self.fp = io.BytesIO(pixels.tobytes())
            tile = getattr(ImageFile, "_Tile", None)  # a NamedTuple since Pillow 11
            args = ("raw", (0, 0, *self.size), 0, self.mode)
            self.tile = [tile(*args) if tile else args]
            self._decoded = True
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import codec, images, weights

    quality = float(im.encoderinfo.get("quality", 4))
    data, _ = codec.encode(images.to_array(im, str(filename) or "image"), quality, weights.default())
    fp.write(data)


def register() -> None:
    Image.register_open(FORMAT, BbcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".bbc")
    Image.register_mime(FORMAT, "image/x-bbc")
