"""Build benchmarks/cifar_base_kw.regions.npz (+ .json provenance) from VNN-COMP 2021 vnnlib boxes.

The spec shared/benchmarks/external/cifar_base_kw.spec.json lists the oval21 vnnlib files for
this network (``vnnlib.files_for_this_net``) but carries no ``regions``. A region is the input
box of one vnnlib file, {x : lo_i <= X_i <= hi_i} from its ``(assert (>= X_i lo_i))`` /
``(assert (<= X_i hi_i))`` lines (values as written: Python float of the decimal text), and its
label y: the output constraints are a disjunction of ``(<= Y_y Y_k)`` over k != y (a
counter-example is any k with y_k >= y_y), so y is the index on the left of every disjunct.

Sources, in the spec's file order: the spec's ``vnnlib.example`` (full lower/upper/label of the
first file, parsed by the spec's builder) and any vnnlib files given with ``--vnnlib`` (parsed
here). Checks per region: all N = 3072 inputs bounded both ways, lower <= upper, the box width
2*eps/std (std 0.225, eps from the file name) except where clipped at the pixel range [0, 1]
mapped through the normalisation, and onnxruntime's argmax of the real network at the box centre
equals the label. Usage:
  python scripts/cifar_base_kw_regions.py [--vnnlib FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
SPEC = SHARED / "external" / "cifar_base_kw.spec.json"
ONNX = SHARED / "external" / "cifar_base_kw.onnx"
NPZ = ROOT / "benchmarks" / "cifar_base_kw.regions.npz"
META = ROOT / "benchmarks" / "cifar_base_kw.regions.json"
REPO, COMMIT = "stanleybak/vnncomp2021", "27c3cc7cdce313cfeb10a6b44c37bde82509f21f"
N_IN = 3072
BOUND = re.compile(r"\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)")
DISJUNCT = re.compile(r"\(<= Y_(\d+) Y_(\d+)\)")


def parse_vnnlib(text: str, n: int = N_IN) -> tuple[np.ndarray, np.ndarray, int]:
    """(lower, upper, label) of a vnnlib robustness property; ValueError if any part is missing."""
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for op, i, v in BOUND.findall(text):
        (hi if op == "<=" else lo)[int(i)] = float(v)
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError(
            f"{int(np.isnan(lo).sum())} lower and {int(np.isnan(hi).sum())} upper bounds missing"
        )
    pairs = DISJUNCT.findall(text)
    left = {int(a) for a, _ in pairs}
    if len(left) != 1 or len(pairs) != 9 or {int(b) for _, b in pairs} | left != set(range(10)):
        raise ValueError(f"output constraints are not 'Y_y <= Y_k for every k != y': {pairs}")
    return lo, hi, left.pop()


def check(name: str, lo: np.ndarray, hi: np.ndarray, label: int, spec: dict) -> dict:
    """The sanity checks of the module docstring; returns the numbers for the provenance file."""
    import onnxruntime as ort

    if lo.shape != (N_IN,) or hi.shape != (N_IN,) or np.any(lo > hi):
        raise ValueError(f"{name}: bad box")
    eps = float(re.search(r"eps([0-9.]+)\.vnnlib$", name).group(1))  # type: ignore[union-attr]
    std = spec["input_normalization"]["std"][0]
    dom_lo, dom_hi = np.array(spec["input_lower"]), np.array(spec["input_upper"])
    width = hi - lo
    clipped = (lo <= dom_lo + 1e-6) | (hi >= dom_hi - 1e-6)
    dev = float(np.abs(width[~clipped] - 2 * eps / std).max()) if (~clipped).any() else 0.0
    if dev > 1e-5 or np.any(width[clipped] > 2 * eps / std + 1e-5):
        raise ValueError(f"{name}: box width differs from 2*eps/std by {dev}")
    sess = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    x = ((lo + hi) / 2).astype(np.float32).reshape(spec["input_shape"])
    y = sess.run(None, {spec["input_name"]: x})[0].ravel()
    if int(y.argmax()) != label:
        raise ValueError(f"{name}: argmax {int(y.argmax())} at the centre, label {label}")
    return {
        "eps": eps,
        "inputs_at_pixel_range_edge": int(clipped.sum()),
        "width_dev": dev,
        "center_argmax": int(y.argmax()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vnnlib", nargs="*", default=[], type=Path, help="vnnlib files listed by the spec")
    args = ap.parse_args()
    spec = json.loads(SPEC.read_text())
    listed = spec["vnnlib"]["files_for_this_net"]
    ex = spec["vnnlib"]["example"]
    boxes: dict[str, tuple[np.ndarray, np.ndarray, int, str]] = {
        ex["file"]: (
            np.array(ex["lower"], float),
            np.array(ex["upper"], float),
            int(ex["label"]),
            "spec vnnlib.example",
        )
    }
    for f in args.vnnlib:
        match = [p for p in listed if Path(p).name == f.name]
        if not match:
            print(f"{f.name} is not listed for this network in the spec", file=sys.stderr)
            return 2
        boxes[match[0]] = (*parse_vnnlib(f.read_text()), f"parsed from {f.name}")
    order = [p for p in listed if p in boxes]  # the spec's order
    names, lows, highs, labels, meta = [], [], [], [], []
    for p in order:
        lo, hi, lab, how = boxes[p]
        info = check(Path(p).name, lo, hi, lab, spec)
        names.append(Path(p).name)
        lows.append(lo)
        highs.append(hi)
        labels.append(lab)
        meta.append({"repo": REPO, "commit": COMMIT, "path": p, "label": lab, "values_from": how, **info})
        print(f"{Path(p).name}: label {lab}, {info}")
    NPZ.parent.mkdir(exist_ok=True)
    np.savez_compressed(
        NPZ, lower=np.array(lows), upper=np.array(highs),
        labels=np.array(labels, dtype=np.int64), names=np.array(names),
    )  # fmt: skip
    missing = [p for p in listed[:5] if p not in boxes]
    doc = {
        "network": "cifar_base_kw",
        "spec": "shared/benchmarks/external/cifar_base_kw.spec.json",
        "written_by": "scripts/cifar_base_kw_regions.py",
        "format": "lower/upper [R, 3072] float64 (NCHW, normalised inputs), labels [R], names [R]",
        "label_rule": "the vnnlib counter-example is OR_k (Y_label <= Y_k): label = the left index",
        "regions": meta,
        "first_5_listed_but_missing": missing,
    }
    META.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {NPZ} ({NPZ.stat().st_size} bytes), {len(names)} regions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
