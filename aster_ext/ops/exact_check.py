"""Exact-rational cross-checks of the float analyses on small networks (DESIGN §4).

- :func:`exact_interval_ranges`: the interval transfer of every node in exact rational
  arithmetic (linear ops through their exact :class:`~.linalg.LinearMap`, ReLU/identity, max-pool).
  The float intervals must contain these.
- :func:`exact_backsubstitute`: replays a back-substitution query of a float symbolic run with the
  *same discrete decisions* (the relaxations stored in the context, whose float coefficients are
  exact real lines) in exact arithmetic, concretised exactly over the same stop-node boxes. The
  float bound must be below (lower) / above (upper) the exact one: the float run's rounding
  only ever loosens.
Object arrays of Fraction: for networks of at most a few hundred neurons.
"""

from __future__ import annotations

from fractions import Fraction

import networkx as nx
import numpy as np

from ..errors import UnsupportedError
from ..ir import Network
from .base import AnalysisContext, op_class
from .maxpool import _windows


def _fr(a: np.ndarray) -> np.ndarray:
    flat = [Fraction(float(v)) for v in np.asarray(a, dtype=np.float64).reshape(-1)]
    return np.array(flat, dtype=object)


def exact_interval_ranges(
    net: Network, lower: np.ndarray, upper: np.ndarray, target: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact (lo, hi) Fraction vectors (flattened) of every node up to ``target``."""
    ctx = AnalysisContext(net)
    keep = nx.ancestors(net.graph, target) | {target}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for op in net.ops():
        if op.name not in keep:
            continue
        if op.kind == "input":
            out[op.name] = (_fr(lower), _fr(upper))
            continue
        cls = op_class(op.kind)
        ins = [out[i] for i in op.inputs]
        if cls.linear:
            lmap = ctx.linear_map(op)
            lo = lmap.exact_bias().copy()
            hi = lmap.exact_bias().copy()
            for part, (xl, xh) in zip(lmap.parts, ins, strict=True):
                a = part.exact_dense()
                pos = np.where(a > 0, a, Fraction(0))
                neg = np.where(a < 0, a, Fraction(0))
                lo = lo + pos.dot(xl) + neg.dot(xh)
                hi = hi + pos.dot(xh) + neg.dot(xl)
        elif op.kind == "act" and op.attrs["fn"] in ("relu", "identity"):
            xl, xh = ins[0]
            if op.attrs["fn"] == "relu":
                lo = np.array([max(v, Fraction(0)) for v in xl], dtype=object)
                hi = np.array([max(v, Fraction(0)) for v in xh], dtype=object)
            else:
                lo, hi = xl, xh
        elif op.kind == "maxpool":
            xl, xh = ins[0]
            idx = _windows(op, ctx.in_shapes(op)[0])
            lo = np.array([max(xl[i] for i in row if i >= 0) for row in idx], dtype=object)
            hi = np.array([max(xh[i] for i in row if i >= 0) for row in idx], dtype=object)
        else:
            raise UnsupportedError(f"exact intervals: {op.describe()} is not supported")
        out[op.name] = (lo, hi)
    return out


def exact_backsubstitute(
    ctx: AnalysisContext, query: str, lam: np.ndarray, upper: bool, stop: frozenset[str] | None = None
) -> np.ndarray:
    """Exact value of the relaxed bound the float :func:`~.interpreter.backsubstitute` +
    :func:`~.interpreter.concretize` over-approximate (same relaxations, same stop boxes)."""
    net = ctx.net
    stops = stop if stop is not None else frozenset({net.input_name})
    keep = nx.ancestors(net.graph, query) | {query}
    order = [o.name for o in net.ops() if o.name in keep][::-1]
    acc: dict[str, np.ndarray] = {query: np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(lam)}
    const = np.array([Fraction(0)] * lam.shape[0], dtype=object)
    for name in order:
        if name not in acc or name in stops:
            continue
        op = net.op(name)
        step = op_class(op.kind).backward_exact(op, acc.pop(name), upper, ctx)
        const = const + step.const
        for src, m in zip(op.inputs, step.coeffs, strict=True):
            if m is not None:
                acc[src] = acc[src] + m if src in acc else m
    total = const
    for name, m in acc.items():
        lo, hi = _fr(ctx.ranges[name].lo), _fr(ctx.ranges[name].hi)
        a, b = m * lo[None, :], m * hi[None, :]
        pick = np.where(a > b, a, b) if upper else np.where(a < b, a, b)
        total = total + pick.sum(axis=1)
    return total


__all__ = ["exact_backsubstitute", "exact_interval_ranges"]
