"""GELU, exact (erf) form: σ(x) = x·Φ(x) = x/2·(1 + erf(x/√2)).

σ'(x) = Φ(x) + x·φ(x),  σ''(x) = φ(x)·(2 - x²)  (φ the standard normal density).
Inflection points exactly ±√2: concave on (-inf, -√2], convex on [-√2, √2], concave on
[√2, inf); σ' has its minimum at -√2 and its maximum at √2.
Critical point (unique; global minimum ≈ -0.16997 at x* ≈ -0.75179): σ' > 1 for x >= √2 and
σ' increases on [-√2, √2] from σ'(-√2) < 0 to σ'(√2) > 1, so it has one zero there; on
(-inf, -√2] σ' decreases from 0 (its limit at -inf) and is therefore negative. The zero is
enclosed by verified bisection on [-1, -0.5].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb
from scipy import special

from ._arb import down, up, verified_root, working_precision
from .base import MP_PREC, Activation, Structure


def _phi_cdf(x: arb) -> arb:
    return (1 + (x / arb(2).sqrt()).erf()) / 2


def _phi_pdf(x: arb) -> arb:
    return (-(x * x) / 2).exp() / (2 * arb.pi()).sqrt()


@dataclass(frozen=True)
class Gelu(Activation):
    name: ClassVar[str] = "gelu"
    kind: ClassVar[str] = "table"

    def f_arb(self, x: arb) -> arb:
        return x * _phi_cdf(x)

    def df_arb(self, x: arb) -> arb:
        return _phi_cdf(x) + x * _phi_pdf(x)

    def _structure(self) -> Structure:
        with working_precision():
            r = arb(2).sqrt()
            s_lo, s_hi = down(r), up(r)
        crit = verified_root(self.df_arb, -1.0, -0.5)
        return Structure(breaks=((-s_hi, -s_lo), (s_lo, s_hi)), curvature=(-1, 1, -1), critical=(crit,))

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            x = mpmath.mpf(x)
            return x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x * special.ndtr(x)

    def df_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return special.ndtr(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
