"""A linear model of every region's margin-error bound in the per-channel fractional bits.

The sound analysis (:mod:`.errors`) propagates, per element, an error interval [lo, hi]. With
every discrete decision fixed (ReLU stability, which max-pool element gives the window's
min/max, which of the two margin rules is the tighter), each step is *linear in the endpoint
vectors*: a linear map A sends (lo, hi) to (A⁺lo + A⁻hi, A⁺hi + A⁻lo) (A⁺ = max(A, 0),
A⁻ = min(A, 0)), a stable ReLU passes or zeroes both endpoints, a max-pool selects one window
element, an add sums, element moves permute. An unstable ReLU's interval is replaced by its hull
with 0, [min(lo, 0), max(hi, 0)], and so is every injected source interval: then every modelled
interval contains 0, so the adjoint weights below have fixed signs (γ_lo >= 0 >= γ_hi) and no
source can *reduce* the modelled margin error (a large systematic error such as weights rounded
to 0 would otherwise look helpful). By inclusion monotonicity the model's margin interval
contains the analysis' one at the linearisation point. So the lower end of the error of the
margin y~_l - y~_k is

    err_lo_k = Σ_points Σ_elements (γ_lo·src_lo + γ_hi·src_hi)

over the rounding points' injected intervals, with adjoint weights γ obtained by one backward
pass (the transposed maps) from the margin. A rounding point's interval is the same for every
pixel of a channel, so only its channel sums S_lo[c], S_hi[c] of γ are kept:

- output rounding of channel c at F (any source grid, which over-approximates the exact-rounding
  case F >= F_acc): TRN [-2^-F, 0], RND [-2^-(F+1), 2^-(F+1)]; input rounding likewise;
- weight quantisation of output channel o at F_w: ΔA(F_w)·(R ⊕ e) + Δb(F_w), evaluated per
  candidate F_w with the exact ΔW of that candidate and the operand range ⊕ error of the
  linearisation point (its dependence on the other formats is second order);
- avg-pool constants at F_c: (c~(F_c) - 1/k)·Σ_window (R ⊕ e), per candidate.

For the logits node the margin rule takes (W_l - W_k) e_x directly (sign cancellations kept) and
its own sources as row l minus row k (ΔW_l x - ΔW_k x: separable per logit channel, never
smaller than the joint term).

Each region's model reproduces the analysis at the linearisation point (up to float rounding
and the exact-rounding case above, where the model is larger) and is *not* a bound elsewhere:
ReLU decisions move with the formats. The ILP (:mod:`.ilp`) uses it to choose formats; soundness
comes only from re-certifying the chosen program with :mod:`.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..backsub import max_candidates, pooled_error_sources
from ..ir import Network, Op
from ..ops import logits_node, op_class
from ..ops.linalg import linear_interval
from ..ops.windows import channel_windows
from ..rigorous import Interval
from .errors import DeltaCache, ErrorAnalysis, analyze_errors, deltas_for, logit_interval, rounding_interval
from .program import (
    LINEAR_KINDS,
    MOVE_KINDS,
    FracChoice,
    avg_constants,
    avg_counts,
    is_rounding_node,
    is_table_act,
    n_channels,
)


@dataclass(frozen=True)
class KnobBlock:
    """The fractional-bit knobs of one node: ``kind`` input | out | weight | const; ``n`` channels
    (1 for the input and for avg-pool constants)."""

    kind: str
    node: str
    n: int


def knob_blocks(net: Network) -> list[KnobBlock]:
    """Every knob of a :class:`FracChoice`, in topological order."""
    blocks = [KnobBlock("input", net.input_name, 1)]
    for op in net.ops():
        if op.kind in LINEAR_KINDS:
            blocks.append(KnobBlock("weight", op.name, n_channels(op)))
        if is_rounding_node(op):
            blocks.append(KnobBlock("out", op.name, n_channels(op)))
        if op.kind == "avgpool":
            blocks.append(KnobBlock("const", op.name, 1))
    return blocks


def block_fracs(fc: FracChoice, b: KnobBlock) -> np.ndarray:
    """The block's fractional bits in ``fc`` ([n] ints)."""
    if b.kind == "input":
        return np.array([fc.input], dtype=np.int64)
    if b.kind == "const":
        return np.array([fc.const[b.node]], dtype=np.int64)
    return np.asarray(getattr(fc, b.kind)[b.node], dtype=np.int64)


def set_block_fracs(fc: FracChoice, b: KnobBlock, values: np.ndarray) -> None:
    v = np.asarray(values, dtype=np.int64)
    if b.kind == "input":
        fc.input = int(v[0])
    elif b.kind == "const":
        fc.const[b.node] = int(v[0])
    else:
        getattr(fc, b.kind)[b.node] = v.copy()


@dataclass
class MarginModel:
    """err[b] [n_b, n_F, M]: modelled contribution of channel c of block b at candidate
    ``fracs[i]`` to the downward margin error -err_lo of row m (rows: (region index, class k));
    the modelled margin error of a choice is the sum over blocks and channels. Logit-error rows
    (an ε on the logits, :func:`logit_adjoints`) are rows (region index, -1 - r) with r < n_t for
    e_j <= ε (j = r) and r >= n_t for -e_j <= ε (j = r - n_t); their budget is ε."""

    blocks: list[KnobBlock]
    fracs: np.ndarray  # candidate F values, increasing
    rows: list[tuple[int, int]]
    margin_lb: np.ndarray  # [M] each row's budget: the real margin lower bound, or ε of a logit row
    err: list[np.ndarray]
    point: FracChoice  # linearisation point
    bound: np.ndarray  # [M] the sound analysis' value of each row at the point (calibration)

    def evaluate(self, fc: FracChoice) -> np.ndarray:
        """Modelled margin error [M] of the choice ``fc`` (every F must be a candidate)."""
        total = np.zeros(len(self.rows))
        for b, e in zip(self.blocks, self.err, strict=True):
            idx = np.searchsorted(self.fracs, block_fracs(fc, b))
            total += e[np.arange(b.n), idx].sum(axis=0)
        return total


def _signed_parts(csr: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(A⁺)ᵀ and (A⁻)ᵀ in CSR form."""
    pos = csr.maximum(0).T.tocsr()
    neg = csr.minimum(0).T.tocsr()
    return pos, neg


def _flat(iv: Interval) -> Interval:
    return Interval(iv.lo.reshape(-1), iv.hi.reshape(-1))


def _channel_sums(op: Op, g: np.ndarray) -> np.ndarray:
    """[n_elements, m] -> [C, m] sums over each output channel's elements."""
    return g.reshape(n_channels(op), -1, g.shape[1]).sum(axis=1)


def margin_adjoints(
    net: Network, ranges, analysis: ErrorAnalysis, label: int, maps: dict | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per node, the adjoint (γ_lo, γ_hi) [n_elements, m] of the sources injected at its output,
    for the margins y_label - y_k, k in the returned ``ks`` (module docstring)."""
    tgt = logits_node(net)
    err = analysis.err
    n_t = err[tgt].lo.size
    ks = np.array([k for k in range(n_t) if k != label])
    m = ks.size
    cols = np.arange(m)
    pat_lo = np.zeros((n_t, m))
    pat_hi = np.zeros((n_t, m))
    pat_lo[label, :] = 1.0
    pat_hi[ks, cols] = -1.0
    seeds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    top = net.op(tgt)
    per_logit = np.ones(m, dtype=bool)
    fwd = analysis.margin_err_forward
    if top.kind == "affine" and top.attrs.get("weight_exact") is None and fwd is not None:
        e = err[tgt]
        pl = e.lo[label] - e.hi[ks]
        per_logit = fwd.lo[ks] <= pl  # the per-logit difference was the tighter rule
        d_cols = ~per_logit
        if np.any(d_cols):
            from .program import weight_array

            w = weight_array(top)
            dw = (w[label][None, :] - w[ks]).T  # [n_in, m]
            dw[:, per_logit] = 0.0
            seeds[top.inputs[0]] = (np.maximum(dw, 0.0), np.minimum(dw, 0.0))
    seeds[tgt] = (pat_lo * per_logit[None, :], pat_hi * per_logit[None, :])
    sources = interval_adjoints(net, ranges, analysis, seeds, m, maps)
    sources[tgt] = (pat_lo, pat_hi)
    return sources, ks


def interval_adjoints(
    net: Network,
    ranges,
    analysis: ErrorAnalysis,
    seeds: dict[str, tuple[np.ndarray, np.ndarray]],
    m: int,
    maps: dict | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per node, (γ_lo, γ_hi) [n_elements, m]: the weights of its error interval's endpoints in
    Σ_seeds (γ_lo·lo + γ_hi·hi) of the seeded nodes, by the transposed interval maps (module
    docstring), from the seeds back to the input."""
    maps = {} if maps is None else maps
    tgt = logits_node(net)
    err = analysis.err
    R = {k: _flat(v) for k, v in ranges.ranges.items()}
    order: list[Op] = []
    for op in net.ops():
        if op.kind == "input" or op.name in R:
            order.append(op)
        if op.name == tgt:
            break
    g: dict[str, list[np.ndarray]] = {}

    def acc(name: str, lo: np.ndarray, hi: np.ndarray) -> None:
        if name not in g:
            n = err[name].lo.size
            g[name] = [np.zeros((n, m)), np.zeros((n, m))]
        g[name][0] += lo
        g[name][1] += hi

    def signed(op: Op) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if op.name not in maps:
            maps[op.name] = _signed_parts(ranges.linear_map(op).parts[0].csr)
        return maps[op.name]

    for name, (lo, hi) in seeds.items():
        acc(name, lo, hi)
    sources: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for op in reversed(order):
        if op.name not in g:
            continue
        lo, hi = g[op.name]
        sources[op.name] = (lo, hi)
        if op.kind == "input":
            continue
        ins = op.inputs
        if op.kind in LINEAR_KINDS:
            pos, neg = signed(op)
            acc(ins[0], pos @ lo + neg @ hi, neg @ lo + pos @ hi)
        elif op.kind == "avgpool":
            pos, _ = signed(op)
            acc(ins[0], pos @ lo, pos @ hi)
        elif op.kind == "add":
            for i in ins:
                acc(i, lo, hi)
        elif is_table_act(op):  # e_out ⊆ [s]·e_x ⊕ ...: modelled as max|s|·e_x (a model, not a bound)
            s = analysis.slopes[op.name]
            k = np.maximum(np.abs(s.lo), np.abs(s.hi))[:, None]
            acc(ins[0], lo * k, hi * k)
        elif op.kind == "act":
            x = ins[0]
            if op.attrs["fn"] == "identity":
                acc(x, lo, hi)
                continue
            ex, r = err[x], R[x]
            live = ~((r.hi <= 0) & (r.hi + ex.hi <= 0))  # stably inactive ReLUs kill the error
            acc(x, lo * live[:, None], hi * live[:, None])
        elif op.kind == "maxpool":
            x = ins[0]
            idx = channel_windows(op.attrs, tuple(net.op(x).shape), tuple(op.shape), op.attrs["kernel"])
            real_cand, impl_cand = max_candidates(idx, R[x], err[x])  # the slots the bound reads
            amin, amax = pooled_error_sources(idx, err[x], real_cand, impl_cand)
            n_x = err[x].lo.size
            glo = np.zeros((n_x, m))
            ghi = np.zeros((n_x, m))
            np.add.at(glo, amin, lo)
            np.add.at(ghi, amax, hi)
            acc(x, glo, ghi)
        elif op.kind in MOVE_KINDS:
            which, src = op_class(op.kind).index_map(op, [tuple(net.op(i).shape) for i in ins])
            for i, name in enumerate(ins):
                sel = which == i
                n_x = err[name].lo.size
                glo = np.zeros((n_x, m))
                ghi = np.zeros((n_x, m))
                np.add.at(glo, src[sel], lo[sel])
                np.add.at(ghi, src[sel], hi[sel])
                acc(name, glo, ghi)
        else:
            raise NotImplementedError(f"{op.describe()}: no adjoint for this node kind")
    return sources


def margin_adjoints_backward(
    net: Network, ranges, analysis: ErrorAnalysis, label: int, maps: dict | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The same (γ_lo, γ_hi) per node as :func:`margin_adjoints`, from the backward error forms
    (:func:`.backward.node_adjoints`) instead of the interval adjoints (:func:`direction_adjoints`
    with the directions e_k - e_l, whose upper end is the downward margin error)."""
    n_t = analysis.err[logits_node(net)].lo.size
    ks = np.array([k for k in range(n_t) if k != label])
    eye = np.eye(n_t)
    return direction_adjoints(net, ranges, analysis, eye[ks] - eye[label][None, :], True, maps), ks


def logit_adjoints(
    net: Network, ranges, analysis: ErrorAnalysis, backward: bool, maps: dict | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(γ_lo, γ_hi) per node for the 2·n_t logit-error rows: e_j <= ε (row j) and -e_j <= ε (row
    n_t + j), i.e. :func:`direction_adjoints` with the directions +e_j and -e_j."""
    eye = np.eye(analysis.err[logits_node(net)].lo.size)
    return direction_adjoints(net, ranges, analysis, np.vstack([eye, -eye]), backward, maps)


def direction_adjoints(
    net: Network,
    ranges,
    analysis: ErrorAnalysis,
    directions: np.ndarray,
    backward: bool,
    maps: dict | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per node, (γ_lo, γ_hi) [n_elements, m] such that the upper end of d_r·e (e the logits'
    error, d_r row r of ``directions`` [m, n_t]) is modelled as -Σ (γ_lo·src_lo + γ_hi·src_hi).

    ``backward=False``: the interval adjoints (:func:`interval_adjoints`) seeded at the logits
    with the lower end of -d_r·e, γ_lo = max(-d, 0), γ_hi = min(-d, 0). ``backward=True``: from
    the backward error forms: with Λ the coefficient of a node's local term in d_r·e, the upper
    end is Σ (Λ⁺ ν_hi + Λ⁻ ν_lo), so γ_lo = max(-Λ, 0), γ_hi = -max(Λ, 0); sign cancellations
    through consecutive layers survive (the interval adjoints add magnitudes).

    An unstable ReLU with input error [a, b] adds the offsets of its chords,
    Λ⁺μ_u + Λ⁻μ_l = |Λ|·s(1 - s)·(b - a) with s = (max(b, 0) - max(a, 0))/(b - a) the upper
    chord's slope (μ_u = -μ_l = s(1 - s)(b - a); 0 when [a, b] does not contain 0), s fixed at the
    linearisation point: linear in the width of that interval, whose dependence on the sources
    comes from the interval adjoints (:func:`interval_adjoints` seeded with γ_lo = c, γ_hi = -c,
    c = |Λ|·s(1 - s)). Without them the model misses most of a deep ReLU network's bound
    (resnet_2b: bound / model 15-47 at the greedy result)."""
    from . import backward as BW

    tgt = logits_node(net)
    m = directions.shape[0]
    if not backward:
        seed = (np.maximum(-directions, 0.0).T, np.minimum(-directions, 0.0).T)
        sources = interval_adjoints(net, ranges, analysis, {tgt: seed}, m, maps)
        sources[tgt] = seed
        return sources
    assert analysis.records is not None, "analyse with backward=True"
    lam = BW.node_adjoints(analysis.records, analysis.err, tgt, directions)
    out = {n: (np.maximum(-v, 0.0).T, -np.maximum(v, 0.0).T) for n, v in lam.items()}
    seeds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node, rec in analysis.records.items():
        if not isinstance(rec, BW.ReluRec) or node not in lam:
            continue
        a, b = rec.e_in.lo, rec.e_in.hi
        width = b - a
        rise = np.maximum(b, 0.0) - np.maximum(a, 0.0)
        s_u = np.clip(np.where(width > 0, rise / np.where(width > 0, width, 1.0), 0.0), 0.0, 1.0)
        w = np.where(rec.active | rec.inactive, 0.0, s_u * (1.0 - s_u))
        if not np.any(w > 0):
            continue
        c = np.abs(lam[node]).T * w[:, None]  # [n, m]
        lo, hi = seeds.get(rec.src, (0.0, 0.0))
        seeds[rec.src] = (lo + c, hi - c)
    if seeds:
        for n, (g_lo, g_hi) in interval_adjoints(net, ranges, analysis, seeds, m, maps).items():
            lo, hi = out.get(n, (0.0, 0.0))
            out[n] = (lo + g_lo, hi + g_hi)
    return out


def _rounding_contrib(s_lo: np.ndarray, s_hi: np.ndarray, fracs: np.ndarray, quant: str) -> np.ndarray:
    """[C, n_F, m] of S_lo·ρ_lo(F) + S_hi·ρ_hi(F) (ρ from any source grid)."""
    rlo, rhi = rounding_interval(np.inf, fracs, quant)
    return s_lo[:, None, :] * rlo[None, :, None] + s_hi[:, None, :] * rhi[None, :, None]


def margin_model(
    net: Network,
    regions: list,
    point: FracChoice,
    quant: str,
    fracs: np.ndarray,
    deltas: DeltaCache | None = None,
    analyses: list[ErrorAnalysis] | None = None,
    adjoints: str = "interval",
    logit_eps: float | None = None,
    margins: list[bool] | None = None,
) -> MarginModel:
    """The linear model (module docstring) of the ``regions`` (prepared :class:`~.certify.Region`
    s) linearised at ``point``, for candidate fractional bits ``fracs``: the margin rows of the
    regions flagged in ``margins`` (default: all; they must be provable) and, with ``logit_eps``,
    the 2·n_t logit-error rows of every region (budget ε each)."""
    deltas = deltas_for(net, regions, deltas)
    fracs = np.asarray(fracs, dtype=np.int64)
    blocks = knob_blocks(net)
    nf = fracs.size
    pieces: list[list[np.ndarray]] = [[] for _ in blocks]
    rows: list[tuple[int, int]] = []
    mlb: list[np.ndarray] = []
    bound: list[np.ndarray] = []
    maps: dict = {}
    margins = [True] * len(regions) if margins is None else margins
    for ri, reg in enumerate(regions):
        a = analyses[ri] if analyses is not None else None
        if a is None:
            a = analyze_errors(net, reg.ranges, point, quant, reg.label, deltas, logits=logit_eps is not None)
        parts: list[tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]] = []
        if margins[ri]:
            if adjoints == "backward":
                src, ks = margin_adjoints_backward(net, reg.ranges, a, reg.label, maps)
                merr = a.margin_err
            else:
                src, ks = margin_adjoints(net, reg.ranges, a, reg.label, maps)
                merr = a.margin_err_forward
            parts.append((src, ks.size))
            rows += [(ri, int(k)) for k in ks]
            mlb.append(reg.margin_lb[ks])
            bound.append(-merr.lo[ks])
        if logit_eps is not None:
            e = logit_interval(net, a)
            n_t = e.lo.size
            parts.append((logit_adjoints(net, reg.ranges, a, adjoints == "backward", maps), 2 * n_t))
            rows += [(ri, -1 - r) for r in range(2 * n_t)]
            mlb.append(np.full(2 * n_t, float(logit_eps)))
            bound.append(np.concatenate([e.hi.reshape(-1), -e.lo.reshape(-1)]))
        if not parts:
            continue
        src = _stack_sources(parts)
        m = sum(k for _, k in parts)
        R = {k: _flat(v) for k, v in reg.ranges.ranges.items()}
        for bi, b in enumerate(blocks):
            if b.node not in src:
                pieces[bi].append(np.zeros((b.n, nf, m)))
                continue
            glo, ghi = src[b.node]
            op = net.op(b.node)
            if b.kind == "input":
                c = _rounding_contrib(glo.sum(0)[None], ghi.sum(0)[None], fracs, quant)
            elif b.kind == "out":
                s_lo, s_hi = _channel_sums(op, glo), _channel_sums(op, ghi)
                c = _rounding_contrib(s_lo, s_hi, fracs, quant)
                if is_table_act(op):  # the implementation's error, targeted at ±2^(1-F) (.act_tables)
                    t = 2.0 ** (1 - fracs.astype(np.float64))
                    c = c + s_hi[:, None, :] * t[None, :, None] - s_lo[:, None, :] * t[None, :, None]
            elif b.kind == "weight":
                x = op.inputs[0]
                xr = R[x].add(a.err[x])
                c = np.empty((b.n, nf, m))
                for i, f in enumerate(fracs.tolist()):
                    _, dmap = deltas.get(net, op, np.full(b.n, f, dtype=np.int64))
                    d = linear_interval(dmap, [xr])
                    d_lo, d_hi = np.minimum(d.lo, 0.0), np.maximum(d.hi, 0.0)  # hull with 0
                    c[:, i, :] = _channel_sums(op, glo * d_lo[:, None] + ghi * d_hi[:, None])
            else:  # avg-pool constants
                c = _avg_const_contrib(net, op, R[op.inputs[0]].add(a.err[op.inputs[0]]), glo, ghi, fracs)
            pieces[bi].append(-c)
    err = [np.concatenate([np.zeros((b.n, nf, 0)), *p], axis=2) for p, b in zip(pieces, blocks, strict=True)]
    margin = np.concatenate(mlb) if mlb else np.zeros(0)
    sound = np.concatenate(bound) if bound else np.zeros(0)
    return MarginModel(blocks, fracs, rows, margin, err, point.copy(), sound)


def _stack_sources(
    parts: list[tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Adjoints of several row sets side by side ([n_elements, Σ m]; zeros where a set has none)."""
    if len(parts) == 1:
        return parts[0][0]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in set().union(*(src for src, _ in parts)):
        n = next(np.shape(src[node][0])[0] for src, _ in parts if node in src)
        cols = []
        for src, m in parts:
            glo, ghi = src.get(node, (np.zeros((n, m)), np.zeros((n, m))))
            cols.append((np.broadcast_to(glo, (n, m)), np.broadcast_to(ghi, (n, m))))
        out[node] = (np.hstack([c[0] for c in cols]), np.hstack([c[1] for c in cols]))
    return out


def _avg_const_contrib(
    net: Network, op: Op, xr: Interval, glo: np.ndarray, ghi: np.ndarray, fracs: np.ndarray
) -> np.ndarray:
    """[1, n_F, m]: (c~(F_c) - 1/k)·Σ_window (R ⊕ e) weighted by the adjoint (float model)."""
    idx, count = avg_counts(op, tuple(net.op(op.inputs[0]).shape))
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    s_lo = np.where(valid, xr.lo[safe], 0.0).sum(axis=1)
    s_hi = np.where(valid, xr.hi[safe], 0.0).sum(axis=1)
    out = np.empty((1, fracs.size, glo.shape[1]))
    for i, f in enumerate(fracs.tolist()):
        dc = np.array([float(c) for c in avg_constants(count, f)]) * 2.0**-f - 1.0 / count
        lo = np.minimum(np.minimum(dc * s_lo, dc * s_hi), 0.0)
        hi = np.maximum(np.maximum(dc * s_lo, dc * s_hi), 0.0)
        out[0, i, :] = glo.T @ lo + ghi.T @ hi
    return out
