"""Training images held in memory as uint8 arrays, served as random flipped crops.

A folder can be packed into .npz parts of <= 50 MB (lossless: original JPEG bytes or lossless
WebP, long side <= 768) to travel to a GPU machine: python -m bbcodec.train.data ../shared/data/train .pack

One tenth of the training photos is held out for validation (`split_of`): decisions on
weights are taken on Kodak *and* on those, never on Kodak alone, and training never sees
them. The rule depends on file names only, so every machine and every pack agrees.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import IMAGE_SUFFIXES
from . import synth

VAL_EVERY = 10  # every 10th photo of each source group (name prefix) is held out
Part = str  # "train" (the default everywhere), "val" (held out) or "all"


def split_of(names: list[str]) -> dict[str, str]:
    """File name -> "train" or "val": within each group (the name up to its first "_",
    e.g. bsds500, urban100), sorted by name, every VAL_EVERY-th photo (the 10th, 20th...)
    is held out, so each source is represented in proportion."""
    groups: dict[str, list[str]] = {}
    for n in sorted(names):
        groups.setdefault(n.split("_", 1)[0], []).append(n)
    return {n: ("val" if i % VAL_EVERY == VAL_EVERY - 1 else "train") for g in groups.values() for i, n in enumerate(g)}


def image_paths(folder: Path, part: Part = "train") -> list[Path]:
    """The image files of one part of a folder, sorted."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if part == "all":
        return paths
    split = split_of([p.name for p in paths])
    return [p for p in paths if split[p.name] == part]


def load_folder(folder: Path, min_side: int, part: Part = "train") -> list[np.ndarray]:
    """Every readable RGB image of one part of folder (sorted) with both sides >= min_side."""
    images = []
    for path in image_paths(folder, part):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(arr)
    if not images:
        raise SystemExit(f"no training images of at least {min_side}px in {folder}")
    return images


def load_images(source: Path, min_side: int, part: Part = "train") -> list[np.ndarray]:
    """A folder of images, a packed .npz, or a folder of packed .npz parts (which hold the
    training part only)."""
    packs = [source] if source.suffix == ".npz" else sorted(source.glob("*.npz"))
    if packs:
        if part != "train":
            raise SystemExit(f"{source} holds packs of training images: the {part} part is not in them")
        return [im for pack in packs for im in load_packed(pack, min_side)]
    return load_folder(source, min_side, part)


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


PACK_MB = 50  # each part stays below this: a GPU call carries 64 MiB in all, the ~11 MB checkout included


def pack_folder(folder: Path, out: Path, max_side: int = 768, part_mb: float = PACK_MB) -> list[Path]:
    """Pack a folder's training part into out/train-K.npz parts of at most part_mb MB each.

    Lossless, so that the networks never learn a re-encoder's noise (JPEG q90, as packed
    before, is ~41 dB: our q7-q8 operating point): a JPEG source that needs no resizing
    keeps its own bytes, anything else is stored as lossless WebP (smaller than PNG). The
    576 training photos (the held-out tenth is not packed) take 98 MB: two parts of 49.6
    and 48.3 MB, carried in two calls one right after the other (a machine keeps what an
    earlier call left while it is warm).
    """
    parts: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for i, path in enumerate(image_paths(folder, "train")):
        with Image.open(path) as im:
            if im.format == "JPEG" and max(im.size) <= max_side:
                data = path.read_bytes()
            else:
                im = im.convert("RGB")
                if max(im.size) > max_side:
                    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                im.save(buf, format="WEBP", lossless=True, quality=100, method=4)
                data = buf.getvalue()
        if size + len(data) > part_mb * 1e6 and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][f"img{i:05d}"] = np.frombuffer(data, dtype=np.uint8)
        size += len(data)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, arrays in enumerate(parts, start=1):
        paths.append(out / f"train-{k}.npz")
        np.savez(paths[-1], **arrays)
    return paths


class CropSampler:
    """Random crops with random horizontal/vertical flips, from a fixed-seed generator.

    An image is drawn with probability proportional to its area, so every pixel is as
    likely to be seen: drawing images uniformly took ~78 % of crops from the small
    BSDS photos, which hold 55 % of the pixels.
    """

    def __init__(self, images: list[np.ndarray], size: int, seed: int, synthetic: float = 0.0) -> None:
        self.images = images
        self.size = size
        self.rng = np.random.default_rng(seed)
        area = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.p = area / area.sum()
        # a stream of its own, so that the photo crops of a run without it stay the same
        self.synthetic = synthetic
        self.synth_rng = np.random.default_rng(seed + 77)

    def batch(self, n: int) -> torch.Tensor:
        """(n, 3, size, size) float32 pixels 0..255; a share `synthetic` of them drawn
        by train/synth.py instead of cut from the photos."""
        out = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        for i in range(n):
            if self.synthetic and self.synth_rng.random() < self.synthetic:
                out[i] = synth.crop(self.synth_rng, self.size)
                continue
            img = self.images[self.rng.choice(len(self.images), p=self.p)]
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


def link_heldout(folder: Path, out: Path) -> int:
    """Symlink the held-out photos of folder into out (for `bbcodec bench out`)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = image_paths(folder, "val")
    for p in paths:
        link = out / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return len(paths)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Pack the training part of an image folder into one lossless .npz, or with --heldout "
                    "link its held-out validation photos into a folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("out", type=Path, help="the folder to write the packs train-K.npz into, or with --heldout to fill")
    ap.add_argument("--heldout", action="store_true", help="link the held-out photos instead of packing")
    ap.add_argument("--max-side", type=int, default=768)
    a = ap.parse_args(argv)
    if a.heldout:
        print(f"{a.out}: {link_heldout(a.folder, a.out)} held-out photos")
    else:
        for path in pack_folder(a.folder, a.out, a.max_side):
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
