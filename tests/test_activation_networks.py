"""Networks with non-ReLU activations in refined mode (issue 4): soundness attacks and end to end.

Reference: :func:`aster_ext.verify.real_forward_exact` (exact rationals, non-ReLU activations by
``Activation.eval_mp`` at 128 bits, within REF_MARGIN of the exact value); the fixed-point side is
the bit-exact simulator. Observed <= certified, always.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from aster_ext.aster.settings import SETTINGS
from aster_ext.certify import certify_program
from aster_ext.cli import main
from aster_ext.program_io import program_from_json, program_to_json
from aster_ext.ranges import ExactParams, interval_ranges
from aster_ext.refined import build_program, certify_forms, symbolic_ranges
from aster_ext.simulate import simulate, simulate_raw
from aster_ext.verify import REF_MARGIN, real_forward_exact, real_forward_float
from tests.programs import random_dense_net

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

ACTS = [
    "sigmoid", "tanh", "softplus", "elu", "leaky_relu", "silu", "gelu", "gelu_tanh", "hard_sigmoid",
    "hard_tanh",
]  # fmt: skip




def exact_errors(program, layers, xs: np.ndarray) -> np.ndarray:
    _, y_raw = simulate(program, xs)
    f_out = program.output_t.frac_bits
    out = np.zeros(y_raw.shape)
    for i, row in enumerate(y_raw):
        real = real_forward_exact(layers, [Fraction(float(v)) for v in xs[i]])
        for o, r in enumerate(row):
            out[i, o] = float(abs(Fraction(int(r), 2**f_out) - real[o]))
    return out


def attack(rng, program, layers, lo, hi, n_random: int = 40, n_search: int = 24) -> np.ndarray:
    """Random points, corners and a float-screened local search for large errors."""
    n = lo.size
    corners = np.array([[lo[i] if (c >> i) & 1 else hi[i] for i in range(n)] for c in range(min(2**n, 32))])
    base = np.concatenate([lo + (hi - lo) * rng.random((n_random, n)), corners, [(lo + hi) / 2]])

    def screen(x: np.ndarray) -> np.ndarray:
        _, y_raw = simulate(program, x)
        y = np.array([[float(v) for v in r] for r in y_raw]) * 2.0**-program.output_t.frac_bits
        return np.max(np.abs(y - real_forward_float(layers, x)), axis=1)

    cur = base[np.argsort(-screen(base))[:4]]
    for _ in range(n_search // 4):
        step = (hi - lo) * rng.choice([0.1, 0.01, 0.001]) * rng.normal(size=cur.shape)
        cand = np.clip(cur + step, lo, hi)
        better = screen(cand) > screen(cur)
        cur = np.where(better[:, None], cand, cur)
    return np.concatenate([base, cur])


# ------------------------------------------------------------------------------------------------
# ranges
# ------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), act=st.sampled_from(ACTS))
def test_ranges_sound_with_activations(seed: int, act: str) -> None:
    """Interval and symbolic ranges contain every sampled real value; symbolic is never wider."""
    rng = np.random.default_rng(seed)
    widths = list(rng.integers(1, 6, int(rng.integers(3, 5))))
    layers = random_dense_net(rng, act, widths, relu_share=0.2)
    lo = rng.uniform(-2, 0, widths[0])
    hi = lo + rng.uniform(0, 3, widths[0])
    ps = [ExactParams.of(layer) for layer in layers]
    base = interval_ranges(layers, lo, hi, ps)
    sym = symbolic_ranges(layers, lo, hi, ps)
    x = np.concatenate([lo + (hi - lo) * rng.random((300, lo.size)), [lo, hi]])
    a = x
    for layer, ri, rs in zip(layers, base, sym, strict=True):
        z = a @ layer.weight.T + layer.bias
        a = real_forward_float([layer], a)
        tol = 1e-12 * (1 + np.abs(z))
        for r in (ri, rs):
            assert np.all(z >= r.pre.lo - tol) and np.all(z <= r.pre.hi + tol)
            assert np.all(a >= r.post.lo - tol) and np.all(a <= r.post.hi + tol)
        assert np.all(rs.pre.lo >= ri.pre.lo) and np.all(rs.pre.hi <= ri.pre.hi)


# ------------------------------------------------------------------------------------------------
# certificates of built programs (tables / piecewise implementations)
# ------------------------------------------------------------------------------------------------


def certified_random_program(rng, layers, lo, hi, frac: tuple[int, int], delta_exp: tuple[int, int]):
    """A refined-shape program with random per-neuron F, Fw in [frac) and implementation budgets
    2^-[delta_exp), certified by both certifiers (the forms one must see no overflow).

    Returns (program, params, symbolic ranges, forms certificate, interval certificate)."""
    f = [rng.integers(*frac, layer.n_out) for layer in layers]
    fw = [rng.integers(*frac, layer.n_out) for layer in layers]
    delta = [float(2.0 ** -rng.integers(*delta_exp)) for _ in layers]
    ps = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, ps)
    program, _ = build_program("t", layers, f, fw, SETTINGS["A"], lo, hi, ps, rg, act_delta=delta)
    cert = certify_forms(program, layers, lo, hi)
    assert cert.ok, [o.message() for o in cert.overflows]
    return program, ps, rg, cert, certify_program(program, layers, lo, hi)


def assert_within_bounds(obs: np.ndarray, *certs) -> None:
    """Observed errors (exact reference) never exceed any certificate's per-output bound."""
    for c in certs:
        assert np.all(obs.max(axis=0) <= c.output_bound + REF_MARGIN), (obs.max(axis=0), c.output_bound)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), act=st.sampled_from(ACTS))
def test_built_activation_programs_sound(seed: int, act: str) -> None:
    """Refined-shape programs with random per-neuron F, Fw and implementation budgets: no overflow
    on attacked inputs, observed (exact reference) <= certified (forms and interval certifiers)."""
    rng = np.random.default_rng(seed)
    widths = list(rng.integers(1, 6, int(rng.integers(3, 5))))
    layers = random_dense_net(rng, act, widths, relu_share=0.2)
    lo = rng.uniform(-1.5, 0, widths[0])
    hi = lo + rng.uniform(0.01, 2.5, widths[0])
    program, _ps, _rg, cert, ci = certified_random_program(rng, layers, lo, hi, (4, 13), (4, 10))
    xs = attack(rng, program, layers, lo, hi)
    _, trace = simulate(program, xs, trace=True)
    for lt in trace.layers:
        for stage, count in lt.overflow_count.items():
            assert stage == "psum" or not np.any(count), (lt.name, stage)
    assert_within_bounds(exact_errors(program, layers, xs), cert, ci)
    # the program (with its implementations) survives the JSON round trip bit for bit
    p2 = program_from_json(json.loads(json.dumps(program_to_json(program))))
    x_raw, y1 = simulate(program, xs[:8])
    assert np.array_equal(np.asarray(simulate_raw(p2, x_raw), dtype=object), np.asarray(y1, dtype=object))


# ------------------------------------------------------------------------------------------------
# end to end (CLI)
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("act", ["sigmoid", "hard_tanh", "gelu", "gelu_tanh"])
def test_quantize_verify_activation_fixture(act: str, tmp_path: Path) -> None:
    out = tmp_path / act
    model = FIXTURES / f"mlp_{act}.onnx"
    assert main(["quantize", str(model), "--error", "1e-2", "--out", str(out), "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert 0 < r["certified_error"] <= 1e-2
    assert [d["activation"] for d in r["activation_impls"]] == [act, act]
    args = ["verify", str(out), "--samples", "300", "--search-iters", "20", "--quiet"]
    with_cpp = act in ("sigmoid", "gelu_tanh")
    if not with_cpp:
        args.append("--no-cpp")  # C++ compiles (the table path) only where needed keep this test fast
    assert main(args) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["violations"] == 0 and v["max_observed_error"] <= r["certified_error"]
    assert v["bit_exact_cpp"] is (True if with_cpp else None)


def test_aster_modes_refuse_sigmoid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    model = FIXTURES / "mlp_sigmoid.onnx"
    assert main(["quantize", str(model), "--error", "1e-2", "--mode", "aster-sound", "--out", str(out)]) == 2
    assert "activation 'sigmoid' is not supported" in capsys.readouterr().err
    assert not out.exists()


def _tanh_softmax_onnx(path: Path) -> None:
    rng = np.random.default_rng(3)
    w1 = rng.normal(0, 0.8, (3, 6)).astype(np.float32)
    b1 = rng.normal(0, 0.2, 6).astype(np.float32)
    w2 = rng.normal(0, 0.8, (6, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.2, 3).astype(np.float32)
    inits = [numpy_helper.from_array(v, n) for v, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Tanh", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tanh_softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))


def test_trailing_softmax_certifies_logits(tmp_path: Path) -> None:
    model = tmp_path / "tanh_softmax.onnx"
    _tanh_softmax_onnx(model)
    out = tmp_path / "o"
    args = ["quantize", str(model), "--error", "1e-2", "--input-lower", "-1,-1,-1", "--input-upper", "1,1,1"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["logits_before_softmax"] is True
    assert any("on the logits before the trailing softmax" in n for n in r["notes"])
    assert len(r["certified_error_per_output"]) == 3
    assert main(["verify", str(out), "--samples", "200", "--search-iters", "10", "--no-cpp", "--quiet"]) == 0
    assert json.loads((out / "verify.json").read_text())["violations"] == 0
