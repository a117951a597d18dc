"""The training loop (bbcodec/train/train.py, data.py, grow.py) on a tiny model.

Runs of train.main are marked slow (`make test-slow`); the options, the schedules and
the data sampling are tested in the default suite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN_ARGS, random_image, tiny_model
from PIL import Image

torch = pytest.importorskip("torch")

from bbcodec.nn.networks import BlockCodecNet, ModelConfig  # noqa: E402
from bbcodec.train import train  # noqa: E402

# -- options -----------------------------------------------------------------------


def test_every_option_is_a_config_field_with_its_default_in_the_help(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(train.TrainConfig):
        assert "--" + f.name.replace("_", "-") in help_text
        assert f.metadata["help"].split()[0] in help_text
    assert "[default: 2e-4]" in help_text and "[default: 3,1,1,1]" in help_text


def test_the_model_sizes_default_to_the_model_config():
    args = train.parse_args(["--data", "d", "--out", "o"])
    assert args.model_config() == ModelConfig()
    assert isinstance(args, train.TrainConfig) and args.data == Path("d") and args.lr == 2e-4


def test_options_parse_to_their_field_types():
    args = train.parse_args(["--data", "d", "--out", "o", "--N", "32", "--kernels", "3,3,1,1", "--skip",
                             "--val-qualities", "2,6.5", "--lr-final", "1e-6", "--amp", "--val", "heldout"])
    assert args.model_config() == ModelConfig(N=32, kernels=(3, 3, 1, 1), skip=True)
    assert args.val_qualities == (2.0, 6.5) and args.lr_final == 1e-6 and args.amp
    assert args.val == Path("heldout") and args.init is None
    assert train.parse_args(["--data", "d", "--out", "o"]).skip is False


@pytest.mark.parametrize("argv", [["--out", "o"], ["--data", "d", "--out", "o", "--kernels", "1,1,1,1"],
                                  ["--data", "d", "--out", "o", "--kernels", "3,x"],
                                  ["--data", "d", "--out", "o", "--synthetic", "1.5"],
                                  ["--data", "d", "--out", "o", "--perceptual", "-0.1"],
                                  ["--data", "d", "--out", "o", "--init", "/no/such/ckpt.pt"],
                                  ["--data", "d", "--out", "o", "--postfilter", "/no/such/filter.pt"],
                                  ["--data", "d", "--out", "o", "--heads", "/no/such/context.pt"]])
def test_missing_or_bad_options_are_usage_errors(argv):
    with pytest.raises(SystemExit) as e:
        train.parse_args(argv)
    assert e.value.code == 2


# -- schedules ---------------------------------------------------------------------


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


def test_the_progress_bar_ends_where_the_time_budget_does():
    args = train.parse_args(["--data", "d", "--out", "o", "--steps", "10000"])
    assert train.projected_steps(100, 2.0, args, elapsed=50.0) == 10000  # no budget: --steps
    args.minutes = 10
    assert train.projected_steps(100, 2.0, args, elapsed=50.0) == 100 + 2 * 550  # 550 s left at 2 steps/s
    assert train.projected_steps(100, 50.0, args, elapsed=50.0) == 10000  # --steps comes first
    assert train.projected_steps(100, 2.0, args, elapsed=900.0) == 100  # budget spent


# -- data --------------------------------------------------------------------------


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


def test_a_synthetic_share_of_the_crops_is_drawn_and_the_photo_stream_is_kept():
    from bbcodec.train.data import CropSampler

    photo = np.full((300, 300, 3), 7, np.uint8)  # no synthetic crop is one flat colour 7
    plain = CropSampler([photo], 64, seed=0).batch(8)
    mixed = CropSampler([photo], 64, seed=0, synthetic=0.25).batch(400)
    drawn = (mixed != 7).flatten(1).any(1)
    assert 0.18 < float(drawn.float().mean()) < 0.32
    assert torch.equal(plain, CropSampler([photo], 64, seed=0, synthetic=0.0).batch(8))


def test_the_synthetic_crops_are_sharp_edges_and_ramps_of_every_kind():
    from bbcodec.train import synth

    rng = np.random.default_rng(5)
    for name, (make, _) in synth.KINDS.items():
        im = np.asarray(make(rng, 96).convert("RGB"))
        assert im.shape == (96, 96, 3) and im.dtype == np.uint8, name
        assert len(np.unique(im.reshape(-1, 3), axis=0)) > 1, name
    crops = [synth.crop(np.random.default_rng(9), 64) for _ in range(2)]
    assert np.array_equal(crops[0], crops[1])  # one seed, one crop
    for seed in range(10):  # ramps: smooth (<= 2 stops x 255 levels over 128 pixels, diagonally) yet not flat
        ramp = synth._ramp(np.random.default_rng(seed), 128)
        step = max(np.abs(np.diff(ramp, axis=a)).max() for a in (0, 1))
        assert 0 < step <= 2 * 255 / 128 * 2**0.5 + 1e-3
    white = (255, 255, 255)
    for seed in range(10):
        ink = synth.contrasting(np.random.default_rng(seed), white)
        assert synth._luma(white) - synth._luma(ink) >= 100


# -- model pieces the loop uses ----------------------------------------------------


def test_growing_the_latents_keeps_what_the_model_learnt():
    """--init from a checkpoint with fewer latents: old weights are kept, the new latents
    barely touch the reconstruction at first, and can learn."""
    from bbcodec.train.grow import grow_latents

    small = tiny_model()
    state = small.state_dict()
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


def test_bf16_autocast_keeps_the_rates_in_fp32():
    """--amp on the CPU: the stacks run in bfloat16, but latents, rates and the loss are fp32."""
    model = tiny_model()
    x = torch.tensor(random_image(32, 48, seed=3)).permute(2, 0, 1)[None].float()
    q = torch.tensor([4.0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(x, x, q, noise=False)
    full = model(x, x, q, noise=False)
    assert half.bits.dtype == torch.float32 and half.x_hat.dtype == torch.float32
    assert abs(half.bits.item() - full.bits.item()) < 0.05 * full.bits.item() + 2


# -- training runs (slow) ----------------------------------------------------------


@pytest.mark.slow
def test_training_writes_a_checkpoint_and_resumes(tiny_run):
    _, out = tiny_run
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    assert ck["step"] == 4 and ck["cfg"] == {"N": 16, "M": 8, "kernels": [3, 1, 1, 1], "skip": False}
    assert ck["elapsed"] > 0  # training time carried over resumes (for --minutes)
    log = (out / "train.log").read_text()
    assert "resumed at step 2" in log and "done step=4" in log
    val = [line for line in log.splitlines() if line.startswith("val step 4 ")]
    assert len(val) == 1 and "q4:" in val[0]  # the real codec ran on the validation image


@pytest.mark.slow
def test_the_moving_average_is_saved_by_default(tiny_run):
    _, out = tiny_run
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    assert ck["ema"].keys() == ck["model"].keys()
    diff = [k for k in ck["model"] if not torch.equal(ck["model"][k], ck["ema"][k])]
    assert diff  # four steps moved the weights; the average lags behind them


@pytest.mark.slow
def test_training_grows_the_latents_of_an_init_checkpoint(tiny_run, tmp_path):
    root, out = tiny_run
    run = tmp_path / "grown"
    train.main(["--data", str(root / "data"), "--out", str(run), *TINY_TRAIN_ARGS, "--M", "12",
                "--steps", "2", "--init", str(out / "ckpt.pt"), "--skip"])
    ck = torch.load(run / "ckpt.pt", weights_only=False)
    assert ck["cfg"] == {"N": 16, "M": 12, "kernels": [3, 1, 1, 1], "skip": True}
    assert "latents 8 -> 12, zero shortcuts added" in (run / "train.log").read_text()


@pytest.mark.slow
def test_training_widens_the_hidden_layers_of_an_init_checkpoint(tiny_run, tmp_path):
    root, out = tiny_run
    run = tmp_path / "wide"
    train.main(["--data", str(root / "data"), "--out", str(run), *TINY_TRAIN_ARGS, "--N", "24",
                "--steps", "1", "--init", str(out / "ckpt.pt")])
    assert torch.load(run / "ckpt.pt", weights_only=False)["cfg"]["N"] == 24
    assert "N 16 -> 24" in (run / "train.log").read_text()


@pytest.mark.parametrize("skip", [False, True])
def test_widening_keeps_the_function_and_gives_new_units_room_to_learn(skip):
    from bbcodec.train.grow import grow_width

    small = BlockCodecNet(ModelConfig(N=16, M=8, skip=skip)).double()
    with torch.no_grad():  # a trained-looking model: nothing left at its zero initialisation
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    wide_cfg = ModelConfig(N=24, M=8, skip=skip)
    wide = BlockCodecNet(wide_cfg).double()
    wide.load_state_dict(grow_width(small.state_dict(), wide_cfg))
    x = torch.from_numpy(random_image(32, 40, seed=3).copy()).permute(2, 0, 1)[None].double()
    q = torch.tensor([3.5], dtype=torch.float64)
    a, b = small(x, x, q, noise=False), wide(x, x, q, noise=False)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-9) and torch.allclose(a.bits, b.bits, atol=1e-9)
    wide(x, x, q).bits.sum().backward()  # the new units' outgoing weights get gradient at once
    assert wide.h_e.convs[0].weight.grad[:, 16:].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot grow"):
        grow_width(wide.state_dict(), ModelConfig(N=16, M=8, skip=skip))


@pytest.mark.slow
def test_bf16_autocast_trains_on_the_cpu(tiny_run, tmp_path):
    root, _ = tiny_run
    run = tmp_path / "amp"
    train.main(["--data", str(root / "data"), "--out", str(run), *TINY_TRAIN_ARGS,
                "--steps", "2", "--acl", "1", "--amp", "--device", "cpu"])
    log = (run / "train.log").read_text()
    assert "'amp': True" in log and "done step=2" in log and "nan" not in log


@pytest.mark.slow
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
    packed = tmp_path / "pack"
    from bbcodec.train.data import pack_folder

    assert len(pack_folder(data, packed)) == 1
    from bbcodec.train import filter as postfilter
    from bbcodec.train import groups as context

    postfilter.save(_small_filter(), tmp_path / "filter.pt")  # both companions: their gradients averaged too
    context.save(_small_heads(), tmp_path / "heads.pt")
    out = tmp_path / "run"
    # --standalone: a free port of its own, not 29500, which another run on the machine may hold
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "bbcodec.train.train",
           "--data", str(packed), "--out", str(out), *TINY_TRAIN_ARGS, "--batch", "1",
           "--steps", "2", "--device", "cpu", "--postfilter", str(tmp_path / "filter.pt"),
           "--heads", str(tmp_path / "heads.pt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    # the workers' own messages come before torchrun's summary of which one failed
    assert proc.returncode == 0, proc.stderr[:3000] + "\n...\n" + proc.stderr[-1000:]
    log = (out / "train.log").read_text()
    assert "world=2" in log and "done step=2" in log
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    assert len(ck["opt"]["param_groups"]) == 3 and (out / "heads.pt").exists() and (out / "filter.pt").exists()


def test_packs_are_lossless_split_into_parts_and_load_like_the_folder(tmp_path):
    from bbcodec.train.data import load_folder, load_images, pack_folder

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(random_image(40, 56, seed=i)).save(data / f"g_{i}.png")
    Image.fromarray(random_image(40, 48, seed=5)).save(data / "g_3.jpg", quality=90)
    jpeg_pixels = np.asarray(Image.open(data / "g_3.jpg").convert("RGB"))
    parts = pack_folder(data, tmp_path / "pack", part_mb=0.004)  # ~4 kB parts: several
    assert len(parts) > 1 and all(p.name.startswith("train-") for p in parts)
    packed, direct = load_images(tmp_path / "pack", 32), load_folder(data, 32)
    assert len(packed) == len(direct) == 4
    assert all(np.array_equal(a, b) for a, b in zip(packed, direct, strict=True))  # PNGs: lossless
    assert np.array_equal(packed[3], jpeg_pixels)  # the JPEG: its own bytes, not re-encoded


def test_the_perceptual_share_mixes_ssimulacra2_into_the_distortion():
    """--perceptual 0 is the paper's MSE; above, SSIMULACRA2's loss (scaled to MSE's range)
    joins it: zero for a perfect reconstruction, differentiable, and of MSE's order for a
    reconstruction near the codec's working range."""
    torch = pytest.importorskip("torch")
    from conftest import random_image

    from bbcodec.train.train import distortion

    x = torch.from_numpy(np.array(random_image(64, 64, seed=3))).permute(2, 0, 1)[None].double()
    blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mse_blur = (blur - x).pow(2).flatten(1).mean(1)
    noise = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype) * mse_blur.sqrt()
    mse_noise = (noise - x).pow(2).flatten(1).mean(1)
    assert torch.allclose(distortion(x, blur, mse_blur, 0.0).double(), mse_blur / 255.0**2, rtol=1e-6)
    assert float(distortion(x, x.clone(), torch.zeros(1, dtype=x.dtype), 1.0)) == pytest.approx(0.0, abs=1e-6)
    hat = blur.clone().requires_grad_(True)
    d = distortion(x, hat, (hat - x).pow(2).flatten(1).mean(1), 0.5)
    d.sum().backward()
    assert torch.isfinite(hat.grad).all() and hat.grad.abs().sum() > 0
    for hat_, mse_ in ((blur, mse_blur), (noise.clamp(0, 255), mse_noise)):
        ratio = float(distortion(x, hat_, mse_, 1.0)) / float(mse_ / 255.0**2)
        assert 0.1 < ratio < 10  # PERCEPTUAL_SCALE: the two terms in the same range


# -- the joint fine-tune with the post-loop filter (--postfilter) ------------------


def _small_filter(seed: int = 0):
    from bbcodec.train import filter as postfilter

    torch.manual_seed(seed)
    net = postfilter.FilterNet(postfilter.FilterConfig(P=2, K=8, depth=2))
    with torch.no_grad():  # a trained-looking filter: not the identity it starts as
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_the_filter_interpolates_its_biases_between_qualities_as_the_decoder_does():
    net = _small_filter()
    x = torch.from_numpy(random_image(16, 24, seed=1).copy()).permute(2, 0, 1)[None].float() / 128 - 1
    with torch.no_grad():
        at = {q: net(x, torch.tensor([q])) for q in (2, 3)}
        assert torch.allclose(net(x, torch.tensor([3.0])), at[3], atol=1e-6)
        mid = net(x, torch.tensor([2.5]))
        net.qbias[2] = net.qbias[1:3].mean(0)  # the decoder's lerp of the two rows
        assert torch.allclose(mid, net(x, torch.tensor([3])), atol=1e-6)
        assert not torch.allclose(mid, at[2], atol=1e-3)


def test_the_filtered_loss_sees_the_8_bit_picture_and_passes_gradients_through():
    net = _small_filter()
    x = torch.from_numpy(random_image(16, 24, seed=2).copy()).permute(2, 0, 1)[None].float()
    x_hat = (x + 3.3 * torch.randn_like(x)).requires_grad_()
    q = torch.tensor([4.0])
    y, mse = train.filtered(net, x, x_hat, q)
    with torch.no_grad():
        ref = net(x_hat.clamp(0, 255).round() / 128 - 1, q) * 128 + 128
    assert torch.allclose(y, ref, atol=1e-4) and torch.allclose(mse, (ref - x).pow(2).mean(), rtol=1e-5)
    mse.sum().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert net.first.weight.grad is not None and net.first.weight.grad.abs().sum() > 0


def test_a_postfilter_file_that_holds_no_filter_is_one_line(tmp_path):
    bad = tmp_path / "notes.pt"
    torch.save({"something": 1}, bad)
    args = train.parse_args(["--data", "d", "--out", str(tmp_path), "--postfilter", str(bad)])
    with pytest.raises(SystemExit, match="not a post-loop filter"):
        train._postfilter(args, {}, torch.device("cpu"))


# -- the joint fine-tune with the grouped-scale heads (--heads) -----------------------


def _small_heads(seed: int = 0, C: int = 16, M: int = 8):
    """Heads for tiny_model (its entropy network's last hidden width is N = 16), trained-looking."""
    from bbcodec.train import groups as context

    torch.manual_seed(seed)
    net = context.GroupedScalesNet(context.ContextConfig(sizes=[2, 2, M - 4], K=8, f_h=5), C, torch.randperm(M))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_the_heads_rate_of_a_training_forward_is_the_rate_family3_trains_them_on():
    from bbcodec.train import groups as context

    model, heads = tiny_model(seed=4), _small_heads()
    x = torch.from_numpy(random_image(24, 32, seed=5).copy()).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1)
    q = torch.tensor([3.0, 6.0])
    out = model(x, x, q, noise=False)
    t = out.entropy
    assert torch.allclose(t.residual, t.symbols, atol=1e-4) and torch.equal(t.symbols, t.symbols.round())  # no noise

    def rows(v):
        return v.permute(0, 2, 3, 1).reshape(-1, v.shape[1])

    # family3's loss on cache rows (hidden as integers at exponent f_h, integer qualities)
    n = t.symbols[0, 0].numel()
    with torch.no_grad():
        ls = heads(rows(t.hidden) * 2.0**5, rows(t.log_scale), rows(t.symbols), q.long().repeat_interleave(n))
        want = context.rate_bits(rows(t.symbols)[:, heads.perm], ls).reshape(2, -1).sum(1)
        got = context.grid_bits(heads, t, q)
    assert torch.allclose(got, want, rtol=1e-5) and not torch.allclose(got, out.bits, rtol=1e-3)
    fresh = context.GroupedScalesNet(heads.cfg, 16, heads.perm)  # zero last layers: the entropy net's own scales
    with torch.no_grad():
        assert torch.allclose(context.grid_bits(fresh, t, q), out.bits, rtol=1e-5)
        # a fractional quality interpolates the heads' bias rows, as the decoder does
        half = context.grid_bits(heads, t, torch.tensor([3.5, 3.5]))
        for b in heads.qbias:
            b[2] = b[2:4].mean(0)
        assert torch.allclose(half, context.grid_bits(heads, t, torch.tensor([3.0, 3.0])), rtol=1e-5)
    noisy = model(x, x, q)  # noise: the rate's residuals are noisy, the heads' context the rounded symbols
    assert not torch.equal(noisy.entropy.residual, noisy.entropy.symbols)
    context.grid_bits(heads, noisy.entropy, q).sum().backward()
    assert model.g_a.nb.weight.grad.abs().sum() > 0 and model.h_e.nb.weight.grad.abs().sum() > 0
    assert heads.first[0].weight.grad.abs().sum() > 0


def test_the_entropy_terms_of_a_forward_are_what_the_real_coder_codes_with():
    """What the heads read in training (EntropyTerms) against what the coder hands them
    (loop.encode's observer, as bbcodec.train.cache keeps it): the frozen model of the
    same float model, the forward given the coder's own reconstruction as neighbours."""
    from bbcodec.coding import loop
    from bbcodec.train.freeze import freeze

    model = tiny_model(seed=7).double()
    with torch.no_grad():  # trained-looking, so that quality 8 gives symbols far from 0
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    img = random_image(40, 48, seed=8)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()
    frozen = freeze(model, x, "t", {})
    seen = []
    _, rec = loop.encode(img, 8, frozen, loop.UNNAMED, threads=1, observe=lambda r, c, sym, sc, out: seen.append(
        (r.copy(), c.copy(), sym.copy(), sc.log_scale.copy(), sc.hidden.copy())))
    with torch.no_grad():
        t = model(x, torch.from_numpy(rec.copy()).permute(2, 0, 1)[None].double(),
                  torch.tensor([8.0], dtype=torch.float64), noise=False).entropy
    fh = frozen.he.acts[-1].fh
    r, c = (np.concatenate([v[i] for v in seen]) for i in (0, 1))
    sym, log_scale, hidden = (np.concatenate([v[i] for v in seen]) for i in (2, 3, 4))
    assert len(r) == 30 and np.abs(sym).max() >= 5
    th, tl, ts = (v[0, :, r, c].T.numpy() for v in (t.hidden, t.log_scale, t.symbols))  # (blocks, channels)
    assert np.abs(th - hidden * 2.0**-fh).max() < 0.03 * np.abs(th).max()  # the integer net's rounding
    assert np.abs(tl - log_scale).max() < 0.03
    assert (ts == sym).mean() > 0.97 and np.abs(ts - sym).max() <= 1  # a few ties round the other way


@pytest.mark.slow
@pytest.mark.parametrize("option", ["postfilter", "heads"])
def test_a_companion_is_trained_with_the_auto_encoder_saved_and_resumed(option, tiny_run, tmp_path):
    """--postfilter and --heads: trained beside the auto-encoder at their own learning-rate
    scale, saved for family3 (filter.pt, heads.pt), resumed from the checkpoint alone."""
    from bbcodec.train import filter as postfilter
    from bbcodec.train import groups as context

    module, start, saved, lr, scale = {
        "postfilter": (postfilter, _small_filter(seed=3), "filter.pt", "1e-2", 5.0),
        "heads": (context, _small_heads(seed=6), "heads.pt", "1e-3", 20.0),
    }[option]
    root, _ = tiny_run
    module.save(start, tmp_path / "start.pt")
    run = tmp_path / "joint"
    args = ["--data", str(root / "data"), "--out", str(run), *TINY_TRAIN_ARGS, f"--{option}",
            str(tmp_path / "start.pt"), "--ckpt-every", "2", "--lr", lr]
    train.main([*args, "--steps", "2"])
    after2 = module.load(run / saved)
    (tmp_path / "start.pt").unlink()  # a resumed run takes it from the checkpoint
    train.main([*args, "--steps", "4"])
    ck = torch.load(run / "ckpt.pt", weights_only=False)
    assert ck["step"] == 4 and len(ck["opt"]["param_groups"]) == 2
    assert ck["opt"]["param_groups"][1]["scale"] == scale  # --filter-lr's or --heads-lr's default
    after4 = module.load(run / saved)
    for a, b, c in zip(start.parameters(), after2.parameters(), after4.parameters(), strict=True):
        assert not torch.equal(a, b) and not torch.equal(b, c)
    log = (run / "train.log").read_text()
    assert "resumed at step 2" in log and "nan" not in log
    without = [a for a in args if a not in (f"--{option}", str(tmp_path / "start.pt"))]
    with pytest.raises(SystemExit, match=f"trained with --{option}: resume it with the same options"):
        train.main([*without, "--steps", "6"])


def test_heads_that_are_not_heads_or_do_not_fit_the_model_are_one_line(tmp_path):
    from bbcodec.train import groups as context

    bad = tmp_path / "notes.pt"
    torch.save({"something": 1}, bad)
    cfg = ModelConfig(N=16, M=8)
    args = train.parse_args(["--data", "d", "--out", str(tmp_path), "--heads", str(bad)])
    with pytest.raises(SystemExit, match="not grouped-scale heads"):
        train._heads(args, cfg, {}, torch.device("cpu"))
    context.save(_small_heads(C=16, M=8), tmp_path / "h.pt")
    args = train.parse_args(["--data", "d", "--out", str(tmp_path), "--heads", str(tmp_path / "h.pt")])
    assert train._heads(args, cfg, {}, torch.device("cpu")) is not None
    with pytest.raises(SystemExit, match="do not fit this model"):
        train._heads(args, ModelConfig(N=24, M=8), {}, torch.device("cpu"))
    with pytest.raises(SystemExit, match="last layer has kernel 3"):
        train._heads(args, ModelConfig(N=16, M=8, kernels=(3, 1, 1, 3)), {}, torch.device("cpu"))


def test_the_heads_rate_keeps_its_gradient_far_into_the_tail():
    """float32: the upper tail's difference of two numbers near 1 gave a flat 29.9 bits
    and no gradient from about 5 sigma; the lower tail is the model's own rate (both floored
    at a probability of 1e-9 beyond about 6.5 sigma)."""
    from bbcodec.nn.networks import gaussian_bits
    from bbcodec.train import groups as context

    sym = torch.tensor([0.0, 2.0, -6.0, 6.0, 7.0], requires_grad=True)
    bits = context.rate_bits(sym, torch.zeros(5))
    assert torch.allclose(bits, gaussian_bits(sym.detach(), torch.ones(5)))
    assert 25 < bits[3].item() < 26 and bits[4].item() > bits[3].item()
    bits.sum().backward()
    assert sym.grad is not None and (sym.grad[1:4].abs() > 1).all() and sym.grad[2] == -sym.grad[3]
