"""Elementwise activations a = σ(z) on tensors of any shape (IR kind ``act``).

Evaluation: the float64 functions of :mod:`aster_ext.evaluate`. Interval: ReLU and identity
exactly; any other σ by ``Activation.image`` (arb enclosures rounded outward; non-monotone
SiLU/GELU through their verified critical points). Relaxation on the operand range [l, u]:

    ReLU: stably active a = z; stably inactive a = 0; unstable (l < 0 < u):
          λ z <= a <= α (z - l),  α >= u/(u - l) (chord rounded up, capped at 1),
          λ = 1 if u > -l else 0 (area heuristic);
    identity: a = z;
    other σ: the lines al z + bl <= σ(z) <= au z + bu of ``Activation.relax`` (sound as exact
          real lines for the returned doubles).

Back-substitution replaces a by these lines according to the sign of Λ (upper bound: Λ⁺ upper
line + Λ⁻ lower line). Rounding: each product Λ·slope that is not exact (slope not 0 or 1)
errs by <= 2μ|fl|; the intercept dot products by γ_{m+1} |Λ| (|bu| + |bl|); both times mag(z)
or 1 go into the constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import UnsupportedError
from ..ir import Op, activation_object
from ..rigorous import MU, Interval, down, gamma, up
from .base import AnalysisContext, Backward, OpKind, register
from .linalg import abs_matvec_up, finish_slack, shift_const

PIECEWISE_LINEAR_ACTS = ("relu", "identity")  # the activations computed exactly (no implementation)


def is_table_act(op: Op) -> bool:
    """An activation node other than relu/identity: a graph program implements it by a table or
    a piecewise map, and gradients through it need σ' (:func:`aster_ext.ops.attack.point_context`)."""
    return op.kind == "act" and op.attrs["fn"] not in PIECEWISE_LINEAR_ACTS


@dataclass
class ActRelaxation:
    """lo_slope·z + lo_icpt <= σ(z) <= up_slope·z + up_icpt (flattened, valid on the z range)."""

    up_slope: np.ndarray
    up_icpt: np.ndarray
    lo_slope: np.ndarray
    lo_icpt: np.ndarray

    @property
    def exact(self) -> np.ndarray:
        """Entries whose slope products are exact (both slopes 0 or 1)."""

        def unit(s: np.ndarray) -> np.ndarray:
            return (s == 0.0) | (s == 1.0)

        return unit(self.up_slope) & unit(self.lo_slope)


def relu_relaxation(lo: np.ndarray, hi: np.ndarray) -> ActRelaxation:
    """The ReLU lines of the module docstring, chord rounded up."""
    active = lo >= 0
    inactive = hi <= 0
    unstable = ~active & ~inactive
    width = np.where(unstable, down(hi - lo), 1.0)
    chord = np.where(unstable, np.minimum(up(hi / width), 1.0), 0.0)
    up_slope = np.where(active, 1.0, np.where(unstable, chord, 0.0))
    up_icpt = np.where(unstable, up(chord * -lo), 0.0)
    lo_slope = np.where(active | (unstable & (hi > -lo)), 1.0, 0.0)
    return ActRelaxation(up_slope, up_icpt, lo_slope, np.zeros_like(lo))


def activation_of_op(op: Op):
    """The activation library's object of an ``act`` node (its σ, σ', enclosures)."""
    try:
        return activation_object(op.attrs["fn"], op.attrs.get("alpha"), op.attrs.get("beta"))
    except ValueError as exc:
        raise UnsupportedError(f"{op.describe()}: activation not supported ({exc})") from exc


@register
class ActivationOp(OpKind):
    kinds: ClassVar[tuple[str, ...]] = ("act",)
    nonlinear: ClassVar[bool] = True

    def evaluate(self, op: Op, args: list[np.ndarray]) -> np.ndarray:
        from ..evaluate import ACTIVATION_FUNCTIONS

        fn = op.attrs["fn"]
        if fn not in ACTIVATION_FUNCTIONS:
            raise UnsupportedError(f"{op.describe()}: activation '{fn}' has no float64 evaluation")
        return ACTIVATION_FUNCTIONS[fn](args[0], op.attrs).reshape((args[0].shape[0], *op.shape))

    def interval(self, op: Op, ranges: list[Interval], ctx: AnalysisContext) -> Interval:
        z = ranges[0]
        fn = op.attrs["fn"]
        if fn == "relu":
            out = z.relu()
        elif fn == "identity":
            out = z
        else:
            lo, hi = activation_of_op(op).image(z.lo, z.hi)
            out = Interval(lo, hi)
        return Interval(out.lo.reshape(op.shape), out.hi.reshape(op.shape))

    def relaxation(self, op: Op, ranges: list[Interval]) -> ActRelaxation:
        lo, hi = ranges[0].lo.reshape(-1), ranges[0].hi.reshape(-1)
        fn = op.attrs["fn"]
        if fn == "relu":
            return relu_relaxation(lo, hi)
        if fn == "identity":
            one = np.ones(lo.size)
            return ActRelaxation(one, np.zeros(lo.size), one, np.zeros(lo.size))
        al, bl, au, bu = activation_of_op(op).relax(lo, hi)
        return ActRelaxation(au, bu, al, bl)

    def backward(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        rx: ActRelaxation = ctx.relaxations[op.name]
        pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
        if upper:
            new = pos * rx.up_slope + neg * rx.lo_slope
            ic = pos @ rx.up_icpt + neg @ rx.lo_icpt
        else:
            new = pos * rx.lo_slope + neg * rx.up_slope
            ic = pos @ rx.lo_icpt + neg @ rx.up_icpt
        m = rx.up_icpt.size
        err = np.where(rx.exact[None, :], 0.0, up(2 * MU * np.abs(new)))
        icpt_mag = up(np.abs(rx.up_icpt) + np.abs(rx.lo_icpt))
        slack = abs_matvec_up(err, ctx.mag(op.inputs[0])) + gamma(m + 1) * abs_matvec_up(
            np.abs(lam), icpt_mag
        )
        return Backward([new], shift_const(np.zeros(lam.shape[0]), ic, finish_slack(slack), upper))

    def backward_exact(self, op: Op, lam: np.ndarray, upper: bool, ctx: AnalysisContext) -> Backward:
        rx: ActRelaxation = ctx.relaxations[op.name]

        def fr(a: np.ndarray) -> np.ndarray:
            return np.array([Fraction(float(v)) for v in a], dtype=object)

        us, ui, ls, li = fr(rx.up_slope), fr(rx.up_icpt), fr(rx.lo_slope), fr(rx.lo_icpt)
        pos = np.where(lam > 0, lam, Fraction(0))
        neg = np.where(lam < 0, lam, Fraction(0))
        if upper:
            return Backward([pos * us + neg * ls], pos.dot(ui) + neg.dot(li))
        return Backward([pos * ls + neg * us], pos.dot(li) + neg.dot(ui))
