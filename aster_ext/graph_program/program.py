"""The fixed-point program of a network given as an IR graph (CNNs, residual nets, classifiers).

Values are raw integers: an element with F fractional bits holds r·2^-F. Every node's output has
one ap_fixed format per element (``out_t``, flattened C order); the formats are *chosen* per
output channel (axis 0 of the node shape; per neuron for 1-D shapes) and repeated over the
channel's pixels. Q(v -> T) is ap_fixed assignment: quantise to T's fractional bits (AP_TRN
floor / AP_RND floor(v·2^F + 1/2)), then wrap to T's width (AP_WRAP; AP_SAT is not supported
by graph programs). The program's rounding points, per node kind (the single contract of the
simulator :mod:`.simulate` and the error analysis :mod:`.errors`):

- ``input``:  x~ = Q(x -> in_t)                                       (rounding point 1)
- ``conv2d``/``conv1d``/``affine`` (output channel o): weights w~ = Q_wq(W, F_w[o]) (exact raw
  constants, F_w per output channel, wide enough never to wrap unless the caller fixes a width),
  bias b~ = Q_wq(b, F_w[o]) shifted to the accumulator (exact). The operand is aligned to
  F_x = max fractional bits over all operand elements (exact left shifts); products and the
  sum are exact in the accumulator acc_t[o] with F_acc[o] = F_w[o] + F_x:
      acc = wrap_{acc_t[o]}( Σ w~ x~ + b~ )          (no rounding; WRAP of an exact sum equals
                                                      the chain of wrapped partial sums)
      y   = Q(acc -> out_t)                                            (rounding point 2)
- ``act`` relu: y = max(x, 0) in x's own formats (exact); identity passes x.
- ``act`` σ, any other activation of :mod:`aster_ext.activations` (a *table activation*): ONE
  implementation σ~ per node (:mod:`.act_tables`: an interpolating lookup table for smooth σ, a
  quantised piecewise-linear map for leaky ReLU / hard sigmoid / hard tanh) reading the operand
  aligned to F_x = max fractional bits over its elements (exact left shifts) and returning a raw
  value at the implementation's F_tab; then
      y = Q(σ~(x~) -> out_t)                                           (rounding point 5)
- ``maxpool``: y = max of the window, in the window's widest format (F = max F_i, I = max I_i:
  exact alignment, no rounding).
- ``avgpool``: the window sum s = wrap_{sum_t}(Σ x~ aligned to F_x) (exact), then
      y = Q(s · c~_j -> out_t)                                         (rounding point 3)
  with c~_j = Q_RND(1/k_j, F_c): when k_j is a power of two 2^m and F_c >= m, c~_j = 2^-m is
  exact (a shift in hardware), else the quantised constant's error is an error source.
- ``add``: y = Q(a~ + b~ -> out_t), the sum formed exactly at max(F_a, F_b) (ap_fixed's exact
  sum type) and assigned once to the output format                 (rounding point 4)
- ``flatten``/``reshape``/``transpose``/``concat``/``output``: element moves, formats move with
  the elements (exact).
- ``pad`` with value 0 is not supported yet (the benchmark CNNs fold their pads into convs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..fixedpoint import quantize_fractions, quantize_reals
from ..ir import Network, Op
from ..ops.activation import PIECEWISE_LINEAR_ACTS, is_table_act
from ..ops.windows import channel_windows
from ..program import FormatArray

LINEAR_KINDS = ("conv2d", "conv1d", "affine")
MOVE_KINDS = ("flatten", "reshape", "transpose", "concat", "output")
ROUNDING_KINDS = (*LINEAR_KINDS, "avgpool", "add")  # node kinds with a chosen output format
PASS_ACTS = PIECEWISE_LINEAR_ACTS  # activations computed exactly in the operand's formats
# the other activations (ops.activation.is_table_act) round to a chosen format (rounding point 5)


def is_rounding_node(op: Op) -> bool:
    """Nodes with a chosen output format: conv/dense, avg-pool, add and table activations."""
    return op.kind in ROUNDING_KINDS or is_table_act(op)


def node_size(op: Op) -> int:
    return int(np.prod(op.shape))


def per_channel(op: Op, values: np.ndarray) -> np.ndarray:
    """Repeat one value per output channel (axis 0) over the channel's elements (flattened)."""
    v = np.asarray(values)
    inner = int(np.prod(op.shape[1:])) if len(op.shape) > 1 else 1
    return np.repeat(v, inner)


def container(fmt: FormatArray) -> tuple[int, int]:
    """(width, int_bits) of one type holding every element format of ``fmt`` exactly: the largest
    integer bits and the largest fractional bits (the operand alignment F_x)."""
    i = int(fmt.int_bits.max())
    return int(fmt.frac.max()) + i, i


def n_channels(op: Op) -> int:
    return int(op.shape[0]) if op.shape else 1


def weight_array(op: Op) -> np.ndarray:
    """The float64 parameter tensor of a conv (kernel) or dense (weight) node."""
    return np.asarray(op.attrs["kernel" if op.kind != "affine" else "weight"], dtype=np.float64)


def bias_array(op: Op) -> np.ndarray:
    b = op.attrs.get("bias")
    n = weight_array(op).shape[0]
    return np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)


def operand_classes(op: Op, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """How the multipliers of a conv / dense node read its operand. Returns ``of_element`` [n_in]
    (the operand class of every input element) and ``lane_class`` [C_out, K] (the class the
    multiplier of output channel o and weight position t reads). Classes: conv = input channel
    (channel c of group-conv output o: c = (o // (C_out/G))·C_in/G + t // kernel size);
    dense = input element t. The emitted code reads every class in one type, the union of its
    elements' formats (an exact narrowing of the operand's container)."""
    w_shape = weight_array(op).shape
    c_out, k = int(w_shape[0]), int(np.prod(w_shape[1:]))
    n_in = int(np.prod(in_shape))
    if op.kind == "affine":
        return np.arange(n_in), np.broadcast_to(np.arange(k), (c_out, k))
    c_in = int(in_shape[0])
    ksize = int(np.prod(w_shape[2:]))
    per_group_in, per_group_out = int(w_shape[1]), c_out // int(op.attrs.get("group", 1))
    first = (np.arange(c_out) // per_group_out) * per_group_in
    lane = first[:, None] + (np.arange(k) // ksize)[None, :]
    return np.repeat(np.arange(c_in), n_in // c_in), lane


def class_formats(fmt: FormatArray, of_element: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(width, int_bits) per operand class: the union (max I + max F, max I) of its elements'
    formats ``fmt`` (flattened operand formats; ``of_element`` from :func:`operand_classes`)."""
    n = int(of_element.max()) + 1
    ib = np.full(n, np.iinfo(np.int64).min)
    fr = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(ib, of_element, fmt.int_bits.astype(np.int64))
    np.maximum.at(fr, of_element, fmt.frac.astype(np.int64))
    return ib + fr, ib


@dataclass
class PartialSums:
    """How the lanes of a conv / dense node read and sum its operand (:func:`partial_sums`). Lane
    (o, t) reads operand class ``lane_class`` [C_out, K] in that class's union format
    (``cls_width``, ``cls_int_bits`` [n_classes], :func:`class_formats`). Per output channel o the
    lanes are grouped by their class's fractional bits ``fvals`` [D] (``lanes`` [C_out, D]: how
    many of o's K lanes read each); ``partial`` [C_out, D] marks the groups summed first in a
    partial accumulator of width ``width`` [C_out, D] = W_acc,o - (F_x - f) (integer bits
    I_acc,o, F_w,o + f fractional) and then added once into the accumulator; the other lanes add
    into it directly."""

    lane_class: np.ndarray
    cls_width: np.ndarray
    cls_int_bits: np.ndarray
    fvals: np.ndarray
    lanes: np.ndarray
    partial: np.ndarray
    width: np.ndarray

    def lane_width(self) -> np.ndarray:
        """[C_out, K] the operand width each multiplier reads."""
        return self.cls_width[self.lane_class]

    def adder_bits(self, acc_width: np.ndarray) -> np.ndarray:
        """[C_out] Σ over o's adders of their widths: one per lane (W_acc,o, or the partial
        width), plus one W_acc,o merge per partial group."""
        per_lane = np.where(self.partial, self.width, acc_width[:, None])
        return (per_lane * self.lanes).sum(axis=1) + (self.partial * acc_width[:, None]).sum(axis=1)


def partial_sums(
    op: Op, in_shape: tuple[int, ...], x_fmt: FormatArray, acc_t: FormatArray, x_frac: int
) -> PartialSums:
    """The operand classes of a conv / dense node (:func:`operand_classes`, formats ``x_fmt``) and
    where lanes reading a class of F_q < F_x (the alignment) are cheaper summed apart: products
    w·x of such a class have F_w,o + F_q fractional bits, so a partial sum with the
    accumulator's integer bits I_acc,o and F_w,o + f fractional bits holds them exactly and wraps
    with the same modulus 2^I_acc,o; adding it into the accumulator is exact. The sum of a channel
    is therefore the same wrapped exact sum. A group of n lanes at F = f goes apart when that
    saves bits, n·(F_x - f) > W_acc,o (one merge adder of W_acc,o), and its width is >= 1.
    Grouped convs (each output channel reads its own channels) add everything directly."""
    of_element, lane_class = operand_classes(op, in_shape)
    cls_w, cls_i = class_formats(x_fmt, of_element)
    cls_f = cls_w - cls_i
    c_out = lane_class.shape[0]
    fvals = np.unique(cls_f)
    lane_f = np.searchsorted(fvals, cls_f[lane_class])  # [C_out, K]
    lanes = np.zeros((c_out, fvals.size), dtype=np.int64)
    np.add.at(lanes, (np.repeat(np.arange(c_out), lane_f.shape[1]), lane_f.reshape(-1)), 1)
    acc_w = acc_t.width.astype(np.int64)
    width = acc_w[:, None] - (x_frac - fvals[None, :])
    saves = lanes * (x_frac - fvals[None, :]) > acc_w[:, None]
    partial = saves & (width >= 1) & (int(op.attrs.get("group", 1)) == 1)
    return PartialSums(lane_class, cls_w, cls_i, fvals, lanes, partial, width)


def int_bits_needed(raw: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """Smallest signed width holding each group of raw integers (reduced over ``axis``)."""
    r = np.asarray(raw, dtype=object)
    hi = np.max(r, axis=axis) if r.size else 0
    lo = np.min(r, axis=axis) if r.size else 0
    hi_a = np.asarray(hi, dtype=object).reshape(-1)
    lo_a = np.asarray(lo, dtype=object).reshape(-1)
    out = np.array(
        [
            max(int(h).bit_length(), int(-l - 1).bit_length() if l < 0 else 0) + 1
            for h, l in zip(hi_a, lo_a, strict=True)
        ],
        dtype=np.int64,
    )
    return out.reshape(np.shape(hi))


@dataclass
class FracChoice:
    """Fractional bits the precision search chooses: input, and per channel of every rounding node.

    ``out[name]`` [C]: output fractional bits; ``weight[name]`` [C_out] (conv/affine: weights and
    bias); ``const`` (avgpool): F_c of its 1/k constants."""

    input: int
    out: dict[str, np.ndarray]
    weight: dict[str, np.ndarray] = field(default_factory=dict)
    const: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def uniform(net: Network, frac: int, weight_frac: int | None = None) -> FracChoice:
        """One F everywhere (weights too unless ``weight_frac``); avgpool constants F_c = F + ceil(log2 k)."""
        wf = frac if weight_frac is None else weight_frac
        fc = FracChoice(frac, {})
        for op in net.ops():
            if is_rounding_node(op):
                fc.out[op.name] = np.full(n_channels(op), frac, dtype=np.int64)
            if op.kind in LINEAR_KINDS:
                fc.weight[op.name] = np.full(n_channels(op), wf, dtype=np.int64)
            if op.kind == "avgpool":
                k = int(np.prod(op.attrs["kernel"]))
                fc.const[op.name] = frac + int(np.ceil(np.log2(k)))
        return fc

    def copy(self) -> FracChoice:
        return FracChoice(
            self.input,
            {k: v.copy() for k, v in self.out.items()},
            {k: v.copy() for k, v in self.weight.items()},
            dict(self.const),
        )


@dataclass
class NodeProgram:
    """Types and raw constants of one node (module docstring). Flattened element formats."""

    name: str
    kind: str
    out_t: FormatArray  # [n] per output element
    weight_raw: np.ndarray | None = None  # object ints, shape of kernel/weight
    weight_frac: np.ndarray | None = None  # [C_out]
    weight_width: np.ndarray | None = None  # [C_out]
    bias_raw: np.ndarray | None = None  # [C_out] object ints at the accumulator's frac
    acc_t: FormatArray | None = None  # [C_out] (conv/affine) or [C] window-sum type (avgpool)
    x_frac: int = 0  # operand alignment frac F_x
    const_raw: np.ndarray | None = None  # avgpool [n_out] object ints
    const_frac: int = 0
    act_impl: Any = None  # table activation: its implementation (TableImpl / PiecewiseImpl / ...)


@dataclass
class GraphProgram:
    """A whole fixed-point graph: the IR it implements, input type, one NodeProgram per node."""

    net: Network
    input_t: FormatArray  # [n_in]
    nodes: dict[str, NodeProgram]
    quant: str = "TRN"
    overflow: str = "WRAP"
    meta: dict[str, Any] = field(default_factory=dict)

    def out_t(self, name: str) -> FormatArray:
        return self.input_t if name == self.net.input_name else self.nodes[name].out_t


def _check_supported(net: Network) -> None:
    for op in net.ops():
        if op.kind == "pad":
            raise UnsupportedError(f"{op.describe()}: pad nodes are not supported by graph programs yet")


def quantize_params(op: Op, weight_frac: np.ndarray, quant: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw weights (kernel shape) and raw biases [C_out], both at F_w[o] per output channel.

    ``quant`` RND (default of the search) or TRN (what ap_fixed's constructor from a double does,
    used to emulate other tools). Exact: floor/round of the double (or of the exact Fraction)."""
    w = weight_array(op)
    b = bias_array(op)
    w_exact = op.attrs.get("kernel_exact" if op.kind != "affine" else "weight_exact")
    b_exact = op.attrs.get("bias_exact")
    fracs = np.asarray(weight_frac, dtype=np.int64).reshape(-1)
    row_frac = np.broadcast_to(fracs.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape)
    if w_exact is not None:
        w_raw = quantize_fractions(np.asarray(w_exact, dtype=object), row_frac, quant)
    else:  # 401 bits: never wraps
        w_raw = quantize_reals(w, row_frac, 401, quant, "WRAP")
    if b_exact is not None:
        b_raw = quantize_fractions(np.asarray(b_exact, dtype=object).reshape(-1), fracs, quant)
    else:
        b_raw = quantize_reals(np.asarray(b, dtype=np.float64).reshape(-1), fracs, 401, quant, "WRAP")
    return w_raw, b_raw


def avg_counts(op: Op, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pooling windows [n_out, K] (-1 = padding) and the divisor k_j of every output."""
    idx = channel_windows(op.attrs, in_shape, tuple(op.shape), op.attrs["kernel"])
    k = idx.shape[1]
    count = np.full(idx.shape[0], k) if op.attrs.get("count_include_pad", False) else (idx >= 0).sum(axis=1)
    return idx, count.astype(np.int64)


def avg_constants(count: np.ndarray, const_frac: int) -> np.ndarray:
    """c~_j = floor(2^F_c / k_j + 1/2) (RND of 1/k_j; exact 2^(F_c - m) when k_j = 2^m, m <= F_c)."""
    num = (1 << const_frac) * 2 + count.astype(object)
    return np.array([int(n) // (2 * int(k)) for n, k in zip(num, count, strict=True)], dtype=object)


def build_program(
    net: Network,
    fracs: FracChoice,
    out_int_bits: dict[str, np.ndarray],
    input_int_bits: int,
    acc_int_bits: dict[str, np.ndarray],
    quant: str = "TRN",
    weight_quant: str = "RND",
    weight_width: dict[str, np.ndarray] | None = None,
    act_impls: dict[str, Any] | None = None,
) -> GraphProgram:
    """Assemble the program from the chosen fractional bits and integer bits.

    ``out_int_bits[name]`` [C] for every rounding node, ``acc_int_bits[name]`` [C] for conv/affine
    accumulators and avgpool window sums (fractional bits of those follow from the operands).
    Weights get the smallest width holding their raw values unless ``weight_width`` fixes it
    (then they wrap like ap_fixed constants of that width). ``act_impls[name]``: the
    implementation of every table activation (:class:`.act_tables.ActTables` chooses them with
    the error analysis; its ``in_frac`` must be the operand alignment F_x)."""
    from ..fixedpoint import wrap_or_saturate

    _check_supported(net)
    n_in = int(np.prod(net.input_shape))
    input_t = FormatArray.from_frac(np.full(n_in, fracs.input), np.full(n_in, input_int_bits))
    nodes: dict[str, NodeProgram] = {}

    def fmt(name: str) -> FormatArray:
        return input_t if name == net.input_name else nodes[name].out_t

    for op in net.ops():
        if op.kind == "input" or op.kind in ("softmax", "argmax"):
            continue
        if op.kind in LINEAR_KINDS:
            x_t = fmt(op.inputs[0])
            fx = int(x_t.frac.max())
            fw = np.asarray(fracs.weight[op.name], dtype=np.int64)
            w_raw, b_raw = quantize_params(op, fw, weight_quant)
            ww = int_bits_needed(w_raw.reshape(w_raw.shape[0], -1), axis=(1,))
            if weight_width is not None and op.name in weight_width:
                ww = np.asarray(weight_width[op.name], dtype=np.int64)
                flat = w_raw.reshape(w_raw.shape[0], -1)
                w_raw = wrap_or_saturate(flat, ww[:, None], "WRAP").reshape(w_raw.shape)
                b_raw = wrap_or_saturate(b_raw, ww, "WRAP")
            facc = fw + fx
            b_acc = np.array([int(b) << int(fx) for b in b_raw], dtype=object)
            acc_t = FormatArray.from_frac(facc, acc_int_bits[op.name])
            out_t = FormatArray.from_frac(
                per_channel(op, fracs.out[op.name]), per_channel(op, out_int_bits[op.name])
            )
            nodes[op.name] = NodeProgram(op.name, op.kind, out_t, w_raw, fw, ww, b_acc, acc_t, fx)
        elif is_table_act(op):
            x_t = fmt(op.inputs[0])
            fx = int(x_t.frac.max())
            impl = (act_impls or {}).get(op.name)
            if impl is None or int(impl.in_frac) != fx:
                have = "none" if impl is None else f"input frac {impl.in_frac}"
                raise ValueError(f"{op.describe()}: needs an implementation at input frac {fx} ({have})")
            out_t = FormatArray.from_frac(
                per_channel(op, fracs.out[op.name]), per_channel(op, out_int_bits[op.name])
            )
            nodes[op.name] = NodeProgram(op.name, op.kind, out_t, x_frac=fx, act_impl=impl)
        elif op.kind == "act":
            x_t = fmt(op.inputs[0])
            nodes[op.name] = NodeProgram(op.name, op.kind, FormatArray(x_t.width.copy(), x_t.int_bits.copy()))
        elif op.kind == "maxpool":
            x_t = fmt(op.inputs[0])
            idx = channel_windows(
                op.attrs, tuple(net.op(op.inputs[0]).shape), tuple(op.shape), op.attrs["kernel"]
            )
            safe = np.where(idx >= 0, idx, 0)
            fr = np.where(idx >= 0, x_t.frac[safe], -(1 << 30)).max(axis=1)
            ib = np.where(idx >= 0, x_t.int_bits[safe], -(1 << 30)).max(axis=1)
            nodes[op.name] = NodeProgram(op.name, op.kind, FormatArray.from_frac(fr, ib))
        elif op.kind == "avgpool":
            x_t = fmt(op.inputs[0])
            fx = int(x_t.frac.max())
            _, count = avg_counts(op, tuple(net.op(op.inputs[0]).shape))
            fc = int(fracs.const[op.name])
            acc_t = FormatArray.from_frac(np.full(n_channels(op), fx), acc_int_bits[op.name])
            out_t = FormatArray.from_frac(
                per_channel(op, fracs.out[op.name]), per_channel(op, out_int_bits[op.name])
            )
            nodes[op.name] = NodeProgram(
                op.name,
                op.kind,
                out_t,
                acc_t=acc_t,
                x_frac=fx,
                const_raw=avg_constants(count, fc),
                const_frac=fc,
            )
        elif op.kind == "add":
            out_t = FormatArray.from_frac(
                per_channel(op, fracs.out[op.name]), per_channel(op, out_int_bits[op.name])
            )
            nodes[op.name] = NodeProgram(op.name, op.kind, out_t)
        elif op.kind in MOVE_KINDS:
            from ..ops import op_class

            which, src = op_class(op.kind).index_map(op, [tuple(net.op(i).shape) for i in op.inputs])
            w = np.empty(which.size, dtype=np.int64)
            ib = np.empty(which.size, dtype=np.int64)
            for i, name in enumerate(op.inputs):
                sel = which == i
                w[sel] = fmt(name).width[src[sel]]
                ib[sel] = fmt(name).int_bits[src[sel]]
            nodes[op.name] = NodeProgram(op.name, op.kind, FormatArray(w, ib))
        else:
            raise UnsupportedError(f"{op.describe()}: not supported by graph programs")
    return GraphProgram(net, input_t, nodes, quant, "WRAP")


def uniform_program(net: Network, width: int, int_bits: int, quant: str = "TRN") -> GraphProgram:
    """Every stored value in ap_fixed<width, int_bits> (input, weights, biases, node outputs),
    weights quantised by truncation as ap_fixed's constructor from a double does; accumulators
    exact (wide). An emulation of a tool-default precision such as hls4ml's ap_fixed<16,6>:
    unlike hls4ml, products are not truncated to an accum type before summing."""
    for op in net.ops():
        if is_table_act(op):
            raise UnsupportedError(
                f"{op.describe()}: a uniform tool-default program has no rule for a table activation"
            )
    f = width - int_bits
    fc = FracChoice.uniform(net, f)
    for op in net.ops():
        if op.kind == "avgpool":
            fc.const[op.name] = f
    out_ib = {n: np.full(v.size, int_bits) for n, v in fc.out.items()}
    acc_ib = {}
    for op in net.ops():  # exact accumulators: |w·x| < 2^(2I-2), n terms + bias never wrap
        if op.kind in LINEAR_KINDS:
            n_terms = int(np.prod(weight_array(op).shape[1:])) + 1
            acc_ib[op.name] = np.full(n_channels(op), 2 * int_bits + int(n_terms).bit_length())
        elif op.kind == "avgpool":
            k = int(np.prod(op.attrs["kernel"]))
            acc_ib[op.name] = np.full(n_channels(op), int_bits + k.bit_length())
    ww = {n: np.full(v.size, width) for n, v in fc.weight.items()}
    return build_program(net, fc, out_ib, int_bits, acc_ib, quant, "TRN", ww)
