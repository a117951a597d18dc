"""The weights file layout: a FrozenModel to named arrays and back (docs/format.md 5.3).

The one place that knows array names, dtypes and the meta JSON. The freezer builds a
FrozenModel and calls to_arrays; the codec (weights.py) and unfreeze call from_arrays,
which also checks the exactness bound, so no model that could lose exactness is ever
returned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO

import numpy as np

from ..errors import LayoutError
from .arith import ACTIVATIONS, MAX_SYMBOL
from .filter import PostFilter
from .frozen import FrozenModel, check_exact
from .groups import GroupedScales, GroupHead
from .stack import Activation, Layer, Stack

FORMAT = "bbcodec-weights"
# Network family ids, written into .bbc headers. The meta "version" equals the family
# (a decoder that knows only version 1 refuses a family-2 file before reading it).
# 2: v9 + linear shortcut in each auto-encoder network; 3: 2 + latents coded in groups
# (groups.py) and, if the file has one, the post-loop filter (filter.py)
FAMILIES = {1: "bb8-v9", 2: "bb8-v9s", 3: "bb8-v9sg"}
FAMILY_V9, FAMILY_SKIP, FAMILY_GROUPS = 1, 2, 3
STACK_NAMES = tuple(ACTIVATIONS)  # "ga", "gs", "he", in file order
N_LAYERS = 3  # (activation, layer) pairs after the first layer of each stack
# Meta keys: those of the layout itself, and the float model's configuration; any other
# key is provenance (FrozenModel.info).
LAYOUT_KEYS = ("format", "version", "family", "name", "max_symbol")
CONFIG_KEYS = ("N", "M", "kernels", "skip")


def family_of(skip: bool) -> int:
    return FAMILY_SKIP if skip else FAMILY_V9


def read_meta(arrays: Mapping[str, np.ndarray]) -> dict:
    """The meta JSON of a weights file, checked for format and version."""
    try:
        meta = json.loads(bytes(np.asarray(arrays["meta"], dtype=np.uint8)).decode())
    except (KeyError, ValueError, TypeError) as e:
        raise LayoutError(f"no readable meta record ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LayoutError("not a bbcodec weights file")
    family = meta.get("family", FAMILY_V9)
    if type(family) is not int or family not in FAMILIES or meta.get("version") != family:
        raise LayoutError(f"unsupported weights version {meta.get('version')} / network family {family}")
    if meta.get("max_symbol", MAX_SYMBOL) != MAX_SYMBOL:
        raise LayoutError(f"max_symbol must be {MAX_SYMBOL}, the file says {meta.get('max_symbol')}")
    return meta


def to_arrays(model: FrozenModel) -> dict[str, np.ndarray]:
    """Every array of the weights file of model (integers as int16 / int64)."""
    out: dict[str, np.ndarray] = {}
    for name, st in model.stacks().items():
        out.update(_stack_arrays(name, st))
    for k in ("gain", "inv_gain", "log_gain", "scale_table", "scale_bounds"):
        out[k] = np.asarray(getattr(model, k), dtype=np.float64)
    if model.groups is not None:
        out.update(_context_arrays(model.groups))
    if model.postfilter is not None:
        out.update(_postfilter_arrays(model.postfilter))
    out["f_latent"] = np.array(model.f_latent)
    meta = {"format": FORMAT, "version": model.family, "family": model.family, "name": model.name,
            "max_symbol": MAX_SYMBOL, **model.config, **model.info}
    out["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    return out


def _stack_arrays(s: str, st: Stack) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {f"{s}.0.Wnb": st.W_nb.astype(np.int16), f"{s}.0.qbias": st.qbias.astype(np.int64),
           f"{s}.0.e": st.e0.astype(np.int64), f"{s}.0.fcur": np.array(st.f_cur)}
    if st.W_cur is not None:
        out[f"{s}.0.Wcur"] = st.W_cur.astype(np.int16)
    for i, (act, layer) in enumerate(zip(st.acts, st.layers, strict=True), start=1):
        p = f"{s}.{i}."
        out[p + "f"] = np.array([act.fa, act.fh])
        if act.G is not None and act.B is not None:
            out[p + "G"], out[p + "B"], out[p + "fg"] = act.G.astype(np.int64), act.B.astype(np.int64), np.array(act.fg)
        out[p + "k"] = np.array(layer.k)
        out[p + "W"], out[p + "b"], out[p + "e"] = layer.W.astype(np.int16), layer.b.astype(np.int64), layer.e
    if st.W_skip is not None:
        out[f"{s}.{N_LAYERS}.Wskip"] = st.W_skip.astype(np.int16)
    return out


def _layer_arrays(p: str, act: Activation, layer: Layer) -> dict[str, np.ndarray]:
    """One leaky (activation, layer) pair of a group head or the filter."""
    return {p + "f": np.array([act.fa, act.fh]), p + "W": layer.W.astype(np.int16),
            p + "b": layer.b.astype(np.int64), p + "e": np.asarray(layer.e, dtype=np.int64)}


def _context_arrays(cs: GroupedScales) -> dict[str, np.ndarray]:
    out = {"ctx.perm": cs.perm.astype(np.int64), "ctx.sizes": np.asarray(cs.sizes, dtype=np.int64)}
    for g, head in enumerate(cs.heads, start=1):
        p = f"ctx{g}."
        out.update({p + "0.Wh": head.W_h.astype(np.int16), p + "0.Ws": head.W_s.astype(np.int16),
                    p + "0.qbias": head.qbias.astype(np.int64), p + "0.e": head.e0.astype(np.int64)})
        for i, (act, layer) in enumerate(zip(head.acts, head.layers, strict=True), start=1):
            out.update(_layer_arrays(f"{p}{i}.", act, layer))
    return out


def _leaky_layers(arrays: dict[str, np.ndarray], p: str) -> tuple[list[Activation], list[Layer]]:
    """The (activation, layer) pairs p1., p2., ... of a group head or the filter."""
    acts, layers = [], []
    i = 1
    while f"{p}{i}.W" in arrays:
        q = f"{p}{i}."
        fa, fh = (int(v) for v in arrays[q + "f"])
        acts.append(Activation("leaky", fa, fh))
        layers.append(Layer(_f64(arrays, q + "W"), _f64(arrays, q + "b"), np.asarray(arrays[q + "e"], dtype=np.int64)))
        i += 1
    if not layers:
        raise LayoutError(f"{p} has no layers")
    return acts, layers


def _context(arrays: dict[str, np.ndarray]) -> GroupedScales:
    sizes = [int(v) for v in np.asarray(arrays["ctx.sizes"]).ravel()]
    heads = []
    for g in range(1, len(sizes)):
        p = f"ctx{g}."
        acts, layers = _leaky_layers(arrays, p)
        heads.append(GroupHead(_f64(arrays, p + "0.Wh"), _f64(arrays, p + "0.Ws"), _f64(arrays, p + "0.qbias"),
                               np.asarray(arrays[p + "0.e"], dtype=np.int64), acts, layers))
    return GroupedScales(np.asarray(arrays["ctx.perm"], dtype=np.int64).ravel(), sizes, heads)


def _postfilter_arrays(pf: PostFilter) -> dict[str, np.ndarray]:
    out = {"pf.P": np.array(pf.P), "pf.0.W": pf.W0.astype(np.int16), "pf.0.qbias": pf.qbias.astype(np.int64),
           "pf.0.e": pf.e0.astype(np.int64)}
    for i, (act, layer) in enumerate(zip(pf.acts, pf.layers, strict=True), start=1):
        out.update(_layer_arrays(f"pf.{i}.", act, layer))
    return out


def _postfilter(arrays: dict[str, np.ndarray]) -> PostFilter:
    acts, layers = _leaky_layers(arrays, "pf.")
    return PostFilter(int(arrays["pf.P"]), _f64(arrays, "pf.0.W"), _f64(arrays, "pf.0.qbias"),
                      np.asarray(arrays["pf.0.e"], dtype=np.int64), acts, layers)


def from_arrays(arrays: dict[str, np.ndarray]) -> FrozenModel:
    """The FrozenModel of a weights file's arrays; refuses files that could lose exactness."""
    meta = read_meta(arrays)
    try:
        stacks = {s: _stack(arrays, s) for s in STACK_NAMES}
        model = FrozenModel(
            name=str(meta.get("name", "")),
            family=int(meta.get("family", FAMILY_V9)),
            **stacks,
            gain=_f64(arrays, "gain"),
            inv_gain=_f64(arrays, "inv_gain"),
            log_gain=_f64(arrays, "log_gain"),
            scale_table=_f64(arrays, "scale_table"),
            scale_bounds=_f64(arrays, "scale_bounds"),
            f_latent=int(arrays["f_latent"]),
            config={k: meta[k] for k in CONFIG_KEYS if k in meta},
            info={k: v for k, v in meta.items() if k not in LAYOUT_KEYS + CONFIG_KEYS},
            groups=_context(arrays) if meta.get("family") == FAMILY_GROUPS else None,
            postfilter=_postfilter(arrays) if meta.get("family") == FAMILY_GROUPS and "pf.0.W" in arrays else None,
        )
    except KeyError as e:
        raise LayoutError(f"array {e} is missing") from None
    except (ValueError, TypeError) as e:  # arrays of shapes that do not fit together
        raise LayoutError(f"malformed arrays: {e}") from None
    skips = {model.ga.W_skip is not None, model.gs.W_skip is not None, model.family != FAMILY_V9}
    if len(skips) != 1 or model.he.W_skip is not None:
        raise LayoutError(f"network family {model.family} does not match the arrays of the file")
    try:
        check_exact(model)
    except (ValueError, IndexError) as e:
        raise LayoutError(str(e)) from None
    return model


def read(source: str | IO[bytes]) -> FrozenModel:
    """The FrozenModel of a weights .npz (a path or a binary file object); no pickles."""
    with np.load(source, allow_pickle=False) as z:
        return from_arrays({k: z[k] for k in z.files})


def _f64(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(arrays[name], dtype=np.float64)


def _stack(arrays: dict[str, np.ndarray], s: str) -> Stack:
    acts, layers = [], []
    kind = ACTIVATIONS[s]
    for i in range(1, N_LAYERS + 1):
        p = f"{s}.{i}."
        fa, fh = (int(v) for v in arrays[p + "f"])
        if kind == "leaky":
            acts.append(Activation(kind, fa, fh))
        else:
            acts.append(Activation(kind, fa, fh, _f64(arrays, p + "G"), _f64(arrays, p + "B"), int(arrays[p + "fg"])))
        k = int(arrays[p + "k"]) if p + "k" in arrays else 1
        layers.append(Layer(_f64(arrays, p + "W"), _f64(arrays, p + "b"), np.asarray(arrays[p + "e"], dtype=np.int64), k))
    cur, skip = f"{s}.0.Wcur", f"{s}.{N_LAYERS}.Wskip"
    return Stack(
        W_nb=_f64(arrays, f"{s}.0.Wnb"),
        W_cur=_f64(arrays, cur) if cur in arrays else None,
        qbias=_f64(arrays, f"{s}.0.qbias"),
        e0=np.asarray(arrays[f"{s}.0.e"], dtype=np.int64),
        f_cur=int(arrays[f"{s}.0.fcur"]),
        acts=acts,
        layers=layers,
        W_skip=_f64(arrays, skip) if skip in arrays else None,
    )
