"""A synthetic test set: images unlike the training photos, made here, never trained on.

Flat colours, gradients, rendered text, a UI screenshot, a chart, line art, patterns,
saturated colours, pixel art and a smooth texture on a flat background: the content a
photo-trained codec sees least. Each image is one function of plain numpy and Pillow,
deterministic (fixed seeds; the only font is Pillow's own, ImageFont.load_default, at a
size where this Pillow has FreeType, else its bitmap font), 8-bit RGB. Sizes are 64x64
to 512x384, except two flat images (1x1 and 37x19). The same Pillow and FreeType give
the same bytes; another FreeType may draw text a pixel differently.

    from bbcodec import synthetic
    for s in synthetic.SET:
        img = s.make()          # (H, W, 3) uint8

benchmarks/synthetic.py writes the set as PNG and compares bbcodec with WebP on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

SEED = 20261207

# Colours the images are drawn with (tests check the images against them).
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
PRIMARIES = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
SECONDARIES = ((0, 255, 255), (255, 0, 255), (255, 255, 0))
TEXT_ON = {  # text image: ((ink, background), ...)
    "text-black-on-white-small": ((BLACK, WHITE),),
    "text-black-on-white-large": ((BLACK, WHITE),),
    "text-colour-on-colour": (((255, 230, 0), (20, 30, 120)), ((200, 0, 0), (120, 220, 120)),
                              ((255, 255, 255), (230, 40, 40))),
    "text-terminal": (((80, 255, 80), (12, 12, 12)),),
}
BANDS = 16  # the steps of the banded gradient
PIXEL_SCALE = 16  # the pixel-art sprite's upscaling


@dataclass(frozen=True)
class Synthetic:
    """One image of the set: its file name (without .png), its kind and its maker."""

    name: str
    kind: str  # flat, gradient, text, ui, chart, line art, pattern, saturated, pixel art, texture
    make: Callable[[], np.ndarray]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font at size (FreeType), or its bitmap font where FreeType is missing."""
    if features.check("freetype2"):
        return ImageFont.load_default(size=size)
    return ImageFont.load_default_imagefont()


def _canvas(w: int, h: int, colour: tuple[int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGB", (w, h), colour)
    return im, ImageDraw.Draw(im)


def _rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB")).copy()


def flat(w: int, h: int, colour: tuple[int, int, int]) -> np.ndarray:
    """One colour everywhere."""
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def _ramp(t: np.ndarray, a: tuple[int, ...], b: tuple[int, ...]) -> np.ndarray:
    """Colours from a (t = 0) to b (t = 1), rounded to 8 bits: each channel monotone in t."""
    t = np.clip(t, 0.0, 1.0)[..., None]
    return np.round(np.array(a, float) * (1 - t) + np.array(b, float) * t).astype(np.uint8)


def gradient_horizontal(w: int = 512, h: int = 384) -> np.ndarray:
    """Black to white, left to right: a smooth 8-bit ramp (every level used)."""
    t = np.broadcast_to(np.linspace(0, 1, w), (h, w))
    return _ramp(t, BLACK, WHITE)


def gradient_vertical(w: int = 384, h: int = 256) -> np.ndarray:
    """Deep blue at the top to warm yellow at the bottom."""
    t = np.broadcast_to(np.linspace(0, 1, h)[:, None], (h, w))
    return _ramp(t, (20, 40, 160), (250, 200, 40))


def gradient_diagonal(w: int = 320, h: int = 320) -> np.ndarray:
    """Red at the top left to cyan at the bottom right."""
    y, x = np.mgrid[0:h, 0:w]
    return _ramp((x + y) / (w + h - 2), (230, 20, 40), (20, 220, 230))


def gradient_radial(w: int = 384, h: int = 384) -> np.ndarray:
    """White at the centre to dark blue at the corners."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2)
    return _ramp(r / r.max(), WHITE, (10, 20, 90))


def gradient_banded(w: int = 512, h: int = 128) -> np.ndarray:
    """Dark to light teal in BANDS visible steps, left to right (banding)."""
    t = np.floor(np.arange(w) * BANDS / w) / (BANDS - 1)
    return _ramp(np.broadcast_to(t, (h, w)), (0, 40, 40), (180, 255, 240))


PANGRAM = "The quick brown fox jumps over the lazy dog 0123456789"
PROSE = ("A learned codec is trained on photographs; text, edges and flat colours are "
         "where it is least at home. Pack my box with five dozen liquor jugs! "
         "Sphinx of black quartz, judge my vow. (1+2)*3 = 9; 50% off; e-mail@example.org")


def _wrap(text: str, f, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        cand = f"{cur} {word}".strip()
        if draw.textlength(cand, font=f) > width and cur:
            lines.append(cur)
            cur = word
        else:
            cur = cand
    return lines + [cur]


def text_small() -> np.ndarray:
    """Black 11-pixel text on white, a page of it."""
    im, d = _canvas(512, 256, WHITE)
    f = font(11)
    y = 6
    for i in range(5):
        for line in _wrap(PROSE if i % 2 == 0 else " ".join([PANGRAM] * 3), f, 490, d):
            d.text((10, y), line, fill=BLACK, font=f)
            y += 14
    return _rgb(im)


def text_large() -> np.ndarray:
    """Black 40- and 64-pixel text on white."""
    im, d = _canvas(512, 256, WHITE)
    d.text((12, 8), "Hamburgefonstiv", fill=BLACK, font=font(64))
    d.text((12, 100), "Quality 8 @ 0.5 bpp", fill=BLACK, font=font(40))
    d.text((12, 170), "WAVE AVATAR 1/2", fill=BLACK, font=font(40))
    return _rgb(im)


def text_colour() -> np.ndarray:
    """Coloured text on coloured bands, small and large: yellow on navy, red on light
    green, white on red."""
    im, d = _canvas(448, 224, WHITE)
    for i, (ink, bg) in enumerate(TEXT_ON["text-colour-on-colour"]):
        y0 = i * 224 // 3
        d.rectangle((0, y0, 447, y0 + 224 // 3 - 1), fill=bg)
        d.text((8, y0 + 4), "Colour on colour", fill=ink, font=font(30))
        d.text((8, y0 + 44), PANGRAM, fill=ink, font=font(13))
    return _rgb(im)


def text_terminal() -> np.ndarray:
    """A terminal: green monospace-like text on near black."""
    ink, bg = TEXT_ON["text-terminal"][0]
    im, d = _canvas(480, 272, bg)
    f = font(12)
    lines = ["$ bbcodec encode in.png out.bbc -q 4", "in.png -> out.bbc  0.631 bpp  34.00 dB",
             "$ ls -l", "-rw-r--r-- 1 user user  31044 Dec  7 07:56 out.bbc",
             "-rw-r--r-- 1 user user 612337 Dec  7 07:55 in.png", "$ python -c 'print(2**64)'",
             "18446744073709551616", "$ make test", "ruff check . ... ok", "=== 412 passed in 95.1s ===", "$ _"]
    for i, line in enumerate(lines):
        d.text((8, 8 + 22 * i), line, fill=ink, font=f)
    return _rgb(im)


def ui_screenshot() -> np.ndarray:
    """A fake application window: title bar, sidebar, buttons, a text field, a checkbox,
    icons and text, on a flat desktop."""
    im, d = _canvas(512, 384, (58, 110, 165))
    d.rectangle((16, 16, 495, 367), fill=(246, 246, 246), outline=(160, 160, 160))
    d.rectangle((17, 17, 494, 44), fill=(225, 225, 228))
    for i, c in enumerate(((255, 95, 87), (255, 189, 46), (40, 200, 64))):
        d.ellipse((26 + 20 * i, 24, 38 + 20 * i, 36), fill=c, outline=(120, 120, 120))
    d.text((200, 24), "bbcodec - settings", fill=(40, 40, 40), font=font(13))
    d.rectangle((17, 45, 140, 366), fill=(232, 234, 238))
    for i, item in enumerate(("General", "Encoding", "Decoding", "Threads", "Weights", "About")):
        y = 56 + 28 * i
        if i == 1:
            d.rectangle((20, y - 4, 137, y + 18), fill=(0, 110, 220))
        d.rectangle((28, y, 40, y + 12), fill=((0, 110, 220), (230, 120, 0), (30, 160, 60), (150, 60, 190),
                                               (200, 40, 40), (90, 90, 90))[i], outline=(255, 255, 255))
        d.text((48, y - 1), item, fill=(255, 255, 255) if i == 1 else (30, 30, 30), font=font(13))
    d.text((160, 60), "Encoding", fill=(20, 20, 20), font=font(22))
    d.text((160, 100), "Quality", fill=(60, 60, 60), font=font(13))
    d.line((230, 108, 470, 108), fill=(190, 190, 190), width=4)
    d.line((230, 108, 350, 108), fill=(0, 110, 220), width=4)
    d.ellipse((343, 100, 359, 116), fill=(255, 255, 255), outline=(0, 110, 220), width=2)
    d.text((160, 140), "Output", fill=(60, 60, 60), font=font(13))
    d.rectangle((230, 134, 470, 158), fill=(255, 255, 255), outline=(170, 170, 170))
    d.text((236, 139), "/home/user/out.bbc", fill=(20, 20, 20), font=font(13))
    d.rectangle((160, 180, 174, 194), fill=(0, 110, 220))
    d.line((163, 187, 167, 191, 172, 183), fill=(255, 255, 255), width=2)
    d.text((182, 180), "Keep ICC profile and EXIF", fill=(30, 30, 30), font=font(13))
    d.rectangle((160, 206, 174, 220), fill=(255, 255, 255), outline=(140, 140, 140))
    d.text((182, 206), "Flatten transparency", fill=(30, 30, 30), font=font(13))
    for i, (label, fill, ink) in enumerate((("Cancel", (255, 255, 255), (30, 30, 30)),
                                            ("Encode", (0, 110, 220), (255, 255, 255)))):
        x0 = 300 + 90 * i
        d.rounded_rectangle((x0, 320, x0 + 80, 350), radius=6, fill=fill, outline=(150, 150, 150))
        d.text((x0 + 16, 327), label, fill=ink, font=font(14))
    d.rectangle((160, 236, 470, 300), fill=(255, 250, 220), outline=(230, 200, 90))
    d.text((168, 244), "Files decode bit-exactly on any machine.", fill=(90, 70, 0), font=font(12))
    d.text((168, 262), "Effort 3: smaller files, slower encode.", fill=(90, 70, 0), font=font(12))
    return _rgb(im)


def chart() -> np.ndarray:
    """A line chart: axes, grid, ticks with labels, three coloured series, a legend."""
    im, d = _canvas(512, 384, WHITE)
    x0, y0, x1, y1 = 56, 40, 496, 340
    for i in range(6):
        y = y1 - i * (y1 - y0) // 5
        d.line((x0, y, x1, y), fill=(225, 225, 225))
        d.text((x0 - 30, y - 7), f"{i * 20:3d}", fill=(60, 60, 60), font=font(12))
    for i in range(9):
        x = x0 + i * (x1 - x0) // 8
        d.line((x, y0, x, y1), fill=(235, 235, 235))
        d.text((x - 6, y1 + 6), f"{i}", fill=(60, 60, 60), font=font(12))
    d.line((x0, y0, x0, y1, x1, y1), fill=BLACK, width=2)
    t = np.linspace(0, 8, 200)
    walk = np.cumsum(np.random.default_rng(SEED).normal(0, 2.5, t.size))
    series = ((50 + 35 * np.sin(t), (31, 119, 180), "sin"), (50 + 30 * np.cos(0.7 * t), (255, 127, 14), "cos"),
              (np.clip(30 + walk, 2, 98), (44, 160, 44), "walk"))
    for v, colour, _ in series:
        pts = [(float(x0 + a / 8 * (x1 - x0)), float(y1 - b / 100 * (y1 - y0))) for a, b in zip(t, v, strict=True)]
        d.line(pts, fill=colour, width=2)
    for i, (_, colour, label) in enumerate(series):
        d.line((x1 - 90, y0 + 12 + 18 * i, x1 - 66, y0 + 12 + 18 * i), fill=colour, width=3)
        d.text((x1 - 60, y0 + 5 + 18 * i), label, fill=BLACK, font=font(12))
    d.text((x0, 10), "Bits per pixel against time", fill=BLACK, font=font(16))
    return _rgb(im)


def line_art() -> np.ndarray:
    """A cartoon: flat fills with black outlines (sky, sun, cloud, house, tree, ground)."""
    im, d = _canvas(384, 384, (135, 200, 250))
    d.rectangle((-5, 280, 390, 390), fill=(90, 190, 70), outline=BLACK, width=3)
    d.ellipse((280, 30, 350, 100), fill=(255, 215, 0), outline=BLACK, width=3)
    for cx, cy, r in ((70, 70, 28), (105, 60, 34), (140, 72, 26)):
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=WHITE, outline=BLACK, width=3)
    d.rectangle((60, 180, 220, 300), fill=(230, 120, 80), outline=BLACK, width=3)
    d.polygon([(45, 185), (140, 110), (235, 185)], fill=(170, 40, 40), outline=BLACK, width=3)
    d.rectangle((120, 230, 160, 300), fill=(120, 70, 30), outline=BLACK, width=3)
    d.rectangle((80, 200, 110, 230), fill=(200, 230, 255), outline=BLACK, width=3)
    d.rectangle((170, 200, 200, 230), fill=(200, 230, 255), outline=BLACK, width=3)
    d.rectangle((290, 200, 310, 310), fill=(130, 80, 40), outline=BLACK, width=3)
    d.ellipse((250, 130, 350, 230), fill=(30, 140, 50), outline=BLACK, width=3)
    d.arc((40, 320, 140, 370), 200, 340, fill=BLACK, width=3)
    return _rgb(im)


def checkerboard(w: int = 256, h: int = 256, cell: int = 8, a=BLACK, b=WHITE) -> np.ndarray:
    """Squares of cell pixels in two colours."""
    y, x = np.mgrid[0:h, 0:w]
    on = ((x // cell + y // cell) % 2).astype(bool)
    return np.where(on[..., None], np.array(b, np.uint8), np.array(a, np.uint8))


def stripes(w: int = 320, h: int = 240) -> np.ndarray:
    """Top half: 1-pixel black and white vertical stripes; bottom half: 3-pixel magenta
    and green horizontal stripes."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2] = np.where((np.arange(w) % 2 == 0)[None, :, None], np.uint8(0), np.uint8(255))
    rows = (np.arange(h - h // 2) // 3) % 2 == 0
    img[h // 2 :] = np.where(rows[:, None, None], np.array((255, 0, 255), np.uint8), np.array((0, 200, 0), np.uint8))
    return img


def colour_bars(w: int = 512, h: int = 288) -> np.ndarray:
    """Full-saturation bars, as on a test card: white, yellow, cyan, green, magenta, red,
    blue, black."""
    bars = np.array([WHITE, (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0),
                     (0, 0, 255), BLACK], np.uint8)
    return np.broadcast_to(bars[np.arange(w) * len(bars) // w][None], (h, w, 3)).copy()


def colour_patches(w: int = 256, h: int = 256) -> np.ndarray:
    """A 3x3 grid of the primaries, the secondaries, black, white and orange."""
    colours = np.array([*PRIMARIES, *SECONDARIES, BLACK, WHITE, (255, 128, 0)], np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    return colours[(y * 3 // h) * 3 + x * 3 // w]


def colour_wheel(w: int = 384, h: int = 384) -> np.ndarray:
    """Hue by angle, saturation by radius (full at the rim), on black."""
    y, x = np.mgrid[0:h, 0:w]
    dx, dy = x - (w - 1) / 2, y - (h - 1) / 2
    r = np.hypot(dx, dy) / (min(w, h) / 2 - 4)
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue * 255, np.clip(r, 0, 1) * 255, np.full_like(r, 255)], axis=-1).round().astype(np.uint8)
    rgb = _rgb(Image.fromarray(hsv, "HSV"))
    rgb[r > 1] = 0
    return rgb


def pixel_art(w: int = 256, h: int = 256) -> np.ndarray:
    """A 16x16 sprite of five colours (mirror-symmetric, random but seeded), upscaled by
    PIXEL_SCALE with nearest neighbour."""
    rng = np.random.default_rng(SEED + 1)
    palette = np.array([(40, 30, 60), (250, 220, 180), (220, 50, 60), (60, 140, 230), (255, 210, 40)], np.uint8)
    half = rng.integers(0, len(palette), (h // PIXEL_SCALE, w // PIXEL_SCALE // 2))
    half[0], half[-1], half[:, 0] = 0, 0, 0  # an outline
    sprite = palette[np.concatenate([half, half[:, ::-1]], axis=1)]
    return np.repeat(np.repeat(sprite, PIXEL_SCALE, axis=0), PIXEL_SCALE, axis=1)


def smooth_noise(w: int, h: int, seed: int = SEED) -> np.ndarray:
    """A photo-like smooth texture: octaves of seeded noise upsampled bicubically, (h, w, 3)
    floats in 0..1."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3))
    for octave, amp in ((4, 1.0), (8, 0.5), (16, 0.25), (32, 0.125), (64, 0.06)):
        for c in range(3):
            small = rng.random((max(2, h * octave // w), octave)).astype(np.float32)
            acc[..., c] += amp * np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC))
    acc -= acc.min(axis=(0, 1))
    return acc / acc.max(axis=(0, 1))


def texture_on_flat(w: int = 384, h: int = 256) -> np.ndarray:
    """A smooth noise 'photo' pasted, with a white border, on a flat grey background."""
    img = flat(w, h, (200, 200, 205))
    tex = smooth_noise(200, 150)
    tex = (255 * (0.15 + 0.7 * tex * np.array([1.0, 0.85, 0.6]))).round().astype(np.uint8)
    img[44:214, 82:302] = WHITE
    img[54:204, 92:292] = tex
    return img


SET: tuple[Synthetic, ...] = (
    Synthetic("flat-grey-64x64", "flat", lambda: flat(64, 64, (128, 128, 128))),
    Synthetic("flat-teal-1x1", "flat", lambda: flat(1, 1, (0, 128, 128))),
    Synthetic("flat-orange-37x19", "flat", lambda: flat(37, 19, (255, 140, 0))),
    Synthetic("flat-blue-320x240", "flat", lambda: flat(320, 240, (0, 0, 255))),
    Synthetic("flat-offwhite-257x131", "flat", lambda: flat(257, 131, (250, 248, 240))),
    Synthetic("gradient-horizontal-grey", "gradient", gradient_horizontal),
    Synthetic("gradient-vertical-blue-yellow", "gradient", gradient_vertical),
    Synthetic("gradient-diagonal-red-cyan", "gradient", gradient_diagonal),
    Synthetic("gradient-radial-white-navy", "gradient", gradient_radial),
    Synthetic("gradient-banded-16-steps", "gradient", gradient_banded),
    Synthetic("text-black-on-white-small", "text", text_small),
    Synthetic("text-black-on-white-large", "text", text_large),
    Synthetic("text-colour-on-colour", "text", text_colour),
    Synthetic("text-terminal", "text", text_terminal),
    Synthetic("ui-screenshot", "ui", ui_screenshot),
    Synthetic("chart-lines", "chart", chart),
    Synthetic("lineart-cartoon", "line art", line_art),
    Synthetic("pattern-checkerboard-8px", "pattern", checkerboard),
    Synthetic("pattern-checkerboard-5px-colour", "pattern",
              lambda: checkerboard(250, 200, 5, (255, 0, 0), (0, 0, 255))),
    Synthetic("pattern-stripes", "pattern", stripes),
    Synthetic("saturated-colour-bars", "saturated", colour_bars),
    Synthetic("saturated-patches", "saturated", colour_patches),
    Synthetic("saturated-colour-wheel", "saturated", colour_wheel),
    Synthetic("pixelart-sprite-x16", "pixel art", pixel_art),
    Synthetic("texture-on-flat", "texture", texture_on_flat),
)


def images() -> dict[str, np.ndarray]:
    """Every image of the set by name, in SET's order."""
    return {s.name: s.make() for s in SET}


def write(folder) -> list:
    """The set as PNG files in folder (created if missing): their paths, in SET's order."""
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in images().items():
        p = out / f"{name}.png"
        Image.fromarray(img).save(p, format="PNG", optimize=False)
        paths.append(p)
    return paths
