"""Per-region certification of a fixed-point graph program and a greedy per-layer precision search.

A region (input box + label l) is *certified* for a program iff the program cannot overflow on
the box and, for every k != l,

    margin_lb_k + err_lo_k > 0,

with margin_lb_k a float-sound lower bound of the real y_l - y_k over the box
(``ops.symbolic_margins``) and err_lo_k the lower end of the error interval of the program's
y~_l - y~_k minus the real one (:mod:`.errors`). Then y~_l > y~_k on the whole box: the program
keeps the label everywhere in it. A region whose real margin bound is not positive cannot be
certified ("real network not provably robust"); otherwise failing is "precision".

Greedy search (:func:`search_formats`): knobs are the input's fractional bits and, per rounding
node (conv, dense, avg-pool, residual add), one F for all its output channels and (conv/dense)
one F for all its weights: per-layer uniform.
1. smallest global F (every knob equal) certifying all provable regions;
2. greedy descent: knobs in topological order, each lowered by 1 while every provable region
   stays certified (repeated passes until no knob moves, at most ``passes``).
The greedy steps are checked with the forward error intervals alone (``backward=False``): with
the tighter back-substituted margin bound the topological descent ends in a costlier local
optimum (Convnet_maxpool hw 418932 -> 441716), so it stays the ILP's starting point as before;
every result the search returns (greedy or ILP) is certified with both bounds intersected.
Integer bits then come from range ⊕ error over *all* regions (so the program never overflows on
any of them), per output channel.

ILP search (:func:`certify_cnn` with ``search="ilp"``, the default): per output channel (or per
layer) fractional bits minimising the hardware cost under a linear model of every region's
margin error, starting from the greedy result and re-certified by the sound analysis after every
solve (:mod:`.ilp`); it runs once per linear model (:data:`ADJOINTS`: the backward error forms
and the interval adjoints, each from the greedy result) and the cheapest certified program of
all is kept; a sound descent (:mod:`.descent`: one group lowered by one bit at a time, at the
same granularity, while the sound analysis certifies) then spends the slack the linear model
leaves.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from ..cost import act_impl_ops
from ..errors import InfeasibleError
from ..ir import Network
from ..ops import AnalysisContext, op_class, symbolic_margins, symbolic_ranges
from ..progress import note
from ..rigorous import down
from .descent import sound_descent
from .errors import (
    DeltaCache,
    ErrorAnalysis,
    analyze_errors,
    deltas_for,
    fits,
    int_bits_for,
    logit_interval,
)
from .ilp import GRANULARITIES, IlpOutcome, ilp_search
from .program import (
    LINEAR_KINDS,
    ROUNDING_KINDS,
    FracChoice,
    GraphProgram,
    build_program,
    container,
    is_rounding_node,
    n_channels,
    partial_sums,
    per_channel,
)

# node kinds whose every row the real-range analysis back-substitutes (:func:`prepare`)
FORMAT_RANGE_KINDS = frozenset(ROUNDING_KINDS)


@dataclass
class Region:
    """An input box and the label the program must keep on it; ranges filled by :func:`prepare`.

    ``label=None``: a box without a label (``--task regress`` on a graph: the spec's input box),
    on which only the logits' error (an ε target) and overflow are certified; it has no margins
    and is never *provable*."""

    name: str
    lower: np.ndarray
    upper: np.ndarray
    label: int | None
    ranges: AnalysisContext | None = None
    margin_lb: np.ndarray | None = None  # [n_classes], +inf at the label (None without a label)

    @property
    def provable(self) -> bool:
        if self.label is None:
            return False
        assert self.margin_lb is not None
        return bool(np.min(np.delete(self.margin_lb, self.label)) > 0)


def prepare(net: Network, region: Region) -> Region:
    """Real ranges of every node (symbolic back-substitution; every row of a node with a chosen
    format, whose integer bits and error terms its range sizes) and, with a label, the margin
    lower bounds."""
    ctx, _ = symbolic_ranges(net, region.lower, region.upper, all_rows_of=FORMAT_RANGE_KINDS)
    region.ranges = ctx
    region.margin_lb = None if region.label is None else symbolic_margins(ctx, region.label)
    return region


@dataclass
class RegionVerdict:
    """``margin_lb``/``margin_err`` at the class ``worst_k`` of least slack (slack_k = margin_lb_k +
    err_lo_k, the certified lower bound of the program's margin); ``margin_min`` = min_k margin_lb_k."""

    region: str
    label: int | None  # None: a box without a label (margin fields NaN, worst_k -1)
    worst_k: int
    margin_lb: float
    margin_err: float  # -err_lo at worst_k: how far the program's margin may fall below the real one
    slack: float
    margin_min: float
    certified: bool
    reason: str  # "" | "real network not provably robust" | "overflow at ..." | "precision"


def verdict(
    net: Network, region: Region, analysis: ErrorAnalysis, program: GraphProgram | None = None
) -> RegionVerdict:
    """Certified or not (module docstring); with ``program``, its integer bits are checked too.
    A region without a label has no margin to certify: its verdict is overflow only (certified
    iff no overflow; its logit-error target is the caller's, e.g. :func:`ilp_refine`'s check)."""
    ovf = overflow_violations(net, program, analysis) if program is not None else []
    if region.label is None:
        reason = "overflow at " + ", ".join(ovf[:3]) if ovf else ""
        nan = math.nan
        return RegionVerdict(region.name, None, -1, nan, nan, nan, nan, not ovf, reason)
    assert region.margin_lb is not None and analysis.margin_err is not None
    ks = np.array([k for k in range(region.margin_lb.size) if k != region.label])
    slack = down(region.margin_lb[ks] + analysis.margin_err.lo[ks])
    i = int(np.argmin(slack))
    mmin = float(region.margin_lb[ks].min())
    # a region the real network is not proved robust on is never certified, even when the
    # error interval is favourable (err_lo > 0 under truncation bias): the guarantee is label
    # preservation, and the real label may change inside the box
    ok = mmin > 0 and bool(np.all(slack > 0)) and not ovf
    if ok:
        reason = ""
    elif mmin <= 0:
        reason = "real network not provably robust"
    elif ovf:
        reason = "overflow at " + ", ".join(ovf[:3])
    else:
        reason = "precision"
    k = int(ks[i])
    m_k, e_k = float(region.margin_lb[k]), float(-analysis.margin_err.lo[k])
    return RegionVerdict(region.name, region.label, k, m_k, e_k, float(slack[i]), mmin, ok, reason)


def overflow_violations(net: Network, prog: GraphProgram, analysis: ErrorAnalysis) -> list[str]:
    """Rounding points of ``prog`` whose value range (real ⊕ error) does not fit their format."""
    bad: list[str] = []
    q = prog.quant
    for (name, stage), iv in analysis.value.items():
        if stage == "input":
            t = prog.input_t
            ok = fits(iv.lo, iv.hi, t.int_bits, t.frac, q)
        else:
            nd = prog.nodes[name]
            op = net.op(name)
            if stage == "acc":
                t = nd.acc_t
                ib, fr = per_channel(op, t.int_bits), per_channel(op, t.frac)
                ok = fits(iv.lo, iv.hi, ib, fr, "TRN")  # exact sums: no rounding offset
            else:
                ok = fits(iv.lo, iv.hi, nd.out_t.int_bits, nd.out_t.frac, q)
        if not np.all(ok):
            bad.append(f"{name}:{stage}")
    return bad


def _channel_max(op, values: np.ndarray) -> np.ndarray:
    return np.asarray(values).reshape(n_channels(op), -1).max(axis=1)


def program_for(net: Network, fracs: FracChoice, analyses: list[ErrorAnalysis], quant: str) -> GraphProgram:
    """The program of ``fracs`` with the smallest per-channel integer bits that hold the value
    ranges of every analysis (one per region)."""
    from ..errors import UserError

    def need(name: str, stage: str, frac: np.ndarray, mode: str) -> np.ndarray:
        ibs = [
            int_bits_for(a.value[(name, stage)].lo, a.value[(name, stage)].hi, frac, mode) for a in analyses
        ]
        return np.max(np.stack(ibs), axis=0)

    n_in = int(np.prod(net.input_shape))
    in_ib = int(need(net.input_name, "input", np.full(n_in, fracs.input), quant).max())
    out_ib: dict[str, np.ndarray] = {}
    acc_ib: dict[str, np.ndarray] = {}
    frac_of_in: dict[str, int] = {}
    if not analyses:
        raise UserError("no region to size the integer bits on")
    impls = analyses[0].act_impls
    for a in analyses[1:]:  # one implementation per node: the regions must have shared it
        if any(a.act_impls.get(n) is not v for n, v in impls.items()):
            raise ValueError("the regions were analysed with different activation implementations")
    # operand alignment fracs (F_x) follow from the chosen fracs: rebuild once without int bits
    probe = build_program(
        net, fracs, {n: np.full(v.size, 64) for n, v in fracs.out.items()}, 64,
        {n: np.full(v.size, 64) for n, v in fracs.out.items()}, quant, act_impls=impls,
    )  # fmt: skip
    for op in net.ops():
        if not is_rounding_node(op):
            continue
        nd = probe.nodes[op.name]
        fo = per_channel(op, fracs.out[op.name])
        out_ib[op.name] = _channel_max(op, need(op.name, "out", fo, quant))
        if op.kind in LINEAR_KINDS or op.kind == "avgpool":
            fa = per_channel(op, nd.acc_t.frac)
            acc_ib[op.name] = _channel_max(op, need(op.name, "acc", fa, "TRN"))
            frac_of_in[op.name] = nd.x_frac
    return build_program(net, fracs, out_ib, in_ib, acc_ib, quant, act_impls=impls)


@dataclass
class SearchResult:
    """The chosen formats, their program and per-region verdicts. ``method``: "greedy" (per-layer
    descent) or "ilp" (an ILP solution was cheaper than the greedy result and certified);
    ``greedy_cost``: hw cost of the greedy result; ``ilp``: the ILP rounds (search="ilp")."""

    fracs: FracChoice
    program: GraphProgram
    verdicts: list[RegionVerdict]
    global_frac: int | None
    checks: int
    seconds: float
    log: list[str] = field(default_factory=list)
    method: str = "greedy"
    greedy_cost: int | None = None
    ilp: IlpOutcome | None = None
    target_step: int | None = None  # logit target: bits added to the greedy result (or uniform F)
    analyses: list[ErrorAnalysis] = field(default_factory=list)  # what the verdicts were read from


def search_formats(
    net: Network,
    regions: list[Region],
    quant: str = "TRN",
    min_frac: int = 0,
    max_frac: int = 32,
    passes: int = 2,
) -> SearchResult:
    """Greedy per-layer fractional-bit search (module docstring) over prepared regions."""
    t0 = time.perf_counter()
    deltas = deltas_for(net, regions)
    provable = [r for r in regions if r.provable]
    checks = 0

    def ok(fc: FracChoice) -> bool:
        nonlocal checks
        for r in provable:
            checks += 1
            a = analyze_errors(net, r.ranges, fc, quant, r.label, deltas, backward=False)
            if not verdict(net, r, a).certified:
                return False
        return True

    log: list[str] = []
    g_frac = None
    fc = FracChoice.uniform(net, max_frac)
    if provable:
        for f in range(min_frac, max_frac + 1):
            note(f"greedy: uniform F = {f}")
            cand = FracChoice.uniform(net, f)
            if ok(cand):
                g_frac, fc = f, cand
                break
        log.append(f"global F = {g_frac}")
        if g_frac is not None:
            knobs = _knobs(net)
            for _ in range(passes):
                moved = False
                for knob in knobs:
                    note(f"greedy: {knob[0]} {knob[1]} F = {_get(fc, knob)} ({checks} checks)")
                    while _get(fc, knob) > min_frac:
                        cand = fc.copy()
                        _set(cand, knob, _get(fc, knob) - 1)
                        if not ok(cand):
                            break
                        fc, moved = cand, True
                if not moved:
                    break
            log.append("final " + ", ".join(f"{k[0]}:{k[1]}={_get(fc, k)}" for k in knobs))
    prog, analyses, verdicts = certify_choice(net, regions, fc, quant, deltas)
    return SearchResult(fc, prog, verdicts, g_frac, checks, time.perf_counter() - t0, log, analyses=analyses)


def _knobs(net: Network) -> list[tuple[str, str]]:
    knobs = [("input", "")]
    for op in net.ops():
        if op.kind in LINEAR_KINDS:
            knobs.append(("weight", op.name))
        if is_rounding_node(op):
            knobs.append(("out", op.name))
        if op.kind == "avgpool":
            knobs.append(("const", op.name))
    return knobs


def _get(fc: FracChoice, knob: tuple[str, str]) -> int:
    kind, name = knob
    if kind == "input":
        return fc.input
    if kind == "const":
        return fc.const[name]
    return int(getattr(fc, kind)[name].max())


def _set(fc: FracChoice, knob: tuple[str, str], value: int) -> None:
    kind, name = knob
    if kind == "input":
        fc.input = value
    elif kind == "const":
        fc.const[name] = value
    else:
        getattr(fc, kind)[name][:] = value


@dataclass
class ProgramCost:
    """Hardware cost with ONE multiply-accumulate array per conv layer, reused over all output
    pixels (a dense layer's array is its n_out x n_in weights): per multiplier, operand bits
    W_w + W_x summed and the bilinear W_w·W_x summed, W_w the output channel's weight width and
    W_x the width its lane reads (the input channel's union format for a conv, the input
    element's format for a dense node: :func:`.program.operand_classes`, as the emitted code
    narrows its operand); per adder, its width summed: K lane adders per output channel at the
    accumulator width, except lanes whose operand class has fewer fractional bits than the
    operand's alignment where a partial sum saves bits (:func:`.program.partial_sums`: narrower
    lane adders plus one merge adder).
    Avg-pool: K-1 adders per channel (window sum) plus one constant multiplier per channel unless
    the divisor is a power of two (a shift). Residual add: one adder per channel. Table
    activation: one implementation unit per channel reused over its pixels (an interpolating
    table's multiplier and adder, a piecewise map's slope multiplier:
    :func:`aster_ext.cost.act_impl_ops`) and the node's ROM bits, counted once, in ``table_bits``
    (weight 1 in ``hw``, as the dense refined objective's ROM_WEIGHT)."""

    mult_count: int
    mult_operand_bits: int
    mult_bilinear: int
    adder_count: int
    adder_bits: int
    table_bits: int = 0

    @property
    def hw(self) -> int:
        """Operand bits of every multiplier plus every adder's width plus ROM bits (the ILP's
        objective)."""
        return self.mult_operand_bits + self.adder_bits + self.table_bits


def program_cost(prog: GraphProgram) -> ProgramCost:
    net = prog.net
    mc = mob = mbl = ac = ab = tb = 0
    for op in net.ops():
        if op.name not in prog.nodes:
            continue
        nd = prog.nodes[op.name]
        if op.kind in LINEAR_KINDS:
            # the multiplier of lane (o, t) reads its operand class (input channel of a conv,
            # input element of a dense node) narrowed to the class's own union format
            x = op.inputs[0]
            plan = partial_sums(op, tuple(net.op(x).shape), prog.out_t(x), nd.acc_t, nd.x_frac)
            wx = plan.lane_width()  # [C_out, K]
            per_out = int(np.prod(nd.weight_raw.shape[1:]))
            ww = nd.weight_width.astype(np.int64)
            mc += per_out * ww.size
            mob += int(per_out * np.sum(ww) + np.sum(wx))
            mbl += int(np.sum(ww * wx.sum(axis=1)))
            ac += per_out * ww.size + int(plan.partial.sum())
            ab += int(plan.adder_bits(nd.acc_t.width.astype(np.int64)).sum())
        elif op.kind == "avgpool":
            k = int(np.prod(op.attrs["kernel"]))
            c = n_channels(op)
            ac += (k - 1) * c
            ab += int((k - 1) * np.sum(nd.acc_t.width))
            cvals = {int(v) for v in nd.const_raw}
            if not all(v > 0 and (v & (v - 1)) == 0 for v in cvals):
                cw = max(v.bit_length() + 1 for v in cvals)
                mc += c
                mob += int(np.sum(nd.acc_t.width + cw))
                mbl += int(np.sum(nd.acc_t.width * cw))
        elif op.kind == "add":
            c = n_channels(op)
            ac += c
            ab += int(nd.out_t.width.reshape(c, -1).max(axis=1).sum())
        elif nd.act_impl is not None:
            x_w, _ = container(prog.out_t(op.inputs[0]))  # the operand at its alignment x_frac
            mults, adds, rom = act_impl_ops(nd.act_impl, np.full(n_channels(op), x_w))
            mc += len(mults)
            mob += sum(a + b for a, b in mults)
            mbl += sum(a * b for a, b in mults)
            ac += len(adds)
            ab += sum(adds)
            tb += int(rom)
    return ProgramCost(mc, mob, mbl, ac, ab, tb)


@dataclass
class CertifyReport:
    search: SearchResult
    regions: list[Region]
    cost: ProgramCost
    prepare_seconds: list[float]
    peak_mib: float


SEARCHES = ("ilp", "greedy")
# the ILP's linear margin models (:func:`.sensitivity.margin_model`), each run from the greedy
# result: neither wins everywhere (per-channel hw, 30 s per solve: Convnet_maxpool 291104 backward
# vs 309352 interval, Convnet_avgpool 311748 vs 296423); chaining the second from the first's
# result was measured to end costlier than either alone (Convnet_avgpool per layer 347961)
ADJOINTS = ("backward", "interval")
# with a logit target, each model's search stops after this many solves in a row that saved less
# than 0.5 % (ilp.PROGRESS): measured on the MNIST Convnets and cifar10_small at --error 0.01, the
# best choice came by the 2nd-5th solve and later solves (many at the 60 s limit) moved hw by
# <= 0.35 % (see the closing note of this change); the margin-only search keeps all its rounds
LOGIT_PATIENCE = 3
# passes of the sound descent after the ILP (:mod:`.descent`), per channel from the ILP's choice:
# Convnet_maxpool 238908 -> 227632 after the first pass (104 checks, -4.7 %), 227488 after a
# second (-0.06 %, 73 more checks); Convnet_avgpool 252301 -> 251578 -> 251474; resnet_2b
# 4412544 -> 4390163 after the first (543 checks), the same after a second (968 in all): the
# second pass is not worth its checks
DESCENT_PASSES = 1
# checks (sound analyses of every region) the descent may spend: the whole first pass of the MNIST
# Convnets takes 104 and 165; resnet_2b's took 543 (~0.35 s each, 227 s) for -0.5 % hw, so its
# descent stops at this budget with the best choice so far. That floor starved small networks,
# whose checks take milliseconds: Aster's controllers over the whole box stopped after 200 checks
# with the pass unfinished (AcrobotNN at 1e-3: hw 15227; its whole pass, 576 checks in 2.8 s: 7711;
# VertCasNN at 1e-5: 170554 -> 118297 in 1867 checks, 23 s). So the budget scales with the size of
# one check, :func:`descent_budget`: DESCENT_WORK / (regions x (nonzeros of the linear maps +
# node elements)), between DESCENT_CHECKS and DESCENT_MAX_CHECKS: the benchmark CNNs on their 5
# regions keep the floor (on one whole-box region, --task regress: 313-645); deterministic (a
# function of the problem, not of the clock)
DESCENT_CHECKS = 200
DESCENT_MAX_CHECKS = 5000
DESCENT_WORK = 1e8


def descent_budget(net: Network, regions: list[Region]) -> int:
    """The descent's default check budget for ``net`` on ``regions`` (see DESCENT_WORK)."""
    ctx = regions[0].ranges
    assert ctx is not None, "prepare the regions first"
    size = 0
    for op in net.ops():
        if op.kind in ("input", "output"):
            continue
        size += int(np.prod(op.shape))
        if op_class(op.kind).linear:
            size += sum(int(part.rows.size) for part in ctx.linear_map(op).parts)
    budget = int(DESCENT_WORK // (len(regions) * max(size, 1)))
    return min(max(budget, DESCENT_CHECKS), DESCENT_MAX_CHECKS)


def certify_cnn(
    net: Network,
    regions: list[Region],
    quant: str = "TRN",
    min_frac: int = 0,
    max_frac: int = 32,
    search: str = "ilp",
    granularity: str = "channel",
    time_limit: float = 60.0,
    max_rounds: int = 12,
    logit_eps: float | None = None,
    descent_checks: int | None = None,
    trace_memory: bool = False,
) -> CertifyReport:
    """The API for the CLI: prepare every region (real ranges + margin bounds), search formats,
    build the program, certify every region. Peak memory (``peak_mib``): with ``trace_memory``
    the tracemalloc peak of the call (the Python and numpy allocations it made); otherwise the
    process's peak resident set size so far (``getrusage``: the interpreter and the model
    included). tracemalloc slows object-heavy work (exact-weight quantisation, Python-int
    arithmetic) by an order of magnitude: a descent check on the 6x200 sigmoid MNIST net took
    0.29 s without it and 3.25 s with it.

    ``logit_eps``: every region's logits must also stay within ε of the real ones (provable
    regions certified too): the greedy result (uniform F without a provable region) is raised
    uniformly until it meets that (:func:`meet_logit_target`; up to :data:`WIDEST_FRAC` bits,
    InfeasibleError when nothing there does), then the ILP, with the logit-error rows in its
    model, starts from there (its range of F ends at ``max_frac`` or, when the raise went
    beyond it, at the largest F of that start).

    ``search`` "greedy": per-layer descent only (``granularity`` must be "layer"); "ilp": the
    greedy result, then the ILP (:mod:`.ilp`) with one format per output channel
    (``granularity="channel"``) or per layer (``"layer"``), ``time_limit`` seconds per solve, at
    most ``max_rounds`` solves per linear margin model (:data:`ADJOINTS`); every ILP choice is
    re-certified and the cheapest certified program is returned; ``descent_checks`` caps the
    sound descent after it (:func:`descent_budget` when None, 0: no descent)."""
    from ..errors import UnsupportedError

    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, not {search!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    if search == "greedy" and granularity != "layer":
        raise UnsupportedError("the greedy search chooses one format per layer: use granularity='layer' "
                               "or search='ilp' for per-channel formats")  # fmt: skip
    if trace_memory:
        tracemalloc.start()
    try:
        times = []
        for i, r in enumerate(regions):
            t = time.perf_counter()
            note(f"real ranges and margins, region {i + 1}/{len(regions)}")
            prepare(net, r)
            times.append(time.perf_counter() - t)
        res = search_formats(net, regions, quant, min_frac, max_frac)
        if logit_eps is not None:
            res = _meet_target(net, regions, res, quant, max(max_frac, WIDEST_FRAC), logit_eps)
            max_frac = max(max_frac, largest_frac(res.fracs))  # the ILP's range reaches the start
        res.greedy_cost = program_cost(res.program).hw
        if search == "ilp" and (res.global_frac is not None or logit_eps is not None):
            res = ilp_refine(
                net, regions, res, quant, min_frac, max_frac, granularity, time_limit, max_rounds, logit_eps,
                descent_checks,
            )  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace_memory else peak_rss_mib()
    finally:
        if trace_memory:
            tracemalloc.stop()
    return CertifyReport(res, regions, program_cost(res.program), times, peak)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    import resource
    import sys

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 2**10


# ---------------------------------------------------------------------------------------------
# an ε on the logits over every region (--error with --task classify)
# ---------------------------------------------------------------------------------------------


def shifted(fc: FracChoice, d: int) -> FracChoice:
    """Every fractional bit of ``fc`` raised by d."""
    out = fc.copy()
    out.input += d
    for table in (out.out, out.weight):
        for k in table:
            table[k] = table[k] + d
    for k in out.const:
        out.const[k] += d
    return out


def logit_error_bound(net: Network, a: ErrorAnalysis) -> float:
    """max_j max(|lo_j|, |hi_j|) of the logits' error intervals (:func:`.errors.logit_interval`)."""
    e = logit_interval(net, a)
    return max_magnitude(e.lo, e.hi)


def max_magnitude(lo: np.ndarray, hi: np.ndarray) -> float:
    """max over the elements of max(|lo|, |hi|): the largest |x| any interval [lo, hi] admits."""
    return float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))


def meet_logit_target(
    net: Network,
    regions: list[Region],
    base: FracChoice | None,
    eps: float,
    keep: list[bool],
    quant: str = "TRN",
    max_frac: int = 32,
) -> tuple[FracChoice, int, list[ErrorAnalysis]]:
    """The first candidate whose logit error bound is <= eps on every region and which keeps the
    regions of ``keep`` certified: ``base`` raised by d = 0, 1, ... (or, without ``base``, uniform
    F = 0, 1, ...). Returns (fracs, d or F, its regions' analyses with the logits' backward bound);
    InfeasibleError when none up to ``max_frac`` works."""
    deltas = deltas_for(net, regions)
    best = math.inf
    for step in range(max_frac + 1):
        fc = shifted(base, step) if base is not None else FracChoice.uniform(net, step)
        analyses = [analyze_errors(net, r.ranges, fc, quant, r.label, deltas, logits=True) for r in regions]
        worst = max(logit_error_bound(net, a) for a in analyses)
        best = min(best, worst)
        if worst <= eps and all(
            verdict(net, r, a).certified for r, a, k in zip(regions, analyses, keep, strict=True) if k
        ):
            return fc, step, analyses
    raise InfeasibleError(
        f"{net.name}: no format choice up to {max_frac} extra fractional bits keeps every logit within "
        f"--error {eps:g} on the regions (smallest logit error bound found {best:.3g})",
        smallest_error=best,
    )


# how far the raise towards a logit target may go: beyond the search's usual F <= 32 when the
# target needs it (Aster's VertCASVer1 over its whole box at 1e-3: uniform F = 32 bounds the
# logit error by 0.00155, F = 33 by 0.000776); the first F that meets the target is taken, so a
# target met within 32 bits gets the same start as before
WIDEST_FRAC = 48


def largest_frac(fc: FracChoice) -> int:
    """The largest fractional-bit count of the search's knobs (input, outputs, weights)."""
    arrays = [*fc.out.values(), *fc.weight.values()]
    return max([fc.input, *(int(a.max()) for a in arrays if a.size)])


def _meet_target(
    net: Network, regions: list[Region], res: SearchResult, quant: str, max_frac: int, eps: float
) -> SearchResult:
    """``res`` (the greedy result) raised uniformly until every logit is within ``eps`` on every
    region and every region it certified stays certified (uniform F when it had no provable region)."""
    base = res.fracs if res.global_frac is not None else None
    keep = [v.certified for v in res.verdicts] if base is not None else [False] * len(regions)
    fc, step, analyses = meet_logit_target(net, regions, base, eps, keep, quant, max_frac)
    prog = program_for(net, fc, analyses, quant)  # the analyses certify_choice would compute again
    verdicts = [verdict(net, r, a, prog) for r, a in zip(regions, analyses, strict=True)]
    how = f"+{step} bits" if base is not None else f"uniform F = {step}"
    log = [*res.log, f"logit target {eps:g}: {how}"]
    return SearchResult(
        fc, prog, verdicts, res.global_frac, res.checks, res.seconds, log, target_step=step, analyses=analyses
    )


def certify_choice(
    net: Network,
    regions: list[Region],
    fc: FracChoice,
    quant: str,
    deltas: DeltaCache | None = None,
    logits: bool = False,
) -> tuple[GraphProgram, list[ErrorAnalysis], list[RegionVerdict]]:
    """The sound check of one choice: error analyses of every region (``logits``: with the
    logits' backward bound too), the program with integer bits from all of them, and every
    region's verdict (overflow included)."""
    deltas = deltas_for(net, regions, deltas)
    analyses = [analyze_errors(net, r.ranges, fc, quant, r.label, deltas, logits=logits) for r in regions]
    prog = program_for(net, fc, analyses, quant)
    return prog, analyses, [verdict(net, r, a, prog) for r, a in zip(regions, analyses, strict=True)]


def ilp_refine(
    net: Network,
    regions: list[Region],
    greedy: SearchResult,
    quant: str,
    min_frac: int,
    max_frac: int,
    granularity: str,
    time_limit: float,
    max_rounds: int,
    logit_eps: float | None = None,
    descent_checks: int | None = None,
) -> SearchResult:
    """Run the ILP search once per model of :data:`ADJOINTS`, each from the greedy result, then the
    sound descent (:mod:`.descent`, same granularity) from the cheapest certified choice of the
    greedy and all of them; return the cheapest (hw cost). With ``logit_eps``
    (the greedy result must meet it) a choice is certified only if every region's logits also
    stay within ε."""
    t0 = time.perf_counter()
    deltas = deltas_for(net, regions)
    checks = 0

    def check(fc: FracChoice) -> tuple[bool, int, float, list[ErrorAnalysis]]:
        """(certified, hw, worst slack, analyses): the slack of a logit row is ε - its bound."""
        nonlocal checks
        checks += len(regions)
        prog, analyses, vs = certify_choice(net, regions, fc, quant, deltas, logit_eps is not None)
        prov = [v for v, r in zip(vs, regions, strict=True) if r.provable]
        slacks = [v.slack for v in prov]
        ok = all(v.certified for v in prov)
        if logit_eps is not None:
            slacks += [logit_eps - logit_error_bound(net, a) for a in analyses]
            ok = ok and min(slacks) >= 0 and not any(v.reason.startswith("overflow") for v in vs)
        return ok, program_cost(prog).hw, min(slacks), analyses

    log = [*greedy.log]
    outcome: IlpOutcome | None = None
    best = (greedy.greedy_cost if greedy.greedy_cost is not None else program_cost(greedy.program).hw, None)
    for adjoints in ADJOINTS:
        run = ilp_search(
            net, regions, greedy.fracs, quant, min_frac, max_frac, granularity, time_limit, max_rounds,
            deltas=deltas, check=check, adjoints=adjoints, logit_eps=logit_eps,
            patience=LOGIT_PATIENCE if logit_eps is not None else None,
        )  # fmt: skip
        for i, rd in enumerate(run.rounds):
            log.append(
                f"ilp ({adjoints}) round {i}: {rd.status}, hw {rd.hw}, certified {rd.certified}, "
                f"slack {rd.worst_slack}, solve {rd.solve_s:.1f}s {rd.note}"
            )
        if outcome is None:
            outcome = run
        else:
            outcome.rounds += run.rounds
            outcome.model_s += run.model_s
            outcome.n_binaries = max(outcome.n_binaries, run.n_binaries)
        if run.fracs is not None and run.hw is not None and run.hw < best[0]:
            best = (run.hw, run.fracs)
    assert outcome is not None
    descent = sound_descent(
        net, best[1] if best[1] is not None else greedy.fracs, best[0], check, granularity, min_frac,
        DESCENT_PASSES, descent_budget(net, regions) if descent_checks is None else descent_checks,
    )  # fmt: skip
    log.append(
        f"descent ({granularity}): hw {best[0]} -> {descent.hw} (after each pass: "
        f"{', '.join(map(str, descent.pass_hw)) or 'none'}), {descent.moves} steps, {descent.checks} checks"
        f"{' (stopped: its check budget, --descent-checks, was spent)' if descent.out_of_checks else ''}, "
        f"{descent.seconds:.1f}s"
    )
    if descent.moves:
        best = (descent.hw, descent.fracs)
    outcome.fracs, outcome.hw = best[1], (best[0] if best[1] is not None else None)
    seconds = greedy.seconds + time.perf_counter() - t0
    if outcome.fracs is None:
        log.append(f"ilp ({granularity}): no certified choice cheaper than greedy (hw {greedy.greedy_cost})")
        return SearchResult(
            greedy.fracs, greedy.program, greedy.verdicts, greedy.global_frac, greedy.checks + checks,
            seconds, log, "greedy", greedy.greedy_cost, outcome, greedy.target_step, greedy.analyses,
        )  # fmt: skip
    with_logits = logit_eps is not None
    prog, analyses, verdicts = certify_choice(net, regions, outcome.fracs, quant, deltas, with_logits)
    assert all(v.certified for v, r in zip(verdicts, regions, strict=True) if r.provable)
    assert logit_eps is None or max(logit_error_bound(net, a) for a in analyses) <= logit_eps
    log.append(f"ilp ({granularity}): hw {program_cost(prog).hw} vs greedy {greedy.greedy_cost}")
    return SearchResult(
        outcome.fracs, prog, verdicts, greedy.global_frac, greedy.checks + checks + len(regions), seconds,
        log, "ilp", greedy.greedy_cost, outcome, greedy.target_step, analyses,
    )  # fmt: skip
