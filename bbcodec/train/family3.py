"""Network family 3 on top of any family-2 weights, in one command.

    python -m bbcodec.train.family3 --base weights/bb8-n192m128s-738aa1b7.npz \\
        --data ../shared/data/train --work runs/f3 --name bb8-n192m128g --out weights/

The base networks stay frozen. Steps (each skipped when its output is already in --work):
1. cache real encodes of the training photos (two qualities each) and of the held-out
   photos (all eight qualities): bbcodec.train.cache;
2. train the grouped scale context on the cached symbols (rate only: the symbols and the
   reconstruction cannot change): bbcodec.train.groups;
3. train the post-loop filter on the cached decoded images (distortion only):
   bbcodec.train.filter;
4. freeze both into integers, write NAME-<sha256[:8]>.npz of family 3 beside its line in
   SHA256SUMS and a model-card stub (as `bbcodec freeze` does).
Held-out figures of each part alone are printed; files decide, with `bbcodec bench`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from ..model import layout as model_io
from ..model import weights
from ..model.frozen import FrozenModel
from . import cache
from . import filter as postfilter
from . import groups as context
from .freeze import add_card_stub, register, write_weights


def doubling_groups(M: int) -> list[int]:
    """Group sizes 2, 2, 4, 8, ... whose last group takes what is left of M channels."""
    sizes = [2]
    while sum(sizes) + sizes[-1] * 2 < M:
        sizes.append(2 * sizes[-1] if len(sizes) > 1 else 2)
    rest = M - sum(sizes)
    return [*sizes, rest] if rest else sizes


def build(base: FrozenModel, ctx_net: context.GroupedScalesNet | None, pf_net: postfilter.FilterNet | None,
          calib: context.Cache | None, calib_images: list | None, name: str, info: dict) -> FrozenModel:
    """The family-3 FrozenModel of base plus the trained parts, frozen to integers."""
    return dataclasses.replace(
        base,
        name=name,
        family=model_io.FAMILY_GROUPS,
        groups=context.freeze_context(ctx_net, calib) if ctx_net is not None and calib is not None else None,
        postfilter=postfilter.freeze_filter(pf_net, calib_images) if pf_net is not None and calib_images else None,
        info={**base.info, **info},
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, help="family-2 weights file (default: the default weights)")
    p.add_argument("--data", type=Path, required=True, help="training photos (their held-out tenth validates)")
    p.add_argument("--work", type=Path, required=True, help="folder for the caches and trained parts")
    p.add_argument("--name", required=True, help="name of the new weights")
    p.add_argument("--out", type=Path, default=Path("weights"), help="folder of the new weights file")
    p.add_argument("--default", action="store_true", help="make it the default of --out")
    p.add_argument("--context-steps", type=int, default=20000)
    p.add_argument("--filter-steps", type=int, default=15000)
    p.add_argument("--context-init", type=Path,
                   help="context.pt of heads trained on an earlier version of the same base networks: continued")
    p.add_argument("--filter-init", type=Path,
                   help="filter.pt likewise, or a family-3 weights file (.npz) whose filter is continued")
    p.add_argument("--context-lr", type=float, default=1e-3)
    p.add_argument("--filter-lr", type=float, default=5e-4)
    p.add_argument("--filter-perceptual", type=float, default=0.0,
                   help="share of SSIMULACRA2 in the filter's loss (train --perceptual's; 0: MSE)")
    p.add_argument("--filter-batch", type=int, default=16)
    p.add_argument("--no-filter", action="store_true", help="family 3 without the post-loop filter")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    w = weights.from_file(a.base) if a.base else weights.default()
    base = w.model
    assert isinstance(base, FrozenModel)
    if base.family != model_io.FAMILY_SKIP:
        raise SystemExit(f"{w.name} is of network family {base.family}: family 3 builds on family 2")
    t0 = time.time()
    cache.build(a.data, a.work / "cache", w, "train", qualities=2)
    cache.build(a.data, a.work / "cache-val", w, "val", qualities=8)
    train_cache = context.load_cache(a.work / "cache")
    ckpt = a.work / "context.pt"
    if ckpt.exists():
        ctx_net = context.load(ckpt)
    else:
        cfg = context.ContextConfig(sizes=doubling_groups(base.M), f_h=base.he.acts[-1].fh)
        init = context.load(a.context_init) if a.context_init else None
        ctx_net = context.train(train_cache, cfg, a.context_steps, lr=a.context_lr, init=init)
        context.save(ctx_net, ckpt)
    val = context.load_cache(a.work / "cache-val")
    print("grouped scales on the held-out cache (bits per block, quantised scales):")
    print(context.report(context.evaluate(ctx_net, val, context.table_tensor(base.scale_table))), flush=True)
    del val
    pf_net, pairs = None, []
    if not a.no_filter:
        fck = a.work / "filter.pt"
        pairs = postfilter.load_pairs(a.work / "cache", a.data)
        if fck.exists():
            pf_net = postfilter.load(fck)
        else:
            init_pf = postfilter.load_any(a.filter_init) if a.filter_init else None
            pf_net = postfilter.train(pairs, postfilter.FilterConfig(), a.filter_steps, batch=a.filter_batch,
                                      lr=a.filter_lr, init=init_pf, perceptual=a.filter_perceptual)
            postfilter.save(pf_net, fck)
        val_pairs = postfilter.load_pairs(a.work / "cache-val", a.data)
        print("post-loop filter on the held-out decodes (PSNR-RGB):")
        print(postfilter.report(postfilter.evaluate(pf_net, val_pairs)), flush=True)
        if a.filter_perceptual > 0:
            print("post-loop filter on the held-out decodes (SSIMULACRA2, every third decode):")
            rows = postfilter.evaluate(pf_net, val_pairs[::3], metric=postfilter.ssimulacra2)
            print(postfilter.report(rows, unit=""), flush=True)
        del val_pairs
    info = {"family3_base": w.name, "family3_minutes": round((time.time() - t0) / 60, 1),
            "context_steps": a.context_steps, "filter_steps": 0 if pf_net is None else a.filter_steps,
            "filter_perceptual": a.filter_perceptual}
    calib = context.Cache(*(t[: 1 << 18] for t in (train_cache.hidden, train_cache.log_scale, train_cache.sym, train_cache.q)))
    model = build(base, ctx_net, pf_net, calib, pairs[:64], a.name, info)
    path = write_weights(model, a.out)
    digest = register(path, a.default)
    add_card_stub(model, path, digest, str(a.data))
    check = model_io.read(str(path))
    assert np.array_equal(check.groups.perm, model.groups.perm)  # type: ignore[union-attr]
    print(f"wrote {path} (sha256 {digest[:16]}...)")


if __name__ == "__main__":
    main()
