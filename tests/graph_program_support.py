"""Helpers for the graph-program tests: random small CNN graphs and an independent exact-rational
reference of the program semantics (aster_ext/graph_program/program.py docstring), written with
plain loops over output elements, Fractions and explicit floor/wrap (no code shared with the
vectorised simulator)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from aster_ext.graph_program.program import GraphProgram
from aster_ext.ir import Network, Op, build_network


def random_cnn(
    rng: np.random.Generator,
    residual: bool,
    pool: str,
    pool_pad: int = 0,
    n_cls: int = 3,
    acts: tuple[str, str, str] = ("relu", "relu", "relu"),
) -> Network:
    """input (C,H,W) -> conv -> act1 -> [pool] -> [conv3x3 + conv1x1 -> add -> act2] -> flatten
    -> dense -> act3 -> dense (logits), the activations ``acts`` (default all relu; nodes keep
    the names relu1-3). Weights ~ N(0, 0.5), biases ~ N(0, 0.2)."""
    c_in = int(rng.integers(1, 3))
    h = int(rng.integers(4, 7))
    w = int(rng.integers(4, 7))
    c1 = int(rng.integers(1, 4))
    k1 = int(rng.integers(1, 4))
    pad1 = int(rng.integers(0, 2))
    ops = [Op("x", "input", (), (c_in, h, w))]
    h1, w1 = h + 2 * pad1 - k1 + 1, w + 2 * pad1 - k1 + 1
    ops.append(
        Op("conv1", "conv2d", ("x",), (c1, h1, w1), {
            "kernel": rng.normal(0, 0.5, (c1, c_in, k1, k1)), "bias": rng.normal(0, 0.2, c1),
            "stride": (1, 1), "padding": (pad1, pad1, pad1, pad1), "dilation": (1, 1), "group": 1,
        })
    )  # fmt: skip
    ops.append(Op("relu1", "act", ("conv1",), (c1, h1, w1), {"fn": acts[0]}))
    last, shape = "relu1", (c1, h1, w1)
    if pool != "none":
        ph = (h1 + 2 * pool_pad - 2) // 2 + 1
        pw = (w1 + 2 * pool_pad - 2) // 2 + 1
        attrs = {"kernel": (2, 2), "stride": (2, 2), "padding": (pool_pad,) * 4, "dilation": (1, 1)}
        if pool == "avg":
            attrs["count_include_pad"] = bool(rng.integers(0, 2))
        ops.append(Op("pool", "maxpool" if pool == "max" else "avgpool", (last,), (c1, ph, pw), attrs))
        last, shape = "pool", (c1, ph, pw)
    if residual:
        c2 = int(rng.integers(1, 4))
        ops.append(
            Op("conv_a", "conv2d", (last,), (c2, *shape[1:]), {
                "kernel": rng.normal(0, 0.5, (c2, shape[0], 3, 3)), "bias": rng.normal(0, 0.2, c2),
                "stride": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), "group": 1,
            })
        )  # fmt: skip
        ops.append(
            Op("conv_b", "conv2d", (last,), (c2, *shape[1:]), {
                "kernel": rng.normal(0, 0.5, (c2, shape[0], 1, 1)), "bias": rng.normal(0, 0.2, c2),
                "stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "group": 1,
            })
        )  # fmt: skip
        ops.append(Op("add", "add", ("conv_a", "conv_b"), (c2, *shape[1:])))
        ops.append(Op("relu2", "act", ("add",), (c2, *shape[1:]), {"fn": acts[1]}))
        last, shape = "relu2", (c2, *shape[1:])
    n = int(np.prod(shape))
    ops.append(Op("flat", "flatten", (last,), (n,), {"shape": (n,)}))
    hid = int(rng.integers(2, 6))
    ops.append(
        Op(
            "fc1",
            "affine",
            ("flat",),
            (hid,),
            {"weight": rng.normal(0, 0.5, (hid, n)), "bias": rng.normal(0, 0.2, hid)},
        )
    )
    ops.append(Op("relu3", "act", ("fc1",), (hid,), {"fn": acts[2]}))
    ops.append(
        Op(
            "fc2",
            "affine",
            ("relu3",),
            (n_cls,),
            {"weight": rng.normal(0, 0.5, (n_cls, hid)), "bias": rng.normal(0, 0.2, n_cls)},
        )
    )
    return build_network("rand_cnn", ops, "float64 (exact)")


# ------------------------------------------------------------------------------------------
# exact reference of the program semantics


def _q(v: Fraction, frac: int, width: int, quant: str) -> int:
    """Raw integer of ap_fixed assignment of the exact value v (quantise, then wrap)."""
    s = v * Fraction(2) ** frac
    if quant == "RND":
        s += Fraction(1, 2)
    k = s.numerator // s.denominator
    half = 1 << (width - 1)
    return ((k + half) % (2 * half)) - half


def _wrap(k: int, width: int) -> int:
    half = 1 << (width - 1)
    return ((k + half) % (2 * half)) - half


def _val(raw: int, frac: int) -> Fraction:
    return Fraction(int(raw)) * Fraction(2) ** -int(frac)


def reference_run(prog: GraphProgram, x: np.ndarray) -> dict[str, list[Fraction]]:
    """Exact values of every node of the program on one input (flattened, C order)."""
    net = prog.net
    q = prog.quant
    vals: dict[str, list[Fraction]] = {}
    it = prog.input_t
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    vals[net.input_name] = [
        _val(_q(Fraction(float(v)), int(it.frac[j]), int(it.width[j]), q), int(it.frac[j]))
        for j, v in enumerate(xs)
    ]
    for op in net.ops():
        if op.kind == "input":
            continue
        nd = prog.nodes[op.name]
        ot = nd.out_t
        src = vals[op.inputs[0]]
        in_shape = net.op(op.inputs[0]).shape
        out: list[Fraction] = []
        if op.kind in ("conv2d", "affine"):
            b_vals = [_val(b, int(f)) for b, f in zip(nd.bias_raw, nd.acc_t.frac, strict=True)]
            if op.kind == "affine":
                for o in range(op.shape[0]):
                    acc = b_vals[o] + sum(
                        (_val(nd.weight_raw[o, c], int(nd.weight_frac[o])) * src[c] for c in range(len(src))),
                        Fraction(0),
                    )
                    out.append(_finish(acc, o, o, nd, q))
            else:
                c_in, h, w = in_shape
                _, kh, kw = nd.weight_raw.shape[1:]
                pad = op.attrs["padding"][0]
                st = op.attrs["stride"][0]
                for o in range(op.shape[0]):
                    for oy in range(op.shape[1]):
                        for ox in range(op.shape[2]):
                            acc = b_vals[o]
                            for c in range(c_in):
                                for dy in range(kh):
                                    for dx in range(kw):
                                        yy, xx = oy * st - pad + dy, ox * st - pad + dx
                                        if 0 <= yy < h and 0 <= xx < w:
                                            wv = _val(nd.weight_raw[o, c, dy, dx], int(nd.weight_frac[o]))
                                            acc += wv * src[(c * h + yy) * w + xx]
                            j = (o * op.shape[1] + oy) * op.shape[2] + ox
                            out.append(_finish(acc, o, j, nd, q))
        elif nd.act_impl is not None:  # table activation: σ~ on the aligned raw operand, then Q
            impl = nd.act_impl
            for j, v in enumerate(src):
                t = v * 2**nd.x_frac
                assert t.denominator == 1, "operand not on the alignment grid"
                y = int(impl.apply(np.array([int(t)], dtype=object))[0])
                raw = _q(_val(y, impl.out_frac), int(ot.frac[j]), int(ot.width[j]), q)
                out.append(_val(raw, int(ot.frac[j])))
        elif op.kind == "act":
            out = [max(v, Fraction(0)) for v in src]
        elif op.kind in ("maxpool", "avgpool"):
            c_n, h, w = in_shape
            kh, kw = op.attrs["kernel"]
            st = op.attrs["stride"][0]
            pad = op.attrs["padding"][0]
            for c in range(c_n):
                for oy in range(op.shape[1]):
                    for ox in range(op.shape[2]):
                        win = []
                        n_all = 0
                        for dy in range(kh):
                            for dx in range(kw):
                                yy, xx = oy * st - pad + dy, ox * st - pad + dx
                                n_all += 1
                                if 0 <= yy < h and 0 <= xx < w:
                                    win.append(src[(c * h + yy) * w + xx])
                        j = (c * op.shape[1] + oy) * op.shape[2] + ox
                        if op.kind == "maxpool":
                            out.append(max(win))
                            continue
                        k = n_all if op.attrs.get("count_include_pad") else len(win)
                        s_raw = _wrap(int(sum(win, Fraction(0)) * 2**nd.x_frac), int(nd.acc_t.width[c]))
                        cq = Fraction(2**nd.const_frac, k) + Fraction(1, 2)
                        c_raw = cq.numerator // cq.denominator
                        prod = _val(s_raw, nd.x_frac) * _val(c_raw, nd.const_frac)
                        out.append(_val(_q(prod, int(ot.frac[j]), int(ot.width[j]), q), int(ot.frac[j])))
        elif op.kind == "add":
            other = vals[op.inputs[1]]
            for j, (a, b) in enumerate(zip(src, other, strict=True)):
                out.append(_val(_q(a + b, int(ot.frac[j]), int(ot.width[j]), q), int(ot.frac[j])))
        elif op.kind in ("flatten", "reshape", "output"):
            out = list(src)
        else:
            raise AssertionError(op.kind)
        vals[op.name] = out
    return vals


def _finish(acc: Fraction, o: int, j: int, nd, q: str) -> Fraction:
    fa = int(nd.acc_t.frac[o])
    raw = acc * 2**fa
    assert raw.denominator == 1, "accumulator not on its grid"
    wrapped = _wrap(int(raw), int(nd.acc_t.width[o]))
    ot = nd.out_t
    return _val(_q(_val(wrapped, fa), int(ot.frac[j]), int(ot.width[j]), q), int(ot.frac[j]))


def _sigma_mp(op, v: Fraction) -> Fraction:
    """σ(v) of a table activation to 300 bits (mpmath), as a Fraction: the only inexact step of
    :func:`exact_real`, 2^-290 relative, far below any rounding a test compares it with."""
    import mpmath

    from aster_ext.ops.activation import activation_of_op

    with mpmath.workprec(300):
        y = activation_of_op(op).eval_mp(mpmath.mpf(v.numerator) / v.denominator)
        sign, man, exp, _ = mpmath.mpf(y)._mpf_
        return (-1) ** int(sign) * Fraction(int(man)) * Fraction(2) ** int(exp)


def exact_real(net: Network, x: np.ndarray) -> dict[str, list[Fraction]]:
    """Exact values of the real network (float64 parameters as exact rationals) on one input,
    using the ops' exact linear maps (dense Fractions) and exact relu / max (other activations:
    300-bit values, :func:`_sigma_mp`)."""
    from aster_ext.ops import op_class
    from aster_ext.ops.windows import channel_windows

    vals: dict[str, list[Fraction]] = {}
    for op in net.ops():
        if op.kind == "input":
            vals[op.name] = [Fraction(float(v)) for v in np.asarray(x, dtype=np.float64).reshape(-1)]
            continue
        if op.kind == "act" and op.attrs["fn"] not in ("relu", "identity"):
            vals[op.name] = [_sigma_mp(op, v) for v in vals[op.inputs[0]]]
        elif op.kind == "act":
            vals[op.name] = [max(v, Fraction(0)) for v in vals[op.inputs[0]]]
        elif op.kind == "maxpool":
            idx = channel_windows(
                op.attrs, tuple(net.op(op.inputs[0]).shape), tuple(op.shape), op.attrs["kernel"]
            )
            src = vals[op.inputs[0]]
            vals[op.name] = [max(src[i] for i in row if i >= 0) for row in idx]
        else:
            lmap = op_class(op.kind).linear_map(op, [tuple(net.op(i).shape) for i in op.inputs])
            b = lmap.exact_bias()
            out = list(b)
            for part, name in zip(lmap.parts, op.inputs, strict=True):
                mat = part.exact_dense()
                src = vals[name]
                for r in range(mat.shape[0]):
                    out[r] += sum(
                        (mat[r, c] * src[c] for c in range(mat.shape[1]) if mat[r, c] != 0), Fraction(0)
                    )
            vals[op.name] = out
    return vals
