"""``aster-ext quantize --task regress`` on networks the dense chain cannot hold (CNNs): an ε on
every logit over the whole input box, certified on the graph path (classify.py, *Whole box*),
and ``aster-ext verify`` on such outputs. Attempts to break it: random CNNs under sampling,
corners and local search, an exact rational cross-check at the worst inputs found, tampered
reports; the CLI's routing and option errors."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext import ops
from aster_ext.classify import WHOLE_BOX, region_entry
from aster_ext.classify_verify import SimulatorLogits, read_claims, verify_regions
from aster_ext.cli import main, needs_graph_analysis
from aster_ext.graph_program.certify import Region, certify_cnn, logit_error_bound
from aster_ext.graph_program.simulate import simulate_graph

from .graph_program_support import exact_real, random_cnn, reference_run
from .test_classify_cli import tiny_cnn, tiny_mlp


def _run(args: list) -> int:
    return main([str(a) for a in args])


def _box_spec(model: Path) -> Path:
    """NAME.spec.json beside the model: the box [0, 1]^n_in, no task, no regions."""
    from aster_ext.frontend.onnx_import import load_onnx

    n = load_onnx(model).n_inputs
    path = model.with_name(model.stem + ".spec.json")
    path.write_text(json.dumps({"name": model.stem, "input_lower": [0.0] * n, "input_upper": [1.0] * n}))
    return path


@pytest.fixture
def box_cnn(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    model = tiny_cnn(d / "tiny_cnn.onnx", seed=3)
    _box_spec(model)
    return model


def _whole_box(net) -> Region:
    n = int(np.prod(net.input_shape))
    return Region(WHOLE_BOX, np.zeros(n), np.ones(n), None)


def _certify_box(net, eps: float):
    region = _whole_box(net)
    rep = certify_cnn(net, [region], logit_eps=eps, max_rounds=3, descent_checks=30)
    return region, rep


# ------------------------------------------------------------------------------------------------
# the library: whole-box certificates on random CNNs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, *(pytest.param(s, marks=pytest.mark.slow) for s in (2, 3, 4, 5))])
def test_whole_box_random_cnns_no_violation(seed: int) -> None:
    """Random small CNNs (max/avg pool, residual adds, padding), ε = 1% of the logit range over
    the box: the certified program keeps every logit within its claimed interval (itself within ε)
    on random inputs, corners, the centre and the local search; no overflow; the ILP's choice is
    no costlier than the uniform start it was raised from."""
    rng = np.random.default_rng(500 + seed)
    net = random_cnn(rng, residual=bool(seed % 2), pool=["max", "avg", "none"][seed % 3], pool_pad=seed % 2)
    node = ops.logits_node(net)
    xs = rng.random((300, int(np.prod(net.input_shape))))
    y = ops.evaluate(net, xs, upto=node)[node].reshape(300, -1)
    eps = 0.01 * float(y.max() - y.min()) + 1e-3
    region, rep = _certify_box(net, eps)
    res = rep.search
    assert res.verdicts[0].label is None and res.verdicts[0].certified
    assert logit_error_bound(net, res.analyses[0]) <= eps
    assert rep.cost.hw <= res.greedy_cost
    entry = region_entry(net, region, res.verdicts[0], res.analyses[0], eps)
    assert entry["certified"] and entry["label"] is None and entry["provable"] is False
    claims = read_claims({"task": "regress", "regions": [entry]}, y.shape[1], "test")
    sim = SimulatorLogits(res.program)
    [check] = verify_regions(net, [region], claims, sim, 300, 12, seed)
    assert check.violations == 0, check.kinds
    assert sim.overflows == 0
    assert check.max_logit_error <= eps and check.max_drop_ratio <= 1.0
    assert check.checked > 300  # samples + corners + the local search's rounds


def test_logit_target_beyond_the_search_range_widens_it(monkeypatch) -> None:
    """A target that needs more fractional bits than ``max_frac`` (here 2): the uniform raise goes
    on up to WIDEST_FRAC, the ILP's range ends at the F it reached, the program meets the target
    and never exceeds it on samples; with WIDEST_FRAC at ``max_frac`` the same call is infeasible
    with the smallest bound it found."""
    from aster_ext.errors import InfeasibleError
    from aster_ext.graph_program import certify as certify_mod

    rng = np.random.default_rng(503)
    net = random_cnn(rng, residual=True, pool="max")
    node = ops.logits_node(net)
    xs = rng.random((300, int(np.prod(net.input_shape))))
    y = ops.evaluate(net, xs, upto=node)[node].reshape(300, -1)
    eps = 0.002 * float(y.max() - y.min()) + 1e-4
    region = _whole_box(net)
    rep = certify_cnn(net, [region], logit_eps=eps, max_frac=2, max_rounds=3, descent_checks=30)
    res = rep.search
    assert res.target_step is not None and res.target_step > 2  # uniform F beyond max_frac
    assert res.verdicts[0].certified and logit_error_bound(net, res.analyses[0]) <= eps
    assert certify_mod.largest_frac(res.fracs) <= res.target_step
    entry = region_entry(net, region, res.verdicts[0], res.analyses[0], eps)
    claims = read_claims({"task": "regress", "regions": [entry]}, y.shape[1], "test")
    sim = SimulatorLogits(res.program)
    [check] = verify_regions(net, [region], claims, sim, 300, 8, 0)
    assert check.violations == 0 and sim.overflows == 0 and check.max_logit_error <= eps
    monkeypatch.setattr(certify_mod, "WIDEST_FRAC", 2)
    with pytest.raises(InfeasibleError, match="up to 2 extra fractional bits") as err:
        certify_cnn(net, [_whole_box(net)], logit_eps=eps, max_frac=2, max_rounds=3, descent_checks=30)
    assert err.value.smallest_error is not None and err.value.smallest_error > eps


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    pool=st.sampled_from(["max", "avg", "none"]),
    residual=st.booleans(),
    act=st.sampled_from(["relu", "tanh", "sigmoid", "leaky_relu", "silu"]),
    rel_eps=st.sampled_from([0.002, 0.02, 0.2]),
)
def test_whole_box_hypothesis(seed: int, pool: str, residual: bool, act: str, rel_eps: float) -> None:
    """Hypothesis over random CNNs, activations (tables and piecewise-linear code too) and
    targets: the whole-box certificate holds on samples, corners and the local search."""
    rng = np.random.default_rng(seed)
    net = random_cnn(rng, residual=residual, pool=pool, acts=(act, "relu", act))
    node = ops.logits_node(net)
    xs = rng.random((200, int(np.prod(net.input_shape))))
    y = ops.evaluate(net, xs, upto=node)[node].reshape(200, -1)
    eps = rel_eps * float(y.max() - y.min()) + 1e-4
    region, rep = _certify_box(net, eps)
    res = rep.search
    entry = region_entry(net, region, res.verdicts[0], res.analyses[0], eps)
    assert entry["certified"] and entry["logit_error_bound"] <= eps
    claims = read_claims({"task": "regress", "regions": [entry]}, y.shape[1], "test")
    sim = SimulatorLogits(res.program)
    [check] = verify_regions(net, [region], claims, sim, 200, 6, seed)
    assert check.violations == 0 and sim.overflows == 0, check.kinds


def test_whole_box_claims_fail_when_shrunk() -> None:
    """The execution check is not vacuous: the same program against logit intervals shrunk to
    1% of the certified ones is caught on sampled inputs."""
    rng = np.random.default_rng(7)
    net = random_cnn(rng, residual=False, pool="max")
    region, rep = _certify_box(net, 0.05)
    entry = region_entry(net, region, rep.search.verdicts[0], rep.search.analyses[0], 0.05)
    entry["logit_error_lo"] = [v * 0.01 for v in entry["logit_error_lo"]]
    entry["logit_error_hi"] = [v * 0.01 for v in entry["logit_error_hi"]]
    n_cls = len(entry["logit_error_lo"])
    claims = read_claims({"task": "regress", "regions": [entry]}, n_cls, "test")
    [check] = verify_regions(net, [region], claims, SimulatorLogits(rep.search.program), 200, 4, 0)
    assert check.violations > 0 and check.kinds.get("logit_error", 0) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_box_exact_cross_check(seed: int, tmp_path: Path) -> None:
    """At the worst inputs the search found, the corners lower/upper and the centre, the program's
    logits (exact rational reference of the program semantics) minus the real network's (exact
    rationals) lie inside the certified intervals, with no float allowance. Seed 2: a dense
    chain (scripts/graph_vs_refined.py runs Aster's benchmarks through this path)."""
    from aster_ext.frontend.onnx_import import load_onnx

    rng = np.random.default_rng(900 + seed)
    if seed < 2:
        net = random_cnn(rng, residual=bool(seed), pool=["max", "avg"][seed])
    else:
        net = load_onnx(tiny_mlp(tmp_path / "mlp.onnx", seed=seed))
    region, rep = _certify_box(net, 0.02)
    prog = rep.search.program
    entry = region_entry(net, region, rep.search.verdicts[0], rep.search.analyses[0], 0.02)
    n_cls = len(entry["logit_error_lo"])
    claims = read_claims({"task": "regress", "regions": [entry]}, n_cls, "test")
    [check] = verify_regions(net, [region], claims, SimulatorLogits(prog), 200, 8, seed)
    assert check.worst_input is not None
    pts = np.stack([check.worst_input, region.lower, region.upper, (region.lower + region.upper) / 2])
    node = ops.logits_node(net)
    tr = simulate_graph(prog, pts)
    frac = prog.out_t(node).frac.reshape(-1)
    for p in range(pts.shape[0]):
        real = exact_real(net, pts[p])[node]
        ref = reference_run(prog, pts[p])[node]
        sim = [Fraction(int(tr.raw[node][p, j])) / 2 ** int(frac[j]) for j in range(frac.size)]
        assert ref == sim  # the vectorised simulator is the exact semantics
        for j in range(n_cls):
            err = sim[j] - real[j]
            assert Fraction(entry["logit_error_lo"][j]) <= err <= Fraction(entry["logit_error_hi"][j])
            assert abs(err) <= Fraction(0.02)


# ------------------------------------------------------------------------------------------------
# the CLI
# ------------------------------------------------------------------------------------------------


def test_routing_needs_graph_analysis(box_cnn: Path, tmp_path: Path) -> None:
    assert needs_graph_analysis(box_cnn) is True
    assert needs_graph_analysis(tiny_mlp(tmp_path / "mlp.onnx")) is False  # a dense chain
    assert needs_graph_analysis(Path("examples/tiny_controller.scala")) is False


def test_quantize_loads_an_onnx_model_once(box_cnn: Path, tmp_path: Path, monkeypatch) -> None:
    """Routing reads the model and hands it to the path it picks (the graph path for a CNN, the
    refined dense path for a dense chain): one import of the ONNX file per quantize run."""
    import aster_ext.frontend as frontend

    calls: list[str] = []
    real = frontend.load_onnx

    def counting(path, *a, **k):
        calls.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(frontend, "load_onnx", counting)
    cnn_out, mlp_out = tmp_path / "cnn", tmp_path / "mlp"
    args = ["--error", "0.5", "--ilp-rounds", "1", "--descent-checks", "0", "--quiet"]
    assert _run(["quantize", box_cnn, *args, "--out", cnn_out]) == 0
    assert calls == ["tiny_cnn.onnx"]
    mlp = tiny_mlp(tmp_path / "mlp.onnx")
    _box_spec(mlp)
    calls.clear()
    assert _run(["quantize", mlp, "--error", "0.5", "--quiet", "--out", mlp_out]) == 0
    assert calls == ["mlp.onnx"]
    assert json.loads((mlp_out / "report.json").read_text())["mode"] == "refined"


@pytest.mark.slow
def test_cnn_regress_quantize_and_verify(box_cnn: Path, tmp_path: Path, capsys) -> None:
    """quantize (task regress by default: the spec has no classification task) writes a graph
    program certified over the whole box, C++ and reports; verify compiles the C++ and passes;
    a report whose logit intervals were scaled down, or whose bound exceeds its target, fails."""
    out = tmp_path / "out"
    assert _run(["quantize", box_cnn, "--error", "0.05", "--out", out, "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("tiny_cnn: certified error <=") and "over the input box" in line
    r = json.loads((out / "report.json").read_text())
    assert r["task"] == "regress" and r["analysis"] == "graph" and r["target_error"] == 0.05
    [e] = r["regions"]
    assert e["label"] is None and e["certified"] is True and e["provable"] is False
    assert e["logit_error_bound"] <= 0.05 and r["certified_logit_error"] == e["logit_error_bound"]
    with np.load(out / "regions.npz") as z:
        assert z["label"].tolist() == [-1]
        assert np.array_equal(z["lower"][0], np.zeros(36)) and np.array_equal(z["upper"][0], np.ones(36))
    assert "certified logit error over the input box" in (out / "report.md").read_text()

    assert _run(["verify", out, "--samples", "80", "--search-iters", "4", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("verify OK: the input box")
    v = json.loads((out / "verify.json").read_text())
    assert v["task"] == "regress" and v["passed"] and v["violations"] == 0 and v["bit_exact_cpp"] is True
    assert v["regions"][0]["label_kept"] is None

    good = (out / "report.json").read_text()
    bad = json.loads(good)
    bad["regions"][0]["logit_error_lo"] = [x * 0.01 for x in bad["regions"][0]["logit_error_lo"]]
    bad["regions"][0]["logit_error_hi"] = [x * 0.01 for x in bad["regions"][0]["logit_error_hi"]]
    (out / "report.json").write_text(json.dumps(bad))
    assert _run(["verify", out, "--samples", "60", "--search-iters", "2", "--no-cpp", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert text.startswith("verify FAILED") and "REPORT INCONSISTENT" in text
    over = json.loads(good)
    over["target_error"] = over["regions"][0]["logit_error_bound"] / 2  # a target the bound misses
    (out / "report.json").write_text(json.dumps(over))
    assert _run(["verify", out, "--samples", "20", "--search-iters", "0", "--no-cpp", "--quiet"]) == 1
    assert "not within the target" in capsys.readouterr().out
    (out / "report.json").write_text(good)
    assert _run(["verify", out, "--samples", "20", "--search-iters", "0", "--no-cpp", "--quiet"]) == 0


def test_cnn_regress_option_errors(box_cnn: Path, tmp_path: Path, capsys) -> None:
    """Each option the graph path does not have is a one-line exit 2 naming it; nothing written."""
    cases = [
        (["--mode", "aster"], "dense-chain analyses"),
        (["--setting", "B"], "--setting applies to dense chains"),
        (["--split-boxes", "2"], "--split-boxes applies"),
        (["--backend", "hls4ml"], "for an ε over the whole input box use the default backend"),
    ]
    for extra, text in cases:
        out = tmp_path / f"out_{extra[1]}"
        assert _run(["quantize", box_cnn, "--error", "0.05", "--out", out, "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert text in err, err
        assert not out.exists()
    assert _run(["quantize", box_cnn, "--out", tmp_path / "o", "--quiet"]) == 2
    assert "--error EPS is required" in capsys.readouterr().err


def test_dense_chain_regress_keeps_the_dense_path(tmp_path: Path, capsys) -> None:
    """--task regress on a dense chain still runs the refined per-neuron analysis (no graph program)."""
    model = tiny_mlp(tmp_path / "mlp.onnx")
    _box_spec(model)
    out = tmp_path / "out"
    assert _run(["quantize", model, "--error", "0.05", "--out", out, "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r.get("analysis") != "graph" and r["mode"] == "refined"


def test_mode_graph_runs_a_dense_chain_on_the_graph_path(tmp_path: Path, capsys) -> None:
    """--mode graph takes a dense chain (ONNX or Aster .scala) onto the graph path: --error over
    the spec's input box, per-neuron fractional bits, a graph report that verify checks (C++
    compiled, bit-exact, no violation); the same run without --mode graph stays refined."""
    model = tiny_mlp(tmp_path / "mlp.onnx")
    _box_spec(model)
    out = tmp_path / "graph"
    assert _run(["quantize", model, "--mode", "graph", "--error", "0.05", "--out", out, "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("mlp: certified error <=")
    r = json.loads((out / "report.json").read_text())
    assert r["task"] == "regress" and r["analysis"] == "graph" and r["target_error"] == 0.05
    assert r["frac_search"]["granularity"] == "channel"
    [e] = r["regions"]
    assert e["certified"] is True and e["logit_error_bound"] <= 0.05
    assert _run(["verify", out, "--samples", "60", "--search-iters", "3", "--quiet"]) == 0
    said = capsys.readouterr().out  # no label over the whole box: the agreement is of the argmax
    assert said.startswith("verify OK: the input box") and "argmax agreement >=" in said
    assert "label" not in said
    v = json.loads((out / "verify.json").read_text())
    assert v["passed"] and v["violations"] == 0 and v["bit_exact_cpp"] is True

    scala = tmp_path / "scala"  # the README's example, whose box is written in the model
    args = ["--mode", "graph", "--error", "1e-3", "--granularity", "layer", "--out", scala, "--quiet"]
    assert _run(["quantize", "examples/tiny_controller.scala", *args]) == 0
    s = json.loads((scala / "report.json").read_text())
    assert s["analysis"] == "graph" and s["frac_search"]["granularity"] == "layer"
    assert s["certified_logit_error"] <= 1e-3


def test_mode_graph_option_errors(tmp_path: Path, capsys) -> None:
    """Options of the refined / Aster modes are one-line exit 2 errors with --mode graph, nothing
    written; --mode aster on a classification task names both."""
    model = tiny_mlp(tmp_path / "mlp.onnx")
    _box_spec(model)
    cases = [
        (["--setting", "B"], "--setting applies to --mode refined and Aster's modes, not to --mode graph"),
        (["--split-boxes", "2"], "--split-boxes applies to --mode refined and Aster's modes"),
        (["--backend", "hls4ml"], "--mode graph writes our own HLS C++"),
        (["--regions-data", "x.npz", "--radius", "1"], "--regions-data and --radius apply to --task"),
    ]
    for extra, text in cases:
        out = tmp_path / f"out_{extra[1]}"
        code = _run(["quantize", model, "--mode", "graph", "--error", "0.05", "--task", "regress",
                     "--out", out, "--quiet", *extra])  # fmt: skip
        assert code == 2
        err = capsys.readouterr().err
        assert text in err, err
        assert not out.exists()
    out = tmp_path / "no_eps"
    assert _run(["quantize", model, "--mode", "graph", "--out", out, "--quiet"]) == 2
    assert "--error EPS is required" in capsys.readouterr().err
    assert not out.exists()
