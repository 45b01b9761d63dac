"""Softplus σ(x) = log(1 + e^x).

σ' = sigmoid(x) in (0, 1) (monotone); σ'' = sigmoid'(x) > 0: convex everywhere, so σ' has no
interior extremum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb
from scipy import special

from .base import MP_PREC, Activation, Structure
from .sigmoid import sigmoid_arb


@dataclass(frozen=True)
class Softplus(Activation):
    name: ClassVar[str] = "softplus"
    kind: ClassVar[str] = "table"

    def f_arb(self, x: arb) -> arb:
        return x.exp().log1p()

    def df_arb(self, x: arb) -> arb:
        return sigmoid_arb(x)

    def _structure(self) -> Structure:
        return Structure(breaks=(), curvature=(1,), critical=())

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            return mpmath.log1p(mpmath.exp(mpmath.mpf(x)))

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))

    def df_float(self, x: np.ndarray) -> np.ndarray:
        return special.expit(np.asarray(x, dtype=np.float64))
