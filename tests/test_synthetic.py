"""The synthetic set (bbcodec/synthetic.py): deterministic, the sizes promised, and each
image what its name says (flat images flat, gradients monotone, text with ink on its
background, ...)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bbcodec import synthetic

SET = synthetic.images()
KIND = {s.name: s.kind for s in synthetic.SET}
TINY = {"flat-teal-1x1", "flat-orange-37x19"}  # the flat images below 64 px a side


def _colours(img: np.ndarray) -> np.ndarray:
    """The distinct colours of img, as 0xRRGGBB integers."""
    v = img.reshape(-1, 3).astype(np.int32)
    return np.unique(v[:, 0] << 16 | v[:, 1] << 8 | v[:, 2])


def test_deterministic_and_png_round_trip(tmp_path):
    again = synthetic.images()
    assert list(again) == list(SET)
    for name, img in SET.items():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert again[name].tobytes() == img.tobytes(), name
    paths = synthetic.write(tmp_path)
    assert [p.stem for p in paths] == list(SET)
    with Image.open(paths[-1]) as im:
        assert np.array_equal(np.asarray(im), SET[paths[-1].stem])


def test_size_and_kinds():
    assert len(SET) >= 20
    assert len(set(SET)) == len(synthetic.SET)  # names unique
    kinds = set(KIND.values())
    assert {"flat", "gradient", "text", "ui", "chart", "line art", "pattern", "saturated", "pixel art",
            "texture"} <= kinds
    wide = 0
    for name, img in SET.items():
        h, w = img.shape[:2]
        assert w <= 512 and h <= 384, name
        if name not in TINY:
            assert min(w, h) >= 64, name
        wide += w >= 256
    assert wide >= 0.75 * len(SET)
    shapes = {name: SET[name].shape[:2] for name in TINY | {"flat-grey-64x64"}}
    assert shapes == {"flat-teal-1x1": (1, 1), "flat-orange-37x19": (19, 37), "flat-grey-64x64": (64, 64)}


@pytest.mark.parametrize("name", [n for n, k in KIND.items() if k == "flat"])
def test_flat_is_flat(name):
    assert len(_colours(SET[name])) == 1


def test_gradients_monotone():
    g = SET["gradient-horizontal-grey"].astype(int)
    assert (np.diff(g, axis=1) >= 0).all() and (g == g[:1]).all() and len(_colours(g)) == 256
    for name, axis in (("gradient-vertical-blue-yellow", 0), ("gradient-diagonal-red-cyan", 0),
                       ("gradient-diagonal-red-cyan", 1), ("gradient-banded-16-steps", 1)):
        d = np.diff(SET[name].astype(int), axis=axis)
        for c in range(3):  # each channel moves one way only
            assert (d[..., c] >= 0).all() or (d[..., c] <= 0).all(), (name, axis, c)
        assert np.abs(d).max() > 0, name
    assert len(_colours(SET["gradient-banded-16-steps"])) == synthetic.BANDS
    assert np.abs(np.diff(SET["gradient-vertical-blue-yellow"].astype(int), axis=0)).max() <= 2  # smooth
    r = SET["gradient-radial-white-navy"].astype(int)
    h, w = r.shape[:2]
    out = r[h // 2, w // 2 :]  # centre to the right edge: darker outwards
    assert (np.diff(out, axis=0) <= 0).all() and (r[h // 2, w // 2] >= 250).all()


@pytest.mark.parametrize("name", list(synthetic.TEXT_ON))
def test_text_has_ink_on_background(name):
    img = SET[name]
    for ink, bg in synthetic.TEXT_ON[name]:
        n_ink = (img == ink).all(axis=2).sum()
        n_bg = (img == bg).all(axis=2).sum()
        assert n_bg > 4 * n_ink > 0, (name, ink, bg)
    assert len(_colours(img)) > 10  # anti-aliased edges


def test_the_rest_as_claimed():
    bars = SET["saturated-colour-bars"]
    assert len(_colours(bars)) == 8 and set(np.unique(bars)) == {0, 255}
    patches = set(_colours(SET["saturated-patches"]).tolist())
    assert {r << 16 | g << 8 | b for r, g, b in synthetic.PRIMARIES + synthetic.SECONDARIES} <= patches
    wheel = SET["saturated-colour-wheel"].astype(int)
    assert (wheel.max(axis=2) - wheel.min(axis=2)).max() == 255 and len(_colours(wheel)) > 1000
    assert len(_colours(SET["pattern-checkerboard-8px"])) == 2
    assert len(_colours(SET["pattern-checkerboard-5px-colour"])) == 2
    assert len(_colours(SET["pattern-stripes"])) == 4
    px = SET["pixelart-sprite-x16"]
    s = synthetic.PIXEL_SCALE
    cells = px.reshape(px.shape[0] // s, s, px.shape[1] // s, s, 3)
    assert (cells == cells[:, :1, :, :1]).all() and len(_colours(px)) == 5
    assert (px == px[:, ::-1]).all()  # mirror-symmetric
    for name in ("ui-screenshot", "chart-lines", "lineart-cartoon"):
        assert 10 < len(_colours(SET[name])) < 5000, name  # drawn, not photographic
    for name in ("chart-lines", "lineart-cartoon"):
        assert (SET[name] == 0).all(axis=2).mean() > 0.005, name  # black axes, outlines
    tex = SET["texture-on-flat"]
    assert (tex[0] == tex[0, 0]).all() and len(_colours(tex)) > 1000

