"""Table activations (every activation but relu/identity) in graph programs: the error analysis
must never be exceeded by a bit-exact execution, the slope sets must contain σ', one
implementation is shared by every region, programs round-trip through program.json (a foreign
implementation is refused), the C++ is bit-exact with the simulator, and a tanh CNN classifier
goes through quantize and verify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext import ops
from aster_ext.activations import get_activation
from aster_ext.codegen.graph_hls import generate_graph_hls, graph_cpp_matches_simulator
from aster_ext.errors import UserError
from aster_ext.graph_program.act_tables import SlopeGrid
from aster_ext.graph_program.certify import Region, certify_choice, prepare, program_cost
from aster_ext.graph_program.errors import analyze_errors, deltas_for
from aster_ext.graph_program.io import graph_program_from_json, graph_program_to_json
from aster_ext.graph_program.program import FracChoice, is_table_act
from aster_ext.graph_program.simulate import simulate_graph
from aster_ext.ir import ACTIVATIONS
from aster_ext.ops.activation import activation_of_op

from .cpp_support import require_toolchain
from .graph_program_support import random_cnn
from .test_graph_program import _box, _check_bounds, _random_fracs

TABLE_ACTS = sorted(ACTIVATIONS - {"relu", "identity"})


def _net_and_region(seed: int, acts: tuple[str, str, str], residual: bool = True, pool: str = "max"):
    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual, pool, seed % 2, acts=acts)
    lo, hi = _box(rng, net)
    label = int(np.argmax(ops.evaluate(net, ((lo + hi) / 2)[None])[ops.logits_node(net)][0]))
    return rng, net, prepare(net, Region("r", lo, hi, label))


@pytest.mark.parametrize("act", TABLE_ACTS)
def test_bound_holds_with_each_table_activation(act: str) -> None:
    """Every node's error interval contains every simulated error (random, corner and centre
    points), with the activation after the first conv, the residual add and the hidden dense."""
    rng, net, region = _net_and_region(7, (act, act, act))
    assert sum(is_table_act(op) for op in net.ops()) == 3
    a = _check_bounds(net, region, _random_fracs(rng, net, 2, 10), "TRN", rng)
    assert set(a.act_impls) == {"relu1", "relu2", "relu3"}


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    acts=st.tuples(*[st.sampled_from([*TABLE_ACTS, "relu"])] * 3),
    pool=st.sampled_from(["none", "max", "avg"]),
    residual=st.booleans(),
    quant=st.sampled_from(["TRN", "RND"]),
)
def test_bound_never_exceeded_random_activations(seed, acts, pool, residual, quant) -> None:
    rng, net, region = _net_and_region(seed, acts, residual, pool)
    _check_bounds(net, region, _random_fracs(rng, net, 0, 12), quant, rng)


@pytest.mark.parametrize("act", ["tanh", "gelu", "silu", "elu", "hard_tanh", "leaky_relu"])
def test_slope_grid_contains_the_derivative(act: str) -> None:
    """Grid answers contain σ' at points of each interval and the direct enclosure, inside the
    grid and beyond it (fallback)."""
    sigma = get_activation(act)
    grid = SlopeGrid.build(sigma, -3.0, 2.0, cells=256)
    rng = np.random.default_rng(0)
    lo = rng.uniform(-6, 5, 300)
    hi = lo + rng.choice([0.0, 1e-3, 0.1, 2.0], 300)
    s = grid.slopes(lo, hi)
    direct_lo, direct_hi = sigma.slope(lo, hi)
    assert np.all(s.lo <= direct_lo) and np.all(s.hi >= direct_hi)
    t = rng.uniform(0, 1, (20, 300))
    d = sigma.df_float(lo[None, :] + t * (hi - lo)[None, :])
    assert np.all(d >= s.lo - 1e-12) and np.all(d <= s.hi + 1e-12)
    # far beside the grid (the tails) and beyond them (per-element fallback)
    far_lo = np.array([-1e9, -50.0, 40.0, 1e8, -2e12, 3.0])
    far_hi = np.array([-1e8, -20.0, 1e9, 1e10, -1e12, 5e12])
    s = grid.slopes(far_lo, far_hi)
    direct_lo, direct_hi = sigma.slope(far_lo, far_hi)
    assert np.all(s.lo <= direct_lo) and np.all(s.hi >= direct_hi)
    pts = far_lo[None, :] + rng.uniform(0, 1, (50, far_lo.size)) * (far_hi - far_lo)[None, :]
    d = sigma.df_float(pts)
    assert np.all(d >= s.lo - 1e-12) and np.all(d <= s.hi + 1e-12)


def test_regions_share_one_implementation_per_node() -> None:
    """Several regions analysed through one cache get the same implementation objects, and the
    program is built from them; separate caches registered differently are refused."""
    rng, net, r1 = _net_and_region(3, ("tanh", "sigmoid", "gelu"))
    lo2, hi2 = r1.lower + 0.3, r1.upper + 0.3
    lab2 = int(np.argmax(ops.evaluate(net, ((lo2 + hi2) / 2)[None])[ops.logits_node(net)][0]))
    r2 = prepare(net, Region("r2", lo2, hi2, lab2))
    fc = FracChoice.uniform(net, 8)
    prog, analyses, _ = certify_choice(net, [r1, r2], fc, "TRN")
    for name, impl in analyses[0].act_impls.items():
        assert analyses[1].act_impls[name] is impl and prog.nodes[name].act_impl is impl
    from aster_ext.graph_program.certify import program_for

    a1 = analyze_errors(net, r1.ranges, fc, "TRN", r1.label, deltas_for(net, [r1]))
    a2 = analyze_errors(net, r2.ranges, fc, "TRN", r2.label, deltas_for(net, [r2]))
    if any(a1.act_impls[n] is not a2.act_impls[n] for n in a1.act_impls):
        with pytest.raises(ValueError, match="different activation implementations"):
            program_for(net, fc, [a1, a2], "TRN")
    cost = program_cost(prog)
    assert cost.table_bits > 0 and cost.hw == cost.mult_operand_bits + cost.adder_bits + cost.table_bits


def test_program_json_round_trip_with_tables() -> None:
    rng, net, region = _net_and_region(5, ("tanh", "leaky_relu", "softplus"))
    fc = _random_fracs(rng, net, 3, 9)
    prog, _, _ = certify_choice(net, [region], fc, "RND")
    data = json.loads(json.dumps(graph_program_to_json(prog)))
    back = graph_program_from_json(data, net)
    x = np.random.default_rng(1).uniform(region.lower, region.upper, (50, *region.lower.shape))
    t1, t2 = simulate_graph(prog, x), simulate_graph(back, x)
    for name in prog.nodes:
        assert np.array_equal(np.asarray(t1.raw[name], dtype=object), np.asarray(t2.raw[name], dtype=object))
    bad = json.loads(json.dumps(data))
    bad["nodes"]["relu1"]["act_impl"]["activation"] = "sigmoid"
    with pytest.raises(UserError, match="implements"):
        graph_program_from_json(bad, net)
    bad = json.loads(json.dumps(data))
    del bad["nodes"]["relu3"]["act_impl"]
    with pytest.raises(UserError, match="act_impl"):
        graph_program_from_json(bad, net)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("acts", "quant"),
    [(("tanh", "sigmoid", "gelu"), "TRN"), (("hard_tanh", "leaky_relu", "silu"), "RND"),
     (("elu", "softplus", "hard_sigmoid"), "TRN")],
)  # fmt: skip
def test_cpp_bit_exact_with_table_activations(tmp_path: Path, acts, quant) -> None:
    require_toolchain()
    rng, net, region = _net_and_region(11, acts)
    prog, _, _ = certify_choice(net, [region], _random_fracs(rng, net, 3, 10), quant)
    generate_graph_hls(prog, tmp_path, "net")
    n = int(np.prod(net.input_shape))
    ok, msg = graph_cpp_matches_simulator(prog, tmp_path, -2 * np.ones(n), 2 * np.ones(n), 0, 60)
    assert ok, msg


def test_activation_of_reads_parameters() -> None:
    rng = np.random.default_rng(0)
    net = random_cnn(rng, False, "none", acts=("leaky_relu", "relu", "elu"))
    op = net.op("relu1")
    op.attrs["alpha"] = 0.2
    assert activation_of_op(op) == get_activation("leaky_relu", 0.2)


@pytest.mark.slow
def test_tanh_cnn_quantize_and_verify(tmp_path: Path, capsys) -> None:
    """A conv -> tanh -> max-pool -> dense classifier end to end: certified regions, program.json
    with the table, C++ bit-exact, verify passes (gradient search by the chain rule on smooth σ)."""
    from aster_ext.cli import main

    from .test_classify_cli import tiny_cnn, write_spec

    d = tmp_path / "models"
    d.mkdir()
    model = tiny_cnn(d / "tanh_cnn.onnx", act="Tanh")
    write_spec(model, whole_box_region=False)
    out = tmp_path / "out"
    assert main(["quantize", str(model), "--out", str(out), "--quiet"]) == 0
    assert "certified top-1 on" in capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    assert any(e["certified"] for e in r["regions"])
    prog = json.loads((out / "program.json").read_text())
    tab = [n for n in prog["nodes"].values() if "act_impl" in n]
    assert len(tab) == 1 and tab[0]["act_impl"]["activation"] == "tanh"
    assert main(["verify", str(out), "--samples", "40", "--search-iters", "3", "--quiet"]) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["violations"] == 0 and v["bit_exact_cpp"] is True


@pytest.mark.parametrize(
    ("acts", "quant"), [(("tanh", "sigmoid", "gelu"), "RND"), (("hard_tanh", "elu", "silu"), "TRN")]
)
def test_exact_cross_check_with_table_activations(acts, quant) -> None:
    """Exact rationals end to end (σ of the real network to 300 bits): the program's values
    (reference semantics, the table applied to exact raw integers) minus the real network's lie
    in the float-computed error intervals of every node, on random and corner points."""
    from fractions import Fraction

    from aster_ext.graph_program.certify import program_for

    from .graph_program_support import exact_real, reference_run
    from .test_graph_program import _points

    rng, net, region = _net_and_region(13, acts, residual=True, pool="max")
    fc = _random_fracs(rng, net, 2, 7)
    a = analyze_errors(net, region.ranges, fc, quant, region.label)
    prog = program_for(net, fc, [a], quant)
    for x in _points(rng, region.lower, region.upper, n_rand=2, n_corner=2):
        fixed = reference_run(prog, x)
        real = exact_real(net, x)
        for name, iv in a.err.items():
            for j, (fv, rv) in enumerate(zip(fixed[name], real[name], strict=True)):
                assert Fraction(float(iv.lo[j])) <= fv - rv <= Fraction(float(iv.hi[j])), (name, j)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "acts"),
    [(0, ("tanh", "relu", "sigmoid")), (1, ("gelu", "silu", "elu")),
     (2, ("leaky_relu", "softplus", "hard_tanh")), (3, ("hard_sigmoid", "gelu_tanh", "tanh"))],
)  # fmt: skip
def test_search_then_attack_with_table_activations(seed: int, acts) -> None:
    """The whole search (greedy, ILP, descent) on random CNNs with table activations, then samples,
    corners, gradient (chain rule through σ') and local search against every region's claims: no
    margin below its certified bound, no logit outside its interval, certified labels kept."""
    from .test_classify_cli import search_and_attack

    search_and_attack(seed, acts)


@pytest.mark.parametrize(
    "acts", [("tanh", "gelu", "sigmoid"), ("softplus", "silu", "elu"), ("gelu_tanh", "relu", "tanh")]
)
def test_margin_gradients_of_smooth_networks(acts) -> None:
    """verify's search direction on smooth networks (the chain rule on the point context) equals
    central differences of the float network to their own accuracy, through convs, max-pool,
    residual adds and dense layers."""
    from aster_ext.ops import attack

    rng = np.random.default_rng(len(acts[0]))
    net = random_cnn(rng, True, "max", acts=acts)
    x = rng.uniform(-1, 1, int(np.prod(net.input_shape)))
    g = attack.margin_gradients(net, x, 0)
    node = ops.logits_node(net)
    h = 1e-6
    eye = np.eye(x.size) * h
    yp = ops.evaluate(net, (x + eye).reshape(-1, *net.input_shape), upto=node)[node].reshape(x.size, -1)
    ym = ops.evaluate(net, (x - eye).reshape(-1, *net.input_shape), upto=node)[node].reshape(x.size, -1)
    central = (((yp[:, [0]] - yp) - (ym[:, [0]] - ym)) / (2 * h))[:, 1:].T
    assert np.max(np.abs(central)) > 1e-3  # a real gradient, not all zeros
    assert np.allclose(g, central, atol=1e-8, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 4, 5])
def test_every_node_kind_with_table_activations(tmp_path: Path, seed: int) -> None:
    """The C++ tests' zoo graphs (grouped / depthwise / dilated / strided 2-D and 1-D convs with
    asymmetric pads, padded max / avg pools, global pools, concat, transpose, flatten, dense)
    with random table activations in place of their ReLUs: every node's error interval holds on
    bit-exact executions, and the C++ is bit-exact with the simulator."""
    from .graph_hls_support import zoo_1d, zoo_2d

    rng = np.random.default_rng(seed)
    net = (zoo_2d if seed % 2 == 0 else zoo_1d)(rng)
    for op in net.ops():
        if op.kind == "act":
            op.attrs["fn"] = str(rng.choice(TABLE_ACTS))
    n = int(np.prod(net.input_shape))
    centre, rad = rng.uniform(-1, 1, n), float(rng.choice([0.01, 0.1, 0.5]))
    lo, hi = centre - rad, centre + rad
    label = int(np.argmax(ops.evaluate(net, centre[None])[ops.logits_node(net)][0]))
    region = prepare(net, Region("r", lo, hi, label))
    fc, quant = _random_fracs(rng, net, 2, 10), ["TRN", "RND"][seed % 2]
    _check_bounds(net, region, fc, quant, rng)
    require_toolchain()
    prog, _, _ = certify_choice(net, [region], fc, quant)
    generate_graph_hls(prog, tmp_path, "net")
    ok, msg = graph_cpp_matches_simulator(prog, tmp_path, -2 * np.ones(n), 2 * np.ones(n), 0, 40)
    assert ok, msg
