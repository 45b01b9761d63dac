"""Rigorous pieces of error back-substitution shared by the CNN certificates.

Both CNN certificates (:mod:`aster_ext.hls4ml_backend.cnn_backward` for hls4ml's arithmetic,
:mod:`aster_ext.graph_program.backward` for our own graph programs) bound c·e_out, e the error of
the logits, by substituting every stage's error as a linear form of its inputs' errors plus a
local term ν in a known interval, from the output back to the input (DeepPoly's back-substitution
applied to errors). This module holds what they share:

- :func:`upper_dot` / :func:`upper_sum`: upper bounds of Σ max(λ lo, λ hi) and of sums of bounds,
  under float64 rounding (|fl(Σ t) - Σ t| <= γ_n Σ |t|, γ_n = nμ/(1-nμ));
- :func:`slack`: the charge γ_m·Σ |coef| mag of coefficients computed with at most m-term sums,
  times the magnitude bound of the errors they multiply;
- :func:`relu_step`: the ReLU error relaxation. With the input error e ∈ [a, b] (forward
  interval) and d = relu(z + e) - relu(z) between min(0, e) and max(0, e) for every real z:
  s_l e + μ_l <= d <= s_u e + μ_u on [a, b], s_u, s_l the chords of max(0, ·), min(0, ·) through
  a and b, μ_u (μ_l) the largest (smallest) endpoint gap — max(0, e) - s e is convex and
  min(0, e) - s e concave, so their extremes over [a, b] lie at a or b whatever float slope s is
  used. A positive coefficient takes the upper line, a negative one the lower. Stably active
  units pass the coefficient, stably inactive ones drop it.
- :func:`selection` / :func:`times_sparse`: the 0/1 matrix of a window table or a max-pool's picks
  and Λ·G with it (scatter of coefficients back to the elements read);
- :class:`BackSubstitution`: the walk itself — the coefficients Λ of every node still to
  substitute (summed over a node's readers, each float sum charged), in reverse topological
  order, and the collected upper-bound parts;
- :func:`dominating`: per max-pool window, an element whose real and implemented values are at
  least every other element's (then both maxima are that element and the pooled error is its
  error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from scipy import sparse

from .rigorous import ETA, MU, Interval, down, gamma, up


def upper_dot(lam: np.ndarray, iv: Interval) -> np.ndarray:
    """Per row d, an upper bound of max_{v ∈ iv} Σ_i lam[d, i] v_i: with [lo, hi] ⊆ [m - r, m + r],
    the maximum is at most Λ m + |Λ| r, and fl(Λ m) is within γ_n |Λ||m| (+ n η) of Λ m: so
    fl(Λ m) + |Λ| (r + γ_n |m|), the last product rounded up. Columns where the interval is {0}
    are skipped."""
    cols = np.flatnonzero((iv.lo != 0) | (iv.hi != 0))
    if cols.size == 0:
        return np.zeros(lam.shape[0])
    lam = lam[:, cols] if cols.size < iv.lo.size else lam
    m, r = Interval(iv.lo[cols], iv.hi[cols]).mid_rad()
    n = cols.size
    w = up(r + up(gamma(n + 2) * np.abs(m)))
    spread = up(up((np.abs(lam) @ w) * (1.0 + 2.0 * gamma(n + 4))) + (n + 1) * ETA)
    return up(up(lam @ m + spread) + (n + 1) * ETA)


def upper_sum(parts: list[np.ndarray]) -> np.ndarray:
    """An upper bound of the exact sum of the (already upward-rounded) arrays."""
    p = np.stack(parts)
    k = p.shape[0]
    return up(up(p.sum(axis=0) + up(gamma(k + 2) * np.abs(p).sum(axis=0))) + (k + 1) * ETA)


def slack(coef_abs: np.ndarray, m: int, mag: np.ndarray) -> np.ndarray:
    """Upper bound of Σ_i γ_m coef_abs[d, i] mag_i: the charge of coefficients rounded with at most
    m-term sums (coef_abs = the exact terms' magnitudes, computed in float, hence inflated; mag
    >= 0 may itself be a float sum of up to m terms, covered by the same inflation)."""
    n = mag.size
    s = up((coef_abs @ mag) * (1.0 + 2.0 * gamma(n + 4)) + (n + 1) * ETA)
    g = gamma(m + 2)
    return up(up(g * s) * (1.0 + 2.0 * g))  # coef_abs itself is within γ_m of the exact sums


def relu_step(
    lam: np.ndarray, e_in: Interval, active: np.ndarray, inactive: np.ndarray, mag_in: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(coefficients on the ReLU's input error, upper bounds to add) for Λ on its output error
    (module docstring); ``mag_in`` bounds |e_in| (for the rounding charge of Λ·s)."""
    unstable = ~(active | inactive)
    cols = np.flatnonzero(unstable)
    coef = np.where(active, lam, 0.0)
    if cols.size == 0:
        return coef, []
    a, b = e_in.lo[cols], e_in.hi[cols]
    width = b - a
    safe = np.where(width > 0, width, 1.0)
    s_u = np.where(width > 0, (np.maximum(b, 0.0) - np.maximum(a, 0.0)) / safe, (a > 0) * 1.0)
    s_l = np.where(width > 0, (np.minimum(b, 0.0) - np.minimum(a, 0.0)) / safe, (a < 0) * 1.0)
    s_u, s_l = np.clip(s_u, 0.0, 1.0), np.clip(s_l, 0.0, 1.0)
    # endpoint gaps; the product and the subtraction each round by at most MU times a magnitude
    # <= |a| + |b| (s in [0, 1]): charged 4 MU (|a| + |b|) + ETA
    margin = up(4.0 * MU * (np.abs(a) + np.abs(b)) + ETA)
    mu_u = up(np.maximum(np.maximum(a, 0.0) - s_u * a, np.maximum(b, 0.0) - s_u * b) + margin)
    mu_l = down(np.minimum(np.minimum(a, 0.0) - s_l * a, np.minimum(b, 0.0) - s_l * b) - margin)
    lu = lam[:, cols]
    pos, neg = np.maximum(lu, 0.0), np.minimum(lu, 0.0)
    relaxed = pos * s_u + neg * s_l
    coef[:, cols] = relaxed
    ones = Interval(np.ones(cols.size), np.ones(cols.size))
    return coef, [upper_dot(pos * mu_u + neg * mu_l, ones), slack(np.abs(relaxed), 1, mag_in[cols])]


def _window_values(
    windows: np.ndarray, real: Interval, err: Interval
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(valid slots, lo/hi of x, lo/hi of x~ = x + e) per window slot, padding at -inf."""
    valid = windows >= 0
    w = np.maximum(windows, 0)
    r_lo = np.where(valid, real.lo[w], -np.inf)
    r_hi = np.where(valid, real.hi[w], -np.inf)
    i_lo = np.where(valid, down(real.lo[w] + err.lo[w]), -np.inf)
    i_hi = np.where(valid, up(real.hi[w] + err.hi[w]), -np.inf)
    return valid, r_lo, r_hi, i_lo, i_hi


def dominating(windows: np.ndarray, real: Interval, err: Interval) -> np.ndarray:
    """Per window (rows of flat input indices, -1 = padding, never the max), the index of an
    element j with x_j >= x_i and x~_j >= x~_i for every other element i of the window (real
    range ``real``, implemented range real ⊕ err), else -1."""
    valid, lo_r, hi_r, lo_i, hi_i = _window_values(windows, real, err)
    rows = np.arange(windows.shape[0])
    j = np.argmax(lo_i, axis=1)
    hi_r[rows, j] = -np.inf
    hi_i[rows, j] = -np.inf
    ok = valid[rows, j] & (lo_r[rows, j] >= hi_r.max(axis=1)) & (lo_i[rows, j] >= hi_i.max(axis=1))
    return np.where(ok, windows[rows, j], -1)


def max_candidates(windows: np.ndarray, real: Interval, err: Interval) -> tuple[np.ndarray, np.ndarray]:
    """Per window slot (rows of flat operand indices, -1 = padding, never the max), whether that
    element can be the window's maximum of the real values x (real range ``real``) and of the
    program's values x~ = x + e (range real ⊕ err): the maximiser i of x has
    hi_i >= x_i >= x_j >= lo_j for every j, so hi_i >= max_j lo_j; the same for x~.
    With i* the real and j* the program's maximiser, max x~ - max x lies in [e_i*, e_j*]
    (max x~ >= x~_i* and max x >= x_j*), so the pooled error is in
    [min over real candidates of e_lo, max over program candidates of e_hi]."""
    valid, r_lo, r_hi, i_lo, i_hi = _window_values(windows, real, err)
    real_cand = valid & (r_hi >= r_lo.max(axis=1, keepdims=True))
    impl_cand = valid & (i_hi >= i_lo.max(axis=1, keepdims=True))
    return real_cand, impl_cand


def pooled_error(
    windows: np.ndarray, real: Interval, err: Interval
) -> tuple[Interval, np.ndarray, np.ndarray]:
    """The interval of max x~ - max x per window, [min e_lo over the real candidates, max e_hi over
    the program's] (:func:`max_candidates`), and the two candidate masks."""
    real_cand, impl_cand = max_candidates(windows, real, err)
    w = np.maximum(windows, 0)
    lo = np.where(real_cand, err.lo[w], np.inf).min(axis=1)
    hi = np.where(impl_cand, err.hi[w], -np.inf).max(axis=1)
    return Interval(lo, hi), real_cand, impl_cand


def pooled_error_sources(
    windows: np.ndarray, err: Interval, real_cand: np.ndarray, impl_cand: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the operand index whose e_lo is the pooled error's lower end and the one whose
    e_hi is its upper end (:func:`pooled_error`): where a model of the search sends a max-pool's
    adjoint when no element dominates the window."""
    w = np.maximum(windows, 0)
    rows = np.arange(windows.shape[0])
    lowest = w[rows, np.where(real_cand, err.lo[w], np.inf).argmin(axis=1)]
    highest = w[rows, np.where(impl_cand, err.hi[w], -np.inf).argmax(axis=1)]
    return lowest, highest


def selection(idx: np.ndarray, n_src: int) -> tuple[sparse.csr_matrix, int]:
    """(G, the largest number of slots reading one element): G[slot, idx[slot]] = 1 for idx >= 0
    (slots = idx flattened)."""
    flat = idx.reshape(-1)
    rows = np.flatnonzero(flat >= 0)
    cols = flat[rows]
    g = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(flat.size, n_src))
    return g, int(np.bincount(cols, minlength=n_src).max(initial=0))


def times_sparse(a: np.ndarray, g: sparse.csr_matrix) -> np.ndarray:
    """a @ g for dense a [n_dir, slots] and sparse g [slots, n]."""
    return np.asarray((g.T @ a.T).T)


class BackSubstitution:
    """One back-substitution of the directions ``dirs`` from ``out_node``: Λ per node not yet
    substituted, and the parts of the upper bound collected so far. ``mag(node)`` bounds |e| of a
    node (for the charge of summing the coefficients of a node read twice: fl(a + b) is within
    μ|a + b| of the sum); with ``mag=None`` nothing is charged (a float model, not a bound)."""

    def __init__(self, out_node: str, dirs: np.ndarray, mag: Callable[[str], np.ndarray] | None) -> None:
        self.lam: dict[str, np.ndarray] = {out_node: np.asarray(dirs, dtype=np.float64)}
        self.parts: list[np.ndarray] = [np.zeros(np.shape(dirs)[0])]
        self._mag = mag

    def give(self, node: str, coef: np.ndarray) -> None:
        """Add ``coef`` to the coefficients of ``node``'s error."""
        if node in self.lam:
            self.lam[node] = self.lam[node] + coef
            if self._mag is not None:
                self.parts.append(slack(np.abs(self.lam[node]), 0, self._mag(node)))
        else:
            self.lam[node] = coef

    def walk(self, nodes: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
        """(node, its final Λ) for every node reached, ``nodes`` given in topological order."""
        for node in reversed(list(nodes)):
            big_l = self.lam.pop(node, None)
            if big_l is not None:
                yield node, big_l

    def bound(self) -> np.ndarray:
        """An upper bound of the sum of the collected parts."""
        return upper_sum(self.parts)
