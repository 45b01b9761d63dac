"""Shared test fixtures: the location of the benchmark folder ``shared/`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("ASTER_EXT_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared benchmark folder; a missing folder is a test failure, not a skip."""
    if not (SHARED / "benchmarks").is_dir():
        pytest.fail(
            f"shared/ benchmark folder not found at {SHARED} (expected beside the checkout; "
            "set ASTER_EXT_SHARED to its path)"
        )
    return SHARED
