"""An Aster `.scala` benchmark as the Aster analyses see it: the dense chain with exact decimals
and the exact input box (Fractions) written in the file."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..frontend.scala_dsl import load_scala
from ..ir import DenseLayer, dense_chain


@dataclass
class Benchmark:
    """A dense chain with its exact input box and the error bounds written in the file."""

    name: str
    layers: list[DenseLayer]
    lower: np.ndarray  # object array of Fraction
    upper: np.ndarray
    error_bounds: list[float]


def load_benchmark(path: str | Path) -> Benchmark:
    """Load an Aster `.scala` benchmark through the DSL frontend (exact decimals and bounds)."""
    path = Path(path)
    net, spec = load_scala(path)
    lower = spec.extra.get("input_lower_exact", spec.input_lower)
    upper = spec.extra.get("input_upper_exact", spec.input_upper)
    return Benchmark(
        path.stem,
        dense_chain(net),
        np.array([Fraction(v) for v in lower], dtype=object),
        np.array([Fraction(v) for v in upper], dtype=object),
        [float(e) for e in spec.error_bounds],
    )
