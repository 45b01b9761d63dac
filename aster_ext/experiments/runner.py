"""Run a grid's unfinished cells on a local pool or on Ray, appending each row to the store.

Every cell runs in its own child process (multiprocessing ``forkserver``, so the child inherits
no other cell's descriptors and no threads), started by ``run_cell_limited``; the caller waits at
most the grid's ``cell_time_limit`` and then kills it (row status ``timeout``). A child that dies
without a row (a crash, an out-of-memory kill) is retried once in the same sweep; if it dies again
no row is written, so the next run of the sweep retries it. The same ``run_cell_limited`` is the
unit of work on both back ends — threads of the driver locally, Ray tasks with ``--ray`` — so both
give the same rows. Only the driver writes the store.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .cell import ROW_FIELDS, cell_identity, run_cell
from .grid import Cell, Grid
from .store import ResultStore

CRASHED = "crashed"
RETRIES = 1


CellFn = Callable[[Cell], dict[str, Any]]
#: the identity columns of a unit of work (written on its timeout row)
IdentityFn = Callable[[Any], dict[str, Any]]


def _child(cell: Any, conn: Any, watch: Any, cell_fn: Callable[[Any], dict[str, Any]]) -> None:
    """Child process body: exit at once if the driver goes away, else run the cell and send its row."""

    def watchdog() -> None:
        try:
            watch.recv()  # never written to: returns (EOFError) only when the driver's end closes
        except (EOFError, OSError):
            pass
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    row = cell_fn(cell)
    conn.send((row, _own_cpu_s()))
    conn.close()


def _own_cpu_s() -> float:
    """User + system CPU seconds of this process and of its waited-for children (g++, ...)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


_cpu_lock = threading.Lock()
_child_cpu = [0.0]


def children_cpu_s() -> float:
    """CPU seconds of every child that sent its row to this process so far (``run_limited`` on the
    local pool; children killed at their time limit or crashed are not counted, nor Ray tasks)."""
    with _cpu_lock:
        return _child_cpu[0]


def _context() -> multiprocessing.context.BaseContext:
    # one BLAS thread per cell (set before the fork server starts, which imports numpy): the cells
    # already run in parallel, and a fixed thread count keeps floating-point sums reproducible
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["aster_ext.experiments.cell", "aster_ext.pipeline", "aster_ext.verify"])
    return ctx


def run_cell_limited(cell: Cell, time_limit: float, cell_fn: CellFn = run_cell) -> dict[str, Any]:
    """``cell_fn`` (default ``run_cell``; a module-level function) in a child process, killed after
    ``time_limit`` s (status timeout); a child that dies without a row gives status ``crashed``
    (the runner retries it, never stores it)."""
    return run_limited(cell, time_limit, cell_fn, cell_identity)


def run_limited(item: Any, time_limit: float, fn: Callable[[Any], dict[str, Any]], identity: IdentityFn
                ) -> dict[str, Any]:  # fmt: skip
    """``fn(item)`` in a child process, killed after ``time_limit`` s: the row ``identity(item)`` with
    status timeout; a child that dies without a row gives status ``crashed``. ``fn`` and ``identity``
    are module-level functions (the child process imports them by name)."""
    ctx = _context()
    recv_end, send_end = ctx.Pipe(duplex=False)
    watch_r, watch_w = ctx.Pipe(duplex=False)
    # not daemonic: a cell may start processes of its own (the graph path's guarded HiGHS solves);
    # the child's watchdog ends it when this driver goes away, and the finally below kills it
    proc = ctx.Process(target=_child, args=(item, send_end, watch_r, fn), daemon=False)
    t0 = time.perf_counter()
    proc.start()
    send_end.close()
    watch_r.close()
    row: dict[str, Any] | None = None
    try:
        if recv_end.poll(time_limit):
            try:
                row, cpu = recv_end.recv()
                with _cpu_lock:
                    _child_cpu[0] += cpu
            except EOFError:
                row = None
        else:
            row = identity(item)
            row.update(
                status="timeout",
                time_s=time.perf_counter() - t0,
                message=f"cell killed after its wall-clock limit of {time_limit:g} s",
            )
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv_end.close()
        watch_w.close()
    if row is None:
        row = identity(item)
        message = f"crashed (exit code {proc.exitcode})"
        row.update(status=CRASHED, time_s=time.perf_counter() - t0, message=message)
    return row


@dataclass
class SweepSummary:
    total: int  # cells in the grid
    skipped: int  # already in the store before this run
    written: int  # rows appended by this run
    crashed: list[Cell] = field(default_factory=list)  # no row: rerun the sweep to retry them
    wall_s: float = 0.0
    backend: str = "local"


def _order(cells: list[Cell]) -> list[Cell]:
    """Longest cells first, so the pool does not end waiting on one slow tail cell: larger model files
    first; within a model the refined cells (an ILP per analysis round) and then the smaller ε (wider
    formats: slower bit-exact simulation in verify) first."""
    size = {c.model_path: Path(c.model_path).stat().st_size for c in cells}
    return sorted(cells, key=lambda c: (-size[c.model_path], c.mode != "refined", c.eps))


def _local_results(
    cells: list[Any], limit: float, workers: int, cell_fn: Callable[[Any], dict[str, Any]],
    identity: IdentityFn = cell_identity,
) -> Iterable[tuple[Any, dict[str, Any]]]:  # fmt: skip
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futs = {pool.submit(run_limited, c, limit, cell_fn, identity): c for c in cells}
        try:
            for fut in as_completed(futs):
                yield futs[fut], fut.result()
        finally:
            for f in futs:
                f.cancel()


def _ray_results(
    cells: list[Any], limit: float, workers: int, address: str, cell_fn: Callable[[Any], dict[str, Any]],
    identity: IdentityFn = cell_identity,
) -> Iterable[tuple[Any, dict[str, Any]]]:  # fmt: skip
    try:
        import ray
    except ImportError as exc:
        raise UserError("--ray needs Ray: pip install 'aster_ext[experiments]' (or pip install ray)") from exc
    package_root = str(Path(__file__).resolve().parents[2])
    runtime_env = {"env_vars": {"PYTHONPATH": package_root, "OMP_NUM_THREADS": "1"}}
    started_here = not ray.is_initialized()
    if started_here:
        if address == "auto":  # a fresh local instance (Ray's own 'auto' means: join a running one)
            ray.init(address="local", num_cpus=workers, include_dashboard=False, runtime_env=runtime_env,
                     log_to_driver=False)  # fmt: skip
        else:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_limited)
        refs = {task.remote(c, limit, cell_fn, identity): c for c in cells}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def results_of(
    items: list[Any], limit: float, workers: int, ray_address: str | None,
    fn: Callable[[Any], dict[str, Any]], identity: IdentityFn,
) -> Iterable[tuple[Any, dict[str, Any]]]:  # fmt: skip
    """(item, row) pairs as they finish, each ``fn(item)`` in its own child process with ``limit`` s:
    on Ray tasks with ``ray_address``, else on ``workers`` threads of this process."""
    if ray_address:
        return _ray_results(items, limit, workers, ray_address, fn, identity)
    return _local_results(items, limit, workers, fn, identity)


def run_sweep(
    grid: Grid,
    out_dir: Path,
    workers: int = 2,
    ray_address: str | None = None,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    cell_fn: CellFn = run_cell,
    label: str = "sweep",
) -> SweepSummary:
    """Run every cell of ``grid`` not yet in ``out_dir/results.csv``; append one row per finished cell,
    and a line describing this run (``label``, wall time, rows written, load average) to
    ``out_dir/runs.jsonl``."""
    if workers < 1:
        raise UserError("--workers must be at least 1")
    store = ResultStore(out_dir, ROW_FIELDS)
    store.check_fingerprint(grid.fingerprint())
    cells = grid.cells()
    done = store.finished()
    todo = _order([c for c in cells if c.key not in done])
    summary = SweepSummary(total=len(cells), skipped=len(cells) - len(todo), written=0,
                           backend="ray" if ray_address else "local")  # fmt: skip
    t0 = time.perf_counter()
    load_start = _load_avg()
    bar = SweepProgress(len(todo), progress)
    attempt = 0
    while todo and attempt <= RETRIES:
        source = results_of(todo, grid.cell_time_limit, workers, ray_address, cell_fn, cell_identity)
        retry: list[Cell] = []
        with bar:
            for cell, row in source:
                if row["status"] == CRASHED:
                    retry.append(cell)
                    bar.note(f"{cell.model} {cell.eps:g} {cell.setting} {cell.mode}: {row['message']}")
                    continue
                store.append(row)
                summary.written += 1
                bar.advance(row)
                if on_row is not None:
                    on_row(row)
        todo = retry
        attempt += 1
    summary.crashed = todo
    summary.wall_s = time.perf_counter() - t0
    if summary.written or summary.crashed:
        store.log_run(
            {
                "label": label,
                "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "wall_s": summary.wall_s,
                "written": summary.written,
                "skipped": summary.skipped,
                "crashed": len(summary.crashed),
                "workers": workers,
                "backend": summary.backend,
                "load_avg_start": load_start,
                "load_avg_end": _load_avg(),
            }
        )
    return summary


def _load_avg() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the platform has none): a shared machine's
    wall times are only comparable together with its load."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class SweepProgress:
    """A rich progress bar with ETA on stderr (or nothing when ``enabled`` is false)."""

    def __init__(self, total: int, enabled: bool, title: str = "sweep"):
        self.enabled = enabled and total > 0
        self.bar = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(f"[bold]{title}[/bold] {{task.description}}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task("", total=total)
        self._entered = False

    def __enter__(self) -> SweepProgress:
        if self.bar is not None and not self._entered:
            self.bar.start()
            self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None and self._entered:
            self.bar.stop()
            self._entered = False

    def advance(self, row: dict[str, Any], label: str | None = None) -> None:
        if self.bar is not None:
            text = label if label is not None else f"{row['model']} {row['mode']} {row['status']}"
            self.bar.update(self.task, advance=1, description=text)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
