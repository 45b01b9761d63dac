"""``verify --exact``: the true maximum error of a fixed-point program over its box, by a MILP.

A measuring instrument for the tightness of certificates (certified / true maximum), not a
certificate. For a dense ReLU/identity program P (``program.py``) and the real network N over the
input box B, for every output o and direction s in {+1, -1}, HiGHS solves

    maximise  s·(P(x)_o - N(x)_o)   over x in B   (settings C, D: x on the in_t grid)

with both networks written as mixed-integer linear constraints:

- every assignment Q(v -> T) whose incoming value lies on a finer grid 2^-S than T's 2^-F becomes
  an integer raw k with  0 <= 2^F·v - k <= 1 - 2^(F-S)  (AP_TRN: k = floor(2^F v)) or
  -1/2 <= 2^F·v - k <= 1/2 - 2^(F-S)  (AP_RND: k = floor(2^F v + 1/2)); the value is k·2^-F. Since
  2^F·v - k is a multiple of 2^(F-S), these rows are exact (no tie admits two k). Assignments onto
  an equal or finer grid are exact and add nothing. The real input lies on no grid: its rows are
  closed (0 <= 2^F·x - k <= 1), which admits both neighbours at a grid point x; the program's
  value there is approached from below, so the MILP remains a relaxation: its optimum is >= the
  supremum of the error;
- ReLU a = max(t, 0), in both networks, with a binary phase and big-M from interval bounds of t
  (interval arithmetic over the box, rounding widened by one grid step) unless t is stable;
- the real network with the float64 values of its parameters (the exact decimals of a .scala
  file may differ in the last bits; the re-evaluation below uses the exact ones).

No assignment is modelled as overflowing (the certificate proves that for every value it depends
on). Each solver's best input is re-evaluated exactly (bit-exact simulator, exact rational real
network, with wrap-around), so ``best_error`` is a true error of the program: a lower bound of the
true maximum. ``dual_bound`` is the smaller of the difference-interval bound of the linking rows
(interval arithmetic on P - N layer by layer: W·[d] + (W~ - W)·[a~] + Δb + roundings, ReLU
differences between min(0, d) and max(0, d)) and the solver's bound on the MILP optimum (the
tolerances of a floating-point solver apply): an upper bound of the true maximum.
Partial sums that round and table/piecewise activations are not modelled (a one-line error).
HiGHS 1.16 has been seen to declare such models infeasible although every input of the box
satisfies them (numerics of the wide integer raws beside 2^-20 steps); such a solve is reported as
``solver_failed`` and only the difference-interval bound is kept for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .certify import Certificate
from .errors import UserError
from .ilp import highs_lp, new_highs
from .ir import DenseLayer
from .program import FixedProgram, LayerProgram

MAX_MODELLED_FRAC = 40  # a rounding grid finer than 2^-40 is beyond a double-precision MILP's tolerances


@dataclass
class VarVec:
    """A vector of MILP columns with interval bounds of their values."""

    idx: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    raw_idx: np.ndarray | None = None  # for an assignment's output: its integer raw columns


@dataclass
class _Builder:
    """Columns (bounds, integrality) and rows (COO triplets, row bounds) of one MILP."""

    col_lo: list[np.ndarray] = field(default_factory=list)
    col_hi: list[np.ndarray] = field(default_factory=list)
    col_int: list[np.ndarray] = field(default_factory=list)
    n_cols: int = 0
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    row_lo: list[np.ndarray] = field(default_factory=list)
    row_hi: list[np.ndarray] = field(default_factory=list)
    n_rows: int = 0

    def add_cols(self, lo: np.ndarray, hi: np.ndarray, integer: bool) -> VarVec:
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        idx = np.arange(self.n_cols, self.n_cols + lo.size)
        self.col_lo.append(lo)
        self.col_hi.append(hi)
        self.col_int.append(np.full(lo.size, integer))
        self.n_cols += lo.size
        return VarVec(idx, lo.copy(), hi.copy())

    def add_rows(
        self, row: np.ndarray, col: np.ndarray, val: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> None:
        """Rows ``lo[i] <= Σ val·x[col] (entries with row == i) <= hi[i]``, i local to this call."""
        self.rows.append(np.asarray(row, dtype=np.int64) + self.n_rows)
        self.cols.append(np.asarray(col, dtype=np.int64))
        self.vals.append(np.asarray(val, dtype=np.float64))
        self.row_lo.append(np.asarray(lo, dtype=np.float64))
        self.row_hi.append(np.asarray(hi, dtype=np.float64))
        self.n_rows += len(lo)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.col_lo), np.concatenate(self.col_hi)

    def tighten(self, v: VarVec, lo: np.ndarray, hi: np.ndarray) -> None:
        """Intersect the bounds of the columns of ``v`` (created by one add_cols call) with [lo, hi]."""
        first = int(v.idx[0])
        start = 0
        for i, arr in enumerate(self.col_lo):
            if start == first and arr.size == v.idx.size:
                self.col_lo[i] = np.maximum(arr, lo)
                self.col_hi[i] = np.minimum(self.col_hi[i], hi)
                v.lo, v.hi = self.col_lo[i].copy(), self.col_hi[i].copy()
                return
            start += arr.size
        raise ValueError("tighten: not the columns of one add_cols call")


@dataclass
class _Lin:
    """m affine expressions ``const[i] + Σ val·x[col]`` (entries with row == i), with intervals."""

    row: np.ndarray
    col: np.ndarray
    val: np.ndarray
    const: np.ndarray

    @property
    def m(self) -> int:
        return self.const.size

    def interval(self, b: _Builder) -> tuple[np.ndarray, np.ndarray]:
        """Interval of each expression from the column bounds (exact up to float rounding, widened
        by a relative 1e-9 so that big-M and integer bounds are never too tight)."""
        clo, chi = b.bounds()
        a, c = self.val * clo[self.col], self.val * chi[self.col]
        lo = self.const + np.bincount(self.row, np.minimum(a, c), minlength=self.m)
        hi = self.const + np.bincount(self.row, np.maximum(a, c), minlength=self.m)
        pad = 1e-9 * (np.abs(lo) + np.abs(hi)) + 1e-12
        return lo - pad, hi + pad


def _materialise(b: _Builder, e: _Lin) -> VarVec:
    """New continuous columns y with y = e."""
    lo, hi = e.interval(b)
    y = b.add_cols(lo, hi, integer=False)
    i = np.arange(e.m)
    b.add_rows(
        np.concatenate([e.row, i]),
        np.concatenate([e.col, y.idx]),
        np.concatenate([e.val, -np.ones(e.m)]),
        -e.const,
        -e.const,
    )
    return y


def _assign(b: _Builder, e: _Lin, src_frac: np.ndarray, dst_frac: np.ndarray, quant: str) -> VarVec:
    """Q(e -> T) elementwise: exact where src_frac <= dst_frac, else an integer raw k (module docstring)."""
    src = np.broadcast_to(np.asarray(src_frac, dtype=np.int64), (e.m,))
    dst = np.broadcast_to(np.asarray(dst_frac, dtype=np.int64), (e.m,))
    rounds = src > dst
    if np.any(dst[rounds] > MAX_MODELLED_FRAC):
        raise UserError(
            f"verify --exact: a rounding to 2^-{int(dst[rounds].max())} is finer than a double-precision "
            f"MILP can model (at most 2^-{MAX_MODELLED_FRAC})"
        )
    lo, hi = e.interval(b)
    scale = np.ldexp(1.0, dst)  # 2^F per element
    shift = 0.5 if quant == "RND" else 0.0
    k_lo = np.where(rounds, np.floor(lo * scale + shift) - 1, 0.0)
    k_hi = np.where(rounds, np.ceil(hi * scale + shift) + 1, 0.0)
    k = b.add_cols(k_lo, k_hi, integer=True)  # unused (fixed at 0) where the assignment is exact
    step = np.where(rounds, 1.0 / scale, 0.0)
    y_lo = np.where(rounds, lo - step * (1.0 if quant == "TRN" else 0.5), lo)
    y_hi = np.where(rounds, hi + step * (0.0 if quant == "TRN" else 0.5), hi)
    y = b.add_cols(y_lo, y_hi, integer=False)
    y.raw_idx = k.idx
    i = np.arange(e.m)
    # y = e (exact) or y = 2^-F·k (rounded)
    ex = ~rounds[e.row]
    b.add_rows(
        np.concatenate([e.row[ex], i, i[rounds]]),
        np.concatenate([e.col[ex], y.idx, k.idx[rounds]]),
        np.concatenate([e.val[ex], -np.ones(e.m), step[rounds]]),
        np.where(rounds, 0.0, -e.const),
        np.where(rounds, 0.0, -e.const),
    )
    # rounding rows: lo_r <= 2^F·e - k <= hi_r, with e's constant moved to the bounds; e lies on the
    # grid 2^-src, so 2^F·e - k is a multiple of 2^(F - src) and its largest value below 1 is
    # 1 - 2^(F - src) (a real input lies on no grid: gap 0)
    gap = np.where(src >= 10**6, 0.0, np.ldexp(1.0, np.minimum(dst - src, 0)))
    r_sel = rounds[e.row]
    rr = np.flatnonzero(rounds)
    local = np.full(e.m, -1)
    local[rr] = np.arange(rr.size)
    b.add_rows(
        np.concatenate([local[e.row[r_sel]], np.arange(rr.size)]),
        np.concatenate([e.col[r_sel], k.idx[rr]]),
        np.concatenate([e.val[r_sel] * scale[e.row[r_sel]], -np.ones(rr.size)]),
        (-shift) - e.const[rr] * scale[rr],
        (1.0 - shift) - gap[rr] - e.const[rr] * scale[rr],
    )
    return y


def _relu(b: _Builder, t: VarVec) -> VarVec:
    """a = max(t, 0) with a binary phase where the interval of t contains 0 (big-M rows)."""
    lo, hi = t.lo, t.hi
    a = b.add_cols(np.maximum(lo, 0.0), np.maximum(hi, 0.0), integer=False)
    active, inactive = lo >= 0, hi <= 0
    unstable = ~(active | inactive)
    # active: a - t = 0; inactive: a = 0 through its bounds
    act = np.flatnonzero(active)
    b.add_rows(
        np.concatenate([np.arange(act.size)] * 2),
        np.concatenate([a.idx[act], t.idx[act]]),
        np.concatenate([np.ones(act.size), -np.ones(act.size)]),
        np.zeros(act.size),
        np.zeros(act.size),
    )
    u = np.flatnonzero(unstable)
    if u.size:
        d = b.add_cols(np.zeros(u.size), np.ones(u.size), integer=True)
        m = np.arange(u.size)
        ones = np.ones(u.size)
        # a - t >= 0;  a - t - lo·d <= -lo;  a - hi·d <= 0
        b.add_rows(
            np.concatenate([m, m]),
            np.concatenate([a.idx[u], t.idx[u]]),
            np.concatenate([ones, -ones]),
            np.zeros(u.size),
            np.full(u.size, np.inf),
        )
        b.add_rows(
            np.concatenate([m, m, m]),
            np.concatenate([a.idx[u], t.idx[u], d.idx]),
            np.concatenate([ones, -ones, -lo[u]]),
            np.full(u.size, -np.inf),
            -lo[u],
        )
        b.add_rows(
            np.concatenate([m, m]),
            np.concatenate([a.idx[u], d.idx]),
            np.concatenate([ones, -hi[u]]),
            np.full(u.size, -np.inf),
            np.zeros(u.size),
        )
    return a


def _affine(x: VarVec, w: np.ndarray, bias: np.ndarray) -> _Lin:
    """e_j = Σ_k w[j,k]·x_k + bias_j (zero weights dropped)."""
    jj, kk = np.nonzero(w)
    return _Lin(jj, x.idx[kk], w[jj, kk], np.asarray(bias, dtype=np.float64).copy())


def raw_to_float(raw: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """raw·2^-frac as float64 (exact below 2^53; the caller bounds the widths)."""
    return np.ldexp(np.asarray(raw, dtype=object).astype(np.float64), -np.asarray(frac, dtype=np.int64))


def _program_layer(
    b: _Builder, lp: LayerProgram, x: VarVec, x_frac: np.ndarray, quant: str
) -> tuple[VarVec, np.ndarray, np.ndarray]:
    """The MILP of one program layer (program.py semantics) up to the bias sum t (before the
    activation); returns t, the float weights and the interval [lo, hi] (stacked, [2, n_out]) of
    the rounding errors this layer adds to t (products, dot, bias sum)."""
    if lp.activation not in ("relu", "identity") or lp.act_impl is not None:
        raise UserError(
            f"verify --exact models ReLU and identity layers only; layer {lp.name} is {lp.activation}"
        )
    wf = lp.weight_t.frac
    w = raw_to_float(lp.weight_raw, wf)
    pf, sf = lp.product_t.frac, lp.psum_t.frac
    src = wf + x_frac[None, :]  # grid of the exact product
    prod_rounds = (src > pf) & (w != 0)
    prev = np.concatenate([pf[:, :1], sf[:, :-1]], axis=1)
    if np.any(sf < np.maximum(prev, pf)):
        raise UserError(f"verify --exact: layer {lp.name} has partial sums that round (not modelled)")
    if np.any(prod_rounds):
        jj, kk = np.nonzero(prod_rounds)
        e = _Lin(np.arange(jj.size), x.idx[kk], w[jj, kk], np.zeros(jj.size))
        p = _assign(b, e, src[jj, kk], pf[jj, kk], quant)
        ej, ek = np.nonzero(~prod_rounds & (w != 0))
        s = _Lin(
            np.concatenate([jj, ej]),
            np.concatenate([p.idx, x.idx[ek]]),
            np.concatenate([np.ones(jj.size), w[ej, ek]]),
            np.zeros(lp.n_out),
        )
    else:
        s = _affine(x, w, np.zeros(lp.n_out))
    s_frac = np.minimum(src, pf).max(axis=1)  # the exact sum lies on the finest product grid
    d = _assign(b, s, s_frac, lp.dot_t.frac, quant)
    bias = raw_to_float(lp.bias_raw, lp.bias_t.frac)
    c_frac = np.maximum(lp.dot_t.frac, lp.bias_t.frac)
    t = _assign(b, _Lin(np.arange(lp.n_out), d.idx, np.ones(lp.n_out), bias), c_frac, lp.bsum_t.frac, quant)
    steps = (
        np.where(prod_rounds, np.ldexp(1.0, -pf), 0.0).sum(axis=1)
        + np.where(s_frac > lp.dot_t.frac, np.ldexp(1.0, -lp.dot_t.frac), 0.0)
        + np.where(c_frac > lp.bsum_t.frac, np.ldexp(1.0, -lp.bsum_t.frac), 0.0)
    )
    return t, w, _rounding_interval(steps, quant)


def _rounding_interval(steps: np.ndarray, quant: str) -> np.ndarray:
    """[lo, hi] of a sum of roundings of the given total step: AP_TRN (-step, 0], AP_RND ±step/2."""
    return np.stack([-steps, np.zeros_like(steps)]) if quant == "TRN" else np.stack([-steps / 2, steps / 2])


def _interval_matvec(w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of w·v for v in [lo, hi] (centre/radius form)."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    mid, rad = w @ c, np.abs(w) @ r
    pad = 1e-9 * (np.abs(w) @ np.maximum(np.abs(lo), np.abs(hi))) + 1e-12
    return mid - rad - pad, mid + rad + pad


def _link(b: _Builder, p: VarVec, r: VarVec, dlo: np.ndarray, dhi: np.ndarray) -> None:
    """Rows dlo <= p - r <= dhi, and each side's bounds tightened by the other's."""
    n = p.idx.size
    m = np.arange(n)
    b.add_rows(
        np.concatenate([m, m]),
        np.concatenate([p.idx, r.idx]),
        np.concatenate([np.ones(n), -np.ones(n)]),
        dlo,
        dhi,
    )
    b.tighten(p, r.lo + dlo, r.hi + dhi)
    b.tighten(r, p.lo - dhi, p.hi - dlo)


@dataclass
class ExactMilp:
    """The MILP of ``P(x) - N(x)`` over the box: its columns, rows and the output columns."""

    builder: _Builder
    x: VarVec  # input columns (real values; on the grid: the raw integers)
    x_raw: np.ndarray | None  # off the grid: the columns of the input's raw integers in in_t
    out_diff: np.ndarray  # [2, n_out]: interval of P(x) - N(x) by difference intervals (a bound)
    y_prog: VarVec
    y_real: VarVec
    on_grid: bool
    in_frac: int


def build_milp(
    program: FixedProgram,
    layers: list[DenseLayer],
    lo: np.ndarray,
    hi: np.ndarray,
    on_grid: bool,
    analysis: Certificate | None = None,
) -> ExactMilp:
    """Both networks over the box as one MILP (module docstring). ``analysis`` (the refined
    certificate of this program and box): its real pre-activation ranges tighten the real network's
    ReLU big-M and its per-neuron error enclosures of every layer output tighten the linking rows
    (bounds from our own analysis, as big-M bounds of a MILP usually are; the best input is still
    re-evaluated exactly, so an unsound enclosure could hide a larger error but never report one)."""
    if len(layers) != len(program.layers):
        raise UserError("verify --exact: the program and the network have different numbers of layers")
    b = _Builder()
    f_in = int(program.input_t.frac_bits)
    quant = program.quant
    if on_grid:  # x = k·2^-F_in exactly
        k = b.add_cols(np.ceil(np.ldexp(lo, f_in)), np.floor(np.ldexp(hi, f_in)), integer=True)
        n = lo.size
        xr = _materialise(b, _Lin(np.arange(n), k.idx, np.full(n, math.ldexp(1.0, -f_in)), np.zeros(n)))
        xq, x_in = xr, k
    else:
        xr = b.add_cols(lo, hi, integer=False)
        n = lo.size
        xq = _assign(
            b, _Lin(np.arange(n), xr.idx, np.ones(n), np.zeros(n)), np.full(n, 10**6), np.full(n, f_in), quant
        )  # a real input lies on no grid: always rounds
        x_in = xr
    a_prog, frac = xq, np.full(n, f_in, dtype=np.int64)
    a_real = xr
    # interval of (program value - real value) of the current layer's inputs
    dlo, dhi = (
        (np.zeros(n), np.zeros(n)) if on_grid else tuple(_rounding_interval(np.full(n, 2.0**-f_in), quant))
    )
    for li, (lp, layer) in enumerate(zip(program.layers, layers, strict=True)):
        t, w_prog, rnd = _program_layer(b, lp, a_prog, frac, quant)
        z = _materialise(b, _affine(a_real, np.asarray(layer.weight, dtype=np.float64), layer.bias))
        if analysis is not None:
            pre = analysis.ranges[li].pre
            b.tighten(z, pre.lo, pre.hi)
        # t - z = W·(a~ - a) + (W~ - W)·a~ + (b~ - b) + roundings
        w_real = np.asarray(layer.weight, dtype=np.float64)
        l1, h1 = _interval_matvec(w_real, dlo, dhi)
        l2, h2 = _interval_matvec(w_prog - w_real, a_prog.lo, a_prog.hi)
        db = raw_to_float(lp.bias_raw, lp.bias_t.frac) - np.asarray(layer.bias, dtype=np.float64)
        tlo, thi = l1 + l2 + db + rnd[0], h1 + h2 + db + rnd[1]
        _link(b, t, z, tlo, thi)
        if layer.activation == "relu":
            t_act, z_act = _relu(b, t), _relu(b, z)
            both_on = (t.lo >= 0) & (z.lo >= 0)
            both_off = (t.hi <= 0) & (z.hi <= 0)
            alo = np.where(both_on, tlo, np.where(both_off, 0.0, np.minimum(tlo, 0.0)))
            ahi = np.where(both_on, thi, np.where(both_off, 0.0, np.maximum(thi, 0.0)))
        elif layer.activation == "identity":
            t_act, z_act, alo, ahi = t, z, tlo, thi
        else:
            raise UserError(f"verify --exact models ReLU and identity layers only, not {layer.activation}")
        a_prog = _assign(
            b,
            _Lin(np.arange(lp.n_out), t_act.idx, np.ones(lp.n_out), np.zeros(lp.n_out)),
            lp.bsum_t.frac,
            lp.out_t.frac,
            quant,
        )
        frac = lp.out_t.frac.copy()
        orl = _rounding_interval(
            np.where(lp.bsum_t.frac > lp.out_t.frac, np.ldexp(1.0, -lp.out_t.frac), 0.0), quant
        )
        dlo, dhi = alo + orl[0], ahi + orl[1]
        if analysis is not None:
            dlo, dhi = np.maximum(dlo, analysis.errors[li].lo), np.minimum(dhi, analysis.errors[li].hi)
        a_real = z_act
        _link(b, a_prog, a_real, dlo, dhi)
    return ExactMilp(
        b, x_in, None if on_grid else xq.raw_idx, np.stack([dlo, dhi]), a_prog, a_real, on_grid, f_in
    )


START_SAMPLES = 2000
PRESOLVE = "off"  # HiGHS 1.16's presolve declared feasible models of this kind infeasible (tested)


def _consistent_input(
    x: np.ndarray, raw: np.ndarray, in_frac: int, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """The input to re-evaluate for a MILP solution (x, raw): x moved into the cell
    [raw·2^-F, (raw+1)·2^-F) that the solution's input rounding chose (at a grid point the closed
    rounding rows admit the lower neighbour, the limit from below), then clipped to the box."""
    k = np.round(raw)
    cell_lo = np.ldexp(k, -in_frac)
    cell_hi = np.nextafter(np.ldexp(k + 1, -in_frac), -np.inf)
    return np.clip(np.clip(x, cell_lo, cell_hi), lo, hi)


def _candidates(lo: np.ndarray, hi: np.ndarray, on_grid: bool, in_frac: int, seed: int) -> np.ndarray:
    """Random inputs of the box and its corners (on the grid: raw integers of the in_t grid)."""
    rng = np.random.default_rng(seed)
    d = lo.size
    pts = lo + (hi - lo) * rng.random((START_SAMPLES, d))
    corners = np.where(rng.random((min(START_SAMPLES, 2**d), d)) < 0.5, hi, lo)
    pts = np.vstack([pts, corners])
    if not on_grid:
        return pts
    glo, ghi = np.ceil(np.ldexp(lo, in_frac)), np.floor(np.ldexp(hi, in_frac))
    raw = np.clip(np.floor(np.ldexp(pts, in_frac)), glo, ghi)
    return raw.astype(np.int64).astype(object)


def _complete(lp: Any, m: ExactMilp, pt: np.ndarray) -> np.ndarray | None:
    """Every column's value at the input ``pt``: the MILP with its input columns fixed (then every
    other column is determined), or None when HiGHS finds no point (tolerances at a tie)."""
    saved_lo, saved_hi = np.array(lp.col_lower_), np.array(lp.col_upper_)
    fixed_lo, fixed_hi = saved_lo.copy(), saved_hi.copy()
    v = np.asarray(pt, dtype=np.float64)
    fixed_lo[m.x.idx] = v
    fixed_hi[m.x.idx] = v
    cost = lp.col_cost_
    lp.col_lower_, lp.col_upper_, lp.col_cost_ = fixed_lo, fixed_hi, np.zeros(len(saved_lo))
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", 10.0)
    h.setOptionValue("presolve", "off")  # HiGHS presolve wrongly declares some of these infeasible
    h.passModel(lp)
    h.run()
    ok = h.getInfo().primal_solution_status == 2
    out = np.asarray(h.getSolution().col_value, dtype=np.float64) if ok else None
    lp.col_lower_, lp.col_upper_, lp.col_cost_ = saved_lo, saved_hi, cost
    return out


@dataclass
class ExactSolve:
    """One direction of one output: the solver's result and the exact re-evaluation of its input."""

    output: int
    direction: int  # +1: max P - N; -1: max N - P
    status: str
    milp_objective: float | None
    dual_bound: float | None  # bound on max direction·(P - N) (inf when none)
    best_error: float  # exact direction·(P(x*) - N(x*)) at the best input x* (the solver's or its start)
    input: list[float]
    time_s: float


@dataclass
class ExactResult:
    """``verify --exact``: per output and direction; the true max |error| lies in [lower, upper]."""

    solves: list[ExactSolve]
    certified_per_output: list[float]
    time_s: float
    n_integer: int

    @property
    def lower(self) -> float:
        return max((s.best_error for s in self.solves), default=0.0)

    @property
    def upper(self) -> float:
        return max((s.dual_bound if s.dual_bound is not None else math.inf) for s in self.solves)

    def to_json(self) -> dict[str, Any]:
        cert = max(self.certified_per_output)
        return {
            "max_error_lower": self.lower,
            "max_error_upper": self.upper if math.isfinite(self.upper) else None,
            "tightness_at_least": cert / self.upper if math.isfinite(self.upper) and self.upper > 0 else None,
            "tightness_at_most": cert / self.lower if self.lower > 0 else None,
            "all_optimal": all(s.status == "optimal" for s in self.solves),
            "violations": sum(1 for s in self.solves if s.best_error > self.certified_per_output[s.output]),
            "time_s": self.time_s,
            "integer_columns": self.n_integer,
            "note": "a measurement, not a certificate: best_error is exact; dual_bound carries the MILP "
            "solver's tolerances and assumes no overflow",
            "solves": [s.__dict__ for s in self.solves],
        }


def exact_max_error(
    program: FixedProgram,
    layers: list[DenseLayer],
    lo: np.ndarray,
    hi: np.ndarray,
    on_grid: bool,
    certified_per_output: np.ndarray,
    time_limit: float = 600.0,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
    extra_starts: np.ndarray | None = None,
    analysis: Certificate | None = None,
) -> ExactResult:
    """Solve the MILP for every output and direction within ``time_limit`` seconds in total (split
    evenly; time a solve leaves unused goes to the next) and re-evaluate each best input exactly.
    Each solve starts from the worst of ``START_SAMPLES`` random and corner inputs for its output
    and direction (completed to a full MILP point by fixing the input), so its best input is never
    worse than that sample. ``extra_starts`` [n, n_in] (inputs as reals, e.g. verify's worst ones)
    join the samples (on the grid: rounded down to it)."""
    import highspy

    from .verify import _Evaluator

    t0 = time.perf_counter()
    m = build_milp(program, layers, np.asarray(lo, np.float64), np.asarray(hi, np.float64), on_grid, analysis)
    b = m.builder
    clo, chi = b.bounds()
    integer = np.concatenate(b.col_int)
    a = sp.csc_matrix(
        (np.concatenate(b.vals), (np.concatenate(b.rows), np.concatenate(b.cols))), shape=(b.n_rows, b.n_cols)
    )
    rlo, rhi = np.concatenate(b.row_lo), np.concatenate(b.row_hi)
    lp = highs_lp(a, np.zeros(b.n_cols), clo, chi, rlo, rhi, integer)
    ev = _Evaluator(program, layers, on_grid)
    n_out = program.n_out
    pts = _candidates(np.asarray(lo, np.float64), np.asarray(hi, np.float64), on_grid, m.in_frac, seed)
    if extra_starts is not None and len(extra_starts):
        ex = np.clip(np.asarray(extra_starts, dtype=np.float64).reshape(-1, pts.shape[1]), lo, hi)
        if on_grid:
            glo, ghi = np.ceil(np.ldexp(lo, m.in_frac)), np.floor(np.ldexp(hi, m.in_frac))
            ex = np.clip(np.floor(np.ldexp(ex, m.in_frac)), glo, ghi).astype(np.int64).astype(object)
        pts = np.vstack([pts, ex])
    errs = ev.errors(pts)
    jobs = [(o, s) for o in range(n_out) for s in (1, -1)]
    solves: list[ExactSolve] = []
    budget = float(time_limit)
    for i, (o, s) in enumerate(jobs):
        share = max(budget / (len(jobs) - i), 1.0)
        cost = np.zeros(b.n_cols)
        cost[m.y_prog.idx[o]] = -s  # minimise -s·(P_o - N_o)
        cost[m.y_real.idx[o]] = s
        lp.col_cost_ = cost
        h = new_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", share)
        h.setOptionValue("random_seed", 0)
        h.setOptionValue("presolve", PRESOLVE)
        h.passModel(lp)
        start_pt = pts[int(np.argmax(s * errs[:, o]))]
        start = _complete(lp, m, start_pt)
        if start is not None:
            h.setSolution(int(start.size), np.arange(start.size, dtype=np.int32), start)
        ts = time.perf_counter()
        h.run()
        el = time.perf_counter() - ts
        budget -= el
        ms = h.modelStatusToString(h.getModelStatus()).lower()
        info = h.getInfo()
        status = "optimal" if "optimal" in ms else "time_limit" if "time" in ms else ms
        dual = -float(info.mip_dual_bound) if abs(info.mip_dual_bound) < highspy.kHighsInf else math.inf
        if "infeasible" in ms:  # the model holds every input of the box (its start, for one): a
            status, dual = "solver_failed (claimed infeasible)", math.inf  # numerical failure of HiGHS
        dual = min(dual, float(m.out_diff[1, o] if s > 0 else -m.out_diff[0, o]))  # the rows' own bound
        if status == "optimal":
            dual = min(
                dual, -float(info.objective_function_value) + 1e-9 * abs(info.objective_function_value)
            )
        # the start input counts too (HiGHS may reject a start within its tolerances)
        best = s * float(ev.exact_errors(start_pt)[o])
        pt_list = [float(v) for v in ev.inputs_as_float(start_pt[None, :])[0]]
        obj = None
        if info.primal_solution_status == 2:
            sol = np.asarray(h.getSolution().col_value)
            obj = -float(info.objective_function_value)
            if on_grid:
                pt = np.array([int(round(v)) for v in sol[m.x.idx]], dtype=object)
            else:
                pt = _consistent_input(sol[m.x.idx], sol[m.x_raw], m.in_frac, lo, hi)
            found = s * float(ev.exact_errors(pt)[o])
            if found > best:
                best = found
                pt_list = [float(v) for v in ev.inputs_as_float(pt[None, :])[0]]
        solves.append(ExactSolve(o, s, status, obj, dual if math.isfinite(dual) else None, best, pt_list, el))
        if progress:
            progress(
                f"verify --exact: output {o} {'+' if s > 0 else '-'}: {status}, best {best:.4g}, "
                f"bound {dual:.4g} ({el:.1f} s)"
            )
    n_int = int(np.sum(integer & (chi > clo)))
    return ExactResult(solves, [float(v) for v in certified_per_output], time.perf_counter() - t0, n_int)
