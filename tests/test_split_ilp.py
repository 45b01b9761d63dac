"""Multi-box refined ILP (aster_ext/refined/multibox.py): stacking one box is the single-box model,
each box's rows survive stacking unchanged on its own columns, the cover stays exact, and the
returned program is certified over its cover (exact executions on attacked points stay below the
certificate) at a cost never above the single-box refined result."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.aster.settings import SETTINGS
from aster_ext.ranges import ExactParams
from aster_ext.refined.model import build_model, lp_text
from aster_ext.refined.multibox import _split_leaves, assign_multibox, stack_models
from aster_ext.refined.solve import initial_caps
from aster_ext.refined.split import bisect
from aster_ext.refined.symbolic_ranges import symbolic_ranges

from .test_refined import attack_points, observed_errors, random_net


def _volume(lo: np.ndarray, hi: np.ndarray) -> Fraction:
    v = Fraction(1)
    for a, b in zip(lo, hi, strict=True):
        v *= Fraction(float(b)) - Fraction(float(a))
    return v


def _model(layers, lo, hi, setting="A", eps=1e-3, **kw):
    st_ = SETTINGS[setting]
    params = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, params)
    caps = initial_caps(layers, rg, eps, st_)
    return build_model(layers, params, rg, lo, hi, st_, eps, caps, **kw)


def _same(m1, m2) -> None:
    assert (m1.a != m2.a).nnz == 0 and m1.a.shape == m2.a.shape
    for f in ("row_lo", "row_hi", "col_lo", "col_hi", "cost", "integer"):
        assert np.array_equal(getattr(m1, f), getattr(m2, f)), f
    assert m1.row_names == m2.row_names and m1.col_names == m2.col_names and m1.d_off == m2.d_off


@pytest.mark.parametrize("seed", [0, 5])
def test_one_box_stack_is_the_single_box_model(seed: int) -> None:
    """Passing the box's own activation candidates, and stacking that one model with its own cost,
    give the single-box model entry for entry (same LP text)."""
    rng = np.random.default_rng(seed)
    layers = random_net(rng, 3, [3, 6, 5, 2])
    if seed == 5:  # a layer with d binaries (table activation budget)
        from aster_ext.ir import DenseLayer

        layers[0] = DenseLayer(layers[0].name, layers[0].weight, layers[0].bias, "sigmoid")
    lo, hi = -np.ones(3), np.ones(3)
    m = _model(layers, lo, hi)
    _same(_model(layers, lo, hi, act_k=m.act_k), m)
    st_ = stack_models([m], m.cost)
    _same(st_, m)
    assert lp_text(st_) == lp_text(m)
    if seed == 5:
        assert m.n_cols > m.d_off  # the d block exists and is shared
    with pytest.raises(ValueError, match="act_k"):
        _model(layers, lo, hi, act_k=[np.zeros(0, dtype=np.int64)] * (len(layers) - 1))


def test_stacked_rows_are_each_box_rows_on_its_own_columns() -> None:
    rng = np.random.default_rng(2)
    layers = random_net(rng, 3, [2, 5, 4, 1])
    lo, hi = -np.ones(2), np.ones(2)
    boxes = bisect(lo, hi, 0)
    m_whole = _model(layers, lo, hi)
    models = [_model(layers, a, b, act_k=m_whole.act_k) for a, b in boxes]
    s = stack_models(models, m_whole.cost)
    n3 = 3 * models[0].n_neurons
    nshared = models[0].d_off - n3
    assert s.n_cols == nshared + 2 * n3 + (m_whole.n_cols - m_whole.d_off)
    n_onehot = sum(nm.startswith("onehot") for nm in models[0].row_names)
    r0 = 0
    for k, m in enumerate(models):
        cols = np.r_[np.arange(nshared), nshared + k * n3 + np.arange(n3), np.arange(s.d_off, s.n_cols)]
        own = [i for i, nm in enumerate(m.row_names) if not nm.startswith("onehot")]
        rows = np.arange(r0, r0 + len(own)) + n_onehot
        r0 += len(own)
        assert (s.a[rows][:, cols] != m.a[own]).nnz == 0
        others = np.setdiff1d(np.arange(s.n_cols), cols)
        assert s.a[rows][:, others].nnz == 0  # no coupling with another box's columns
        assert np.array_equal(s.row_hi[rows], m.row_hi[own])
    assert s.a.shape[0] == n_onehot + r0


@settings(max_examples=25, deadline=None)
@given(
    lo=st.lists(st.floats(-4, 4, allow_nan=False, width=64), min_size=1, max_size=4),
    widths=st.lists(st.floats(0.01, 3, allow_nan=False), min_size=4, max_size=4),
    picks=st.lists(st.integers(0, 50), min_size=1, max_size=8),
)
def test_split_leaves_keeps_an_exact_cover(lo, widths, picks) -> None:
    lo = np.array(lo)
    hi = lo + np.array(widths[: lo.size])
    sens = np.ones(lo.size)
    leaves = [(lo, hi)]
    for p in picks:
        leaves = _split_leaves(leaves, [p % len(leaves)], 6, sens)
    assert 1 <= len(leaves) <= 6
    assert sum(_volume(a, b) for a, b in leaves) == _volume(lo, hi)
    for a, b in leaves:
        assert np.all(lo <= a) and np.all(a <= b) and np.all(b <= hi)
    pts = lo + (hi - lo) * np.random.default_rng(0).random((100, lo.size))
    inside = np.zeros(100, dtype=bool)
    for a, b in leaves:
        inside |= np.all((pts >= a) & (pts <= b), axis=1)
    assert inside.all()


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_multibox_result_is_sound_and_never_costlier(seed: int) -> None:
    from aster_ext.errors import InfeasibleError
    from aster_ext.refined import assign_refined

    rng = np.random.default_rng(seed)
    widths = [2, int(rng.integers(3, 7)), int(rng.integers(3, 7)), 1]
    layers = random_net(rng, 3, widths)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    eps = 1e-3
    try:
        base = assign_refined(layers, lo, hi, eps, "A", time_limit=20)
    except InfeasibleError:
        return
    best, cert, log = assign_multibox(layers, lo, hi, eps, base, "A", "neuron", 25, "net", 8)
    assert cert.ok and cert.bound <= eps and best.hw_cost <= base.hw_cost
    assert (log.chosen is None) == (best is base) and 1 <= log.leaves <= 8
    xs = attack_points(rng, best.program, layers, lo, hi, n_random=40, n_search=24)
    obs = observed_errors(best.program, layers, xs, False)
    assert np.all(obs.max(axis=0) <= cert.output_bound), (obs.max(axis=0), cert.output_bound)


@pytest.mark.slow
def test_multibox_without_base_and_on_grid() -> None:
    """No single-box result (base None) in setting C (inputs on the grid): the loop starts from
    ε-derived caps on a bisected box; its program is certified and holds on grid inputs."""
    rng = np.random.default_rng(3)
    layers = random_net(rng, 3, [2, 6, 6, 1])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    best, cert, log = assign_multibox(layers, lo, hi, 1e-3, None, "C", "neuron", 25, "net", 6)
    assert cert.ok and cert.bound <= 1e-3 and log.chosen is not None and log.base_hw is None
    f_in = best.program.input_t.frac_bits
    xs = rng.integers(-(2**f_in), 2**f_in + 1, (150, 2))
    xs = np.concatenate([xs, [[-(2**f_in), -(2**f_in)], [2**f_in, 2**f_in], [-(2**f_in), 2**f_in]]])
    obs = observed_errors(best.program, layers, xs, True)
    assert np.all(obs.max(axis=0) <= cert.output_bound)


def test_split_ilp_needs_split_boxes(capsys) -> None:
    from pathlib import Path

    from aster_ext.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "tiny_controller.scala"
    assert main(["quantize", str(example), "--error", "1e-3", "--split-ilp", "--quiet"]) == 2
    assert "--split-ilp needs --split-boxes" in capsys.readouterr().err


@pytest.mark.slow
def test_quantize_split_ilp_report_and_verify(tmp_path, capsys) -> None:
    """``quantize --split-boxes 6 --split-ilp``: report.json's split_search (multibox-ilp) says
    sub-boxes, hw and bound before/after; the written program verifies against its certificate."""
    import json
    from pathlib import Path

    from aster_ext.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "tiny_controller.scala"
    out = tmp_path / "tiny"
    args = ["quantize", str(example), "--error", "1e-3", "--out", str(out), "--quiet"]
    assert main([*args, "--split-boxes", "6", "--split-ilp"]) == 0
    r = json.loads((out / "report.json").read_text())
    s = r["split_search"]
    assert s["method"] == "multibox-ilp" and 1 <= s["leaves"] <= 6 and s["rounds"]
    assert s["hw_after"] <= s["hw_before"] and s["bound_after"] <= 1e-3
    assert r["certified_error"] == pytest.approx(s["bound_after"]) and r["cost"]["hw"] == s["hw_after"]
    capsys.readouterr()
    assert main(["verify", str(out), "--no-cpp", "--quiet", "--samples", "300", "--search-iters", "5"]) == 0


def test_models_with_different_binaries_are_not_stacked() -> None:
    rng = np.random.default_rng(6)
    layers = random_net(rng, 2, [2, 4, 1])
    lo, hi = -np.ones(2), np.ones(2)
    m = _model(layers, lo, hi)
    other = _model(layers, lo, hi, setting="B")  # other F candidates
    with pytest.raises(ValueError, match="share"):
        stack_models([m, other])


def test_rows_m_of_the_uniform_start_fits_its_caps() -> None:
    """_rows_m (the caps heuristic) evaluates the cap rows as uniform_start does: the uniform start's
    m values fit the caps, and a uniform F far below it does not."""
    from aster_ext.refined.model import uniform_start
    from aster_ext.refined.multibox import _rows_m

    rng = np.random.default_rng(8)
    layers = random_net(rng, 3, [2, 6, 6, 1])
    m = _model(layers, -np.ones(2), np.ones(2))
    start = uniform_start(m)
    assert start is not None
    caps = np.concatenate(m.caps)
    mm = _rows_m(m, start[0], start[1], start[2])
    assert np.all(mm <= caps * (1 + 1e-6)) and np.any(mm > 0)
    low = np.full(m.n_neurons, m.fracs[0])
    assert np.any(_rows_m(m, low, low, None) > caps)


def test_no_base_gives_up_when_even_max_len_fails_on_the_cover() -> None:
    from aster_ext.errors import InfeasibleError

    rng = np.random.default_rng(3)
    layers = random_net(rng, 2, [2, 4, 1])
    with pytest.raises(InfeasibleError, match="all-maxLen program certifies only") as exc:
        assign_multibox(layers, -np.ones(2), np.ones(2), 1e-14, None, "A", "neuron", 10, "net", 4)
    assert exc.value.smallest_error is not None and exc.value.smallest_error > 1e-14


def test_cli_infeasible_names_both_searches(tmp_path, capsys) -> None:
    from pathlib import Path

    from aster_ext.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "tiny_controller.scala"
    args = ["quantize", str(example), "--error", "1e-12", "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*args, "--split-boxes", "4", "--split-ilp"]) == 2
    err = capsys.readouterr().err
    assert "refined mode found no certified assignment" in err and "over 4 sub-boxes" in err
    assert not (tmp_path / "o").exists()
