"""ELU σ(x) = x for x > 0, α·(e^x - 1) for x <= 0 (ONNX default α = 1).

Pieces: α(e^x - 1) on (-inf, 0] (σ'' = α e^x: convex for α > 0, concave for α < 0) and the
identity on [0, inf). One kink at 0 with one-sided slopes α (left) and 1 (right); σ is
monotone on each piece, so the kink is the only possible change of monotonicity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb

from ._split import split_parts, union
from .base import MP_PREC, Activation, Structure


@dataclass(frozen=True)
class Elu(Activation):
    alpha: float = 1.0

    name: ClassVar[str] = "elu"
    kind: ClassVar[str] = "table"

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", float(self.alpha))
        if not np.isfinite(self.alpha):
            raise ValueError("elu: alpha must be finite")

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def f_parts(self, x: arb) -> list[arb]:
        a = arb(self.alpha)
        return split_parts(x, 0.0, lambda v: a * v.expm1(), lambda v: v)

    def df_parts(self, x: arb) -> list[arb]:
        a = arb(self.alpha)
        return split_parts(x, 0.0, lambda v: a * v.exp(), lambda v: arb(1))

    def f_arb(self, x: arb) -> arb:
        return union(self.f_parts(x))

    def df_arb(self, x: arb) -> arb:
        return union(self.df_parts(x))

    def _structure(self) -> Structure:
        cv = int(np.sign(self.alpha))
        return Structure(breaks=((0.0, 0.0),), curvature=(cv, 0), critical=((0.0, 0.0),))

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            x = mpmath.mpf(x)
            return x if x > 0 else mpmath.mpf(self.alpha) * mpmath.expm1(x)

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0.0)))

    def df_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0, 1.0, self.alpha * np.exp(np.minimum(x, 0.0)))
