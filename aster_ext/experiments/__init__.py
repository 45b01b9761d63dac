"""Experiments at scale: sweep grids of (model × ε × setting × mode) cells into a results store.

``grid`` reads TOML grids, ``cell`` runs one cell (quantize + verify), ``store`` appends rows
atomically to ``DIR/results.csv``, ``runner`` runs the unfinished cells on a local process pool or
on Ray with a wall-clock limit per cell.
"""

from __future__ import annotations

from .grid import Cell, Grid, load_grid
from .runner import SweepSummary, run_sweep

__all__ = ["Cell", "Grid", "SweepSummary", "load_grid", "run_sweep"]
