"""HLS C++ (Vivado/Vitis ``ap_fixed``) for a :class:`~aster_ext.graph_program.program.GraphProgram`.

Output folder (:func:`generate_graph_hls`): ``<name>.h`` (the fixed interface: ``N_IN``,
``N_OUT``, ``in_t``, ``out_t``, ``void <name>(const in_t x[N_IN], out_t y[N_OUT])``, x flattened
in the C order of the ONNX input tensor, y the logits node :func:`~aster_ext.ops.logits_node`),
``<name>.cpp``, ``<name>_tb.cpp`` (C simulation testbench: reads raw inputs from a file, one
sample per line, prints the raw outputs, and compares them with a file of expected raw outputs),
``<name>_tb_in.txt`` / ``<name>_tb_out.txt`` (its default vectors: random raw inputs over the
in_t range and the simulator's raw outputs) and ``<name>_hls.tcl`` (Vitis HLS: ``csim_design``,
``csynth_design``), so ``vitis_hls -f <name>_hls.tcl`` runs as is.

Semantics: exactly :mod:`aster_ext.graph_program.program` (the simulator
:mod:`aster_ext.graph_program.simulate` is the reference).

Storage and per-channel types. A node's output elements have per-channel formats, but a C++
array has one element type: each node's output lives in one *container* array of type
``ap_fixed<I + F, I>`` with I = max integer bits and F = max fractional bits over the node's
element formats. Every element's value is representable in it, so storing is exact and moving
values (flatten, reshape, transpose, concat, relu, max-pool) never rounds. Every *rounding* of
the program is written as an assignment to the channel's declared format: the channels of a
node are partitioned into groups of identical type signature (conv/dense: weight type,
accumulator type, output type; avg-pool: window-sum type, output type; add: output type), one
``typedef ap_fixed<W, I, AP_TRN|AP_RND, AP_WRAP> fx<W>_<I>;`` per distinct format, and each
group is one block of code (an unrolled loop over its channels) using those typedefs:

- conv / dense channel o: ``AT acc = bias (raw, wrapped to AT)``, ``acc += WT(w) * XT_q(x)`` over
  the window, where x is read in its *operand class*'s type XT_q (class = input channel of a conv,
  input element of a dense node; XT_q = the union of the class's element formats, so the cast from
  the container is exact; one loop per class of distinct type). The product has at most
  F_w + F_x = F_acc fractional bits: exact; assigning to ``AT`` wraps, and the chain of wrapped
  partial sums equals the wrapped exact sum mod 2^W whatever the order of the classes), padding
  skipped (reads 0), then ``y = Q(acc -> OT)``. Classes at an F below F_x are summed first in a
  partial sum ``ps`` of their own F (integer bits of AT: exact, same modulus) where that saves
  adder bits (:func:`~aster_ext.graph_program.program.partial_sums`), then ``acc += ps``;
- avg-pool: ``AT s += x`` (exact, wraps to the sum type), ``y = Q(s * CT(c~) -> OT)`` with the
  exact product and the raw 1/k constant (one, one per output position, or one per element,
  whichever ``count_include_pad`` and the pads need);
- add: ``y = Q(a + b -> OT)`` (ap_fixed's sum type is exact, so the result depends only on the
  exact sum, as in the program's "sum at max(F_a, F_b)");
- max-pool: the largest window value (exact comparisons of container values; padding ignored);
  relu: ``x > 0 ? x : 0``;
- table activation: ``y = Q(σ~(x) -> OT)`` with σ~ the implementation's own inline function
  (:meth:`aster_ext.activations.TableImpl.cpp` and its piecewise / segmented twins: ROM, index,
  interpolation in exact integers) reading the operand container (fractional bits F_x) and
  returning a type at its output frac that holds every value it can return.

Q is ap_fixed assignment (``fx_q``, shared with the dense emitter :mod:`.hls`). Constants are
raw C integers turned into their ``ap_fixed`` by bit assignment (``fx_raw``), never decimals.
Compile cost: the number of distinct ap_fixed instantiations is the number of distinct channel
signatures, and the code is one block per group, independent of the number of pixels.

Hardware and pragmas (``reuse_factor`` R). Conv, avg-pool and add nodes are one function whose
pixel loop is ``#pragma HLS PIPELINE II=R`` and holds every channel group's block, unrolled: one
multiply-accumulate array of C_out x K lanes per conv layer (K = C_in/G · kernel size; lane
(o, t) of output channel o's weight width times the width of the operand class it reads), reused over all
output pixels -- the hardware :func:`~aster_ext.graph_program.certify.program_cost` counts;
with R > 1 each operator may be shared by R cycles. Dense nodes are the same array without a
pixel loop (function-level PIPELINE II=R). Weight ROMs are partitioned ``complete`` along the
channels and ``complete`` (R = 1) or ``cyclic factor=ceil(K/R)`` along K. Max-pool, relu and the
element moves are pipelined loops (II=R) over channels and pixels. The top function gets
``ap_ctrl_hs`` and, for x and y, ``ap_vld`` ports reshaped into one wide word when they have <= 64
elements, else ``ap_memory`` (RAM) ports. Intermediate buffers are ``static`` arrays (memories;
not partitioned, so their RAM ports may raise the achieved II above R). Pragmas never change C
semantics: bit-exactness does not depend on them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UnsupportedError
from ..fixedpoint import FixedFormat, wrap_or_saturate
from ..graph_program.program import GraphProgram, container, partial_sums
from ..graph_program.simulate import impl_out_bound, simulate_graph
from ..ir import Op
from ..ops import logits_node
from ..ops.windows import spatial_attrs
from ..program import FormatArray
from .hls import _HELPERS, DEFAULT_PART, _comment, _rom, _rom_read, _Types, c_identifier
from .layout import check_reuse_factor, lanes

__all__ = ["generate_graph_hls", "graph_cpp_matches_simulator", "graph_identifier"]

ALIAS_KINDS = ("flatten", "reshape", "output")  # same elements, same order: no code, no buffer
PORT_RESHAPE_MAX = 64  # top-level arrays up to this size become one wide ap_vld port


def graph_identifier(name: str) -> str:
    """The C++ name of the top function (:func:`~.hls.c_identifier`, never clashing with the
    internal names ``fx_*``, the format typedefs ``fx<W>_<I>``, the header's names or main)."""
    ident = c_identifier(name)
    reserved = ident in ("in_t", "out_t", "N_IN", "N_OUT", "main") or re.match(r"fx\d", ident)
    return "net_" + ident if reserved else ident


def channel_groups(signature: np.ndarray) -> list[np.ndarray]:
    """Rows (channels) of ``signature`` [C, m] grouped by identical row, in order of first use."""
    _, first, inverse = np.unique(signature, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def emitted_nodes(prog: GraphProgram) -> list[Op]:
    """The ops the C++ computes: ancestors of the logits node (input excluded), topological."""
    import networkx as nx

    net = prog.net
    target = logits_node(net)
    keep = nx.ancestors(net.graph, target) | {target}
    return [op for op in net.ops() if op.name in keep and op.kind != "input"]


def _check_program(prog: GraphProgram) -> None:
    if prog.overflow != "WRAP" or prog.quant not in ("TRN", "RND"):
        raise UnsupportedError(f"graph C++: modes AP_{prog.quant}/AP_{prog.overflow} are not supported")
    it = prog.input_t
    if it.width.size and (np.any(it.width != it.width[0]) or np.any(it.int_bits != it.int_bits[0])):
        raise UnsupportedError("graph C++: per-element input formats are not supported (in_t is one type)")
    for op in emitted_nodes(prog):
        if op.kind not in EMITTERS and op.kind not in ALIAS_KINDS:
            raise UnsupportedError(f"{op.describe()}: C++ generation for this node kind is not implemented")


# ---------------------------------------------------------------------------------------------
# emission context


@dataclass
class _Node:
    """Where a node's values live in the generated code."""

    buffer: str  # C array expression
    ctype: str  # container element type
    size: int


@dataclass
class _Emit:
    prog: GraphProgram
    reuse_factor: int
    types: _Types
    nodes: dict[str, _Node] = field(default_factory=dict)
    typedefs: list[str] = field(default_factory=list)
    decls: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def fmt(self, fmt: FormatArray, idx: int) -> str:
        """The typedef of element ``idx``'s format."""
        return self.types(int(fmt.width[idx]), int(fmt.int_bits[idx]))

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.prog.net.op(name).shape)

    def pipeline(self) -> str:
        return f"#pragma HLS PIPELINE II={self.reuse_factor}"


def _spatial2(op: Op, in_shape: tuple[int, ...], kernel: tuple[int, ...]) -> dict[str, int]:
    """Conv/pool geometry normalised to 2-D (1-D: a height of 1)."""
    d = len(in_shape) - 1
    default = kernel if op.kind in ("maxpool", "avgpool") else None
    stride, dil, pb, _ = spatial_attrs(op.attrs, d, default_stride=default)
    out_sp = tuple(op.shape[1:])
    if d == 1:
        in_sp = (1, int(in_shape[1]))
        kernel, stride, dil = (1, kernel[0]), (1, stride[0]), (1, dil[0])
        pb, out_sp = (0, pb[0]), (1, out_sp[0])
    elif d == 2:
        in_sp = tuple(in_shape[1:])
    else:
        raise UnsupportedError(f"{op.describe()}: only 1-D and 2-D windows have graph C++")
    return {
        "H": int(in_sp[0]), "W": int(in_sp[1]), "KH": int(kernel[0]), "KW": int(kernel[1]),
        "SH": int(stride[0]), "SW": int(stride[1]), "DH": int(dil[0]), "DW": int(dil[1]),
        "PT": int(pb[0]), "PL": int(pb[1]), "OH": int(out_sp[0]), "OW": int(out_sp[1]),
    }  # fmt: skip


def _channel_loop(pre: str, chans: np.ndarray, decls: list[str], depth: int) -> list[str]:
    """Header of an unrolled loop over a group's channels (``o`` takes each channel index),
    indented by ``depth`` spaces; the caller closes the brace."""
    n = int(chans.size)
    pad = " " * depth
    index = _index_table(pre, chans, decls, "i")
    head = f"{pad}{pre}: for (int i = 0; i < {n}; i++) {{"
    return [head, "#pragma HLS UNROLL", f"{pad}  const int o = {index};"]


def _index_table(name: str, members: np.ndarray, decls: list[str], counter: str = "j") -> str:
    """The C expression of ``members[counter]``: ``first + counter`` when consecutive, else a
    static table ``<name>_idx`` (declared into ``decls``)."""
    n, first = int(members.size), int(members[0])
    if np.array_equal(members, np.arange(first, first + n)):
        return f"{first} + {counter}"
    decls.append(f"static const int {name}_idx[{n}] = {{" + ", ".join(map(str, members.tolist())) + "};")
    return f"{name}_idx[{counter}]"


def _narrow(xt: str, x: _Node, read: str) -> str:
    """``read`` (an element of x's container) in its class's type ``xt`` (exact: the value was
    produced in a format the class's union holds); no conversion when ``xt`` is the container."""
    return read if xt == x.ctype else f"{xt}({read})"


def _window_guard(g: dict[str, int]) -> list[str]:
    """Statements computing (iy, ix) of window offset (ky, kx) at pixel (oy, ox) and its test."""
    return [
        f"const int iy = oy * {g['SH']} - {g['PT']} + ky * {g['DH']};",
        f"const int ix = ox * {g['SW']} - {g['PL']} + kx * {g['DW']};",
        f"if (iy < 0 || iy >= {g['H']} || ix < 0 || ix >= {g['W']}) continue;",
    ]


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + ln for ln in lines]


# ---------------------------------------------------------------------------------------------
# node emitters: each writes its functions and returns the call statements of the top function


def _linear_groups(nd, out_first: np.ndarray) -> list[np.ndarray]:
    sig = np.stack(
        [
            nd.weight_width, nd.weight_width - nd.weight_frac, nd.acc_t.width, nd.acc_t.int_bits,
            nd.out_t.width[out_first], nd.out_t.int_bits[out_first],
        ],
        axis=1,
    )  # fmt: skip
    return channel_groups(sig)


def _emit_linear(em: _Emit, k: int, op: Op, x: _Node, y: _Node) -> list[str]:
    """conv2d / conv1d / affine: one function; its pixel loop holds one block per channel group
    (module docstring): the C_out x K MAC array of the layer, reused over the pixels."""
    nd = em.prog.nodes[op.name]
    pre = f"fx_n{k}"
    c_out = int(nd.weight_raw.shape[0])
    w_flat = nd.weight_raw.reshape(c_out, -1)
    n_k = int(w_flat.shape[1])
    w_width = int(nd.weight_width.max())
    acc_w = nd.acc_t.width
    b_raw = wrap_or_saturate(np.asarray(nd.bias_raw, dtype=object), acc_w.astype(object), "WRAP")
    b_width = int(acc_w.max())
    em.decls += [f"// node {k} '{_comment(op.name)}' ({op.kind}): raw weights [C_out][K] and biases"]
    em.decls += _rom(f"{pre}_w", w_flat, w_width)
    em.decls += _rom(f"{pre}_b", b_raw, b_width)
    inner = int(np.prod(op.shape[1:])) if len(op.shape) > 1 else 1
    out_first = np.arange(c_out) * inner  # first element of each channel
    u = lanes(n_k, em.reuse_factor)
    part = "complete dim=2" if u == n_k else f"cyclic factor={u} dim=2"
    w_read = _rom_read(f"{pre}_w", w_width, "[o][t]")
    b_read = _rom_read(f"{pre}_b", b_width, "[o]")
    conv = op.kind != "affine"
    if conv:
        g = _spatial2(op, em.shape(op.inputs[0]), tuple(nd.weight_raw.shape[2:]))
        cg = int(nd.weight_raw.shape[1])
        og = c_out // int(op.attrs.get("group", 1))
        what = f"{c_out} x {n_k} MAC array reused over {g['OH']} x {g['OW']} pixels"
    else:
        what = f"{c_out} x {n_k} MAC array"
    lines = [
        f"// node {k} '{_comment(op.name)}' ({op.kind}): {what}",
        f"void {pre}(const {x.ctype} x[{x.size}], {y.ctype} y[{y.size}]) {{",
        f"#pragma HLS ARRAY_PARTITION variable={pre}_w complete dim=1",
        f"#pragma HLS ARRAY_PARTITION variable={pre}_w {part}",
        f"#pragma HLS ARRAY_PARTITION variable={pre}_b complete dim=1",
    ]
    if conv:
        lines += [
            f"  {pre}_px: for (int oy = 0; oy < {g['OH']}; oy++) {{",
            f"    for (int ox = 0; ox < {g['OW']}; ox++) {{",
            em.pipeline(),
        ]
    else:
        lines.append(em.pipeline())
    d = 6 if conv else 2
    # the operand, read class by class (input channel / element) in each class's own union
    # format: an exact narrowing of the container, so each multiplier is W_w + W_class wide.
    # One class: the plain loop over o's inputs; several: one loop per class over its members
    plan = partial_sums(op, em.shape(op.inputs[0]), em.prog.out_t(op.inputs[0]), nd.acc_t, nd.x_frac)
    cls_w, cls_i = plan.cls_width, plan.cls_int_bits
    classes = channel_groups(np.stack([cls_w, cls_i], axis=1))
    operand: list[tuple[str | None, str]] = []
    len_of: list[int] = []
    f_index = [int(np.searchsorted(plan.fvals, cls_w[m[0]] - cls_i[m[0]])) for m in classes]
    for qi, members in enumerate(classes):
        xt = em.types(int(cls_w[members[0]]), int(cls_i[members[0]]))
        len_of.append(int(members.size))
        if len(classes) == 1:
            operand.append((None, xt))
        else:
            operand.append((_index_table(f"{pre}_x{qi}", members, em.decls), xt))
    grouped = conv and int(op.attrs.get("group", 1)) > 1
    for gi, chans in enumerate(_linear_groups(nd, out_first)):
        o0 = int(chans[0])
        wt = em.types(int(nd.weight_width[o0]), int(nd.weight_width[o0] - nd.weight_frac[o0]))
        at = em.fmt(nd.acc_t, o0)
        ot = em.fmt(nd.out_t, int(out_first[o0]))
        gpre = f"{pre}_g{gi}"
        lines.append(
            f"{' ' * d}// group {gi}: {chans.size} channel(s) from {o0}; weights {wt}, accumulator {at}, "
            f"output {ot}"
        )
        lines += _channel_loop(gpre, chans, em.decls, d)
        body = [f"const int cb = (o / {og}) * {cg};  // first input channel of o's group"] if conv else []
        body.append(f"{at} acc = fx_raw<{at}>({b_read});")
        apart = np.flatnonzero(plan.partial[o0])  # F groups summed in a partial sum first
        if np.any(plan.partial[chans] != plan.partial[o0]):  # same acc type and lanes: never
            raise AssertionError(f"{op.describe()}: channels of one group accumulate differently")
        for d in apart.tolist():
            pt = em.types(int(plan.width[o0, d]), int(nd.acc_t.int_bits[o0]))
            body.append(f"{pt} ps{d} = 0;  // classes at F = {int(plan.fvals[d])}: exact, acc's modulus")
        for qi, (index, xt) in enumerate(operand):
            into = f"ps{f_index[qi]}" if f_index[qi] in apart else "acc"
            if conv:
                read = _narrow(xt, x, f"x[(c * {g['H']} + iy) * {g['W']} + ix]")
                skip = [f"  if (c < cb || c >= cb + {cg}) continue;"] if grouped and index is not None else []
                body += [
                    f"{gpre}_mac{qi}: for (int j = 0; j < {cg if index is None else len_of[qi]}; j++) {{",
                    "  const int c = cb + j;" if index is None else f"  const int c = {index};",
                    *skip,
                    f"  for (int ky = 0; ky < {g['KH']}; ky++) {{",
                    f"    for (int kx = 0; kx < {g['KW']}; kx++) {{",
                    *_indent(_window_guard(g), 6),
                    f"      const int t = ((c - cb) * {g['KH']} + ky) * {g['KW']} + kx;",
                    f"      {into} += fx_raw<{wt}>({w_read}) * {read};",
                    "    }",
                    "  }",
                    "}",
                ]
            else:
                body += [
                    f"{gpre}_mac{qi}: for (int j = 0; j < {n_k if index is None else len_of[qi]}; j++) {{",
                    "  const int t = j;" if index is None else f"  const int t = {index};",
                    f"  {into} += fx_raw<{wt}>({w_read}) * {_narrow(xt, x, 'x[t]')};",
                    "}",
                ]
        body += [f"acc += ps{d};" for d in apart.tolist()]
        if conv:
            body.append(f"y[(o * {g['OH']} + oy) * {g['OW']} + ox] = fx_q<{ot}>(acc);")
        else:
            body.append(f"y[o] = fx_q<{ot}>(acc);")
        lines += _indent(body, d + 2) + [" " * d + "}"]
    if conv:
        lines += ["    }", "  }"]
    em.functions += [*lines, "}", ""]
    return [f"  {pre}({x.buffer}, {y.buffer});"]


def _emit_avgpool(em: _Emit, k: int, op: Op, x: _Node, y: _Node) -> list[str]:
    """Window sums and 1/k products of all channels per pixel (one block per channel group)."""
    nd = em.prog.nodes[op.name]
    pre = f"fx_n{k}"
    g = _spatial2(op, em.shape(op.inputs[0]), tuple(int(v) for v in op.attrs["kernel"]))
    c_n = int(op.shape[0])
    n_pix = g["OH"] * g["OW"]
    consts = np.asarray(nd.const_raw, dtype=object).reshape(c_n, n_pix)
    if np.all(consts == consts[0, 0]):  # one divisor everywhere: a single constant
        table, index = consts.reshape(-1)[:1], "[0]"
    elif np.all(consts == consts[:1]):  # the divisor depends on the output position only
        table, index = consts[0], "[p]"
    else:
        table, index = consts.reshape(-1), f"[o * {n_pix} + p]"
    c_width = max(int(v).bit_length() for v in table) + 1
    ct = em.types(c_width, c_width - int(nd.const_frac))
    em.decls += [f"// node {k} '{_comment(op.name)}' (avgpool): raw constants c~ = Q_RND(1/k)"]
    em.decls += _rom(f"{pre}_c", table, c_width)
    c_read = _rom_read(f"{pre}_c", c_width, index)
    out_first = np.arange(c_n) * n_pix
    sig = np.stack(
        [nd.acc_t.width, nd.acc_t.int_bits, nd.out_t.width[out_first], nd.out_t.int_bits[out_first]], axis=1
    )
    lines = [
        f"// node {k} '{_comment(op.name)}' (avgpool): {c_n} window sums and 1/k products per pixel",
        f"void {pre}(const {x.ctype} x[{x.size}], {y.ctype} y[{y.size}]) {{",
        f"  {pre}_px: for (int oy = 0; oy < {g['OH']}; oy++) {{",
        f"    for (int ox = 0; ox < {g['OW']}; ox++) {{",
        em.pipeline(),
        f"      const int p = oy * {g['OW']} + ox;",
    ]
    for gi, chans in enumerate(channel_groups(sig)):
        o0 = int(chans[0])
        at, ot = em.fmt(nd.acc_t, o0), em.fmt(nd.out_t, int(out_first[o0]))
        gpre = f"{pre}_g{gi}"
        lines.append(f"      // group {gi}: {chans.size} channel(s) from {o0}; sum {at}, 1/k {ct}, out {ot}")
        lines += _channel_loop(gpre, chans, em.decls, 6)
        body = [
            f"{at} s = 0;",
            f"{gpre}_win: for (int ky = 0; ky < {g['KH']}; ky++) {{",
            f"  for (int kx = 0; kx < {g['KW']}; kx++) {{",
            *_indent(_window_guard(g), 4),
            f"    s += x[(o * {g['H']} + iy) * {g['W']} + ix];",
            "  }",
            "}",
            f"y[o * {n_pix} + p] = fx_q<{ot}>(s * fx_raw<{ct}>({c_read}));",
        ]
        lines += _indent(body, 8) + ["      }"]
    em.functions += [*lines, "    }", "  }", "}", ""]
    return [f"  {pre}({x.buffer}, {y.buffer});"]


def _emit_maxpool(em: _Emit, k: int, op: Op, x: _Node, y: _Node) -> list[str]:
    pre = f"fx_n{k}"
    g = _spatial2(op, em.shape(op.inputs[0]), tuple(int(v) for v in op.attrs["kernel"]))
    c_n = int(op.shape[0])
    em.functions += [
        f"// node {k} '{_comment(op.name)}' (maxpool): the largest window value, exact in the container",
        f"void {pre}(const {x.ctype} x[{x.size}], {y.ctype} y[{y.size}]) {{",
        f"  {pre}_ch: for (int o = 0; o < {c_n}; o++) {{",
        f"    {pre}_px: for (int oy = 0; oy < {g['OH']}; oy++) {{",
        f"      for (int ox = 0; ox < {g['OW']}; ox++) {{",
        em.pipeline(),
        f"        {x.ctype} m = 0;",
        "        bool any = false;",
        f"        {pre}_win: for (int ky = 0; ky < {g['KH']}; ky++) {{",
        f"          for (int kx = 0; kx < {g['KW']}; kx++) {{",
        *_indent(_window_guard(g), 12),
        f"            const {x.ctype} v = x[(o * {g['H']} + iy) * {g['W']} + ix];",
        "            if (!any || v > m) m = v;",
        "            any = true;",
        "          }",
        "        }",
        f"        y[(o * {g['OH']} + oy) * {g['OW']} + ox] = m;",
        "      }",
        "    }",
        "  }",
        "}",
        "",
    ]
    return [f"  {pre}({x.buffer}, {y.buffer});"]


def _emit_add(em: _Emit, k: int, op: Op, xs: list[_Node], y: _Node) -> list[str]:
    """Exact sums of all channels per pixel, each assigned to its channel's format."""
    nd = em.prog.nodes[op.name]
    pre = f"fx_n{k}"
    c_n = int(op.shape[0]) if op.shape else 1
    n_pix = y.size // c_n
    a, b = xs
    head = [
        f"// node {k} '{_comment(op.name)}' (add): {c_n} adders reused over {n_pix} pixel(s)",
        f"void {pre}(const {a.ctype} a[{a.size}], const {b.ctype} b[{b.size}], {y.ctype} y[{y.size}]) {{",
    ]
    _emit_channel_assignments(em, pre, nd.out_t, c_n, n_pix, head, "a[j] + b[j]", "exact sum")
    return [f"  {pre}({a.buffer}, {b.buffer}, {y.buffer});"]


def _emit_channel_assignments(
    em: _Emit, pre: str, out_t: FormatArray, c_n: int, n_pix: int, head: list[str], expr: str, what: str
) -> None:
    """A function (``head``: its comment and signature) whose pixel loop assigns ``expr`` (of the
    element index j) to every channel's own format, one unrolled block per channel group."""
    out_first = np.arange(c_n) * n_pix
    sig = np.stack([out_t.width[out_first], out_t.int_bits[out_first]], axis=1)
    lines = [*head, f"  {pre}_px: for (int p = 0; p < {n_pix}; p++) {{", em.pipeline()]
    for gi, chans in enumerate(channel_groups(sig)):
        ot = em.fmt(out_t, int(out_first[chans[0]]))
        lines.append(f"    // group {gi}: {chans.size} channel(s) from {chans[0]}; {what} -> {ot}")
        lines += _channel_loop(f"{pre}_g{gi}", chans, em.decls, 4)
        lines += [f"      const int j = o * {n_pix} + p;", f"      y[j] = fx_q<{ot}>({expr});", "    }"]
    em.functions += [*lines, "  }", "}", ""]


def _emit_relu(em: _Emit, k: int, op: Op, x: _Node, y: _Node) -> list[str]:
    pre = f"fx_n{k}"
    em.functions += [
        f"// node {k} '{_comment(op.name)}' (relu): max(x, 0), exact",
        f"void {pre}(const {x.ctype} x[{x.size}], {y.ctype} y[{y.size}]) {{",
        f"  {pre}_px: for (int j = 0; j < {y.size}; j++) {{",
        em.pipeline(),
        f"    y[j] = x[j] > 0 ? {y.ctype}(x[j]) : {y.ctype}(0);",
        "  }",
        "}",
        "",
    ]
    return [f"  {pre}({x.buffer}, {y.buffer});"]


def _emit_act(em: _Emit, k: int, op: Op, x: _Node, y: _Node) -> list[str]:
    """relu, or a table activation: σ~ (the implementation's own inline function, reading the
    operand container, whose fractional bits are the alignment F_x) assigned to each channel's
    format, one implementation unit per channel reused over the pixels."""
    nd = em.prog.nodes[op.name]
    if nd.act_impl is None:
        return _emit_relu(em, k, op, x, y)
    impl = nd.act_impl
    pre = f"fx_n{k}"
    c_n = int(op.shape[0]) if op.shape else 1
    n_pix = y.size // c_n
    x_w, x_i = container(em.prog.out_t(op.inputs[0]))
    if x_w - x_i != nd.x_frac:
        raise UnsupportedError(f"{op.describe()}: operand frac {x_w - x_i} is not its alignment {nd.x_frac}")
    o_w = (impl_out_bound(impl, 1 << (x_w - 1)) - 1).bit_length() + 1  # holds σ~ of any container value
    tab_t = f"{pre}_sigma_t"
    em.decls += [f"typedef ap_fixed<{o_w}, {o_w - int(impl.out_frac)}> {tab_t};  // node {k}: σ~ exactly"]
    em.functions += [impl.cpp(f"{pre}_sigma", x.ctype, tab_t)]
    head = [
        f"// node {k} '{_comment(op.name)}' ({op.attrs['fn']}): {c_n} unit(s) reused over {n_pix} pixel(s)",
        f"void {pre}(const {x.ctype} x[{x.size}], {y.ctype} y[{y.size}]) {{",
    ]
    _emit_channel_assignments(em, pre, nd.out_t, c_n, n_pix, head, f"{pre}_sigma(x[j])", "σ~")
    return [f"  {pre}({x.buffer}, {y.buffer});"]


def _emit_transpose(em: _Emit, k: int, op: Op, x: _Node, y: _Node) -> list[str]:
    """Nested loops over the output axes; the source index uses the permuted input strides."""
    pre = f"fx_n{k}"
    in_shape = em.shape(op.inputs[0])
    perm = tuple(int(p) for p in op.attrs["perm"])
    strides = [int(np.prod(in_shape[a + 1 :])) for a in range(len(in_shape))]
    out_shape = [in_shape[p] for p in perm]
    src = " + ".join(f"i{a} * {strides[p]}" for a, p in enumerate(perm)) or "0"
    lines = [
        f"// node {k} '{_comment(op.name)}' (transpose, perm {perm}): element moves, exact",
        f"void {pre}(const {x.ctype} x[{x.size}], {y.ctype} y[{y.size}]) {{",
        "  int j = 0;",
    ]
    for a, n in enumerate(out_shape):
        lines.append("  " * (a + 1) + f"{pre}_a{a}: for (int i{a} = 0; i{a} < {n}; i{a}++) {{")
    depth = len(out_shape) + 1
    lines += ["  " * depth + em.pipeline().strip(), "  " * depth + f"y[j++] = x[{src}];"]
    lines += ["  " * (a + 1) + "}" for a in reversed(range(len(out_shape)))]
    em.functions += [*lines, "}", ""]
    return [f"  {pre}({x.buffer}, {y.buffer});"]


def _emit_concat(em: _Emit, k: int, op: Op, xs: list[_Node], y: _Node) -> list[str]:
    pre = f"fx_n{k}"
    axis = int(op.attrs["axis"])
    out_shape = tuple(op.shape)
    outer = int(np.prod(out_shape[:axis]))
    inner = int(np.prod(out_shape[axis:]))
    params = ", ".join(f"const {x.ctype} x{i}[{x.size}]" for i, x in enumerate(xs))
    lines = [
        f"// node {k} '{_comment(op.name)}' (concat, axis {axis}): element moves, exact",
        f"void {pre}({params}, {y.ctype} y[{y.size}]) {{",
    ]
    off = 0
    for i, name in enumerate(op.inputs):
        n_i = int(np.prod(em.shape(name)[axis:]))
        lines += [
            f"  {pre}_x{i}: for (int q = 0; q < {outer}; q++) {{",
            f"    for (int t = 0; t < {n_i}; t++) {{",
            em.pipeline(),
            f"      y[q * {inner} + {off} + t] = x{i}[q * {n_i} + t];",
            "    }",
            "  }",
        ]
        off += n_i
    em.functions += [*lines, "}", ""]
    return [f"  {pre}({', '.join(x.buffer for x in xs)}, {y.buffer});"]


EMITTERS: dict[str, Callable] = {
    "conv2d": _emit_linear,
    "conv1d": _emit_linear,
    "affine": _emit_linear,
    "avgpool": _emit_avgpool,
    "maxpool": _emit_maxpool,
    "add": _emit_add,
    "act": _emit_act,
    "transpose": _emit_transpose,
    "concat": _emit_concat,
}
"""Node kind -> emitter (module docstring); multi-operand kinds take the list of operands."""
MULTI_OPERAND = ("add", "concat")


# ---------------------------------------------------------------------------------------------
# files


def _port_pragmas(port: str, n: int) -> list[str]:
    if n <= PORT_RESHAPE_MAX:
        return [
            f"#pragma HLS INTERFACE mode=ap_vld port={port}",
            f"#pragma HLS ARRAY_RESHAPE variable={port} complete dim=0",
        ]
    return [f"#pragma HLS INTERFACE mode=ap_memory port={port}"]


def _io_types(prog: GraphProgram) -> tuple[FixedFormat, FixedFormat, str]:
    target = logits_node(prog.net)
    w_in, i_in = int(prog.input_t.width[0]), int(prog.input_t.int_bits[0])
    w_out, i_out = container(prog.out_t(target))
    q, ov = prog.quant, prog.overflow
    return FixedFormat(w_in, i_in, q, ov), FixedFormat(w_out, i_out, q, ov), target


def _header_text(prog: GraphProgram, ident: str) -> str:
    in_f, out_f, target = _io_types(prog)
    guard = f"ASTER_EXT_{ident.upper()}_H_"
    n_out = int(np.prod(prog.net.op(target).shape))
    return "\n".join(
        [
            f"// {ident}.h -- fixed-point network '{_comment(prog.net.name)}' (generated by aster_ext).",
            f"// x: the ONNX input {tuple(prog.net.input_shape)} flattened in C order; y: node "
            f"'{_comment(target)}' (out_t holds every output channel's format exactly).",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            '#include "ap_fixed.h"',
            "",
            f"#define N_IN {int(np.prod(prog.net.input_shape))}",
            f"#define N_OUT {n_out}",
            "",
            f"typedef {in_f.cpp()} in_t;",
            f"typedef {out_f.cpp()} out_t;",
            "",
            f"void {ident}(const in_t x[N_IN], out_t y[N_OUT]);",
            "",
            f"#endif  // {guard}",
            "",
        ]
    )


def _source_text(prog: GraphProgram, ident: str, reuse_factor: int) -> str:
    em = _Emit(prog, reuse_factor, _Types(prog.quant, prog.overflow))
    net = prog.net
    n_in = int(np.prod(net.input_shape))
    em.nodes[net.input_name] = _Node("x", "in_t", n_in)
    for k, op in enumerate(emitted_nodes(prog)):
        srcs = [em.nodes[i] for i in op.inputs]
        size = int(np.prod(op.shape))
        if op.kind in ALIAS_KINDS or (op.kind == "act" and op.attrs["fn"] == "identity"):
            em.nodes[op.name] = srcs[0]
            continue
        w, i = container(prog.out_t(op.name))
        ctype = f"fx_n{k}_t"
        em.typedefs.append(
            f"typedef {FixedFormat(w, i, prog.quant, prog.overflow).cpp()} {ctype};  "
            f"// node {k} '{_comment(op.name)}' {op.kind} {tuple(op.shape)}: holds every channel format"
        )
        y = _Node(f"fx_n{k}_y", ctype, size)
        em.buffers += [f"  static {ctype} {y.buffer}[{size}];"]
        emit = EMITTERS[op.kind]
        em.calls += emit(em, k, op, srcs if op.kind in MULTI_OPERAND else srcs[0], y)
        em.nodes[op.name] = y
    _, _, target = _io_types(prog)
    res = em.nodes[target]
    n_out = res.size
    out = [
        f"// {ident}.cpp -- fixed-point network '{_comment(net.name)}' (generated by aster_ext, graph "
        "program).",
        f"// Modes: AP_{prog.quant}, AP_{prog.overflow}. Reuse factor {reuse_factor}. Every rounding of the "
        "program is an assignment to a per-channel typedef below (aster_ext/codegen/graph_hls.py).",
        f'#include "{ident}.h"',
        '#include "ap_fixed.h"',
        "",
        "namespace {",
        "",
        _HELPERS,
        "// formats of weights, accumulators, window sums, 1/k constants and rounded outputs",
        *em.types.typedefs(),
        "// containers: one array type per node",
        *em.typedefs,
        "",
        *em.decls,
        "",
        *em.functions,
        "}  // namespace",
        "",
        f"void {ident}(const in_t x[N_IN], out_t y[N_OUT]) {{",
        "#pragma HLS INTERFACE mode=ap_ctrl_hs port=return",
        *_port_pragmas("x", n_in),
        *_port_pragmas("y", n_out),
        "  // node outputs (static: memories in hardware, off the stack in C simulation)",
        *em.buffers,
        *em.calls,
        "  out_copy: for (int j = 0; j < N_OUT; j++) {",
        "#pragma HLS PIPELINE II=1",
        f"    y[j] = {res.buffer}[j];  // exact: out_t is node '{_comment(target)}''s container",
        "  }",
        "}",
        "",
    ]
    return "\n".join(out)


def _testbench_text(ident: str) -> str:
    return f"""\
// {ident}_tb.cpp -- C simulation testbench for {ident} (generated by aster_ext).
// Usage: {ident}_tb [INPUT [EXPECTED]]. INPUT: one sample per line, N_IN raw in_t integers in
// decimal (the bits of the ap_fixed as a signed integer); "-" reads stdin. Prints the N_OUT raw
// out_t integers of each sample, one line per sample. EXPECTED (default {ident}_tb_out.txt when
// INPUT is defaulted to {ident}_tb_in.txt): raw outputs of the aster_ext simulator (the bit-exact
// reference); then a PASS/FAIL line follows and the exit code is 1 on any difference.
#include "{ident}.h"
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

static bool next_line(std::istream &in, std::string &line) {{
  while (std::getline(in, line))
    if (line.find_first_not_of(" \\t\\r") != std::string::npos) return true;
  return false;
}}

int main(int argc, char **argv) {{
  std::ios::sync_with_stdio(false);
  const char *in_path = argc > 1 ? argv[1] : "{ident}_tb_in.txt";
  const char *ref_path = argc > 2 ? argv[2] : (argc > 1 ? 0 : "{ident}_tb_out.txt");
  std::ifstream fin, fref;
  std::istream *in = &std::cin;
  if (std::strcmp(in_path, "-") != 0) {{
    fin.open(in_path);
    if (!fin) {{ std::cerr << "{ident}_tb: cannot read " << in_path << "\\n"; return 2; }}
    in = &fin;
  }}
  if (ref_path) {{
    fref.open(ref_path);
    if (!fref) {{ std::cerr << "{ident}_tb: cannot read " << ref_path << "\\n"; return 2; }}
  }}
  static in_t x[N_IN];
  static out_t y[N_OUT];
  std::string line, ref;
  long long n = 0, bad = 0;
  while (next_line(*in, line)) {{
    ++n;
    std::istringstream fields(line);
    for (int i = 0; i < N_IN; i++) {{
      std::string tok;
      if (!(fields >> tok)) {{
        std::cerr << "{ident}_tb: sample " << n << ": expected " << N_IN << " raw integers\\n";
        return 2;
      }}
      x[i].range(in_t::width - 1, 0) = ap_int<in_t::width>(tok.c_str(), 10);
    }}
    {ident}(x, y);
    std::istringstream want;
    if (ref_path) {{
      if (!next_line(fref, ref)) {{ std::cerr << "{ident}_tb: " << ref_path << " is short\\n"; return 2; }}
      want.str(ref);
    }}
    for (int j = 0; j < N_OUT; j++) {{
      ap_int<out_t::width> got;
      got.range(out_t::width - 1, 0) = y[j].range(out_t::width - 1, 0);
      std::cout << (j ? " " : "") << got.to_string(10);
      if (ref_path) {{
        std::string tok;
        if (!(want >> tok) || ap_int<out_t::width>(tok.c_str(), 10) != got) bad++;
      }}
    }}
    std::cout << "\\n";
  }}
  if (ref_path) {{
    std::cout << (bad ? "FAIL" : "PASS") << ": " << bad << " of " << n * N_OUT
              << " outputs differ from the simulator\\n";
    return bad ? 1 : 0;
  }}
  return 0;
}}
"""


def _tcl_text(ident: str, part: str, clock_ns: float) -> str:
    return "\n".join(
        [
            f"# Vitis HLS script for {ident} (generated by aster_ext): vitis_hls -f {ident}_hls.tcl",
            f"open_project -reset {ident}_prj",
            f"set_top {ident}",
            f'add_files {ident}.cpp -cflags "-std=c++14"',
            f'add_files -tb {ident}_tb.cpp -cflags "-std=c++14"',
            f"add_files -tb {ident}_tb_in.txt",
            f"add_files -tb {ident}_tb_out.txt",
            "open_solution -reset solution1 -flow_target vivado",
            f"set_part {{{part}}}",
            f"create_clock -period {clock_ns:g} -name default",
            "csim_design",
            "csynth_design",
            "exit",
            "",
        ]
    )


def raw_inputs_to_values(prog: GraphProgram, x_raw: np.ndarray) -> np.ndarray:
    """Doubles whose in_t quantisation gives exactly ``x_raw`` (raw·2^-F; |raw| < 2^53 required)."""
    raw = np.asarray(x_raw, dtype=object)
    if raw.size and max(abs(int(v)) for v in raw.reshape(-1)) >= 1 << 53:
        raise ValueError("raw inputs beyond 2^53 have no exact double")
    f = int(prog.input_t.frac[0])
    return np.ldexp(raw.astype(np.float64), -f)


def simulate_outputs(prog: GraphProgram, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw in_t inputs [B, N_IN], raw out_t outputs [B, N_OUT]) of the simulator on doubles x:
    the logits node's raw values brought to out_t's fractional bits (an exact left shift)."""
    _, out_f, target = _io_types(prog)
    tr = simulate_graph(prog, x)
    x_raw = np.asarray(tr.raw[prog.net.input_name], dtype=object)
    y = np.asarray(tr.raw[target], dtype=object)
    shift = (out_f.frac_bits - prog.out_t(target).frac).astype(object)
    return x_raw, y * (2 ** shift)[None, :]


def testbench_vectors(prog: GraphProgram, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random raw inputs over the in_t range (wrap-arounds inside included; at most 53 bits)
    and the simulator's raw outputs for them."""
    rng = np.random.default_rng(seed)
    w = min(int(prog.input_t.width[0]), 53)
    n_in = int(np.prod(prog.net.input_shape))
    raw = rng.integers(-(1 << (w - 1)), 1 << (w - 1), size=(n, n_in), dtype=np.int64).astype(object)
    x_raw, y = simulate_outputs(prog, raw_inputs_to_values(prog, raw))
    if not np.array_equal(x_raw, raw):  # pragma: no cover - exact by construction
        raise AssertionError("testbench inputs did not survive the in_t round trip")
    return x_raw, y


def _rows_text(rows: np.ndarray) -> str:
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in rows)


def generate_graph_hls(
    prog: GraphProgram,
    out_dir: Path,
    name: str = "net",
    reuse_factor: int = 1,
    tb_samples: int = 8,
    part: str = DEFAULT_PART,
    clock_ns: float = 5.0,
) -> list[Path]:
    """Write ``<name>.h``, ``<name>.cpp``, ``<name>_tb.cpp``, ``<name>_hls.tcl`` and the testbench
    vectors ``<name>_tb_in.txt`` / ``<name>_tb_out.txt`` into ``out_dir`` (created if needed;
    files of these names are overwritten). ``<name>`` is :func:`graph_identifier` of ``name``
    (also the top function's name). Returns the paths in that order. UnsupportedError (one
    line) for what the emitter does not cover: per-element input formats, modes other than
    AP_TRN/AP_RND with AP_WRAP, node kinds without an emitter."""
    reuse_factor = check_reuse_factor(reuse_factor)
    _check_program(prog)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ident = graph_identifier(name)
    header, source = _header_text(prog, ident), _source_text(prog, ident, reuse_factor)
    x_raw, y_raw = testbench_vectors(prog, tb_samples)
    files = [
        (f"{ident}.h", header),
        (f"{ident}.cpp", source),
        (f"{ident}_tb.cpp", _testbench_text(ident)),
        (f"{ident}_hls.tcl", _tcl_text(ident, part, clock_ns)),
        (f"{ident}_tb_in.txt", _rows_text(x_raw)),
        (f"{ident}_tb_out.txt", _rows_text(y_raw)),
    ]
    paths = []
    for fname, text in files:
        p = out_dir / fname
        p.write_text(text)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------
# bit-exactness check


def check_points(lower: np.ndarray, upper: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, str]:
    """Doubles to compare on: ``n`` uniform points of the box, ``n`` random corners, the two
    extreme corners, and n // 4 points of the box scaled 3x about its centre (wrap-around paths).
    Returns (points [m, n_in], a description)."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    rand = lo + (hi - lo) * rng.random((n, lo.size))
    corners = np.where(rng.random((n, lo.size)) < 0.5, lo, hi)
    mid = (lo + hi) / 2
    far = mid + 3.0 * (rand[: max(n // 4, 1)] - mid)
    pts = np.vstack([rand, corners, lo[None], hi[None], far])
    return pts, f"{n} random + {n + 2} corners + {far.shape[0]} points of the box scaled 3x"


def graph_cpp_matches_simulator(
    prog: GraphProgram,
    out_dir: Path,
    lower: np.ndarray,
    upper: np.ndarray,
    seed: int = 0,
    n: int = 200,
    name: str = "net",
    progress: Callable[[str], None] | None = None,
) -> tuple[bool, str]:
    """Compile ``out_dir``'s ``<name>.cpp`` with its testbench (g++ -O1, ap_types headers), run it
    on :func:`check_points` of the box [lower, upper] and compare every raw output bit with
    :func:`~aster_ext.graph_program.simulate.simulate_graph`. Returns (bit-exact, a one-line
    summary naming the first mismatch, if any)."""
    from ..progress import phase

    ident = graph_identifier(name)
    out_dir = Path(out_dir)
    pts, what = check_points(lower, upper, n, seed)
    with tempfile.TemporaryDirectory(prefix="aster-ext-graph-cpp-") as tmp:
        with phase(progress, f"verify: compiling {ident}.cpp with g++ -O1 (ap_types)"):
            binary = compile_graph_testbench(out_dir, Path(tmp) / "tb", name)
        with phase(progress, f"verify: running the C++ on {len(pts)} inputs"):
            return compare_with_simulator(prog, binary, pts, what)


def compile_graph_testbench(out_dir: Path, binary: Path, name: str = "net") -> Path:
    """``<name>.cpp`` + ``<name>_tb.cpp`` of ``out_dir`` compiled (g++ -O1, one job) into ``binary``."""
    from .compile import compile_harness

    ident = graph_identifier(name)
    out_dir = Path(out_dir)
    return compile_harness([out_dir / f"{ident}.cpp", out_dir / f"{ident}_tb.cpp"], binary, opt="-O1", jobs=1)


def compare_with_simulator(
    prog: GraphProgram, binary: Path, x: np.ndarray, what: str = ""
) -> tuple[bool, str]:
    """Run a compiled testbench on doubles ``x`` [B, N_IN] (quantised to in_t by the simulator)
    and compare its raw outputs with the simulator's, bit for bit. (bit-exact, one-line summary)."""
    from .compile import run_harness

    x_raw, y_sim = simulate_outputs(prog, x)
    y_cpp = run_harness(binary, x_raw, args=["-"])
    what = f" ({what})" if what else ""
    if y_cpp.shape != y_sim.shape:
        return False, f"C++ printed {y_cpp.shape[1]} outputs per sample, the program has {y_sim.shape[1]}"
    diff = np.argwhere(y_cpp != y_sim)
    if diff.size:
        b, j = (int(v) for v in diff[0])
        return False, (
            f"MISMATCH on {len({int(r) for r in diff[:, 0]})} of {len(x_raw)} inputs{what}; first: "
            f"input {b}, output {j}: C++ raw {y_cpp[b, j]} vs simulator raw {y_sim[b, j]}"
        )
    return True, f"bit-exact on {len(x_raw)} inputs{what}"


class CompiledGraphLogits:
    """``logits_of`` of the compiled C++ in ``out_dir``: doubles xs [B, N_IN] -> logits [B, N_OUT].

    Compiles ``<name>.cpp`` + testbench once (g++ -O1, a private temp folder removed with the
    object). Inputs are brought to in_t by the simulator's input quantisation (the same raw
    integers the testbench of ``graph_cpp_matches_simulator`` is fed); the C++'s raw out_t integers
    r become r · 2^-F_out, exact in float64 up to 53 significant bits and otherwise rounded exactly
    as the simulator's values are (scaling by a power of two commutes with rounding). ``overflows``
    counts the wrapped assignments the simulator saw on the same inputs (the C++ cannot report
    them; it is bit-exact with the simulator where verify checks it)."""

    def __init__(self, prog: GraphProgram, out_dir: Path, name: str = "net") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="aster-ext-graph-cpp-")
        self.prog = prog
        self.binary = compile_graph_testbench(Path(out_dir), Path(self._tmp.name) / "tb", name)
        _, out_f, _ = _io_types(prog)
        self.scale = 2.0 ** -int(out_f.frac_bits)
        self.overflows = 0

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        from .compile import run_harness

        tr = simulate_graph(self.prog, np.asarray(xs, dtype=np.float64))
        self.overflows += int(sum(tr.overflows.values()))
        x_raw = np.asarray(tr.raw[self.prog.net.input_name], dtype=object)
        y_raw = run_harness(self.binary, x_raw, args=["-"])
        return y_raw.astype(np.float64) * self.scale

    def close(self) -> None:
        self._tmp.cleanup()
