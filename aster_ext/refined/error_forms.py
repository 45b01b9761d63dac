"""Per-neuron affine error forms and the affine-form certifier of a FixedProgram (DESIGN §4).

Every error of the program is written as an affine form over *columns* (error sources):

    e_j = Σ_c C_jc δ_c + s_j ξ_j,    δ_c ∈ [ctr_c - rad_c, ctr_c + rad_c],  ξ_j ∈ [-1, 1]

Columns: one per input (input quantisation), and per layer l and neuron j one "z column" (the
local error injected into the pre-activation z_j: Σ_k ΔW_jk x~_k + all roundings of products,
partial sums, dot and bias sum + Δb_j) and one "a column" (injected after the activation: the
ReLU remainder of an unstable neuron plus the rounding to out_t). With e = x~ - x the incoming
error and W the exact real weights,

    z~_j - z_j = Σ_k W_jk e_k + δ_z,j,    δ_z,j = Σ_k ΔW_jk x~_k + ρ_j + Δb_j,   ΔW = W~ - W,

so linear layers map forms exactly (C_z = W C_a + I, cancellations survive). ReLU with the
hull of real and finite-precision pre-activation: stably inactive -> 0, stably active -> e,
otherwise (unstable) e_a = ½ e_z + r with a fresh remainder |r| <= ½ max|e_z| (the output error
lies between min(0, e) and max(0, e)). Any other activation σ with its implementation σ~
(``act_impl``): e_a = s_c e_z + r + δ with s_c the midpoint of the slope set [s_lo, s_hi] of σ
over the hull of the real and finite-precision pre-activation ranges, a fresh remainder
|r| <= s_rad max|e_z| (s_rad = max(s_hi - s_c, s_c - s_lo) rounded up; r = (s - s_c) e_z for the
mean-value slope s) and δ = σ~(z~) - σ(z~) (+ the final rounding to out_t) in the
implementation's rigorous error interval; remainder and δ together are the a column, and the
float products s_c·C add 2μ|fl(s_c C)| mag to the slack. The float64 coefficient products are made rigorous by
the per-neuron slack s: s_z = |W| s_a + γ_n |W| (|C| mag) + R (|C| mag + s_a), R the radius of
the exact weights, mag_c = |ctr_c| + rad_c.

:func:`certify_forms` evaluates these forms on the exact types and raw constants of any
:class:`FixedProgram`, decides ReLU stability from symbolic ranges ⊕ the form's range, checks
every assignment for overflow (half-open, DESIGN §3; partial sums as in ``certify.py``) and
returns the per-output bound min(form bound, interval bound of ``certify_program``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..certify import (
    Certificate,
    _Checker,
    _cumsum_interval,
    _diff_enclosure,
    _needed_int_bits,
    _row_sum,
    act_error_cap,
    act_impl_error,
    act_out_range,
    act_slope,
    certify_program,
    check_activations,
    raw_to_float,
    rounding_interval,
)
from ..errors import UnsupportedError
from ..ir import DenseLayer
from ..program import FixedProgram
from ..progress import note
from ..ranges import ExactParams, LayerRanges
from ..rigorous import MU, Interval, down, gamma, matvec, scaled_sum_bound, up
from .symbolic_ranges import symbolic_ranges

INACTIVE, ACTIVE, UNSTABLE = 0, 1, 2


@dataclass
class FormLayout:
    """Column offsets: inputs first, then per layer its z columns and its a columns."""

    n_in: int
    sizes: list[int]
    z_off: list[int]
    a_off: list[int]
    ncols: int

    @staticmethod
    def of(n_in: int, sizes: list[int]) -> FormLayout:
        z_off, a_off = [], []
        pos = n_in
        for n in sizes:
            z_off.append(pos)
            a_off.append(pos + n)
            pos += 2 * n
        return FormLayout(n_in, list(sizes), z_off, a_off, pos)

    def z_cols(self, li: int) -> slice:
        return slice(self.z_off[li], self.z_off[li] + self.sizes[li])

    def a_cols(self, li: int) -> slice:
        return slice(self.a_off[li], self.a_off[li] + self.sizes[li])


def interval_sub(a: Interval, b: Interval) -> Interval:
    return Interval(down(a.lo - b.hi), up(a.hi - b.lo))


def intersect(a: Interval, b: Interval) -> Interval:
    return Interval(np.maximum(a.lo, b.lo), np.minimum(a.hi, b.hi))


def form_interval(c: np.ndarray, slack: np.ndarray, ctr: np.ndarray, rad: np.ndarray) -> Interval:
    """Rigorous range of C δ + s ξ over δ_c ∈ ctr_c ± rad_c, ξ ∈ [-1, 1]."""
    n = c.shape[1]
    centre = c @ ctr
    ac = np.abs(c)
    r = up(scaled_sum_bound(ac, rad) + gamma(n) * scaled_sum_bound(ac, np.abs(ctr)))
    r = up(up(r * (1.0 + 4 * MU)) + slack)
    return Interval(down(centre - r), up(centre + r))


def linear_step(
    ca: np.ndarray, sa: np.ndarray, weight: np.ndarray, weight_rad: np.ndarray | None, mag_cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """C_z = fl(W C_a) and its slack (module docstring); the caller adds the layer's own z columns."""
    n = weight.shape[1]
    cz = weight @ ca
    aw = np.abs(weight)
    e_mag = up(scaled_sum_bound(np.abs(ca), mag_cols) + sa)  # bound on |e_a| per input neuron
    sz = up(scaled_sum_bound(aw, sa) + gamma(n) * scaled_sum_bound(aw, e_mag))
    if weight_rad is not None:
        sz = up(sz + scaled_sum_bound(np.asarray(weight_rad, dtype=np.float64), e_mag))
    return cz, up(sz * (1.0 + 4 * MU))


def relu_decisions(pre: Interval, err: Interval) -> np.ndarray:
    """INACTIVE / ACTIVE / UNSTABLE from the hull of the real range and real ⊕ error."""
    hull_lo = np.minimum(pre.lo, down(pre.lo + err.lo))
    hull_hi = np.maximum(pre.hi, up(pre.hi + err.hi))
    return np.where(hull_hi <= 0, INACTIVE, np.where(hull_lo >= 0, ACTIVE, UNSTABLE))


def slope_of(dec: np.ndarray) -> np.ndarray:
    return np.where(dec == ACTIVE, 1.0, np.where(dec == UNSTABLE, 0.5, 0.0))


@dataclass
class FormsRun:
    """Everything :func:`forms_analysis` computed (what the exact checker replays)."""

    layout: FormLayout
    ranges: list[LayerRanges]
    decisions: list[np.ndarray]
    ctr: np.ndarray
    rad: np.ndarray
    cz: list[np.ndarray] = field(default_factory=list)
    sz: list[np.ndarray] = field(default_factory=list)
    ca: list[np.ndarray] = field(default_factory=list)
    sa: list[np.ndarray] = field(default_factory=list)
    z_err: list[Interval] = field(default_factory=list)
    a_err: list[Interval] = field(default_factory=list)
    overflows: list = field(default_factory=list)
    stage_ranges: list[dict[str, Interval]] = field(default_factory=list)

    @property
    def output_bound(self) -> np.ndarray:
        return up(self.a_err[-1].mag())


def forms_analysis(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    input_on_grid: bool = False,
    params: list[ExactParams] | None = None,
    ranges: list[LayerRanges] | None = None,
    relu_stability: bool = True,
    impl_factory: Callable[[int, Any, Interval], None] | None = None,
) -> FormsRun:
    """Forward affine-form error analysis of ``program`` (module docstring) with overflow checks.

    ``ranges`` default to :func:`symbolic_ranges` (any sound ranges may be passed, e.g. interval
    ones); ``relu_stability=False`` treats every ReLU as unstable (sound, for the ablation).
    ``impl_factory(li, layer_program, z_fix)``, called for a non-ReLU/identity layer that has no
    ``act_impl`` yet once the range z_fix of its finite-precision pre-activation is known, must
    set ``act_impl`` (and the layer's ``out_t``) — this is how :mod:`.solve` builds the tables
    on the finite-precision ranges of the program being analysed."""
    if impl_factory is None:
        check_activations(program, layers, "refined certify")
    ps = params if params is not None else [ExactParams.of(layer) for layer in layers]
    sym = ranges if ranges is not None else symbolic_ranges(layers, lower, upper, ps)
    quant = program.quant
    chk = _Checker(quant, program.overflow)
    layout = FormLayout.of(program.n_in, [lp.n_out for lp in program.layers])
    ctr = np.zeros(layout.ncols)
    rad = np.zeros(layout.ncols)
    n0 = program.n_in
    x_real = Interval(np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))
    chk.check("input", "input", x_real, program.input_formats(0))
    if not input_on_grid:
        e_in = rounding_interval(np.full(n0, 1074), np.full(n0, program.input_t.frac_bits), quant)
        ctr[:n0], rad[:n0] = e_in.mid_rad()
    ca = np.zeros((n0, layout.ncols))
    ca[:, :n0] = np.eye(n0)
    sa = np.zeros(n0)
    run = FormsRun(layout, sym, [], ctr, rad)
    for li, (lp, p, lr) in enumerate(zip(program.layers, ps, sym, strict=True)):
        note(f"error forms, layer {li + 1}/{len(program.layers)}")
        x_fmt = program.input_formats(li)
        e_x = form_interval(ca, sa, ctr, rad)
        x_fix = x_real.add(e_x)
        w_t, w_rad = raw_to_float(lp.weight_raw, lp.weight_t.frac)
        b_t, b_rad = raw_to_float(lp.bias_raw, lp.bias_t.frac)
        n_out, n_in = lp.n_out, lp.n_in
        # roundings of the program (as in certify.py)
        prod_src = lp.weight_t.frac + x_fmt.frac[None, :]
        rho_p = rounding_interval(prod_src, lp.product_t.frac, quant)
        s_src = np.empty((n_out, n_in), dtype=np.int64)
        s_src[:, 0] = lp.product_t.frac[:, 0]
        s_src[:, 1:] = np.maximum(lp.psum_t.frac[:, :-1], lp.product_t.frac[:, 1:])
        rho_s = rounding_interval(s_src, lp.psum_t.frac, quant)
        rho_d = rounding_interval(lp.psum_t.frac[:, -1], lp.dot_t.frac, quant)
        rho_b = rounding_interval(np.maximum(lp.dot_t.frac, lp.bias_t.frac), lp.bsum_t.frac, quant)
        rho_a = rounding_interval(lp.bsum_t.frac, lp.out_t.frac, quant)
        dw = _diff_enclosure(w_t, w_rad, p.weight, p.weight_rad)
        dw_m, dw_r = dw.mid_rad()
        local = matvec(dw_m, dw_r, x_fix)
        local = local.add(_row_sum(rho_p)).add(_row_sum(rho_s)).add(rho_d).add(rho_b)
        local = local.add(_diff_enclosure(b_t, b_rad, p.bias, p.bias_rad))
        zc = layout.z_cols(li)
        ctr[zc], rad[zc] = local.mid_rad()
        mag_cols = up(np.abs(ctr) + rad)
        cz, sz = linear_step(ca, sa, p.weight, p.weight_rad, mag_cols)
        cz[:, zc] += np.eye(n_out)
        e_z = form_interval(cz, sz, ctr, rad)
        z_fix = lr.pre.add(e_z)
        act_info = None
        if layers[li].activation not in ("relu", "identity"):
            if lp.act_impl is None:
                if impl_factory is None:
                    raise UnsupportedError(f"refined certify: layer '{lp.name}' has no act_impl")
                impl_factory(li, lp, z_fix)
            act_info = _act_step(layers[li].act, lp, lr.pre, z_fix, e_z, cz, sz, mag_cols, quant)
        if act_info is not None:
            dec = np.full(n_out, ACTIVE)
        elif lp.activation == "relu" and relu_stability:
            dec = relu_decisions(lr.pre, e_z)
        elif lp.activation == "relu":
            dec = np.full(n_out, UNSTABLE)
        else:
            dec = np.full(n_out, ACTIVE)
        d = slope_of(dec)
        ac = layout.a_cols(li)
        if act_info is not None:
            ca, sa, a_m, a_r = act_info
            ctr[ac], rad[ac] = a_m, a_r
        else:
            a_m, a_r = rho_a.mid_rad()
            rem = np.where(dec == UNSTABLE, up(0.5 * e_z.mag()), 0.0)
            ctr[ac] = a_m
            rad[ac] = up(a_r + rem)
            ca = d[:, None] * cz
            sa = d * sz
        ca[:, ac] += np.eye(n_out)
        e_a = form_interval(ca, sa, ctr, rad)
        out_pre = None
        if act_info is not None:
            out_pre = act_out_range(layers[li].act, z_fix, act_impl_error(lp, z_fix))
            e_a = _cap_act_forms(layers[li].act, lp, lr.pre, out_pre, e_a, ca, sa, ctr, rad, ac, quant)
        run.decisions.append(dec)
        run.cz.append(cz)
        run.sz.append(sz)
        run.ca.append(ca)
        run.sa.append(sa)
        run.z_err.append(e_z)
        run.a_err.append(e_a)
        stages = _check_layer(
            chk, lp, x_fix, x_fmt, w_t, w_rad, b_t, b_rad, z_fix, rho_p, rho_s, s_src, rho_d, rho_b, out_pre
        )
        run.stage_ranges.append(stages)
        x_real = lr.post
    run.overflows = chk.issues
    return run


def _act_step(
    act: Any,
    lp: Any,
    pre: Interval,
    z_fix: Interval,
    e_z: Interval,
    cz: np.ndarray,
    sz: np.ndarray,
    mag_cols: np.ndarray,
    quant: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Form map of an implemented activation (module docstring): (C_a without the a columns,
    slack s_a, centre and radius of the layer's a columns)."""
    sl = act_slope(act, pre, z_fix)
    s_c = 0.5 * sl.lo + 0.5 * sl.hi
    s_rad = np.maximum(up(sl.hi - s_c), up(s_c - sl.lo))
    delta = act_impl_error(lp, z_fix)
    rho_o = rounding_interval(np.full(lp.n_out, int(lp.act_impl.out_frac)), lp.out_t.frac, quant)
    a_m, a_r = delta.add(rho_o).mid_rad()
    a_r = up(a_r + up(s_rad * e_z.mag()))
    ca = s_c[:, None] * cz
    # |fl(s_c C) - s_c C| <= 2μ |fl(s_c C)| per entry (+ underflow), applied to mag of the columns
    prod_err = up(2 * MU * scaled_sum_bound(np.abs(ca), mag_cols) + cz.shape[1] * 2.0**-1074)
    sa = up(up(np.abs(s_c) * sz * (1.0 + 4 * MU)) + prod_err)
    return ca, sa, a_m, a_r


def _cap_act_forms(
    act: Any,
    lp: Any,
    pre: Interval,
    out_pre: Interval,
    e_a: Interval,
    ca: np.ndarray,
    sa: np.ndarray,
    ctr: np.ndarray,
    rad: np.ndarray,
    ac: slice,
    quant: str,
) -> Interval:
    """Per-neuron cap of an implemented activation's output error (in place on ca, sa, ctr, rad).

    a~_j - a_j lies in the range cap [lo(a~ range) - hi(σ(pre)), hi(a~ range) - lo(σ(pre))]
    (:func:`~aster_ext.certify.act_error_cap`, a~ range = σ(z~ range) ⊕ implementation error ⊕
    final rounding). Where that cap's magnitude is below the form's bound, row j is replaced by its
    own a column alone, with the cap as centre ± radius: a fresh source that appears in no other
    form so far (sound: the correlation with earlier sources is dropped, the cap is kept).
    Returns the new enclosures of the layer's output errors."""
    rho_o = rounding_interval(np.full(lp.n_out, int(lp.act_impl.out_frac)), lp.out_t.frac, quant)
    cap = act_error_cap(act, pre, out_pre.add(rho_o))
    use = np.nonzero(cap.mag() < e_a.mag())[0]
    if use.size == 0:
        return e_a
    cols = np.arange(ac.start, ac.stop)[use]
    ca[use, :] = 0.0
    ca[use, cols] = 1.0
    sa[use] = 0.0
    c_m, c_r = Interval(cap.lo[use], cap.hi[use]).mid_rad()
    ctr[cols], rad[cols] = c_m, c_r
    lo, hi = e_a.lo.copy(), e_a.hi.copy()
    lo[use], hi[use] = cap.lo[use], cap.hi[use]
    return Interval(lo, hi)


def _check_layer(
    chk: _Checker,
    lp,
    x_fix: Interval,
    x_fmt,
    w_t: np.ndarray,
    w_rad: np.ndarray,
    b_t: np.ndarray,
    b_rad: np.ndarray,
    z_fix: Interval,
    rho_p: Interval,
    rho_s: Interval,
    s_src: np.ndarray,
    rho_d: Interval,
    rho_b: Interval,
    out_pre: Interval | None = None,
) -> dict[str, Interval]:
    """Overflow checks of one layer; dot, bias sum, last partial sum from the tight z~ range.

    Returns the checked value ranges (before quantisation) of every stage, and ``final_s``."""
    n_out, n_in = lp.n_out, lp.n_in
    pl = w_t * x_fix.lo[None, :]
    ph = w_t * x_fix.hi[None, :]
    prad = up(w_rad * x_fix.mag()[None, :])
    prod = Interval(down(np.minimum(pl, ph)) - prad, up(np.maximum(pl, ph)) + prad)
    chk.check(lp.name, "product", prod, lp.product_t)
    p_stored = prod.add(rho_p)
    cum_p = _cumsum_interval(p_stored, axis=1)
    cum_rho = _cumsum_interval(rho_s, axis=1)
    prev_lo = np.zeros_like(cum_rho.lo)
    prev_hi = np.zeros_like(cum_rho.hi)
    prev_lo[:, 1:] = cum_rho.lo[:, :-1]
    prev_hi[:, 1:] = cum_rho.hi[:, :-1]
    pre_s = cum_p.add(Interval(prev_lo, prev_hi))
    stored_s = cum_p.add(cum_rho)
    bias_val = Interval(down(b_t - b_rad), up(b_t + b_rad))
    # stored last partial sum = z~ - b~ - ρd - ρb
    tight_last = interval_sub(interval_sub(interval_sub(z_fix, bias_val), rho_d), rho_b)
    final_s = intersect(Interval(stored_s.lo[:, -1], stored_s.hi[:, -1]), tight_last)
    last_rho = Interval(rho_s.lo[:, -1], rho_s.hi[:, -1])
    pre_last = intersect(Interval(pre_s.lo[:, -1], pre_s.hi[:, -1]), interval_sub(final_s, last_rho))
    pre_s.lo[:, -1] = pre_last.lo
    pre_s.hi[:, -1] = pre_last.hi
    need_bits = _needed_int_bits(final_s)
    exact_chain = np.all(s_src <= lp.psum_t.frac, axis=1) & np.all(
        lp.product_t.frac <= lp.psum_t.frac, axis=1
    )
    wide_chain = np.all(lp.psum_t.int_bits >= need_bits[:, None], axis=1)
    mask = np.ones((n_out, n_in), dtype=bool)
    if chk.overflow == "WRAP":
        mask[exact_chain & wide_chain, :-1] = False
    chk.check(lp.name, "psum", pre_s, lp.psum_t, mask)
    chk.check(lp.name, "dot", final_s, lp.dot_t)
    bsum_pre = intersect(final_s.add(rho_d).add(bias_val), interval_sub(z_fix, rho_b))
    chk.check(lp.name, "bsum", bsum_pre, lp.bsum_t)
    if out_pre is None:
        out_pre = z_fix.relu() if lp.activation == "relu" else z_fix
    chk.check(lp.name, "out", out_pre, lp.out_t)
    return {
        "product": prod,
        "psum": pre_s,
        "final_s": final_s,
        "dot": final_s,
        "bsum": bsum_pre,
        "out": out_pre,
    }


def certify_forms(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    input_on_grid: bool = False,
    ranges: list[LayerRanges] | None = None,
    relu_stability: bool = True,
) -> Certificate:
    """Sound per-output error bound of ``program``: min(affine-form bound, interval bound).

    ``errors`` holds the form enclosures of every layer output; ``ranges`` the symbolic ranges.
    Overflow checks use symbolic ranges ⊕ the forms' error ranges (sound on their own, so the
    interval bound, which presumes no overflow, may be used beside the form bound).
    ``ranges``/``relu_stability`` as in :func:`forms_analysis` (the ablation's switches).
    """
    params = [ExactParams.of(layer) for layer in layers]
    run = forms_analysis(program, layers, lower, upper, input_on_grid, params, ranges, relu_stability)
    interval_cert = certify_program(program, layers, lower, upper, input_on_grid)
    bound = np.minimum(run.output_bound, interval_cert.output_bound)
    return Certificate(run.a_err, run.ranges, bound, run.overflows, input_on_grid)
