"""Spec loading (both benchmark layouts) and validation of input boxes and targets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aster_ext.errors import UserError
from aster_ext.frontend import load_model
from aster_ext.spec import Spec, check_spec_matches, load_spec, spec_from_bounds

from .test_frontend_onnx import ASTER, EXTERNAL


@pytest.mark.parametrize("name", ASTER)
def test_aster_specs(shared_dir: Path, name: str) -> None:
    path = shared_dir / "benchmarks" / "aster" / f"{name}.spec.json"
    raw = json.loads(path.read_text())
    spec = load_spec(path)
    assert spec.name == name and spec.source == raw["source"]
    np.testing.assert_array_equal(spec.input_lower, raw["input_lower"])
    np.testing.assert_array_equal(spec.input_upper, raw["input_upper"])
    assert spec.error_bounds == raw["error_bounds"] and spec.error_bounds[0] == 1e-3
    assert spec.n_inputs == raw["layers"][0][0]
    assert spec.extra["params"] == raw["params"] and spec.extra["scala_object"] == raw["scala_object"]
    assert spec.samples is None and spec.labels is None


@pytest.mark.parametrize("name", EXTERNAL)
def test_external_specs(shared_dir: Path, name: str) -> None:
    path = shared_dir / "benchmarks" / "external" / f"{name}.spec.json"
    raw = json.loads(path.read_text())
    spec = load_spec(path)
    assert spec.n_inputs == math.prod(raw["input_shape"])
    assert spec.error_bounds == []
    assert spec.source.startswith(raw["source"]["repo"]) and spec.extra["source_info"] == raw["source"]
    assert spec.extra["input_shape"] == raw["input_shape"]
    assert spec.extra["class_names"] == [str(c) for c in raw["labels"]]
    assert np.all(spec.input_lower <= spec.input_upper)


def test_external_samples_and_boxes(shared_dir: Path) -> None:
    ext = shared_dir / "benchmarks" / "external"
    tansig = load_spec(ext / "tansig_200_50_onnx.spec.json")
    assert tansig.samples.shape == (1, 784) and list(tansig.labels) == [7]
    assert tansig.samples.max() <= 255 and tansig.samples.max() > 1  # raw pixels
    cifar = load_spec(ext / "cifar_base_kw.spec.json")
    assert cifar.samples.shape == (1, 3072) and list(cifar.labels) == [1]  # centre of the vnnlib box
    sig = load_spec(ext / "ffnnSIGMOID__Point_6x200.spec.json")
    assert sig.samples.shape == (1, 784) and list(sig.labels) == [1]
    acas = load_spec(ext / "ACASXU_run2a_1_1_batch_2000.spec.json")
    assert acas.samples is None and acas.labels is None
    boxes = acas.extra["property_boxes"]
    assert len(boxes) == 7 and boxes[0]["property"].endswith("prop_1.vnnlib")
    assert boxes[0]["lower"].shape == (5,) and np.all(boxes[0]["lower"] <= boxes[0]["upper"])
    assert acas.extra["input_normalization"]["ranges"][0] == 60261.0


def test_load_model_finds_spec(shared_dir: Path) -> None:
    net, spec = load_model(shared_dir / "benchmarks" / "external" / "cifar_base_kw.onnx")
    assert spec is not None and spec.n_inputs == net.n_inputs == 3072


def test_spec_from_bounds_ok() -> None:
    spec = spec_from_bounds([0, -1.5], [0, 2], "s", error_bounds=[1e-3])
    assert isinstance(spec, Spec) and spec.input_lower.dtype == np.float64
    assert spec.n_inputs == 2 and spec.error_bounds == [1e-3]
    check_spec_matches(spec, 2)


@pytest.mark.parametrize(
    "lower,upper,pattern",
    [
        ([0.0, float("nan")], [1.0, 1.0], r"lower bound of input 1 is nan \(must be finite\)"),
        ([0.0, 0.0], [1.0, float("inf")], r"upper bound of input 1 is inf"),
        ([0.0, 2.0], [1.0, 1.0], r"inverted range for input 1: lower 2.0 > upper 1.0"),
        ([0.0, 0.0], [1.0], r"2 lower bounds but 1 upper bounds"),
        ([], [], r"empty"),
        (["a"], [1.0], r"must contain only numbers"),
    ],
)
def test_spec_validation(lower, upper, pattern) -> None:
    with pytest.raises(UserError, match=pattern) as exc:
        spec_from_bounds(lower, upper, "bad")
    assert "\n" not in str(exc.value) and "spec 'bad'" in str(exc.value)


@pytest.mark.parametrize("eps", [0.0, -1e-3, float("nan"), float("inf")])
def test_error_bound_validation(eps: float) -> None:
    with pytest.raises(UserError, match="error bound"):
        spec_from_bounds([0.0], [1.0], "e", error_bounds=[eps])


def test_spec_size_mismatch() -> None:
    spec = spec_from_bounds([0.0] * 3, [1.0] * 3, "three")
    with pytest.raises(UserError, match="spec 'three' has 3 input ranges but the network has 5 inputs"):
        check_spec_matches(spec, 5)


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="spec file not found"):
        load_spec(tmp_path / "missing.spec.json")
    bad = tmp_path / "bad.spec.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="bad.spec.json: not a readable JSON spec"):
        load_spec(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="must be a JSON object"):
        load_spec(bad)
    bad.write_text('{"input_lower": [0]}')
    with pytest.raises(UserError, match="missing 'input_upper'"):
        load_spec(bad)
    bad.write_text('{"name": "inv", "input_lower": [0, 3], "input_upper": [1, 2]}')
    with pytest.raises(UserError, match="spec 'inv': inverted range for input 1"):
        load_spec(bad)
    bad.write_text('{"input_lower": [0], "input_upper": [1], "error_bounds": 0.01}')
    assert load_spec(bad).error_bounds == [0.01] and load_spec(bad).name == "bad"
