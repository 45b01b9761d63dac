"""Refined precision assignment: caps -> ILP -> exact row check -> FixedProgram -> certify_forms.

Rounds: (1) caps E_j = ε / s_j with s_j the largest output sensitivity of neuron j's pre-activation
error (clipped); solve; re-check the rows exactly; build the program; certify it with
:func:`certify_forms`. A failed certificate tightens the ILP target by the observed ratio and
re-solves; an infeasible model with caps relaxes the caps once. (2) Once certified, one
refinement round sets E_j = 2·(certified max|e_z,j|) (more neurons become stably (in)active)
and keeps the result if it is certified and cheaper. Integer bits of every type are the
smallest that the certifier's own value ranges allow (derived from a first analysis pass with
wide formats: error forms do not depend on integer bits).

All-maxLen shortcut: when no uniform F (or only F >= maxLen - 1) satisfies the ILP rows, the
program with every F, Fw at maxLen (:func:`max_len_program`) is certified first. If its bound
exceeds ε, the result is infeasible at once (no HiGHS run: on the 6x200 sigmoid MNIST net HiGHS
spends 30 s on such a model); if it is <= ε, the caps are re-derived from that program's own
certified pre-activation errors (E_j = 2·max|e_z,j|, the refinement round's rule) and the ILP is
solved on them — rows that fail at every F while all-maxLen certifies within ε mean the ε-derived
caps are far above the real errors (slope hulls too wide); that round runs even past the time
limit. When no ILP round certifies, the all-maxLen program is the fallback before InfeasibleError
is raised; then ``RefinedResult.max_width_fallback`` is set (and a note says so). After the ILP,
:func:`relax_act_budgets` trades the certificate's slack for smaller activation tables (a
documented search around the ILP). Since the activation
budgets δ_l are ILP choices (:mod:`.model`) the uniform start tries δ_l = 2^-F with F, so at
F = maxLen - 1 it is (up to one bit) the all-maxLen program: the shortcut fires only when the rows
admit nothing cheaper.

Activations other than ReLU/identity get one implementation per layer (``LayerProgram.act_impl``),
built during that first pass by :func:`make_impl_factory` once the layer's finite-precision
pre-activation range z~ is known: it covers the hull of z~ over the layer (widened by 1/32),
reads the bias sums at F_in = max_j F_j, and meets the error budget δ_l chosen by the ILP (:mod:`.model`) by
the documented rule: smooth activations — a linearly interpolating lookup table
(``build_table(..., interp=True)``) with output frac F_o = ceil(log2(2/δ_l)) + 1 (node rounding
<= δ_l/8, interpolation floor < δ_l/4), covering only the part of the range where σ is not flat
to within δ_l/8 (:func:`~aster_ext.activations.table.trim_flat`; inputs outside clamp to the end
nodes, their error is bounded rigorously by ``clamped_error``), and the smallest index_bits
(<= MAX_INDEX_BITS) whose rigorous error over the whole range is <= δ_l — or, when cheaper, a
segmented table with that table's cell width only where σ curves most and coarser cells elsewhere
(:mod:`~aster_ext.activations.segtable`, same per-cell target); piecewise-linear ones
(leaky ReLU, hard sigmoid, hard tanh) — quantised
clamp(s·t + c) with F_o = max(F_in, ceil(log2(2/δ_l))) and the smallest const_frac meeting δ_l.
If δ_l is out of reach the best implementation is used and the certificate (which always uses the
implementation's actual error) decides. The layer's out_t then has frac F_o for all neurons.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..activations import build_piecewise, build_segmented, build_table, choose_const_frac
from ..activations.table import trim_flat
from ..aster.settings import SETTINGS
from ..certify import Certificate, _needed_int_bits
from ..cost import act_impl_ops, program_cost
from ..errors import InfeasibleError, UserError
from ..fixedpoint import FixedFormat, quantize_fractions
from ..ir import DenseLayer
from ..program import FixedProgram, FormatArray, LayerProgram
from ..ranges import ExactParams, LayerRanges, interval_ranges
from ..rigorous import Interval
from .error_forms import FormsRun, certify_forms, forms_analysis
from .model import (
    RefinedModel,
    Setting,
    SolveOutcome,
    bias_offset,
    build_model,
    exact_row_check,
    guard_bits,
    lp_text,
    solve_model,
    structure_forms,
    uniform_start,
)
from .symbolic_ranges import symbolic_ranges

WIDE_INT = 40
POLISH_CAP_S = 4.0  # time cap of the activation-budget polish (polish_act_budgets)
RELAX_CAP_S = 6.0  # time cap of the post-ILP activation-budget search (relax_act_budgets)
RELAX_STEPS = (4.0, 2.0)  # factors tried on one layer's δ_l, in order (relax_act_budgets)
RELAX_SHIFTS = 2  # at most this many "every F + 1, every δ_l x 4 (or x 2)" moves (relax_act_budgets)
RELAX_SWAPS = (2.0, 4.0)  # factors of the swap move δ_i x f, δ_j / f (relax_act_budgets)
LARGE = 30  # neurons above which the neuron-level ILP is warm-started from the layer-level one
SOLVE_CAP_S = 8.0  # seconds per HiGHS run (incumbent used; the certificate does not rely on optimality)
WINDOW = 3  # provisional integer bits of the first (range-finding) pass
MAX_INDEX_BITS = 16  # largest activation table: 2^16 entries (one per layer)
MAX_ACT_FRAC = 40  # largest output frac of an activation implementation
USE_SEGMENTED = True  # _best_table may return a segmented table (issue 13); False: uniform only


@dataclass
class RefinedResult:
    program: FixedProgram
    certificate: Certificate
    dot_bits: list[list[int]]
    bias_bits: list[list[int]]
    objective: float
    claimed_error: float
    solver_status: str
    solver_time_s: float
    lp_text: str
    exact_check_ok: bool
    notes: list[str] = field(default_factory=list)
    rounds: int = 0
    weight_bits: list[list[int]] = field(default_factory=list)
    hw_cost: int = 0
    max_width_fallback: bool = False  # the all-maxLen program was used (no ILP solution certified)
    act_delta: list[float] = field(default_factory=list)  # per layer activation budget δ_l (0: none)


# ------------------------------------------------------------------------------------------------
# program construction
# ------------------------------------------------------------------------------------------------


def _int_bits(v: Interval, frac: np.ndarray) -> np.ndarray:
    """Smallest I with the half-open AP_TRN no-overflow condition, and width I + F >= 1."""
    return np.maximum(_needed_int_bits(v), 1 - np.asarray(frac, dtype=np.int64))


def _round_weights(layer: DenseLayer, frac_rows: np.ndarray) -> np.ndarray:
    """Raw integers of the exact real weights rounded to nearest at per-row frac (object ints)."""
    f = np.broadcast_to(frac_rows[:, None], layer.weight.shape)
    if layer.weight_exact is not None:
        return quantize_fractions(layer.weight_exact, f, "RND")
    return _round_floats(layer.weight, f)


def _round_bias(layer: DenseLayer, frac: np.ndarray, fold_bias: bool = True) -> np.ndarray:
    """Raw bias constants round_F(b + ½κ·2^-F) (folded rounding mean, see :mod:`.model`) or round_F(b)."""
    if not fold_bias:
        if layer.bias_exact is not None:
            return quantize_fractions(layer.bias_exact, frac, "RND")
        return _round_floats(layer.bias, frac)
    from ..ir import to_fractions

    off = to_fractions(bias_offset(layer.n_in, frac))  # exact dyadics
    return quantize_fractions(layer.exact_bias() + off, frac, "RND")


def _round_floats(v: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """floor(v·2^f + 1/2) exactly (floats are exact dyadics; |v·2^f| < 2^52 uses numpy)."""
    scaled = np.ldexp(np.asarray(v, dtype=np.float64), np.asarray(frac, dtype=np.int64))
    if np.all(np.abs(scaled) < 2.0**51):
        return np.floor(scaled + 0.5).astype(np.int64).astype(object)
    from ..ir import to_fractions

    return quantize_fractions(to_fractions(v), frac, "RND")


def _act_out_frac(delta: float) -> int:
    """Smallest F_o with 2^-(F_o+1) <= δ/4 (the entry / output rounding share), clipped."""
    if not np.isfinite(delta) or delta <= 0:
        return MAX_ACT_FRAC
    return int(min(max(math.ceil(math.log2(2.0 / delta)), 0), MAX_ACT_FRAC))


def make_impl_factory(layers: list[DenseLayer], act_delta: list[float], cache: dict | None = None):
    """The ``impl_factory`` of :func:`~.error_forms.forms_analysis` (module docstring rule).

    ``cache`` (optional, shared between calls) maps (layer, range, F_in, δ) to the implementation
    built for it: the implementation is a pure function of these, so a program that differs from
    an earlier one only after layer l reuses the earlier layers' tables (:func:`relax_act_budgets`)."""

    def factory(li: int, lp: LayerProgram, z_fix: Interval) -> None:
        act = layers[li].act
        delta = act_delta[li] if li < len(act_delta) else 0.0
        f_in = int(lp.bsum_t.frac.max())
        lo, hi = float(np.min(z_fix.lo)), float(np.max(z_fix.hi))
        pad = (hi - lo) / 32 + 2.0**-f_in
        lo, hi = lo - pad, hi + pad
        f_out = _act_out_frac(delta)
        key = (li, lo, hi, f_in, delta)
        if cache is not None and key in cache:
            lp.act_impl = cache[key]
        elif act.kind == "table":
            lp.act_impl = _best_table(act, lo, hi, f_in, f_out, delta, lp.n_out)
        else:
            f_out = max(f_out, f_in)
            try:
                cf = choose_const_frac(act, lo, hi, f_in, f_out, delta)
            except InfeasibleError:
                cf = 48
            lp.act_impl = build_piecewise(act, f_in, f_out, cf)
        if cache is not None:
            cache[key] = lp.act_impl
        n = lp.n_out
        lp.out_t = FormatArray.from_frac(np.full(n, lp.act_impl.out_frac), np.full(n, WIDE_INT))

    return factory


def _best_table(act, lo: float, hi: float, f_in: int, f_out: int, delta: float, n_neurons: int = 1):
    """Cheapest interpolating table meeting δ over [lo, hi] (module docstring).

    The table covers only [lo', hi'] = :func:`trim_flat` (σ varies by <= δ/8 outside it); inputs
    outside clamp to the end nodes. Its error over the whole of [lo, hi] (``clamped_error``,
    rigorous) is what is compared with δ. Uniform table: index_bits start from an estimate
    (interpolation error ~ (h/4)·(spread of σ' over a cell)) and grow until δ is met, the cells are
    single grid points, or MAX_INDEX_BITS is reached; the best table seen is kept. Then the
    segmented table (:func:`~aster_ext.activations.segtable.build_segmented`: cells of that
    table's width only where σ curves most, coarser elsewhere) with the same per-cell target is
    built; it replaces the uniform one when its rigorous error over [lo, hi] is no larger than
    max(δ, the uniform table's) and its cost — ROM_WEIGHT x ROM bits plus the hw of its
    ``n_neurons`` interpolation multipliers and adders (:func:`~aster_ext.cost.act_impl_ops`) — is
    lower."""
    from .model import ROM_WEIGHT

    f_out = min(f_out + 1, MAX_ACT_FRAC)  # node rounding <= δ/8, interpolation floor < δ/4
    t_lo, t_hi = trim_flat(act, lo, hi, 0.125 * delta)
    grid = 2.0**-f_in
    t_lo, t_hi = max(lo, t_lo - grid), min(hi, t_hi + grid)
    s_lo, s_hi = act.slope(t_lo, t_hi)
    width = max(t_hi - t_lo, grid)
    curv = max(float(s_hi) - float(s_lo), 1e-12) / width  # rough σ'' scale (heuristic start only)
    est = math.log2(max(width * math.sqrt(curv / max(4.0 * delta, 1e-300)), 1.0))
    bits = int(min(max(math.floor(est) - 1, 1), MAX_INDEX_BITS))  # >= 1: one cell may not cover
    best, best_err = None, math.inf
    while True:
        tab = build_table(act, t_lo, t_hi, f_in, f_out, bits, interp=True)
        e_lo, e_hi = tab.clamped_error(lo, hi)
        err = max(-e_lo, e_hi)
        if best is None or err < best_err:
            best, best_err = tab, err
        if err <= delta or tab.shift == 0 or bits >= MAX_INDEX_BITS:
            break
        bits += 1
    if not USE_SEGMENTED:
        return best

    def cost(impl) -> float:
        mults, adds, rom = act_impl_ops(impl, np.zeros(n_neurons))
        return sum(a + b for a, b in mults) + sum(adds) + ROM_WEIGHT * rom

    try:
        seg = build_segmented(act, t_lo, t_hi, f_in, f_out, max(delta, best.error_bound),
                              interp=True, finest_shift=best.shift)  # fmt: skip
    except ValueError:  # a breakpoint not exact as a float (extreme fracs): keep the uniform table
        return best
    e_lo, e_hi = seg.clamped_error(lo, hi)
    if max(-e_lo, e_hi) <= max(delta, best_err) and cost(seg) < cost(best):
        return seg
    return best


def polish_act_budgets(
    model: RefinedModel, sol: SolveOutcome, mip_rel_gap: float, notes: list[str], rounds: int
) -> SolveOutcome:
    """A solve stopped by its time cap often keeps the warm start's activation budgets δ_l = 2^-F
    (large tables). With every F and Fw fixed at the solution, re-solve for the δ_l choices alone
    (``window=0``: a small MIP over the d binaries): the cheapest budgets the rows still admit at
    those formats. Kept only when its objective is lower; the exact row check and the certificate
    then judge the polished program as any other (soundness does not rest on this step)."""
    pol = solve_model(model, POLISH_CAP_S, mip_rel_gap, (sol.f, sol.fw, sol.act_choice), window=0)
    better = (
        pol.f is not None
        and pol.objective is not None
        and (sol.objective is None or pol.objective < sol.objective - 1e-9)
    )
    if better:
        notes.append(
            f"round {rounds}: activation budgets re-solved at the fixed formats: objective "
            f"{sol.objective if sol.objective is not None else float('nan'):.6g} -> {pol.objective:.6g}"
        )
        return SolveOutcome(sol.status + "+act-polish", pol.f, pol.fw, pol.objective, pol.time_s,
                            sol.mip_gap, pol.act_choice)  # fmt: skip
    return SolveOutcome(sol.status, sol.f, sol.fw, sol.objective, pol.time_s, sol.mip_gap, sol.act_choice)


def relax_act_budgets(
    best: RefinedResult,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    eps: float,
    st: Setting,
    params: list[ExactParams],
    ranges: list[LayerRanges],
    fold_bias: bool,
    relu_stability: bool,
    budget_s: float,
) -> tuple[FixedProgram, Certificate, list[float], list[np.ndarray], list[np.ndarray], list[str]]:
    """Post-ILP search on the activation budgets δ_l of a certified result (documented search
    around the ILP; issue 13).

    Why: the ILP rows carry a table error δ_l to the outputs through Σ|C_a| and through the slope
    remainders s_rad·m_k of every later neuron, with the ReLU/slope decisions of the caps E_j; the
    certificate of the exact program is usually well below its target (ε - B of slack), and over
    three or more wide layers the rows' amplification of δ_l makes the ILP choose tables far finer
    than the certificate needs (table ROM ~ range·δ_l^-1/2 per layer). What: with every F, Fw fixed
    at the solution, rounds of (1) probe: for every activation layer l (largest table first) its
    next step δ_l <- f·δ_l alone, f the first of ``RELAX_STEPS`` not yet failed for l (4:
    interpolation error ~ h², about one index bit and two entry bits fewer; 2: one entry bit
    fewer); the program is rebuilt (every implementation on its new finite-precision range) and
    certified by :func:`certify_forms`; a probe counts iff the certificate holds with bound <= ε
    and hw + ROM_WEIGHT·table_bits (the ILP's objective, measured on the program) is lower, else
    that factor is dropped for l; (2) combine: the counted probes in order of cost saving per rise
    of the bound, as many as their rises (summed, a guess) fit the slack ε - B, rebuilt and
    certified together; kept if it certifies and beats the best single probe, else the best probe
    is kept. Rounds repeat until no layer has a step left or ``budget_s`` seconds have passed.
    Soundness rests on the certificate alone: every kept program is certified as it is returned.

    When no layer has a step left, a swap move: for f in ``RELAX_SWAPS`` (first f with a fit wins)
    every ordered pair (i, j) of activation layers gets δ_i x f and δ_j / f, the cheapest program that
    fits (same rule) is kept and the rounds resume — it moves the tables' share of ε from a layer to
    one the later layers amplify less (softplus 3x64 ε = 1e-2: δ_0 x2, δ_2 / 2 cut the table ROM by a
    fifth at a lower bound). When no swap fits either, a shift move (at most ``RELAX_SHIFTS``
    times): every F and Fw one bit up (their roundings halve) with every δ_l x4, else x2, kept under
    the same rule, then the rounds resume — it moves the formats' share of ε to the tables where the
    ILP (stopped early at a warm start with δ_l = 2^-F) left no slack.

    Returns (program, certificate, δ per layer, F per layer, Fw per layer, notes)."""
    from .model import ROM_WEIGHT

    t0 = time.perf_counter()
    deltas = list(best.act_delta)
    prog, cert = best.program, best.certificate
    notes: list[str] = []
    f_l = [np.asarray(v, dtype=np.int64) for v in best.dot_bits]
    fw_l = [np.asarray(v, dtype=np.int64) for v in best.weight_bits]
    act_layers = [li for li, d in enumerate(deltas) if d > 0]
    if not act_layers or budget_s <= 0:
        return prog, cert, deltas, f_l, fw_l, notes

    def cost_of(pr: FixedProgram) -> float:
        c = program_cost(pr)
        return c.hw + ROM_WEIGHT * c.table_bits

    def table_bits(pr: FixedProgram, li: int) -> int:  # the ROM bits program_cost counts for layer li
        return act_impl_ops(pr.layers[li].act_impl, np.zeros(1))[2]

    cur_cost = cost_of(prog)
    start_cost, start_rom, start_bound = cur_cost, program_cost(prog).table_bits, cert.bound
    steps = {li: list(RELAX_STEPS) for li in act_layers}
    cache: dict = {}  # implementations of unchanged layers are reused (make_impl_factory)
    tried = kept = 0

    def attempt(trial: list[float], f_t=None, fw_t=None) -> tuple[FixedProgram, Certificate, float]:
        nonlocal tried
        p2, _ = build_program(
            best.program.name, layers, f_l if f_t is None else f_t, fw_l if fw_t is None else fw_t,
            st, lower, upper, params, ranges, fold_bias, relu_stability, trial, cache,
        )  # fmt: skip
        tried += 1
        # ``ranges`` are the certifier's own ranges here (symbolic mode: symbolic_ranges of the same
        # network and box, i.e. what certify_forms would recompute; else the interval ones)
        c2 = certify_forms(p2, layers, lower, upper, st.no_init_error, ranges, relu_stability)
        return p2, c2, cost_of(p2)

    def fits(c2: Certificate, cost2: float) -> bool:
        return c2.ok and c2.bound <= eps and cost2 < cur_cost

    shifts = shifted = swapped = 0
    swaps_done = False
    while time.perf_counter() - t0 < budget_s:
        cand = [li for li in act_layers if steps[li]]
        if not cand:
            # swap: δ_i x f with δ_j / f (f = 2, then 4) for every ordered pair of activation layers,
            # largest table first as i: moves the tables' share of ε between layers (a layer whose
            # error the later layers amplify less can take more of it); the cheapest that fits is kept
            if not swaps_done:
                swaps_done = True
                best_swap = None
                order = sorted(act_layers, key=lambda j: -table_bits(prog, j))
                for fac in RELAX_SWAPS:
                    for i in order:
                        for j in act_layers:
                            if i == j or time.perf_counter() - t0 >= budget_s:
                                continue
                            trial = list(deltas)
                            trial[i], trial[j] = deltas[i] * fac, deltas[j] / fac
                            p2, c2, cost2 = attempt(trial)
                            if fits(c2, cost2) and (best_swap is None or cost2 < best_swap[2]):
                                best_swap = (p2, c2, cost2, trial)
                    if best_swap is not None:
                        break
                if best_swap is not None:
                    prog, cert, cur_cost, deltas = best_swap
                    kept += 1
                    swapped += 1
                    swaps_done = False
                    steps = {li: list(RELAX_STEPS) for li in act_layers}
                    continue
            if shifts >= RELAX_SHIFTS:
                break
            # shift: every F, Fw one bit up (roundings halve) and every δ_l x4 (tables about half
            # the entries), else x2 (one entry bit fewer): trades the formats' share of ε for the
            # tables' when no slack is left
            shifts += 1
            f_t = [np.minimum(v + 1, st.max_len) for v in f_l]
            fw_t = [np.minimum(v + 1, st.max_len) for v in fw_l]
            moved = False
            for fac in (4.0, 2.0):
                if time.perf_counter() - t0 >= budget_s:
                    break
                trial = [fac * d for d in deltas]
                p2, c2, cost2 = attempt(trial, f_t, fw_t)
                if fits(c2, cost2):
                    prog, cert, deltas, cur_cost, f_l, fw_l = p2, c2, trial, cost2, f_t, fw_t
                    moved = True
                    break
            if not moved:
                break
            kept += 1
            shifted += 1
            swaps_done = False
            steps = {li: list(RELAX_STEPS) for li in act_layers}
            continue
        # probe: every layer's next step alone (largest table first, in case time runs out)
        probes = []  # (saving per unit of bound rise, layer, factor, program, cert, cost)
        for li in sorted(cand, key=lambda j: -table_bits(prog, j)):
            if time.perf_counter() - t0 >= budget_s:
                break
            fac = steps[li][0]
            trial = list(deltas)
            trial[li] = deltas[li] * fac
            p2, c2, cost2 = attempt(trial)
            if fits(c2, cost2):
                rise = max(c2.bound - cert.bound, 0.0)
                probes.append(((cur_cost - cost2) / max(rise, 1e-300), li, fac, p2, c2, cost2))
            else:
                steps[li].pop(0)
        if not probes:
            continue
        probes.sort(key=lambda t: -t[0])
        # combine: the probed steps in order of saving per rise while their rises (taken as
        # additive, a guess the certificate then checks) fit the slack ε - B; else the best probe
        chosen = probes[:1]
        for pr in probes[1:]:
            rises = sum(max(q[4].bound - cert.bound, 0.0) for q in chosen + [pr])
            if rises <= eps - cert.bound:
                chosen.append(pr)
        _, li0, _, p_best, c_best, cost_best = probes[0]
        if len(chosen) > 1 and time.perf_counter() - t0 < budget_s:
            trial = list(deltas)
            for q in chosen:
                trial[q[1]] = deltas[q[1]] * q[2]
            p2, c2, cost2 = attempt(trial)
            if fits(c2, cost2) and cost2 < cost_best:
                prog, cert, deltas, cur_cost = p2, c2, trial, cost2
                kept += len(chosen)
                for q in chosen:
                    steps[q[1]] = list(RELAX_STEPS)
                continue
        deltas = list(deltas)
        deltas[li0] = deltas[li0] * probes[0][2]
        prog, cert, cur_cost = p_best, c_best, cost_best
        kept += 1
        steps[li0] = list(RELAX_STEPS)
    if kept:
        notes.append(
            f"activation budgets relaxed after the ILP ({kept} of {tried} steps kept, of them "
            f"{shifted} shifts F + 1 with δ x4 or x2, {swapped} swaps between layers; "
            f"{time.perf_counter() - t0:.1f}s): δ = {', '.join(f'{d:.3g}' for d in deltas if d > 0)}; "
            f"table ROM {start_rom} -> {program_cost(prog).table_bits} bits, hw + ROM "
            f"{start_cost:.0f} -> {cur_cost:.0f}, certified {start_bound:.6g} -> {cert.bound:.6g}"
        )
    elif tried:
        notes.append(f"activation budgets: none of {tried} relaxation steps certified cheaper")
    return prog, cert, deltas, f_l, fw_l, notes


def build_program(
    name: str,
    layers: list[DenseLayer],
    f: list[np.ndarray],
    fw: list[np.ndarray],
    setting: Setting,
    lower: np.ndarray,
    upper: np.ndarray,
    params: list[ExactParams],
    ranges: list[LayerRanges],
    fold_bias: bool = True,
    relu_stability: bool = True,
    act_delta: list[float] | None = None,
    impl_cache: dict | None = None,
) -> tuple[FixedProgram, FormsRun]:
    """FixedProgram for per-neuron F (products/psums at F + g) and per-row Fw, minimal integer bits.

    With ``fold_bias`` the bias constants hold the folded rounding mean (:mod:`.model`);
    ``act_delta`` (per layer) is the implementation error budget of non-ReLU activations;
    ``impl_cache`` is passed to :func:`make_impl_factory`."""
    in_frac = setting.init_len
    box = Interval(np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))
    in_i = int(np.max(_int_bits(box, np.full(box.lo.shape, in_frac))))
    input_t = FixedFormat(in_i + in_frac, in_i)
    lps: list[LayerProgram] = []
    for li, layer in enumerate(layers):
        fj = np.asarray(f[li], dtype=np.int64)
        fwj = np.asarray(fw[li], dtype=np.int64)
        g = guard_bits(layer.n_in)
        shape2 = layer.weight.shape
        facc = np.broadcast_to((fj + g)[:, None], shape2)
        wide = lambda fr: FormatArray.from_frac(fr, np.full(np.shape(fr), WIDE_INT))  # noqa: E731
        lps.append(
            LayerProgram(
                name=layer.name,
                activation=layer.activation,
                weight_raw=_round_weights(layer, fwj),
                weight_t=wide(np.broadcast_to(fwj[:, None], shape2)),
                product_t=wide(facc),
                psum_t=wide(facc),
                dot_t=wide(fj),
                bias_raw=_round_bias(layer, fj, fold_bias),
                bias_t=wide(fj),
                bsum_t=wide(fj),
                out_t=wide(fj),
            )
        )
    program = FixedProgram(name, input_t, lps, "TRN", "WRAP", {"mode": "refined"})
    on_grid = setting.no_init_error
    delta = act_delta if act_delta is not None else [2.0**-setting.max_len] * len(layers)
    factory = make_impl_factory(layers, delta, impl_cache)
    run = forms_analysis(program, layers, lower, upper, on_grid, params, ranges, relu_stability, factory)
    for lp, st in zip(program.layers, run.stage_ranges, strict=True):
        wv = np.array([float(v) for v in lp.weight_raw.reshape(-1)]).reshape(lp.weight_raw.shape)
        wv = np.ldexp(wv, -lp.weight_t.frac)
        # weights and products get one integer-bit count per row (the row maximum, never fewer
        # than an element needs): a neuron is then one loop over its inputs with one weight and
        # one product type (codegen), and the cost counts the types that loop declares
        wi = _int_bits(Interval(wv, wv), lp.weight_t.frac).max(axis=1)
        lp.weight_t = FormatArray.from_frac(lp.weight_t.frac, np.broadcast_to(wi[:, None], wv.shape))
        bv = np.ldexp(np.array([float(v) for v in lp.bias_raw]), -lp.bias_t.frac)
        lp.bias_t = FormatArray.from_frac(lp.bias_t.frac, _int_bits(Interval(bv, bv), lp.bias_t.frac))
        pi = _int_bits(st["product"], lp.product_t.frac).max(axis=1)
        lp.product_t = FormatArray.from_frac(lp.product_t.frac, np.broadcast_to(pi[:, None], wv.shape))
        ps = st["psum"]
        need = np.maximum(
            _needed_int_bits(st["final_s"]), _needed_int_bits(Interval(ps.lo[:, -1], ps.hi[:, -1]))
        )
        psi = np.maximum(need, 1 - lp.psum_t.frac[:, 0])
        lp.psum_t = FormatArray.from_frac(lp.psum_t.frac, np.broadcast_to(psi[:, None], lp.psum_t.frac.shape))
        lp.dot_t = FormatArray.from_frac(lp.dot_t.frac, _int_bits(st["dot"], lp.dot_t.frac))
        lp.bsum_t = FormatArray.from_frac(lp.bsum_t.frac, _int_bits(st["bsum"], lp.bsum_t.frac))
        lp.out_t = FormatArray.from_frac(lp.out_t.frac, _int_bits(st["out"], lp.out_t.frac))
    return program, run


# ------------------------------------------------------------------------------------------------
# caps
# ------------------------------------------------------------------------------------------------


def initial_caps(
    layers: list[DenseLayer], ranges: list[LayerRanges], eps: float, setting: Setting
) -> list[np.ndarray]:
    """E_j = ε / s_j, s_j = max_o |∂e_o/∂δ_z,j| with decisions from the real ranges (clipped)."""
    from .model import cap_slopes

    zero = [np.zeros(layer.n_out) for layer in layers]
    sl = cap_slopes(ranges, layers, zero)
    layout, _, cas = structure_forms(layers, sl.decisions, sl.centre)
    co = np.abs(cas[-1])
    e_max = max(eps, 2.0**-setting.min_len)
    caps = []
    for li in range(len(layers)):
        s = co[:, layout.z_cols(li)].max(axis=0)
        caps.append(np.minimum(eps / np.maximum(s, 1e-30), e_max))
    return caps


# ------------------------------------------------------------------------------------------------
# main entry
# ------------------------------------------------------------------------------------------------


def assign_refined(
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    eps: float,
    setting: str = "A",
    granularity: str = "neuron",
    time_limit: float = 60.0,
    name: str = "net",
    max_rounds: int = 5,
    refine_caps: bool = True,
    mip_rel_gap: float = 1e-2,
    *,
    symbolic: bool = True,
    relu_stability: bool = True,
    exact_dw: bool = True,
    fold_bias: bool = True,
    solve_cap_s: float = SOLVE_CAP_S,
) -> RefinedResult:
    """Refined-mode assignment certified by :func:`certify_forms` (module docstring).

    Keyword switches (defaults = the full refined analysis; the others exist for the ablation of
    ``aster_ext/experiments/tables.py``): ``symbolic`` (symbolic ranges, else interval ranges, in the ILP
    and the certificate), ``relu_stability`` (else every ReLU is treated as unstable), ``exact_dw``
    (else the ILP bounds |ΔW| by 2^-(Fw+1)), ``fold_bias`` (fold the mean truncation offset into
    the bias constants). ``solve_cap_s`` caps each HiGHS run (the best incumbent is used; every
    result is certified independently of the solver's optimality gap).
    """
    if not np.isfinite(eps) or eps <= 0:
        raise UserError(f"the error target must be a positive number, got {eps}")
    if setting not in SETTINGS:
        raise UserError(f"unknown setting '{setting}' (choose from {', '.join(SETTINGS)})")
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise UserError(f"the time limit must be a positive number of seconds, got {time_limit}")
    st = SETTINGS[setting]
    t_start = time.perf_counter()
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    params = [ExactParams.of(layer) for layer in layers]
    range_fn = symbolic_ranges if symbolic else interval_ranges
    ranges = range_fn(layers, lower, upper, params)
    cert_ranges = None if symbolic else ranges
    opts = {"fold_bias": fold_bias, "exact_dw": exact_dw, "relu_stability": relu_stability}
    caps = initial_caps(layers, ranges, eps, st)
    notes: list[str] = [
        f"setting {setting}: minLen={st.min_len} maxLen={st.max_len} initLen={st.init_len} "
        f"noInitError={st.no_init_error}; granularity={granularity}",
        "products and partial sums at F_j + ceil(log2 n_in) guard bits; dot, bias, bias sum, "
        "activation at F_j; weights per row at Fw_j (round to nearest); AP_TRN, AP_WRAP",
        f"analysis: ranges={'symbolic' if symbolic else 'interval'}, relu_stability={relu_stability}, "
        f"exact_dw={exact_dw}, bias offset folded={fold_bias}",
    ]
    target = eps
    best: RefinedResult | None = None
    solver_time = 0.0
    rounds = 0
    relaxed_caps = False
    refined = False
    smallest: float | None = None
    fb_pair: tuple[FixedProgram, Certificate] | None = None  # the all-maxLen program, once built
    maxlen_caps = False  # caps were set from the all-maxLen program's errors (see below)
    maxlen_round = -1  # the round that set them (the next one runs even past the time limit)
    model = None
    while rounds < max_rounds:
        left = time_limit - (time.perf_counter() - t_start)
        if maxlen_caps and rounds == maxlen_round:
            # the round on the caps from the all-maxLen program runs even past the time limit (its
            # rigorous 2^16-entry tables can take longer than the limit on large nets): one model,
            # HiGHS runs of at most solve_cap_s
            left = max(left, solve_cap_s)
        if left <= 0:
            notes.append("time limit reached")
            break
        rounds += 1
        model = build_model(layers, params, ranges, lower, upper, st, target, caps, granularity, **opts)
        start = uniform_start(model)
        near_max = start is not None and int(np.min(start[0])) >= st.max_len - 1
        if (start is None or near_max) and best is None and smallest is None:
            # no uniform F meets the rows: before a (possibly long) HiGHS run on a likely infeasible
            # model, compare ε with the bound of the all-maxLen program (cheap, and what the error
            # message reports anyway); give up at once when even that bound exceeds ε
            fb_program, fb_cert = max_len_program(name, layers, lower, upper, st, params, ranges, **opts)
            fb_pair = (fb_program, fb_cert)
            smallest = fb_cert.bound
            if smallest > eps and not near_max:
                notes.append(f"round {rounds}: the all-maxLen program certifies only {smallest:.6g} > ε")
                break
            if fb_cert.ok and smallest <= eps and not maxlen_caps:
                # the rows failing at every F while the all-maxLen program certifies <= ε means the
                # caps E_j (ε / sensitivity, clipped) are far above the real errors: slope hulls over
                # range ⊕ [-E_j, E_j] then cover the steep part of σ for saturated neurons and the
                # remainders s_rad·m_k blow up through the layers (ffnnSIGMOID 6x200, ε = 10: caps 10,
                # rows ~250 at F = maxLen vs a certified 0.89). Re-derive the caps as the refinement
                # round does, from a certified program — here the all-maxLen one: E_j = 2·max|e_z,j|
                # — and solve the ILP on them (HiGHS runs even without a uniform start); the
                # all-maxLen program stays the fallback when no ILP round certifies.
                run0 = forms_analysis(
                    fb_program, layers, lower, upper, st.no_init_error, params, ranges, relu_stability
                )
                caps = [np.maximum(2.0 * e.mag(), 2.0**-st.max_len) for e in run0.z_err]
                maxlen_caps, maxlen_round = True, rounds
                notes.append(
                    f"round {rounds}: no uniform F < maxLen - 1 satisfies the ILP rows; the all-maxLen "
                    f"program certifies {smallest:.6g} <= ε: caps set to 2·its pre-activation errors, "
                    "ILP rebuilt"
                )
                continue
            if fb_cert.ok and smallest <= eps:
                # ε is within reach of the all-maxLen program only: take it (certified) rather than a
                # HiGHS run on a model that no uniform point satisfies (minutes on large networks)
                notes.append(
                    f"round {rounds}: no uniform F < maxLen - 1 satisfies the ILP rows; the all-maxLen "
                    f"program certifies {smallest:.6g} <= ε and is used (HiGHS not run)"
                )
                ml = [np.full(layer.n_out, st.max_len, dtype=np.int64) for layer in layers]
                best = RefinedResult(
                    fb_program, fb_cert, [list(map(int, v)) for v in ml], [list(map(int, v)) for v in ml],
                    float("nan"), fb_cert.bound, "not run (all-maxLen fallback)", solver_time,
                    lp_text(model, f"target {target!r}, setting {setting}; NOT SOLVED: all-maxLen fallback"),
                    False, notes, rounds, [list(map(int, v)) for v in ml], program_cost(fb_program).hw,
                    max_width_fallback=True,
                )  # fmt: skip
                break
        window = None
        if start is not None and granularity == "neuron" and sum(layer.n_out for layer in layers) > LARGE:
            # warm start: layer-granularity solution, then neurons within ±WINDOW of it
            m_l = build_model(layers, params, ranges, lower, upper, st, target, caps, "layer", **opts)
            s_l = solve_model(m_l, min(0.4 * left, 0.4 * solve_cap_s), mip_rel_gap, start)
            solver_time += s_l.time_s
            if s_l.f is not None:
                start = (s_l.f, s_l.fw, s_l.act_choice)
            window = WINDOW
            left = time_limit - (time.perf_counter() - t_start)
            if maxlen_caps and rounds == maxlen_round + 1:
                left = max(left, solve_cap_s)
        sol = solve_model(model, min(left, solve_cap_s), mip_rel_gap, start, window)
        solver_time += sol.time_s
        if sol.f is None and start is not None:
            notes.append(f"round {rounds}: solver {sol.status} without incumbent; using the warm start")
            sol = SolveOutcome(f"{sol.status}+start", start[0], start[1], None, sol.time_s, None, start[2])
        if sol.f is not None and sol.act_choice and sol.status != "optimal":
            sol = polish_act_budgets(model, sol, mip_rel_gap, notes, rounds)
            solver_time += sol.time_s
        if sol.f is None:
            if sol.status == "infeasible" and not relaxed_caps and best is None:
                notes.append(f"round {rounds}: infeasible with caps; caps relaxed x16")
                caps = [c * 16.0 for c in caps]
                relaxed_caps = True
                continue
            notes.append(f"round {rounds}: solver status {sol.status}, no solution")
            break
        ok_rows, bad_rows = exact_row_check(model, sol.f, sol.fw, sol.act_choice)
        f_l, fw_l = _split(sol.f, layers), _split(sol.fw, layers)
        program, _ = build_program(
            name,
            layers,
            f_l,
            fw_l,
            st,
            lower,
            upper,
            params,
            ranges,
            fold_bias,
            relu_stability,
            model.act_delta(sol.act_choice),
        )
        cert = certify_forms(program, layers, lower, upper, st.no_init_error, cert_ranges, relu_stability)
        hw = program_cost(program).hw
        notes.append(
            f"round {rounds}: target {target:.6g}, solver {sol.status} ({sol.time_s:.2f}s), "
            f"exact row check {'ok' if ok_rows else 'FAILED ' + ','.join(bad_rows[:3])}, "
            f"certified {cert.bound:.6g}, hw {hw}"
        )
        good = cert.ok and cert.bound <= eps
        objective = float(sol.objective) if sol.objective is not None else float("nan")
        if good and (best is None or hw < best.hw_cost):
            best = RefinedResult(
                program, cert, [list(map(int, v)) for v in f_l], [list(map(int, v)) for v in f_l],
                objective, cert.bound, sol.status, solver_time,
                lp_text(model, f"target {target!r}, setting {setting}"), ok_rows, notes, rounds,
                [list(map(int, v)) for v in fw_l], hw, act_delta=model.act_delta(sol.act_choice),
            )  # fmt: skip
        if good:
            if refine_caps and not refined:
                refined = True
                run = forms_analysis(
                    program, layers, lower, upper, st.no_init_error, params, ranges, relu_stability
                )
                caps = [np.maximum(2.0 * e.mag(), 2.0**-st.max_len) for e in run.z_err]
                continue
            break
        if refined:
            break  # the refinement round did not certify; keep the earlier result
        shrink = eps / cert.bound if cert.ok and cert.bound > 0 else 0.5
        target = target * min(0.95, shrink * 0.98)
    if best is None and (smallest is None or fb_pair is not None):
        if fb_pair is None:
            fb_pair = max_len_program(name, layers, lower, upper, st, params, ranges, **opts)
        fb_program, fb_cert = fb_pair
        smallest = fb_cert.bound
        if fb_cert.ok and smallest <= eps:
            notes.append(f"no ILP round certified; the all-maxLen program certifies {smallest:.6g} <= ε")
            ml = [np.full(layer.n_out, st.max_len, dtype=np.int64) for layer in layers]
            if model is None:  # the time limit ran out before the first round built the ILP
                model = build_model(
                    layers, params, ranges, lower, upper, st, target, caps, granularity, **opts
                )
            best = RefinedResult(
                fb_program, fb_cert, [list(map(int, v)) for v in ml], [list(map(int, v)) for v in ml],
                float("nan"), fb_cert.bound, "all-maxLen fallback", solver_time,
                lp_text(model, f"target {target!r}, setting {setting}; all-maxLen fallback"),
                False, notes, rounds, [list(map(int, v)) for v in ml], program_cost(fb_program).hw,
                max_width_fallback=True,
            )  # fmt: skip
    if best is not None and not best.max_width_fallback and any(d > 0 for d in best.act_delta):
        budget = min(RELAX_CAP_S, time_limit - (time.perf_counter() - t_start))
        prog, cert, deltas, f_r, fw_r, more = relax_act_budgets(
            best, layers, lower, upper, eps, st, params, ranges, fold_bias,
            relu_stability, budget,
        )  # fmt: skip
        notes += more
        if prog is not best.program:
            best.program, best.certificate, best.act_delta = prog, cert, deltas
            best.dot_bits = best.bias_bits = [list(map(int, v)) for v in f_r]
            best.weight_bits = [list(map(int, v)) for v in fw_r]
            best.claimed_error = cert.bound
            best.hw_cost = program_cost(prog).hw
            best.solver_status += "+act-relax"
    if best is None:
        timed_out = "time limit reached" in notes
        raise InfeasibleError(
            f"{name}: refined mode found no certified assignment for eps={eps:g} in setting {setting}"
            + (f" within the time limit of {time_limit:g} s" if timed_out else "")
            + f"; the smallest error this analysis certifies at maxLen={st.max_len} is {smallest:.6g}",
            smallest_error=smallest,
        )
    best.rounds = rounds
    best.solver_time_s = solver_time
    best.notes = notes
    return best


def _split(v: np.ndarray, layers: list[DenseLayer]) -> list[np.ndarray]:
    out, pos = [], 0
    for layer in layers:
        out.append(np.asarray(v[pos : pos + layer.n_out], dtype=np.int64))
        pos += layer.n_out
    return out


def smallest_certifiable(
    name: str,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    st: Setting,
    params: list[ExactParams] | None = None,
    ranges: list[LayerRanges] | None = None,
    fold_bias: bool = True,
    exact_dw: bool = True,
    relu_stability: bool = True,
) -> float:
    """certify_forms bound of the program with every F and Fw at maxLen (``exact_dw`` is unused:
    the certificate always takes the exact ΔW)."""
    return max_len_program(
        name, layers, lower, upper, st, params, ranges, fold_bias, exact_dw, relu_stability
    )[1].bound


def max_len_program(
    name: str,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    st: Setting,
    params: list[ExactParams] | None = None,
    ranges: list[LayerRanges] | None = None,
    fold_bias: bool = True,
    exact_dw: bool = True,
    relu_stability: bool = True,
) -> tuple[FixedProgram, Certificate]:
    """The program with every F and Fw at maxLen (activation budget 2^-maxLen) and its
    certificate (``exact_dw`` is unused: the certificate always takes the exact ΔW)."""
    del exact_dw
    ps = params if params is not None else [ExactParams.of(layer) for layer in layers]
    rg = ranges if ranges is not None else symbolic_ranges(layers, lower, upper, ps)
    f = [np.full(layer.n_out, st.max_len) for layer in layers]
    program, _ = build_program(name, layers, f, f, st, lower, upper, ps, rg, fold_bias, relu_stability)
    return program, certify_forms(program, layers, lower, upper, st.no_init_error, rg, relu_stability)


__all__ = ["RefinedResult", "assign_refined", "build_program", "max_len_program", "smallest_certifiable"]
