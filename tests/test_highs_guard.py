"""The wall-clock guard around HiGHS (aster_ext.ilp.run_highs_guarded): the same answer as a
direct solve, and a run that does not answer in time is killed and reported without a solution."""

from __future__ import annotations

import os
import time
from pathlib import Path

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


def _never_answers(conn, lp, options, parent_pid) -> None:
    time.sleep(120)


def test_guard_kills_a_run_that_overruns(monkeypatch) -> None:
    monkeypatch.setattr(I, "_guarded_child", _never_answers)
    t0 = time.perf_counter()
    run = I.run_highs_guarded(_knapsack(), {"output_flag": False}, 1.0)
    assert time.perf_counter() - t0 < 30.0
    assert run.model_status == "killed" and not run.has_solution and run.x is None


def _gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet (it has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_solver_process_ends_when_its_caller_is_killed() -> None:
    """A guarded solve whose caller dies (a sweep cell killed at its wall-clock limit) does not run
    on as an orphan: the child watches its parent and exits once it is re-parented."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the caller: starts the solver-like child, then dies at once
        me = os.getpid()
        child = os.fork()
        if child == 0:
            os.write(w, str(os.getpid()).encode())
            I._exit_with_parent(me, every_s=0.05)
            time.sleep(60)
            os._exit(0)
        os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    pid = int(os.read(r, 32).decode())
    os.close(r)
    deadline = time.perf_counter() + 10.0
    while not _gone(pid) and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert _gone(pid), "the orphaned solver process kept running"
