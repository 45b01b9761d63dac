"""Bit-exact vectorised simulation of a :class:`~.program.GraphProgram` (semantics: program.py).

Walks the IR in topological order with raw integers [B, n] per node. Two arithmetic paths give
identical results: numpy int64 when every intermediate of the program stays below 2^60 in
magnitude (:func:`widest_intermediate_bits`: products, aligned sums, shifted values), numpy
object arrays of Python ints otherwise (or when forced). Wrapping an exact sum to the
accumulator width equals wrapping every partial sum (two's complement is arithmetic mod 2^W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..fixedpoint import convert_checked, quantize_reals, shift_round, wrap_or_saturate
from ..ir import Op
from ..ops import op_class
from ..ops.windows import channel_windows
from .program import LINEAR_KINDS, MOVE_KINDS, GraphProgram, avg_counts, node_size, per_channel

INT64_SAFE_BITS = 60


@dataclass
class GraphTrace:
    """Raw outputs of every node [B, n] (frac = the node's out_t.frac) and overflow counts:
    ``overflows[(node, stage)]`` = number of (sample, element) assignments that wrapped."""

    raw: dict[str, np.ndarray]
    overflows: dict[tuple[str, str], int]
    dtype: str

    def value(self, prog: GraphProgram, name: str) -> np.ndarray:
        """float64 values raw·2^-F (exact when raw fits 53 bits)."""
        r = self.raw[name]
        f = prog.out_t(name).frac
        return np.ldexp(r.astype(np.float64), -f[None, :])


def linear_structure(op: Op, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, widx) of a conv/dense node's linear map: output element rows[t] reads input
    element cols[t] with weight number widx[t] (C-order index into the kernel/weight tensor)."""
    return _linear_structure_cached(id(op), op, tuple(in_shape))


_STRUCT_CACHE: dict[tuple[int, tuple[int, ...]], tuple[Op, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


def _linear_structure_cached(key: int, op: Op, in_shape: tuple[int, ...]):
    hit = _STRUCT_CACHE.get((key, in_shape))
    if hit is not None and hit[0] is op:
        return hit[1]
    name = "kernel" if op.kind != "affine" else "weight"
    w = np.asarray(op.attrs[name])
    attrs = dict(op.attrs)
    attrs[name] = np.arange(1, w.size + 1, dtype=np.float64).reshape(w.shape)  # value = widx + 1
    for k in ("kernel_exact", "weight_exact", "bias_exact"):
        attrs.pop(k, None)
    fake = Op(op.name, op.kind, op.inputs, op.shape, attrs)
    part = op_class(op.kind).linear_map(fake, [in_shape]).parts[0]
    out = (part.rows.copy(), part.cols.copy(), part.values.astype(np.int64) - 1)
    _STRUCT_CACHE[(key, in_shape)] = (op, out)
    return out


def _max_raw(t, frac: int) -> int:
    """Largest |raw| of any element of the formats ``t`` once aligned to ``frac`` fractional bits."""
    pairs = set(zip(t.width.tolist(), t.frac.tolist(), strict=True))
    return max((1 << (w - 1)) << max(frac - f, 0) for w, f in pairs)


def widest_intermediate_bits(prog: GraphProgram) -> int:
    """Bits (sign included) of the largest magnitude any intermediate of the program can take:
    aligned operands, exact sums, products, and the left shifts and RND carries of conversions."""
    net = prog.net
    widest = int(prog.input_t.width.max()) + 2
    for op in net.ops():
        if op.name not in prog.nodes:
            continue
        nd = prog.nodes[op.name]
        mags: list[int] = [1 << int(nd.out_t.width.max())]
        if op.kind in LINEAR_KINDS:
            xmax = _max_raw(prog.out_t(op.inputs[0]), nd.x_frac)
            wabs = np.abs(nd.weight_raw.reshape(nd.weight_raw.shape[0], -1)).sum(axis=1)
            mags.append(max(int(s) * xmax + abs(int(b)) for s, b in zip(wabs, nd.bias_raw, strict=True)))
            up_shift = max(int(nd.out_t.frac.max()) - int(nd.acc_t.frac.min()), 0)
            mags.append(1 << (int(nd.acc_t.width.max()) + up_shift + 1))
        elif op.kind == "avgpool":
            k = int(np.prod(op.attrs["kernel"]))
            mags.append(k * _max_raw(prog.out_t(op.inputs[0]), nd.x_frac))
            cmax = max(int(c) for c in nd.const_raw)
            mags.append((1 << int(nd.acc_t.width.max())) * cmax * 2)
            up_shift = max(int(nd.out_t.frac.max()) - nd.x_frac - nd.const_frac, 0)
            mags.append((1 << int(nd.acc_t.width.max())) * (cmax << (up_shift + 1)))
        elif nd.act_impl is not None:
            xmax = _max_raw(prog.out_t(op.inputs[0]), nd.x_frac)
            mags.append(xmax)
            omax = impl_out_bound(nd.act_impl, xmax)
            up_shift = max(int(nd.out_t.frac.max()) - int(nd.act_impl.out_frac), 0)
            mags.append(omax << (up_shift + 1))
        elif op.kind in ("add", "maxpool"):
            fmax = max(int(prog.out_t(i).frac.max()) for i in op.inputs)
            fmax = max(fmax, int(nd.out_t.frac.max()))
            mags.append(4 * sum(_max_raw(prog.out_t(i), fmax) for i in op.inputs))
        widest = max(widest, max(m.bit_length() for m in mags) + 1)
    return widest


def impl_out_bound(impl, xmax: int) -> int:
    """A bound B > |raw σ~(t)| (at the implementation's out frac, and on a piecewise map's value
    before its final shift) for every raw input |t| <= xmax: a table's largest entry (linear
    interpolation stays between entries), or |s|·xmax + |offset| and the clamps of a piecewise
    map, shifted left when its product frac is below its out frac."""
    if hasattr(impl, "entries"):
        return max(abs(int(v)) for v in np.asarray(impl.entries).reshape(-1)) + 1
    ends = [abs(int(c)) for c in (impl.clamp_lo, impl.clamp_hi) if c is not None]
    lin = max(abs(int(impl.s_neg)), abs(int(impl.s_pos))) * xmax + abs(int(impl.offset))
    return (max([lin, *ends]) << max(impl.out_frac - impl.prod_frac, 0)) + 1


def _to_dtype(a: np.ndarray, obj: bool) -> np.ndarray:
    if obj:
        return np.asarray(a, dtype=object) if np.asarray(a).dtype == object else np.asarray(a).astype(object)
    return np.asarray(a).astype(np.int64)


def _shift_left(raw: np.ndarray, shift: np.ndarray, obj: bool) -> np.ndarray:
    """raw·2^shift, shift >= 0 elementwise (broadcast over the batch axis)."""
    s = np.asarray(shift)
    if obj:
        return raw << s.astype(object)
    return raw << s.astype(np.int64)


def _int_matmul(rows, cols, vals, n_out, x, obj: bool) -> np.ndarray:
    """y[b, r] = Σ_t vals[t]·x[b, cols[t]] over t with rows[t] = r, exactly."""
    batch = x.shape[0]
    if not obj:
        a = sp.csr_matrix((vals.astype(np.int64), (rows, cols)), shape=(n_out, x.shape[1]), dtype=np.int64)
        return np.asarray((a @ x.T).T, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    r, c, v = rows[order], cols[order], vals[order]
    out = np.zeros((batch, n_out), dtype=object)
    out[...] = 0
    if r.size == 0:
        return out
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    prods = x[:, c] * v[None, :]
    out[:, r[starts]] = np.add.reduceat(prods, starts, axis=1)
    return out


def _gather(x: np.ndarray, idx: np.ndarray, fill) -> np.ndarray:
    """x[:, idx] with padding (-1) entries replaced by ``fill``: [B, n_out, K]."""
    safe = np.where(idx >= 0, idx, 0)
    g = x[:, safe]
    if np.any(idx < 0):
        g = np.where((idx >= 0)[None, :, :], g, fill)
    return g


def simulate_graph(prog: GraphProgram, x: np.ndarray, dtype: str = "auto") -> GraphTrace:
    """Run the program on a batch of doubles x [B, *input_shape] (or [B, n_in]); every node's raw
    outputs and the overflow counts. ``dtype``: "auto" | "int64" | "object"."""
    net = prog.net
    xs = np.asarray(x, dtype=np.float64).reshape(-1, int(np.prod(net.input_shape)))
    bits = widest_intermediate_bits(prog)
    if dtype == "auto":
        dtype = "int64" if bits <= INT64_SAFE_BITS else "object"
    if dtype == "int64" and bits > INT64_SAFE_BITS:
        raise ValueError(
            f"int64 simulation needs intermediates below 2^{INT64_SAFE_BITS}; this program needs {bits} bits"
        )
    obj = dtype == "object"
    it = prog.input_t
    overflows: dict[tuple[str, str], int] = {}
    q = prog.quant
    xin = quantize_reals(xs, np.asarray(it.frac, dtype=np.int64)[None, :], 400, q, "WRAP")
    xw = wrap_or_saturate(xin, it.width[None, :].astype(object), "WRAP")
    overflows[(net.input_name, "input")] = int(np.sum(xw != xin))
    raw: dict[str, np.ndarray] = {net.input_name: _to_dtype(xw, obj)}
    for op in net.ops():
        if op.kind in ("input", "softmax", "argmax"):
            continue
        nd = prog.nodes[op.name]
        ins = [raw[i] for i in op.inputs]
        in_t = [prog.out_t(i) for i in op.inputs]
        if op.kind in LINEAR_KINDS:
            xa = _shift_left(ins[0], nd.x_frac - in_t[0].frac[None, :], obj)
            rows, cols, widx = linear_structure(op, tuple(net.op(op.inputs[0]).shape))
            vals = _to_dtype(nd.weight_raw.reshape(-1)[widx], obj)
            acc = _int_matmul(rows, cols, vals, node_size(op), xa, obj)
            acc = acc + _to_dtype(per_channel(op, nd.bias_raw), obj)[None, :]
            acc_w = per_channel(op, nd.acc_t.width)
            wrapped = wrap_or_saturate(acc, acc_w[None, :], "WRAP")
            overflows[(op.name, "acc")] = int(np.sum(wrapped != acc))
            src = per_channel(op, nd.acc_t.frac)[None, :]
            out, ov = convert_checked(
                wrapped, src, nd.out_t.width[None, :], nd.out_t.frac[None, :], q, "WRAP"
            )
            overflows[(op.name, "out")] = int(np.sum(ov))
        elif nd.act_impl is not None:  # table activation: σ~ of the aligned operand, then Q
            impl = nd.act_impl
            t = _shift_left(ins[0], nd.x_frac - in_t[0].frac[None, :], obj)
            v = _to_dtype(impl.apply(t), obj)
            out, ov = convert_checked(
                v, int(impl.out_frac), nd.out_t.width[None, :], nd.out_t.frac[None, :], q, "WRAP"
            )
            overflows[(op.name, "out")] = int(np.sum(ov))
        elif op.kind == "act":
            out = ins[0] if op.attrs["fn"] == "identity" else np.where(ins[0] > 0, ins[0], 0)
            out = _to_dtype(out, obj)
        elif op.kind == "maxpool":
            idx = channel_windows(
                op.attrs, tuple(net.op(op.inputs[0]).shape), tuple(op.shape), op.attrs["kernel"]
            )
            safe = np.where(idx >= 0, idx, 0)
            shift = np.where(idx >= 0, nd.out_t.frac[:, None] - in_t[0].frac[safe], 0)
            g = _gather(ins[0], idx, 0)
            g = _shift_left(g, shift[None, :, :], obj)
            if np.any(idx < 0):
                lowest = g.min() if g.size else 0
                g = np.where((idx >= 0)[None, :, :], g, lowest)
            out = g.max(axis=2)
        elif op.kind == "avgpool":
            idx, _ = avg_counts(op, tuple(net.op(op.inputs[0]).shape))
            xa = _shift_left(ins[0], nd.x_frac - in_t[0].frac[None, :], obj)
            s = _gather(xa, idx, 0).sum(axis=2)
            sw = wrap_or_saturate(s, per_channel(op, nd.acc_t.width)[None, :], "WRAP")
            overflows[(op.name, "acc")] = int(np.sum(sw != s))
            prod = sw * _to_dtype(nd.const_raw, obj)[None, :]
            src = nd.x_frac + nd.const_frac
            out, ov = convert_checked(prod, src, nd.out_t.width[None, :], nd.out_t.frac[None, :], q, "WRAP")
            overflows[(op.name, "out")] = int(np.sum(ov))
        elif op.kind == "add":
            fa = np.maximum(in_t[0].frac, in_t[1].frac)
            tot = _shift_left(ins[0], (fa - in_t[0].frac)[None, :], obj) + _shift_left(
                ins[1], (fa - in_t[1].frac)[None, :], obj
            )
            out, ov = convert_checked(
                tot, fa[None, :], nd.out_t.width[None, :], nd.out_t.frac[None, :], q, "WRAP"
            )
            overflows[(op.name, "out")] = int(np.sum(ov))
        elif op.kind in MOVE_KINDS:
            which, src = op_class(op.kind).index_map(op, [tuple(net.op(i).shape) for i in op.inputs])
            out = np.empty((xs.shape[0], which.size), dtype=object if obj else np.int64)
            for i, a in enumerate(ins):
                sel = which == i
                out[:, sel] = a[:, src[sel]]
        else:  # pragma: no cover - build_program rejects these
            raise ValueError(f"{op.describe()}: not simulated")
        raw[op.name] = _to_dtype(out, obj)
    return GraphTrace(raw, overflows, dtype)


def shift_to(raw: np.ndarray, src_frac: np.ndarray, dst_frac: int) -> np.ndarray:
    """Raw values brought to ``dst_frac`` fractional bits (exact when dst_frac >= src_frac)."""
    return shift_round(np.asarray(raw, dtype=object), np.asarray(src_frac) - dst_frac, "TRN")
