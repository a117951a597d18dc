"""Rate-distortion optimised choice of symbols: what efforts above 1 do (effort.py).

The plain encoder rounds each latent to the nearest symbol around its predicted mean.
Here each wavefront's blocks choose their symbols among a few candidates:

* the plain rounding;
* rate-distortion optimised rounding (RDOQ) at one or more lambdas: every symbol whose
  latent lies near a rounding boundary is tried alone at its other rounding, judged by
  the block's exact integer synthesis and the bits the coder will spend (the grouped
  scales included), and every change that lowers bits + lambda x SSE is kept; `passes`
  rounds, each from the last one's result.

A candidate's cost is its own plus that of the blocks that read it as a neighbour (right,
below, below-left, below-right: `lookahead` of them), each coded by the plain rule
against the candidate's reconstruction, with the blocks already coded and this
wavefront's others at their plain rounding. Blocks below read blocks of later wavefronts
too: for them the image is first coded at effort 1, and that reconstruction (the proxy)
stands in for blocks not yet coded. Judging a block alone makes it coarser than the
blocks predicted from it can afford (measured: no better than effort 1); the look-ahead
is what makes the choice pay.

All decisions are the encoder's: the file is an ordinary file of the same weights.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import EffortError
from ..model import blocks
from ..model.frozen import FrozenModel, Neighbours, QualityParams, Scales
from .effort import Level, rd_lambda

# Zero symbols are RDOQ candidates only if |latent| > ZERO_FROM (and near a boundary,
# |latent - symbol| > 1/2 - Level.boundary, as every candidate).
ZERO_FROM = 0.3
MAX_BITS_SYMBOL = 512  # the bits table's range of |symbol|; larger ones cost as this one
# (dependent row offset, column offset, slot of the judged block among its neighbours
# [UL, U, UR, L]), in the order the look-ahead takes them.
DEPENDENTS = ((0, 1, 3), (1, 0, 1), (1, -1, 2), (1, 1, 0))


def check_model(model: object) -> FrozenModel:
    """model, if efforts above 1 can use it: they judge blocks out of coding order, from
    pixels alone, so integer models whose only neighbour-reading layer is the first
    (kernels 3,1,1,1, as all shipped); else EffortError."""
    if not isinstance(model, FrozenModel) or 3 in tuple(model.config.get("kernels", ()))[1:]:
        raise EffortError("efforts above 1 need integer weights whose hidden layers read no neighbours")
    return model


def bits_table(scale_table: np.ndarray) -> np.ndarray:
    """bits[i, a]: -log2 P(|symbol| = a) under scale i's unit-bin Gaussian, for one sign
    (what the range coder spends, to a fraction of a percent)."""
    a = np.arange(MAX_BITS_SYMBOL + 1, dtype=np.float64)[None, :]
    s = np.asarray(scale_table, dtype=np.float64)[:, None] * math.sqrt(2.0)
    erfc = np.frompyfunc(math.erfc, 1, 1)
    p = (erfc((a - 0.5) / s) - erfc((a + 0.5) / s)).astype(np.float64) / 2
    return -np.log2(np.maximum(p, 1e-12))


class Chooser:
    """Picks each wavefront's symbols at one effort level (see the module docstring).

    Called by the encoder loop (coding/loop.py) in wavefront order with what the plain encoder computed. Its
    canvas holds the coded blocks and, beyond them, the proxy (the effort-1 canvas, which
    it takes over and overwrites; needed only when level.needs_proxy). Flat blocks
    (blocks.Flat) are on it from the start, as they are decoded, and cost nothing: the
    look-ahead leaves them out. With blocks of several qualities (quality: each block's
    quality_x256, format version 6), each block is judged at its own quality's lambda and
    parameters (qp: the wavefront's, per block; rows(...) of it for subsets)."""

    def __init__(self, model: FrozenModel, qp: QualityParams, grid: np.ndarray, proxy: np.ndarray | None,
                 level: Level, flat: blocks.Flat | None = None, quality: np.ndarray | None = None) -> None:
        self.model, self.qp, self.grid, self.level, self.quality = model, qp, grid, level, quality
        self.rows, self.cols = grid.shape[0], grid.shape[2]
        self.canvas = blocks.new_canvas(self.rows, self.cols) if proxy is None else proxy
        self.flat = None if flat is None else flat.mask
        if flat is not None:
            r, c = np.nonzero(flat.mask)
            self.canvas[r + 1, c + 1] = flat.values(r, c)
        self.lambdas: dict[int, float] = {}
        self.bits = bits_table(model.scale_table)
        self.L = model.max_symbol

    def params(self, r: np.ndarray, c: np.ndarray) -> QualityParams:
        """The parameters of blocks (r, c): the image's quality, or each block's."""
        return self.qp if self.quality is None else self.model.block_params(self.qp, self.quality[r, c])

    def lam(self, qp: QualityParams) -> float | np.ndarray:
        """level.lam x the training lambda of the quality (per block: a column)."""
        if qp.shift is None:
            return self.level.lam * rd_lambda(int(qp.quality_x256))
        qx = np.asarray(qp.quality_x256)
        for q in np.unique(qx).tolist():
            if q not in self.lambdas:
                self.lambdas[q] = self.level.lam * rd_lambda(q)
        return np.array([self.lambdas[q] for q in qx.tolist()])

    def _given(self, name: str, product: np.ndarray, qp: QualityParams) -> Neighbours:
        """Neighbours of one stack from its unscaled neighbour product (shared by candidates)."""
        return self.model.from_products({name: product}, qp)

    def cost_bits(self, scales: Scales, sym: np.ndarray, qp: QualityParams) -> np.ndarray:
        """Bits of each row of symbols (the coder's grouped scales)."""
        total = np.zeros(len(sym))
        mag = np.minimum(np.abs(sym), MAX_BITS_SYMBOL).astype(np.int64)
        for cols, idx in self.model.scale_groups(scales, sym, qp):
            total += self.bits[idx, mag[:, cols]].sum(axis=1)
        return total

    def cost(self, scales: Scales, sym: np.ndarray, rec: np.ndarray, blk: np.ndarray, qp: QualityParams
             ) -> np.ndarray:
        return self.cost_bits(scales, sym, qp) + self.lam(qp) * ((rec - blk) ** 2).sum(axis=1) / 3.0

    def rdoq(self, res: np.ndarray, s0: np.ndarray, rec0: np.ndarray, mean: np.ndarray, p_gs: np.ndarray,
             scales: Scales, blk: np.ndarray, qp: QualityParams) -> list[np.ndarray]:
        """One RDOQ candidate per multiplier m: s0 with every single-symbol change kept that
        lowers the block's own bits + m x lambda x SSE (then again from there, `passes`);
        p_gs: the blocks' neighbour product of the synthesis' first layer."""
        near = np.abs(res - s0) > 0.5 - self.level.boundary
        b, ch = np.nonzero(near & ((s0 != 0) | (np.abs(res) > ZERO_FROM)))
        if len(b) == 0:
            return [s0] * len(self.level.rdoq)
        # The other rounding of each candidate symbol (toward the latent's side).
        alt = np.clip(s0[b, ch] + np.where(res[b, ch] > s0[b, ch], 1.0, -1.0), -self.L, self.L)
        first = self._changes(s0, rec0, b, ch, alt, mean, p_gs, scales, blk, qp)  # shared by every m
        lam = self.lam(qp.rows(b))
        out = []
        for m in self.level.rdoq:
            s, rec, (new, d_bits, d_sse) = s0, rec0, first
            for round_ in range(self.level.passes):
                if round_:
                    new, d_bits, d_sse = self._changes(s, rec, b, ch, np.where(s[b, ch] == alt, s0[b, ch], alt),
                                                       mean, p_gs, scales, blk, qp)
                keep = d_bits + m * lam * d_sse < 0
                if not keep.any():
                    break
                s = s.copy()
                s[b[keep], ch[keep]] = new[keep]
                if round_ + 1 < self.level.passes:
                    rec = self.model.synthesise(s, mean, self._given("gs", p_gs, qp), qp)
            out.append(s)
        return out

    def _changes(self, s: np.ndarray, rec: np.ndarray, b: np.ndarray, ch: np.ndarray, new: np.ndarray,
                 mean: np.ndarray, p_gs: np.ndarray, scales: Scales, blk: np.ndarray, qp: QualityParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(new, change of bits, change of SSE / 3) of each single change s[b, ch] -> new
        against s, whose reconstruction is rec."""
        trial = s[b]
        trial[np.arange(len(b)), ch] = new
        sub, qb = scales.rows(b), qp.rows(b)
        trial_rec = self.model.synthesise(trial, mean[b], self._given("gs", p_gs[b], qb), qb)
        d_bits = self.cost_bits(sub, trial, qb) - self.cost_bits(scales, s, qp)[b]
        d_sse = (((trial_rec - blk[b]) ** 2).sum(axis=1) - ((rec - blk) ** 2).sum(axis=1)[b]) / 3.0
        return new, d_bits, d_sse

    def __call__(self, r: np.ndarray, c: np.ndarray, nb: np.ndarray, mean: np.ndarray, scales: Scales,
                 y: np.ndarray, qp: QualityParams) -> tuple[np.ndarray, np.ndarray]:
        """(symbols, their reconstruction) of the wavefront's blocks (r, c), whose plain
        latents are y, at qp (params(r, c))."""
        model = self.model
        n = len(r)
        blk = blocks.block_rows(self.grid, r, c)
        res = y - mean
        s0 = np.clip(np.rint(res), -self.L, self.L)
        if model.groups is not None and scales.hidden is not None:  # the heads' products, once
            scales = Scales(scales.log_scale, scales.hidden, model.groups.products(scales.hidden))
        p_gs = nb @ model.gs.W_nb.T  # the synthesis' first-layer product, shared by every candidate
        rec0 = model.synthesise(s0, mean, self._given("gs", p_gs, qp), qp)
        cands = [s0, *self.rdoq(res, s0, rec0, mean, p_gs, scales, blk, qp)]
        differs = np.zeros(n, dtype=bool)
        for s in cands[1:]:
            differs |= (s != s0).any(axis=1)
        self.canvas[r + 1, c + 1] = rec0
        if not differs.any():
            return s0, rec0
        # Only blocks with a real choice go on; K candidates each.
        i = np.nonzero(differs)[0]
        K, m = len(cands), len(i)
        sym = np.concatenate([s[i] for s in cands])
        tiled = qp.rows(np.tile(i, K - 1))
        rec = np.concatenate([rec0[i], model.synthesise(sym[m:], np.tile(mean[i], (K - 1, 1)),
                                                          self._given("gs", np.tile(p_gs[i], (K - 1, 1)), tiled),
                                                          tiled)])
        sc = scales.rows(np.tile(i, K))
        J = self.cost(sc, sym, rec, np.tile(blk[i], (K, 1)), qp.rows(np.tile(i, K))).reshape(K, m)
        for dr, dc, slot in DEPENDENTS[: self.level.lookahead]:
            rr, cc = r[i] + dr, c[i] + dc
            ok = (rr < self.rows) & (cc >= 0) & (cc < self.cols)
            if self.flat is not None:
                ok[ok] = ~self.flat[rr[ok], cc[ok]]
            if not ok.any():
                continue
            J[:, ok] += self.dependents(rr[ok], cc[ok], slot, rec.reshape(K, m, -1)[:, ok]).reshape(K, -1)
        k = np.argmin(J, axis=0)
        chosen, chosen_rec = s0.copy(), rec0.copy()
        chosen[i] = sym.reshape(K, m, -1)[k, np.arange(m)]
        chosen_rec[i] = rec.reshape(K, m, -1)[k, np.arange(m)]
        self.canvas[r[i] + 1, c[i] + 1] = chosen_rec[i]
        return chosen, chosen_rec

    def dependents(self, rr: np.ndarray, cc: np.ndarray, slot: int, recs: np.ndarray) -> np.ndarray:
        """Cost of blocks (rr, cc), coded by the plain rule, with the neighbour in `slot`
        replaced by each candidate reconstruction (recs: (K, len(rr), 192)) -> (K * len(rr),)."""
        K = recs.shape[0]
        nb = blocks.gather_neighbours(self.canvas, rr, cc)
        cols = slice(slot * blocks.BLOCK_CH, (slot + 1) * blocks.BLOCK_CH)
        nb[:, cols] = 0
        flat = recs.reshape(-1, blocks.BLOCK_CH).astype(np.float64)
        # Each network's first-layer product: the three other neighbours once, the
        # candidate's slot per candidate (integer sums: exact in any order).
        p = {name: np.tile(nb @ st.W_nb.T, (K, 1)) + flat @ st.W_nb[:, cols].T
             for name, st in self.model.stacks().items()}
        blk = np.tile(blocks.block_rows(self.grid, rr, cc), (K, 1))
        qp = self.params(np.tile(rr, K), np.tile(cc, K))
        given = self.model.from_products(p, qp)
        mean, scales = self.model.entropy_params(given, qp)
        s = np.clip(np.rint(self.model.analyse(blk, given, qp) - mean), -self.L, self.L)
        rec = self.model.synthesise(s, mean, given, qp)
        return self.cost(scales, s, rec, blk, qp)
