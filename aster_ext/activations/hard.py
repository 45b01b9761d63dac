"""Clamped linear activations: hard sigmoid and hard tanh.

hard_sigmoid(x) = max(0, min(1, α·x + β)) (ONNX HardSigmoid, defaults α = 0.2, β = 0.5);
hard_tanh(x) = max(-1, min(1, x)) (ONNX Clip(-1, 1)). Both are clamp(α·x + β, lo, hi): linear
with slope α between the kinks x = (lo - β)/α and (hi - β)/α, constant outside (slope 0); both
one-sided slopes belong to the slope set at a kink. The kinks of hard_sigmoid are rationals
that are generally not doubles; they are kept as rigorous float enclosures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb

from ._arb import down, up, working_precision
from ._split import union
from .base import MP_PREC, Activation, Structure


@dataclass(frozen=True)
class _Clamped(Activation):
    """clamp(α·x + β, clamp_lo, clamp_hi)."""

    alpha: float = 1.0
    beta: float = 0.0

    kind: ClassVar[str] = "piecewise"
    clamp_lo: ClassVar[float] = -1.0
    clamp_hi: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "beta", float(self.beta))
        if not (np.isfinite(self.alpha) and np.isfinite(self.beta)):
            raise ValueError(f"{self.name}: alpha and beta must be finite")

    def _lin(self, x: arb) -> arb:
        return arb(self.alpha) * x + arb(self.beta)

    def f_parts(self, x: arb) -> list[arb]:
        u = self._lin(x)
        lo, hi = arb(self.clamp_lo), arb(self.clamp_hi)
        u_lo, u_hi = u.lower(), u.upper()
        a = lo if u_lo < lo else (hi if u_lo > hi else u_lo)
        b = hi if u_hi > hi else (lo if u_hi < lo else u_hi)
        return [a, b]  # exact points; clamp is monotone, so σ(x) ⊂ [a, b]

    def f_arb(self, x: arb) -> arb:
        return union(self.f_parts(x))

    def df_parts(self, x: arb) -> list[arb]:
        u = self._lin(x)
        lo, hi = arb(self.clamp_lo), arb(self.clamp_hi)
        inside = not (u < lo) and not (u > hi)  # u may meet [lo, hi]
        outside = not (u > lo) or not (u < hi)  # u may meet (-inf, lo] ∪ [hi, inf)
        parts = [arb(self.alpha)] if inside else []
        if outside:
            parts.append(arb(0))
        return parts

    def df_arb(self, x: arb) -> arb:
        return union(self.df_parts(x))

    def _structure(self) -> Structure:
        if self.alpha == 0.0:
            return Structure(breaks=(), curvature=(0,), critical=())
        with working_precision():
            a, b = arb(self.alpha), arb(self.beta)
            k = sorted(
                ((arb(c) - b) / a for c in (self.clamp_lo, self.clamp_hi)), key=lambda v: float(v.mid())
            )
            breaks = tuple((down(v), up(v)) for v in k)
        if breaks[0][1] >= breaks[1][0]:
            raise ValueError(f"{self.name}: kinks too close to separate")
        return Structure(breaks=breaks, curvature=(0, 0, 0), critical=breaks)

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            v = mpmath.mpf(self.alpha) * mpmath.mpf(x) + mpmath.mpf(self.beta)
            return min(max(v, mpmath.mpf(self.clamp_lo)), mpmath.mpf(self.clamp_hi))

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.clip(self.alpha * x + self.beta, self.clamp_lo, self.clamp_hi)

    def df_float(self, x: np.ndarray) -> np.ndarray:
        u = self.alpha * np.asarray(x, dtype=np.float64) + self.beta
        return np.where((u >= self.clamp_lo) & (u < self.clamp_hi), self.alpha, 0.0)


@dataclass(frozen=True)
class HardSigmoid(_Clamped):
    alpha: float = 0.2
    beta: float = 0.5

    name: ClassVar[str] = "hard_sigmoid"
    clamp_lo: ClassVar[float] = 0.0
    clamp_hi: ClassVar[float] = 1.0

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta}


@dataclass(frozen=True)
class HardTanh(_Clamped):
    alpha: float = 1.0
    beta: float = 0.0

    name: ClassVar[str] = "hard_tanh"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.alpha, self.beta) != (1.0, 0.0):
            raise ValueError("hard_tanh is clip(x, -1, 1): it has no alpha/beta")

    def _structure(self) -> Structure:
        return Structure(
            breaks=((-1.0, -1.0), (1.0, 1.0)), curvature=(0, 0, 0), critical=((-1.0, -1.0), (1.0, 1.0))
        )
