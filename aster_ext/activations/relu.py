"""Piecewise-linear activations with a kink at 0: ReLU, leaky ReLU, and the identity.

leaky_relu(x) = x for x >= 0, α·x for x < 0 (ReLU: α = 0). σ' = α left of 0, 1 right of 0;
both one-sided slopes belong to the slope set at 0. Linear on each side (curvature 0).
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
class LeakyRelu(Activation):
    alpha: float = 0.01

    name: ClassVar[str] = "leaky_relu"
    kind: ClassVar[str] = "piecewise"

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", float(self.alpha))
        if not np.isfinite(self.alpha):
            raise ValueError(f"{self.name}: alpha must be finite")

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    @property
    def neg_slope(self) -> float:
        return self.alpha

    def f_parts(self, x: arb) -> list[arb]:
        a = arb(self.neg_slope)
        return split_parts(x, 0.0, lambda v: a * v, lambda v: v)

    def df_parts(self, x: arb) -> list[arb]:
        a = arb(self.neg_slope)
        return split_parts(x, 0.0, lambda v: a, lambda v: arb(1))

    def f_arb(self, x: arb) -> arb:
        return union(self.f_parts(x))

    def df_arb(self, x: arb) -> arb:
        return union(self.df_parts(x))

    def _structure(self) -> Structure:
        return Structure(breaks=((0.0, 0.0),), curvature=(0, 0), critical=((0.0, 0.0),))

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        with mpmath.workprec(MP_PREC):
            x = mpmath.mpf(x)
            return x if x >= 0 else mpmath.mpf(self.neg_slope) * x

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0, x, self.neg_slope * x)

    def df_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0, 1.0, self.neg_slope)


@dataclass(frozen=True)
class Relu(LeakyRelu):
    """max(x, 0): leaky ReLU with α = 0 (no parameter)."""

    alpha: float = 0.0
    name: ClassVar[str] = "relu"

    def __post_init__(self) -> None:
        if self.alpha != 0.0:
            raise ValueError("relu has no alpha (use leaky_relu)")
        object.__setattr__(self, "alpha", 0.0)

    @property
    def params(self) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class Identity(Activation):
    """σ(x) = x."""

    name: ClassVar[str] = "identity"
    kind: ClassVar[str] = "piecewise"

    def f_arb(self, x: arb) -> arb:
        return x

    def df_arb(self, x: arb) -> arb:
        return arb(1)

    def _structure(self) -> Structure:
        return Structure(breaks=(), curvature=(0,), critical=())

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        return mpmath.mpf(x)

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).copy()

    def df_float(self, x: np.ndarray) -> np.ndarray:
        return np.ones_like(np.asarray(x, dtype=np.float64))
