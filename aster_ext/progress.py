"""Progress on stderr for long phases (analysis, ILP, codegen, g++ compile, verify rounds).

The API stays the ``progress`` callback the stages already take: ``progress(message)`` prints a
line. A :class:`ProgressReporter` is such a callable that also has ``phase(name, total,
limit_s)``; :func:`phase` works with any callback (a plain callable gets a start and an end
line) or with None (silent, e.g. ``--quiet``). On a terminal a phase is a rich live line with a
spinner, the elapsed time (against ``limit_s`` when given) and a bar when ``total`` is known;
otherwise (CI logs, pipes) each phase is one short line, plus a "done in" line when it took
longer than LONG_S.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

PREFIX = "[aster-ext]"
LONG_S = 1.0  # line mode: a phase gets its "done" line only when it took at least this long


class PhaseHandle:
    """What a running phase can do: advance its counter and show what it is doing now."""

    def __init__(self, advance: Callable[[int, str | None], None] | None = None) -> None:
        self._advance = advance

    def advance(self, n: int = 1, note: str | None = None) -> None:
        if self._advance is not None:
            self._advance(n, note)

    def note(self, text: str) -> None:
        """Show ``text`` as the phase's current step (e.g. 'layer 3/4')."""
        if self._advance is not None:
            self._advance(0, text)


_SILENT = PhaseHandle()
_CURRENT: ContextVar[PhaseHandle | None] = ContextVar("aster_ext_phase", default=None)


def note(text: str) -> None:
    """Show ``text`` as the current step of the running phase (analysis code calls this per layer;
    a no-op when no phase is running, e.g. with --quiet or from the Python API)."""
    handle = _CURRENT.get()
    if handle is not None:
        handle.note(text)


@contextmanager
def _current(handle: PhaseHandle) -> Iterator[PhaseHandle]:
    token = _CURRENT.set(handle)
    try:
        yield handle
    finally:
        _CURRENT.reset(token)


class ProgressReporter:
    """``progress`` callback on ``stream`` (default stderr); live rich display on a terminal."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(live) if live is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._console: Any = None
        if self.live:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def __call__(self, message: str) -> None:
        if self._console is not None:
            self._console.print(f"{PREFIX} {message}", markup=False)
        else:
            print(f"{PREFIX} {message}", file=self.stream, flush=True)

    @contextmanager
    def phase(
        self, name: str, total: int | None = None, limit_s: float | None = None
    ) -> Iterator[PhaseHandle]:
        t0 = time.perf_counter()
        if self._console is None:
            limit = f" (limit {limit_s:g} s)" if limit_s is not None else ""
            print(f"{PREFIX} {name}{limit} ...", file=self.stream, flush=True)
            last = [time.perf_counter()]

            def step(n: int, text: str | None) -> None:
                # line mode: a step is printed only after LONG_S without output (long phases only)
                now = time.perf_counter()
                if text and now - last[0] >= LONG_S:
                    print(f"{PREFIX} {name}: {text} ({now - t0:.0f} s)", file=self.stream, flush=True)
                    last[0] = now

            with _current(PhaseHandle(step)) as handle:
                yield handle
            took = time.perf_counter() - t0
            if took >= LONG_S:
                print(f"{PREFIX} {name}: done in {took:.1f} s", file=self.stream, flush=True)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        if limit_s is not None:
            columns.append(TextColumn(f"of {limit_s:g} s limit"))
        with Progress(*columns, console=self._console, transient=True) as bar:
            task = bar.add_task(name, total=total)

            def advance(n: int, note: str | None) -> None:
                if note:
                    bar.update(task, advance=n, description=f"{name}: {note}")
                else:
                    bar.update(task, advance=n)

            with _current(PhaseHandle(advance)) as handle:
                yield handle
        took = time.perf_counter() - t0
        if took >= LONG_S:  # the live line disappears; long phases leave one line behind
            self._console.print(f"{PREFIX} {name}: done in {took:.1f} s", markup=False)


@contextmanager
def phase(
    progress: Callable[[str], None] | None, name: str, total: int | None = None, limit_s: float | None = None
) -> Iterator[PhaseHandle]:
    """A named phase on any ``progress`` callback (module docstring); None is silent."""
    if progress is None:
        yield _SILENT
        return
    ph = getattr(progress, "phase", None)
    if ph is not None:
        with ph(name, total, limit_s) as handle:
            yield handle
        return
    t0 = time.perf_counter()
    progress(f"{name} ...")
    with _current(_SILENT):
        yield _SILENT
    if time.perf_counter() - t0 >= LONG_S:
        progress(f"{name}: done in {time.perf_counter() - t0:.1f} s")
