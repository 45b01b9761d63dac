"""The post-ILP search on activation budgets (:func:`aster_ext.refined.solve.relax_act_budgets`,
issue 13): every program it returns is certified within ε by an independent certify_forms call,
its observed errors (bit-exact simulation vs the exact-rational reference, attacked inputs) stay
within that bound, it never returns a costlier program, and with slack it shrinks the tables."""

from __future__ import annotations

import numpy as np
import pytest

from aster_ext.cost import program_cost
from aster_ext.ranges import ExactParams
from aster_ext.refined import build_program, certify_forms, symbolic_ranges
from aster_ext.refined.model import SETTINGS
from aster_ext.refined.solve import RefinedResult, relax_act_budgets
from aster_ext.verify import REF_MARGIN
from tests.programs import normal_dense_net
from tests.test_activation_networks import attack, exact_errors


def _start(act: str, seed: int, frac: int, delta: float, setting: str = "A"):
    """A certified uniform-F program with activation budgets ``delta`` (stand-in for an ILP result)."""
    rng = np.random.default_rng(seed)
    layers = normal_dense_net(rng, act, [3, 8, 8, 8, 2])
    lo, hi = -np.ones(3), np.ones(3)
    st_ = SETTINGS[setting]
    ps = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, ps)
    f = [np.full(layer.n_out, frac) for layer in layers]
    deltas = [delta] * (len(layers) - 1) + [0.0]
    prog, _ = build_program("t", layers, f, f, st_, lo, hi, ps, rg, act_delta=deltas)
    cert = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    assert cert.ok
    fl = [list(map(int, v)) for v in f]
    res = RefinedResult(
        prog, cert, fl, fl, float("nan"), cert.bound, "test", 0.0, "", True,
        weight_bits=fl, hw_cost=program_cost(prog).hw, act_delta=deltas,
    )  # fmt: skip
    return rng, layers, lo, hi, st_, ps, rg, res


def _cost(prog) -> float:
    c = program_cost(prog)
    return c.hw + c.table_bits


@pytest.mark.parametrize("act", ["tanh", "silu"])
def test_relax_shrinks_tables_and_stays_certified(act: str) -> None:
    rng, layers, lo, hi, st_, ps, rg, res = _start(act, 3, 20, 2.0**-18)
    eps = 20 * res.certificate.bound  # ample slack: the tables are far finer than needed
    prog, cert, deltas, notes = relax_act_budgets(res, layers, lo, hi, eps, st_, ps, rg, True, True, 60.0)
    assert prog is not res.program, notes
    assert program_cost(prog).table_bits < program_cost(res.program).table_bits
    assert _cost(prog) < _cost(res.program)
    assert all(d >= d0 for d, d0 in zip(deltas, res.act_delta, strict=True))
    again = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= eps
    assert np.array_equal(again.output_bound, cert.output_bound)
    xs = attack(rng, prog, layers, lo, hi, n_random=20, n_search=8)
    obs = exact_errors(prog, layers, xs)
    assert np.all(obs.max(axis=0) <= again.output_bound + REF_MARGIN)


def test_relax_without_slack_keeps_the_bound() -> None:
    """ε = the start's own bound: whatever is returned still certifies within it."""
    _, layers, lo, hi, st_, ps, rg, res = _start("sigmoid", 5, 16, 2.0**-14)
    eps = float(res.certificate.bound)
    prog, cert, _, _ = relax_act_budgets(res, layers, lo, hi, eps, st_, ps, rg, True, True, 60.0)
    again = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= eps
    assert _cost(prog) <= _cost(res.program)


def test_relax_respects_zero_budget() -> None:
    _, layers, lo, hi, st_, ps, rg, res = _start("tanh", 3, 20, 2.0**-18)
    prog, cert, deltas, notes = relax_act_budgets(
        res, layers, lo, hi, 20 * res.certificate.bound, st_, ps, rg, True, True, 0.0
    )
    assert prog is res.program and cert is res.certificate and deltas == res.act_delta and not notes
