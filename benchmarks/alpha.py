"""What an alpha plane costs: bbcodec's ALPH chunk against WebP's lossless alpha (figures).

    python benchmarks/alpha.py

Transparent images made from Kodak photos (a hard-edged cut-out, a feathered vignette,
text-like strokes, a sprite sheet of discs, a photo's own luminance as alpha): the
bytes of bbcodec's alpha chunk (LZMA2 after a left or up filter) and of the ALPH chunk
of a WebP file of the same RGBA image (libwebp through Pillow: lossless alpha,
method 6, the default alpha filter), both exact.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bbcodec.coding import alpha

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def webp_alpha_bytes(rgba: np.ndarray) -> int:
    """The ALPH chunk of a lossy WebP with lossless alpha (RIFF chunks walked by hand)."""
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="WEBP", quality=75, method=6, alpha_quality=100)
    data = buf.getvalue()
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if kind == b"ALPH":
            return size
        at += 8 + size + (size & 1)
    raise RuntimeError("no ALPH chunk")


def masks(photo: np.ndarray) -> dict[str, np.ndarray]:
    h, w = photo.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(x - w / 2, y - h / 2)
    cut = Image.new("L", (w, h), 0)
    ImageDraw.Draw(cut).ellipse((w * 0.2, h * 0.1, w * 0.8, h * 0.9), fill=255)
    text = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(text)
    for i in range(12):
        draw.line((20, 30 + 40 * i, w - 20, 40 + 40 * i), fill=255, width=6)
        draw.text((30, 35 + 40 * i), "transparent text " * 6, fill=255)
    sprites = Image.new("L", (w, h), 0)
    for i in range(0, w, 64):
        for j in range(0, h, 64):
            ImageDraw.Draw(sprites).ellipse((i + 8, j + 8, i + 56, j + 56), fill=255)
    luma = (photo.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    return {
        "hard cut-out": np.asarray(cut),
        "feathered vignette": np.clip(255 * (1 - (r - 0.3 * w) / (0.2 * w)), 0, 255).astype(np.uint8),
        "text and lines": np.asarray(text.filter(ImageFilter.SMOOTH)),
        "sprite discs": np.asarray(sprites),
        "photo luminance": luma,
    }


def main() -> None:
    photo = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))
    print(f"{'alpha plane (768x512)':<22} {'bbcodec ALPH':>12} {'WebP ALPH':>10} {'ratio':>6}")
    for name, a in masks(photo).items():
        ours = len(alpha.encode(a))
        theirs = webp_alpha_bytes(np.concatenate([photo, a[:, :, None]], axis=2))
        print(f"{name:<22} {ours:>12} {theirs:>10} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    main()
