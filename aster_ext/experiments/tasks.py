"""Tables that are grids of their own cells (not quantize + verify sweeps) on the sweep runner.

A ``Task`` names a module-level function of ``aster_ext.experiments`` and its keyword arguments; it
runs in a child process with a wall-clock limit (``runner.run_limited``), locally or on Ray, and
its row (the function's dict plus the task's identity columns and ``task_status``) is appended to
the table's store ``WORK/<table>/results.csv``. A rerun skips finished tasks; an exception or a
timeout is a row whose ``task_status`` says so (shown in the table's ``status`` column, or, for a
table without one, the table is refused); a crash is retried once and never stored (the table is
refused; a rerun retries it). A function that returns several table rows
(one per layer, say) returns them JSON-encoded in one column of its store row.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runner import CRASHED, RETRIES, SweepProgress, results_of
from .store import ResultStore, value_key

MESSAGE_CHARS = 160


@dataclass(frozen=True)
class Task:
    """``function(**kwargs)`` of the module ``module`` (an import path); ``ident``: the columns
    (name, value) that identify its row; ``size``: larger tasks are started first."""

    module: str
    function: str
    ident: tuple[tuple[str, Any], ...]
    kwargs: tuple[tuple[str, Any], ...] = ()
    size: float = 0.0

    @property
    def key(self) -> tuple[str, ...]:
        return value_key(v for _, v in self.ident)

    @property
    def label(self) -> str:
        return " ".join(str(v) for _, v in self.ident)


def task_identity(task: Task) -> dict[str, Any]:
    return dict(task.ident)


def run_task(task: Task) -> dict[str, Any]:
    """The task's row plus ``task_status``: ok, or ``error: <type>: <message>`` when the function
    raised (never hidden: tables with a ``status`` column show it there, others refuse to build)."""
    fn = getattr(importlib.import_module(task.module), task.function)
    t0 = time.perf_counter()
    try:
        row = dict(fn(**dict(task.kwargs)))
        row["task_status"] = "ok"
    except Exception as exc:  # reported in the table
        row = {"task_status": " ".join(f"error: {type(exc).__name__}: {exc}".split())[:MESSAGE_CHARS]}
    row["task_s"] = time.perf_counter() - t0
    return {**row, **task_identity(task)}


@dataclass
class TaskRun:
    rows: list[dict[str, Any]]  # in the order of the tasks
    wall_s: float


def run_tasks(
    tasks: list[Task],
    store_dir: Path,
    fields: list[str],
    workers: int,
    ray_address: str | None = None,
    time_limit: float = 900.0,
    progress: bool = False,
    title: str = "table",
    parse: bool = True,
) -> TaskRun:
    """Run the unfinished ``tasks`` (``workers`` at a time), store their rows, return all rows (values
    parsed to numbers, or with ``parse`` false the text as the task formatted it)."""
    key_fields = tuple(name for name, _ in tasks[0].ident) if tasks else ()
    store_fields = list(dict.fromkeys([*key_fields, *fields, "task_status", "task_s"]))
    store = ResultStore(store_dir, store_fields, key_fields)
    done = store.finished()
    todo = sorted((t for t in tasks if t.key not in done), key=lambda t: -t.size)
    t0 = time.perf_counter()
    bar = SweepProgress(len(todo), progress, title)
    attempt = 0
    while todo and attempt <= RETRIES:
        retry: list[Task] = []
        with bar:
            for task, row in results_of(todo, time_limit, workers, ray_address, run_task, task_identity):
                if "task_status" not in row:  # the runner's own row: the child crashed or timed out
                    if row["status"] == CRASHED:
                        retry.append(task)
                        bar.note(f"{task.label}: {row['message']}")
                        continue
                    row = {
                        **task_identity(task),
                        "task_status": f"{row['status']} ({time_limit:g} s)",
                        "task_s": row["time_s"],
                    }
                store.append(row)
                bar.advance(row, f"{task.label} {row['task_status']}")
        todo = retry
        attempt += 1
    by_key = {store.key(r): r for r in store.rows(parse)}
    rows = [by_key[t.key] for t in tasks if t.key in by_key]
    failed = [f"{task_label(r, key_fields)}: {r['task_status']}" for r in rows if r["task_status"] != "ok"]
    if failed and "status" not in fields:
        raise RuntimeError(f"{title}: {len(failed)} tasks failed: {'; '.join(failed[:5])}")
    for r in rows:
        if r["task_status"] != "ok":
            r["status"] = r["task_status"]
    if todo:
        raise RuntimeError(f"{title}: tasks crashed twice (rerun with --resume): {[t.label for t in todo]}")
    return TaskRun(rows=rows, wall_s=time.perf_counter() - t0)


@dataclass(frozen=True)
class TableRun:
    """Where and how a table is built: its store goes to ``work/<table>``, its files to ``results``."""

    results: Path
    work: Path
    quick: bool
    workers: int
    ray_address: str | None = None
    progress: bool = False

    def rows(
        self, table: str, tasks: list[Task], fields: list[str], time_limit: float = 900.0, parse: bool = True
    ) -> list[dict[str, Any]]:
        """``run_tasks`` of ``tasks`` in the table's store: all its rows, in task order."""
        store = self.work / table
        return run_tasks(
            tasks, store, fields, self.workers, self.ray_address, time_limit, self.progress, table, parse
        ).rows

    def write(self, table: str, rows: list[dict[str, Any]], fields: list[str], markdown: str) -> list[Path]:
        """results/<table>.csv (``fields`` of ``rows``) and results/<table>.md."""
        from .tables import write_csv

        self.results.mkdir(parents=True, exist_ok=True)
        write_csv(self.results / f"{table}.csv", rows, fields)
        (self.results / f"{table}.md").write_text(markdown)
        return [self.results / f"{table}.csv", self.results / f"{table}.md"]


def task_label(row: dict[str, Any], key_fields: tuple[str, ...]) -> str:
    return " ".join(str(row[k]) for k in key_fields)


def tasks_of(
    module: str,
    function: str,
    items: list[dict[str, Any]],
    ident: Callable[[dict[str, Any]], dict[str, Any]],
    size: Callable[[dict[str, Any]], float] = lambda _: 0.0,
) -> list[Task]:
    """One task per ``items`` entry (the function's keyword arguments); ``ident`` picks its identity."""
    return [
        Task(module, function, tuple(ident(kw).items()), tuple(kw.items()), float(size(kw))) for kw in items
    ]
