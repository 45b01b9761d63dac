"""Rigorous scalar kernels on top of python-flint ``arb`` balls (Arb: midpoint-radius intervals).

Every arb operation returns a ball guaranteed to contain the exact result for every point of
its argument balls, so an expression evaluated on balls is a rigorous enclosure of the real
function's range over those balls (DESIGN §4, "Soundness of the analysis itself"). The working
precision is :data:`PREC` bits (>= 60 as required; 96 keeps the balls of point evaluations far
below one float64 ulp). Results leave this module as float64 numbers rounded *outward*:
:func:`down` / :func:`up` return the largest double <= / smallest double >= the ball's end,
decided by exact comparisons of dyadic numbers, never by a rounding mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction

from flint import arb, ctx

PREC = 96

ZERO = arb(0)
ONE = arb(1)


@contextmanager
def working_precision(bits: int = PREC) -> Iterator[None]:
    """Run arb operations at ``bits`` bits (restores the global flint precision afterwards)."""
    old = ctx.prec
    ctx.prec = max(bits, old)
    try:
        yield
    finally:
        ctx.prec = old


def point(x: float | int) -> arb:
    """The exact ball {x} of a double or integer."""
    return arb(x)


def dyadic(k: int, frac: int) -> arb:
    """The exact ball {k · 2^-frac} (dividing by a power of two is exact in arb)."""
    if frac >= 0:
        return arb(int(k)) / (1 << frac)
    return arb(int(k) << (-frac))


def fraction(q: Fraction) -> arb:
    """A ball containing the rational q (exact when q is dyadic and fits the precision)."""
    return arb(q.numerator) / arb(q.denominator)


def hull(a: float | arb, b: float | arb) -> arb:
    """A ball containing the real interval [a, b] (a <= b)."""
    return arb(a).union(arb(b))


def down(x: arb) -> float:
    """Largest double <= every point of the ball x (-inf if x is not finite)."""
    if not x.is_finite():
        return -math.inf
    lo = x.lower()
    f = float(lo)
    if math.isinf(f):
        return f if f < 0 else math.nextafter(math.inf, 0.0)
    if arb(f) > lo:
        f = math.nextafter(f, -math.inf)
    return f


def up(x: arb) -> float:
    """Smallest double >= every point of the ball x (+inf if x is not finite)."""
    if not x.is_finite():
        return math.inf
    hi = x.upper()
    f = float(hi)
    if math.isinf(f):
        return f if f > 0 else math.nextafter(-math.inf, 0.0)
    if arb(f) < hi:
        f = math.nextafter(f, math.inf)
    return f


def maybe_le(x: arb, y: arb | float) -> bool:
    """True unless x > y is certain (some point of x may be <= some point of y)."""
    return not (x > arb(y))


def maybe_ge(x: arb, y: arb | float) -> bool:
    """True unless x < y is certain."""
    return not (x < arb(y))


def clip_ball(x: arb, lo: float | None, hi: float | None) -> arb | None:
    """A ball containing x ∩ [lo, hi] (None bounds are infinite), or None if certainly empty."""
    a, b = x.lower(), x.upper()
    if lo is not None:
        if b < arb(lo):
            return None
        if a < arb(lo):
            a = arb(lo)
    if hi is not None:
        if a > arb(hi):
            return None
        if b > arb(hi):
            b = arb(hi)
    return a.union(b)


def verified_root(g: Callable[[arb], arb], a: float, b: float) -> tuple[float, float]:
    """Doubles [a', b'] ⊂ [a, b] that certainly contain a zero of g (g continuous on [a, b]).

    Requires that g(a) and g(b) have certainly opposite signs (checked: raises otherwise); then
    bisects in float64 while the sign of g at the midpoint is certain. Uniqueness of the zero
    is the caller's mathematical statement; this routine only proves existence in [a', b'].
    """
    with working_precision():
        ga, gb = g(arb(a)), g(arb(b))
        if ga < 0 and gb > 0:
            neg_left = True
        elif ga > 0 and gb < 0:
            neg_left = False
        else:
            raise ArithmeticError(f"verified_root: no certain sign change on [{a}, {b}]")
        while True:
            m = 0.5 * (a + b)
            if not a < m < b:
                break
            gm = g(arb(m))
            if gm < 0:
                a, b = (m, b) if neg_left else (a, m)
            elif gm > 0:
                a, b = (a, m) if neg_left else (m, b)
            else:
                break
    return a, b
