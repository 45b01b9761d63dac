"""Graph interpreter over the IR: every analysis is a walk of the DAG in topological order, each
node handled by its operator class (:mod:`aster_ext.ops`).

- :func:`evaluate` — float64 reference on a batch, every node.
- :func:`interval_ranges` — a rigorous box per node over an input box.
- :func:`symbolic_ranges` — DeepPoly/CROWN back-substitution: for every node feeding a
  nonlinear op (activation, max-pool), linear bounds Λ·x + c of its value in terms of the
  input, found by walking the DAG backwards from the node (reverse topological order; a node
  reached along several paths, e.g. both branches of a residual add, receives the *sum* of the
  coefficient matrices of all its consumers before its own step). Each nonlinear op is replaced
  by its linear relaxation on its operand's range; the bounds are concretised over the input
  box and intersected with the interval step and the plain interval ranges, so they are never
  wider than the intervals.
  Only rows that matter are back-substituted: for operands of ReLUs only the unstable neurons;
  ``all_rows_of`` adds every row of the nodes of the given kinds (a fixed-point program sizes the
  integer bits and the error terms of its conv/dense/add/avg-pool outputs from their ranges: a
  stable neuron or a logit left at its interval step, W·[tightened operand range] + b, can be
  many times wider than its back-substituted range; measured up to 30x on Aster's dense
  benchmarks and 0.2-0.8x the width on the CNNs' deeper layers).
- :func:`backsubstitute` — the backward walk for any query Λ on any node, stopping at any set
  of nodes (linear bounds w.r.t. an intermediate node); :func:`concretize` bounds the result
  over the stop nodes' ranges.
- :func:`margin_bounds` — a float-sound lower bound of y_label - y_k over the input box for every
  k: Λ = e_label - e_k is back-substituted directly (one lower bound of the difference).

Rounding: every step's rounding is pushed into the constant (:mod:`.linalg`); summing two
consumers' coefficient matrices M_1 + M_2 errs by <= 2μ|fl(M_1 + M_2)| entrywise, which times
mag(node) goes into the constant too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ..errors import UserError
from ..ir import Network, Op
from ..rigorous import MU, Interval, down, up
from .base import AnalysisContext, op_class
from .linalg import abs_matvec_up, box_bound, finish_slack

DEFAULT_BUDGET = 1 << 23  # float64 entries of one back-substitution chunk's widest matrix (64 MiB)


# --------------------------------------------------------------------------------------
# Float evaluation
# --------------------------------------------------------------------------------------


def evaluate(net: Network, x: np.ndarray, upto: str | None = None) -> dict[str, np.ndarray]:
    """Every node's float64 value on the batch x ([B, *input_shape] or [B, n_in])."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    try:
        batch = a.reshape((a.shape[0], *net.input_shape))
    except ValueError:
        raise UserError(
            f"{net.name}: input batch of shape {a.shape} does not fit {net.input_shape}"
        ) from None
    values: dict[str, np.ndarray] = {}
    names = ancestors_order(net, upto) if upto else [o.name for o in net.ops()]
    for name in names:
        op = net.op(name)
        if op.kind == "input":
            values[name] = batch
            continue
        out = op_class(op.kind).evaluate(op, [values[i] for i in op.inputs])
        values[name] = out.reshape((batch.shape[0], *op.shape))
    return values


def logits_node(net: Network) -> str:
    """The node the analyses target: the single output, or the logits before a trailing
    softmax/argmax (and ``output`` markers)."""
    if len(net.output_names) != 1:
        raise UserError(f"{net.name}: the range analyses need a single output")
    name = net.output_names[0]
    while net.op(name).kind in ("output", "softmax", "argmax"):
        name = net.op(name).inputs[0]
    return name


# --------------------------------------------------------------------------------------
# Interval and symbolic ranges
# --------------------------------------------------------------------------------------


def _box(net: Network, lower: np.ndarray, upper: np.ndarray) -> Interval:
    lo = np.asarray(lower, dtype=np.float64).reshape(net.input_shape)
    hi = np.asarray(upper, dtype=np.float64).reshape(net.input_shape)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo > hi):
        raise UserError(f"{net.name}: the input box must be finite with lower <= upper")
    return Interval(lo, hi)


def ancestors_order(net: Network, target: str) -> list[str]:
    keep = nx.ancestors(net.graph, target) | {target}
    return [o.name for o in net.ops() if o.name in keep]


def interval_ranges(
    net: Network, lower: np.ndarray, upper: np.ndarray, target: str | None = None, maps: dict | None = None
) -> AnalysisContext:
    """Interval box of every node up to ``target`` (default: the logits node). ``maps``: a cache of
    the ops' linear maps to share between analyses of one network."""
    ctx = AnalysisContext(net, _maps=maps if maps is not None else {})
    tgt = target or logits_node(net)
    for name in ancestors_order(net, tgt):
        op = net.op(name)
        if op.kind == "input":
            ctx.ranges[name] = _box(net, lower, upper)
            continue
        ctx.ranges[name] = op_class(op.kind).interval(op, [ctx.ranges[i] for i in op.inputs], ctx)
    return ctx


@dataclass
class SymbolicStats:
    """How much back-substitution work the symbolic pass did."""

    queried_nodes: int = 0
    queried_rows: int = 0
    chunks: int = 0
    per_node_rows: dict[str, int] = field(default_factory=dict)


def symbolic_ranges(
    net: Network,
    lower: np.ndarray,
    upper: np.ndarray,
    target: str | None = None,
    budget: int = DEFAULT_BUDGET,
    maps: dict | None = None,
    all_rows_of: frozenset[str] = frozenset(),
) -> tuple[AnalysisContext, SymbolicStats]:
    """Ranges of every node up to ``target`` by back-substitution (module docstring); the
    context also holds the relaxations used, for margin queries and exact replay.
    ``all_rows_of``: op kinds whose every output row is back-substituted, not only the rows
    that a relaxation reads (each bound is the same sound back-substitution, so the ranges stay
    sound and never wider than the interval ranges; at the cost of more back-substituted rows)."""
    tgt = target or logits_node(net)
    plain = interval_ranges(net, lower, upper, tgt, maps)
    ctx = AnalysisContext(net, _maps=plain._maps)
    stats = SymbolicStats()
    order = ancestors_order(net, tgt)
    consumers = {n: [net.op(s) for s in net.graph.successors(n)] for n in order}
    for name in order:
        op = net.op(name)
        if op.kind == "input":
            ctx.ranges[name] = _box(net, lower, upper)
            continue
        cls = op_class(op.kind)
        ins = [ctx.ranges[i] for i in op.inputs]
        if cls.nonlinear:
            ctx.relaxations[name] = cls.relaxation(op, ins)
        step = cls.interval(op, ins, ctx)
        # ∩ the plain interval range: never wider than it, even by a rounding difference
        iv = Interval(np.maximum(step.lo, plain.ranges[name].lo), np.minimum(step.hi, plain.ranges[name].hi))
        rows = _rows_to_tighten(net, op, iv, consumers[name], all_rows_of)
        if rows.size:
            lo, hi = _bounds_of_rows(ctx, name, rows, budget, stats)
            flo, fhi = iv.lo.reshape(-1).copy(), iv.hi.reshape(-1).copy()
            flo[rows] = np.maximum(flo[rows], lo)
            fhi[rows] = np.minimum(fhi[rows], hi)
            bad = flo > fhi  # cannot happen for sound bounds; keep the interval then
            flo = np.where(bad, iv.lo.reshape(-1), flo)
            fhi = np.where(bad, iv.hi.reshape(-1), fhi)
            iv = Interval(flo.reshape(op.shape), fhi.reshape(op.shape))
            stats.queried_nodes += 1
            stats.queried_rows += int(rows.size)
            stats.per_node_rows[name] = int(rows.size)
        ctx.ranges[name] = iv
    return ctx, stats


def _rows_to_tighten(
    net: Network, op: Op, iv: Interval, consumers: list[Op], all_rows_of: frozenset[str] = frozenset()
) -> np.ndarray:
    """Flat indices of op's output whose bounds feed a relaxation, or all of them when its kind
    is in ``all_rows_of`` (see module docstring)."""
    if all(i == net.input_name for i in op.inputs):
        return np.zeros(0, dtype=np.int64)  # one linear step from the box: intervals are already exact
    if op.kind == "act":
        # its own relaxation on its (already tightened) operand range gives no more than the image
        return np.zeros(0, dtype=np.int64)
    if op.kind in all_rows_of:
        return np.arange(iv.lo.size)
    nonlin = [
        c
        for c in consumers
        if op_class(c.kind).nonlinear and not (c.kind == "act" and c.attrs["fn"] == "identity")
    ]
    if not nonlin:
        return np.zeros(0, dtype=np.int64)
    lo, hi = iv.lo.reshape(-1), iv.hi.reshape(-1)
    if all(c.kind == "act" and c.attrs["fn"] == "relu" for c in nonlin):
        return np.nonzero((lo < 0) & (hi > 0))[0]
    return np.arange(lo.size)


def _bounds_of_rows(
    ctx: AnalysisContext, name: str, rows: np.ndarray, budget: int, stats: SymbolicStats
) -> tuple[np.ndarray, np.ndarray]:
    net = ctx.net
    n = int(np.prod(net.op(name).shape))
    widest = max(int(np.prod(net.op(a).shape)) for a in ancestors_order(net, name))
    chunk = max(1, budget // max(widest, 1))
    lo = np.empty(rows.size)
    hi = np.empty(rows.size)
    for start in range(0, rows.size, chunk):
        sel = rows[start : start + chunk]
        lam = np.zeros((sel.size, n))
        lam[np.arange(sel.size), sel] = 1.0
        for upper, out in ((True, hi), (False, lo)):
            coeffs, const = backsubstitute(ctx, name, lam, upper)
            out[start : start + sel.size] = concretize(ctx, coeffs, const, upper)
        stats.chunks += 1
    return lo, hi


def backsubstitute(
    ctx: AnalysisContext, query: str, lam: np.ndarray, upper: bool, stop: frozenset[str] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Linear bound Λ·v_query <= (upper) / >= (lower) Σ_{s in stop} M_s v_s + c, valid for every
    value the network can produce from the input box, by walking back from ``query`` until
    only nodes of ``stop`` (default: the input) carry coefficients. Needs the ranges and
    relaxations of ``ctx`` for every node strictly between the stop set and the query."""
    net = ctx.net
    stops = stop if stop is not None else frozenset({net.input_name})
    order = ancestors_order(net, query)[::-1]
    acc: dict[str, np.ndarray] = {query: np.asarray(lam, dtype=np.float64)}
    const = np.zeros(lam.shape[0])
    for name in order:
        if name not in acc or name in stops:
            continue
        op = net.op(name)
        if op.kind == "input":
            raise UserError(f"back-substitution reached the input without stopping at {sorted(stops)}")
        mat = acc.pop(name)
        step = op_class(op.kind).backward(op, mat, upper, ctx)
        const = up(const + step.const) if upper else down(const + step.const)
        for src, m in zip(op.inputs, step.coeffs, strict=True):
            if m is None:
                continue
            if src in acc:
                total = acc[src] + m
                slack = finish_slack(abs_matvec_up(up(2 * MU * np.abs(total)), ctx.mag(src)))
                const = up(const + slack) if upper else down(const - slack)
                acc[src] = total
            else:
                acc[src] = m
    return acc, const


def concretize(
    ctx: AnalysisContext, coeffs: dict[str, np.ndarray], const: np.ndarray, upper: bool
) -> np.ndarray:
    """max (upper) / min (lower) of Σ_s M_s v_s + c over the stop nodes' ranges (boxes)."""
    total = const
    first = True
    for name, m in coeffs.items():
        b = box_bound(m, np.zeros(m.shape[0]), ctx.ranges[name], upper)
        if first:
            total = up(b + const) if upper else down(b + const)
            first = False
        else:
            total = up(total + b) if upper else down(total + b)
    return total


# --------------------------------------------------------------------------------------
# Classification margins
# --------------------------------------------------------------------------------------


@dataclass
class MarginBounds:
    """Lower bounds of y_label - y_k over the box (index label holds +inf)."""

    label: int
    interval: np.ndarray
    symbolic: np.ndarray | None = None

    @staticmethod
    def _worst(v: np.ndarray, label: int) -> float:
        return float(np.min(np.delete(v, label)))

    @property
    def interval_min(self) -> float:
        return self._worst(self.interval, self.label)

    @property
    def symbolic_min(self) -> float:
        assert self.symbolic is not None
        return self._worst(self.symbolic, self.label)


def margin_matrix(n: int, label: int) -> np.ndarray:
    """Rows e_label - e_k for every k != label (in order of k)."""
    if n < 2 or not 0 <= label < n:
        raise UserError(f"margins need at least two outputs and a label in [0, {n}); got label {label}")
    ks = [k for k in range(n) if k != label]
    lam = np.zeros((len(ks), n))
    lam[:, label] = 1.0
    lam[np.arange(len(ks)), ks] = -1.0
    return lam


def interval_margins(ctx: AnalysisContext, label: int) -> np.ndarray:
    """lo(y_label) - hi(y_k), rounded down, from the node ranges of ``ctx``."""
    r = ctx.ranges[logits_node(ctx.net)]
    lo, hi = r.lo.reshape(-1), r.hi.reshape(-1)
    out = down(lo[label] - hi)
    out[label] = np.inf
    return out


def symbolic_margins(ctx: AnalysisContext, label: int) -> np.ndarray:
    """Back-substituted lower bound of y_label - y_k (k != label) over the input box, never below
    the interval margin of the same (symbolic) ranges."""
    node = logits_node(ctx.net)
    n = int(np.prod(ctx.net.op(node).shape))
    lam = margin_matrix(n, label)
    coeffs, const = backsubstitute(ctx, node, lam, upper=False)
    low = concretize(ctx, coeffs, const, upper=False)
    out = np.full(n, np.inf)
    out[[k for k in range(n) if k != label]] = low
    return np.maximum(out, interval_margins(ctx, label))


def margin_bounds(
    net: Network, lower: np.ndarray, upper: np.ndarray, label: int, symbolic: bool = True
) -> MarginBounds:
    """Interval and (optionally) symbolic margin lower bounds of ``label`` over the box."""
    iv_ctx = interval_ranges(net, lower, upper)
    res = MarginBounds(label, interval_margins(iv_ctx, label))
    if symbolic:
        sym_ctx, _ = symbolic_ranges(net, lower, upper)
        res.symbolic = symbolic_margins(sym_ctx, label)
    return res
