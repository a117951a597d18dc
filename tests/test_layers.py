"""Training layers: the block mask and our GDN against CompressAI's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bbcodec.nn.layers import GDN, BlockMaskedConv2d  # noqa: E402


def test_masked_conv_sees_only_upper_left_up_upper_right_and_left():
    conv = BlockMaskedConv2d(1, 1, bias=False)
    torch.nn.init.constant_(conv.weight, 1.0)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0  # one block lit: which outputs see it?
    seen = (conv(x)[0, 0] != 0).nonzero().tolist()
    # (r, c) sees (2, 2) as UL, U, UR or L: r = 3 and c in {3, 2, 1}, or r = 2 and c = 3.
    assert sorted(seen) == [[2, 3], [3, 1], [3, 2], [3, 3]]


@pytest.mark.parametrize("inverse", [False, True])
def test_our_gdn_matches_compressai_in_value_gradient_and_state_dict(inverse):
    layers = pytest.importorskip("compressai.layers")
    torch.manual_seed(0)
    ref = layers.GDN(6, inverse=inverse)
    ours = GDN(6, inverse=inverse)
    assert set(ours.state_dict()) == set(ref.state_dict())
    with torch.no_grad():
        ref.gamma.add_(0.05 * torch.rand_like(ref.gamma))
        ref.beta.add_(0.1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 3, 4, requires_grad=True)
    y_ref, y = ref(x), ours(x)
    assert torch.allclose(y, y_ref, atol=1e-6)
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, ref.gamma, ref.beta])
    g = torch.autograd.grad(y.square().sum(), [x, ours.gamma, ours.beta])
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
