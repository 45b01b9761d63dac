"""HLS C++ (Vivado/Vitis ``ap_fixed``) for a :class:`~aster_ext.program.FixedProgram` (DESIGN §3).

Output folder (:func:`generate_hls`): ``<net>.h`` (the fixed interface: ``N_IN``, ``N_OUT``,
``in_t``, ``out_t``, ``void <net>(const in_t x[N_IN], out_t y[N_OUT])``), ``<net>.cpp``,
``<net>_tb.cpp`` (a C simulation testbench holding raw inputs and the simulator's raw outputs; it
prints the raw outputs and exits 1 on any difference) and ``<net>_hls.tcl`` (Vitis HLS:
``csim_design``, ``csynth_design``), so ``vitis_hls -f <net>_hls.tcl`` runs as is.

Semantics. Every product, partial sum, dot result, bias sum and activation is assigned to an
``ap_fixed`` of exactly the program's format, so ``ap_fixed`` assignment performs the
quantisation/overflow the simulator models; no value is ever cast to a type the program does not
declare, except that layer inputs live in one *container* array per layer (the union of the
previous layer's output formats) and, for rolled groups, are copied into one array per *input
group* (the union of that group's formats): both copies are exact (:mod:`.layout`).

Layout (:mod:`.layout`). A C++ array has one element type, so each layer's neurons are grouped by
identical type signature and each group is one piece of code with its own types:
``rolled`` groups (formats uniform along the inputs: per-neuron types, the refined mode) are a
loop nest over neurons x inputs, one MAC loop per input group, each reading a constant weight
array [n_g][n_q] (wrap-around programs only reorder the sum; see :mod:`.layout`); ``loop`` groups
(formats varying along the inputs but shared by the neurons: Aster's per-column weight formats and
per-position partial-sum integer bits, which one loop over k cannot express) are a neuron loop
whose body has one statement per input column; ``scalar`` groups (a lone neuron with formats
varying along k) are straight-line code. The code size is therefore linear in the number of
groups (plus the constant arrays) for rolled layers, not in the number of weights.

Parallelism. ``reuse_factor`` R (default 1 = fully parallel, the hardware the cost counts by
default): the MAC loop of a rolled group is unrolled by U = ceil(n_in / R) and pipelined (II=1)
when R > 1, with the weight array partitioned cyclically by U; the neuron loop of a ``loop``
group is unrolled by ceil(n_g / R). Pragmas never change C semantics, so bit-exactness does not
depend on them; :func:`~aster_ext.cost.program_cost` with the same R counts the instantiated
operators. The top function gets INTERFACE pragmas (``ap_ctrl_hs`` block protocol, ``ap_vld``
on x and y, reshaped into one wide port each, as hls4ml's io_parallel does).

Layer kinds. :data:`LAYER_EMITTERS` maps a layer kind to the function that emits its
``void L<i>(const X x[n_in], Y y[n_out])``; the top function only chains those calls through
container buffers, so a new kind (e.g. conv2d computed per output channel with one MAC array
reused over the pixels) is one emit function plus one registry entry.

Constants are never written as decimals or doubles: each raw integer is stored in a plain C
integer array (the smallest of ``signed char``/``short``/``int``/``long long`` that holds the
width; 64-bit limbs ``unsigned long long[L]`` for wider formats) and turned into its ``ap_fixed``
by bit assignment, ``t.range(hi, lo) = limb`` (helper ``fx_raw<T>(limbs...)``), which is exact.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fixedpoint import FixedFormat
from ..program import FixedProgram, LayerProgram
from ..simulate import simulate_raw, validate_program
from .layout import (
    Group,
    check_reuse_factor,
    container,
    dense_groups,
    input_groups,
    lanes,
    layer_layouts,
    neuron_groups,
)

__all__ = ["LAYER_EMITTERS", "c_identifier", "generate_hls", "layer_layouts", "neuron_groups"]

_CPP_KEYWORDS = frozenset(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t
    class compl const constexpr const_cast continue decltype default delete do double dynamic_cast
    else enum explicit export extern false float for friend goto if inline int long main mutable
    namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast return short signed sizeof static static_assert static_cast struct switch
    template this thread_local throw true try typedef typeid typename union unsigned using virtual
    void volatile wchar_t while xor xor_eq""".split()
)

_LIMB = 64
_LIMB_MASK = (1 << _LIMB) - 1
_WRAP_VALUES = 12  # values per line in ROM initialisers

_HELPERS = """\
// FX_HELPER: out-of-line for g++ (compile time stays linear in the number of statements: every
// helper is instantiated once per type combination, and no function grows huge), inlined for HLS.
#ifdef __SYNTHESIS__
#define FX_HELPER inline
#else
#define FX_HELPER __attribute__((noinline))
#endif

// Raw-bit construction of an ap_fixed (exact for any width): limb i holds bits [64i, 64i+63]
// of the two's-complement raw value; the top limb is truncated to the type's width, and limbs
// wholly above it (a constant array read as limbs for its widest type, here read into a narrower
// one: only sign extension) are skipped (a range with lo > hi would reverse the bits).
template <class T>
inline void fx_set_limbs(T &, int) {}
template <class T, class... R>
inline void fx_set_limbs(T &t, int i, unsigned long long v, R... rest) {
  const int lo = 64 * i;
  if (lo > T::width - 1) return;
  const int hi = (lo + 63 < T::width - 1) ? lo + 63 : T::width - 1;
  t.range(hi, lo) = v;
  fx_set_limbs(t, i + 1, rest...);
}
template <class T, class... R>
FX_HELPER T fx_raw(R... limbs) {
#pragma HLS INLINE
  T t;
  fx_set_limbs(t, 0, static_cast<unsigned long long>(limbs)...);
  return t;
}

// Q(u -> T): ap_fixed assignment. When AP_RND drops more fractional bits than the source has
// (F_u - F_T > W_u) the value lies within a quarter lsb of 0 and the result is exactly 0; ap_fixed's
// C simulation asserts (reads a bit beyond the MSB) on that conversion, so it is short-cut here.
template <class T, class U>
inline T fx_q(const U &u) {
#pragma HLS INLINE
  if (T::qmode == AP_RND && (U::width - U::iwidth) - (T::width - T::iwidth) > U::width) return T(0);
  const T t = u;
  return t;
}

// s = Q(Q(w * x -> P) -> S)  (first partial sum)
template <class P, class S, class W, class X>
FX_HELPER S fx_mul(const W &w, const X &x) {
#pragma HLS INLINE
  const P p = fx_q<P>(w * x);
  return fx_q<S>(p);
}

// s = Q(acc + Q(w * x -> P) -> S)  (next partial sum)
template <class P, class S, class A, class W, class X>
FX_HELPER S fx_mac(const A &acc, const W &w, const X &x) {
#pragma HLS INLINE
  const P p = fx_q<P>(w * x);
  return fx_q<S>(acc + p);
}

// a = Q(act(Q(Q(s -> D) + b -> T)) -> O), act = ReLU when RELU else identity
template <class D, class T, class O, bool RELU, class S, class B>
FX_HELPER O fx_finish(const S &s, const B &b) {
#pragma HLS INLINE
  const D d = fx_q<D>(s);
  const T t = fx_q<T>(d + b);
  if (RELU && !(t > 0)) return O(0);
  return fx_q<O>(t);
}

// t = Q(Q(s -> D) + b -> T)  (bias sum of a layer whose activation is an implementation function)
template <class D, class T, class S, class B>
FX_HELPER T fx_bsum(const S &s, const B &b) {
#pragma HLS INLINE
  const D d = fx_q<D>(s);
  return fx_q<T>(d + b);
}
"""


def c_identifier(name: str) -> str:
    """A valid C++ identifier from a program name (non-word characters become '_')."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII) or "net"
    if ident[0].isdigit() or ident in _CPP_KEYWORDS or keyword.iskeyword(ident) or ident.startswith("fx_"):
        ident = "net_" + ident
    return ident


def _comment(text: str) -> str:
    """Text safe inside a // comment (one printable line)."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


class _Types:
    """One typedef per distinct (width, int_bits) with the program's modes."""

    def __init__(self, quant: str, overflow: str) -> None:
        self.quant = quant
        self.overflow = overflow
        self.names: dict[tuple[int, int], str] = {}

    def __call__(self, width: int, int_bits: int) -> str:
        key = (int(width), int(int_bits))
        if key not in self.names:
            i = key[1]
            self.names[key] = f"fx{key[0]}_{'m' if i < 0 else ''}{abs(i)}"
        return self.names[key]

    def typedefs(self) -> list[str]:
        lines = []
        for (w, i), nm in sorted(self.names.items()):
            lines.append(f"typedef {FixedFormat(w, i, self.quant, self.overflow).cpp()} {nm};")
        return lines


def _ll(v: int) -> str:
    """A C++ long long literal for a signed 64-bit value."""
    if v == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return f"{v}LL" if not -(1 << 31) <= v < (1 << 31) else str(v)


def _limbs(v: int, width: int) -> list[str]:
    """Literals of raw ``v`` of a ``width``-bit type: one signed literal, or 64-bit limbs."""
    if width <= _LIMB:
        return [_ll(int(v))]
    u = int(v) % (1 << width)
    n = -(-width // _LIMB)
    return [f"0x{(u >> (_LIMB * i)) & _LIMB_MASK:x}ULL" for i in range(n)]


def _storage(width: int) -> str:
    """Smallest C integer type holding a signed ``width``-bit raw (width <= 64)."""
    for bits, ctype in ((8, "signed char"), (16, "short"), (32, "int")):
        if width <= bits:
            return ctype
    return "long long"


def _rom(name: str, raws: np.ndarray, width: int) -> list[str]:
    """A constant array of raw integers (C integers, never decimals of the fixed-point value).

    ``raws`` is 1-D [n] or 2-D [n, m] (one initialiser line per row); widths > 64 get a last
    dimension of 64-bit limbs."""
    raws = np.asarray(raws, dtype=object)
    rows = raws.reshape(1, -1) if raws.ndim == 1 else raws
    if width <= _LIMB:
        ctype = _storage(width)
        fmt = _ll if width > 32 else str
        vals = [[fmt(int(v)) for v in row] for row in rows]
        suffix = ""
    else:
        ctype = "unsigned long long"
        vals = [["{" + ", ".join(_limbs(int(v), width)) + "}" for v in row] for row in rows]
        suffix = f"[{-(-width // _LIMB)}]"
    dims = "".join(f"[{d}]" for d in raws.shape)
    lines = [f"static const {ctype} {name}{dims}{suffix} = {{"]
    per = _WRAP_VALUES * 4 if width <= _LIMB else max(1, _WRAP_VALUES // (2 * (-(-width // _LIMB))))
    for row in vals:
        body = [", ".join(row[i : i + per]) for i in range(0, len(row), per)]
        if raws.ndim == 1:
            lines += [f"    {b}," for b in body]
        else:
            lines.append("    {" + ",\n     ".join(body) + "},")
    lines.append("};")
    return lines


def _rom_read(name: str, width: int, index: str) -> str:
    if width <= _LIMB:
        return f"{name}{index}"
    return ", ".join(f"{name}{index}[{i}]" for i in range(-(-width // _LIMB)))


@dataclass
class _LayerCode:
    """Namespace-scope code of one layer: constants/typedefs and functions (the last one is
    ``void L<i>(const X x[n_in], Y y[n_out])``)."""

    decls: list[str]
    functions: list[str]


@dataclass
class _Part:
    """An input group as the code sees it: array ``name`` of type ``type`` holding x[inputs]."""

    name: str
    type: str
    inputs: np.ndarray


@dataclass
class _LayerContext:
    li: int
    lp: LayerProgram
    types: _Types
    x_type: str  # element type of the input array
    y_type: str  # element type of the output array
    reuse_factor: int
    program: FixedProgram
    parts: list[_Part] | None = None  # input groups rolled groups read (filled by _emit_dense)
    _columns: list[str] | None = None

    def column_inputs(self) -> list[str]:
        """x[k] narrowed to its own format (an exact conversion of the container element), as the
        per-column statements multiply it; computed once per layer."""
        if self._columns is None:
            fmt = self.program.input_formats(self.li)
            widths, ints = fmt.width.reshape(-1), fmt.int_bits.reshape(-1)
            box = container(self.program, self.li)
            self._columns = [
                f"x[{k}]" if (int(w), int(i)) == box else f"{self.types(int(w), int(i))}(x[{k}])"
                for k, (w, i) in enumerate(zip(widths, ints, strict=True))
            ]
        return self._columns


def _finish_lines(ctx: _LayerContext, r: int, s: str, bexpr: str) -> list[str]:
    """Statements from the final partial sum ``s`` of neuron row ``r`` to ``a`` (its output)."""
    lp, types, li = ctx.lp, ctx.types, ctx.li
    dt = types(lp.dot_t.width[r], lp.dot_t.int_bits[r])
    tt = types(lp.bsum_t.width[r], lp.bsum_t.int_bits[r])
    ot = types(lp.out_t.width[r], lp.out_t.int_bits[r])
    if lp.act_impl is not None:  # exact t -> act input type, impl function, Q(-> out_t)
        return [
            f"const {tt} t = fx_bsum<{dt}, {tt}>({s}, {bexpr});",
            f"const {ot} a = fx_q<{ot}>(L{li}_act(L{li}_act_in_t(t)));",
        ]
    relu = "true" if lp.activation == "relu" else "false"
    return [f"const {ot} a = fx_finish<{dt}, {tt}, {ot}, {relu}>({s}, {bexpr});"]


def _dest(pre: str, neurons: np.ndarray, decls: list[str]) -> str:
    """Output element of loop index j for a group (contiguous neurons need no index array)."""
    r, n_g = int(neurons[0]), int(neurons.size)
    if np.array_equal(neurons, np.arange(r, r + n_g)):
        return "y[j]" if r == 0 else f"y[{r} + j]"
    decls.append(f"static const int {pre}_idx[{n_g}] = {{" + ", ".join(map(str, neurons)) + "};")
    return f"y[{pre}_idx[j]]"


def _unroll_pragmas(u: int, n: int) -> list[str]:
    """Pragmas of a loop of n iterations with u parallel copies: fully unrolled, or unrolled by u
    and pipelined at II=1."""
    if u == n:
        return ["#pragma HLS UNROLL"]
    return [f"#pragma HLS UNROLL factor={u}", "#pragma HLS PIPELINE II=1"]


def _emit_rolled(ctx: _LayerContext, gi: int, group: Group, decls: list[str]) -> list[str]:
    """A group with per-row types: loop nest neurons x (one MAC loop per input group) over one
    weight array per input group (:func:`.layout.input_groups`)."""
    lp, types, li = ctx.lp, ctx.types, ctx.li
    assert ctx.parts is not None
    r, n_g = group.first, group.size
    pre = f"L{li}_g{gi}"
    ww, bw = int(lp.weight_t.width[r, 0]), int(lp.bias_t.width[r])
    wt = types(ww, lp.weight_t.int_bits[r, 0])
    bt = types(bw, lp.bias_t.int_bits[r])
    pt = types(lp.product_t.width[r, 0], lp.product_t.int_bits[r, 0])
    st = types(lp.psum_t.width[r, 0], lp.psum_t.int_bits[r, 0])
    decls += _rom(f"{pre}_b", lp.bias_raw[group.neurons], bw)
    dest = _dest(pre, group.neurons, decls)
    b_read = _rom_read(f"{pre}_b", bw, "[j]")
    pragmas, macs, lanes_total = [f"#pragma HLS ARRAY_PARTITION variable={pre}_b complete"], [], 0
    for q, part in enumerate(ctx.parts):
        n_q = int(part.inputs.size)
        w_name = f"{pre}_w{q}"
        decls += _rom(w_name, lp.weight_raw[np.ix_(group.neurons, part.inputs)], ww)
        u = lanes(n_q, ctx.reuse_factor)
        lanes_total += u
        w_read = _rom_read(w_name, ww, "[j][k]")
        pragmas += [
            f"#pragma HLS ARRAY_PARTITION variable={w_name} complete dim=1",
            f"#pragma HLS ARRAY_PARTITION variable={w_name} "
            + ("complete dim=2" if u == n_q else f"cyclic factor={u} dim=2"),
        ]
        macs += [
            f"    {pre}_mac{q}: for (int k = 0; k < {n_q}; k++) {{",
            *_unroll_pragmas(u, n_q),
            f"      s = fx_mac<{pt}, {st}>(s, fx_raw<{wt}>({w_read}), {part.name}[k]);",
            "    }",
        ]
    args = ", ".join(f"const {p.type} {p.name}[{p.inputs.size}]" for p in ctx.parts)
    return [
        f"// layer {li}, group {gi}: {n_g} neuron(s) from {r}, one type per role (rolled over "
        f"{len(ctx.parts)} input group(s): {n_g} x {lanes_total} multipliers, "
        f"each reused {ctx.reuse_factor}x)",
        f"FX_HELPER void {pre}({args}, {ctx.y_type} y[{lp.n_out}]) {{",
        "#pragma HLS INLINE",
        *pragmas,
        f"  {pre}_neurons: for (int j = 0; j < {n_g}; j++) {{",
        "#pragma HLS UNROLL",
        f"    {st} s = 0;",
        *macs,
        *[f"    {ln}" for ln in _finish_lines(ctx, r, "s", f"fx_raw<{bt}>({b_read})")],
        f"    {dest} = a;",
        "  }",
        "}",
        "",
    ]


def _input_parts(ctx: _LayerContext, decls: list[str], gather: list[str]) -> list[_Part]:
    """The input groups of the layer; each one not the whole container array gets a typedef, a
    local array and the exact copy x -> part in ``gather`` (module docstring of :mod:`.layout`)."""
    li, n_in = ctx.li, ctx.lp.n_in
    groups = input_groups(ctx.program, li, ctx.reuse_factor)
    if len(groups) == 1 and (groups[0].width, groups[0].int_bits) == container(ctx.program, li):
        return [_Part("x", ctx.x_type, np.arange(n_in))]
    parts = []
    for q, g in enumerate(groups):
        name, n_q = f"x{q}", int(g.inputs.size)
        tname = ctx.types(g.width, g.int_bits)
        a = int(g.inputs[0])
        if np.array_equal(g.inputs, np.arange(a, a + n_q)):
            src = f"x[{a} + i]" if a else "x[i]"
        else:
            decls.append(
                f"static const int L{li}_x{q}_idx[{n_q}] = {{" + ", ".join(map(str, g.inputs)) + "};"
            )
            src = f"x[L{li}_x{q}_idx[i]]"
        gather += [
            f"  {tname} {name}[{n_q}];  // inputs whose formats fit <{g.width}, {g.int_bits}>: exact",
            _buffer_pragma(name, n_q, ctx.reuse_factor),
            f"  L{li}_gather{q}: for (int i = 0; i < {n_q}; i++) {{",
            "#pragma HLS UNROLL",
            f"    {name}[i] = {src};",
            "  }",
        ]
        parts.append(_Part(name, tname, g.inputs))
    return parts


def _emit_columns(ctx: _LayerContext, gi: int, group: Group, decls: list[str]) -> list[str]:
    """A group whose formats vary along the inputs: one statement per input column k."""
    lp, types, li = ctx.lp, ctx.types, ctx.li
    r, n_g = group.first, group.size
    neurons = group.neurons
    loop = group.kind == "loop"
    pre = f"L{li}_g{gi}"
    wt = [types(lp.weight_t.width[r, k], lp.weight_t.int_bits[r, k]) for k in range(lp.n_in)]
    ww = [int(lp.weight_t.width[r, k]) for k in range(lp.n_in)]
    bw = int(lp.bias_t.width[r])
    bt = types(bw, lp.bias_t.int_bits[r])
    if loop:
        dest = _dest(pre, neurons, decls)
        for k in range(lp.n_in):
            decls += _rom(f"{pre}_w{k}", lp.weight_raw[neurons, k], ww[k])
        decls += _rom(f"{pre}_b", lp.bias_raw[neurons], bw)
        wexpr = [f"fx_raw<{wt[k]}>({_rom_read(f'{pre}_w{k}', ww[k], '[j]')})" for k in range(lp.n_in)]
        bexpr = f"fx_raw<{bt}>({_rom_read(f'{pre}_b', bw, '[j]')})"
    else:
        dest = f"y[{r}]"
        wexpr = [f"fx_raw<{wt[k]}>({', '.join(_limbs(lp.weight_raw[r, k], ww[k]))})" for k in range(lp.n_in)]
        bexpr = f"fx_raw<{bt}>({', '.join(_limbs(lp.bias_raw[r], bw))})"
    lines: list[str] = []
    xexpr = ctx.column_inputs()
    for k in range(lp.n_in):
        pt = types(lp.product_t.width[r, k], lp.product_t.int_bits[r, k])
        st = types(lp.psum_t.width[r, k], lp.psum_t.int_bits[r, k])
        if k == 0:
            lines.append(f"const {st} s0 = fx_mul<{pt}, {st}>({wexpr[0]}, {xexpr[0]});")
        else:
            lines.append(f"const {st} s{k} = fx_mac<{pt}, {st}>(s{k - 1}, {wexpr[k]}, {xexpr[k]});")
    lines += _finish_lines(ctx, r, f"s{lp.n_in - 1}", bexpr)
    lines.append(f"{dest} = a;")
    what = (
        f"{n_g} neurons from {r} (neuron loop, one statement per input)"
        if loop
        else f"neuron {r} (straight-line)"
    )
    out = [
        f"// layer {li}, group {gi}: {what}",
        f"FX_HELPER void {pre}(const {ctx.x_type} x[{lp.n_in}], {ctx.y_type} y[{lp.n_out}]) {{",
        "#pragma HLS INLINE",
    ]
    if loop:
        pragmas = _unroll_pragmas(lanes(n_g, ctx.reuse_factor), n_g)
        out += [f"  {pre}_neurons: for (int j = 0; j < {n_g}; j++) {{", *pragmas]
        out += [f"    {ln}" for ln in lines] + ["  }"]
    else:
        out += [f"  {ln}" for ln in lines]
    return out + ["}", ""]


def _emit_dense(ctx: _LayerContext) -> _LayerCode:
    """A dense layer: one function per neuron group (:mod:`.layout`) and ``L<i>`` calling them."""
    lp, li = ctx.lp, ctx.li
    decls: list[str] = [f"// layer {li} '{_comment(lp.name)}' constants (raw integers)"]
    functions: list[str] = []
    groups = dense_groups(lp)
    calls: list[str] = []
    gather: list[str] = []
    if any(g.kind == "rolled" for g in groups):
        ctx.parts = _input_parts(ctx, decls, gather)
    for gi, group in enumerate(groups):
        if group.kind == "rolled":
            functions += _emit_rolled(ctx, gi, group, decls)
            calls.append(f"  L{li}_g{gi}({', '.join(p.name for p in ctx.parts or [])}, y);")
        else:
            functions += _emit_columns(ctx, gi, group, decls)
            calls.append(f"  L{li}_g{gi}(x, y);")
    if lp.act_impl is not None:
        decls += _act_impl_code(li, lp)
    kinds = ", ".join(f"{k} {sum(g.kind == k for g in groups)}" for k in ("rolled", "loop", "scalar"))
    functions += [
        f"// layer {li} '{_comment(lp.name)}': dense {lp.n_in} -> {lp.n_out}, {lp.activation}; "
        f"groups: {kinds}",
        f"void L{li}(const {ctx.x_type} x[{lp.n_in}], {ctx.y_type} y[{lp.n_out}]) {{",
        "#pragma HLS INLINE",
        *gather,
        *calls,
        "}",
        "",
    ]
    return _LayerCode(decls, functions)


LAYER_EMITTERS: dict[str, Callable[[_LayerContext], _LayerCode]] = {"dense": _emit_dense}
"""Layer kind -> emitter of ``void L<i>(const X x[n_in], Y y[n_out])`` (module docstring)."""


def layer_kind(lp: LayerProgram) -> str:
    """The kind of a layer program (every program layer is dense today)."""
    return str(getattr(lp, "kind", "dense"))


def _act_impl_code(li: int, lp: LayerProgram) -> list[str]:
    """The layer's activation implementation (one function shared by all neurons, program.py).

    Input type: F_in = act_impl.in_frac fractional bits and the widest bias-sum integer bits, so
    every bias sum converts exactly; output type: F_o = act_impl.out_frac fractional bits, wide
    enough for every raw output (:func:`~aster_ext.simulate.act_impl_bits`), so the function's
    result is exact and only the final assignment to out_t quantises (as in the simulator)."""
    from ..simulate import act_impl_bits

    impl = lp.act_impl
    f_in, f_out = int(impl.in_frac), int(impl.out_frac)
    i_in = int((lp.bsum_t.int_bits + np.maximum(lp.bsum_t.frac - f_in, 0)).max())
    i_in = max(i_in, 1 - f_in)
    _, out_bits = act_impl_bits(lp)
    w_out = max(out_bits, 1)
    in_t, out_t = f"L{li}_act_in_t", f"L{li}_act_out_t"
    return [
        f"// layer {li} activation: {_comment(impl.act.describe())} ({type(impl).__name__})",
        f"typedef ap_fixed<{i_in + f_in}, {i_in}> {in_t};",
        f"typedef ap_fixed<{w_out}, {w_out - f_out}> {out_t};",
        impl.cpp(f"L{li}_act", in_t, out_t),
    ]


def _header_text(program: FixedProgram, ident: str) -> str:
    guard = f"ASTER_EXT_{ident.upper()}_H_"
    return "\n".join(
        [
            f"// {ident}.h -- fixed-point network '{_comment(program.name)}' (generated by aster_ext).",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            '#include "ap_fixed.h"',
            "",
            f"#define N_IN {program.n_in}",
            f"#define N_OUT {program.n_out}",
            "",
            f"typedef {program.input_t.cpp()} in_t;",
            f"typedef {program.output_t.cpp()} out_t;",
            "",
            f"void {ident}(const in_t x[N_IN], out_t y[N_OUT]);",
            "",
            f"#endif  // {guard}",
            "",
        ]
    )


def _buffer_pragma(name: str, n: int, reuse_factor: int) -> str:
    u = lanes(n, reuse_factor)
    if u == n:
        return f"#pragma HLS ARRAY_PARTITION variable={name} complete"
    return f"#pragma HLS ARRAY_PARTITION variable={name} cyclic factor={u}"


def _source_text(program: FixedProgram, ident: str, reuse_factor: int) -> str:
    types = _Types(program.quant, program.overflow)
    decls: list[str] = []
    functions: list[str] = []
    buffers: list[str] = []
    calls: list[str] = []
    n_layers = len(program.layers)
    for li, lp in enumerate(program.layers):
        x_type = "in_t" if li == 0 else f"L{li}_in_t"
        y_type = "out_t" if li == n_layers - 1 else f"L{li + 1}_in_t"
        if li < n_layers - 1:
            w, i = container(program, li + 1)
            fmt = FixedFormat(w, i, program.quant, program.overflow)
            decls.append(f"typedef {fmt.cpp()} {y_type};  // holds every layer {li} output format exactly")
        kind = layer_kind(lp)
        if kind not in LAYER_EMITTERS:
            raise NotImplementedError(f"code generation for layer kind {kind!r} is not implemented")
        code = LAYER_EMITTERS[kind](_LayerContext(li, lp, types, x_type, y_type, reuse_factor, program))
        decls += code.decls
        functions += code.functions
        src = "x" if li == 0 else f"a{li}"
        dst = "y" if li == n_layers - 1 else f"a{li + 1}"
        if li < n_layers - 1:
            buffers += [f"  {y_type} {dst}[{lp.n_out}];", _buffer_pragma(dst, lp.n_out, reuse_factor)]
        calls.append(f"  L{li}({src}, {dst});")
    layouts = ", ".join(layer_layouts(program))
    out = [
        f"// {ident}.cpp -- fixed-point network '{_comment(program.name)}' (generated by aster_ext).",
        f"// Modes: AP_{program.quant}, AP_{program.overflow}. Layer layouts: {layouts}. "
        f"Reuse factor {reuse_factor}.",
        "// Every assignment below quantises/overflows exactly as the program (and the simulator) says.",
        f'#include "{ident}.h"',
        '#include "ap_fixed.h"',
        "",
        "namespace {",
        "",
        _HELPERS,
        *types.typedefs(),
        "",
        *decls,
        "",
        *functions,
        "}  // namespace",
        "",
        f"void {ident}(const in_t x[N_IN], out_t y[N_OUT]) {{",
        "#pragma HLS INTERFACE mode=ap_ctrl_hs port=return",
        "#pragma HLS INTERFACE mode=ap_vld port=x",
        "#pragma HLS INTERFACE mode=ap_vld port=y",
        "#pragma HLS ARRAY_RESHAPE variable=x complete dim=0",
        "#pragma HLS ARRAY_RESHAPE variable=y complete dim=0",
        *buffers,
        *calls,
        "}",
        "",
    ]
    return "\n".join(out)


def testbench_vectors(program: FixedProgram, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random raw inputs over the whole ``in_t`` range (wrap-arounds included) and the
    simulator's raw outputs for them."""
    rng = np.random.default_rng(seed)
    w = int(program.input_t.width)
    nbytes = (w + 7) // 8 + 1
    x = np.empty((n, program.n_in), dtype=object)
    for idx in np.ndindex(x.shape):
        x[idx] = int.from_bytes(rng.bytes(nbytes), "little") % (1 << w) - (1 << (w - 1))
    return x, np.asarray(simulate_raw(program, x), dtype=object)


def _string_table(name: str, rows: np.ndarray, n_cols: str) -> list[str]:
    out = [f"static const char *const {name}[TB_N][{n_cols}] = {{"]
    for row in rows:
        vals = [f'"{int(v)}"' for v in row]
        body = [", ".join(vals[i : i + 16]) for i in range(0, len(vals), 16)]
        out += ["    {" + ",\n     ".join(body) + "},"]
    return out + ["};"]


def _testbench_text(program: FixedProgram, ident: str, n: int, seed: int) -> str:
    x, y = testbench_vectors(program, n, seed)
    return "\n".join(
        [
            f"// {ident}_tb.cpp -- C simulation testbench for {ident} (generated by aster_ext).",
            f"// {n} raw inputs drawn over the whole in_t range (seed {seed}) and the raw outputs the",
            "// aster_ext simulator (the bit-exact reference) gives for them. Prints the raw outputs of",
            "// each sample; returns 0 iff every output bit matches.",
            f'#include "{ident}.h"',
            "#include <cstdio>",
            "",
            f"#define TB_N {n}",
            *_string_table("TB_X", x, "N_IN"),
            *_string_table("TB_Y", y, "N_OUT"),
            "",
            "int main() {",
            "  int bad = 0;",
            "  for (int n = 0; n < TB_N; n++) {",
            "    in_t x[N_IN];",
            "    out_t y[N_OUT];",
            "    for (int i = 0; i < N_IN; i++)",
            "      x[i].range(in_t::width - 1, 0) = ap_int<in_t::width>(TB_X[n][i], 10);",
            f"    {ident}(x, y);",
            "    for (int j = 0; j < N_OUT; j++) {",
            "      ap_int<out_t::width> got;",
            "      got.range(out_t::width - 1, 0) = y[j].range(out_t::width - 1, 0);",
            "      const ap_int<out_t::width> want(TB_Y[n][j], 10);",
            '      std::printf("%s%s", j ? " " : "", got.to_string(10).c_str());',
            "      if (got != want) bad++;",
            "    }",
            '    std::printf("\\n");',
            "  }",
            '  std::printf("%s: %d of %d outputs differ from the simulator\\n",',
            '              bad ? "FAIL" : "PASS", bad, TB_N * N_OUT);',
            "  return bad ? 1 : 0;",
            "}",
            "",
        ]
    )


DEFAULT_PART = "xcu250-figd2104-2L-e"


def _tcl_text(ident: str, part: str, clock_ns: float) -> str:
    return "\n".join(
        [
            f"# Vitis HLS script for {ident} (generated by aster_ext): vitis_hls -f {ident}_hls.tcl",
            f"open_project -reset {ident}_prj",
            f"set_top {ident}",
            f'add_files {ident}.cpp -cflags "-std=c++14"',
            f'add_files -tb {ident}_tb.cpp -cflags "-std=c++14"',
            "open_solution -reset solution1 -flow_target vivado",
            f"set_part {{{part}}}",
            f"create_clock -period {clock_ns:g} -name default",
            "csim_design",
            "csynth_design",
            "exit",
            "",
        ]
    )


def generate_hls(
    program: FixedProgram,
    out_dir: Path,
    reuse_factor: int = 1,
    tb_samples: int = 8,
    part: str = DEFAULT_PART,
    clock_ns: float = 5.0,
) -> dict[str, Path]:
    """Write ``<name>.h``, ``<name>.cpp``, ``<name>_tb.cpp`` and ``<name>_hls.tcl`` into ``out_dir``.

    Returns {"header", "source", "testbench", "tcl"} paths. ``<name>`` is :func:`c_identifier`
    of ``program.name`` (also the top function's name). ``reuse_factor`` (>= 1): each multiplier
    is reused that many times (module docstring). The testbench holds ``tb_samples`` vectors.
    """
    validate_program(program)
    reuse_factor = check_reuse_factor(reuse_factor)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ident = c_identifier(program.name)
    paths = {
        "header": out_dir / f"{ident}.h",
        "source": out_dir / f"{ident}.cpp",
        "testbench": out_dir / f"{ident}_tb.cpp",
        "tcl": out_dir / f"{ident}_hls.tcl",
    }
    paths["header"].write_text(_header_text(program, ident))
    paths["source"].write_text(_source_text(program, ident, reuse_factor))
    paths["testbench"].write_text(_testbench_text(program, ident, tb_samples, 0))
    paths["tcl"].write_text(_tcl_text(ident, part, clock_ns))
    return paths


# ---------------------------------------------------------------------------------------------
# test harnesses (C simulation only)


def _io_function(ident: str, storage: str, n_in: str = "N_IN", n_out: str = "N_OUT") -> str:
    return f"""\
// Reads samples ({n_in} raw in_t integers in decimal, one sample per line), runs {ident},
// prints the {n_out} raw out_t integers in decimal, one sample per line.
{storage}int aster_run_{ident}(std::istream &in, std::ostream &out) {{
  std::string line;
  long long lineno = 0;
  while (std::getline(in, line)) {{
    ++lineno;
    if (line.find_first_not_of(" \\t\\r") == std::string::npos) continue;
    std::istringstream fields(line);
    in_t x[{n_in}];
    out_t y[{n_out}];
    for (int i = 0; i < {n_in}; i++) {{
      std::string tok;
      if (!(fields >> tok)) {{
        std::cerr << "harness: line " << lineno << ": expected " << {n_in} << " raw integers\\n";
        return 2;
      }}
      const ap_int<in_t::width> r(tok.c_str(), 10);
      x[i].range(in_t::width - 1, 0) = r;
    }}
    {ident}(x, y);
    for (int j = 0; j < {n_out}; j++) {{
      ap_int<out_t::width> r;
      r.range(out_t::width - 1, 0) = y[j].range(out_t::width - 1, 0);
      out << (j ? " " : "") << r.to_string(10);
    }}
    out << '\\n';
  }}
  out.flush();
  return 0;
}}
"""


_IO_INCLUDES = "#include <iostream>\n#include <sstream>\n#include <string>\n"


def generate_harness(program: FixedProgram, out_dir: Path) -> Path:
    """Write ``main.cpp``: stdin lines of raw inputs -> top function -> stdout lines of raw outputs.

    Compile it together with ``<name>.cpp`` (the header must be on the include path).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ident = c_identifier(program.name)
    text = (
        f'// Test harness for {ident} (generated by aster_ext).\n#include "{ident}.h"\n{_IO_INCLUDES}\n'
        + _io_function(ident, "static ")
        + "\nint main() {\n  std::ios::sync_with_stdio(false);\n"
        + f"  return aster_run_{ident}(std::cin, std::cout);\n}}\n"
    )
    path = out_dir / "main.cpp"
    path.write_text(text)
    return path


def generate_multi_harness(programs: list[FixedProgram], out_dir: Path) -> Path:
    """One ``main.cpp`` driving several programs (chosen by argv[1] = the program's C name).

    It repeats each program's in_t/out_t in a namespace of its own instead of including the
    headers (their typedefs would clash), so one translation unit serves every program; link it
    with the programs' ``<name>.cpp`` files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    idents = [c_identifier(p.name) for p in programs]
    if len(set(idents)) != len(idents):
        raise ValueError("programs in one harness need distinct names")
    lines = [
        "// Dispatching test harness (generated by aster_ext).",
        '#include "ap_fixed.h"',
        "#include <cstring>",
    ]
    lines.append(_IO_INCLUDES)
    for p, ident in zip(programs, idents, strict=True):
        lines += [
            f"namespace io_{ident} {{",
            f"typedef {p.input_t.cpp()} in_t;",
            f"typedef {p.output_t.cpp()} out_t;",
            "}",
            f"void {ident}(const io_{ident}::in_t x[{p.n_in}], io_{ident}::out_t y[{p.n_out}]);",
            f"namespace io_{ident} {{",
            _io_function(ident, "static ", str(p.n_in), str(p.n_out)).replace(
                f"    {ident}(x, y);", f"    ::{ident}(x, y);"
            ),
            "}",
            "",
        ]
    lines += [
        "int main(int argc, char **argv) {",
        "  std::ios::sync_with_stdio(false);",
        '  if (argc != 2) { std::cerr << "usage: harness PROGRAM\\n"; return 2; }',
    ]
    lines += [
        f'  if (!std::strcmp(argv[1], "{i}")) return io_{i}::aster_run_{i}(std::cin, std::cout);'
        for i in idents
    ]
    lines += ['  std::cerr << "harness: unknown program " << argv[1] << "\\n";', "  return 2;", "}", ""]
    main = out_dir / "main.cpp"
    main.write_text("\n".join(lines))
    return main
