"""Sound per-neuron interval ranges of the real network over the input box (DESIGN §4).

z_l = W_l a_{l-1} + b_l with the *exact* real parameters (float64 values plus a radius that
covers their distance to the exact decimals/rationals), a_l = act(z_l). Interval arithmetic
via :mod:`aster_ext.rigorous`, so the enclosures hold despite floating-point rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UnsupportedError
from .ir import DenseLayer, activation_object
from .rigorous import Interval, fractions_to_float_enclosure, matvec


@dataclass
class ExactParams:
    """Float64 enclosures of a layer's real parameters: |real - value| <= rad elementwise."""

    weight: np.ndarray
    weight_rad: np.ndarray | None
    bias: np.ndarray
    bias_rad: np.ndarray | None

    @staticmethod
    def of(layer: DenseLayer) -> ExactParams:
        w_rad = b_rad = None
        w, b = layer.weight, layer.bias
        if layer.weight_exact is not None:
            w, w_rad = fractions_to_float_enclosure(layer.weight_exact)
        if layer.bias_exact is not None:
            b, b_rad = fractions_to_float_enclosure(layer.bias_exact)
        return ExactParams(w, w_rad, b, b_rad)


@dataclass
class LayerRanges:
    """Real pre-activation range z and post-activation range a of each neuron of one layer."""

    pre: Interval
    post: Interval


def apply_activation(fn: str, z: Interval, layer: DenseLayer | None = None) -> Interval:
    """Interval image σ(z) of the activation ``fn``, elementwise and rigorous.

    relu/identity exactly; any other activation of :mod:`aster_ext.activations` by
    ``Activation.image`` (arb enclosures rounded outward; non-monotone SiLU/GELU included via
    their verified critical points). ``layer`` supplies the parameters (alpha, beta)."""
    if fn == "relu":
        return z.relu()
    if fn == "identity":
        return z
    try:
        act = layer.act if layer is not None and layer.activation == fn else activation_object(fn)
    except ValueError as exc:
        raise UnsupportedError(f"interval ranges: activation '{fn}' is not supported ({exc})") from exc
    lo, hi = act.image(z.lo, z.hi)
    return Interval(lo, hi)


def affine_interval(params: ExactParams, x: Interval) -> Interval:
    """Enclosure of W x + b over x in the interval, for every real W, b within the radii."""
    z = matvec(params.weight, params.weight_rad, x)
    b = Interval(params.bias, params.bias)
    if params.bias_rad is not None:
        b = Interval(params.bias - params.bias_rad, params.bias + params.bias_rad)
    return z.add(b)


def interval_ranges(
    layers: list[DenseLayer], lower: np.ndarray, upper: np.ndarray, params: list[ExactParams] | None = None
) -> list[LayerRanges]:
    """Per-layer, per-neuron interval ranges of the real network on the box [lower, upper]."""
    ps = params if params is not None else [ExactParams.of(layer) for layer in layers]
    x = Interval(np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))
    out: list[LayerRanges] = []
    for layer, p in zip(layers, ps, strict=True):
        z = affine_interval(p, x)
        a = apply_activation(layer.activation, z, layer)
        out.append(LayerRanges(z, a))
        x = a
    return out
