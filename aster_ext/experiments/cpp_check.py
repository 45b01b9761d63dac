"""Table ``cpp_check``: the generated HLS C++ of every benchmark compiled with g++ against ap_types
and compared bit for bit with the Python simulator, for each mode.

Per benchmark and mode: the first feasible (setting, ε) of ``TRIES`` is quantised, the C++ written,
and ``INPUTS`` random inputs in the box plus as many scaled 3x outside it (exercising wrap-around)
run through both (``verify_dir.cpp_matches_simulator``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .benchmarks import aster_model_paths
from .tasks import TableRun, tasks_of

TABLE = "cpp_check"
TRIES = [("C", 1e-3), ("B", 1e-3), ("A", 1e-3), ("C", 1e-2), ("C", 1e-1), ("C", 1.0)]
INPUTS = 200
MODES = ("refined", "aster", "aster-sound")
#: --quick: one small benchmark (each program is compiled: a few seconds of g++ apiece)
QUICK = ("SmallNN",)
FIELDS = ["benchmark", "mode", "setting", "eps", "status", "layouts", "bit_exact", "inputs", "time_s", "note"]
CELL_TIME_LIMIT = 1800.0


def check_one(model_path: str, mode: str) -> dict[str, Any]:
    """Quantise at the first feasible target of TRIES, write the C++, compile, compare with the
    simulator. The analysis is the modes sweep's when a reproduce run shared it (``analysis_cache``:
    same model, options and code), else computed here; the C++ is written by ``generate_hls`` from
    that program, as ``quantize`` writes it."""
    import numpy as np

    from ..codegen.hls import generate_hls
    from ..codegen.layout import layer_layouts
    from ..pipeline import QuantizeOptions
    from ..verify_dir import cpp_matches_simulator
    from .analysis_cache import analyse_cached, cache_dir

    t0 = time.perf_counter()
    row: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aster-ext-cppcheck-") as tmp:
        out = Path(tmp) / "out"
        for setting, eps in TRIES:
            got = analyse_cached(Path(model_path), QuantizeOptions(error=eps, mode=mode, setting=setting))
            if got.infeasible is None:
                break
            row["note"] = got.infeasible[:160]
        else:
            row.update(status="infeasible", time_s=round(time.perf_counter() - t0, 1))
            return row
        out.mkdir()
        generate_hls(got.program, out)
        lo, hi = np.asarray(got.input_lower), np.asarray(got.input_upper)
        try:
            # in a reproduce run every program's units share one precompiled ap_fixed.h
            pch = None if cache_dir() is None else cache_dir() / "pch"
            same, n = cpp_matches_simulator(got.program, out, lo, hi, 0, n=INPUTS, pch_dir=pch)
            row.update(status="ok", bit_exact=same, inputs=n, note="")
        except Exception as exc:  # a compile failure is a finding, reported in the table
            row.update(status="compile-error", note=f"{type(exc).__name__}: {exc}"[:160])
        row.update(setting=setting, eps=eps, layouts=" ".join(sorted(set(layer_layouts(got.program)))))
    row["time_s"] = round(time.perf_counter() - t0, 1)
    return row


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the checks in ``work/cpp_check`` and write results/cpp_check.csv/.md."""
    paths = aster_model_paths(QUICK if run.quick else None)
    items = [{"model_path": str(p), "mode": m} for m in MODES for p in paths]
    tasks = tasks_of(
        __name__,
        "check_one",
        items,
        lambda kw: {"benchmark": Path(kw["model_path"]).stem, "mode": kw["mode"]},
        lambda kw: Path(kw["model_path"]).stat().st_size * (3 if kw["mode"] == "refined" else 1),
    )
    t0 = time.perf_counter()
    rows = run.rows(TABLE, tasks, FIELDS, CELL_TIME_LIMIT, parse=False)
    order = {p.stem: i for i, p in enumerate(paths)}
    rows.sort(key=lambda r: (order[r["benchmark"]], str(r["mode"])))
    return run.write(TABLE, rows, FIELDS, markdown(rows, len(tasks), time.perf_counter() - t0, run.workers))


def markdown(rows: list[dict[str, Any]], n_total: int, wall: float, workers: int) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    exact = sum(str(r.get("bit_exact")) == "True" for r in ok)
    partial = "" if len(rows) == n_total else f" (PARTIAL: {len(rows)} of {n_total} programs finished)"
    lines = [
        "# Generated C++ vs. the bit-exact simulator (g++ against the Xilinx ap_types headers)",
        "",
        "Written by `aster-ext experiments reproduce` (table 'cpp_check'): per benchmark and mode the first "
        f"feasible (setting, ε) of {TRIES}; {INPUTS} random inputs in the box plus {INPUTS} scaled 3x "
        "outside it.",
        "",
        f"- programs compiled: {len(ok)} of {len(rows)}; bit-exact: {exact}; "
        f"compile errors: {sum(r['status'] == 'compile-error' for r in rows)}; "
        f"no feasible target: {sum(r['status'] == 'infeasible' for r in rows)}{partial}",
        f"- wall time {wall:.0f} s (this run, {workers} workers; shared machine)",
        "",
        "| " + " | ".join(FIELDS[:-1]) + " |",
        "|" + "---|" * (len(FIELDS) - 1),
    ]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(k) is None else str(r[k]) for k in FIELDS[:-1]) + " |")
    return "\n".join(lines) + "\n"
