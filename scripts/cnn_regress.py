"""An ε on every logit over the whole input box, for the benchmark CNNs (``--task regress`` on a
graph): ``aster-ext quantize MODEL.onnx --task regress --error EPS --out DIR`` then ``aster-ext
verify DIR``, each in a fresh process. The box is the spec's input box (all images, not regions
around test points); there is no label, so only the logit error and overflow are certified.

Columns: eps = the target; bound = certified max_j |y~_j - y_j| over the box; start_F = the
uniform fractional-bit count the search started from (the smallest uniform F meeting eps);
hw_uniform = the cost of that uniform program, hw = the cost after the per-channel ILP and the
sound descent (operand + adder + ROM bits, report.json cost.hw), ratio = hw / hw_uniform;
quantize_s and peak_mib from report.json (wall-clock on a shared 2-core machine: noisy; peak =
resident set of the quantize process); verify (``--samples 600 --search-iters 10``): inputs
checked (random, corners, local search on the logit error), violations, observed = the largest
|logit error| verify saw, observed/bound, C++ bit-exact with the simulator.
Writes results/cnn_regress.md and results/cnn_regress.csv.
Usage: python scripts/cnn_regress.py [--only NAME ...] [--eps E ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aster_ext.experiments.benchmarks import shared_dir
from aster_ext.experiments.tables import write_script_table

ROOT = Path(__file__).resolve().parents[1]
NETS = [
    ("cnn", "Convnet_maxpool"),
    ("cnn", "Convnet_avgpool"),
    ("cnn", "cifar10_small"),
    ("cnn", "resnet_2b"),
    ("external", "cifar_base_kw"),
]
EPS = [0.5, 0.05]
# verify's budget here: 600 random + corner inputs and 10 local-search rounds of 32 (the CLI's
# default, 2000 and 60, takes ~17 min per resnet_2b program on this machine)
VERIFY_SAMPLES, VERIFY_ROUNDS = 600, 10
FIELDS = [
    "network", "eps", "certified", "bound", "start_F", "hw_uniform", "hw", "ratio", "quantize_s",
    "peak_mib", "verify_inputs", "violations", "observed", "observed_over_bound", "bit_exact_cpp",
    "verify_s",
]  # fmt: skip


def run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aster_ext.cli", *args, "--quiet"], cwd=ROOT, check=True)
    return time.perf_counter() - t


def one(model: Path, eps: float, out: Path) -> dict[str, object]:
    """quantize + verify of ``model`` at ``eps``; the table row."""
    run(["quantize", str(model), "--task", "regress", "--error", f"{eps:g}", "--out", str(out)])
    v_s = run(["verify", str(out), "--samples", str(VERIFY_SAMPLES), "--search-iters", str(VERIFY_ROUNDS)])
    rep = json.loads((out / "report.json").read_text())
    ver = json.loads((out / "verify.json").read_text())
    [e] = rep["regions"]
    [vr] = ver["regions"]
    hw, hw0 = rep["cost"]["hw"], rep["frac_search"]["start_hw"]
    return {
        "network": model.stem,
        "eps": f"{eps:g}",
        "certified": e["certified"],
        "bound": f"{e['logit_error_bound']:.4g}",
        "start_F": rep["frac_search"]["error_target_step"],
        "hw_uniform": hw0,
        "hw": hw,
        "ratio": f"{hw / hw0:.3f}" if hw0 else "",
        "quantize_s": round(rep["timings"]["total_s"], 1),
        "peak_mib": round(rep["peak_mib"]),
        "verify_inputs": ver["samples"],
        "violations": ver["violations"],
        "observed": f"{vr['max_logit_error']:.4g}",
        "observed_over_bound": f"{vr['max_logit_error'] / e['logit_error_bound']:.3f}",
        "bit_exact_cpp": ver["bit_exact_cpp"],
        "verify_s": round(v_s, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="network stems to run (default: all five)")
    ap.add_argument("--eps", nargs="*", type=float, default=EPS, help=f"targets (default {EPS})")
    args = ap.parse_args()
    bench = shared_dir() / "benchmarks"
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnn-regress-") as tmp:
        for folder, stem in NETS:
            if args.only and stem not in args.only:
                continue
            for eps in args.eps:
                row = one(bench / folder / f"{stem}.onnx", eps, Path(tmp) / f"{stem}_{eps:g}")
                rows.append(row)
                print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
    title = "CNNs: an ε on every logit over the whole input box (--task regress)"
    write_script_table(ROOT / "results" / "cnn_regress", title, __doc__ or "", rows, FIELDS, args.only)
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
