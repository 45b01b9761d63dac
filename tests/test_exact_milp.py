"""``verify --exact``: the MILP of program and real network (aster_ext/exact_milp.py).

Attacks: the MILP optimum on a tiny network with inputs on the in_t grid must equal the exhaustive
maximum over every grid input (both directions); on random networks off the grid the exactly
re-evaluated best input never exceeds the certificate nor the solver's own bound (the MILP is a
relaxation of the program); unsupported layers are refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.aster.settings import SETTINGS
from aster_ext.errors import UserError
from aster_ext.exact_milp import _candidates, exact_max_error
from aster_ext.refined.solve import assign_refined
from aster_ext.verify import _Evaluator
from tests.programs import normal_dense_net


def _certified(res) -> np.ndarray:
    return np.asarray(res.certificate.output_bound, dtype=np.float64)


@pytest.mark.slow
def test_milp_optimum_equals_the_exhaustive_maximum_over_the_grid() -> None:
    rng = np.random.default_rng(3)
    layers = normal_dense_net(rng, "relu", [2, 4, 1], bias_std=0.3)
    lo, hi = np.full(2, -0.5), np.full(2, 0.5)
    res = assign_refined(layers, lo, hi, 3e-2, "C", time_limit=20)
    program = res.program
    assert SETTINGS["C"].no_init_error
    f = program.input_t.frac_bits
    g = np.arange(int(np.ceil(-0.5 * 2**f)), int(np.floor(0.5 * 2**f)) + 1)
    assert g.size <= 2049, "grid too large for the exhaustive check"
    raw = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2).astype(object)
    err = _Evaluator(program, layers, True).errors(raw)[:, 0]
    ex = exact_max_error(program, layers, lo, hi, True, _certified(res), time_limit=60)
    assert all(s.status == "optimal" for s in ex.solves)
    for s in ex.solves:
        truth = float(np.max(s.direction * err))
        assert s.best_error == pytest.approx(truth, abs=1e-12)
        assert s.dual_bound is not None and s.dual_bound >= truth - 1e-9
    assert ex.lower <= float(_certified(res).max())


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), width=st.integers(3, 6))
@pytest.mark.slow
def test_best_input_stays_below_the_certificate_and_the_solver_bound(seed: int, width: int) -> None:
    rng = np.random.default_rng(seed)
    layers = normal_dense_net(rng, "relu", [3, width, width, 2], bias_std=0.2)
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    res = assign_refined(layers, lo, hi, 1e-2, "A", time_limit=20)
    cert = _certified(res)
    ex = exact_max_error(res.program, layers, lo, hi, False, cert, time_limit=4)
    start = _Evaluator(res.program, layers, False).errors(_candidates(lo, hi, False, 0, 0))
    for s in ex.solves:
        assert s.best_error <= cert[s.output]
        assert s.best_error >= float(np.max(s.direction * start[:, s.output])) - 1e-12
        if s.dual_bound is not None:  # a relaxation: no input beats the solver's bound
            assert s.best_error <= s.dual_bound + 1e-9
    assert ex.to_json()["violations"] == 0


def test_non_relu_layers_are_refused_in_one_line() -> None:
    rng = np.random.default_rng(1)
    layers = normal_dense_net(rng, "relu", [2, 3, 1])
    lo, hi = np.full(2, -1.0), np.full(2, 1.0)
    res = assign_refined(layers, lo, hi, 5e-2, "A", time_limit=10)
    res.program.layers[0].activation = "tanh"
    with pytest.raises(UserError, match="ReLU and identity layers only"):
        exact_max_error(res.program, layers, lo, hi, False, _certified(res), time_limit=5)


@pytest.mark.slow
def test_verify_exact_on_a_quantize_output(shared_dir, tmp_path) -> None:
    import json

    from aster_ext.cli import main

    out = tmp_path / "out"
    model = shared_dir / "benchmarks" / "aster" / "InvPendulumNN.scala"
    assert main(["quantize", str(model), "--error", "1e-2", "--out", str(out), "--quiet"]) == 0
    args = ["verify", str(out), "--exact", "--exact-time-limit", "6", "--samples", "200"]
    assert main([*args, "--search-iters", "2", "--no-cpp", "--quiet"]) == 0
    ex = json.loads((out / "verify.json").read_text())["exact"]
    assert ex["violations"] == 0 and len(ex["solves"]) == 2
    assert 0 < ex["max_error_lower"] <= json.loads((out / "report.json").read_text())["certified_error"]
    assert main(["verify", str(out), "--exact", "--exact-time-limit", "0", "--quiet"]) == 2
