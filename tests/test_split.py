"""Input-space splitting of refined certificates (aster_ext/refined/split.py): the leaves cover
the box exactly, every leaf bound holds against exact executions inside its leaf (attacked per
leaf), the split bound never exceeds the single pass, and programs that overflow are refused."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.refined import certify_forms
from aster_ext.refined.split import bisect, certify_by_splitting, input_sensitivity, split_dimension

from .test_refined import attack_points, observed_errors, random_net, random_program


def _volume(lo: np.ndarray, hi: np.ndarray) -> Fraction:
    v = Fraction(1)
    for a, b in zip(lo, hi, strict=True):
        v *= Fraction(float(b)) - Fraction(float(a))
    return v


@settings(max_examples=30, deadline=None)
@given(
    lo=st.lists(st.floats(-4, 4, allow_nan=False, width=64), min_size=1, max_size=4),
    widths=st.lists(st.floats(0, 3, allow_nan=False), min_size=4, max_size=4),
    d=st.integers(0, 3),
)
def test_bisection_covers_the_box_exactly(lo, widths, d) -> None:
    lo = np.array(lo)
    hi = lo + np.array(widths[: lo.size])
    d = d % lo.size
    (l1, h1), (l2, h2) = bisect(lo, hi, d)
    assert np.all(l1 == lo) and np.all(h2 == hi) and h1[d] == l2[d]  # share the cut, nothing missing
    assert lo[d] <= h1[d] <= hi[d]
    assert np.array_equal(np.delete(h1, d), np.delete(hi, d)) and np.array_equal(
        np.delete(l2, d), np.delete(lo, d)
    )
    assert _volume(l1, h1) + _volume(l2, h2) == _volume(lo, hi)  # exact rationals


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_layers=st.integers(2, 3), on_grid=st.booleans())
def test_split_bound_is_sound_leaf_by_leaf(seed: int, n_layers: int, on_grid: bool) -> None:
    rng = np.random.default_rng(seed)
    widths = list(rng.integers(2, 7, n_layers + 1))
    layers = random_net(rng, n_layers, widths)
    in_frac = int(rng.integers(4, 10))
    lo = np.floor(rng.uniform(-1, 0, widths[0]) * 2**in_frac) / 2**in_frac
    hi = lo + np.ceil(rng.uniform(0.2, 2, widths[0]) * 2**in_frac) / 2**in_frac
    program = random_program(rng, layers, in_frac)
    sc = certify_by_splitting(program, layers, lo, hi, target=0.0, max_boxes=12, input_on_grid=on_grid)
    whole = certify_forms(program, layers, lo, hi, input_on_grid=on_grid)
    assert np.array_equal(sc.whole_bound, whole.output_bound)
    assert np.all(sc.bound <= sc.whole_bound) and len(sc.leaves) == 12
    # leaves lie in the box and cover it: their exact volumes add up to the box's
    assert sum(_volume(a, b) for a, b in sc.leaves) == _volume(lo, hi)
    for a, b in sc.leaves:
        assert np.all(lo <= a) and np.all(a <= b) and np.all(b <= hi)
    # every point of the box is in some leaf, and each leaf's bound holds inside it
    for (a, b), bound in zip(sc.leaves, sc.leaf_bounds, strict=True):
        if on_grid:
            ra, rb = np.ceil(a * 2**in_frac).astype(np.int64), np.floor(b * 2**in_frac).astype(np.int64)
            if np.any(ra > rb):
                continue  # no grid point in this leaf
            xs = np.array([[rng.integers(u, v + 1) for u, v in zip(ra, rb, strict=True)] for _ in range(12)]
                          + [list(ra), list(rb)], dtype=np.int64)  # fmt: skip
        else:
            xs = attack_points(rng, program, layers, a, b, n_random=10, n_search=8)
        obs = observed_errors(program, layers, xs, on_grid)
        assert np.all(obs.max(axis=0) <= bound), (obs.max(axis=0), bound)
    pts = lo + (hi - lo) * rng.random((200, lo.size))
    inside = np.zeros(200, dtype=bool)
    for a, b in sc.leaves:
        inside |= np.all((pts >= a) & (pts <= b), axis=1)
    assert inside.all()


def test_splitting_tightens_a_relu_network_and_stops_at_the_target() -> None:
    """A net with unstable ReLUs on its box: 32 sub-boxes give a strictly smaller bound; asking for
    the single-pass bound itself needs no split at all."""
    rng = np.random.default_rng(4)
    layers = random_net(rng, 3, [2, 8, 8, 1])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    program = random_program(rng, layers, 10)
    sc = certify_by_splitting(program, layers, lo, hi, target=0.0, max_boxes=32)
    assert sc.max_bound < float(sc.whole_bound.max())
    again = certify_by_splitting(program, layers, lo, hi, target=float(sc.whole_bound.max()), max_boxes=32)
    assert len(again.leaves) == 1 and again.reached_target and again.analysed == 1


def test_split_dimension_prefers_what_moves_the_output() -> None:
    rng = np.random.default_rng(0)
    layers = random_net(rng, 2, [3, 4, 1])
    layers[0].weight[:, 1] *= 100.0
    s = input_sensitivity(layers)
    assert split_dimension(np.zeros(3), np.ones(3), s) == 1
    assert split_dimension(np.zeros(3), np.array([1.0, 0.0, 1.0]), s) in (0, 2)


def test_overflowing_program_is_refused() -> None:
    rng = np.random.default_rng(1)
    layers = random_net(rng, 2, [2, 3, 1])
    program = random_program(rng, layers, 6)
    for lp in program.layers:  # one bit per output: the box overflows them
        lp.out_t = lp.out_t.__class__.from_frac(lp.out_t.frac, 1 - lp.out_t.frac)  # 1-bit outputs
    with pytest.raises(ValueError, match="overflows"):
        certify_by_splitting(program, layers, np.full(2, -4.0), np.full(2, 4.0), 0.0, 4)


@pytest.mark.slow
def test_verify_split_boxes_on_a_refined_output(tmp_path, capsys) -> None:
    """``aster-ext verify --split-boxes``: verify.json holds the split certificate beside the
    single-pass one, no observed error exceeds it; aster-mode outputs are refused in one line."""
    import json
    from pathlib import Path

    from aster_ext.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "tiny_controller.scala"
    out = tmp_path / "tiny"
    assert main(["quantize", str(example), "--error", "1e-3", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    args = ["verify", str(out), "--no-cpp", "--quiet", "--samples", "300", "--search-iters", "5"]
    assert main([*args, "--split-boxes", "16"]) == 0
    assert "split certificate over" in capsys.readouterr().out
    v = json.loads((out / "verify.json").read_text())
    sp = v["split"]
    assert 1 <= sp["boxes"] <= 16 and sp["bound_after"] <= sp["bound_before"]
    assert v["max_observed_error"] <= sp["bound_after"] and sp["violations_against_split"] == 0
    aster_out = tmp_path / "aster"
    assert (
        main(
            [
                "quantize",
                str(example),
                "--error",
                "1e-3",
                "--mode",
                "aster",
                "--out",
                str(aster_out),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(["verify", str(aster_out), "--no-cpp", "--quiet", "--samples", "50", "--split-boxes", "4"]) == 2
    )
    assert "--split-boxes needs a refined-mode output" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 8])
def test_formats_accepted_by_splitting_hold_and_cost_less(seed: int) -> None:
    """assign_with_splitting returns either the base result or a cheaper program whose split
    certificate is <= ε, and no exact execution on attacked points of the box exceeds it."""
    from aster_ext.refined import assign_refined
    from aster_ext.refined.split import assign_with_splitting

    rng = np.random.default_rng(seed)
    layers = random_net(rng, 3, [2, 10, 10, 1])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    eps = 1e-3
    base = assign_refined(layers, lo, hi, eps, "A", time_limit=30)
    best, cert, log = assign_with_splitting(layers, lo, hi, eps, base, "A", "neuron", 60, "net", 32)
    assert cert.ok and cert.bound <= eps and log.rows
    assert log.base_split_bound <= log.base_bound
    if log.chosen is None:
        assert best is base
    else:
        assert best.hw_cost < base.hw_cost and log.rows[log.chosen]["result"] == "accepted"
    xs = attack_points(rng, best.program, layers, lo, hi, n_random=60, n_search=40)
    obs = observed_errors(best.program, layers, xs, False)
    assert np.all(obs.max(axis=0) <= cert.output_bound)
