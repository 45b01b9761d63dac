"""``aster-ext experiments reproduce [--quick]``: rebuild every table of ``results/`` in one command.

Steps (``STEPS``; ``--tables`` picks some, run in the order given):

- ``modes``: one sweep store (``WORK/``): Aster's benchmarks × ε {1e-3, 1e-5} × settings A–D ×
  modes {aster, aster-sound, refined} (the full analysis), plus the refined-mode ablation variants
  at ε = 1e-3, setting A. From its rows: ``modes.md/.csv`` + ``ablation.csv``,
  ``aster_reproduction.md/.csv`` and the figures.
- ``aster_violations``: a second store (``WORK/violations``): ``aster`` mode at ε = 1e-3 under a
  stronger verify budget (3000 samples, 80 search rounds).
- ``refined_timing``: the refined cells of the ``modes`` sweep at ε = 1e-3, settings C and A, run
  into the same store ``WORK/`` (the ``modes`` step then skips them; module ``refined_timing``).
- ``aster_lp_match``, ``nonlinear``, ``tightness_breakdown``, ``activations_e2e``,
  ``tightness_nonlinear``, ``cpp_check``: tables of their own cells (module of the same name in this
  package, ``build``), each with its store ``WORK/<table>``.

The tables that the checkout's scripts write (hls4ml, CNNs, nonlinear depth, exact tightness, ...:
:data:`.script_steps.SCRIPT_STEPS`, hours on two cores) run with ``--all`` (after the steps above)
or by name with ``--tables``; they write the checkout's ``results/`` only.

After every step ``MANIFEST.json`` is rewritten (commit, versions, CPU, date, seeds, wall time per
table). A rerun with ``--resume WORK`` skips every finished cell. ``--quick`` runs a small version
of each (four small benchmarks for the sweeps; see each module's ``QUICK``), for CI, into
``out/reproduce-quick/results`` unless ``--results`` says otherwise; its ``nonlinear`` step (one
long task) runs beside the other steps (``QUICK_BACKGROUND``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import UserError
from . import (
    activations_e2e,
    analysis_cache,
    aster_lp_match,
    cpp_check,
    nonlinear,
    refined_timing,
    tightness_breakdown,
    tightness_nonlinear,
)
from .benchmarks import QUICK, aster_model_paths, aster_reference_csv
from .cell import ROW_FIELDS
from .figures import FIGURES, write_figures
from .grid import DEFAULT_VERIFY, VARIANTS, Grid
from .manifest import (
    build_manifest,
    check_files_are_ours,
    check_manifest_is_ours,
    git_commit,
    git_tracked,
    read_manifest,
    write_manifest,
)
from .runner import children_cpu_s, run_sweep
from .script_steps import CHECKOUT, SCRIPT_STEPS, check_can_run, run_script_step
from .store import ResultStore, row_key
from .tables import read_reference, write_modes, write_reproduction, write_violations
from .tasks import TableRun

EPSILONS = [1e-3, 1e-5]
SETTINGS = ["A", "B", "C", "D"]
MODES = ["aster", "aster-sound", "refined"]
ILP_TIME_LIMIT = 60.0
CELL_TIME_LIMIT = 600.0
VIOLATIONS_VERIFY = {**DEFAULT_VERIFY, "samples": 3000, "search_iters": 80}
#: --quick: steps that are one long task (the tanh MNIST net's box), started first and run beside the
#: other steps, whose pools would otherwise leave a core idle while it runs
QUICK_BACKGROUND = ("nonlinear",)


def grids(quick: bool) -> dict[str, Grid]:
    """The main comparison grid and the ablation grid (refined variants at ε = 1e-3, setting A), one
    store; the stronger-verify grid of ``aster`` mode, its own store (``violations``)."""
    models = aster_model_paths(QUICK if quick else None)
    common = {
        "cell_time_limit": CELL_TIME_LIMIT,
        "ilp_time_limit": ILP_TIME_LIMIT,
        "verify": dict(DEFAULT_VERIFY),
    }
    return {
        "modes": Grid(models=models, eps=EPSILONS, settings=SETTINGS, modes=MODES, **common),
        "ablation": Grid(
            models=models,
            eps=[1e-3],
            settings=["A"],
            modes=["refined"],
            variants=[v for v in VARIANTS if v != "full"],
            **common,
        ),
        "violations": Grid(
            models=models,
            eps=[1e-3],
            settings=SETTINGS,
            modes=["aster"],
            **{**common, "verify": dict(VIOLATIONS_VERIFY)},
        ),
    }


def reproduce(
    results: Path,
    work: Path,
    quick: bool,
    workers: int,
    ray_address: str | None,
    progress: bool,
    tables: tuple[str, ...] | None = None,
    all_tables: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the experiments of ``tables`` (in the order given; default: all of ``STEPS``,
    then with ``all_tables`` every script table of ``SCRIPT_STEPS``) in
    ``work``; write their tables, figures and MANIFEST.json to ``results``. The manifest is rewritten
    after every step, so a run stopped half-way leaves the tables it finished described; entries of
    tables this run did not rebuild are kept from an earlier MANIFEST.json (each with its own date
    and commit), and so are the details of the sweeps it did not rerun (``sweeps``,
    ``sweep_stores``). A step that fails is recorded in the manifest and the others still run; then
    RuntimeError names the failed steps. Before any step runs, UserError if ``results`` holds a file
    a chosen step would write that this tool did not write (not listed by the folder's manifest, nor,
    for the script tables, committed in the checkout): a user's file is never replaced."""
    chosen = chosen_steps(tables, all_tables)
    scripted = [s for s in chosen if s in SCRIPT_STEPS]
    if scripted and quick:
        raise UserError(f"--quick has no short version of the script tables {', '.join(scripted)}")
    if scripted:
        check_can_run(results)
    check_manifest_is_ours(results / "MANIFEST.json")  # before any step writes there
    planned = planned_files(chosen)
    tracked = git_tracked(CHECKOUT, results) if scripted else set()  # the checkout's committed tables
    check_files_are_ours(results, planned, tracked)
    results.mkdir(parents=True, exist_ok=True)
    code = git_commit(Path(__file__).resolve().parents[2])  # the code the cells run, taken at the start
    # the sweep cells share their analyses with tightness_breakdown and cpp_check (analysis_cache;
    # set before the first cell starts the fork server, whose children inherit it)
    previous_cache = os.environ.get(analysis_cache.ENV)
    os.environ[analysis_cache.ENV] = str((work / "analysis-cache").resolve())
    try:
        return _reproduce(results, work, quick, workers, ray_address, progress, tables, chosen, code, planned)
    finally:
        if previous_cache is None:
            os.environ.pop(analysis_cache.ENV, None)
        else:
            os.environ[analysis_cache.ENV] = previous_cache


def chosen_steps(tables: tuple[str, ...] | None, all_tables: bool) -> list[str]:
    """The steps a reproduction runs, in order: ``tables`` as given, else every step of ``STEPS``
    (then, with ``all_tables``, every script table); UserError names unknown tables."""
    if tables is None:
        chosen = list(STEPS) + (list(SCRIPT_STEPS) if all_tables else [])
    else:
        chosen = list(dict.fromkeys(tables))
    unknown = set(chosen) - set(STEPS) - set(SCRIPT_STEPS)
    if unknown:
        raise UserError(
            f"unknown tables {sorted(unknown)} (choose from {', '.join([*STEPS, *SCRIPT_STEPS])})"
        )
    return chosen


def plan_lines(manifest: dict[str, Any], chosen: list[str]) -> list[str]:
    """What ``reproduce`` would run, one line per step of ``chosen``: the wall time its last
    recorded run took (``manifest``'s entries carrying that ``step``: the step's own wall time, or
    for a script run by hand the runs that last wrote each of its files, with their commands, since
    a run may redo part of a table, e.g. ``--resume`` or a re-render), with date and commit; then
    the sum of the known times and the steps with none or with runs of unknown time. Wall times
    were measured on a shared machine beside other work: a guide, not a promise."""
    last: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("tables", {}).values():
        if isinstance(entry, dict) and entry.get("step") in chosen and "error" not in entry:
            last.setdefault(entry["step"], entry)
    lines = [f"{'step':<22} {'kind':<7} {'last wall':>10}  recorded"]
    known = 0.0
    partial: list[str] = []
    for name in chosen:
        sweep = name in ("modes", "aster_violations")
        kind = "script" if name in SCRIPT_STEPS else "sweep" if sweep else "table"
        e = last.get(name)
        if e is None:
            lines.append(f"{name:<22} {kind:<7} {'?':>10}  no run recorded in MANIFEST.json")
            continue
        if e.get("run") == "direct" and e.get("file_runs"):
            wall, complete, how = _direct_runs(e)
            writes = SCRIPT_STEPS[name].writes if name in SCRIPT_STEPS else ()
            unrecorded = [f for f in writes if f not in e["file_runs"]]
            if unrecorded:
                complete = False
                how += f"; no record of {', '.join(unrecorded)}"
            partial.extend([] if complete else [name])
        else:
            wall = float(e.get("step_wall_s", e.get("wall_s", 0.0)))
            how = f"{str(e.get('date_utc'))[:16]} at {str(e.get('commit'))[:8]}"
            if e.get("run") == "direct":
                how += f" by hand: {'; '.join(e.get('commands', []))}"
            complete = True
        known += wall
        shown = f"{wall / 60:9.1f}m" if complete else f">={wall / 60:.1f}m".rjust(10)
        lines.append(f"{name:<22} {kind:<7} {shown}  {how}")
    missing = [n for n in chosen if n not in last]
    lines.append(
        f"{len(chosen)} steps; recorded wall times sum to {known / 60:.1f} min"
        + (f", {len(missing)} without a record ({', '.join(missing)})" if missing else "")
        + (f", {len(partial)} partly recorded ({', '.join(partial)})" if partial else "")
    )
    return lines


def _direct_runs(entry: dict[str, Any]) -> tuple[float, bool, str]:
    """A script table written by hand (``entry``), file by file: the runs that last wrote its files
    (one per date and command), their summed wall time (a file record without one, written before
    ``wall_s`` was kept per file, takes the entry's own when it is the entry's run), whether every
    run has a time, and a description."""
    last = (str(entry.get("date_utc"))[:16], "; ".join(entry.get("commands", [])))
    runs: dict[tuple[str, str], float | None] = {}
    for rec in entry["file_runs"].values():
        key = (str(rec.get("date_utc"))[:16], str(rec.get("command")))
        runs[key] = rec.get("wall_s", entry.get("wall_s") if key == last else None)
    wall = sum(float(w) for w in runs.values() if w is not None)
    complete = all(w is not None for w in runs.values())
    how = "; ".join(
        f"{d} {c}" + (f" ({w / 60:.1f}m)" if w is not None else " (time not recorded)")
        for (d, c), w in sorted(runs.items())
    )
    return wall, complete, f"by hand: {how}"


def _reproduce(
    results: Path,
    work: Path,
    quick: bool,
    workers: int,
    ray_address: str | None,
    progress: bool,
    tables: tuple[str, ...] | None,
    chosen: list[str],
    code: dict[str, Any],
    planned: list[str],
) -> dict[str, Any]:
    """``reproduce`` once its arguments are checked and the analysis cache is set; ``planned``: the
    files of ``results`` the chosen steps may write (each absent or ours when the run started)."""
    run = _Run(results, work, quick, workers, ray_address, progress, code)
    failed: dict[str, str] = {}
    manifest: dict[str, Any] = {}
    lock = threading.Lock()

    def do(step: str, step_run: _Run) -> None:
        nonlocal manifest
        t0 = time.perf_counter()
        c0 = _cpu_s()
        try:
            if step in SCRIPT_STEPS:
                entries = run_script_step(step, SCRIPT_STEPS[step], results, work / "scripts")
            else:
                entries = STEPS[step](step_run)
        except Exception as exc:  # recorded, the other tables still run
            with lock:
                failed[step] = f"{type(exc).__name__}: {exc}"[:500]
                entries = {f"{step}.md": {"error": failed[step], "wall_s": time.perf_counter() - t0}}
        with lock:
            stamp = {"date_utc": _now(), "commit": code["commit"], "dirty": code["dirty"]}
            # the step's own wall and CPU time (this process + its finished children; steps that ran
            # beside it in other threads are counted in it too) and the load when it ended
            stamp |= {
                "step": step,
                "step_wall_s": time.perf_counter() - t0,
                "step_cpu_s": _cpu_s() - c0,
                "load_avg_end": _load_avg(),
                "concurrent": len(background) > 0,
            }
            for name, entry in entries.items():
                run.tables[name] = {**entry, **stamp}
            # re-read at every write: a script run directly meanwhile may have recorded its table
            previous = read_manifest(results / "MANIFEST.json")
            kept = {k: v for k, v in _previous_tables(previous).items() if k not in run.tables}
            extra = run.extra(chosen, failed)
            # what this run may have written is ours from now on, even if its step failed half-way
            extra["written_files"] = sorted(
                {str(f) for f in previous.get("written_files") or []}
                | {f for f in planned if (results / f).exists()}
            )
            for block, earlier in _previous_sweeps(previous).items():
                extra[block] = {**{k: v for k, v in earlier.items() if k not in run.walls}, **extra[block]}
            manifest = build_manifest({**kept, **run.tables}, extra)
            write_manifest(results / "MANIFEST.json", manifest)

    # --quick: a step of one long task runs beside the others (no progress bar: one live display)
    background = [s for s in chosen if quick and s in QUICK_BACKGROUND and len(chosen) > 1]
    threads = [
        threading.Thread(target=do, args=(s, dataclasses.replace(run, progress=False)), daemon=True)
        for s in background
    ]
    for t in threads:
        t.start()
    for step in chosen:
        if step not in background:
            do(step, run)
    for t in threads:
        t.join()
    if failed:
        raise StepsFailed(failed)
    return manifest


class StepsFailed(RuntimeError):
    """Steps of a reproduction that failed (name -> reason); the others were written and recorded."""

    def __init__(self, failed: dict[str, str]) -> None:
        self.failed = dict(failed)
        super().__init__(f"tables that failed (see MANIFEST.json): {self.failed}")


@dataclass
class _Run:
    """What the steps share: folders, options, the sweep statistics and the table entries so far."""

    results: Path
    work: Path
    quick: bool
    workers: int
    ray_address: str | None
    progress: bool
    code: dict[str, Any]
    walls: dict[str, float] = field(default_factory=dict)
    cells: dict[str, int] = field(default_factory=dict)
    timing: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sweep(self, name: str) -> None:
        grid = grids(self.quick)[name]
        store_dir = _store_dir(self.work, name)
        summary = run_sweep(
            grid, store_dir, self.workers, self.ray_address, progress=self.progress, label=name
        )
        if summary.crashed:
            names = ", ".join(f"{c.model}/{c.eps:g}/{c.setting}/{c.mode}" for c in summary.crashed[:5])
            raise RuntimeError(
                f"{len(summary.crashed)} cells crashed twice ({names}); rerun with --resume {self.work}"
            )
        self.walls[name], self.cells[name] = summary.wall_s, summary.total
        self.timing[name] = sweep_timing(grid, ResultStore(store_dir, ROW_FIELDS), name)

    def extra(self, chosen: list[str], failed: dict[str, str]) -> dict[str, Any]:
        all_grids = grids(self.quick)
        return {
            **self.code,
            "command": "aster-ext experiments reproduce" + (" --quick" if self.quick else ""),
            "quick": self.quick,
            "workers": self.workers,
            "backend": f"ray ({self.ray_address})" if self.ray_address else "local process pool",
            "work": str(self.work),
            "steps": chosen,
            "failed": failed,
            "sweep_stores": {k: str(_store_dir(self.work, k) / "results.csv") for k in self.walls},
            "sweeps": {
                k: {
                    "cells": self.cells[k],
                    "wall_s": self.walls[k],
                    **self.timing.get(k, {}),
                    "grid": all_grids[k].to_json(),
                }
                for k in self.walls
            },
            "seeds": {
                "verify": DEFAULT_VERIFY["seed"],
                "violations_verify": VIOLATIONS_VERIFY["seed"],
                "tightness_breakdown_local_max": 0,
                "tightness_nonlinear_search": 0,
                "cpp_check_inputs": 0,
            },
        }


def sweep_timing(grid: Grid, store: ResultStore, label: str) -> dict[str, Any]:
    """How long a sweep took, in numbers that survive resuming and a shared machine: the runs logged
    in its store (``label``: wall time and load average of each), and the sum over its cells of
    ``time_s + verify_s`` (each cell's own run time; divided by the worker count it estimates the
    wall time on an otherwise idle machine with that many cores)."""
    keys = {c.key for c in grid.cells()}
    cell_s = sum(
        float(r.get("time_s") or 0.0) + float(r.get("verify_s") or 0.0)
        for r in store.rows()
        if row_key(r) in keys
    )
    runs = store.runs(label)
    return {
        "cell_s": cell_s,
        "runs": len(runs),
        "runs_wall_s": sum(float(r.get("wall_s", 0.0)) for r in runs),
        "runs_written": sum(int(r.get("written", 0)) for r in runs),
        "load_avg": [r.get("load_avg_end") for r in runs],
    }


def _timing_text(run: _Run, names: tuple[str, ...]) -> str:
    """One sentence on the sweeps' times for a table header (see ``sweep_timing``)."""
    t = [run.timing[n] for n in names]
    cell_min = sum(x["cell_s"] for x in t) / 60
    wall = sum(x["runs_wall_s"] for x in t) / 60
    written = sum(x["runs_written"] for x in t)
    cells = sum(run.cells[n] for n in names)
    loads = [la[0] for x in t for la in x["load_avg"] if la]
    load = f"; 1-min load average at the end of a run up to {max(loads):.1f}" if loads else ""
    w = run.workers
    return (
        f"sum of the cells' own times (time_s + verify_s) {cell_min:.1f} min, /{w} = {cell_min / w:.1f} min "
        f"(the wall time {w} cores need for these cell times, which grow with the load); "
        f"logged sweep runs: {wall:.1f} min wall with {w} "
        f"workers{' on Ray' if run.ray_address else ''}, writing {written} of the {cells} rows{load} "
        "(shared machine: times are noisy)"
    )


def _modes_step(run: _Run) -> dict[str, dict[str, Any]]:
    """The modes + ablation sweeps: modes.md/.csv, ablation.csv, aster_reproduction.md/.csv, figures."""
    run.sweep("modes")
    run.sweep("ablation")
    walls = run.walls
    rows = ResultStore(run.work, ROW_FIELDS).rows()
    n = len({r["model"] for r in rows})
    header = (
        f"{n} benchmarks x eps {{1e-3, 1e-5}} x settings A-D x 3 modes (+ the ablation variants); "
        f"{_timing_text(run, ('modes', 'ablation'))}. Verify budget for every "
        f"mode: {DEFAULT_VERIFY} (random + corner samples, then the adversarial local search; exact "
        "re-evaluation of the worst candidates). `aster` is checked against the error it claims; the "
        "other two against their certificates. Costs are from the emitted types "
        "(`aster_ext.cost.program_cost`). Rebuild: `aster-ext experiments reproduce`; "
        "figures: `figures/`; provenance: MANIFEST.json."
    )
    results = run.results
    t = time.perf_counter()
    figures = write_figures(rows, results)
    fig_s = time.perf_counter() - t
    t = time.perf_counter()
    write_modes(rows, results, header, figures)
    modes_s = time.perf_counter() - t
    t = time.perf_counter()
    write_reproduction(rows, read_reference(aster_reference_csv()), results, DEFAULT_VERIFY)
    repro_s = time.perf_counter() - t
    return {
        "modes.md": {
            "files": ["modes.md", "modes.csv", "ablation.csv"],
            "sweeps": ["modes", "ablation"],
            "wall_s": walls["modes"] + walls["ablation"] + modes_s,
        },
        "aster_reproduction.md": {
            "files": ["aster_reproduction.md", "aster_reproduction.csv"],
            "sweeps": ["modes"],
            "wall_s": walls["modes"] + repro_s,
        },
        "figures": {
            "files": sorted(str(p.relative_to(results)) for p in (results / "figures").iterdir()),
            "sweeps": ["modes"],
            "wall_s": fig_s,
        },
    }


def _violations_step(run: _Run) -> dict[str, dict[str, Any]]:
    """``aster`` mode under the stronger verify budget: aster_violations.md/.csv."""
    run.sweep("violations")
    t = time.perf_counter()
    violation_rows = ResultStore(_store_dir(run.work, "violations"), ROW_FIELDS).rows()
    write_violations(violation_rows, run.results, VIOLATIONS_VERIFY, 1e-3)
    return {
        "aster_violations.md": {
            "files": ["aster_violations.md", "aster_violations.csv"],
            "sweeps": ["violations"],
            "wall_s": run.walls["violations"] + time.perf_counter() - t,
        }
    }


def _table_step(module: ModuleType) -> Callable[[_Run], dict[str, dict[str, Any]]]:
    """A table of its own tasks (``module.build``), its store in WORK/<table>."""

    def step(run: _Run) -> dict[str, dict[str, Any]]:
        t = time.perf_counter()
        table_run = TableRun(run.results, run.work, run.quick, run.workers, run.ray_address, run.progress)
        files = module.build(table_run)
        return {
            f"{module.TABLE}.md": {
                "files": [str(p.relative_to(run.results)) for p in files],
                "store": str(run.work / getattr(module, "STORE_DIR", module.TABLE) / "results.csv"),
                "wall_s": time.perf_counter() - t,
            }
        }

    return step


#: every step of the reproduction, in the order it runs: the cheap tables of dense networks first
#: (a minute or two each), the sweeps of the modes, ablation and violations, then the nonlinear
#: nets' tables and cpp_check (its 72 g++ compiles take longest)
STEPS: dict[str, Callable[[_Run], dict[str, dict[str, Any]]]] = {
    "aster_lp_match": _table_step(aster_lp_match),
    "refined_timing": _table_step(refined_timing),
    "tightness_breakdown": _table_step(tightness_breakdown),
    "modes": _modes_step,
    "aster_violations": _violations_step,
    "activations_e2e": _table_step(activations_e2e),
    "tightness_nonlinear": _table_step(tightness_nonlinear),
    "nonlinear": _table_step(nonlinear),
    "cpp_check": _table_step(cpp_check),
}


#: the files of results/ each step writes (besides MANIFEST.json; ``modes`` also writes figures/)
STEP_FILES: dict[str, tuple[str, ...]] = {
    "aster_lp_match": ("aster_lp_match.csv", "aster_lp_match.md"),
    "refined_timing": ("refined_timing.csv", "refined_timing.md"),
    "tightness_breakdown": ("tightness_breakdown.csv", "tightness_breakdown.md"),
    "modes": ("modes.md", "modes.csv", "ablation.csv", "aster_reproduction.md", "aster_reproduction.csv"),
    "aster_violations": ("aster_violations.md", "aster_violations.csv"),
    "activations_e2e": ("activations_e2e.csv", "activations_e2e.md"),
    "tightness_nonlinear": ("tightness_nonlinear.csv", "tightness_nonlinear.md"),
    "nonlinear": ("nonlinear.csv", "nonlinear.md"),
    "cpp_check": ("cpp_check.csv", "cpp_check.md"),
}


def planned_files(chosen: list[str]) -> list[str]:
    """The files of the results folder (relative paths) that the steps ``chosen`` write."""
    files = [f for s in chosen for f in STEP_FILES.get(s, ())]
    if "modes" in chosen:
        files += [f"figures/{name}.{ext}" for name in FIGURES for ext in ("png", "svg")]
    files += [f for s in chosen if s in SCRIPT_STEPS for f in SCRIPT_STEPS[s].writes]
    return list(dict.fromkeys(files))


def _previous_tables(old: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Table entries of an earlier MANIFEST.json ``old`` in the same results folder (stamped with its
    date and commit where they have none of their own); failed entries are dropped."""
    stamp = {"date_utc": old.get("date_utc"), "commit": old.get("commit"), "dirty": old.get("dirty")}
    return {k: {**stamp, **v} for k, v in old.get("tables", {}).items() if "error" not in v}


def _previous_sweeps(old: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``sweeps`` and ``sweep_stores`` blocks of an earlier MANIFEST.json ``old``, each sweep
    stamped with the date, commit and work folder of the run that made it (where it has none of its
    own), so a run of a few tables keeps the details of the sweeps it did not rerun, which the kept
    tables' entries still describe."""
    stamp = {"date_utc": old.get("date_utc"), "commit": old.get("commit"), "work": old.get("work")}
    sweeps = {k: {**stamp, **v} for k, v in (old.get("sweeps") or {}).items() if isinstance(v, dict)}
    stores = dict(old.get("sweep_stores") or {})
    return {"sweeps": sweeps, "sweep_stores": stores}


def _cpu_s() -> float:
    """User + system CPU seconds of this process, of its waited-for children, and of the cells'
    child processes (with their g++ runs) that reported back (``runner.children_cpu_s``)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + children_cpu_s()


def _load_avg() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _store_dir(work: Path, sweep: str) -> Path:
    """The store of a sweep: modes and ablation share WORK/, the stronger verify has WORK/violations."""
    return work / "violations" if sweep == "violations" else work


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="four small benchmarks (CI, a few minutes)")
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="where tables go (default: results/, or out/reproduce-quick/results with --quick); a file "
        "there that a table would replace and that this tool did not write stops the run before it starts",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="WORK",
        help="continue the sweep store in WORK (default: a new out/reproduce-<UTC time>)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel cells (default 2)")
    p.add_argument(
        "--ray", metavar="ADDRESS", default=None, help="run the cells on Ray ('auto': local instance)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--plan",
        action="store_true",
        help="run nothing: list the steps this command would run with the wall time each took when "
        "last recorded in the results folder's MANIFEST.json, and their sum",
    )
    p.add_argument(
        "--all",
        action="store_true",
        dest="all_tables",
        help="also the tables the checkout's scripts write (hls4ml, CNNs, nonlinear depth, exact "
        "tightness, ...; hours on 2 cores), after the others, into the checkout's results/",
    )
    p.add_argument(
        "--tables",
        nargs="+",
        choices=[*STEPS, *SCRIPT_STEPS],
        default=None,
        metavar="TABLE",
        help=f"only these steps, in this order (default: {' '.join(STEPS)}; script tables, with --all "
        f"or by name: {' '.join(SCRIPT_STEPS)})",
    )


def run(args: argparse.Namespace) -> int:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    work = args.resume or Path("out") / f"reproduce{'-quick' if args.quick else ''}-{stamp}"
    results = args.results or (Path("out") / "reproduce-quick" / "results" if args.quick else Path("results"))
    t0 = time.perf_counter()
    address = args.ray or os.environ.get("RAY_ADDRESS") or None
    tables = tuple(args.tables) if args.tables else None
    if args.plan:
        chosen = chosen_steps(tables, args.all_tables)
        print(f"reproduce would run into {results} (MANIFEST.json there gives the times):")
        print("\n".join(plan_lines(read_manifest(results / "MANIFEST.json"), chosen)))
        return 0
    try:
        m = reproduce(
            results, work, args.quick, args.workers, address, not args.quiet, tables, args.all_tables
        )
    except StepsFailed as exc:  # one line per failed table, no traceback: the logs hold the details
        lines = [f"aster-ext: error: {len(exc.failed)} table(s) failed; the others were written to {results}"]
        lines += [f"  {name}: {why}" for name, why in exc.failed.items()]
        print("\n".join(lines), file=sys.stderr)
        return 1
    print(
        f"reproduce: {len(m['tables'])} tables/figure sets in {results} from {work / 'results.csv'} "
        f"in {(time.perf_counter() - t0) / 60:.1f} min; manifest {results / 'MANIFEST.json'}"
    )
    print("\n".join(step_times(m, args.workers)))
    return 0


def step_times(manifest: dict[str, Any], workers: int) -> list[str]:
    """One line per step of ``manifest`` that recorded its times (wall, CPU, load at its end), and the
    sums: CPU / ``workers`` is what the steps would take on ``workers`` otherwise idle cores, were
    every core busy throughout (a lower bound: the tail of each step leaves cores idle)."""
    steps: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("tables", {}).values():
        if "step" in entry and "step_cpu_s" in entry:
            steps.setdefault(entry["step"], entry)
    if not steps:
        return []
    lines = [f"{'step':<22} {'wall s':>8} {'CPU s':>8}  load (1/5/15 min) at its end; commit"]
    for name, e in steps.items():
        load = "/".join(f"{v:g}" for v in e.get("load_avg_end") or [])
        lines.append(
            f"{name:<22} {e['step_wall_s']:8.0f} {e['step_cpu_s']:8.0f}  {load}; {str(e.get('commit'))[:8]}"
        )
    wall = sum(e["step_wall_s"] for e in steps.values())
    cpu = sum(e["step_cpu_s"] for e in steps.values())
    lines.append(
        f"{'sum':<22} {wall:8.0f} {cpu:8.0f}  "
        f"(CPU / {workers} = {cpu / workers / 60:.1f} min on {workers} idle cores)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aster_ext.experiments", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("reproduce", help="rebuild the sweep tables of results/"))
    c = sub.add_parser("compare", help="compare two versions of a results CSV, ignoring time columns")
    c.add_argument("new", type=Path)
    c.add_argument("old", type=Path)
    c.add_argument("--key", nargs="+", required=True, help="columns that identify a row")
    t = sub.add_parser("timing", help="where a sweep store's time went (cells' own times, logged runs)")
    t.add_argument("work", type=Path, help="the sweep's folder (holding results.csv)")
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--top", type=int, default=10, help="list the N slowest cells")
    args = ap.parse_args(argv)
    if args.command == "timing":
        from .timing import timing_lines

        print("\n".join(timing_lines(args.work, args.workers, args.top)))
        return 0
    if args.command == "compare":
        from .compare import compare_csv

        diff = compare_csv(args.new, args.old, args.key)
        print("\n".join(diff.lines()))
        return 0 if not (diff.differing or diff.only_new or diff.only_old) else 1
    return run(args)
