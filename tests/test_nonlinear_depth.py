"""Refined mode on deeper smooth-activation networks (issue 13): when the all-maxLen program
certifies far below ε, the ILP must find a cheaper program — no all-maxLen fallback — and that
program must be certified (certify_forms on the emitted program), pass the exact-rational re-check
of the ILP rows, and keep every observed error (bit-exact simulation against the exact-rational
reference, attacked inputs) within the certified bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aster_ext.aster.settings import SETTINGS
from aster_ext.ranges import ExactParams
from aster_ext.refined import build_program, certify_forms, symbolic_ranges
from aster_ext.refined.solve import assign_refined, max_len_program
from aster_ext.verify import REF_MARGIN
from tests.programs import normal_dense_net
from tests.test_activation_networks import attack, exact_errors

SMOOTH = ["tanh", "sigmoid", "softplus", "elu", "silu", "gelu"]


def check_no_fallback(
    rng: np.random.Generator, act: str, widths: list[int], eps: float, setting: str, quick: bool = False
) -> None:
    """The assertions of the module docstring for one network, if the all-maxLen bound is < ε/10.

    ``quick``: instead of the all-maxLen program (2^16-entry tables, slow), the precondition is
    that a uniform F = Fw = 20 program with activation budgets 2^-16 certifies < ε/10 — a
    cheaper program than all-maxLen that certifies, which is the stronger condition."""
    layers = normal_dense_net(rng, act, widths)
    n = widths[0]
    lo, hi = -np.ones(n), np.ones(n)
    st_ = SETTINGS[setting]
    if quick:
        ps = [ExactParams.of(layer) for layer in layers]
        f = [np.full(layer.n_out, 20) for layer in layers]
        rg = symbolic_ranges(layers, lo, hi, ps)
        prog, _ = build_program("t", layers, f, f, st_, lo, hi, ps, rg, act_delta=[2.0**-16] * len(layers))
        c_pre = certify_forms(prog, layers, lo, hi, st_.no_init_error)
    else:
        _, c_pre = max_len_program("t", layers, lo, hi, st_)
    assume(c_pre.ok and c_pre.bound < eps / 10)
    res = assign_refined(layers, lo, hi, eps, setting, name="t")
    assert not res.max_width_fallback, res.notes
    assert "all-maxLen" not in res.solver_status
    assert res.exact_check_ok, res.notes
    assert res.certificate.ok and res.certificate.bound <= eps
    again = certify_forms(res.program, layers, lo, hi, st_.no_init_error)
    assert again.ok and again.bound <= eps
    if not st_.no_init_error:  # inputs anywhere in the box (setting C: only on the grid; not attacked here)
        xs = attack(rng, res.program, layers, lo, hi, n_random=20, n_search=12)
        obs = exact_errors(res.program, layers, xs)
        assert np.all(obs.max(axis=0) <= again.output_bound + REF_MARGIN), (
            obs.max(axis=0),
            again.output_bound,
        )


@pytest.mark.slow
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    act=st.sampled_from(SMOOTH),
    depth=st.integers(3, 4),
    eps=st.sampled_from([1e-2, 1e-3]),
)
def test_small_deep_nets_get_ilp_solution(seed: int, act: str, depth: int, eps: float) -> None:
    """Quick variant: widths 3-6, depth 3-4, setting A."""
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(2, 5))] + [int(v) for v in rng.integers(3, 7, depth)] + [2]
    check_no_fallback(rng, act, widths, eps, "A", quick=True)


@pytest.mark.slow
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    act=st.sampled_from(SMOOTH),
    depth=st.integers(3, 5),
    width=st.sampled_from([16, 32, 64]),
    eps=st.sampled_from([1e-2, 1e-3]),
    setting=st.sampled_from(["A", "C"]),
)
def test_deep_nets_get_ilp_solution(
    seed: int, act: str, depth: int, width: int, eps: float, setting: str
) -> None:
    """Depth 3-5, width up to 64 (the issue's networks), settings A and C."""
    rng = np.random.default_rng(seed)
    n_in, n_out = (4, 3) if width <= 32 else (8, 4)
    check_no_fallback(rng, act, [n_in] + [width] * depth + [n_out], eps, setting)
