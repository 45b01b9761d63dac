"""The :class:`Activation` base: rigorous transfer functions shared by every activation.

A subclass (one module per activation family, auto_LiRPA style) supplies

- ``f_arb(x)`` / ``df_arb(x)``: arb enclosures of σ and σ' over *any* ball x (at a kink the
  derivative enclosure holds both one-sided slopes); piecewise functions also give
  ``f_parts`` / ``df_parts`` (one ball per piece met, so hulls need no radius rounding);
- ``_structure()``: a :class:`Structure` — rigorous float enclosures of the points where σ''
  may change sign or σ' jumps (inflection points, kinks: ``breaks``), the sign of σ'' on each
  gap between them (``curvature``: +1 convex, -1 concave, 0 linear), and enclosures of the
  points where σ may change monotonicity (zeros of σ', kinks: ``critical``). Where a point is
  irrational it is found by :func:`~aster_ext.activations._arb.verified_root`; its uniqueness
  is a mathematical fact stated in the subclass docstring;
- ``eval_mp`` (>= 100-bit mpmath reference), ``eval_float`` / ``df_float`` (numpy screening and
  heuristics only; never used for a bound).

From these the base class derives, vectorised over numpy arrays of interval endpoints:

- ``image(lo, hi)``: σ is monotone between critical points, so
  σ([l, u]) = hull{σ(l), σ(u), σ(c) : c critical in [l, u]}; critical enclosures are evaluated
  as balls (clipped to [l, u]).
- ``slope(lo, hi)``: σ' is monotone between breaks, so
  {σ'(x) : x in [l, u]} ⊂ hull{σ'(l), σ'(u), σ'(B ∩ [l, u]) : B a break}, one-sided slopes
  at kinks included. This is the mean-value slope set: σ(z~) - σ(z) = s·(z~ - z).
- ``relax(lo, hi)``: linear bounds al·x + bl <= σ(x) <= au·x + bu on [l, u]. The slopes come
  from a float heuristic (the lines of the concave upper / convex lower envelope of σ through
  the midpoint, i.e. the minimal-area lines: the chord on convex parts, a tangent on concave
  parts, CROWN's tangent through an endpoint when [l, u] straddles an inflection point); the
  offsets are then *computed rigorously* as bu = sup (σ(x) - au·x), bl = inf (σ(x) - al·x)
  over [l, u], so the lines are sound whatever the heuristic chose. The sup of h = ±(σ - a·x)
  is taken piece by piece on the gaps between breaks: h convex -> max at the piece ends;
  h concave -> h(x) <= h(t) + h'(t)(x - t) for any t (the tangent of a concave function lies
  above it), t ≈ argmax (σ'(t) = a, float root finding: t only affects tightness); a sliver
  around an irrational break -> mean-value form h(m) + h'(X)(X - m).

All bounds are arb enclosures rounded outward to float64 (:mod:`._arb`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import mpmath
import numpy as np
from flint import arb
from scipy.optimize import brentq

from ._arb import down, hull, up, working_precision

MP_PREC = 128  # bits of eval_mp

_RELAX_GRID = 33  # sample points of the slope heuristic (odd: the midpoint is a sample)


@dataclass(frozen=True)
class Structure:
    """Rigorous shape information of σ (see module docstring)."""

    breaks: tuple[tuple[float, float], ...]
    curvature: tuple[int, ...]
    critical: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.curvature) != len(self.breaks) + 1:
            raise ValueError("Structure: need one curvature sign per gap between breaks")
        prev = -math.inf
        for a, b in self.breaks:
            if not prev <= a <= b:
                raise ValueError("Structure: breaks must be sorted, disjoint enclosures")
            prev = b


class Hull:
    """Running hull of balls as exact end points (no radius rounding, unlike arb.union)."""

    def __init__(self) -> None:
        self.lo: arb | None = None
        self.hi: arb | None = None

    def add(self, *balls: arb) -> None:
        for x in balls:
            if not x.is_finite():
                raise ArithmeticError("activation bound: non-finite enclosure")
            lo, hi = x.lower(), x.upper()
            if self.lo is None or lo < self.lo:
                self.lo = lo
            if self.hi is None or hi > self.hi:
                self.hi = hi


def _as_pair(lo: np.ndarray | float, hi: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    lo_a, hi_a = np.broadcast_arrays(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    if not (np.all(np.isfinite(lo_a)) and np.all(np.isfinite(hi_a))):
        raise ValueError("activation bounds need finite interval endpoints")
    if np.any(lo_a > hi_a):
        raise ValueError("activation bounds need lo <= hi")
    return lo_a, hi_a


@dataclass(frozen=True)
class Activation:
    """An elementwise activation σ with rigorous interval, slope and linear-relaxation bounds."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "table"  # "table" (smooth) | "piecewise" (piecewise linear)

    # ---- subclass hooks ----------------------------------------------------------------

    def f_arb(self, x: arb) -> arb:
        """Enclosure of σ over the ball x."""
        raise NotImplementedError

    def df_arb(self, x: arb) -> arb:
        """Enclosure of σ' over the ball x (both one-sided slopes where x may hold a kink)."""
        raise NotImplementedError

    def f_parts(self, x: arb) -> list[arb]:
        """Balls whose convex hull contains σ over x (piecewise subclasses: one per piece met)."""
        return [self.f_arb(x)]

    def df_parts(self, x: arb) -> list[arb]:
        """Balls whose convex hull contains σ' over x (kinks: one ball per one-sided slope)."""
        return [self.df_arb(x)]

    def _structure(self) -> Structure:
        raise NotImplementedError

    def eval_mp(self, x: mpmath.mpf) -> mpmath.mpf:
        """σ(x) to >= 100 bits (mpmath; exact reference for verify)."""
        raise NotImplementedError

    def eval_float(self, x: np.ndarray) -> np.ndarray:
        """σ(x) in float64 (screening only: not correctly rounded)."""
        raise NotImplementedError

    def df_float(self, x: np.ndarray) -> np.ndarray:
        """σ'(x) in float64 (heuristics only; right derivative at kinks)."""
        raise NotImplementedError

    # ---- shape -------------------------------------------------------------------------

    @cached_property
    def structure(self) -> Structure:
        return self._structure()

    @property
    def params(self) -> dict[str, float]:
        """The activation's parameters (alpha, beta) as given."""
        return {}

    def describe(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({p})" if p else self.name

    # ---- rigorous transfer functions ---------------------------------------------------

    def image_ball(self, a: arb, b: arb) -> tuple[arb, arb]:
        """Exact points (lo, hi) with [lo, hi] ⊇ σ([a, b]), for exact point balls a <= b."""
        hull_ = Hull()
        hull_.add(*self.f_parts(a), *self.f_parts(b))
        for c1, c2 in self.structure.critical:
            if arb(c2) < a or arb(c1) > b:
                continue
            lo_p = a if arb(c1) < a else arb(c1)
            hi_p = b if arb(c2) > b else arb(c2)
            hull_.add(*self.f_parts(lo_p.union(hi_p)))
        return hull_.lo, hull_.hi

    def slope_ball(self, a: arb, b: arb) -> tuple[arb, arb]:
        """Exact points (lo, hi) with [lo, hi] ⊇ {σ'(x) : x in [a, b]}, for exact point balls a <= b."""
        hull_ = Hull()
        hull_.add(*self.df_parts(a), *self.df_parts(b))
        for c1, c2 in self.structure.breaks:
            if arb(c2) < a or arb(c1) > b:
                continue
            lo_p = a if arb(c1) < a else arb(c1)
            hi_p = b if arb(c2) > b else arb(c2)
            hull_.add(*self.df_parts(lo_p.union(hi_p)))
        return hull_.lo, hull_.hi

    def image(self, lo: np.ndarray | float, hi: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Float enclosure [ylo, yhi] ⊇ σ([lo, hi]), elementwise (rounded outward)."""
        lo_a, hi_a = _as_pair(lo, hi)
        out_lo = np.empty(lo_a.shape)
        out_hi = np.empty(lo_a.shape)
        with working_precision():
            for idx in np.ndindex(lo_a.shape):
                y_lo, y_hi = self.image_ball(arb(float(lo_a[idx])), arb(float(hi_a[idx])))
                out_lo[idx], out_hi[idx] = down(y_lo), up(y_hi)
        return out_lo, out_hi

    def slope(self, lo: np.ndarray | float, hi: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Float enclosure [smin, smax] ⊇ {σ'(x) : x in [lo, hi]} (kinks: both one-sided slopes)."""
        lo_a, hi_a = _as_pair(lo, hi)
        out_lo = np.empty(lo_a.shape)
        out_hi = np.empty(lo_a.shape)
        with working_precision():
            for idx in np.ndindex(lo_a.shape):
                s_lo, s_hi = self.slope_ball(arb(float(lo_a[idx])), arb(float(hi_a[idx])))
                out_lo[idx], out_hi[idx] = down(s_lo), up(s_hi)
        return out_lo, out_hi

    def relax(
        self, lo: np.ndarray | float, hi: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sound lines al·x + bl <= σ(x) <= au·x + bu for all real x in [lo, hi], elementwise.

        The lines hold in exact real arithmetic for the returned float coefficients; a
        consumer evaluating them in floating point must account for its own rounding.
        """
        lo_a, hi_a = _as_pair(lo, hi)
        al, au = self._heuristic_slopes(lo_a.reshape(-1), hi_a.reshape(-1))
        bl = np.empty(al.shape)
        bu = np.empty(al.shape)
        with working_precision():
            for i, (l, u) in enumerate(zip(lo_a.reshape(-1), hi_a.reshape(-1), strict=True)):
                bu[i] = self.sup_offset(float(au[i]), float(l), float(u), upper=True)
                bl[i] = self.sup_offset(float(al[i]), float(l), float(u), upper=False)
        shape = lo_a.shape
        return al.reshape(shape), bl.reshape(shape), au.reshape(shape), bu.reshape(shape)

    def sup_offset(self, a: float, lo: float, hi: float, upper: bool) -> float:
        """Rigorous offset of a line of slope ``a`` bounding σ on [lo, hi].

        upper: a float b >= sup_{x in [lo,hi]} (σ(x) - a·x)  (then σ(x) <= a·x + b);
        lower: a float b <= inf_{x in [lo,hi]} (σ(x) - a·x)  (then σ(x) >= a·x + b).
        """
        s = 1 if upper else -1
        with working_precision():
            sup = self._sup_h(a, lo, hi, s)
        return sup if upper else -sup

    # ---- internals ---------------------------------------------------------------------

    def pieces(self, lo: float, hi: float) -> list[tuple[float, float, int | None]]:
        """[lo, hi] cut at the breaks: (u, v, curvature sign or None for an uncertain sliver)."""
        st = self.structure
        out: list[tuple[float, float, int | None]] = []
        left = -math.inf
        for (c1, c2), cv in zip(st.breaks, st.curvature, strict=False):
            u, v = max(left, lo), min(c1, hi)
            if u <= v:
                out.append((u, v, cv))
            if c1 < c2:
                u, v = max(c1, lo), min(c2, hi)
                if u <= v:
                    out.append((u, v, None))
            left = c2
        u, v = max(left, lo), hi
        if u <= v:
            out.append((u, v, st.curvature[-1]))
        return out

    def _sup_h(self, a: float, lo: float, hi: float, s: int) -> float:
        """Upper float bound of sup over [lo, hi] of h(x) = s·(σ(x) - a·x)."""
        A = arb(a)

        def h(x: arb) -> arb:
            v = self.f_arb(x) - A * x
            return v if s > 0 else -v

        def dh(x: arb) -> arb:
            v = self.df_arb(x) - A
            return v if s > 0 else -v

        best = -math.inf
        for u, v, cv in self.pieces(lo, hi):
            U, V = arb(u), arb(v)
            if cv is None:
                m = 0.5 * u + 0.5 * v
                m = min(max(m, u), v)
                M = arb(m)
                X = hull(u, v)
                bound = up(h(M) + dh(X) * (X - M))
            elif s * cv >= 0:
                bound = max(up(h(U)), up(h(V)))
            else:
                t = self._argmax_concave(a, u, v, s)
                T = arb(t)
                d = dh(T)
                bound = up(h(T) + (d * (U - T)).max(d * (V - T)))
            best = max(best, bound)
        return best

    def _argmax_concave(self, a: float, u: float, v: float, s: int) -> float:
        """Approximate maximiser of s·(σ(x) - a·x) on [u, v] where it is concave (heuristic)."""
        if u == v:
            return u

        def g(x: float) -> float:
            return s * (float(self.df_float(np.array([x]))[0]) - a)

        gu, gv = g(u), g(v)
        if not gu > 0:
            return u
        if not gv < 0:
            return v
        try:
            t = brentq(g, u, v, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=200)
        except (ValueError, RuntimeError):
            return 0.5 * (u + v)
        return min(max(float(t), u), v)

    def _heuristic_slopes(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slopes of the lower convex / upper concave envelope of sampled σ at the midpoint."""
        n = lo.shape[0]
        k = _RELAX_GRID
        h = k // 2
        mid = 0.5 * lo + 0.5 * hi
        width = hi - lo
        grid = np.linspace(0.0, 1.0, k)
        x = lo[:, None] + width[:, None] * grid[None, :]
        x[:, 0], x[:, h], x[:, -1] = lo, mid, hi
        with np.errstate(all="ignore"):
            y = np.asarray(self.eval_float(x), dtype=np.float64)
            dmid = np.asarray(self.df_float(mid), dtype=np.float64)
        xi, yi = x[:, : h + 1], y[:, : h + 1]
        xj, yj = x[:, h:], y[:, h:]
        dx = xj[:, None, :] - xi[:, :, None]
        with np.errstate(all="ignore"):
            sl = (yj[:, None, :] - yi[:, :, None]) / np.where(dx > 0, dx, 1.0)
        sl = np.where(dx > 0, sl, dmid[:, None, None])
        val = yi[:, :, None] + sl * (mid[:, None] - xi)[:, :, None]
        val = np.where(np.isfinite(val), val, np.nan)
        flat_val = val.reshape(n, -1)
        flat_sl = sl.reshape(n, -1)
        rows = np.arange(n)
        up_idx = np.nanargmax(np.where(np.isnan(flat_val), -np.inf, flat_val), axis=1)
        lo_idx = np.nanargmin(np.where(np.isnan(flat_val), np.inf, flat_val), axis=1)
        au = flat_sl[rows, up_idx]
        al = flat_sl[rows, lo_idx]
        tiny = width <= 1e-9 * np.maximum(1.0, np.abs(mid))
        au = np.where(tiny, dmid, au)
        al = np.where(tiny, dmid, al)
        au = np.where(width == 0, 0.0, au)
        al = np.where(width == 0, 0.0, al)
        au = np.where(np.isfinite(au), au, 0.0)
        al = np.where(np.isfinite(al), al, 0.0)
        return al.astype(np.float64), au.astype(np.float64)


def mp_value(x: mpmath.mpf | float | int) -> mpmath.mpf:
    """x as an mpf (exact for doubles and ints)."""
    return mpmath.mpf(x)
