"""Grow a trained model to continue training from it: more latents (M), or wider
hidden layers (N), each starting from the function the smaller model computes.

A model with too few latents per block cannot reach high qualities: with M=48 the
un-quantised auto-encoder of our first shipped model tops out near 33.7 dB on Kodak,
while 48 principal components of 8x8x3 blocks already give 36 dB and 96 give 49 dB.
Growing M keeps everything the model has learnt: the old latents keep their weights,
the new ones start at a quarter of the encoder's weight scale (enough to survive rounding at
high qualities and receive gradients), a near-zero decoder column, and an entropy model
that expects them small (zero mean, scale NEW_LOG_SCALE before the gain): otherwise the
first steps pay several bits per pixel for latents that carry nothing yet.
"""

from __future__ import annotations

import re

import torch

from ..nn.networks import BlockCodecNet, ModelConfig

# Parameters whose first or second dimension indexes latents, and how.
_ENC_OUT = ("g_a.convs.2.weight", "g_a.convs.2.bias")  # rows = latents
_DEC_IN = "g_s.cur.weight"  # columns = latents
_ENTROPY_OUT = ("h_e.convs.2.weight", "h_e.convs.2.bias")  # rows = [means | log-scales]
_GAINS = ("log_gain", "log_inv_gain")  # (qualities, latents)
_SKIPS = (("g_a.skip.weight", 0), ("g_s.skip.weight", 1))  # linear shortcuts: (name, latent axis)
NEW_LOG_SCALE = -2.0  # log of the new latents' initial scale: ~0.5 after the q8 gain


def grow_latents(state: dict[str, torch.Tensor], m_new: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a copy of a BlockCodecNet state dict with m_new latents (>= the old M)."""
    m_old = state["log_gain"].shape[1]
    if m_new < m_old:
        raise ValueError(f"cannot shrink latents from {m_old} to {m_new}")
    out = dict(state)
    if m_new == m_old:
        return out
    extra = m_new - m_old
    gen = torch.Generator().manual_seed(seed)

    def randn_like_rows(t: torch.Tensor, n: int, std: float) -> torch.Tensor:
        return torch.randn((n, *t.shape[1:]), generator=gen, dtype=t.dtype) * std

    w, b = (state[k] for k in _ENC_OUT)
    out[_ENC_OUT[0]] = torch.cat([w, randn_like_rows(w, extra, 0.25 * w.std().item())])
    out[_ENC_OUT[1]] = torch.cat([b, torch.zeros(extra, dtype=b.dtype)])

    d = state[_DEC_IN]
    new_cols = torch.randn((d.shape[0], extra, *d.shape[2:]), generator=gen, dtype=d.dtype)
    out[_DEC_IN] = torch.cat([d, new_cols * 0.01 * d.std().item()], dim=1)

    w, b = (state[k] for k in _ENTROPY_OUT)
    (wm, ws), (bm, bs) = w.chunk(2), b.chunk(2)
    zeros_w = torch.zeros((extra, *w.shape[1:]), dtype=w.dtype)
    out[_ENTROPY_OUT[0]] = torch.cat([wm, zeros_w, ws, zeros_w])
    out[_ENTROPY_OUT[1]] = torch.cat(
        [bm, torch.zeros(extra, dtype=b.dtype), bs, torch.full((extra,), NEW_LOG_SCALE, dtype=b.dtype)]
    )

    for k, axis in _SKIPS:  # new latents start outside the shortcuts
        if k in state:
            s = state[k]
            shape = list(s.shape)
            shape[axis] = extra
            out[k] = torch.cat([s, torch.zeros(shape, dtype=s.dtype)], dim=axis)

    for k in _GAINS:
        g = state[k]
        out[k] = torch.cat([g, g.mean(dim=1, keepdim=True).expand(-1, extra)], dim=1)
    return out


def grow_width(state: dict[str, torch.Tensor], cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A BlockCodecNet state dict of config cfg (same M and kernels, hidden widths at
    least as large) that computes exactly what `state` computes.

    Every tensor keeps its old values in its leading slice. A new hidden unit gets fresh
    incoming weights (the default initialisation), a GDN that ignores the old units and
    is ignored by them (gamma zero across, beta 1), and zero outgoing weights: it adds
    nothing until training gives it weight, and its outgoing weights get gradient at once
    because its activation is not zero.
    """
    torch.manual_seed(seed)
    fresh = BlockCodecNet(cfg).state_dict()
    if unknown := sorted(set(state) - set(fresh)):
        raise ValueError(f"unexpected parameters {unknown[:3]}")
    out = {}
    for k, new in fresh.items():
        if k not in state and ".skip." in k:  # a shortcut the old model lacks: zero, as built
            out[k] = new.clone()
            continue
        if k not in state:
            raise ValueError(f"{k} is missing (another kernel layout?)")
        old = state[k]
        if old.shape == new.shape:
            out[k] = old.clone()
            continue
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape, strict=True)):
            raise ValueError(f"{k}: cannot grow {tuple(old.shape)} to {tuple(new.shape)}")
        t = new.clone()
        if _CONSUMER.search(k) and old.shape[1] < new.shape[1]:
            t[:, old.shape[1]:] = 0  # new inputs of a layer: zero outgoing weights of new units
        t[tuple(slice(0, n) for n in old.shape)] = old
        out[k] = t
    return out


# The weights of a layer that reads hidden units: its input columns are their outgoing weights.
_CONSUMER = re.compile(r"\.convs\.\d+\.weight$")
