"""Network family 3: latents coded in groups (groups.py) and the post-loop filter
(postfilter.py), built on the shipped family-2 weights with small random heads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bbcodec.coding import format
from bbcodec.coding import loop as codec
from bbcodec.model import layout as model_io
from bbcodec.model import quality as Q
from bbcodec.model import weights as W
from bbcodec.model.arith import scale_indices
from bbcodec.model.frozen import Scales

torch = pytest.importorskip("torch")
from conftest import random_image  # noqa: E402

from bbcodec.train import filter as postfilter  # noqa: E402
from bbcodec.train import groups as context  # noqa: E402
from bbcodec.train.freeze import write_weights  # noqa: E402

SIZES = [2, 2, 4, 8, 16, 32, 64]


def _random_cache(model, n: int = 512, seed: int = 0) -> context.Cache:
    """Blocks with plausible statistics: hidden activations, log-scales and symbols."""
    g = torch.Generator().manual_seed(seed)
    C = model.he.layers[-1].W.shape[1]
    hidden = torch.randint(0, 2000, (n, C), generator=g, dtype=torch.int16)
    log_scale = torch.randn(n, model.M, generator=g) - 1
    sym = torch.round(torch.randn(n, model.M, generator=g) * torch.exp(log_scale)).to(torch.int16)
    return context.Cache(hidden, log_scale, sym, torch.randint(1, 9, (n,), generator=g))


def _context_net(model, seed: int = 0) -> context.GroupedScalesNet:
    torch.manual_seed(seed)
    cfg = context.ContextConfig(sizes=SIZES, K=16, f_h=model.he.acts[-1].fh)
    net = context.GroupedScalesNet(cfg, model.he.layers[-1].W.shape[1], torch.randperm(model.M))
    with torch.no_grad():  # heads that really change the scales (trained ones start at zero)
        for _, _, tail in net.heads:
            tail[-1].weight.normal_(0, 0.3)
            tail[-1].bias.normal_(0, 0.3)
    return net


def _filter_net(seed: int = 0, P: int = 2) -> postfilter.FilterNet:
    torch.manual_seed(seed)
    net = postfilter.FilterNet(postfilter.FilterConfig(P=P, K=8, depth=2))
    with torch.no_grad():
        net.tail[-1].weight.normal_(0, 0.05)
        net.tail[-1].bias.normal_(0, 0.01)
    return net


@pytest.fixture(scope="module")
def family3(family2_weights, tmp_path_factory):
    """(family-3 Weights with a filter, one without, the base weights) from random heads."""
    weights = family2_weights
    base = weights.model
    calib = _random_cache(base)
    images = [(random_image(40, 56, seed=s), random_image(40, 56, seed=s), s % 8 + 1) for s in range(4)]
    folder = tmp_path_factory.mktemp("f3")
    built = {}
    for name, pf in (("f3-pf", postfilter.freeze_filter(_filter_net(), images)), ("f3", None)):
        model = dataclasses.replace(base, name=name, family=model_io.FAMILY_GROUPS,
                                    groups=context.freeze_context(_context_net(base), calib), postfilter=pf)
        built[name] = W.load(write_weights(model, folder / name))
    return built["f3-pf"], built["f3"], weights


@pytest.mark.parametrize("quality", [1, 2.5, 8])
def test_round_trip_with_groups_and_filter(family3, kodak_crop, quality):
    w3 = family3[0]
    data, rec = codec.encode(kodak_crop, quality, w3.model, w3.prefix)
    header, payload = format.unpack(data)
    assert header.model_id == 3
    assert np.array_equal(codec.decode(header, payload, w3.model), rec)


def test_groups_change_the_rate_only(family3, kodak_crop):
    """Without the filter, the decoded image is the base model's to the bit, and only
    the payload differs (the same symbols under other scales)."""
    _, w3, base = family3
    d3, r3 = codec.encode(kodak_crop, 3, w3.model, w3.prefix)
    d2, r2 = codec.encode(kodak_crop, 3, base.model, base.prefix)
    assert np.array_equal(r3, r2)
    assert format.unpack(d3)[1] != format.unpack(d2)[1]


def test_filter_changes_the_image_and_is_in_the_digest(family3, kodak_crop):
    w3pf, w3, _ = family3
    _, with_filter = codec.encode(kodak_crop, 3, w3pf.model, w3pf.prefix)
    _, without = codec.encode(kodak_crop, 3, w3.model, w3.prefix)
    assert not np.array_equal(with_filter, without)
    data, _ = codec.encode(kodak_crop, 3, w3pf.model, w3pf.prefix)
    header, payload = format.unpack(data)
    wrong = dataclasses.replace(w3pf, model=dataclasses.replace(w3pf.model, postfilter=None))
    with pytest.raises(codec.DecodeError, match="digest"):
        codec.decode(header, payload, wrong.model)


def test_grayscale_and_odd_sizes(family3):
    w3 = family3[0]
    for img in (random_image(9, 17, seed=1)[:, :, 0].copy(), random_image(1, 1, seed=2), random_image(13, 5, seed=4)):
        data, rec = codec.encode(img, 4, w3.model, w3.prefix)
        assert np.array_equal(codec.decode(*format.unpack(data), w3.model), rec)


def test_integer_heads_follow_the_float_heads(family2_weights):
    """The integer correction is the float one up to the rounding of its activations."""
    base = family2_weights.model
    cache = _random_cache(base, n=256, seed=5)
    net = _context_net(base)
    cs = context.freeze_context(net, cache)
    with torch.no_grad():
        ref = net.double()(cache.hidden, cache.log_scale.double(), cache.sym, cache.q).numpy()
    qp = dataclasses.replace(base, groups=cs).params_at(Q.to_x256(3))
    rows = np.nonzero(cache.q.numpy() == 3)[0]
    sym = cache.sym.numpy()[rows].astype(np.float64)
    ls = cache.log_scale.numpy()[rows].astype(np.float64)
    start = 0
    for g, cols in enumerate(cs.columns()):
        if g:
            hw = cs.hidden_products(cache.hidden.numpy()[rows].astype(np.float64))
            got = ls[:, cols] + cs.correction(g, hw, sym, qp.heads_bias)
            assert np.abs(got - ref[rows, start : start + len(cols)]).max() < 0.02
        start += len(cols)


def test_scale_groups_of_family_2_is_one_group(family2_weights):
    model = family2_weights.model
    ls = np.random.default_rng(0).normal(size=(5, model.M))
    groups = list(model.scale_groups(Scales(ls), np.zeros((5, model.M)), model.params_at(512)))
    assert len(groups) == 1 and groups[0][0] == slice(None)
    assert np.array_equal(groups[0][1], scale_indices(model.scale_bounds, ls))


@pytest.mark.parametrize("P", [1, 2, 4, 8])
def test_filter_strips_give_the_same_image_and_follow_the_float_filter(P):
    net = _filter_net(seed=P, P=P)
    img = random_image(37, 45, seed=P)
    pf = postfilter.freeze_filter(net, [(img, img, 2)])
    bias = np.rint(pf.qbias[1])
    whole = pf.apply(img, bias, strip_cells=10**6)
    assert np.array_equal(whole, pf.reference_apply(img, bias))  # pixel patches = docs/format.md 5.6's cells
    assert np.array_equal(pf.apply(img[:1, :1], bias), pf.reference_apply(img[:1, :1], bias))
    for cells in (1, 7, 100):
        assert np.array_equal(pf.apply(img, bias, strip_cells=cells), whole)
        for k in (2, 3, 5, 40):  # bands of cell rows (one per process), some of them empty
            out = np.zeros_like(img)
            for i in range(k):
                assert pf.apply(img, bias, strip_cells=cells, out=out, band=(i, k)) is out
            assert np.array_equal(out, whole)
    ref = postfilter.apply_float(net.float(), img, 2).astype(int)
    assert np.abs(ref - whole.astype(int)).max() <= 1
    assert np.mean(ref != whole) < 0.05


def test_weights_layout_round_trip_and_refusals(family3):
    w3pf = family3[0]
    arrays = model_io.to_arrays(w3pf.model)
    again = model_io.to_arrays(model_io.from_arrays(arrays))
    assert arrays.keys() == again.keys()
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    bad_perm = dict(arrays, **{"ctx.perm": np.zeros_like(arrays["ctx.perm"])})
    with pytest.raises(model_io.LayoutError, match="partition"):
        model_io.from_arrays(bad_perm)
    M = int(arrays["ctx.sizes"].sum())
    one_group = {k: v for k, v in arrays.items() if not k.startswith("ctx") or k == "ctx.perm"}
    one_group["ctx.sizes"] = np.array([M])  # no heads: family 2's coding, not a family-3 file
    with pytest.raises(model_io.LayoutError, match="two coding groups"):
        model_io.from_arrays(one_group)
    huge = dict(arrays, **{"ctx1.0.qbias": np.full_like(arrays["ctx1.0.qbias"], 2**53)})
    with pytest.raises(model_io.LayoutError, match="exact"):
        model_io.from_arrays(huge)
    missing = {k: v for k, v in arrays.items() if k != "ctx2.0.Wh"}
    with pytest.raises(model_io.LayoutError, match="missing"):
        model_io.from_arrays(missing)
    huge_filter = dict(arrays, **{"pf.1.b": np.full_like(arrays["pf.1.b"], 2**53)})
    with pytest.raises(model_io.LayoutError, match="exact"):
        model_io.from_arrays(huge_filter)
    wrong_shape = dict(arrays, **{"pf.P": np.array(3)})
    with pytest.raises(model_io.LayoutError, match="cell size"):
        model_io.from_arrays(wrong_shape)


def test_one_command_builds_family_3_on_shipped_weights(family2_weights, tmp_path):
    """bbcodec.train.family3 on ten small photos: caches, trains both parts a few steps,
    freezes, registers a family-3 file that codes and decodes."""
    from PIL import Image

    from bbcodec.train import family3

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(10):
        Image.fromarray(random_image(96, 104, seed=i)).save(data / f"grp_{i:02d}.png")
    out = tmp_path / "w"
    family3.main(["--base", str(family2_weights.path), "--data", str(data), "--work", str(tmp_path / "work"),
                  "--name", "f3-test", "--out", str(out), "--context-steps", "3", "--filter-steps", "3"])
    assert len(list((tmp_path / "work" / "cache").glob("*.npz"))) == 9 * 2
    assert len(list((tmp_path / "work" / "cache-val").glob("*.npz"))) == 8
    (path,) = out.glob("f3-test-*.npz")
    assert path.name in (out / "SHA256SUMS").read_text()
    w3 = W.load(path)
    assert w3.model.family == 3 and w3.model.postfilter is not None
    img = random_image(30, 50, seed=11)
    data_, rec = codec.encode(img, 3, w3.model, w3.prefix)
    assert np.array_equal(codec.decode(*format.unpack(data_), w3.model), rec)


def test_default_weights_are_family_3_with_a_filter(weights):
    """What ships: bb8-n192m128s3gf, groups 2/2/4/8/16/32/64 and a 2x2-cell filter."""
    m = weights.model
    assert m.family == 3 and m.groups is not None and m.postfilter is not None
    assert m.groups.sizes == [2, 2, 4, 8, 16, 32, 64] and m.postfilter.P == 2


def test_warm_started_heads_keep_their_order_and_learn(family2_weights):
    """Heads continued on a fine-tuned base keep their channel order (not the cache's) and
    lower the rate of the blocks they train on; heads of other groups are refused."""
    base = family2_weights.model
    cache = _random_cache(base, n=512, seed=7)
    init = _context_net(base, seed=3)
    table = context.table_tensor(base.scale_table)
    cfg = context.ContextConfig(sizes=SIZES, K=16, f_h=base.he.acts[-1].fh + 1)
    net = context.train(cache, cfg, steps=60, batch=256, lr=1e-2, log_every=0, init=init)
    assert torch.equal(net.perm, init.perm) and not torch.equal(net.perm, context.channel_order(cache))
    assert net.cfg.f_h == cfg.f_h and init.cfg.f_h == cfg.f_h - 1  # the initial net is not changed
    before = sum(b for _, _, b in context.evaluate(init, cache, table))
    after = sum(b for _, _, b in context.evaluate(net, cache, table))
    assert after < before
    other = dataclasses.replace(cfg, sizes=[2, 2, 4, 8, 16, 32, 32, 32])
    with pytest.raises(SystemExit, match="do not fit"):
        context.train(cache, other, steps=1, init=init)


def test_an_unfrozen_filter_filters_as_the_integer_one(weights, kodak_crop):
    """The shipped filter back in floats (to continue it on new decodes) filters a decoded
    image as the integer filter does, to a level, and freezes back to nearly itself."""
    pf = weights.model.postfilter
    net = postfilter.unfreeze_filter(pf)
    _, unfiltered = codec.encode(kodak_crop, 2, dataclasses.replace(weights.model, postfilter=None), weights.prefix)
    rec = pf.apply(unfiltered, np.rint(pf.qbias[1]))
    assert np.array_equal(rec, codec.encode(kodak_crop, 2, weights.model, weights.prefix)[1])
    assert not np.array_equal(unfiltered, rec)  # the filter changes the image
    ref = postfilter.apply_float(net, unfiltered, 2).astype(int)
    assert np.abs(ref - rec.astype(int)).max() <= 1 and np.mean(ref != rec) < 0.05
    again = postfilter.freeze_filter(postfilter.unfreeze_filter(pf), [(unfiltered, kodak_crop, 2)])
    assert np.abs(again.apply(unfiltered, np.rint(again.qbias[1])).astype(int) - rec.astype(int)).max() <= 1


def test_the_filter_of_a_weights_file_is_loaded_to_continue(weights, family2_weights):
    net = postfilter.load_any(weights.path)
    pf = weights.model.postfilter
    assert (net.cfg.P, net.cfg.K, net.cfg.depth) == (pf.P, pf.W0.shape[0], len(pf.layers))
    with pytest.raises(SystemExit, match="no post-loop filter"):
        postfilter.load_any(family2_weights.path)


def test_warm_started_filter_continues_from_its_weights():
    init = _filter_net(seed=4)
    img = random_image(96, 96, seed=4).copy()  # writable, as the cached decodes are
    pairs = [(img, img, 3)]
    same = postfilter.train(pairs, postfilter.FilterConfig(P=2, K=8), steps=0, init=init)
    for a, b in zip(same.parameters(), init.parameters(), strict=True):
        assert torch.equal(a, b) and a is not b
    cont = postfilter.train(pairs, postfilter.FilterConfig(P=2, K=8), steps=20, lr=1e-2, log_every=0, init=init)
    x = postfilter.to_tensor(img)[None]
    q = torch.tensor([3])
    with torch.no_grad():  # the pair's target is its own input: the filter learns to leave it alone
        err0 = float(((init(x, q) - x) ** 2).mean())
        err1 = float(((cont(x, q) - x) ** 2).mean())
    assert err1 < err0


def test_perceptual_filter_training_lowers_the_perceptual_distortion():
    """--filter-perceptual: the filter learns on train.distortion's mix with SSIMULACRA2
    (the `ssimulacra2` score of its output rises), not on MSE alone."""
    rng = np.random.default_rng(5)
    org = random_image(80, 80, seed=5).copy()
    rec = np.clip(org.astype(int) + rng.integers(-12, 13, org.shape), 0, 255).astype(np.uint8)
    pairs = [(rec, org, 2)]
    init = _filter_net(seed=5)
    net = postfilter.train(pairs, postfilter.FilterConfig(P=2, K=8), steps=30, batch=2, crop=80, lr=1e-2,
                           log_every=0, init=init, perceptual=0.9)
    x, y, q = postfilter.to_tensor(rec)[None], postfilter.to_tensor(org)[None], torch.tensor([2])
    with torch.no_grad():
        before = float(postfilter._loss(init(x, q), y, 0.9))
        after = float(postfilter._loss(net(x, q), y, 0.9))
    assert after < before
    inner = (slice(8, -8), slice(8, -8))
    s0 = postfilter.ssimulacra2(org[inner], postfilter.apply_float(init, rec, 2)[inner])
    s1 = postfilter.ssimulacra2(org[inner], postfilter.apply_float(net, rec, 2)[inner])
    assert s1 > s0
    mse_only = postfilter.train(pairs, postfilter.FilterConfig(P=2, K=8), steps=30, batch=2, crop=80, lr=1e-2,
                                log_every=0, init=init)
    assert not torch.equal(mse_only.tail[-1].weight, net.tail[-1].weight)  # the option is not ignored


def test_the_fast_heads_give_the_reference_heads_bits(weights):
    """groups.FastHead (rescalings folded into the integers) equals GroupHead.run, the
    arithmetic of docs/format.md 5.5, on the shipped heads; with hidden features and
    symbols up to their bounds too, where the activations saturate."""
    cs = weights.model.groups
    rng = np.random.default_rng(3)
    for scale in (300, 32767):
        hidden = np.rint(rng.uniform(-scale, scale, size=(40, cs.heads[0].W_h.shape[1])))
        sym = np.rint(rng.uniform(-1, 1, size=(40, weights.model.M)) * (5 if scale < 1000 else 2047))
        hw_fast = cs.hidden_products(hidden)
        biases = [np.rint(head.qbias[g % 8]) for g, head in enumerate(cs.heads, start=1)]
        heads_bias = cs.heads_bias(biases)
        for g, (head, bias) in enumerate(zip(cs.heads, biases, strict=True), start=1):
            start = int(np.sum(cs.sizes[:g]))
            a = np.abs(sym[:, cs.perm[:start]])
            ref = head.run(hidden @ head.W_h.T, a, bias)
            assert np.array_equal(cs.correction(g, hw_fast, sym, heads_bias), ref)
            assert np.array_equal(head.fast.run(hw_fast[g - 1], a, bias), ref)


def test_the_fast_post_filter_gives_the_reference_residuals(weights, kodak_crop):
    """PostFilter.fast_residual (rescalings folded, windows as pixel patches) equals
    residual, docs/format.md 5.6's arithmetic, on the shipped filter: for real-looking
    windows and at the extremes; and apply equals reference_apply on a Kodak crop."""
    from bbcodec.model.filter import patch_order, residual_order

    pf = weights.model.postfilter
    rng = np.random.default_rng(4)
    for lo, hi in ((-20, 20), (-128, 127)):
        win = np.rint(rng.uniform(lo, hi, size=(300, pf.W0.shape[1])))
        for q in (0, 3, 7):
            bias = np.rint(pf.qbias[q])
            ref = pf.residual(win, bias)
            assert np.array_equal(pf.fast_residual(win[:, patch_order(pf.P)], bias), ref[:, residual_order(pf.P)])
    for img in (kodak_crop, kodak_crop[:45, :61]):
        for q in (0, 7):
            bias = np.rint(pf.qbias[q])
            assert np.array_equal(pf.apply(img, bias), pf.reference_apply(img, bias))


def test_the_decoders_group_loop_reads_the_encoders_scale_indices(weights):
    """exact.decode_symbols (groups in coding order, GroupedScales.decode) asks for each
    group's symbols with the indices that scale_groups gives the encoder for them."""
    m = weights.model
    qp = m.params_at(Q.to_x256(2.5))
    rng = np.random.default_rng(6)
    hidden = np.rint(rng.uniform(-400, 400, size=(9, m.he.layers[-1].W.shape[1])))
    scales = Scales(rng.normal(-1, 2, size=(9, m.M)), hidden)
    sym = np.rint(rng.normal(0, 3, size=(9, m.M)))
    want = [idx for _, idx in m.scale_groups(scales, sym, qp)]
    got = []

    def read(idx: np.ndarray, out: np.ndarray) -> None:
        g = len(got)
        got.append(idx)
        assert not out.any()
        out[...] = sym[:, m.group_columns()[g]]

    assert np.array_equal(m.decode_symbols(scales, qp, read), sym)
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
