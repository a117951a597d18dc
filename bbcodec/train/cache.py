"""Cache what the real codec does to photos, to train parts that sit beside a frozen codec.

    python -m bbcodec.train.cache ../shared/data/train runs/cache --part train --qualities 2
    python -m bbcodec.train.cache ../shared/data/train runs/cache-val --part val --qualities 8

For each photo and quality, the real encoder (coding/loop.encode, whose observer keeps
the entropy network's hidden features) gives, per block: the entropy
network's last hidden activation (integers), its predicted log-scales and the coded
symbols (a random share of the blocks, `--keep`); and the whole decoded image. The
grouped entropy context of network family 3 is trained on the first (its symbols and
reconstructions are those of the frozen codec, so only the rate changes), the post-loop
filter on the second (pairs of decoded and original images).

The cache is what real files hold: it is the encoder's own loop that fills it. Flat
blocks (one colour, format version 4) are not coded, so the observer sees only the
coded blocks; the decoded image has the flat ones exact, as files do.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..coding import format, loop
from ..coding.loop import UNNAMED
from ..model import quality as Q
from ..model import weights
from ..model.frozen import FrozenModel, Scales
from .data import Part, image_paths


def code_photo(img: np.ndarray, model: FrozenModel, quality: int):
    """The real encoder on one RGB image, in this process: (decoded image, hidden (n, C)
    int16, log-scales (n, M) float32, symbols (n, M) int16 in wavefront order, each
    wavefront's blocks in stream order (streams.shares), payload bits), the per-block
    arrays kept by the loop's observer."""
    hs, lss, syms = [], [], []

    def keep(r: np.ndarray, c: np.ndarray, sym: np.ndarray, scales: Scales, out: np.ndarray) -> None:
        assert scales.hidden is not None
        hs.append(scales.hidden.astype(np.int16))
        lss.append(scales.log_scale.astype(np.float32))
        syms.append(sym.astype(np.int16))

    data, rec = loop.encode(img, quality, model, UNNAMED, threads=1, observe=keep)
    bits = 8 * len(format.unpack(data)[1])
    return rec, np.concatenate(hs), np.concatenate(lss), np.concatenate(syms), bits


def build(folder: Path, out: Path, w: weights.Weights, part: Part = "train", qualities: int = 2,
          keep: float = 0.25, limit: int = 0) -> None:
    """Cache every photo of one part of folder into out (photos already cached are skipped).

    qualities: how many per photo (8: all; fewer: spread over the photos so that every
    quality gets as many); keep: the share of blocks whose features are kept.
    """
    model = w.model
    assert isinstance(model, FrozenModel)
    if model.groups is not None or model.postfilter is not None:
        raise SystemExit(f"{w.name} already has family-3 parts: cache its base weights instead")
    out.mkdir(parents=True, exist_ok=True)
    paths = image_paths(folder, part)[: limit or None]
    rng = np.random.default_rng(0)
    t0 = time.time()
    n = Q.NUM_QUALITIES
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
        qs = range(1, n + 1) if qualities >= n else [(i + k * n // qualities) % n + 1 for k in range(qualities)]
        for q in qs:
            dst = out / f"{path.stem}_q{q}.npz"
            if dst.exists():
                continue
            rec, h, ls, sym, bits = code_photo(img, model, q)
            kept = rng.random(len(h)) < keep
            tmp = dst.with_suffix(".tmp.npz")
            np.savez(tmp, rec=rec, h=h[kept], log_scale=ls[kept], sym=sym[kept], q=q,
                     bits=bits, pixels=img.shape[0] * img.shape[1])
            tmp.replace(dst)
        if (i + 1) % 50 == 0 or i + 1 == len(paths):
            print(f"cache {out.name}: {i + 1}/{len(paths)} photos, {time.time() - t0:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--weights", type=Path, help="base weights file (default: the default weights)")
    p.add_argument("--part", default="train", choices=["train", "val"])
    p.add_argument("--qualities", type=int, default=2,
                   help="qualities per photo: 8 = all; fewer = spread over the photos")
    p.add_argument("--keep", type=float, default=0.25, help="share of blocks whose features are kept")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    a = p.parse_args(argv)
    w = weights.from_file(a.weights) if a.weights else weights.default()
    build(a.folder, a.out, w, a.part, a.qualities, a.keep, a.limit)


if __name__ == "__main__":
    main()
