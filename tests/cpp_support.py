"""g++ / ap_types helpers for the tests that compile C++ (they fail, never skip, without them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aster_ext.codegen.compile import find_ap_types, find_cxx
from aster_ext.errors import UserError


def require_toolchain() -> Path:
    """The ap_types directory; a missing g++ or hls4ml is a test failure with a clear message."""
    try:
        find_cxx()
        return find_ap_types()
    except UserError as exc:
        pytest.fail(f"C++ toolchain for the bit-exactness tests is missing: {exc}")


def random_raw(rng: np.random.Generator, width: int, n: int) -> list[int]:
    """``n`` random signed raw integers of ``width`` bits (any width), as Python ints."""
    nbytes = (width + 7) // 8 + 1
    return [int.from_bytes(rng.bytes(nbytes), "little") % (1 << width) - (1 << (width - 1)) for _ in range(n)]
