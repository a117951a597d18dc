"""Train the variable-rate block codec: open loop, then asymptotic closed-loop (ACL) steps.

    python -m bbcodec.train.train --data ../shared/data/train --out runs/n192 --steps 20000
    torchrun --nproc-per-node 4 -m bbcodec.train.train --data train.npz --out runs/big ...

Loss per sample = bpp + lambda(q) * MSE (pixels on the 0..1 scale) with q drawn in
[1, 8]. With --acl K > 0 the neighbour image of each batch is regenerated K times by the
current model (hard rounding, 8-bit pixels) before the step, which approximates the
reconstruction the real sequential decoder will see (the paper's ACL rounds, done
online instead of by regenerating a stored data set).

Resumable: the run folder keeps ckpt.pt (model, optimiser, step, RNG states) and
train.log; running the same command again continues where it stopped. --val runs the
real codec (frozen integer networks, range coder, bpp from bytes) on a few images every
--val-every steps. Under torchrun each process samples its own crops
(DistributedDataParallel averages the gradients); rank 0 logs and saves.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..networks import NUM_QUALITIES, BlockCodecNet, ModelConfig, lambda_of
from .data import CropSampler, image_paths, load_images
from .grow import grow_latents


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bbcodec train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="image folder or packed .npz")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log)")
    p.add_argument("--N", type=int, default=192, help="first hidden width")
    p.add_argument("--M", type=int, default=128, help="latents per block")
    p.add_argument("--kernels", default="3,1,1,1", help="kernel of each layer (high rate: 3,3,1,1)")
    p.add_argument("--skip", action="store_true", help="linear shortcut from each auto-encoder input to its output")
    p.add_argument("--steps", type=int, default=20000, help="total optimiser steps")
    p.add_argument("--batch", type=int, default=8, help="crops per step (per process)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-final", type=float, default=2e-5, help="learning rate at the end of the decay")
    p.add_argument("--decay", type=float, default=0.2,
                   help="share of the run (steps or --minutes) spent in the final cosine decay; the rate is "
                        "constant before it, so a run can be continued later without a full schedule (1: all cosine)")
    p.add_argument("--ema", type=float, default=0.999,
                   help="decay of the exponential moving average of the weights that is validated and frozen (0: off)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--acl", type=int, default=0, help="closed-loop neighbour refinements per step")
    p.add_argument("--acl-from", type=int, default=0, help="step at which --acl starts")
    p.add_argument("--integer-q", type=float, default=0.5, help="share of samples at integer qualities")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast (CUDA, or a CPU with bf16 instructions: 2x faster on AVX512-BF16); "
                        "rates and quantisation stay fp32")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--minutes", type=float, default=0,
                   help="training time budget over all resumes: the learning rate decays to --lr-final by then "
                        "(or by --steps, whichever comes first) and the run stops; 0 = no limit")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's model (its M may be smaller: latents are added)")
    p.add_argument("--val", type=Path, default=None,
                   help="folder of validation images, or 'heldout' for the held-out part of --data (see data.split_of)")
    p.add_argument("--val-every", type=int, default=2000)
    p.add_argument("--val-images", type=int, default=4)
    p.add_argument("--val-qualities", default="1,4,8")
    return p.parse_args(argv)


def sample_qualities(n: int, integer_share: float, rng: np.random.Generator) -> torch.Tensor:
    q = rng.uniform(1.0, NUM_QUALITIES, size=n)
    ints = rng.random(n) < integer_share
    q[ints] = rng.integers(1, NUM_QUALITIES + 1, size=int(ints.sum()))
    return torch.from_numpy(q).float()


def lr_at(step: int, args: argparse.Namespace, elapsed: float = 0.0) -> float:
    """Warm-up, constant, then a cosine decay over the last --decay share of the steps or
    of the time budget, whichever ends first: a run cut by --minutes still ends with its
    low-learning-rate phase, and one continued later starts from a constant rate."""
    warm = min(1.0, (step + 1) / 200)
    done = step / args.steps
    if args.minutes:
        done = max(done, elapsed / (60 * args.minutes))
    decay = min(max(args.decay, 1e-9), 1.0)
    t = min(max((done - (1.0 - decay)) / decay, 0.0), 1.0)
    cos = 0.5 * (1 + math.cos(math.pi * t))
    return warm * (args.lr_final + (args.lr - args.lr_final) * cos)


class EMA:
    """Exponential moving average of a model's floating-point state: the averaged weights
    are what is validated and frozen (smoother than the last step's at a constant rate)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].lerp_(v.detach(), 1.0 - self.decay)
            else:
                self.state[k].copy_(v)

    def model_copy(self, model: BlockCodecNet) -> BlockCodecNet:
        import copy

        m = copy.deepcopy(model)
        m.load_state_dict(self.state)
        return m


def projected_steps(step: int, steps_per_s: float, args: argparse.Namespace, elapsed: float) -> int:
    """Where the run will stop: --steps, or earlier where --minutes runs out at the
    current pace (the progress bar's total, so that its ETA is the real end)."""
    if not args.minutes or steps_per_s <= 0:
        return args.steps
    left = max(0.0, 60 * args.minutes - elapsed)
    return min(args.steps, step + int(steps_per_s * left))


def validation_images(args: argparse.Namespace) -> list[np.ndarray]:
    """--val-images images spread evenly over the validation folder or held-out part."""
    if str(args.val) == "heldout":
        paths = image_paths(args.data, "val")
    else:
        paths = image_paths(args.val, "all")
    step = max(1, len(paths) // max(1, args.val_images))
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in paths[::step][: args.val_images]]


def validate(model: BlockCodecNet, calib: torch.Tensor, imgs: list[np.ndarray], qualities: list[float]) -> str:
    """Real codec on the images: 'q:bpp/PSNR' per quality, averaged."""
    from .. import codec, exact, weights
    from .freeze import freeze

    frozen = exact.load_frozen(freeze(model, calib, "val", {}))
    w = weights.Weights(name="val", path=Path("val"), sha256="0" * 64, model=frozen, family_id=frozen.family)
    parts = []
    for q in qualities:
        bpp, psnr = [], []
        for img in imgs:
            data, rec = codec.encode(img, q, w)
            bpp.append(8 * len(data) / img.shape[0] / img.shape[1])
            psnr.append(10 * np.log10(255**2 / np.mean((img.astype(np.float64) - rec) ** 2)))
        parts.append(f"q{q:g}:{np.mean(bpp):.4f}/{np.mean(psnr):.2f}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    torch.manual_seed(args.seed)
    main_proc = rank == 0
    if main_proc:
        args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "train.log", "a", buffering=1) if main_proc else open(os.devnull, "w")

    images = load_images(args.data, args.crop)
    sampler = CropSampler(images, args.crop, args.seed + 1000 * rank)
    qrng = np.random.default_rng(args.seed + 1 + 1000 * rank)
    cfg = ModelConfig(N=args.N, M=args.M, kernels=tuple(int(k) for k in args.kernels.split(",")), skip=args.skip)
    model = BlockCodecNet(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, trained_s = 0, 0.0  # trained_s: training seconds of earlier invocations
    ckpt_path = args.out / "ckpt.pt"
    ck_state: dict = {}
    if ckpt_path.exists():
        ck = ck_state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        trained_s = ck.get("elapsed", 0.0)
        if world == 1:  # RNG streams are per process; a resumed multi-process run reseeds
            sampler.rng.bit_generator.state = ck["sampler_rng"]
            qrng.bit_generator.state = ck["q_rng"]
            torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {step}", file=log)
    elif args.init is not None:
        state = torch.load(args.init, map_location="cpu", weights_only=False)["model"]
        missing, unexpected = model.load_state_dict(grow_latents(state, cfg.M, args.seed), strict=False)
        if unexpected or any(".skip." not in k for k in missing):
            raise SystemExit(f"--init {args.init} does not fit this model: missing {missing}, unexpected {unexpected}")
        added = ", zero shortcuts added" if missing else ""
        print(f"initialised from {args.init} (latents {state['log_gain'].shape[1]} -> {cfg.M}{added})", file=log)
    ema = EMA(model, args.ema) if args.ema else None
    if ema is not None and "ema" in ck_state:
        ema.state = {k: v.to(dev) for k, v in ck_state["ema"].items()}
    print(f"start step={step} world={world} args={vars(args)} images={len(images)}", file=log)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    calib = CropSampler(images, args.crop, seed=1234).batch(8)  # activation ranges for --val
    val_images = validation_images(args) if main_proc and args.val else []

    def save() -> None:
        if not main_proc:
            return
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                **({"ema": ema.state} if ema is not None else {}),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed": elapsed(),
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

    bar = tqdm(total=args.steps, initial=step, dynamic_ncols=True, mininterval=5, disable=not main_proc)
    t0, step0, run = time.time(), step, {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}

    def elapsed() -> float:
        return trained_s + time.time() - t0

    def synced_elapsed() -> float:
        """Rank 0's clock on every process, so that all use the same learning rate and
        stop on the same step (one process stopping alone would hang the others)."""
        now = elapsed()
        if world > 1:
            t = torch.tensor([now], dtype=torch.float64, device=dev)
            torch.distributed.broadcast(t, src=0)
            now = float(t.item())
        return now

    model.train()
    while step < args.steps:
        now = synced_elapsed()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args, now)
        x = sampler.batch(args.batch).to(dev)
        q = sample_qualities(args.batch, args.integer_q, qrng).to(dev)
        nb = x
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
            if args.acl and step >= args.acl_from:
                for _ in range(args.acl):
                    nb = model.reconstruct(x, nb, q)
            out = net(x, nb, q)
        bpp = out.bits.float() / (x.shape[2] * x.shape[3])
        loss = (bpp + lambda_of(q) * out.mse.float() / 255.0**2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        run["loss"] += loss.item()
        run["bpp"] += bpp.mean().item()
        run["psnr"] += (10 * torch.log10(255.0**2 / out.mse.detach().float().clamp(min=1e-6))).mean().item()
        run["n"] += 1
        bar.update(1)
        if step % 50 == 0 or step == args.steps:
            n = run["n"]
            msg = (
                f"step {step} loss {run['loss'] / n:.4f} bpp {run['bpp'] / n:.4f} "
                f"psnr {run['psnr'] / n:.2f} lr {lr_at(step, args, elapsed()):.2e} {elapsed():.0f}s"
            )
            bar.total = projected_steps(step, (step - step0) / (time.time() - t0), args, elapsed())
            bar.set_postfix_str(msg.split(" ", 2)[2])
            print(msg, file=log)
            run = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
        out_of_time = args.minutes and now > 60 * args.minutes
        if step % args.ckpt_every == 0 or step == args.steps or out_of_time:
            save()
        if main_proc and args.val and (step % args.val_every == 0 or step == args.steps or out_of_time):
            qs = [float(v) for v in args.val_qualities.split(",")]
            val_model = model if ema is None else ema.model_copy(model)
            print(f"val step {step} {validate(val_model, calib, val_images, qs)}", file=log)
            model.train()
        if out_of_time:
            print(f"stopping: --minutes {args.minutes} reached", file=log)
            break
    bar.close()
    print(f"done step={step} seconds={elapsed():.0f}", file=log)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
