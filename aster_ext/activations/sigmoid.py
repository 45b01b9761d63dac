"""Logistic sigmoid σ(x) = 1 / (1 + e^-x).

σ' = σ(x)·σ(-x) > 0 (monotone); σ'' = σ'·(1 - 2σ) changes sign only at 0: convex on
(-inf, 0], concave on [0, inf); σ' is maximal (1/4) at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb
from scipy import special

from .base import MP_PREC, Activation, Structure


def sigmoid_arb(x: arb) -> arb:
    """Enclosure of 1/(1 + e^-x) over the ball x (a monotone composition: tight on balls)."""
    return 1 / (1 + (-x).exp())


@dataclass(frozen=True)
class Sigmoid(Activation):
    name: ClassVar[str] = "sigmoid"
    kind: ClassVar[str] = "table"

    def f_arb(self, x: arb) -> arb:
        return sigmoid_arb(x)

    def df_arb(self, x: arb) -> arb:
        return sigmoid_arb(x) * sigmoid_arb(-x)

    def _structure(self) -> Structure:
        return Structure(breaks=((0.0, 0.0),), curvature=(1, -1), critical=())

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            return 1 / (1 + mpmath.exp(-mpmath.mpf(x)))

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        return special.expit(np.asarray(x, dtype=np.float64))

    def df_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return special.expit(x) * special.expit(-x)
