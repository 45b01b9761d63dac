"""Symbolic (DeepPoly/CROWN-style) ranges of a dense ReLU/linear chain, sound under float rounding.

For layer l the pre-activation z_l = W_l a_{l-1} + b_l is bounded above and below by linear
expressions Λ·a_k + c that are back-substituted layer by layer down to the input box, replacing
a_k by linear relaxations of the activation on the (already computed) range [lo_k, hi_k] of z_k:

    ReLU, stably active: a = z;  stably inactive: a = 0;
    unstable (lo < 0 < hi):  λ z <= a <= α (z - lo),  α >= hi / (hi - lo) (chord, rounded up),
                             λ = 1 if hi > -lo else 0   (the usual area heuristic).
    Any other activation σ (sigmoid, tanh, SiLU, ...): the lines of ``Activation.relax`` on
    [lo, hi],  al z + bl <= σ(z) <= au z + bu, whose float coefficients are sound as *exact
    real* lines (tangent/chord/CROWN choice by curvature, offsets computed rigorously in arb).
    Evaluating them in float adds the per-entry product rounding 2μ|fl(Λ·a)| (times mag(z))
    and the rounding of the intercept dot products (γ_{m+1}|Λ|(|bu| + |bl|)), both pushed
    into the constant like every other rounding below.

Coefficient matrices are float64; every rounding is pushed into the constant c instead of being
carried as a radius matrix: if a float product fl(Λ M) replaces the exact Λ M_exact, then for v
in a known range |(Λ M_exact - fl(Λ M)) v| <= (γ_n |Λ||M| + |Λ| R) mag(v), which is added to
(upper) or subtracted from (lower) c. R is the radius of the exact real weights around their
float64 values (:class:`~aster_ext.ranges.ExactParams`); mag(v) comes from the ranges of earlier
layers. The result is intersected with the interval ranges, so it is never wider than them.

Several lower slopes (``slopes``, opt-in; default the area heuristic alone): λz <= relu(z) holds for
every real z and every λ in [0, 1], so back-substitution through the relaxations built with λ = 0
(``"zero"``), λ = 1 (``"one"``) or the area choice (``"area"``) each yields a sound enclosure of z_l; the
per-neuron intersection of them is sound too. It is taken layer by layer, so every relaxation of
layer l (all choices) is built on the intersected range of z_l, and tighter early ranges tighten the
chords of the later ones. Slopes other than 0/1 never occur, so the float rigor is unchanged.
Not guaranteed: never wider than the area choice alone (back-substitution is not monotone in the
earlier ranges: the area λ and the chords move with them); measured by
scripts/path_sensitive_limits.py (``multi`` columns): slightly tighter on ACAS Xu / ACC10NN sub-boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedError
from ..ir import DenseLayer, activation_object
from ..progress import note
from ..ranges import ExactParams, LayerRanges, affine_interval, apply_activation, interval_ranges
from ..rigorous import MU, Interval, down, gamma, scaled_sum_bound, up


@dataclass
class Relaxation:
    """lo_slope·z + lo_icpt <= a <= up_slope·z + up_icpt elementwise (valid on the layer's z range)."""

    up_slope: np.ndarray
    up_icpt: np.ndarray
    lo_slope: np.ndarray
    exact: np.ndarray  # bool: slope products are exact (slopes 0/1)
    lo_icpt: np.ndarray | None = None  # None = 0 (ReLU, identity)


def relu_relaxation(pre: Interval) -> Relaxation:
    """Linear ReLU relaxation on [lo, hi] (module docstring), with outward-rounded chord."""
    lo, hi = pre.lo, pre.hi
    active = lo >= 0
    inactive = hi <= 0
    unstable = ~active & ~inactive
    width = np.where(unstable, down(hi - lo), 1.0)
    # a <= chord (z - lo) needs chord >= hi/(hi-lo) (< 1 exactly, so min with 1 keeps it valid)
    chord = np.where(unstable, np.minimum(up(hi / width), 1.0), 0.0)
    up_slope = np.where(active, 1.0, np.where(unstable, chord, 0.0))
    up_icpt = np.where(unstable, up(chord * -lo), 0.0)
    lo_slope = np.where(active | (unstable & (hi > -lo)), 1.0, 0.0)
    return Relaxation(up_slope, up_icpt, lo_slope, ~unstable)


def identity_relaxation(n: int) -> Relaxation:
    one = np.ones(n)
    return Relaxation(one, np.zeros(n), one, np.ones(n, dtype=bool))


def relaxation_of(fn: str, pre: Interval, layer: DenseLayer | None = None) -> Relaxation:
    """Sound linear relaxation of the activation ``fn`` on the real range ``pre`` (module docstring)."""
    if fn == "relu":
        return relu_relaxation(pre)
    if fn == "identity":
        return identity_relaxation(pre.lo.size)
    try:
        act = layer.act if layer is not None and layer.activation == fn else activation_object(fn)
    except ValueError as exc:
        raise UnsupportedError(f"symbolic ranges: activation '{fn}' is not supported ({exc})") from exc
    al, bl, au, bu = act.relax(pre.lo, pre.hi)
    return Relaxation(au, bu, al, np.zeros(al.shape, dtype=bool), bl)


def _mag(v: Interval) -> np.ndarray:
    return v.mag()


def _affine_back(
    lam: np.ndarray, c: np.ndarray, p: ExactParams, mag_in: np.ndarray, upper: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Substitute z = W a + b into Λ z + c: returns fl(Λ W) and the rigorously shifted constant."""
    n = p.weight.shape[0]
    aw = np.abs(p.weight)
    al = np.abs(lam)
    new = lam @ p.weight
    cb = lam @ p.bias
    # rounding of Λ W (applied to a with |a| <= mag_in) and of Λ b; plus exact-parameter radii
    slack = gamma(n) * scaled_sum_bound(al, scaled_sum_bound(aw, mag_in))
    slack = up(slack + gamma(n) * scaled_sum_bound(al, np.abs(p.bias)))
    if p.weight_rad is not None:
        slack = up(slack + scaled_sum_bound(al, scaled_sum_bound(p.weight_rad, mag_in)))
    if p.bias_rad is not None:
        slack = up(slack + scaled_sum_bound(al, p.bias_rad))
    slack = up(slack * (1.0 + 4 * MU) + 1e-300)
    if upper:
        return new, up(up(c + cb) + slack)
    return new, down(down(c + cb) - slack)


def _relax_back(
    lam: np.ndarray, c: np.ndarray, rx: Relaxation, mag_z: np.ndarray, upper: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a_k in Λ a_k + c by its relaxation in z_k (upper or lower bound expression)."""
    pos = np.maximum(lam, 0.0)
    neg = np.minimum(lam, 0.0)
    lo_icpt = rx.lo_icpt if rx.lo_icpt is not None else np.zeros_like(rx.up_icpt)
    if upper:
        new = pos * rx.up_slope + neg * rx.lo_slope
        ic = pos @ rx.up_icpt + neg @ lo_icpt
    else:
        new = pos * rx.lo_slope + neg * rx.up_slope
        ic = pos @ lo_icpt + neg @ rx.up_icpt
    m = rx.up_icpt.size
    # elementwise slope products: |error| <= 2μ|fl| per entry (exact where the slope is 0/1);
    # the two intercept dot products and their sum: γ_{m+1} |Λ| (|bu| + |bl|)
    err_el = np.where(rx.exact[None, :], 0.0, up(2 * MU * np.abs(new)))
    icpt_mag = up(np.abs(rx.up_icpt) + np.abs(lo_icpt))
    slack = scaled_sum_bound(err_el, mag_z) + gamma(m + 1) * scaled_sum_bound(np.abs(lam), icpt_mag)
    slack = up(slack * (1.0 + 4 * MU) + 1e-300)
    if upper:
        return new, up(up(c + ic) + slack)
    return new, down(down(c + ic) - slack)


def _box_bound(lam: np.ndarray, c: np.ndarray, x: Interval, upper: bool) -> np.ndarray:
    """max (upper) or min (lower) of Λ x + c over the box, rounded outward."""
    m, r = x.mid_rad()
    n = m.size
    val = lam @ m
    al = np.abs(lam)
    spread = up(scaled_sum_bound(al, r) + gamma(n) * scaled_sum_bound(al, np.abs(m)))
    spread = up(spread * (1.0 + 4 * MU) + 1e-300)
    if upper:
        return up(up(val + spread) + c)
    return down(down(val - spread) + c)


SLOPES = ("area", "zero", "one")  # lower-slope choices of unstable ReLUs (module docstring)


def _with_lower_slope(rx: Relaxation, pre: Interval, choice: str) -> Relaxation:
    """``rx`` (a ReLU relaxation on ``pre``) with the lower slope of its unstable neurons set to
    0 (``"zero"``) or 1 (``"one"``); ``"area"`` keeps the heuristic's choice."""
    if choice == "area":
        return rx
    unstable = (pre.lo < 0) & (pre.hi > 0)
    lam = np.where(unstable, 1.0 if choice == "one" else 0.0, rx.lo_slope)
    return Relaxation(rx.up_slope, rx.up_icpt, lam, rx.exact, rx.lo_icpt)


def symbolic_ranges(
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    params: list[ExactParams] | None = None,
    slopes: tuple[str, ...] = ("area",),
) -> list[LayerRanges]:
    """Per-neuron pre/post-activation ranges by back-substitution, intersected with the interval
    step W·[post range of the previous layer] + b (the previous layer's *tightened* range).

    ``slopes``: the lower-slope choices of unstable ReLUs whose back-substitutions are intersected
    (module docstring; each costs one back-substitution pass per layer)."""
    if not slopes or any(c not in SLOPES for c in slopes):
        raise ValueError(f"slopes: a non-empty tuple of {SLOPES}, got {slopes!r}")
    ps = params if params is not None else [ExactParams.of(layer) for layer in layers]
    plain = interval_ranges(layers, lower, upper, ps)
    x = Interval(np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))
    out: list[LayerRanges] = []
    relax: dict[str, list[Relaxation]] = {c: [] for c in slopes}
    for li, layer in enumerate(layers):
        note(f"symbolic ranges, layer {li + 1}/{len(layers)}")
        step = affine_interval(ps[li], out[-1].post if out else x)
        # ∩ the plain interval range: never wider than it, even by a rounding difference
        base = Interval(np.maximum(step.lo, plain[li].pre.lo), np.minimum(step.hi, plain[li].pre.hi))
        pre = base
        if li > 0:
            for c in slopes:
                hi = _backsub(li, ps, out, relax[c], x, upper=True)
                lo = _backsub(li, ps, out, relax[c], x, upper=False)
                pre = Interval(np.maximum(pre.lo, lo), np.minimum(pre.hi, hi))
            # guard against an empty intersection from an (impossible) inconsistency
            bad = pre.lo > pre.hi
            if np.any(bad):
                pre = Interval(np.where(bad, base.lo, pre.lo), np.where(bad, base.hi, pre.hi))
        post = apply_activation(layer.activation, pre, layer)
        out.append(LayerRanges(pre, post))
        rx = relaxation_of(layer.activation, pre, layer)
        for c in slopes:
            relax[c].append(_with_lower_slope(rx, pre, c) if layer.activation == "relu" else rx)
    return out


def _backsub(
    li: int,
    ps: list[ExactParams],
    ranges: list[LayerRanges],
    relax: list[Relaxation],
    x: Interval,
    upper: bool,
) -> np.ndarray:
    n = ps[li].weight.shape[0]
    lam = np.eye(n)
    c = np.zeros(n)
    for k in range(li, -1, -1):
        mag_in = _mag(ranges[k - 1].post) if k > 0 else _mag(x)
        lam, c = _affine_back(lam, c, ps[k], mag_in, upper)  # now over a_{k-1}
        if k == 0:
            break
        lam, c = _relax_back(lam, c, relax[k - 1], _mag(ranges[k - 1].pre), upper)  # over z_{k-1}
    return _box_bound(lam, c, x, upper)
