"""Rigour attacks on the interpolating lookup tables (``build_table(..., interp=True)``), the
flat-range trim of the refined table builder, and the per-neuron output-error cap of implemented
activations (``certify.act_error_cap`` / ``error_forms._cap_act_forms``).

References are independent: 160-bit mpmath values of σ (``tests.test_activations.ref``), the
interpolation formula re-evaluated here in Python integers, g++ with the Xilinx ap_types headers
for the emitted C++, and the exact-rational network reference for whole programs.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aster_ext.activations import build_table, get_activation
from aster_ext.activations.table import trim_flat
from aster_ext.aster.settings import SETTINGS
from aster_ext.certify import act_error_cap
from aster_ext.ir import DenseLayer
from aster_ext.program_io import act_impl_from_json, act_impl_to_json
from aster_ext.ranges import ExactParams
from aster_ext.refined import build_program, symbolic_ranges
from aster_ext.refined.error_forms import forms_analysis
from aster_ext.rigorous import Interval
from aster_ext.simulate import simulate

from .cpp_support import assert_impls_cpp_bit_exact
from .test_activation_networks import assert_within_bounds, attack, certified_random_program, exact_errors
from .test_activations import SMOOTH
from .test_activations import ref as ref160

mpmath.mp.prec = 160


def ref(act, x) -> mpmath.mpf:
    """ref160 at enough precision for far-negative gelu_tanh (0.5x(1 + tanh(..)) cancels ~2000 bits
    at x = -27, where the table tests clamp)."""
    if act.name == "gelu_tanh":  # the ONNX formula
        with mpmath.workprec(8000):
            x = mpmath.mpf(x)
            u = mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf("0.044715") * x**3)
            v = x / 2 * (1 + mpmath.tanh(u))
        return +v
    return ref160(act, x)


def interp_reference(tab, t: int) -> int:
    """The documented bit-level semantics, written independently of TableImpl.apply."""
    s, base, n = tab.shift, tab.base, tab.size
    first, last = base << s, (base + n) << s
    if t < first:
        return int(tab.entries[0])
    if t >= last:
        return int(tab.entries[n])
    k = (t >> s) - base
    r = t - ((base + k) << s)
    y0, y1 = int(tab.entries[k]), int(tab.entries[k + 1])
    return y0 + math.floor(Fraction((y1 - y0) * r, 1 << s))


def _check_interp(act, lo: float, hi: float, in_frac: int, out_frac: int, bits: int, pad: int = 40) -> None:
    tab = build_table(act, lo, hi, in_frac, out_frac, bits, interp=True)
    assert tab.interp and tab.size <= 2**bits and tab.entries.shape[0] == tab.size + 1
    t_lo, t_hi = tab.grid_range
    ts = np.arange(t_lo - pad, t_hi + pad + 1, dtype=np.int64)
    out = tab.apply(ts)
    out_obj = tab.apply(ts.astype(object))
    worst = mpmath.mpf(0)
    c_lo, c_hi = tab.clamped_error((t_lo - pad) / 2**in_frac, (t_hi + pad) / 2**in_frac)
    for t, y, yo in zip(ts, out, out_obj, strict=True):
        assert int(y) == int(yo) == interp_reference(tab, int(t)), (act.describe(), int(t))
        e = mpmath.mpf(int(y)) / 2**out_frac - ref(act, mpmath.mpf(int(t)) / 2**in_frac)
        assert c_lo <= e <= c_hi, (act.describe(), int(t), float(e), c_lo, c_hi)
        if t_lo <= t <= t_hi:
            assert tab.error_lo <= e <= tab.error_hi, (act.describe(), int(t), float(e))
            worst = max(worst, abs(e))
    assert worst <= tab.error_bound
    # not absurdly loose: on fine cells (h/4)·Δσ' is about twice the h²/8·max|σ''| interpolation
    # error (coarse cells over an inflection point, or next to ELU's kink, are sound but looser;
    # with fewer than 16 grid points per cell the grid misses the worst interpolation point;
    # in sigmoid's tail σ'' grows about e-fold across a half-wide cell, so (h/4)·Δσ' reaches ~3x
    # the grid's worst error: measured 3.6x at sigmoid [-5.91, -3.39], in_frac 5, out_frac 13)
    fine = 2.0 ** (tab.shift - in_frac) <= 0.5 and tab.shift >= 4
    full_cells = (t_hi - t_lo) >> tab.shift >= 4  # boundary cells touched by a few points are looser
    if act.name in ("sigmoid", "tanh") and fine and full_cells:
        assert tab.error_bound <= 4 * worst + 2.0 ** -(out_frac - 1) + 1e-12
    # sub-range queries (clamped_error also serves ranges inside the table)
    rng = np.random.default_rng(abs(t_lo * 7919 + t_hi))
    for _ in range(5):
        a, b = sorted(rng.integers(t_lo - pad, t_hi + pad + 1, 2))
        q_lo, q_hi = tab.clamped_error(a / 2**in_frac, b / 2**in_frac)
        for t, y in zip(ts, out, strict=True):
            if a <= t <= b:
                e = mpmath.mpf(int(y)) / 2**out_frac - ref(act, mpmath.mpf(int(t)) / 2**in_frac)
                assert q_lo <= e <= q_hi, (act.describe(), int(t), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("act", SMOOTH, ids=[a.describe() for a in SMOOTH])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lo=st.floats(-7.0, 6.0),
    width=st.floats(0.0, 8.0),
    in_frac=st.integers(1, 7),
    out_frac=st.integers(3, 16),
    bits=st.integers(1, 6),
)
def test_interp_error_bound_on_every_grid_point(act, lo, width, in_frac, out_frac, bits) -> None:
    hi = lo + width
    assume(math.ceil(lo * 2**in_frac) <= math.floor(hi * 2**in_frac))
    _check_interp(act, lo, hi, in_frac, out_frac, bits)


def test_interp_fixed_cases() -> None:
    sig, tanh = get_activation("sigmoid"), get_activation("tanh")
    _check_interp(sig, -3.0, 2.0, 6, 12, 4)  # crosses the inflection point
    _check_interp(tanh, 0.5, 3.0, 8, 14, 3)  # one concave piece
    _check_interp(tanh, -4.0, -0.25, 8, 14, 3)  # one convex piece
    _check_interp(sig, -1.0, 1.0, 5, 10, 8)  # shift 0: one cell per grid point
    _check_interp(sig, 0.0, 0.0, 5, 10, 2)  # a single grid point
    _check_interp(get_activation("silu"), -4.0, 2.0, 6, 12, 5)  # non-monotone (clamped image)
    # interpolation beats a plain table of the same size by far
    plain = build_table(sig, -6.0, 6.0, 16, 24, 8)
    lin = build_table(sig, -6.0, 6.0, 16, 24, 8, interp=True)
    assert lin.error_bound < plain.error_bound / 20


@settings(max_examples=25, deadline=None)
@given(lo=st.floats(-60.0, 0.0), width=st.floats(0.0, 120.0), tol_exp=st.integers(4, 30))
def test_trim_flat_keeps_variation_outside_within_tol(lo: float, width: float, tol_exp: int) -> None:
    hi = lo + width
    tol = 2.0**-tol_exp
    for act in (get_activation("sigmoid"), get_activation("tanh")):
        a, b = trim_flat(act, lo, hi, tol)
        assert lo <= a <= b <= hi or (a == b and lo <= a <= hi)
        for u, v in ((lo, a), (b, hi)):
            if u < v:
                assert float(abs(ref(act, v) - ref(act, u))) <= tol * (1 + 1e-9)


def test_trimmed_table_clamps_soundly_far_outside() -> None:
    """A table trimmed to the non-flat part, queried over a range hundreds wide at 32 fractional
    bits: the clamped ends' errors are checked at their extreme and near-boundary grid points."""
    sig = get_activation("sigmoid")
    f_in, f_out = 32, 34
    a, b = trim_flat(sig, -300.0, 250.0, 2.0**-37)
    assert -40 < a < -20 and 20 < b < 40
    tab = build_table(sig, a, b, f_in, f_out, 14, interp=True)
    e_lo, e_hi = tab.clamped_error(-300.0, 250.0)
    first, last = tab.base << tab.shift, (tab.base + tab.size) << tab.shift
    probes = [-300 << f_in, first - 1, first, first + 1, last - 1, last, last + 1, 250 << f_in]
    probes += [int(v) for v in np.random.default_rng(0).integers(-300 << f_in, 250 << f_in, 50)]
    out = tab.apply(np.array(probes, dtype=object))
    for t, y in zip(probes, out, strict=True):
        e = mpmath.mpf(int(y)) / 2**f_out - ref(sig, mpmath.mpf(t) / 2**f_in)
        assert e_lo <= e <= e_hi, (t, float(e), e_lo, e_hi)
    assert max(-e_lo, e_hi) < 1e-6


def test_interp_json_round_trip() -> None:
    tab = build_table(get_activation("tanh"), -2.0, 2.0, 10, 20, 5, interp=True)
    back = act_impl_from_json(act_impl_to_json(tab))
    assert back.interp and back.size == tab.size
    ts = np.arange(-3000, 3000, dtype=np.int64)
    assert np.array_equal(back.apply(ts), tab.apply(ts))


@pytest.mark.slow
def test_interp_cpp_matches_apply_bit_for_bit(tmp_path: Path) -> None:
    sig, tanh = get_activation("sigmoid"), get_activation("tanh")
    impls = [
        ("i_sig", build_table(sig, -5.0, 4.0, 7, 12, 5, interp=True)),
        ("i_tanh0", build_table(tanh, -1.0, 1.0, 7, 12, 9, interp=True)),  # shift 0
        ("i_wide", build_table(tanh, -3.0, 3.0, 7, 70, 4, interp=True)),  # entries > 64 bits
        ("i_silu", build_table(get_activation("silu"), -3.0, 1.5, 7, 16, 3, interp=True)),
        ("i_big", build_table(sig, -6.0, 6.0, 7, 40, 2, interp=True)),  # large shift and products
    ]
    assert_impls_cpp_bit_exact([(name, impl, 12) for name, impl in impls], tmp_path, "interp")


# ------------------------------------------------------------------------------------------------
# the output-error cap of implemented activations
# ------------------------------------------------------------------------------------------------


def test_act_error_cap_encloses_every_pair() -> None:
    """a~ in out range, a in σ(pre): every difference lies in the cap (mpmath on a grid)."""
    sig = get_activation("sigmoid")
    pre = Interval(np.array([-9.0, 3.0, -0.5]), np.array([-7.0, 8.0, 0.5]))
    out = Interval(np.array([0.0, 0.9, 0.3]), np.array([0.002, 1.0, 0.7]))
    cap = act_error_cap(sig, pre, out)
    for j in range(3):
        for z in np.linspace(pre.lo[j], pre.hi[j], 9):
            for a_t in np.linspace(out.lo[j], out.hi[j], 5):
                d = mpmath.mpf(a_t) - ref(sig, z)
                assert cap.lo[j] <= d <= cap.hi[j]


def _saturated_sigmoid_net(rng: np.random.Generator, depth: int, width: int) -> list[DenseLayer]:
    """Deep sigmoid net with large weights: many neurons saturate (where the cap matters)."""
    layers = []
    widths = [3] + [width] * depth + [2]
    for li in range(len(widths) - 1):
        scale = 6.0 if li < len(widths) - 2 else 1.0
        w = rng.normal(0, scale / np.sqrt(widths[li]), (widths[li + 1], widths[li])).astype(np.float32)
        b = rng.normal(0, 2.0, widths[li + 1]).astype(np.float32)
        fn = "identity" if li == len(widths) - 2 else "sigmoid"
        layers.append(DenseLayer(f"l{li}", w.astype(np.float64), b.astype(np.float64), fn))
    return layers


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), act=st.sampled_from(["sigmoid", "tanh"]))
@pytest.mark.slow
def test_capped_forms_sound_on_saturated_deep_nets(seed: int, act: str) -> None:
    """Programs at low precision (coarse tables, large errors) on deep saturating nets: the cap
    fires; observed (exact reference) <= certified for the forms and interval certifiers."""
    rng = np.random.default_rng(seed)
    layers = _saturated_sigmoid_net(rng, int(rng.integers(2, 5)), int(rng.integers(2, 6)))
    if act == "tanh":
        for layer in layers[:-1]:
            layer.__init__(layer.name, layer.weight, layer.bias, "tanh")
    lo = rng.uniform(-1.5, 0, 3)
    hi = lo + rng.uniform(0.05, 2.0, 3)
    program, ps, rg, cert, ci = certified_random_program(rng, layers, lo, hi, (3, 9), (2, 6))
    xs = attack(rng, program, layers, lo, hi, n_random=60, n_search=32)
    assert_within_bounds(exact_errors(program, layers, xs), cert, ci)
    # every hidden layer's error enclosure holds on the attacked inputs (float reference of the
    # real hidden values: its own error, ~1e-15, is far below the 1e-9 tolerance)
    run = forms_analysis(program, layers, lo, hi, False, ps, rg)
    _, trace = simulate(program, xs, trace=True)
    a = xs
    for li, layer in enumerate(layers[:-1]):
        z = a @ layer.weight.T + layer.bias
        a = np.array([[float(layer.act.eval_mp(v)) for v in row] for row in z])
        frac = program.layers[li].out_t.frac
        got = np.array([[float(v) for v in row] for row in trace.layers[li].out]) * np.exp2(-frac)[None, :]
        err = got - a
        assert np.all(err >= run.a_err[li].lo - 1e-9) and np.all(err <= run.a_err[li].hi + 1e-9), li


def test_cap_fires_and_tightens_layer_bounds() -> None:
    """On a saturated net the cap replaces rows and every capped layer's enclosure is no wider than
    the slope-only one (the output bound may still differ either way: replacing a row drops its
    correlations, see ``_cap_act_forms``; soundness is attacked above)."""
    import aster_ext.refined.error_forms as ef

    rng = np.random.default_rng(3)
    layers = _saturated_sigmoid_net(rng, 4, 5)
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    ps = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, ps)
    f = [np.full(layer.n_out, 6) for layer in layers]
    program, _ = build_program("t", layers, f, f, SETTINGS["A"], lo, hi, ps, rg, act_delta=[2.0**-4] * 5)
    orig = ef._cap_act_forms
    fired = []

    def spy(*args):
        before = args[4].mag().copy()
        out = orig(*args)
        fired.append(int(np.sum(out.mag() < before)))
        assert np.all(out.mag() <= before)
        return out

    try:
        ef._cap_act_forms = spy
        capped = forms_analysis(program, layers, lo, hi, False, ps, rg)
    finally:
        ef._cap_act_forms = orig
    assert sum(fired) > 0
    assert np.all(np.isfinite(capped.output_bound))
