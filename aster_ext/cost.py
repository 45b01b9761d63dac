"""Hardware cost of a fixed-point program, computed from the types the emitted code declares.

- ``daisy_area``: Daisy's area model, Σ over multiplies W_w·W_x + Σ over additions of the
  widest operand/result width + Σ over ReLUs of their width (Aster reports this).
- ``hw``: operand bit-widths summed over every multiplier (W_w + W_x) and adder (max of the
  two operand widths), the linear cost the refined ILP minimises over the dense part (activation
  implementations are sized by the budget rule of ``refined.model``, then costed here).
- ``mult_bilinear``: Σ W_w·W_x over multipliers (the multiplier-area proxy).
- ``mult_operand_bits`` / ``adder_bits``: the two parts of ``hw`` (Σ W_w + W_x over multipliers,
  Σ of the adders' operand widths), as the graph programs' cost reports them.
- ``weight_bits``: Σ of the widths of every stored weight and bias (memory).
- ``table_bits``: Σ over layers with a lookup-table activation of (stored entries) x (entry width):
  one ROM per layer (the emitted C++ holds one ``static const`` array per layer; a segmented table's
  ROM holds every segment's entries).

Activation implementations add per neuron: an interpolating table one multiplier
(entry difference, W_e + 1 bits, times the in-cell offset, ``shift`` bits; a segmented table's
offset is normalised to its largest shift) and one adder (W_e + 1);
a quantised piecewise-linear activation one multiplier (input width times the slope constant's
width). They enter ``hw``, ``daisy_area``, ``mult_bilinear`` and the counts like every other
operation; plain tables and ReLU/identity add no arithmetic.

Which hardware (:mod:`aster_ext.codegen.layout`, the layout the code generator emits): every
operation instance the emitted code instantiates, with the widths of the types it declares. With
reuse factor R (``program_cost(p, reuse_factor=R)``, the ``reuse_factor`` of ``generate_hls``):
a ``rolled`` group of n_g neurons (per-row types) has n_g·U multipliers and n_g·min(U, n_in - 1)
partial-sum adders, U = ceil(n_in / R), plus one bias adder (and ReLU / activation
implementation) per neuron; a ``loop`` group has ceil(n_g / R) copies of one neuron's datapath
(one multiplier and adder per input column, with that column's types); a ``scalar`` group one.
R = 1 (fully parallel) counts one multiplier per weight. The x operand of a multiplier is the
type the emitted multiplication reads: in a ``rolled`` group, the union type of the input's
*input group* (:func:`~aster_ext.codegen.layout.input_groups`: per neuron, n_q multipliers of
width W_w + W_q for every input group q); in ``loop`` / ``scalar`` groups, whose statement for
column k narrows x[k] to its own format (exact), that format's width. Input groups exist only
at R = 1 (with R > 1 a time-shared multiplier reads every format: one container part).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .activations import PiecewiseImpl, SegmentedTableImpl, TableImpl
from .activations._cpp import signed_width
from .program import FixedProgram


@dataclass
class Cost:
    daisy_area: int
    hw: int
    mult_bilinear: int
    weight_bits: int
    multipliers: int
    adders: int
    table_bits: int = 0
    mult_operand_bits: int = 0  # hw = mult_operand_bits + adder_bits
    adder_bits: int = 0

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


def act_impl_ops(impl: object, in_width: np.ndarray) -> tuple[list[tuple[int, int]], list[int], int]:
    """(multiplier operand widths, adder widths, table bits) of one layer's activation implementation
    for neurons whose input widths are ``in_width`` (module docstring)."""
    n = int(np.size(in_width))
    if isinstance(impl, TableImpl | SegmentedTableImpl):
        bits = int(impl.entries.shape[0]) * impl.entry_width
        if not impl.interp:
            return [], [], bits
        dw = impl.entry_width + 1
        return [(dw, max(impl.shift, 1))] * n, [dw] * n, bits
    if isinstance(impl, PiecewiseImpl):
        cw = signed_width([impl.s_neg, impl.s_pos])
        return [(int(w), cw) for w in np.ravel(in_width)], [], 0
    return [], [], 0


def program_cost(p: FixedProgram, reuse_factor: int = 1) -> Cost:
    """Cost of the hardware the emitted code instantiates with reuse factor R (module docstring)."""
    from .codegen.layout import check_reuse_factor, dense_groups, input_groups, lanes

    rf = check_reuse_factor(reuse_factor)
    daisy = hw = bil = wbits = mults = adds = tbits = operand_bits = 0
    for li, lp in enumerate(p.layers):
        x_elem = np.asarray(p.input_formats(li).width, dtype=np.int64).reshape(-1)
        n_in = lp.n_in
        parts = input_groups(p, li, rf)
        # rolled groups: the multiplier lanes of every input group and the width x has there
        lane_w = np.concatenate([np.full(lanes(g.inputs.size, rf), g.width) for g in parts])
        wbits += int(lp.weight_t.width.sum()) + int(lp.bias_t.width.sum())
        if lp.act_impl is not None:
            tbits += act_impl_ops(lp.act_impl, lp.bsum_t.width[:1])[2]
        for g in dense_groups(lp):
            r = g.first
            w_w = lp.weight_t.width[r]
            ps, pr = lp.psum_t.width[r], lp.product_t.width[r]
            if g.kind == "rolled":  # n_g neurons, each Σ_q U_q multipliers (input groups q)
                copies, u = g.size, lane_w.size
                cols, add_cols = np.zeros(u, dtype=np.int64), np.zeros(min(u, n_in - 1), dtype=np.int64)
                xs = lane_w
            else:  # ceil(n_g / R) copies of one neuron's datapath, one op per input column
                copies = lanes(g.size, rf)
                cols, add_cols = np.arange(n_in), np.arange(1, n_in)
                xs = x_elem  # one statement per column: x[k] in its own format
            prod = w_w[cols] * xs
            n_bil = int(prod.sum())
            n_hw = n_operand = int((w_w[cols] + xs).sum())
            # additions: psum[k] = psum[k-1] + product[k] for k >= 1, then dot + bias
            add_in = np.maximum(ps[add_cols - 1], pr[add_cols])  # rolled: uniform, any index
            add_w = np.maximum(add_in, ps[add_cols])
            bias_in = max(int(lp.dot_t.width[r]), int(lp.bias_t.width[r]))
            bias_add = max(bias_in, int(lp.bsum_t.width[r]))
            n_hw += int(add_in.sum()) + bias_in
            n_daisy = n_bil + int(add_w.sum()) + bias_add
            n_daisy += int(lp.out_t.width[r]) if lp.activation == "relu" else 0
            hw += copies * n_hw
            operand_bits += copies * n_operand
            bil += copies * n_bil
            daisy += copies * n_daisy
            mults += copies * cols.size
            adds += copies * (add_cols.size + 1)
            if lp.act_impl is not None:
                act_mults, act_adds, _ = act_impl_ops(lp.act_impl, np.full(copies, lp.bsum_t.width[r]))
                mults += len(act_mults)
                adds += len(act_adds)
                for a, b in act_mults:
                    hw += a + b
                    operand_bits += a + b
                    bil += a * b
                    daisy += a * b
                hw += sum(act_adds)
                daisy += sum(act_adds)
    return Cost(daisy, hw, bil, wbits, mults, adds, tbits, operand_bits, hw - operand_bits)
