"""Average pooling (ONNX AveragePool / GlobalAveragePool, 1-D and 2-D).

y[c, p] = (1/n_p) Σ_{k in window, not padding} x[c, p·s - pad + k], with n_p = the kernel size
when ``count_include_pad`` (padding counts as zeros) and the number of real elements otherwise.
Global pooling is a window covering the whole map. Linear: the coefficient 1/n_p is kept exact
(a Fraction) beside its double, so every bound covers the real average."""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..ir import Op
from .base import LinearOpKind, register
from .linalg import LinearMap, MapPart, float_enclosure
from .windows import channel_windows


@register
class AvgPoolOp(LinearOpKind):
    kinds: ClassVar[tuple[str, ...]] = ("avgpool",)

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        in_shape = tuple(in_shapes[0])
        idx = channel_windows(op.attrs, in_shape, tuple(op.shape), op.attrs["kernel"])  # [n_out, K]
        n_out, k = idx.shape
        valid = idx >= 0
        count = np.full(n_out, k) if op.attrs.get("count_include_pad", False) else valid.sum(axis=1)
        rows = np.broadcast_to(np.arange(n_out)[:, None], idx.shape)[valid]
        cols = idx[valid]
        cnt = np.broadcast_to(count[:, None], idx.shape)[valid]
        values = 1.0 / cnt.astype(np.float64)
        exact = np.array([Fraction(1, int(n)) for n in cnt], dtype=object)
        part = MapPart(
            n_out,
            int(np.prod(in_shape)),
            rows.astype(np.int64),
            cols.astype(np.int64),
            values,
            exact,
            float_enclosure(exact, values),
        )
        return LinearMap((part,), np.zeros(n_out))
