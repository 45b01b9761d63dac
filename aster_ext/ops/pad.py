"""Constant padding (ONNX Pad, mode 'constant'): y = x placed inside a border of the value v.

Linear: y = S x + b with S a selection matrix (each input element copied once) and b = v on the
border, 0 inside. ``padding`` = (begin_1..begin_r, end_1..end_r) over the batch-free axes. The
importer folds a zero Pad into a following Conv (or an AveragePool without pads of its own, as
count_include_pad); only Pads it cannot fold become nodes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ir import Op
from .base import LinearOpKind, register
from .linalg import LinearMap, MapPart


@register
class PadOp(LinearOpKind):
    kinds: ClassVar[tuple[str, ...]] = ("pad",)

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        shp = tuple(in_shapes[0])
        r = len(shp)
        pads = tuple(int(p) for p in op.attrs["padding"])
        value = float(op.attrs.get("value", 0.0))
        n_out = int(np.prod(op.shape))
        inner = tuple(slice(pads[a], pads[a] + shp[a]) for a in range(r))
        pos = np.arange(n_out).reshape(op.shape)[inner].reshape(-1)
        bias = np.full(n_out, value)
        bias[pos] = 0.0
        part = MapPart.selection(n_out, int(np.prod(shp)), pos, np.arange(pos.size))
        return LinearMap((part,), bias)
