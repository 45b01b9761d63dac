"""Sound error bound of an hls4ml dense program against the real network (DESIGN §3-§4).

Notation per layer: x the real input (range [lo, hi] from the sound range analysis of the real
network), x~ the implemented input with |x~ - x| <= e (elementwise). A Dense stage computes
z~ = A(b~) + Σ_i A(x~_i w~_ji) with A the cast to accum_t, b~ and w~ the printed-and-read-back
parameters (:mod:`.program`). Then, exactly,

    z~ - z = (A(b~) - b) + Σ_i (A(p_i) - p_i) + Σ_i w~_ji (x~_i - x_i) + Σ_i (w~_ji - w_ji) x_i,

so |z~_j - z_j| <= |A(b~_j) - b_j| + nnz_j·q_acc + Σ_i |w~_ji| e_i + max_{x in box} |(W~ - W)_j x|,
where q_acc is accum_t's quantisation error (0 when accum_t keeps all F_x + F_w bits) and
nnz_j counts the nonzero quantised weights of row j. The cast to result_t adds its quantisation
error when it drops bits. ReLU is 1-Lipschitz and its result cast adds its quantisation error; a neuron with
z_hi + e <= 0 outputs exactly 0 in both networks (error 0).
tanh/sigmoid: T[idx(x~)] - f(x) lies in [τ_lo, τ_hi] + d·[min(E_lo, 0), max(E_hi, 0)], [τ_lo, τ_hi]
the rigorous signed table error over the reachable x~ (:func:`.tables.table_error_signed`; a
saturated neuron's error is a nearly constant offset, which the forms let cancel through later
weights), d >= f' over the reachable inputs (:func:`.tables.slope_bound`, at most L = 1 for
tanh, 1/4 for sigmoid) and [E_lo, E_hi] the signed input error; then the result cast.

This magnitude bound multiplies by the absolute weight row sums at every layer; the walker also
carries the error as an affine form (:mod:`.forms`: the same terms as signed column intervals,
mapped by w~ exactly, so that cancellations and TRN's one-sided offsets survive), and every
stage's bound is the elementwise min of the two (both are sound). ReLU stability and the ranges
of the overflow checks use that min.

Overflow (DESIGN §3): every stored value's reachable range, the real range widened by its error
bound (and by the rounding of the cast), must fit its type; WRAP accumulators need only the
final sum in range (modular addition), SAT accumulators need every partial sum in range, checked
with the sum of magnitudes. Weight/bias/table entries are checked on their exact values. A
program that fails any check gets no certificate (:class:`Certificate` ``overflow`` lists why).

The same walker also builds programs (:func:`build_program`): the search chooses fractional
bits only, and each integer part follows from the reachable range the certificate checks.
Floating-point evaluation of the bound uses
upward-rounded sums (``rigorous``) and a final relative inflation of 1e-12 per stage, far above
the accumulated rounding of the few float operations per entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..ir import DenseLayer
from ..ranges import ExactParams, LayerRanges
from ..rigorous import Interval, down, matvec, scaled_sum_bound, up
from .forms import Forms, cast_interval, dense_local
from .program import ActStage, DenseStage, Hls4mlProgram, auto_dense_type
from .tables import TABLE_FUNCS, slope_bound, table_error_signed, table_overflows, table_raw
from .types import HlsType, as_values, requantize

_INFLATE = 1.0 + 1e-12


@dataclass
class Certificate:
    bound: np.ndarray  # per output, certified |implementation - real| bound
    overflow: list[str] = field(default_factory=list)
    stage_bounds: list[np.ndarray] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.overflow

    @property
    def max_bound(self) -> float:
        return float(np.max(self.bound)) if self.ok else math.inf


def int_bits_for(lo: float, hi: float, frac: int, signed: bool = True) -> int:
    """Fewest integer bits I such that [lo, hi] lies in the range of fixed<I+frac, I> (signed)."""
    mag = max(-lo, hi + 2.0**-frac, 2.0**-frac)
    i = max(math.ceil(math.log2(mag)) + 1, 1 - frac + 1)
    while not (-(2.0 ** (i - 1)) <= lo and hi <= 2.0 ** (i - 1) - 2.0**-frac):
        i += 1
    while i - 1 + frac >= 1 and -(2.0 ** (i - 2)) <= lo and hi <= 2.0 ** (i - 2) - 2.0**-frac:
        i -= 1
    return i


def _fit(frac: int, quant: str, overflow: str, lo: float, hi: float) -> HlsType:
    i = int_bits_for(lo, hi, frac)
    return HlsType(i + frac, i, True, quant, overflow)


def _up(x: np.ndarray) -> np.ndarray:
    return np.nextafter(np.asarray(x, dtype=np.float64) * _INFLATE, np.inf)


class _Walker:
    """Error/range state between stages: bound e, type cur_t and real range [x_lo, x_hi] of the input."""

    def __init__(
        self,
        layers: list[DenseLayer],
        ranges: list[LayerRanges],
        lower: np.ndarray,
        upper: np.ndarray,
        input_t: HlsType,
        forms: bool = True,
    ):
        self.use_forms = forms
        self.params = [ExactParams.of(layer) for layer in layers]  # the real W, b (with radii)
        self.ranges = ranges
        self.over: list[str] = []
        self.stage_bounds: list[np.ndarray] = []
        self.e = np.full(len(lower), input_t.quant_error())
        self.x_lo, self.x_hi = np.asarray(lower, float), np.asarray(upper, float)
        self.cur_t = input_t
        self.forms = Forms.of_input(input_t, len(lower))
        self.err = Interval(-self.e, self.e)  # signed enclosure of the current error
        self._pending: tuple[Any, ...] | None = None
        if not input_t.contains(self.x_lo - self.e, self.x_hi + self.e):
            self.over.append(
                f"input values [{self.x_lo.min():.4g}, {self.x_hi.max():.4g}] "
                f"exceed input_t {input_t.to_string()}"
            )

    def _forms_dense(self, li: int, st: DenseStage) -> tuple[Forms, Interval]:
        """The affine form of the accumulator error (before the result cast) and its range."""
        key = (li, id(st), st.accum_t.frac, st.weight_t, st.bias_t, self.cur_t)
        if self._pending is not None and self._pending[0] == key:
            return self._pending[1], self._pending[2]
        p, acc_t = self.params[li], st.accum_t
        b_acc = as_values(requantize(st.bias_raw, st.bias_t.frac, acc_t), acc_t.frac)
        b_rad = p.bias_rad if p.bias_rad is not None else 0.0
        d = b_acc - p.bias
        bias_diff = Interval(down(down(d) - b_rad), up(up(d) + b_rad))
        dw = st.weight_q - p.weight
        dw_rad = np.abs(dw) * 2.0**-52 + 1e-300 + (p.weight_rad if p.weight_rad is not None else 0.0)
        if acc_t.frac >= self.cur_t.frac + st.weight_t.frac:
            prod = (np.zeros(st.n_out), np.zeros(st.n_out))
        else:
            prod = cast_interval(acc_t, st.nnz)
        local = dense_local(bias_diff, dw, dw_rad, Interval(self.x_lo, self.x_hi), prod)
        w_rad = None if st.weight_t.width <= 53 else np.abs(st.weight_q) * 2.0**-52 + 1e-300
        f_acc = self.forms.dense(st.weight_q, w_rad, local)
        i_acc = f_acc.interval()
        self._pending = (key, f_acc, i_acc)
        return f_acc, i_acc

    def accum_bound(self, li: int, st: DenseStage) -> np.ndarray:
        """min of the magnitude walker's and the affine form's accumulator error bounds."""
        e_int = _accum_bound(st, self.params[li], self.cur_t, self.x_lo, self.x_hi, self.e)
        if not self.use_forms:
            return e_int
        _, i_acc = self._forms_dense(li, st)
        return np.minimum(e_int, up(i_acc.mag()))

    def dense(self, li: int, st: DenseStage, e_acc: np.ndarray | None = None) -> None:
        if e_acc is None:
            e_acc = self.accum_bound(li, st)
        self.e, self.cur_t = _dense_bound(
            st,
            self.params[li],
            self.cur_t,
            self.x_lo,
            self.x_hi,
            self.e,
            self.ranges[li].pre,
            self.over,
            e_acc,
        )
        if self.use_forms:
            f_acc, i_acc = self._forms_dense(li, st)
            if st.result_t.frac < st.accum_t.frac:
                cast = cast_interval(st.result_t, np.ones(st.n_out))
                self.forms = f_acc.widen_last(cast)
                i_res = i_acc.add(Interval(cast[0], cast[1]))
            else:
                self.forms, i_res = f_acc, i_acc
            self._set_error(i_res)
        else:
            self.err = Interval(-self.e, self.e)
        self.stage_bounds.append(self.e)
        self.li = li

    def _set_error(self, form_range: Interval) -> None:
        """Combine the magnitude bound self.e with the form's range (both are sound)."""
        self.e = np.minimum(self.e, up(form_range.mag()))
        self.err = Interval(np.maximum(form_range.lo, -self.e), np.minimum(form_range.hi, self.e))

    def act(self, act: ActStage) -> None:
        pre = self.ranges[self.li].pre
        e_in, in_t = self.e, self.cur_t
        self.e = _act_bound(act, in_t, pre.lo, pre.hi, e_in, self.over)
        self.cur_t = act.result_t
        if not self.use_forms:
            self.err = Interval(-self.e, self.e)
        elif act.kind == "relu":
            n = e_in.shape[0]
            if act.result_t.frac < in_t.frac:
                cast = cast_interval(act.result_t, np.ones(n))
            else:
                cast = (np.zeros(n), np.zeros(n))
            self.forms, _ = self.forms.relu(pre, self.err, e_in, cast)
            self._set_error(self.forms.interval())
        else:  # a table: the form restarts from the signed enclosure (offsets cancel later)
            sig = table_act_error(act, pre.lo, pre.hi, self.err, e_in)
            lo, hi = np.maximum(sig.lo, -self.e), np.minimum(sig.hi, self.e)
            self.forms = self.forms.restart_interval(lo, hi)
            self.err = Interval(lo, hi)
            self.e = np.minimum(self.e, up(self.err.mag()))
        self.stage_bounds.append(self.e)

    def next_layer(self) -> None:
        post = self.ranges[self.li].post
        self.x_lo, self.x_hi = post.lo, post.hi

    def snapshot(self) -> dict[str, Any]:
        """The walker's state (arrays are never modified in place, so sharing them is safe)."""
        return {
            "e": self.e,
            "cur_t": self.cur_t,
            "x_lo": self.x_lo,
            "x_hi": self.x_hi,
            "over": list(self.over),
            "stage_bounds": list(self.stage_bounds),
            "li": getattr(self, "li", None),
            "forms": self.forms,
            "err": self.err,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.e, self.cur_t, self.x_lo, self.x_hi = state["e"], state["cur_t"], state["x_lo"], state["x_hi"]
        self.over, self.stage_bounds, self.li = list(state["over"]), list(state["stage_bounds"]), state["li"]
        self.forms, self.err = state["forms"], state["err"]

    def certificate(self) -> Certificate:
        return Certificate(self.e, list(self.over), list(self.stage_bounds))


def walk(
    layers: list[DenseLayer],
    ranges: list[LayerRanges],
    lower: np.ndarray,
    upper: np.ndarray,
    program: Hls4mlProgram,
    forms: bool = True,
) -> Certificate:
    """Certify ``program`` (stage list matching ``layers``) on the input box [lower, upper].

    ``forms=False`` uses the magnitude walker alone (sound, looser; for comparisons)."""
    w = _Walker(layers, ranges, lower, upper, program.input_t, forms)
    stages = program.stages
    k = 0
    for li, layer in enumerate(layers):
        st = stages[k] if k < len(stages) else None
        if not isinstance(st, DenseStage) or st.n_in != layer.n_in or st.n_out != layer.n_out:
            raise ValueError(f"program stage {k}: expected the Dense stage of layer {layer.name}")
        k += 1
        w.dense(li, st)
        if layer.activation != "identity":
            act = stages[k] if k < len(stages) else None
            if not isinstance(act, ActStage) or act.kind != layer.activation:
                raise ValueError(f"layer {layer.name}: expected a {layer.activation} stage")
            k += 1
            w.act(act)
        w.next_layer()
    if k != len(stages):
        raise ValueError("program has more stages than the network has layers")
    return w.certificate()


def _accum_bound(
    st: DenseStage, p: ExactParams, in_t: HlsType, x_lo: np.ndarray, x_hi: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """Bound of |z~ - z| on the accumulator (module docstring), before the result cast."""
    acc_t = st.accum_t
    w_q, nnz = st.weight_q, st.nnz
    b_acc = as_values(requantize(st.bias_raw, st.bias_t.frac, acc_t), acc_t.frac)
    bias_err = _up(np.abs(b_acc - p.bias) + (p.bias_rad if p.bias_rad is not None else 0.0))
    prod_frac = in_t.frac + st.weight_t.frac
    q_acc = 0.0 if acc_t.frac >= prod_frac else acc_t.quant_error()
    prop = scaled_sum_bound(np.abs(w_q), e)
    # W~ - W: the float subtraction errs by <= half an ulp, and the real W lies within weight_rad
    # of its float centre; both go into the radius of the rigorous interval product
    dw = w_q - p.weight
    rad = np.abs(dw) * 2.0**-52 + 1e-300 + (p.weight_rad if p.weight_rad is not None else 0.0)
    dx = matvec(dw, rad, Interval(x_lo, x_hi))
    wq_err = np.maximum(np.abs(dx.lo), np.abs(dx.hi))
    return _up(bias_err + nnz * q_acc + prop + wq_err)


def _dense_bound(
    st: DenseStage,
    p: ExactParams,
    in_t: HlsType,
    x_lo: np.ndarray,
    x_hi: np.ndarray,
    e: np.ndarray,
    pre: Interval,
    over: list[str],
    e_acc: np.ndarray | None = None,
) -> tuple[np.ndarray, HlsType]:
    acc_t = st.accum_t
    w_q, nnz = st.weight_q, st.nnz
    for what, raw, t in (("weight", st.weight_raw, st.weight_t), ("bias", st.bias_raw, st.bias_t)):
        # a parameter that wrapped or saturated is far from its real value; a rounded one is within
        # an ulp plus the decimal printing error
        real, q = (p.weight, w_q) if what == "weight" else (p.bias, as_values(raw, t.frac))
        if np.any(np.abs(q - real) > 2 * t.ulp * (1 + 1e-9)):
            over.append(f"{st.name}: a {what} does not fit {t.to_string()}")
    b_acc = as_values(requantize(st.bias_raw, st.bias_t.frac, acc_t), acc_t.frac)
    if e_acc is None:
        e_acc = _accum_bound(st, p, in_t, x_lo, x_hi, e)
    # two enclosures of the implemented sum, intersected: the real range widened by the error
    # bound, and |A(b~)| + Σ|w~||x~| + nnz·ulp from the implemented inputs' magnitudes (the
    # latter also bounds every partial sum, as a SAT accumulator needs; x~ lies in in_t's range)
    # x~ is a value of in_t, whatever the error bound says
    xt_lo = np.maximum(x_lo - e, in_t.min_value)
    xt_hi = np.minimum(x_hi + e, in_t.max_value)
    x_mag = np.maximum(np.abs(xt_lo), np.abs(xt_hi))
    psum = scaled_sum_bound(np.abs(w_q), x_mag) + nnz * acc_t.ulp
    s_lo = np.nextafter(b_acc - psum, -np.inf)
    s_hi = np.nextafter(b_acc + psum, np.inf)
    a_lo = np.maximum(pre.lo - e_acc, s_lo)
    a_hi = np.minimum(pre.hi + e_acc, s_hi)
    if acc_t.overflow == "WRAP":
        if not acc_t.contains(a_lo, a_hi):
            over.append(
                f"{st.name}: accumulator range [{a_lo.min():.4g}, {a_hi.max():.4g}] "
                f"exceeds {acc_t.to_string()}"
            )
    elif not acc_t.contains(
        np.nextafter(-np.abs(b_acc) - psum, -np.inf), np.nextafter(np.abs(b_acc) + psum, np.inf)
    ):
        over.append(f"{st.name}: a partial sum may saturate {acc_t.to_string()}")
    res_t = st.result_t
    e_res = e_acc
    q_res = 0.0
    if res_t.frac < acc_t.frac:
        q_res = res_t.quant_error()
        e_res = _up(e_acc + q_res)
    if not res_t.contains(a_lo - q_res, a_hi + q_res):
        over.append(f"{st.name}: result range exceeds {res_t.to_string()}")
    return e_res, res_t


def _act_bound(
    act: ActStage, in_t: HlsType, z_lo: np.ndarray, z_hi: np.ndarray, e: np.ndarray, over: list[str]
) -> np.ndarray:
    res_t = act.result_t
    hi = z_hi + e
    if act.kind == "relu":
        # a neuron whose real and implemented pre-activations are both <= 0 outputs 0 in both
        out = np.where(z_hi + e <= 0, 0.0, e)
        if res_t.frac < in_t.frac:
            out = np.where(z_hi + e <= 0, 0.0, _up(e + res_t.quant_error()))
        top = np.maximum(hi, 0) + (res_t.quant_error() if res_t.quant == "RND" else 0)
        if not res_t.contains(0.0, top):
            over.append(f"{act.name}: ReLU result range exceeds {res_t.to_string()}")
        return out
    assert act.table_t is not None and act.table_size is not None
    if table_overflows(act.kind, act.table_size, act.table_t):
        over.append(f"{act.name}: a table entry does not fit {act.table_t.to_string()}")
    if not table_cast_fits(act.kind, act.table_size, act.table_t, res_t):
        over.append(f"{act.name}: result type {res_t.to_string()} cannot hold every table value")
    return table_act_error(act, z_lo, z_hi, Interval(-e, e), e).mag()


def table_act_error(
    act: ActStage, z_lo: np.ndarray, z_hi: np.ndarray, err: Interval, e: np.ndarray
) -> Interval:
    """Signed enclosure of a~ - a after a tanh/sigmoid table, with x the real pre-activation in
    [z_lo, z_hi], x~ - x in ``err`` and |x~ - x| <= e:

        a~ - a = (T[idx(x~)] - f(x~)) + (f(x~) - f(x)) + (R(T) - T),

    the first term in the signed table error over x~ in [z_lo - e, z_hi + e]
    (:func:`.tables.table_error_signed`), the second f'(ξ)(x~ - x) with f'(ξ) in [0, d], d the
    slope bound over the same hull (:func:`.tables.slope_bound`), so in
    [d·min(err_lo, 0), d·max(err_hi, 0)], the third the result cast (when it drops bits)."""
    assert act.table_t is not None and act.table_size is not None
    lo, hi = z_lo - e, z_hi + e
    t_lo, t_hi = table_error_signed(act.kind, act.table_size, act.table_t, lo, hi)
    d = slope_bound(act.kind, lo, hi)
    s_lo = down(d * np.minimum(err.lo, 0.0))
    s_hi = up(d * np.maximum(err.hi, 0.0))
    out_lo, out_hi = down(t_lo + s_lo), up(t_hi + s_hi)
    if act.result_t.frac < act.table_t.frac:
        c_lo, c_hi = cast_interval(act.result_t, np.ones_like(out_lo))
        out_lo, out_hi = down(out_lo + c_lo), up(out_hi + c_hi)
    return Interval(out_lo, out_hi)


@lru_cache(maxsize=512)
def table_cast_fits(fn: str, size: int, table_t: HlsType, res_t: HlsType) -> bool:
    return cast_fits(table_raw(fn, size, table_t), table_t.frac, res_t)


def cast_fits(raw: np.ndarray, src_frac: int, dst: HlsType) -> bool:
    """True when casting every raw value to ``dst`` needs no overflow handling."""
    wide = HlsType(dst.width + 8, dst.int_bits + 8, dst.signed, dst.quant, "SAT")
    q = requantize(np.asarray(raw, dtype=object), src_frac, wide)
    return bool(np.all(q >= dst.raw_min) and np.all(q <= dst.raw_max))


@dataclass
class LayerFracs:
    """The fractional bits the search chooses for one layer (one type per slot, as hls4ml has it)."""

    weight: int
    bias: int
    accum: int
    act_result: int | None = None  # relu/tanh/sigmoid result type
    table: int | None = None  # tanh/sigmoid table type
    table_log2: int | None = None  # log2 of the tanh/sigmoid table size

    def key(self) -> tuple[int | None, ...]:
        return (self.weight, self.bias, self.accum, self.act_result, self.table, self.table_log2)


def build_program(
    layers: list[DenseLayer],
    ranges: list[LayerRanges],
    lower: np.ndarray,
    upper: np.ndarray,
    input_frac: int,
    fracs: list[LayerFracs],
    default_table_size: int = 1024,
    quant: str = "TRN",
    recheck: bool = True,
    cache: dict[tuple[Any, ...], tuple[list[DenseStage | ActStage], dict[str, Any]]] | None = None,
) -> tuple[Hls4mlProgram, Certificate]:
    """Build the program whose integer bits fit the certified reachable ranges, and certify it.

    Integer bits are chosen stage by stage from the bounds the walker has certified so far, and
    the finished program is certified again from scratch by :func:`walk` (that certificate is
    the one returned; ``recheck=False`` returns the builder's own walk, the same computation, for
    the search's many candidates, and may resume from ``cache``: the stages and walker state
    after each layer, keyed by the choices up to that layer). The Dense result type is hls4ml's
    'auto' rule (:func:`auto_dense_type`), the one hls4ml assigns when the Add is fused."""
    e0 = 2.0**-input_frac if quant == "TRN" else 2.0 ** -(input_frac + 1)
    lo0, hi0 = np.asarray(lower, float), np.asarray(upper, float)
    input_t = _fit(input_frac, quant, "WRAP", float(np.min(lo0 - e0)), float(np.max(hi0 + e0)))
    wk = _Walker(layers, ranges, lower, upper, input_t)
    stages: list[DenseStage | ActStage] = []
    use_cache = cache is not None and not recheck

    def key(k: int) -> tuple[Any, ...]:
        return (input_frac, default_table_size, quant, tuple(f.key() for f in fracs[:k]))

    start = 0
    if use_cache:
        assert cache is not None
        for k in range(len(layers), 0, -1):
            hit = cache.get(key(k))
            if hit is not None:
                stages = list(hit[0])
                wk.restore(hit[1])
                start = k
                break
    for li in range(start, len(layers)):
        layer, fr = layers[li], fracs[li]
        uw, ub = 2.0**-fr.weight, 2.0**-fr.bias
        w_t = _fit(
            fr.weight, quant, "WRAP", float(np.min(layer.weight)) - uw, float(np.max(layer.weight)) + uw
        )
        b_t = _fit(
            fr.bias,
            quant,
            "WRAP",
            float(np.min(layer.bias, initial=0)) - ub,
            float(np.max(layer.bias, initial=0)) + ub,
        )
        res_t = auto_dense_type(wk.cur_t, w_t, b_t, layer.n_in)
        st = DenseStage(
            layer.name,
            layer.weight,
            layer.bias,
            w_t,
            b_t,
            HlsType(fr.accum + 80, 80, True, quant, "WRAP"),
            res_t,
        )
        e_acc = wk.accum_bound(li, st)
        pre = ranges[li].pre
        # the bias is cast to accum_t on its own first (nnet_dense_latency.h): fit it too, or the
        # cast wraps and the certificate charges the wrapped bias' whole error (seed 459 in the
        # random-net test: accum_t fixed<9,0> for a sum in [-0.03, 0.5] and a bias of -0.69)
        b_q = as_values(st.bias_raw, st.bias_t.frac)
        st.accum_t = _fit(
            fr.accum,
            quant,
            "WRAP",
            min(float(np.min(pre.lo - e_acc)), float(np.min(b_q, initial=0.0))),
            max(float(np.max(pre.hi + e_acc)), float(np.max(b_q, initial=0.0))),
        )
        stages.append(st)
        # same fractional bits and quantisation as the provisional accumulator and WRAP (modular)
        # sums: the accumulator bound is unchanged (the final walk below recomputes it anyway)
        wk.dense(li, st, e_acc if not recheck else None)
        if layer.activation == "relu":
            top = float(np.max(np.maximum(pre.hi + wk.e, 0.0)))
            assert fr.act_result is not None
            r_t = _fit(fr.act_result, quant, "WRAP", 0.0, top + 2.0**-fr.act_result)
            stages.append(ActStage(f"{layer.name}_act", "relu", r_t))
            wk.act(stages[-1])
        elif layer.activation in TABLE_FUNCS:
            assert fr.table is not None and fr.act_result is not None
            table_size = 2**fr.table_log2 if fr.table_log2 is not None else default_table_size
            t_t = HlsType(fr.table + 1, 1, True, quant, "WRAP")
            if table_overflows(layer.activation, table_size, t_t):
                t_t = HlsType(fr.table + 2, 2, True, quant, "WRAP")
            r_t = HlsType(fr.act_result + 1, 1, True, quant, "WRAP")
            if not table_cast_fits(layer.activation, table_size, t_t, r_t):
                r_t = HlsType(fr.act_result + 2, 2, True, quant, "WRAP")
            stages.append(ActStage(f"{layer.name}_act", layer.activation, r_t, t_t, table_size))
            wk.act(stages[-1])
        elif layer.activation != "identity":
            raise UnsupportedError(
                f"hls4ml backend: activation {layer.activation} of {layer.name} is not supported"
            )
        wk.next_layer()
        if use_cache:
            assert cache is not None
            if len(cache) > 4000:
                cache.clear()
            cache[key(li + 1)] = (list(stages), wk.snapshot())
    prog = Hls4mlProgram(input_t, stages)
    return prog, (walk(layers, ranges, lower, upper, prog) if recheck else wk.certificate())
