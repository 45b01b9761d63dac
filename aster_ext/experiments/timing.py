"""Where a sweep store's time went: ``python -m aster_ext.experiments timing WORK [--workers N]``.

From the rows of ``WORK/results.csv`` (every cell's own ``time_s`` = quantize, of which ``solver_s``
is HiGHS, and ``verify_s``) and the runs logged in ``WORK/runs.jsonl``: the sums per mode / variant,
their sum divided by the worker count (the wall time the cells need on that many otherwise idle
cores, start-up and the pool's tail not counted), and the slowest cells. On a shared machine the
cells' own times grow with the load; the logged runs give the load average at their start and end.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .cell import ROW_FIELDS
from .store import ResultStore


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else 0.0


def timing_lines(work: Path, workers: int = 2, top: int = 10) -> list[str]:
    """The report (module docstring) as lines of text."""
    store = ResultStore(work, ROW_FIELDS)
    rows = store.rows()
    q = sum(_num(r.get("time_s")) for r in rows)
    v = sum(_num(r.get("verify_s")) for r in rows)
    s = sum(_num(r.get("solver_s")) for r in rows)
    lines = [
        f"{work / 'results.csv'}: {len(rows)} cells; quantize {q:.0f} s (HiGHS {s:.0f} s), verify {v:.0f} s; "
        f"sum {(q + v) / 60:.1f} min, /{workers} workers = {(q + v) / 60 / workers:.1f} min",
    ]
    groups: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for r in rows:
        g = groups[(str(r["mode"]), str(r["variant"]))]
        g[0] += _num(r.get("time_s"))
        g[1] += _num(r.get("solver_s"))
        g[2] += _num(r.get("verify_s"))
        g[3] += 1
    for (mode, variant), (tq, ts, tv, n) in sorted(groups.items()):
        lines.append(f"  {mode:12s} {variant:18s} {int(n):4d} cells: quantize {tq:7.0f} s "
                     f"(HiGHS {ts:6.0f} s), verify {tv:6.0f} s")  # fmt: skip
    slow = sorted(rows, key=lambda r: -(_num(r.get("time_s")) + _num(r.get("verify_s"))))[:top]
    lines.append(f"slowest {len(slow)} cells (quantize / HiGHS / verify s):")
    for r in slow:
        lines.append(
            f"  {r['model']} {r['eps']:g} {r['setting']} {r['mode']} {r['variant']} {r['status']}: "
            f"{_num(r.get('time_s')):.1f} / {_num(r.get('solver_s')):.1f} / {_num(r.get('verify_s')):.1f}"
        )
    for run in store.runs():
        lines.append(
            f"run {run.get('label')} {run.get('date_utc')}: {run.get('written')} rows in "
            f"{_num(run.get('wall_s')) / 60:.1f} min wall, {run.get('workers')} workers, load average "
            f"{run.get('load_avg_start')} -> {run.get('load_avg_end')}"
        )
    return lines
