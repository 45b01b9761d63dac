"""The network input (a leaf: the interpreter supplies its value or box) and the ops that the
range analyses do not enter: ``softmax`` and ``argmax`` are evaluated only; analyses of a
classifier stop at the logits before them (DESIGN §6)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ir import Op
from .base import OpKind, register


@register
class InputOp(OpKind):
    kinds: ClassVar[tuple[str, ...]] = ("input",)

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        return args[0]


@register
class SoftmaxOp(OpKind):
    """exp(x - max) / Σ exp(x - max) along ``axis`` (batch-free); evaluation only."""

    kinds: ClassVar[tuple[str, ...]] = ("softmax",)

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        axis = int(op.attrs.get("axis", -1))
        axis = axis + 1 if axis >= 0 else axis
        x = args[0]
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)


@register
class ArgmaxOp(OpKind):
    """Index of the first maximum along ``axis`` as float64; evaluation only."""

    kinds: ClassVar[tuple[str, ...]] = ("argmax",)

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        axis = int(op.attrs.get("axis", -1))
        axis = axis + 1 if axis >= 0 else axis
        idx = np.argmax(args[0], axis=axis)
        if op.attrs.get("keepdims", True):
            idx = np.expand_dims(idx, axis)
        return idx.astype(np.float64).reshape((args[0].shape[0], *op.shape))
