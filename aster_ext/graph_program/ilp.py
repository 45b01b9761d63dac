"""Per-channel (or per-layer) fractional bits of a graph program chosen by an ILP (HiGHS).

Variables (never per pixel): one-hot binaries b[g, F] for every knob group g and candidate F in
[min_frac, max_frac]. Groups (``granularity``): "channel" = one group per output channel of
every conv (per neuron of every dense) for its output F and its weight F, one per avg-pool /
residual-add channel, one for the input, one per avg-pool constant; "layer" = one group per
node and knob kind (one format per layer). Continuous f_L per consumer L (conv, dense,
avg-pool): the operand alignment F_x = max F over its operand.

Objective (the hardware ``program_cost`` counts, one MAC array per conv layer reused over
pixels; hw = multiplier operand bits + adder bits, constants dropped), for a conv/dense L with
P products per output channel and operand sources s (channels of earlier nodes or the input):

    Σ_o P·(W_w,o(F_w,o) + F_w,o) + Σ_s n_L,s·(I_s(F_s) + F_s) + Σ_s n_L,s·F_s,

n_L,s = the multipliers whose operand class (:func:`.program.operand_classes`: input channel of
a conv, input element of a dense node) reads source s (their width W_w + I_s + F_s), and as many
lane adders, each taken at I_acc,o + F_w,o + F_s (a partial sum per operand F,
:func:`.program.partial_sums`; the model leaves out their merge adders and the lanes where a
partial sum would not pay, which ``program_cost`` counts); a grouped conv's lane adders align to
F_x instead (C_out·P·f_L, f_L >= F_s). A class whose elements come from several sources (rare: a
concat or reshape inside one channel) costs n·(w + f) with a container w >= I_s(F_s) + f,
f >= F_s of its own (I_acc,o from the ranges: a constant of the model);
avg-pool: (K-1)·C·f_L plus its constant multiplier when the divisor is not an exact shift;
residual add: Σ_c (I_c(F_c) + F_c). W_w,o(F) is the exact width of channel o's raw weights at F,
I(F) the integer bits of range ⊕ error of the linearisation point (:func:`~.errors.int_bits_for`).

Rows: for every provable region and class k != label, the linear margin-error model of
:mod:`.sensitivity` (linearised at a point, calibrated to the sound analysis there; ``adjoints``
"backward": the back-substituted error forms, calibrated to the certified margin error, or
"interval": the interval adjoints, calibrated to the forward rule's margin error they mirror):

    cal_k·Σ_g Σ_F E_gk(F)·b[g, F] <= (1 - δ)·margin_lb_k.

Loop (:func:`ilp_search`, a trust-region sequence of ILPs): linearise at the greedy per-layer
result (the anchor), solve with every F within ± ``window`` of the anchor's, re-certify the
solution with the sound analysis (:mod:`.errors`, :func:`.certify.verdict`, integer bits from
:func:`.certify.program_for`); a failing solution is added as a cut (its own calibrated model,
which its own formats violate) and the window shrinks by 2 (at least 1); a certified one becomes
the new anchor (and the window doubles again, up to its first size).
A solve that ends without a solution for lack of time (HiGHS's limit or the wall-clock guard)
halves the window and tries again. Stops when the ILP returns a choice already tried, proves the
model infeasible, after ``max_rounds`` solves, or (with ``patience`` P) after P solves in a row
that did not lower the best certified cost by more than ``PROGRESS`` (0.5 %). The
cheapest certified program (by ``program_cost`` hw) among the greedy result and every certified
ILP solution is returned: soundness comes only from re-certification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..ir import Network
from ..ops import op_class
from ..progress import note
from .errors import DeltaCache, ErrorAnalysis, deltas_for, int_bits_for
from .program import (
    LINEAR_KINDS,
    MOVE_KINDS,
    FracChoice,
    avg_constants,
    avg_counts,
    int_bits_needed,
    n_channels,
    operand_classes,
    quantize_params,
    weight_array,
)
from .sensitivity import KnobBlock, MarginModel, block_fracs, knob_blocks, margin_model, set_block_fracs

GRANULARITIES = ("channel", "layer")
GUARD_S = 10.0  # wall-clock grace beyond HiGHS's own time limit before its process is killed
TINY = 1e-9  # margin-row coefficients below this (in units of the row's budget) are dropped


@dataclass
class Consumer:
    """A node whose hardware depends on its operand's formats: widest operand width (coefficient
    ``c_width``) and operand alignment F_x (``c_frac``) over the ``sources`` (block, channel)."""

    node: str
    c_width: float
    c_frac: float
    sources: list[tuple[int, int]]


@dataclass
class CostModel:
    """own[b] [n_b, n_F]: cost of channel c of block b at candidate F; width[b] [n_b, n_F]: the
    stored width I(F) + F of out/input blocks (operands of consumers)."""

    own: list[np.ndarray]
    width: list[np.ndarray]
    consumers: list[Consumer]


def _element_sources(net: Network, blocks: list[KnobBlock]) -> dict[str, np.ndarray]:
    """Per node, the flat index (into the out/input blocks' channels) whose format each element has."""
    base: dict[str, int] = {}
    pos = 0
    for b in blocks:
        if b.kind in ("out", "input"):
            base[b.node] = pos
            pos += b.n
    ids: dict[str, np.ndarray] = {}
    for op in net.ops():
        n = int(np.prod(op.shape))
        if op.kind == "input":
            ids[op.name] = np.full(n, base[op.name])
        elif op.name in base:
            ids[op.name] = base[op.name] + np.repeat(np.arange(n_channels(op)), n // max(n_channels(op), 1))
        elif op.kind == "act":
            ids[op.name] = ids[op.inputs[0]]
        elif op.kind == "maxpool":
            from ..ops.windows import channel_windows

            x = op.inputs[0]
            idx = channel_windows(op.attrs, tuple(net.op(x).shape), tuple(op.shape), op.attrs["kernel"])
            first = idx[np.arange(idx.shape[0]), np.argmax(idx >= 0, axis=1)]
            ids[op.name] = ids[x][first]
        elif op.kind in MOVE_KINDS:
            which, src = op_class(op.kind).index_map(op, [tuple(net.op(i).shape) for i in op.inputs])
            out = np.empty(which.size, dtype=np.int64)
            for i, name in enumerate(op.inputs):
                sel = which == i
                out[sel] = ids[name][src[sel]]
            ids[op.name] = out
    return ids


def cost_model(
    net: Network, blocks: list[KnobBlock], fracs: np.ndarray, point: FracChoice,
    analyses: list[ErrorAnalysis], quant: str,
) -> CostModel:  # fmt: skip
    """The objective's coefficients (module docstring) at candidate ``fracs``; integer bits from
    the ``analyses`` (every region) of the linearisation ``point``."""
    nf = fracs.size
    flat_of: list[tuple[int, int]] = []  # global operand-source index -> (block, channel)
    for bi, b in enumerate(blocks):
        if b.kind in ("out", "input"):
            flat_of += [(bi, c) for c in range(b.n)]
    ids = _element_sources(net, blocks)
    own = [np.zeros((b.n, nf)) for b in blocks]
    width = [np.zeros((b.n, nf)) for b in blocks]
    bidx = {(b.kind, b.node): i for i, b in enumerate(blocks)}
    for bi, b in enumerate(blocks):
        if b.kind == "input":
            stage, name = "input", b.node
        elif b.kind == "out":
            stage, name = "out", b.node
        else:
            continue
        vals = [a.value[(name, stage)] for a in analyses]
        for i, f in enumerate(fracs.tolist()):
            ib = np.max([int_bits_for(v.lo, v.hi, np.full(v.lo.size, f), quant) for v in vals], axis=0)
            if b.kind == "out":
                ib = ib.reshape(b.n, -1).max(axis=1)
            else:
                ib = np.array([ib.max()])
            width[bi][:, i] = ib + f
        if b.kind == "out" and net.op(b.node).kind == "add":
            own[bi] = width[bi].copy()
    consumers: list[Consumer] = []
    for op in net.ops():
        if op.kind in LINEAR_KINDS:
            per_out = int(np.prod(weight_array(op).shape[1:]))
            wb = bidx[("weight", op.name)]
            for i, f in enumerate(fracs.tolist()):
                w_raw, _ = quantize_params(op, np.full(n_channels(op), f), "RND")
                ww = int_bits_needed(w_raw.reshape(w_raw.shape[0], -1), axis=(1,))
                own[wb][:, i] = per_out * (ww + f)
            c_out = n_channels(op)
            x = op.inputs[0]
            src = sorted(set(ids[x].tolist()))
            # multipliers: lane (o, t) reads its operand class in the class's union format; a
            # class whose elements share one source costs that source's width per lane (into
            # ``own``), a class of several sources gets a container pair of its own. Lane adders:
            # a grouped conv aligns every lane to F_x (f_L); otherwise the lane adder is taken
            # at the class's own F (partial sums, :func:`.program.partial_sums`; the model leaves
            # out their merge adders and the lanes a partial sum would not pay for)
            apart = int(op.attrs.get("group", 1)) == 1
            if not apart:
                consumers.append(Consumer(op.name, 0.0, per_out * c_out, [flat_of[s] for s in src]))
            of_element, lane_class = operand_classes(op, tuple(net.op(x).shape))
            lanes_of = np.bincount(lane_class.reshape(-1), minlength=int(of_element.max()) + 1)
            pairs = np.unique(np.stack([of_element, ids[x]], axis=1), axis=0)  # (class, source)
            n_src = np.bincount(pairs[:, 0], minlength=lanes_of.size)
            per_f = fracs.astype(np.float64) if apart else 0.0
            for cls, s_id in pairs[n_src[pairs[:, 0]] == 1].tolist():
                sb, sc = flat_of[s_id]
                own[sb][sc] += lanes_of[cls] * (width[sb][sc] + per_f)
            for cls in np.flatnonzero(n_src > 1).tolist():
                srcs = pairs[pairs[:, 0] == cls, 1].tolist()
                n = float(lanes_of[cls])
                consumers.append(Consumer(op.name, n, n if apart else 0.0, [flat_of[s] for s in srcs]))
        elif op.kind == "avgpool":
            k = int(np.prod(op.attrs["kernel"]))
            c = n_channels(op)
            src = sorted(set(ids[op.inputs[0]].tolist()))
            consumers.append(Consumer(op.name, 0.0, (k - 1) * c, [flat_of[s] for s in src]))
            _, count = avg_counts(op, tuple(net.op(op.inputs[0]).shape))
            fx = int(max(block_fracs(point, blocks[s[0]]).max() for s in consumers[-1].sources))
            acc_ib = np.max(
                [
                    int_bits_for(a.value[(op.name, "acc")].lo, a.value[(op.name, "acc")].hi,
                                 np.full(a.value[(op.name, "acc")].lo.size, fx), "TRN")
                    for a in analyses
                ],
                axis=0,
            )  # fmt: skip
            acc_w = acc_ib.reshape(c, -1).max(axis=1) + fx
            cb = bidx[("const", op.name)]
            for i, f in enumerate(fracs.tolist()):
                cvals = {int(v) for v in avg_constants(count, f)}
                if not all(v > 0 and (v & (v - 1)) == 0 for v in cvals):
                    cw = max(v.bit_length() + 1 for v in cvals)
                    own[cb][0, i] = float(np.sum(acc_w + cw))
    return CostModel(own, width, consumers)


def knob_groups(blocks: list[KnobBlock], granularity: str) -> list[np.ndarray]:
    """Per block, the group id of each channel (one per channel, or one per block at "layer")."""
    out, g = [], 0
    for b in blocks:
        if granularity == "channel":
            out.append(np.arange(g, g + b.n))
            g += b.n
        else:
            out.append(np.full(b.n, g))
            g += 1
    return out


@dataclass
class IlpRound:
    """One solve: status, modelled cost, the solution's hw cost, certified, and timings."""

    status: str
    objective: float | None
    hw: int | None
    certified: bool
    worst_slack: float | None
    solve_s: float
    check_s: float
    note: str = ""


@dataclass
class IlpOutcome:
    fracs: FracChoice | None  # cheapest certified ILP solution (None: none certified)
    hw: int | None = None  # its hw cost, as its re-certification computed it
    rounds: list[IlpRound] = field(default_factory=list)
    model_s: float = 0.0
    n_binaries: int = 0


def solve_mip(
    blocks: list[KnobBlock],
    fracs: np.ndarray,
    groups: list[np.ndarray],
    cost: CostModel,
    rows: list[tuple[MarginModel, np.ndarray]],
    safety: float,
    time_limit: float,
    start: FracChoice | None = None,
    window: int | None = None,
) -> tuple[str, FracChoice | None, float | None, int, float | None]:
    """Build and solve the MIP (module docstring); ``rows``: (model, calibration [M]) pairs;
    ``window``: candidates of every group restricted to ``start`` ± window (trust region).
    Returns (status, fracs, objective, number of binaries, HiGHS's dual bound on the objective)."""
    from ..ilp import highs_lp, run_highs_guarded

    nf = fracs.size
    ng = int(max(g.max() for g in groups)) + 1
    nb = ng * nf
    n_cons = len(cost.consumers)
    ncol = nb + 2 * n_cons
    obj = np.zeros(ncol)
    for b, g, c in zip(blocks, groups, cost.own, strict=True):
        for ch in range(b.n):
            obj[g[ch] * nf : (g[ch] + 1) * nf] += c[ch]
    r_idx: list[np.ndarray] = []
    c_idx: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []
    row = 0
    # one-hot rows
    r_idx.append(np.repeat(np.arange(ng), nf))
    c_idx.append(np.arange(nb))
    vals.append(np.ones(nb))
    lo += [1.0] * ng
    hi += [1.0] * ng
    row += ng
    # margin rows, in units of each row's budget (1 - δ)·margin_lb; per group the cheapest
    # candidate's error moves to the right-hand side, coefficients below TINY are dropped and
    # their largest sum is taken off the right-hand side, candidates that alone exceed a row's
    # remaining budget are fixed to 0
    col_hi = np.ones(nb)
    if window is not None and start is not None:
        centre = np.zeros(ng)
        for b, g in zip(blocks, groups, strict=True):
            np.maximum.at(centre, g, block_fracs(start, b).astype(np.float64))
        col_hi = (np.abs(fracs[None, :] - centre[:, None]) <= window).astype(np.float64).reshape(-1)
    for mm, cal in rows:
        coef = np.zeros((ng, nf, len(mm.rows)))
        for g, e in zip(groups, mm.err, strict=True):
            np.add.at(coef, g, e)
        budget = (1.0 - safety) * np.maximum(mm.margin_lb, 1e-300)
        coef = coef * (cal / budget)[None, None, :]
        base = coef.min(axis=1)  # [ng, M]
        coef = coef - base[:, None, :]
        tiny = coef < TINY
        rhs = 1.0 - base.sum(axis=0) - np.where(tiny, coef, 0.0).max(axis=1).sum(axis=0)
        if np.any(rhs <= 0):
            return "infeasible (model)", None, None, nb, None
        col_hi[(coef > rhs[None, None, :]).any(axis=2).reshape(-1)] = 0.0
        coef[tiny] = 0.0
        for i in range(len(mm.rows)):
            cvec = coef[:, :, i].reshape(-1)
            nz = np.nonzero(cvec)[0]
            r_idx.append(np.full(nz.size, row))
            c_idx.append(nz)
            vals.append(cvec[nz])
            lo.append(-np.inf)
            hi.append(float(rhs[i]))
            row += 1
    # consumer rows: f_L - Σ_F F·b >= 0 and w_L - f_L - Σ_F I(F)·b >= 0 (I(F) = width - F): f_L is
    # the operand alignment max F (accumulator bits), w_L a container width max I + max F (only
    # for operand classes of several sources; the width row is left out where nothing costs it)
    for ci, con in enumerate(cost.consumers):
        wcol, fcol = nb + 2 * ci, nb + 2 * ci + 1
        obj[wcol] = con.c_width
        obj[fcol] = con.c_frac
        for bi, ch in con.sources:
            g = int(groups[bi][ch])
            cols = np.arange(g * nf, (g + 1) * nf)
            int_bits = cost.width[bi][ch] - fracs.astype(np.float64)
            pairs = ((wcol, [fcol], int_bits), (fcol, [], fracs.astype(np.float64)))
            for aux, extra, coefs in pairs if con.c_width else pairs[1:]:
                r_idx.append(np.full(nf + 1 + len(extra), row))
                c_idx.append(np.concatenate([[aux], extra, cols]).astype(np.int64))
                vals.append(np.concatenate([[1.0], [-1.0] * len(extra), -coefs]))
                lo.append(0.0)
                hi.append(np.inf)
                row += 1
    a = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(r_idx), np.concatenate(c_idx))), shape=(row, ncol)
    )
    integer = np.concatenate([np.ones(nb, dtype=bool), np.zeros(2 * n_cons, dtype=bool)])
    col_upper = np.concatenate([col_hi, np.full(2 * n_cons, np.inf)])
    lp = highs_lp(a, obj, np.zeros(ncol), col_upper, np.asarray(lo, float), np.asarray(hi, float), integer)
    # HiGHS 1.16 can run far past its time limit on these models after its presolve (a dumped
    # Convnet_avgpool round: stuck after the root's first sub-MIP for > 10 minutes at a 30 s limit,
    # with or without a start solution depending on the round; with presolve off 1.8-3.1 s). So
    # presolve is off, no start solution is handed over, and the run is killed at limit + GUARD_S
    opts = {"output_flag": False, "time_limit": float(max(time_limit, 0.5)), "mip_rel_gap": 1e-3,
            "random_seed": 0, "small_matrix_value": 1e-13, "threads": 1, "presolve": "off"}  # fmt: skip
    run = run_highs_guarded(lp, opts, float(max(time_limit, 0.5)) + GUARD_S)
    ms = run.model_status
    status = (
        "optimal" if "optimal" in ms
        else "infeasible" if "infeasible" in ms
        else "time_limit" if "time" in ms
        else ms
    )  # fmt: skip
    if not run.has_solution or run.x is None:
        return status, None, None, nb, run.dual_bound
    x = run.x
    sel = fracs[x[:nb].reshape(ng, nf).argmax(axis=1)]
    fc = start.copy() if start is not None else None
    if fc is None:
        raise ValueError("solve_mip needs a start FracChoice to shape its result")
    for b, g in zip(blocks, groups, strict=True):
        set_block_fracs(fc, b, sel[g])
    return status, fc, run.objective, nb, run.dual_bound


def ilp_search(
    net: Network,
    regions: list,
    anchor: FracChoice,
    quant: str,
    min_frac: int,
    max_frac: int,
    granularity: str = "channel",
    time_limit: float = 60.0,
    max_rounds: int = 12,
    window: int = 6,
    safety: float = 1e-3,
    deltas: DeltaCache | None = None,
    check=None,
    adjoints: str = "backward",
    logit_eps: float | None = None,
    patience: int | None = None,
) -> IlpOutcome:
    """The loop of the module docstring, starting from the certified ``anchor`` (greedy result).

    ``check(fc) -> (certified, hw, worst_slack, analyses)`` re-certifies a choice with the sound
    analysis (certify.py supplies it; analyses of every region); only choices it certifies are
    ever returned. With ``logit_eps`` the model also has every region's logit-error rows
    (:func:`.sensitivity.logit_adjoints`), and ``check`` must demand that target too."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    deltas = deltas_for(net, regions, deltas)
    used = [i for i, r in enumerate(regions) if r.provable or logit_eps is not None]
    out = IlpOutcome(None)
    if not used:
        return out
    modelled = [regions[i] for i in used]
    flags = [regions[i].provable for i in used]
    fracs = np.arange(min_frac, max_frac + 1, dtype=np.int64)
    blocks = knob_blocks(net)
    groups = knob_groups(blocks, granularity)
    t0 = time.perf_counter()

    def linearise(fc: FracChoice, analyses: list[ErrorAnalysis]) -> tuple[MarginModel, np.ndarray]:
        mm = margin_model(
            net, modelled, fc, quant, fracs, deltas, [analyses[i] for i in used], adjoints, logit_eps, flags
        )
        true = mm.bound
        model = mm.evaluate(fc)
        cal = np.where(model > 0, np.clip(true / np.maximum(model, 1e-300), 0.25, 4.0), 1.0)
        return mm, cal

    ok, hw, slack, analyses = check(anchor)
    if not ok:
        raise ValueError("the ILP anchor must be certified")
    anchor_row = linearise(anchor, analyses)
    cost = cost_model(net, blocks, fracs, anchor, analyses, quant)
    out.model_s = time.perf_counter() - t0
    cuts: list[tuple[MarginModel, np.ndarray]] = []
    best_hw = hw
    current = anchor
    window0 = window
    seen = {_key(anchor)}
    stalled = 0  # solves in a row without progress (patience)
    for _ in range(max_rounds):
        if patience is not None and stalled >= patience:
            last = out.rounds[-1]
            last.note = f"{last.note} (stop: {patience} solves without progress)".strip()
            break
        stalled += 1
        ts = time.perf_counter()
        status, fc, objective, nb, _ = solve_mip(
            blocks, fracs, groups, cost, [anchor_row, *cuts], safety, time_limit, current, window
        )
        out.n_binaries = nb
        solve_s = time.perf_counter() - ts
        if fc is None:
            out.rounds.append(IlpRound(status, None, None, False, None, solve_s, 0.0, "no solution"))
            if status in ("killed", "time_limit") and window > 1:
                window = max(1, window // 2)  # out of time, not proven infeasible: a smaller trust region
                continue
            break
        if _key(fc) in seen:
            out.rounds.append(IlpRound(status, objective, None, False, None, solve_s, 0.0, "repeated choice"))
            break
        seen.add(_key(fc))
        tc = time.perf_counter()
        ok, hw, slack, analyses = check(fc)
        out.rounds.append(IlpRound(status, objective, hw, ok, slack, solve_s, time.perf_counter() - tc))
        shown = min(best_hw, hw) if ok else best_hw
        note(f"ILP ({adjoints}) round {len(out.rounds)}: hw {hw}, certified {ok} (best certified {shown})")
        row = linearise(fc, analyses)
        if ok:
            if hw < best_hw:
                if hw < (1.0 - PROGRESS) * best_hw:
                    stalled = 0
                best_hw, out.fracs, out.hw = hw, fc, hw
            anchor_row, current = row, fc
            window = min(2 * window, window0)
        else:
            cuts.append(row)
            window = max(1, window - 2)
    return out


#: the relative saving a certified solve must bring to count as progress (``patience``)
PROGRESS = 0.005


def _key(fc: FracChoice) -> bytes:
    parts = [np.int64(fc.input).tobytes()]
    for d in (fc.out, fc.weight):
        parts += [np.asarray(d[k], dtype=np.int64).tobytes() for k in sorted(d)]
    parts += [np.int64(fc.const[k]).tobytes() for k in sorted(fc.const)]
    return b"".join(parts)
