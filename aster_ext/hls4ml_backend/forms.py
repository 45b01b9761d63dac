"""Affine error forms for hls4ml's Dense/ReLU arithmetic: the error bound keeps cancellations.

The interval walker of :mod:`.certify` bounds the error entering a Dense layer by magnitudes,
|z~_j - z_j| <= Σ_i |w~_ji| e_i + local_j, so every layer multiplies the bound by the absolute
row sums of the weights and deep networks get bounds far above the observed error. Here the
error is carried as an affine form over error sources (columns), as in
:mod:`aster_ext.refined.error_forms` (DESIGN §4):

    e = C δ + s ξ,    δ_c ∈ [lo_c, hi_c] (one interval per column),  |ξ_j| <= 1,

with columns: one per input (x~ - x = input_t(x) - x: [-ulp, 0] for TRN, [-ulp/2, ulp/2] for
RND), and per Dense layer and neuron one z column, per activation and neuron one a column.

Dense (hls4ml's template, :mod:`.program`): z~_j = R(A(b~_j) + Σ_i A(x~_i w~_ji)) with A the
cast to accum_t and R the cast to result_t. Exactly,

    z~_j - z_j = Σ_i w~_ji e_i + [ (A(b~_j) - b_j) + Σ_i (A(p_ji) - p_ji) + Σ_i (w~ - W)_ji x_i
                                   + (R(s_j) - s_j) ],

w~ the quantised weights (exact float64 values), W, b the real parameters, x the real input.
The first sum maps the incoming form exactly (C_z = w~ C), the bracket is the layer's new z
column, an interval: the bias difference (exact, up to the radius of the real bias), the product
casts in [-nnz_j·ulp, 0] (TRN) or nnz_j·[-ulp/2, ulp/2] (RND; 0 when accum_t keeps every product
bit), the interval of (w~ - W) x over the real input box (rigorous matvec), and the result cast.
Signed column intervals keep TRN's one-sided bias, and offsets of opposite sign cancel through
later weights, which the magnitude walker cannot see.

ReLU with the error interval E of its input (the form's range intersected with the walker's
magnitude bound) and the real pre-activation range [lo, hi]: hi <= 0 and hi + E_hi <= 0 ->
both outputs are 0 (row and column 0); lo >= 0 and lo + E_lo >= 0 -> a~ - a = e (plus the
result cast); otherwise a~ - a = t·e for some t ∈ [0, 1] (ReLU is monotone and 1-Lipschitz), i.e.
½e + r with a fresh |r| <= ½ max|e| in the a column. The a column of a neuron is merged into the
z column of the same neuron (both enter only through that neuron), so a form has n_0 + Σ n_l
columns. tanh/sigmoid tables restart the form: the a column is the walker's signed enclosure
of the activation error (no correlation with earlier columns kept through a table, but its
offset, e.g. a saturated table's, still cancels through later weights).

Float rigour: C is float64; the rounding of fl(w~ C) goes into the per-neuron slack s (the
refined module's :func:`~aster_ext.refined.error_forms.linear_step`), and the range of a form is
:func:`~aster_ext.refined.error_forms.form_interval` (rigorous). Slopes 0, ½, 1 are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..refined.error_forms import form_interval, linear_step
from ..rigorous import Interval, down, matvec, up
from .types import HlsType


def cast_interval(t: HlsType, n: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of the sum of ``n`` casts to ``t`` that drop bits: each Q(v) - v lies in
    [-ulp, 0] (TRN: floor) or [-ulp/2, ulp/2] (RND: floor(v + ulp/2))."""
    n = np.asarray(n, dtype=np.float64)
    if t.quant == "TRN":
        return down(-n * t.ulp), np.zeros_like(n)
    return down(-n * (t.ulp / 2)), up(n * (t.ulp / 2))


@dataclass(frozen=True)
class Forms:
    """The error form of the current stage's values: C [n, k], slack [n], column intervals [k]."""

    c: np.ndarray
    slack: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray

    @staticmethod
    def of_input(input_t: HlsType, n: int) -> Forms:
        lo, hi = cast_interval(input_t, np.ones(n))
        return Forms(np.eye(n), np.zeros(n), lo, hi)

    def _mid_rad(self) -> tuple[np.ndarray, np.ndarray]:
        return Interval(self.col_lo, self.col_hi).mid_rad()

    def interval(self) -> Interval:
        ctr, rad = self._mid_rad()
        return form_interval(self.c, self.slack, ctr, rad)

    def _append(self, c: np.ndarray, slack: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Forms:
        n = c.shape[0]
        return Forms(
            np.concatenate([c, np.eye(n)], axis=1),
            slack,
            np.concatenate([self.col_lo, lo]),
            np.concatenate([self.col_hi, hi]),
        )

    def dense(
        self,
        w_q: np.ndarray,
        w_q_rad: np.ndarray | None,
        local: Interval,
    ) -> Forms:
        """C_z = w~ C plus a fresh column per neuron with the interval ``local`` (module docstring)."""
        ctr, rad = self._mid_rad()
        mag_cols = up(np.abs(ctr) + rad)
        cz, sz = linear_step(self.c, self.slack, w_q, w_q_rad, mag_cols)
        return self._append(cz, sz, local.lo, local.hi)

    def widen_last(self, extra: tuple[np.ndarray, np.ndarray]) -> Forms:
        """Add the interval ``extra`` to the last n columns (the newest, identity-coupled ones)."""
        n = self.c.shape[0]
        lo, hi = self.col_lo.copy(), self.col_hi.copy()
        lo[-n:] = down(lo[-n:] + extra[0])
        hi[-n:] = up(hi[-n:] + extra[1])
        return Forms(self.c, self.slack, lo, hi)

    def relu(
        self, pre: Interval, err: Interval, e_mag: np.ndarray, cast: tuple[np.ndarray, np.ndarray]
    ) -> tuple[Forms, np.ndarray]:
        """ReLU step (module docstring); ``err`` encloses the input error, ``e_mag`` >= |input error|,
        ``cast`` the result cast's interval. Returns the new forms and the inactive mask."""
        inactive = (pre.hi <= 0) & (up(pre.hi + err.hi) <= 0)
        active = ~inactive & (pre.lo >= 0) & (down(pre.lo + err.lo) >= 0)
        unstable = ~inactive & ~active
        d = np.where(active, 1.0, np.where(unstable, 0.5, 0.0))
        n = d.shape[0]
        ca = d[:, None] * self.c
        sa = d * self.slack
        rem = np.where(unstable, up(0.5 * e_mag), 0.0)
        c_lo, c_hi = cast
        lo = np.where(inactive, 0.0, down(c_lo - rem))
        hi = np.where(inactive, 0.0, up(c_hi + rem))
        # the a column of neuron j is merged into the z column of the Dense stage just before
        # (the last n columns, the identity there, so diag(d) here): d_j δ_z + δ_a ranges over
        # exactly d_j Z + A, one column instead of two, with no loss (d_j ∈ {0, ½, 1} is exact)
        col_lo, col_hi = self.col_lo.copy(), self.col_hi.copy()
        col_lo[-n:] = np.where(inactive, 0.0, down(d * col_lo[-n:] + lo))
        col_hi[-n:] = np.where(inactive, 0.0, up(d * col_hi[-n:] + hi))
        ca[:, -n:] = np.eye(n)
        return Forms(ca, sa, col_lo, col_hi), inactive

    def restart_interval(self, lo: np.ndarray, hi: np.ndarray) -> Forms:
        """A fresh form e = δ, δ ∈ [lo, hi] per neuron (after a table activation)."""
        n = lo.shape[0]
        return Forms(np.eye(n), np.zeros(n), down(lo), up(hi))


def dense_local(
    bias_diff: Interval,
    dw: np.ndarray,
    dw_rad: np.ndarray,
    x: Interval,
    prod: tuple[np.ndarray, np.ndarray],
) -> Interval:
    """The z column's interval before the result cast: bias difference + (w~ - W) x + product casts."""
    return matvec(dw, dw_rad, x).add(bias_diff).add(Interval(prod[0], prod[1]))
