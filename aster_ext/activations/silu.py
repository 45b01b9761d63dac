"""SiLU (swish) σ(x) = x·s(x), s the logistic sigmoid.

σ'(x)  = s(x)·(1 + x·s(-x));  σ''(x) = s(x)s(-x)·(2 - x·tanh(x/2)).
Critical point (unique, the global minimum ≈ -0.27846 at x* ≈ -1.27846): for x >= 0, σ' > 0;
for x < 0 the sign of σ' is that of g(x) = 1 + x·s(-x), and g'(x) = s(-x)(1 - x·s(x)) > 0, with
g(-inf) = -inf, g(0) = 1, so g has exactly one zero, enclosed by verified bisection on [-2, -1].
Inflection points ±x_i (x_i ≈ 2.3994): x·tanh(x/2) is even and strictly increasing in |x|
from 0 to inf, so 2 - x·tanh(x/2) has exactly the two zeros ±x_i (enclosed on [2, 3]). σ is
concave on (-inf, -x_i], convex on [-x_i, x_i], concave on [x_i, inf); σ' has its minimum at
-x_i and its maximum at x_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb
from scipy import special

from ._arb import verified_root
from .base import MP_PREC, Activation, Structure
from .sigmoid import sigmoid_arb


@dataclass(frozen=True)
class Silu(Activation):
    name: ClassVar[str] = "silu"
    kind: ClassVar[str] = "table"

    def f_arb(self, x: arb) -> arb:
        return x * sigmoid_arb(x)

    def df_arb(self, x: arb) -> arb:
        return sigmoid_arb(x) * (1 + x * sigmoid_arb(-x))

    def _structure(self) -> Structure:
        crit = verified_root(lambda x: 1 + x * sigmoid_arb(-x), -2.0, -1.0)
        xi = verified_root(lambda x: 2 - x * (x / 2).tanh(), 2.0, 3.0)
        return Structure(
            breaks=((-xi[1], -xi[0]), xi),
            curvature=(-1, 1, -1),
            critical=(crit,),
        )

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            x = mpmath.mpf(x)
            return x / (1 + mpmath.exp(-x))

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x * special.expit(x)

    def df_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return special.expit(x) * (1.0 + x * special.expit(-x))
