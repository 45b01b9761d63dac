"""The hls4ml type search's descent and kicks, and the shared adversarial box search, on
synthetic problems whose optimum is known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aster_ext.hls4ml_backend.attack import box_local_search
from aster_ext.hls4ml_backend.search import TypeSearch, kick_descent, lazy_greedy_descent


@dataclass(frozen=True)
class Two:
    """Two 'types' a, b (fractional bits) of one layer."""

    a: int
    b: int


@dataclass
class Cert:
    max_bound: float
    ok: bool = True


def _trade_problem():
    """bound = 2^-a + 2^-b + 2^-c with c the input frac; cost = 3a + b + 5c; target 2^-4.
    The cheapest certified point spends bits on the cheap b, which a single decrement from the
    uniform start cannot reach once a has absorbed the slack."""
    eps = 2.0**-4

    def run(c: int, fr: list[Two]):
        a, b = fr[0].a, fr[0].b
        return (c, fr), Cert(2.0**-a + 2.0**-b + 2.0**-c), 3 * a + b + 5 * c

    def good(cert: Cert) -> bool:
        return cert.ok and cert.max_bound <= eps

    return run, good, eps


def _brute_force(run, good) -> int:
    """The cheapest certified point over a grid that holds it."""
    runs = [run(c, [Two(a, b)]) for a in range(16) for b in range(16) for c in range(16)]
    return min(cost for _, cert, cost in runs if good(cert))


def test_kicks_never_cost_more_and_stay_certified():
    run, good, eps = _trade_problem()
    variables = [(-1, "input"), (0, "a"), (0, "b")]
    for start in range(7, 12):
        st = run(start, [Two(start, start)])
        problem = TypeSearch(run, good, eps, lambda: True)
        d = lazy_greedy_descent(start, [Two(start, start)], st, variables, problem)
        k = kick_descent(d[0], d[1], d[2:], variables, problem)
        assert good(k[3]) and k[4] <= d[4]
        assert k[4] == run(k[0], k[1])[2]  # the returned cost is the returned point's
        assert k[4] >= _brute_force(run, good)


def test_kicks_reach_a_cheaper_point_than_the_descent():
    """From some certified starts the descent stops at a single-decrement local optimum (every
    decrement breaks ε); raising one variable by a bit and descending on the others reaches a
    strictly cheaper certified point from at least one of them."""
    run, good, eps = _trade_problem()
    variables = [(-1, "input"), (0, "a"), (0, "b")]
    found_better = False
    for a in range(5, 9):
        for b in range(5, 9):
            for c in range(5, 9):
                st = run(c, [Two(a, b)])
                if not good(st[1]):
                    continue
                problem = TypeSearch(run, good, eps, lambda: True)
                d = lazy_greedy_descent(c, [Two(a, b)], st, variables, problem)
                k = kick_descent(d[0], d[1], d[2:], variables, problem)
                found_better |= k[4] < d[4]
    assert found_better


def test_kicks_respect_the_budget():
    run, good, eps = _trade_problem()
    calls = [0]

    def counted(c, fr):
        calls[0] += 1
        return run(c, fr)

    variables = [(-1, "input"), (0, "a"), (0, "b")]
    st = run(9, [Two(9, 9)])
    kick_descent(9, [Two(9, 9)], st, variables, TypeSearch(counted, good, eps, lambda: calls[0] < 3))
    assert calls[0] <= 3 + 1  # the candidate in flight when the budget ran out


def test_box_local_search_climbs_to_the_maximum():
    rng = np.random.default_rng(0)
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 4.0, 3.0])
    target = np.array([0.3, 3.9, 2.05])

    def score(x: np.ndarray) -> np.ndarray:
        return -np.max(np.abs(x - target) / (hi - lo), axis=1)

    x0 = lo + (hi - lo) * rng.random((16, 3))
    found = box_local_search(score, x0, lo, hi, rng, iters=60)
    assert found.shape == (8 * 61, 3)
    assert np.all((found >= lo) & (found <= hi))
    assert score(found).max() > -1e-3
    assert score(found).max() >= score(x0).max()
