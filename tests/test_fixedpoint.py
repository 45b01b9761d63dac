"""fixedpoint.convert / quantize_reals against ap_fixed itself (g++ + the Xilinx ap_types headers).

One C++ program holds every case: raw -> ap_fixed<W2,I2> -> ap_fixed<W,I,Q,O> assignment, and
double -> ap_fixed<W,I,Q,O>; it prints raw results that must equal the Python model's.
"""

from __future__ import annotations

import itertools
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aster_ext.codegen.compile import compile_harness
from aster_ext.fixedpoint import FixedFormat, convert, convert_checked, quantize_reals, shift_round
from tests.cpp_support import random_raw, require_toolchain

MODES = list(itertools.product(("TRN", "RND"), ("WRAP", "SAT")))

# (W2, I2) -> (W, I): narrowing, widening, negative int bits, F < 0, shifts beyond the width,
# widths 1 and 100, the 64-bit boundary
CONV_PAIRS = [
    ((8, 4), (4, 2)),
    ((16, 8), (16, 8)),
    ((10, 3), (20, 9)),
    ((1, 1), (1, 1)),
    ((1, 1), (1, -2)),
    ((3, -2), (1, 0)),
    ((12, -3), (5, -1)),
    ((100, 40), (37, 5)),
    ((30, 10), (100, 50)),
    ((64, 32), (63, 31)),
    ((65, 3), (64, 3)),
    ((70, 70), (8, 8)),
    ((20, 25), (6, 12)),
    ((90, 10), (3, 1)),
    ((8, 2), (4, 20)),
    ((8, 2), (4, -10)),
    ((33, 1), (32, 1)),
    ((100, 1), (100, 100)),
    ((2, 2), (1, 0)),
    ((40, 8), (100, 8)),
    ((7, 0), (7, 7)),
]
DOUBLE_FORMATS = [(8, 4), (1, 1), (5, -2), (12, 20), (64, 10), (100, 40), (30, 1), (53, 0), (3, 3)]


def _edge_raws(src: tuple[int, int], dst: tuple[int, int], rng: np.random.Generator) -> list[int]:
    """Source raws at/around the destination's overflow bounds, ties, extremes, and random ones."""
    w2, i2 = src
    w, i = dst
    f2, f = w2 - i2, w - i
    vals = {0, 1, -1, (1 << (w2 - 1)) - 1, -(1 << (w2 - 1))}
    drop = max(f2 - f, 0)
    step = 1 << max(drop - 1, 0)  # half an lsb of the destination, in source units
    for bound_exp in (i - 1 + f2,):
        for sign in (1, -1):
            base = sign * (1 << bound_exp) if bound_exp >= 0 else 0
            for d in range(-3, 4):
                for e in (-1, 0, 1):
                    vals.add(base + d * step + e)
    for d in range(-4, 5):
        vals.add(d * step)
    vals.update(random_raw(rng, w2, 12))
    lo, hi = -(1 << (w2 - 1)), (1 << (w2 - 1)) - 1
    return sorted(v for v in vals if lo <= v <= hi)


def _edge_doubles(fmt: tuple[int, int], rng: np.random.Generator) -> list[float]:
    w, i = fmt
    f = w - i
    out = [0.0, -0.0, 5e-324, -5e-324, 1e300, -1e300, 0.1, -0.1, 1.5, -1.5, 2.5, -2.5]
    for sign in (1.0, -1.0):
        top = sign * 2.0 ** (i - 1)
        for d in range(-3, 4):
            out += [top + d * 2.0 ** (-f - 1), top + d * 2.0 ** (-f)]
        for k in range(-4, 5):
            out.append(sign * (k + 0.5) * 2.0**-f)
    out += list(rng.normal(size=8) * 2.0 ** (i - 1))
    out += list(rng.uniform(-1, 1, size=4) * 2.0 ** (i + 2))
    return [v for v in out if np.isfinite(v)]


def _cpp_source(conv_cases: list, dbl_cases: list) -> str:
    lines = [
        '#include "ap_fixed.h"',
        "#include <cstdlib>",
        "#include <iostream>",
        "#include <string>",
        "template <int W2, int I2, int W, int I, ap_q_mode Q, ap_o_mode O>",
        "std::string conv(const std::string &s) {",
        "  const ap_int<W2> r(s.c_str(), 10);",
        "  ap_fixed<W2, I2> src;",
        "  src.range(W2 - 1, 0) = r;",
        "  const ap_fixed<W, I, Q, O> dst = src;",
        "  ap_int<W> o;",
        "  o.range(W - 1, 0) = dst.range(W - 1, 0);",
        "  return o.to_string(10);",
        "}",
        "template <int W, int I, ap_q_mode Q, ap_o_mode O>",
        "std::string from_double(const std::string &s) {",
        "  const double d = std::strtod(s.c_str(), nullptr);",
        "  const ap_fixed<W, I, Q, O> dst = d;",
        "  ap_int<W> o;",
        "  o.range(W - 1, 0) = dst.range(W - 1, 0);",
        "  return o.to_string(10);",
        "}",
        "int main() {",
        "  int c;",
        "  std::string v;",
        "  while (std::cin >> c >> v) {",
        "    switch (c) {",
    ]
    for n, ((w2, i2), (w, i), q, o) in enumerate(conv_cases):
        lines.append(
            f"      case {n}: std::cout << conv<{w2}, {i2}, {w}, {i}, AP_{q}, AP_{o}>(v) << '\\n'; break;"
        )
    for n, ((w, i), q, o) in enumerate(dbl_cases):
        call = f"from_double<{w}, {i}, AP_{q}, AP_{o}>(v)"
        lines.append(f"      case {len(conv_cases) + n}: std::cout << {call} << '\\n'; break;")
    lines += ["      default: return 2;", "    }", "  }", "  return 0;", "}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def ap_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    """Run every case through ap_fixed; returns (conv rows, double rows) with C++ results."""
    require_toolchain()
    rng = np.random.default_rng(2024)
    extra = []
    for _ in range(6):
        w2, w = int(rng.integers(1, 101)), int(rng.integers(1, 101))
        extra.append(((w2, int(rng.integers(-10, w2 + 10))), (w, int(rng.integers(-10, w + 10)))))
    conv_cases = [(s, d, q, o) for (s, d) in CONV_PAIRS + extra for (q, o) in MODES]
    dbl_cases = [(f, q, o) for f in DOUBLE_FORMATS for (q, o) in MODES]
    tmp = tmp_path_factory.mktemp("apfixed")
    src = tmp / "cases.cpp"
    src.write_text(_cpp_source(conv_cases, dbl_cases))
    # NDEBUG: ap_fixed's C simulation asserts on AP_RND conversions that drop more fractional bits
    # than the source has (it reads a bit beyond the MSB, then ignores it); the value is well defined
    binary = compile_harness([src], tmp / "cases", opt="-O0", extra_flags=["-DNDEBUG"])
    rows_c = [(n, c, v) for n, c in enumerate(conv_cases) for v in _edge_raws(c[0], c[1], rng)]
    rows_d = [(len(conv_cases) + n, c, v) for n, c in enumerate(dbl_cases) for v in _edge_doubles(c[0], rng)]
    text = "".join(f"{n} {v}\n" for n, _, v in rows_c) + "".join(
        f"{n} {float(v).hex()}\n" for n, _, v in rows_d
    )
    proc = subprocess.run([str(binary)], input=text, capture_output=True, text=True, check=True)
    out = [int(t) for t in proc.stdout.split()]
    assert len(out) == len(rows_c) + len(rows_d)
    conv_rows = [(c, v, r) for (_, c, v), r in zip(rows_c, out[: len(rows_c)], strict=True)]
    dbl_rows = [(c, v, r) for (_, c, v), r in zip(rows_d, out[len(rows_c) :], strict=True)]
    return conv_rows, dbl_rows


def _check_conv(rows: list, dtype: type) -> None:
    bad = []
    for ((w2, i2), (w, i), q, o), v, expect in rows:
        if dtype is np.int64 and max(w2, w) > 58:
            continue
        got = convert(np.array([v], dtype=dtype), w2 - i2, w, w - i, q, o)[0]
        if int(got) != expect:
            bad.append(
                f"ap_fixed<{w2},{i2}> raw {v} -> ap_fixed<{w},{i},AP_{q},AP_{o}>: C++ {expect}, python {got}"
            )
    assert not bad, f"{len(bad)} mismatches, e.g.\n" + "\n".join(bad[:10])


@pytest.mark.slow
def test_convert_matches_ap_fixed_object(ap_results: tuple[list, list]) -> None:
    _check_conv(ap_results[0], object)


@pytest.mark.slow
def test_convert_matches_ap_fixed_int64(ap_results: tuple[list, list]) -> None:
    _check_conv(ap_results[0], np.int64)


@pytest.mark.slow
def test_quantize_reals_matches_ap_fixed_double_ctor(ap_results: tuple[list, list]) -> None:
    bad = []
    for ((w, i), q, o), v, expect in ap_results[1]:
        got = quantize_reals(np.array([v]), w - i, w, q, o)[0]
        if int(got) != expect:
            bad.append(f"{v!r} -> ap_fixed<{w},{i},AP_{q},AP_{o}>: C++ {expect}, python {got}")
    assert not bad, f"{len(bad)} mismatches, e.g.\n" + "\n".join(bad[:10])


@pytest.mark.slow
def test_enough_cases_cover_modes(ap_results: tuple[list, list]) -> None:
    conv_rows = ap_results[0]
    widths = {c[1][0] for c, _, _ in conv_rows} | {c[0][0] for c, _, _ in conv_rows}
    assert 1 in widths and 100 in widths
    assert any(c[1][1] < 0 for c, _, _ in conv_rows)
    # the cases really exercise overflow: some results differ from the unbounded quantisation
    wrapped = sum(
        1
        for ((w2, i2), (w, i), q, _), v, r in conv_rows
        if int(shift_round(np.array([v], dtype=object), (w2 - i2) - (w - i), q)[0]) != r
    )
    assert wrapped > 50


# ---------------------------------------------------------------------------------------------
# pure-Python properties


@given(
    v=st.integers(-(1 << 120), 1 << 120),
    src_frac=st.integers(-20, 120),
    width=st.integers(1, 100),
    frac=st.integers(-20, 120),
    quant=st.sampled_from(["TRN", "RND"]),
    overflow=st.sampled_from(["WRAP", "SAT"]),
)
@settings(max_examples=400, deadline=None)
def test_convert_equals_rational_definition(
    v: int, src_frac: int, width: int, frac: int, quant: str, overflow: str
) -> None:
    """convert() = floor(x·2^F [+ 1/2]) then wrap/saturate, computed with Fractions."""
    x = Fraction(v) * Fraction(2) ** -src_frac
    fmt = FixedFormat(width, width - frac, quant, overflow)
    expect = fmt.quantize_value(x)
    got, ovf = convert_checked(np.array([v], dtype=object), src_frac, width, frac, quant, overflow)
    assert int(got[0]) == expect
    s = x * Fraction(2) ** frac + (Fraction(1, 2) if quant == "RND" else 0)
    k = s.numerator // s.denominator
    assert bool(ovf[0]) == (not -(1 << (width - 1)) <= k < (1 << (width - 1)))


@given(
    v=st.integers(-(1 << 58), (1 << 58) - 1),
    shift=st.integers(-2, 90),
    width=st.integers(1, 62),
    quant=st.sampled_from(["TRN", "RND"]),
    overflow=st.sampled_from(["WRAP", "SAT"]),
)
@settings(max_examples=300, deadline=None)
def test_convert_int64_equals_object(v: int, shift: int, width: int, quant: str, overflow: str) -> None:
    frac = 3
    a = convert(np.array([v], dtype=np.int64), frac + shift, width, frac, quant, overflow)
    b = convert(np.array([v], dtype=object), frac + shift, width, frac, quant, overflow)
    assert int(a[0]) == int(b[0])


def test_convert_broadcasts_per_element_formats() -> None:
    raw = np.array([[5, -5, 7], [100, -100, 3]], dtype=object)
    got = convert(raw, np.array([1, 2, 0]), np.array([3, 8, 2]), np.array([0, 0, 0]), "RND", "WRAP")
    expect = [
        [
            FixedFormat(w, w, "RND").quantize_value(Fraction(int(r), 2**s))
            for r, s, w in zip(row, [1, 2, 0], [3, 8, 2], strict=True)
        ]
        for row in raw
    ]
    assert got.tolist() == expect


def test_quantize_reals_rejects_nan() -> None:
    with pytest.raises(ValueError):
        quantize_reals(np.array([np.nan]), 4, 8, "TRN", "WRAP")


def test_quantize_reals_slow_path_agrees() -> None:
    """Huge scaled values take the exact Fraction path; it agrees with quantize_value."""
    vals = np.array([1e30, -1e30, 3.25, -3.75, 2.0**-60])
    for q, o in MODES:
        got = quantize_reals(vals, 70, 100, q, o)
        assert [int(g) for g in got] == [FixedFormat(100, 30, q, o).quantize_value(v) for v in vals]


def test_edge_values_are_in_range() -> None:
    rng = np.random.default_rng(0)
    for src, dst in CONV_PAIRS:
        vals = _edge_raws(src, dst, rng)
        assert vals and all(-(1 << (src[0] - 1)) <= v < (1 << (src[0] - 1)) for v in vals)


def test_cpp_source_is_deterministic(tmp_path: Path) -> None:
    a = _cpp_source([((8, 4), (4, 2), "TRN", "WRAP")], [((8, 4), "RND", "SAT")])
    assert "conv<8, 4, 4, 2, AP_TRN, AP_WRAP>" in a and "from_double<8, 4, AP_RND, AP_SAT>" in a


def test_quantize_reals_per_element_fracs_are_exact():
    """One call with a fractional-bit count per element gives floor(x·2^F) / floor(x·2^F + 1/2) in
    exact rationals, then the wrap or clamp, on values that take the float fast path and on values
    that need exact rationals (|x·2^F| >= 2^60, subnormal products) in the same array."""
    rng = np.random.default_rng(3)
    special = [0.0, 2.0**70, -(2.0**65) + 1.5, 5e-324, -3e-310, 0.5, -0.5]
    vals = np.concatenate([rng.normal(size=40) * 8, special])
    fracs = rng.integers(-4, 48, size=vals.size)
    for quant in ("RND", "TRN"):
        for width, overflow in ((401, "WRAP"), (12, "WRAP"), (12, "SAT")):
            got = quantize_reals(vals.reshape(-1, 1), fracs.reshape(-1, 1), width, quant, overflow)
            half = 1 << (width - 1)
            for v, f, g in zip(vals.tolist(), fracs.tolist(), got.reshape(-1).tolist(), strict=True):
                s = Fraction(v) * Fraction(2) ** f + (Fraction(1, 2) if quant == "RND" else 0)
                r = s.numerator // s.denominator
                r = min(max(r, -half), half - 1) if overflow == "SAT" else ((r + half) % (2 * half)) - half
                assert g == r, (v, f, quant, width, overflow)
