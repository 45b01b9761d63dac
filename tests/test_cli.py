"""End-to-end CLI: quantize + verify on small networks, and every bad-input path (exit 2, no output)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aster_ext.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny_controller.scala"


def _run(args: list[str]) -> int:
    return main([str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["refined", "aster-sound"])
def test_quantize_and_verify_example(mode: str, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    assert _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", mode, "--out", out, "--quiet"]) == 0
    for name in (
        "report.json",
        "report.md",
        "model.lp",
        "program.json",
    ):
        assert (out / name).is_file(), name
    r = json.loads((out / "report.json").read_text())
    net = r["network"]
    assert (out / f"{net}.cpp").is_file() and (out / f"{net}.h").is_file()
    for key in (
        "network",
        "mode",
        "setting",
        "target_error",
        "certified_error",
        "certified_error_per_output",
        "sound",
        "cost",
        "formats",
        "solver",
        "timings",
    ):
        assert key in r
    assert r["sound"] is True and r["mode"] == mode
    assert 0 < r["certified_error"] <= 1e-3
    assert r["certified_error"] <= r["independent_bound"]
    for key in (
        "daisy_area",
        "hw",
        "weight_bits",
        "aster_objective" if mode != "refined" else "ilp_objective",
    ):
        assert r["cost"][key] > 0
    header = (out / f"{net}.h").read_text()
    for token in (
        "N_IN",
        "N_OUT",
        "in_t",
        "out_t",
        f"void {net}(const in_t x[N_IN], out_t y[N_OUT])",
    ):
        assert token in header
    assert _run(["verify", out, "--samples", "300", "--search-iters", "20", "--quiet"]) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["violations"] == 0 and v["bit_exact_cpp"] is True
    assert 0 < v["max_observed_error"] <= v["certified_error"]
    assert v["ratio"] >= 1.0


def test_published_aster_mode_violation_is_found(shared_dir: Path, tmp_path: Path) -> None:
    """Aster's own claim is exceeded on LyapunovNN (DESIGN §7); verify must find it and exit 1."""
    out = tmp_path / "lyap"
    model = shared_dir / "benchmarks" / "aster" / "LyapunovNN.scala"
    assert (
        _run(
            [
                "quantize",
                model,
                "--error",
                "1e-3",
                "--mode",
                "aster",
                "--setting",
                "B",
                "--out",
                out,
                "--quiet",
            ]
        )
        == 0
    )
    r = json.loads((out / "report.json").read_text())
    assert r["sound"] is False
    code = _run(["verify", out, "--samples", "2000", "--search-iters", "60", "--no-cpp", "--quiet"])
    v = json.loads((out / "verify.json").read_text())
    assert code == 1 and v["violations"] > 0
    assert v["max_observed_error"] > 1.2e-3
    # the independent certifier's sound bound for the same program is never exceeded
    assert v["max_observed_error"] <= r["independent_bound"]


def _onnx_model(path: Path, weight: np.ndarray, op: str = "Relu") -> Path:
    w = numpy_helper.from_array(weight.astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(weight.shape[0], dtype=np.float32), "B")
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["h"], transB=1), helper.make_node(op, ["h"], ["y"])]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[0]])],
        [w, b],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


BOUNDS = ["--input-lower", "-1,-1", "--input-upper", "1,1"]


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "eps_zero",
        "eps_negative",
        "inverted",
        "nan",
        "unsupported",
        "no_ranges",
        "infeasible",
        "missing_file",
        "wrong_length",
    ],
)
def test_bad_input_exit_2_and_no_output(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    good = _onnx_model(tmp_path / "good.onnx", np.array([[0.5, -0.25], [1.0, 0.75]]))
    args: list[object]
    if case == "garbage":
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"\x00\x01 not an onnx file")
        args = ["quantize", bad, "--error", "1e-3", *BOUNDS]
    elif case == "eps_zero":
        args = ["quantize", good, "--error", "0", *BOUNDS]
    elif case == "eps_negative":
        args = ["quantize", good, "--error", "-1e-3", *BOUNDS]
    elif case == "inverted":
        args = ["quantize", good, "--error", "1e-3", "--input-lower", "1,1", "--input-upper", "-1,-1"]
    elif case == "nan":
        bad = _onnx_model(tmp_path / "nan.onnx", np.array([[np.nan, 1.0], [0.0, 1.0]]))
        args = ["quantize", bad, "--error", "1e-3", *BOUNDS]
    elif case == "unsupported":
        bad = _onnx_model(tmp_path / "sig.onnx", np.array([[0.5, 1.0], [0.0, 1.0]]), op="Softsign")
        args = ["quantize", bad, "--error", "1e-3", *BOUNDS]
    elif case == "no_ranges":
        args = ["quantize", good, "--error", "1e-3"]
    elif case == "infeasible":
        args = ["quantize", good, "--error", "1e-30", *BOUNDS]
    elif case == "missing_file":
        args = ["quantize", tmp_path / "nope.onnx", "--error", "1e-3", *BOUNDS]
    else:
        args = ["quantize", good, "--error", "1e-3", "--input-lower", "-1,-1,-1", "--input-upper", "1,1,1"]
    code = _run([*args, "--out", out, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("aster-ext: error:"), err
    assert not out.exists()
    assert not any(p.name.startswith(".out.tmp") for p in tmp_path.iterdir())
    if case == "infeasible":
        assert "smallest" in err[0]


def test_help_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--error", "--mode", "--setting", "noInitError", "--spec"):
        assert word in text
