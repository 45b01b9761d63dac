"""hls4ml precision strings and the ap_fixed arithmetic they denote, on raw integers.

A type ``fixed<W,I,Q,O>`` (``ufixed`` for unsigned) holds k·2^-F, F = W - I, with k a W-bit
two's-complement (or unsigned) integer. Assigning a value at more fractional bits quantises it
(``TRN``: floor; ``RND``: round half towards +inf, i.e. floor(x + 2^-(F+1))) and then brings it
into range (``WRAP``: modulo 2^W; ``SAT``: clamp), exactly as ``ap_fixed_base`` does in
``templates/vivado/ap_types/ap_fixed_base.h`` (the hls4ml 1.3.0 wheel). Only the modes
TRN/RND and WRAP/SAT are modelled; other mode strings are refused with a clear error.

Values are carried as raw integers at the type's F: numpy int64 arrays when every intermediate
fits in 62 bits (the caller checks :func:`fits_int64`), object arrays of Python ints otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedError

_TYPE_RE = re.compile(
    r"^\s*(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(\w+)\s*)?(?:,\s*(\w+)\s*)?(?:,\s*(\d+)\s*)?>\s*$"
)


@dataclass(frozen=True)
class HlsType:
    """One hls4ml fixed-point precision (``fixed<width,int_bits,quant,overflow>``)."""

    width: int
    int_bits: int
    signed: bool = True
    quant: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"fixed-point width must be >= 1, got {self.width}")
        if self.quant not in ("TRN", "RND") or self.overflow not in ("WRAP", "SAT"):
            raise UnsupportedError(
                f"hls4ml type {self}: only the rounding modes TRN/RND and overflow modes "
                "WRAP/SAT are modelled"
            )

    @property
    def frac(self) -> int:
        return self.width - self.int_bits

    @property
    def raw_min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def raw_max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        return math.ldexp(self.raw_min, -self.frac)  # exact: a power of two

    @property
    def max_value(self) -> float:
        """Largest value, rounded down to a double when the width exceeds 53 bits (so that
        ``contains`` stays conservative)."""
        v = math.ldexp(self.raw_max, -self.frac)
        return v if self.width <= 53 else math.nextafter(v, -math.inf)

    @property
    def ulp(self) -> float:
        return 2.0**-self.frac

    def quant_error(self) -> float:
        """Largest |Q(x) - x| of this type's quantisation for x at finer resolution."""
        return self.ulp if self.quant == "TRN" else self.ulp / 2

    def contains(self, lo: np.ndarray | float, hi: np.ndarray | float) -> bool:
        """True when every real value in [lo, hi] lies inside this type's representable hull."""
        return bool(np.all(np.asarray(lo) >= self.min_value) and np.all(np.asarray(hi) <= self.max_value))

    def to_string(self) -> str:
        """hls4ml's precision string, e.g. ``fixed<16,6,TRN,WRAP>``."""
        return f"{'' if self.signed else 'u'}fixed<{self.width},{self.int_bits},{self.quant},{self.overflow}>"

    def cpp(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{base}<{self.width},{self.int_bits},AP_{self.quant},AP_{self.overflow}>"

    @staticmethod
    def parse(text: str) -> HlsType:
        """Parse ``fixed<W,I[,Q[,O[,N]]]>`` / ``ufixed<...>`` (hls4ml's precision string)."""
        m = _TYPE_RE.match(str(text))
        if m is None:
            raise UnsupportedError(f"hls4ml precision '{text}' is not a fixed<W,I,...> type")
        u, w, i, q, o, n = m.groups()
        q = (q or "TRN").upper().removeprefix("AP_")
        o = (o or "WRAP").upper().removeprefix("AP_")
        if n not in (None, "0"):
            raise UnsupportedError(f"hls4ml precision '{text}': saturation bits N != 0 are not modelled")
        return HlsType(int(w), int(i), not u, q, o)

    @staticmethod
    def of_precision(prec: object) -> HlsType:
        """From an hls4ml ``FixedPrecisionType`` object (its attributes, not its string)."""
        try:
            width, integer, signed = int(prec.width), int(prec.integer), bool(prec.signed)  # type: ignore[attr-defined]
        except AttributeError as exc:
            raise UnsupportedError(f"hls4ml precision {prec} is not a fixed-point type") from exc
        rnd = str(getattr(prec, "rounding_mode", "TRN")).upper()
        sat = str(getattr(prec, "saturation_mode", "WRAP")).upper()
        rnd = "RND" if rnd.endswith("RND") else ("TRN" if rnd.endswith("TRN") or rnd in ("NONE", "") else rnd)
        sat = (
            "SAT" if sat.endswith("SAT") else ("WRAP" if sat.endswith("WRAP") or sat in ("NONE", "") else sat)
        )
        if int(getattr(prec, "saturation_bits", 0) or 0) != 0:
            raise UnsupportedError(f"hls4ml precision {prec}: saturation bits are not modelled")
        return HlsType(width, integer, signed, rnd, sat)


def fits_int64(bits: int) -> bool:
    return bits <= 62


def bring_in_range(raw: np.ndarray, t: HlsType) -> np.ndarray:
    """Overflow handling of ``t`` on raw integers already at t's fractional bits."""
    if t.overflow == "SAT":
        return np.minimum(np.maximum(raw, t.raw_min), t.raw_max)
    mod = 1 << t.width
    if raw.dtype != object and raw.size and raw.min() >= t.raw_min and raw.max() <= t.raw_max:
        return raw  # already in range: wrapping is the identity (two passes instead of a modulo)
    if raw.dtype == object:
        out = (raw - t.raw_min) % mod + t.raw_min
    else:
        out = np.mod(raw - t.raw_min, mod) + t.raw_min if t.width <= 62 else raw
    return out


def with_room(raw: np.ndarray, grow: int, width: int = 0) -> np.ndarray:
    """``raw`` as Python integers when int64 might not hold its values (or values of ``width``
    bits) grown by ``grow`` bits (a left shift, a rounding offset, a sum of 2^grow terms), so the
    arithmetic that follows stays exact for any width; else ``raw`` unchanged."""
    if raw.dtype == object or not raw.size:
        return raw
    top = max(-int(raw.min()), int(raw.max())).bit_length()
    return raw.astype(object) if max(top, width) + grow > 62 else raw


def requantize(raw: np.ndarray, src_frac: int, t: HlsType) -> np.ndarray:
    """Assign raw integers at ``src_frac`` fractional bits to type ``t`` (quantise, then overflow).

    int64 input whose shift to t's fractional bits (or RND's half-LSB) could leave int64 is promoted
    to Python integers first, so the result is exact for any widths (e.g. a 36-bit accumulator cast
    to hls4ml's 'auto' result type of 72 bits)."""
    shift = src_frac - t.frac
    grow = -shift if shift < 0 else int(shift > 0 and t.quant == "RND")
    raw = with_room(np.asarray(raw), grow) if grow else np.asarray(raw)
    if shift > 0:
        if t.quant == "RND":
            raw = (raw + (1 << (shift - 1))) >> shift
        else:
            raw = raw >> shift
    elif shift < 0:
        raw = raw << (-shift)
    return bring_in_range(raw, t)


def from_doubles(values: np.ndarray, t: HlsType) -> np.ndarray:
    """``t(double)`` for every value (ap_fixed's constructor from double): exact floor/round, then overflow.

    Returns object arrays of Python ints (exact for any width)."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("cannot assign NaN or infinity to a fixed-point type")
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for k, v in enumerate(flat.tolist()):
        num, den = v.as_integer_ratio()  # exact
        if t.frac >= 0:
            num <<= t.frac
        else:
            den <<= -t.frac
        if t.quant == "RND":
            num, den = 2 * num + den, 2 * den
        out[k] = num // den
    return bring_in_range(out, t).reshape(arr.shape)


def as_values(raw: np.ndarray, frac: int) -> np.ndarray:
    """float64 of raw·2^-frac (exact while the raw integer has at most 53 significant bits)."""
    return np.ldexp(np.asarray(raw, dtype=np.float64), -frac)
