"""Synthetic training crops: text, user interfaces, charts, cartoons, gradients and
saturated patches, drawn at random for `train --synthetic SHARE`.

The photo-trained networks never saw sharp edges on flat colours or smooth ramps, and
lose to WebP there (docs/performance.md, the synthetic set). This generator is not the
evaluation set's (bbcodec/synthetic.py): other code, random layouts, colours, words and
sizes, and the system's TrueType fonts (DejaVu, Liberation, ...) where it has them, so
that the set stays a test of what training did not see. Pillow's own font is used only
where no other is found. Edges fall anywhere, not on the 8x8 block grid.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
FONT_GLOBS = ("/usr/share/fonts/**/*.ttf", "/usr/local/share/fonts/**/*.ttf", "/Library/Fonts/*.ttf",
              "C:/Windows/Fonts/*.ttf")
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """The TrueType fonts of this system (sorted; empty where there are none)."""
    found = {p for g in FONT_GLOBS for p in glob.glob(g, recursive=True)}
    return tuple(sorted(p for p in found if "Math" not in p))


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def random_font(rng: np.random.Generator, lo: int, hi: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    files = font_files()
    path = files[rng.integers(len(files))] if files else ""
    return _font(path, int(rng.integers(lo, hi + 1)))


def colour(rng: np.random.Generator) -> Colour:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def saturated(rng: np.random.Generator) -> Colour:
    """A colour with one channel at 0..40 and one at 215..255: the corners of the cube."""
    c = rng.integers(0, 256, 3)
    lo, hi = rng.permutation(3)[:2]
    c[lo], c[hi] = rng.integers(0, 41), rng.integers(215, 256)
    return tuple(int(v) for v in c)  # type: ignore[return-value]


def background(rng: np.random.Generator) -> Colour:
    """Mostly light (documents, UIs), else dark (terminals, dark themes) or any colour."""
    r = rng.random()
    if r < 0.5:
        return tuple(int(v) for v in rng.integers(225, 256, 3))  # type: ignore[return-value]
    if r < 0.7:
        return tuple(int(v) for v in rng.integers(0, 45, 3))  # type: ignore[return-value]
    return saturated(rng) if r < 0.85 else colour(rng)


def contrasting(rng: np.random.Generator, bg: Colour) -> Colour:
    """A colour at least 100 levels of luma away from bg."""
    for _ in range(20):
        c = colour(rng) if rng.random() < 0.6 else saturated(rng)
        if abs(_luma(c) - _luma(bg)) >= 100:
            return c
    return (0, 0, 0) if _luma(bg) > 127 else (255, 255, 255)


def _luma(c: Colour) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join("".join(LETTERS[i] for i in rng.integers(0, len(LETTERS), rng.integers(1, 10)))
                    for _ in range(n))


def _text_lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int],
                ink: Colour, lo: int = 9, hi: int = 48) -> None:
    x0, y0, x1, y1 = box
    f = random_font(rng, lo, hi)
    size = getattr(f, "size", 12)
    y = y0 + int(rng.integers(-size // 2, size // 2 + 1))
    while y < y1:
        draw.text((x0 + int(rng.integers(-4, 12)), y), words(rng, int(rng.integers(2, 12))), fill=ink, font=f)
        y += int(size * rng.uniform(1.1, 1.8))


def text(rng: np.random.Generator, size: int) -> Image.Image:
    bg = background(rng)
    im = Image.new("RGB", (size, size), bg)
    _text_lines(ImageDraw.Draw(im), rng, (0, 0, size, size), contrasting(rng, bg))
    return im


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear or radial ramp between two or three colours, (size, size, 3) float."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if rng.random() < 0.7:
        a = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(a) + yy * np.sin(a)
    else:
        cy, cx = rng.uniform(-0.5, 1.5, 2)
        t = np.hypot(yy - cy, xx - cx)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6) * rng.uniform(0.3, 1.0)
    stops = np.array([saturated(rng) if rng.random() < 0.5 else colour(rng) for _ in range(int(rng.integers(2, 4)))],
                     dtype=np.float32)
    pos = t * (len(stops) - 1)
    i = np.minimum(pos.astype(np.int64), len(stops) - 2)
    f = (pos - i)[..., None]
    return stops[i] * (1 - f) + stops[i + 1] * f


def gradient(rng: np.random.Generator, size: int) -> Image.Image:
    im = Image.fromarray(np.clip(np.rint(_ramp(rng, size)), 0, 255).astype(np.uint8))
    if rng.random() < 0.4:  # a heading or a shape on the ramp
        draw = ImageDraw.Draw(im)
        if rng.random() < 0.5:
            _text_lines(draw, rng, (0, 0, size, size // 2), contrasting(rng, (128, 128, 128)), 16, 48)
        else:
            _shape(draw, rng, size)
    return im


def _box(rng: np.random.Generator, size: int, lo: int, hi: int) -> tuple[int, int, int, int]:
    w, h = int(rng.integers(lo, hi)), int(rng.integers(max(lo // 2, 1), hi))
    x, y = int(rng.integers(-w // 4, size)), int(rng.integers(-h // 4, size))
    return x, y, x + w, y + h


def ui(rng: np.random.Generator, size: int) -> Image.Image:
    """Panels, buttons, separators, check boxes and labels on a flat window."""
    bg = background(rng)
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    accent = saturated(rng)
    for _ in range(int(rng.integers(2, 8))):
        fill = accent if rng.random() < 0.3 else background(rng)
        box = _box(rng, size, 24, size)
        outline = contrasting(rng, fill) if rng.random() < 0.5 else None
        if rng.random() < 0.5:
            draw.rounded_rectangle(box, radius=int(rng.integers(2, 12)), fill=fill, outline=outline)
        else:
            draw.rectangle(box, fill=fill, outline=outline)
        if rng.random() < 0.7:
            _text_lines(draw, rng, (box[0] + 4, box[1] + 2, box[2], min(box[3], box[1] + 40)),
                        contrasting(rng, fill), 9, 20)
    for _ in range(int(rng.integers(0, 5))):  # 1-pixel separators
        y = int(rng.integers(0, size))
        draw.line((0, y, size, y), fill=contrasting(rng, bg), width=1)
    return im


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, outline: Colour | None = None) -> None:
    fill = saturated(rng) if rng.random() < 0.6 else colour(rng)
    width = int(rng.integers(1, 6))
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(_box(rng, size, 16, size), fill=fill, outline=outline, width=width)
    elif kind == 1:
        pts = [tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2)) for _ in range(rng.integers(3, 7))]
        draw.polygon(pts, fill=fill, outline=outline, width=width)
    else:
        draw.rectangle(_box(rng, size, 16, size), fill=fill, outline=outline, width=width)


def cartoon(rng: np.random.Generator, size: int) -> Image.Image:
    """Flat fills with dark outlines, drawn at twice the size and halved (antialiased edges)
    or at the size itself (hard edges)."""
    scale = 2 if rng.random() < 0.5 else 1
    im = Image.new("RGB", (size * scale, size * scale), background(rng))
    draw = ImageDraw.Draw(im)
    ink = tuple(int(v) for v in rng.integers(0, 50, 3)) if rng.random() < 0.8 else None
    for _ in range(int(rng.integers(3, 12))):
        _shape(draw, rng, size * scale, ink)  # type: ignore[arg-type]
    return im.resize((size, size), Image.Resampling.BOX) if scale > 1 else im


def chart(rng: np.random.Generator, size: int) -> Image.Image:
    """Grid lines, bars and polylines of a plot."""
    bg = background(rng)
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    grid = contrasting(rng, bg)
    step = int(rng.integers(12, 64))
    for v in range(int(rng.integers(0, step)), size, step):
        draw.line((v, 0, v, size), fill=grid, width=1)
        draw.line((0, v, size, v), fill=grid, width=1)
    for _ in range(int(rng.integers(1, 5))):
        c, n = saturated(rng), int(rng.integers(4, 30))
        xs = np.linspace(0, size, n)
        ys = np.cumsum(rng.normal(0, size / 10, n)) + rng.uniform(0, size)
        if rng.random() < 0.3:
            w = max(2, size // (2 * n))
            for x, y in zip(xs, ys, strict=True):
                draw.rectangle((int(x), min(int(y), size), int(x) + w, size), fill=c)
        else:
            draw.line([(float(x), float(y)) for x, y in zip(xs, ys, strict=True)], fill=c, width=int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        _text_lines(draw, rng, (0, 0, size, size // 3), contrasting(rng, bg), 9, 16)
    return im


def patches(rng: np.random.Generator, size: int) -> Image.Image:
    """Rectangles of saturated colours meeting at hard edges, off the block grid."""
    im = Image.new("RGB", (size, size), saturated(rng))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 16))):
        draw.rectangle(_box(rng, size, 8, size), fill=saturated(rng) if rng.random() < 0.8 else colour(rng))
    return im


# kind -> (maker, share of the crops): text and ramps, where the set's losses are largest, most
KINDS: dict[str, tuple[Callable[[np.random.Generator, int], Image.Image], float]] = {
    "text": (text, 0.25), "gradient": (gradient, 0.2), "ui": (ui, 0.15), "cartoon": (cartoon, 0.15),
    "chart": (chart, 0.1), "patches": (patches, 0.15)}


def crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """One random synthetic (size, size, 3) uint8 crop, its kind drawn by KINDS' shares."""
    makers = list(KINDS.values())
    p = np.array([share for _, share in makers])
    im = makers[rng.choice(len(makers), p=p / p.sum())][0](rng, size)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)
