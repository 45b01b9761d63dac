"""Quantised piecewise-linear implementation of relu, identity, leaky_relu, hard_sigmoid, hard_tanh.

Every such σ is  σ(x) = clamp(s(x)·x + c, c_lo, c_hi),  s(x) = s_neg for x < 0, s_pos for x >= 0
(relu: 0/1; leaky_relu: α/1; identity, hard_tanh: 1/1 with clamp [-1, 1] for hard_tanh;
hard_sigmoid: α/α, c = β, clamp [0, 1]; a missing clamp bound is infinite).

Bit-level semantics (:meth:`PiecewiseImpl.apply` and the C++ are the same integer program):
input raw t at ``in_frac`` bits; slopes are raw integers at ``const_frac`` bits, the offset and
the clamp bounds raw integers at P = in_frac + const_frac bits (the product's grid, so the sum
is exact):

    v = (t < 0 ? S_neg : S_pos) · t + C;   v = min(max(v, L), H);
    out = (v + 2^(d-1)) >> d  (RND)  or  v >> d  (TRN),  d = P - out_frac  (v << -d if d <= 0)

Error (exact rational arithmetic, rounded up to a double at the end). With ℓ~ - ℓ the
difference of the quantised and real linear parts, |clamp(ℓ~) - clamp(ℓ)| <= |ℓ~ - ℓ| and
clamp(ℓ~) - clamp(ℓ) lies between 0 and ℓ~ - ℓ (clamp is monotone and 1-Lipschitz), and
ℓ~ - ℓ = (S~(t) - s(t))·t + (C~ - c) is linear on each side of 0, so its extremes over [lo, hi]
are at lo, hi and 0. The output rounding adds [-(2^-(o+1) - 2^-P), 2^-(o+1)] (RND) or
[-(2^-o - 2^-P), 0] (TRN) when d > 0. Constants that are dyadic with at most const_frac bits
(relu, identity, hard_tanh; α = 0.5, ...) are exact, so those activations are exact
whenever out_frac >= P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InfeasibleError
from . import _cpp
from .base import Activation
from .hard import HardSigmoid, HardTanh
from .relu import Identity, LeakyRelu

ROUNDING = ("RND", "TRN")


@dataclass(frozen=True)
class PiecewiseSpec:
    """Exact real parameters of clamp(s(x)·x + c, c_lo, c_hi)."""

    s_neg: Fraction
    s_pos: Fraction
    c: Fraction
    c_lo: Fraction | None
    c_hi: Fraction | None


def piecewise_spec(act: Activation) -> PiecewiseSpec:
    """The exact parameters of a piecewise-linear activation (floats are exact rationals)."""
    one, zero = Fraction(1), Fraction(0)
    if isinstance(act, LeakyRelu):  # includes Relu (alpha = 0)
        return PiecewiseSpec(Fraction(act.alpha), one, zero, None, None)
    if isinstance(act, Identity):
        return PiecewiseSpec(one, one, zero, None, None)
    if isinstance(act, HardTanh):
        return PiecewiseSpec(one, one, zero, Fraction(-1), one)
    if isinstance(act, HardSigmoid):
        a = Fraction(act.alpha)
        return PiecewiseSpec(a, a, Fraction(act.beta), zero, one)
    raise ValueError(f"{act.describe()} is not a piecewise-linear activation (use a table)")


def _q(value: Fraction, frac: int) -> int:
    """Nearest raw integer (ties up) of value at ``frac`` fractional bits."""
    s = value * (Fraction(2) ** frac) + Fraction(1, 2)
    return s.numerator // s.denominator


def _frac_value(raw: int, frac: int) -> Fraction:
    return Fraction(raw) / (Fraction(2) ** frac)


def _float_down(q: Fraction) -> float:
    f = float(q)
    return math.nextafter(f, -math.inf) if Fraction(f) > q else f


def _float_up(q: Fraction) -> float:
    f = float(q)
    return math.nextafter(f, math.inf) if Fraction(f) < q else f


@dataclass
class PiecewiseImpl:
    """Quantised clamp(s·t + c) (module docstring); raw constants and their exact reference."""

    act: Activation
    in_frac: int
    out_frac: int
    const_frac: int
    s_neg: int  # raw at const_frac
    s_pos: int
    offset: int  # raw at in_frac + const_frac
    clamp_lo: int | None  # raw at in_frac + const_frac
    clamp_hi: int | None
    rounding: str = "RND"

    @property
    def prod_frac(self) -> int:
        return self.in_frac + self.const_frac

    @property
    def spec(self) -> PiecewiseSpec:
        return piecewise_spec(self.act)

    @property
    def exact(self) -> bool:
        """True when the implementation equals σ on every grid point (error_bound is 0)."""
        return self.error_interval(-1.0, 1.0) == (0.0, 0.0) and self._linear_exact()

    def _linear_exact(self) -> bool:
        sp, p = self.spec, self.prod_frac
        return (
            _frac_value(self.s_neg, self.const_frac) == sp.s_neg
            and _frac_value(self.s_pos, self.const_frac) == sp.s_pos
            and _frac_value(self.offset, p) == sp.c
            and self.prod_frac <= self.out_frac
        )

    def apply(self, t_raw: np.ndarray) -> np.ndarray:
        """Bit-exact integer evaluation on raw inputs (object or int64); same dtype when it fits."""
        t = np.asarray(t_raw)
        obj = t.dtype == object
        if not obj and t.dtype.kind not in "iu":
            raise TypeError("PiecewiseImpl.apply needs integer raw values (int64 or object)")
        flat = [int(v) for v in t.reshape(-1)]
        d = self.prod_frac - self.out_frac
        out = np.empty(len(flat), dtype=object)
        for i, x in enumerate(flat):
            v = (self.s_neg if x < 0 else self.s_pos) * x + self.offset
            if self.clamp_lo is not None and v < self.clamp_lo:
                v = self.clamp_lo
            if self.clamp_hi is not None and v > self.clamp_hi:
                v = self.clamp_hi
            if d > 0:
                v = ((v + (1 << (d - 1))) >> d) if self.rounding == "RND" else (v >> d)
            elif d < 0:
                v = v << (-d)
            out[i] = v
        out = out.reshape(t.shape)
        if obj or any(abs(int(v)) >= (1 << 62) for v in out.reshape(-1)):
            return out
        return out.astype(np.int64)

    def error_interval(self, lo: float, hi: float) -> tuple[float, float]:
        """Doubles [e_lo, e_hi] ⊇ {σ~(t) - σ(t) : t in [lo, hi]} (module docstring)."""
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"error range must be finite with lo <= hi, got [{lo}, {hi}]")
        sp, p = self.spec, self.prod_frac
        s_neg = _frac_value(self.s_neg, self.const_frac)
        s_pos = _frac_value(self.s_pos, self.const_frac)
        dc = _frac_value(self.offset, p) - sp.c
        pts = {Fraction(lo), Fraction(hi)}
        if lo < 0 < hi:
            pts.add(Fraction(0))
        diffs = []
        for x in pts:
            if x < 0:
                diffs.append((s_neg - sp.s_neg) * x + dc)
            if x >= 0:
                diffs.append((s_pos - sp.s_pos) * x + dc)
            if x == 0:
                diffs.append(dc)  # limit from the left
        d_lo, d_hi = min(diffs), max(diffs)
        clamp_bounds = (sp.c_lo is not None) or (sp.c_hi is not None)
        if clamp_bounds:
            d_lo, d_hi = min(d_lo, Fraction(0)), max(d_hi, Fraction(0))
        d = p - self.out_frac
        if d > 0:
            u, up_p = Fraction(2) ** -self.out_frac, Fraction(2) ** -p
            if self.rounding == "RND":
                d_lo, d_hi = d_lo - (u / 2 - up_p), d_hi + u / 2  # ties round up
            else:
                d_lo = d_lo - (u - up_p)
        return _float_down(d_lo), _float_up(d_hi)

    def error_bound(self, lo: float, hi: float) -> float:
        """max |σ~(t) - σ(t)| over t in [lo, hi] (rounded up)."""
        e_lo, e_hi = self.error_interval(lo, hi)
        return max(-e_lo, e_hi)

    def cpp(self, name: str, in_type: str, out_type: str) -> str:
        """C++ function ``out_type name(in_type t)``: the integer program of :meth:`apply`.

        in_type must have ``in_frac`` fractional bits (static_assert); the result (raw at
        out_frac) is returned by ap_fixed assignment to out_type (exact when out_type has
        ``out_frac`` fractional bits and enough integer bits).
        """
        nm = _cpp.identifier(name)
        consts = [self.s_neg, self.s_pos, self.offset]
        consts += [c for c in (self.clamp_lo, self.clamp_hi) if c is not None]
        cw = _cpp.signed_width(consts)
        d = self.prod_frac - self.out_frac
        extra = cw + 3 + max(0, -d)
        lines = [
            f"// {self.act.describe()}: clamp(s*t + c) with slopes at {self.const_frac} fractional bits, "
            f"output frac {self.out_frac} ({self.rounding})",
            f"inline {out_type} {nm}({in_type} t) {{",
            "#pragma HLS INLINE",
            f"  typedef {in_type} {nm}_in_t;",
            f"  static_assert({nm}_in_t::width - {nm}_in_t::iwidth == {self.in_frac}, "
            f'"{nm}: the input type must have {self.in_frac} fractional bits");',
            f"  typedef ap_int<{nm}_in_t::width + {extra}> {nm}_acc_t;",
            f"  ap_int<{nm}_in_t::width> raw;",
            "  raw.range() = t.range();",
            f"  {nm}_acc_t v = raw;",
        ]
        if self.s_neg == self.s_pos:
            lines.append(f"  v = v * {nm}_acc_t({_cpp.const_expr(self.s_pos)});")
        else:
            lines.append(
                f"  v = v * {nm}_acc_t(raw < 0 ? {nm}_acc_t({_cpp.const_expr(self.s_neg)}) "
                f": {nm}_acc_t({_cpp.const_expr(self.s_pos)}));"
            )
        if self.offset != 0:
            lines.append(f"  v = v + {nm}_acc_t({_cpp.const_expr(self.offset)});")
        if self.clamp_lo is not None:
            c = _cpp.const_expr(self.clamp_lo)
            lines.append(f"  if (v < {nm}_acc_t({c})) v = {nm}_acc_t({c});")
        if self.clamp_hi is not None:
            c = _cpp.const_expr(self.clamp_hi)
            lines.append(f"  if (v > {nm}_acc_t({c})) v = {nm}_acc_t({c});")
        if d > 0:
            if self.rounding == "RND":
                lines.append(f"  v = (v + {nm}_acc_t({_cpp.const_expr(1 << (d - 1))})) >> {d};")
            else:
                lines.append(f"  v = v >> {d};")
        elif d < 0:
            lines.append(f"  v = v << {-d};")
        lines += [
            f"  ap_fixed<{nm}_in_t::width + {extra}, {nm}_in_t::width + {extra} - {self.out_frac}> o;",
            "  o.range() = v;",
            "  return o;",
            "}",
        ]
        return "\n".join(lines) + "\n"


def _exact_frac(q: Fraction, limit: int = 64) -> int | None:
    """Smallest F >= 0 with q·2^F an integer (None if q is not dyadic or needs > limit bits)."""
    den = q.denominator
    if den & (den - 1):
        return None
    f = den.bit_length() - 1
    return f if f <= limit else None


def build_piecewise(
    act: Activation, in_frac: int, out_frac: int, const_frac: int | None = None, rounding: str = "RND"
) -> PiecewiseImpl:
    """Quantise the constants of a piecewise-linear activation (module docstring).

    ``const_frac`` None: the smallest number of fractional bits representing the slopes and the
    offset exactly if that is <= 32 (relu, identity, hard_tanh: 0), else 32.
    """
    if rounding not in ROUNDING:
        raise ValueError(f"rounding must be RND or TRN, got {rounding!r}")
    sp = piecewise_spec(act)
    if const_frac is None:
        need = [_exact_frac(sp.s_neg), _exact_frac(sp.s_pos)]
        need.append(None if _exact_frac(sp.c) is None else max(0, _exact_frac(sp.c) - in_frac))
        const_frac = 32 if any(n is None or n > 32 for n in need) else max(n for n in need if n is not None)
    if const_frac < 0:
        raise ValueError("const_frac must be >= 0")
    p = in_frac + const_frac
    return PiecewiseImpl(
        act=act,
        in_frac=in_frac,
        out_frac=out_frac,
        const_frac=const_frac,
        s_neg=_q(sp.s_neg, const_frac),
        s_pos=_q(sp.s_pos, const_frac),
        offset=_q(sp.c, p),
        clamp_lo=None if sp.c_lo is None else _q(sp.c_lo, p),
        clamp_hi=None if sp.c_hi is None else _q(sp.c_hi, p),
        rounding=rounding,
    )


def choose_const_frac(
    act: Activation,
    lo: float,
    hi: float,
    in_frac: int,
    out_frac: int,
    target_error: float,
    max_frac: int = 48,
    rounding: str = "RND",
) -> int:
    """Smallest const_frac in 0..max_frac with error_bound(lo, hi) <= target_error.

    Raises :class:`InfeasibleError` naming the smallest error achieved (the output rounding
    2^-(out_frac+1) is a floor no const_frac removes).
    """
    best, best_f = math.inf, 0
    for f in range(max_frac + 1):
        e = build_piecewise(act, in_frac, out_frac, f, rounding).error_bound(lo, hi)
        if e <= target_error:
            return f
        if e < best:
            best, best_f = e, f
    raise InfeasibleError(
        f"{act.describe()} on [{lo:.6g}, {hi:.6g}] (input frac {in_frac}, output frac {out_frac}): "
        f"target error {target_error:.6g} not reachable with const_frac <= {max_frac}; smallest "
        f"achievable is {best:.6g} (const_frac={best_f})",
        smallest_error=best,
    )
