"""Interval arithmetic in float64 that floating-point rounding cannot make too narrow (DESIGN §4).

Intervals are (lo, hi) numpy arrays. Only correctly rounded operations are used, each followed
by one-ulp outward widening (``np.nextafter``); dot products use the a-priori bound
|fl(x·y) - x·y| <= γ_n·|x|ᵀ|y| + n·2^-1074, γ_n = n·μ/(1-n·μ), μ = 2^-53, with |x|ᵀ|y| itself
rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

MU = 2.0**-53
ETA = 2.0**-1074


def up(x: np.ndarray | float) -> np.ndarray:
    return np.nextafter(x, np.inf)


def down(x: np.ndarray | float) -> np.ndarray:
    return np.nextafter(x, -np.inf)


def gamma(n: int) -> float:
    """γ_n rounded up (valid for n·μ < 1)."""
    return float(up(up(n * MU) / down(1.0 - n * MU)))


@dataclass
class Interval:
    """Elementwise closed intervals [lo, hi] (float64 arrays of one shape)."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        self.lo = np.asarray(self.lo, dtype=np.float64)
        self.hi = np.asarray(self.hi, dtype=np.float64)

    def mid_rad(self) -> tuple[np.ndarray, np.ndarray]:
        """m, r with [lo, hi] ⊆ [m - r, m + r]."""
        m = 0.5 * self.lo + 0.5 * self.hi
        r = np.maximum(up(self.hi - m), up(m - self.lo))
        return m, np.maximum(r, 0.0)

    def mag(self) -> np.ndarray:
        """max |v| over the interval."""
        return np.maximum(np.abs(self.lo), np.abs(self.hi))

    def add(self, other: Interval) -> Interval:
        return Interval(down(self.lo + other.lo), up(self.hi + other.hi))

    def hull(self, other: Interval) -> Interval:
        return Interval(np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi))

    def relu(self) -> Interval:
        return Interval(np.maximum(self.lo, 0.0), np.maximum(self.hi, 0.0))

    @staticmethod
    def point(x: np.ndarray) -> Interval:
        return Interval(x, x)


def matvec(weight: np.ndarray, weight_rad: np.ndarray | None, x: Interval) -> Interval:
    """Enclosure of { W' x : |W' - W| <= weight_rad, x in [lo, hi] } for W [n_out, n_in].

    y_mid = fl(W m); radius <= (|W| r + γ_n |W||m| + R (|m| + r)) / (1 - γ_{n+2}) + n·η, with the
    three nonnegative products computed in floating point and inflated by the same factor.
    """
    w = np.asarray(weight, dtype=np.float64)
    n = w.shape[1]
    m, r = x.mid_rad()
    y_mid = w @ m
    aw = np.abs(w)
    s = aw @ r + gamma(n) * (aw @ np.abs(m))
    if weight_rad is not None:
        s = s + np.asarray(weight_rad, dtype=np.float64) @ up(np.abs(m) + r)
    g = gamma(n + 4)
    rad = up(up(s * (1.0 + 2.0 * g)) + (n + 1) * ETA)
    return Interval(down(y_mid - rad), up(y_mid + rad))


def scaled_sum_bound(weight_abs: np.ndarray, mags: np.ndarray) -> np.ndarray:
    """Upper bound of |W| @ mags (nonnegative) under rounding."""
    n = weight_abs.shape[-1]
    return up(up((weight_abs @ mags) * (1.0 + 2.0 * gamma(n + 4))) + (n + 1) * ETA)


def fractions_to_float_enclosure(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest float64 of each exact Fraction, and a radius with |exact - float| <= radius."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    approx = np.array([float(v) for v in flat], dtype=np.float64)
    rad = np.zeros_like(approx)
    for i, v in enumerate(flat):
        if Fraction(approx[i]) != v:
            rad[i] = float(up(abs(approx[i]) * MU * 2.0 + 4.9e-324))
    return approx.reshape(np.shape(values)), rad.reshape(np.shape(values))
