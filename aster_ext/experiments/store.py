"""The results store ``DIR/results.csv``: one CSV line per finished cell, appended atomically.

Only the sweep's driver writes, one row at a time, each as a single ``os.write`` of one complete
line on an ``O_APPEND`` descriptor, so a killed sweep leaves complete rows only. Should a torn
last line exist anyway (a write cut short by a full disk, say), opening the store cuts the file
back to its last newline: that tail is an unfinished row of this store, and its cell is rerun.
Values never contain newlines (messages are flattened to one line), so one line is one row.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from .grid import cell_key

RESULTS_NAME = "results.csv"
SWEEP_NAME = "sweep.json"
RUNS_NAME = "runs.jsonl"


def _line(values: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    text = buf.getvalue()
    if text.count("\n") != 1:
        raise ValueError("a results row must be one line (a value holds a newline)")
    return text.encode()


def parse_value(text: str) -> Any:
    """CSV text back to int / float / str ('' -> None)."""
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class ResultStore:
    """Append-only CSV of rows with fixed ``fields``; ``finished()`` gives the keys already there.

    A row's key is the sweep cell's identity (``row_key``), or with ``key_fields`` the values of those
    columns (``value_key``: numbers through ``repr(float)``, so CSV round trips match)."""

    def __init__(self, out_dir: Path, fields: list[str], key_fields: tuple[str, ...] | None = None):
        self.dir = Path(out_dir)
        self.path = self.dir / RESULTS_NAME
        self.fields = list(fields)
        self.key_fields = key_fields
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            # someone else's file is refused before anything touches it
            header = self.path.open(newline="").readline().rstrip("\n").split(",")
            older = "message" in header and header == self.fields[: len(header)]
            if header != self.fields and not older:
                raise UserError(f"{self.path}: written with other columns ({header[:6]}...); use a new --out")
            self._repair_tail()
            if older and header != self.fields:
                self._add_columns(len(self.fields) - len(header))
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write(_line(self.fields))

    def _add_columns(self, n: int) -> None:
        """A store of an older version (fewer trailing columns): append ``n`` empty columns to every row
        (rewritten to a temporary file, then renamed over the store)."""
        lines = self.path.read_text().splitlines()
        text = "\n".join([",".join(self.fields)] + [line + "," * n for line in lines[1:]]) + "\n"
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, row: dict[str, Any]) -> None:
        self._write(_line([row.get(f) for f in self.fields]))

    def rows(self, parse: bool = True) -> list[dict[str, Any]]:
        """All rows, values parsed (or, with ``parse`` false, the text as written, '' -> None); a later
        row with the same key replaces an earlier one."""
        by_key: dict[tuple[str, ...], dict[str, Any]] = {}
        with self.path.open(newline="") as fh:
            for raw in csv.DictReader(fh):
                row = {k: parse_value(v) if parse else (v if v != "" else None) for k, v in raw.items()}
                by_key[self.key(row)] = row
        return list(by_key.values())

    def key(self, row: dict[str, Any]) -> tuple[str, ...]:
        return row_key(row) if self.key_fields is None else value_key(row[k] for k in self.key_fields)

    def finished(self) -> set[tuple[str, ...]]:
        return {self.key(r) for r in self.rows()}

    def check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        """Refuse to mix rows computed with another verify budget / ILP time limit into one store."""
        path = self.dir / SWEEP_NAME
        if path.exists():
            old = json.loads(path.read_text())
            if old != fingerprint:
                raise UserError(
                    f"{self.dir}: its rows were computed with {old}, this grid asks for {fingerprint}; "
                    "use another --out"
                )
        else:
            path.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")

    def log_run(self, record: dict[str, Any]) -> None:
        """Append one line to ``DIR/runs.jsonl`` describing a run of the sweep (wall time, rows
        written, workers, load average): a store filled over several runs (resumed) keeps the
        wall time of each."""
        with (self.dir / RUNS_NAME).open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def runs(self, label: str | None = None) -> list[dict[str, Any]]:
        """The runs logged in this store (those of ``label`` only, when given); unreadable lines skipped."""
        path = self.dir / RUNS_NAME
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and (label is None or rec.get("label") == label):
                out.append(rec)
        return out


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    return cell_key(row["model"], row["eps"], row["setting"], row["mode"], row["granularity"], row["variant"])


def value_key(values: Any) -> tuple[str, ...]:
    """Identity values as strings: numbers through ``repr(float)`` (1, 1.0 and '1' all give '1.0')."""
    out = []
    for v in values:
        parsed = parse_value(v) if isinstance(v, str) else v
        is_number = isinstance(parsed, int | float) and not isinstance(parsed, bool)
        out.append(repr(float(parsed)) if is_number else str(v))
    return tuple(out)
