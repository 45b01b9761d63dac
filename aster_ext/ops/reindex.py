"""Ops that only move elements: flatten, reshape, transpose, concat, and the ``output`` marker.

Each is an index map: output element j (C order) is element ``src[j]`` of operand ``which[j]``.
Evaluation and intervals gather (exact); back-substitution scatters Λ's columns back to the
operands (exact: every operand element is read at most once by these ops)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ir import Op
from ..rigorous import Interval
from .base import AnalysisContext, Backward, LinearOpKind, register
from .linalg import LinearMap, MapPart


class ReindexOp(LinearOpKind):
    """Base: subclasses define :meth:`index_map`."""

    def index_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """(which operand, flat index in it) for every flat output element."""
        raise NotImplementedError

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        which, src = self.index_map(op, [tuple(a.shape[1:]) for a in args])
        batch = args[0].shape[0]
        out = np.empty((batch, which.size))
        for i, a in enumerate(args):
            sel = which == i
            out[:, sel] = a.reshape(batch, -1)[:, src[sel]]
        return out.reshape((batch, *op.shape))

    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval:
        which, src = self.index_map(op, [r.lo.shape for r in ranges])
        lo = np.empty(which.size)
        hi = np.empty(which.size)
        for i, r in enumerate(ranges):
            sel = which == i
            lo[sel] = r.lo.reshape(-1)[src[sel]]
            hi[sel] = r.hi.reshape(-1)[src[sel]]
        return Interval(lo.reshape(op.shape), hi.reshape(op.shape))

    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        shapes = ctx.in_shapes(op)
        which, src = self.index_map(op, shapes)
        coeffs: list[np.ndarray | None] = []
        for i, shp in enumerate(shapes):
            sel = which == i
            m = np.zeros((lam.shape[0], int(np.prod(shp))), dtype=lam.dtype)
            m[:, src[sel]] = lam[:, sel]
            coeffs.append(m)
        return Backward(coeffs, np.zeros(lam.shape[0], dtype=lam.dtype))

    def backward_exact(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        return self.backward(op, lam, upper, ctx)

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        which, src = self.index_map(op, in_shapes)
        n = which.size
        parts = []
        for i, shp in enumerate(in_shapes):
            rows = np.nonzero(which == i)[0]
            parts.append(MapPart.selection(n, int(np.prod(shp)), rows, src[rows]))
        return LinearMap(tuple(parts), np.zeros(n))


@register
class ReshapeOp(ReindexOp):
    """flatten / reshape (C order: the identity on flat indices) and the ``output`` marker."""

    kinds: ClassVar[tuple[str, ...]] = ("flatten", "reshape", "output")

    def index_map(self, op, in_shapes):
        n = int(np.prod(in_shapes[0]))
        return np.zeros(n, dtype=np.int64), np.arange(n)


@register
class TransposeOp(ReindexOp):
    """y = transpose(x, perm) (perm over the batch-free axes): y[i] = x[i permuted back]."""

    kinds: ClassVar[tuple[str, ...]] = ("transpose",)

    def index_map(self, op, in_shapes):
        shp = tuple(in_shapes[0])
        src = np.arange(int(np.prod(shp))).reshape(shp).transpose(tuple(op.attrs["perm"])).reshape(-1)
        return np.zeros(src.size, dtype=np.int64), src


@register
class ConcatOp(ReindexOp):
    """y = concat(x_1, ..., x_k) along ``axis`` (batch-free)."""

    kinds: ClassVar[tuple[str, ...]] = ("concat",)

    def index_map(self, op, in_shapes):
        axis = int(op.attrs["axis"])
        whichs, srcs = [], []
        for i, shp in enumerate(in_shapes):
            n = int(np.prod(shp))
            srcs.append(np.arange(n).reshape(shp))
            whichs.append(np.full(shp, i, dtype=np.int64))
        return np.concatenate(whichs, axis=axis).reshape(-1), np.concatenate(srcs, axis=axis).reshape(-1)
