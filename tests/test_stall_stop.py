"""The stall stop of the refined ILP's HiGHS runs (:class:`aster_ext.refined.model.StallRule`,
issue 13 run time): it fires only after the incumbent has failed to improve by the relative step
for longer than the window, never without an incumbent; and a HiGHS run stopped by it still
returns a solution at least as good as its warm start, which certifies like any other."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aster_ext.aster.settings import SETTINGS
from aster_ext.ranges import ExactParams
from aster_ext.refined import certify_forms, symbolic_ranges
from aster_ext.refined.model import (
    StallRule,
    _d_segments,
    build_model,
    solve_model,
    uniform_start,
)
from aster_ext.refined.solve import assign_refined, build_program, initial_caps
from tests.programs import normal_dense_net


def test_stall_rule_timing() -> None:
    r = StallRule(2.0, rel=1e-3)
    assert not r.update(math.inf, 0.0) and not r.update(math.inf, 100.0)  # no incumbent: never
    assert not r.update(1000.0, 1.0)  # first incumbent starts the wait
    assert not r.update(999.5, 2.9)  # 0.05 % better: not an improvement, wait goes on
    assert r.update(999.5, 3.01)  # > 2 s since 1000 was first seen
    r = StallRule(2.0, rel=1e-3)
    r.update(1000.0, 0.0)
    assert not r.update(990.0, 1.9)  # 1 % better: the wait restarts at 1.9
    assert not r.update(990.0, 3.8)
    assert r.update(990.0, 3.95) and r.fired


def test_stalled_run_keeps_warm_start_quality_and_certifies() -> None:
    rng = np.random.default_rng(5)
    layers = normal_dense_net(rng, "tanh", [4, 24, 24, 3])
    lo, hi = -np.ones(4), np.ones(4)
    st_ = SETTINGS["A"]
    ps = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, ps)
    caps = initial_caps(layers, rg, 1e-2, st_)
    model = build_model(layers, ps, rg, lo, hi, st_, 1e-2, caps, "neuron")
    start = uniform_start(model)
    assert start is not None
    free = solve_model(model, 3.0, 1e-9, start, stall_s=None)  # never stalls: cap or optimal
    quick = solve_model(model, 5.0, 1e-9, start, stall_s=1e-3)
    assert quick.f is not None and free.f is not None
    assert quick.status in ("stalled", "optimal")
    start_obj = float(model.cost @ _point(model, start))
    assert quick.objective <= start_obj + 1e-6 and free.objective <= quick.objective + 1e-6
    f_l = np.split(quick.f, np.cumsum([la.n_out for la in layers])[:-1])
    fw_l = np.split(quick.fw, np.cumsum([la.n_out for la in layers])[:-1])
    prog, _ = build_program(
        "t", layers, f_l, fw_l, st_, lo, hi, ps, rg, act_delta=model.act_delta(quick.act_choice)
    )
    assert certify_forms(prog, layers, lo, hi, st_.no_init_error).ok


def test_assign_refined_status_names_the_stop() -> None:
    rng = np.random.default_rng(7)
    layers = normal_dense_net(rng, "silu", [4, 16, 16, 3])
    res = assign_refined(layers, -np.ones(4), np.ones(4), 1e-2, "A", time_limit=30)
    assert not res.max_width_fallback and res.certificate.ok and res.certificate.bound <= 1e-2
    assert res.solver_status.split("+")[0] in ("optimal", "stalled", "time_limit")


def _point(model, start) -> np.ndarray:
    """The one-hot columns (F, Fw, δ choice) of a start point; other columns 0 (cost 0 there)."""
    nf = model.fracs.size
    nb = model.n_gf * nf
    x = np.zeros(model.n_cols)
    f0 = np.zeros(model.n_gf, dtype=np.int64)
    w0 = np.zeros(model.n_gw, dtype=np.int64)
    f0[model.group_f] = np.searchsorted(model.fracs, start[0])
    w0[model.group_w] = np.searchsorted(model.fracs, start[1])
    x[np.arange(model.n_gf) * nf + f0] = 1.0
    x[nb + np.arange(model.n_gw) * nf + w0] = 1.0
    for (pos, _), i in zip(_d_segments(model), start[2], strict=True):
        x[pos + i] = 1.0
    return x


def test_warm_started_solves_return_the_cost_they_report(shared_dir, monkeypatch) -> None:
    """HiGHS 1.16 with a partial start can report an objective the returned solution does not have
    (LyapunovNN, setting A: reported 476 while returning its start, which costs 588). Every solve of
    a refined run must return formats whose objective (decoded from F, Fw, δ choices) is the one it
    reports, and the warm-started solve must not be worse than a solve of the same model without
    the start."""
    import aster_ext.refined.model as refined_model
    import aster_ext.refined.solve as refined_solve
    from aster_ext.frontend import load_model
    from aster_ext.ir import dense_chain
    from aster_ext.refined.multibox import _decoded_cost

    seen: list[tuple[float, float, float]] = []
    original = refined_model.solve_model

    def checked(model, time_limit, mip_rel_gap=1e-3, start=None, window=None, stall_s=refined_model.STALL_S):
        sol = original(model, time_limit, mip_rel_gap, start, window, stall_s)
        if start is not None and window is None and sol.f is not None:
            cold = original(model, time_limit, mip_rel_gap, None, None, stall_s)
            seen.append((sol.objective, _decoded_cost(model, sol), _decoded_cost(model, cold)))
        return sol

    monkeypatch.setattr(refined_solve, "solve_model", checked)
    net, spec = load_model(shared_dir / "benchmarks" / "aster" / "LyapunovNN.scala")
    assign_refined(dense_chain(net), spec.input_lower, spec.input_upper, 1e-3, "A", name="LyapunovNN")
    assert seen, "no warm-started solve happened"
    for reported, decoded, cold in seen:
        assert reported == pytest.approx(decoded, rel=1e-9)
        assert decoded <= cold * (1 + 1e-3) + 1e-9
