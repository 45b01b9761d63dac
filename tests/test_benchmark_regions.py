"""The stored cifar_base_kw regions (benchmarks/cifar_base_kw.regions.npz) and their vnnlib parser."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from aster_ext.benchmark_regions import benchmark_regions, load_regions_npz

ROOT = Path(__file__).resolve().parents[1]


def _builder():
    path = ROOT / "scripts" / "cifar_base_kw_regions.py"
    spec = importlib.util.spec_from_file_location("cbk_regions", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cifar_base_kw_regions_load_and_centre_label(shared_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx_path, regs = benchmark_regions(shared_dir / "benchmarks", ROOT, "cifar_base_kw")
    spec = json.loads((shared_dir / "benchmarks" / "external" / "cifar_base_kw.spec.json").read_text())
    listed = [Path(p).name for p in spec["vnnlib"]["files_for_this_net"]]
    assert [r.name for r in regs] == listed[:5]  # the first 5 listed files, in the spec's order
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    dom_lo, dom_hi = np.array(spec["input_lower"]), np.array(spec["input_upper"])
    for r in regs:
        assert r.lower.shape == r.upper.shape == (3072,)
        assert np.all(r.lower <= r.upper)
        assert np.all(r.lower >= dom_lo - 1e-6) and np.all(r.upper <= dom_hi + 1e-6)  # inside the pixel range
        x = ((r.lower + r.upper) / 2).astype(np.float32).reshape(spec["input_shape"])
        y = sess.run(None, {spec["input_name"]: x})[0].ravel()
        assert int(np.argmax(y)) == r.label, r.name


def test_load_regions_npz_rejects_inverted_box(tmp_path: Path) -> None:
    lo = np.zeros((1, 4))
    hi = np.ones((1, 4))
    hi[0, 2] = -1.0
    p = tmp_path / "bad.regions.npz"
    np.savez(p, lower=lo, upper=hi, labels=np.array([0]), names=np.array(["a"]))
    with pytest.raises(ValueError, match="lower > upper"):
        load_regions_npz(p)
    np.savez(p, lower=lo, upper=np.ones((1, 4)), labels=np.array([0]), names=np.array(["a"]))
    with pytest.raises(ValueError, match="inputs"):
        load_regions_npz(p, n_inputs=5)
    (r,) = load_regions_npz(p, n_inputs=4)
    assert r.label == 0 and r.upper.tolist() == [1.0] * 4


def test_levels_reproduce_the_spec_example_bit_for_bit(shared_dir: Path) -> None:
    """The stored pixel levels of the first file + the generator's float32 formula give exactly the
    6144 bounds the spec's builder parsed from that vnnlib file."""
    b = _builder()
    spec = json.loads((shared_dir / "benchmarks" / "external" / "cifar_base_kw.spec.json").read_text())
    ex = spec["vnnlib"]["example"]
    ent = next(f for f in json.loads(b.LEVELS.read_text())["files"] if f["path"] == ex["file"])
    levels = np.array([int(v) for row in ent["levels_rows"] for v in row.split()])
    lo, hi = b.box_from_levels(levels, ent["eps"])
    assert np.array_equal(lo, ex["lower"]) and np.array_equal(hi, ex["upper"])
    lo2, hi2 = b.box_from_levels(np.clip(levels + 1, 0, 255), ent["eps"])  # a wrong level is caught
    assert not (np.array_equal(lo2, ex["lower"]) and np.array_equal(hi2, ex["upper"]))


def test_parse_vnnlib_bounds_and_label() -> None:
    b = _builder()
    lines = [f"(assert (<= X_{i} {0.5 + i}))\n(assert (>= X_{i} {-0.25 * i}))" for i in range(3)]
    outs = "\n".join(f"\t(and (<= Y_7 Y_{k}))" for k in range(10) if k != 7)
    lo, hi, label = b.parse_vnnlib("\n".join(lines) + f"\n(assert (or\n{outs}\n))\n", n=3)
    assert lo.tolist() == [0.0, -0.25, -0.5] and hi.tolist() == [0.5, 1.5, 2.5] and label == 7
    with pytest.raises(ValueError, match="missing"):
        b.parse_vnnlib("\n".join(lines[:2]) + f"\n(assert (or\n{outs}\n))\n", n=3)
    mixed = outs.replace("Y_7 Y_0", "Y_0 Y_7")
    with pytest.raises(ValueError, match="output constraints"):
        b.parse_vnnlib("\n".join(lines) + f"\n(assert (or\n{mixed}\n))\n", n=3)
