"""Evaluation of piecewise-defined functions on arb balls that may straddle a kink."""

from __future__ import annotations

from collections.abc import Callable

from flint import arb

from ._arb import clip_ball


def split_parts(x: arb, kink: float, left: Callable[[arb], arb], right: Callable[[arb], arb]) -> list[arb]:
    """Enclosures of f over the ball x, f = left on (-inf, kink] and right on [kink, inf): one
    ball per side that x may meet (both at the kink itself)."""
    parts = []
    xl = clip_ball(x, None, kink)
    if xl is not None:
        parts.append(left(xl))
    xr = clip_ball(x, kink, None)
    if xr is not None:
        parts.append(right(xr))
    assert parts
    return parts


def union(parts: list[arb]) -> arb:
    """One ball containing every ball of ``parts``."""
    res = parts[0]
    for p in parts[1:]:
        res = res.union(p)
    return res
