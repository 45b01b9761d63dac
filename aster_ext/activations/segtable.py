"""Segmented lookup table: a few uniform tables with different cell widths side by side (issue 13).

Why: a uniform table (:mod:`.table`) has one cell width 2^shift over its whole input range, the
width the most curved part of σ needs; where σ is nearly linear (the tails of tanh / sigmoid /
silu, softplus far from 0) those fine cells are wasted. Deeper nets push later layers' input
ranges wider and their budgets δ smaller, so the waste grows with depth. A segmented table cuts
the range into contiguous segments, each a uniform table with its own shift, so the number of
entries follows the shape of σ (interpolation error ~ h²·|σ''|/8 per cell).

Bit-level semantics (what :meth:`SegmentedTableImpl.apply` and the emitted C++ both compute):
the input is a raw integer t at ``in_frac`` fractional bits; with breakpoints B_1 < ... < B_{n-1}
(raw integers) and B_0 = -inf, B_n = +inf, segment i holds the t with B_i <= t < B_{i+1}, and

    output(t) = part_i(t)       for t in segment i,

part_i a :class:`~.table.TableImpl` (same in_frac, out_frac, interp flag; its own shift and base)
with exactly the bit-level semantics of that module: clamping to its first / last cell (node) for
inputs outside its cells — which only the first and last segments see. The parts' entries are
stored in one ROM: part i at offsets off_i .. off_i + len_i - 1; for interpolating tables
adjacent parts whose boundary node is the same grid point (and so the same value) share it.
The C++ computes an interpolating part's output as y_k + ((y_{k+1} - y_k)·(r << (S - s_i)) >> S)
with S the largest shift of any part, which equals y_k + ((y_{k+1} - y_k)·r >> s_i) exactly
(floor((d·r·2^(S-s))/2^S) = floor(d·r/2^s)): one multiplier of r-width S + 2 serves every
segment.

Error bound (rigorous): the inputs reaching part_i inside the build range [lo, hi] are the grid
points of [max(t_lo, B_i), min(t_hi, B_{i+1} - 1)], exactly the build range of part_i, so the
table's signed error enclosure over [lo, hi] is the hull of the parts' own enclosures (each the
per-cell arb bound of :mod:`.table`); over any other finite range :meth:`clamped_error` takes, per
segment, the part's rigorous error over the query's grid points in that segment.

Builder (:func:`build_segmented`, a documented heuristic; soundness rests on the bound above):
uniform tables over the whole range at shifts s_f, s_f + 1, ..., s_f + K (s_f the finest shift
needed, e.g. that of the uniform table meeting the target) give, per cell of every shift, whether
its rigorous error is <= target. A dynamic programme over the boundaries of the finest cells then
picks the segmentation of least ROM: a segment [i, j) (finest-cell indices) may use shift
s_f + d when i and j are multiples of 2^d (or the range ends) and none of its shift-(s_f + d) cells
misses the target; it costs its number of entries plus ``seg_cost`` (the comparator and, for
interpolation, its extra node). Cells at s_f always count as meeting the target (the target may be
out of reach at every shift; the actual bound is what is reported). More than ``max_segments``
segments: the segment price is quadrupled and the programme rerun.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from . import _cpp
from .base import Activation
from .table import TableImpl, _build_on_grid, _error_over, _grid_range


@dataclass
class SegmentedTableImpl:
    """σ~(t) = part_i(t) for B_i <= t < B_{i+1} (module docstring)."""

    act: Activation
    in_frac: int
    out_frac: int
    interp: bool
    breaks: tuple[int, ...]  # B_1 .. B_{n-1}, raw input grid points, increasing
    parts: tuple[TableImpl, ...]  # n uniform tables
    offsets: tuple[int, ...]  # ROM offset of each part's first entry
    entries: np.ndarray  # the ROM: object array of Python ints (raw at out_frac)
    lo: float  # covered finite-precision input range (real values)
    hi: float
    error_bound: float  # sup over grid points in [lo, hi] of |entry - σ|
    error_lo: float
    error_hi: float
    build_seconds: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        n = len(self.parts)
        if n < 1 or len(self.breaks) != n - 1 or len(self.offsets) != n:
            raise ValueError("SegmentedTableImpl: need n parts, n - 1 breaks and n offsets")
        if any(b2 <= b1 for b1, b2 in zip(self.breaks, self.breaks[1:], strict=False)):
            raise ValueError("SegmentedTableImpl: breaks must increase")
        for p, off in zip(self.parts, self.offsets, strict=True):
            if p.in_frac != self.in_frac or p.out_frac != self.out_frac or p.interp != self.interp:
                raise ValueError("SegmentedTableImpl: parts must share in_frac, out_frac and interp")
            m = int(p.entries.shape[0])
            if off < 0 or off + m > self.entries.shape[0]:
                raise ValueError("SegmentedTableImpl: a part lies outside the ROM")
            if any(int(a) != int(b) for a, b in zip(p.entries, self.entries[off : off + m], strict=True)):
                raise ValueError("SegmentedTableImpl: a part's entries differ from its ROM slice")

    @property
    def size(self) -> int:
        """Number of cells over all parts."""
        return sum(p.size for p in self.parts)

    @property
    def shift(self) -> int:
        """The largest part shift S (width of the normalised in-cell offset of the C++, module
        docstring; the cost model's multiplier width)."""
        return max(p.shift for p in self.parts)

    @property
    def index_bits(self) -> int:
        """Bits of a ROM address."""
        return max(int(self.entries.shape[0]) - 1, 1).bit_length()

    @property
    def entry_width(self) -> int:
        return _cpp.signed_width([int(self.entries.min()), int(self.entries.max())])

    @property
    def grid_range(self) -> tuple[int, int]:
        return _grid_range(self.lo, self.hi, self.in_frac)

    def segment_of(self, t: np.ndarray) -> np.ndarray:
        """Segment index of every raw input: the number of breakpoints <= t."""
        seg = np.zeros(np.shape(t), dtype=np.int64)
        for b in self.breaks:
            seg += np.asarray(t >= b, dtype=np.int64)
        return seg

    def apply(self, t_raw: np.ndarray) -> np.ndarray:
        """Bit-exact lookup on raw inputs (object or int64 ints); int64 out when it fits."""
        t = np.asarray(t_raw)
        obj = t.dtype == object
        if not obj and t.dtype.kind not in "iu":
            raise TypeError("SegmentedTableImpl.apply needs integer raw values (int64 or object)")
        big = obj or self.entry_width > 63
        out = np.empty(t.shape, dtype=object if big else np.int64)
        seg = self.segment_of(t)
        for i, part in enumerate(self.parts):
            m = seg == i
            if np.any(m):
                out[m] = part.apply(t[m])
        return out

    def clamped_error(self, lo: float, hi: float) -> tuple[float, float]:
        """Signed error enclosure (entry - σ) over every grid point in [lo, hi] (any finite range)."""
        t_lo, t_hi = _grid_range(lo, hi, self.in_frac)
        e_lo, e_hi, hit = math.inf, -math.inf, False
        edges = [None, *self.breaks, None]
        for i, part in enumerate(self.parts):
            a = t_lo if edges[i] is None else max(t_lo, edges[i])
            b = t_hi if edges[i + 1] is None else min(t_hi, edges[i + 1] - 1)
            if a <= b:
                lo_, hi_, _ = _error_over(part, a, b)
                e_lo, e_hi, hit = min(e_lo, lo_), max(e_hi, hi_), True
        return (e_lo, e_hi) if hit else (0.0, 0.0)

    def describe_segments(self) -> str:
        """Per segment "shift:cells", e.g. "9:12 7:40 9:10"."""
        return " ".join(f"{p.shift}:{p.size}" for p in self.parts)

    def cpp(self, name: str, in_type: str, out_type: str) -> str:
        """C++ function ``out_type name(in_type t)`` with the same bit-level semantics as apply
        (contract on in_type / out_type as :meth:`TableImpl.cpp`)."""
        nm = _cpp.identifier(name)
        we = self.entry_width
        big_s = self.shift
        head = [
            f"// {self.act.describe()} segmented {'interpolating ' if self.interp else ''}table: "
            f"{len(self.parts)} segments (shift:cells {self.describe_segments()}), "
            f"{self.entries.shape[0]} entries, input frac {self.in_frac}, output frac {self.out_frac},",
            f"// breaks (raw) {list(self.breaks)}; |table - {self.act.name}| <= {self.error_bound:.6g} "
            f"on [{self.lo:.17g}, {self.hi:.17g}]",
            *_cpp.table_head_lines(nm, in_type, out_type, self.in_frac, [int(v) for v in self.entries], we),
        ]
        if self.interp:
            head.append(f"  ap_int<{big_s + 2}> r = 0;")
        body: list[str] = []
        n = len(self.parts)
        for i, (part, off) in enumerate(zip(self.parts, self.offsets, strict=True)):
            if n == 1:
                body.append("  {")
            elif i == 0:
                body.append(f"  if (raw < ({_cpp.const_expr(self.breaks[0])})) {{")
            elif i < n - 1:
                body.append(f"  }} else if (raw < ({_cpp.const_expr(self.breaks[i])})) {{")
            else:
                body.append("  } else {")
            body += self._cpp_part(nm, part, off, big_s)
        body.append("  }")
        if self.interp:
            wp = we + big_s + 3  # product d·r: (we + 1) + (S + 2) bits
            tail = [
                f"  ap_fixed<{we}, {we - self.out_frac}> v0, v1;",
                *_cpp.assign_raw_lines("v0", f"{nm}_rom", "idx", we),
                *_cpp.assign_raw_lines("v1", f"{nm}_rom", "idx + 1", we),
                f"  ap_int<{we}> e0, e1;",
                "  e0.range() = v0.range();",
                "  e1.range() = v1.range();",
                f"  const ap_int<{we + 1}> d = ap_int<{we + 1}>(e1) - ap_int<{we + 1}>(e0);",
                f"  const ap_int<{wp}> p = ap_int<{wp}>(d) * ap_int<{wp}>(r);",
                f"  const ap_int<{wp}> q = p >> {big_s};",
                f"  const ap_int<{we}> y = ap_int<{we}>(ap_int<{wp}>(e0) + q);",
                f"  ap_fixed<{we}, {we - self.out_frac}> v;",
                "  v.range() = y.range();",
                "  return v;",
                "}",
            ]
        else:
            tail = [
                f"  ap_fixed<{we}, {we - self.out_frac}> v;",
                *_cpp.assign_raw_lines("v", f"{nm}_rom", "idx", we),
                "  return v;",
                "}",
            ]
        return "\n".join(head + body + tail) + "\n"

    def _cpp_part(self, nm: str, part: TableImpl, off: int, big_s: int) -> list[str]:
        """Index (and normalised offset r << (S - s)) of one part, clamped as TableImpl does."""
        s, base, size = part.shift, part.base, part.size
        lines = [f"    const ap_int<{nm}_in_t::width + 1> k = raw >> {s};"]
        lo_c, hi_c = _cpp.const_expr(base), _cpp.const_expr(base + size - 1)
        if self.interp:
            top = _cpp.literal(1 << big_s) if big_s < 62 else _cpp.const_expr(1 << big_s)
            lines += [
                f"    if (k < ({lo_c})) {{ idx = {off}; r = 0; }}",
                f"    else if (k > ({hi_c})) {{ idx = {off + size - 1}; r = {top}; }}",
                f"    else {{ idx = {off} + (int)(k - ({lo_c})).to_int64();"
                + (f" r.range({big_s - 1}, {big_s - s}) = raw.range({s - 1}, 0); }}" if s > 0 else " }"),
            ]
        else:
            lines += [
                f"    if (k < ({lo_c})) idx = {off};",
                f"    else if (k > ({hi_c})) idx = {off + size - 1};",
                f"    else idx = {off} + (int)(k - ({lo_c})).to_int64();",
            ]
        return lines


def _exact_float(t: int, frac: int) -> float:
    """t·2^-frac as a float, which must be exact (the parts record their range as floats)."""
    v = math.ldexp(float(t), -frac)
    if Fraction(v) != Fraction(t) * Fraction(2) ** -frac:
        raise ValueError("segmented table: a breakpoint is not exactly representable as a float")
    return v


def build_segmented(
    act: Activation,
    lo: float,
    hi: float,
    in_frac: int,
    out_frac: int,
    target: float,
    *,
    interp: bool = True,
    rule: str = "centre",
    finest_shift: int | None = None,
    max_coarsen: int = 6,
    max_segments: int = 8,
    seg_cost: float = 2.0,
) -> SegmentedTableImpl:
    """Segmented table over the grid points of [lo, hi] whose cells meet ``target`` (module docstring).

    ``finest_shift``: s_f, the finest shift considered (default: the largest shift at which every
    cell of a uniform table meets the target, or 0); shifts s_f .. s_f + ``max_coarsen`` are tried.
    """
    start = time.perf_counter()
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"table range must be finite with lo <= hi, got [{lo}, {hi}]")
    t_lo, t_hi = _grid_range(lo, hi, in_frac)
    if t_lo > t_hi:
        raise ValueError(f"[{lo}, {hi}] contains no point of the 2^-{in_frac} input grid")
    s_top = max(abs(t_lo), abs(t_hi), 1).bit_length() + 1  # one cell (or two across 0) at s_top
    tables: dict[int, TableImpl] = {}

    def uniform(s: int) -> TableImpl:
        if s not in tables:
            tables[s] = _build_on_grid(act, t_lo, t_hi, in_frac, out_frac, s, rule, interp, 0, lo, hi, start)
        return tables[s]

    def cell_bad(s: int) -> np.ndarray:
        tab = uniform(s)
        cl, ch = tab.cell_errors()
        return np.nonzero(np.maximum(-cl, ch) > target)[0] + tab.base  # absolute cell indices

    if finest_shift is None:
        s_f = s_top
        while s_f > 0 and cell_bad(s_f).size:
            s_f -= 1
    else:
        s_f = max(int(finest_shift), 0)
    shifts = list(range(s_f, max(s_f, min(s_f + max_coarsen, s_top)) + 1))
    bad = {s: [] if s == s_f else [int(c) for c in cell_bad(s)] for s in shifts}
    p0, p1 = t_lo >> s_f, (t_hi >> s_f) + 1  # finest cells p0 .. p1 - 1
    extra = 1 if interp else 0
    cost = seg_cost
    while True:
        segs = _segment_dp(p0, p1, [s - s_f for s in shifts], [bad[s] for s in shifts], extra + cost)
        if len(segs) <= max_segments:
            break
        cost *= 4
    parts: list[TableImpl] = []
    breaks: list[int] = []
    for n_seg, (i, j, d) in enumerate(segs):
        a, b = max(t_lo, i << s_f), min(t_hi, (j << s_f) - 1)
        a_f = lo if a == t_lo else _exact_float(a, in_frac)
        b_f = hi if b == t_hi else _exact_float(b, in_frac)
        parts.append(_build_on_grid(act, a, b, in_frac, out_frac, s_f + d, rule, interp, 0, a_f, b_f, start))
        if n_seg:
            breaks.append(a)
    rom: list[int] = []
    offsets: list[int] = []
    for k, p in enumerate(parts):
        vals = [int(v) for v in p.entries]
        share = (
            interp and k > 0 and rom and rom[-1] == vals[0]
            and (parts[k - 1].base + parts[k - 1].size) << parts[k - 1].shift == p.base << p.shift
        )  # fmt: skip
        if share:
            offsets.append(len(rom) - 1)
            rom += vals[1:]
        else:
            offsets.append(len(rom))
            rom += vals
    entries = np.empty(len(rom), dtype=object)
    entries[:] = rom
    e_lo = min(p.error_lo for p in parts)
    e_hi = max(p.error_hi for p in parts)
    return SegmentedTableImpl(
        act=act, in_frac=in_frac, out_frac=out_frac, interp=interp, breaks=tuple(breaks),
        parts=tuple(parts), offsets=tuple(offsets), entries=entries, lo=float(lo), hi=float(hi),
        error_bound=max(-e_lo, e_hi, 0.0), error_lo=e_lo, error_hi=e_hi,
        build_seconds=time.perf_counter() - start,
    )  # fmt: skip


def _segment_dp(
    p0: int, p1: int, ds: list[int], bads: list[list[int]], seg_price: float
) -> list[tuple[int, int, int]]:
    """Least-cost cover of the finest cells p0 .. p1 - 1 by segments [i, j) with coarsening d
    (module docstring): cost = cells at shift s_f + d, ((j-1) >> d) - (i >> d) + 1, plus
    ``seg_price``; i, j multiples of 2^d or the range ends; no coarse cell of the segment in
    ``bads[d]`` (sorted absolute coarse-cell indices). Returns [(i, j, d)] in order."""
    inf = math.inf
    dp = {p0: 0.0}
    parent: dict[int, tuple[int, int]] = {}
    queues = [deque() for _ in ds]  # (i, key = dp[i] - (i >> d)), keys increasing
    ptr = [0] * len(ds)
    last_bad = [-inf] * len(ds)

    def push(p: int) -> None:
        for q, d in enumerate(ds):
            if p == p0 or p % (1 << d) == 0:
                key = dp[p] - (p >> d)
                dq = queues[q]
                while dq and dq[-1][1] >= key:
                    dq.pop()
                dq.append((p, key))

    push(p0)
    for p in range(p0 + 1, p1 + 1):
        best, arg = inf, None
        for q, d in enumerate(ds):
            if not (p == p1 or p % (1 << d) == 0):
                continue
            c_end = (p - 1) >> d
            bl = bads[q]
            while ptr[q] < len(bl) and bl[ptr[q]] <= c_end:
                last_bad[q] = bl[ptr[q]]
                ptr[q] += 1
            dq = queues[q]
            while dq and (dq[0][0] >> d) <= last_bad[q]:
                dq.popleft()
            if not dq:
                continue
            i, key = dq[0]
            c = key + c_end + 1 + seg_price
            if c < best:
                best, arg = c, (i, d)
        if arg is not None:
            dp[p] = best
            parent[p] = arg
            if p < p1:
                push(p)
    if p1 not in dp:
        raise AssertionError("segmented table: no cover (the finest shift must always be allowed)")
    out = []
    p = p1
    while p != p0:
        i, d = parent[p]
        out.append((i, p, d))
        p = i
    return out[::-1]
