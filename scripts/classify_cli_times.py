"""Wall time of the classifier CLI end to end: ``aster-ext quantize MODEL.onnx --out DIR`` (task
from the spec: classify, its 5 regions) then ``aster-ext verify DIR`` (defaults: 300 random +
corner inputs and 20 gradient steps x 3 starts per region, plus the re-derivation of the
certificate), each in a fresh process, for the benchmark CNNs of shared/benchmarks/cnn/.
Columns: certified / provable / regions from report.json; quantize_s, verify_s wall-clock
(a shared 2-core machine: noisy); recheck_s = verify's re-derivation part; inputs = inputs
verify ran; worst drop/bound = largest observed margin drop over its certified bound (< 1 when
the certificate holds); violations; min label agreement.
Writes results/classify_cli.md and results/classify_cli.csv.
Usage: python scripts/classify_cli_times.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aster_ext.experiments.tables import write_script_table

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
NETS = ["Convnet_maxpool", "Convnet_avgpool", "resnet_2b"]
FIELDS = [
    "network", "regions", "provable", "certified", "quantize_s", "verify_s", "recheck_s", "inputs",
    "worst_drop_over_bound", "violations", "min_label_agreement", "verify_passed",
]  # fmt: skip


def run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aster_ext.cli", *args, "--quiet"], cwd=ROOT, check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="classify-cli-") as tmp:
        for stem in NETS:
            if args.only and stem not in args.only:
                continue
            out = Path(tmp) / stem
            q = run(["quantize", str(SHARED / "cnn" / f"{stem}.onnx"), "--out", str(out)])
            v = run(["verify", str(out)])
            rep = json.loads((out / "report.json").read_text())
            ver = json.loads((out / "verify.json").read_text())
            ratios = [r["max_drop_over_bound"] for r in ver["regions"]]
            ratios = [x for x in ratios if x is not None]
            row = {
                "network": stem,
                "regions": rep["n_regions"],
                "provable": rep["provable_regions"],
                "certified": rep["certified_regions"],
                "quantize_s": round(q, 1),
                "verify_s": round(v, 1),
                "recheck_s": round(ver["recheck_s"], 1),
                "inputs": ver["samples"],
                "worst_drop_over_bound": f"{max(ratios):.3g}" if ratios else "",
                "violations": ver["violations"],
                "min_label_agreement": f"{min(r['label_agreement'] for r in ver['regions']):.3f}",
                "verify_passed": ver["passed"],
            }
            rows.append(row)
            print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
    title = "Classifier CLI end to end (quantize + verify per benchmark CNN)"
    write_script_table(ROOT / "results" / "classify_cli", title, __doc__ or "", rows, FIELDS, args.only)
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
