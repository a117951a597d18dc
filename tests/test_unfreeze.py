"""Weights file back to a training checkpoint (bbcodec/train/unfreeze.py), for --init."""

from __future__ import annotations

import pytest
from conftest import TINY_TRAIN_ARGS, random_image, tiny_model
from PIL import Image

torch = pytest.importorskip("torch")

from bbcodec.nn.networks import BlockCodecNet, ModelConfig  # noqa: E402
from bbcodec.train import freeze, train, unfreeze  # noqa: E402


@pytest.fixture(scope="module")
def unfrozen(tmp_path_factory):
    """A model with every layer kind (GDN, mask-B 3x3, shortcuts), trained-looking values,
    frozen and unfrozen again: (float model, test image, checkpoint path)."""
    model = tiny_model(seed=5, kernels=(3, 3, 1, 1), skip=True).double().eval()
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
    folder = tmp_path_factory.mktemp("unfreeze")
    path = freeze.write_weights(freeze.freeze(model, x, "uf", {"train_steps": 7}), folder)
    out = folder / "init.pt"
    unfreeze.main([str(path), str(out)])
    return model, x, out


def test_unfreezing_a_weights_file_gives_back_the_float_model(unfrozen):
    """The same networks up to the 15-bit rounding of freezing, for every layer kind."""
    model, x, out = unfrozen
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


@pytest.mark.slow
def test_an_unfrozen_checkpoint_starts_a_training_run_with_more_latents(unfrozen, tmp_path):
    _, _, out = unfrozen
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(random_image(80, 96, seed=1)).save(root / "a.png")
    run = tmp_path / "run"
    train.main(["--data", str(root), "--out", str(run), *TINY_TRAIN_ARGS, "--M", "10", "--kernels", "3,3,1,1",
                "--skip", "--batch", "1", "--steps", "1", "--init", str(out)])
    assert "latents 8 -> 10" in (run / "train.log").read_text()
