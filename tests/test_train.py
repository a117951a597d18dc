"""Training and freezing end to end on a tiny model (needs the [train] extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

torch = pytest.importorskip("torch")

from bbcodec import codec, format, weights  # noqa: E402
from bbcodec.networks import BlockCodecNet, ModelConfig  # noqa: E402
from bbcodec.train import freeze, train  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(random_image(80, 96, seed=i)).save(data / f"im{i}.png")
    out = root / "run"
    val = root / "val"
    val.mkdir()
    Image.fromarray(random_image(24, 32, seed=7)).save(val / "v.png")
    args = ["--data", str(data), "--out", str(out), "--N", "16", "--M", "8", "--crop", "64", "--batch", "2",
            "--threads", "1", "--ckpt-every", "2", "--acl", "1", "--val", str(val), "--val-every", "4"]
    train.main([*args, "--steps", "2"])
    train.main([*args, "--steps", "4"])  # resumes from the step-2 checkpoint
    return root, out


def test_training_writes_a_checkpoint_and_resumes(tiny_run):
    _, out = tiny_run
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    assert ck["step"] == 4 and ck["cfg"] == {"N": 16, "M": 8, "kernels": [3, 1, 1, 1], "skip": False}
    assert ck["elapsed"] > 0  # training time carried over resumes (for --minutes)
    log = (out / "train.log").read_text()
    assert "resumed at step 2" in log and "done step=4" in log
    val = [line for line in log.splitlines() if line.startswith("val step 4 ")]
    assert len(val) == 1 and "q4:" in val[0]  # the real codec ran on the validation image


def test_training_runs_under_torchrun_with_two_processes(tmp_path):
    """DistributedDataParallel on CPU (gloo): the same code path a GPU cluster takes."""
    import shutil
    import subprocess
    import sys

    if shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists():
        pytest.skip("torchrun not installed")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(random_image(70, 70, seed=i)).save(data / f"im{i}.png")
    packed = tmp_path / "train.npz"
    from bbcodec.train.data import pack_folder

    assert pack_folder(data, packed) > 0
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "bbcodec.train.train",
           "--data", str(packed), "--out", str(out), "--N", "16", "--M", "8", "--crop", "64", "--batch", "1",
           "--threads", "1", "--steps", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (out / "train.log").read_text()
    assert "world=2" in log and "done step=2" in log


def test_frozen_integer_model_codes_like_the_float_model(tiny_run):
    root, out = tiny_run
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    model = BlockCodecNet(ModelConfig.from_dict(ck["cfg"]))
    model.load_state_dict(ck["model"])
    img = random_image(32, 40, seed=9)
    crops = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()
    path = freeze.write_weights(freeze.freeze(model, crops, "tiny", {}), root / "w", "tiny")
    w = weights.load(path)
    data, rec = codec.encode(img, 5, w)
    header, payload = format.unpack(data)
    assert np.array_equal(codec.decode(header, payload, w), rec)
    # The integer decoder matches the float network run in parallel from the same
    # neighbours only approximately (rounding); compare through the closed-loop
    # reconstruction's error, which must be close to the float model's open-loop one.
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    float_rec = model.double().reconstruct(x, x, torch.tensor([5.0], dtype=torch.float64))
    err_float = float((float_rec[0].permute(1, 2, 0).numpy() - img).std())
    err_int = float((rec.astype(float) - img).std())
    assert err_int < 2 * err_float + 2


def test_weights_with_a_wrong_hash_are_refused(tiny_run, tmp_path):
    root, _ = tiny_run
    src = next((root / "w").glob("tiny-*.npz"))
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[-10] ^= 1
    bad.write_bytes(bytes(data))
    weights.load.cache_clear()
    with pytest.raises(weights.WeightsError):
        weights.load(bad)


def test_integer_networks_match_the_float_networks(tiny_run):
    """Same neighbours and inputs in, float vs frozen-integer outputs agree closely."""
    from bbcodec import blocks
    from bbcodec.networks import space_to_depth, to_net

    root, out = tiny_run
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    model = BlockCodecNet(ModelConfig.from_dict(ck["cfg"])).double().eval()
    model.load_state_dict(ck["model"])
    img = random_image(32, 48, seed=4)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    path = freeze.write_weights(freeze.freeze(model, x, "tiny2", {}), root / "w2", "tiny2")
    fm = weights.load(path).model
    src = blocks.to_blocks(img)
    rows, cols = src.shape[:2]
    canvas = blocks.new_canvas(rows, cols)
    canvas[1:, 1:-1] = src
    r, c = (a.ravel() for a in np.mgrid[0:rows, 0:cols])
    nb = blocks.gather_neighbours(canvas, r, c)
    q = torch.tensor([3.0], dtype=torch.float64)
    qp = fm.quality(3 * 256)
    xs = space_to_depth(to_net(x))
    with torch.no_grad():
        ref_he = model.h_e(None, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
        ref_ga = model.g_a(xs, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
    got_he = fm.he.run(None, nb, qp.bias["he"])
    got_ga = fm.ga.run(src[r, c].astype(np.float64), nb, qp.bias["ga"])
    for ref, got in ((ref_he, got_he), (ref_ga, got_ga)):
        assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max() + 1e-4


def test_weights_that_could_leave_the_exact_range_are_refused(tiny_run):
    from bbcodec import exact

    root, _ = tiny_run
    path = next((root / "w").glob("tiny-*.npz"))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    exact.load_frozen(arrays)  # as frozen: fine
    arrays["gs.2.b"] = arrays["gs.2.b"].copy()
    arrays["gs.2.b"][0] = 2**53
    with pytest.raises(ValueError, match="exact"):
        exact.load_frozen(arrays)


def test_high_rate_kernels_match_the_float_network_and_code_exactly(tmp_path):
    """Kernels (3,3,1,1): a mask-B layer on hidden features, as the paper's high-rate model."""
    from bbcodec import blocks
    from bbcodec.exact import BlockContext
    from bbcodec.networks import space_to_depth, to_net

    torch.manual_seed(3)
    model = BlockCodecNet(ModelConfig(N=16, M=8, kernels=(3, 3, 1, 1))).double().eval()
    with torch.no_grad():  # give the 3x3 layers' off-centre taps real weight
        for st in (model.g_a, model.h_e):
            st.convs[0].weight.mul_(3.0)
    img = random_image(40, 56, seed=5)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    path = freeze.write_weights(freeze.freeze(model, x, "hr", {}), tmp_path, "hr")
    w = weights.load(path)
    fm = w.model
    # Open loop, block by block in wavefront order, against the float convolutions.
    src = blocks.to_blocks(img)
    rows, cols = src.shape[:2]
    canvas = blocks.new_canvas(rows, cols)
    canvas[1:, 1:-1] = src
    ctx = BlockContext(rows, cols)
    qp = fm.quality(6 * 256)
    got_he = np.zeros((rows, cols, 16))
    got_ga = np.zeros((rows, cols, 8))
    for r, c in blocks.wavefronts(rows, cols):
        nb = blocks.gather_neighbours(canvas, r, c)
        ctx.at(r, c)
        got_he[r, c] = fm.he.run(None, nb, qp.bias["he"], ctx)
        got_ga[r, c] = fm.ga.run(src[r, c].astype(np.float64), nb, qp.bias["ga"], ctx)
    xs = space_to_depth(to_net(x))
    q = torch.tensor([6.0], dtype=torch.float64)
    with torch.no_grad():
        ref_he = model.h_e(None, xs, q)[0].permute(1, 2, 0).numpy()
        ref_ga = model.g_a(xs, xs, q)[0].permute(1, 2, 0).numpy()
    for ref, got in ((ref_he, got_he), (ref_ga, got_ga)):
        assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max() + 1e-4
    # Closed loop: raster and wavefront encoders agree, the decoder reproduces the image.
    data, rec = codec.encode(img, 6, w, "raster")
    assert codec.encode(img, 6, w, "wavefront")[0] == data
    header, payload = format.unpack(data)
    assert np.array_equal(codec.decode(header, payload, w, "sequential"), rec)


def test_growing_the_latents_keeps_what_the_model_learnt(tiny_run, tmp_path):
    """--init from a checkpoint with fewer latents: old weights are kept, the new latents
    barely touch the reconstruction at first, and training goes on from there."""
    from bbcodec.train.grow import grow_latents

    root, out = tiny_run
    state = torch.load(out / "ckpt.pt", weights_only=False)["model"]
    small = BlockCodecNet(ModelConfig(N=16, M=8))
    small.load_state_dict(state)
    big = BlockCodecNet(ModelConfig(N=16, M=12))
    big.load_state_dict(grow_latents(state, 12))
    assert torch.equal(big.g_a.convs[2].weight[:8], small.g_a.convs[2].weight)
    assert torch.equal(big.h_e.convs[2].weight[12:20], small.h_e.convs[2].weight[8:])  # log-scales
    x = torch.tensor(random_image(32, 48, seed=3)).permute(2, 0, 1)[None].float()
    q = torch.tensor([6.0])
    with torch.no_grad():
        a, b = small(x, x, q, noise=False), big(x, x, q, noise=False)
    assert (a.x_hat - b.x_hat).abs().max() < 0.5  # the new decoder columns start near zero
    # ... but not at zero on either side, or the new latents would never learn
    assert big.g_s.cur.weight[:, 8:].abs().min() > 0 and big.g_a.convs[2].weight[8:].abs().min() > 0
    with pytest.raises(ValueError, match="cannot shrink"):
        grow_latents(state, 4)

    run = tmp_path / "grown"
    train.main(["--data", str(root / "data"), "--out", str(run), "--N", "16", "--M", "12", "--crop", "64",
                "--batch", "2", "--threads", "1", "--steps", "2", "--init", str(out / "ckpt.pt"), "--skip"])
    assert torch.load(run / "ckpt.pt", weights_only=False)["cfg"] == {"N": 16, "M": 12, "kernels": [3, 1, 1, 1], "skip": True}
    assert "latents 8 -> 12, zero shortcuts added" in (run / "train.log").read_text()


def test_the_learning_rate_decays_over_steps_or_time_whichever_ends_first():
    args = train.parse_args(["--data", "d", "--out", "o", "--steps", "1000", "--lr", "1e-3", "--lr-final", "1e-5",
                             "--decay", "1"])
    mid = 1e-5 + (1e-3 - 1e-5) * 0.5
    assert train.lr_at(500, args, elapsed=1e9) == pytest.approx(mid)  # no time budget: steps only
    assert train.lr_at(1000, args) == pytest.approx(1e-5)
    args.minutes = 10
    assert train.lr_at(500, args, elapsed=60.0) == pytest.approx(mid)  # steps ahead of time
    assert train.lr_at(250, args, elapsed=300.0) == pytest.approx(mid)  # time ahead of steps
    assert train.lr_at(250, args, elapsed=600.0) == pytest.approx(1e-5)
    assert train.lr_at(0, args) == pytest.approx(1e-3 / 200)  # warm-up


def test_the_learning_rate_is_constant_until_the_final_decay():
    args = train.parse_args(["--data", "d", "--out", "o", "--steps", "1000", "--lr", "1e-3", "--lr-final", "1e-5",
                             "--decay", "0.2"])
    assert train.lr_at(300, args) == train.lr_at(800, args) == pytest.approx(1e-3)
    assert train.lr_at(900, args) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # halfway through the decay
    assert train.lr_at(1000, args) == pytest.approx(1e-5)


def test_the_held_out_split_takes_every_tenth_photo_of_each_group(tmp_path):
    from bbcodec.train.data import image_paths, split_of

    names = [f"a_{i:02d}.png" for i in range(25)] + [f"b_{i}.jpg" for i in range(9)]
    split = split_of(names)
    assert sorted(n for n, part in split.items() if part == "val") == ["a_09.png", "a_19.png"]  # b has < 10
    for n in ["x_1.png", "x_2.png", "notes.txt"]:
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in image_paths(tmp_path, "all")] == ["x_1.png", "x_2.png"]
    assert image_paths(tmp_path, "val") == []


def test_crops_are_drawn_in_proportion_to_image_area():
    from bbcodec.train.data import CropSampler

    small = np.zeros((64, 64, 3), np.uint8)
    big = np.full((128, 256, 3), 255, np.uint8)  # 8x the area
    crops = CropSampler([small, big], 64, seed=0).batch(900)
    share_big = float((crops[:, 0, 0, 0] == 255).float().mean())
    assert 0.84 < share_big < 0.93  # 8/9 = 0.889


def test_the_moving_average_is_saved_and_frozen_by_default(tiny_run):
    _, out = tiny_run
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    assert ck["ema"].keys() == ck["model"].keys()
    diff = [k for k in ck["model"] if not torch.equal(ck["model"][k], ck["ema"][k])]
    assert diff  # four steps moved the weights; the average lags behind them


def test_linear_shortcuts_freeze_match_the_float_network_and_code_exactly(tmp_path):
    """--skip: the shortcut adds into the last integer accumulator; files name family 2."""
    from bbcodec import blocks
    from bbcodec.networks import space_to_depth, to_net

    torch.manual_seed(4)
    model = BlockCodecNet(ModelConfig(N=16, M=8, skip=True)).double().eval()
    with torch.no_grad():  # a trained shortcut carries real weight
        model.g_a.skip.weight.normal_(0.0, 0.3)
        model.g_s.skip.weight.normal_(0.0, 0.3)
    img = random_image(40, 56, seed=6)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    w = weights.load(freeze.write_weights(freeze.freeze(model, x, "sk", {}), tmp_path, "sk"))
    fm = w.model
    assert w.family_id == 2 and fm.ga.W_skip is not None and fm.gs.W_skip is not None
    src = blocks.to_blocks(img)
    rows, cols = src.shape[:2]
    canvas = blocks.new_canvas(rows, cols)
    canvas[1:, 1:-1] = src
    r, c = (a.ravel() for a in np.mgrid[0:rows, 0:cols])
    nb = blocks.gather_neighbours(canvas, r, c)
    q = torch.tensor([6.0], dtype=torch.float64)
    qp = fm.quality(6 * 256)
    xs = space_to_depth(to_net(x))
    lat = np.clip(np.rint(np.random.default_rng(0).normal(0, 2.0**fm.f_latent, (rows * cols, 8))), -2**15 + 1, 2**15 - 1)
    lat_t = torch.from_numpy(np.ldexp(lat, -fm.f_latent).T.reshape(1, 8, rows, cols).copy())
    with torch.no_grad():
        ref_ga = model.g_a(xs, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
        ref_gs = model.g_s(lat_t, xs, q)[0].permute(1, 2, 0).reshape(rows * cols, -1).numpy()
    got_ga = fm.ga.run(src[r, c].astype(np.float64), nb, qp.bias["ga"])
    got_gs = fm.gs.run(lat, nb, qp.bias["gs"])
    for ref, got in ((ref_ga, got_ga), (ref_gs, got_gs)):
        assert np.abs(ref - got).max() <= 1e-3 * np.abs(ref).max() + 1e-4
    data, rec = codec.encode(img, 6, w)
    header, payload = format.unpack(data)
    assert header.model_id == 2
    assert np.array_equal(codec.decode(header, payload, w, "sequential"), rec)
    # A file without shortcuts claiming family 2 (or the reverse) is refused.
    with np.load(w.path) as z:
        arrays = {k: z[k] for k in z.files if k != "gs.3.Wskip"}
    from bbcodec import exact

    with pytest.raises(ValueError, match="family"):
        exact.load_frozen(arrays)


def test_unfreezing_a_weights_file_gives_back_the_float_model(tmp_path):
    """Shipped .npz -> training checkpoint (for --init): the same networks up to the
    15-bit rounding of freezing, for every layer kind (GDN, mask-B 3x3, shortcuts)."""
    from bbcodec.train import unfreeze

    torch.manual_seed(5)
    model = BlockCodecNet(ModelConfig(N=16, M=8, kernels=(3, 3, 1, 1), skip=True)).double().eval()
    with torch.no_grad():  # trained-looking values where initialisation leaves zeros or identities
        for st in (model.g_a, model.g_s, model.h_e):
            st.qbias.normal_(0.0, 0.1)
            st.nb.bias.normal_(0.0, 0.1)
        for st in (model.g_a, model.g_s):
            st.skip.weight.normal_(0.0, 0.2)
            for act in st.acts:
                act.gamma.add_(0.05 * torch.rand_like(act.gamma))
                act.beta.mul_(1.0 + torch.rand_like(act.beta))
        model.log_gain.add_(0.1 * torch.randn_like(model.log_gain))
    img = random_image(40, 56, seed=8)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    path = freeze.write_weights(freeze.freeze(model, x, "uf", {"train_steps": 7}), tmp_path, "uf")
    out = tmp_path / "init.pt"
    unfreeze.main([str(path), str(out)])
    ck = torch.load(out, weights_only=False)
    assert ck["cfg"] == model.cfg.to_dict() and ck["step"] == 7
    back = BlockCodecNet(ModelConfig.from_dict(ck["cfg"])).double().eval()
    back.load_state_dict(ck["model"])
    with torch.no_grad():
        for q in (1.0, 4.5, 8.0):
            qt = torch.tensor([q], dtype=torch.float64)
            a, b = model(x, x, qt, noise=False), back(x, x, qt, noise=False)
            # Rounding of the latents may flip where the frozen weights moved y by ~1e-4.
            assert (a.x_hat - b.x_hat).abs().mean() < 0.05
            assert abs(a.bits.item() - b.bits.item()) <= 0.01 * a.bits.item() + 1.0
        g = model.g_s.acts[1]
        assert torch.allclose(g.gamma_reparam(g.gamma), back.g_s.acts[1].gamma_reparam(back.g_s.acts[1].gamma), rtol=1e-3, atol=1e-6)
    # ... and it is a training checkpoint --init accepts, growing the latents on the way.
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(random_image(80, 96, seed=1)).save(root / "a.png")
    run = tmp_path / "run"
    train.main(["--data", str(root), "--out", str(run), "--N", "16", "--M", "10", "--kernels", "3,3,1,1", "--skip",
                "--crop", "64", "--batch", "1", "--threads", "1", "--steps", "1", "--init", str(out)])
    assert "latents 8 -> 10" in (run / "train.log").read_text()


def test_the_progress_bar_ends_where_the_time_budget_does():
    args = train.parse_args(["--data", "d", "--out", "o", "--steps", "10000"])
    assert train.projected_steps(100, 2.0, args, elapsed=50.0) == 10000  # no budget: --steps
    args.minutes = 10
    assert train.projected_steps(100, 2.0, args, elapsed=50.0) == 100 + 2 * 550  # 550 s left at 2 steps/s
    assert train.projected_steps(100, 50.0, args, elapsed=50.0) == 10000  # --steps comes first
    assert train.projected_steps(100, 2.0, args, elapsed=900.0) == 100  # budget spent


def test_bf16_autocast_trains_on_the_cpu_with_fp32_rates(tiny_run, tmp_path):
    """--amp on the CPU: the stacks run in bfloat16, but latents, rates and the loss are fp32."""
    root, out = tiny_run
    model = BlockCodecNet(ModelConfig(N=16, M=8))
    model.load_state_dict(torch.load(out / "ckpt.pt", weights_only=False)["model"])
    x = torch.tensor(random_image(32, 48, seed=3)).permute(2, 0, 1)[None].float()
    q = torch.tensor([4.0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(x, x, q, noise=False)
    full = model(x, x, q, noise=False)
    assert half.bits.dtype == torch.float32 and half.x_hat.dtype == torch.float32
    assert abs(half.bits.item() - full.bits.item()) < 0.05 * full.bits.item() + 2
    run = tmp_path / "amp"
    train.main(["--data", str(root / "data"), "--out", str(run), "--N", "16", "--M", "8", "--crop", "64",
                "--batch", "2", "--threads", "1", "--steps", "2", "--acl", "1", "--amp", "--device", "cpu"])
    log = (run / "train.log").read_text()
    assert "'amp': True" in log and "done step=2" in log and "nan" not in log
