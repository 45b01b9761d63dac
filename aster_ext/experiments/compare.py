"""Compare two versions of a results CSV cell by cell, ignoring time columns (``TIME_COLUMNS`` and
every column whose name ends in ``_s``: seconds).

``python -m aster_ext.experiments compare NEW.csv OLD.csv --key benchmark eps setting mode`` prints,
per column, how many matched rows differ and a few examples; numbers are compared as floats (so
``1e-05`` equals ``0.00001``), everything else as text.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TIME_COLUMNS = frozenset({"time_s", "verify_s", "solver_s", "total_s"})


@dataclass
class TableDiff:
    matched: int
    only_new: list[tuple[str, ...]]
    only_old: list[tuple[str, ...]]
    differing: Counter = field(default_factory=Counter)  # column -> rows that differ
    examples: dict[str, list[tuple[tuple[str, ...], str, str]]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"matched rows {self.matched}; only in new {len(self.only_new)}; "
            f"only in old {len(self.only_old)}"
        ]
        for col, n in self.differing.most_common():
            ex = "; ".join(f"{'/'.join(k)}: {a} vs {b}" for k, a, b in self.examples[col][:3])
            out.append(f"  {col}: {n} rows differ (e.g. {ex})")
        return out


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _read(path: Path, key: list[str]) -> dict[tuple[str, ...], dict[str, str]]:
    with Path(path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for r in rows:
        k = tuple(str(float(r[c])) if c == "eps" else r[c] for c in key)
        out[k] = r
    return out


def compare_csv(new: Path, old: Path, key: list[str], ignore: frozenset[str] = TIME_COLUMNS) -> TableDiff:
    a, b = _read(new, key), _read(old, key)
    diff = TableDiff(
        matched=len(a.keys() & b.keys()),
        only_new=sorted(a.keys() - b.keys()),
        only_old=sorted(b.keys() - a.keys()),
    )
    for k in sorted(a.keys() & b.keys()):
        for col in a[k]:
            if col in ignore or col.endswith("_s") or col in key or col not in b[k]:
                continue
            if not _same(a[k][col], b[k][col]):
                diff.differing[col] += 1
                diff.examples.setdefault(col, []).append((k, a[k][col], b[k][col]))
    return diff
