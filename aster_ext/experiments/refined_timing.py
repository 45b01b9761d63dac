"""Table ``refined_timing``: wall time of ``refined`` per benchmark (load, analysis, ILP, certify,
codegen: one ``quantize`` in a fresh process), ε = 1e-3, settings C and A.

The numbers are the time a user waits; measured while other cells run in parallel (``workers``)
on a shared machine they are noisy, and the table says with how many workers it was taken.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .benchmarks import QUICK, aster_model_paths
from .tasks import TableRun, tasks_of

TABLE = "refined_timing"
FIELDS = ["benchmark", "setting", "status", "certified", "hw", "analyse_s", "codegen_s", "total_s"]
SETTINGS = ("C", "A")
EPS = 1e-3


def time_one(model_path: str, setting: str, eps: float) -> dict[str, Any]:
    """One refined ``quantize`` into a temporary folder, timed as a whole and by phase."""
    from ..errors import UserError
    from ..pipeline import QuantizeOptions, quantize

    t0 = time.perf_counter()
    row: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="aster-ext-timing-") as tmp:
            opts = QuantizeOptions(error=eps, mode="refined", setting=setting)
            res = quantize(Path(model_path), opts, Path(tmp) / "out")
        t = res.report["timings"]
        row.update(
            status="ok",
            certified=f"{res.report['certified_error']:.4g}",
            hw=res.report["cost"]["hw"],
            analyse_s=round(t.get("assign_and_certify_s", 0), 2),
            codegen_s=round(t.get("codegen_s", 0), 2),
        )
    except UserError as exc:
        row.update(status="infeasible", certified=str(exc)[:80])
    row["total_s"] = round(time.perf_counter() - t0, 2)
    return row


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the timings in ``work/refined_timing`` and write results/refined_timing.csv/.md."""
    paths = aster_model_paths(QUICK if run.quick else None)
    items = [{"model_path": str(p), "setting": s, "eps": EPS} for p in paths for s in SETTINGS]
    tasks = tasks_of(
        __name__,
        "time_one",
        items,
        lambda kw: {"benchmark": Path(kw["model_path"]).stem, "setting": kw["setting"]},
        lambda kw: Path(kw["model_path"]).stat().st_size,
    )
    rows = run.rows(TABLE, tasks, FIELDS, parse=False)
    return run.write(TABLE, rows, FIELDS, markdown(rows, run.workers))


def markdown(rows: list[dict[str, Any]], workers: int) -> str:
    totals = [float(r["total_s"]) for r in rows if r.get("total_s") is not None]
    feasible = [float(r["total_s"]) for r in rows if r["status"] == "ok"]

    def stats(v: list[float]) -> str:
        return f"median {statistics.median(v):.2f} s, max {max(v):.2f} s" if v else "none"

    lines = [
        f"# refined: time per benchmark (ε = {EPS:g}, settings {', '.join(SETTINGS)})",
        "",
        "Written by `aster-ext experiments reproduce` (table 'refined_timing'): each run one `quantize` "
        "(load, analysis, ILP, certify, codegen) in a fresh process; "
        f"{workers} run(s) at a time on a shared machine (times are noisy).",
        "",
        f"- {stats(totals)} over {len(rows)} runs",
        f"- certified runs only: {stats(feasible)} over {len(feasible)} runs",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join("" if r.get(k) is None else str(r[k]) for k in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"
