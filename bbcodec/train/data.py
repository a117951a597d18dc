"""Training images held in memory as uint8 arrays, served as random flipped crops.

A folder can be packed into one .npz of JPEG (q90, 4:4:4, long side <= 768) bytes to travel to a GPU
machine: python -m bbcodec.train.data ../shared/data/train .pack/train.npz
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import IMAGE_SUFFIXES


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


def load_images(source: Path, min_side: int) -> list[np.ndarray]:
    """A folder of images or a packed .npz."""
    return load_packed(source, min_side) if source.suffix == ".npz" else load_folder(source, min_side)


def load_packed(path: Path, min_side: int = 0) -> list[np.ndarray]:
    """Images from a .npz made by pack_folder (for machines without the data folder)."""
    images = []
    with np.load(path, allow_pickle=False) as z:
        for k in sorted(z.files):
            with Image.open(io.BytesIO(z[k].tobytes())) as im:
                arr = np.asarray(im.convert("RGB"))
            if min(arr.shape[:2]) >= min_side:
                images.append(arr)
    return images


def pack_folder(folder: Path, out: Path, max_side: int = 768, quality: int = 90) -> int:
    """Pack a folder into one .npz of JPEG bytes; returns the file size in bytes."""
    arrays = {}
    for i, path in enumerate(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality, subsampling=0)
            arrays[f"img{i:05d}"] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return out.stat().st_size


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Pack an image folder into one .npz of JPEG bytes.")
    ap.add_argument("folder", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-side", type=int, default=768)
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args()
    print(f"{a.out}: {pack_folder(a.folder, a.out, a.max_side, a.quality) / 1e6:.1f} MB")


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
