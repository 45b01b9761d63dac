"""hls4ml backend: ap_fixed semantics, tables, certificate soundness, and (slow) bit-exactness with
hls4ml's own compiled C simulation plus an end-to-end quantize/verify through hls4ml."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aster_ext.fixedpoint import convert
from aster_ext.hls4ml_backend.certify import LayerFracs, build_program, walk
from aster_ext.hls4ml_backend.program import ActStage, DenseStage, Hls4mlProgram, decimal_round_trip
from aster_ext.hls4ml_backend.search import choose_types
from aster_ext.hls4ml_backend.simulate import simulate
from aster_ext.hls4ml_backend.tables import (
    TABLE_FUNCS,
    slope_bound,
    table_error,
    table_error_signed,
    table_index,
    table_values,
)
from aster_ext.hls4ml_backend.types import HlsType, from_doubles, requantize
from aster_ext.ir import DenseLayer
from aster_ext.refined.symbolic_ranges import symbolic_ranges
from aster_ext.verify import real_forward_exact, real_forward_float

from .hls4ml_support import dense_onnx

HAVE_HLS4ML = importlib.util.find_spec("hls4ml") is not None and importlib.util.find_spec("qonnx") is not None
needs_hls4ml = pytest.mark.skipif(
    not HAVE_HLS4ML, reason="hls4ml/qonnx not installed (pip install '.[hls4ml]')"
)


# --- types ------------------------------------------------------------------------------------


def test_precision_strings_round_trip():
    for text in (
        "fixed<16,6>",
        "fixed<10,3,RND,SAT>",
        "ufixed<8,2,TRN,WRAP,0>",
        "fixed<12,-2,AP_RND,AP_WRAP>",
    ):
        t = HlsType.parse(text)
        assert HlsType.parse(t.to_string()) == t
    assert HlsType.parse("ufixed<8,2>").signed is False


def test_unmodelled_modes_are_refused():
    from aster_ext.errors import UnsupportedError

    with pytest.raises(UnsupportedError):
        HlsType.parse("fixed<8,2,RND_CONV,SAT>")
    with pytest.raises(UnsupportedError):
        HlsType.parse("fixed<8,2,TRN,SAT_SYM>")


@given(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20),
    st.integers(0, 30),
    st.integers(2, 24),
    st.integers(-4, 12),
    st.sampled_from(["TRN", "RND"]),
    st.sampled_from(["WRAP", "SAT"]),
)
@settings(max_examples=150, deadline=None)
def test_requantize_matches_fixedpoint_module(raws, src_frac, width, frac, quant, over):
    """Signed casts agree with the project's independent ap_fixed model (aster_ext.fixedpoint)."""
    t = HlsType(width, width - frac, True, quant, over)
    raw = np.array(raws, dtype=object)
    ours = requantize(raw, src_frac, t)
    ref = convert(raw, src_frac, width, frac, quant, over)
    assert list(ours) == list(ref)


@given(
    st.lists(st.floats(-100, 100), min_size=1, max_size=10),
    st.integers(-2, 20),
    st.sampled_from(["TRN", "RND"]),
)
@settings(max_examples=100, deadline=None)
def test_from_doubles_is_exact_floor_or_round(values, frac, quant):
    t = HlsType(64, 64 - frac, True, quant, "WRAP")
    raw = from_doubles(np.array(values), t)
    for v, r in zip(values, raw, strict=True):
        s = Fraction(v) * Fraction(2) ** frac + (Fraction(1, 2) if quant == "RND" else 0)
        assert r == s.numerator // s.denominator


def test_decimal_round_trip_is_what_hls4ml_prints():
    w = np.array([0.12499999, -0.3, 1e-9])
    assert list(decimal_round_trip(w, 3)) == [0.125, -0.3, 0.0]
    assert list(decimal_round_trip(w, -2)) == [0.0, -0.0, 0.0]


# --- tables -----------------------------------------------------------------------------------


@given(
    st.lists(st.integers(-(2**16), 2**16), min_size=1, max_size=30),
    st.integers(0, 14),
    st.sampled_from([64, 256, 1024, 1000]),
)
@settings(max_examples=100, deadline=None)
def test_table_index_is_truncation_of_x_times_n_over_d(raws, frac, size):
    for fn in TABLE_FUNCS:
        half, div = TABLE_FUNCS[fn][0], TABLE_FUNCS[fn][1]
        idx = table_index(np.array(raws, dtype=object), frac, fn, size)
        for r, i in zip(raws, idx, strict=True):
            q = Fraction(r * size, div * 2**frac)
            k = int(q)  # Python int() of a Fraction truncates towards zero
            assert i == min(max(k + (half * size) // div, 0), size - 1)


@pytest.mark.parametrize("fn", ["tanh", "sigmoid"])
@pytest.mark.parametrize("size,width,quant", [(64, 8, "TRN"), (256, 12, "RND"), (1024, 10, "TRN")])
def test_table_error_bound_holds_on_dense_samples(fn, size, width, quant):
    """|T[idx(x)] - f(x)| <= table_error over every grid x of a fine input type in [lo, hi]."""
    t = HlsType(width, 1, True, quant, "WRAP")
    rng = np.random.default_rng(size + width)
    lo = rng.uniform(-12, 6, 6)
    hi = lo + rng.uniform(0, 8, 6)
    lo[0], hi[0] = -20.0, 20.0
    bound = table_error(fn, size, t, lo, hi)
    s_lo, s_hi = table_error_signed(fn, size, t, lo, hi)
    vals = table_values(fn, size, t)
    frac = 10
    f = mpmath.tanh if fn == "tanh" else (lambda v: 1 / (1 + mpmath.exp(-v)))
    for j in range(lo.size):
        k = np.arange(int(np.ceil(lo[j] * 2**frac)), int(np.floor(hi[j] * 2**frac)) + 1, 7)
        k = np.concatenate([k, [int(np.ceil(lo[j] * 2**frac)), int(np.floor(hi[j] * 2**frac))]])
        idx = table_index(k.astype(object), frac, fn, size)
        x = k / 2.0**frac
        errs = [mpmath.mpf(float(vals[i])) - f(mpmath.mpf(float(v))) for i, v in zip(idx, x, strict=True)]
        worst = max(abs(v) for v in errs)
        assert float(worst) <= bound[j], (j, float(worst), bound[j])
        assert s_lo[j] <= min(errs) and max(errs) <= s_hi[j], (j, s_lo[j], s_hi[j])


@given(
    fn=st.sampled_from(["tanh", "sigmoid"]),
    size=st.sampled_from([16, 64, 1000, 1024]),
    width=st.integers(4, 20),
    centre=st.floats(-14, 14),
    radius=st.floats(0, 3),
    frac=st.integers(2, 12),
)
@settings(max_examples=60, deadline=None)
@example(fn="tanh", size=16, width=11, centre=6.0, radius=0.0, frac=2)  # saturated: one cell
@example(fn="tanh", size=16, width=11, centre=0.5, radius=0.0, frac=2)  # on cell boundaries
@example(fn="tanh", size=16, width=11, centre=-0.5, radius=0.0, frac=2)
@example(fn="tanh", size=16, width=11, centre=1.0, radius=0.5, frac=3)
@example(fn="sigmoid", size=64, width=12, centre=-2.0, radius=0.0, frac=4)
@example(fn="tanh", size=1000, width=14, centre=0.008, radius=0.0, frac=12)  # D/N not binary
@example(fn="sigmoid", size=1000, width=14, centre=-0.032, radius=0.016, frac=12)
def test_signed_table_error_encloses_every_grid_input(fn, size, width, centre, radius, frac):
    """T[idx(x)] - f(x) in [τ_lo, τ_hi] for every grid x of [lo, hi] (exact arithmetic on the
    table entries, mpmath for f), also deep in the saturated tails, where the enclosure must be
    narrow: the error there is a nearly constant offset."""
    t = HlsType(width, 1, True, "TRN", "WRAP")
    lo, hi = np.array([centre - radius]), np.array([centre + radius])
    s_lo, s_hi = table_error_signed(fn, size, t, lo, hi)
    vals = table_values(fn, size, t)
    f = mpmath.tanh if fn == "tanh" else (lambda v: 1 / (1 + mpmath.exp(-v)))
    k = np.arange(int(np.ceil(lo[0] * 2**frac)), int(np.floor(hi[0] * 2**frac)) + 1)
    if k.size == 0:
        return
    idx = table_index(k.astype(object), frac, fn, size)
    errs = [mpmath.mpf(float(vals[i])) - f(mpmath.mpf(int(v)) / 2**frac) for i, v in zip(idx, k, strict=True)]
    assert s_lo[0] <= min(errs) and max(errs) <= s_hi[0]
    half = TABLE_FUNCS[fn][0]
    if lo[0] > half + 1 and hi[0] - lo[0] < 0.5:  # saturated: width ~ the variation of f there
        assert s_hi[0] - s_lo[0] <= float(f(mpmath.mpf(hi[0])) - f(mpmath.mpf(lo[0]))) + 2 * 2.0 ** -(
            width - 1
        )


@given(fn=st.sampled_from(["tanh", "sigmoid"]), a=st.floats(-20, 20), w=st.floats(0, 10))
@settings(max_examples=100, deadline=None)
def test_slope_bound_is_an_upper_bound_of_the_derivative(fn, a, w):
    lo, hi = np.array([a]), np.array([a + w])
    d = slope_bound(fn, lo, hi)[0]
    with mpmath.workdps(40):
        for x in np.linspace(a, a + w, 41):
            xm = mpmath.mpf(float(x))
            # tanh' = 1/cosh²(x), sigmoid' = 1/(4 cosh²(x/2)) (no cancellation)
            true = 1 / mpmath.cosh(xm) ** 2 if fn == "tanh" else 1 / (4 * mpmath.cosh(xm / 2) ** 2)
            assert true <= mpmath.mpf(float(d))


# --- certificate -----------------------------------------------------------------------------


def _random_layers(rng: np.random.Generator, sizes: list[int], acts: list[str]) -> list[DenseLayer]:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.normal(size=(b, a)) * 1.5 / np.sqrt(a)).astype(np.float32).astype(np.float64)
        bias = (rng.normal(size=b) * 0.3).astype(np.float32).astype(np.float64)
        layers.append(DenseLayer(f"l{i}", w, bias, acts[i]))
    return layers


def _check_sound(layers, prog, cert, lo, hi, rng, n=400):
    """Simulated outputs (bit-exact model of hls4ml) never exceed the certificate."""
    x = np.concatenate(
        [lo + (hi - lo) * rng.random((n, lo.size)), np.where(rng.random((64, lo.size)) < 0.5, lo, hi)]
    )
    y = simulate(prog, x)
    err = np.abs(y - real_forward_float(layers, x))
    assert np.all(err <= cert.bound[None, :] * (1 + 1e-9) + 1e-12)
    # err / bound; an output with bound 0 (constant, e.g. a dead ReLU) has err 0 by the line above
    ratio = np.divide(err, cert.bound[None, :], out=np.zeros_like(err), where=cert.bound[None, :] > 0)
    worst = np.argsort(-np.max(ratio, axis=1))[:3]
    for i in worst:
        ref = real_forward_exact(layers, [Fraction(float(v)) for v in x[i]])
        for o in range(len(ref)):
            assert abs(Fraction(float(y[i, o])) - ref[o]) <= Fraction(float(cert.bound[o]))
    return float(np.max(ratio))


@given(
    seed=st.integers(0, 10_000),
    acts=st.lists(st.sampled_from(["relu", "tanh", "sigmoid", "identity"]), min_size=1, max_size=3),
    fbits=st.lists(st.integers(1, 14), min_size=5, max_size=5),
    tlog=st.integers(6, 11),
    quant=st.sampled_from(["TRN", "RND"]),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_certificate_is_sound_on_random_nets(seed, acts, fbits, tlog, quant):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 5))] + [int(rng.integers(2, 7)) for _ in acts]
    layers = _random_layers(rng, sizes, acts + [])
    lo = rng.uniform(-2, 1, sizes[0])
    hi = lo + rng.uniform(0.01, 2, sizes[0])
    ranges = symbolic_ranges(layers, lo, hi)
    fr = [
        LayerFracs(fbits[0], fbits[1], fbits[2], fbits[3] if a != "identity" else None,
                   fbits[4] if a in ("tanh", "sigmoid") else None, tlog if a in ("tanh", "sigmoid") else None)
        for a in acts
    ]  # fmt: skip
    prog, cert = build_program(layers, ranges, lo, hi, fbits[0], fr, quant=quant)
    assert cert.ok, cert.overflow  # the builder fits every integer part to the certified ranges
    _check_sound(layers, prog, cert, lo, hi, rng)


@given(
    seed=st.integers(0, 10_000),
    acts=st.lists(st.sampled_from(["tanh", "sigmoid"]), min_size=1, max_size=2),
    scale=st.sampled_from([4.0, 12.0]),
    fbits=st.lists(st.integers(2, 12), min_size=5, max_size=5),
    tlog=st.integers(5, 10),
    quant=st.sampled_from(["TRN", "RND"]),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_certificate_is_sound_with_saturated_tables(seed, acts, scale, fbits, tlog, quant):
    """Large weights drive most pre-activations past the tables' ends (±4 tanh, ±8 sigmoid): the
    signed table errors there are offsets that cancel through the next weights; the certificate
    must still hold on random, corner and worst inputs (exactly re-evaluated)."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 5))] + [int(rng.integers(3, 9)) for _ in acts] + [2]
    layers = _random_layers(rng, sizes, acts + ["identity"])
    for layer in layers[:-1]:
        layer.weight[:] = (layer.weight * scale).astype(np.float32)
    lo = rng.uniform(-2, 1, sizes[0])
    hi = lo + rng.uniform(0.01, 2, sizes[0])
    ranges = symbolic_ranges(layers, lo, hi)
    fr = [LayerFracs(fbits[0], fbits[1], fbits[2], fbits[3], fbits[4], tlog) for _ in acts]
    fr.append(LayerFracs(fbits[0], fbits[1], fbits[2]))
    prog, cert = build_program(layers, ranges, lo, hi, fbits[0], fr, quant=quant)
    assert cert.ok, cert.overflow
    _check_sound(layers, prog, cert, lo, hi, rng)


@pytest.mark.slow
def test_search_meets_target_and_is_sound():
    rng = np.random.default_rng(3)
    layers = _random_layers(rng, [3, 6, 5, 2], ["relu", "tanh", "identity"])
    lo, hi = -np.ones(3), np.ones(3)
    ranges = symbolic_ranges(layers, lo, hi)
    res = choose_types(layers, ranges, lo, hi, 1e-2)
    assert res.certificate.ok and res.certificate.max_bound <= 1e-2
    ratio = _check_sound(layers, res.program, res.certificate, lo, hi, rng)
    assert ratio > 1e-3  # the bound is not absurdly loose on this small net


def test_too_narrow_accumulator_is_refused_and_really_wraps():
    rng = np.random.default_rng(0)
    layers = _random_layers(rng, [3, 4], ["identity"])
    layers[0].weight[:] = 3.0
    lo, hi = np.zeros(3), np.ones(3)
    ranges = symbolic_ranges(layers, lo, hi)
    prog, cert = build_program(layers, ranges, lo, hi, 8, [LayerFracs(8, 8, 8)])
    assert cert.ok
    st0 = prog.stages[0]
    assert isinstance(st0, DenseStage)
    narrow = HlsType(st0.accum_t.width - 2, st0.accum_t.int_bits - 2, True, "TRN", "WRAP")
    bad = Hls4mlProgram(
        prog.input_t,
        [DenseStage(st0.name, st0.weight, st0.bias, st0.weight_t, st0.bias_t, narrow, st0.result_t)],
    )
    c2 = walk(layers, ranges, lo, hi, bad)
    assert not c2.ok and "accumulator" in c2.overflow[0]
    y = simulate(bad, hi[None, :])
    assert np.max(np.abs(y - real_forward_float(layers, hi[None, :]))) > 1.0  # it does wrap


# --- hls4ml itself (slow) ---------------------------------------------------------------------


def _convert(tmp: Path, onnx_path: Path, prec: dict) -> tuple[object, Hls4mlProgram]:
    from aster_ext.hls4ml_backend import project as P

    m = P.clean_onnx(onnx_path)
    cfg = P.base_config(m)
    mats, acts = P.node_names(m)
    ln = cfg["LayerName"]
    ln["global_in"]["Precision"]["result"] = prec["input"]
    for i, mat in enumerate(mats):
        ln[mat]["Precision"].update(prec["dense"][i])
    for i, act in enumerate(acts):
        if act is None:
            continue
        a = prec["act"][i]
        ln[act]["Precision"]["result"] = a["result"]
        if "table" in a:
            ln[act]["table_t"] = a["table"]
            ln[act]["TableSize"] = a["size"]
    hm = P.convert(m, cfg, tmp / "prj", "io_parallel", "Latency", 1)
    P.compile_model(hm)
    return hm, P.read_program(hm)


def _inputs(rng: np.random.Generator, n_in: int) -> np.ndarray:
    return np.concatenate(
        [
            rng.uniform(-3, 3, (400, n_in)),
            rng.normal(size=(200, n_in)) * 20,  # saturate / wrap the narrow types
            np.round(rng.uniform(-9, 9, (200, n_in)) * 128) / 128,  # table cell boundaries
            np.array([[4.0] * n_in, [-4.0] * n_in, [8.0] * n_in, [-8.0] * n_in, [0.0] * n_in]),
        ]
    )


@pytest.mark.slow
@needs_hls4ml
def test_simulator_bit_exact_with_hls4ml_relu(tmp_path):
    path = dense_onnx(tmp_path / "relu.onnx", [4, 8, 8, 2], ["Relu", "Relu", None], seed=5, scale=2.0)
    prec = {
        "input": "fixed<10,4,RND,SAT>",
        "dense": [
            {"weight": "fixed<8,2>", "bias": "fixed<9,3,RND>", "accum": "fixed<14,6,TRN,SAT>"},
            {"weight": "fixed<7,2,RND>", "bias": "fixed<8,2>", "accum": "fixed<13,5>"},
            {"weight": "fixed<9,3>", "bias": "fixed<6,1>", "accum": "fixed<18,8>"},
        ],
        "act": [{"result": "fixed<9,5,RND,SAT>"}, {"result": "fixed<7,3>"}, None],
    }
    _assert_bit_exact(tmp_path, path, prec, _inputs(np.random.default_rng(0), 4))


def _assert_bit_exact(tmp_path: Path, path: Path, prec: dict, x: np.ndarray) -> Hls4mlProgram:
    """hls4ml's compiled model of ``path`` with the precisions ``prec`` equals the simulator of the
    program read back from it, bit for bit on ``x``; returns that program."""
    from aster_ext.hls4ml_backend import project as P

    hm, prog = _convert(tmp_path, path, prec)
    assert np.array_equal(P.predict(hm, x), simulate(prog, x))
    return prog


@pytest.mark.slow
@needs_hls4ml
def test_simulator_bit_exact_with_hls4ml_wide_types(tmp_path):
    """Types as the search picks them for a tight ε on ACAS Xu: 34-bit inputs x 34-bit weights
    (68-bit products, evaluated split in int64) into a 36-bit accumulator, and hls4ml's 'auto'
    dense result of about 72 bits; the simulator wrapped that cast in int64 until f6eabd2."""
    path = dense_onnx(tmp_path / "wide.onnx", [5, 12, 12, 3], ["Relu", "Relu", None], seed=3, scale=1.5)
    prec = {
        "input": "fixed<34,1>",
        "dense": [
            {"weight": "fixed<34,3>", "bias": "fixed<34,1>", "accum": "fixed<36,3>"},
            {"weight": "fixed<33,3>", "bias": "fixed<35,2>", "accum": "fixed<39,6>"},
            {"weight": "fixed<34,3>", "bias": "fixed<31,3>", "accum": "fixed<37,9>"},
        ],
        "act": [{"result": "fixed<34,3>"}, {"result": "fixed<31,5>"}, None],
    }
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (300, 5))
    first = _assert_bit_exact(tmp_path, path, prec, x).stages[0]
    assert isinstance(first, DenseStage) and first.result_t.width > 64  # hls4ml's 'auto' result


@pytest.mark.slow
@needs_hls4ml
def test_simulator_bit_exact_with_hls4ml_tanh_sigmoid(tmp_path):
    from aster_ext.hls4ml_backend import project as P

    path = dense_onnx(tmp_path / "tanh.onnx", [4, 8, 8, 2], ["Tanh", "Sigmoid", None], seed=1, scale=2.0)
    prec = {
        "input": "fixed<10,3,RND,SAT>",
        "dense": [
            {"weight": "fixed<9,2>", "bias": "fixed<7,3,RND>", "accum": "fixed<14,5,TRN,SAT>"},
            {"weight": "fixed<8,2,RND>", "bias": "fixed<9,2>", "accum": "fixed<16,5>"},
            {"weight": "fixed<10,3>", "bias": "fixed<10,3>", "accum": "fixed<20,8>"},
        ],
        "act": [
            {"result": "fixed<9,1,RND>", "table": "fixed<10,1,RND>", "size": 512},
            {"result": "fixed<8,1>", "table": "fixed<9,1>", "size": 256},
            None,
        ],
    }
    hm, prog = _convert(tmp_path, path, prec)
    assert [type(s) for s in prog.stages] == [DenseStage, ActStage, DenseStage, ActStage, DenseStage]
    x = _inputs(np.random.default_rng(1), 4)
    assert np.array_equal(P.predict(hm, x), simulate(prog, x))


@pytest.mark.slow
@needs_hls4ml
def test_quantize_and_verify_through_hls4ml(tmp_path):
    from aster_ext.cli import main
    from aster_ext.hls4ml_backend.run import verify_hls4ml_dir

    path = dense_onnx(tmp_path / "net.onnx", [3, 6, 5, 2], ["Relu", "Tanh", None], seed=7)
    out = tmp_path / "out"
    rc = main(["quantize", str(path), "--backend", "hls4ml", "--error", "2e-2", "--input-lower=-1,-1,-1",
               "--input-upper", "1,1,1", "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["certified_error"] <= 2e-2
    assert (out / "hls4ml_config.yml").is_file() and (out / "hls4ml_config.json").is_file()
    assert (out / "hls4ml_prj" / "firmware").is_dir()
    cfg = json.loads((out / "hls4ml_config.json").read_text())
    assert cfg["LayerName"]["global_in"]["Precision"]["result"] == rep["types"][0]["result"]
    res = verify_hls4ml_dir(out, samples=300, search_iters=10)
    assert res.violations == 0 and res.bit_exact
    assert main(["verify", str(out), "--samples", "200", "--search-iters", "5", "--quiet"]) == 0


@pytest.mark.slow
@needs_hls4ml
def test_auto_type_rule_matches_hls4ml(tmp_path):
    """The 'auto' Dense result type we predict is the one hls4ml infers."""
    from aster_ext.hls4ml_backend.program import auto_dense_type

    path = dense_onnx(tmp_path / "a.onnx", [5, 3], [None], seed=2)
    dense = [{"weight": "fixed<9,2>", "bias": "fixed<12,1>", "accum": "fixed<20,6>"}]
    prec = {"input": "fixed<11,3>", "dense": dense, "act": [None]}
    _, prog = _convert(tmp_path, path, prec)
    st0 = prog.stages[0]
    assert isinstance(st0, DenseStage)
    assert st0.result_t == auto_dense_type(prog.input_t, st0.weight_t, st0.bias_t, 5)


def test_cli_refuses_non_onnx_for_hls4ml(tmp_path, capsys):
    from aster_ext.cli import main

    rc = main(["quantize", "examples/tiny_controller.scala", "--backend", "hls4ml", "--error", "1e-3",
               "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2
    assert "ONNX" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_hls4ml_backend_keeps_the_output_folder_rules(tmp_path: Path, shared_dir: Path) -> None:
    """--backend hls4ml refuses '.', the model's folder and a non-empty folder; nothing changes."""
    import os
    import shutil as sh

    from aster_ext.cli import main

    model = tmp_path / "m" / "SmallNN.onnx"
    model.parent.mkdir()
    for suffix in (".onnx", ".spec.json"):
        sh.copy(shared_dir / "benchmarks" / "aster" / f"SmallNN{suffix}", model.parent / f"SmallNN{suffix}")
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    earlier = tmp_path / "earlier"  # looks like an earlier hls4ml output, plus a file of the user's
    earlier.mkdir()
    (earlier / "report.json").write_text('{"backend": "hls4ml"}')
    (earlier / "notes.txt").write_text("mine too")

    def snapshot() -> dict[str, bytes]:
        return {str(q): q.read_bytes() for q in tmp_path.rglob("*") if q.is_file()}

    before = snapshot()
    cwd = os.getcwd()
    os.chdir(user)
    try:
        for out in (".", str(model.parent), str(user), str(tmp_path), str(earlier)):
            args = ["quantize", str(model), "--backend", "hls4ml", "--error", "1e-2", "--out", out, "--quiet"]
            assert main(args) == 2, out
    finally:
        os.chdir(cwd)
    assert snapshot() == before


# --- affine error forms (forms.py) --------------------------------------------------------------


def _attack(layers, prog, lo, hi, rng, bound, n=1500, rounds=25):
    """Largest err/bound found by random sampling, corners and a hill climb from the worst points."""
    x = np.concatenate(
        [lo + (hi - lo) * rng.random((n, lo.size)), np.where(rng.random((256, lo.size)) < 0.5, lo, hi)]
    )

    def score(v: np.ndarray) -> np.ndarray:
        return np.max(np.abs(simulate(prog, v) - real_forward_float(layers, v)) / bound[None, :], axis=1)

    s = score(x)
    top = x[np.argsort(-s)[:32]]
    best = score(top)
    scale = (hi - lo) / 8
    for _ in range(rounds):
        cand = np.clip(top + rng.normal(size=top.shape) * scale, lo, hi)
        sc = score(cand)
        better = sc > best
        top[better], best[better] = cand[better], sc[better]
        scale = scale * 0.8
    return float(max(np.max(s), np.max(best))), top[np.argmax(best)]


@given(
    seed=st.integers(0, 10_000),
    depth=st.integers(2, 4),
    fbits=st.lists(st.integers(1, 9), min_size=4, max_size=4),
    quant=st.sampled_from(["TRN", "RND"]),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_form_certificate_survives_attack_on_deeper_relu_nets(seed, depth, fbits, quant):
    """Coarse types on deeper ReLU nets (many unstable neurons, large one-sided TRN offsets, the
    regime where the affine forms, not the magnitude walker, give the bound): a hill-climbing
    attack on the bit-exact simulator never exceeds the certificate (exact rational check of the
    worst point)."""
    rng = np.random.default_rng(seed)
    acts = ["relu"] * (depth - 1) + ["identity"]
    sizes = [int(rng.integers(2, 5))] + [int(rng.integers(3, 9)) for _ in acts[:-1]] + [2]
    layers = _random_layers(rng, sizes, acts)
    lo = rng.uniform(-2, 1, sizes[0])
    hi = lo + rng.uniform(0.05, 2, sizes[0])
    ranges = symbolic_ranges(layers, lo, hi)
    fr = [LayerFracs(fbits[1], fbits[2], fbits[3], fbits[1] if a == "relu" else None) for a in acts]
    prog, cert = build_program(layers, ranges, lo, hi, fbits[0], fr, quant=quant)
    assert cert.ok, cert.overflow
    ratio, worst = _attack(layers, prog, lo, hi, rng, cert.bound)
    assert ratio <= 1 + 1e-9, ratio
    y = simulate(prog, worst[None, :])[0]
    ref = real_forward_exact(layers, [Fraction(float(v)) for v in worst])
    for o in range(len(ref)):
        assert abs(Fraction(float(y[o])) - ref[o]) <= Fraction(float(cert.bound[o]))
    # the form never loosens the magnitude bound (the walker takes the min of both)
    mag = walk(layers, ranges, lo, hi, prog, forms=False)
    assert np.all(cert.bound <= mag.bound)


def test_forms_tighten_the_bound_on_a_deep_net():
    """On a 6-layer ReLU net with a TRN program the magnitude walker's bound is several times the
    form's (cancellation through the weights); the form's bound still holds under attack."""
    rng = np.random.default_rng(11)
    acts = ["relu"] * 5 + ["identity"]
    layers = _random_layers(rng, [3, 12, 12, 12, 12, 12, 2], acts)
    lo, hi = -np.ones(3), np.ones(3)
    ranges = symbolic_ranges(layers, lo, hi)
    fr = [LayerFracs(10, 10, 10, 10 if a == "relu" else None) for a in acts]
    prog, cert = build_program(layers, ranges, lo, hi, 10, fr, quant="TRN")
    mag = walk(layers, ranges, lo, hi, prog, forms=False)
    assert cert.ok  # (the magnitude walker's wider ranges even overflow an accumulator here)
    assert np.max(cert.bound) < 0.5 * np.max(mag.bound), (cert.bound, mag.bound)
    ratio, _ = _attack(layers, prog, lo, hi, rng, cert.bound)
    assert ratio <= 1 + 1e-9
