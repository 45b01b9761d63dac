"""Multi-box refined ILP: one program whose error rows hold on every sub-box of a cover (issue 12).

The single-box ILP (:mod:`.model`) bounds the error of the program by affine forms built from ONE
analysis of the input box B: real ranges, ReLU stability (from range ⊕ cap), centre slopes. On a
sub-box B_i ⊂ B the ranges are tighter, fewer ReLUs are unstable and the forms' remainders
shrink, so the same formats satisfy smaller rows. For a cover B = ∪_i B_i (finite, closed boxes)

    max_{x in B} |P(x) - N(x)|_o = max_i max_{x in B_i} |P(x) - N(x)|_o,

so a program P whose error rows hold on every B_i meets ε on B. The multi-box model
(:func:`stack_models`) has

- shared columns: the one-hot F / Fw binaries b, w (one program), the activation-budget binaries
  d (one implementation per layer), and the objective (hw cost of b, w, d: it depends on the
  formats only, the d costs from the whole box's ranges);
- per sub-box i its own continuous columns ctr^i, rad^i, m^i (the error-form values of the
  z columns and the per-neuron error bounds on B_i) with its own definition, cap and output rows
  — exactly the rows :func:`.model.build_model` writes for B_i (its ranges, its ReLU decisions
  from range_i ⊕ E^i_j, its error forms; the d coefficients on the shared candidates ``act_k``).

Constraint matrix (columns b w | ctr^1 rad^1 m^1 | ... | ctr^K rad^K m^K | d)::

    [ one-hot rows of b, w, d                           ]   (once)
    [ R^1_bw   R^1_c   0     ...  0      R^1_d ]            (rows of B_1)
    [   ...                                    ]
    [ R^K_bw   0       ...        R^K_c  R^K_d ]            (rows of B_K)

Stacking K = 1 gives the single-box model itself (same matrix, bounds, costs; names unchanged).

Soundness does not rest on the ILP. The loop (:func:`assign_multibox`) builds every candidate
program on the WHOLE box (integer bits from the whole-box ranges ⊕ the program's own errors: every
sub-box value is a whole-box value, so no overflow on B means none on any B_i), requires its
whole-box certificate to be overflow-free, and certifies it on every leaf of the current cover
with :func:`.error_forms.certify_forms` (the program fixed, as :func:`.split.certify_by_splitting`
does). The certificate is min(whole-box bound, max over the leaves' bounds) per output; a program
is accepted only when that is <= ε. The exact row check of :func:`.model.exact_row_check` is run on
every sub-box model and reported (as in the single-box path, where it is reported too).

Counterexample-guided loop: start from the leaves of the base result's split certificate; each
round sets per-box caps E^i_j = CAP_FACTOR·max|e_z,j| of the incumbent program on B_i (the
refinement rule of :mod:`.solve`, which lets each neuron's error grow CAP_FACTOR-fold), solves the
stacked ILP at target t (warm start: the incumbent), builds and certifies the program. Leaves
whose bound exceeds ε are bisected (:func:`.split.split_dimension`) and the model re-solved — or,
when the box budget is spent, t is tightened by ε / bound. The caps fix the rows' ReLU decisions
(range ⊕ cap), so fresh caps can exclude the incumbent itself: an infeasible model is re-solved
with the caps the incumbent was found with (split boxes inherit their parent's), under which it
is feasible up to the sub-box ranges; without such caps every cap is scaled by CAP_RELAX (at most
CAP_RELAX_MAX in all); then the boxes no uniform F satisfies are split. A certified, cheaper
program becomes the incumbent; then the worst leaves are split further (more boxes: tighter rows)
while the budget lasts, and t is raised by the certificate's slack ε / bound (at most RELAX_MAX:
the rows are conservative, the certificate decides), until PATIENCE + 1 certified rounds in a row
were not cheaper or MAX_ROUNDS solves ran. The result is the cheapest certified program, never
costlier than the base: the base is kept when nothing cheaper certifies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..aster.settings import SETTINGS
from ..certify import Certificate
from ..cost import program_cost
from ..errors import InfeasibleError
from ..ir import DenseLayer
from ..ranges import ExactParams
from ..rigorous import up
from .error_forms import certify_forms, forms_analysis
from .model import (
    RefinedModel,
    build_model,
    exact_row_check,
    lp_text,
    solve_model,
    uniform_start,
)
from .split import bisect, certify_by_splitting, input_sensitivity, split_dimension
from .symbolic_ranges import symbolic_ranges

if TYPE_CHECKING:
    from .solve import RefinedResult

INIT_BOXES = 4  # leaves of the base's split certificate the loop starts from (at most the budget)
MAX_ROUNDS = 10  # ILP solves of one multi-box search
CAP_FACTOR = 3.0  # per-box caps E^i_j = CAP_FACTOR·max|e_z,j| of the incumbent on B_i (as .solve)
SOLVE_CAP_S = 10.0  # seconds per HiGHS run of the stacked model
CAP_ROOM, CAP_ITER = 1.5, 2  # caps below CAP_ROOM x the incumbent's row value are raised (loop)
CAP_RELAX, CAP_RELAX_MAX = 4.0, 16.0  # caps x4 (at most x16 in all) after an infeasible model
RELAX_MAX = 1.5  # largest factor a certified round's slack ε / bound raises the ILP target by
PATIENCE = 1  # certified rounds that were not cheaper before the search stops (more boxes each)


# --------------------------------------------------------------------------------------------
# the stacked model
# --------------------------------------------------------------------------------------------


def _is_onehot(name: str) -> bool:
    return name.startswith("onehot")


def stack_models(models: list[RefinedModel], cost: np.ndarray | None = None) -> RefinedModel:
    """The multi-box ILP of the module docstring from one single-box model per sub-box.

    Every model must come from :func:`.model.build_model` on the same layers, setting, granularity
    and activation candidates ``act_k`` (so the b, w, d columns mean the same in each); the result
    keeps the one-hot rows of the first model once and every model's other rows with its
    continuous columns moved to its own block. ``cost`` (default: the first model's) is the
    objective over the stacked columns' shared part (b, w, d). The returned model's per-neuron
    data (ctr_f, cz, caps, ...) are the first model's: use the models themselves for
    :func:`.model.exact_row_check`; the stacked one is for :func:`.model.solve_model` and
    :func:`.model.lp_text`. One model is returned as is."""
    if len(models) == 1 and cost is None:
        return models[0]
    m0 = models[0]
    nshared = m0.d_off - 3 * m0.n_neurons  # b and w columns
    nblk = 3 * m0.n_neurons
    nd = m0.n_cols - m0.d_off
    k_all = len(models)
    for m in models[1:]:
        if (
            m.n_cols != m0.n_cols
            or m.d_off != m0.d_off
            or not np.array_equal(m.fracs, m0.fracs)
            or len(m.act_k) != len(m0.act_k)
            or any(not np.array_equal(a, b) for a, b in zip(m.act_k, m0.act_k, strict=True))
        ):
            raise ValueError("stack_models: the sub-box models do not share their binary columns")
    d_new = nshared + k_all * nblk
    ncol = d_new + nd
    blocks, lo_l, hi_l, names = [], [], [], []
    for k, m in enumerate(models):
        a = m.a.tocoo()
        col = a.col.astype(np.int64)
        new_col = np.where(col < nshared, col, np.where(col < m.d_off, col + k * nblk, col - m.d_off + d_new))
        keep_row = np.array([not _is_onehot(nm) for nm in m.row_names]) if k else np.ones(a.shape[0], bool)
        rows_kept = np.nonzero(keep_row)[0]
        row_map = np.full(a.shape[0], -1, dtype=np.int64)
        row_map[rows_kept] = np.arange(rows_kept.size)
        sel = keep_row[a.row]
        blocks.append(
            sp.csr_matrix((a.data[sel], (row_map[a.row[sel]], new_col[sel])), shape=(rows_kept.size, ncol))
        )
        lo_l.append(m.row_lo[rows_kept])
        hi_l.append(m.row_hi[rows_kept])
        names += [
            nm if _is_onehot(nm) or k_all == 1 else f"b{k}_{nm}" for nm in (m.row_names[i] for i in rows_kept)
        ]
    a_st = sp.vstack(blocks, format="csr")

    def per_box(v0: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([v0[:nshared], *[v[nshared : m0.d_off] for v in arrays], v0[m0.d_off :]])

    col_lo = per_box(m0.col_lo, [m.col_lo for m in models])
    col_hi = per_box(m0.col_hi, [m.col_hi for m in models])
    integer = per_box(m0.integer, [m.integer for m in models])
    c0 = m0.cost if cost is None else cost
    cost_st = np.concatenate([c0[:nshared], np.zeros(k_all * nblk), c0[m0.d_off :]])
    col_names = (
        m0.col_names[:nshared]
        + [
            nm if k_all == 1 else f"b{k}_{nm}"
            for k in range(k_all)
            for nm in m0.col_names[nshared : m0.d_off]
        ]
        + m0.col_names[m0.d_off :]
    )
    return RefinedModel(
        m0.setting, m0.layout, m0.decisions, m0.caps, m0.target, m0.fracs, m0.n_neurons, m0.group_f,
        m0.group_w, m0.n_gf, m0.n_gw, m0.ctr_f, m0.rad_f, m0.ctr_w, m0.rad_w, m0.unit, a_st,
        np.concatenate(lo_l), np.concatenate(hi_l), col_lo, col_hi, cost_st, integer, names, col_names,
        m0.cap_rows, m0.out_rows, m0.cz, m0.co, m0.const_ctr, m0.const_rad, m0.rem, m0.act_k, d_new,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


@dataclass
class MultiBoxLog:
    """What :func:`assign_multibox` did (report.json ``split_search`` with method multibox-ilp)."""

    max_boxes: int
    base_hw: int | None
    base_bound: float | None
    rows: list[dict] = field(default_factory=list)
    chosen: int | None = None  # index into rows of the accepted round (None: base kept)
    leaves: int = 0  # sub-boxes of the returned certificate (1: whole box)
    final_hw: int | None = None
    final_bound: float | None = None
    time_s: float = 0.0

    def to_json(self) -> dict:
        return {
            "method": "multibox-ilp",
            "max_boxes": self.max_boxes,
            "base_hw": self.base_hw,
            "base_single_pass_bound": self.base_bound,
            "rounds": self.rows,
            "chosen": self.chosen,
            "leaves": self.leaves,
            "hw_before": self.base_hw,
            "hw_after": self.final_hw,
            "bound_before": self.base_bound,
            "bound_after": self.final_bound,
            "time_s": round(self.time_s, 3),
        }


def _flat(v: list[list[int]] | list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.int64) for x in v])


def _act_choice(model: RefinedModel, deltas: list[float]) -> list[int] | None:
    """Candidate index per activation layer nearest to δ_l (None when the layers have none)."""
    out = []
    for ks, d in zip(model.act_k, deltas, strict=False):
        if ks.size:
            k = -math.log2(d) if d > 0 else float(ks[-1])
            out.append(int(np.clip(np.searchsorted(ks, k), 0, ks.size - 1)))
    return out if out else None


def _rows_m(model: RefinedModel, f: np.ndarray, fw: np.ndarray, dsel: list[int] | None) -> np.ndarray:
    """Per neuron the smallest m_j the cap rows of ``model`` admit for formats F, Fw (and activation
    budget choice ``dsel``): ctr/rad by their definition rows, then layer by layer m_j = max of its
    two cap rows with m_j = 0 (as :func:`.model.uniform_start`; float, a heuristic for the caps)."""
    nf = model.fracs.size
    nb, nw = model.n_gf * nf, model.n_gw * nf
    n = model.n_neurons
    c_m = nb + nw + 2 * n
    idx_f = np.searchsorted(model.fracs, f)
    idx_w = np.searchsorted(model.fracs, fw)
    rows = np.arange(n)
    x = np.zeros(model.n_cols)
    gf = np.zeros(model.n_gf, dtype=np.int64)
    gw = np.zeros(model.n_gw, dtype=np.int64)
    gf[model.group_f], gw[model.group_w] = idx_f, idx_w
    x[np.arange(model.n_gf) * nf + gf] = 1.0
    x[nb + np.arange(model.n_gw) * nf + gw] = 1.0
    x[nb + nw : nb + nw + n] = (model.ctr_f[rows, idx_f] + model.ctr_w[rows, idx_w]) / model.unit
    x[nb + nw + n : c_m] = (model.rad_f[rows, idx_f] + model.rad_w[rows, idx_w]) / model.unit
    pos = model.d_off
    for t, ks in enumerate(k for k in model.act_k if k.size):
        x[pos + (dsel[t] if dsel is not None else ks.size - 1)] = 1.0
        pos += ks.size
    names = np.array([nm.rsplit("_", 1)[0] for nm in model.row_names])
    offs = np.concatenate([[0], np.cumsum(model.layout.sizes)]).astype(int)
    out = np.zeros(n)
    for li in range(len(model.layout.sizes)):
        up_, dn_ = np.nonzero(names == f"capup_{li}")[0], np.nonzero(names == f"capdn_{li}")[0]
        m = np.maximum(model.a[up_] @ x - model.row_hi[up_], model.a[dn_] @ x - model.row_hi[dn_])
        m = np.maximum(m, 0.0)
        x[c_m + offs[li] : c_m + offs[li + 1]] = m
        out[offs[li] : offs[li + 1]] = m
    return out * model.unit


def _decoded_cost(model: RefinedModel, sol) -> float:
    """Objective of the one-hot choices a :class:`~.model.SolveOutcome` decodes to (b, w, d columns)."""
    nf = model.fracs.size
    nb = model.n_gf * nf
    gf = np.zeros(model.n_gf, dtype=np.int64)
    gw = np.zeros(model.n_gw, dtype=np.int64)
    gf[model.group_f] = np.searchsorted(model.fracs, sol.f)
    gw[model.group_w] = np.searchsorted(model.fracs, sol.fw)
    tot = float(model.cost[np.arange(model.n_gf) * nf + gf].sum())
    tot += float(model.cost[nb + np.arange(model.n_gw) * nf + gw].sum())
    pos = model.d_off
    for t, ks in enumerate(k for k in model.act_k if k.size):
        tot += float(model.cost[pos + (sol.act_choice[t] if sol.act_choice else ks.size - 1)])
        pos += ks.size
    return tot


def _certify_cover(
    program, layers, lower, upper, leaves, on_grid
) -> tuple[Certificate, list[np.ndarray], float]:
    """Whole-box certificate (overflow checks), per-leaf bounds of a fixed program and the whole-box
    (single-pass) bound; the returned certificate's bound is min(whole, max over the leaves) per
    output (module docstring)."""
    whole = certify_forms(program, layers, lower, upper, on_grid)
    if not whole.ok:
        return whole, [], whole.bound
    lb = [np.asarray(certify_forms(program, layers, a, b, on_grid).output_bound, dtype=np.float64)
          for a, b in leaves]  # fmt: skip
    bound = np.minimum(np.asarray(whole.output_bound, dtype=np.float64), up(np.max(np.stack(lb), axis=0)))
    return Certificate(whole.errors, whole.ranges, bound, [], on_grid, whole.relu_states), lb, whole.bound


def assign_multibox(
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    eps: float,
    base: RefinedResult | None,
    setting: str,
    granularity: str,
    time_limit: float,
    name: str,
    max_boxes: int,
    progress: Callable[[str], None] | None = None,
    solve_cap_s: float = SOLVE_CAP_S,
) -> tuple[RefinedResult, Certificate, MultiBoxLog]:
    """Counterexample-guided multi-box search (module docstring).

    ``base`` is the certified single-box :class:`~.solve.RefinedResult`, or None when the
    single-box search found none: then the all-maxLen program is split-certified first
    (:func:`.split.certify_by_splitting` at target ε, up to ``max_boxes`` leaves); if its bound over
    the cover exceeds ε, InfeasibleError is raised at once (its message gives that bound), else it is
    the incumbent (``max_width_fallback`` set) and the loop starts from its cover (at least
    INIT_BOXES leaves). Returns (result, certificate, :class:`MultiBoxLog`): the incumbent and its
    certificate unless a cheaper program's cover certificate is <= ε."""
    from .solve import LARGE, WINDOW, RefinedResult, _split, build_program, initial_caps, max_len_program

    t0 = time.perf_counter()
    st = SETTINGS[setting]
    on_grid = st.no_init_error
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(upper, dtype=np.float64).reshape(-1)
    params = [ExactParams.of(layer) for layer in layers]
    whole_ranges = symbolic_ranges(layers, lower, upper, params)
    sens = input_sensitivity(layers)
    log = MultiBoxLog(max_boxes, None if base is None else int(base.hw_cost),
                      None if base is None else float(base.certificate.bound))  # fmt: skip
    best, best_cert = base, None if base is None else base.certificate
    # initial cover
    k0 = max(1, min(INIT_BOXES, max_boxes))
    fallback_leaves = 1  # leaves of the certificate of the result returned when no round is accepted
    if base is not None:
        sc = certify_by_splitting(base.program, layers, lower, upper, 0.0, k0, on_grid)
        leaves = list(sc.leaves)
    else:
        # no single-box result: the all-maxLen program is the first counterexample test. Split where
        # its bound exceeds ε (no format choice beats maxLen on a box, up to the analysis); if the
        # budget runs out first, give up at once; else it is the fallback result (not the caps' source)
        ml_prog, ml_cert = max_len_program(name, layers, lower, upper, st, params, whole_ranges)
        if not ml_cert.ok:
            raise InfeasibleError(f"{name}: the all-maxLen program overflows on the box", node=None)
        sc = certify_by_splitting(ml_prog, layers, lower, upper, eps, max_boxes, on_grid)
        if sc.max_bound > eps:
            raise InfeasibleError(
                f"{name}: even the all-maxLen program certifies only {sc.max_bound:.6g} > eps={eps:g} "
                f"over {len(sc.leaves)} sub-boxes (single pass {ml_cert.bound:.6g})",
                smallest_error=sc.max_bound,
            )
        leaves = list(sc.leaves)
        while len(leaves) < k0:
            i = int(np.argmax([np.max((b - a) * sens) for a, b in leaves]))
            a, b = leaves.pop(i)
            leaves += bisect(a, b, split_dimension(a, b, sens))
        if len(leaves) == len(sc.leaves):
            # the split certificate already holds every leaf's bound (certify_forms per leaf, as
            # _certify_cover would recompute them) and the whole box was checked overflow-free
            cert0 = Certificate(ml_cert.errors, ml_cert.ranges, sc.bound, [], on_grid, ml_cert.relu_states)
        else:
            cert0, _, _ = _certify_cover(ml_prog, layers, lower, upper, leaves, on_grid)
        ml = [np.full(layer.n_out, st.max_len, dtype=np.int64) for layer in layers]
        mll = [list(map(int, v)) for v in ml]
        best = RefinedResult(
            ml_prog, cert0, mll, mll, float("nan"), cert0.bound, "all-maxLen over sub-boxes", 0.0,
            "\\ no ILP solution accepted: the all-maxLen program (every F, Fw = maxLen)\n", False,
            [f"all-maxLen program certified {cert0.bound:.6g} over {len(leaves)} sub-boxes "
             f"(single pass {ml_cert.bound:.6g})"], 0, mll, int(program_cost(ml_prog).hw),
            max_width_fallback=True, act_delta=[2.0**-st.max_len if ly.activation not in ("relu", "identity")
                                                else 0.0 for ly in layers],
        )  # fmt: skip
        best_cert, fallback_leaves = cert0, len(leaves)
    box_ranges = {}

    def ranges_of(a: np.ndarray, b: np.ndarray):
        key = (a.tobytes(), b.tobytes())
        if key not in box_ranges:
            box_ranges[key] = symbolic_ranges(layers, a, b, params)
        return box_ranges[key]

    cap_scale = 1.0  # x CAP_RELAX after an infeasible model without kept caps (reset on acceptance)
    acc_caps: dict[bytes, list[np.ndarray]] = {}  # box key -> caps the incumbent was found with
    keep = False  # this round: the incumbent's own caps (acc_caps) instead of fresh ones

    def caps_for(program, a, b):
        if keep and _key(a, b) in acc_caps:
            return acc_caps[_key(a, b)]
        if program is None:
            return [c * cap_scale for c in initial_caps(layers, ranges_of(a, b), eps, st)]
        run = forms_analysis(program, layers, a, b, on_grid, params, ranges_of(a, b))
        return [np.maximum(cap_scale * CAP_FACTOR * e.mag(), 2.0**-st.max_len) for e in run.z_err]

    target = eps
    stale = 0  # certified rounds in a row that were not cheaper
    for rnd in range(MAX_ROUNDS):
        left = time_limit - (time.perf_counter() - t0)
        if left <= 1.0:
            log.rows.append({"round": rnd + 1, "result": "time limit reached"})
            break
        # the all-maxLen fallback is no incumbent for the caps: 3x its tiny errors would pin every
        # format near maxLen; the ε-derived caps of .solve's first round are used instead
        inc = None if best is None or best.max_width_fallback else best.program
        deadline = t0 + time_limit
        # building the per-box models is not bounded by the solver's time limit: measured on ACC10NN
        # (210 neurons, 847-leaf all-maxLen cover) one round of caps + models + starts took ~60 s past
        # the limit. Stop the search once the limit passes while building (the incumbent is kept).
        caps = []
        for a, b in leaves:
            if time.perf_counter() > deadline:
                break
            caps.append(caps_for(inc, a, b))
        if len(caps) < len(leaves):
            log.rows.append({"round": rnd + 1, "boxes": len(leaves),
                             "result": "time limit reached while computing the per-box caps"})  # fmt: skip
            break
        # shared activation candidates / d costs from the whole box (caps: the max over the boxes)
        cap_whole = [np.max(np.stack([c[li] for c in caps]), axis=0) for li in range(len(layers))]
        opts = {"fold_bias": True, "exact_dw": True, "relu_stability": True}
        m_whole = build_model(
            layers, params, whole_ranges, lower, upper, st, target, cap_whole, granularity, **opts
        )
        models = []
        for (a, b), c in zip(leaves, caps, strict=True):
            if time.perf_counter() > deadline:
                break
            rg = ranges_of(a, b)
            models.append(
                build_model(layers, params, rg, a, b, st, target, c, granularity, act_k=m_whole.act_k, **opts)
            )
        if len(models) < len(leaves):
            log.rows.append({"round": rnd + 1, "boxes": len(leaves),
                             "result": "time limit reached while building the per-box models"})  # fmt: skip
            break
        if inc is not None and not keep:
            # the rows' own error of the incumbent can exceed CAP_FACTOR x its certified error (ReLU
            # decisions of range ⊕ cap, no sign cancellation through unstable neurons): then the caps
            # leave it no room (ACAS Xu: the same program every round). Raise such caps to
            # CAP_FACTOR x the rows' value, at most CAP_ITER times per box (decisions move with caps)
            x0 = (_flat(best.dot_bits), _flat(best.weight_bits), _act_choice(m_whole, best.act_delta))
            for i, (a, b) in enumerate(leaves):
                for _ in range(CAP_ITER):
                    mm = _rows_m(models[i], *x0)
                    cur = np.concatenate(caps[i])
                    if np.all(CAP_ROOM * mm <= cur):
                        break
                    caps[i] = _split(np.maximum(cur, CAP_FACTOR * mm), layers)
                    models[i] = build_model(
                        layers, params, ranges_of(a, b), a, b, st, target, caps[i], granularity,
                        act_k=m_whole.act_k, **opts,
                    )  # fmt: skip
        stacked = stack_models(models, m_whole.cost)
        if inc is not None:
            start = (_flat(best.dot_bits), _flat(best.weight_bits), _act_choice(stacked, best.act_delta))
        else:  # the largest uniform F any box needs (None: some box admits none)
            us = []
            for m in models:
                if time.perf_counter() > deadline:
                    break
                us.append(uniform_start(m))
            if len(us) < len(models):
                log.rows.append({"round": rnd + 1, "boxes": len(leaves),
                                 "result": "time limit reached while seeding the stacked model"})  # fmt: skip
                break
            start = None
            if all(u is not None for u in us):
                i = int(np.argmax([u[0][0] for u in us]))
                start = us[i]
        row: dict = {"round": rnd + 1, "boxes": len(leaves), "ilp_target": target,
                     "ilp_rows": int(stacked.a.shape[0]), "ilp_cols": int(stacked.n_cols)}  # fmt: skip
        # large nets: F/Fw candidates within ±WINDOW of the incumbent (as .solve's warm start does)
        window = WINDOW if inc is not None and stacked.n_neurons > LARGE else None
        sol = solve_model(stacked, min(max(left - 1.0, 0.5), solve_cap_s), 1e-2, start, window)
        if sol.f is not None and sol.objective is not None and start is not None:
            # measured (HiGHS 1.16, LyapunovNN): with a partial start HiGHS may report "optimal" with an
            # objective below the start's while returning the start itself (cost of the decoded
            # solution 588, reported 476; without the start: 534). Then solve again without it.
            c_dec = _decoded_cost(stacked, sol)
            if abs(c_dec - sol.objective) > 1e-6 * max(1.0, abs(c_dec)):
                left = time_limit - (time.perf_counter() - t0)
                alt = solve_model(stacked, min(max(left - 1.0, 0.5), solve_cap_s), 1e-2, None)
                row["restart"] = f"reported {sol.objective:g} vs decoded {c_dec:g}: re-solved without start"
                if alt.f is not None and _decoded_cost(stacked, alt) < c_dec:
                    sol = alt
        row.update(solver=sol.status, solver_s=round(sol.time_s, 2))
        if sol.f is None:
            row["result"] = "no ILP solution"
            log.rows.append(row)
            if sol.status == "infeasible" and not keep and acc_caps:
                # fresh caps (CAP_FACTOR x the incumbent's errors) change the rows' ReLU decisions and
                # can exclude the incumbent itself; its own caps (inherited by split boxes) admit it
                keep = True
                row["result"] += "; back to the incumbent's caps"
                continue
            if sol.status == "infeasible" and not acc_caps and cap_scale < CAP_RELAX_MAX:
                # the caps (not the boxes) are the likely culprit: the rows' ReLU decisions of range ⊕ cap
                # make an unstable chain's m_j exceed CAP_FACTOR x the certified error; relax them
                cap_scale *= CAP_RELAX
                row["result"] += f"; caps x{cap_scale:g}"
                continue
            # counterexamples: the boxes whose rows no uniform F satisfies; split them
            bad = [i for i, m in enumerate(models) if uniform_start(m) is None] or list(range(len(leaves)))
            if len(leaves) >= max_boxes:
                break
            leaves = _split_leaves(leaves, bad, max_boxes, sens, acc_caps)
            continue
        f_l, fw_l = _split(sol.f, layers), _split(sol.fw, layers)
        deltas = stacked.act_delta(sol.act_choice)
        program, _ = build_program(
            name, layers, f_l, fw_l, st, lower, upper, params, whole_ranges, True, True, deltas
        )
        rows_ok = sum(exact_row_check(m, sol.f, sol.fw, sol.act_choice)[0] for m in models)
        cert, leaf_bounds, single = _certify_cover(program, layers, lower, upper, leaves, on_grid)
        hw = int(program_cost(program).hw)
        row.update(hw=hw, exact_rows_ok=f"{rows_ok}/{len(models)}", overflow=not cert.ok,
                   single_pass=single,
                   bound=cert.bound if cert.ok else None)  # fmt: skip
        if progress is not None:
            progress(f"multi-box ILP round {rnd + 1}: {len(leaves)} boxes, target {target:.4g}, "
                     f"hw {hw}, certified {cert.bound:.4g}")  # fmt: skip
        if not cert.ok:
            row["result"] = "overflow on the whole box"
            log.rows.append(row)
            target *= 0.5
            continue
        if cert.bound <= eps:
            if best is None or hw < best.hw_cost:
                res = RefinedResult(
                    program, cert, [list(map(int, v)) for v in f_l], [list(map(int, v)) for v in f_l],
                    float(sol.objective) if sol.objective is not None else float("nan"), cert.bound,
                    f"multibox {sol.status}", sol.time_s, lp_text(stacked, f"multi-box ILP, {len(leaves)} "
                    f"sub-boxes, target {target!r}, setting {setting}"), rows_ok == len(models),
                    list(base.notes) if base is not None else [], rnd + 1,
                    [list(map(int, v)) for v in fw_l], hw, act_delta=deltas,
                )  # fmt: skip
                res.notes.append(
                    f"multi-box ILP: one program certified {cert.bound:.6g} over {len(leaves)} sub-boxes "
                    f"(single pass {single:.6g}); "
                    f"hw {hw}" + ("" if base is None else f" (single-box refined: hw {base.hw_cost})")
                )
                best, best_cert = res, cert
                log.chosen, log.leaves = len(log.rows), len(leaves)
                cap_scale, keep = 1.0, False
                acc_caps = {_key(a, b): c for (a, b), c in zip(leaves, caps, strict=True)}
                row["result"] = "accepted"
                stale = 0
            else:
                row["result"] = "certified, not cheaper"
                stale += 1
            log.rows.append(row)
            if stale > PATIENCE:
                break
            # the rows are conservative (ReLU decisions of range ⊕ cap): aim the next solve at the
            # slack the certificate left (the certificate, not the rows, decides acceptance)
            relax = min(eps / cert.bound * 0.99, RELAX_MAX) if cert.bound > 0 else 1.0
            if relax > 1.0:
                target *= relax
            if len(leaves) < max_boxes:
                # more boxes, tighter rows: split the worse half of the leaves (by their bound)
                order = list(np.argsort([-float(np.max(b)) for b in leaf_bounds]))
                leaves = _split_leaves(leaves, order[: max(1, len(leaves) // 2)], max_boxes, sens, acc_caps)
            elif relax <= 1.0:
                break
            continue
        row["result"] = "not certified"
        log.rows.append(row)
        bad = [i for i, b in enumerate(leaf_bounds) if float(np.max(b)) > eps]
        if target > eps:  # a raised target overshot: take back the part the certificate exceeded
            target = max(eps, target * eps / cert.bound * 0.98)
        if len(leaves) < max_boxes and bad:
            leaves = _split_leaves(leaves, bad, max_boxes, sens, acc_caps)
        else:
            target *= min(0.95, eps / cert.bound * 0.98)
    log.time_s = time.perf_counter() - t0
    if best is None:
        raise InfeasibleError(
            f"{name}: the multi-box ILP found no program certified at eps={eps:g} "
            f"on up to {max_boxes} sub-boxes"
        )
    if log.chosen is None:
        log.leaves = fallback_leaves
    log.final_hw, log.final_bound = int(best.hw_cost), float(best_cert.bound)
    return best, best_cert, log


def _key(a: np.ndarray, b: np.ndarray) -> bytes:
    return a.tobytes() + b.tobytes()


def _split_leaves(leaves, which, max_boxes: int, sens: np.ndarray, inherit: dict | None = None):
    """Bisect the leaves with indices ``which`` (in that order) while the cover has fewer than
    ``max_boxes`` leaves; each is replaced by its two halves (union exactly the leaf). ``inherit``
    (box key -> data) gives both halves their parent's entry."""
    out = list(leaves)
    chosen = [leaves[i] for i in which]
    for box in chosen:
        if len(out) >= max_boxes:
            break
        i = next(j for j, b in enumerate(out) if b is box)
        a, b = out.pop(i)
        halves = bisect(a, b, split_dimension(a, b, sens))
        if inherit is not None and _key(a, b) in inherit:
            for h in halves:
                inherit[_key(*h)] = inherit[_key(a, b)]
        out += halves
    return out


__all__ = ["MultiBoxLog", "assign_multibox", "stack_models"]
