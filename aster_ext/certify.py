"""Independent certificate of a fixed-point program: a sound bound on |Ñ(x) - N(x)| over a box.

Re-analyses the *exact* types and raw constants of a :class:`FixedProgram` (whatever produced
them) against the real network (exact parameters), per neuron, with signed error intervals:

    z~_j - z_j = Σ_k w~_jk e_k + Σ_k Δw_jk x_k + Σ_k (ρp_jk + ρs_jk) + ρd_j + Δb_j + ρb_j

where e = x~ - x is the incoming error, Δw = w~ - w, Δb = b~ - b, and every ρ is the rounding
of one assignment in the program (0 when the assignment drops no bits; AP_TRN: in
[-(2^-F - 2^-F_src), 0]; AP_RND: |ρ| <= 2^-(F+1)). ReLU: stably inactive (hull of real and
finite-precision pre-activation <= 0) gives error 0, stably active passes it, otherwise the
error lies in [min(0, e_lo), max(0, e_hi)]. Every assignment's value before quantisation is
range-checked against its type with the half-open condition of DESIGN §3; partial sums may
overflow only where ap_fixed wrap-around provably cancels (AP_WRAP, exact chain, every
intermediate type at least as wide in integer bits as the checked final sum).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .ir import DenseLayer
from .program import FixedProgram, FormatArray, LayerProgram
from .progress import note
from .ranges import ExactParams, LayerRanges, interval_ranges
from .rigorous import ETA, Interval, down, gamma, matvec, up


@dataclass
class OverflowIssue:
    layer: str
    stage: str  # input | product | psum | dot | bsum | out
    index: tuple[int, ...]
    value_lo: float
    value_hi: float
    int_bits: int

    def message(self) -> str:
        return (
            f"overflow in layer '{self.layer}' at {self.stage}{list(self.index)}: values in "
            f"[{self.value_lo:.6g}, {self.value_hi:.6g}] do not fit {self.int_bits} integer bits"
        )


@dataclass
class Certificate:
    """Signed per-neuron error enclosures of every layer output, and the output bound."""

    errors: list[Interval]
    ranges: list[LayerRanges]
    output_bound: np.ndarray  # per output: max |error|
    overflows: list[OverflowIssue] = field(default_factory=list)
    input_on_grid: bool = False
    relu_states: list[np.ndarray] = field(default_factory=list)  # per layer: 0 inactive, 1 active, 2 unstable

    @property
    def bound(self) -> float:
        return float(np.max(self.output_bound)) if not self.overflows else float("inf")

    @property
    def ok(self) -> bool:
        return not self.overflows

    def to_json(self) -> dict[str, Any]:
        return {
            "bound": self.bound,
            "per_output": [float(v) for v in self.output_bound],
            "overflows": [o.message() for o in self.overflows],
            "input_on_grid": self.input_on_grid,
        }


def rounding_interval(src_frac: np.ndarray, dst_frac: np.ndarray, quant: str) -> Interval:
    """Error of assigning a value on the 2^-src grid to the 2^-dst grid (0 if no bits drop)."""
    src = np.asarray(src_frac, dtype=np.float64)
    dst = np.asarray(dst_frac, dtype=np.float64)
    drops = src > dst
    if quant == "TRN":
        lo = np.where(drops, -(np.exp2(-dst) - np.exp2(-src)), 0.0)
        return Interval(lo, np.zeros_like(lo))
    half = np.where(drops, np.exp2(-dst - 1.0), 0.0)
    return Interval(-half, half)


def _fits(v: Interval, fmt_int_bits: np.ndarray, frac: np.ndarray, quant: str) -> np.ndarray:
    """Half-open no-overflow condition on the value before quantisation (DESIGN §3)."""
    top = np.exp2(np.asarray(fmt_int_bits, dtype=np.float64) - 1.0)
    shift = np.exp2(-np.asarray(frac, dtype=np.float64) - 1.0) if quant == "RND" else 0.0
    return (v.lo >= -top - shift) & (v.hi < top - shift)


def raw_to_float(raw: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float enclosure (value, radius) of raw·2^-frac for object-int raws of any width."""
    flat = raw.reshape(-1)
    vals = np.array([float(r) for r in flat], dtype=np.float64).reshape(raw.shape)
    inexact = np.array([abs(int(r)).bit_length() > 53 for r in flat], dtype=bool).reshape(raw.shape)
    value = np.ldexp(vals, -np.asarray(frac, dtype=np.int64))
    rad = np.where(inexact, up(np.abs(value) * 2.0**-52), 0.0)
    return value, rad


def _diff_enclosure(a: np.ndarray, a_rad: np.ndarray, b: np.ndarray, b_rad: np.ndarray | None) -> Interval:
    """Enclosure of (a ± a_rad) - (b ± b_rad)."""
    d = a - b
    rad = up(a_rad + (b_rad if b_rad is not None else 0.0))
    return Interval(down(down(d) - rad), up(up(d) + rad))


def _cumsum_interval(v: Interval, axis: int) -> Interval:
    """Enclosure of prefix sums along ``axis`` (rounding of the float cumsum included)."""
    n = v.lo.shape[axis]
    slack = gamma(n + 2) * np.cumsum(np.abs(v.lo) + np.abs(v.hi), axis=axis) + (n + 1) * ETA
    slack = up(slack * 2.0)
    return Interval(down(np.cumsum(v.lo, axis=axis) - slack), up(np.cumsum(v.hi, axis=axis) + slack))


class _Checker:
    def __init__(self, quant: str, overflow: str) -> None:
        self.quant = quant
        self.overflow = overflow
        self.issues: list[OverflowIssue] = []

    def check(
        self, layer: str, stage: str, v: Interval, fmt: FormatArray, mask: np.ndarray | None = None
    ) -> None:
        ok = _fits(v, fmt.int_bits, fmt.frac, self.quant)
        if mask is not None:
            ok = ok | ~mask
        if not np.all(ok):
            bad = np.argwhere(~ok)[:3]
            for idx in bad:
                t = tuple(int(i) for i in idx)
                self.issues.append(
                    OverflowIssue(layer, stage, t, float(v.lo[t]), float(v.hi[t]), int(fmt.int_bits[t]))
                )


def certify_program(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    input_on_grid: bool = False,
) -> Certificate:
    """Sound per-output error bound of ``program`` against the real ``layers`` on the box."""
    check_activations(program, layers, "certify")
    params = [ExactParams.of(layer) for layer in layers]
    ranges = interval_ranges(layers, lower, upper, params)
    quant = program.quant
    chk = _Checker(quant, program.overflow)

    in_t = program.input_t
    in_fmt = program.input_formats(0)
    x_real = Interval(np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))
    chk.check("input", "input", x_real, in_fmt)
    if input_on_grid:
        err = Interval(np.zeros(program.n_in), np.zeros(program.n_in))
    else:
        err = rounding_interval(np.full(program.n_in, 1074), np.full(program.n_in, in_t.frac_bits), quant)
    errors: list[Interval] = []
    states: list[np.ndarray] = []
    for li, (lp, lr, p) in enumerate(zip(program.layers, ranges, params, strict=True)):
        note(f"interval certificate, layer {li + 1}/{len(program.layers)}")
        x_fmt = program.input_formats(li)
        err, state = _layer_error(lp, p, x_real, err, x_fmt, lr, quant, chk, layers[li])
        errors.append(err)
        states.append(state)
        x_real = lr.post
    bound = up(err.mag())
    return Certificate(errors, ranges, bound, chk.issues, input_on_grid, states)


def _layer_error(
    lp: LayerProgram,
    p: ExactParams,
    x_real: Interval,
    x_err: Interval,
    x_fmt: FormatArray,
    lr: LayerRanges,
    quant: str,
    chk: _Checker,
    layer: DenseLayer | None = None,
) -> tuple[Interval, np.ndarray]:
    """Error enclosure of one layer's outputs (module docstring formula) + overflow checks;
    also the ReLU state of each neuron (0 stably inactive, 1 stably active, 2 unstable)."""
    n_out, n_in = lp.n_out, lp.n_in
    x_fix = x_real.add(x_err)  # range of the finite-precision inputs
    w_t, w_rad = raw_to_float(lp.weight_raw, lp.weight_t.frac)
    b_t, b_rad = raw_to_float(lp.bias_raw, lp.bias_t.frac)

    # products w~ x~ (exact), then assigned to product_t
    pl = w_t * x_fix.lo[None, :]
    ph = w_t * x_fix.hi[None, :]
    prad = up(w_rad * x_fix.mag()[None, :])
    prod = Interval(down(np.minimum(pl, ph)) - prad, up(np.maximum(pl, ph)) + prad)
    chk.check(lp.name, "product", prod, lp.product_t)
    prod_src = lp.weight_t.frac + x_fmt.frac[None, :]
    rho_p = rounding_interval(prod_src, lp.product_t.frac, quant)
    p_stored = prod.add(rho_p)

    # partial-sum chain
    s_src = np.empty((n_out, n_in), dtype=np.int64)
    s_src[:, 0] = lp.product_t.frac[:, 0]
    s_src[:, 1:] = np.maximum(lp.psum_t.frac[:, :-1], lp.product_t.frac[:, 1:])
    rho_s = rounding_interval(s_src, lp.psum_t.frac, quant)
    cum_p = _cumsum_interval(p_stored, axis=1)
    cum_rho = _cumsum_interval(rho_s, axis=1)
    prev_rho = Interval(np.zeros_like(cum_rho.lo), np.zeros_like(cum_rho.hi))
    prev_rho.lo[:, 1:] = cum_rho.lo[:, :-1]
    prev_rho.hi[:, 1:] = cum_rho.hi[:, :-1]
    pre_s = cum_p.add(prev_rho)  # value before the k-th psum assignment
    stored_s = cum_p.add(cum_rho)
    final_s = Interval(stored_s.lo[:, -1], stored_s.hi[:, -1])
    need_bits = _needed_int_bits(final_s)
    exact_chain = np.all(s_src <= lp.psum_t.frac, axis=1) & np.all(
        lp.product_t.frac <= lp.psum_t.frac, axis=1
    )
    wide_chain = np.all(lp.psum_t.int_bits >= need_bits[:, None], axis=1)
    modular_ok = exact_chain & wide_chain
    mask = np.ones((n_out, n_in), dtype=bool)
    if chk.overflow == "WRAP":
        mask[modular_ok, :-1] = False  # interior partial sums may wrap harmlessly
    chk.check(lp.name, "psum", pre_s, lp.psum_t, mask)

    rho_d = rounding_interval(lp.psum_t.frac[:, -1], lp.dot_t.frac, quant)
    chk.check(lp.name, "dot", final_s, lp.dot_t)
    d_stored = final_s.add(rho_d)
    bias_val = Interval(down(b_t - b_rad), up(b_t + b_rad))
    chk.check(lp.name, "bsum", d_stored.add(bias_val), lp.bsum_t)
    rho_b = rounding_interval(np.maximum(lp.dot_t.frac, lp.bias_t.frac), lp.bsum_t.frac, quant)

    # error of z~ = stored bias sum
    e = matvec(w_t, w_rad, x_err)
    dw = _diff_enclosure(w_t, w_rad, p.weight, p.weight_rad)
    dw_m, dw_r = dw.mid_rad()
    e = e.add(matvec(dw_m, dw_r, x_real))
    e = e.add(_row_sum(rho_p)).add(_row_sum(rho_s)).add(rho_d).add(rho_b)
    e = e.add(_diff_enclosure(b_t, b_rad, p.bias, p.bias_rad))

    z_fix = lr.pre.add(e)
    rho_a = rounding_interval(lp.bsum_t.frac, lp.out_t.frac, quant)
    if lp.activation == "relu":
        inactive = (lr.pre.hi <= 0) & (z_fix.hi <= 0)
        active = (lr.pre.lo >= 0) & (z_fix.lo >= 0)
        lo = np.where(inactive, 0.0, np.where(active, e.lo, np.minimum(0.0, e.lo)))
        hi = np.where(inactive, 0.0, np.where(active, e.hi, np.maximum(0.0, e.hi)))
        act_err = Interval(lo, hi)
        state = np.where(inactive, 0, np.where(active, 1, 2))
        chk.check(lp.name, "out", z_fix.relu(), lp.out_t)
    elif lp.act_impl is not None:
        act = layer.act if layer is not None else lp.act_impl.act
        slope = act_slope(act, lr.pre, z_fix)
        impl_err = act_impl_error(lp, z_fix)
        rho_o = rounding_interval(np.full(n_out, int(lp.act_impl.out_frac)), lp.out_t.frac, quant)
        out_pre = act_out_range(act, z_fix, impl_err)
        chk.check(lp.name, "out", out_pre, lp.out_t)
        err = interval_mul(slope, e).add(impl_err).add(rho_o)
        cap = act_error_cap(act, lr.pre, out_pre.add(rho_o))
        # both enclose a~ - a: their intersection does too
        capped = Interval(np.maximum(err.lo, cap.lo), np.minimum(err.hi, cap.hi))
        return capped, np.ones(n_out, dtype=np.int64)
    else:
        act_err = e
        state = np.ones(n_out, dtype=np.int64)
        chk.check(lp.name, "out", z_fix, lp.out_t)
    return act_err.add(rho_a), state


# ---------------------------------------------------------------------------------------------
# smooth / piecewise activations with an implementation (DESIGN §4)
#
#   a~ - a = [σ~(z~) - σ(z~)] + [σ(z~) - σ(z)] + ρ_o,   σ(z~) - σ(z) = s·(z~ - z),
#
# s in the slope set of σ over the hull of the real range and real range ⊕ error (mean-value
# theorem; kinks contribute both one-sided slopes), σ~(z~) - σ(z~) in the implementation's
# rigorous error enclosure over the grid points of the finite-precision range (a table's
# clamped_error when that range leaves the table), ρ_o the rounding of Q(σ~ -> out_t).


def check_activations(program: FixedProgram, layers: list[DenseLayer], who: str) -> None:
    """Every non-ReLU/identity layer needs an act_impl implementing that same activation."""
    for lp, layer in zip(program.layers, layers, strict=True):
        if layer.activation in ("relu", "identity") and lp.act_impl is None:
            if lp.activation != layer.activation:
                raise UnsupportedError(f"{who}: layer '{layer.name}': program activation differs")
            continue
        if lp.act_impl is None:
            raise UnsupportedError(
                f"{who}: layer '{layer.name}' activation '{layer.activation}' needs an implementation "
                "(act_impl) in the program"
            )
        if lp.act_impl.act != layer.act:
            raise UnsupportedError(
                f"{who}: layer '{layer.name}': the program implements {lp.act_impl.act.describe()}, "
                f"the network has {layer.act.describe()}"
            )


def interval_mul(a: Interval, b: Interval) -> Interval:
    """Enclosure of {x·y : x in a, y in b} (endpoint products, each rounded outward)."""
    p = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    return Interval(down(np.minimum.reduce(p)), up(np.maximum.reduce(p)))


def act_slope(act: Any, pre: Interval, z_fix: Interval) -> Interval:
    """Slope set of σ over the hull of the real range ``pre`` and the finite-precision range."""
    lo, hi = act.slope(np.minimum(pre.lo, z_fix.lo), np.maximum(pre.hi, z_fix.hi))
    return Interval(lo, hi)


def act_impl_error(lp: LayerProgram, z_fix: Interval) -> Interval:
    """Per neuron, signed enclosure of σ~(t) - σ(t) over the grid points t of ``z_fix`` (the
    value before the final assignment to out_t, i.e. at act_impl.out_frac)."""
    impl = lp.act_impl
    n = lp.n_out
    lo, hi = np.empty(n), np.empty(n)
    if hasattr(impl, "entries"):  # TableImpl
        inside = (z_fix.lo >= impl.lo) & (z_fix.hi <= impl.hi)
        lo[:], hi[:] = impl.error_lo, impl.error_hi
        for j in np.nonzero(~inside)[0]:
            lo[j], hi[j] = impl.clamped_error(float(z_fix.lo[j]), float(z_fix.hi[j]))
    else:  # PiecewiseImpl: exact rational extremes over the real interval
        for j in range(n):
            lo[j], hi[j] = impl.error_interval(float(z_fix.lo[j]), float(z_fix.hi[j]))
    return Interval(lo, hi)


def act_out_range(act: Any, z_fix: Interval, impl_err: Interval) -> Interval:
    """Range of σ~(z~) (before Q to out_t): σ(z_fix) ⊕ implementation error."""
    y_lo, y_hi = act.image(z_fix.lo, z_fix.hi)
    return Interval(y_lo, y_hi).add(impl_err)


def act_error_cap(act: Any, pre: Interval, out_fix: Interval) -> Interval:
    """Enclosure of a~ - a from ranges alone: a~ = Q(σ~(z~)) lies in ``out_fix`` (σ(z_fix) ⊕
    implementation error ⊕ final rounding) and a = σ(z) in σ(pre), so a~ - a lies in
    [lo(out_fix) - hi(σ(pre)), hi(out_fix) - lo(σ(pre))]. Sound for every activation; useful
    where σ is flat or bounded over the ranges (e.g. saturated sigmoid/tanh neurons), where it can
    be far below slope·error."""
    y_lo, y_hi = act.image(pre.lo, pre.hi)
    return Interval(down(out_fix.lo - y_hi), up(out_fix.hi - y_lo))


def _row_sum(v: Interval) -> Interval:
    n = v.lo.shape[1]
    slack = up(gamma(n + 2) * np.sum(np.abs(v.lo) + np.abs(v.hi), axis=1) * 2.0 + (n + 1) * ETA)
    return Interval(down(np.sum(v.lo, axis=1) - slack), up(np.sum(v.hi, axis=1) + slack))


def _needed_int_bits(v: Interval) -> np.ndarray:
    """Smallest I with -2^(I-1) <= lo and hi < 2^(I-1), elementwise (I >= -60)."""
    m = np.maximum(np.maximum(-v.lo, v.hi), 2.0**-60)
    i = np.floor(np.log2(m)).astype(np.int64) + 2
    # correct possible off-by-one of log2 in both directions
    for _ in range(2):
        top = np.exp2(i - 2.0)
        smaller_ok = (v.lo >= -top) & (v.hi < top)
        i = np.where(smaller_ok, i - 1, i)
    top = np.exp2(i - 1.0)
    i = np.where((v.lo >= -top) & (v.hi < top), i, i + 1)
    return i
