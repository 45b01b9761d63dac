"""Wall time of `refined` per benchmark (analysis + ILP + certify + codegen, one process, no other
work in it), ε = 1e-3, settings given on the command line (default C). Run it on a quiet machine:
the numbers are the time a user waits. Writes results/refined_timing.csv and .md.
Usage: python scripts/time_refined.py [--settings C A] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from reproduce_aster import SHARED, model_path  # noqa: E402

FIELDS = ["benchmark", "setting", "status", "certified", "hw", "analyse_s", "codegen_s", "total_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="*", default=["C"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--tables-only", action="store_true", help="rewrite the .md from the existing .csv")
    args = ap.parse_args()
    if args.tables_only:
        with open(ROOT / "results" / "refined_timing.csv") as fh:
            write_md(list(csv.DictReader(fh)), args)
        return 0
    from aster_ext.errors import UserError
    from aster_ext.pipeline import QuantizeOptions, quantize

    names = args.only or sorted(p.stem for p in (SHARED / "aster").glob("*.scala"))
    rows = []
    for name in names:
        for setting in args.settings:
            path = model_path(name)
            spec = SHARED / "aster" / f"{name}.spec.json" if path.suffix == ".onnx" else None
            t0 = time.perf_counter()
            row: dict[str, object] = {"benchmark": name, "setting": setting}
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    opts = QuantizeOptions(error=args.eps, mode="refined", setting=setting, spec_path=spec)
                    res = quantize(path, opts, Path(tmp) / "out")
                t = res.report["timings"]
                row.update(status="ok", certified=f"{res.report['certified_error']:.4g}",
                           hw=res.report["cost"]["hw"], analyse_s=round(t.get("assign_and_certify_s", 0), 2),
                           codegen_s=round(t.get("codegen_s", 0), 2))  # fmt: skip
            except UserError as exc:
                row.update(status="infeasible", certified=str(exc)[:80])
            row["total_s"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            print(f"{name} {setting}: {row['status']} {row['total_s']} s", flush=True)
    with open(ROOT / "results" / "refined_timing.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    write_md(rows, args)
    return 0


def write_md(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    totals = [float(r["total_s"]) for r in rows]
    feasible = [float(r["total_s"]) for r in rows if r["status"] == "ok"]
    lines = [
        f"# refined: time per benchmark (ε = {args.eps:g}, settings {', '.join(args.settings)})",
        "",
        "Written by `scripts/time_refined.py` (one process, sequential: load, analysis, ILP, certify, "
        "codegen).",
        "",
        f"- median {statistics.median(totals):.2f} s, max {max(totals):.2f} s over {len(rows)} runs",
        f"- certified runs only: median {statistics.median(feasible):.2f} s, max {max(feasible):.2f} s over "
        f"{len(feasible)} runs",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    (ROOT / "results" / "refined_timing.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
