"""Round trips through the real coding loop with the shipped weights."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_image

from bbcodec.coding import format
from bbcodec.coding import loop as codec


def roundtrip(img, weights, quality=4.0):
    data, rec = codec.encode(img, quality, weights.model, weights.prefix)
    header, payload = format.unpack(data)
    out = codec.decode(header, payload, weights.model)
    return data, rec, out


@pytest.mark.parametrize(("h", "w"), [(1, 1), (9, 7), (17, 33), (8, 8), (3, 70)])
def test_odd_sizes_decode_to_the_encoders_reconstruction(h, w, weights):
    img = random_image(h, w, seed=h * w)
    data, rec, out = roundtrip(img, weights)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, rec)


@pytest.mark.parametrize("quality", [1, 4, 8, 2.5])
def test_kodak_crop_round_trip_is_bit_exact(quality, kodak_crop, weights):
    data, rec, out = roundtrip(kodak_crop, weights, quality)
    assert np.array_equal(out, rec)
    mse = np.mean((kodak_crop.astype(float) - out) ** 2)
    assert 10 * np.log10(255**2 / mse) > 20  # real compression, not noise


def test_higher_quality_costs_more_bits_and_gives_less_error(kodak_crop, weights):
    sizes, errors = [], []
    for q in (1, 4, 8):
        data, rec = codec.encode(kodak_crop, q, weights.model, weights.prefix)
        sizes.append(len(data))
        errors.append(np.mean((kodak_crop.astype(float) - rec) ** 2))
    assert sizes[0] < sizes[1] < sizes[2]
    assert errors[0] > errors[1] > errors[2]


def test_encoding_twice_gives_identical_bytes(kodak_crop, weights):
    assert codec.encode(kodak_crop, 4, weights.model, weights.prefix)[0] == codec.encode(kodak_crop, 4, weights.model, weights.prefix)[0]


# Settings that stand in for other machines: BLAS threads, BLAS kernels for an old SSE3
# CPU instead of AVX-512, numpy's ufuncs without AVX/AVX-512, and the knobs that change
# torch's float results here (../shared/notes); the codec does not use torch, so those
# must change nothing either.
OTHER_MACHINES = {
    "2 BLAS threads": {"OPENBLAS_NUM_THREADS": "2"},
    "SSE3 BLAS kernels": {"OPENBLAS_CORETYPE": "Prescott"},
    "numpy without AVX": {"NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX2 FMA3 F16C AVX"},
    "torch/oneDNN/MKL knobs, 1 thread": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                                         "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"},
}

ELSEWHERE = """
import sys, hashlib, numpy as np
from bbcodec.coding import format, loop as codec
from bbcodec.model import weights
w = weights.default()
data, _ = codec.encode(np.load(sys.argv[1]), 4, w.model, w.prefix)
img = codec.decode(*format.unpack(open(sys.argv[2], "rb").read()), w.model)
sys.stdout.write(hashlib.sha256(data).hexdigest() + " " + hashlib.sha256(img.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("machine", list(OTHER_MACHINES))
def test_files_are_identical_and_decode_identically_on_other_machines(machine, kodak_crop, weights, tmp_path):
    import hashlib

    src, bbc = tmp_path / "in.npy", tmp_path / "here.bbc"
    np.save(src, kodak_crop)
    here, rec = codec.encode(kodak_crop, 4, weights.model, weights.prefix)
    bbc.write_bytes(here)
    env = {**os.environ, **OTHER_MACHINES[machine]}
    out = subprocess.run([sys.executable, "-c", ELSEWHERE, str(src), str(bbc)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [hashlib.sha256(here).hexdigest(), hashlib.sha256(rec.tobytes()).hexdigest()]


def test_a_corrupt_payload_never_decodes_to_a_wrong_image(kodak_crop, weights):
    """Past the CRC (bypassed here), the image digest still catches corruption."""
    data, rec = codec.encode(kodak_crop, 4, weights.model, weights.prefix)
    header, payload = format.unpack(data)
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(20):
        bad = bytearray(payload)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        try:
            out = codec.decode(header, bytes(bad), weights.model)
        except codec.DecodeError:
            failures += 1
        else:  # a flip in the coder's slack bits may leave every symbol intact
            assert np.array_equal(out, rec)
    assert failures >= 15


def test_quality_outside_range_is_refused(weights):
    with pytest.raises(ValueError):
        codec.encode(random_image(8, 8), 9, weights.model, weights.prefix)


def test_encoding_holds_no_whole_image_float64_copies(weights):
    """Peak memory of an encode, per pixel (tracemalloc sees numpy's allocations): was 77
    bytes (whole-image int64 scale indices, float64 stds and means for the coder, an int16
    copy of the image); now the int16 canvases, the image and its reconstruction, and
    (family 3) the post-filter's strip buffers, about 1 MB whatever the image: hence an
    image large enough for them to count little."""
    import tracemalloc

    img = random_image(512, 768, seed=4)
    codec.encode(img[:8, :8], 4, weights.model, weights.prefix)  # warm caches (quality params, tables)
    tracemalloc.start()
    try:
        codec.encode(img, 4, weights.model, weights.prefix)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / img[..., 0].size < 24


@pytest.mark.parametrize("which", ["default", "family2"])
def test_encoding_memory_grows_with_the_width_not_the_area(which, weights, family2_weights, monkeypatch):
    """Peak memory of an encode besides its output image (3 bytes a pixel, twice with a
    post-loop filter: its input and its output): the same for
    a tall image as for one 8 times shorter (tracemalloc sees numpy's allocations). The
    default (family-3) weights' post-loop filter runs in strips of STRIP_CELLS cells, a
    fixed amount whatever the height: made small here, so that both images take several."""
    import tracemalloc

    from bbcodec.model import filter as postfilter

    weights = weights if which == "default" else family2_weights
    images = 1 if weights.model.postfilter is None else 2  # the loop's output, and the filtered copy
    monkeypatch.setattr(postfilter, "STRIP_CELLS", 16)  # one cell row at a time

    def extra(h: int, w: int) -> int:
        img = random_image(h, w, seed=4)
        codec.encode(img[:8, :8], 4, weights.model, weights.prefix, threads=1)  # warm caches (quality params, tables)
        tracemalloc.start()
        try:
            codec.encode(img, 4, weights.model, weights.prefix, threads=1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak - images * 3 * h * w

    short, tall = extra(64, 96), extra(512, 96)
    assert tall < 1.25 * short + 50_000, (short, tall)
