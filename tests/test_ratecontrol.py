"""Rate targets land within the stated tolerance on real (Kodak) content.

Tolerance: a bpp target is never exceeded and is met within 10%; a PSNR target is
always reached and overshot by at most 0.3 dB (targets inside the model's range).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KODAK
from PIL import Image

from bbcodec import ratecontrol, rd
from bbcodec.coding import format
from bbcodec.coding import loop as codec


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    path = KODAK / "kodim15.png"
    if not path.exists():
        pytest.skip("Kodak images not beside the checkout")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))[100:228, 200:392].copy()


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_bpp_target_is_met_from_below_within_ten_percent(photo, weights, fraction):
    pixels = photo.shape[0] * photo.shape[1]
    lo = 8 * len(codec.encode(photo, 1, weights.model, weights.prefix)[0]) / pixels
    hi = 8 * len(codec.encode(photo, 8, weights.model, weights.prefix)[0]) / pixels
    target = lo + fraction * (hi - lo)
    r = ratecontrol.encode_to_target(photo, weights, target_bpp=target)
    assert r.met and 0.9 * target <= r.bpp <= target
    assert r.probes <= 10
    header, payload = format.unpack(r.data)
    assert np.array_equal(codec.decode(header, payload, weights.model), r.reconstruction)


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_psnr_target_is_reached_with_at_most_a_small_overshoot(photo, weights, fraction):
    p1 = rd.psnr(photo, codec.encode(photo, 1, weights.model, weights.prefix)[1])
    p8 = rd.psnr(photo, codec.encode(photo, 8, weights.model, weights.prefix)[1])
    target = p1 + fraction * (p8 - p1)
    r = ratecontrol.encode_to_target(photo, weights, target_psnr=target)
    assert r.met and target <= r.psnr <= target + 0.3


def test_unreachable_targets_fall_back_to_the_nearest_end(photo, weights):
    tiny = ratecontrol.encode_to_target(photo, weights, target_bpp=0.001)
    assert not tiny.met and tiny.quality == 1
    huge = ratecontrol.encode_to_target(photo, weights, target_psnr=99)
    assert not huge.met and huge.quality == 8
