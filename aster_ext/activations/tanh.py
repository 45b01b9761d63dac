"""Hyperbolic tangent σ(x) = tanh x.

σ' = 1 - tanh² x = sech² x > 0; σ'' = -2 tanh x · sech² x: convex on (-inf, 0], concave on
[0, inf); σ' is maximal (1) at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb

from .base import MP_PREC, Activation, Structure


@dataclass(frozen=True)
class Tanh(Activation):
    name: ClassVar[str] = "tanh"
    kind: ClassVar[str] = "table"

    def f_arb(self, x: arb) -> arb:
        return x.tanh()

    def df_arb(self, x: arb) -> arb:
        return x.sech() ** 2

    def _structure(self) -> Structure:
        return Structure(breaks=((0.0, 0.0),), curvature=(1, -1), critical=())

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            return mpmath.tanh(mpmath.mpf(x))

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(np.asarray(x, dtype=np.float64))

    def df_float(self, x: np.ndarray) -> np.ndarray:
        t = np.tanh(np.asarray(x, dtype=np.float64))
        return 1.0 - t * t
