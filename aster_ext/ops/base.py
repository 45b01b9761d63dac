"""The operator-class interface: one class per IR node kind, all its transfer functions together.

Pattern of auto_LiRPA's ``Bound`` classes / ERAN's DeepPoly nodes. For an IR node ``op`` with
operand values x_1..x_k (C-order flattened where a formula needs vectors), a class provides

- ``evaluate(op, args)``: the float64 reference on a batch (``args[i]`` is ``[B, *shape_i]``);
- ``interval(op, ranges, ctx)``: a box containing op(x) for every x_i in ``ranges[i]``, rigorous
  under float rounding (:mod:`.linalg`);
- ``backward(op, lam, upper, ctx)``: one back-substitution step. Given Λ (rows x n_out), it
  returns matrices M_i (rows x n_i) and a constant c (rows) such that for all reachable values
  Λ·op(x) <= Σ_i M_i x_i + c (``upper``) or >= (lower). Nonlinear ops use the linear
  relaxation stored by ``relaxation`` in ``ctx.relaxations[op.name]``;
- ``linear_map(op, in_shapes)`` (linear ops only): the exact map y = Σ A_i x_i + b, the single
  definition the float paths and the exact-rational replay (:mod:`.exact_check`) read.

Later stages will add, per class, the error-form step, the rounding points, bit-exact
simulation and the C++ template. Their places are the methods ``error_form_step``,
``rounding_points``, ``simulate`` and ``cpp`` below: NOT implemented yet, each raises
NotImplementedError naming the op kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from ..errors import UnsupportedError
from ..ir import Network, Op
from ..rigorous import Interval
from .linalg import LinearMap, linear_backward, linear_interval


@dataclass
class Backward:
    """Result of one back-substitution step: M_i per operand (None = no dependence) and c."""

    coeffs: list[np.ndarray | None]
    const: np.ndarray


@dataclass
class AnalysisContext:
    """Per-analysis state shared by the op classes: node ranges, relaxations, cached linear maps."""

    net: Network
    ranges: dict[str, Interval] = field(default_factory=dict)
    relaxations: dict[str, Any] = field(default_factory=dict)
    _maps: dict[str, LinearMap] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.net.op(name).shape)

    def in_shapes(self, op: Op) -> list[tuple[int, ...]]:
        return [self.shape(i) for i in op.inputs]

    def mag(self, name: str) -> np.ndarray:
        """max |v| over the node's range, flattened."""
        return self.ranges[name].mag().reshape(-1)

    def linear_map(self, op: Op) -> LinearMap:
        if op.name not in self._maps:
            self._maps[op.name] = op_class(op.kind).linear_map(op, self.in_shapes(op))
        return self._maps[op.name]


class OpTransfer(Protocol):
    """The interface every operator class offers (for type checking stage code against it).

    The last four methods are the places of the later stages and are NOT implemented yet: they
    raise NotImplementedError naming the op kind."""

    kinds: ClassVar[tuple[str, ...]]
    linear: ClassVar[bool]
    nonlinear: ClassVar[bool]

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray: ...
    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval: ...
    def relaxation(self, op: Op, ranges: list[Interval]) -> Any: ...
    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward: ...
    def backward_exact(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward: ...
    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap: ...
    def error_form_step(self, op: Op, *args: Any, **kwargs: Any) -> Any: ...
    def rounding_points(self, op: Op, *args: Any, **kwargs: Any) -> Any: ...
    def simulate(self, op: Op, *args: Any, **kwargs: Any) -> Any: ...
    def cpp(self, op: Op, *args: Any, **kwargs: Any) -> Any: ...


class OpKind:
    """Base of the operator classes (see module docstring), implementing :class:`OpTransfer`.
    ``kinds``: the IR kinds it handles."""

    kinds: ClassVar[tuple[str, ...]] = ()
    linear: ClassVar[bool] = False  # affine in its operands (has a linear_map)
    nonlinear: ClassVar[bool] = False  # needs a relaxation for back-substitution

    # ---- reference and range analysis ---------------------------------------------------

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError(f"{op.kind}: float evaluation is not implemented")

    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval:
        raise UnsupportedError(f"{op.describe()}: interval ranges are not implemented for '{op.kind}'")

    def relaxation(self, op: Op, ranges: list[Interval]) -> Any:
        raise UnsupportedError(f"{op.describe()}: no linear relaxation for '{op.kind}'")

    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        raise UnsupportedError(f"{op.describe()}: symbolic ranges are not implemented for '{op.kind}'")

    def backward_exact(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        """The same step in exact rational arithmetic (object arrays of Fraction), small cases only."""
        if not self.linear:
            raise UnsupportedError(f"{op.describe()}: no exact back-substitution for '{op.kind}'")
        lmap = self.linear_map(op, ctx.in_shapes(op))
        coeffs = [lam.dot(part.exact_dense()) for part in lmap.parts]
        return Backward(coeffs, lam.dot(lmap.exact_bias()))

    def linear_map(self, op: Op, in_shapes: list[tuple[int, ...]]) -> LinearMap:
        raise NotImplementedError(f"{op.kind}: not a linear op")

    # ---- places for the next stages (not implemented yet) -------------------------------

    def error_form_step(self, op: Op, *args: Any, **kwargs: Any) -> Any:
        """Propagate per-neuron error forms through the op (DESIGN §4). Not implemented yet."""
        raise NotImplementedError(f"{op.kind}: error-form step is not implemented yet")

    def rounding_points(self, op: Op, *args: Any, **kwargs: Any) -> Any:
        """Where the fixed-point implementation of the op rounds. Not implemented yet."""
        raise NotImplementedError(f"{op.kind}: rounding points are not implemented yet")

    def simulate(self, op: Op, *args: Any, **kwargs: Any) -> Any:
        """Bit-exact fixed-point simulation of the op. Not implemented yet."""
        raise NotImplementedError(f"{op.kind}: bit-exact simulation is not implemented yet")

    def cpp(self, op: Op, *args: Any, **kwargs: Any) -> Any:
        """HLS C++ template of the op. Not implemented yet."""
        raise NotImplementedError(f"{op.kind}: C++ generation is not implemented yet")


class LinearOpKind(OpKind):
    """An op y = Σ_i A_i x_i + b: every transfer function derived from ``linear_map``."""

    linear: ClassVar[bool] = True

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        lmap = self.linear_map(op, [tuple(a.shape[1:]) for a in args])
        batch = args[0].shape[0]
        out = np.broadcast_to(lmap.bias, (batch, lmap.n_out)).copy()
        for part, a in zip(lmap.parts, args, strict=True):
            out += (part.csr @ a.reshape(batch, -1).T).T
        return out.reshape((batch, *op.shape))

    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval:
        iv = linear_interval(ctx.linear_map(op), ranges)
        return Interval(iv.lo.reshape(op.shape), iv.hi.reshape(op.shape))

    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        coeffs, const = linear_backward(ctx.linear_map(op), lam, [ctx.mag(i) for i in op.inputs], upper)
        return Backward(list(coeffs), const)


_REGISTRY: dict[str, OpKind] = {}


def register(cls: type[OpKind]) -> type[OpKind]:
    """Class decorator: one instance serves every IR kind in ``cls.kinds``."""
    inst = cls()
    for kind in cls.kinds:
        if kind in _REGISTRY:
            raise ValueError(f"op kind {kind!r} registered twice")
        _REGISTRY[kind] = inst
    return cls


def op_class(kind: str) -> OpTransfer:
    """The operator class of an IR node kind."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise UnsupportedError(f"no operator class for IR node kind '{kind}'") from None


def registered_kinds() -> frozenset[str]:
    return frozenset(_REGISTRY)
