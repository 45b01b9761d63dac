"""Per-channel ILP formats for graph programs (aster_ext/graph_program/ilp.py, sensitivity.py).

The ILP's linear model is only a guide; what is tested is that (1) the model is an upper bound of
the sound analysis at its linearisation point (the adjoint is right), (2) every program
``certify_cnn`` returns is certified, never costs more than the greedy per-layer result, and no
bit-exact execution on random, corner or attacked points of a region drops the margin by more
than the certified margin error, and (3) a wrong ILP answer is rejected by the final
re-certification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext import ops
from aster_ext.errors import UnsupportedError
from aster_ext.graph_program import certify as certify_mod
from aster_ext.graph_program import ilp as ilp_mod
from aster_ext.graph_program.certify import Region, certify_choice, certify_cnn, prepare, program_cost
from aster_ext.graph_program.descent import sound_descent
from aster_ext.graph_program.errors import analyze_errors
from aster_ext.graph_program.program import FracChoice
from aster_ext.graph_program.sensitivity import block_fracs, knob_blocks, margin_model
from aster_ext.graph_program.simulate import simulate_graph
from aster_ext.ops.attack import margin_gradients

from .graph_program_support import random_cnn

POOLS = ["none", "max", "avg"]


def _regions(rng, net, n: int, rad: float) -> list[Region]:
    """Boxes of radius ``rad`` around random centres, labelled with the real prediction there."""
    regs = []
    for i in range(n):
        c = rng.uniform(-1, 1, size=net.input_shape)
        y = ops.evaluate(net, c[None])[ops.logits_node(net)][0]
        regs.append(Region(f"r{i}", c - rad, c + rad, int(np.argmax(y))))
    return regs


def _points(rng, reg: Region, net, n_rand: int = 40, n_corner: int = 40) -> np.ndarray:
    """Random and corner points of the region plus a projected-gradient attack's end points."""
    lo, hi = reg.lower, reg.upper
    pts = [lo, hi, (lo + hi) / 2]
    pts += list(rng.uniform(lo, hi, size=(n_rand, *lo.shape)))
    pts += list(np.where(rng.integers(0, 2, size=(n_corner, *lo.shape)) == 1, hi, lo))
    # signed-gradient steps on the real margin towards each class's smallest margin
    flat_lo, flat_hi = lo.reshape(-1), hi.reshape(-1)
    grads = margin_gradients(net, (lo + hi) / 2, reg.label)
    for g in grads:
        pts.append(np.where(g > 0, flat_lo, flat_hi).reshape(lo.shape))
    return np.stack(pts)


def _check_program(net, reg: Region, prog, verdict, rng) -> None:
    """Bit-exact runs never overflow, never drop any margin by more than its certified error
    bound, and keep the label when the region is certified."""
    a = analyze_errors(net, reg.ranges, _fracs_of(prog), prog.quant, reg.label)
    x = _points(rng, reg, net)
    tr = simulate_graph(prog, x)
    assert sum(tr.overflows.values()) == 0
    logits = ops.logits_node(net)
    y = tr.value(prog, logits)
    yr = ops.evaluate(net, x)[logits].reshape(x.shape[0], -1)
    lab = reg.label
    drop = (yr[:, [lab]] - yr) - (y[:, [lab]] - y)  # how far each program margin fell
    assert np.all(drop <= -a.margin_err.lo[None, :] + 1e-9)
    if verdict.certified:
        assert np.all(np.argmax(y, axis=1) == lab)
        assert -a.margin_err.lo[verdict.worst_k] == pytest.approx(verdict.margin_err)


def _fracs_of(prog) -> FracChoice:
    """The FracChoice a program was built from (read back from its node types)."""
    net = prog.net
    fc = FracChoice.uniform(net, 0)
    fc.input = int(prog.input_t.frac.max())
    for name in fc.out:
        op = net.op(name)
        fc.out[name] = prog.nodes[name].out_t.frac.reshape(op.shape[0] if op.shape else 1, -1)[:, 0].copy()
    for name in fc.weight:
        fc.weight[name] = prog.nodes[name].weight_frac.astype(np.int64).copy()
    for name in fc.const:
        fc.const[name] = int(prog.nodes[name].const_frac)
    return fc


# ------------------------------------------------------------------------------------------
# the linear model


def _model_case(seed: int, pool: str, residual: bool):
    """A random CNN, two prepared regions (radius 0, 0.01 or 0.1) and random per-channel F in [3, 12)."""
    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual, pool)
    regs = [prepare(net, r) for r in _regions(rng, net, 2, float(rng.choice([0.0, 0.01, 0.1])))]
    fc = FracChoice.uniform(net, int(rng.integers(3, 12)))
    for d in (fc.out, fc.weight):
        for name in d:
            d[name] = rng.integers(3, 12, size=d[name].size).astype(np.int64)
    return net, regs, fc


#: hypothesis over the random linearisation cases of :func:`_model_case`
MODEL_CASES = given(
    seed=st.integers(0, 2**31 - 1),
    pool=st.sampled_from(POOLS),
    residual=st.booleans(),
    quant=st.sampled_from(["TRN", "RND"]),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@MODEL_CASES
def test_model_bounds_analysis_at_its_point(seed, pool, residual, quant):
    """At the linearisation point the modelled margin error is >= the analysis' (module
    docstring of sensitivity.py: hulls with 0 and inclusion monotonicity)."""
    net, regs, fc = _model_case(seed, pool, residual)
    model = margin_model(net, regs, fc, quant, np.arange(0, 20))
    est = model.evaluate(fc)
    for (ri, k), e in zip(model.rows, est, strict=True):
        a = analyze_errors(net, regs[ri].ranges, fc, quant, regs[ri].label)
        true = -a.margin_err.lo[k]
        assert e >= true - 1e-9 * abs(true) - 1e-15, (ri, k, e, true)


def test_model_is_monotone_in_precision():
    """No source helps (contributions >= 0); a rounding's contribution never grows with its F
    (weight quantisation errors need not be monotone: a lucky weight can be exact at low F)."""
    rng = np.random.default_rng(3)
    net = random_cnn(rng, True, "avg")
    regs = [prepare(net, r) for r in _regions(rng, net, 1, 0.05)]
    model = margin_model(net, regs, FracChoice.uniform(net, 8), "TRN", np.arange(0, 24))
    for b, e in zip(model.blocks, model.err, strict=True):
        assert np.all(e >= -1e-15)
        if b.kind in ("input", "out"):
            assert np.all(e[:, 1:, :] <= e[:, :-1, :] + 1e-15)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), pool=st.sampled_from(POOLS), residual=st.booleans())
def test_cost_model_is_the_program_cost_at_its_point(seed, pool, residual):
    """The ILP objective at its linearisation point is the program's hw minus what it leaves out:
    the accumulators' integer bits (constants), and per output channel the merge adders of its
    partial sums and the alignment bits of lanes not worth a partial sum. Per-lane operand widths
    (each multiplier reads its input channel's / element's own format) are in, not a container."""
    from aster_ext.graph_program.certify import program_for
    from aster_ext.graph_program.ilp import cost_model
    from aster_ext.graph_program.program import LINEAR_KINDS, partial_sums, weight_array

    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual, pool)
    regs = [prepare(net, r) for r in _regions(rng, net, 2, 0.05)]
    fc = FracChoice.uniform(net, 6)
    for d in (fc.out, fc.weight):
        for name in d:
            d[name] = rng.integers(3, 12, size=d[name].size).astype(np.int64)
    analyses = [analyze_errors(net, r.ranges, fc, "TRN", r.label) for r in regs]
    prog = program_for(net, fc, analyses, "TRN")
    fracs = np.arange(0, 20)
    blocks = knob_blocks(net)
    cm = cost_model(net, blocks, fracs, fc, analyses, "TRN")
    pairs = zip(blocks, cm.own, strict=True)
    model = sum(float(own[np.arange(b.n), block_fracs(fc, b)].sum()) for b, own in pairs)
    for con in cm.consumers:
        f_src = [int(block_fracs(fc, blocks[bi])[ch]) for bi, ch in con.sources]
        i_src = [cm.width[bi][ch, f] - f for (bi, ch), f in zip(con.sources, f_src, strict=True)]
        model += con.c_frac * max(f_src) + con.c_width * (max(i_src) + max(f_src))
    dropped = 0
    for op in net.ops():
        nd = prog.nodes.get(op.name)
        if op.kind in LINEAR_KINDS:
            dropped += int(np.prod(weight_array(op).shape[1:])) * int(nd.acc_t.int_bits.sum())
            # the model takes every lane adder at its operand's own F and no merge adders
            plan = partial_sums(op, tuple(net.op(op.inputs[0]).shape), prog.out_t(op.inputs[0]), nd.acc_t,
                                nd.x_frac)  # fmt: skip
            gap = plan.lanes * (nd.x_frac - plan.fvals[None, :])
            merge = nd.acc_t.width[:, None].astype(np.int64)
            if int(op.attrs.get("group", 1)) == 1:  # grouped convs align every lane to F_x (exact)
                dropped += int(np.where(plan.partial, merge, gap).sum())
        elif op.kind == "avgpool":
            dropped += (int(np.prod(op.attrs["kernel"])) - 1) * int(nd.acc_t.int_bits.sum())
    assert model == pytest.approx(program_cost(prog).hw - dropped)


# ------------------------------------------------------------------------------------------
# the search


def _search_case(seed: int, pool: str, residual: bool):
    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual, pool)
    regs = _regions(rng, net, 2, 0.01)
    return rng, net, regs


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    pool=st.sampled_from(POOLS),
    residual=st.booleans(),
    granularity=st.sampled_from(["channel", "layer"]),
)
def test_ilp_program_certified_cheaper_and_never_exceeded(seed, pool, residual, granularity):
    rng, net, regs = _search_case(seed, pool, residual)
    rep = certify_cnn(net, regs, max_frac=20, granularity=granularity, time_limit=10, max_rounds=4)
    res = rep.search
    for reg, v in zip(regs, res.verdicts, strict=True):
        assert v.certified == reg.provable  # every provable region stays certified
        _check_program(net, reg, res.program, v, rng)
    if res.global_frac is not None:
        assert rep.cost.hw <= res.greedy_cost
        assert res.method in ("ilp", "greedy")
        assert res.ilp is not None and res.ilp.rounds
    if granularity == "layer":
        for name, v in res.fracs.out.items():
            assert np.unique(v).size == 1, name
        for name, v in res.fracs.weight.items():
            assert np.unique(v).size == 1, name


@pytest.mark.slow
def test_ilp_beats_greedy_on_a_wide_layer():
    """Random CNNs whose channels matter unequally: the ILP program (default rounds) is certified
    and strictly cheaper than the per-layer greedy result. Seeds 0 and 12 win by 35% and 38% with
    most ILP rounds certified; seed 7 (used before) won with one certified round of four, and
    other floating-point hardware (CI) made it fall back to greedy."""
    for seed in (0, 12):
        rng = np.random.default_rng(seed)
        net = random_cnn(rng, False, "max")
        regs = _regions(rng, net, 2, 0.02)
        rep = certify_cnn(net, regs, max_frac=20, time_limit=60)
        res = rep.search
        assert any(r.provable for r in regs)
        assert all(v.certified for v, r in zip(res.verdicts, regs, strict=True) if r.provable)
        assert res.method == "ilp" and rep.cost.hw < res.greedy_cost, (seed, res.ilp.rounds)
        for reg, v in zip(regs, res.verdicts, strict=True):
            _check_program(net, reg, res.program, v, rng)


@pytest.mark.slow
def test_wrong_ilp_answer_is_rejected(monkeypatch):
    """An ILP that answers absurdly small formats (cheaper, not certifiable) must not reach the
    user: the final re-certification rejects it and the greedy program comes back."""
    rng, net, regs = _search_case(11, "max", True)

    def tiny(blocks, fracs, groups, cost, rows, safety, time_limit, start=None, window=None):
        fc = start.copy()
        for b in knob_blocks(net):
            from aster_ext.graph_program.sensitivity import set_block_fracs

            set_block_fracs(fc, b, np.zeros(b.n, dtype=np.int64) + (0 if b.kind != "const" else 0))
        return "optimal", fc, 0.0, 1, None

    monkeypatch.setattr(ilp_mod, "solve_mip", tiny)
    monkeypatch.setattr(certify_mod, "DESCENT_PASSES", 0)  # the greedy program itself comes back
    rep = certify_cnn(net, regs, max_frac=20, time_limit=5, max_rounds=2)
    res = rep.search
    assert any(r.provable for r in regs)
    assert res.ilp is not None and res.ilp.rounds and not res.ilp.rounds[0].certified
    # the tiny program is cheaper: returning it unchecked would have been chosen
    assert res.ilp.rounds[0].hw < res.greedy_cost
    assert res.method == "greedy"
    assert all(v.certified for v, r in zip(res.verdicts, regs, strict=True) if r.provable)
    prog, _, verdicts = certify_choice(net, regs, res.fracs, "TRN")
    assert all(v.certified for v, r in zip(verdicts, regs, strict=True) if r.provable)
    assert program_cost(prog).hw == rep.cost.hw == res.greedy_cost


def test_a_round_out_of_time_retries_in_a_smaller_window(monkeypatch):
    """A solve killed by the guard (or out of time without a solution) is not the end of the
    search: the next round runs with half the trust region; a proven-infeasible one ends it."""
    rng, net, regs = _search_case(11, "max", True)
    real, windows = ilp_mod.solve_mip, []

    def flaky(blocks, fracs, groups, cost, rows, safety, time_limit, start=None, window=None):
        windows.append(window)
        if len(windows) == 1:
            return "killed", None, None, 1, None
        if len(windows) == 2:
            return "time_limit", None, None, 1, None
        return real(blocks, fracs, groups, cost, rows, safety, time_limit, start, window)

    monkeypatch.setattr(ilp_mod, "solve_mip", flaky)
    rep = certify_cnn(net, regs, max_frac=20, time_limit=5, max_rounds=3)
    rounds = rep.search.ilp.rounds
    # the first linear model's search: killed, out of time, then a real solve in window 6 // 4
    assert [r.status for r in rounds[:2]] == ["killed", "time_limit"] and len(rounds) >= 3
    assert windows[:3] == [6, 3, 1]
    windows.clear()

    def infeasible(blocks, fracs, groups, cost, rows, safety, time_limit, start=None, window=None):
        windows.append(window)
        return "infeasible", None, None, 1, None

    monkeypatch.setattr(ilp_mod, "solve_mip", infeasible)
    monkeypatch.setattr(certify_mod, "DESCENT_PASSES", 0)
    rep = certify_cnn(net, regs, max_frac=20, time_limit=5, max_rounds=3)
    # one round per linear model (ADJOINTS), each ended by the proven infeasibility
    assert len(rep.search.ilp.rounds) == len(windows) == 2 and rep.search.method == "greedy"


# ------------------------------------------------------------------------------------------
# the sound descent after the ILP


def _knob_sum(fc: FracChoice) -> int:
    arrays = (*fc.out.values(), *fc.weight.values())
    return fc.input + sum(int(v.sum()) for v in arrays) + sum(fc.const.values())


@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_descent_lowers_groups_until_the_check_refuses(granularity):
    """With a stand-in check (certified iff the sum of all fractional bits stays >= a threshold,
    hw = that sum): every accepted step was certified, the result is certified, cheaper than the
    start, at a local optimum (no single group can go one bit lower), never below min_frac, and
    at "layer" granularity every block keeps one format."""
    rng, net, _ = _search_case(3, "avg", True)
    start = FracChoice.uniform(net, 9)
    threshold = _knob_sum(start) - 40
    calls: list[tuple[bool, int]] = []

    def check(fc):
        ok = _knob_sum(fc) >= threshold
        calls.append((ok, _knob_sum(fc)))
        return ok, _knob_sum(fc), 0.0, None

    res = sound_descent(net, start, _knob_sum(start), check, granularity, min_frac=7)
    assert res.checks == len(calls) and res.moves == sum(ok for ok, _ in calls)
    assert res.hw == _knob_sum(res.fracs) < _knob_sum(start) and _knob_sum(res.fracs) >= threshold
    for b in knob_blocks(net):
        fr = block_fracs(res.fracs, b)
        assert fr.min() >= 7
        if granularity == "layer":
            assert np.unique(fr).size == 1, b
    # local optimum: lowering any group that may still go down would cross the threshold
    for b in knob_blocks(net):
        if block_fracs(res.fracs, b).min() > 7:
            assert _knob_sum(res.fracs) - (1 if granularity == "channel" else b.n) < threshold, b
    assert _knob_sum(start) == _knob_sum(FracChoice.uniform(net, 9))  # the start is not changed in place


@pytest.mark.parametrize("budget", [0, 1, 7])
def test_descent_stops_at_its_check_budget_with_the_best_choice_so_far(budget):
    """With ``max_checks``: never more checks than the budget, the result is the last accepted
    (certified) choice, and a budget the unlimited descent needs fewer checks than changes nothing."""
    rng, net, _ = _search_case(3, "avg", True)
    start = FracChoice.uniform(net, 9)
    threshold = _knob_sum(start) - 40
    accepted: list[int] = []

    def check(fc):
        ok = _knob_sum(fc) >= threshold
        if ok:
            accepted.append(_knob_sum(fc))
        return ok, _knob_sum(fc), 0.0, None

    full = sound_descent(net, start, _knob_sum(start), check, "channel", min_frac=7)
    assert full.checks > 7 and not full.out_of_checks
    accepted.clear()
    res = sound_descent(net, start, _knob_sum(start), check, "channel", min_frac=7, max_checks=budget)
    assert res.checks == budget and res.out_of_checks
    assert res.hw == _knob_sum(res.fracs) == (accepted[-1] if accepted else _knob_sum(start))
    assert res.moves == len(accepted) and _knob_sum(res.fracs) >= threshold
    same = sound_descent(net, start, _knob_sum(start), check, "channel", min_frac=7, max_checks=full.checks)
    assert (same.hw, same.checks, same.out_of_checks) == (full.hw, full.checks, False)


def test_descent_budget_scales_with_the_size_of_one_check(monkeypatch):
    """The default budget is DESCENT_WORK / (regions x size of one analysis), clamped to
    [DESCENT_CHECKS, DESCENT_MAX_CHECKS]: a small network gets more than the floor, more regions
    never get more checks, and a large work constant hits the cap."""
    _, net, regs = _search_case(3, "avg", True)
    for r in regs:
        prepare(net, r)
    one, two = certify_mod.descent_budget(net, regs[:1]), certify_mod.descent_budget(net, regs)
    assert certify_mod.DESCENT_CHECKS < two <= one <= certify_mod.DESCENT_MAX_CHECKS
    assert two == pytest.approx(one / 2, abs=1) or one == certify_mod.DESCENT_MAX_CHECKS
    monkeypatch.setattr(certify_mod, "DESCENT_WORK", 1.0)
    assert certify_mod.descent_budget(net, regs) == certify_mod.DESCENT_CHECKS
    monkeypatch.setattr(certify_mod, "DESCENT_WORK", 1e15)
    assert certify_mod.descent_budget(net, regs) == certify_mod.DESCENT_MAX_CHECKS


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), pool=st.sampled_from(POOLS), residual=st.booleans())
def test_descent_from_wide_formats_stays_certified_and_never_exceeded(seed, pool, residual):
    """From a wide certified choice (uniform F = 20) the descent with the real check returns a
    choice the sound analysis certifies on every provable region, no dearer than the start, and no
    bit-exact execution on random, corner or attacked points drops a margin by more than its
    certified error bound."""
    rng, net, regs = _search_case(seed, pool, residual)
    for r in regs:
        prepare(net, r)
    provable = [r.provable for r in regs]
    if not any(provable):
        return

    def check(fc):
        prog, analyses, vs = certify_choice(net, regs, fc, "TRN")
        ok = all(v.certified for v, p in zip(vs, provable, strict=True) if p)
        return ok, program_cost(prog).hw, 0.0, analyses

    start = FracChoice.uniform(net, 20)
    ok, hw0, _, _ = check(start)
    assert ok
    res = sound_descent(net, start, hw0, check, "channel", min_frac=0)
    assert res.hw <= hw0 and (res.moves == 0) == (res.hw == hw0)
    prog, _, verdicts = certify_choice(net, regs, res.fracs, "TRN")
    assert program_cost(prog).hw == res.hw
    for reg, v in zip(regs, verdicts, strict=True):
        assert v.certified == reg.provable
        _check_program(net, reg, prog, v, rng)


def test_options_are_checked():
    rng, net, regs = _search_case(2, "none", False)
    with pytest.raises(UnsupportedError, match="greedy search chooses one format per layer"):
        certify_cnn(net, regs, search="greedy")
    with pytest.raises(ValueError, match="search must be one of"):
        certify_cnn(net, regs, search="anneal")
    with pytest.raises(ValueError, match="granularity must be one of"):
        certify_cnn(net, regs, granularity="pixel")


@pytest.mark.slow
def test_greedy_layer_is_todays_search():
    rng, net, regs = _search_case(4, "avg", True)
    rep = certify_cnn(net, regs, max_frac=20, search="greedy", granularity="layer")
    assert rep.search.method == "greedy" and rep.search.ilp is None
    assert rep.cost.hw == rep.search.greedy_cost


# ------------------------------------------------------------------------------------------
# benchmark network (reads ../shared: fails clearly without it)


def test_benchmark_model_bounds_analysis(shared_dir: Path):
    """The adjoint model on Convnet_maxpool's first region at a per-layer point bounds the analysis."""
    from aster_ext.frontend.onnx_import import load_onnx

    cnn = shared_dir / "benchmarks" / "cnn"
    net = load_onnx(cnn / "Convnet_maxpool.onnx")
    r = json.loads((cnn / "Convnet_maxpool.spec.json").read_text())["regions"][0]
    reg = prepare(net, Region("r0", np.array(r["lower"], float), np.array(r["upper"], float), r["label"]))
    fc = FracChoice.uniform(net, 8)
    model = margin_model(net, [reg], fc, "TRN", np.arange(0, 33))
    a = analyze_errors(net, reg.ranges, fc, "TRN", reg.label)
    true = -a.margin_err.lo[[k for _, k in model.rows]]
    est = model.evaluate(fc)
    assert np.all(est >= true * (1 - 1e-9))
    assert np.all(est <= 1.5 * true)
    blocks = knob_blocks(net)
    assert [b.kind for b in blocks] == ["input", "weight", "out", "weight", "out"]
    assert block_fracs(fc, blocks[1]).size == 32  # per output channel of Conv_0


def test_ilp_solves_after_another_highs_run_in_the_same_process():
    """HiGHS sizes one global scheduler per process; the CNN ILP asks for one thread. After a
    default-threads solve (what the dense modes run), it must still get a solution (it used to
    return model status "Not Set" and fall back to greedy)."""
    import highspy

    from aster_ext.ilp import new_highs

    def tiny(h) -> str:
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = 1, 0
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = np.array([1.0]), np.array([0.0]), np.array([1.0])
        lp.integrality_ = [highspy.HighsVarType.kInteger]
        h.setOptionValue("output_flag", False)
        h.passModel(lp)
        h.run()
        return h.modelStatusToString(h.getModelStatus())

    assert tiny(new_highs()) == "Optimal"
    assert tiny(new_highs(threads=1)) == "Optimal"
    assert tiny(new_highs(threads=2)) == "Optimal"
    rng, net, regs = _search_case(0, "max", False)
    tiny(new_highs())
    rep = certify_cnn(net, regs, max_frac=20, time_limit=30, max_rounds=2)
    assert rep.search.ilp is not None and rep.search.ilp.rounds
    assert rep.search.ilp.rounds[0].note != "no solution"


# ------------------------------------------------------------------------------------------
# an ε on the logits (--error with --task classify): the model's logit rows and the search


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@MODEL_CASES
def test_logit_rows_bound_the_analysis_at_their_point(seed, pool, residual, quant):
    """The logit-error rows (e_j <= ε, -e_j <= ε) of the interval-adjoint model are >= the
    analysis' logit error interval at the linearisation point (same argument as the margins);
    ``bound`` holds the analysis' own values; adding them leaves the margin rows unchanged; a
    region that is not provable gets logit rows only."""
    net, regs, fc = _model_case(seed, pool, residual)
    fracs = np.arange(0, 20)
    flags = [True, False]
    model = margin_model(net, regs, fc, quant, fracs, logit_eps=0.5, margins=flags)
    est = model.evaluate(fc)
    n_t = int(np.prod(net.op(ops.logits_node(net)).shape))
    assert len(model.rows) == (n_t - 1) + 2 * n_t + 2 * n_t
    only = margin_model(net, regs[:1], fc, quant, fracs)
    margin_rows = [i for i, (_, k) in enumerate(model.rows) if k >= 0]
    assert [model.rows[i] for i in margin_rows] == only.rows
    assert np.allclose(est[margin_rows], only.evaluate(fc), rtol=1e-12, atol=0)
    for i, ((ri, k), e) in enumerate(zip(model.rows, est, strict=True)):
        a = analyze_errors(net, regs[ri].ranges, fc, quant, regs[ri].label, logits=True)
        if k >= 0:
            true = -a.margin_err_forward.lo[k]
            assert model.margin_lb[i] == regs[ri].margin_lb[k] and model.bound[i] == true
        else:
            r = -1 - k  # the row's quantity: hi_j (r = j < n_t) or -lo_j (r = n_t + j)
            ends = [np.concatenate([iv.hi.reshape(-1), -iv.lo.reshape(-1)])[r]
                    for iv in (a.logit_err, a.err[ops.logits_node(net)])]  # fmt: skip
            assert model.margin_lb[i] == 0.5 and model.bound[i] == ends[0]
            true = ends[1]  # the forward rule, which the model mirrors
            assert true >= model.bound[i]
        assert e >= true - 1e-9 * abs(true) - 1e-15, (ri, k, e, true)


def test_backward_logit_rows_stay_close_to_the_bound():
    """With ``logits=True`` the analysis intersects the logits' forward error with the
    back-substituted bounds of ±e_j (never wider), and the backward model's logit rows at their
    point stay close to that bound (within 1.25x; random CNNs with unstable ReLUs, radius 0.05,
    F = 6), as the margin rows do."""
    ratios = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        net = random_cnn(rng, bool(seed % 2), POOLS[seed % 3])
        regs = [prepare(net, r) for r in _regions(rng, net, 1, 0.05)]
        fc = FracChoice.uniform(net, 6)
        a = analyze_errors(net, regs[0].ranges, fc, "TRN", regs[0].label, logits=True)
        fwd = a.err[ops.logits_node(net)]
        assert np.all(a.logit_err.lo >= fwd.lo) and np.all(a.logit_err.hi <= fwd.hi)
        kw = dict(analyses=[a], logit_eps=1.0, margins=[False])
        back = margin_model(net, regs, fc, "TRN", np.arange(0, 20), adjoints="backward", **kw)
        mb = back.evaluate(fc)
        assert np.array_equal(back.bound, np.concatenate([a.logit_err.hi, -a.logit_err.lo]))
        big = back.bound > 1e-12
        ratios += list(back.bound[big] / mb[big])
    assert ratios and max(ratios) <= 1.25, max(ratios)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 5])
def test_logit_target_search_is_certified_and_never_exceeded(seed):
    """certify_cnn(logit_eps=ε): every region's certified logit error <= ε, every provable region
    certified, no bit-exact run on random, corner and attacked points leaves ε or drops a margin
    by more than its bound, and the ILP never returns more than its uniformly raised start."""
    from aster_ext.graph_program.certify import logit_error_bound

    rng, net, regs = _search_case(seed, POOLS[seed % 3], bool(seed % 2))
    base = certify_cnn(net, regs, max_frac=20, search="greedy", granularity="layer")
    eps = max(logit_error_bound(net, analyze_errors(net, r.ranges, base.search.fracs, "TRN", r.label))
              for r in regs) / 8  # fmt: skip
    rep = certify_cnn(net, regs, max_frac=24, time_limit=10, max_rounds=4, logit_eps=eps)
    res = rep.search
    assert res.target_step is not None and res.target_step >= 1
    assert rep.cost.hw <= res.greedy_cost  # greedy_cost: the raised start's
    logits = ops.logits_node(net)
    for reg, v in zip(regs, res.verdicts, strict=True):
        assert v.certified == reg.provable
        _check_program(net, reg, res.program, v, rng)
        a = analyze_errors(net, reg.ranges, res.fracs, "TRN", reg.label, logits=True)
        assert logit_error_bound(net, a) <= eps  # forward ∩ backward, as certified
        x = _points(rng, reg, net)
        y = simulate_graph(res.program, x).value(res.program, logits)
        yr = ops.evaluate(net, x)[logits].reshape(x.shape[0], -1)
        assert np.max(np.abs(y - yr)) <= eps


def test_verify_accepts_the_backward_logit_bound_and_nothing_narrower():
    """verify's re-derivation (classify_verify.recheck_claims) bounds the logits as quantize does
    under --error (forward ∩ backward): claims equal to that bound pass although they are narrower
    than the forward intervals, claims narrower than it are reported."""
    from aster_ext.classify_verify import RegionClaim, recheck_claims

    rng = np.random.default_rng(6)  # a net where the backward logit bound is 1.38x tighter
    net = random_cnn(rng, False, "none")
    regs = [prepare(net, r) for r in _regions(rng, net, 1, 0.05)]
    prog, analyses, verdicts = certify_choice(net, regs, FracChoice.uniform(net, 6), "TRN", logits=True)
    a, v, r = analyses[0], verdicts[0], regs[0]
    fwd = a.err[ops.logits_node(net)]
    assert np.any(a.logit_err.hi < fwd.hi) or np.any(a.logit_err.lo > fwd.lo)
    mlb = np.where(np.arange(r.margin_lb.size) == r.label, -np.inf, r.margin_lb)
    meb = np.where(np.arange(r.margin_lb.size) == r.label, np.inf, -a.margin_err.lo)

    def claim(lo, hi):
        return RegionClaim(r.name, r.label, v.certified, True, mlb, meb, lo.reshape(-1), hi.reshape(-1))

    assert recheck_claims(net, prog, regs, [claim(a.logit_err.lo, a.logit_err.hi)]) == []
    narrow = a.logit_err.hi - 0.01 * (a.logit_err.hi - a.logit_err.lo)
    problems = recheck_claims(net, prog, regs, [claim(a.logit_err.lo, narrow)])
    assert any("logit error intervals narrower" in p for p in problems), problems


def test_patience_stops_a_search_that_no_longer_saves(monkeypatch):
    """ilp_search(patience=P): a search whose certified solves save less than PROGRESS stops after
    P solves in a row without progress (here every round returns a new certified choice 0.1 %
    cheaper: 1 + P rounds), and without patience runs all its rounds."""
    rng, net, regs = _search_case(11, "max", True)
    for r in regs:
        prepare(net, r)
    anchor = FracChoice.uniform(net, 12)
    costs = iter(range(10**6, 0, -1000))
    calls = []

    def fake_solve(blocks, fracs, groups, cost, rows, safety, time_limit, start=None, window=None):
        fc = start.copy()
        fc.input = 1 + len(calls)  # a new choice every round
        calls.append(1)
        return "optimal", fc, 0.0, 1, None

    def check(fc):
        _, analyses, _ = certify_choice(net, regs, anchor, "TRN")
        return True, next(costs), 1.0, analyses

    monkeypatch.setattr(ilp_mod, "solve_mip", fake_solve)
    out = ilp_mod.ilp_search(net, regs, anchor, "TRN", 0, 20, max_rounds=8, check=check, patience=3)
    assert len(out.rounds) == 3 and "stop: 3 solves without progress" in out.rounds[-1].note
    calls.clear()
    out = ilp_mod.ilp_search(net, regs, anchor, "TRN", 0, 20, max_rounds=8, check=check)
    assert len(out.rounds) == 8
