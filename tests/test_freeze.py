"""Freezing float models to the integer networks of a weights file (bbcodec/train/freeze.py):
the integer networks agree with the float ones, and the files code exactly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_image, run, tiny_model

torch = pytest.importorskip("torch")

from bbcodec.coding import format  # noqa: E402
from bbcodec.coding import loop as codec  # noqa: E402
from bbcodec.model import blocks, weights  # noqa: E402
from bbcodec.model import layout as model_io  # noqa: E402
from bbcodec.nn.networks import space_to_depth, to_net  # noqa: E402
from bbcodec.train import freeze  # noqa: E402


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """The tiny model, the image it was calibrated on, and its frozen weights file."""
    model = tiny_model()
    img = random_image(32, 40, seed=9)
    crops = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()
    path = freeze.write_weights(freeze.freeze(model, crops, "tiny", {}), tmp_path_factory.mktemp("w"))
    return model, img, path


def test_frozen_integer_model_codes_like_the_float_model(tiny_weights):
    model, img, path = tiny_weights
    w = weights.load(path)
    data, rec = codec.encode(img, 5, w.model, w.prefix)
    header, payload = format.unpack(data)
    assert np.array_equal(codec.decode(header, payload, w.model), rec)
    # The integer decoder matches the float network run in parallel from the same
    # neighbours only approximately (rounding); compare through the closed-loop
    # reconstruction's error, which must be close to the float model's open-loop one.
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    float_rec = tiny_model().double().reconstruct(x, x, torch.tensor([5.0], dtype=torch.float64))
    err_float = float((float_rec[0].permute(1, 2, 0).numpy() - img).std())
    err_int = float((rec.astype(float) - img).std())
    assert err_int < 2 * err_float + 2


def test_weights_with_a_wrong_hash_are_refused(tiny_weights, tmp_path):
    _, _, src = tiny_weights
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[-10] ^= 1
    bad.write_bytes(bytes(data))
    weights.load.cache_clear()
    with pytest.raises(weights.WeightsError):
        weights.load(bad)


def _open_loop(img: np.ndarray):
    """All blocks of img with their neighbours from the source: (blocks, neighbours, rows, cols, r, c)."""
    src = blocks.to_blocks(img)
    rows, cols = src.shape[:2]
    canvas = blocks.new_canvas(rows, cols)
    canvas[1:, 1:-1] = src
    r, c = (a.ravel() for a in np.mgrid[0:rows, 0:cols])
    return src, blocks.gather_neighbours(canvas, r, c), rows, cols, r, c


def test_integer_networks_match_the_float_networks(tmp_path):
    """Same neighbours and inputs in, float vs frozen-integer outputs agree closely."""
    model = tiny_model().double().eval()
    img = random_image(32, 48, seed=4)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    fm = weights.load(freeze.write_weights(freeze.freeze(model, x, "tiny2", {}), tmp_path)).model
    src, nb, rows, cols, r, c = _open_loop(img)
    q = torch.tensor([3.0], dtype=torch.float64)
    qp = fm.params_at(3 * 256)
    xs = space_to_depth(to_net(x))
    with torch.no_grad():
        ref_he = model.h_e(None, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
        ref_ga = model.g_a(xs, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
    got_he = run(fm.he, None, nb, qp.bias["he"])
    got_ga = run(fm.ga, src[r, c].astype(np.float64), nb, qp.bias["ga"])
    for ref, got in ((ref_he, got_he), (ref_ga, got_ga)):
        assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max() + 1e-4


def test_weights_that_could_leave_the_exact_range_are_refused(tiny_weights):
    _, _, path = tiny_weights
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    model_io.from_arrays(arrays)  # as frozen: fine
    arrays["gs.2.b"] = arrays["gs.2.b"].copy()
    arrays["gs.2.b"][0] = 2**53
    with pytest.raises(ValueError, match="exact"):
        model_io.from_arrays(arrays)


def test_high_rate_kernels_match_the_float_network_and_code_exactly(tmp_path):
    """Kernels (3,3,1,1): a mask-B layer on hidden features, as the paper's high-rate model."""
    from bbcodec.model.blocks import BlockContext

    model = tiny_model(seed=3, kernels=(3, 3, 1, 1)).double().eval()
    with torch.no_grad():  # give the 3x3 layers' off-centre taps real weight
        for st in (model.g_a, model.h_e):
            st.convs[0].weight.mul_(3.0)
    img = random_image(40, 56, seed=5)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    w = weights.load(freeze.write_weights(freeze.freeze(model, x, "hr", {}), tmp_path))
    fm = w.model
    # Open loop, block by block in wavefront order, against the float convolutions.
    src = blocks.to_blocks(img)
    rows, cols = src.shape[:2]
    canvas = blocks.new_canvas(rows, cols)
    canvas[1:, 1:-1] = src
    ctx = BlockContext(rows, cols)
    qp = fm.params_at(6 * 256)
    got_he = np.zeros((rows, cols, 16))
    got_ga = np.zeros((rows, cols, 8))
    for r, c in blocks.wavefronts(rows, cols):
        nb = blocks.gather_neighbours(canvas, r, c)
        ctx.at(r, c)
        got_he[r, c] = run(fm.he, None, nb, qp.bias["he"], ctx)
        got_ga[r, c] = run(fm.ga, src[r, c].astype(np.float64), nb, qp.bias["ga"], ctx)
    xs = space_to_depth(to_net(x))
    q = torch.tensor([6.0], dtype=torch.float64)
    with torch.no_grad():
        ref_he = model.h_e(None, xs, q)[0].permute(1, 2, 0).numpy()
        ref_ga = model.g_a(xs, xs, q)[0].permute(1, 2, 0).numpy()
    for ref, got in ((ref_he, got_he), (ref_ga, got_ga)):
        assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max() + 1e-4
    # Closed loop: the decoder reproduces the image.
    data, rec = codec.encode(img, 6, w.model, w.prefix)
    header, payload = format.unpack(data)
    assert np.array_equal(codec.decode(header, payload, w.model), rec)


def test_linear_shortcuts_freeze_match_the_float_network_and_code_exactly(tmp_path):
    """--skip: the shortcut adds into the last integer accumulator; files name family 2."""
    model = tiny_model(seed=4, skip=True).double().eval()
    with torch.no_grad():  # a trained shortcut carries real weight
        model.g_a.skip.weight.normal_(0.0, 0.3)
        model.g_s.skip.weight.normal_(0.0, 0.3)
    img = random_image(40, 56, seed=6)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    w = weights.load(freeze.write_weights(freeze.freeze(model, x, "sk", {}), tmp_path))
    fm = w.model
    assert w.family_id == 2 and fm.ga.W_skip is not None and fm.gs.W_skip is not None
    src, nb, rows, cols, r, c = _open_loop(img)
    q = torch.tensor([6.0], dtype=torch.float64)
    qp = fm.params_at(6 * 256)
    xs = space_to_depth(to_net(x))
    lat = np.clip(np.rint(np.random.default_rng(0).normal(0, 2.0**fm.f_latent, (rows * cols, 8))), -2**15 + 1, 2**15 - 1)
    lat_t = torch.from_numpy(np.ldexp(lat, -fm.f_latent).T.reshape(1, 8, rows, cols).copy())
    with torch.no_grad():
        ref_ga = model.g_a(xs, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
        ref_gs = model.g_s(lat_t, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
    got_ga = run(fm.ga, src[r, c].astype(np.float64), nb, qp.bias["ga"])
    got_gs = run(fm.gs, lat, nb, qp.bias["gs"])
    for ref, got in ((ref_ga, got_ga), (ref_gs, got_gs)):
        assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max() + 1e-4
    data, rec = codec.encode(img, 6, w.model, w.prefix)
    header, payload = format.unpack(data)
    assert header.model_id == 2
    assert np.array_equal(codec.decode(header, payload, w.model), rec)
    # A file without shortcuts claiming family 2 (or the reverse) is refused.
    with np.load(w.path) as z:
        arrays = {k: z[k] for k in z.files if k != "gs.3.Wskip"}
    with pytest.raises(ValueError, match="family"):
        model_io.from_arrays(arrays)
