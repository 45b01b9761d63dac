"""Operator classes: one module per IR node kind with all its transfer functions side by side
(float evaluation, rigorous interval, linear relaxation / back-substitution step, exact linear
map), a registry from IR kind to class, and the graph interpreter that walks the IR DAG with
them (:mod:`.interpreter`). Error forms, rounding points, simulation and C++ per op are not
implemented yet (the methods exist and raise NotImplementedError naming the op)."""

from __future__ import annotations

from . import activation, add, affine, avgpool, conv, io, maxpool, pad, reindex  # noqa: F401  (register)
from .base import AnalysisContext, Backward, LinearOpKind, OpKind, op_class, registered_kinds
from .interpreter import (
    MarginBounds,
    backsubstitute,
    concretize,
    evaluate,
    interval_ranges,
    logits_node,
    margin_bounds,
    symbolic_margins,
    symbolic_ranges,
)

__all__ = [
    "AnalysisContext",
    "Backward",
    "LinearOpKind",
    "MarginBounds",
    "OpKind",
    "backsubstitute",
    "concretize",
    "evaluate",
    "interval_ranges",
    "logits_node",
    "margin_bounds",
    "op_class",
    "registered_kinds",
    "symbolic_margins",
    "symbolic_ranges",
]
