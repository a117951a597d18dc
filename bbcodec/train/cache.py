"""Cache what the real codec does to photos, to train parts that sit beside a frozen codec.

    python -m bbcodec.train.cache ../shared/data/train runs/cache --part train --qualities 2
    python -m bbcodec.train.cache ../shared/data/train runs/cache-val --part val --qualities 8

For each photo and quality, the exact integer encoding loop (codec.encode's, replayed
here so the entropy network's hidden features can be kept) gives, per block: the entropy
network's last hidden activation (integers), its predicted log-scales and the coded
symbols (a random share of the blocks, `--keep`); and the whole decoded image. The
grouped entropy context of network family 3 is trained on the first (its symbols and
reconstructions are those of the frozen codec, so only the rate changes), the post-loop
filter on the second (pairs of decoded and original images).

A photo's bytes are checked against codec.encode for the first photos, so the cache is
what real files hold.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..coding import format, streams
from ..coding import loop as codec
from ..model import blocks, weights
from ..model import quality as Q
from ..model.blocks import BlockContext
from ..model.exact import FrozenModel, QualityParams, scale_indices
from .data import Part, image_paths


def code_photo(img: np.ndarray, model: FrozenModel, qp: QualityParams):
    """The encoder's loop on one RGB image: (decoded image, hidden (n, C) int16,
    log-scales (n, M) float32, symbols (n, M) int16 in wavefront order, each wavefront's
    blocks in stream order (streams.shares), payload bytes)."""
    height, width = img.shape[:2]
    grid = blocks.block_grid(blocks.pad_to_blocks(img))
    rows, cols = blocks.grid_shape(height, width)
    canvas = blocks.new_canvas(rows, cols)
    ctx = BlockContext(rows, cols)
    L, M = model.max_symbol, model.M
    n_streams = streams.default_count(rows, cols)
    coder = streams.Writer(list(range(n_streams)), n_streams, model.scale_table, L)
    hs, lss, syms = [], [], []
    for r, c in blocks.wavefronts(rows, cols):
        ((r, c),) = streams.shares(r, c, n_streams, 1)  # the order Writer.write takes
        nb = blocks.gather_neighbours(canvas, r, c)
        ctx.at(r, c)
        out, h = model.he.run_with_hidden(None, nb, qp.bias["he"], ctx)
        mean = out[:, :M] * qp.gain
        log_scale = out[:, M:] + qp.log_gain
        idx = scale_indices(model.scale_bounds, log_scale)
        y = model.analyse(blocks.block_rows(grid, r, c), nb, qp, ctx)
        sym = np.clip(np.rint(y - mean), -L, L)
        sym[idx == 0] = 0  # not coded: the decoder reads 0 (docs/format.md 4)
        canvas[r + 1, c + 1] = model.synthesise(sym, mean, nb, qp, ctx)
        coder.write(r, sym, idx, [slice(None)])
        hs.append(h.astype(np.int16))
        lss.append(log_scale.astype(np.float32))
        syms.append(sym.astype(np.int16))
    rec = blocks.from_blocks(canvas[1:, 1:-1], height, width)
    parts = coder.payloads()
    payload = streams.join([parts[s] for s in range(n_streams)])
    return rec, np.concatenate(hs), np.concatenate(lss), np.concatenate(syms), payload


def build(folder: Path, out: Path, w: weights.Weights, part: Part = "train", qualities: int = 2,
          keep: float = 0.25, check: int = 3, limit: int = 0) -> None:
    """Cache every photo of one part of folder into out (photos already cached are skipped).

    qualities: how many per photo (8: all; fewer: spread over the photos so that every
    quality gets as many); keep: the share of blocks whose features are kept; check: how
    many photos are also encoded by codec.encode and compared byte for byte.
    """
    model = w.model
    assert isinstance(model, FrozenModel)
    if model.context is not None or model.postfilter is not None:
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
            qp = model.params_at(Q.to_x256(q))
            rec, h, ls, sym, payload = code_photo(img, model, qp)
            if i < check:
                data, rec2 = codec.encode(img, q, w)
                if format.unpack(data)[1] != payload or not np.array_equal(rec, rec2):
                    raise SystemExit(f"{path.name}: the cache's loop differs from codec.encode")
            kept = rng.random(len(h)) < keep
            tmp = dst.with_suffix(".tmp.npz")
            np.savez(tmp, rec=rec, h=h[kept], log_scale=ls[kept], sym=sym[kept], q=q,
                     bits=8 * len(payload), pixels=img.shape[0] * img.shape[1])
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
    p.add_argument("--check", type=int, default=3, help="photos checked against codec.encode's bytes")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    a = p.parse_args(argv)
    w = weights.from_file(a.weights) if a.weights else weights.default()
    build(a.folder, a.out, w, a.part, a.qualities, a.keep, a.check, a.limit)


if __name__ == "__main__":
    main()
