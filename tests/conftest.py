"""Shared fixtures: the shipped weights and small real images (crops of Kodak)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from bbcodec.model.frozen import FrozenModel

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def weights():
    from bbcodec.model import weights as w

    return w.default()


@pytest.fixture(scope="session")
def psnr_weights():
    """The first shipped weights tuned for PSNR (RGB MSE, the objective of the encoder's
    rate-distortion choices)."""
    from bbcodec.model import weights as w

    return w.default("psnr")


@pytest.fixture(scope="session")
def family2_weights():
    """The shipped family-2 weights (the default before network family 3)."""
    from bbcodec.model import weights as w

    return w.load(Path(__file__).resolve().parents[1] / "weights" / "bb8-n192m128s-738aa1b7.npz")


@pytest.fixture(scope="session")
def kodak_crop() -> np.ndarray:
    """A 48x64 crop of kodim23 (a real photo), or a smooth synthetic image without Kodak."""
    path = KODAK / "kodim23.png"
    if path.exists():
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[200:248, 300:364].copy()
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)


GiB = 1 << 30


def run_cli(*args: str, stdin=None, stdout=subprocess.PIPE, env: dict | None = None, timeout: float = 120,  # noqa: ANN001
            umask: int | None = None, close_stdout: bool = False, memory: int | None = None,
            **kw) -> subprocess.CompletedProcess:
    """The CLI in a real process, as a user runs it (stdin: bytes or a file). memory caps
    its address space, so that a read without bound ends in a MemoryError rather than in
    swapping the machine."""
    def setup() -> None:
        import resource

        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if umask is not None:
            os.umask(umask)
        if close_stdout:
            os.close(1)

    feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run([sys.executable, "-m", "bbcodec.cli", *args], stdout=stdout, stderr=subprocess.PIPE,
                          timeout=timeout, preexec_fn=setup, env={**os.environ, **(env or {})}, **feed, **kw)


def one_error_line(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line a failed command printed (exit code `code`, no traceback); a failed
    operation's (code 1) says `bbcodec: error:`."""
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    if code == 1:
        assert lines[0].startswith("bbcodec: error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    """A small PNG (30x21)."""
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray(random_image(21, 30, seed=7)).save(path)
    return path


@pytest.fixture(scope="module")
def bbc(png: Path) -> Path:
    """png coded at quality 3 by the CLI."""
    out = png.with_suffix(".bbc")
    proc = run_cli("encode", str(png), str(out), "-q", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random image (noise would be unrealistic for a learned codec)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(max(1, h // 4 + 1), max(1, w // 4 + 1), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(img)


def raster(rows: int, cols: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One block at a time, row by row: a causal order other than the wavefronts."""
    for r in range(rows):
        for c in range(cols):
            yield np.array([r]), np.array([c])


def one_at_a_time(rows: int, cols: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One block at a time in wavefront (bitstream) order."""
    from bbcodec.model import blocks

    for r, c in blocks.wavefronts(rows, cols):
        for i in range(len(r)):
            yield r[i : i + 1], c[i : i + 1]


def coded(symbols: np.ndarray, stds: np.ndarray, max_symbol: int = 2047) -> bytes:
    """Symbols range-coded in one call (entropy.SymbolEncoder)."""
    from bbcodec.coding import entropy

    enc = entropy.SymbolEncoder(max_symbol)
    enc.encode(symbols, stds)
    return enc.payload()


def run(stack, cur, nb, bias, ctx=None) -> np.ndarray:  # noqa: ANN001
    """An integer stack's outputs (docs/format.md 5.1, step by step)."""
    return stack.run_reference_with_hidden(cur, nb, bias, ctx)[0]


def tiny_model(seed: int = 0, **sizes):
    """A small float model (N=16, M=8 unless sizes say otherwise), seeded (needs torch)."""
    import torch

    from bbcodec.nn.networks import BlockCodecNet, ModelConfig

    torch.manual_seed(seed)
    return BlockCodecNet(ModelConfig(**{"N": 16, "M": 8, **sizes}))


def tiny_frozen(M: int = 4, C: int = 8, skip: bool = False, seed: int = 0,
               kernels: tuple[int, ...] = (3, 1, 1, 1)) -> FrozenModel:
    """A random integer model of the real layout (stack widths C), small enough to run;
    kernels[1:] of 3 make hidden layers that read the neighbours' features."""
    from bbcodec.model import layout as model_io
    from bbcodec.model.frozen import FrozenModel
    from bbcodec.model.stack import Activation, Layer, Stack

    rng = np.random.default_rng(seed)

    def ints(*shape: int, hi: int = 64) -> np.ndarray:
        return rng.integers(-hi, hi + 1, size=shape).astype(np.float64)

    def stack(name: str, cin: int, out: int) -> Stack:
        kind = model_io.ACTIVATIONS[name]
        acts, layers = [], []
        for i in range(3):
            c_out = out if i == 2 else C
            if kind == "leaky":
                acts.append(Activation(kind, 8, 8))
            else:
                acts.append(Activation(kind, 8, 8, rng.integers(0, 64, size=(C, C)).astype(np.float64),
                                       rng.integers(1, 2**20, size=C).astype(np.float64), 10))
            k = kernels[i + 1]
            layers.append(Layer(ints(c_out, C * (5 if k == 3 else 1)), ints(c_out, hi=2**10),
                                np.full(c_out, 14, dtype=np.int64), k))
        return Stack(W_nb=ints(C, 768, hi=8), W_cur=ints(C, cin, hi=8) if cin else None, qbias=ints(8, C, hi=2**10),
                     e0=np.full(C, 10, dtype=np.int64), f_cur=7 if name == "ga" else (6 if cin else 0), acts=acts,
                     layers=layers, W_skip=ints(out, cin, hi=4) if skip and cin else None)

    table = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))
    gain = np.exp(np.linspace(-1.0, 1.5, 8))[:, None].repeat(M, 1)
    return FrozenModel(name="tiny", family=model_io.family_of(skip), ga=stack("ga", 192, M),
                       gs=stack("gs", M, 192), he=stack("he", 0, 2 * M), gain=gain, inv_gain=1 / gain,
                       log_gain=np.log(gain), scale_table=table, scale_bounds=0.5 * (np.log(table[:-1]) + np.log(table[1:])),
                       f_latent=6, config={"N": C, "M": M, "kernels": list(kernels), "skip": skip}, info={"train_steps": 3})


TINY_TRAIN_ARGS = ["--N", "16", "--M", "8", "--crop", "64", "--batch", "2", "--threads", "1"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 4-step training run of a tiny model on 3 random images, stopped after 2 steps and
    resumed, validated with the real codec at step 4: (root with data/, run folder)."""
    pytest.importorskip("torch")
    from bbcodec.train import train

    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(random_image(80, 96, seed=i)).save(data / f"im{i}.png")
    out = root / "run"
    val = root / "val"
    val.mkdir()
    Image.fromarray(random_image(24, 32, seed=7)).save(val / "v.png")
    args = ["--data", str(data), "--out", str(out), *TINY_TRAIN_ARGS,
            "--ckpt-every", "2", "--acl", "1", "--val", str(val), "--val-every", "4"]
    train.main([*args, "--steps", "2"])
    train.main([*args, "--steps", "4"])  # resumes from the step-2 checkpoint
    return root, out


TIFF_ASCII, TIFF_SHORT, TIFF_LONG, TIFF_RATIONAL = 2, 3, 4, 5  # TIFF field types


def tiff_ifd(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF block of one IFD: entries are (tag, type, count, value bytes)."""
    n = len(entries)
    start = 8 + 2 + 12 * n + 4
    body, extra = b"", b""
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, typ, count, start + len(extra))
            extra += value
    return b"II*\0" + struct.pack("<IH", 8, n) + body + struct.pack("<I", 0) + extra


def tiff_file(path: Path, strip_offset_type: int = TIFF_LONG, samples: int = 1) -> Path:
    """An 8x6 gray TIFF built by hand, its StripOffsets of the given field type and its
    SamplesPerPixel as given (damaged on purpose by the tests that ask)."""
    def short(tag: int, v: int) -> tuple[int, int, int, bytes]:
        return tag, TIFF_SHORT, 1, struct.pack("<H", v)

    offset = struct.pack("<II", 200, 1) if strip_offset_type == TIFF_RATIONAL else struct.pack("<I", 200)
    ifd = tiff_ifd([short(256, 8), short(257, 6), short(258, 8), short(259, 1), short(262, 1),
                    (273, strip_offset_type, 1, offset), short(277, samples), short(278, 6),
                    (279, TIFF_LONG, 1, struct.pack("<I", 48))])
    path.write_bytes(ifd.ljust(200, b"\0") + bytes(range(48)))
    return path
