"""Bit-exact simulation of an :class:`Hls4mlProgram` (hls4ml's C simulation) on raw integers.

Semantics per stage are those listed in :mod:`.program` and :mod:`.tables`. With WRAP
accumulators the sum is taken exactly and wrapped once (two's-complement addition is modular,
so this equals wrapping after every addition); with SAT accumulators the additions are done
one input at a time in the template's order (bias first, then inputs 0..n-1), saturating after
each, as ``nnet_dense_latency.h`` does.
"""

from __future__ import annotations

import numpy as np

from .program import ActStage, DenseStage, Hls4mlProgram
from .tables import table_index, table_raw
from .types import as_values, bring_in_range, from_doubles, requantize

_BATCH = 256


def _split_bits(x: np.ndarray, st: DenseStage, k: int) -> int:
    """m for :func:`_split_product` (0: not applicable): the products x·w need more than 60 bits but
    are quantised by k >= 1 bits; w = w_h·2^m + w_l (0 <= w_l < 2^m) keeps x·w_h and x·w_l within
    61 bits, with m <= k (TRN) or m <= k - 1 (RND)."""
    bx = max(int(np.max(np.abs(x), initial=0)).bit_length(), 1)
    bw = max(int(np.max(np.abs(st.weight_raw), initial=0)).bit_length(), 1) + 1
    m = min(k - (st.accum_t.quant == "RND"), 61 - bx)
    return m if k >= 1 and m >= 1 and bx + bw - m <= 61 else 0


def _split_product(xb: np.ndarray, w: np.ndarray, m: int, k: int, quant: str) -> np.ndarray:
    """Q(x·w) on int64 for products wider than int64: with w = w_h·2^m + w_l, A = x·w_h,
    B = x·w_l, x·w = A·2^m + B, and for TRN floor(x·w / 2^k) = (A + (B >> m)) >> (k - m) (floor of a
    floor: A is an integer); RND adds 2^(k-1) = 2^(k-1-m)·2^m to A first (m <= k - 1)."""
    wh, wl = w >> m, w & ((1 << m) - 1)
    a = xb[:, None, :] * wh[None, :, :]
    b = xb[:, None, :] * wl[None, :, :]
    if quant == "RND":
        a = a + (1 << (k - 1 - m))
    return (a + (b >> m)) >> (k - m)


def _dense(x: np.ndarray, x_frac: int, st: DenseStage) -> np.ndarray:
    acc_t = st.accum_t
    prod_frac = x_frac + st.weight_t.frac
    bits = max(int(np.max(np.abs(x), initial=0)).bit_length(), 1) + max(
        int(np.max(np.abs(st.weight_raw), initial=0)).bit_length(), 1
    )
    shift_up = max(acc_t.frac - prod_frac, 0)
    acc_fits = acc_t.width + int(np.ceil(np.log2(st.n_in + 2))) <= 60
    small = bits + shift_up <= 60 and acc_fits
    split = 0 if small or not acc_fits else _split_bits(x, st, prod_frac - acc_t.frac)
    dt = np.int64 if small or split else object
    w = st.weight_raw.astype(dt)
    xs = x.astype(dt)
    bias = requantize(st.bias_raw.astype(dt), st.bias_t.frac, acc_t)
    out = np.empty((x.shape[0], st.n_out), dtype=dt)
    for s in range(0, x.shape[0], _BATCH):
        xb = xs[s : s + _BATCH]
        if split:  # products too wide for int64, quantised by k = prod_frac - F_acc bits
            prod = bring_in_range(_split_product(xb, w, split, prod_frac - acc_t.frac, acc_t.quant), acc_t)
        else:
            prod = xb[:, None, :] * w[None, :, :]  # [b, n_out, n_in] at prod_frac
            prod = requantize(prod, prod_frac, acc_t)
        if acc_t.overflow == "WRAP":
            acc = bring_in_range(prod.sum(axis=2) + bias[None, :], acc_t)
        else:
            acc = np.broadcast_to(bias[None, :], (xb.shape[0], st.n_out)).copy()
            for i in range(st.n_in):
                acc = bring_in_range(acc + prod[:, :, i], acc_t)
        out[s : s + _BATCH] = acc
    return requantize(out, acc_t.frac, st.result_t)


def _activation(x: np.ndarray, x_frac: int, st: ActStage) -> np.ndarray:
    if st.kind == "relu":
        return np.where(x > 0, requantize(x, x_frac, st.result_t), 0)
    assert st.table_t is not None and st.table_size is not None
    tab = table_raw(st.kind, st.table_size, st.table_t)
    idx = table_index(x, x_frac, st.kind, st.table_size)
    return requantize(tab[idx], st.table_t.frac, st.result_t)


def simulate_raw(program: Hls4mlProgram, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Raw output integers (and their fractional bits) for double inputs x [n, n_in]."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    raw = from_doubles(x, program.input_t)
    frac = program.input_t.frac
    for st in program.stages:
        if isinstance(st, DenseStage):
            raw = _dense(np.asarray(raw), frac, st)
        else:
            raw = _activation(np.asarray(raw), frac, st)
        frac = st.result_t.frac
    return np.asarray(raw), frac


def simulate(program: Hls4mlProgram, x: np.ndarray) -> np.ndarray:
    """Outputs as doubles, as ``<project>_double`` returns them (exact for widths <= 53 bits)."""
    raw, frac = simulate_raw(program, x)
    return as_values(raw, frac)
