"""Input splitting of refined certificates: bound before / after, tightness, time (issue 12).

    python scripts/path_sensitive.py [--nets MountainCarNN ...] [--boxes 16 64 256] [--eps 1e-3]
                                     [--setting C] [--workers 1]

Per network (Aster benchmarks from ../shared/benchmarks/aster, and ``ACASXU`` = the ACAS Xu net of
../shared/benchmarks/external in setting B at ε = 1e-2): refined ``quantize`` (no output folder),
the observed maximum error of the program over its box (``verify_program``: random + corner
samples and local search, worst points re-evaluated exactly), then :func:`certify_by_splitting`
with every ``--boxes`` budget (the program is fixed: only its certificate is re-derived).
``tightness`` = certified / observed (>= 1). Writes results/path_sensitive.md and .csv.
Times are wall clock on a shared 2-core machine (noisy).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from aster_ext.experiments.script_steps import run_recorded
from aster_ext.experiments.tables import geomean
from aster_ext.pipeline import QuantizeOptions, quantize
from aster_ext.refined.split import certify_by_splitting
from aster_ext.verify import VerifyBudget, verify_program

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
DEFAULT_NETS = ["SmallNN", "LyapunovNN", "InvPendulumNN", "MountainCarNN", "AcrobotNN", "SinglePendulumNN",
                "DoublePendulumRobustNN", "AC6", "ACASXU"]  # fmt: skip
FIELDS = ["network", "setting", "eps", "hw", "observed", "boxes", "analysed", "bound_before", "bound_after",
          "tightness_before", "tightness_after", "quantize_s", "split_s"]  # fmt: skip


def model_of(name: str) -> tuple[Path, str, float | None]:
    if name == "ACASXU":
        return SHARED / "external" / "ACASXU_run2a_1_1_batch_2000.onnx", "B", 1e-2
    return SHARED / "aster" / f"{name}.onnx", "", None


def run_net(name: str, eps: float, setting: str, boxes: list[int], workers: int) -> list[dict]:
    path, forced_setting, forced_eps = model_of(name)
    setting, eps = forced_setting or setting, forced_eps or eps
    t = time.perf_counter()
    r = quantize(path, QuantizeOptions(error=eps, mode="refined", setting=setting), None)
    q_s = time.perf_counter() - t
    lo, hi = r.spec.input_lower, r.spec.input_upper
    on_grid = r.certificate.input_on_grid
    ver = verify_program(r.program, r.layers, lo, hi, r.certificate.output_bound, on_grid,
                         VerifyBudget(samples=2000, search_iters=30))  # fmt: skip
    obs = ver.max_observed_error
    rows = []
    for n in boxes:
        sc = certify_by_splitting(r.program, r.layers, lo, hi, 0.0, n, on_grid, workers=workers)
        if obs > sc.max_bound:
            raise SystemExit(f"{name}: observed {obs} above the split bound {sc.max_bound}: unsound")
        before = float(sc.whole_bound.max())
        rows.append({
            "network": name, "setting": setting, "eps": eps, "hw": r.report["cost"]["hw"],
            "observed": f"{obs:.4g}", "boxes": len(sc.leaves), "analysed": sc.analysed,
            "bound_before": f"{before:.4g}", "bound_after": f"{sc.max_bound:.4g}",
            "tightness_before": f"{before / obs:.3g}" if obs > 0 else "",
            "tightness_after": f"{sc.max_bound / obs:.3g}" if obs > 0 else "",
            "quantize_s": round(q_s, 1), "split_s": round(sc.time_s, 1),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def write(rows: list[dict], out: Path) -> None:
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Input splitting of refined certificates (scripts/path_sensitive.py)",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "## Summary (geo-mean tightness = certified / observed, per box budget)",
        "",
        "| boxes | nets | tightness before | tightness after | after / before |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({int(r["boxes"]) for r in rows}):
        sel = [r for r in rows if int(r["boxes"]) == n and r["tightness_before"]]
        tb = geomean([float(r["tightness_before"]) for r in sel])
        ta = geomean([float(r["tightness_after"]) for r in sel])
        lines.append(f"| {n} | {len(sel)} | {tb:.3g} | {ta:.3g} | {ta / tb:.3g} |")
    lines += ["", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r[k]) for k in FIELDS) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="*", default=DEFAULT_NETS)
    ap.add_argument("--boxes", nargs="*", type=int, default=[16, 64, 256])
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--setting", default="C")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "path_sensitive")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"benchmarks not found at {SHARED}")
    rows = []
    for name in args.nets:
        rows += run_net(name, args.eps, args.setting, args.boxes, args.workers)
        write(rows, args.out)
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
