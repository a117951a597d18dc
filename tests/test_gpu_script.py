"""scripts/gpu_train.sh, the GPU machine's training recipe, run here on the CPU: a run
started in the background outlives the command that started it, `wait` reports whether
it ended, `freeze` brings back weights that load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from bbcodec.coding import loop as codec
from bbcodec.model import weights

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_train.sh"


def _run(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_start_wait_freeze_in_the_background(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # freeze calibrates on 256x256 crops
        Image.fromarray(rng.integers(0, 256, (260, 264, 3), dtype=np.uint8)).save(data / f"photo_{i}.png")
    env = {**os.environ, "PYTHON": sys.executable, "BBCODEC_DATA": str(data), "BBCODEC_NAME": "gpu-test",
           "BBCODEC_INIT": str(next(ROOT.glob("weights/bb8-n192m128s-*.npz"))), "OPENBLAS_NUM_THREADS": "1"}
    run = tmp_path / "run"
    long = _run("start", str(run), "--steps", "100000", "--batch", "1", "--crop", "64", "--threads", "1", env=env)
    assert long.returncode == 0, long.stderr
    try:
        assert _run("wait", str(run), "1", env=env).returncode == 1  # still training
    finally:
        os.killpg(int((run / "pid").read_text()), 15)  # its own session and group (setsid)
    assert _run("wait", str(run), "60", env=env).returncode == 0  # stopped
    short = tmp_path / "short"
    assert _run("start", str(short), "--steps", "3", "--batch", "1", "--crop", "64", "--threads", "1",
                "--ckpt-every", "1", env=env).returncode == 0
    done = _run("wait", str(short), "240", env=env)
    assert done.returncode == 0 and "done step=3" in done.stdout
    out = tmp_path / "out"
    frozen = _run("freeze", str(short), str(out), env=env)
    assert frozen.returncode == 0, frozen.stderr
    (npz,) = out.glob("gpu-test-*.npz")
    assert (out / "ema.pt").exists() and (out / "train.log").exists()
    w = weights.from_file(npz)
    img = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    data_bytes, rec = codec.encode(img, 4, w.model, w.prefix, threads=1)
    assert rec.shape == img.shape and len(data_bytes) > 0


def test_usage_is_one_line_and_exit_1(tmp_path):
    r = _run(env={**os.environ})
    assert r.returncode == 1 and "usage: scripts/gpu_train.sh" in r.stderr and r.stderr.count("\n") == 1
    r = _run("wait", env={**os.environ})
    assert r.returncode == 1 and "wait RUN SECONDS" in r.stderr
