"""Where the benchmark networks are: the project's ``shared/benchmarks`` folder.

``ASTER_EXT_SHARED`` names the ``shared`` folder; by default it is the folder ``shared`` beside the
checkout (as the tests expect). Aster's 24 benchmarks are ``aster/NAME.scala`` (the DSL keeps the
exact decimals), except VertCASVer1 whose DSL file does not parse: its ``.onnx`` with
``NAME.spec.json`` beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

ONNX_ONLY = frozenset({"VertCASVer1"})
#: small, quick benchmarks for the --quick reproduction (a few seconds per cell at most)
QUICK = ("SmallNN", "TestNN", "InvPendulumNN", "LyapunovNN")


def shared_dir() -> Path:
    value = os.environ.get("ASTER_EXT_SHARED")
    path = Path(value) if value else Path(__file__).resolve().parents[3] / "shared"
    if not (path / "benchmarks" / "aster").is_dir():
        raise UserError(
            f"benchmark folder not found: {path}/benchmarks/aster "
            "(set ASTER_EXT_SHARED to the 'shared' folder)"
        )
    return path


def aster_model_paths(names: tuple[str, ...] | None = None) -> list[Path]:
    """Model files of Aster's benchmarks (all 24, sorted by name, or ``names``)."""
    folder = shared_dir() / "benchmarks" / "aster"
    all_names = sorted(p.name.removesuffix(".spec.json") for p in folder.glob("*.spec.json"))
    chosen = all_names if names is None else [n for n in all_names if n in names]
    missing = set(names or ()) - set(chosen)
    if missing:
        raise UserError(f"benchmarks not found in {folder}: {', '.join(sorted(missing))}")
    return [folder / (f"{n}.onnx" if n in ONNX_ONLY else f"{n}.scala") for n in chosen]


def aster_reference_csv() -> Path:
    """The original tool's runs (objective per benchmark and setting, at ε = 1e-3)."""
    return shared_dir() / "benchmarks" / "aster-reference" / "aster_runs.csv"
