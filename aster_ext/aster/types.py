"""From an ILP solution (dot_l, bias_l per layer) to the fixed-point program with Aster's types.

Aster gives every variable of its unrolled code a total width (NNQuantizationPhase) and its code
generator the integer bits ``I(range of that variable)``, so the fractional bits are what is left:

- guard bits ``g_l = ceil(log2 n_{l-1}) + 1`` and ``G_l = dot_l + g_l``;
- input x_k: ``F = initLen``, ``I = u(X_k) + 1`` (width initLen + u + 1);
- weight W_l[j,k]: ``F = G_l + u(X_{l-1,k})``, ``I = I(weight hull)`` (per-column formats);
- product: ``F = G_l``, ``I = I(Wh ⊗ X_k)``; partial sum k: ``F = G_l``, ``I = I(Σ_{m<=k} Wh ⊗ X_m)``;
- dot result: ``F = dot_l``, ``I = I(D_l)`` (the last addition is assigned straight to it; with one
  input the dot *is* the product, ``F = G_l``);
- bias constant ``F = bias_l``, ``I = I(bias hull)``; bias sum ``F = bias_l``, ``I = I(B_l)``;
- activation output: width of the bias sum, ``I = I(X_l)`` — so ``F = bias_l + I(B_l) - I(X_l)``
  (>= bias_l; the ReLU output range is narrower than the bias sum's).

All assignments are ``ap_fixed<W,I>`` (AP_TRN, AP_WRAP). :class:`~aster_ext.program.FixedProgram` has one
input type, so the inputs get ``F = initLen`` with the largest ``I`` (same values; Aster's per-input
widths are kept in ``meta["aster_input_formats"]`` and used for Daisy's area cost).
Constants are quantised from the exact real values: ``aster`` truncates (what assigning the literal
to ``ap_fixed`` does), ``aster-sound`` rounds to nearest, clamping at the top of the format.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import FixedFormat, quantize_fractions
from ..ir import DenseLayer
from ..program import FixedProgram, FormatArray, LayerProgram
from .ranges import LayerRanges
from .settings import AsterSetting


def quantize_constants(values: np.ndarray, frac: np.ndarray, int_bits: int, rounding: str) -> np.ndarray:
    """Raw integers of exact constants at ``frac`` fractional bits: "TRN" floor, "RND" nearest
    (half up) clamped to the largest raw value of a signed (frac + int_bits)-bit format."""
    raw = quantize_fractions(values, frac, rounding)
    f = np.broadcast_to(np.asarray(frac), raw.shape)
    out = np.empty(raw.shape, dtype=object)
    for idx in np.ndindex(raw.shape):
        half = 1 << (int(f[idx]) + int_bits - 1)
        out[idx] = min(max(raw[idx], -half), half - 1)
    return out


def build_program(
    layers: list[DenseLayer],
    ranges: list[LayerRanges],
    setting: AsterSetting,
    dot_bits: list[int],
    bias_bits: list[int],
    mode: str,
    name: str = "aster",
) -> FixedProgram:
    """The FixedProgram with Aster's per-operation types for the chosen fractional bits."""
    rounding = "TRN" if mode == "aster" else "RND"
    progs: list[LayerProgram] = []
    for layer, r, d, b in zip(layers, ranges, dot_bits, bias_bits, strict=True):
        n_out, n = layer.n_out, layer.n_in
        big_g = d + r.guard
        u = np.array(r.u_in, dtype=np.int64)
        w_frac = np.broadcast_to(big_g + u, (n_out, n))
        weight_t = FormatArray.from_frac(w_frac, r.I_weight)
        weight_raw = quantize_constants(layer.exact_weight(), w_frac, r.I_weight, rounding)
        prod_i = np.broadcast_to(np.array(r.I_prod, dtype=np.int64), (n_out, n))
        product_t = FormatArray.from_frac(np.full((n_out, n), big_g), prod_i)
        dot_frac = d if n >= 2 else big_g
        dot_t = FormatArray.from_frac(np.full(n_out, dot_frac), r.I_dot)
        ps_frac = np.full((n_out, n), big_g, dtype=np.int64)
        ps_int = np.broadcast_to(np.array(r.I_psum, dtype=np.int64), (n_out, n)).copy()
        ps_int[:, 0] = prod_i[:, 0]
        if n >= 2:
            ps_frac[:, -1] = d
            ps_int[:, -1] = r.I_dot
        psum_t = FormatArray.from_frac(ps_frac, ps_int)
        bias_t = FormatArray.from_frac(np.full(n_out, b), r.I_bias)
        bias_raw = quantize_constants(layer.exact_bias(), np.full(n_out, b), r.I_bias, rounding)
        bsum_t = FormatArray.from_frac(np.full(n_out, b), r.I_bsum)
        out_t = FormatArray(np.full(n_out, r.I_bsum + b), np.full(n_out, r.I_out))
        progs.append(
            LayerProgram(
                name=layer.name,
                activation="relu" if layer.activation == "relu" else "identity",
                weight_raw=weight_raw,
                weight_t=weight_t,
                product_t=product_t,
                psum_t=psum_t,
                dot_t=dot_t,
                bias_raw=bias_raw,
                bias_t=bias_t,
                bsum_t=bsum_t,
                out_t=out_t,
            )
        )
    r0 = ranges[0]
    in_i = max(r0.I_in)
    input_t = FixedFormat(setting.init_len + in_i, in_i, "TRN", "WRAP")
    meta = {
        "assigner": mode,
        "aster_setting": setting.name,
        "dot_bits": list(map(int, dot_bits)),
        "bias_bits": list(map(int, bias_bits)),
        "aster_input_formats": [(setting.init_len + i, i) for i in r0.I_in],
        "constant_rounding": rounding,
        "inputs_on_grid_assumed": setting.no_init_error,
    }
    return FixedProgram(name=name, input_t=input_t, layers=progs, quant="TRN", overflow="WRAP", meta=meta)


def daisy_area_cost(program: FixedProgram) -> int:
    """Daisy's area cost as Aster reports it: Σ over multiplies of W_weight·W_input + Σ over adds of
    the largest of the operand and result widths + Σ over activations (ReLU and linear) of the
    width of their argument. Layer-1 input widths are Aster's per-input ones when recorded."""
    total = 0
    for li, lp in enumerate(program.layers):
        if li == 0 and "aster_input_formats" in program.meta:
            in_w = np.array([w for w, _ in program.meta["aster_input_formats"]], dtype=np.int64)
        else:
            in_w = program.input_formats(li).width
        total += int((lp.weight_t.width * in_w[None, :]).sum())
        n = lp.n_in
        pw, sw = lp.product_t.width, lp.psum_t.width
        for k in range(1, n):
            prev = pw[:, 0] if k == 1 else sw[:, k - 1]
            total += int(np.maximum(np.maximum(prev, pw[:, k]), sw[:, k]).sum())
        total += int(np.maximum(np.maximum(lp.dot_t.width, lp.bias_t.width), lp.bsum_t.width).sum())
        total += int(lp.bsum_t.width.sum())
    return total
