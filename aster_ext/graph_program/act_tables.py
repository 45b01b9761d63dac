"""Implementations of the table activations of a graph program, and the slope sets of σ.

A table activation (:func:`.program.is_table_act`: any activation but relu/identity) gets ONE
implementation σ~ per node, shared by every region's analysis and by the program, chosen by a
fixed rule from (node, F_x, F, hull):

- F_x: the operand alignment (max fractional bits over the operand's elements), the
  implementation's input frac; F: the largest output fractional bits over the node's channels;
- hull [lo, hi]: the hull over every registered region of the real operand range, padded by
  (hi - lo)/8 + 2^-F_x on both sides. Inputs outside it clamp to the end of the table; the error
  analysis bounds σ~ - σ rigorously over the actual finite-precision range wherever it lies
  (``clamped_error``), so the hull only decides where the table is fine;
- smooth σ: the interpolating lookup table of :func:`aster_ext.refined.solve._best_table` (the
  dense refined rule: cells only where σ is not flat, smallest index bits meeting the target,
  segmented when cheaper) with output frac F and error target δ = 2^(1-F) (two output ulps);
- piecewise-linear σ (leaky ReLU, hard sigmoid, hard tanh): the quantised map of
  :func:`aster_ext.activations.build_piecewise` at output frac max(F, F_x) with the smallest
  constant frac meeting δ (48 if none does: the certificate uses the actual error either way).

Slopes. The analysis needs, per element, an enclosure of {σ'(ξ) : ξ in [lo_i, hi_i]} (mean-value
theorem). :class:`SlopeGrid` precomputes the rigorous slope set of every cell of a uniform grid
(cells of width h = 2^k over the padded hull, at most ``GRID_CELLS``) and answers a query by the
min / max over the cells the interval meets, widened by one cell on each side against the float
rounding of the index (a superset of the cells, hence sound), with a sparse table (range minimum
queries in O(1), vectorised). Beyond the grid, two tail enclosures computed once (the slope sets
over [-TAIL, a] and [end, TAIL]) join the nearest cells; only intervals reaching beyond ±TAIL
(or non-finite) call ``Activation.slope`` per element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Network, Op
from ..ops.activation import activation_of_op, is_table_act
from ..rigorous import Interval, down, up

GRID_CELLS = 4096
HULL_PAD = 0.125
TAIL = 1e12  # the tails' outer ends (arb encloses every activation's slope up to here)


def impl_error(impl: Any, lo: float, hi: float) -> tuple[float, float]:
    """Signed enclosure of σ~(t) - σ(t) over the grid points t of [lo, hi] (values at the
    implementation's input frac): a table's ``clamped_error`` (rigorous outside its cells too), a
    piecewise map's exact rational extremes."""
    if hasattr(impl, "clamped_error"):
        return impl.clamped_error(float(lo), float(hi))
    e_lo, e_hi = impl.error_interval(float(lo), float(hi))
    return float(e_lo), float(e_hi)


def build_impl(op: Op, f_in: int, f_out: int, lo: float, hi: float) -> Any:
    """The implementation rule of the module docstring for node ``op`` over [lo, hi]."""
    from ..activations import build_piecewise, choose_const_frac
    from ..errors import InfeasibleError
    from ..refined.solve import MAX_ACT_FRAC, _best_table

    act = activation_of_op(op)
    f_out = int(min(max(f_out, 0), MAX_ACT_FRAC))
    delta = 2.0 ** (1 - f_out)
    n = int(op.shape[0]) if op.shape else 1
    if act.kind == "table":
        return _best_table(act, lo, hi, f_in, f_out - 1, delta, n)
    f_o = max(f_out, f_in)
    try:
        cf = choose_const_frac(act, lo, hi, f_in, f_o, delta)
    except InfeasibleError:
        cf = 48
    return build_piecewise(act, f_in, f_o, cf)


@dataclass
class SlopeGrid:
    """Rigorous slope sets of σ on the cells [a + i·h, a + (i+1)·h], i < n (module docstring)."""

    act: Any
    a: float
    h: float
    n: int
    mins: np.ndarray  # [levels, n] sparse table of cell minima (level k: min over 2^k cells)
    maxs: np.ndarray
    left: tuple[float, float]  # slope set over [-TAIL, a]
    right: tuple[float, float]  # slope set over [a + n·h, TAIL]

    @staticmethod
    def build(act: Any, lo: float, hi: float, cells: int = GRID_CELLS) -> SlopeGrid:
        width = max(hi - lo, 2.0**-20)
        h = 2.0 ** math.ceil(math.log2(width / cells))
        a = math.floor(lo / h) * h
        n = int(math.ceil((hi - a) / h)) + 1
        edges = a + h * np.arange(n + 1, dtype=np.float64)  # exact: h a power of two, n small
        s_lo, s_hi = act.slope(edges[:-1], edges[1:])
        levels = max(int(n).bit_length(), 1)
        mins = np.full((levels, n), np.inf)
        maxs = np.full((levels, n), -np.inf)
        mins[0], maxs[0] = s_lo, s_hi
        for k in range(1, levels):
            span = 1 << (k - 1)
            m = n - (1 << k) + 1
            if m <= 0:
                break
            mins[k, :m] = np.minimum(mins[k - 1, :m], mins[k - 1, span : span + m])
            maxs[k, :m] = np.maximum(maxs[k - 1, :m], maxs[k - 1, span : span + m])
        end = float(edges[-1])
        left = act.slope(min(-TAIL, a), a)
        right = act.slope(end, max(TAIL, end))
        return SlopeGrid(act, a, h, n, mins, maxs, (float(left[0]), float(left[1])),
                         (float(right[0]), float(right[1])))  # fmt: skip

    def slopes(self, lo: np.ndarray, hi: np.ndarray) -> Interval:
        """Enclosure of σ' over each [lo_i, hi_i] (module docstring)."""
        lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        i0 = np.floor((lo - self.a) / self.h) - 1
        i1 = np.floor((hi - self.a) / self.h) + 1
        inside = np.isfinite(i0) & np.isfinite(i1) & (lo >= -TAIL) & (hi <= TAIL)
        j0 = np.clip(np.where(inside, i0, 0), 0, self.n - 1).astype(np.int64)
        j1 = np.clip(np.where(inside, i1, 0), 0, self.n - 1).astype(np.int64)
        j1 = np.maximum(j0, j1)  # the nearest cell(s) of an interval beside the grid: a superset
        length = j1 - j0 + 1
        k = np.floor(np.log2(length)).astype(np.int64)
        k = np.where((1 << (k + 1)) <= length, k + 1, k)  # guard log2 rounding
        k = np.where((1 << k) > length, k - 1, k)
        other = j1 - (1 << k) + 1
        s_lo = np.minimum(self.mins[k, j0], self.mins[k, other])
        s_hi = np.maximum(self.maxs[k, j0], self.maxs[k, other])
        for beyond, (t_lo, t_hi) in ((i0 < 0, self.left), (i1 > self.n - 1, self.right)):
            s_lo = np.where(beyond, np.minimum(s_lo, t_lo), s_lo)
            s_hi = np.where(beyond, np.maximum(s_hi, t_hi), s_hi)
        out = np.flatnonzero(~inside)
        if out.size:
            f_lo, f_hi = self.act.slope(lo[out], hi[out])
            s_lo[out], s_hi[out] = f_lo, f_hi
        return Interval(s_lo, s_hi)


@dataclass
class ActTables:
    """Per table-activation node: its padded input hull, slope grid and implementations (keyed by
    (node, F_x, F)); one instance serves every region of a search so that they share them."""

    hull: dict[str, tuple[float, float]] = field(default_factory=dict)
    grids: dict[str, SlopeGrid] = field(default_factory=dict)
    impls: dict[tuple[str, int, int], Any] = field(default_factory=dict)

    def register(self, net: Network, range_maps: list[dict[str, Interval]]) -> None:
        """Set every table activation's hull from the real operand ranges of all regions
        (``range_maps``: one ``AnalysisContext.ranges`` per region). Keeps existing hulls."""
        for op in net.ops():
            if not is_table_act(op) or op.name in self.hull:
                continue
            x = op.inputs[0]
            lo = min(float(np.min(r[x].lo)) for r in range_maps)
            hi = max(float(np.max(r[x].hi)) for r in range_maps)
            pad = (hi - lo) * HULL_PAD
            self.hull[op.name] = (float(down(lo - pad)), float(up(hi + pad)))

    def impl(self, op: Op, f_in: int, f_out: int) -> Any:
        """The node's implementation at input frac ``f_in`` and output frac ``f_out``."""
        key = (op.name, int(f_in), int(f_out))
        if key not in self.impls:
            lo, hi = self.hull[op.name]
            g = 2.0**-f_in
            self.impls[key] = build_impl(op, int(f_in), int(f_out), lo - g, hi + g)
        return self.impls[key]

    def slopes(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> Interval:
        """σ' enclosure over each [lo_i, hi_i] (:class:`SlopeGrid` over the padded hull)."""
        if op.name not in self.grids:
            h_lo, h_hi = self.hull[op.name]
            w = h_hi - h_lo
            self.grids[op.name] = SlopeGrid.build(activation_of_op(op), h_lo - w, h_hi + w)
        return self.grids[op.name].slopes(lo, hi)

    def seed(self, prog: Any) -> None:
        """Use ``prog``'s own implementations (a loaded program): they are what it runs."""
        for name, nd in prog.nodes.items():
            if nd.act_impl is not None:
                self.impls[(name, int(nd.act_impl.in_frac), int(nd.out_t.frac.max()))] = nd.act_impl
