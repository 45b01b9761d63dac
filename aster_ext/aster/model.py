"""Aster's precision-tuning ILP, as published (``aster``) and repaired (``aster-sound``).

Common part (Aster's encoding, names and numbering kept so the LP text compares with Aster's):
per layer l integers ``dot_l``, ``bias_l`` in [minLen, maxLen], continuous ``twoPowerPiDot_l`` (= 2^-dot_l),
``twoPowerPiBias_l`` via one-hot binaries ``x..`` (rows bin_*, err_*, pi_*), cost integers
``c_l >= dot_l, bias_l`` (rows lin_max_*), objective ``Σ_l c_l + bias_l + n_l·n_{l-1}·32·dot_l``.

``aster`` (as published). With u_d = 2^-dot_l, u_b = 2^-bias_l, e_in = 2^-initLen (0 with noInitError):
``P_1 = e_in``, ``E_l = u_d + u_b + P_l``, ``P_{l+1} = M_l·E_l`` with ``M_l = max_i |Σ_j W_l[i,j]|``;
rows ``D_l ± (u_d + P_l)`` and ``B_l ± E_l`` within ``±2^(I-1)`` (closed), and ``E_L <= ε``.

``aster-sound``: the error of the program that :mod:`.types` really builds (products truncated to
G_l = dot_l + g_l fractional bits, exact partial sums, the last partial sum truncated to dot_l,
weights rounded to nearest at G_l + u_k bits, bias rounded to nearest at bias_l bits, bias sum
truncated to bias_l bits, exact ReLU) is bounded by the recursion ``E_0 = e_in``,

    E_l = (Σ_max,l + η_l)·E_{l-1} + α_l·u_d + β_l·u_b,

where ``Σ_max,l = max_j Σ_k |W_l[j,k]|`` (the matrix that multiplies the incoming error),
``α_l = [n>=2] + n·2^-g + Σ_k κ_k·2^-(g+u_k+1)·max|X_k|`` (dot truncation, n product truncations
of < 2^-G each, weight quantisation ΔW·a on the real input range), ``η_l = Σ_k κ_k·2^-(minLen+g+u_k+1)``
(ΔW times the incoming error, with u_d <= 2^-minLen), ``β_l = 1 + κ_b/2`` (bias-sum truncation and
bias rounding); κ = 2 where rounding to nearest could overflow and the constant is clamped, else 1.
Overflow rows, with half-open intervals: every product (k), every partial sum, the sum before the
dot quantisation, the bias sum and the ReLU output (own integer bits), each with its real range
plus the same error terms. Coefficients are rounded outward to floats so the float model implies
the exact one. Rows that hold even at the largest errors (all bits = minLen) are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .. import ilp
from ..errors import UserError
from ..ir import DenseLayer
from .ranges import LayerRanges, scaled_ints
from .settings import AsterSetting

MODES = ("aster", "aster-sound")
COST_INT_UB = 100


@dataclass
class LinForm:
    """const + Σ terms[v]·v over the ILP's twoPowerPi variables (exact rationals)."""

    const: Fraction = Fraction(0)
    terms: dict[str, Fraction] = field(default_factory=dict)

    def __add__(self, other: LinForm) -> LinForm:
        t = dict(self.terms)
        for v, c in other.terms.items():
            t[v] = t.get(v, Fraction(0)) + c
        return LinForm(self.const + other.const, t)

    def scale(self, k: Fraction) -> LinForm:
        return LinForm(self.const * k, {v: c * k for v, c in self.terms.items()})

    def value(self, values: dict[str, Fraction]) -> Fraction:
        return self.const + sum((c * values[v] for v, c in self.terms.items()), Fraction(0))


def term(var: str, coef: Fraction | int) -> LinForm:
    return LinForm(Fraction(0), {var: Fraction(coef)})


def const(c: Fraction | int) -> LinForm:
    return LinForm(Fraction(c), {})


@dataclass
class LayerErrorTerms:
    """E_l = m·E_{l-1} + alpha·2^-dot_l + beta·2^-bias_l."""

    m: Fraction
    alpha: Fraction
    beta: Fraction


@dataclass
class SoundRow:
    """Exact form of an aster-sound row: lhs (const + terms) <= bound (< when strict)."""

    name: str
    lhs: LinForm
    bound: Fraction
    strict: bool
    what: str  # human-readable node description for messages


@dataclass
class AsterModel:
    """The ILP plus everything needed to decode and re-check a solution."""

    mode: str
    setting: AsterSetting
    eps: Fraction
    ranges: list[LayerRanges]
    model: ilp.Model
    terms: list[LayerErrorTerms]
    e_in: Fraction
    sound_rows: list[SoundRow] = field(default_factory=list)  # rows in the ILP
    all_sound_rows: list[SoundRow] = field(default_factory=list)  # including those dropped
    pruned_rows: int = 0
    weight_kappa: list[list[int]] = field(default_factory=list)
    bias_kappa: list[int] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.ranges)

    def dot_var(self, l: int) -> str:
        return f"dot_{l}"

    def bias_var(self, l: int) -> str:
        return f"bias_{l}"

    def col_scale(self) -> dict[str, float]:
        """Solve for 2^maxLen·twoPowerPi (values 1 .. 2^(maxLen-minLen)) instead of 2^-32..2^-5."""
        s = float(2**self.setting.max_len)
        return {n: s for n in self.model.vars if n.startswith("twoPowerPi")}

    def error_bound(self, dot_bits: list[int], bias_bits: list[int]) -> Fraction:
        """The mode's error recursion E_L for the given fractional bits (exact)."""
        e = self.e_in
        for t, d, b in zip(self.terms, dot_bits, bias_bits, strict=True):
            e = t.m * e + t.alpha * Fraction(1, 2**d) + t.beta * Fraction(1, 2**b)
        return e

    def tp_values(self, dot_bits: list[int], bias_bits: list[int]) -> dict[str, Fraction]:
        vals: dict[str, Fraction] = {}
        for l, (d, b) in enumerate(zip(dot_bits, bias_bits, strict=True), start=1):
            vals[f"twoPowerPiDot_{l}"] = Fraction(1, 2**d)
            vals[f"twoPowerPiBias_{l}"] = Fraction(1, 2**b)
        return vals

    def violated_rows(self, dot_bits: list[int], bias_bits: list[int]) -> list[tuple[str, Fraction]]:
        """Rows of the (float) model violated in exact arithmetic at this bit assignment."""
        vals = self.point(dot_bits, bias_bits)
        return ilp.exact_check(self.model, {n: float(v) for n, v in vals.items()}).violations

    def point(self, dot_bits: list[int], bias_bits: list[int]) -> dict[str, Fraction]:
        """A full variable assignment of the ILP for the given bits (binaries, cost ints included)."""
        vals: dict[str, Fraction] = {n: Fraction(0) for n in self.model.vars}
        s = self.setting
        block = 2 * s.n_candidates + 4
        for l, (d, b) in enumerate(zip(dot_bits, bias_bits, strict=True), start=1):
            base = (l - 1) * block
            vals[f"x{base + s.max_len + 1 - d}"] = Fraction(1)
            vals[f"x{base + s.n_candidates + s.max_len + 1 - b}"] = Fraction(1)
            vals[f"dot_{l}"] = Fraction(d)
            vals[f"bias_{l}"] = Fraction(b)
            vals[f"x{self.n_layers * block + l}"] = Fraction(max(d, b))
        vals.update(self.tp_values(dot_bits, bias_bits))
        return vals


def _fl(x: Fraction) -> float:
    return float(x)


def _up(x: Fraction) -> float:
    f = float(x)
    return f if Fraction(f) >= x else math.nextafter(f, math.inf)


def _down(x: Fraction) -> float:
    f = float(x)
    return f if Fraction(f) <= x else math.nextafter(f, -math.inf)


def _pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def _base_model(name: str, layers: list[DenseLayer], setting: AsterSetting) -> ilp.Model:
    """Variables, one-hot linearisation rows and objective, numbered exactly like Aster's model."""
    s = setting
    m = ilp.Model(name=name)
    L = len(layers)
    n_cand = s.n_candidates
    block = 2 * n_cand + 4
    lo_u, hi_u = 2.0**-s.max_len, 2.0**-s.min_len
    for l in range(1, L + 1):
        m.add_var(f"twoPowerPiDot_{l}", "C", lo_u, hi_u)
        m.add_var(f"dot_{l}", "I", s.min_len, s.max_len)
        m.add_var(f"twoPowerPiBias_{l}", "C", lo_u, hi_u)
        m.add_var(f"bias_{l}", "I", s.min_len, s.max_len)
    for l in range(1, L + 1):
        base = (l - 1) * block
        for k in range(1, 2 * n_cand + 1):
            m.add_var(f"x{base + k}", "B", 0, 1)
    for l in range(1, L + 1):
        m.add_var(f"x{L * block + l}", "I", 0, COST_INT_UB)
    for l in range(1, L + 1):
        base = (l - 1) * block
        pis = [s.max_len + 1 - k for k in range(1, n_cand + 1)]  # x_{base+k} <-> 2^-(maxLen+1-k)
        groups = {
            "dot": ([f"x{base + k}" for k in range(1, n_cand + 1)], f"twoPowerPiDot_{l}", f"dot_{l}"),
            "bias": (
                [f"x{base + n_cand + k}" for k in range(1, n_cand + 1)],
                f"twoPowerPiBias_{l}",
                f"bias_{l}",
            ),
        }
        for kind, (xs, _tp, _iv) in groups.items():
            m.add_row(f"bin_{kind}_{l}", {x: 1.0 for x in xs}, "=", 1.0)
        for kind, (xs, tp, iv) in groups.items():
            err = {x: 2.0**-p for x, p in zip(xs, pis, strict=True)}
            err[tp] = -1.0
            m.add_row(f"err_{kind}_{l}", err, "=", 0.0)
            pi = {x: float(p) for x, p in zip(xs, pis, strict=True)}
            pi[iv] = -1.0
            m.add_row(f"pi_{kind}_{l}", pi, "=", 0.0)
    obj: dict[str, float] = {}
    for l, layer in enumerate(layers, start=1):
        obj[f"x{L * block + l}"] = 1.0
        obj[f"bias_{l}"] = 1.0
        obj[f"dot_{l}"] = float(layer.n_out * layer.n_in * s.weight_width)
    m.objective = obj
    return m


def _add_lin_max(m: ilp.Model, L: int, setting: AsterSetting) -> None:
    block = 2 * setting.n_candidates + 4
    for l in range(1, L + 1):
        c = f"x{L * block + l}"
        m.add_row(f"lin_max_1_{l}", {c: 1.0, f"dot_{l}": -1.0}, ">=", 0.0)
        m.add_row(f"lin_max_2_{l}", {c: 1.0, f"bias_{l}": -1.0}, ">=", 0.0)


def build_aster_model(
    layers: list[DenseLayer],
    ranges: list[LayerRanges],
    setting: AsterSetting,
    eps: Fraction | float,
    mode: str = "aster",
    name: str = "IloCplex",
) -> AsterModel:
    """The ILP of ``mode`` ("aster" = as published, "aster-sound" = repaired) for a dense chain."""
    if mode not in MODES:
        raise UserError(f"unknown Aster mode {mode!r} (choose {' or '.join(MODES)})")
    eps = Fraction(eps)
    if eps <= 0:
        raise UserError(f"the error target must be positive, got {float(eps)}")
    m = _base_model(name, layers, setting)
    am = AsterModel(mode, setting, eps, ranges, m, [], setting.init_error)
    if mode == "aster":
        _aster_rows(am)
    else:
        _sound_rows(am, layers)
    _add_lin_max(m, len(layers), setting)
    return am


# ------------------------------------------------------------------------------------------------
# aster (as published)
# ------------------------------------------------------------------------------------------------


def _aster_rows(am: AsterModel) -> None:
    m = am.model
    L = am.n_layers
    prop = const(am.e_in)  # P_1 = e_in
    total = prop
    for l, r in enumerate(am.ranges, start=1):
        td, tb = f"twoPowerPiDot_{l}", f"twoPowerPiBias_{l}"
        am.terms.append(
            LayerErrorTerms(Fraction(1) if l == 1 else am.ranges[l - 2].m_signed, Fraction(1), Fraction(1))
        )
        after_dot = term(td, 1) + prop
        total = term(td, 1) + term(tb, 1) + prop
        d, b = r.dot, r.bias_sum
        rep_d = _pow2(r.I_dot - 1)
        rep_b = _pow2(r.I_bsum - 1)
        # d.lo - after_dot >= -2^(I-1)   <=>   -after_dot.terms >= -2^(I-1) - d.lo + after_dot.const
        m.add_row(f"range_dot_lo_{l}", _neg_terms(after_dot), ">=", _fl(-rep_d - d.lo + after_dot.const))
        m.add_row(f"range_dot_hi_{l}", _terms(after_dot), "<=", _fl(rep_d - d.hi - after_dot.const))
        m.add_row(f"range_bias_lo_{l}", _neg_terms(total), ">=", _fl(-rep_b - b.lo + total.const))
        m.add_row(f"range_bias_hi_{l}", _terms(total), "<=", _fl(rep_b - b.hi - total.const))
        prop = total.scale(r.m_signed)
    m.add_row("error", _terms(total), "<=", _fl(am.eps - total.const))
    assert L == len(am.terms)


def _terms(f: LinForm) -> dict[str, float]:
    return {v: _fl(c) for v, c in f.terms.items()}


def _neg_terms(f: LinForm) -> dict[str, float]:
    return {v: -_fl(c) for v, c in f.terms.items()}


# ------------------------------------------------------------------------------------------------
# aster-sound (repaired)
# ------------------------------------------------------------------------------------------------


def _kappa(largest: Fraction, int_bits: int, min_frac: int) -> int:
    """2 if rounding the largest value to nearest at >= min_frac fractional bits can reach 2^(I-1),
    where the constant is clamped (error up to 2^-F instead of 2^-(F+1)), else 1."""
    top = _pow2(int_bits - 1) - _pow2(-(min_frac + 1))
    return 2 if largest >= top else 1


@dataclass
class _RowSums:
    """Exact per-layer sums over the rows j of W (computed with integers over a common denominator).

    hi[k] = max_j Σ_{m<=k} max(w_jm·X_m), lo[k] = min_j Σ_{m<=k} min(w_jm·X_m),
    abs_prefix[k] = max_j Σ_{m<=k} |w_jm|, colmax[k] = max_j |w_jk|, colmax_signed[k] = max_j w_jk,
    bsum_hi / bsum_lo = max_j / min_j of (Σ_m max/min(w_jm·X_m) + b_j).
    """

    hi: list[Fraction]
    lo: list[Fraction]
    abs_prefix: list[Fraction]
    colmax: list[Fraction]
    colmax_signed: list[Fraction]
    bsum_hi: Fraction
    bsum_lo: Fraction


def _row_sums(w: np.ndarray, bvec: np.ndarray, r: LayerRanges) -> _RowSums:
    wi, wd = scaled_ints(w)
    xs = np.array([x.lo for x in r.inputs] + [x.hi for x in r.inputs], dtype=object)
    xi, xd = scaled_ints(xs)
    n = r.n_in
    a = wi * xi[None, :n]
    b = wi * xi[None, n:]
    ge = a >= b
    chi = np.cumsum(np.where(ge, a, b), axis=1)
    clo = np.cumsum(np.where(ge, b, a), axis=1)
    absw = np.where(wi >= 0, wi, -wi)
    cab = np.cumsum(absw, axis=1)
    den = wd * xd
    bi, bd = scaled_ints(bvec)
    # Σ_m (.)/den + b_j  ==  (Σ_m (.)·bd + b_int·den) / (den·bd)
    bhi = chi[:, -1] * bd + bi * den
    blo = clo[:, -1] * bd + bi * den
    return _RowSums(
        hi=[Fraction(v, den) for v in chi.max(axis=0)],
        lo=[Fraction(v, den) for v in clo.min(axis=0)],
        abs_prefix=[Fraction(v, wd) for v in cab.max(axis=0)],
        colmax=[Fraction(v, wd) for v in absw.max(axis=0)],
        colmax_signed=[Fraction(v, wd) for v in wi.max(axis=0)],
        bsum_hi=Fraction(max(bhi), den * bd),
        bsum_lo=Fraction(min(blo), den * bd),
    )


def _sound_rows(am: AsterModel, layers: list[DenseLayer]) -> None:
    s = am.setting
    rows: list[SoundRow] = []
    e_prev = const(am.e_in)
    for l, (r, layer) in enumerate(zip(am.ranges, layers, strict=True), start=1):
        td, tb = f"twoPowerPiDot_{l}", f"twoPowerPiBias_{l}"
        n, g = r.n_in, r.guard
        w = layer.exact_weight()
        bvec = layer.exact_bias()
        sums = _row_sums(w, bvec, r)
        kap = [_kappa(sums.colmax_signed[k], r.I_weight, s.min_len + g + r.u_in[k]) for k in range(n)]
        kap_b = _kappa(max(bvec), r.I_bias, s.min_len)
        am.weight_kappa.append(kap)
        am.bias_kappa.append(kap_b)
        xabs = [x.maxabs for x in r.inputs]
        # per-product weight-quantisation coefficients: |ΔW_jk| <= dq[k]·u_d, and <= dmax[k] overall
        dq = [kap[k] * _pow2(-(g + r.u_in[k] + 1)) for k in range(n)]
        dmax = [kap[k] * _pow2(-(s.min_len + g + r.u_in[k] + 1)) for k in range(n)]
        trunc_g = _pow2(-g)  # 2^-G = 2^-g · u_d
        eta = sum(dmax, Fraction(0))
        alpha = (1 if n >= 2 else 0) + n * trunc_g + sum((dq[k] * xabs[k] for k in range(n)), Fraction(0))
        beta = 1 + Fraction(kap_b, 2)
        am.terms.append(LayerErrorTerms(r.m_abs + eta, alpha, beta))
        # ---- overflow rows -------------------------------------------------------------------
        colmax = sums.colmax
        if l == 1:
            prod = [(k, colmax[k], dq[k], dmax[k]) for k in range(n)]
        else:  # all inputs share one range: one row dominating every column
            prod = [(0, max(colmax), max(dq), max(dmax))]
        for k, cm, q, qm in prod:
            lhs = const(cm * xabs[k]) + e_prev.scale(cm + qm) + term(td, q * xabs[k])
            rows.append(SoundRow(f"ovf_prod_{l}_{k}", lhs, _pow2(r.I_prod[k] - 1), True,
                                 f"layer {l} ({r.name}) product with input {k}"))  # fmt: skip
        hi_k, lo_k, c_k = sums.hi, sums.lo, sums.abs_prefix
        dev = LinForm()
        dq_acc = Fraction(0)
        dmax_acc = Fraction(0)
        for k in range(n):
            dq_acc += dq[k] * xabs[k]
            dmax_acc += dmax[k]
            dev = e_prev.scale(c_k[k] + dmax_acc) + term(td, dq_acc)
            if k == 0:
                continue
            i_bits = r.I_psum[k] if k < n - 1 else r.I_dot
            what = f"layer {l} ({r.name}) partial sum {k}" if k < n - 1 else f"layer {l} ({r.name}) dot sum"
            rep = _pow2(i_bits - 1)
            rows.append(SoundRow(f"ovf_psum_hi_{l}_{k}", const(hi_k[k]) + dev, rep, True, what))
            lo_dev = dev + term(td, (k + 1) * trunc_g)
            rows.append(SoundRow(f"ovf_psum_lo_{l}_{k}", const(-lo_k[k]) + lo_dev, rep, False, what))
        # bias sum (value before its quantisation): d + b~, real part per row j
        bhi, blo = sums.bsum_hi, sums.bsum_lo
        bq = term(tb, Fraction(kap_b, 2))
        rep_b = _pow2(r.I_bsum - 1)
        what_b = f"layer {l} ({r.name}) bias sum"
        rows.append(SoundRow(f"ovf_bsum_hi_{l}", const(bhi) + dev + bq, rep_b, True, what_b))
        dot_trunc = term(td, n * trunc_g + (1 if n >= 2 else 0))
        rows.append(SoundRow(f"ovf_bsum_lo_{l}", const(-blo) + dev + bq + dot_trunc, rep_b, False, what_b))
        if r.activation == "relu" and r.I_out < r.I_bsum:
            rows.append(SoundRow(f"ovf_act_{l}", const(bhi) + dev + bq, _pow2(r.I_out - 1), True,
                                 f"layer {l} ({r.name}) ReLU output"))  # fmt: skip
        t = am.terms[-1]
        e_prev = e_prev.scale(t.m) + term(td, t.alpha) + term(tb, t.beta)
        # put the current layer's variables first (readability of the LP text)
        e_prev = LinForm(e_prev.const, _current_first(e_prev.terms, td, tb))
    rows.append(SoundRow("error", e_prev, am.eps, False, "network output error"))
    # ---- drop rows that hold at the largest errors, add the rest ------------------------------
    worst = am.tp_values([s.min_len] * am.n_layers, [s.min_len] * am.n_layers)
    kept = []
    for row in rows:
        v = row.lhs.value(worst)
        holds = v < row.bound if row.strict else v <= row.bound
        if holds and row.name != "error":
            am.pruned_rows += 1
            continue
        kept.append(row)
    am.sound_rows = kept
    am.all_sound_rows = rows
    for row in kept:
        coeffs = {v: _up(c) for v, c in row.lhs.terms.items() if c != 0}
        am.model.add_row(row.name, coeffs, "<=", _down(row.bound - row.lhs.const), strict=row.strict)


def _current_first(terms: dict[str, Fraction], td: str, tb: str) -> dict[str, Fraction]:
    out = {td: terms[td], tb: terms[tb]}
    for v, c in terms.items():
        if v not in out:
            out[v] = c
    return out
