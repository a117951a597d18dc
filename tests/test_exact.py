"""The integer networks and the weights file layout, without torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bbcodec.coding import format
from bbcodec.coding import loop as codec
from bbcodec.model import layout as model_io
from bbcodec.model.arith import ACT_MAX, LEAKY_SHIFT, requantise
from bbcodec.model.frozen import FrozenModel, check_exact
from bbcodec.model.stack import Activation, Layer, Stack
from bbcodec.model.weights import Weights

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


def tiny_model(M: int = 4, C: int = 8, skip: bool = False, seed: int = 0,
               kernels: tuple[int, ...] = (3, 1, 1, 1)) -> FrozenModel:
    """A random integer model of the real layout (stack widths C), small enough to run;
    kernels[1:] of 3 make hidden layers that read the neighbours' features."""
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


@pytest.mark.parametrize("skip", [False, True])
def test_a_model_survives_the_weights_layout_and_codes_the_same_file(skip):
    model = tiny_model(skip=skip)
    arrays = model_io.to_arrays(model)
    back = model_io.from_arrays(arrays)
    again = model_io.to_arrays(back)
    assert arrays.keys() == again.keys()
    assert all(arrays[k].dtype == again[k].dtype and np.array_equal(arrays[k], again[k]) for k in arrays)
    assert (back.name, back.family, back.info) == ("tiny", 2 if skip else 1, {"train_steps": 3})
    img = np.random.default_rng(1).integers(0, 256, size=(20, 27, 3), dtype=np.uint8)
    files = []
    for m in (model, back):
        w = Weights(name="tiny", path=Path("tiny"), sha256="ab" * 32, model=m)
        data, rec = codec.encode(img, 3.5, w.model, w.prefix)
        header, payload = format.unpack(data)
        assert np.array_equal(codec.decode(header, payload, w.model), rec)  # the loop round-trips exactly
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
    arrays = _meta(model_io.to_arrays(tiny_model()), **change)
    with pytest.raises(model_io.LayoutError, match=message):
        model_io.from_arrays(arrays)


def test_weights_with_missing_or_unmatched_arrays_are_refused():
    arrays = model_io.to_arrays(tiny_model(skip=True))
    with pytest.raises(model_io.LayoutError, match="missing"):
        model_io.from_arrays({k: v for k, v in arrays.items() if k != "gs.2.W"})
    with pytest.raises(model_io.LayoutError, match="does not match"):
        model_io.from_arrays({k: v for k, v in arrays.items() if k != "gs.3.Wskip"})  # family 2 without it
    with pytest.raises(model_io.LayoutError, match="meta"):
        model_io.from_arrays({**arrays, "meta": np.frombuffer(b"{not json", dtype=np.uint8)})


def test_weights_that_could_leave_exact_integers_are_refused():
    model = tiny_model()
    check_exact(model)  # as built: fine
    model.gs.layers[1].W[0, :] = 2**15 - 1  # 8 x 32767 x 32767 < 2^53: still fine
    check_exact(model)
    model.gs.layers[1].b[0] = 2.0**53
    with pytest.raises(ValueError, match="exceed exact"):
        check_exact(model)
    with pytest.raises(ValueError, match="exceed exact"):
        model_io.from_arrays(model_io.to_arrays(model))


def test_quality_parameters_interpolate_exactly_between_rows():
    model = tiny_model()
    q3 = model.params_at(3 * 256)
    assert np.array_equal(q3.gain, model.gain[2]) and np.array_equal(q3.bias["ga"], model.ga.qbias[2])
    mid = model.params_at(3 * 256 + 64)  # quality 3.25
    assert np.array_equal(mid.gain, model.gain[2] * 0.75 + model.gain[3] * 0.25)
    assert np.array_equal(model.params_at(8 * 256).gain, model.gain[7])
