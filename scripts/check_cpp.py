"""Compile the generated HLS C++ of every benchmark with g++ against ap_types and compare it bit
for bit with the Python simulator, for each mode.

Per benchmark and mode it takes the first feasible of (setting, ε) in TRIES, quantises, writes the
C++ and runs VERIFY_CPP_INPUTS random inputs in the box plus as many far outside it (exercising
wrap-around) through both. Writes results/cpp_check.csv and .md.
The tables are rewritten after every finished program (marked partial until all are done);
``--resume`` keeps the finished rows of results/cpp_check.csv and runs only the others (only to
continue an interrupted run of the same code).
Usage: python scripts/check_cpp.py [--only NAME ...] [--modes refined aster aster-sound] [--resume]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from reproduce_aster import SHARED, model_path  # noqa: E402

TRIES = [("C", 1e-3), ("B", 1e-3), ("A", 1e-3), ("C", 1e-2), ("C", 1e-1), ("C", 1.0)]
VERIFY_CPP_INPUTS = 200
FIELDS = ["benchmark", "mode", "setting", "eps", "status", "layouts", "bit_exact", "inputs", "time_s", "note"]


def run_one(name: str, mode: str) -> dict[str, object]:
    import numpy as np

    from aster_ext.errors import UserError
    from aster_ext.pipeline import QuantizeOptions, quantize
    from aster_ext.verify_dir import cpp_matches_simulator

    t0 = time.perf_counter()
    row: dict[str, object] = {"benchmark": name, "mode": mode}
    path = model_path(name)
    spec = SHARED / "aster" / f"{name}.spec.json" if path.suffix == ".onnx" else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for setting, eps in TRIES:
            try:
                res = quantize(
                    path, QuantizeOptions(error=eps, mode=mode, setting=setting, spec_path=spec), out
                )
                break
            except UserError as exc:
                row["note"] = str(exc)[:160]
        else:
            row.update(status="infeasible", time_s=round(time.perf_counter() - t0, 1))
            return row
        lo, hi = res.spec.input_lower, res.spec.input_upper
        try:
            same, n = cpp_matches_simulator(
                res.program, out, np.asarray(lo), np.asarray(hi), 0, n=VERIFY_CPP_INPUTS
            )
            row.update(status="ok", bit_exact=same, inputs=n, note="")
        except Exception as exc:  # a compile failure is a finding, reported in the table
            row.update(status="compile-error", note=f"{type(exc).__name__}: {exc}"[:160])
        row.update(setting=setting, eps=eps, layouts=" ".join(sorted(set(res.report["codegen"]["layouts"]))))
    row["time_s"] = round(time.perf_counter() - t0, 1)
    return row


def write_tables(rows: list[dict[str, object]], names: list[str], n_total: int, wall: float) -> None:
    key = {n: i for i, n in enumerate(names)}
    rows = sorted(rows, key=lambda r: (key.get(str(r["benchmark"]), len(key)), str(r["mode"])))
    out = ROOT / "results"
    with open(out / "cpp_check.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    exact = sum(str(r.get("bit_exact")) == "True" for r in ok)
    partial = "" if len(rows) == n_total else f" (PARTIAL: {len(rows)} of {n_total} programs finished)"
    lines = [
        "# Generated C++ vs. the bit-exact simulator (g++ against the Xilinx ap_types headers)",
        "",
        "Written by `scripts/check_cpp.py`: per benchmark and mode the first feasible (setting, ε) of "
        f"{TRIES}; "
        f"{VERIFY_CPP_INPUTS} random inputs in the box plus {VERIFY_CPP_INPUTS} scaled 3x outside it.",
        "",
        f"- programs compiled: {len(ok)} of {len(rows)}; bit-exact: {exact}; "
        f"compile errors: {sum(r['status'] == 'compile-error' for r in rows)}; "
        f"no feasible target: {sum(r['status'] == 'infeasible' for r in rows)}{partial}",
        f"- wall time {wall:.0f} s (this run; shared machine)",
        "",
        "| " + " | ".join(FIELDS[:-1]) + " |",
        "|" + "---|" * (len(FIELDS) - 1),
    ]
    for r in rows:
        cells = [r.get(k, "") for k in FIELDS[:-1]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (out / "cpp_check.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--modes", nargs="*", default=["refined", "aster", "aster-sound"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="keep finished rows of results/cpp_check.csv")
    args = ap.parse_args()
    names = args.only or sorted(p.stem for p in (SHARED / "aster").glob("*.scala"))
    jobs = [(n, m) for m in args.modes for n in names]
    out = ROOT / "results"
    rows: list[dict[str, object]] = []
    if args.resume and (out / "cpp_check.csv").exists():
        with open(out / "cpp_check.csv") as fh:
            rows = [r for r in csv.DictReader(fh) if r["status"] in ("ok", "infeasible")]
        done = {(r["benchmark"], r["mode"]) for r in rows}
        jobs = [j for j in jobs if j not in done]
    n_total = len(jobs) + len(rows)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(run_one, *j): j for j in jobs}
        for fut in as_completed(futs):
            j = futs[fut]
            try:
                row = fut.result()
            except Exception as exc:
                row = {
                    "benchmark": j[0],
                    "mode": j[1],
                    "status": "error",
                    "note": f"{type(exc).__name__}: {exc}",
                }
            rows.append(row)
            elapsed = time.perf_counter() - t0
            print(f"[{elapsed:.0f}s] {j[0]} {j[1]}: {row['status']} {row.get('bit_exact', '')}", flush=True)
            write_tables(rows, names, n_total, time.perf_counter() - t0)
    write_tables(rows, names, n_total, time.perf_counter() - t0)
    print(f"wrote results/cpp_check.csv/.md in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
