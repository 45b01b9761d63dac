"""The post-ILP search on activation budgets (:func:`aster_ext.refined.solve.relax_act_budgets`,
issue 13): every program it returns is certified within ε by an independent certify_forms call,
its observed errors (bit-exact simulation vs the exact-rational reference, attacked inputs) stay
within that bound, it never returns a costlier program, and with slack it shrinks the tables."""

from __future__ import annotations

import numpy as np
import pytest

from aster_ext.aster.settings import SETTINGS
from aster_ext.cost import program_cost
from aster_ext.ranges import ExactParams
from aster_ext.refined import build_program, certify_forms, symbolic_ranges
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
    out = relax_act_budgets(res, layers, lo, hi, eps, st_, ps, rg, True, True, 60.0)
    prog, cert, deltas, _, _, notes = out
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
    prog, cert, _, _, _, _ = relax_act_budgets(res, layers, lo, hi, eps, st_, ps, rg, True, True, 60.0)
    again = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= eps
    assert _cost(prog) <= _cost(res.program)


def test_shift_moves_the_formats_share_to_the_tables() -> None:
    """Coarse formats (F = 12) with tables far finer than the roundings (δ = 2^-20) and ε = the
    start's own bound (no slack for any δ step): only the shift move (F, Fw + 1, δ x4) can
    certify cheaper; it must be taken, certified within ε."""
    _, layers, lo, hi, st_, ps, rg, res = _start("tanh", 3, 12, 2.0**-20)
    eps = float(res.certificate.bound)
    prog, cert, deltas, f_r, fw_r, notes = relax_act_budgets(
        res, layers, lo, hi, eps, st_, ps, rg, True, True, 60.0
    )
    assert prog is not res.program, notes
    assert all(np.all(np.asarray(v) >= 13) for v in f_r) and all(np.all(np.asarray(v) >= 13) for v in fw_r)
    assert any("shifts" in n for n in notes) and _cost(prog) < _cost(res.program)
    again = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= eps
    assert [int(lp.dot_t.frac[0]) for lp in prog.layers] == [int(v[0]) for v in f_r]


def test_relax_respects_zero_budget() -> None:
    _, layers, lo, hi, st_, ps, rg, res = _start("tanh", 3, 20, 2.0**-18)
    prog, cert, deltas, _, _, notes = relax_act_budgets(
        res, layers, lo, hi, 20 * res.certificate.bound, st_, ps, rg, True, True, 0.0
    )
    assert prog is res.program and cert is res.certificate and deltas == res.act_delta and not notes


@pytest.mark.slow
def test_caps_from_the_maxlen_program_give_an_ilp_solution() -> None:
    """A saturating sigmoid net (weights x16, small box, ε = 10) whose ILP rows fail at every
    uniform F with the ε-derived caps (the ffnnSIGMOID 6x200 situation): with caps re-derived from
    the all-maxLen program the ILP finds a certified, cheaper program (no all-maxLen fallback)."""
    from aster_ext.refined.model import build_model, uniform_start
    from aster_ext.refined.solve import assign_refined, initial_caps

    rng = np.random.default_rng(0)
    layers = normal_dense_net(rng, "sigmoid", [8] + [32] * 6 + [3])
    for layer in layers:
        layer.weight *= 16
    x = rng.uniform(-1, 1, 8)
    lo, hi = x - 0.01, x + 0.01
    st_ = SETTINGS["A"]
    ps = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, ps)
    model = build_model(layers, ps, rg, lo, hi, st_, 10.0, initial_caps(layers, rg, 10.0, st_))
    assert uniform_start(model) is None  # the situation of the docstring
    res = assign_refined(layers, lo, hi, 10.0, "A", name="t")
    assert not res.max_width_fallback, res.notes
    assert any("caps set to 2·its pre-activation errors" in n for n in res.notes)
    again = certify_forms(res.program, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= 10.0
    xs = attack(rng, res.program, layers, lo, hi, n_random=10, n_search=4)
    obs = exact_errors(res.program, layers, xs)
    assert np.all(obs.max(axis=0) <= again.output_bound + REF_MARGIN)


def test_swap_moves_the_tables_share_between_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layer 0's table far finer than layer 1's and 2's (δ = 2^-22 vs 2^-12), ε = the start's own
    bound and the single steps and shifts switched off: only a swap (δ_i x f, δ_j / f) can certify
    cheaper; it must be taken, certified within ε, cheaper, and change exactly two budgets by f."""
    import aster_ext.refined.solve as solve_mod

    monkeypatch.setattr(solve_mod, "RELAX_STEPS", ())
    monkeypatch.setattr(solve_mod, "RELAX_SHIFTS", 0)
    _, layers, lo, hi, st_, ps, rg, res = _start("softplus", 4, 18, 2.0**-12)
    deltas0 = [2.0**-22] + list(res.act_delta[1:])
    f = [np.asarray(v) for v in res.dot_bits]
    prog0, _ = build_program("t", layers, f, f, st_, lo, hi, ps, rg, act_delta=deltas0)
    cert0 = certify_forms(prog0, layers, lo, hi, st_.no_init_error)
    assert cert0.ok
    res.program, res.certificate, res.act_delta = prog0, cert0, deltas0
    eps = float(cert0.bound)
    prog, cert, deltas, _, _, notes = relax_act_budgets(
        res, layers, lo, hi, eps, st_, ps, rg, True, True, 60.0
    )
    assert prog is not prog0, notes
    assert any("swaps between layers" in n and "0 swaps" not in n for n in notes), notes
    assert _cost(prog) < _cost(prog0)
    assert deltas[0] > deltas0[0]  # the over-fine table was coarsened
    again = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= eps
