"""What a richer encoder-fitted linear filter would save (figures, one run): classes and windows.

    python benchmarks/linear_probe.py DIR [--tune psnr] [--qualities 2,4,6] [--every 4]

Codes every --every-th image of DIR at each quality without the linear filter (and without
adaptive quantisation), then fits, by least squares as coding/linear.py does, filters
that the format does not have, and prints the saving of each in bits + lambda x SSE / 3
at the file's lambda (effort.rd_lambda; the encoder's own criterion), as a share of the
files' bytes, beside that of the filter the format has (the full 3x3 window of all
three colours):

- classes: every 4x4 pixels' class from the decoded luma (a decoder can compute it):
  activity, floor(log2(1 + sum of |vertical| + |horizontal| second differences / 8)) in
  0..K-1, and direction (horizontal where one sum is over twice the other, vertical,
  or neither); one filter per class, adjacent classes merged while a merge costs less
  than a byte, a few bytes for the class map;
- windows: per output colour, a 5x5 window of its own colour with the 3x3 (or the
  centre) of the other two, or a 5x5 diamond of all three.

A probe, not a coder: the savings are not BD-rates (the 3x3 filter's is about twice its
BD-rate). Use photos no network was trained on (the held-out tenth), never Kodak.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bbcodec.coding import linear, loop  # noqa: E402
from bbcodec.coding.aq import LUMA  # noqa: E402
from bbcodec.coding.effort import rd_lambda  # noqa: E402
from bbcodec.images import IMAGE_SUFFIXES  # noqa: E402
from bbcodec.model import quality as Q  # noqa: E402
from bbcodec.model import weights  # noqa: E402

OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]  # the 5x5 window
FULL3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
DIAMOND = [o for o in OFFSETS if abs(o[0]) + abs(o[1]) <= 2]


def window(own: list, cross: list) -> list[list[int]]:
    """Feature indices (offset x 3 + colour, then 75: the constant) of each output colour."""
    return [[OFFSETS.index(o) * 3 + c for c in range(3) for o in (own if c == out else cross)] + [75]
            for out in range(3)]


WINDOWS = {
    "3x3 all (the format's)": window(FULL3, FULL3),
    "5x5 own + 3x3 others": window(OFFSETS, FULL3),
    "5x5 own + centre of others": window(OFFSETS, [(0, 0)]),
    "5x5 diamond all": window(DIAMOND, DIAMOND),
}

CLASSES = (("4 activity classes", 4, False), ("6 activity classes", 6, False),
           ("4 activity x 3 direction classes", 4, True))  # (name, K, direction) of classes()


def normal_equations(src: np.ndarray, rec: np.ndarray, maps: list[tuple[np.ndarray, int]]
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each class map (HxW classes, how many): per class G (76, 76) and C (76, 3) of
    the centred 5x5 windows (and a 1) against the error; the windows made once for all maps."""
    height, width = rec.shape[:2]
    sums = [(np.zeros((n, 76, 76)), np.zeros((n, 76, 3))) for _, n in maps]
    x = np.clip(np.arange(-2, width + 2), 0, width - 1)
    for y0 in range(0, height, 32):
        y1 = min(height, y0 + 32)
        s = rec[np.clip(np.arange(y0 - 2, y1 + 2), 0, height - 1)][:, x].astype(np.float64) - 128
        X = np.stack([s[2 + dy: 2 + dy + y1 - y0, 2 + dx: 2 + dx + width, c].ravel()
                      for dy, dx in OFFSETS for c in range(3)] + [np.ones((y1 - y0) * width)], 1)
        Y = (src[y0:y1].astype(np.float64) - rec[y0:y1]).reshape(-1, 3)
        for (cls, _), (G, C) in zip(maps, sums, strict=True):
            k = cls[y0:y1].ravel()
            for c in np.unique(k):
                m = k == c
                G[c] += X[m].T @ X[m]
                C[c] += X[m].T @ Y[m]
    return sums


def best_cost(G: np.ndarray, C: np.ndarray, taps: list[list[int]], lam: float) -> float:
    """The lowest bits + lam x (change of SSE) / 3 of one filter over the shifts (0: none)."""
    if not G[75, 75]:
        return 0.0
    fits = [(ix, np.linalg.solve(G[np.ix_(ix, ix)] + 1e-3 * np.eye(len(ix)), C[ix, o])) for o, ix in enumerate(taps)]
    best = 0.0
    for shift in range(4, 15):
        change, coefs = 0.0, []
        for o, (ix, w) in enumerate(fits):
            coefs.append(np.rint(w * 2.0**shift))
            wq = coefs[-1] / 2.0**shift
            change += float(wq @ G[np.ix_(ix, ix)] @ wq - 2 * wq @ C[ix, o])
        q = np.concatenate(coefs).astype(np.int64)
        if q.any():
            best = min(best, 8 * linear.section_bytes(q[None]) + lam * change / 3)
    return best


def classes(rec: np.ndarray, K: int, direction: bool) -> tuple[np.ndarray, int]:
    """Each pixel's class (HxW) from its 4x4 pixels' decoded luma, and how many there are."""
    y = np.pad(rec.astype(np.float64) @ LUMA, 1, mode="edge")
    v = np.abs(2 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1])
    h = np.abs(2 * y[1:-1, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:])
    height, width = v.shape
    r, c = -(-height // 4), -(-width // 4)

    def sums(g: np.ndarray) -> np.ndarray:
        return np.pad(g, ((0, 4 * r - height), (0, 4 * c - width)), mode="edge").reshape(r, 4, c, 4).sum((1, 3))

    sv, sh = sums(v), sums(h)
    cls = np.clip(np.floor(np.log2(1 + (sv + sh) / 8)), 0, K - 1).astype(np.int64)
    n = K
    if direction:
        cls = cls * 3 + np.where(sh > 2 * sv, 1, np.where(sv > 2 * sh, 2, 0))
        n = 3 * K
    return np.repeat(np.repeat(cls, 4, 0), 4, 1)[:height, :width], n


def merged_cost(G: np.ndarray, C: np.ndarray, lam: float) -> float:
    """Classes' filters (3x3 all), adjacent classes merged greedily while a merge costs
    under 8 bits more, plus a class map of 1 + n / 4 bytes."""
    taps = WINDOWS["3x3 all (the format's)"]
    groups = [[i] for i in range(len(G))]
    cost = [best_cost(G[i], C[i], taps, lam) for i in range(len(G))]
    while len(groups) > 1:
        trials = [best_cost(G[groups[i] + groups[i + 1]].sum(0), C[groups[i] + groups[i + 1]].sum(0), taps, lam)
                  for i in range(len(groups) - 1)]
        d = [t - cost[i] - cost[i + 1] for i, t in enumerate(trials)]
        i = int(np.argmin(d))
        if d[i] > 8:
            break
        groups[i: i + 2], cost[i: i + 2] = [groups[i] + groups[i + 1]], [trials[i]]
    return sum(cost) + 8 * (1 + len(G) // 4)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--tune", default="psnr")
    p.add_argument("--qualities", default="2,4,6")
    p.add_argument("--every", type=int, default=4)
    a = p.parse_args(argv)
    from PIL import Image

    w = weights.default(a.tune)
    paths = sorted(f for f in a.folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:: a.every]
    if not paths:
        sys.exit(f"no images in {a.folder}")
    variants = [*WINDOWS, *(name for name, _, _ in CLASSES)]
    print(f"{w.name}, {len(paths)} images of {a.folder}: the saving in bits + lambda x SSE / 3, % of the files")
    for q in map(float, a.qualities.split(",")):
        lam, total, saved = rd_lambda(Q.to_x256(q)), 0, dict.fromkeys(variants, 0.0)
        for path in paths:
            with Image.open(path) as im:
                src = np.asarray(im.convert("RGB"))
            data, rec = loop.encode(src, q, w.model, bytes(8), threads=1, linear=False, aq=0.0)
            total += len(data)
            maps = [(np.zeros(rec.shape[:2], np.int64), 1)] + [classes(rec, K, d) for _, K, d in CLASSES]
            (G, C), *per_class = normal_equations(src, rec, maps)
            for name, taps in WINDOWS.items():
                saved[name] += best_cost(G[0], C[0], taps, lam) / 8
            for (name, _, _), sums in zip(CLASSES, per_class, strict=True):
                saved[name] += merged_cost(*sums, lam) / 8
        print(f"q{q:g} ({total} bytes): " + "; ".join(f"{k} {100 * v / total:+.2f} %" for k, v in saved.items()),
              flush=True)


if __name__ == "__main__":
    main()
