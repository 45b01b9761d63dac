"""Graph fixed-point programs: the vectorised simulator against an independent exact-rational
reference (random conv/pool/add graphs, random formats including wrapping ones), int64 vs object
paths, and the error analysis against simulated executions (it must never be exceeded)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext import ops
from aster_ext.graph_program.certify import Region, prepare, program_for, verdict
from aster_ext.graph_program.errors import ErrorAnalysis, analyze_errors, rounding_interval
from aster_ext.graph_program.program import FracChoice, build_program, uniform_program
from aster_ext.graph_program.simulate import simulate_graph, widest_intermediate_bits
from aster_ext.rigorous import Interval

from .graph_program_support import exact_real, random_cnn, reference_run

POOLS = ["none", "max", "avg"]


def _random_fracs(rng: np.random.Generator, net, lo: int, hi: int) -> FracChoice:
    fc = FracChoice.uniform(net, int(rng.integers(lo, hi + 1)))
    fc.input = int(rng.integers(lo, hi + 1))
    for d in (fc.out, fc.weight):
        for name in d:
            d[name] = rng.integers(lo, hi + 1, size=d[name].size).astype(np.int64)  # per channel
    for name in fc.const:
        fc.const[name] = int(rng.integers(0, hi + 2))
    return fc


def _random_program(rng, net, quant, small_ints: bool):
    fc = _random_fracs(rng, net, 0, 8)
    lo_i, hi_i = (1, 4) if small_ints else (8, 12)
    out_ib = {n: rng.integers(lo_i, hi_i + 1, size=v.size) for n, v in fc.out.items()}
    acc_ib = {n: rng.integers(lo_i, hi_i + 1, size=v.size) for n, v in fc.out.items()}
    return build_program(net, fc, out_ib, int(rng.integers(lo_i, hi_i + 1)), acc_ib, quant)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    pool=st.sampled_from(POOLS),
    pool_pad=st.integers(0, 1),
    residual=st.booleans(),
    quant=st.sampled_from(["TRN", "RND"]),
    small_ints=st.booleans(),
)
def test_simulator_matches_exact_reference(seed, pool, pool_pad, residual, quant, small_ints):
    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual, pool, pool_pad)
    prog = _random_program(rng, net, quant, small_ints)
    x = rng.uniform(-3, 3, size=(3, *net.input_shape))
    x[0] = np.round(x[0] * 4) / 4  # grid points: ties of RND
    tr = simulate_graph(prog, x)
    tr_obj = simulate_graph(prog, x, dtype="object")
    for b in range(x.shape[0]):
        ref = reference_run(prog, x[b])
        for name, vals in ref.items():
            frac = prog.out_t(name).frac
            got = [
                Fraction(int(r)) * Fraction(2) ** -int(f) for r, f in zip(tr.raw[name][b], frac, strict=True)
            ]
            assert got == vals, name
            assert np.array_equal(tr_obj.raw[name][b].astype(object), tr.raw[name][b].astype(object))
    if small_ints:  # wrapping programs are part of the comparison; make sure some do wrap
        assert tr.dtype in ("int64", "object")


def test_small_formats_do_wrap_and_still_match():
    """At least one random small-width program wraps, and the simulator still equals the reference."""
    wrapped = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        net = random_cnn(rng, True, "avg")
        prog = _random_program(rng, net, "TRN", True)
        x = rng.uniform(-3, 3, size=(2, *net.input_shape))
        tr = simulate_graph(prog, x)
        wrapped += sum(tr.overflows.values())
        ref = reference_run(prog, x[1])
        name = net.output_names[0]
        frac = prog.out_t(name).frac
        got = [Fraction(int(r)) * Fraction(2) ** -int(f) for r, f in zip(tr.raw[name][1], frac, strict=True)]
        assert got == ref[name]
    assert wrapped > 0


def test_object_path_for_wide_formats():
    rng = np.random.default_rng(3)
    net = random_cnn(rng, True, "max")
    fc = FracChoice.uniform(net, 40)
    ib = {n: np.full(v.size, 12) for n, v in fc.out.items()}
    prog = build_program(net, fc, ib, 12, {n: np.full(v.size, 14) for n, v in fc.out.items()})
    assert widest_intermediate_bits(prog) > 60
    x = rng.uniform(-1, 1, size=(2, *net.input_shape))
    tr = simulate_graph(prog, x)
    assert tr.dtype == "object"
    ref = reference_run(prog, x[0])
    name = net.output_names[0]
    got = [
        Fraction(int(r)) * Fraction(2) ** -int(f)
        for r, f in zip(tr.raw[name][0], prog.out_t(name).frac, strict=True)
    ]
    assert got == ref[name]
    with pytest.raises(ValueError, match="int64"):
        simulate_graph(prog, x, dtype="int64")


def test_rounding_interval_values():
    lo, hi = rounding_interval(np.array([8.0]), np.array([4]), "TRN")
    assert lo[0] <= -(2.0**-4 - 2.0**-8) and hi[0] == 0.0
    lo, hi = rounding_interval(np.array([8.0]), np.array([4]), "RND")
    assert lo[0] <= -(2.0**-5) + 2.0**-8 and hi[0] >= 2.0**-5  # a tie rounds up by exactly 2^-5
    lo, hi = rounding_interval(np.array([3.0]), np.array([4]), "TRN")
    assert lo[0] == 0.0 and hi[0] == 0.0


# ------------------------------------------------------------------------------------------
# error analysis: the bound must hold on every simulated execution


def _box(rng, net):
    centre = rng.uniform(-1, 1, size=net.input_shape)
    rad = float(rng.choice([0.0, 0.01, 0.1, 0.5]))
    return centre - rad, centre + rad


def _points(rng, lo, hi, n_rand=40, n_corner=24):
    pts = [lo, hi, (lo + hi) / 2]
    pts += list(rng.uniform(lo, hi, size=(n_rand, *lo.shape)))
    pts += list(np.where(rng.integers(0, 2, size=(n_corner, *lo.shape)) == 1, hi, lo))
    return np.stack(pts)


def _check_bounds(net, region, fc, quant, rng):
    a = analyze_errors(net, region.ranges, fc, quant, region.label)
    prog = program_for(net, fc, [a], quant)
    x = _points(rng, region.lower, region.upper)
    tr = simulate_graph(prog, x)
    assert sum(tr.overflows.values()) == 0, {k: v for k, v in tr.overflows.items() if v}
    real = ops.evaluate(net, x)
    for name, iv in a.err.items():
        if name == net.input_name:
            continue
        obs = tr.value(prog, name) - real[name].reshape(x.shape[0], -1)
        tol = 1e-9 * (1 + np.abs(real[name].reshape(x.shape[0], -1)))  # float64 reference error
        assert np.all(obs >= iv.lo[None, :] - tol), (name, float((iv.lo[None, :] - obs).max()))
        assert np.all(obs <= iv.hi[None, :] + tol), (name, float((obs - iv.hi[None, :]).max()))
    logits = ops.logits_node(net)
    y, yr = tr.value(prog, logits), real[logits].reshape(x.shape[0], -1)
    lab = region.label
    dm = (y[:, [lab]] - y) - (yr[:, [lab]] - yr)
    assert np.all(dm >= a.margin_err.lo[None, :] - 1e-9)
    assert np.all(dm <= a.margin_err.hi[None, :] + 1e-9)
    v = verdict(net, region, a, prog)
    if v.certified:
        assert np.all(np.argmax(y, axis=1) == lab)
        assert np.all(np.delete(y, lab, axis=1) < y[:, [lab]])
    return a


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    pool=st.sampled_from(POOLS),
    pool_pad=st.integers(0, 1),
    residual=st.booleans(),
    quant=st.sampled_from(["TRN", "RND"]),
)
def test_error_bound_never_exceeded(seed, pool, pool_pad, residual, quant):
    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual, pool, pool_pad)
    lo, hi = _box(rng, net)
    label = int(np.argmax(ops.evaluate(net, ((lo + hi) / 2)[None])[ops.logits_node(net)][0]))
    region = prepare(net, Region("r", lo, hi, label))
    fc = _random_fracs(rng, net, 1, 10)
    _check_bounds(net, region, fc, quant, rng)


def test_margin_bound_tighter_than_per_logit_difference():
    rng = np.random.default_rng(11)
    net = random_cnn(rng, True, "max")
    lo, hi = _box(rng, net)
    region = prepare(net, Region("r", lo, hi, 0))
    a = _check_bounds(net, region, FracChoice.uniform(net, 4), "TRN", rng)
    e = a.err[ops.logits_node(net)]
    per_logit = e.hi[1:] - e.lo[0]  # downward error bound from two per-logit bounds
    assert np.all(-a.margin_err.lo[1:] <= per_logit + 1e-12)
    assert np.any(-a.margin_err.lo[1:] < per_logit)


def test_exact_cross_check_tiny():
    """Exact rationals end to end: program values (reference semantics) minus the exact real
    network lie in the float-computed error intervals, on random and corner points."""
    rng = np.random.default_rng(5)
    for pool, residual in (("max", True), ("avg", False)):
        net = random_cnn(rng, residual, pool)
        lo, hi = _box(rng, net)
        region = prepare(net, Region("r", lo, hi, 1))
        fc = _random_fracs(rng, net, 2, 6)
        a = analyze_errors(net, region.ranges, fc, "RND", 1)
        prog = program_for(net, fc, [a], "RND")
        for x in _points(rng, lo, hi, n_rand=3, n_corner=3):
            fixed = reference_run(prog, x)
            real = exact_real(net, x)
            for name, iv in a.err.items():
                for j, (fv, rv) in enumerate(zip(fixed[name], real[name], strict=True)):
                    assert Fraction(float(iv.lo[j])) <= fv - rv <= Fraction(float(iv.hi[j])), (name, j)


def test_uniform_program_is_hls_like():
    rng = np.random.default_rng(2)
    net = random_cnn(rng, False, "avg")
    prog = uniform_program(net, 16, 6)
    assert set(map(int, prog.input_t.frac)) == {10}
    for nd in prog.nodes.values():
        assert set(map(int, nd.out_t.width)) == {16}
        if nd.weight_width is not None:
            assert set(map(int, nd.weight_width)) == {16}
    x = rng.uniform(-1, 1, size=(2, *net.input_shape))
    ref = reference_run(prog, x[0])
    tr = simulate_graph(prog, x)
    name = net.output_names[0]
    got = [
        Fraction(int(r)) * Fraction(2) ** -int(f)
        for r, f in zip(tr.raw[name][0], prog.out_t(name).frac, strict=True)
    ]
    assert got == ref[name]


def test_rnd_tie_reaches_upper_end_of_rounding_interval():
    """A value exactly halfway between grid points rounds up by exactly 2^-(F+1) under AP_RND;
    the rounding interval must contain it (regression: it once excluded that end)."""
    from aster_ext.fixedpoint import convert

    raw = np.array([3], dtype=np.int64)  # 3·2^-3 = 0.375 assigned to F = 2: tie between 0.25 and 0.5
    out = int(convert(raw, 3, 16, 2, "RND", "WRAP")[0])
    err = out * 2.0**-2 - 3 * 2.0**-3
    lo, hi = rounding_interval(np.array([3.0]), np.array([2]), "RND")
    assert err == 2.0**-3 and lo[0] <= err <= hi[0]


@pytest.mark.slow
def test_search_certifies_and_program_keeps_labels():
    from aster_ext.graph_program.certify import certify_cnn

    rng = np.random.default_rng(21)
    net = random_cnn(rng, True, "avg")
    lo, hi = _box(rng, net)
    centre = (lo + hi) / 2
    y = ops.evaluate(net, centre[None])[ops.logits_node(net)][0]
    label = int(np.argmax(y))
    regions = [
        Region("tight", centre - 1e-3, centre + 1e-3, label),
        Region("wrong", centre - 1e-3, centre + 1e-3, (label + 1) % 3),
    ]
    rep = certify_cnn(net, regions, max_frac=24, search="greedy", granularity="layer")
    v_tight, v_wrong = rep.search.verdicts
    assert v_tight.certified and v_tight.reason == ""
    assert not v_wrong.certified and v_wrong.reason == "real network not provably robust"
    x = _points(rng, centre - 1e-3, centre + 1e-3, n_rand=100, n_corner=100)
    tr = simulate_graph(rep.search.program, x)
    assert sum(tr.overflows.values()) == 0
    assert np.all(np.argmax(tr.value(rep.search.program, ops.logits_node(net)), axis=1) == label)
    # greedy descent never ends above the global F it started from
    assert rep.search.global_frac is not None
    assert all(int(v.max()) <= rep.search.global_frac for v in rep.search.fracs.out.values())
    assert rep.cost.mult_count > 0 and rep.cost.adder_bits > 0


def test_favourable_error_never_certifies_an_unprovable_region():
    """Truncation can bias the program's margin upwards (err_lo > 0); a region whose real margin
    bound is not positive must still be "not provably robust", never certified (CI found seed 348
    of the ILP search test certifying one)."""
    rng = np.random.default_rng(0)
    net = random_cnn(rng, False, "none")
    lo = rng.uniform(-1, 1, size=net.input_shape)
    region = Region("r", lo, lo, 0, margin_lb=np.array([np.inf, -0.0037, 3.9]))
    err_on_margin = Interval(np.array([0.0, 0.046, 0.01]), np.array([0.0, 0.05, 0.02]))
    ana = ErrorAnalysis(err={}, value={}, margin_err=err_on_margin)
    v = verdict(net, region, ana)
    assert v.slack > 0  # the program's own margin is provably positive here...
    assert not v.certified and v.reason == "real network not provably robust"  # ...but the real one is not
    region.margin_lb = np.array([np.inf, 0.001, 3.9])
    assert verdict(net, region, ana).certified


# ------------------------------------------------------------------------------------------
# every node kind a graph program has: the zoo graphs of the C++ tests (grouped, depthwise,
# dilated, strided conv 2-D / 1-D with asymmetric pads; padded max / avg pools with both
# count_include_pad; global pools; residual add; concat on channels and on flat vectors;
# transpose; flatten; dense; relu) under the same never-exceeded check as the random CNNs


def _zoo_region(rng, net, rad: float) -> Region:
    centre = rng.uniform(-1, 1, size=net.input_shape)
    lo, hi = centre - rad, centre + rad
    label = int(np.argmax(ops.evaluate(net, centre[None])[ops.logits_node(net)][0]))
    return prepare(net, Region("r", lo, hi, label))


def _zoo_check(zoo, seed: int, quant: str, rad: float) -> None:
    rng = np.random.default_rng(seed)
    net = zoo(rng)
    region = _zoo_region(rng, net, rad)
    a = _check_bounds(net, region, _random_fracs(rng, net, 1, 10), quant, rng)
    # the corner that minimises the relaxed lower bound of each margin: where a margin's error
    # meets its steepest real slope
    tgt = ops.logits_node(net)
    lam = ops.interpreter.margin_matrix(a.margin_err.lo.size, region.label)
    coeffs, _ = ops.backsubstitute(region.ranges, tgt, lam, upper=False)
    m = coeffs[net.input_name].reshape(lam.shape[0], -1)
    lo, hi = region.lower.reshape(-1), region.upper.reshape(-1)
    adv = np.where(m > 0, lo[None, :], hi[None, :]).reshape(-1, *net.input_shape)
    fc = _random_fracs(np.random.default_rng(seed + 1), net, 1, 10)
    a2 = analyze_errors(net, region.ranges, fc, quant, region.label)
    prog = program_for(net, fc, [a2], quant)
    tr = simulate_graph(prog, adv)
    assert sum(tr.overflows.values()) == 0
    y = tr.value(prog, tgt)
    yr = ops.evaluate(net, adv)[tgt].reshape(adv.shape[0], -1)
    lab = region.label
    dm = (y[:, [lab]] - y) - (yr[:, [lab]] - yr)
    assert np.all(dm >= a2.margin_err.lo[None, :] - 1e-9) and np.all(dm <= a2.margin_err.hi[None, :] + 1e-9)


def test_zoo_covers_every_graph_program_kind():
    """The zoo graphs hold every node kind a graph program accepts, so the checks below reach them."""
    from .graph_hls_support import zoo_1d, zoo_2d

    rng = np.random.default_rng(0)
    kinds = {op.kind for z in (zoo_2d, zoo_1d) for op in z(rng).ops()}
    wanted = {"input", "conv2d", "conv1d", "act", "maxpool", "avgpool", "add", "concat", "transpose",
              "flatten", "affine"}  # fmt: skip
    assert wanted <= kinds, sorted(wanted - kinds)


@pytest.mark.parametrize("quant", ["TRN", "RND"])
@pytest.mark.parametrize("zoo_name", ["zoo_2d", "zoo_1d"])
def test_error_bound_never_exceeded_on_every_node_kind(zoo_name, quant):
    from . import graph_hls_support

    _zoo_check(getattr(graph_hls_support, zoo_name), 3, quant, 0.1)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    zoo_name=st.sampled_from(["zoo_2d", "zoo_1d"]),
    quant=st.sampled_from(["TRN", "RND"]),
    rad=st.sampled_from([0.0, 0.01, 0.1, 0.5]),
)
def test_error_bound_never_exceeded_on_every_node_kind_random(seed, zoo_name, quant, rad):
    from . import graph_hls_support

    _zoo_check(getattr(graph_hls_support, zoo_name), seed, quant, rad)


def test_exact_cross_check_tiny_zoo():
    """Exact rationals on the zoo graphs: program values (the simulator's raw integers times
    2^-F, exact; the simulator itself is checked bit for bit against the compiled C++ on these
    graphs in test_graph_hls) minus the exact real network lie in the float-computed error
    intervals of every node, on random and corner points."""
    from .graph_hls_support import zoo_1d, zoo_2d

    rng = np.random.default_rng(7)
    for zoo in (zoo_1d, zoo_2d):
        net = zoo(rng)
        region = _zoo_region(rng, net, 0.05)
        fc = _random_fracs(rng, net, 2, 6)
        a = analyze_errors(net, region.ranges, fc, "RND", region.label)
        prog = program_for(net, fc, [a], "RND")
        xs = _points(rng, region.lower, region.upper, n_rand=2, n_corner=2)
        tr = simulate_graph(prog, xs)
        for i, x in enumerate(xs):
            real = exact_real(net, x)
            for name, iv in a.err.items():
                if name == net.input_name:
                    continue
                fr = prog.out_t(name).frac
                for j, rv in enumerate(real[name]):
                    fv = Fraction(int(tr.raw[name][i][j])) * Fraction(2) ** -int(fr[j])
                    assert Fraction(float(iv.lo[j])) <= fv - rv <= Fraction(float(iv.hi[j])), (name, j)


def _pooled_error_samples(rng, windows, real, err, n):
    """max(x + e) - max(x) per window for n random points of the boxes (corners half the time)."""
    pick = rng.random((n, real.lo.size))
    corner = rng.random((n, 1)) < 0.5
    pick = np.where(corner, np.round(pick), pick)
    x = real.lo + pick * (real.hi - real.lo)
    pick_e = rng.random((n, err.lo.size))
    pick_e = np.where(corner, np.round(pick_e), pick_e)
    e = err.lo + pick_e * (err.hi - err.lo)
    valid = windows >= 0
    w = np.maximum(windows, 0)
    real_max = np.where(valid, x[:, w], -np.inf).max(axis=2)
    impl_max = np.where(valid, (x + e)[:, w], -np.inf).max(axis=2)
    return impl_max - real_max


def test_maxpool_error_reads_only_possible_maximisers():
    """max x~ - max x lies in [min e_lo over the elements that can be the real maximum, max e_hi over
    those that can be the program's]: an element whose range lies below another's never sets it,
    however large its own error (the whole window's hull would be [-3, 2] here)."""
    from aster_ext.backsub import max_candidates

    windows = np.array([[0, 1, 2, -1]])
    real = Interval(np.array([5.0, 0.0, 4.5]), np.array([6.0, 1.0, 5.5]))
    err = Interval(np.array([-0.1, -3.0, -0.2]), np.array([0.0, 2.0, 0.1]))
    real_cand, impl_cand = max_candidates(windows, real, err)
    assert real_cand.tolist() == [[True, False, True, False]]
    assert impl_cand.tolist() == [[True, False, True, False]]
    d = _pooled_error_samples(np.random.default_rng(0), windows, real, err, 20000)
    assert d.min() >= -0.2 - 1e-12 and d.max() <= 0.1 + 1e-12  # float sums of the samples


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 5), spread=st.floats(0.01, 3.0))
def test_maxpool_candidates_enclose_sampled_pooled_errors(seed, size, spread):
    """Random windows (with padding slots), real ranges and error intervals: every sampled pooled
    error lies in the candidates' interval, which is never wider than the whole window's."""
    from aster_ext.backsub import max_candidates

    rng = np.random.default_rng(seed)
    n = 8
    c = rng.normal(size=n)
    real = Interval(c - rng.random(n) * spread, c + rng.random(n) * spread)
    ec = rng.normal(size=n) * spread / 2
    err = Interval(ec - rng.random(n) * spread / 2, ec + rng.random(n) * spread / 2)
    windows = np.stack([rng.choice(n, size, replace=False) for _ in range(6)])
    windows = np.concatenate([windows, np.full((6, 1), -1)], axis=1)
    real_cand, impl_cand = max_candidates(windows, real, err)
    safe = np.maximum(windows, 0)
    lo = np.where(real_cand, err.lo[safe], np.inf).min(axis=1)
    hi = np.where(impl_cand, err.hi[safe], -np.inf).max(axis=1)
    valid = windows >= 0
    assert np.all(lo >= np.where(valid, err.lo[safe], np.inf).min(axis=1))
    assert np.all(hi <= np.where(valid, err.hi[safe], -np.inf).max(axis=1))
    d = _pooled_error_samples(rng, windows, real, err, 4000)
    assert np.all(d >= lo - 1e-12) and np.all(d <= hi + 1e-12)
