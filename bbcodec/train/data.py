"""Training images held in memory as uint8 arrays, served as random flipped crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_folder(folder: Path, min_side: int) -> list[np.ndarray]:
    """Every readable RGB image in folder (sorted) with both sides >= min_side."""
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(arr)
    if not images:
        raise SystemExit(f"no training images of at least {min_side}px in {folder}")
    return images


def load_packed(path: Path) -> list[np.ndarray]:
    """Images from a .npz made by pack_folder (for machines without the data folder)."""
    with np.load(path, allow_pickle=False) as z:
        return [z[k] for k in sorted(z.files)]


def pack_folder(folder: Path, out: Path, max_side: int = 512) -> None:
    """Pack a folder into one compressed .npz, downscaling long sides above max_side."""
    arrays = {}
    for i, path in enumerate(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            arrays[f"img{i:05d}"] = np.asarray(im)
    np.savez_compressed(out, **arrays)


class CropSampler:
    """Random crops with random horizontal/vertical flips, from a fixed-seed generator."""

    def __init__(self, images: list[np.ndarray], size: int, seed: int) -> None:
        self.images = images
        self.size = size
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        """(n, 3, size, size) float32 pixels 0..255."""
        out = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        for i in range(n):
            img = self.images[self.rng.integers(len(self.images))]
            h, w = img.shape[:2]
            y = self.rng.integers(h - self.size + 1)
            x = self.rng.integers(w - self.size + 1)
            crop = img[y : y + self.size, x : x + self.size]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.5:
                crop = crop[::-1]
            out[i] = crop
        return torch.from_numpy(out).permute(0, 3, 1, 2).float()
