"""Residual add y = a + b of two tensors of one shape.

Interval: [a_lo + b_lo, a_hi + b_hi] rounded outward. Back-substitution: Λ y = Λ a + Λ b, so Λ
is passed unchanged to both operands (exact); the interpreter sums the contributions that reach
a shared ancestor along both branches (with the rounding of that sum in the slack)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ir import Op
from ..rigorous import Interval
from .base import AnalysisContext, Backward, LinearOpKind, register
from .linalg import LinearMap, MapPart


@register
class AddOp(LinearOpKind):
    kinds: ClassVar[tuple[str, ...]] = ("add",)

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        return (args[0] + args[1]).reshape((args[0].shape[0], *op.shape))

    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval:
        s = ranges[0].add(ranges[1])
        return Interval(s.lo.reshape(op.shape), s.hi.reshape(op.shape))

    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        return Backward([lam, lam], np.zeros(lam.shape[0]))

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        n = int(np.prod(op.shape))
        eye = np.arange(n)
        return LinearMap(tuple(MapPart.selection(n, n, eye, eye) for _ in in_shapes), np.zeros(n))
