"""Build benchmarks/cifar_base_kw.regions.npz (+ .json provenance) from VNN-COMP 2021 vnnlib boxes.

The spec shared/benchmarks/external/cifar_base_kw.spec.json lists the oval21 vnnlib files for
this network (``vnnlib.files_for_this_net``) but carries no ``regions``. A region is the input
box of one vnnlib file, {x : lo_i <= X_i <= hi_i} from its ``(assert (>= X_i lo_i))`` /
``(assert (<= X_i hi_i))`` lines, and its label y: the output constraints are a disjunction of
``(<= Y_y Y_k)`` over k != y (a counter-example is any k with y_k >= y_y), so y is the index on
the left of every disjunct. Regions = the first 5 files of the spec's list, in its order.

The vnnlib files are not in this repository (no network here). Each box is stored as the 3072
pixel levels p_i in {0..255} of its CIFAR-10 image (benchmarks/cifar_base_kw.levels.json, read
off the vnnlib text), from which the box is recomputed exactly as the benchmark's generator
wrote it (oval21 src/model_utils.py, float32 torch ops):
    x = p / 255;  lo = (clamp(x - eps, 0, 1) - mean_c) / std;  hi = (clamp(x + eps, 0, 1) - mean_c) / std
(mean (0.485, 0.456, 0.406), std 0.225, every step rounded to float32). Checks, all exact
(bit-equal float): the recomputed first box equals the spec's ``vnnlib.example`` (6144 values
parsed from that file by the spec's builder), and every box matches the full-precision
(index, upper, lower) triples copied from its vnnlib text (``checks`` in the levels file). Then per
region: all N inputs bounded, lower <= upper, width 2*eps/std except where clipped at the pixel
range, and onnxruntime's argmax of the real network at the box centre equals the label.
With ``--vnnlib FILE ...`` (the real files, when available) each listed file is parsed and must
equal the recomputed box bit for bit. Usage:
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
LEVELS = ROOT / "benchmarks" / "cifar_base_kw.levels.json"
NPZ = ROOT / "benchmarks" / "cifar_base_kw.regions.npz"
META = ROOT / "benchmarks" / "cifar_base_kw.regions.json"
REPO, COMMIT = "stanleybak/vnncomp2021", "27c3cc7cdce313cfeb10a6b44c37bde82509f21f"
N_IN = 3072
MEAN, STD = (0.485, 0.456, 0.406), 0.225
BOUND = re.compile(r"\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)")
DISJUNCT = re.compile(r"\(<= Y_(\d+) Y_(\d+)\)")


def parse_vnnlib(text: str, n: int = N_IN) -> tuple[np.ndarray, np.ndarray, int]:
    """(lower, upper, label) of a vnnlib robustness property; ValueError if any part is missing."""
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for op, i, v in BOUND.findall(text):
        (hi if op == "<=" else lo)[int(i)] = float(v)
    if np.isnan(lo).any() or np.isnan(hi).any():
        missing = f"{int(np.isnan(lo).sum())} lower and {int(np.isnan(hi).sum())} upper"
        raise ValueError(f"{missing} bounds missing")
    pairs = DISJUNCT.findall(text)
    left = {int(a) for a, _ in pairs}
    if len(left) != 1 or len(pairs) != 9 or {int(b) for _, b in pairs} | left != set(range(10)):
        raise ValueError(f"output constraints are not 'Y_y <= Y_k for every k != y': {pairs}")
    return lo, hi, left.pop()


def box_from_levels(levels: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The generator's float32 box of pixel levels ``levels`` (NCHW, 3 x 1024) at radius eps."""
    f32 = np.float32
    mean = np.repeat(np.asarray(MEAN, dtype=f32), levels.size // 3)
    x = levels.astype(f32) / f32(255)
    lo = np.clip(x - f32(eps), f32(0), f32(1)).astype(f32)
    hi = np.clip(x + f32(eps), f32(0), f32(1)).astype(f32)
    return ((lo - mean) / f32(STD)).astype(float), ((hi - mean) / f32(STD)).astype(float)


def check(name: str, lo: np.ndarray, hi: np.ndarray, label: int, eps: float, spec: dict) -> dict:
    """The per-region checks of the module docstring; returns the numbers for the provenance file."""
    import onnxruntime as ort

    if lo.shape != (N_IN,) or hi.shape != (N_IN,) or np.any(lo > hi):
        raise ValueError(f"{name}: bad box")
    dom_lo, dom_hi = np.array(spec["input_lower"]), np.array(spec["input_upper"])
    width = hi - lo
    edge = (lo <= dom_lo + 1e-6) | (hi >= dom_hi - 1e-6)
    dev = float(np.abs(width[~edge] - 2 * eps / STD).max()) if (~edge).any() else 0.0
    if dev > 1e-5 or np.any(width[edge] > 2 * eps / STD + 1e-5):
        raise ValueError(f"{name}: box width differs from 2*eps/std by {dev}")
    sess = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    x = ((lo + hi) / 2).astype(np.float32).reshape(spec["input_shape"])
    y = sess.run(None, {spec["input_name"]: x})[0].ravel()
    if int(y.argmax()) != label:
        raise ValueError(f"{name}: argmax {int(y.argmax())} at the centre, label {label}")
    return {"inputs_at_pixel_range_edge": int(edge.sum()), "width_dev": dev, "center_argmax": int(y.argmax())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vnnlib", nargs="*", default=[], type=Path, help="vnnlib files listed by the spec")
    args = ap.parse_args()
    spec = json.loads(SPEC.read_text())
    listed = spec["vnnlib"]["files_for_this_net"][:5]
    stored = {f["path"]: f for f in json.loads(LEVELS.read_text())["files"]}
    given = {Path(f).name: f for f in args.vnnlib}
    ex = spec["vnnlib"]["example"]
    names, lows, highs, labels, epss, meta = [], [], [], [], [], []
    for path in listed:
        name = Path(path).name
        ent = stored[path]
        levels = np.array([int(v) for row in ent["levels_rows"] for v in row.split()], dtype=np.int64)
        if levels.shape != (N_IN,) or levels.min() < 0 or levels.max() > 255:
            raise ValueError(f"{name}: bad pixel levels")
        eps = float(re.search(r"eps([0-9.]+)\.vnnlib$", name).group(1))  # type: ignore[union-attr]
        lo, hi = box_from_levels(levels, eps)
        bad = [c for c in ent["checks"] if (hi[c[0]], lo[c[0]]) != (c[1], c[2])]
        if bad:
            raise ValueError(
                f"{name}: {len(bad)} of {len(ent['checks'])} copied values differ, e.g. {bad[0]}"
            )
        if path == ex["file"] and not (np.array_equal(lo, ex["lower"]) and np.array_equal(hi, ex["upper"])):
            raise ValueError(f"{name}: recomputed box differs from the spec's vnnlib.example")
        label = int(ent["label"])
        if path == ex["file"] and label != int(ex["label"]):
            raise ValueError(f"{name}: label {label}, spec example says {ex['label']}")
        how = "recomputed from pixel levels"
        if name in given:
            plo, phi, plab = parse_vnnlib(given[name].read_text())
            if not (np.array_equal(plo, lo) and np.array_equal(phi, hi) and plab == label):
                raise ValueError(f"{name}: the vnnlib file differs from the stored levels")
            how += "; equal to the parsed vnnlib file"
        info = check(name, lo, hi, label, eps, spec)
        names.append(name)
        lows.append(lo)
        highs.append(hi)
        labels.append(label)
        epss.append(eps)
        meta.append({
            "repo": REPO, "commit": COMMIT, "path": path, "label": label, "eps": eps, "values": how,
            "levels_from": ent["levels_from"], "exact_checks": len(ent["checks"]), **info,
        })  # fmt: skip
        print(f"{name}: label {label}, {len(ent['checks'])} copied values equal, {info}", flush=True)
    np.savez_compressed(
        NPZ, lower=np.array(lows), upper=np.array(highs), labels=np.array(labels, dtype=np.int64),
        names=np.array(names), eps=np.array(epss),
    )  # fmt: skip
    doc = {
        "network": "cifar_base_kw",
        "spec": "shared/benchmarks/external/cifar_base_kw.spec.json",
        "written_by": "scripts/cifar_base_kw_regions.py (from benchmarks/cifar_base_kw.levels.json)",
        "format": "lower/upper [R, 3072] float64 (NCHW, normalised inputs), labels [R], names [R], eps [R]",
        "label_rule": "the vnnlib counter-example is OR_k (Y_label <= Y_k): label = the left index",
        "box_formula": "float32: (clamp(p/255 -/+ eps, 0, 1) - mean_c) / 0.225, mean (0.485, 0.456, 0.406)",
        "regions": meta,
    }
    META.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {NPZ} ({NPZ.stat().st_size} bytes), {len(names)} regions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
