"""Bit-exact simulation of a :class:`~aster_ext.program.FixedProgram` (DESIGN §3).

This is the reference the generated HLS C++ must match bit for bit. It follows the program
contract (``program.py``) literally: every product, partial sum, dot result, bias sum and
activation is quantised (AP_TRN floor / AP_RND half-up) and wrapped or saturated exactly as
``ap_fixed`` assignment does; products and sums are formed exactly first (as ``ap_fixed``'s
operator result types are exact).

Values are carried as raw integers: a value v of a format with F fractional bits is the integer
v·2^F. Three arithmetic paths compute identical results:

- ``int64``: numpy int64 arrays, chosen when every intermediate (products W_w + W_x, aligned
  partial sums, bias sums, shifts, output conversion) stays below 2^60 in magnitude;
- ``int128``: the int64 path, except that the exact products w·x (up to ~118 bits) are formed
  in two int64 arrays of 60-bit limbs and quantised/wrapped from there; chosen when only the
  exact products are too wide (typical of Aster's formats: 46-bit weights times 36-bit
  activations, quantised to a 50-bit product type); ~15x faster than ``object``;
- ``object``: numpy object arrays of Python ints (unbounded), chosen otherwise.

The choice depends on the widest *intermediate*, not on the format widths (a 40-bit weight times
a 30-bit activation overflows int64 even though both formats fit). All paths give identical
results (tested).

Outputs: :func:`simulate_raw` returns the network outputs as raw integers of the single type
``program.output_t`` (F_out = max frac of the last layer's out formats); every last-layer value
is converted to it exactly (a left shift by F_out - F_j, never a rounding or a wrap), which is
what the generated C++ does when it assigns each output to ``out_t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal, overload

import numpy as np

from .fixedpoint import convert_checked, quantize_reals
from .program import FixedProgram, FormatArray, LayerProgram

INT64_SAFE_BITS = 60  # int64 path only when every intermediate fits in 60 bits (sign included)

INT128_PRODUCT_BITS = 118  # int128 path: exact products (with any left shift) up to this many bits
DtypeChoice = Literal["auto", "int64", "int128", "object"]


@dataclass
class LayerTrace:
    """Raw values of one layer for a batch, and where assignments overflowed.

    ``x`` [B, n_in] holds each input element at its own format's frac; ``dot``, ``bsum``,
    ``out`` [B, n_out] are at the frac of ``dot_t``, ``bsum_t``, ``out_t``. ``overflow_count``
    maps "product" and "psum" ([n_out, n_in]) and "dot", "bsum", "out" ([n_out]) to the number
    of samples in which that assignment wrapped or saturated; ``overflow_any`` [B] flags the
    samples with any overflow in this layer.
    """

    name: str
    x: np.ndarray
    dot: np.ndarray
    bsum: np.ndarray
    out: np.ndarray
    overflow_count: dict[str, np.ndarray]
    overflow_any: np.ndarray

    @property
    def overflowed(self) -> bool:
        return bool(np.any(self.overflow_any))


@dataclass
class SimTrace:
    """Result of ``simulate_raw(..., trace=True)``: outputs at ``output_t`` and every layer."""

    y_raw: np.ndarray
    layers: list[LayerTrace]
    dtype: str
    input_overflow: np.ndarray | None = None  # [B, n_in] set by simulate(): double -> in_t wrapped
    meta: dict[str, object] = field(default_factory=dict)

    def first_overflow(self) -> tuple[str, str, tuple[int, ...]] | None:
        """(layer name, stage, element index) of the first overflowing assignment, if any."""
        if self.input_overflow is not None and np.any(self.input_overflow):
            k = int(np.argmax(np.any(self.input_overflow, axis=0)))
            return ("input", "input", (k,))
        for lt in self.layers:
            for stage in ("product", "psum", "dot", "bsum", "out"):
                cnt = lt.overflow_count[stage]
                if np.any(cnt):
                    return (lt.name, stage, tuple(int(i) for i in np.argwhere(cnt > 0)[0]))
        return None


# ---------------------------------------------------------------------------------------------
# helpers


def to_float(raw: np.ndarray, frac: np.ndarray | int) -> np.ndarray:
    """Doubles raw·2^-frac (each raw correctly rounded to double first; exact up to 53 bits)."""
    r = np.asarray(raw)
    vals = np.array([float(int(v)) for v in r.reshape(-1)], dtype=np.float64).reshape(r.shape)
    return np.ldexp(vals, -np.asarray(frac, dtype=np.int64))


def to_fraction(raw: np.ndarray, frac: np.ndarray | int) -> np.ndarray:
    """Exact values raw·2^-frac as an object array of Fractions."""
    r = np.asarray(raw, dtype=object)
    f = np.broadcast_to(np.asarray(frac, dtype=np.int64), r.shape)
    out = np.empty(r.shape, dtype=object)
    for idx in np.ndindex(r.shape):
        out[idx] = Fraction(int(r[idx])) * Fraction(2) ** -int(f[idx])
    return out


def _uniform(a: np.ndarray) -> np.ndarray | int:
    """A Python int when all entries are equal (fast scalar numpy ops), else the array."""
    flat = a.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return int(flat[0])
    return a


def _bits_conv(
    src_bits: np.ndarray, src_frac: np.ndarray, fmt_w: np.ndarray, fmt_f: np.ndarray
) -> np.ndarray:
    """Bits of the intermediates of one assignment (left shift, RND carry, wrap arithmetic)."""
    return np.maximum(src_bits + np.maximum(fmt_f - src_frac, 0), np.minimum(fmt_w, 62)) + 2


def _bits_add(
    wa: np.ndarray, fa: np.ndarray, wb: np.ndarray, fb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(bits, frac) of the exact sum of two values aligned to the larger frac."""
    fc = np.maximum(fa, fb)
    return np.maximum(wa + fc - fa, wb + fc - fb) + 1, fc


@dataclass
class BitBudget:
    """Signed bit counts bounding the simulator's intermediates (DESIGN §3)."""

    products: int  # assigning the exact products w·x to product_t (incl. any left shift)
    rest: int  # everything else: aligned partial sums, bias sums, conversions, output
    operands: int  # widest weight or layer-input format
    product_cols: list[np.ndarray]  # per layer: bits of each column's product assignment [n_in]


def bit_budget(program: FixedProgram) -> BitBudget:
    """Bit counts of every intermediate the simulator forms, split as the dtype choice needs."""
    in_fmt = program.input_formats(0)
    rest = int(program.input_t.width) + 1
    prod_best = 0
    operands = 0
    cols = []
    xw, xf = in_fmt.width, in_fmt.frac
    for lp in program.layers:
        ww, wf = lp.weight_t.width, lp.weight_t.frac
        pw, pf = lp.product_t.width, lp.product_t.frac
        sw, sf = lp.psum_t.width, lp.psum_t.frac
        operands = max(operands, int(ww.max()), int(xw.max()))
        col = _bits_conv(ww + xw[None, :], wf + xf[None, :], pw, pf).max(axis=0)
        cols.append(col)
        prod_best = max(prod_best, int(col.max()))
        rest = max(rest, int(_bits_conv(pw[:, :1], pf[:, :1], sw[:, :1], sf[:, :1]).max()))
        if lp.n_in > 1:
            add_bits, add_frac = _bits_add(sw[:, :-1], sf[:, :-1], pw[:, 1:], pf[:, 1:])
            rest = max(rest, int(_bits_conv(add_bits, add_frac, sw[:, 1:], sf[:, 1:]).max()))
        dw, df = lp.dot_t.width, lp.dot_t.frac
        rest = max(rest, int(_bits_conv(sw[:, -1], sf[:, -1], dw, df).max()))
        add_bits, add_frac = _bits_add(dw, df, lp.bias_t.width, lp.bias_t.frac)
        rest = max(rest, int(_bits_conv(add_bits, add_frac, lp.bsum_t.width, lp.bsum_t.frac).max()))
        ow, of = lp.out_t.width, lp.out_t.frac
        if lp.act_impl is None:
            rest = max(rest, int(_bits_conv(lp.bsum_t.width, lp.bsum_t.frac, ow, of).max()))
        else:
            in_bits, out_bits = act_impl_bits(lp)
            rest = max(rest, in_bits + 2)
            src_f = np.array(lp.act_impl.out_frac)
            rest = max(rest, int(_bits_conv(np.array(out_bits), src_f, ow, of).max()))
        xw, xf = ow, of
    rest = max(rest, int(program.output_t.width) + 2)
    return BitBudget(prod_best, rest, operands, cols)


def act_impl_bits(lp: LayerProgram) -> tuple[int, int]:
    """(signed bits of the raw act_impl inputs t·2^(F_in - F_t), signed bits of its raw outputs).

    Outputs: a table's entry width; a piecewise impl is clamp(s·t + c) with one break at 0, so
    its extremes over the input type's raw range are at the two ends and at 0."""
    impl = lp.act_impl
    t_w, t_f = lp.bsum_t.width, lp.bsum_t.frac
    in_bits = int((t_w + (int(impl.in_frac) - t_f)).max())
    if hasattr(impl, "entries"):
        return in_bits, int(impl.entry_width)
    top = 1 << (in_bits - 1)
    vals = impl.apply(np.array([-top, -1, 0, 1, top - 1], dtype=object))
    return in_bits, max(int(v).bit_length() + 1 for v in vals)


def intermediate_bits(program: FixedProgram) -> int:
    """Signed bit count bounding every intermediate the simulator forms (DESIGN §3)."""
    b = bit_budget(program)
    return max(b.products, b.rest)


def choose_dtype(program: FixedProgram) -> str:
    """'int64' when every intermediate fits comfortably in int64; 'int128' when only the exact
    products are wider (up to ~118 bits); else 'object' (Python ints)."""
    b = bit_budget(program)
    if max(b.products, b.rest) <= INT64_SAFE_BITS:
        return "int64"
    if b.rest <= INT64_SAFE_BITS and b.operands <= INT64_SAFE_BITS and b.products <= INT128_PRODUCT_BITS:
        return "int128"
    return "object"


def _check_fits(raw: np.ndarray, fmt: FormatArray, what: str) -> None:
    r = np.asarray(raw, dtype=object)
    if r.shape != fmt.shape:
        raise ValueError(f"{what}: raw shape {r.shape} != format shape {fmt.shape}")
    lo = -(np.ones(fmt.shape, dtype=object) << (fmt.width.astype(object) - 1))
    if r.size and (np.any(r < lo) or np.any(r > -lo - 1)):
        raise ValueError(f"{what}: a raw constant does not fit its format's width")


def validate_program(program: FixedProgram) -> None:
    """Shapes chain, modes are known, and every raw constant fits its format (else ValueError)."""
    if program.quant not in ("TRN", "RND") or program.overflow not in ("WRAP", "SAT"):
        raise ValueError(f"bad program modes {program.quant}/{program.overflow}")
    n_prev = program.n_in
    for lp in program.layers:
        if lp.n_in != n_prev:
            raise ValueError(f"layer {lp.name}: expects {lp.n_in} inputs, previous layer gives {n_prev}")
        if lp.act_impl is None and lp.activation not in ("relu", "identity"):
            raise ValueError(f"layer {lp.name}: activation {lp.activation!r} needs an act_impl")
        if lp.act_impl is not None and int(lp.act_impl.in_frac) < int(lp.bsum_t.frac.max()):
            raise ValueError(f"layer {lp.name}: act_impl.in_frac is below a bias-sum frac")
        for nm in ("product_t", "psum_t"):
            if getattr(lp, nm).shape != (lp.n_out, lp.n_in):
                raise ValueError(f"layer {lp.name}: {nm} shape {getattr(lp, nm).shape}")
        for nm in ("dot_t", "bsum_t", "out_t"):
            if getattr(lp, nm).shape != (lp.n_out,):
                raise ValueError(f"layer {lp.name}: {nm} shape {getattr(lp, nm).shape}")
        _check_fits(lp.weight_raw, lp.weight_t, f"layer {lp.name} weights")
        _check_fits(lp.bias_raw, lp.bias_t, f"layer {lp.name} biases")
        n_prev = lp.n_out


# ---------------------------------------------------------------------------------------------
# the simulator


# ---------------------------------------------------------------------------------------------
# exact wide products in int64 numpy arrays (the int128 path): a value V is held as two int64
# arrays (H, L) with V = H·2^60 + L and 0 <= L < 2^60 ("60-bit limbs"); |V| < 2^120.

_L = 60
_LMASK = (1 << _L) - 1
_M30 = (1 << 30) - 1


def _mul_limbs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact a·b for int64 arrays with |a|, |b| <= 2^59 (broadcast), as (H, L)."""
    a0, a1 = a & _M30, a >> 30  # a = a1·2^30 + a0, 0 <= a0 < 2^30
    b0, b1 = b & _M30, b >> 30
    c = a0 * b0  # [0, 2^60)
    m = a1 * b0 + a0 * b1 + (c >> 30)  # |m| < 2^59 + 2^30
    h = a1 * b1 + (m >> 30)
    return h, ((m & _M30) << 30) | (c & _M30)


def _shr_limbs(h: np.ndarray, lo: np.ndarray, r: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """floor(V / 2^r) for 0 <= r <= 60 (elementwise r)."""
    if isinstance(r, int):
        if r == 0:
            return h, lo
        return h >> r, ((h & ((1 << r) - 1)) << (_L - r)) | (lo >> r)
    keep = (np.int64(1) << r) - 1
    spill = np.where(r == 0, 0, (h & keep) << np.where(r == 0, 0, _L - r))
    return h >> r, spill | (lo >> r)


def _shl_limbs(h: np.ndarray, lo: np.ndarray, t: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """V·2^t for 0 <= t <= 60 (elementwise t); the result must stay below 2^120."""
    if isinstance(t, int):
        if t == 0:
            return h, lo
        return (h << t) | (lo >> (_L - t)), (lo << t) & _LMASK
    return (h << t) | (lo >> (_L - t)), (lo << t) & _LMASK


def _add_pow2_limbs(h: np.ndarray, lo: np.ndarray, e: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """V + 2^e for 0 <= e < 120 (elementwise e)."""
    e_arr = np.asarray(e, dtype=np.int64)
    low = np.left_shift(np.int64(1), np.where(e_arr < _L, e_arr, 0))
    lo2 = lo + np.where(e_arr < _L, low, 0)
    high = np.where(e_arr >= _L, np.left_shift(np.int64(1), np.clip(e_arr - _L, 0, 61)), 0)
    return h + high + (lo2 >> _L), lo2 & _LMASK


def _split_shift(v: np.ndarray | int) -> tuple[np.ndarray | int, np.ndarray | int]:
    """v -> (min(v, 60), v - min(v, 60)) for scalars or arrays."""
    if isinstance(v, int):
        return min(v, _L), v - min(v, _L)
    first = np.minimum(v, _L)
    return first, v - first


def _product_wide(
    x: np.ndarray, w: np.ndarray, shift: np.ndarray | int, width: np.ndarray | int, quant: str, overflow: str
) -> tuple[np.ndarray, np.ndarray]:
    """Q(x·w -> ``width`` bits, dropping ``shift`` fractional bits), with the overflow mask.

    Same result as ``convert_checked(x * w, ...)`` on Python ints; the exact product is formed
    in 60-bit limbs. Needs |x|, |w| <= 2^59, width <= 60, and the shifted product below 2^118.
    """
    h, lo = _mul_limbs(x, w)
    sh = shift if isinstance(shift, int) else np.asarray(shift, dtype=np.int64)
    left = max(-sh, 0) if isinstance(sh, int) else np.maximum(-sh, 0)
    right = max(sh, 0) if isinstance(sh, int) else np.maximum(sh, 0)
    for part in _split_shift(left):
        h, lo = _shl_limbs(h, lo, part)
    right_capped = min(right, 119) if isinstance(right, int) else np.minimum(right, 119)  # |V| < 2^118
    if quant == "RND":
        if isinstance(right_capped, int):
            if right_capped > 0:
                h, lo = _add_pow2_limbs(h, lo, right_capped - 1)
        else:
            h2, lo2 = _add_pow2_limbs(h, lo, np.maximum(right_capped - 1, 0))
            h, lo = np.where(right_capped > 0, h2, h), np.where(right_capped > 0, lo2, lo)
    for part in _split_shift(right_capped):
        h, lo = _shr_limbs(h, lo, part)
    w_arr = np.asarray(width, dtype=np.int64)
    half = np.left_shift(np.int64(1), w_arr - 1)
    in_range = ((h == 0) & (lo < half)) | ((h == -1) & (lo >= (1 << _L) - half))
    v = (h << _L) + lo  # exact where in range; correct modulo 2^64 elsewhere (enough for WRAP)
    if overflow == "SAT":
        out = np.where(in_range, v, np.where(h < 0, -half, half - 1))
    else:
        out = ((v + half) & (2 * half - 1)) - half
    return out, ~in_range


class _Stage:
    """Accumulates the per-element overflow counts of one assignment stage."""

    def __init__(self, shape: tuple[int, ...], batch: int) -> None:
        self.count = np.zeros(shape, dtype=np.int64)
        self.any = np.zeros(batch, dtype=bool)

    def add(self, mask: np.ndarray, index: int | None = None) -> None:
        """``mask`` is [B, n_out]; counts go to column ``index`` (or the whole [n_out] vector)."""
        if not mask.any():
            return
        per = mask.sum(axis=0)
        if index is None:
            self.count += per
        else:
            self.count[:, index] += per
        self.any |= mask.any(axis=1)


def _simulate_layer(
    lp: LayerProgram,
    x: np.ndarray,
    x_frac: np.ndarray,
    quant: str,
    overflow: str,
    obj: bool,
    want_trace: bool,
    wide_cols: np.ndarray | None = None,
) -> tuple[np.ndarray, LayerTrace | None]:
    """One dense layer; x [B, n_in] raw at x_frac [n_in]; returns out [B, n_out] at out_t.frac.

    ``wide_cols`` (int128 path) marks the columns whose exact products need 128 bits.
    """
    batch = x.shape[0]
    n_out, n_in = lp.n_out, lp.n_in
    w = np.asarray(lp.weight_raw, dtype=object)
    w = w if obj else w.astype(np.int64)
    wf, pw, pf = lp.weight_t.frac, lp.product_t.width, lp.product_t.frac
    sw, sf = lp.psum_t.width, lp.psum_t.frac
    st_prod = _Stage((n_out, n_in), batch)
    st_psum = _Stage((n_out, n_in), batch)
    s = None
    s_frac: np.ndarray | int = 0
    for k in range(n_in):
        src_frac = _uniform(wf[:, k] + int(x_frac[k]))  # the exact product's frac
        p_frac = _uniform(pf[:, k])
        if wide_cols is not None and wide_cols[k]:
            p, ovf = _product_wide(
                x[:, k : k + 1],
                w[None, :, k],
                np.subtract(src_frac, p_frac),
                _uniform(pw[:, k]),
                quant,
                overflow,
            )
        else:
            prod = x[:, k : k + 1] * w[None, :, k]
            p, ovf = convert_checked(prod, src_frac, _uniform(pw[:, k]), p_frac, quant, overflow)
        st_prod.add(ovf, k)
        if s is None:
            acc, acc_frac = p, p_frac
        else:
            acc_frac = _uniform(np.maximum(s_frac, p_frac))
            acc = (s << _shift(np.subtract(acc_frac, s_frac), obj)) + (
                p << _shift(np.subtract(acc_frac, p_frac), obj)
            )
        s_frac = _uniform(sf[:, k])
        s, ovf = convert_checked(acc, acc_frac, _uniform(sw[:, k]), s_frac, quant, overflow)
        st_psum.add(ovf, k)
    assert s is not None
    st = {nm: _Stage((n_out,), batch) for nm in ("dot", "bsum", "out")}
    d_frac = _uniform(lp.dot_t.frac)
    d, ovf = convert_checked(s, s_frac, _uniform(lp.dot_t.width), d_frac, quant, overflow)
    st["dot"].add(ovf)
    b = np.asarray(lp.bias_raw, dtype=object)
    b = b if obj else b.astype(np.int64)
    b_frac = _uniform(lp.bias_t.frac)
    c_frac = _uniform(np.maximum(d_frac, b_frac))
    acc = (d << _shift(np.subtract(c_frac, d_frac), obj)) + (b << _shift(np.subtract(c_frac, b_frac), obj))[
        None, :
    ]
    t_frac = _uniform(lp.bsum_t.frac)
    t, ovf = convert_checked(acc, c_frac, _uniform(lp.bsum_t.width), t_frac, quant, overflow)
    st["bsum"].add(ovf)
    if lp.act_impl is not None:  # raw at act_impl.in_frac (exact left shift), table/piecewise
        r = t << _shift(np.subtract(int(lp.act_impl.in_frac), t_frac), obj)
        t_act = lp.act_impl.apply(r)
        t_act = t_act.astype(object) if obj else np.asarray(t_act, dtype=np.int64)
        t_frac = int(lp.act_impl.out_frac)
    elif lp.activation == "relu":
        t_act = np.where(t > 0, t, 0)
        if obj:
            t_act = t_act.astype(object)
    else:
        t_act = t
    a, ovf = convert_checked(
        t_act, t_frac, _uniform(lp.out_t.width), _uniform(lp.out_t.frac), quant, overflow
    )
    st["out"].add(ovf)
    if not want_trace:
        return a, None
    counts = {"product": st_prod.count, "psum": st_psum.count}
    counts.update({nm: v.count for nm, v in st.items()})
    any_ovf = st_prod.any | st_psum.any | st["dot"].any | st["bsum"].any | st["out"].any
    return a, LayerTrace(lp.name, x, d, t, a, counts, any_ovf)


def _shift(amount: np.ndarray | int, obj: bool) -> np.ndarray | int:
    """Left-shift amounts of the right kind (Python ints for object data)."""
    a = np.asarray(amount)
    if a.ndim == 0:
        return int(a)
    return a.astype(object) if obj else a.astype(np.int64)


@overload
def simulate_raw(
    program: FixedProgram, x_raw: np.ndarray, *, trace: Literal[False] = ..., dtype: DtypeChoice = ...
) -> np.ndarray: ...


@overload
def simulate_raw(
    program: FixedProgram, x_raw: np.ndarray, *, trace: Literal[True], dtype: DtypeChoice = ...
) -> SimTrace: ...


def simulate_raw(
    program: FixedProgram, x_raw: np.ndarray, *, trace: bool = False, dtype: DtypeChoice = "auto"
) -> np.ndarray | SimTrace:
    """Run the program on raw inputs x_raw [batch, n_in] (integers at ``input_t`` frac).

    Returns the outputs [batch, n_out] as raw integers of ``program.output_t`` (int64 array on
    the int64 and int128 paths, object array of Python ints otherwise), or a :class:`SimTrace`
    when ``trace``. ``dtype`` forces a path (a path narrower than the program needs raises).
    """
    validate_program(program)
    need = choose_dtype(program)
    rank = {"int64": 0, "int128": 1, "object": 2}
    if dtype != "auto" and rank[dtype] < rank[need]:
        raise ValueError(f"program needs {intermediate_bits(program)}-bit intermediates; {dtype} is unsafe")
    use = need if dtype == "auto" else dtype
    obj = use == "object"
    wide = [c > INT64_SAFE_BITS for c in bit_budget(program).product_cols] if use == "int128" else None
    xr = np.asarray(x_raw)
    if xr.ndim == 1:
        xr = xr[None, :]
    if xr.ndim != 2 or xr.shape[1] != program.n_in:
        raise ValueError(f"x_raw must be [batch, {program.n_in}], got shape {np.shape(x_raw)}")
    xo = np.array([[int(v) for v in row] for row in xr], dtype=object).reshape(xr.shape)
    in_w = program.input_t.width
    if xo.size and (np.any(xo < -(1 << (in_w - 1))) or np.any(xo >= 1 << (in_w - 1))):
        raise ValueError(f"raw inputs do not fit input_t ({program.input_t.cpp()})")
    x = xo if obj else xo.astype(np.int64)
    x_frac = program.input_formats(0).frac
    layers: list[LayerTrace] = []
    for li, lp in enumerate(program.layers):
        x, lt = _simulate_layer(
            lp, x, x_frac, program.quant, program.overflow, obj, trace, wide[li] if wide else None
        )
        if lt is not None:
            layers.append(lt)
        x_frac = lp.out_t.frac
    out_t = program.output_t
    y = x << _shift(_uniform(out_t.frac_bits - program.layers[-1].out_t.frac), obj)
    y = np.asarray(y, dtype=object if obj else np.int64)
    if trace:
        return SimTrace(y, layers, use)
    return y


@overload
def simulate(
    program: FixedProgram, x: np.ndarray, *, trace: Literal[False] = ..., dtype: DtypeChoice = ...
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def simulate(
    program: FixedProgram, x: np.ndarray, *, trace: Literal[True], dtype: DtypeChoice = ...
) -> tuple[np.ndarray, SimTrace]: ...


def simulate(
    program: FixedProgram, x: np.ndarray, *, trace: bool = False, dtype: DtypeChoice = "auto"
) -> tuple[np.ndarray, np.ndarray | SimTrace]:
    """Assign doubles x [batch, n_in] to ``in_t`` exactly as ap_fixed does, then simulate.

    x_raw = floor(x·2^F) (AP_TRN) or floor(x·2^F + 1/2) (AP_RND), then wrap or saturate, with
    ``input_t``'s own modes. Returns (x_raw as object ints, outputs as in :func:`simulate_raw`).
    """
    xs = np.asarray(x, dtype=np.float64)
    if xs.ndim == 1:
        xs = xs[None, :]
    it = program.input_t
    x_raw = quantize_reals(xs, it.frac_bits, it.width, it.quant, it.overflow)
    if not trace:
        return x_raw, simulate_raw(program, x_raw, dtype=dtype)
    res = simulate_raw(program, x_raw, trace=True, dtype=dtype)
    unwrapped = quantize_reals(xs, it.frac_bits, it.width + 2048, it.quant, "WRAP") if xs.size else x_raw
    res.input_overflow = np.asarray(unwrapped != x_raw, dtype=bool)
    return x_raw, res
