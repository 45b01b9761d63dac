"""The bit-exact simulator: int64 and Python-int paths agree, match a scalar Fraction evaluation of
the program contract, and equal exact real arithmetic when no assignment rounds or overflows."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aster_ext.fixedpoint import FixedFormat, quantize_reals
from aster_ext.program import FormatArray
from aster_ext.simulate import (
    choose_dtype,
    intermediate_bits,
    simulate,
    simulate_raw,
    to_float,
    to_fraction,
    validate_program,
)
from tests.programs import exact_program, random_inputs, random_program, reference_outputs

MODES = [("TRN", "WRAP"), ("TRN", "SAT"), ("RND", "WRAP"), ("RND", "SAT")]
LAYOUTS = ["uniform", "column", "row", "element", "mixed"]

program_args = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "sizes": st.lists(st.integers(1, 4), min_size=2, max_size=4),
        "modes": st.sampled_from(MODES),
        "layout": st.sampled_from(LAYOUTS),
    }
)


@given(args=program_args)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_int64_and_object_paths_identical(args: dict) -> None:
    rng = np.random.default_rng(args["seed"])
    q, o = args["modes"]
    # narrow enough for the int64 path, narrow enough to overflow all the time
    p = random_program(
        rng,
        args["sizes"],
        quant=q,
        overflow=o,
        layout=args["layout"],
        width=(1, 14),
        acc_width=(1, 20),
        int_bits=(-3, 6),
    )
    assert choose_dtype(p) == "int64"
    x = random_inputs(rng, p, 20)
    a = simulate_raw(p, x, dtype="int64")
    b = simulate_raw(p, x, dtype="object")
    assert a.dtype == np.int64 and b.dtype == object
    assert a.tolist() == b.tolist()


@given(args=program_args, wide=st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_simulator_matches_scalar_fraction_reference(args: dict, wide: bool) -> None:
    """Vectorised simulation = literal scalar evaluation of the contract (rounding, wrap, sat)."""
    rng = np.random.default_rng(args["seed"])
    q, o = args["modes"]
    width, acc = ((20, 70), (30, 110)) if wide else ((1, 12), (1, 18))
    p = random_program(
        rng,
        args["sizes"],
        quant=q,
        overflow=o,
        layout=args["layout"],
        width=width,
        acc_width=acc,
        int_bits=(-4, 9),
    )
    x = random_inputs(rng, p, 6)
    assert simulate_raw(p, x).tolist() == reference_outputs(p, x).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_exact_formats_give_exact_rational_result(seed: int) -> None:
    """With formats that never round or overflow, simulation equals exact rational evaluation."""
    rng = np.random.default_rng(100 + seed)
    sizes = [int(v) for v in rng.integers(1, 6, size=int(rng.integers(2, 5)))]
    p = exact_program(rng, sizes)
    x = random_inputs(rng, p, 10)
    y = simulate_raw(p, x)
    tr = simulate_raw(p, x, trace=True)
    assert tr.first_overflow() is None
    for row, y_row in zip(x, y, strict=True):
        a = [p.input_t.to_fraction(int(v)) for v in row]
        for lp in p.layers:
            w = to_fraction(lp.weight_raw, lp.weight_t.frac)
            b = to_fraction(lp.bias_raw, lp.bias_t.frac)
            z = [sum((w[j, k] * a[k] for k in range(lp.n_in)), Fraction(0)) + b[j] for j in range(lp.n_out)]
            a = [max(v, Fraction(0)) for v in z] if lp.activation == "relu" else z
        got = [Fraction(int(v)) / Fraction(2) ** p.output_t.frac_bits for v in y_row]
        assert got == a


def test_dtype_follows_the_widest_intermediate_not_the_formats() -> None:
    """A 40-bit weight times a 30-bit input is a 70-bit product although every format is < 64 bits:
    the int128 path (wide products only); 70-bit weights need Python ints."""
    rng = np.random.default_rng(7)
    p = random_program(rng, [3, 2], layout="uniform", width=(40, 40), acc_width=(24, 24), int_bits=(4, 4))
    p.input_t = FixedFormat(30, 4, p.quant, p.overflow)
    assert max(p.layers[0].product_t.width.max(), p.input_t.width) < 64
    assert intermediate_bits(p) > 64 and choose_dtype(p) == "int128"
    x = random_inputs(rng, p, 10)
    assert simulate_raw(p, x).dtype == np.int64
    with pytest.raises(ValueError, match="int64 is unsafe"):
        simulate_raw(p, x, dtype="int64")
    assert simulate_raw(p, x).tolist() == reference_outputs(p, x).tolist()
    assert simulate_raw(p, x, dtype="object").tolist() == simulate_raw(p, x).tolist()
    q = random_program(rng, [3, 2], layout="uniform", width=(70, 70), acc_width=(24, 24), int_bits=(4, 4))
    assert choose_dtype(q) == "object"
    y = random_inputs(rng, q, 10)
    assert simulate_raw(q, y).dtype == object
    with pytest.raises(ValueError, match="int128 is unsafe"):
        simulate_raw(q, y, dtype="int128")
    assert simulate_raw(q, y).tolist() == reference_outputs(q, y).tolist()


@given(args=program_args)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@pytest.mark.slow
def test_int128_and_object_paths_identical(args: dict) -> None:
    """Wide exact products (up to ~116 bits, left and right shifts, both modes) in 60-bit limbs."""
    rng = np.random.default_rng(args["seed"])
    q, o = args["modes"]
    p = random_program(
        rng,
        args["sizes"],
        quant=q,
        overflow=o,
        layout=args["layout"],
        width=(20, 58),
        acc_width=(1, 40),
        int_bits=(-10, 20),
    )
    assume(choose_dtype(p) == "int128")
    x = random_inputs(rng, p, 20)
    a = simulate_raw(p, x, trace=True)
    b = simulate_raw(p, x, dtype="object", trace=True)
    assert a.dtype == "int128" and a.y_raw.dtype == np.int64
    assert a.y_raw.tolist() == b.y_raw.tolist()
    for la, lb in zip(a.layers, b.layers, strict=True):
        for key, cnt in la.overflow_count.items():
            assert cnt.tolist() == lb.overflow_count[key].tolist(), key


def test_trace_matches_plain_run_and_locates_overflow() -> None:
    rng = np.random.default_rng(3)
    p = random_program(
        rng,
        [4, 5, 3],
        quant="TRN",
        overflow="WRAP",
        layout="element",
        width=(2, 6),
        acc_width=(2, 6),
        int_bits=(-1, 2),
    )
    x = random_inputs(rng, p, 50)
    y = simulate_raw(p, x)
    tr = simulate_raw(p, x, trace=True)
    assert tr.y_raw.tolist() == y.tolist()
    assert len(tr.layers) == 2 and tr.layers[0].out.shape == (53, 5)
    assert tr.layers[1].x.tolist() == tr.layers[0].out.tolist()
    assert any(lt.overflowed for lt in tr.layers)
    first = tr.first_overflow()
    assert first is not None and first[0] in ("dense_0", "dense_1")
    lt = tr.layers[0]
    assert lt.overflow_count["product"].shape == (5, 4) and lt.overflow_count["out"].shape == (5,)
    assert lt.overflow_any.shape == (53,)
    # last layer's out raws convert exactly into output_t
    sh = p.output_t.frac_bits - p.layers[-1].out_t.frac
    assert (tr.layers[-1].out * (2**sh).astype(object)).tolist() == y.tolist()


def test_simulate_assigns_doubles_like_ap_fixed() -> None:
    rng = np.random.default_rng(11)
    for q, o in MODES:
        p = random_program(rng, [3, 2], quant=q, overflow=o, width=(4, 10), int_bits=(1, 4))
        x = rng.normal(size=(40, 3)) * 2.0**p.input_t.int_bits
        x[0] = [
            0.5 * 2.0**-p.input_t.frac_bits,
            -0.5 * 2.0**-p.input_t.frac_bits,
            2.0 ** (p.input_t.int_bits - 1),
        ]
        x_raw, y = simulate(p, x)
        expect = [[p.input_t.quantize_value(Fraction(float(v))) for v in row] for row in x]
        assert x_raw.tolist() == expect
        assert y.tolist() == simulate_raw(p, x_raw).tolist()
        _, tr = simulate(p, x, trace=True)
        assert tr.input_overflow is not None and bool(tr.input_overflow[0, 2])
        assert tr.first_overflow()[0] == "input"


def test_simulate_rejects_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    p = random_program(rng, [2, 1], width=(4, 4), int_bits=(2, 2))
    with pytest.raises(ValueError):
        simulate(p, np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="do not fit"):
        simulate_raw(p, np.array([[8, 0]], dtype=object))
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        simulate_raw(p, np.zeros((1, 3), dtype=object))


def test_validate_program_catches_constants_outside_their_format() -> None:
    rng = np.random.default_rng(0)
    p = random_program(rng, [2, 2], width=(4, 4), int_bits=(2, 2))
    validate_program(p)
    p.layers[0].weight_raw[0, 0] = 8  # a 4-bit raw holds -8..7
    with pytest.raises(ValueError, match="weights"):
        validate_program(p)
    p.layers[0].weight_raw[0, 0] = 0
    p.layers[0].out_t = FormatArray.uniform((3,), 4, 2)
    with pytest.raises(ValueError, match="out_t"):
        validate_program(p)


def test_single_sample_and_empty_batch() -> None:
    rng = np.random.default_rng(1)
    p = random_program(rng, [3, 2, 2])
    x = random_inputs(rng, p, 2)
    assert simulate_raw(p, x[0]).tolist() == simulate_raw(p, x[:1]).tolist()
    assert simulate_raw(p, np.zeros((0, 3), dtype=object)).shape == (0, 2)


def test_to_float_and_to_fraction() -> None:
    raw = np.array([3, -5, (1 << 70) + 1], dtype=object)
    assert to_float(raw, 2).tolist() == [0.75, -1.25, float(1 << 70) / 4]
    assert to_fraction(raw, np.array([2, -1, 70])).tolist() == [
        Fraction(3, 4),
        Fraction(-10),
        Fraction((1 << 70) + 1, 1 << 70),
    ]


def test_quantize_reals_matches_format_for_random_doubles() -> None:
    rng = np.random.default_rng(5)
    vals = rng.normal(size=200) * 40
    for q, o in MODES:
        fmt = FixedFormat(9, 5, q, o)
        got = quantize_reals(vals, fmt.frac_bits, fmt.width, q, o)
        assert [int(g) for g in got] == [fmt.quantize_value(v) for v in vals]
