"""Table ``refined_timing``: wall time of ``refined`` per benchmark (load, analysis, ILP, certify,
codegen: one ``quantize`` in a fresh process), ε = 1e-3, settings C and A.

These are cells of the ``modes`` sweep (refined mode, the full analysis, same ILP time limit): the
table runs that sweep's cells for ε = 1e-3 and settings C, A into the same store (``WORK/``, where the
``modes`` step finds them finished) and reads each cell's ``time_s`` — the time of ``quantize`` alone,
the verify that follows in the cell not included — and ``solver_s`` (the HiGHS solves inside it).

The numbers are the time a user waits; measured while other cells run in parallel (``workers``)
on a shared machine they are noisy, and the table says with how many workers it was taken.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from .cell import ROW_FIELDS
from .runner import run_sweep
from .store import ResultStore, row_key
from .tasks import TableRun

TABLE = "refined_timing"
STORE_DIR = ""  # the modes sweep's store, WORK/ itself
FIELDS = ["benchmark", "setting", "status", "certified", "hw", "solver_s", "total_s"]
SETTINGS = ("C", "A")
EPS = 1e-3


def table_row(cell_row: dict[str, Any]) -> dict[str, Any]:
    """A store row of a refined cell in the table's columns (``certified`` holds the reason when the
    target is not certifiable)."""
    ok = cell_row["status"] == "ok"
    certified = f"{cell_row['certified']:.4g}" if ok else str(cell_row.get("message") or "")[:80]
    return {
        "benchmark": cell_row["model"],
        "setting": cell_row["setting"],
        "status": cell_row["status"],
        "certified": certified,
        "hw": cell_row.get("hw") if ok else None,
        "solver_s": round(float(cell_row["solver_s"]), 2) if cell_row.get("solver_s") is not None else None,
        "total_s": round(float(cell_row["time_s"]), 2),
    }


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the refined ε = 1e-3 cells of the modes sweep in ``work/`` and write
    results/refined_timing.csv/.md."""
    from .reproduce import grids  # the modes grid (reproduce imports this module)

    modes = grids(run.quick)["modes"]
    grid = dataclasses.replace(modes, eps=[EPS], settings=list(SETTINGS), modes=["refined"])
    summary = run_sweep(grid, run.work, run.workers, run.ray_address, progress=run.progress, label=TABLE)
    if summary.crashed:
        raise RuntimeError(f"{TABLE}: {len(summary.crashed)} cells crashed twice; rerun with --resume")
    by_key = {row_key(r): r for r in ResultStore(run.work, ROW_FIELDS).rows()}
    rows = [table_row(by_key[c.key]) for c in grid.cells() if c.key in by_key]
    return run.write(TABLE, rows, FIELDS, markdown(rows, run.workers))


def markdown(rows: list[dict[str, Any]], workers: int) -> str:
    totals = [float(r["total_s"]) for r in rows if r.get("total_s") is not None]
    feasible = [float(r["total_s"]) for r in rows if r["status"] == "ok"]

    def stats(v: list[float]) -> str:
        return f"median {statistics.median(v):.2f} s, max {max(v):.2f} s" if v else "none"

    lines = [
        f"# refined: time per benchmark (ε = {EPS:g}, settings {', '.join(SETTINGS)})",
        "",
        "Written by `aster-ext experiments reproduce` (table 'refined_timing', from the refined cells of the "
        "modes sweep): `total_s` is one `quantize` (load, analysis, ILP, certify, codegen) in a fresh "
        "process, `solver_s` the HiGHS solves inside it; "
        f"{workers} cell(s) at a time on a shared machine (times are noisy).",
        "",
        f"- {stats(totals)} over {len(rows)} runs",
        f"- certified runs only: {stats(feasible)} over {len(feasible)} runs",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join("" if r.get(k) is None else str(r[k]) for k in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"
