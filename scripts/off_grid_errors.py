"""Settings C/D (noInitError) certify only inputs on the in_t grid: how large is the error off it?

For each of Aster's benchmarks, settings C and D, ε = 1e-3, refined mode (the default): quantize
(no output folder), then ``verify_program`` on the grid (what the certificate covers) and off it
(doubles in the box, quantised to in_t by the implementation, as the generated C++ does), with a
fixed budget (SAMPLES random/corner inputs + ITERS search rounds, seed 0). Writes
results/off_grid.csv and results/off_grid.md. Usage:

    python scripts/off_grid_errors.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
SAMPLES = 500
ITERS = 20
EPS = 1e-3
SETTINGS = ("C", "D")
FIELDS = ["benchmark", "setting", "status", "input_format", "certified", "on_grid_max", "on_grid_violations",
          "off_grid_max", "off_over_certified", "time_s", "note"]  # fmt: skip


def model_path(name: str) -> Path:
    scala = SHARED / "aster" / f"{name}.scala"
    return scala if name != "VertCASVer1" else SHARED / "aster" / f"{name}.onnx"


def run(name: str, setting: str) -> dict[str, object]:
    from aster_ext.errors import UserError
    from aster_ext.pipeline import QuantizeOptions, quantize
    from aster_ext.verify import VerifyBudget, verify_program

    row: dict[str, object] = {"benchmark": name, "setting": setting}
    t0 = time.perf_counter()
    try:
        res = quantize(model_path(name), QuantizeOptions(error=EPS, setting=setting), None)
    except UserError as exc:
        row.update(status="refused", note=str(exc)[:120], time_s=round(time.perf_counter() - t0, 1))
        return row
    bound = np.array(res.report["certified_error_per_output"])
    lo, hi = res.spec.input_lower, res.spec.input_upper
    budget = VerifyBudget(samples=SAMPLES, search_iters=ITERS, seed=0)
    on = verify_program(res.program, res.layers, lo, hi, bound, True, budget)
    off = verify_program(res.program, res.layers, lo, hi, bound, False, budget)
    row.update(
        status="ok",
        input_format=res.report["input_format"],
        certified=f"{res.report['certified_error']:.4g}",
        on_grid_max=f"{on.max_observed_error:.4g}",
        on_grid_violations=on.violations,
        off_grid_max=f"{off.max_observed_error:.4g}",
        off_over_certified=f"{off.max_observed_error / res.report['certified_error']:.3g}",
        time_s=round(time.perf_counter() - t0, 1),
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="benchmark names")
    args = ap.parse_args()
    names = args.only or sorted(p.stem for p in (SHARED / "aster").glob("*.spec.json"))
    names = [n.removesuffix(".spec") for n in names]
    rows = []
    for name in names:
        for setting in SETTINGS:
            row = run(name, setting)
            print(row, flush=True)
            rows.append(row)
    out = ROOT / "results"
    with open(out / "off_grid.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    ratios = [float(r["off_over_certified"]) for r in ok]
    lines = [
        "# Off-grid inputs in settings C/D (noInitError)",
        "",
        f"Refined mode, ε = {EPS:g}; verify budget {SAMPLES} samples + {ITERS} search rounds, seed 0, on the "
        "in_t grid (covered by the certificate) and off it (not covered). Written by "
        "`scripts/off_grid_errors.py`; timings were taken on a shared machine.",
        "",
        f"{len(ok)} runs; violations on the grid: {sum(int(r['on_grid_violations']) for r in ok)}; "
        f"off-grid max error / certified: median {np.median(ratios):.3g}, max {max(ratios):.3g}"
        if ok
        else "no run succeeded",
        "",
        "| benchmark | setting | in_t | certified | on-grid max | off-grid max | off / certified |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            note = f"{r['status']}: {r.get('note', '')}"
            lines.append(f"| {r['benchmark']} | {r['setting']} | {note} | | | | |")
            continue
        lines.append(
            f"| {r['benchmark']} | {r['setting']} | `{r['input_format']}` | {r['certified']} | "
            f"{r['on_grid_max']} | {r['off_grid_max']} | {r['off_over_certified']} |"
        )
    (out / "off_grid.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
