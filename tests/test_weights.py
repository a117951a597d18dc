"""Weights are found through SHA256SUMS and verified on every load."""

from __future__ import annotations

import shutil

import pytest

from bbcodec.model import weights as wmod


def test_default_weights_are_registered_and_verified(weights):
    sums = weights.path.parent / "SHA256SUMS"
    assert sums.exists() and weights.sha256 in sums.read_text()
    assert weights.prefix == bytes.fromhex(weights.sha256[:16])


def test_a_file_not_matching_its_registered_hash_is_refused(weights, tmp_path):
    copy = tmp_path / weights.path.name
    shutil.copy(weights.path, copy)
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {copy.name}\n")
    wmod.load.cache_clear()
    with pytest.raises(wmod.WeightsError, match="corrupt"):
        wmod.load(copy)


def _weights_with_meta(src, folder, **change):
    """A copy of the shipped weights with meta fields changed, registered as the default
    of folder (named and listed by its own hash)."""
    import hashlib
    import io
    import json

    import numpy as np

    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta.update(change)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    path = folder / f"bad-{digest[:8]}.npz"
    path.write_bytes(buf.getvalue())
    (folder / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    return path


@pytest.mark.parametrize("change", [{"family": [1]}, {"family": {"a": 1}}, {"version": [2], "family": 2},
                                    {"max_symbol": [2047]}])
def test_malformed_weights_metadata_is_a_weights_error(weights, tmp_path, change):
    path = _weights_with_meta(weights.path, tmp_path, **change)
    wmod.load.cache_clear()
    with pytest.raises(wmod.WeightsError):
        wmod.load(path)


def test_malformed_weights_give_one_line_and_exit_1(weights, tmp_path):
    """Was exit 70 (TypeError: unhashable type) for a family that is a list."""
    import os
    import subprocess
    import sys

    from conftest import random_image
    from PIL import Image

    _weights_with_meta(weights.path, tmp_path, family=[1])
    png = tmp_path / "in.png"
    Image.fromarray(random_image(8, 8)).save(png)
    proc = subprocess.run([sys.executable, "-m", "bbcodec.cli", "encode", str(png), str(tmp_path / "o.bbc")],
                          capture_output=True, timeout=120, env={**os.environ, "BBCODEC_WEIGHTS": str(tmp_path)})
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"bbcodec: error: weights {tmp_path / 'bad-'}") and "unsupported" in lines[0]
