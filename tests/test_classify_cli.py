"""``aster-ext quantize --task classify`` and ``aster-ext verify`` on classifier outputs: tiny
synthetic CNN/MLP classifiers built here as ONNX, the benchmark Convnet_maxpool, regions from a
data file, the no-provable-region exit, the output-folder rules, program.json round trips, and
attempts to break soundness (random nets with adversarial search, an exact rational cross-check,
tampered certificates and programs)."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aster_ext import ops
from aster_ext.classify import region_entry
from aster_ext.classify_verify import SimulatorLogits, read_claims, verify_regions
from aster_ext.cli import main
from aster_ext.errors import UserError
from aster_ext.frontend.onnx_import import load_onnx
from aster_ext.graph_program.certify import Region, certify_cnn
from aster_ext.graph_program.errors import analyze_errors, deltas_for
from aster_ext.graph_program.io import graph_program_from_json, graph_program_to_json, load_graph_program
from aster_ext.graph_program.program import uniform_program
from aster_ext.graph_program.simulate import simulate_graph
from aster_ext.outdir import MARKER

from .graph_program_support import random_cnn


def _run(args: list) -> int:
    return main([str(a) for a in args])


def _model(nodes, in_shape, inits: dict) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def tiny_cnn(path: Path, seed: int = 0, act: str = "Relu") -> Path:
    """x 1x6x6 -> Conv 3x3 (3 ch, pad 1) -> act (an ONNX op type, default Relu) -> MaxPool 2x2 ->
    Flatten -> Gemm -> 3 logits."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = {
        "K": (rng.standard_normal((3, 1, 3, 3)) * 0.5).astype(f32),
        "Kb": (rng.standard_normal(3) * 0.1).astype(f32),
        "W": (rng.standard_normal((3, 27)) * 0.5).astype(f32),
        "b": (rng.standard_normal(3) * 0.1).astype(f32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "K", "Kb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node(act, ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1, name="fc"),
    ]
    onnx.save(_model(nodes, [1, 6, 6], inits), str(path))
    return path


def tiny_mlp(path: Path, seed: int = 0) -> Path:
    """x 4 -> Gemm 6 -> Relu -> Gemm 3 logits (a dense classifier)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = {
        "W1": (rng.standard_normal((6, 4))).astype(f32),
        "b1": (rng.standard_normal(6) * 0.1).astype(f32),
        "W2": (rng.standard_normal((3, 6))).astype(f32),
        "b2": (rng.standard_normal(3) * 0.1).astype(f32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1, name="fc2"),
    ]
    onnx.save(_model(nodes, [4], inits), str(path))
    return path


def confident_points(model: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points of [0, 1]^n_in where the float network's top-1 margin is largest, and their labels."""
    net = load_onnx(model)
    rng = np.random.default_rng(seed)
    x = rng.random((400, net.n_inputs))
    node = ops.logits_node(net)
    y = ops.evaluate(net, x, upto=node)[node].reshape(x.shape[0], -1)
    top2 = np.sort(y, axis=1)[:, -2:]
    best = np.argsort(top2[:, 0] - top2[:, 1])[:n]  # most negative = largest margin
    return x[best], y[best].argmax(axis=1)


def write_spec(model: Path, radius: float = 0.01, n: int = 3, whole_box_region: bool = True) -> Path:
    """NAME.spec.json beside the model: box [0, 1], task classification, n confident regions of
    radius ``radius`` and (optionally) one region over the whole box (not provable)."""
    net = load_onnx(model)
    x, y = confident_points(model, n)
    regions = [
        {"name": f"r{i}", "lower": np.clip(x[i] - radius, 0, 1).tolist(),
         "upper": np.clip(x[i] + radius, 0, 1).tolist(), "label": int(y[i])}
        for i in range(n)
    ]  # fmt: skip
    if whole_box_region:
        regions.append(
            {"name": "whole", "lower": [0.0] * net.n_inputs, "upper": [1.0] * net.n_inputs, "label": 0}
        )
    spec = {
        "name": model.stem,
        "task": "classification",
        "input_lower": [0.0] * net.n_inputs,
        "input_upper": [1.0] * net.n_inputs,
        "regions": regions,
    }
    path = model.with_name(model.stem + ".spec.json")
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def cnn_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    write_spec(tiny_cnn(d / "tiny_cnn.onnx"))
    return d


REGION_KEYS = ("label", "margin_lower_bound", "margin_error_bound", "certified", "reason")


@pytest.mark.slow
def test_tiny_cnn_quantize_and_verify(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    model = cnn_dir / "tiny_cnn.onnx"
    assert _run(["quantize", model, "--out", out, "--quiet"]) == 0  # task from the spec, no --error
    line = capsys.readouterr().out.strip()
    assert (
        "certified top-1 on" in line
        and "of 4 regions" in line
        and "not provable for the real network" in line
    )
    for name in ("report.json", "report.md", "program.json", "regions.npz", MARKER):
        assert (out / name).is_file(), name
    r = json.loads((out / "report.json").read_text())
    assert r["task"] == "classify" and r["n_regions"] == 4 and len(r["regions"]) == 4
    for e in r["regions"]:
        for key in REGION_KEYS:
            assert key in e
        assert isinstance(e["certified"], bool)
        assert (e["reason"] is None) == e["certified"]
    whole = r["regions"][3]
    assert whole["certified"] is False and whole["reason"] == "real network not provably robust"
    assert whole["margin_lower_bound"] <= 0
    # every provable region is certified (the search's target), and the fraction adds up
    assert all(e["certified"] for e in r["regions"] if e["provable"])
    assert r["certified_regions"] == sum(e["certified"] for e in r["regions"]) >= 1
    assert r["certified_fraction"] == r["certified_regions"] / 4
    for e in r["regions"]:
        if e["certified"]:
            assert e["margin_lower_bound"] - e["margin_error_bound"] > 0 and e["slack"] > 0
    assert "| whole |" in (out / "report.md").read_text()

    assert _run(["verify", out, "--samples", "60", "--search-iters", "4", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("verify OK")
    v = json.loads((out / "verify.json").read_text())
    assert v["task"] == "classify" and v["violations"] == 0 and v["passed"] is True
    # the compiled C++ was the program under test, bit-exact with the simulator
    assert v["bit_exact_cpp"] is True and "C++" in v["cpp_note"]
    assert all((out / f).is_file() for f in r["cpp"]["files"])
    assert r["cpp"]["name"] + ".cpp" in r["cpp"]["files"]
    assert len(v["regions"]) == 4
    for reg in v["regions"]:
        assert 0.0 <= reg["label_agreement"] <= 1.0
        assert reg["random"] > 0 and reg["corners"] > 0 and reg["search"] > 0
        if reg["certified"]:
            assert reg["label_kept"] == 1.0 and reg["min_program_margin"] > 0
    assert "verify.json" in json.loads((out / MARKER).read_text())["files"]


@pytest.mark.slow
def test_program_json_round_trip(cnn_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    model = cnn_dir / "tiny_cnn.onnx"
    assert _run(["quantize", model, "--out", out, "--quiet"]) == 0
    net = load_onnx(model)
    prog = load_graph_program(out / "program.json", net)
    again = graph_program_from_json(json.loads(json.dumps(graph_program_to_json(prog))), net)
    assert graph_program_to_json(again) == graph_program_to_json(prog)
    x = np.random.default_rng(0).random((50, net.n_inputs)) * 3 - 1  # also outside the box: wrapping
    a, b = simulate_graph(prog, x), simulate_graph(again, x)
    for name in a.raw:
        assert np.array_equal(a.raw[name], b.raw[name])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_program_json_round_trip_random_graphs(seed: int, pool: str) -> None:
    """Residual adds, avg-pool constants, wide weights: every field survives, the run is identical."""
    net = random_cnn(np.random.default_rng(seed), residual=True, pool=pool)
    for prog in (uniform_program(net, 16, 6), uniform_program(net, 40, 12, "RND")):
        data = json.loads(json.dumps(graph_program_to_json(prog)))
        back = graph_program_from_json(data, net)
        assert graph_program_to_json(back) == data
        x = np.random.default_rng(seed).normal(0, 2, (20, int(np.prod(net.input_shape))))
        a, b = simulate_graph(prog, x), simulate_graph(back, x)
        assert all(np.array_equal(a.raw[n], b.raw[n]) for n in a.raw) and a.overflows == b.overflows


def test_program_json_rejects_mismatch() -> None:
    net = random_cnn(np.random.default_rng(3), residual=False, pool="max")
    data = graph_program_to_json(uniform_program(net, 16, 6))
    bad = json.loads(json.dumps(data))
    bad["nodes"].pop(next(iter(bad["nodes"])))
    with pytest.raises(UserError, match="missing"):
        graph_program_from_json(bad, net)
    bad = json.loads(json.dumps(data))
    bad["nodes"]["conv1"]["weight_raw"] = [[["x"]]]
    with pytest.raises(UserError, match="weight_raw"):
        graph_program_from_json(bad, net)
    bad = json.loads(json.dumps(data))
    bad["nodes"]["conv1"]["kind"] = "affine"
    with pytest.raises(UserError, match="kind"):
        graph_program_from_json(bad, net)
    with pytest.raises(UserError, match="not a graph program"):
        graph_program_from_json({"layers": []}, net)


@pytest.mark.slow
def test_dense_classifier_goes_through_graph_path(tmp_path: Path) -> None:
    model = tiny_mlp(tmp_path / "mlp.onnx")
    write_spec(model, radius=0.02, n=2, whole_box_region=False)
    out = tmp_path / "out"
    assert _run(["quantize", model, "--out", out, "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["task"] == "classify" and r["certified_regions"] == r["provable_regions"] >= 1
    assert [f["kind"] for f in r["formats"]] == ["input", "affine", "affine"]
    assert _run(["verify", out, "--samples", "100", "--search-iters", "5", "--quiet"]) == 0
    # --task regress takes the dense ε path instead (needs --error)
    assert _run(["quantize", model, "--task", "regress", "--out", tmp_path / "o2", "--quiet"]) == 2
    assert not (tmp_path / "o2").exists()
    assert (
        _run(["quantize", model, "--task", "regress", "--error", "0.05", "--out", tmp_path / "o3", "--quiet"])
        == 0
    )
    assert "task" not in json.loads((tmp_path / "o3" / "report.json").read_text())


def test_regions_from_npz_with_radius(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    model = cnn_dir / "tiny_cnn.onnx"
    x, y = confident_points(model, 3, seed=5)
    x[0, 0] = 0.0  # at the box edge: the region is clipped there
    data = tmp_path / "imgs.npz"
    np.savez(data, x=x.reshape(3, 1, 6, 6), y=y)
    out = tmp_path / "out"
    radius = 0.02
    args = ["quantize", model, "--regions-data", data, "--radius", radius, "--out", out, "--quiet"]
    assert _run(args) == 0
    assert "of 3 regions" in capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    assert [e["name"] for e in r["regions"]] == ["imgs[0]", "imgs[1]", "imgs[2]"]
    assert [e["label"] for e in r["regions"]] == [int(v) for v in y]
    assert "radius 0.02" in r["regions_source"]
    with np.load(out / "regions.npz") as d:
        np.testing.assert_array_equal(d["lower"], np.clip(x - radius, 0, 1))
        np.testing.assert_array_equal(d["upper"], np.clip(x + radius, 0, 1))
        assert d["lower"][0, 0] == 0.0
    assert _run(["verify", out, "--samples", "40", "--search-iters", "2", "--no-cpp", "--quiet"]) == 0
    # bad uses: no radius, negative radius, labels out of range, an image outside the box
    for extra in ([], ["--radius", "-1"]):
        assert (
            _run(["quantize", model, "--regions-data", data, *extra, "--out", tmp_path / "b", "--quiet"]) == 2
        )
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=np.array([0, 1, 7]))
    assert _run(["quantize", model, "--regions-data", bad, "--radius", "0.01", "--out", tmp_path / "b"]) == 2
    np.savez(bad, x=x + 5.0, y=y)
    assert _run(["quantize", model, "--regions-data", bad, "--radius", "0.01", "--out", tmp_path / "b"]) == 2
    assert "farther than --radius" in capsys.readouterr().err
    assert _run(["quantize", model, "--radius", "0.01", "--out", tmp_path / "b", "--quiet"]) == 2
    assert not (tmp_path / "b").exists()


def test_no_provable_region_exits_2(tmp_path: Path, capsys) -> None:
    d = tmp_path / "m"
    d.mkdir()
    model = tiny_cnn(d / "net.onnx", seed=2)
    (d / "net.spec.json").write_text(json.dumps({"input_lower": [0.0] * 36, "input_upper": [1.0] * 36}))
    x, y = confident_points(model, 2)
    data = tmp_path / "wide.npz"
    np.savez(data, x=x, y=(y + 1) % 3)  # wrong labels on wide boxes: never provable
    out = tmp_path / "out"
    assert _run(["quantize", model, "--regions-data", data, "--radius", "0.5", "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no region is provable" in err
    assert "wide[0]: -" in err and "wide[1]: -" in err
    assert not out.exists()
    # with --error the logits target takes over: a program whose logit error is certified
    args = ["quantize", model, "--regions-data", data, "--radius", "0.5", "--error", "0.01", "--out", out]
    assert _run([*args, "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["certified_regions"] == 0 and r["target_error"] == 0.01
    assert 0 < r["certified_logit_error"] <= 0.01
    assert all(e["logit_error_bound"] <= 0.01 for e in r["regions"])
    assert _run(["verify", out, "--samples", "60", "--search-iters", "3", "--no-cpp", "--quiet"]) == 0


@pytest.mark.slow
def test_error_target_on_top_of_margins(cnn_dir: Path, tmp_path: Path) -> None:
    model = cnn_dir / "tiny_cnn.onnx"
    assert _run(["quantize", model, "--out", tmp_path / "a", "--quiet"]) == 0
    ra = json.loads((tmp_path / "a" / "report.json").read_text())
    eps = min(e["logit_error_bound"] for e in ra["regions"]) / 4
    assert _run(["quantize", model, "--error", eps, "--out", tmp_path / "b", "--quiet"]) == 0
    rb = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rb["certified_logit_error"] <= eps and rb["frac_search"]["error_target_step"] >= 1
    assert [e["certified"] for e in rb["regions"]] == [e["certified"] for e in ra["regions"]]


@pytest.mark.slow
def test_output_folder_rules(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    model = cnn_dir / "tiny_cnn.onnx"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert _run(["quantize", model, "--out", mine, "--quiet"]) == 2
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert _run(["quantize", model, "--out", cnn_dir, "--quiet"]) == 2  # the model's folder
    out = tmp_path / "out"
    assert _run(["quantize", model, "--out", out, "--quiet"]) == 0
    (out / "extra.txt").write_text("user file")
    assert _run(["quantize", model, "--out", out, "--quiet"]) == 2  # earlier output: needs --force
    capsys.readouterr()
    assert _run(["quantize", model, "--out", out, "--force", "--quiet"]) == 0
    assert (out / "extra.txt").read_text() == "user file"
    # verify never overwrites a verify.json it did not write
    (out / "verify.json").write_text("{}")
    assert _run(["verify", out, "--samples", "10", "--search-iters", "0", "--quiet"]) == 2
    assert (out / "verify.json").read_text() == "{}"
    assert not list(tmp_path.glob(".*tmp-*"))


def test_option_errors(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    model = cnn_dir / "tiny_cnn.onnx"
    out = tmp_path / "o"
    for extra in (["--mode", "aster"], ["--backend", "hls4ml"]):
        assert _run(["quantize", model, *extra, "--out", out, "--quiet"]) == 2
        assert "classify" in capsys.readouterr().err
    # --reuse-factor reaches the C++ of graph programs (its pragmas)
    assert _run(["quantize", model, "--reuse-factor", "2", "--out", out, "--quiet"]) == 0
    name = json.loads((out / "report.json").read_text())["cpp"]["name"]
    assert "PIPELINE II=2" in (out / f"{name}.cpp").read_text()
    # --granularity layer reaches the format search: one fractional-bit count per layer
    out_l = tmp_path / "o_layer"
    assert _run(["quantize", model, "--granularity", "layer", "--out", out_l, "--quiet"]) == 0
    rep = json.loads((out_l / "report.json").read_text())
    assert rep["frac_search"]["granularity"] == "layer"
    for f in rep["formats"]:  # [min, max] over the node's channels
        assert f["frac"][0] == f["frac"][1], f
        if "weight_frac" in f:
            assert f["weight_frac"][0] == f["weight_frac"][1], f
    out = tmp_path / "o2"
    regress = ["--task", "regress", "--error", "0.1"]
    mlp = tiny_mlp(tmp_path / "mlp.onnx")  # a dense chain: the dense path has no ILP rounds or descent
    for flag in ("--ilp-rounds", "--descent-checks"):
        assert _run(["quantize", mlp, *regress, "--input-lower", "0,0,0,0", "--input-upper", "1,1,1,1",
                     flag, "3", "--out", out]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert f"{flag} applies to the graph path (--task classify, CNNs, --mode graph)" in err
        # with --mode graph the dense chain takes the graph path, where both flags apply
        out_g = tmp_path / f"graph{flag}"
        assert _run(["quantize", mlp, *regress, "--mode", "graph", "--input-lower", "0,0,0,0",
                     "--input-upper", "1,1,1,1", flag, "3", "--out", out_g, "--quiet"]) == 0  # fmt: skip
        assert json.loads((out_g / "report.json").read_text())["analysis"] == "graph"
    assert _run(["quantize", model, "--descent-checks", "-1", "--out", out]) == 2
    assert "--descent-checks" in capsys.readouterr().err
    # --descent-checks reaches the descent: 0 skips it, 1 spends one check and says it stopped
    for checks, said in ((0, "0 checks"), (1, "1 checks (stopped: its check budget")):
        out_d = tmp_path / f"o_d{checks}"
        assert _run(["quantize", model, "--descent-checks", str(checks), "--out", out_d, "--quiet"]) == 0
        log = json.loads((out_d / "report.json").read_text())["frac_search"]["log"]
        line = next(x for x in log if x.startswith("descent"))
        assert said in line, line
    # a CNN on the regression path: the graph path over the whole input box, its ILP knobs apply
    assert not out.exists()
    assert _run(["quantize", model, *regress, "--ilp-rounds", "2", "--out", out, "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())["task"] == "regress"
    # in the aster modes it is refused as before (one line naming a node)
    out_a = tmp_path / "o_aster"
    assert _run(["quantize", model, *regress, "--mode", "aster-sound", "--out", out_a, "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out_a.exists()


# ------------------------------------------------------------------------------------------------
# Trying to break soundness
# ------------------------------------------------------------------------------------------------


def _claims_for(net, regions):
    rep = certify_cnn(net, regions)
    prog = rep.search.program
    deltas = deltas_for(net, regions)
    deltas.acts.seed(prog)  # table activations: the program's own implementations
    analyses = [analyze_errors(net, r.ranges, rep.search.fracs, "TRN", r.label, deltas) for r in regions]
    entries = [
        region_entry(net, r, v, a) for r, v, a in zip(regions, rep.search.verdicts, analyses, strict=True)
    ]
    n_cls = int(np.prod(net.op(ops.logits_node(net)).shape))
    return prog, entries, read_claims({"regions": entries}, n_cls, "test")


@pytest.mark.parametrize(
    "seed", [0, 2, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 3, 4, 5, 6, 7))]
)
@pytest.mark.slow
def test_random_cnns_no_violation_under_search(seed: int) -> None:
    """Random small CNNs (max/avg pool, residual adds), regions around confident points with
    random radii: the samples, corners, gradient search and local search find no input where the
    program's margin drops below the certified bound or a logit leaves its error interval."""
    search_and_attack(seed)


def search_and_attack(seed: int, acts: tuple[str, str, str] = ("relu", "relu", "relu")) -> None:
    """The body of :func:`test_random_cnns_no_violation_under_search` for activations ``acts``."""
    rng = np.random.default_rng(100 + seed)
    net = random_cnn(
        rng, residual=bool(seed % 2), pool=["max", "avg", "none"][seed % 3], pool_pad=seed % 2, acts=acts
    )
    n_in = int(np.prod(net.input_shape))
    node = ops.logits_node(net)
    x = rng.random((200, n_in))
    y = ops.evaluate(net, x, upto=node)[node].reshape(200, -1)
    order = np.argsort(-(np.sort(y, axis=1)[:, -1] - np.sort(y, axis=1)[:, -2]))[:3]
    radius = float(rng.choice([0.002, 0.01, 0.05]))
    regions = [
        Region(f"r{i}", np.clip(x[j] - radius, 0, 1), np.clip(x[j] + radius, 0, 1), int(y[j].argmax()))
        for i, j in enumerate(order)
    ]
    prog, entries, claims = _claims_for(net, regions)
    checks = verify_regions(net, regions, claims, SimulatorLogits(prog), 200, 8, seed)
    assert sum(c.violations for c in checks) == 0, [c.kinds for c in checks]
    assert sum(c.overflows for c in checks) == 0
    for c, e in zip(checks, entries, strict=True):
        assert c.max_drop <= e["margin_error_bound"] or not np.isfinite(c.max_drop) or c.max_drop_ratio <= 1
        if e["certified"]:
            assert c.kept == c.checked


def _exact_mlp_logits(net, x: np.ndarray) -> list[list[Fraction]]:
    """The real dense network in exact rationals (float64 weights are exact binary fractions)."""
    out = []
    for row in x:
        v = [Fraction(float(t)) for t in row]
        for op in net.ops():
            if op.kind == "affine":
                w, b = np.asarray(op.attrs["weight"]), np.asarray(op.attrs.get("bias"))
                v = [sum((Fraction(float(w[i, j])) * v[j] for j in range(len(v))), Fraction(float(b[i])))
                     for i in range(w.shape[0])]  # fmt: skip
            elif op.kind == "act":
                v = [max(t, Fraction(0)) for t in v] if op.attrs["fn"] == "relu" else v
        out.append(v)
    return out


@pytest.mark.slow
def test_exact_cross_check_of_worst_margin_drops(tmp_path: Path) -> None:
    """On a small MLP: at the inputs of largest observed margin drop, the drop computed exactly
    (rational real network, program raw integers) stays below the certified bound."""
    model = tiny_mlp(tmp_path / "mlp.onnx", seed=4)
    net = load_onnx(model)
    x, y = confident_points(model, 2, seed=1)
    regions = [
        Region(f"r{i}", np.clip(x[i] - 0.05, 0, 1), np.clip(x[i] + 0.05, 0, 1), int(y[i])) for i in range(2)
    ]
    prog, entries, claims = _claims_for(net, regions)
    checks = verify_regions(net, regions, claims, SimulatorLogits(prog), 300, 10, 0)
    node = ops.logits_node(net)
    for c, e, claim, reg in zip(checks, entries, claims, regions, strict=True):
        assert c.violations == 0 and c.worst_input is not None
        pts = np.stack([c.worst_input, reg.lower, reg.upper, (reg.lower + reg.upper) / 2])
        real = _exact_mlp_logits(net, pts)
        tr = simulate_graph(prog, pts)
        frac = prog.out_t(node).frac
        for p in range(pts.shape[0]):
            prog_v = [Fraction(int(tr.raw[node][p, j])) / 2 ** int(frac[j]) for j in range(frac.size)]
            lab = claim.label
            for k in range(frac.size):
                if k == lab:
                    continue
                drop = (real[p][lab] - real[p][k]) - (prog_v[lab] - prog_v[k])
                assert drop <= Fraction(e["margin_error_bounds"][k])
                assert real[p][lab] - real[p][k] >= Fraction(e["margin_lower_bounds"][k])


@pytest.mark.slow
def test_scaled_down_certificate_is_detected(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    """A report.json whose margin error bounds (and logit error intervals) were scaled down is
    reported as inconsistent with program.json (exit 1); the execution checks alone also catch it."""
    out = tmp_path / "out"
    model = cnn_dir / "tiny_cnn.onnx"
    assert _run(["quantize", model, "--out", out, "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    good = json.loads(json.dumps(r))
    for e in r["regions"]:
        e["margin_error_bound"] *= 0.01
        e["margin_error_bounds"] = [None if v is None else v * 0.01 for v in e["margin_error_bounds"]]
        e["logit_error_lo"] = [v * 0.01 for v in e["logit_error_lo"]]
        e["logit_error_hi"] = [v * 0.01 for v in e["logit_error_hi"]]
    (out / "report.json").write_text(json.dumps(r))
    capsys.readouterr()
    assert _run(["verify", out, "--samples", "60", "--search-iters", "3", "--no-cpp", "--quiet"]) == 1
    line = capsys.readouterr().out
    assert line.startswith("verify FAILED") and "REPORT INCONSISTENT" in line
    v = json.loads((out / "verify.json").read_text())
    assert v["passed"] is False and v["violations"] > 0  # the executions violate the scaled bounds
    assert any(reg["violation_kinds"].get("logit_error", 0) > 0 for reg in v["regions"])
    # the untouched certificate passes again
    (out / "report.json").write_text(json.dumps(good))
    assert _run(["verify", out, "--samples", "30", "--search-iters", "2", "--no-cpp", "--quiet"]) == 0


@pytest.mark.slow
def test_certified_flag_without_support_is_detected(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run(["quantize", cnn_dir / "tiny_cnn.onnx", "--out", out, "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    r["regions"][3]["certified"] = True  # the whole-box region: not provable
    r["certified_regions"] += 1
    r["certified_fraction"] = r["certified_regions"] / r["n_regions"]
    (out / "report.json").write_text(json.dumps(r))
    capsys.readouterr()
    assert _run(["verify", out, "--samples", "20", "--search-iters", "0", "--no-cpp", "--quiet"]) == 1
    assert "marked certified" in capsys.readouterr().out


@pytest.mark.slow
def test_edited_program_is_detected(cnn_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run(["quantize", cnn_dir / "tiny_cnn.onnx", "--out", out, "--quiet"]) == 0
    p = json.loads((out / "program.json").read_text())
    w = p["nodes"]["fc"]["weight_raw"]
    w[0][0] = str(int(w[0][0]) + 1)
    (out / "program.json").write_text(json.dumps(p))
    capsys.readouterr()
    assert _run(["verify", out, "--samples", "20", "--search-iters", "0", "--no-cpp", "--quiet"]) == 1
    assert "not the program its own formats define at fc" in capsys.readouterr().out


@pytest.mark.slow
def test_swappable_evaluator(cnn_dir: Path, tmp_path: Path) -> None:
    """verify takes any logits_of: a wrong implementation (logits shifted) is caught."""
    from aster_ext.classify_verify import verify_classify_directory

    out = tmp_path / "out"
    assert _run(["quantize", cnn_dir / "tiny_cnn.onnx", "--out", out, "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    net = load_onnx(cnn_dir / "tiny_cnn.onnx")
    prog = load_graph_program(out / "program.json", net)
    sim = SimulatorLogits(prog)
    res = verify_classify_directory(out, report, 30, 2, 0, None, logits_of=sim)
    assert res.passed and sim.overflows == 0

    def broken(xs: np.ndarray) -> np.ndarray:
        y = sim(xs)
        y[:, 0] += 1000.0  # far outside any certified logit error interval
        return y

    (out / "verify.json").unlink()
    res = verify_classify_directory(out, report, 30, 2, 0, None, logits_of=broken)
    assert not res.passed and res.violations > 0
    assert all(c.kinds.get("logit_error", 0) == c.checked for c in res.regions)


@pytest.mark.slow
def test_convnet_maxpool_end_to_end(shared_dir: Path, tmp_path: Path, capsys) -> None:
    """The benchmark MNIST CNN with its spec's 5 regions: every provable region certified, verify
    clean. The model is copied so the output folder rules see a plain user folder."""
    src = shared_dir / "benchmarks" / "cnn"
    d = tmp_path / "m"
    d.mkdir()
    for name in ("Convnet_maxpool.onnx", "Convnet_maxpool.spec.json"):
        shutil.copy(src / name, d / name)
    out = tmp_path / "out"
    opts = ["--time-limit", "5", "--ilp-rounds", "3", "--quiet"]  # the suite's time budget
    assert _run(["quantize", d / "Convnet_maxpool.onnx", "--out", out, *opts]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["n_regions"] == 5 and r["provable_regions"] >= 1
    assert r["certified_regions"] == r["provable_regions"]
    assert _run(["verify", out, "--samples", "100", "--search-iters", "5", "--quiet"]) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["violations"] == 0 and all(reg["label_agreement"] is not None for reg in v["regions"])


@pytest.mark.slow
def test_compiled_evaluator_hook(cnn_dir: Path, tmp_path: Path) -> None:
    """The hook for compiled C++: its logits are tested against the certificate and compared bit
    for bit with the simulator on >= 200 inputs per region (a one-ulp difference is caught)."""
    from aster_ext.classify_verify import BIT_EXACT_MIN, verify_classify_directory

    out = tmp_path / "out"
    assert _run(["quantize", cnn_dir / "tiny_cnn.onnx", "--out", out, "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    prog = load_graph_program(out / "program.json", load_onnx(cnn_dir / "tiny_cnn.onnx"))
    same = SimulatorLogits(prog)
    res = verify_classify_directory(out, report, 20, 1, 0, None, compiled_logits_of=same)
    assert res.passed and res.bit_exact_cpp is True and res.cpp_samples >= 4 * BIT_EXACT_MIN
    assert json.loads((out / "verify.json").read_text())["bit_exact_cpp"] is True
    frac = int(prog.out_t(ops.logits_node(prog.net)).frac.max())

    def off_by_one_lsb(xs: np.ndarray) -> np.ndarray:
        y = same(xs)
        y[-1, 0] += 2.0**-frac
        return y

    res = verify_classify_directory(out, report, 20, 1, 0, None, compiled_logits_of=off_by_one_lsb)
    assert res.bit_exact_cpp is False and not res.passed


@pytest.mark.slow
def test_verify_no_cpp_checks_the_simulator(cnn_dir: Path, tmp_path: Path) -> None:
    """--no-cpp: nothing is compiled, the simulator is the program under test, bit_exact_cpp null;
    a deleted .cpp that report.json names is a one-line error, not a silent simulator run."""
    out = tmp_path / "out"
    assert _run(["quantize", cnn_dir / "tiny_cnn.onnx", "--out", out, "--quiet"]) == 0
    assert _run(["verify", out, "--samples", "20", "--search-iters", "1", "--no-cpp", "--quiet"]) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["bit_exact_cpp"] is None and "--no-cpp" in v["cpp_note"]
    name = json.loads((out / "report.json").read_text())["cpp"]["name"]
    (out / f"{name}.cpp").unlink()
    assert _run(["verify", out, "--samples", "20", "--search-iters", "1", "--quiet"]) == 2


def test_certified_claim_on_an_unprovable_region_is_inconsistent() -> None:
    """A favourable (negative) margin error bound must not carry a region whose real margin
    bound is negative: verify names the claim as inconsistent."""
    from aster_ext.classify_verify import RegionClaim, claim_problems

    mlb = np.array([-np.inf, -0.0037, 3.9])
    meb = np.array([np.inf, -0.046, 0.1])
    claim = RegionClaim("r", 0, True, True, mlb, meb, np.zeros(3), np.zeros(3))
    report = {"regions": [{"name": "r"}], "certified_regions": 1, "certified_fraction": 1.0}
    assert any("not proved positive" in p for p in claim_problems(report, [claim]))
    claim.margin_lower_bounds = np.array([-np.inf, 0.001, 3.9])
    assert claim_problems(report, [claim]) == []
