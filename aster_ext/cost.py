"""Hardware cost of a fixed-point program, computed from the types the emitted code declares.

- ``daisy_area``: Daisy's area model, Σ over multiplies W_w·W_x + Σ over additions of the
  widest operand/result width + Σ over ReLUs of their width (Aster reports this).
- ``hw``: operand bit-widths summed over every multiplier (W_w + W_x) and adder (max of the
  two operand widths), the linear cost the refined ILP minimises.
- ``mult_bilinear``: Σ W_w·W_x over multipliers (the multiplier-area proxy).
- ``weight_bits``: Σ of the widths of every stored weight and bias (memory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .program import FixedProgram


@dataclass
class Cost:
    daisy_area: int
    hw: int
    mult_bilinear: int
    weight_bits: int
    multipliers: int
    adders: int

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


def program_cost(p: FixedProgram) -> Cost:
    daisy = hw = bil = wbits = mults = adds = 0
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
    return Cost(daisy, hw, bil, wbits, mults, adds)
