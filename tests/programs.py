"""Random :class:`FixedProgram` builders shared by the simulator and code-generator tests."""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import numpy as np

from aster_ext.fixedpoint import FixedFormat
from aster_ext.ir import DenseLayer
from aster_ext.program import FixedProgram, FormatArray, LayerProgram

Layout = Literal["uniform", "column", "row", "element", "mixed"]


def _formats(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    layout: Layout,
    width: tuple[int, int],
    int_bits: tuple[int, int],
    pool: int | None = None,
    shared: int = 0,
) -> FormatArray:
    """Random formats varying as ``layout`` says (column: along k only; row: along j only).

    With ``pool`` the formats are drawn from that many random (width, int_bits) pairs (fewer
    distinct C++ types, hence faster compiles)."""
    if len(shape) == 1:
        base = {"uniform": (1,), "column": (1,), "row": shape, "element": shape, "mixed": shape}[layout]
    else:
        base = {
            "uniform": (1, 1),
            "column": (1, shape[1]),
            "row": (shape[0], 1),
            "element": shape,
            "mixed": shape,
        }[layout]
    if pool:
        cand_w = rng.integers(width[0], width[1] + 1, size=pool)
        cand_i = rng.integers(int_bits[0], int_bits[1] + 1, size=pool)
        pick = rng.integers(0, pool, size=base)
        w, i = cand_w[pick], cand_i[pick]
    else:
        w = rng.integers(width[0], width[1] + 1, size=base)
        i = rng.integers(int_bits[0], int_bits[1] + 1, size=base)
    if layout == "mixed" and shared > 1:
        # neurons [0, shared) share one signature (a loop), the rest get their own (scalar code)
        w[:shared] = w[0]
        i[:shared] = i[0]
    w = np.broadcast_to(w, shape)
    i = np.broadcast_to(i, shape)
    return FormatArray(w.copy(), i.copy())


def _raw_in(rng: np.random.Generator, fmt: FormatArray) -> np.ndarray:
    """Random raw integers filling each element's full signed width."""
    out = np.empty(fmt.shape, dtype=object)
    for idx in np.ndindex(fmt.shape):
        w = int(fmt.width[idx])
        out[idx] = (
            int(rng.integers(0, 1 << 62)) % (1 << w) - (1 << (w - 1))
            if w <= 62
            else (int.from_bytes(rng.bytes((w + 7) // 8), "little") % (1 << w) - (1 << (w - 1)))
        )
    return out


def random_program(
    rng: np.random.Generator,
    sizes: list[int],
    *,
    quant: str = "TRN",
    overflow: str = "WRAP",
    layout: Layout = "column",
    width: tuple[int, int] = (1, 24),
    int_bits: tuple[int, int] = (-3, 8),
    acc_width: tuple[int, int] | None = None,
    name: str = "prog",
    activations: list[str] | None = None,
    pool: int | None = None,
) -> FixedProgram:
    """A random dense FixedProgram with layer sizes ``sizes`` = [n_in, n_1, ..., n_L].

    Formats are drawn uniformly (widths in ``width``, products/partial sums/bias sums in
    ``acc_width``), so values overflow and wrap or saturate often; raw constants fill their
    formats' full widths. ``layout`` says how formats vary inside each layer; ``pool`` limits
    each role's formats to that many distinct ones per layer.
    """
    acc = acc_width or width
    in_w = int(rng.integers(width[0], width[1] + 1))
    in_i = int(rng.integers(int_bits[0], int_bits[1] + 1))
    input_t = FixedFormat(in_w, in_i, quant, overflow)
    layers = []
    for li, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        act = activations[li] if activations else ("relu" if rng.random() < 0.6 else "identity")
        shape2 = (n_out, n_in)
        sh = int(rng.integers(2, n_out + 1)) if layout == "mixed" and n_out > 2 else 0
        weight_t = _formats(rng, shape2, layout, width, int_bits, pool, sh)
        bias_t = _formats(rng, (n_out,), layout, width, int_bits, pool, sh)
        layers.append(
            LayerProgram(
                name=f"dense_{li}",
                activation=act,
                weight_raw=_raw_in(rng, weight_t),
                weight_t=weight_t,
                product_t=_formats(rng, shape2, layout, acc, int_bits, pool, sh),
                psum_t=_formats(rng, shape2, layout, acc, int_bits, pool, sh),
                dot_t=_formats(rng, (n_out,), layout, acc, int_bits, pool, sh),
                bias_raw=_raw_in(rng, bias_t),
                bias_t=bias_t,
                bsum_t=_formats(rng, (n_out,), layout, acc, int_bits, pool, sh),
                out_t=_formats(rng, (n_out,), layout, width, int_bits, pool, sh),
            )
        )
    return FixedProgram(name, input_t, layers, quant, overflow)


def exact_program(
    rng: np.random.Generator,
    sizes: list[int],
    *,
    width: tuple[int, int] = (4, 40),
    int_bits: tuple[int, int] = (-2, 6),
    name: str = "exact",
) -> FixedProgram:
    """A program whose every assignment is exact (no rounding, no overflow): random per-element
    weight/bias/input formats, and product/partial-sum/dot/bias-sum/out formats wide enough to
    hold each exact result (frac = the operands' frac, int bits from worst-case magnitudes)."""
    p = random_program(rng, sizes, layout="element", width=width, int_bits=int_bits, name=name)
    in_fmt = p.input_formats(0)
    xw, xi = in_fmt.width, in_fmt.int_bits  # magnitude < 2^(I-1)
    xf = xw - xi
    for lp in p.layers:
        wf, wi = lp.weight_t.frac, lp.weight_t.int_bits
        pf = wf + xf[None, :]
        pi = wi + xi[None, :]  # |w x| <= 2^(wi-1) 2^(xi-1) < 2^(wi+xi-1)
        lp.product_t = FormatArray.from_frac(pf, pi + 1)
        sf = np.maximum.accumulate(pf, axis=1)
        # |s_k| <= sum_l 2^(pi_l - 1) < 2^(I - 1) with I = ceil(log2(sum 2^pi_l)) + 1
        mag = np.cumsum(np.power(2.0, pi), axis=1)
        si = np.ceil(np.log2(mag)).astype(np.int64) + 2
        lp.psum_t = FormatArray.from_frac(sf, si)
        lp.dot_t = FormatArray.from_frac(sf[:, -1], si[:, -1])
        bf, bi = lp.bias_t.frac, lp.bias_t.int_bits
        tf = np.maximum(sf[:, -1], bf)
        ti = np.maximum(si[:, -1], bi) + 2
        lp.bsum_t = FormatArray.from_frac(tf, ti)
        lp.out_t = FormatArray.from_frac(tf, ti)
        xw, xi, xf = lp.out_t.width, lp.out_t.int_bits, lp.out_t.frac
    return p


def reference_outputs(program: FixedProgram, x_raw: np.ndarray) -> np.ndarray:
    """The program contract evaluated literally, one scalar at a time, with Fractions.

    Independent of the vectorised simulator: every assignment is FixedFormat.quantize_value of
    the exact rational value. Returns raw outputs at ``program.output_t`` (object ints).
    """
    q, o = program.quant, program.overflow

    def assign(value: Fraction, fmt: FormatArray, idx: tuple[int, ...]) -> Fraction:
        f = FixedFormat(int(fmt.width[idx]), int(fmt.int_bits[idx]), q, o)
        return f.to_fraction(f.quantize_value(value))

    rows = np.asarray(x_raw, dtype=object)
    out = np.empty((rows.shape[0], program.n_out), dtype=object)
    for b, row in enumerate(rows):
        x = [program.input_t.to_fraction(int(v)) for v in row]
        for lp in program.layers:
            a = []
            for j in range(lp.n_out):
                s = Fraction(0)
                for k in range(lp.n_in):
                    w = Fraction(int(lp.weight_raw[j, k])) * Fraction(2) ** -int(lp.weight_t.frac[j, k])
                    p = assign(w * x[k], lp.product_t, (j, k))
                    s = assign(p if k == 0 else s + p, lp.psum_t, (j, k))
                d = assign(s, lp.dot_t, (j,))
                bias = Fraction(int(lp.bias_raw[j])) * Fraction(2) ** -int(lp.bias_t.frac[j])
                t = assign(d + bias, lp.bsum_t, (j,))
                a.append(assign(max(t, Fraction(0)) if lp.activation == "relu" else t, lp.out_t, (j,)))
            x = a
        scale = Fraction(2) ** program.output_t.frac_bits
        for j, v in enumerate(x):
            r = v * scale
            assert r.denominator == 1
            out[b, j] = int(r)
    return out


def random_inputs(rng: np.random.Generator, program: FixedProgram, n: int) -> np.ndarray:
    """Raw inputs [n, n_in]: the extremes of in_t, zero, and random raws (object ints)."""
    w = program.input_t.width
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    rows = [[lo] * program.n_in, [hi] * program.n_in, [0] * program.n_in]
    rows += [[int(v) for v in _raw_in(rng, FormatArray.uniform((program.n_in,), w, 0))] for _ in range(n)]
    return np.array(rows, dtype=object)


def aster_like_program(
    rng: np.random.Generator,
    sizes: list[int],
    *,
    dot: tuple[int, int] = (20, 32),
    bias: tuple[int, int] = (20, 32),
    init_len: int = 20,
    name: str = "aster_like",
) -> FixedProgram:
    """Formats laid out as Aster's code generator does (DESIGN §7), with random dot_l/bias_l.

    Guard g = ceil(log2 n_in) + 1, G = dot_l + g; weight F = G + u(x_k) (per column); products and
    partial sums F = G; dot F = dot_l; bias, bias sum and activation F = bias_l; input F = initLen.
    Integer bits are random but uniform per layer, so every layer is one loop in the C++.
    """
    input_t = FixedFormat(init_len + 4, 4)
    layers = []
    x_int = np.full(sizes[0], 4)
    for li, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        d, b = int(rng.integers(*dot)), int(rng.integers(*bias))
        big_g = d + int(np.ceil(np.log2(max(n_in, 1)))) + 1
        u = np.maximum(x_int - 1, 0)
        shape = (n_out, n_in)
        acc_i = int(rng.integers(6, 12))
        weight_t = FormatArray.from_frac(np.broadcast_to(big_g + u[None, :], shape), np.full(shape, 2))
        bias_t = FormatArray.from_frac(np.full(n_out, b), np.full(n_out, 2))
        layers.append(
            LayerProgram(
                name=f"layer{li}",
                activation="relu" if li < len(sizes) - 2 else "identity",
                weight_raw=_raw_in(rng, weight_t),
                weight_t=weight_t,
                product_t=FormatArray.from_frac(np.full(shape, big_g), np.full(shape, acc_i)),
                psum_t=FormatArray.from_frac(np.full(shape, big_g), np.full(shape, acc_i)),
                dot_t=FormatArray.from_frac(np.full(n_out, d), np.full(n_out, acc_i)),
                bias_raw=_raw_in(rng, bias_t),
                bias_t=bias_t,
                bsum_t=FormatArray.from_frac(np.full(n_out, b), np.full(n_out, acc_i)),
                out_t=FormatArray.from_frac(np.full(n_out, b), np.full(n_out, acc_i)),
            )
        )
        x_int = np.full(n_out, acc_i)
    return FixedProgram(name, input_t, layers)


ACT_PARAMS: dict[str, dict[str, float]] = {"leaky_relu": {"alpha": 0.1}, "elu": {"alpha": 0.7}}


def random_dense_net(
    rng: np.random.Generator, act: str, widths: list[int], relu_share: float = 0.0
) -> list[DenseLayer]:
    """A dense chain with float32-representable weights: hidden layers use ``act`` (each is ReLU
    instead with probability ``relu_share``), the last layer is linear."""
    layers = []
    n_layers = len(widths) - 1
    for li in range(n_layers):
        w = rng.normal(0, 1.5 / np.sqrt(widths[li]), (widths[li + 1], widths[li])).astype(np.float32)
        b = rng.normal(0, 0.5, widths[li + 1]).astype(np.float32)
        if li == n_layers - 1:
            fn = "identity"
        elif relu_share > 0:
            fn = act if rng.random() < 1.0 - relu_share else "relu"
        else:
            fn = act
        p = ACT_PARAMS.get(fn, {}) if fn == act else {}
        layers.append(DenseLayer(f"l{li}", w.astype(np.float64), b.astype(np.float64), fn, **p))
    return layers


def normal_dense_net(
    rng: np.random.Generator, act: str, widths: list[int], bias_std: float = 0.1
) -> list[DenseLayer]:
    """A dense chain with weights N(0, 1)/sqrt(fan-in) and biases N(0, ``bias_std``) (float32
    values): hidden layers use ``act``, the last layer is linear."""
    layers = []
    for li in range(len(widths) - 1):
        w = (rng.normal(0, 1, (widths[li + 1], widths[li])) / np.sqrt(widths[li])).astype(np.float32)
        b = rng.normal(0, bias_std, widths[li + 1]).astype(np.float32)
        fn = "identity" if li == len(widths) - 2 else act
        p = ACT_PARAMS.get(fn, {})
        layers.append(DenseLayer(f"l{li}", w.astype(np.float64), b.astype(np.float64), fn, **p))
    return layers
