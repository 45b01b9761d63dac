"""Sound error analysis of a fixed-point graph program against the real network over a box.

For every node, an interval [e_lo, e_hi] per element containing x~ - x (program value minus
real value) for every input of the box, propagated in topological order (DESIGN §4). The error
depends only on fractional bits (given no overflow), so the analysis takes a
:class:`~.program.FracChoice`; it also returns, per rounding point, the range of the value
*before* quantisation (real range ⊕ error), from which integer bits are chosen
(:func:`int_bits_for`) or a given program's overflow is checked (:func:`overflow_violations`).
Real ranges R come from the ops' rigorous symbolic ranges (``ops.symbolic_ranges``).

Transfer rules (⊕ = outward-rounded interval sum, ρ = rounding interval of the point):
- input: ρ(∞ -> F_in): TRN [-2^-F, 0], RND [-2^-(F+1), 2^-(F+1)].
- conv/affine: A e_x ⊕ ΔA (R_x ⊕ e_x) ⊕ Δb ⊕ ρ(F_acc -> F_out), with A the exact real map
  (linear_interval: |A|·rad + centre, rigorous), ΔA = A~ - A known exactly (float value plus
  the exact remainder of the subtraction, TwoSum).
- relu (pre-activation z, real range [l, u], error [a, b]):
  stably active (l >= 0 and l + a >= 0): [a, b]; stably inactive (u <= 0 and u + b <= 0): 0;
  otherwise relu(z + e) - relu(z) ∈ [max(min(0, a), -max(u, 0)), min(max(0, b), max(0, u + b))].
- table activation σ (operand x aligned to F_x, implementation σ~ of :mod:`.act_tables`):
  σ~(x~) - σ(x) = [σ~(x~) - σ(x~)] + σ'(ξ)(x~ - x) ∈ [t_lo, t_hi] ⊕ [s_lo, s_hi]·[a, b], then
  ⊕ ρ(F_tab -> F_out); [t_lo, t_hi] the implementation's rigorous error over the hull of the
  operand's finite-precision range R ⊕ e, [s_lo, s_hi] ⊇ σ' over the hull of R and R ⊕ e per
  element (mean-value theorem; kinks give both one-sided slopes).
- maxpool: [min e_lo over the elements that can be the real maximum, max e_hi over those that can
  be the program's maximum] (:func:`aster_ext.backsub.pooled_error`: with i* the real and j* the
  program's maximiser, max x~ - max x lies in [e_i*, e_j*]).
- avgpool: (1/k) Σ e ⊕ (c~ - 1/k) Σ (R ⊕ e) ⊕ ρ(F_x + F_c -> F_out).
- add: e_a ⊕ e_b ⊕ ρ(max(F_a, F_b) -> F_out).
- element moves: the errors move with the elements.
Rounding interval from grid 2^-s to 2^-d (d < s): TRN [-(2^-d - 2^-s), 0];
RND [-2^-(d+1) + 2^-s, 2^-(d+1)] (ties round up); none when d >= s.

Margins (classifier, label l): the error of y_l - y_k is bounded on the difference itself. When
the logits node is dense, (W_l - W_k) e_a ⊕ (ΔW_l - ΔW_k)(R_a ⊕ e_a) ⊕ (Δb_l - Δb_k) ⊕
(ρ_l - ρ_k) with e_a, R_a the error and range of its operand: sign cancellations between the two
rows survive, so this is never looser than e_l - e_k of the per-logit intervals (and is
intersected with it). With ``backward=True`` it is also intersected with the back-substituted
bound of :mod:`.backward` (every node's error as a linear form of its operands' errors plus its
own local terms, so that errors cancelling through several layers are not counted twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..backsub import dominating, pooled_error
from ..certify import interval_mul
from ..errors import UnsupportedError
from ..fixedpoint import fraction_parts, times_pow2
from ..ir import Network, Op
from ..ops import AnalysisContext, logits_node, op_class
from ..ops.linalg import LinearMap, MapPart, linear_interval
from ..ops.windows import channel_windows
from ..rigorous import Interval, down, up
from . import backward as BW
from .act_tables import ActTables, impl_error
from .program import (
    LINEAR_KINDS,
    MOVE_KINDS,
    FracChoice,
    avg_constants,
    avg_counts,
    bias_array,
    is_table_act,
    node_size,
    per_channel,
    quantize_params,
    weight_array,
)
from .simulate import linear_structure


def rounding_interval(
    src_frac: np.ndarray | float, dst_frac: np.ndarray, quant: str
) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] of Q(v) - v for v on the 2^-src grid assigned to 2^-dst (src = inf: any real)."""
    d = np.asarray(dst_frac, dtype=np.float64)
    s = np.broadcast_to(np.asarray(src_frac, dtype=np.float64), d.shape)
    ud = np.ldexp(1.0, -d.astype(np.int64))
    us = np.where(np.isinf(s), 0.0, np.ldexp(1.0, -np.where(np.isinf(s), 0, s).astype(np.int64)))
    exact = s <= d
    if quant == "TRN":
        lo = np.where(exact, 0.0, -up(ud - us))
        hi = np.zeros_like(lo)
    elif quant == "RND":
        lo = np.where(exact, 0.0, -up(ud / 2 - us))  # floor(t + 1/2) - t > -1/2 on the grid
        hi = np.where(exact, 0.0, ud / 2)  # ties round up: +1/2 is reached
    else:
        raise ValueError(f"unknown quantisation mode {quant!r}")
    return lo, hi


def two_diff(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(a - b) and t with a - b = s + t exactly (TwoSum; no overflow assumed)."""
    nb = -b
    s = a + nb
    bb = s - a
    t = (a - (s - bb)) + (nb - bb)
    return s, t


def _enclose(value: np.ndarray, rem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return value, np.abs(rem)


@dataclass
class ParamDelta:
    """ΔW = W~ - W (kernel/weight shape) and Δb [C_out] as float value + radius (exact inside)."""

    dw: np.ndarray
    dw_rad: np.ndarray
    db: np.ndarray
    db_rad: np.ndarray


def param_delta(op: Op, weight_frac: np.ndarray, weight_quant: str = "RND") -> ParamDelta:
    """Exact enclosure of the parameter quantisation error of a conv/dense node."""
    w_raw, b_raw = quantize_params(op, weight_frac, weight_quant)
    return param_delta_of_raw(op, w_raw, b_raw, weight_frac)


def param_delta_of_raw(op: Op, w_raw: np.ndarray, b_raw: np.ndarray, weight_frac: np.ndarray) -> ParamDelta:
    wf = np.asarray(weight_frac, dtype=np.int64)
    w_exact = op.attrs.get("kernel_exact" if op.kind != "affine" else "weight_exact")
    b_exact = op.attrs.get("bias_exact")
    shp = w_raw.shape
    fr = wf.reshape((-1,) + (1,) * (len(shp) - 1))
    if w_exact is None and (w_raw.size == 0 or int(np.max(np.abs(w_raw))) < (1 << 52)):
        wq = np.ldexp(w_raw.astype(np.float64), -fr)  # exact dyadics
        dw, rem = two_diff(wq, weight_array(op))
        dw, dw_rad = _enclose(dw, rem)
    else:
        real = np.asarray(w_exact, dtype=object) if w_exact is not None else weight_array(op)
        dw, dw_rad = _exact_differences(w_raw, np.broadcast_to(fr, shp), real)
    b_real = np.asarray(b_exact, dtype=object) if b_exact is not None else bias_array(op)
    db, db_rad = _exact_differences(np.asarray(b_raw, dtype=object), wf, b_real)
    return ParamDelta(dw, dw_rad, db, db_rad)


_AS_RATIO_N = np.frompyfunc(lambda v: v.as_integer_ratio()[0], 1, 1)
_AS_RATIO_D = np.frompyfunc(lambda v: v.as_integer_ratio()[1], 1, 1)


def _exact_differences(raw: np.ndarray, frac: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q = raw·2^-frac - real elementwise, exactly (``real``: Fractions or floats): the nearest
    double of q and a radius, 0 where that double is q, else up(|q̃|·2^-52 + 2^-1074)."""
    n, d = fraction_parts(real)
    rn, rd = times_pow2(np.asarray(raw, dtype=object), 1, -np.asarray(frac, dtype=np.int64))
    qn, qd = rn * d - n * rd, rd * d  # q = raw·2^-frac - n/d = qn / qd
    dw = np.asarray(qn / qd, dtype=np.float64)  # int / int: correctly rounded, as float(Fraction)
    exact = np.asarray(_AS_RATIO_N(dw.astype(object)) * qd == _AS_RATIO_D(dw.astype(object)) * qn, dtype=bool)
    dw_rad = np.where(exact, 0.0, up(np.abs(dw) * 2.0**-52 + 5e-324))
    return dw, dw_rad


def delta_map(op: Op, in_shape: tuple[int, ...], delta: ParamDelta) -> LinearMap:
    """The linear map x -> ΔA x + Δb of a conv/dense node (radii carried as map radii)."""
    rows, cols, widx = linear_structure(op, in_shape)
    rad = delta.dw_rad.reshape(-1)[widx]
    part = MapPart(
        node_size(op),
        int(np.prod(in_shape)),
        rows,
        cols,
        delta.dw.reshape(-1)[widx],
        None,
        rad if np.any(rad) else None,
    )
    return LinearMap(
        (part,),
        per_channel(op, delta.db),
        None,
        per_channel(op, delta.db_rad) if np.any(delta.db_rad) else None,
    )


def _no_bias(lmap: LinearMap) -> LinearMap:
    return LinearMap(lmap.parts, np.zeros(lmap.n_out))


@dataclass
class ErrorAnalysis:
    """Per node: ``err[name]`` (flattened Interval of x~ - x); per rounding point
    ``value[(name, stage)]`` the range of the value before quantisation (stages "input", "acc",
    "out"); ``margin_err[k]`` the error interval of y_l - y_k (label index: 0);
    ``margin_err_forward`` the forward rule's interval alone (the ILP's linear model mirrors it);
    ``logit_err`` (when asked for) the logits' error interval ``err[logits]`` intersected with the
    back-substituted upper bounds of +e_j and -e_j (:func:`logit_interval` reads it)."""

    err: dict[str, Interval]
    value: dict[tuple[str, str], Interval]
    margin_err: Interval | None = None
    margin_err_forward: Interval | None = None
    records: dict | None = None  # the backward pass's linear error forms (``backward=True``)
    label: int | None = None
    logit_err: Interval | None = None  # logits' error, forward ∩ backward (``logits=True``)
    stable: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # relu: active, inactive, unstable
    act_impls: dict[str, Any] = field(default_factory=dict)  # table activations: the implementation used
    slopes: dict[str, Interval] = field(default_factory=dict)  # table activations: σ' enclosure per element


class DeltaCache:
    """ΔA maps per (node, weight fracs): the precision search re-analyses with few distinct choices.
    ``acts``: the table activations' implementations (:class:`.act_tables.ActTables`), shared by
    every region analysed with this cache; a table activation whose hull no caller registered
    takes the first analysed region's ranges (right for a single region only)."""

    def __init__(self, weight_quant: str = "RND", acts: ActTables | None = None) -> None:
        self.weight_quant = weight_quant
        self.acts = acts if acts is not None else ActTables()
        self._d: dict[tuple[str, bytes], tuple[ParamDelta, LinearMap]] = {}

    def get(self, net: Network, op: Op, wf: np.ndarray) -> tuple[ParamDelta, LinearMap]:
        key = (op.name, np.asarray(wf, dtype=np.int64).tobytes())
        if key not in self._d:
            d = param_delta(op, wf, self.weight_quant)
            self._d[key] = (d, delta_map(op, tuple(net.op(op.inputs[0]).shape), d))
        return self._d[key]


def deltas_for(net: Network, regions: list, deltas: DeltaCache | None = None) -> DeltaCache:
    """``deltas`` (a new cache if None) with every table activation's hull registered over all
    prepared ``regions`` (so that all their analyses share one implementation per node)."""
    d = deltas if deltas is not None else DeltaCache()
    maps = [r.ranges.ranges for r in regions if getattr(r, "ranges", None) is not None]
    if maps:
        d.acts.register(net, maps)
    return d


def _flat(iv: Interval) -> Interval:
    return Interval(iv.lo.reshape(-1), iv.hi.reshape(-1))


def analyze_errors(
    net: Network,
    ranges: AnalysisContext,
    fracs: FracChoice,
    quant: str = "TRN",
    label: int | None = None,
    deltas: DeltaCache | None = None,
    backward: bool = True,
    logits: bool = False,
) -> ErrorAnalysis:
    """Error intervals of the program with fractional bits ``fracs`` (module docstring).
    ``ranges``: real-network ranges of every node over the box (ops.symbolic_ranges or
    ops.interval_ranges); ``label``: also bound the margin errors of that class; ``backward``
    (default): intersect those margin errors with the back-substituted bound of :mod:`.backward`
    (False: the forward intervals alone, which the greedy search uses); ``logits`` (with
    ``backward``): also bound each logit's error by back-substitution (``logit_err``; one more
    backward pass with 2·n_logits directions, so only where an ε on the logits is asked for)."""
    deltas = deltas or DeltaCache()
    err: dict[str, Interval] = {}
    val: dict[tuple[str, str], Interval] = {}
    stable: dict[str, tuple[int, int, int]] = {}
    act_impls: dict[str, Any] = {}
    slopes: dict[str, Interval] = {}
    frac_of: dict[str, np.ndarray] = {}
    records: dict[str, BW.Rec] = {}  # linear error forms of every node (:mod:`.backward`)
    target = logits_node(net)
    R = {k: _flat(v) for k, v in ranges.ranges.items()}
    deltas.acts.register(net, [R])  # table activations no caller registered: this region's hull
    for op in net.ops():
        name = op.name
        if op.kind == "input":
            n = R[name].lo.size
            lo, hi = rounding_interval(np.inf, np.full(n, fracs.input), quant)
            err[name] = Interval(lo, hi)
            val[(name, "input")] = R[name]
            frac_of[name] = np.full(n, fracs.input, dtype=np.int64)
            records[name] = BW.InputRec(err[name])
            continue
        if name not in R:
            continue  # after the logits (softmax/argmax/output markers)
        ins = op.inputs
        if op.kind in LINEAR_KINDS:
            x = ins[0]
            wf = np.asarray(fracs.weight[name], dtype=np.int64)
            fx = int(frac_of[x].max())
            facc = per_channel(op, wf + fx)
            fout = per_channel(op, fracs.out[name])
            _, dmap = deltas.get(net, op, wf)
            amap = _no_bias(ranges.linear_map(op))
            e1 = linear_interval(amap, [err[x]])
            e2 = linear_interval(dmap, [R[x].add(err[x])])
            pre = e1.add(e2)
            val[(name, "acc")] = val[(name, "out")] = R[name].add(pre)
            rlo, rhi = rounding_interval(facc, fout, quant)
            err[name] = pre.add(Interval(rlo, rhi))
            frac_of[name] = fout
            records[name] = BW.MapRec(x, amap, e2.add(Interval(rlo, rhi)))
        elif is_table_act(op):
            x = ins[0]
            e, r = err[x], R[x]
            fx = int(frac_of[x].max())
            fout = per_channel(op, fracs.out[name])
            impl = deltas.acts.impl(op, fx, int(np.max(fracs.out[name])))
            xt = r.add(e)  # the operand's finite-precision range
            t_lo, t_hi = impl_error(impl, float(np.min(xt.lo)), float(np.max(xt.hi)))
            s = deltas.acts.slopes(op, np.minimum(r.lo, xt.lo), np.maximum(r.hi, xt.hi))
            prop = interval_mul(s, e)
            pre = prop.add(Interval(np.full(e.lo.size, t_lo), np.full(e.lo.size, t_hi)))
            val[(name, "out")] = R[name].add(pre)
            rlo, rhi = rounding_interval(np.full(fout.shape, impl.out_frac), fout, quant)
            err[name] = pre.add(Interval(rlo, rhi))
            frac_of[name] = fout
            act_impls[name] = impl
            slopes[name] = s
            records[name] = _slope_record(x, s, e, t_lo, t_hi, Interval(rlo, rhi))
        elif op.kind == "act":
            x = ins[0]
            e, r = err[x], R[x]
            if op.attrs["fn"] == "identity":
                err[name] = e
                records[name] = BW.AddRec((x,), Interval(np.zeros(e.lo.size), np.zeros(e.lo.size)))
            else:  # relu (every other activation is a table activation, above)
                active = (r.lo >= 0) & (down(r.lo + e.lo) >= 0)
                inactive = (r.hi <= 0) & (up(r.hi + e.hi) <= 0)
                u_pos = np.maximum(r.hi, 0.0)
                lo = np.maximum(np.minimum(e.lo, 0.0), -u_pos)
                hi = np.minimum(np.maximum(e.hi, 0.0), np.maximum(up(r.hi + e.hi), 0.0))
                lo = np.where(active, e.lo, np.where(inactive, 0.0, lo))
                hi = np.where(active, e.hi, np.where(inactive, 0.0, hi))
                err[name] = Interval(lo, hi)
                stable[name] = (int(active.sum()), int(inactive.sum()), int((~active & ~inactive).sum()))
                records[name] = BW.ReluRec(x, e, active, inactive)
            frac_of[name] = frac_of[x]
        elif op.kind == "maxpool":
            x = ins[0]
            idx = channel_windows(op.attrs, tuple(net.op(x).shape), tuple(op.shape), op.attrs["kernel"])
            safe = np.where(idx >= 0, idx, 0)
            err[name], real_cand, impl_cand = pooled_error(idx, R[x], err[x])
            lo, hi = err[name].lo, err[name].hi
            frac_of[name] = np.where(idx >= 0, frac_of[x][safe], -(1 << 30)).max(axis=1)
            if backward:  # the picks serve the backward bound only
                pick = dominating(idx, R[x], err[x])
                records[name] = BW.MaxRec(
                    x,
                    pick,
                    Interval(np.where(pick >= 0, 0.0, lo), np.where(pick >= 0, 0.0, hi)),
                    idx,
                    real_cand,
                    impl_cand,
                )
        elif op.kind == "avgpool":
            x = ins[0]
            idx, count = avg_counts(op, tuple(net.op(x).shape))
            fx = int(frac_of[x].max())
            fc = int(fracs.const[name])
            c_raw = avg_constants(count, fc)
            valid = idx >= 0
            rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)[valid]
            cols = idx[valid]
            n_in = R[x].lo.size
            dc_exact = [
                Fraction(int(c), 1 << fc) - Fraction(1, int(k)) for c, k in zip(c_raw, count, strict=True)
            ]
            dc = np.array([float(q) for q in dc_exact])
            dc_rad = np.array(
                [
                    0.0 if Fraction(float(q)) == q else float(up(abs(float(q)) * 2.0**-52 + 5e-324))
                    for q in dc_exact
                ]
            )
            per_entry = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)[valid]
            dpart = MapPart(
                idx.shape[0],
                n_in,
                rows,
                cols,
                dc[per_entry],
                None,
                dc_rad[per_entry] if np.any(dc_rad) else None,
            )
            spart = MapPart.selection(idx.shape[0], n_in, rows, cols)
            amap = _no_bias(ranges.linear_map(op))
            e1 = linear_interval(amap, [err[x]])
            xr = R[x].add(err[x])
            e2 = linear_interval(LinearMap((dpart,), np.zeros(idx.shape[0])), [xr])
            pre = e1.add(e2)
            val[(name, "acc")] = linear_interval(LinearMap((spart,), np.zeros(idx.shape[0])), [xr])
            val[(name, "out")] = R[name].add(pre)
            fout = per_channel(op, fracs.out[name])
            rlo, rhi = rounding_interval(np.full(fout.shape, fx + fc), fout, quant)
            err[name] = pre.add(Interval(rlo, rhi))
            frac_of[name] = fout
            records[name] = BW.MapRec(x, amap, e2.add(Interval(rlo, rhi)))
        elif op.kind == "add":
            a, b = ins
            pre = err[a].add(err[b])
            val[(name, "out")] = R[name].add(pre)
            fout = per_channel(op, fracs.out[name])
            rlo, rhi = rounding_interval(np.maximum(frac_of[a], frac_of[b]), fout, quant)
            err[name] = pre.add(Interval(rlo, rhi))
            frac_of[name] = fout
            records[name] = BW.AddRec((a, b), Interval(rlo, rhi))
        elif op.kind in MOVE_KINDS:
            which, src = op_class(op.kind).index_map(op, [tuple(net.op(i).shape) for i in ins])
            lo = np.empty(which.size)
            hi = np.empty(which.size)
            fr = np.empty(which.size, dtype=np.int64)
            for i, s in enumerate(ins):
                sel = which == i
                lo[sel] = err[s].lo[src[sel]]
                hi[sel] = err[s].hi[src[sel]]
                fr[sel] = frac_of[s][src[sel]]
            err[name] = Interval(lo, hi)
            frac_of[name] = fr
            records[name] = BW.MoveRec(tuple(ins), which, src)
        else:
            raise UnsupportedError(f"{op.describe()}: not supported by the graph error analysis")
        if name == target:
            break
    res = ErrorAnalysis(err, val, stable=stable, act_impls=act_impls, slopes=slopes)
    # back-substitutions for the margins and (``logits``) the logits (:func:`.backward.error_bounds`)
    asked = backward and (label is not None or logits)
    bwd_margin, bwd_logit = BW.error_bounds(records, err, target, label, logits) if asked else (None, None)
    if asked:
        res.records = records  # the linear error forms the ILP's backward adjoints read
    if bwd_logit is not None:
        e = err[target]
        lo = np.maximum(e.lo.reshape(-1), bwd_logit.lo).reshape(e.lo.shape)
        hi = np.minimum(e.hi.reshape(-1), bwd_logit.hi).reshape(e.hi.shape)
        res.logit_err = Interval(lo, hi)
    if label is not None:
        res.label = label
        fwd = margin_errors(net, ranges, fracs, res, label, quant, deltas, frac_of)
        res.margin_err = res.margin_err_forward = fwd
        if bwd_margin is not None:
            res.margin_err = Interval(np.maximum(fwd.lo, bwd_margin.lo), np.minimum(fwd.hi, bwd_margin.hi))
    return res


def _slope_record(x: str, s: Interval, e: Interval, t_lo: float, t_hi: float, rho: Interval) -> BW.MapRec:
    """The table activation as a linear error form for :mod:`.backward`: e_out = m·e_x + ν with
    m = fl((s_lo + s_hi)/2) per element (exact diagonal map) and ν = (s - m)·e_x + (σ~ - σ) + ρ,
    |s - m| <= r = max(s_hi - m, m - s_lo) rounded up, so ν ∈ ±r·|e_x| ⊕ [t_lo, t_hi] ⊕ ρ."""
    n = s.lo.size
    m = 0.5 * (s.lo + s.hi)
    m = np.where(np.isfinite(m), m, 0.0)
    r = up(np.maximum(up(s.hi - m), up(m - s.lo)))
    spread = up(r * e.mag())
    noise = Interval(-spread, spread).add(Interval(np.full(n, t_lo), np.full(n, t_hi))).add(rho)
    idx = np.arange(n)
    return BW.MapRec(x, LinearMap((MapPart(n, n, idx, idx, m),), np.zeros(n)), noise)


def margin_errors(
    net: Network,
    ranges: AnalysisContext,
    fracs: FracChoice,
    res: ErrorAnalysis,
    label: int,
    quant: str,
    deltas: DeltaCache,
    frac_of: dict[str, np.ndarray],
) -> Interval:
    """Error interval of y_label - y_k for every k (entry ``label``: [0, 0]); module docstring."""
    tgt = logits_node(net)
    e = res.err[tgt]
    n = e.lo.size
    ks = np.array([k for k in range(n) if k != label])
    lo = np.zeros(n)
    hi = np.zeros(n)
    lo[ks] = down(e.lo[label] - e.hi[ks])
    hi[ks] = up(e.hi[label] - e.lo[ks])
    op = net.op(tgt)
    if op.kind != "affine":
        return Interval(lo, hi)
    x = op.inputs[0]
    R = _flat(ranges.ranges[x])
    ex = res.err[x]
    w = weight_array(op)
    wf = np.asarray(fracs.weight[tgt], dtype=np.int64)
    delta, _ = deltas.get(net, op, wf)
    dw, dw_rem = two_diff(w[label][None, :], w[ks])
    ddw, ddw_rem = two_diff(delta.dw[label][None, :], delta.dw[ks])
    ddw_rad = up(up(np.abs(ddw_rem) + delta.dw_rad[label][None, :]) + delta.dw_rad[ks])
    ddb, ddb_rem = two_diff(np.full(ks.size, delta.db[label]), delta.db[ks])
    ddb_rad = up(up(np.abs(ddb_rem) + delta.db_rad[label]) + delta.db_rad[ks])
    if op.attrs.get("weight_exact") is not None:
        return Interval(lo, hi)  # exact (non-double) weights: keep the per-logit difference
    m, k_in = ks.size, w.shape[1]
    rows = np.repeat(np.arange(m), k_in)
    cols = np.tile(np.arange(k_in), m)
    p1 = MapPart(
        m, k_in, rows, cols, dw.reshape(-1), None, np.abs(dw_rem).reshape(-1) if np.any(dw_rem) else None
    )
    p2 = MapPart(m, k_in, rows, cols, ddw.reshape(-1), None, ddw_rad.reshape(-1) if np.any(ddw_rad) else None)
    t1 = linear_interval(LinearMap((p1,), np.zeros(m)), [ex])
    t2 = linear_interval(LinearMap((p2,), ddb, None, ddb_rad if np.any(ddb_rad) else None), [R.add(ex)])
    facc = wf + int(frac_of[x].max())
    rlo, rhi = rounding_interval(facc, np.asarray(fracs.out[tgt], dtype=np.int64), quant)
    t3 = Interval(down(rlo[label] - rhi[ks]), up(rhi[label] - rlo[ks]))
    d = t1.add(t2).add(t3)
    lo[ks] = np.maximum(lo[ks], d.lo)
    hi[ks] = np.minimum(hi[ks], d.hi)
    return Interval(lo, hi)


def int_bits_for(lo: np.ndarray, hi: np.ndarray, frac: np.ndarray, quant: str) -> np.ndarray:
    """Smallest I per element (width F + I >= 1) with no overflow for any value in [lo, hi]
    (:func:`fits`, the conditions of DESIGN §3)."""
    f = np.asarray(frac, dtype=np.int64)
    mag = np.maximum(np.abs(lo), np.abs(hi))
    approx = np.floor(np.log2(np.maximum(mag, 2.0**-300))).astype(np.int64) + 1
    ib = np.maximum(approx - 1, 1 - f)
    for _ in range(2100):
        bad = ~fits(lo, hi, ib, f, quant)
        if not np.any(bad):
            return ib
        ib = ib + bad
    raise ValueError("no integer-bit count holds the range (non-finite bound?)")


def fits(lo: np.ndarray, hi: np.ndarray, int_bits: np.ndarray, frac: np.ndarray, quant: str) -> np.ndarray:
    """Elementwise: every v in [lo, hi] is assigned without overflow (DESIGN §3)."""
    top = np.ldexp(1.0, np.asarray(int_bits, dtype=np.int64) - 1)
    half = np.ldexp(1.0, -(np.asarray(frac, dtype=np.int64) + 1)) if quant == "RND" else 0.0
    return (up(hi + half) < top) & (down(lo + half) >= -top)


def logit_interval(net: Network, a: ErrorAnalysis) -> Interval:
    """The tightest error interval of the logits ``a`` holds: ``logit_err`` when it was computed
    (forward ∩ backward), else the forward ``err[logits]``."""
    return a.logit_err if a.logit_err is not None else a.err[logits_node(net)]
