"""Fixed-point formats with `ap_fixed` semantics (DESIGN §3).

A signed format Q<W,I> holds k·2^-F with F = W - I and k a W-bit two's-complement integer.
Values are carried as *raw integers* at a known number of fractional bits; converting a raw
value r at F_src fractional bits to a format means (1) quantising to F fractional bits
(AP_TRN: floor, AP_RND: round half up, i.e. floor(x + 2^-(F+1))) and (2) wrapping to W bits
(AP_WRAP) or clamping (AP_SAT). Works elementwise on numpy object arrays of Python ints (any
width) and on int64 arrays when the caller guarantees no intermediate exceeds 62 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

QUANT_MODES = ("TRN", "RND")
OVERFLOW_MODES = ("WRAP", "SAT")


@dataclass(frozen=True)
class FixedFormat:
    """ap_fixed<width, int_bits, AP_<quant>, AP_<overflow>> (signed)."""

    width: int
    int_bits: int
    quant: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"fixed-point width must be >= 1, got {self.width}")
        if self.quant not in QUANT_MODES or self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"bad modes {self.quant}/{self.overflow}")

    @property
    def frac_bits(self) -> int:
        return self.width - self.int_bits

    @property
    def lsb(self) -> Fraction:
        return Fraction(2) ** -self.frac_bits

    @property
    def min_value(self) -> Fraction:
        return -(Fraction(2) ** (self.int_bits - 1))

    @property
    def max_value(self) -> Fraction:
        return Fraction(2) ** (self.int_bits - 1) - self.lsb

    def cpp(self) -> str:
        if self.quant == "TRN" and self.overflow == "WRAP":
            return f"ap_fixed<{self.width}, {self.int_bits}>"
        return f"ap_fixed<{self.width}, {self.int_bits}, AP_{self.quant}, AP_{self.overflow}>"

    def quantize_value(self, value: Fraction | float | int) -> int:
        """Raw integer that ap_fixed holds after assigning the exact ``value``."""
        v = Fraction(value)
        scaled = v * (Fraction(2) ** self.frac_bits)
        if self.quant == "RND":
            scaled += Fraction(1, 2)
        k = scaled.numerator // scaled.denominator
        return int(wrap_or_saturate(np.array([k], dtype=object), self.width, self.overflow)[0])

    def to_fraction(self, raw: int) -> Fraction:
        return Fraction(int(raw)) * self.lsb


def _is_object(raw: np.ndarray) -> bool:
    return np.asarray(raw).dtype == object


def _shift_amounts(shift: np.ndarray | int, obj: bool) -> np.ndarray | int:
    """Shift amounts as Python ints (scalar or object array) for object data, else int64."""
    s = np.asarray(shift)
    if s.ndim == 0:
        return int(s)
    return s.astype(object) if obj else s.astype(np.int64)


def shift_round(raw: np.ndarray, shift: np.ndarray | int, quant: str) -> np.ndarray:
    """Quantise raw values by dropping ``shift`` fractional bits (shift <= 0 multiplies exactly).

    TRN: floor(r / 2^s); RND: floor(r / 2^s + 1/2) = floor((2r + 2^s) / 2^(s+1)). Elementwise,
    ``shift`` broadcasts. int64 data needs headroom: |r| < 2^60 and |r·2^-s| < 2^60.
    """
    raw = np.asarray(raw)
    obj = raw.dtype == object
    sh = np.asarray(shift, dtype=np.int64)
    pos_np = np.maximum(sh, 0)
    neg_np = np.maximum(-sh, 0)
    if not obj:
        # int64 shifts >= 64 are undefined; for |r| < 2^60 any shift >= 61 gives the same result
        pos_np = np.minimum(pos_np, 61)
    pos = _shift_amounts(pos_np, obj)
    neg = _shift_amounts(neg_np, obj)
    if quant == "RND":
        down = ((raw << 1) + (1 << pos)) >> (pos + 1)
    elif quant == "TRN":
        down = raw >> pos
    else:
        raise ValueError(f"unknown quantisation mode {quant!r}")
    return down << neg if np.any(neg_np) else np.asarray(down)


def wrap_or_saturate(raw: np.ndarray, width: np.ndarray | int, overflow: str) -> np.ndarray:
    """Bring raw integers into the signed ``width``-bit range: two's-complement wrap or clamp.

    WRAP: ((r + 2^(W-1)) mod 2^W) - 2^(W-1); SAT: clamp to [-2^(W-1), 2^(W-1) - 1]. For int64
    data (|r| < 2^62 assumed) widths above 62 leave the value unchanged, as they must.
    """
    raw = np.asarray(raw)
    obj = raw.dtype == object
    w = np.asarray(width, dtype=np.int64)
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"unknown overflow mode {overflow!r}")
    if obj:
        w_o = _shift_amounts(w, True)
        half = (np.ones(np.shape(w), dtype=object) << (w_o - 1)) if w.ndim else 1 << (int(w) - 1)
    else:
        w_c = np.minimum(w, 62)
        half = np.left_shift(np.int64(1), w_c - 1)
    if overflow == "SAT":
        out = np.minimum(np.maximum(raw, -half), half - 1)
    else:
        out = ((raw + half) & (2 * half - 1)) - half
    if not obj and np.any(w > 62):
        out = np.where(w > 62, raw, out)
    return out


def convert(
    raw: np.ndarray,
    src_frac: np.ndarray | int,
    width: np.ndarray | int,
    frac: np.ndarray | int,
    quant: str = "TRN",
    overflow: str = "WRAP",
) -> np.ndarray:
    """Assign raw values held at ``src_frac`` fractional bits to ap_fixed<width, width-frac>."""
    shifted = shift_round(raw, np.asarray(src_frac) - np.asarray(frac), quant)
    return wrap_or_saturate(shifted, width, overflow)


def convert_checked(
    raw: np.ndarray,
    src_frac: np.ndarray | int,
    width: np.ndarray | int,
    frac: np.ndarray | int,
    quant: str = "TRN",
    overflow: str = "WRAP",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`convert` plus a boolean mask of the elements that overflowed (wrapped or saturated).

    An element overflows iff its quantised value lies outside [-2^(I-1), 2^(I-1) - 2^-F]; this is
    the half-open condition of DESIGN §3 on the value before quantisation.
    """
    shifted = shift_round(raw, np.asarray(src_frac) - np.asarray(frac), quant)
    out = wrap_or_saturate(shifted, width, overflow)
    return out, np.asarray(out != shifted, dtype=bool)


def quantize_reals(
    values: np.ndarray, frac: np.ndarray | int, width: int, quant: str, overflow: str
) -> np.ndarray:
    """ap_fixed assignment from doubles: exact floor/round of each double (object ints out).

    Raw = floor(x·2^F) (TRN) or floor(x·2^F + 1/2) (RND), then wrap/saturate to ``width`` bits;
    ``frac`` is one F or one per element (broadcast to the shape of ``values``).
    NaN and infinities are rejected (ap_fixed has no defined result for them).
    """
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("cannot assign NaN or infinity to a fixed-point type")
    flat = arr.reshape(-1)
    fracs = np.broadcast_to(np.asarray(frac, dtype=np.int64), arr.shape).reshape(-1)
    with np.errstate(over="ignore"):
        scaled = np.ldexp(flat, fracs)
    # fast exact path: x·2^F is exact unless it overflows or turns subnormal, floor is exact,
    # and y - floor(y) is exact, so the RND carry (fraction >= 1/2) is decided exactly; the other
    # elements go through exact rationals
    fast = (np.abs(scaled) < 2.0**60) & ((flat == 0) | (np.abs(scaled) >= 2.0**-1000))
    if quant not in ("RND", "TRN"):
        raise ValueError(f"unknown quantisation mode {quant!r}")
    exact = np.where(fast, scaled, 0.0)
    fl = np.floor(exact)
    if quant == "RND":
        fl = fl + ((exact - fl) >= 0.5)
    out = fl.astype(np.int64).astype(object)
    for i in np.flatnonzero(~fast).tolist():
        s = Fraction(float(flat[i])) * Fraction(2) ** int(fracs[i])
        if quant == "RND":
            s += Fraction(1, 2)
        out[i] = s.numerator // s.denominator
    if width >= 62 and fast.all():  # |raw| <= 2^60 + 1 < 2^(width-1): neither wraps nor clamps
        return out.reshape(arr.shape)
    return wrap_or_saturate(out, width, overflow).reshape(arr.shape)


def quantize_fractions(values: np.ndarray, frac: np.ndarray | int, quant: str = "RND") -> np.ndarray:
    """Exact raw integers of Fraction values quantised to ``frac`` fractional bits (no wrap).

    Used for constants (weights, biases): RND gives |error| <= 2^-(F+1).
    """
    vals = np.asarray(values, dtype=object)
    if vals.size == 0:
        return np.empty(vals.shape, dtype=object)
    f = np.broadcast_to(np.asarray(frac, dtype=np.int64), vals.shape)
    n2, d2 = times_pow2(*fraction_parts(vals), f)  # v·2^F = n2 / d2 exactly
    out = (2 * n2 + d2) // (2 * d2) if quant == "RND" else n2 // d2  # floor(v·2^F + 1/2) or floor
    return np.asarray(out, dtype=object).reshape(vals.shape)


_POW2 = np.frompyfunc(lambda k: 1 << int(k), 1, 1)
_NUM = np.frompyfunc(lambda v: v.numerator, 1, 1)
_DEN = np.frompyfunc(lambda v: v.denominator, 1, 1)


def times_pow2(num: np.ndarray, den: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) with n / d = (num / den)·2^k exactly, elementwise (object arrays of Python ints):
    the power of two multiplies the numerator where k >= 0 and the denominator where k < 0."""
    k = np.asarray(k, dtype=np.int64)
    p2 = np.asarray(_POW2(np.abs(k)), dtype=object)
    pos = k >= 0
    return np.where(pos, num * p2, num), np.where(pos, den, den * p2)


def fraction_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numerators, denominators) of exact rationals (Fraction / int / float entries), object
    arrays of Python ints with the shape of ``values``."""
    vals = np.asarray(values, dtype=object)
    try:  # Fraction and int entries carry their parts
        return np.asarray(_NUM(vals), dtype=object), np.asarray(_DEN(vals), dtype=object)
    except AttributeError:  # some float entry: convert every one (exactly)
        vals = np.frompyfunc(Fraction, 1, 1)(vals)
        return np.asarray(_NUM(vals), dtype=object), np.asarray(_DEN(vals), dtype=object)
