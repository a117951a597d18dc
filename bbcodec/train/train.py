"""Train the variable-rate block codec: open loop, then asymptotic closed-loop (ACL) steps.

    python -m bbcodec.train.train --data ../shared/data/train --out runs/n192 --steps 20000

Loss per sample = bpp + lambda(q) * MSE (pixels on the 0..1 scale) with q drawn in [1, 8]. With
--acl K > 0 the neighbour image of each batch is regenerated K times by the current
model (hard rounding, 8-bit pixels) before the step, which approximates the
reconstruction the real sequential decoder will see (the paper's ACL rounds, done
online instead of by regenerating a stored data set).

Resumable: the run folder keeps ckpt.pt (model, optimiser, step, RNG states) and
train.log; running the same command again continues where it stopped.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..networks import NUM_QUALITIES, BlockCodecNet, ModelConfig, lambda_of
from .data import CropSampler, load_folder, load_packed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="image folder or packed .npz")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log)")
    p.add_argument("--N", type=int, default=192, help="first hidden width")
    p.add_argument("--M", type=int, default=48, help="latents per block")
    p.add_argument("--steps", type=int, default=20000, help="total optimiser steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-final", type=float, default=2e-5, help="cosine decay target")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--acl", type=int, default=0, help="closed-loop neighbour refinements per step")
    p.add_argument("--acl-from", type=int, default=0, help="step at which --acl starts")
    p.add_argument("--integer-q", type=float, default=0.5, help="share of samples at integer qualities")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's model")
    return p.parse_args(argv)


def sample_qualities(n: int, integer_share: float, rng: np.random.Generator) -> torch.Tensor:
    q = rng.uniform(1.0, NUM_QUALITIES, size=n)
    ints = rng.random(n) < integer_share
    q[ints] = rng.integers(1, NUM_QUALITIES + 1, size=int(ints.sum()))
    return torch.from_numpy(q).float()


def lr_at(step: int, args: argparse.Namespace) -> float:
    warm = min(1.0, (step + 1) / 200)
    cos = 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))
    return warm * (args.lr_final + (args.lr - args.lr_final) * cos)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "train.log", "a", buffering=1)
    dev = torch.device(args.device)

    images = load_packed(args.data) if args.data.suffix == ".npz" else load_folder(args.data, args.crop)
    sampler = CropSampler(images, args.crop, args.seed)
    qrng = np.random.default_rng(args.seed + 1)
    cfg = ModelConfig(N=args.N, M=args.M)
    model = BlockCodecNet(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = 0
    ckpt_path = args.out / "ckpt.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        sampler.rng.bit_generator.state = ck["sampler_rng"]
        qrng.bit_generator.state = ck["q_rng"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {step}", file=log)
    elif args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location=dev, weights_only=False)["model"])
        print(f"initialised from {args.init}", file=log)
    print(f"start step={step} args={vars(args)} images={len(images)}", file=log)

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "cfg": cfg.to_dict(),
                "sampler_rng": sampler.rng.bit_generator.state,
                "q_rng": qrng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, dynamic_ncols=True, mininterval=5)
    t0, run = time.time(), {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
    model.train()
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        x = sampler.batch(args.batch).to(dev)
        q = sample_qualities(args.batch, args.integer_q, qrng).to(dev)
        nb = x
        if args.acl and step >= args.acl_from:
            for _ in range(args.acl):
                nb = model.reconstruct(x, nb, q)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp and dev.type == "cuda"):
            out = model(x, nb, q)
        bpp = out.bits.float() / (x.shape[2] * x.shape[3])
        loss = (bpp + lambda_of(q) * out.mse.float() / 255.0**2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        run["loss"] += loss.item()
        run["bpp"] += bpp.mean().item()
        run["psnr"] += (10 * torch.log10(255.0**2 / out.mse.detach().clamp(min=1e-6))).mean().item()
        run["n"] += 1
        bar.update(1)
        if step % 50 == 0 or step == args.steps:
            n = run["n"]
            msg = (
                f"step {step} loss {run['loss'] / n:.4f} bpp {run['bpp'] / n:.4f} "
                f"psnr {run['psnr'] / n:.2f} lr {lr_at(step, args):.2e} {time.time() - t0:.0f}s"
            )
            bar.set_postfix_str(msg.split(" ", 2)[2])
            print(msg, file=log)
            run = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
        if step % args.ckpt_every == 0 or step == args.steps:
            save()
    bar.close()
    print(f"done step={step} seconds={time.time() - t0:.0f}", file=log)


if __name__ == "__main__":
    main()
