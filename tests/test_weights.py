"""Weights are found through SHA256SUMS and verified on every load."""

from __future__ import annotations

import shutil

import pytest

from bbcodec import weights as wmod


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
