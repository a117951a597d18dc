"""bbcodec.nn.ssimulacra2 (torch, differentiable) against the `ssimulacra2` package on real
images: Kodak crops against Pillow JPEGs of three qualities."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("ssimulacra2")

from conftest import KODAK  # noqa: E402

from bbcodec.metrics import ssimulacra2 as package_score  # noqa: E402
from bbcodec.nn.ssimulacra2 import (  # noqa: E402
    ssimulacra2,
    ssimulacra2_distance,
    ssimulacra2_loss,
)

QUALITIES = (10, 40, 85)
# (image, top, left, height, width); the last one odd and not square (partial 2x2 blocks
# at the edges; which axis the blur zero-pads shows only when H != W).
CROPS = (
    ("kodim01", 100, 200, 128, 128),
    ("kodim05", 50, 300, 128, 128),
    ("kodim23", 200, 300, 128, 128),
    ("kodim13", 10, 10, 101, 77),
)


def _crop(name: str, top: int, left: int, h: int, w: int) -> np.ndarray:
    path = KODAK / f"{name}.png"
    if not path.exists():
        pytest.skip(f"no Kodak image at {path}")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))[top : top + h, left : left + w].copy()


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def _tensor(imgs: list[np.ndarray], dtype=None) -> torch.Tensor:
    t = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    return t.to(dtype or torch.float64) / 255.0


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, list[np.ndarray], list[float]]]:
    """Per crop: the original, its JPEGs and the package's scores of them."""
    out = []
    for crop in CROPS:
        ref = _crop(*crop)
        dist = [_jpeg(ref, q) for q in QUALITIES]
        out.append((ref, dist, [package_score(ref, d) for d in dist]))
    return out


def test_matches_package_on_kodak_jpegs(pairs):
    """float64: the package's score to rounding (measured: 1e-11); float32: within 0.02
    (measured: 0.004). The qualities rank the same way in both."""
    worst64 = worst32 = 0.0
    for ref, dist, expected in pairs:
        for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 0.02)):
            got = ssimulacra2(_tensor([ref] * len(dist), dtype), _tensor(dist, dtype))
            assert got.shape == (len(dist),) and got.dtype == dtype
            diff = np.abs(got.double().numpy() - np.asarray(expected))
            assert diff.max() < tol, (dtype, got.tolist(), expected)
            assert list(np.argsort(got.double().numpy())) == list(np.argsort(expected))
            if dtype == torch.float64:
                worst64 = max(worst64, float(diff.max()))
            else:
                worst32 = max(worst32, float(diff.max()))
        assert expected == sorted(expected)  # JPEG quality 10 < 40 < 85, for the metric too
    print(f"max |torch - package|: float64 {worst64:.2e}, float32 {worst32:.2e}")


def test_identical_images_score_100():
    img = _tensor([_crop(*CROPS[0])])
    assert ssimulacra2(img, img).item() == pytest.approx(100.0, abs=1e-9)
    assert ssimulacra2_loss(img, img).item() == pytest.approx(0.0, abs=1e-9)


def test_loss_is_100_minus_score_and_has_gradients(pairs):
    ref, dist, expected = pairs[2]
    r = _tensor([ref] * len(dist), torch.float32)
    d = _tensor(dist, torch.float32).requires_grad_(True)
    loss = ssimulacra2_loss(r, d, reduction="none")
    # eps in the final power moves the loss by about 0.03 at these scores (all above -20).
    assert np.allclose(loss.detach().numpy(), 100.0 - np.asarray(expected), atol=0.05)
    loss.sum().backward()
    g = d.grad
    assert g is not None and torch.isfinite(g).all()
    assert (g.abs().flatten(1).max(dim=1).values > 0).all()  # every image gets a gradient


def test_gradients_finite_at_perfect_match_and_out_of_range():
    """No NaN or inf where the metric is not smooth: identical images (x^0.25 and x^0.6276
    at 0), pixels below 0 and above 1 (a decoder's unclamped output), a heavy distortion
    (the loss continues the cubic past its flat part)."""
    torch.manual_seed(0)
    ref = torch.rand(2, 3, 24, 32)
    for dist, nonzero in ((ref.clone(), False), (ref * 1.4 - 0.2, True), (1.0 - ref, True)):
        d = dist.requires_grad_(True)
        loss = ssimulacra2_loss(ref, d)
        loss.backward()
        assert d.grad is not None and torch.isfinite(d.grad).all() and torch.isfinite(loss)
        assert bool((d.grad != 0).any()) == nonzero


def test_distance_orders_like_score(pairs):
    ref, dist, _ = pairs[0]
    r, d = _tensor([ref] * len(dist)), _tensor(dist)
    dist_ = ssimulacra2_distance(r, d)
    score = ssimulacra2(r, d)
    assert (torch.argsort(dist_) == torch.argsort(-score)).all()


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ssimulacra2(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError):
        ssimulacra2(torch.zeros(1, 3, 7, 16), torch.zeros(1, 3, 7, 16))
    with pytest.raises(ValueError):
        ssimulacra2_loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), reduction="max")
