"""Backward bound of a graph program's margin errors: linear error forms back-substituted over the DAG.

The forward analysis (:mod:`.errors`) encloses every node's error e = x~ - x in an interval per
element; a linear node then adds |A|·rad(e) in magnitude, so errors that cancel through two
layers are counted in full. Here each node's error is written, exactly or within a sound linear
relaxation, as a linear function of its operands' errors plus an independent local term ν in
an interval that the forward pass already computed:

- input: e = ν (the input rounding);
- conv / dense / avg-pool: e = A e_x + ν with A the exact real map of the node (its ``LinearMap``,
  exact entries within their radii) and ν = ΔA (R_x ⊕ e_x) ⊕ Δb ⊕ ρ (the forward pass's
  parameter and rounding terms; for avg-pool the constant's error);
- ReLU: :func:`aster_ext.backsub.relu_step` on the forward interval of its input error (identity
  activations pass e);
- max-pool: e = e_j where one element j dominates its window (:func:`aster_ext.backsub.dominating`),
  else ν = the forward interval of the pooled error (the substitution stops there);
- residual add: e = e_a + e_b + ρ; element moves (flatten, reshape, transpose, concat): e moves.

For a direction c on the logits, c·e <= Σ_nodes max_ν Λ_node·ν + the relaxation offsets + the
rounding charges, Λ_node the coefficients of c·e on the node's error (summed over its readers),
computed from the logits back with :func:`aster_ext.ops.linalg.linear_backward` (which charges the
rounding of Λ A and the radii of non-double entries). With c = e_k - e_l this bounds the error of
the margin y_l - y_k from below (-c·e), with c = ±e_j a logit's error; :func:`error_bounds` does
both in one pass and :func:`.errors.analyze_errors` intersects them with its forward intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backsub import (
    BackSubstitution,
    pooled_error_sources,
    relu_step,
    selection,
    slack,
    times_sparse,
    upper_dot,
)
from ..ops.linalg import LinearMap, linear_backward
from ..rigorous import Interval


@dataclass
class InputRec:
    """A node whose error is its own interval ν (the input; a max-pool without substitution)."""

    noise: Interval


@dataclass
class MapRec:
    src: str
    lmap: LinearMap  # one part (the operand), no bias
    noise: Interval


@dataclass
class ReluRec:
    src: str
    e_in: Interval
    active: np.ndarray
    inactive: np.ndarray


@dataclass
class MaxRec:
    src: str
    pick: np.ndarray  # flat operand index of each window's dominating element, -1: none
    noise: Interval  # 0 where pick >= 0, the forward pooled error elsewhere
    windows: np.ndarray  # [Q, S] flat operand indices of every window (-1: padding)
    real_cand: np.ndarray  # [Q, S] slots that can hold the real maximum (backsub.max_candidates)
    impl_cand: np.ndarray  # [Q, S] slots that can hold the program's maximum


@dataclass
class AddRec:
    srcs: tuple[str, ...]
    noise: Interval


@dataclass
class MoveRec:
    srcs: tuple[str, ...]
    which: np.ndarray  # operand of every output element
    index: np.ndarray  # flat index in that operand


Rec = InputRec | MapRec | ReluRec | MaxRec | AddRec | MoveRec


def upper_bounds(
    records: dict[str, Rec], e_fwd: dict[str, Interval], out_node: str, dirs: np.ndarray
) -> np.ndarray:
    """Upper bounds of dirs[d] · e_out for every direction d (module docstring); ``records`` holds
    every recorded node in topological order (dict insertion order)."""
    bs = BackSubstitution(out_node, dirs, lambda node: e_fwd[node].mag())
    parts, give = bs.parts, bs.give
    for node, big_l in bs.walk(records):
        rec = records[node]
        if isinstance(rec, InputRec):
            parts.append(upper_dot(big_l, rec.noise))
        elif isinstance(rec, MapRec):
            parts.append(upper_dot(big_l, rec.noise))
            outs, const = linear_backward(rec.lmap, big_l, [e_fwd[rec.src].mag()], True)
            parts.append(const)
            give(rec.src, outs[0])
        elif isinstance(rec, ReluRec):
            coef, extra = relu_step(big_l, rec.e_in, rec.active, rec.inactive, e_fwd[rec.src].mag())
            parts.extend(extra)
            give(rec.src, coef)
        elif isinstance(rec, MaxRec):
            parts.append(upper_dot(big_l, rec.noise))
            g, mult = selection(rec.pick, e_fwd[rec.src].lo.size)
            if mult > 1:  # overlapping windows can pick one element twice: summed
                parts.append(slack(times_sparse(np.abs(big_l), g), mult, e_fwd[rec.src].mag()))
            give(rec.src, times_sparse(big_l, g))
        elif isinstance(rec, AddRec):
            parts.append(upper_dot(big_l, rec.noise))
            for src in rec.srcs:
                give(src, big_l.copy())
        else:
            for src, coef in _moved(rec, big_l, e_fwd):
                give(src, coef)
    return bs.bound()


def _moved(rec: MoveRec, big_l: np.ndarray, e_fwd: dict[str, Interval]) -> list[tuple[str, np.ndarray]]:
    """(operand, its coefficients) of an element move: every operand element is read at most once
    by one operand slot, so the scatter is exact."""
    out = []
    for i, src in enumerate(rec.srcs):
        sel = rec.which == i
        coef = np.zeros((big_l.shape[0], e_fwd[src].lo.size))
        coef[:, rec.index[sel]] = big_l[:, sel]
        out.append((src, coef))
    return out


def error_bounds(
    records: dict[str, Rec], e_fwd: dict[str, Interval], out_node: str, label: int | None, logits: bool
) -> tuple[Interval | None, Interval | None]:
    """With ``label``, the interval of the error of y_label - y_k for every k (entry ``label``:
    [0, 0]); with ``logits``, the interval of every logit's error (upper bounds of +e_j and -e_j).
    None for what was not asked. The margin and the logit directions go through two separate
    back-substitutions: stacked, the floating-point products of the batch round differently
    (by an ulp) with its number of rows, and the margin bounds a report states must be the ones
    ``verify`` re-derives whether or not it also bounds the logits."""
    n = e_fwd[out_node].lo.size
    eye = np.eye(n)
    margin = logit = None
    if label is not None:
        ks = np.array([k for k in range(n) if k != label], dtype=np.int64)
        diff = eye[label][None, :] - eye[ks]  # rows e_l - e_k
        ub = upper_bounds(records, e_fwd, out_node, np.concatenate([diff, -diff]))
        m = ks.size
        lo, hi = np.zeros(n), np.zeros(n)
        hi[ks] = ub[:m]
        lo[ks] = -ub[m : 2 * m]
        margin = Interval(lo, hi)
    if logits:
        ub = upper_bounds(records, e_fwd, out_node, np.concatenate([eye, -eye]))
        logit = Interval(-ub[n:], ub[:n])
    return margin, logit


def node_adjoints(
    records: dict[str, Rec], e_fwd: dict[str, Interval], out_node: str, dirs: np.ndarray
) -> dict[str, np.ndarray]:
    """Per recorded node, Λ [n_dirs, n_node]: the coefficient of that node's own local term ν in
    dirs · e_out, as :func:`upper_bounds` substitutes it (float, no rounding charges: a *model*
    for the format search, :mod:`.sensitivity`, never a bound). Where a max-pool window has no
    dominating element the bound stops substituting; the model instead passes the positive part
    of Λ to the element of largest upper error and the negative part to the one of smallest
    lower error among the elements that can be the program's / the real maximum (the elements the
    forward interval of the pooled error comes from)."""
    bs = BackSubstitution(out_node, dirs, None)
    give = bs.give
    seen: dict[str, np.ndarray] = {}
    for node, big_l in bs.walk(records):
        seen[node] = big_l
        rec = records[node]
        if isinstance(rec, MapRec):
            give(rec.src, np.asarray((rec.lmap.parts[0].csr_t @ big_l.T).T))
        elif isinstance(rec, ReluRec):
            coef, _ = relu_step(big_l, rec.e_in, rec.active, rec.inactive, e_fwd[rec.src].mag())
            give(rec.src, coef)
        elif isinstance(rec, MaxRec):
            e = e_fwd[rec.src]
            amin, amax = pooled_error_sources(rec.windows, e, rec.real_cand, rec.impl_cand)
            up_to = np.where(rec.pick >= 0, rec.pick, amax)
            down_to = np.where(rec.pick >= 0, rec.pick, amin)
            coef = np.zeros((big_l.shape[0], e.lo.size))
            np.add.at(coef.T, up_to, np.maximum(big_l, 0.0).T)
            np.add.at(coef.T, down_to, np.minimum(big_l, 0.0).T)
            give(rec.src, coef)
        elif isinstance(rec, AddRec):
            for src in rec.srcs:
                give(src, big_l)
        elif isinstance(rec, MoveRec):
            for src, coef in _moved(rec, big_l, e_fwd):
                give(src, coef)
    return seen
