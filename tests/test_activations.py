"""Rigour attacks on aster_ext.activations: every bound is checked against an independent
mpmath reference (100+ bits), tables and piecewise implementations on *every* grid point, and
the emitted C++ (g++ + Xilinx ap_types) bit for bit against ``apply``."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from aster_ext.activations import (
    ACTIVATION_CLASSES,
    Activation,
    build_piecewise,
    build_table,
    choose_const_frac,
    choose_index_bits,
    get_activation,
)
from aster_ext.errors import InfeasibleError

from .cpp_support import assert_impls_cpp_bit_exact

mpmath.mp.prec = 160
FIXTURES = Path(__file__).parent / "fixtures"

F32_02 = float(np.float32(0.2))
ACTS: list[Activation] = [
    get_activation("sigmoid"),
    get_activation("tanh"),
    get_activation("softplus"),
    get_activation("elu"),
    get_activation("elu", alpha=0.7),
    get_activation("leaky_relu"),
    get_activation("leaky_relu", alpha=0.1),
    get_activation("silu"),
    get_activation("gelu"),
    get_activation("gelu_tanh"),
    get_activation("hard_sigmoid"),
    get_activation("hard_sigmoid", alpha=F32_02, beta=0.5),
    get_activation("hard_tanh"),
    get_activation("relu"),
    get_activation("identity"),
]
IDS = [a.describe() for a in ACTS]
SMOOTH = [a for a in ACTS if a.kind == "table"]
PIECEWISE = [a for a in ACTS if a.kind == "piecewise"]

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref(act: Activation, x) -> mpmath.mpf:
    """Independent 160-bit reference of σ (formulas written here, not taken from the library)."""
    x = mpmath.mpf(x)
    p = act.params
    name = act.name
    if name == "sigmoid":
        return 1 / (1 + mpmath.exp(-x))
    if name == "tanh":
        return mpmath.tanh(x)
    if name == "softplus":
        return mpmath.log1p(mpmath.exp(x))
    if name == "elu":
        return x if x > 0 else mpmath.mpf(p["alpha"]) * mpmath.expm1(x)
    if name == "leaky_relu":
        return x if x >= 0 else mpmath.mpf(p["alpha"]) * x
    if name == "relu":
        return max(x, mpmath.mpf(0))
    if name == "identity":
        return x
    if name == "silu":
        return x / (1 + mpmath.exp(-x))
    if name == "gelu":
        return x * mpmath.ncdf(x)
    if name == "gelu_tanh":  # x/2 (1 + tanh u) = x / (1 + e^(-2u)): no cancellation for x << 0
        u = mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf(44715) / 10**6 * x**3)
        return x / (1 + mpmath.exp(-2 * u))
    if name == "hard_sigmoid":
        return min(max(mpmath.mpf(p["alpha"]) * x + mpmath.mpf(p["beta"]), 0), 1)
    if name == "hard_tanh":
        return min(max(x, -1), 1)
    raise AssertionError(name)


def ref_exact(act: Activation, x: Fraction) -> Fraction:
    """Exact rational value of a piecewise-linear σ (parameters are exact doubles)."""
    p = {k: Fraction(v) for k, v in act.params.items()}
    if act.name == "leaky_relu":
        return x if x >= 0 else p["alpha"] * x
    if act.name == "relu":
        return max(x, Fraction(0))
    if act.name == "identity":
        return x
    if act.name == "hard_tanh":
        return min(max(x, Fraction(-1)), Fraction(1))
    if act.name == "hard_sigmoid":
        return min(max(p["alpha"] * x + p["beta"], Fraction(0)), Fraction(1))
    raise AssertionError(act.name)


def interval(lo_bound: float = -12.0, hi_bound: float = 12.0):
    f = st.floats(lo_bound, hi_bound, allow_nan=False, allow_infinity=False)
    return st.tuples(f, f).map(lambda t: (min(t), max(t)))


def test_registry_covers_ir_activations() -> None:
    from aster_ext.ir import ACTIVATIONS

    assert set(ACTIVATION_CLASSES) == set(ACTIVATIONS)
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("swish2")
    with pytest.raises(ValueError, match="no parameter"):
        get_activation("sigmoid", alpha=1.0)
    assert get_activation("hard_sigmoid").params == {"alpha": 0.2, "beta": 0.5}


def test_eval_mp_matches_reference() -> None:
    for act in ACTS:
        for x in (-7.5, -2.5, -1.2784645427610738, -0.75, -1e-3, 0.0, 0.3, 1.0, 2.5, 9.0):
            assert abs(act.eval_mp(x) - ref(act, x)) <= mpmath.mpf(2) ** -100 * (1 + abs(ref(act, x)))
            assert abs(float(act.eval_float(np.array([x]))[0]) - float(ref(act, x))) <= 1e-12


def test_known_minima_are_enclosed() -> None:
    silu, gelu = get_activation("silu"), get_activation("gelu")
    lo, hi = silu.image(-5.0, 0.0)
    assert lo[()] <= -0.2784645427610738 <= lo[()] + 1e-15 and hi[()] >= 0
    xg = mpmath.findroot(lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x), -0.75)
    gmin = float(xg * mpmath.ncdf(xg))
    lo, hi = gelu.image(-3.0, 0.0)
    assert lo[()] <= gmin <= lo[()] + 1e-14
    c1, c2 = silu.structure.critical[0]
    assert c1 <= -1.2784645427610738 <= c2 or abs(c1 + 1.27846454276107) < 1e-14


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@SETTINGS
@given(iv=interval(), fracs=st.lists(st.floats(0, 1), min_size=5, max_size=5))
def test_image_contains_values(act: Activation, iv, fracs) -> None:
    lo, hi = iv
    ylo, yhi = act.image(np.array([lo]), np.array([hi]))
    pts = [lo, hi] + [lo + f * (hi - lo) for f in fracs]
    pts += [c for pair in act.structure.critical for c in pair if lo <= c <= hi]
    for x in pts:
        x = min(max(x, lo), hi)
        v = ref(act, x)
        assert ylo[0] <= v <= yhi[0], (act.describe(), lo, hi, x, ylo[0], float(v), yhi[0])


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@SETTINGS
@given(iv=interval(), f=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_slope_contains_secants(act: Activation, iv, f) -> None:
    lo, hi = iv
    a, b = sorted((lo + f[0] * (hi - lo), lo + f[1] * (hi - lo)))
    a, b = max(a, lo), min(b, hi)
    assume(b - a > 1e-6 * (1 + abs(a)))
    smin, smax = act.slope(np.array([lo]), np.array([hi]))
    sec = (ref(act, b) - ref(act, a)) / (mpmath.mpf(b) - mpmath.mpf(a))
    tol = mpmath.mpf(2) ** -120 / (b - a)
    assert smin[0] - tol <= sec <= smax[0] + tol, (act.describe(), lo, hi, a, b, smin[0], float(sec), smax[0])


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_slope_extrema(act: Activation) -> None:
    """Interior maxima of σ' are included; kinks give both one-sided slopes."""
    smin, smax = act.slope(np.array([-4.0]), np.array([4.0]))
    expected_max = {
        "sigmoid": 0.25, "tanh": 1.0, "silu": 1.0998393, "gelu": 1.1289, "gelu_tanh": 1.12899, "elu": 1.0
    }  # fmt: skip
    if act.name in expected_max:
        assert smax[0] >= expected_max[act.name]
    if act.name in ("silu", "gelu", "gelu_tanh"):
        assert smin[0] < -0.09
    if act.name in ("relu", "leaky_relu", "hard_tanh", "elu"):
        s0 = act.slope(np.array([0.0]), np.array([0.0]))
        left = 1.0 if act.name == "hard_tanh" else act.params.get("alpha", 0.0)
        assert s0[0][0] <= min(left, 1.0) and s0[1][0] >= max(left, 1.0)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@SETTINGS
@given(iv=interval())
@example(iv=(0.0, 1.3508247520654727e-43))  # a gap below mpmath's precision (hypothesis found it)
def test_relax_lines_bound_sigma(act: Activation, iv) -> None:
    lo, hi = iv
    al, bl, au, bu = (v[0] for v in act.relax(np.array([lo]), np.array([hi])))
    xs = [lo + (hi - lo) * k / 64 for k in range(65)] + [hi]
    xs += [c for pair in act.structure.breaks + act.structure.critical for c in pair if lo <= c <= hi]
    for x in xs:
        x = min(max(x, lo), hi)
        v = ref(act, x)
        xm = mpmath.mpf(x)
        low, up = mpmath.mpf(al) * xm + mpmath.mpf(bl), mpmath.mpf(au) * xm + mpmath.mpf(bu)
        # both sides are rounded at mpmath's precision: a gap below that cannot be seen (e.g. the
        # sigmoid tangent 1/2 + x/4 at x = 1.7e-44 lies x^3/48 ~ 1e-133 above σ(x))
        tol = mpmath.mpf(2) ** (8 - mpmath.mp.prec) * max(abs(v), abs(low), abs(up))
        assert low <= v + tol, (act.describe(), lo, hi, x, "lower")
        assert v <= up + tol, (act.describe(), lo, hi, x, "upper")


def test_relax_is_tight_for_simple_cases() -> None:
    sig = get_activation("sigmoid")
    # convex part: the upper line is the chord
    al, bl, au, bu = (v[0] for v in sig.relax(np.array([-4.0]), np.array([-1.0])))
    assert abs(au * -4.0 + bu - float(ref(sig, -4.0))) < 1e-14
    assert abs(au * -1.0 + bu - float(ref(sig, -1.0))) < 1e-14
    relu = get_activation("relu")
    al, bl, au, bu = (v[0] for v in relu.relax(np.array([-1.0]), np.array([3.0])))
    assert au == pytest.approx(0.75) and bu == pytest.approx(0.75) and bl == 0.0


def _grid_check_table(act: Activation, lo: float, hi: float, in_frac: int, out_frac: int, bits: int) -> None:
    tab = build_table(act, lo, hi, in_frac, out_frac, bits)
    assert tab.size <= 2**bits
    t_lo, t_hi = math.ceil(lo * 2**in_frac), math.floor(hi * 2**in_frac)
    ts = np.arange(t_lo - 5, t_hi + 6, dtype=np.int64)
    out = tab.apply(ts)
    out_obj = tab.apply(ts.astype(object))
    for t, y, yo in zip(ts, out, out_obj, strict=True):
        idx = min(max((int(t) >> tab.shift) - tab.base, 0), tab.size - 1)
        assert int(y) == int(yo) == int(tab.entries[idx])
    worst = mpmath.mpf(0)
    for t, y in zip(ts, out, strict=True):
        if not t_lo <= t <= t_hi:
            continue
        e = mpmath.mpf(int(y)) / 2**out_frac - ref(act, mpmath.mpf(int(t)) / 2**in_frac)
        assert tab.error_lo <= e <= tab.error_hi
        worst = max(worst, abs(e))
    assert worst <= tab.error_bound
    assert tab.error_bound <= worst + 2.0**-40  # and the bound is essentially attained
    clo, chi = tab.clamped_error((t_lo - 5) / 2**in_frac, (t_hi + 5) / 2**in_frac)
    for t, y in zip(ts, out, strict=True):
        e = mpmath.mpf(int(y)) / 2**out_frac - ref(act, mpmath.mpf(int(t)) / 2**in_frac)
        assert clo <= e <= chi


@pytest.mark.parametrize("act", SMOOTH, ids=[a.describe() for a in SMOOTH])
@settings(max_examples=12, deadline=None)
@given(
    iv=interval(-6.0, 6.0),
    in_frac=st.integers(2, 6),
    out_frac=st.integers(4, 14),
    bits=st.integers(1, 6),
)
def test_table_error_bound_on_every_grid_point(act: Activation, iv, in_frac, out_frac, bits) -> None:
    lo, hi = iv
    assume(math.ceil(lo * 2**in_frac) <= math.floor(hi * 2**in_frac))
    _grid_check_table(act, lo, hi, in_frac, out_frac, bits)


def test_table_midpoint_rule_and_minima() -> None:
    for name in ("silu", "gelu", "gelu_tanh"):
        act = get_activation(name)
        tab = build_table(act, -3.0, 1.0, 8, 12, 5, rule="midpoint")
        t_lo, t_hi = tab.grid_range
        for t in range(t_lo, t_hi + 1):
            y = int(tab.apply(np.array([t], dtype=object))[0])
            assert abs(mpmath.mpf(y) / 2**12 - ref(act, mpmath.mpf(t) / 2**8)) <= tab.error_bound


def test_choose_index_bits() -> None:
    sig = get_activation("sigmoid")
    bits = choose_index_bits(sig, -8.0, 8.0, 10, 16, 1e-3)
    assert build_table(sig, -8.0, 8.0, 10, 16, bits).error_bound <= 1e-3
    assert build_table(sig, -8.0, 8.0, 10, 16, bits - 1).error_bound > 1e-3
    with pytest.raises(InfeasibleError, match="smallest achievable"):
        choose_index_bits(sig, -8.0, 8.0, 10, 6, 1e-4)


@pytest.mark.parametrize("act", PIECEWISE, ids=[a.describe() for a in PIECEWISE])
@settings(max_examples=15, deadline=None)
@given(
    iv=interval(-6.0, 6.0),
    in_frac=st.integers(0, 6),
    out_frac=st.integers(0, 10),
    const_frac=st.integers(0, 12),
    rounding=st.sampled_from(["RND", "TRN"]),
)
def test_piecewise_error_on_every_grid_point(act, iv, in_frac, out_frac, const_frac, rounding) -> None:
    lo, hi = iv
    t_lo, t_hi = math.ceil(lo * 2**in_frac), math.floor(hi * 2**in_frac)
    assume(t_lo <= t_hi)
    impl = build_piecewise(act, in_frac, out_frac, const_frac, rounding)
    e_lo, e_hi = impl.error_interval(lo, hi)
    ts = np.arange(t_lo, t_hi + 1, dtype=np.int64)
    out = impl.apply(ts)
    assert [int(v) for v in impl.apply(ts.astype(object))] == [int(v) for v in out]
    p = in_frac + const_frac
    for t, y in zip(ts, out, strict=True):
        # direct reference of the integer program
        v = (impl.s_neg if t < 0 else impl.s_pos) * int(t) + impl.offset
        if impl.clamp_lo is not None:
            v = max(v, impl.clamp_lo)
        if impl.clamp_hi is not None:
            v = min(v, impl.clamp_hi)
        q = Fraction(v, 2**p) * 2**out_frac
        expect = math.floor(q + Fraction(1, 2)) if rounding == "RND" else math.floor(q)
        assert int(y) == expect
        e = Fraction(int(y), 2**out_frac) - ref_exact(act, Fraction(int(t), 2**in_frac))
        assert e_lo <= e <= e_hi, (act.describe(), t, float(e), e_lo, e_hi)


def test_piecewise_exactness_and_const_frac() -> None:
    for name in ("relu", "identity", "hard_tanh"):
        impl = build_piecewise(get_activation(name), 6, 6)
        assert impl.error_bound(-5.0, 5.0) == 0.0 and impl.exact
    leaky = get_activation("leaky_relu")
    f = choose_const_frac(leaky, -4.0, 4.0, 8, 12, 2.0**-12)
    assert build_piecewise(leaky, 8, 12, f).error_bound(-4.0, 4.0) <= 2.0**-12
    with pytest.raises(InfeasibleError):
        choose_const_frac(leaky, -4.0, 4.0, 8, 4, 1e-6)


# --------------------------------------------------------------------------------------
# C++: one compile for every implementation
# --------------------------------------------------------------------------------------


def _impls():
    """(name, impl, in_width, out_width, raw range) for every activation, incl. wide constants."""
    out = []
    for i, act in enumerate(ACTS):
        if act.kind == "table":
            impl = build_table(act, -5.0, 4.0, 7, 12, 7)
        else:
            impl = build_piecewise(act, 7, 9, 10 if act.name in ("leaky_relu", "hard_sigmoid") else None)
        out.append((f"act{i}", impl))
    out.append(("wide_tab", build_table(get_activation("tanh"), -3.0, 3.0, 6, 70, 5)))
    out.append(("wide_pw", build_piecewise(get_activation("hard_sigmoid"), 6, 20, 60, "TRN")))
    out.append(("wide_lr", build_piecewise(get_activation("leaky_relu", alpha=0.1), 6, 70, 66)))
    return out


@pytest.mark.slow
def test_cpp_matches_apply_bit_for_bit(tmp_path: Path) -> None:
    impls = [(name, impl, 12 if impl.in_frac == 7 else 10) for name, impl in _impls()]
    assert_impls_cpp_bit_exact(impls, tmp_path, "acts")


# --------------------------------------------------------------------------------------
# Trained fixture networks
# --------------------------------------------------------------------------------------

FIXTURE_ACTS = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "silu": "silu",
    "gelu": "gelu",
    "gelu_tanh": "gelu_tanh",
    "softplus": "softplus",
    "elu": "elu",
    "leaky_relu": "leaky_relu",
    "hard_sigmoid": "hard_sigmoid",
    "hard_tanh": "hard_tanh",
}


@pytest.mark.parametrize("act_name", sorted(FIXTURE_ACTS))
def test_fixture_imports_and_matches_onnxruntime(act_name: str) -> None:
    import onnxruntime as ort

    from aster_ext.evaluate import evaluate_float64
    from aster_ext.frontend.onnx_import import load_onnx

    onnx_path = FIXTURES / f"mlp_{act_name}.onnx"
    spec_path = FIXTURES / f"mlp_{act_name}.spec.json"
    assert onnx_path.is_file() and spec_path.is_file(), "run scripts/train_fixtures.py"
    assert onnx_path.stat().st_size < 50_000
    spec = json.loads(spec_path.read_text())
    net = load_onnx(onnx_path)
    acts = [op for op in net.ops() if op.kind == "act"]
    assert [op.attrs["fn"] for op in acts] == [FIXTURE_ACTS[act_name]] * 2
    assert sum(op.kind == "affine" for op in net.ops()) == 3
    rng = np.random.default_rng(0)
    lo, hi = np.array(spec["input_lower"]), np.array(spec["input_upper"])
    x = lo + (hi - lo) * rng.random((256, lo.size))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    y = evaluate_float64(net, x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(y, y_ort, atol=1e-5, rtol=1e-4)
