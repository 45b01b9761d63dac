"""HLS C++ (Vivado/Vitis ``ap_fixed``) for a :class:`~aster_ext.program.FixedProgram` (DESIGN §3).

The emitted code implements the program contract statement by statement: each product, partial
sum, dot result, bias sum and activation is a declaration of its own ``ap_fixed`` type, so
``ap_fixed`` assignment performs exactly the quantisation/overflow the simulator models.

Layout. A C++ array has one element type while the program's formats vary per element, so each
layer's output neurons are partitioned into *groups* of identical type signature (the whole row
of weight/product/partial-sum formats plus the dot/bias/bias-sum/output formats):

- a group of several neurons is one loop ``for j`` over its neurons (``#pragma HLS PIPELINE``),
  whose body holds one statement block per input column k, all elements of column k sharing
  the types of column k; the weights of column k are one ROM array per (group, column);
- a group of one neuron is emitted as straight-line scalar code with literal constants.

A layer whose formats are uniform along j (the Aster layout: per-column weight formats, per
partial-sum-position integer bits) is a single loop ("loop"); a layer whose formats vary along j
in every neuron becomes fully unrolled straight-line code ("unrolled"); anything between is
"grouped". Per-neuron formats therefore cost hardware exactly as declared: every group has its
own datapath.

Constants are never written as decimals or doubles: each raw integer is stored in a plain C
integer ROM (``long long`` for widths <= 64, 64-bit limbs ``unsigned long long[L]`` for wider
formats) and turned into its ``ap_fixed`` by bit assignment, ``t.range(hi, lo) = limb``
(helper ``fx_raw<T>(limbs...)``), which is exact for any width.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fixedpoint import FixedFormat
from ..program import FixedProgram, LayerProgram
from ..simulate import validate_program

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
// of the two's-complement raw value; the top limb is truncated to the type's width.
template <class T>
inline void fx_set_limbs(T &, int) {}
template <class T, class... R>
inline void fx_set_limbs(T &t, int i, unsigned long long v, R... rest) {
  const int lo = 64 * i;
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


def neuron_groups(lp: LayerProgram) -> list[np.ndarray]:
    """Neurons of ``lp`` partitioned by identical type signature, in order of first occurrence."""
    cols = [
        lp.weight_t.width,
        lp.weight_t.int_bits,
        lp.product_t.width,
        lp.product_t.int_bits,
        lp.psum_t.width,
        lp.psum_t.int_bits,
    ]
    vecs = [lp.dot_t, lp.bias_t, lp.bsum_t, lp.out_t]
    sig = np.concatenate(
        cols + [v.width[:, None] for v in vecs] + [v.int_bits[:, None] for v in vecs], axis=1
    )
    _, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def layer_layouts(program: FixedProgram) -> list[str]:
    """Per layer: "loop" (one loop), "unrolled" (straight-line) or "grouped (g loops, s scalar)"."""
    out = []
    for lp in program.layers:
        groups = neuron_groups(lp)
        singles = sum(1 for g in groups if g.size == 1)
        if len(groups) == 1 and lp.n_out > 1:
            out.append("loop")
        elif singles == len(groups):
            out.append("unrolled")
        else:
            out.append(f"grouped ({len(groups) - singles} loops, {singles} scalar)")
    return out


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


def _rom(name: str, raws: np.ndarray, width: int) -> list[str]:
    """A constant ROM of raw integers (C integers, never decimals of the fixed-point value)."""
    n = len(raws)
    if width <= _LIMB:
        ctype = "int" if width <= 32 else "long long"
        vals = [_ll(int(v)) if width > 32 else str(int(v)) for v in raws]
        head = f"static const {ctype} {name}[{n}] = {{"
    else:
        nl = -(-width // _LIMB)
        vals = ["{" + ", ".join(_limbs(int(v), width)) + "}" for v in raws]
        head = f"static const unsigned long long {name}[{n}][{nl}] = {{"
    per = _WRAP_VALUES if width <= _LIMB else max(1, _WRAP_VALUES // (2 * (-(-width // _LIMB))))
    lines = [head]
    for i in range(0, n, per):
        lines.append("    " + ", ".join(vals[i : i + per]) + ",")
    lines.append("};")
    return lines


def _rom_read(name: str, width: int, index: str) -> str:
    if width <= _LIMB:
        return f"{name}[{index}]"
    return ", ".join(f"{name}[{index}][{i}]" for i in range(-(-width // _LIMB)))


@dataclass
class _LayerCode:
    roms: list[str]  # constant ROMs (namespace scope)
    struct: list[str]  # the struct holding this layer's outputs (empty for the last layer)
    functions: list[str]  # one function per neuron group
    calls: list[str]  # statements of the top function
    outputs: list[str]  # C expression of each output neuron inside the next layer's functions


def _emit_layer(li: int, lp: LayerProgram, inputs: list[str], types: _Types, last: bool) -> _LayerCode:
    """Code of one layer: a struct for its outputs and one function per neuron group.

    ``inputs[k]`` is the expression of input element k inside a group function (``x[k]`` or a
    member of the previous layer's output struct ``in``).
    """
    roms: list[str] = []
    members: list[str] = []
    functions: list[str] = []
    calls: list[str] = []
    outputs: list[str] = [""] * lp.n_out
    groups = neuron_groups(lp)
    in_param = "const in_t x[N_IN]" if li == 0 else f"const L{li - 1}_out_t &in"
    in_arg = "x" if li == 0 else f"l{li - 1}"
    out_param = "out_t y[N_OUT]" if last else f"L{li}_out_t &out"
    out_arg = "y" if last else f"l{li}"
    calls.append(
        f"  // layer {li} '{_comment(lp.name)}': dense {lp.n_in} -> {lp.n_out}, {lp.activation}; "
        f"{len(groups)} neuron group(s)"
    )
    if not last:
        calls += [f"  L{li}_out_t {out_arg};", f"#pragma HLS DISAGGREGATE variable={out_arg}"]
    for gi, neurons in enumerate(groups):
        r = int(neurons[0])
        n_g = int(neurons.size)
        loop = n_g > 1
        pre = f"L{li}_g{gi}"
        wt = [types(lp.weight_t.width[r, k], lp.weight_t.int_bits[r, k]) for k in range(lp.n_in)]
        ww = [int(lp.weight_t.width[r, k]) for k in range(lp.n_in)]
        bw = int(lp.bias_t.width[r])
        bt = types(bw, lp.bias_t.int_bits[r])
        dt = types(lp.dot_t.width[r], lp.dot_t.int_bits[r])
        tt = types(lp.bsum_t.width[r], lp.bsum_t.int_bits[r])
        ot = types(lp.out_t.width[r], lp.out_t.int_bits[r])
        # where the results go
        if last:
            if not loop:
                dest = f"y[{r}]"
            elif np.array_equal(neurons, np.arange(r, r + n_g)):
                dest = "y[j]" if r == 0 else f"y[{r} + j]"
            else:
                roms += [f"static const int {pre}_idx[{n_g}] = {{" + ", ".join(map(str, neurons)) + "};"]
                dest = f"y[{pre}_idx[j]]"
        elif loop:
            members.append(f"  {ot} g{gi}[{n_g}];")
            dest = f"out.g{gi}[j]"
            for pos, j in enumerate(neurons):
                outputs[int(j)] = f"in.g{gi}[{pos}]"
        else:
            members.append(f"  {ot} n{r};")
            dest = f"out.n{r}"
            outputs[r] = f"in.n{r}"
        # constants and the neuron body
        if loop:
            for k in range(lp.n_in):
                roms += _rom(f"{pre}_w{k}", lp.weight_raw[neurons, k], ww[k])
            roms += _rom(f"{pre}_b", lp.bias_raw[neurons], bw)
            wexpr = [f"fx_raw<{wt[k]}>({_rom_read(f'{pre}_w{k}', ww[k], 'j')})" for k in range(lp.n_in)]
            bexpr = f"fx_raw<{bt}>({_rom_read(f'{pre}_b', bw, 'j')})"
        else:
            wexpr = [
                f"fx_raw<{wt[k]}>({', '.join(_limbs(lp.weight_raw[r, k], ww[k]))})" for k in range(lp.n_in)
            ]
            bexpr = f"fx_raw<{bt}>({', '.join(_limbs(lp.bias_raw[r], bw))})"
        lines: list[str] = []
        for k in range(lp.n_in):
            pt = types(lp.product_t.width[r, k], lp.product_t.int_bits[r, k])
            st = types(lp.psum_t.width[r, k], lp.psum_t.int_bits[r, k])
            if k == 0:
                lines.append(f"const {st} s0 = fx_mul<{pt}, {st}>({wexpr[0]}, {inputs[0]});")
            else:
                lines.append(f"const {st} s{k} = fx_mac<{pt}, {st}>(s{k - 1}, {wexpr[k]}, {inputs[k]});")
        if lp.act_impl is not None:  # exact t -> act input type, impl function, Q(-> out_t)
            lines.append(f"const {tt} t = fx_bsum<{dt}, {tt}>(s{lp.n_in - 1}, {bexpr});")
            lines.append(f"const {ot} a = fx_q<{ot}>(L{li}_act(L{li}_act_in_t(t)));")
        else:
            relu = "true" if lp.activation == "relu" else "false"
            lines.append(f"const {ot} a = fx_finish<{dt}, {tt}, {ot}, {relu}>(s{lp.n_in - 1}, {bexpr});")
        lines.append(f"{dest} = a;")
        what = f"{n_g} neurons starting at {r} (one loop)" if loop else f"neuron {r} (straight-line)"
        functions += [
            f"// layer {li}, group {gi}: {what}",
            f"FX_HELPER void {pre}({in_param}, {out_param}) {{",
            "#pragma HLS INLINE",
        ]
        if loop:
            functions += [f"  {pre}_loop: for (int j = 0; j < {n_g}; j++) {{", "#pragma HLS PIPELINE II=1"]
            functions += [f"    {ln}" for ln in lines] + ["  }"]
        else:
            functions += [f"  {ln}" for ln in lines]
        functions += ["}", ""]
        calls.append(f"  {pre}({in_arg}, {out_arg});")
    struct = [] if last else [f"struct L{li}_out_t {{", *members, "};", ""]
    if lp.act_impl is not None:
        roms += _act_impl_code(li, lp)
    return _LayerCode(roms, struct, functions, calls, outputs)


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


def _source_text(program: FixedProgram, ident: str) -> str:
    types = _Types(program.quant, program.overflow)
    roms: list[str] = []
    structs: list[str] = []
    functions: list[str] = []
    calls: list[str] = []
    inputs = [f"x[{k}]" for k in range(program.n_in)]
    for li, lp in enumerate(program.layers):
        code = _emit_layer(li, lp, inputs, types, last=li == len(program.layers) - 1)
        roms += [f"// layer {li} '{_comment(lp.name)}' constants (raw integers)"] + code.roms
        structs += code.struct
        functions += code.functions
        calls += code.calls
        inputs = code.outputs
    layouts = ", ".join(layer_layouts(program))
    out = [
        f"// {ident}.cpp -- fixed-point network '{_comment(program.name)}' (generated by aster_ext).",
        f"// Modes: AP_{program.quant}, AP_{program.overflow}. Layer layouts: {layouts}.",
        "// Every assignment below quantises/overflows exactly as the program (and the simulator) says.",
        f'#include "{ident}.h"',
        '#include "ap_fixed.h"',
        "",
        "namespace {",
        "",
        _HELPERS,
        *types.typedefs(),
        "",
        "// outputs of each hidden layer (one array per neuron group, one scalar per lone neuron)",
        *structs,
        *roms,
        "",
        *functions,
        "}  // namespace",
        "",
        f"void {ident}(const in_t x[N_IN], out_t y[N_OUT]) {{",
        "#pragma HLS ARRAY_PARTITION variable=x complete",
        "#pragma HLS ARRAY_PARTITION variable=y complete",
        *calls,
        "}",
        "",
    ]
    return "\n".join(out)


def generate_hls(program: FixedProgram, out_dir: Path) -> dict[str, Path]:
    """Write ``<name>.h`` and ``<name>.cpp`` into ``out_dir``; returns {"header": .., "source": ..}.

    ``<name>`` is :func:`c_identifier` of ``program.name`` (also the top function's name).
    """
    validate_program(program)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ident = c_identifier(program.name)
    header = out_dir / f"{ident}.h"
    source = out_dir / f"{ident}.cpp"
    header.write_text(_header_text(program, ident))
    source.write_text(_source_text(program, ident))
    return {"header": header, "source": source}


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
