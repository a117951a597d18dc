"""Shared fixtures: the shipped weights and small real images (crops of Kodak)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def weights():
    from bbcodec import weights as w

    return w.default()


@pytest.fixture(scope="session")
def kodak_crop() -> np.ndarray:
    """A 48x64 crop of kodim23 (a real photo), or a smooth synthetic image without Kodak."""
    path = KODAK / "kodim23.png"
    if path.exists():
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[200:248, 300:364].copy()
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random image (noise would be unrealistic for a learned codec)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(max(1, h // 4 + 1), max(1, w // 4 + 1), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(img)
