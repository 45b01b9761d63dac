"""Convolution (ONNX Conv, 1-D and 2-D): grouped, strided, dilated, zero-padded cross-correlation.

y[o, p] = b[o] + Σ_{c < C_in/G} Σ_k W[o, c, k] · x[g(o)·C_in/G + c, p·s - pad + k·δ],
g(o) = o // (C_out/G), padded positions read 0. It is linear: the sparse matrix A has one entry
per (output, in-group channel, kernel offset) that reads a real input element, with the kernel
value W[o, c, k] (its exact Fraction kept when the folded kernel is not a double). Every
transfer function (evaluation, interval, back-substitution, exact replay) reads that one map.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ir import Op
from .base import LinearOpKind, register
from .linalg import LinearMap, MapPart, float_enclosure
from .windows import spatial_attrs, window_table


@register
class ConvOp(LinearOpKind):
    kinds: ClassVar[tuple[str, ...]] = ("conv2d", "conv1d")

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        in_shape = tuple(in_shapes[0])
        kernel = np.asarray(op.attrs["kernel"], dtype=np.float64)
        c_out, cg = kernel.shape[:2]
        ksp = tuple(kernel.shape[2:])
        d = len(ksp)
        group = int(op.attrs.get("group", 1))
        stride, dil, pb, _ = spatial_attrs(op.attrs, d)
        table = window_table(tuple(in_shape[1:]), ksp, stride, dil, pb, tuple(op.shape[1:]))  # [P, K]
        n_pos, n_k = table.shape
        n_sp = int(np.prod(in_shape[1:]))
        og = c_out // group
        o = np.arange(c_out)[:, None, None, None]
        c = np.arange(cg)[None, None, :, None]
        chan = (o // og) * cg + c  # [c_out, 1, cg, 1]
        cols = chan * n_sp + table[None, :, None, :]  # [c_out, P, cg, K]
        rows = np.broadcast_to(o * n_pos + np.arange(n_pos)[None, :, None, None], cols.shape)
        widx = np.broadcast_to(
            (o * cg + c) * n_k + np.arange(n_k)[None, None, None, :], cols.shape
        )  # index into kernel.reshape(-1)
        valid = np.broadcast_to(table[None, :, None, :] >= 0, cols.shape)
        rows, cols, widx = rows[valid], cols[valid], widx[valid]
        flat_k = kernel.reshape(-1)
        exact_k = op.attrs.get("kernel_exact")
        exact = rad = None
        if exact_k is not None:  # enclosures per kernel entry, then gathered per matrix entry
            exact = np.asarray(exact_k, dtype=object).reshape(-1)[widx]
            rad = float_enclosure(np.asarray(exact_k, dtype=object), kernel).reshape(-1)[widx]
        part = MapPart(
            n_out=int(np.prod(op.shape)),
            n_in=int(np.prod(in_shape)),
            rows=rows.astype(np.int64),
            cols=cols.astype(np.int64),
            values=flat_k[widx],
            exact=exact,
            rad=rad,
        )
        bias = op.attrs.get("bias")
        b = np.zeros(c_out) if bias is None else np.asarray(bias, dtype=np.float64)
        b_exact = op.attrs.get("bias_exact")
        full_b = np.repeat(b, n_pos)
        if b_exact is None:
            return LinearMap((part,), full_b)
        b_rad = np.repeat(float_enclosure(np.asarray(b_exact, dtype=object), b), n_pos)
        return LinearMap((part,), full_b, np.repeat(np.asarray(b_exact, dtype=object), n_pos), b_rad)
