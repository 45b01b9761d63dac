"""GELU, tanh approximation: σ(x) = x/2·(1 + tanh(u(x))),  u(x) = c·(x + k·x³),
c = √(2/π), k = 0.044715 (ONNX Gelu approximate='tanh', PyTorch GELU(approximate='tanh')).

Since 1 + tanh(u) = 2·s(2u) (s the logistic sigmoid), σ(x) = x·s(2u(x)): the form evaluated
here (no cancellation for x -> -inf). With u' = c(1 + 3k·x²), u'' = 6ck·x:

    σ'(x)  = s(2u) + 2x·u'·s(2u)s(-2u)
    σ''(x) = c·sech²(u)·h(x),   h(x) = 1 + 6k·x² - c·x·(1 + 3k·x²)²·tanh(u(x)).

Inflection points ±x_i (x_i ≈ 1.41850): h is even (x·tanh(u(x)) is even, u odd) and h(0) = 1.
For x > 0, h(x) = 0 iff tanh(u(x)) = r(x) := (1 + 6k·x²)/(c·x·(1 + 3k·x²)²). tanh(u(x))
increases strictly from 0 to 1 on (0, inf); with s = x², d/ds log r = 6k/(1 + 6ks) - 1/(2s)
- 6k/(1 + 3ks) < -1/(2s) < 0, so r decreases strictly from +inf to 0. Hence exactly one
positive zero x_i (h > 0 on [0, x_i), h < 0 beyond), enclosed by verified bisection on [1, 2].
σ is concave on (-inf, -x_i], convex on [-x_i, x_i], concave on [x_i, inf); σ' has its
minimum at -x_i and its maximum at x_i.

Critical point (unique; global minimum ≈ -0.170041 at x* ≈ -0.752461): for x >= 0 both terms of
σ' are >= 0 and s(2u) > 0, so σ' > 0. σ' -> 0 as x -> -inf and σ'' < 0 on (-inf, -x_i), so
σ' < 0 there; on [-x_i, x_i] σ' increases strictly from σ'(-x_i) < 0 to σ'(x_i) > 0, so it has
exactly one zero, which lies in (-x_i, 0); it is enclosed by verified bisection on [-1, -0.5].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb
from scipy import special

from ._arb import verified_root, working_precision
from .base import MP_PREC, Activation, Structure
from .sigmoid import sigmoid_arb

KAPPA = 0.044715  # the constant of the approximation (a decimal: taken exactly as 44715/10^6)
C_FLOAT = math.sqrt(2.0 / math.pi)


def _c() -> arb:
    return (2 / arb.pi()).sqrt()


def _k() -> arb:
    return arb(44715) / 1000000


def _u(x: arb) -> arb:
    return _c() * (x + _k() * (x * x * x))


def _sig_point(v: arb) -> arb:
    """s(v) = 1/(1 + e^-v), written so that e^(..) never overflows (v: a ball of one sign or 0)."""
    if v < 0:
        e = v.exp()
        return e / (1 + e)
    return sigmoid_arb(v)


def _sig(v: arb) -> arb:
    """Enclosure of the logistic s over the ball v (s is increasing: hull of its end points)."""
    if v.rad() == 0:
        return _sig_point(v)
    return _sig_point(arb(v.lower())).union(_sig_point(arb(v.upper())))


@dataclass(frozen=True)
class GeluTanh(Activation):
    name: ClassVar[str] = "gelu_tanh"
    kind: ClassVar[str] = "table"

    def f_arb(self, x: arb) -> arb:
        return x * _sig(2 * _u(x))

    def df_arb(self, x: arb) -> arb:
        v = 2 * _u(x)
        du = _c() * (1 + 3 * _k() * x * x)
        return _sig(v) + 2 * x * du * _sig(v) * _sig(-v)

    @staticmethod
    def curvature_sign_arb(x: arb) -> arb:
        """h(x) of the module docstring: σ''(x) has the sign of h(x)."""
        c, k = _c(), _k()
        w = 1 + 3 * k * x * x
        return 1 + 6 * k * x * x - c * x * (w * w) * _u(x).tanh()

    def _structure(self) -> Structure:
        with working_precision():
            xi = verified_root(self.curvature_sign_arb, 1.0, 2.0)
        crit = verified_root(self.df_arb, -1.0, -0.5)
        return Structure(breaks=((-xi[1], -xi[0]), xi), curvature=(-1, 1, -1), critical=(crit,))

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        x = mpmath.mpf(x)
        # e^(-2u) amplifies the relative error of u by |2u| ~ |x|^3/10: carry that many more bits
        extra = 16 + 3 * int(mpmath.log(1 + abs(x), 2)) if mpmath.isfinite(x) else 16
        with mpmath.workprec(MP_PREC + extra):
            u = mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf(44715) / 1000000 * x**3)
            y = x / (1 + mpmath.exp(-2 * u))
        with mpmath.workprec(MP_PREC):
            return +y

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            u = C_FLOAT * (x + KAPPA * x * x * x)
            return x * special.expit(2.0 * u)

    def df_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            u = C_FLOAT * (x + KAPPA * x * x * x)
            du = C_FLOAT * (1.0 + 3.0 * KAPPA * x * x)
            s = special.expit(2.0 * u)
            d = s + 2.0 * x * du * s * special.expit(-2.0 * u)
        return np.where(np.isfinite(d), d, np.where(x > 0, 1.0, 0.0))
