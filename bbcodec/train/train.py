"""Train the variable-rate block codec: open loop, then asymptotic closed-loop (ACL) steps.

    python -m bbcodec.train.train --data ../shared/data/train --out runs/n192 --steps 20000
    torchrun --standalone --nproc-per-node 4 -m bbcodec.train.train --data train.npz --out runs/big ...

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
import dataclasses
import math
import os
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.config import ModelConfig
from . import TORCH, need_torch

if TORCH is None:  # else only the options (train/__init__.py)
    import torch

    from ..nn.networks import NUM_QUALITIES, BlockCodecNet, lambda_of, to_net
    from . import filter as postfilter
    from . import groups as context
    from .data import CropSampler, image_paths, load_images
    from .grow import grow_latents, grow_width

# The model's sizes are ModelConfig's own defaults, written once in nn/config.py.
_MODEL: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def _default_device() -> str:
    return "cuda" if TORCH is None and torch.cuda.is_available() else "cpu"


@dataclass
class TrainConfig:
    """Every option of a training run, with its default and help: the command line is
    generated from these fields (see build_parser)."""

    data: Path = field(metadata={"help": "image folder or packed .npz"})
    out: Path = field(metadata={"help": "run folder (checkpoint, log)"})
    N: int = field(default=_MODEL["N"], metadata={"help": "first hidden width"})
    M: int = field(default=_MODEL["M"], metadata={"help": "latents per block"})
    kernels: tuple[int, ...] = field(
        default=_MODEL["kernels"], metadata={"help": "kernel of each layer (high rate: 3,3,1,1)"})
    skip: bool = field(
        default=_MODEL["skip"],
        metadata={"help": "linear shortcut from each auto-encoder input to its output"})
    steps: int = field(default=20000, metadata={"help": "total optimiser steps"})
    batch: int = field(default=8, metadata={"help": "crops per step (per process)"})
    crop: int = field(default=256, metadata={"help": "side of the square training crops (pixels)"})
    lr: float = field(default=2e-4, metadata={"help": "learning rate after the warm-up"})
    lr_final: float = field(default=2e-5, metadata={"help": "learning rate at the end of the decay"})
    decay: float = field(default=0.2, metadata={
        "help": "share of the run (steps or --minutes) spent in the final cosine decay; the rate is "
                "constant before it, so a run can be continued later without a full schedule (1: all cosine)"})
    ema: float = field(default=0.999, metadata={
        "help": "decay of the exponential moving average of the weights that is validated and frozen (0: off)"})
    clip: float = field(default=1.0, metadata={"help": "gradient norm clip"})
    acl: int = field(default=0, metadata={"help": "closed-loop neighbour refinements per step"})
    acl_from: int = field(default=0, metadata={"help": "step at which --acl starts"})
    integer_q: float = field(default=0.5, metadata={"help": "share of samples at integer qualities"})
    perceptual: float = field(default=0.0, metadata={
        "help": "share of the distortion measured by SSIMULACRA2 (nn/ssimulacra2.py) instead of RGB MSE "
                "(0: MSE only, as the paper; the SSIMULACRA2 loss is scaled by PERCEPTUAL_SCALE to MSE's range)"})
    synthetic: float = field(default=0.0, metadata={
        "help": "share of the crops drawn by train/synth.py (text, UI, charts, cartoons, ramps, saturated "
                "patches) instead of cut from the photos (0: photos only)"})
    postfilter: Path | None = field(default=None, metadata={
        "help": "a family-3 weights file (.npz) or filter.pt: its post-loop filter follows the auto-encoder in "
                "the distortion and is trained with it (the joint fine-tune; saved as filter.pt in --out, for "
                "family3 --filter-init); the neighbours stay unfiltered, as in the decoder"})
    filter_lr: float = field(default=5.0, metadata={"help": "the post-loop filter's learning rate, times --lr's schedule"})
    heads: Path | None = field(default=None, metadata={
        "help": "a family-3 context.pt (family3's grouped-scale heads of this auto-encoder): the rate is the "
                "bits under the heads' scales, and the heads train with the auto-encoder (the joint fine-tune; "
                "saved as heads.pt in --out, for family3 --context-init)"})
    heads_lr: float = field(default=20.0, metadata={"help": "the heads' learning rate, times --lr's schedule"})
    seed: int = field(default=0, metadata={"help": "seed of the crops, qualities and initial weights"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: all cores)"})
    device: str = field(default_factory=_default_device,
                        metadata={"help": "torch device (cuda where available, else cpu)"})
    amp: bool = field(default=False, metadata={
        "help": "bf16 autocast (CUDA, or a CPU with bf16 instructions: 2x faster on AVX512-BF16); "
                "rates and quantisation stay fp32"})
    ckpt_every: int = field(default=250, metadata={"help": "steps between checkpoints"})
    minutes: float = field(default=0.0, metadata={
        "help": "training time budget over all resumes: the learning rate decays to --lr-final by then "
                "(or by --steps, whichever comes first) and the run stops; 0 = no limit"})
    init: Path | None = field(default=None, metadata={
        "help": "start from this checkpoint's model (its M may be smaller: latents are added)"})
    val: Path | None = field(default=None, metadata={
        "help": "folder of validation images, or 'heldout' for the held-out part of --data (see data.split_of)"})
    val_every: int = field(default=2000, metadata={"help": "steps between validations"})
    val_images: int = field(default=4, metadata={"help": "images validated"})
    val_qualities: tuple[float, ...] = field(default=(1.0, 4.0, 8.0), metadata={"help": "qualities validated"})

    def model_config(self) -> ModelConfig:
        return ModelConfig(N=self.N, M=self.M, kernels=tuple(self.kernels), skip=self.skip)


def _show(value: Any) -> str:
    """A default as it is typed on the command line: 2e-4, 3,1,1,1."""
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    if isinstance(value, float):
        if value and abs(value) < 1e-3:
            mantissa, exp = f"{value:e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{value:g}"
    return str(value)


def _comma_list(item: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(item(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {item.__name__}: {text!r}") from None

    parse.__name__ = f"list of {item.__name__}"
    return parse


def build_parser(cls: type, **kwargs: Any) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of the dataclass `cls`: --name-with-dashes,
    bool fields as flags, tuple fields as comma lists, fields without a default required;
    the help of each shows its default."""
    p = argparse.ArgumentParser(**kwargs)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "").replace("%", "%%")
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            p.add_argument(flag, dest=f.name, type=tp, required=True, help=f"{help_text} [required]")
            continue
        help_text += f" [default: {_show(default)}]"
        if tp is bool:
            action = "store_true" if not default else argparse.BooleanOptionalAction
            p.add_argument(flag, dest=f.name, action=action, default=default, help=help_text)
        elif typing.get_origin(tp) is tuple:
            p.add_argument(flag, dest=f.name, type=_comma_list(typing.get_args(tp)[0]), default=default,
                           metavar=f.name.upper(), help=help_text)
        else:
            p.add_argument(flag, dest=f.name, type=tp, default=default, help=help_text)
    return p


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The options of argv (--help: print them and exit, with or without torch); then
    ModuleNotFoundError if torch is not installed."""
    p = build_parser(TrainConfig, prog="bbcodec train", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg = TrainConfig(**vars(p.parse_args(argv)))
    for name in ("perceptual", "synthetic"):
        if not 0 <= getattr(cfg, name) <= 1:
            p.error(f"--{name} is a share: 0 to 1, not {getattr(cfg, name)}")
    for name in ("init", "postfilter", "heads"):  # read when a run starts; a resumed one has them in its checkpoint
        path = getattr(cfg, name)
        if path is not None and not path.is_file() and not (cfg.out / "ckpt.pt").exists():
            p.error(f"--{name} {path}: no such file")
    need_torch("training")
    try:
        cfg.model_config()
    except ValueError as e:
        p.error(str(e))
    return cfg


PERCEPTUAL_SCALE = 1.2e-5  # SSIMULACRA2 loss (100 - score) to MSE / 255^2: about equal for noise at 34 dB on a Kodak crop


def distortion(x: torch.Tensor, x_hat: torch.Tensor, mse: torch.Tensor, perceptual: float) -> torch.Tensor:
    """Per-sample distortion of the rate-distortion loss: RGB MSE on the 0..1 scale, mixed
    with perceptual x the SSIMULACRA2 loss (scaled by PERCEPTUAL_SCALE) of the 0..255
    images x and x_hat."""
    d = mse.float() / 255.0**2
    if perceptual <= 0:
        return d
    from ..nn.ssimulacra2 import ssimulacra2_loss

    s2 = ssimulacra2_loss(x.float() / 255.0, x_hat.float().clamp(0, 255) / 255.0, reduction="none")
    return (1 - perceptual) * d + perceptual * PERCEPTUAL_SCALE * s2


def sample_qualities(n: int, integer_share: float, rng: np.random.Generator) -> torch.Tensor:
    q = rng.uniform(1.0, NUM_QUALITIES, size=n)
    ints = rng.random(n) < integer_share
    q[ints] = rng.integers(1, NUM_QUALITIES + 1, size=int(ints.sum()))
    return torch.from_numpy(q).float()


def lr_at(step: int, args: TrainConfig, elapsed: float = 0.0) -> float:
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

    def update(self, model: torch.nn.Module) -> None:
        with torch.no_grad():
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


def projected_steps(step: int, steps_per_s: float, args: TrainConfig, elapsed: float) -> int:
    """Where the run will stop: --steps, or earlier where --minutes runs out at the
    current pace (the progress bar's total, so that its ETA is the real end)."""
    if not args.minutes or steps_per_s <= 0:
        return args.steps
    left = max(0.0, 60 * args.minutes - elapsed)
    return min(args.steps, step + int(steps_per_s * left))


def _postfilter(args: TrainConfig, ck: dict, dev: torch.device) -> postfilter.FilterNet | None:
    """The post-loop filter trained with the auto-encoder (--postfilter): the checkpoint's
    when resuming, else the file's."""
    if args.postfilter is None:
        return None
    if "postfilter" in ck:
        pf = postfilter.from_dict(ck["postfilter"])
    else:
        try:
            pf = postfilter.load_any(args.postfilter)
        except (KeyError, RuntimeError, ValueError, OSError, EOFError) as e:  # not a filter.pt or weights file
            raise SystemExit(f"--postfilter {args.postfilter}: not a post-loop filter ({type(e).__name__}: {e})") from None
    return pf.float().to(dev).train()


def _heads(args: TrainConfig, cfg: ModelConfig, ck: dict, dev: torch.device) -> context.GroupedScalesNet | None:
    """The grouped-scale heads trained with the auto-encoder (--heads): the checkpoint's
    when resuming, else the file's; they must read this model's entropy network."""
    if args.heads is None:
        return None
    if cfg.kernels[-1] != 1:  # its heads read the neighbours' hidden features too (docs/format.md 5.5)
        raise SystemExit("--heads: the entropy network's last layer has kernel 3, which the joint fine-tune "
                         "does not model (its heads read the neighbours' hidden features too)")
    if "heads" in ck:
        heads = context.from_dict(ck["heads"])
    else:
        try:
            heads = context.load(args.heads)
        except (KeyError, RuntimeError, ValueError, TypeError, OSError, EOFError) as e:  # not a context.pt
            raise SystemExit(f"--heads {args.heads}: not grouped-scale heads ({type(e).__name__}: {e})") from None
    if heads.hidden_width != cfg.entropy_widths[-1] or len(heads.perm) != cfg.M:
        raise SystemExit(f"--heads {args.heads}: heads of {heads.hidden_width} hidden features and {len(heads.perm)} "
                         f"latents do not fit this model ({cfg.entropy_widths[-1]} and {cfg.M})")
    return heads.float().to(dev).train()


def filtered(pf: postfilter.FilterNet, x: torch.Tensor, x_hat: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(filtered reconstruction 0..255, its MSE) of the crops: the decoder filters the 8-bit
    picture, so x_hat is rounded first (straight through)."""
    with torch.autocast(x.device.type, enabled=False):
        r = x_hat.float().clamp(0, 255)
        r = r + (r.round() - r).detach()
        y = pf(to_net(r), q.float()) * 128.0 + 128.0
    return y, (y - x).pow(2).flatten(1).mean(1)


def validation_images(args: TrainConfig) -> list[np.ndarray]:
    """--val-images images spread evenly over the validation folder or held-out part."""
    if args.val is None:
        return []
    if str(args.val) == "heldout":
        paths = image_paths(args.data, "val")
    else:
        paths = image_paths(args.val, "all")
    step = max(1, len(paths) // max(1, args.val_images))
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in paths[::step][: args.val_images]]


def validate(model: BlockCodecNet, calib: torch.Tensor, imgs: list[np.ndarray], qualities: list[float]) -> str:
    """Real codec on the images: 'q:bpp/PSNR' per quality, averaged."""
    from ..coding import loop as codec
    from .freeze import freeze

    frozen = freeze(model, calib, "val", {})
    parts = []
    for q in qualities:
        bpp, psnr = [], []
        for img in imgs:
            data, rec = codec.encode(img, q, frozen, codec.UNNAMED)
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
    sampler = CropSampler(images, args.crop, args.seed + 1000 * rank, args.synthetic)
    qrng = np.random.default_rng(args.seed + 1 + 1000 * rank)
    cfg = args.model_config()
    model = BlockCodecNet(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, trained_s = 0, 0.0  # trained_s: training seconds of earlier invocations
    ckpt_path = args.out / "ckpt.pt"
    ck_state: dict = {}
    if ckpt_path.exists():
        ck = ck_state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        step = ck["step"]
        trained_s = ck.get("elapsed", 0.0)
        if world == 1:  # RNG streams are per process; a resumed multi-process run reseeds
            sampler.rng.bit_generator.state = ck["sampler_rng"]
            if "synth_rng" in ck:
                sampler.synth_rng.bit_generator.state = ck["synth_rng"]
            qrng.bit_generator.state = ck["q_rng"]
            torch.set_rng_state(ck["torch_rng"].cpu())  # map_location moved it to the device
        print(f"resumed at step {step}", file=log)
    elif args.init is not None:
        state = torch.load(args.init, map_location="cpu", weights_only=False)["model"]
        try:
            grown = grow_width(grow_latents(state, cfg.M, args.seed), cfg, args.seed)
        except ValueError as e:
            raise SystemExit(f"--init {args.init} does not fit this model: {e}") from None
        model.load_state_dict(grown)
        added = ", zero shortcuts added" if cfg.skip and "g_a.skip.weight" not in state else ""
        widths = f", N {state['g_a.nb.weight'].shape[0]} -> {cfg.N}"
        print(f"initialised from {args.init} (latents {state['log_gain'].shape[1]} -> {cfg.M}{added}{widths})",
              file=log)
    pf = _postfilter(args, ck_state, dev)
    if pf is not None:
        opt.add_param_group({"params": list(pf.parameters()), "lr": args.lr * args.filter_lr, "scale": args.filter_lr})
    heads = _heads(args, cfg, ck_state, dev)
    if heads is not None:
        opt.add_param_group({"params": list(heads.parameters()), "lr": args.lr * args.heads_lr, "scale": args.heads_lr})
    companions = [m for m in (pf, heads) if m is not None]  # trained beside the model, outside DDP
    if "opt" in ck_state:  # after the filter's and heads' groups, which were saved with it
        saved = {name for name in ("postfilter", "heads") if name in ck_state}
        given = {name for name in ("postfilter", "heads") if getattr(args, name) is not None}
        if saved != given:
            was = ", ".join(f"--{n}" for n in sorted(saved)) or "neither --postfilter nor --heads"
            raise SystemExit(f"{ckpt_path} was trained with {was}: resume it with the same options, or start "
                             "another --out from it with --init")
        opt.load_state_dict(ck_state["opt"])
    ema = EMA(model, args.ema) if args.ema else None
    if ema is not None and "ema" in ck_state:
        ema.state = {k: v.to(dev) for k, v in ck_state["ema"].items()}
    print(f"start step={step} world={world} args={dataclasses.asdict(args)} images={len(images)}", file=log)
    net: torch.nn.Module = model
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
                "synth_rng": sampler.synth_rng.bit_generator.state,
                "q_rng": qrng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "args": {k: str(v) for k, v in dataclasses.asdict(args).items()},
                **({"postfilter": postfilter.to_dict(pf)} if pf is not None else {}),
                **({"heads": context.to_dict(heads)} if heads is not None else {}),
            },
            tmp,
        )
        tmp.replace(ckpt_path)
        if pf is not None:
            postfilter.save(pf, args.out / "filter.pt")
        if heads is not None:
            context.save(heads, args.out / "heads.pt")

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
            group["lr"] = lr_at(step, args, now) * group.get("scale", 1.0)
        x = sampler.batch(args.batch).to(dev)
        q = sample_qualities(args.batch, args.integer_q, qrng).to(dev)
        nb = x
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
            if args.acl and step >= args.acl_from:
                for _ in range(args.acl):
                    nb = model.reconstruct(x, nb, q)
            out = net(x, nb, q)
        bits = out.bits if heads is None else context.grid_bits(heads, out.entropy, q)  # fp32, outside autocast
        bpp = bits.float() / (x.shape[2] * x.shape[3])
        x_hat, mse = out.x_hat, out.mse
        if pf is not None:  # in fp32: a residual added in bfloat16 would round the pixels
            x_hat, mse = filtered(pf, x, out.x_hat, q)
        loss = (bpp + lambda_of(q) * distortion(x, x_hat, mse, args.perceptual)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:  # DistributedDataParallel averages the model's gradients only
            for prm in (p for m in companions for p in m.parameters()):
                if prm.grad is not None:
                    torch.distributed.all_reduce(prm.grad)
                    prm.grad /= world
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        run["loss"] += loss.item()
        run["bpp"] += bpp.mean().item()
        run["psnr"] += (10 * torch.log10(255.0**2 / mse.detach().float().clamp(min=1e-6))).mean().item()
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
            qs = list(args.val_qualities)
            val_model = model if ema is None else ema.model_copy(model)
            print(f"val step {step} {validate(val_model, calib, val_images, qs)}", file=log)
            model.train()
        if out_of_time:
            print(f"stopping: --minutes {args.minutes} reached", file=log)
            break
    bar.close()
    print(f"done step={step} seconds={elapsed():.0f}", file=log)
    if world > 1:  # all processes past their last save before any closes its connections:
        torch.distributed.barrier()  # gloo aborts a process whose peer hangs up mid-teardown
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
