"""The wall-clock guard around HiGHS (aster_ext.ilp.run_highs_guarded): the same answer as a
direct solve, and a run that does not answer in time is killed and reported without a solution."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from aster_ext import ilp as I


def _knapsack():
    """max 5a + 4b + 3c s.t. 2a + 3b + c <= 5, a, b, c binary (as a min): optimum a = b = 1 (9)."""
    a = sp.csc_matrix(np.array([[2.0, 3.0, 1.0]]))
    return I.highs_lp(a, -np.array([5.0, 4.0, 3.0]), np.zeros(3), np.ones(3), np.array([-np.inf]),
                      np.array([5.0]), np.ones(3, dtype=bool))  # fmt: skip


def test_guarded_run_solves() -> None:
    run = I.run_highs_guarded(_knapsack(), {"output_flag": False, "threads": 1}, 60.0)
    assert "optimal" in run.model_status and run.has_solution
    assert run.objective == -9.0
    assert np.allclose(run.x, [1.0, 1.0, 0.0])
    # the MIP's dual bound: no solution is below it; at an optimum it meets the objective
    assert run.dual_bound is not None and -9.0 - 1e-6 <= run.dual_bound <= -9.0 + 1e-9


def _never_answers(conn, lp, options) -> None:
    time.sleep(120)


def test_guard_kills_a_run_that_overruns(monkeypatch) -> None:
    monkeypatch.setattr(I, "_guarded_child", _never_answers)
    t0 = time.perf_counter()
    run = I.run_highs_guarded(_knapsack(), {"output_flag": False}, 1.0)
    assert time.perf_counter() - t0 < 30.0
    assert run.model_status == "killed" and not run.has_solution and run.x is None
