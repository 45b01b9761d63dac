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


def shift_round(raw: np.ndarray, shift: np.ndarray | int, quant: str) -> np.ndarray:
    """Quantise raw values by dropping ``shift`` fractional bits (shift <= 0 multiplies exactly).

    TRN: floor(r / 2^s); RND: floor(r / 2^s + 1/2). Elementwise, ``shift`` broadcasts.
    """
    shift_arr = np.broadcast_to(np.asarray(shift), np.broadcast(raw, np.asarray(shift)).shape)
    raw_b = np.broadcast_to(raw, shift_arr.shape)
    pos = np.maximum(shift_arr, 0)
    neg = np.maximum(-shift_arr, 0)
    if quant == "RND":
        half = np.where(pos > 0, _pow2(pos - 1, raw_b.dtype), 0)
        down = (raw_b + half) >> pos
    else:
        down = raw_b >> pos
    return down << neg if np.any(neg) else down


def _pow2(exp: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == object:
        one = np.ones(exp.shape, dtype=object)
        return one << np.maximum(exp, 0).astype(object)
    return np.left_shift(np.int64(1), np.maximum(exp, 0).astype(np.int64))


def wrap_or_saturate(raw: np.ndarray, width: np.ndarray | int, overflow: str) -> np.ndarray:
    """Bring raw integers into the signed ``width``-bit range: two's-complement wrap or clamp."""
    w = np.asarray(width)
    if raw.dtype == object:
        w_obj = np.broadcast_to(w, np.broadcast(raw, w).shape).astype(object)
        one = np.ones(w_obj.shape, dtype=object)
        half = one << (w_obj - 1)
        full = one << w_obj
    else:
        half = np.left_shift(np.int64(1), (w - 1).astype(np.int64))
        full = np.left_shift(np.int64(1), w.astype(np.int64))
    if overflow == "SAT":
        return np.minimum(np.maximum(raw, -half), half - 1)
    return ((raw + half) % full) - half


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


def quantize_reals(values: np.ndarray, frac: int, width: int, quant: str, overflow: str) -> np.ndarray:
    """ap_fixed assignment from doubles: exact floor/round of each double (object ints out)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    scale = Fraction(2) ** frac
    for i, v in enumerate(flat):
        s = Fraction(float(v)) * scale
        if quant == "RND":
            s += Fraction(1, 2)
        out[i] = s.numerator // s.denominator
    return wrap_or_saturate(out, width, overflow).reshape(np.shape(values))


def quantize_fractions(values: np.ndarray, frac: np.ndarray | int, quant: str = "RND") -> np.ndarray:
    """Exact raw integers of Fraction values quantised to ``frac`` fractional bits (no wrap).

    Used for constants (weights, biases): RND gives |error| <= 2^-(F+1).
    """
    vals = np.asarray(values, dtype=object)
    f = np.broadcast_to(np.asarray(frac), vals.shape)
    out = np.empty(vals.shape, dtype=object)
    for idx in np.ndindex(vals.shape):
        s = Fraction(vals[idx]) * (Fraction(2) ** int(f[idx]))
        if quant == "RND":
            s += Fraction(1, 2)
        out[idx] = s.numerator // s.denominator
    return out


def int_bits_for(lo: float | Fraction, hi: float | Fraction) -> int:
    """Smallest I (sign included) with -2^(I-1) <= lo and hi < 2^(I-1) (half-open, DESIGN §3)."""
    m = max(-Fraction(lo), Fraction(hi), Fraction(0))
    i = 1
    while not (-(Fraction(2) ** (i - 1)) <= Fraction(lo) and Fraction(hi) < Fraction(2) ** (i - 1)):
        i += 1
    # allow I <= 0 for small ranges
    while i > -64 and m > 0 and -(Fraction(2) ** (i - 2)) <= Fraction(lo) and Fraction(hi) < Fraction(2) ** (i - 2):
        i -= 1
    return i
