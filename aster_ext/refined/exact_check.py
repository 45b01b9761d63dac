"""Exact-rational replay of :func:`~aster_ext.refined.error_forms.forms_analysis` (small networks).

Recomputes, in ``fractions.Fraction`` arithmetic with the exact real parameters, the symbolic
ranges and the affine error forms, replaying the float run's discrete decisions: which neurons
are unstable in the range analysis and the lower-slope choice λ of each unstable ReLU, and the
INACTIVE/ACTIVE/UNSTABLE decision of every neuron in the error forms (a float decision of
stability must hold exactly, else the replay reports it). :func:`check_run` asserts that the float
bounds are never below the exact ones (DESIGN §4 "Soundness of the analysis itself").
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..ir import DenseLayer, to_fractions
from ..program import FixedProgram
from .error_forms import ACTIVE, INACTIVE, UNSTABLE, FormsRun
from .symbolic_ranges import relu_relaxation

ZERO = Fraction(0)


def _obj(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=object)


def _fr(a: np.ndarray) -> np.ndarray:
    return to_fractions(np.asarray(a, dtype=np.float64))


def _pos(a: np.ndarray) -> np.ndarray:
    return np.where(a > 0, a, ZERO)


def _neg(a: np.ndarray) -> np.ndarray:
    return np.where(a < 0, a, ZERO)


def _abs(a: np.ndarray) -> np.ndarray:
    return np.where(a < 0, -a, a)


def _raw_values(raw: np.ndarray, frac: np.ndarray) -> np.ndarray:
    out = np.empty(raw.shape, dtype=object)
    for idx in np.ndindex(raw.shape):
        out[idx] = Fraction(int(raw[idx])) * Fraction(2) ** -int(frac[idx])
    return out


def _rounding(src: np.ndarray, dst: np.ndarray, quant: str) -> tuple[np.ndarray, np.ndarray]:
    lo = np.empty(np.shape(src), dtype=object)
    hi = np.empty(np.shape(src), dtype=object)
    for idx in np.ndindex(np.shape(src)):
        s, d = int(np.asarray(src)[idx]), int(np.asarray(dst)[idx])
        if s <= d:
            lo[idx] = hi[idx] = ZERO
        elif quant == "TRN":
            lo[idx], hi[idx] = -(Fraction(2) ** -d - Fraction(2) ** -s), ZERO
        else:
            lo[idx], hi[idx] = -(Fraction(2) ** (-d - 1)), Fraction(2) ** (-d - 1)
    return lo, hi


@dataclass
class ExactReplay:
    pre_lo: list[np.ndarray]
    pre_hi: list[np.ndarray]
    output_bound: list[Fraction]
    problems: list[str]


def exact_ranges(
    layers: list[DenseLayer], lower: np.ndarray, upper: np.ndarray, run: FormsRun
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exact interval ∩ back-substitution ranges, replaying the float relaxation choices."""
    xl, xh = _fr(lower), _fr(upper)
    pre_lo: list[np.ndarray] = []
    pre_hi: list[np.ndarray] = []
    post_lo, post_hi = xl, xh
    rel: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for li, layer in enumerate(layers):
        w, b = layer.exact_weight(), layer.exact_bias()
        lo = _pos(w) @ post_lo + _neg(w) @ post_hi + b
        hi = _pos(w) @ post_hi + _neg(w) @ post_lo + b
        if li > 0:
            for upper_side in (True, False):
                lam = np.eye(layer.n_out, dtype=int).astype(object) * Fraction(1)
                c = np.full(layer.n_out, ZERO, dtype=object)
                for k in range(li, -1, -1):
                    wk, bk = layers[k].exact_weight(), layers[k].exact_bias()
                    c = c + lam @ bk
                    lam = lam @ wk
                    if k == 0:
                        break
                    us, ui, ls = rel[k - 1]
                    p, n = _pos(lam), _neg(lam)
                    if upper_side:
                        c = c + p @ ui
                        lam = p * us[None, :] + n * ls[None, :]
                    else:
                        c = c + n @ ui
                        lam = p * ls[None, :] + n * us[None, :]
                if upper_side:
                    v = _pos(lam) @ xh + _neg(lam) @ xl + c
                    hi = np.array([min(a, bb) for a, bb in zip(hi, v, strict=True)], dtype=object)
                else:
                    v = _pos(lam) @ xl + _neg(lam) @ xh + c
                    lo = np.array([max(a, bb) for a, bb in zip(lo, v, strict=True)], dtype=object)
        pre_lo.append(lo)
        pre_hi.append(hi)
        if layer.activation == "relu":
            # replay the float run's relaxation: its stability decision, its λ, and the chord
            # through its (float, enclosing) endpoints, taken exactly
            f_pre = run.ranges[li].pre
            lam_f = relu_relaxation(f_pre).lo_slope
            f_lo, f_hi = _fr(f_pre.lo), _fr(f_pre.hi)
            us = np.empty(layer.n_out, dtype=object)
            ui = np.empty(layer.n_out, dtype=object)
            ls = np.empty(layer.n_out, dtype=object)
            for j in range(layer.n_out):
                if f_lo[j] >= 0:
                    us[j], ui[j], ls[j] = Fraction(1), ZERO, Fraction(1)
                elif f_hi[j] <= 0:
                    us[j], ui[j], ls[j] = ZERO, ZERO, ZERO
                else:
                    s = f_hi[j] / (f_hi[j] - f_lo[j])
                    us[j], ui[j], ls[j] = s, -s * f_lo[j], Fraction(int(lam_f[j]))
            rel.append((us, ui, ls))
            post_lo = np.array([max(v, ZERO) for v in lo], dtype=object)
            post_hi = np.array([max(v, ZERO) for v in hi], dtype=object)
        else:
            one = np.full(layer.n_out, Fraction(1), dtype=object)
            rel.append((one, np.full(layer.n_out, ZERO, dtype=object), one))
            post_lo, post_hi = lo, hi
    return pre_lo, pre_hi


def replay(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    input_on_grid: bool,
    run: FormsRun,
) -> ExactReplay:
    """Exact bound of the affine-form analysis with the float run's decisions (module docstring).

    ReLU/identity networks only (the replay has no exact slope sets or implementation errors for
    other activations; those are covered by the soundness attacks of tests/test_activation_networks.py)."""
    for layer in layers:
        if layer.activation not in ("relu", "identity"):
            from ..errors import UnsupportedError

            raise UnsupportedError(f"exact replay: activation '{layer.activation}' is not replayed")
    problems: list[str] = []
    pre_lo, pre_hi = exact_ranges(layers, lower, upper, run)
    for li in range(len(layers)):
        flo, fhi = _fr(run.ranges[li].pre.lo), _fr(run.ranges[li].pre.hi)
        if any(a < b for a, b in zip(pre_lo[li], flo, strict=True)) or any(
            a > b for a, b in zip(pre_hi[li], fhi, strict=True)
        ):
            problems.append(f"layer {li}: float range does not enclose the exact range")
    lay = run.layout
    quant = program.quant
    ctr = np.full(lay.ncols, ZERO, dtype=object)
    rad = np.full(lay.ncols, ZERO, dtype=object)
    n0 = program.n_in
    if not input_on_grid:
        lo_, hi_ = _rounding(np.full(n0, 1074), np.full(n0, program.input_t.frac_bits), quant)
        ctr[:n0] = (lo_ + hi_) / 2
        rad[:n0] = (hi_ - lo_) / 2
    ca = np.full((n0, lay.ncols), ZERO, dtype=object)
    for i in range(n0):
        ca[i, i] = Fraction(1)
    x_lo, x_hi = _fr(lower), _fr(upper)
    bound: list[Fraction] = []
    for li, (lp, layer) in enumerate(zip(program.layers, layers, strict=True)):
        w, b = layer.exact_weight(), layer.exact_bias()
        e_c = ca @ ctr
        e_r = _abs(ca) @ rad
        xf_lo, xf_hi = x_lo + e_c - e_r, x_hi + e_c + e_r
        xm, xr = (xf_lo + xf_hi) / 2, (xf_hi - xf_lo) / 2
        wt = _raw_values(lp.weight_raw, lp.weight_t.frac)
        bt = _raw_values(lp.bias_raw, lp.bias_t.frac)
        dw = wt - w
        x_fmt = program.input_formats(li)
        n_out, n_in = lp.n_out, lp.n_in
        rp = _rounding(lp.weight_t.frac + x_fmt.frac[None, :], lp.product_t.frac, quant)
        s_src = np.empty((n_out, n_in), dtype=np.int64)
        s_src[:, 0] = lp.product_t.frac[:, 0]
        s_src[:, 1:] = np.maximum(lp.psum_t.frac[:, :-1], lp.product_t.frac[:, 1:])
        rs = _rounding(s_src, lp.psum_t.frac, quant)
        rd = _rounding(lp.psum_t.frac[:, -1], lp.dot_t.frac, quant)
        rb = _rounding(np.maximum(lp.dot_t.frac, lp.bias_t.frac), lp.bsum_t.frac, quant)
        ra = _rounding(lp.bsum_t.frac, lp.out_t.frac, quant)
        loc_lo = rp[0].sum(axis=1) + rs[0].sum(axis=1) + rd[0] + rb[0] + (bt - b)
        loc_hi = rp[1].sum(axis=1) + rs[1].sum(axis=1) + rd[1] + rb[1] + (bt - b)
        dc = dw @ xm
        dr = _abs(dw) @ xr
        zc = lay.z_cols(li)
        ctr[zc] = (loc_lo + loc_hi) / 2 + dc
        rad[zc] = (loc_hi - loc_lo) / 2 + dr
        cz = w @ ca
        for j in range(n_out):
            cz[j, lay.z_off[li] + j] += 1
        ez_c = cz @ ctr
        ez_r = _abs(cz) @ rad
        dec = run.decisions[li]
        d = np.empty(n_out, dtype=object)
        rem = np.full(n_out, ZERO, dtype=object)
        for j in range(n_out):
            lo_e, hi_e = ez_c[j] - ez_r[j], ez_c[j] + ez_r[j]
            if dec[j] == INACTIVE:
                if not (pre_hi[li][j] <= 0 and pre_hi[li][j] + hi_e <= 0):
                    problems.append(f"layer {li} neuron {j}: float INACTIVE not exact")
                d[j] = ZERO
            elif dec[j] == ACTIVE:
                if lp.activation == "relu" and not (pre_lo[li][j] >= 0 and pre_lo[li][j] + lo_e >= 0):
                    problems.append(f"layer {li} neuron {j}: float ACTIVE not exact")
                d[j] = Fraction(1)
            else:
                assert dec[j] == UNSTABLE
                d[j] = Fraction(1, 2)
                rem[j] = max(abs(lo_e), abs(hi_e)) / 2
        ac = lay.a_cols(li)
        ctr[ac] = (ra[0] + ra[1]) / 2
        rad[ac] = (ra[1] - ra[0]) / 2 + rem
        ca = d[:, None] * cz
        for j in range(n_out):
            ca[j, lay.a_off[li] + j] += 1
        if layer.activation == "relu":
            x_lo = np.array([max(v, ZERO) for v in pre_lo[li]], dtype=object)
            x_hi = np.array([max(v, ZERO) for v in pre_hi[li]], dtype=object)
        else:
            x_lo, x_hi = pre_lo[li], pre_hi[li]
        if li == len(layers) - 1:
            c_out = ca @ ctr
            r_out = _abs(ca) @ rad
            bound = [max(abs(c - r), abs(c + r)) for c, r in zip(c_out, r_out, strict=True)]
    return ExactReplay(pre_lo, pre_hi, bound, problems)


def check_run(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    input_on_grid: bool,
    run: FormsRun,
) -> list[str]:
    """Problems found (empty when the float analysis is sound against its exact replay)."""
    rep = replay(program, layers, lower, upper, input_on_grid, run)
    problems = list(rep.problems)
    for o, (fb, eb) in enumerate(zip(run.output_bound, rep.output_bound, strict=True)):
        if Fraction(float(fb)) < eb:
            problems.append(f"output {o}: float bound {float(fb)!r} < exact {float(eb)!r}")
    return problems
