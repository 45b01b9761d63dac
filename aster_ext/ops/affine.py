"""Dense layer y = W x + b on the C-order flattening of its operand (W [n_out, n_in]).

Its linear map is W itself (exact Fractions beside the doubles when the folded weights are not
doubles, e.g. BatchNorm folded exactly by the importer)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ir import Op
from .base import LinearOpKind, register
from .linalg import LinearMap, MapPart, float_enclosure


@register
class AffineOp(LinearOpKind):
    kinds: ClassVar[tuple[str, ...]] = ("affine",)

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        x = args[0].reshape(args[0].shape[0], -1)
        return (x @ op.attrs["weight"].T + op.attrs["bias"]).reshape((x.shape[0], *op.shape))

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        w = np.asarray(op.attrs["weight"], dtype=np.float64)
        n_out, n_in = w.shape
        rows, cols = np.nonzero(w)
        w_exact = op.attrs.get("weight_exact")
        exact = None if w_exact is None else np.asarray(w_exact, dtype=object)[rows, cols]
        part = MapPart(
            n_out,
            n_in,
            rows.astype(np.int64),
            cols.astype(np.int64),
            w[rows, cols],
            exact,
            float_enclosure(exact, w[rows, cols]),
        )
        if w_exact is not None:  # an exact nonzero may sit where the double is 0
            zr, zc = np.nonzero((w == 0) & (np.asarray(w_exact, dtype=object) != 0))
            if zr.size:
                ex = np.asarray(w_exact, dtype=object)
                rows = np.concatenate([rows, zr])
                cols = np.concatenate([cols, zc])
                vals = np.concatenate([w[part.rows, part.cols], np.zeros(zr.size)])
                exact = np.concatenate([exact, ex[zr, zc]])
                part = MapPart(
                    n_out,
                    n_in,
                    rows.astype(np.int64),
                    cols.astype(np.int64),
                    vals,
                    exact,
                    float_enclosure(exact, vals),
                )
        b = np.asarray(op.attrs["bias"], dtype=np.float64)
        b_exact = op.attrs.get("bias_exact")
        return LinearMap((part,), b, b_exact, float_enclosure(b_exact, b))
