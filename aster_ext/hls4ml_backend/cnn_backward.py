"""Backward error bounds of an hls4ml CNN program: linear error forms back-substituted over the DAG.

The forward walker (:class:`.cnn.CnnWalker`) encloses every stored tensor's error e = v~ - v in an
interval per element; a linear layer then adds |W~|·rad(e) in magnitude, so errors that cancel
through two layers (W2 W1 with mixed signs) are counted twice over. This module bounds c·e_out
for given directions c (each logit up and down, each margin y_l - y_k) by back-substitution, as
DeepPoly does for values, on the *errors*. Every stage's error is, exactly or within a sound
linear relaxation, an affine function of its inputs' errors plus an independent local term ν
(the walker's intervals of that stage's own roundings):

- input: e = ν_in (the input cast);
- Conv2D / Dense: e_out = W~ e_src (over each pixel's window; padding contributes 0) + ν, with
  ν = (W~ - W) x + (A(b~) - b) + Σ (A(p) - p) + the result cast, enclosed per output by the walker
  (x over the real range); exact in e_src;
- ReLU (input error e ∈ [a, b] from the walker): stably inactive: 0; stably active: e + ν_cast;
  otherwise d = relu(z + e) - relu(z) lies between min(0, e) and max(0, e), so
  s_l e + μ_l <= d <= s_u e + μ_u on [a, b] with the chords s_u = (max(0,b) - max(0,a))/(b - a),
  s_l = (min(0,b) - min(0,a))/(b - a) and μ_u (μ_l) the largest (smallest) gap at the endpoints
  (max(0,e) - s_u e is convex, min(0,e) - s_l e concave: their extremes over [a, b] are at a or b);
  a positive coefficient takes the upper line, a negative one the lower;
- average pooling of n values: e_out = (1/n) Σ e_i + ν (the casts of the additions, the truncating
  division and the result cast);
- merge Add: e_out = e_1 + e_2 + ν_cast;
- max pooling: where one window element j dominates, x_j >= x_i and x~_j >= x~_i for every other i
  (from the real ranges and the walker's error intervals), both maxima pick it and
  e_out = e_j + ν_casts (monotone casts keep the order, so io_stream's casts before the max agree);
  elsewhere the walker's interval of the pooled error (the substitution stops there).

With Λ the coefficients of c·e_out on a stage's error (Λ = c at the output), a stage contributes
max over ν of Λ·ν and passes Λ W~ (resp. Λ s, Λ/n, Λ) to its sources, summed over a tensor's
readers. c·e_out <= Σ stages max Λ·ν + relaxation offsets; every stage's forward interval is a
sound enclosure, so the bound holds for every input of the region.

Floating point: the coefficients are computed in float64; the identity above is kept exact by
charging every rounded coefficient with its error, |fl(Λ') - Λ'| <= γ_m |Λ||W~| (m terms per
entry), times max |e_src| from the walker; every sum of contributions is rounded upward
(:func:`aster_ext.backsub.upper_dot`). The result is an upper bound in exact arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ..backsub import BackSubstitution, relu_step, selection, slack, times_sparse, upper_dot
from ..rigorous import Interval


@dataclass
class InputRec:
    """The input tensor: e = ν (its cast)."""

    noise: Interval


@dataclass
class LinearRec:
    src: str
    weight: np.ndarray  # [C_out, K] implemented weights W~ (exact float64 values)
    gather: np.ndarray | None  # [P, K] flat indices into src (-1: zero padding); None: Dense
    noise: Interval  # [P*C_out], (p, c_out) order


@dataclass
class ReluRec:
    src: str
    e_in: Interval  # the walker's interval of the pre-activation error
    active: np.ndarray  # stably active (output error = input error + cast)
    inactive: np.ndarray  # stably inactive (output error exactly 0)
    noise: Interval  # the result cast (0 where inactive)


@dataclass
class MaxRec:
    src: str
    pick: np.ndarray  # [Q] flat input index of each window's dominating element, -1: none
    noise: Interval  # the casts where pick >= 0, the walker's pooled error interval elsewhere


@dataclass
class AvgRec:
    src: str
    windows: np.ndarray  # [Q, S] flat input indices
    noise: Interval


@dataclass
class AddRec:
    srcs: tuple[str, str]
    noise: Interval


Rec = InputRec | LinearRec | ReluRec | MaxRec | AvgRec | AddRec


def _window_mag(w_abs: np.ndarray, mag: np.ndarray, gather: np.ndarray | None) -> np.ndarray:
    """u[(p, j)] = Σ_k |W_jk| mag[gather[p, k]] (padding 0), flattened (p, c_out): then
    Σ_i (|Λ||W~| scattered)_i mag_i = |Λ| · u, one product instead of a scatter per direction."""
    if gather is None:
        return w_abs @ mag
    patch = np.where(gather >= 0, mag[np.maximum(gather, 0)], 0.0)  # [P, K]
    return (patch @ w_abs.T).reshape(-1)


class Scatter:
    """:func:`selection` matrices of the stages' fixed window tables, cached per stage (node)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], tuple[sparse.csr_matrix, int]] = {}

    def of(self, node: str, idx: np.ndarray, n_src: int) -> tuple[sparse.csr_matrix, int]:
        hit = self._cache.get((node, n_src))
        if hit is None:
            hit = self._cache[(node, n_src)] = selection(idx, n_src)
        return hit


def upper_bounds(
    records: dict[str, Rec],
    e_fwd: dict[str, Interval],
    out_node: str,
    dirs: np.ndarray,
    scatter: Scatter,
) -> np.ndarray:
    """Upper bounds of dirs[d] · e_out for every direction d (module docstring).

    ``records``: every tensor's stage record, in topological order (input first); ``e_fwd``: the
    walker's error interval of every tensor."""
    bs = BackSubstitution(out_node, dirs, lambda node: e_fwd[node].mag())
    parts, give = bs.parts, bs.give
    for node, big_l in bs.walk(records):
        rec = records[node]
        parts.append(upper_dot(big_l, rec.noise))
        if isinstance(rec, InputRec):
            continue
        if isinstance(rec, LinearRec):
            w = rec.weight
            c_out, k = w.shape
            mag = e_fwd[rec.src].mag()
            if rec.gather is None:
                coef, m = big_l @ w, c_out
            else:
                n_pix = rec.gather.shape[0]
                g, mult = scatter.of(node, rec.gather, mag.size)
                coef = times_sparse((big_l.reshape(-1, c_out) @ w).reshape(big_l.shape[0], n_pix * k), g)
                m = c_out * max(mult, 1) + k
            parts.append(slack(np.abs(big_l), m, _window_mag(np.abs(w), mag, rec.gather)))
            give(rec.src, coef)
        elif isinstance(rec, ReluRec):
            coef, extra = relu_step(big_l, rec.e_in, rec.active, rec.inactive, e_fwd[rec.src].mag())
            parts.extend(extra)
            give(rec.src, coef)
        elif isinstance(rec, MaxRec):
            mag = e_fwd[rec.src].mag()
            g, mult = selection(rec.pick, mag.size)  # the picks differ per region: not cached
            coef = times_sparse(big_l, g)
            if mult > 1:  # overlapping windows can pick one element twice: summed
                parts.append(slack(times_sparse(np.abs(big_l), g), mult, mag))
            give(rec.src, coef)
        elif isinstance(rec, AvgRec):
            q, s = rec.windows.shape
            mag = e_fwd[rec.src].mag()
            g, mult = scatter.of(node, rec.windows, mag.size)
            share = big_l / s  # one rounding per entry
            coef = times_sparse(np.repeat(share, s, axis=1), g)  # slot (q, i) of output q
            ones = np.ones((1, s))
            parts.append(slack(np.abs(share), mult + 1 + s, _window_mag(ones, mag, rec.windows)))
            give(rec.src, coef)
        else:  # AddRec
            for src in rec.srcs:
                give(src, big_l.copy())
    return bs.bound()


def logit_and_margin_bounds(
    records: dict[str, Rec],
    e_fwd: dict[str, Interval],
    out_node: str,
    label: int,
    scatter: Scatter,
    margins: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(lower, upper) bounds of every logit's error and, with ``margins``, per k a lower bound of
    the error of y_l - y_k (+inf at the label; else None)."""
    n = e_fwd[out_node].lo.size
    eye = np.eye(n)
    others = np.array([k for k in range(n) if k != label], dtype=np.int64)
    # lower bound of (e_l - e_k) = -upper(e_k - e_l)
    marg = eye[others] - eye[label][None, :]
    dirs = np.concatenate([eye, -eye, marg] if margins else [eye, -eye])
    ub = upper_bounds(records, e_fwd, out_node, dirs, scatter)
    hi, lo = ub[:n], -ub[n : 2 * n]
    if not margins:
        return lo, hi, None
    m_lo = np.full(n, np.inf)
    m_lo[others] = -ub[2 * n :]
    return lo, hi, m_lo
