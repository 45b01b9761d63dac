"""Hardware cost of a fixed-point program, computed from the types the emitted code declares.

- ``daisy_area``: Daisy's area model, Σ over multiplies W_w·W_x + Σ over additions of the
  widest operand/result width + Σ over ReLUs of their width (Aster reports this).
- ``hw``: operand bit-widths summed over every multiplier (W_w + W_x) and adder (max of the
  two operand widths), the linear cost the refined ILP minimises over the dense part (activation
  implementations are sized by the budget rule of ``refined.model``, then costed here).
- ``mult_bilinear``: Σ W_w·W_x over multipliers (the multiplier-area proxy).
- ``weight_bits``: Σ of the widths of every stored weight and bias (memory).
- ``table_bits``: Σ over layers with a lookup-table activation of (stored entries) x (entry width):
  one ROM per layer (the emitted C++ holds one ``static const`` array per layer).

Activation implementations add per neuron: an interpolating table one multiplier
(entry difference, W_e + 1 bits, times the in-cell offset, ``shift`` bits) and one adder (W_e + 1);
a quantised piecewise-linear activation one multiplier (input width times the slope constant's
width). They enter ``hw``, ``daisy_area``, ``mult_bilinear`` and the counts like every other
operation; plain tables and ReLU/identity add no arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .activations import PiecewiseImpl, TableImpl
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

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


def act_impl_ops(impl: object, in_width: np.ndarray) -> tuple[list[tuple[int, int]], list[int], int]:
    """(multiplier operand widths, adder widths, table bits) of one layer's activation implementation
    for neurons whose input widths are ``in_width`` (module docstring)."""
    n = int(np.size(in_width))
    if isinstance(impl, TableImpl):
        bits = int(impl.entries.shape[0]) * impl.entry_width
        if not impl.interp:
            return [], [], bits
        dw = impl.entry_width + 1
        return [(dw, max(impl.shift, 1))] * n, [dw] * n, bits
    if isinstance(impl, PiecewiseImpl):
        cw = signed_width([impl.s_neg, impl.s_pos])
        return [(int(w), cw) for w in np.ravel(in_width)], [], 0
    return [], [], 0


def program_cost(p: FixedProgram) -> Cost:
    daisy = hw = bil = wbits = mults = adds = tbits = 0
    for li, lp in enumerate(p.layers):
        x_w = p.input_formats(li).width[None, :]
        w_w = lp.weight_t.width
        prod = w_w * x_w
        bil += int(prod.sum())
        hw += int((w_w + x_w).sum())
        mults += prod.size
        # additions: psum[k] = psum[k-1] + product[k] for k >= 1, then dot + bias
        ps = lp.psum_t.width
        add_w = np.maximum(np.maximum(ps[:, :-1], lp.product_t.width[:, 1:]), ps[:, 1:])
        bias_add = np.maximum(np.maximum(lp.dot_t.width, lp.bias_t.width), lp.bsum_t.width)
        daisy_add = int(add_w.sum()) + int(bias_add.sum())
        hw += int(np.maximum(ps[:, :-1], lp.product_t.width[:, 1:]).sum())
        hw += int(np.maximum(lp.dot_t.width, lp.bias_t.width).sum())
        adds += add_w.size + bias_add.size
        relu = int(lp.out_t.width.sum()) if lp.activation == "relu" else 0
        daisy += int(prod.sum()) + daisy_add + relu
        wbits += int(w_w.sum()) + int(lp.bias_t.width.sum())
        if lp.act_impl is not None:
            act_mults, act_adds, bits = act_impl_ops(lp.act_impl, lp.bsum_t.width)
            tbits += bits
            mults += len(act_mults)
            adds += len(act_adds)
            for a, b in act_mults:
                hw += a + b
                bil += a * b
                daisy += a * b
            hw += sum(act_adds)
            daisy += sum(act_adds)
    return Cost(daisy, hw, bil, wbits, mults, adds, tbits)
