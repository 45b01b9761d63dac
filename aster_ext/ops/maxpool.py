"""Max pooling (ONNX MaxPool / GlobalMaxPool, 1-D and 2-D): y[c, p] = max over the window's real
elements (padding never wins).

Interval: [max_k lo_k, max_k hi_k] (exact, no rounding). Linear relaxation (DeepPoly) on the
operand's range: with i* = argmax_k lo_k,
    lower:  y >= x_{i*}                      (always: y is the max),
    upper:  y = x_{i*}  if lo_{i*} >= hi_k for every other k in the window (dominant element),
            y <= max_k hi_k                 otherwise (a constant).
Back-substitution scatters Λ's columns onto the selected elements (sparse 0/1 matrices S_lo,
S_up); several outputs may select one element (overlapping windows), and the rounding of those
sums, γ_{2n} |Λ| (S_lo + S_up) mag(x), goes into the constant with that of Λ·U."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from ..errors import UnsupportedError
from ..ir import Op
from ..rigorous import Interval, gamma
from .base import AnalysisContext, Backward, OpKind, register
from .linalg import abs_matvec_up, finish_slack, shift_const
from .windows import channel_windows


@dataclass
class MaxRelaxation:
    """sel[j]: the element x_{i*} of output j; dominant[j]: y_j = x_{sel[j]}; cap[j] = max hi."""

    sel: np.ndarray
    dominant: np.ndarray
    cap: np.ndarray
    n_in: int

    def s_lo(self) -> sp.csr_matrix:
        n = self.sel.size
        return sp.csr_matrix((np.ones(n), (np.arange(n), self.sel)), shape=(n, self.n_in))

    def s_up(self) -> sp.csr_matrix:
        n = self.sel.size
        rows = np.nonzero(self.dominant)[0]
        return sp.csr_matrix((np.ones(rows.size), (rows, self.sel[rows])), shape=(n, self.n_in))


def _windows(op: Op, in_shape: tuple[int, ...]) -> np.ndarray:
    idx = channel_windows(op.attrs, in_shape, tuple(op.shape), op.attrs["kernel"])
    if np.any(np.all(idx < 0, axis=1)):
        raise UnsupportedError(f"{op.describe()}: a pooling window holds only padding")
    return idx


def _gather(values: np.ndarray, idx: np.ndarray, fill: float) -> np.ndarray:
    ext = np.concatenate(
        [values.reshape(*values.shape[:-1], -1), np.full((*values.shape[:-1], 1), fill)], axis=-1
    )
    return ext[..., np.where(idx >= 0, idx, ext.shape[-1] - 1)]


@register
class MaxPoolOp(OpKind):
    kinds: ClassVar[tuple[str, ...]] = ("maxpool",)
    nonlinear: ClassVar[bool] = True

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        x = args[0]
        idx = _windows(op, tuple(x.shape[1:]))
        g = _gather(x.reshape(x.shape[0], -1), idx, -np.inf)  # [B, n_out, K]
        return g.max(axis=-1).reshape((x.shape[0], *op.shape))

    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval:
        r = ranges[0]
        idx = _windows(op, tuple(r.lo.shape))
        lo = _gather(r.lo.reshape(-1), idx, -np.inf).max(axis=-1)
        hi = _gather(r.hi.reshape(-1), idx, -np.inf).max(axis=-1)
        return Interval(lo.reshape(op.shape), hi.reshape(op.shape))

    def relaxation(self, op: Op, ranges: list[Interval]) -> MaxRelaxation:
        r = ranges[0]
        idx = _windows(op, tuple(r.lo.shape))
        lo = _gather(r.lo.reshape(-1), idx, -np.inf)
        hi = _gather(r.hi.reshape(-1), idx, -np.inf)
        rows = np.arange(idx.shape[0])
        best = np.argmax(lo, axis=1)
        others = hi.copy()
        others[rows, best] = -np.inf
        dominant = lo[rows, best] >= others.max(axis=1)
        return MaxRelaxation(idx[rows, best], dominant, hi.max(axis=1), r.lo.size)

    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        rx: MaxRelaxation = ctx.relaxations[op.name]
        pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
        toward_up, toward_lo = (pos, neg) if upper else (neg, pos)
        s_up, s_lo = rx.s_up(), rx.s_lo()
        m = (s_up.T @ toward_up.T).T + (s_lo.T @ toward_lo.T).T
        cap = np.where(rx.dominant, 0.0, rx.cap)
        c = toward_up @ cap
        n = rx.sel.size
        al = np.abs(lam)
        slack = gamma(2 * n + 1) * abs_matvec_up(al, abs_matvec_up(s_up + s_lo, ctx.mag(op.inputs[0]), 2))
        slack = slack + gamma(n) * abs_matvec_up(al, np.abs(cap))
        return Backward(
            [np.ascontiguousarray(m)], shift_const(np.zeros(lam.shape[0]), c, finish_slack(slack), upper)
        )

    def backward_exact(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        rx: MaxRelaxation = ctx.relaxations[op.name]
        pos = np.where(lam > 0, lam, Fraction(0))
        neg = np.where(lam < 0, lam, Fraction(0))
        toward_up, toward_lo = (pos, neg) if upper else (neg, pos)
        m = np.empty((lam.shape[0], rx.n_in), dtype=object)
        m[...] = Fraction(0)
        for j in range(rx.sel.size):
            m[:, rx.sel[j]] += toward_lo[:, j]
            if rx.dominant[j]:
                m[:, rx.sel[j]] += toward_up[:, j]
        cap = np.array(
            [Fraction(0) if d else Fraction(float(v)) for d, v in zip(rx.dominant, rx.cap, strict=True)],
            dtype=object,
        )
        return Backward([m], toward_up.dot(cap))
