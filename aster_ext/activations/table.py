"""Lookup-table implementation of a smooth activation, with a rigorous implementation error.

Bit-level semantics (what :meth:`TableImpl.apply` and the emitted C++ both compute): the input
is a raw integer t at ``in_frac`` fractional bits (value t·2^-in_frac);

    index  = clamp((t >> shift) - base, 0, size - 1)      (>> is the arithmetic shift: floor)
    output = entries[index]                              (raw integer at ``out_frac`` bits)

Cell k holds the inputs t with (t >> shift) = base + k, i.e. the 2^shift consecutive grid
points [(base+k)·2^shift, (base+k+1)·2^shift - 1]. :func:`build_table` covers the grid points
of a finite-precision input range [lo, hi] with at most 2^index_bits cells.

Entries. Default rule ``"centre"``: the entry is the raw value nearest to the centre of the
rigorous enclosure of σ over the cell's grid points — the minimax choice, so each cell's error
is about half the variation of σ over the cell. Rule ``"midpoint"``: nearest raw value of σ at
the cell's middle grid value. Either way the bound below is computed from the actual entries.

Error bound. For every grid point t in [lo, hi]:  |entry(t)·2^-out_frac - σ(t·2^-in_frac)|
<= error_bound, where per cell  max_t |T - σ(t)| <= max(T - σ_lo, σ_hi - T)  with [σ_lo, σ_hi]
the rigorous enclosure of σ over the cell's grid points (arb values at the cell's end points
and at the grid neighbours of every verified critical point — σ is monotone in between);
``error_lo``/``error_hi`` bound the signed error entry - σ. Inputs outside [lo, hi] are clamped
to the first/last cell: their error is bounded by :meth:`TableImpl.clamped_error` over any
finite range; otherwise the certifier must guarantee that the finite-precision input stays
inside [lo, hi].

Linear interpolation (``interp=True``, built by ``build_table(..., interp=True)``): the entries
are the size + 1 node values y_k = round_nearest(σ(x_k)·2^out_frac) at the cell ends
x_k = (base + k)·2^shift·2^-in_frac, and

    k = clamp((t >> shift) - base, 0, size - 1),  r = clamp(t - ((base + k) << shift), 0, 2^shift)
    output = y_k + ((y_{k+1} - y_k)·r >> shift)          (>> floor; exact integer arithmetic)

so inputs below the first node give y_0, inputs at or beyond the last node y_size. Per cell the
signed error over the closed cell [x_k, x_{k+1}] is enclosed by

    output - σ = [(1-λ)ε_k + λε_{k+1}] + [P1σ - σ] + [floor error in (-2^-out_frac, 0]],

ε_i = y_i·2^-out_frac - σ(x_i) (arb), λ = r/2^shift, and P1σ(x) - σ(x) = λ(1-λ)h(s2 - s1) with
s1, s2 mean-value slopes of σ on [x_k, x] and [x, x_{k+1}] (h = x_{k+1} - x_k): with σ' in
[d_lo, d_hi] over the cell this is in ±(h/4)(d_hi - d_lo), and in [0, ·] (convex cell: s2 >= s1)
or [·, 0] (concave cell) when the cell lies inside one piece of known curvature. No σ'' needed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from flint import arb

from ..errors import InfeasibleError
from . import _cpp
from ._arb import down, dyadic, up, working_precision
from .base import Activation, Hull


@dataclass
class TableImpl:
    """σ~(t) = entries[clamp((t >> shift) - base, 0, size - 1)] (see module docstring)."""

    act: Activation
    in_frac: int
    out_frac: int
    shift: int
    base: int
    entries: np.ndarray  # object array of Python ints (raw at out_frac)
    lo: float  # covered finite-precision input range (real values)
    hi: float
    error_bound: float  # sup over grid points in [lo, hi] of |entry - σ|
    error_lo: float  # inf of entry - σ over the same points
    error_hi: float  # sup of entry - σ
    index_bits: int
    interp: bool = False  # linear interpolation between size + 1 node values (module docstring)
    build_seconds: float = field(default=0.0, compare=False)
    # per cell k: signed error enclosure (entry_k - σ) over the build grid points of cell k
    # (filled by build_table, else lazily by :meth:`cell_errors`); lets clamped_error skip arb
    cell_err: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Number of cells (an interpolating table holds size + 1 node values)."""
        return int(self.entries.shape[0]) - (1 if self.interp else 0)

    @property
    def entry_width(self) -> int:
        """Signed width (bits) holding every entry: the width a set needs is the width of its
        smallest or its largest value (width grows with v >= 0 and with -v for v < 0)."""
        if self.entries.size == 0:
            return 1
        return _cpp.signed_width([int(self.entries.min()), int(self.entries.max())])

    @property
    def grid_range(self) -> tuple[int, int]:
        """Raw input grid points covered by the build range: ceil(lo·2^F) .. floor(hi·2^F)."""
        return _grid_range(self.lo, self.hi, self.in_frac)

    def apply(self, t_raw: np.ndarray) -> np.ndarray:
        """Bit-exact table lookup on raw inputs (object or int64 ints); same dtype out when possible."""
        t = np.asarray(t_raw)
        obj = t.dtype == object
        if not obj and t.dtype.kind not in "iu":
            raise TypeError("TableImpl.apply needs integer raw values (int64 or object)")
        if self.interp:
            return self._apply_interp(t, obj)
        k = (t >> self.shift) - self.base
        if obj:
            idx = np.array([min(max(int(v), 0), self.size - 1) for v in k.reshape(-1)], dtype=np.int64)
            idx = idx.reshape(t.shape)
        else:
            idx = np.clip(k.astype(np.int64), 0, self.size - 1)
        out = self.entries[idx]
        if obj or self.entry_width > 63:
            return out.astype(object)
        return out.astype(np.int64)

    def _apply_interp(self, t: np.ndarray, obj: bool) -> np.ndarray:
        """Interpolating lookup (module docstring), exact in Python ints or int64 when it fits."""
        s, base, size = self.shift, self.base, self.size
        e = self.entries
        big = obj or self.entry_width + s + 3 > 63
        if not big and t.size:
            big = int(t.max()) >= 1 << 61 or int(t.min()) < -(1 << 61) or abs(base) >= 1 << (61 - s)
        if not big:
            t64 = t.astype(np.int64)
            k = np.clip((t64 >> s) - base, 0, size - 1)
            r = np.clip(t64 - ((base + k) << s), 0, 1 << s)
            e64 = e.astype(np.int64)
            y0, y1 = e64[k], e64[k + 1]
            return (y0 + (((y1 - y0) * r) >> s)).astype(np.int64)
        flat = []
        for v in t.reshape(-1):
            v = int(v)
            k = min(max((v >> s) - base, 0), size - 1)
            r = min(max(v - ((base + k) << s), 0), 1 << s)
            y0, y1 = int(e[k]), int(e[k + 1])
            flat.append(y0 + (((y1 - y0) * r) >> s))
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        out = out.reshape(t.shape)
        if obj or self.entry_width > 63:
            return out
        return out.astype(np.int64)

    def cell_errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Per cell (lo, hi) of entry - σ over the cell's build grid points (computed once)."""
        if self.cell_err is None and self.interp:
            self.cell_err = _interp_cell_errors(self.act, self.entries, self.shift, self.base,
                                                self.in_frac, self.out_frac)  # fmt: skip
        if self.cell_err is None:
            b_lo, b_hi = self.grid_range
            segs = self._build_segments(b_lo, b_hi)
            with working_precision():
                images = [_cell_image(self.act, a, b, self.in_frac) for a, b in segs]
            self.cell_err = _cell_errors(self, images, list(range(self.size)))
        return self.cell_err

    def _build_segments(self, b_lo: int, b_hi: int) -> list[tuple[int, int]]:
        s, base = self.shift, self.base
        return [(max(b_lo, (base + k) << s), min(b_hi, ((base + k + 1) << s) - 1)) for k in range(self.size)]

    def clamped_error(self, lo: float, hi: float) -> tuple[float, float]:
        """Signed error enclosure (entry - σ) over every grid point in [lo, hi] (any finite range,
        inputs outside the table clamp to the first/last entry)."""
        t_lo, t_hi = _grid_range(lo, hi, self.in_frac)
        e_lo, e_hi, _ = _error_over(self, t_lo, t_hi)
        return e_lo, e_hi

    def cpp(self, name: str, in_type: str, out_type: str) -> str:
        """C++ function ``out_type name(in_type t)`` with the same bit-level semantics as apply.

        in_type must have ``in_frac`` fractional bits (static_assert). The raw entry is turned
        into ap_fixed<We, We - out_frac> by bit assignment and returned by ordinary ap_fixed
        assignment to out_type, which is exact when out_type has ``out_frac`` fractional bits and
        holds every entry (the caller's contract; otherwise ap_fixed quantises/overflows).
        """
        nm = _cpp.identifier(name)
        we = self.entry_width
        if self.interp:
            return self._cpp_interp(nm, in_type, out_type, we)
        lines = [
            f"// {self.act.describe()} lookup table: {self.size} entries, input frac {self.in_frac}, "
            f"output frac {self.out_frac},",
            f"// index = clamp((raw >> {self.shift}) - ({self.base}), 0, {self.size - 1}); "
            f"|table - {self.act.name}| <= {self.error_bound:.6g} on [{self.lo:.17g}, {self.hi:.17g}]",
            *self._cpp_head(nm, in_type, out_type, we),
            f"  if (k < ({_cpp.const_expr(self.base)})) idx = 0;",
            f"  else if (k > ({_cpp.const_expr(self.base + self.size - 1)})) idx = {self.size - 1};",
            f"  else idx = (int)(k - ({_cpp.const_expr(self.base)})).to_int64();",
            f"  ap_fixed<{we}, {we - self.out_frac}> v;",
            *_cpp.assign_raw_lines("v", f"{nm}_rom", "idx", we),
            "  return v;",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def _cpp_head(self, nm: str, in_type: str, out_type: str, we: int) -> list[str]:
        """Shared start of both table functions (:func:`._cpp.table_head_lines`) with
        k = raw >> shift (declared with one spare bit) before the index variable."""
        head = _cpp.table_head_lines(nm, in_type, out_type, self.in_frac, [int(v) for v in self.entries], we)
        return head[:-1] + [f"  const ap_int<{nm}_in_t::width + 1> k = raw >> {self.shift};", head[-1]]

    def _cpp_interp(self, nm: str, in_type: str, out_type: str, we: int) -> str:
        """C++ of the interpolating table (same bit-level semantics as :meth:`_apply_interp`)."""
        s, base, size = self.shift, self.base, self.size
        lines = [
            f"// {self.act.describe()} interpolating table: {size} cells ({size + 1} nodes), input frac "
            f"{self.in_frac}, output frac {self.out_frac},",
            f"// k = clamp((raw >> {s}) - ({base}), 0, {size - 1}), r = clamp(raw - ((base + k) << {s}), 0, "
            f"2^{s}), y = e[k] + ((e[k+1] - e[k]) * r >> {s});",
            f"// |table - {self.act.name}| <= {self.error_bound:.6g} on [{self.lo:.17g}, {self.hi:.17g}]",
            *self._cpp_head(nm, in_type, out_type, we),
            f"  ap_int<{s + 2}> r;",
            f"  if (k < ({_cpp.const_expr(base)})) {{ idx = 0; r = 0; }}",
            f"  else if (k > ({_cpp.const_expr(base + size - 1)})) {{ idx = {size - 1}; r = {1 << s}LL; }}",
            f"  else {{ idx = (int)(k - ({_cpp.const_expr(base)})).to_int64(); "
            + (f"r = 0; r.range({s - 1}, 0) = raw.range({s - 1}, 0); }}" if s > 0 else "r = 0; }"),
            f"  ap_fixed<{we}, {we - self.out_frac}> v0, v1;",
            *_cpp.assign_raw_lines("v0", f"{nm}_rom", "idx", we),
            *_cpp.assign_raw_lines("v1", f"{nm}_rom", "idx + 1", we),
            f"  ap_int<{we}> e0, e1;",
            "  e0.range() = v0.range();",
            "  e1.range() = v1.range();",
            f"  const ap_int<{we + 1}> d = ap_int<{we + 1}>(e1) - ap_int<{we + 1}>(e0);",
            f"  const ap_int<{we + s + 3}> p = ap_int<{we + s + 3}>(d) * ap_int<{we + s + 3}>(r);",
            f"  const ap_int<{we + s + 3}> q = p >> {s};",
            f"  const ap_int<{we}> y = ap_int<{we}>(ap_int<{we + s + 3}>(e0) + q);",
            f"  ap_fixed<{we}, {we - self.out_frac}> v;",
            "  v.range() = y.range();",
            "  return v;",
            "}",
        ]
        return "\n".join(lines) + "\n"


def _grid_range(lo: float, hi: float, frac: int) -> tuple[int, int]:
    lo_q, hi_q = Fraction(lo) * (Fraction(2) ** frac), Fraction(hi) * (Fraction(2) ** frac)
    return math.ceil(lo_q), math.floor(hi_q)


def _mid_fraction(x: arb) -> Fraction:
    man, exp = x.mid().man_exp()
    man, exp = int(man), int(exp)
    return Fraction(man * (1 << exp)) if exp >= 0 else Fraction(man, 1 << -exp)


def _mid_dyadic(x: arb) -> tuple[int, int]:
    """The midpoint of the ball x as exact integers (m, e): mid = m·2^e."""
    man, exp = x.mid().man_exp()
    return int(man), int(exp)


def _round_centre_raw(y_lo: arb, y_hi: arb, frac: int) -> int:
    """floor(c·2^frac + 1/2) for c = (mid(y_lo) + mid(y_hi))/2, exactly, in integer arithmetic
    (equal to ``_round_raw((_mid_fraction(y_lo) + _mid_fraction(y_hi)) / 2, frac)``)."""
    m1, e1 = _mid_dyadic(y_lo)
    m2, e2 = _mid_dyadic(y_hi)
    e = min(e1, e2)
    n = (m1 << (e1 - e)) + (m2 << (e2 - e))  # c = n·2^(e-1)
    k = e - 1 + frac  # c·2^frac = n·2^k
    if k >= 0:
        return n << k
    return (n + (1 << (-k - 1))) >> (-k)


def _round_raw(value: Fraction, frac: int) -> int:
    """floor(value·2^frac + 1/2) (round to nearest, ties up)."""
    s = value * (Fraction(2) ** frac) + Fraction(1, 2)
    return s.numerator // s.denominator


def _cell_image(act: Activation, a: int, b: int, frac: int) -> tuple[arb, arb]:
    """Exact points enclosing {σ(t·2^-frac) : t = a..b} (grid points only).

    σ is monotone between critical points, so over the grid its extremes are at a, b and at the
    grid points next to each critical point c: floor(c1·2^frac) .. ceil(c2·2^frac) for an
    enclosure [c1, c2] of c (clipped to [a, b]). Falls back to the ball image of the whole
    interval if that would take more than a few evaluations.
    """
    pts = {a, b}
    for c1, c2 in act.structure.critical:
        g1 = max(a, math.floor(Fraction(c1) * 2**frac))
        g2 = min(b, math.ceil(Fraction(c2) * 2**frac))
        if g1 > g2:
            continue
        if g2 - g1 > 4:
            return act.image_ball(dyadic(a, frac), dyadic(b, frac))
        pts.update(range(g1, g2 + 1))
    hull = Hull()
    for t in pts:
        hull.add(*act.f_parts(dyadic(t, frac)))
    assert hull.lo is not None and hull.hi is not None
    return hull.lo, hull.hi


def _error_over(tab: TableImpl, t_lo: int, t_hi: int) -> tuple[float, float, float]:
    """(inf, sup of entry - σ, sup |entry - σ|) over the grid points t_lo..t_hi (rigorous).

    Cells whose query segment equals their build segment (every cell the query covers whole,
    except the first and last cell of the table, whose build segments are clipped to the build
    range) take the cached per-cell errors of :meth:`TableImpl.cell_errors` — the same numbers
    the arb evaluation would give; the others (at most four cells and the two clamped ends) are
    evaluated with arb.
    """
    if t_lo > t_hi:
        return 0.0, 0.0, 0.0
    if tab.interp:
        return _error_over_interp(tab, t_lo, t_hi)
    s, base, size = tab.shift, tab.base, tab.size
    segments: list[tuple[int, int, int]] = []
    first, last = base << s, ((base + size) << s) - 1
    if t_lo < first:
        segments.append((t_lo, min(t_hi, first - 1), 0))
    if t_hi > last:
        segments.append((max(t_lo, last + 1), t_hi, size - 1))
    k0 = max(0, (max(t_lo, first) >> s) - base)
    k1 = min(size - 1, (min(t_hi, last) >> s) - base)
    e_lo, e_hi = math.inf, -math.inf
    if k0 <= k1:
        # interior cells 1..size-2 fully inside [t_lo, t_hi]: build segment == query segment
        c0 = max(k0 + (1 if t_lo > (base + k0) << s else 0), 1)
        c1 = min(k1 - (1 if t_hi < ((base + k1 + 1) << s) - 1 else 0), size - 2)
        if c0 <= c1:
            cl, ch = tab.cell_errors()
            e_lo, e_hi = float(np.min(cl[c0 : c1 + 1])), float(np.max(ch[c0 : c1 + 1]))
            ks = [k for k in range(k0, min(k1, c0 - 1) + 1)] + [k for k in range(max(k0, c1 + 1), k1 + 1)]
        else:
            ks = list(range(k0, k1 + 1))
        for k in ks:
            a = max(t_lo, (base + k) << s)
            b = min(t_hi, ((base + k + 1) << s) - 1)
            if a <= b:
                segments.append((a, b, k))
    with working_precision():
        images = [_cell_image(tab.act, a, b, tab.in_frac) for a, b, _ in segments]
    lo_, hi_, _ = _errors(tab, images, [k for _, _, k in segments])
    e_lo, e_hi = min(e_lo, lo_), max(e_hi, hi_)
    if not segments and math.isinf(e_lo):
        return 0.0, 0.0, 0.0
    return e_lo, e_hi, max(-e_lo, e_hi, 0.0)


def _error_over_interp(tab: TableImpl, t_lo: int, t_hi: int) -> tuple[float, float, float]:
    """:func:`_error_over` of an interpolating table: the cached per-cell enclosures (each over the
    whole closed cell) of every cell the query meets, and arb images of the clamped parts (inputs
    below the first node output y_0, inputs at or beyond the last node y_size)."""
    s, base, size = tab.shift, tab.base, tab.size
    first, last = base << s, (base + size) << s  # first node, last node (raw grid points)
    e_lo, e_hi = math.inf, -math.inf
    a, b = max(t_lo, first), min(t_hi, last - 1)
    if a <= b:
        cl, ch = tab.cell_errors()
        k0, k1 = (a >> s) - base, (b >> s) - base
        e_lo, e_hi = float(np.min(cl[k0 : k1 + 1])), float(np.max(ch[k0 : k1 + 1]))
    clamped = []
    if t_lo < first:
        clamped.append((t_lo, min(t_hi, first - 1), 0))
    if t_hi >= last:
        clamped.append((max(t_lo, last), t_hi, size))
    with working_precision():
        for ca, cb, i in clamped:
            y_lo, y_hi = _cell_image(tab.act, ca, cb, tab.in_frac)
            entry = dyadic(int(tab.entries[i]), tab.out_frac)
            e_lo, e_hi = min(e_lo, down(entry - y_hi)), max(e_hi, up(entry - y_lo))
    return e_lo, e_hi, max(-e_lo, e_hi, 0.0)


def _gap_curvature(act: Activation, a: arb, b: arb) -> int | None:
    """Curvature sign of σ on [a, b] when [a, b] lies in one gap between breaks (closed), else None."""
    st = act.structure
    for i, cv in enumerate(st.curvature):
        left_ok = i == 0 or a >= arb(st.breaks[i - 1][1])
        right_ok = i == len(st.breaks) or b <= arb(st.breaks[i][0])
        if left_ok and right_ok:
            return cv
    return None


def _interp_cell_errors(
    act: Activation, entries: np.ndarray, shift: int, base: int, in_frac: int, out_frac: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell k: rigorous (lo, hi) of output - σ over the closed cell [x_k, x_{k+1}] of an
    interpolating table (module docstring)."""
    n = int(entries.shape[0]) - 1
    lo, hi = np.empty(n), np.empty(n)
    with working_precision():
        xs = [dyadic(base + i, in_frac - shift) for i in range(n + 1)]
        eps = [dyadic(int(entries[i]), out_frac) - act.f_arb(xs[i]) for i in range(n + 1)]
        # σ' at every node (hull of the one-sided slopes at a kink)
        dnode = []
        for x in xs:
            hl = Hull()
            hl.add(*act.df_parts(x))
            dnode.append((hl.lo, hl.hi))
        h4 = dyadic(1, in_frac - shift + 2)  # h/4
        ulp = dyadic(1, out_frac)
        breaks = [(arb(c1), arb(c2)) for c1, c2 in act.structure.breaks]
        for k in range(n):
            a, b = xs[k], xs[k + 1]
            # σ' is monotone between breaks: its range over [a, b] is the hull of the node values
            # unless a break enclosure meets the open cell
            if any(not (c2 <= a or c1 >= b) for c1, c2 in breaks):
                d_lo, d_hi = act.slope_ball(a, b)
            else:
                d_lo = dnode[k][0] if dnode[k][0] < dnode[k + 1][0] else dnode[k + 1][0]
                d_hi = dnode[k][1] if dnode[k][1] > dnode[k + 1][1] else dnode[k + 1][1]
            spread = h4 * (d_hi - d_lo)
            cv = _gap_curvature(act, a, b)
            i_lo = arb(0) if cv is not None and cv > 0 else -spread
            i_hi = arb(0) if cv is not None and cv < 0 else spread
            e0, e1 = eps[k], eps[k + 1]
            if shift == 0:  # the cell is the node x_k alone (r = 0): output = y_k exactly
                lo[k], hi[k] = down(e0), up(e0)
                continue
            el = e0.lower() if e0.lower() < e1.lower() else e1.lower()
            eh = e0.upper() if e0.upper() > e1.upper() else e1.upper()
            lo[k] = down(el + i_lo - ulp)
            hi[k] = up(eh + i_hi)
    return lo, hi


def trim_flat(act: Activation, lo: float, hi: float, tol: float) -> tuple[float, float]:
    """A sub-range [lo', hi'] of [lo, hi] outside which σ varies by at most ``tol`` (rigorous float
    images of [lo, lo'] and [hi', hi]; lo' and hi' themselves found by float bisection).

    A table over [lo', hi'] then clamps inputs in [lo, lo') / (hi', hi] to its end entries, whose
    error there is bounded rigorously by :meth:`TableImpl.clamped_error` (this trim only aims at
    keeping that error near ``tol``; it is not relied upon)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi or not tol > 0:
        return lo, hi

    def flat(a: float, b: float) -> bool:
        y_lo, y_hi = act.image(a, b)
        return float(y_hi) - float(y_lo) <= tol

    def search(good: float, bad: float, side_lo: bool) -> float:
        # largest extent from the end that stays flat: [lo, x] (side_lo) or [x, hi]
        for _ in range(60):
            m = 0.5 * (good + bad)
            if m in (good, bad):
                break
            if flat(lo, m) if side_lo else flat(m, hi):
                good = m
            else:
                bad = m
        return good

    new_lo = lo if not flat(lo, lo) else search(lo, hi, True)
    new_hi = hi if not flat(hi, hi) else search(hi, new_lo, False)
    if new_hi <= new_lo:  # σ flat over the whole range: keep a small table around the middle
        m = 0.5 * (lo + hi)
        return m, m
    return new_lo, new_hi


def _cell_errors(
    tab: TableImpl, images: list[tuple[arb, arb]], cells: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per given cell: (down(entry - σ_hi), up(entry - σ_lo)) from its image [σ_lo, σ_hi]."""
    lo, hi = np.empty(len(cells)), np.empty(len(cells))
    with working_precision():
        for i, ((y_lo, y_hi), k) in enumerate(zip(images, cells, strict=True)):
            entry = dyadic(int(tab.entries[k]), tab.out_frac)
            lo[i], hi[i] = down(entry - y_hi), up(entry - y_lo)
    return lo, hi


def _errors(tab: TableImpl, images: list[tuple[arb, arb]], cells: list[int]) -> tuple[float, float, float]:
    """(inf, sup of entry - σ, sup |entry - σ|) from the images [σ_lo, σ_hi] of the given cells."""
    if not cells:
        return math.inf, -math.inf, 0.0
    lo, hi = _cell_errors(tab, images, cells)
    e_lo, e_hi = float(lo.min()), float(hi.max())
    return e_lo, e_hi, max(-e_lo, e_hi, 0.0)


def build_table(
    act: Activation,
    lo: float,
    hi: float,
    in_frac: int,
    out_frac: int,
    index_bits: int,
    rule: str = "centre",
    interp: bool = False,
) -> TableImpl:
    """Table of at most 2^index_bits cells over the input grid points of [lo, hi] (module docstring);
    ``interp``: linear interpolation between the size + 1 node values (``rule`` is then unused)."""
    start = time.perf_counter()
    if rule not in ("centre", "midpoint"):
        raise ValueError(f"unknown table entry rule {rule!r} (centre | midpoint)")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"table range must be finite with lo <= hi, got [{lo}, {hi}]")
    if index_bits < 0:
        raise ValueError("index_bits must be >= 0")
    t_lo, t_hi = _grid_range(lo, hi, in_frac)
    if t_lo > t_hi:
        raise ValueError(f"[{lo}, {hi}] contains no point of the 2^-{in_frac} input grid")
    shift = 0
    max_shift = max(abs(t_lo), abs(t_hi)).bit_length() + 1  # then t >> shift is -1 or 0
    while (t_hi >> shift) - (t_lo >> shift) >= (1 << index_bits):
        shift += 1
        if shift > max_shift:
            raise ValueError(
                f"a single table cell cannot cover [{lo}, {hi}] (the grid range crosses a cell "
                "boundary at every shift); use index_bits >= 1"
            )
    return _build_on_grid(act, t_lo, t_hi, in_frac, out_frac, shift, rule, interp, index_bits, lo, hi, start)


def _build_on_grid(
    act: Activation, t_lo: int, t_hi: int, in_frac: int, out_frac: int, shift: int, rule: str,
    interp: bool, index_bits: int, lo: float, hi: float, start: float,
) -> TableImpl:  # fmt: skip
    """The table with cell width 2^shift grid points over the raw grid points t_lo..t_hi (the
    real range [lo, hi] is recorded; its grid points must be t_lo..t_hi)."""
    base = t_lo >> shift
    size = (t_hi >> shift) - base + 1
    if interp:
        return _build_interp(act, lo, hi, in_frac, out_frac, index_bits, shift, base, size, start)
    entries = np.empty(size, dtype=object)
    images: list[tuple[arb, arb]] = []
    with working_precision():
        for k in range(size):
            a = max(t_lo, (base + k) << shift)
            b = min(t_hi, ((base + k + 1) << shift) - 1)
            images.append(_cell_image(act, a, b, in_frac))
            if rule == "centre":
                y_lo, y_hi = images[-1]
                entries[k] = _round_centre_raw(y_lo, y_hi, out_frac)
            else:
                m = a + b  # middle grid value (a + b)/2 at in_frac bits = m at in_frac + 1 bits
                entries[k] = _round_raw(_mid_fraction(act.f_arb(dyadic(m, in_frac + 1))), out_frac)
    tab = TableImpl(
        act=act,
        in_frac=in_frac,
        out_frac=out_frac,
        shift=shift,
        base=base,
        entries=entries,
        lo=float(lo),
        hi=float(hi),
        error_bound=math.inf,
        error_lo=-math.inf,
        error_hi=math.inf,
        index_bits=index_bits,
    )
    tab.cell_err = _cell_errors(tab, images, list(range(size)))
    tab.error_lo, tab.error_hi = float(tab.cell_err[0].min()), float(tab.cell_err[1].max())
    tab.error_bound = max(-tab.error_lo, tab.error_hi, 0.0)
    tab.build_seconds = time.perf_counter() - start
    return tab


def _build_interp(
    act: Activation, lo: float, hi: float, in_frac: int, out_frac: int, index_bits: int, shift: int,
    base: int, size: int, start: float,
) -> TableImpl:  # fmt: skip
    """The interpolating table: node values round_nearest(σ(x_k)) for k = 0..size."""
    entries = np.empty(size + 1, dtype=object)
    with working_precision():
        for k in range(size + 1):
            y = act.f_arb(dyadic(base + k, in_frac - shift))
            entries[k] = _round_centre_raw(y, y, out_frac)
    tab = TableImpl(
        act=act, in_frac=in_frac, out_frac=out_frac, shift=shift, base=base, entries=entries,
        lo=float(lo), hi=float(hi), error_bound=math.inf, error_lo=-math.inf, error_hi=math.inf,
        index_bits=index_bits, interp=True,
    )  # fmt: skip
    tab.cell_err = _interp_cell_errors(act, entries, shift, base, in_frac, out_frac)
    tab.error_lo, tab.error_hi = float(tab.cell_err[0].min()), float(tab.cell_err[1].max())
    tab.error_bound = max(-tab.error_lo, tab.error_hi, 0.0)
    tab.build_seconds = time.perf_counter() - start
    return tab


def choose_index_bits(
    act: Activation,
    lo: float,
    hi: float,
    in_frac: int,
    out_frac: int,
    target_error: float,
    max_bits: int = 14,
    rule: str = "centre",
    interp: bool = False,
) -> int:
    """Smallest index_bits in 0..max_bits whose table has error_bound <= target_error.

    Rule: try index_bits = 0, 1, 2, ... and stop at the first table meeting the target; a table
    with shift 0 already has one cell per grid point, so larger tables cannot improve it. Raises
    :class:`InfeasibleError` naming the smallest error achieved (then a larger out_frac, or a
    larger max_bits, is needed).
    """
    best = math.inf
    best_bits = 0
    for bits in range(max_bits + 1):
        try:
            tab = build_table(act, lo, hi, in_frac, out_frac, bits, rule, interp)
        except ValueError:
            if bits == 0:
                continue
            raise
        if tab.error_bound <= target_error:
            return bits
        if tab.error_bound < best:
            best, best_bits = tab.error_bound, bits
        if tab.shift == 0:
            break
    raise InfeasibleError(
        f"{act.describe()} table on [{lo:.6g}, {hi:.6g}] (input frac {in_frac}, output frac {out_frac}): "
        f"target error {target_error:.6g} not reachable with at most 2^{max_bits} entries; smallest "
        f"achievable is {best:.6g} (index_bits={best_bits}); raise out_frac or max_bits",
        smallest_error=best,
    )
