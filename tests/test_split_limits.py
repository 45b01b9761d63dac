"""Lower-slope choices of the symbolic ranges (sound), the
checkpoint history of certify_by_splitting (what scripts/path_sensitive_limits.py reports) and the
multi-box search's reuse of a split certificate's leaf bounds: every checkpoint bound holds against
exact executions on the whole box (its leaves then cover the box), the certified-volume measure is
the exact volume of the leaves at or below the target, and the reused leaf bounds are the ones a
fresh per-leaf certification gives."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.refined.multibox import _certify_cover
from aster_ext.refined.split import certified_volume, certify_by_splitting
from aster_ext.refined.symbolic_ranges import SLOPES, symbolic_ranges

from .test_refined import attack_points, observed_errors, random_net, random_program


def _box(rng: np.random.Generator, n: int, in_frac: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.floor(rng.uniform(-1, 0, n) * 2**in_frac) / 2**in_frac
    hi = lo + np.ceil(rng.uniform(0.2, 2, n) * 2**in_frac) / 2**in_frac
    return lo, hi


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), marks=st.lists(st.integers(1, 14), min_size=1, max_size=4))
def test_checkpoint_bounds_hold_on_the_box(seed: int, marks: list[int]) -> None:
    rng = np.random.default_rng(seed)
    widths = list(rng.integers(2, 6, 3))
    layers = random_net(rng, 2, widths)
    in_frac = int(rng.integers(4, 9))
    lo, hi = _box(rng, widths[0], in_frac)
    program = random_program(rng, layers, in_frac)
    sc = certify_by_splitting(program, layers, lo, hi, 0.0, 10, checkpoints=tuple(marks), batch=3)
    want = sorted({m for m in marks if m <= 10})
    # one row per checkpoint reached (exactly at its leaf count: rounds stop there) and one at the end
    assert [h["leaves"] for h in sc.history[: len(want)]] == want
    last = sc.history[-1]
    assert last["leaves"] == len(sc.leaves) == 10 and last["analysed"] == sc.analysed == 19
    assert last["bound"] == sc.max_bound
    for h in sc.history:
        assert h["analysed"] == 2 * h["leaves"] - 1  # each split analyses two children
        assert 0.0 <= h["certified_volume"] <= 1.0
    # every checkpoint bound is a bound of the program on the whole box: attack the box
    xs = attack_points(rng, program, layers, lo, hi, n_random=40, n_search=20)
    obs = float(observed_errors(program, layers, xs, False).max())
    assert all(obs <= h["bound"] for h in sc.history), (obs, sc.history)


def _exact_volume(lo: np.ndarray, hi: np.ndarray) -> Fraction:
    v = Fraction(1)
    for a, b in zip(lo, hi, strict=True):
        v *= Fraction(float(b)) - Fraction(float(a))
    return v


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), q=st.floats(0.0, 1.0))
def test_certified_volume_is_the_volume_of_the_good_leaves(seed: int, q: float) -> None:
    rng = np.random.default_rng(seed)
    layers = random_net(rng, 2, [3, 4, 2])
    lo, hi = _box(rng, 3, 6)
    program = random_program(rng, layers, 6)
    sc = certify_by_splitting(program, layers, lo, hi, 0.0, 9)
    maxes = sorted(float(np.max(b)) for b in sc.leaf_bounds)
    target = maxes[int(q * (len(maxes) - 1))]  # a target some leaves meet and (usually) some do not
    got = certified_volume(sc.leaves, sc.leaf_bounds, lo, hi, target)
    pairs = zip(sc.leaves, sc.leaf_bounds, strict=True)
    good = [(a, b) for (a, b), bd in pairs if float(np.max(bd)) <= target]
    want = sum((_exact_volume(a, b) for a, b in good), Fraction(0)) / _exact_volume(lo, hi)
    assert abs(got - float(want)) <= 1e-12
    assert abs(certified_volume(sc.leaves, sc.leaf_bounds, lo, hi, float("inf")) - 1.0) <= 1e-12


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), on_grid=st.booleans())
def test_reused_leaf_bounds_equal_a_fresh_cover_certificate(seed: int, on_grid: bool) -> None:
    """assign_multibox (no base) builds its fallback certificate from the split certificate instead
    of re-certifying every leaf: both must give the same per-output bound."""
    rng = np.random.default_rng(seed)
    layers = random_net(rng, 3, [2, 5, 5, 2])
    lo, hi = _box(rng, 2, 6)
    program = random_program(rng, layers, 6)
    sc = certify_by_splitting(program, layers, lo, hi, 0.0, 7, on_grid)
    fresh, leaf_bounds, _ = _certify_cover(program, layers, lo, hi, sc.leaves, on_grid)
    assert fresh.ok
    assert np.array_equal(fresh.output_bound, sc.bound)
    for a, b in zip(leaf_bounds, sc.leaf_bounds, strict=True):
        assert np.array_equal(a, b)


def _exact_pre(layers, x: list[Fraction]) -> list[list[Fraction]]:
    """Exact pre-activations of every layer at the input x (rationals)."""
    out, a = [], list(x)
    for layer in layers:
        w, b = layer.exact_weight(), layer.exact_bias()
        z = [sum((w[j, k] * a[k] for k in range(layer.n_in)), Fraction(0)) + b[j] for j in range(layer.n_out)]
        out.append(z)
        a = [max(v, Fraction(0)) for v in z] if layer.activation == "relu" else z
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_layers=st.integers(2, 4),
    choice=st.sampled_from([("zero",), ("one",), ("area", "zero"), ("area", "zero", "one")]),
)
def test_lower_slope_choices_give_sound_ranges(seed: int, n_layers: int, choice) -> None:
    """Every lower-slope choice (and any intersection of them) encloses the exact pre-activations at
    random points and the box corners. (Not asserted: never wider than the area choice alone. Back-
    substitution is not monotone in earlier ranges — the area choice of λ and the chords move with
    them — and hypothesis finds 4-layer nets where the intersection is wider on some neuron.)"""
    rng = np.random.default_rng(seed)
    widths = list(rng.integers(2, 6, n_layers + 1))
    layers = random_net(rng, n_layers, widths)
    lo, hi = _box(rng, widths[0], 5)
    rg = symbolic_ranges(layers, lo, hi, None, choice)
    full = symbolic_ranges(layers, lo, hi, None, SLOPES)
    n = lo.size
    corner = [[lo[i] if (c >> i) & 1 else hi[i] for i in range(n)] for c in range(2**n)]
    pts = corner + [list(lo + (hi - lo) * rng.random(n)) for _ in range(25)]
    for x in pts:
        for li, z in enumerate(_exact_pre(layers, [Fraction(float(v)) for v in x])):
            for j, v in enumerate(z):
                for r in (rg[li], full[li]):
                    assert Fraction(float(r.pre.lo[j])) <= v <= Fraction(float(r.pre.hi[j])), (li, j)


def test_unknown_lower_slope_choice_is_refused() -> None:
    layers = random_net(np.random.default_rng(0), 2, [2, 3, 1])
    with pytest.raises(ValueError, match="slopes"):
        symbolic_ranges(layers, np.zeros(2), np.ones(2), None, ("steep",))
    with pytest.raises(ValueError, match="slopes"):
        symbolic_ranges(layers, np.zeros(2), np.ones(2), None, ())


class _SteppingClock:
    """perf_counter that advances ``step`` seconds per call (deterministic stand-in for a slow round)."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def perf_counter(self) -> float:
        self.t += self.step
        return self.t


def test_multibox_stops_at_the_time_limit_while_building_and_keeps_a_certified_result(monkeypatch) -> None:
    """A round whose per-box caps/models would run past the time limit is cut off (not only checked at
    its start); the result is then the all-maxLen fallback, still certified over its cover and exact on
    grid inputs."""
    from aster_ext.refined import multibox

    rng = np.random.default_rng(3)
    layers = random_net(rng, 3, [2, 6, 6, 1])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    monkeypatch.setattr(multibox, "time", _SteppingClock(1.0))
    best, cert, log = multibox.assign_multibox(layers, lo, hi, 1e-3, None, "C", "neuron", 6.0, "net", 6)
    assert any("time limit reached while" in str(r.get("result")) for r in log.rows), log.rows
    assert best.max_width_fallback and log.chosen is None
    assert cert.ok and cert.bound <= 1e-3
    f_in = best.program.input_t.frac_bits
    xs = rng.integers(-(2**f_in), 2**f_in + 1, (150, 2))
    xs = np.concatenate([xs, [[-(2**f_in), -(2**f_in)], [2**f_in, 2**f_in], [-(2**f_in), 2**f_in]]])
    obs = observed_errors(best.program, layers, xs, True)
    assert np.all(obs.max(axis=0) <= cert.output_bound)
