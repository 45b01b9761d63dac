"""hls4ml's tanh and sigmoid lookup tables: exact contents, index map, rigorous error bounds.

Facts from ``templates/vivado/nnet_utils/nnet_activation.h`` (hls4ml 1.3.0 wheel):

- ``init_tanh_table`` (l. 425-436): entry i = table_t(tanh(in_val)), in_val a ``float`` equal to
  2·4.0·(i - N/2)/N (range [-4, 4)); the call resolves to the single-precision libm ``tanhf``
  (checked against a compiled table). ``tanh`` (l. 438-467): data_round = int(x·N/8), index =
  data_round + 4N/8 clamped to [0, N-1], res = res_T(table[index]).
- ``init_sigmoid_table`` (l. 79-89) with ``sigmoid_fcn_float`` (l. 77): entry i =
  table_t(float(1.0/(1 + expf(-in_val)))) where ``1 + expf(..)`` is a float addition and the
  division is in double, in_val = float(2·8.0·(i - N/2)/N) (range [-8, 8)). ``sigmoid``
  (l. 91-121): data_round = int(x·N/16), index = data_round + 8N/16, clamped, res = res_T(entry).
- ``x·N/D`` is ap_fixed arithmetic: the product is exact, ``/ D`` keeps x's fractional bits and
  truncates towards zero (``operator/`` in ``ap_fixed_base.h`` l. 1097-1120, signed division),
  and ``int(..)`` truncates towards zero too (``to_ap_int_base`` with Cnative, l. 796-830). The
  two truncations compose to data_round = trunc(x·N/D).

The entries are computed here with the same libm calls through ctypes (bit-identical to the
C simulation on this machine). Error bound: index i is selected exactly for x in an interval
[a_i, b_i] (a_0 = -inf, b_{N-1} = +inf); tanh and sigmoid are increasing, so
sup over [a, b] of |t_i - f(x)| = max(t_i - f(a), f(b) - t_i), evaluated with arb enclosures of
f at the (dyadic) end points and rounded upwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from flint import arb

from ..activations._arb import down, up, working_precision
from ..rigorous import down as fdown
from ..rigorous import up as fup
from .types import HlsType, as_values, from_doubles

#: (half range R of the table's x grid, divisor D in the index formula, Lipschitz constant, f(-inf), f(+inf))
TABLE_FUNCS: dict[str, tuple[int, int, float, float, float]] = {
    "tanh": (4, 8, 1.0, -1.0, 1.0),
    "sigmoid": (8, 16, 0.25, 0.0, 1.0),
}


@lru_cache(maxsize=1)
def _libm() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    for name in ("tanhf", "expf"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_float
        fn.argtypes = [ctypes.c_float]
    return lib


@lru_cache(maxsize=64)
def table_floats(fn: str, size: int) -> np.ndarray:
    """The float values hls4ml's init_*_table assigns to table_t (before the table_t cast)."""
    half, _, _, _, _ = TABLE_FUNCS[fn]
    lib = _libm()
    out = np.empty(size, dtype=np.float64)
    for i in range(size):
        in_val = float(np.float32(2 * float(half) * (i - float(size) / 2.0) / float(size)))
        if fn == "tanh":
            out[i] = float(lib.tanhf(in_val))
        else:
            denom = np.float32(np.float32(1.0) + np.float32(lib.expf(-in_val)))
            out[i] = float(np.float32(1.0 / float(denom)))
    return out


@lru_cache(maxsize=256)
def _table_raw(fn: str, size: int, table_t: HlsType) -> np.ndarray:
    return from_doubles(table_floats(fn, size), table_t)


def table_raw(fn: str, size: int, table_t: HlsType) -> np.ndarray:
    """Raw integer entries of the table as the C simulation holds them."""
    return _table_raw(fn, size, table_t).copy()


@lru_cache(maxsize=256)
def table_values(fn: str, size: int, table_t: HlsType) -> np.ndarray:
    """The entries as float64 (exact: table types are narrower than 53 bits in practice; wider
    entries are rounded by numpy, which the callers' outward rounding does not cover, so they
    are refused)."""
    if table_t.width > 53:
        raise ValueError(f"table type {table_t.to_string()} wider than 53 bits is not supported")
    return as_values(_table_raw(fn, size, table_t), table_t.frac)


@lru_cache(maxsize=256)
def table_overflows(fn: str, size: int, table_t: HlsType) -> bool:
    """True when some entry does not fit table_t (it would wrap or saturate)."""
    sat = HlsType(table_t.width + 4, table_t.int_bits + 4, table_t.signed, table_t.quant, "SAT")
    wide = from_doubles(table_floats(fn, size), sat)
    return bool(np.any(wide < table_t.raw_min) or np.any(wide > table_t.raw_max))


def table_index(raw: np.ndarray, frac: int, fn: str, size: int) -> np.ndarray:
    """Index hls4ml computes from the input raw integers (value raw·2^-frac): clamp(trunc(x·N/D) + off)."""
    _, div, _, _, _ = TABLE_FUNCS[fn]
    half = TABLE_FUNCS[fn][0]
    num = np.asarray(raw, dtype=object) * size
    den = div << frac if frac >= 0 else None
    if den is None:
        q = num * (1 << (-frac)) // div
        q = np.where(num < 0, -((-num * (1 << (-frac))) // div), q)
    else:
        q = np.where(num < 0, -((-num) // den), num // den)
    off = (half * size) // div
    return np.clip((q + off).astype(np.int64), 0, size - 1)


@dataclass(frozen=True)
class _Grid:
    a: np.ndarray  # lower end of each index's x interval (-inf for index 0)
    b: np.ndarray  # upper end (+inf for the last index)
    f_a_lo: np.ndarray  # lower enclosure of f(a)
    f_b_hi: np.ndarray  # upper enclosure of f(b)


def _f_arb(fn: str, x: arb) -> arb:
    return x.tanh() if fn == "tanh" else 1 / (1 + (-x).exp())


@lru_cache(maxsize=64)
def _grid(fn: str, size: int) -> _Grid:
    _, div, _, f_minf, f_pinf = TABLE_FUNCS[fn]
    off = (TABLE_FUNCS[fn][0] * size) // div
    k = np.arange(size) - off
    # trunc(x·N/D) = k  <=>  x in [k, k+1)·D/N (k > 0), (k-1, k]·D/N (k < 0), (-1, 1)·D/N (k = 0)
    lo_k = np.where(k > 0, k, k - 1).astype(np.float64)
    hi_k = np.where(k >= 0, k + 1, k).astype(np.float64)
    a = lo_k * div / size
    b = hi_k * div / size
    a[0] = -np.inf
    b[-1] = np.inf
    f_a_lo = np.empty(size)
    f_b_hi = np.empty(size)
    with working_precision():
        cache: dict[int, arb] = {}
        for i in range(size):
            for x, kk, dst, lo_side in ((a[i], lo_k[i], f_a_lo, True), (b[i], hi_k[i], f_b_hi, False)):
                if np.isinf(x):
                    dst[i] = f_minf if x < 0 else f_pinf
                    continue
                key = int(kk)
                if key not in cache:  # f at the exact boundary k·D/N (a[i], b[i] are its float roundings)
                    cache[key] = _f_arb(fn, arb(key * div) / size)
                dst[i] = down(cache[key]) if lo_side else up(cache[key])
    return _Grid(a, b, f_a_lo, f_b_hi)


@lru_cache(maxsize=256)
def _err_full(fn: str, size: int, table_t: HlsType) -> np.ndarray:
    g = _grid(fn, size)
    t = table_values(fn, size, table_t)
    return np.maximum(np.nextafter(t - g.f_a_lo, np.inf), np.nextafter(g.f_b_hi - t, np.inf))


def _f_bounds(fn: str, x: np.ndarray, lower: bool) -> np.ndarray:
    with working_precision():
        vals = [_f_arb(fn, arb(float(v))) for v in np.ravel(x)]
        return np.array([down(v) if lower else up(v) for v in vals], dtype=np.float64).reshape(np.shape(x))


@dataclass(frozen=True)
class _RangeExtrema:
    """Sparse tables for O(1) range min of the cells' lower and range max of their upper errors:
    level k holds the min (max) over the 2^k cells starting at each index."""

    lo: list[np.ndarray]
    hi: list[np.ndarray]

    def query(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """min of lo and max of hi over the cells a..b (inclusive, a <= b, vectorised)."""
        k = np.floor(np.log2(b - a + 1)).astype(np.int64)
        out_lo = np.empty(a.shape)
        out_hi = np.empty(a.shape)
        for lev in np.unique(k):
            m = k == lev
            aa, bb = a[m], b[m] - (1 << int(lev)) + 1
            out_lo[m] = np.minimum(self.lo[lev][aa], self.lo[lev][bb])
            out_hi[m] = np.maximum(self.hi[lev][aa], self.hi[lev][bb])
        return out_lo, out_hi


@lru_cache(maxsize=64)
def _cell_extrema(fn: str, size: int, table_t: HlsType) -> _RangeExtrema:
    """Per cell i the signed error T_i - f(x) over the whole cell lies in [T_i - f(b_i), T_i - f(a_i)]
    (f increasing); outward-rounded, as range-extrema tables."""
    g = _grid(fn, size)
    t = table_values(fn, size, table_t)
    lo = [fdown(t - g.f_b_hi)]
    hi = [fup(t - g.f_a_lo)]
    step = 1
    while 2 * step <= size:
        lo.append(np.minimum(lo[-1][:-step], lo[-1][step:]))
        hi.append(np.maximum(hi[-1][:-step], hi[-1][step:]))
        step *= 2
    return _RangeExtrema(lo, hi)


def table_error_signed(
    fn: str, size: int, table_t: HlsType, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron an enclosure [τ_lo, τ_hi] of the signed error T[index(x)] - f(x) over every
    x in [lo, hi].

    The cells a..b that [lo, hi] can select are the indices (monotone in x) of lo - |lo|·1e-12 -
    1e-300 and hi + |hi|·1e-12 + 1e-300: the index formula trunc(x·N/D) evaluated in floats is off
    by at most two roundings (relative 2^-51), far inside that slack, so every x of [lo, hi] lies in
    one of them; an end point on a cell boundary keeps the neighbouring cell. Inside cell i, f(x) is
    enclosed by [f(a_i), f(b_i)] (f increasing), and in the end cells also by f(lo) from below
    (cell a) and f(hi) from above (cell b), so T_i - f(x) lies in [T_i - upper f, T_i - lower f].
    The enclosure is the hull over the cells (an empty intersection of a slack cell with [lo, hi]
    can only widen it). Every end point is an arb
    enclosure of f rounded outwards; the differences are rounded outwards again."""
    g = _grid(fn, size)
    t = table_values(fn, size, table_t)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    shape = lo.shape
    lo, hi = lo.reshape(-1), hi.reshape(-1)
    a = _index_of_value(lo - np.abs(lo) * 1e-12 - 1e-300, fn, size)
    b = _index_of_value(hi + np.abs(hi) * 1e-12 + 1e-300, fn, size)
    fa = np.maximum(_f_bounds(fn, lo, lower=True), g.f_a_lo[a])  # lower enclosure of f over [lo, ..]
    fb = np.minimum(_f_bounds(fn, hi, lower=False), g.f_b_hi[b])  # upper enclosure of f over [.., hi]
    one = a == b
    # cell a: x in [max(lo, a_a), min(hi, b_a)]
    a_up = np.where(one, fb, np.minimum(g.f_b_hi[a], fb))
    e_lo = fdown(t[a] - a_up)
    e_hi = fup(t[a] - fa)
    # cell b (a != b): x in [a_b, min(hi, b_b)]
    b_lo_f = np.maximum(g.f_a_lo[b], fa)
    e_lo = np.where(one, e_lo, np.minimum(e_lo, fdown(t[b] - fb)))
    e_hi = np.where(one, e_hi, np.maximum(e_hi, fup(t[b] - b_lo_f)))
    mid = b - a > 1  # the whole cells a+1 .. b-1
    if np.any(mid):
        m_lo, m_hi = _cell_extrema(fn, size, table_t).query(a[mid] + 1, b[mid] - 1)
        e_lo[mid] = np.minimum(e_lo[mid], m_lo)
        e_hi[mid] = np.maximum(e_hi[mid], m_hi)
    return e_lo.reshape(shape), e_hi.reshape(shape)


def table_error(fn: str, size: int, table_t: HlsType, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per neuron: an upper bound of |table[index(x)] - f(x)| over every x in [lo, hi]."""
    e_lo, e_hi = table_error_signed(fn, size, table_t, lo, hi)
    return np.maximum(np.maximum(-e_lo, e_hi), 0.0)


def slope_bound(fn: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per neuron an upper bound of f' over [lo, hi] (f = tanh or sigmoid: f' > 0, even and
    decreasing in |x|, so the maximum is at m = the point of [lo, hi] nearest 0):
    tanh' = 1/cosh²(m), sigmoid' = e^-m/(1 + e^-m)². numpy's cosh/exp are accurate to a few
    ulp; the result is inflated by 1e-9 relative (far above that) and capped by the global
    Lipschitz constant (1, 1/4)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    m = np.where(lo > 0, lo, np.where(hi < 0, -hi, 0.0))
    m = np.maximum(fdown(m), 0.0)  # smaller |x|: larger slope
    with np.errstate(over="ignore", under="ignore"):
        if fn == "tanh":
            d = 1.0 / np.cosh(m) ** 2
        else:
            em = np.exp(-m)
            d = em / (1.0 + em) ** 2
    return np.minimum(fup(d * (1 + 1e-9)), TABLE_FUNCS[fn][2])


def _index_of_value(x: np.ndarray, fn: str, size: int) -> np.ndarray:
    """Index selected by the real value x (the same formula on reals; monotone in x)."""
    _, div, _, _, _ = TABLE_FUNCS[fn]
    off = (TABLE_FUNCS[fn][0] * size) // div
    y = np.asarray(x, dtype=np.float64) * size / div
    k = np.trunc(y)
    return np.clip(k + off, 0, size - 1).astype(np.int64)
