"""Encoder effort levels: every file decodes with the unchanged decoder, higher efforts
buy a lower rate-distortion cost, and bad efforts are refused before any work."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import KODAK, coded, random_image
from PIL import Image

import bbcodec
from bbcodec import ratecontrol
from bbcodec.cli import cli
from bbcodec.coding import effort, format, rdoq
from bbcodec.coding import loop as codec
from bbcodec.model import quality as Q

HIGHER = list(range(effort.MIN + 1, effort.MAX + 1))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96x128 crop of a real photo (busy and smooth parts), or a smooth image without Kodak."""
    path = KODAK / "kodim05.png"
    if not path.exists():
        return random_image(96, 128, seed=5)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))[200:296, 300:428].copy()


@pytest.mark.parametrize("level", HIGHER)
@pytest.mark.parametrize("quality", [2, 5.5])
def test_files_of_every_effort_decode_with_the_unchanged_decoder(photo, weights, level, quality):
    data, rec = codec.encode(photo, quality, weights.model, weights.prefix, effort=level)
    plain, _ = codec.encode(photo, quality, weights.model, weights.prefix)
    assert data != plain  # the effort changed the symbols ...
    assert format.unpack(data)[0].quality_x256 == format.unpack(plain)[0].quality_x256
    assert np.array_equal(codec.decode(*format.unpack(data), weights.model), rec)  # ... and the decoder follows


def test_effort_1_is_the_plain_encoder(photo, weights):
    assert codec.encode(photo, 3, weights.model, weights.prefix, effort=1)[0] == codec.encode(photo, 3, weights.model, weights.prefix)[0]


def _cost(img: np.ndarray, data: bytes, rec: np.ndarray, quality: float) -> float:
    """What the effort levels minimise, per pixel: bpp + lambda x MSE (lambda as they weigh it)."""
    lam = effort.LEVELS[effort.MAX].lam * effort.rd_lambda(Q.to_x256(quality)) / 64
    mse = float(np.mean((rec.astype(np.float64) - img) ** 2))
    return 8 * len(data) / (img.shape[0] * img.shape[1]) + lam * mse


@pytest.mark.parametrize("quality", [2, 4, 6])
def test_the_highest_effort_lowers_the_rate_distortion_cost(photo, psnr_weights, quality):
    """The efforts' choices weigh rate against MSE: what the PSNR tuning was trained on (the
    visual tuning's files get smaller and lose SSIMULACRA2: docs/performance.md)."""
    w = psnr_weights
    base = _cost(photo, *codec.encode(photo, quality, w.model, w.prefix), quality)
    best = _cost(photo, *codec.encode(photo, quality, w.model, w.prefix, effort=effort.MAX), quality)
    assert best < base


def test_grayscale_odd_sizes_and_the_family_2_weights(family2_weights):
    gray = random_image(37, 53, seed=3)[:, :, 1].copy()
    data, rec = codec.encode(gray, 3, family2_weights.model, family2_weights.prefix, effort=effort.MAX)
    out = codec.decode(*format.unpack(data), family2_weights.model)
    assert out.shape == (37, 53) and np.array_equal(out, rec)


def test_bits_table_is_what_the_range_coder_spends(weights):
    rng = np.random.default_rng(0)
    table = weights.model.scale_table
    idx = rng.integers(0, len(table), 20000)
    sym = np.rint(rng.normal(0, 1, 20000) * table[idx]).clip(-300, 300)
    bits = rdoq.bits_table(table)[idx, np.abs(sym).astype(np.int64)].sum()
    spent = 8 * len(coded(sym.astype(np.int32), table[idx], weights.model.max_symbol))
    assert abs(spent - bits) < 0.01 * bits + 64


def test_rd_lambda_is_geometric_between_trained_qualities():
    assert effort.rd_lambda(Q.to_x256(4)) == pytest.approx(Q.LAMBDAS[3])
    assert effort.rd_lambda(Q.to_x256(4.5)) == pytest.approx(math.sqrt(Q.LAMBDAS[3] * Q.LAMBDAS[4]))


@pytest.mark.parametrize("bad", [0, effort.MAX + 1, 2.5, "3", True, None])
def test_bad_efforts_are_refused_everywhere(photo, weights, bad):
    with pytest.raises(effort.EffortError):
        effort.check(bad)
    with pytest.raises(bbcodec.Error):
        bbcodec.encode(photo, 4, effort=bad)
    with pytest.raises(ValueError):
        Image.fromarray(photo).save(io.BytesIO(), format="BBC", effort=bad)


def test_neighbour_reading_hidden_layers_are_refused_at_higher_efforts(weights):
    m = weights.model
    wider = dataclasses.replace(m, config={**m.config, "kernels": [3, 3, 1, 1]})
    with pytest.raises(effort.EffortError):
        rdoq.check_model(wider)


def test_rate_target_at_a_higher_effort(photo, weights):
    pixels = photo.shape[0] * photo.shape[1]
    target = 8 * len(codec.encode(photo, 4, weights.model, weights.prefix)[0]) / pixels
    r = ratecontrol.encode_to_target(photo, weights, target_bpp=target, effort=2)
    assert r.met and 0.9 * target <= r.bpp <= target
    assert np.array_equal(codec.decode(*format.unpack(r.data), weights.model), r.reconstruction)
    plain = ratecontrol.encode_to_target(photo, weights, target_bpp=target)
    assert r.probes <= plain.probes + 10


def test_cli_api_and_pillow_take_an_effort(photo, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    runner = CliRunner()
    res = runner.invoke(cli, ["encode", str(src), str(tmp_path / "a.bbc"), "-q", "3", "-e", "2"])
    assert res.exit_code == 0, res.output
    assert "effort 2" in res.output
    data = (tmp_path / "a.bbc").read_bytes()
    assert data == bbcodec.encode(photo, 3, effort=2)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="BBC", quality=3, effort=2)
    assert buf.getvalue() == data
    assert np.array_equal(np.asarray(bbcodec.decode(data)), np.asarray(Image.open(io.BytesIO(data))))
    (tmp_path / "dir").mkdir()
    Image.fromarray(photo[:40, :56]).save(tmp_path / "dir" / "b.png")
    res = runner.invoke(cli, ["encode", str(tmp_path / "dir"), str(tmp_path / "out"), "-e", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "b.bbc").read_bytes() == bbcodec.encode(photo[:40, :56], effort=2)


@pytest.mark.parametrize("args", [["-e", "0"], ["-e", str(effort.MAX + 1)], ["-e", "x"]])
def test_cli_refuses_bad_efforts_with_a_usage_error(photo, tmp_path, args):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    res = CliRunner().invoke(cli, ["encode", str(src), str(tmp_path / "a.bbc"), *args])
    assert res.exit_code == 2 and not (tmp_path / "a.bbc").exists()
    assert "effort" in res.output


def test_shared_first_layer_products_and_head_products_give_the_same_integers(photo, weights):
    """rdoq.py computes the networks' neighbour products in parts and the heads' products
    once: the integers must be those of the plain calls."""
    from bbcodec.model import blocks
    from bbcodec.model.frozen import Scales

    m = weights.model
    qp = m.params_at(Q.to_x256(3.5))
    grid = blocks.block_grid(blocks.pad_to_blocks(photo))
    r, c = np.array([3, 4, 5]), np.array([6, 4, 2])
    canvas = blocks.new_canvas(*blocks.grid_shape(*photo.shape[:2]))
    canvas[1:, 1:-1] = blocks.to_blocks(blocks.pad_to_blocks(photo))
    nb = blocks.gather_neighbours(canvas, r, c)
    blk = blocks.block_rows(grid, r, c)
    slot = slice(192, 384)
    other = nb.copy()
    other[:, slot] = 0
    parts = {name: other @ st.W_nb.T + nb[:, slot] @ st.W_nb[:, slot].T for name, st in m.stacks().items()}
    plain = m.neighbours(nb, qp)
    mean, scales = m.entropy_params(plain, qp)
    mean2, scales2 = m.entropy_params(m.from_products(parts, qp), qp)
    assert np.array_equal(mean, mean2) and np.array_equal(scales.log_scale, scales2.log_scale)
    y = m.analyse(blk, plain, qp)
    assert np.array_equal(y, m.analyse(blk, m.from_products(parts, qp), qp))
    s = np.rint(y - mean)
    assert np.array_equal(m.synthesise(s, mean, plain, qp), m.synthesise(s, mean, m.from_products(parts, qp), qp))
    shared = Scales(scales.log_scale, scales.hidden, m.groups.products(scales.hidden)).rows(np.array([2, 0, 2]))
    plain = Scales(scales.log_scale[[2, 0, 2]], scales.hidden[[2, 0, 2]])
    for (cols_a, idx_a), (cols_b, idx_b) in zip(m.scale_groups(shared, s[[2, 0, 2]], qp),
                                                m.scale_groups(plain, s[[2, 0, 2]], qp), strict=True):
        assert np.array_equal(cols_a, cols_b) and np.array_equal(idx_a, idx_b)
