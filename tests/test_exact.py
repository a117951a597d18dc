"""The integer networks and the weights file layout, without torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_frozen

from bbcodec.coding import format
from bbcodec.coding import loop as codec
from bbcodec.model import blocks
from bbcodec.model import layout as model_io
from bbcodec.model.arith import ACT_MAX, LEAKY_SHIFT, requantise
from bbcodec.model.blocks import BlockContext
from bbcodec.model.frozen import check_exact
from bbcodec.model.stack import Activation

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def test_requantise_rounds_half_to_even_and_clips():
    acc = np.array([5.0, 6.0, 7.0, -5.0, 1e9, -1e9])  # at exponent 1: 2.5, 3, 3.5, -2.5, ...
    assert requantise(acc, 1, 0).tolist() == [2, 3, 4, -2, ACT_MAX, -ACT_MAX]
    assert requantise(np.array([3.0]), 0, 2).tolist() == [12]  # finer scale: exact
    assert requantise(np.array([3.0, 3.0]), np.array([0, 1]), 0).tolist() == [3, 2]  # per channel


def test_leaky_activation_scales_negatives_by_a_power_of_two():
    act = Activation("leaky", fa=0, fh=0)
    out = act(np.array([[-1280.0, -64.0, -192.0, 7.0]]), np.zeros(4, dtype=np.int64))
    assert out.tolist() == [[-10, 0, -2, 7]]  # -64/128 = -0.5 -> -0 (half to even); -1.5 -> -2
    assert 2.0**-LEAKY_SHIFT == 1 / 128


@pytest.mark.parametrize("kind", ["gdn", "igdn"])
def test_integer_gdn_matches_its_real_formula(kind):
    rng = np.random.default_rng(0)
    C, fa, fh, fg = 6, 10, 10, 20
    G = rng.integers(0, 2**12, size=(C, C)).astype(np.float64)
    B = rng.integers(1, 2**30, size=C).astype(np.float64)
    act = Activation(kind, fa, fh, G, B, fg)
    acc = rng.integers(-2**14, 2**14, size=(5, C)).astype(np.float64)
    out = act(acc, np.full(C, fa, dtype=np.int64))
    x = acc * 2.0**-fa
    norm = np.sqrt(B * 2.0**-(fg + 2 * fa) + (x * x) @ (G * 2.0**-fg).T)
    real = x / norm if kind == "gdn" else x * norm
    want = np.clip(np.rint(real * 2.0**fh), -ACT_MAX, ACT_MAX)
    assert np.abs(out - want).max() <= 1  # one rounding apart at most
    assert np.array_equal(out, np.rint(out))


@pytest.mark.parametrize("skip", [False, True])
def test_a_model_survives_the_weights_layout_and_codes_the_same_file(skip):
    model = tiny_frozen(skip=skip)
    arrays = model_io.to_arrays(model)
    back = model_io.from_arrays(arrays)
    again = model_io.to_arrays(back)
    assert arrays.keys() == again.keys()
    assert all(arrays[k].dtype == again[k].dtype and np.array_equal(arrays[k], again[k]) for k in arrays)
    assert (back.name, back.family, back.info) == ("tiny", 2 if skip else 1, {"train_steps": 3})
    img = np.random.default_rng(1).integers(0, 256, size=(20, 27, 3), dtype=np.uint8)
    files = []
    for m in (model, back):
        data, rec = codec.encode(img, 3.5, m, codec.UNNAMED)
        header, payload = format.unpack(data)
        assert np.array_equal(codec.decode(header, payload, m), rec)  # the loop round-trips exactly
        files.append(data)
    assert files[0] == files[1]


@pytest.mark.parametrize("path", sorted(WEIGHTS.glob("*.npz")), ids=lambda p: p.name)
def test_every_shipped_weights_file_is_reproduced_array_for_array(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    again = model_io.to_arrays(model_io.read(str(path)))
    assert sorted(again) == sorted(arrays)
    for k in arrays:
        if k != "meta":
            assert again[k].dtype == arrays[k].dtype and np.array_equal(again[k], arrays[k]), k
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert json.loads(bytes(again["meta"]).decode()) == {"family": 1, **meta}  # the first file had no "family"


def _meta(arrays: dict, **changes) -> dict:
    meta = {**json.loads(bytes(arrays["meta"]).decode()), **changes}
    return {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "not a bbcodec weights file"),
    ({"version": 2}, "unsupported weights version"),  # family 1 with version 2
    ({"family": 9, "version": 9}, "unsupported"),
    ({"max_symbol": 1023}, "max_symbol must be 2047"),
])
def test_weights_with_a_wrong_meta_record_are_refused(change, message):
    arrays = _meta(model_io.to_arrays(tiny_frozen()), **change)
    with pytest.raises(model_io.LayoutError, match=message):
        model_io.from_arrays(arrays)


def test_weights_with_missing_or_unmatched_arrays_are_refused():
    arrays = model_io.to_arrays(tiny_frozen(skip=True))
    with pytest.raises(model_io.LayoutError, match="missing"):
        model_io.from_arrays({k: v for k, v in arrays.items() if k != "gs.2.W"})
    with pytest.raises(model_io.LayoutError, match="does not match"):
        model_io.from_arrays({k: v for k, v in arrays.items() if k != "gs.3.Wskip"})  # family 2 without it
    with pytest.raises(model_io.LayoutError, match="meta"):
        model_io.from_arrays({**arrays, "meta": np.frombuffer(b"{not json", dtype=np.uint8)})


def test_weights_that_could_leave_exact_integers_are_refused():
    model = tiny_frozen()
    check_exact(model)  # as built: fine
    model.gs.layers[1].W[0, :] = 2**15 - 1  # 8 x 32767 x 32767 < 2^53: still fine
    check_exact(model)
    model.gs.layers[1].b[0] = 2.0**53
    with pytest.raises(ValueError, match="exceed exact"):
        check_exact(model)
    with pytest.raises(ValueError, match="exceed exact"):
        model_io.from_arrays(model_io.to_arrays(model))


def test_quality_parameters_interpolate_exactly_between_rows():
    model = tiny_frozen()
    q3 = model.params_at(3 * 256)
    assert np.array_equal(q3.gain, model.gain[2]) and np.array_equal(q3.bias["ga"], model.ga.qbias[2])
    mid = model.params_at(3 * 256 + 64)  # quality 3.25
    assert np.array_equal(mid.gain, model.gain[2] * 0.75 + model.gain[3] * 0.25)
    assert np.array_equal(model.params_at(8 * 256).gain, model.gain[7])


# The fast form of the integer networks against docs/format.md's arithmetic, step by step.

def _inputs(rng, n: int, cin: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    nb = rng.integers(-128, 128, size=(n, 768)).astype(np.float64)
    if name == "he":
        return nb, None
    hi = 128 if name == "ga" else ACT_MAX
    return nb, rng.integers(-hi, hi + 1, size=(n, cin)).astype(np.float64)


@pytest.mark.parametrize("quality_x256", [256, 3 * 256 + 77, 2048])
def test_the_fast_networks_equal_the_reference_arithmetic_with_the_shipped_weights(quality_x256):
    from bbcodec.model import weights as wmod

    rng = np.random.default_rng(quality_x256)
    for path in wmod.available():
        m = wmod.load(path).model
        qp = m.params_at(quality_x256)
        for n in (1, 5, 37):
            for name, st in m.stacks().items():
                nb, cur = _inputs(rng, n, 0 if st.W_cur is None else st.W_cur.shape[1], name)
                want, hidden = st.run_reference_with_hidden(cur, nb, qp.bias[name])
                fast = st.fast.run_with_hidden(cur, m.neighbours(nb, qp).first(name))
                assert np.array_equal(fast[0], want) and np.array_equal(fast[1], hidden)  # group heads read it
                ones = np.concatenate([nb, np.ones((n, 1))], axis=1)
                assert np.array_equal(st.fast.run_with_hidden(cur, m.neighbours(ones, qp).first(name))[0], want)
                given = m.from_products({name: nb @ st.W_nb.T}, qp)  # rdoq's products of many candidates
                assert np.array_equal(st.fast.run_with_hidden(cur, given.first(name))[0], want)


@pytest.mark.parametrize("kernels", [(3, 1, 1, 1), (3, 3, 3, 1), (3, 1, 3, 3)])
def test_the_fast_networks_equal_the_reference_when_activations_saturate(kernels):
    m = tiny_frozen(kernels=kernels, skip=True, seed=5)
    for st in m.stacks().values():  # large weights: accumulators beyond +-ACT_MAX after rescaling
        st.W_nb *= 40
        for layer in st.layers:
            layer.W *= 30
    qp = m.params_at(5 * 256)
    rng = np.random.default_rng(1)
    rows, cols = 4, 6
    ctx_ref, ctx_fast = BlockContext(rows, cols), BlockContext(rows, cols, rolling=True)
    saturated = 0
    for r, c in blocks.wavefronts(rows, cols):
        for name, st in m.stacks().items():
            nb, cur = _inputs(rng, len(r), 0 if st.W_cur is None else st.W_cur.shape[1], name)
            want, hidden = st.run_reference_with_hidden(cur, nb, qp.bias[name], ctx_ref.at(r, c))
            out, fast_hidden = st.fast.run_with_hidden(cur, m.neighbours(nb, qp).first(name), ctx_fast.chunk(r, c))
            assert np.array_equal(out, want) and np.array_equal(fast_hidden, hidden)
            saturated += int((np.abs(st.acts[0](nb @ st.W_nb.T + qp.bias[name], st.e0)) == ACT_MAX).sum())
    assert saturated > 0
