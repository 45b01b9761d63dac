"""Nonlinear classifiers through the classifier CLI: the external tanh and sigmoid MNIST networks
(shared/benchmarks/external/), certified top-1 with table activations in graph programs.

Regions (``--regions-data FILE.npz --radius R``, written from the specs into a temporary
folder): tansig_200_50_onnx — its spec's example image (raw grey levels 0-255, label from the
spec) with R = 1 grey level and R = 5 (the smallest radius of the benchmark's own robustness
sets); ffnnSIGMOID__Point_6x200 — the centre of its spec's vnnlib example box (pixels in [0, 1],
label 1) with R = 0.002 and R = 0.012 (the vnnlib radius). Each case: ``aster-ext quantize
MODEL --regions-data ... --radius R --out DIR`` then ``aster-ext verify DIR`` (defaults), each in
a fresh process. A case whose region the single-pass analysis cannot prove for the real network
ends with quantize's exit 2 and is reported as not provable (its margin bound from the message).
Columns: margin_lb / margin_err of report.json's region (the least-slack class), hw = the
program's cost (operand bits of multipliers + adder bits + table ROM bits), table_bits, the
tables' sizes, quantize_s / verify_s wall-clock (a shared 2-core machine: noisy), verify's
inputs, violations, C++ bit-exactness and its verdict.
Writes results/classify_nonlinear.md and results/classify_nonlinear.csv.
Usage: python scripts/classify_nonlinear.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aster_ext.experiments.benchmarks import shared_dir
from aster_ext.experiments.tables import write_csv

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_dir() / "benchmarks"
FIELDS = [
    "network", "activation", "region", "radius", "provable", "certified", "margin_lb", "margin_err",
    "hw", "table_bits", "tables", "quantize_s", "verify_s", "inputs", "violations", "bit_exact_cpp",
    "verify_passed",
]  # fmt: skip


def tansig_region(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    ex = spec["example_inputs"][0]
    return np.asarray(ex["x"], dtype=np.float64).reshape(1, 1, 1, 784), np.array([int(ex["label"])])


def sigmoid_region(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    ex = spec["vnnlib"]["example"]
    centre = (np.asarray(ex["lower"]) + np.asarray(ex["upper"])) / 2
    return centre.reshape(1, 1, 28, 28), np.array([int(ex["label"])])


CASES = [
    ("tansig_200_50_onnx", "tanh", tansig_region, [1.0, 5.0]),
    ("ffnnSIGMOID__Point_6x200", "sigmoid", sigmoid_region, [0.002, 0.012]),
]


def run(args: list[str]) -> tuple[int, float, str]:
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "aster_ext.cli", *args, "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    return p.returncode, time.perf_counter() - t, p.stdout + p.stderr


def one_case(tmp: Path, stem: str, act: str, region_fn, radius: float) -> dict:
    spec = json.loads((SHARED / "external" / f"{stem}.spec.json").read_text())
    x, y = region_fn(spec)
    data = tmp / f"{stem}_regions.npz"
    np.savez(data, x=x, y=y)
    out = tmp / f"{stem}_{radius:g}"
    model = SHARED / "external" / f"{stem}.onnx"
    code, q_s, text = run(["quantize", str(model), "--regions-data", str(data), "--radius", f"{radius:g}",
                           "--out", str(out)])  # fmt: skip
    row = {"network": stem, "activation": act, "region": "example 0", "radius": f"{radius:g}",
           "quantize_s": round(q_s, 1)}  # fmt: skip
    if code == 2 and "no region is provable" in text:
        m = re.search(r": (-?[0-9.e+-]+)\)", text)
        row.update(provable=False, certified=False, margin_lb=m.group(1) if m else "")
        return row
    if code != 0:
        raise SystemExit(f"{stem} r={radius:g}: quantize exited {code}: {text.strip()[-400:]}")
    rep = json.loads((out / "report.json").read_text())
    reg = rep["regions"][0]
    prog = json.loads((out / "program.json").read_text())
    tabs = [n["act_impl"] for n in prog["nodes"].values() if "act_impl" in n]
    sizes = [len(t.get("entries", [])) for t in tabs]
    row.update(
        provable=reg["provable"], certified=reg["certified"],
        margin_lb=f"{reg['margin_lower_bound']:.4g}", margin_err=f"{reg['margin_error_bound']:.4g}",
        hw=rep["cost"]["hw"], table_bits=rep["cost"].get("table_bits", ""),
        tables=" ".join(str(s) for s in sizes),
    )  # fmt: skip
    code, v_s, text = run(["verify", str(out)])
    ver = json.loads((out / "verify.json").read_text())
    row.update(verify_s=round(v_s, 1), inputs=ver["samples"], violations=ver["violations"],
               bit_exact_cpp=ver["bit_exact_cpp"], verify_passed=ver["passed"])  # fmt: skip
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="network stems to run (default: all)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="classify-nonlinear-") as tmp:
        for stem, act, region_fn, radii in CASES:
            if args.only and stem not in args.only:
                continue
            for r in radii:
                row = one_case(Path(tmp), stem, act, region_fn, r)
                rows.append(row)
                print(" ".join(f"{k}={row.get(k, '')}" for k in FIELDS), flush=True)
    res = ROOT / "results"
    suffix = "" if not args.only else "_" + "_".join(args.only)
    write_csv(res / f"classify_nonlinear{suffix}.csv", rows, FIELDS)
    doc = (__doc__ or "").split("Writes results")[0].strip()
    lines = ["# Nonlinear classifiers end to end (table activations in graph programs)", "", doc, ""]
    lines += ["| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    (res / f"classify_nonlinear{suffix}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
