"""Aster's ILP reproduced exactly (against the original tool's model.lp files) and repaired."""

from __future__ import annotations

import csv
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from aster_ext import ilp
from aster_ext.aster import (
    assign_aster,
    aster_ranges,
    build_aster_model,
    build_program,
    daisy_area_cost,
    get_setting,
)
from aster_ext.aster.benchmark import Benchmark, load_benchmark
from aster_ext.errors import InfeasibleError

BENCH = Path("/work/shared/benchmarks/aster")
REF = Path("/work/shared/benchmarks/aster-reference")
SMALL = ["SmallNN", "LyapunovNN", "TestNN"]

pytestmark = pytest.mark.skipif(not REF.exists(), reason="reference benchmarks not available")


@cache
def bench(name: str) -> Benchmark:
    return load_benchmark(BENCH / f"{name}.scala")


@cache
def reference_runs() -> dict[tuple[str, str], dict[str, str]]:
    return {(r["benchmark"], r["setting"]): r for r in csv.DictReader(open(REF / "aster_runs.csv"))}


def aster_model(name: str, setting: str, mode: str = "aster", eps: float = 1e-3):
    b = bench(name)
    ranges = aster_ranges(b.layers, b.lower, b.upper, saturate=(mode == "aster"))
    return build_aster_model(b.layers, ranges, get_setting(setting), Fraction(str(eps)), mode)


# ------------------------------------------------------------------------------------------------
# reproduction of the published model
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", "ABCD")
@pytest.mark.parametrize("name", SMALL)
def test_lp_equals_reference(name: str, setting: str) -> None:
    ours = aster_model(name, setting).model
    ref = ilp.parse_lp((REF / "lp" / f"{name}_{setting}.lp").read_text())
    diffs, worst = ilp.compare_models(ours, ref, rel_tol=1e-12)
    assert diffs == []
    assert worst < 1e-12
    assert [r.name for r in ours.rows] == [r.name for r in ref.rows]


def test_layer1_dot_range_uses_per_input_intervals() -> None:
    """SmallNN: layer-1 dot rows use Σ_k Wh ⊗ X_k = [-4.5, 4.5] (slack 3.5), bias rows D_1 = [-6, 6]."""
    am = aster_model("SmallNN", "C")
    r1 = am.ranges[0]
    assert (r1.dot.lo, r1.dot.hi) == (Fraction(-9, 2), Fraction(9, 2))
    assert (r1.dot_layer.lo, r1.dot_layer.hi) == (-6, 6)
    assert (r1.bias_sum.lo, r1.bias_sum.hi) == (-5, 8)
    assert am.model.row("range_dot_hi_1").rhs == 3.5
    assert am.model.row("range_bias_hi_1").rhs == 8.0


@pytest.mark.parametrize("setting", "ABCD")
@pytest.mark.parametrize("name", SMALL)
def test_optimum_equals_reference_exact_optimum(name: str, setting: str) -> None:
    ref = reference_runs()[(name, setting)]
    res = assign_aster(bench(name).layers, bench(name).lower, bench(name).upper, 1e-3, setting, "aster", 30)
    assert res.solver_status == "optimal"
    assert res.exact_check_ok
    assert res.objective == int(float(ref["exact_optimum_same_model"]))
    # the exact optimum's bits (possibly a tie) satisfy the model exactly and cost the same
    am = res.model
    ref_bits = [tuple(map(int, p.split("/"))) for p in ref["exact_optimum_bits"].split()]
    d, b = [p[0] for p in ref_bits], [p[1] for p in ref_bits]
    assert am.violated_rows(d, b) == []
    assert am.error_bound(res.dot_bits, res.bias_bits) <= Fraction(1, 1000)


def test_claimed_error_and_daisy_cost_at_asters_bits() -> None:
    """At the bits Aster chose for SmallNN/A (10/17 11/14): its Total Error and Daisy area cost."""
    b = bench("SmallNN")
    s = get_setting("A")
    ranges = aster_ranges(b.layers, b.lower, b.upper, saturate=True)
    am = build_aster_model(b.layers, ranges, s, Fraction(1, 1000), "aster")
    assert float(am.error_bound([10, 11], [17, 14])) == 0.0009433746337890625
    prog = build_program(b.layers, ranges, s, [10, 11], [17, 14], "aster")
    assert daisy_area_cost(prog) == 2577
    l1 = prog.layers[0]
    # G = 10 + ceil(log2 2) + 1 = 12; weight F = G + u(x_k): u(10) = 4, u(5) = 3; I(weight hull) = 1
    assert l1.weight_t.frac.tolist() == [[16, 15], [16, 15]]
    assert l1.weight_t.int_bits.tolist() == [[1, 1], [1, 1]]
    assert l1.product_t.frac.tolist() == [[12, 12], [12, 12]]
    assert l1.product_t.int_bits.tolist() == [[3, 2], [3, 2]]
    assert l1.dot_t.frac.tolist() == [10, 10] and l1.dot_t.int_bits.tolist() == [4, 4]
    assert l1.bsum_t.frac.tolist() == [17, 17] and l1.bsum_t.int_bits.tolist() == [5, 5]
    assert prog.input_t.frac_bits == 20


def test_32bit_saturation_reproduced() -> None:
    """ACC10NN/A is infeasible in Aster because its integer bits saturate at 32 (overflow rows)."""
    b = bench("ACC10NN")
    with pytest.raises(InfeasibleError, match="overflow.*layer 7"):
        assign_aster(b.layers, b.lower, b.upper, 1e-3, "A", "aster")
    ranges = aster_ranges(b.layers, b.lower, b.upper, saturate=False)
    assert max(r.I_dot for r in ranges) > 32


# ------------------------------------------------------------------------------------------------
# aster-sound
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL)
def test_aster_sound_rows_stronger(name: str) -> None:
    a = aster_model(name, "A")
    s = aster_model(name, "A", "aster-sound")
    b = bench(name)
    for layer, ta, ts in zip(b.layers, a.terms, s.terms, strict=True):
        w = layer.exact_weight()
        abs_rows = max(sum((abs(v) for v in w[i]), Fraction(0)) for i in range(layer.n_out))
        signed_rows = max(abs(sum(w[i], Fraction(0))) for i in range(layer.n_out))
        assert ts.alpha > ta.alpha == 1  # truncation (factor 2 vs nearest), products, ΔW·a
        assert ts.beta > ta.beta == 1
        assert ts.m >= abs_rows >= signed_rows  # the matrix that multiplies the error, Σ|W|
    assert s.terms[0].m > 0 and a.terms[0].m == 1  # e_in scaled by the first layer in aster-sound
    assert any(r.strict for r in s.all_sound_rows)  # half-open overflow checks
    # Aster's optimum does not satisfy the repaired error model
    res_a = assign_aster(b.layers, b.lower, b.upper, 1e-3, "A", "aster")
    assert s.error_bound(res_a.dot_bits, res_a.bias_bits) > a.error_bound(res_a.dot_bits, res_a.bias_bits)
    res_s = assign_aster(b.layers, b.lower, b.upper, 1e-3, "A", "aster-sound")
    assert res_s.objective > res_a.objective
    assert res_s.claimed_error <= Fraction(1, 1000)
    assert s.error_bound(res_s.dot_bits, res_s.bias_bits) == res_s.claimed_error


def _q(v: Fraction, frac: int, width: int) -> tuple[Fraction, bool]:
    """ap_fixed AP_TRN/AP_WRAP assignment of the exact value v; returns (value, overflowed)."""
    k = (v * 2**frac).__floor__()
    half = 1 << (width - 1)
    return Fraction(((k + half) % (1 << width)) - half, 2**frac), not (-half <= k < half)


def _simulate(prog, x: list[Fraction]) -> tuple[list[Fraction], bool]:
    it = prog.input_t
    ovf = False
    a = []
    for v in x:
        q, o = _q(v, it.frac_bits, it.width)
        a.append(q)
        ovf |= o
    for lp in prog.layers:
        out = []
        for j in range(lp.n_out):
            s = Fraction(0)
            for k in range(lp.n_in):
                w = Fraction(int(lp.weight_raw[j, k]), 2 ** int(lp.weight_t.frac[j, k]))
                p, o1 = _q(w * a[k], int(lp.product_t.frac[j, k]), int(lp.product_t.width[j, k]))
                s, o2 = _q(p if k == 0 else s + p, int(lp.psum_t.frac[j, k]), int(lp.psum_t.width[j, k]))
                ovf |= o1 or o2
            d, o1 = _q(s, int(lp.dot_t.frac[j]), int(lp.dot_t.width[j]))
            bias = Fraction(int(lp.bias_raw[j]), 2 ** int(lp.bias_t.frac[j]))
            t, o2 = _q(d + bias, int(lp.bsum_t.frac[j]), int(lp.bsum_t.width[j]))
            y, o3 = _q(max(t, Fraction(0)) if lp.activation == "relu" else t,
                       int(lp.out_t.frac[j]), int(lp.out_t.width[j]))  # fmt: skip
            ovf |= o1 or o2 or o3
            out.append(y)
        a = out
    return a, ovf


def _real(layers, x: list[Fraction]) -> list[Fraction]:
    a = x
    for layer in layers:
        w, b = layer.exact_weight(), layer.exact_bias()
        z = [sum((w[j, k] * a[k] for k in range(layer.n_in)), Fraction(0)) + b[j] for j in range(layer.n_out)]
        a = [max(v, Fraction(0)) for v in z] if layer.activation == "relu" else z
    return a


@pytest.mark.parametrize("eps", [1e-3, 0.1])
@pytest.mark.parametrize("name", ["TestNN", "LyapunovNN"])
def test_aster_sound_program_meets_its_bound(name: str, eps: float) -> None:
    """Exact simulation of the produced program on corners and random points of the box."""
    b = bench(name)
    res = assign_aster(b.layers, b.lower, b.upper, eps, "A", "aster-sound")
    lo = np.array([float(v) for v in b.lower])
    hi = np.array([float(v) for v in b.upper])
    rng = np.random.default_rng(1)
    pts = [np.where(rng.random(len(lo)) < 0.5, lo, hi) for _ in range(8)] + [
        rng.uniform(lo, hi) for _ in range(40)
    ]
    worst = Fraction(0)
    for p in pts:
        x = [Fraction(float(v)) for v in p]
        y, ovf = _simulate(res.program, x)
        assert not ovf
        worst = max(worst, max(abs(u - v) for u, v in zip(y, _real(b.layers, x), strict=True)))
    assert worst <= res.claimed_error <= Fraction(str(eps))


def test_aster_is_unsound_on_lyapunov() -> None:
    """The published model's claimed error is exceeded by its own program (motivation for aster-sound)."""
    b = bench("LyapunovNN")
    res = assign_aster(b.layers, b.lower, b.upper, 1e-3, "A", "aster")
    rng = np.random.default_rng(0)
    lo = np.array([float(v) for v in b.lower])
    hi = np.array([float(v) for v in b.upper])
    worst = Fraction(0)
    corners = [np.where(rng.random(len(lo)) < 0.5, lo, hi) for _ in range(8)]
    for p in corners + [rng.uniform(lo, hi) for _ in range(300)]:
        x = [Fraction(float(v)) for v in p]
        y, _ = _simulate(res.program, x)
        worst = max(worst, max(abs(u - v) for u, v in zip(y, _real(b.layers, x), strict=True)))
    assert worst > res.claimed_error


# ------------------------------------------------------------------------------------------------
# errors, LP text, exact re-check
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["aster", "aster-sound"])
def test_infeasible_names_smallest_error(mode: str) -> None:
    b = bench("SmallNN")
    am = aster_model("SmallNN", "B", mode)
    best = am.error_bound([32, 32], [32, 32])
    with pytest.raises(InfeasibleError, match="smallest error this analysis certifies at maxLen=32") as ei:
        assign_aster(b.layers, b.lower, b.upper, float(best) / 2, "B", mode)
    assert ei.value.smallest_error == pytest.approx(float(best))
    with pytest.raises(InfeasibleError, match="input quantisation error"):
        assign_aster(b.layers, b.lower, b.upper, 1e-7, "A", mode)


@pytest.mark.parametrize("mode", ["aster", "aster-sound"])
def test_lp_text_round_trip(mode: str) -> None:
    m = aster_model("TestNN", "A", mode).model
    text = ilp.to_lp_text(m)
    back = ilp.parse_lp(text)
    diffs, worst = ilp.compare_models(m, back, rel_tol=0.0)
    assert diffs == [] and worst == 0.0
    ref = ilp.parse_lp((REF / "lp" / "LyapunovNN_B.lp").read_text())
    diffs, _ = ilp.compare_models(ref, ilp.parse_lp(ilp.to_lp_text(ref)), rel_tol=0.0)
    assert diffs == []


def test_parse_lp_general_forms() -> None:
    text = """\\ comment
Maximize
 obj: 3 x + 2 y - z
Subject To
 c1: x + y
   + z <= 4
 c2: - x + 3 >= -2.5e+00
 x - y = 0
Bounds
 -inf <= z <= 3
 y >= 1
 x <= 10
 w free
Generals
 x
Binaries
 b
End
"""
    m = ilp.parse_lp(text)
    assert not m.minimize and m.objective == {"x": 3.0, "y": 2.0, "z": -1.0}
    assert m.row("c1").coeffs == {"x": 1.0, "y": 1.0, "z": 1.0} and m.row("c1").rhs == 4.0
    assert m.row("c2").coeffs == {"x": -1.0} and m.row("c2").rhs == -5.5
    assert m.rows[2].sense == "=" and m.rows[2].coeffs == {"x": 1.0, "y": -1.0}
    assert (m.vars["z"].lb, m.vars["z"].ub) == (-ilp.INF, 3.0)
    assert m.vars["y"].lb == 1.0 and m.vars["x"].ub == 10.0 and m.vars["x"].kind == "I"
    assert m.vars["w"].lb == -ilp.INF and m.vars["b"].kind == "B"


def test_exact_recheck_rejects_tolerance_violating_solution() -> None:
    """HiGHS accepts a point violating the error row by 2^-60; the exact check rejects it and the
    exact loop cuts it off and returns the exact optimum."""
    m = ilp.Model()
    m.add_var("x", "B")
    m.add_var("y", "B")
    m.add_var("t", "C", 0, 1)
    m.objective = {"x": -2.0, "y": -1.0}
    m.add_row("def_t", {"x": 2.0**-20, "y": 2.0**-21, "t": -1.0}, "=", 0.0)
    m.add_row("error", {"t": 1.0}, "<=", 2.0**-20 - 2.0**-60)
    sol = ilp.solve(m)
    assert sol.values is not None and round(sol.values["x"]) == 1  # within the solver's tolerance
    chk = ilp.exact_check(m, sol.values)
    assert not chk.ok and chk.violations[0][0] == "error"
    ex = ilp.solve_exact(m)
    assert ex.status == "optimal" and ex.values["x"] == 0 and ex.values["y"] == 1
    assert len(ex.rejected) == 1 and ex.rounds == 2


def test_exact_check_strict_rows() -> None:
    m = ilp.Model()
    m.add_var("t", "C", 0, 1)
    m.add_row("half_open", {"t": 1.0}, "<=", 0.5, strict=True)
    assert not ilp.exact_check(m, {"t": 0.5}).ok
    assert ilp.exact_check(m, {"t": 0.25}).ok
