"""``aster-ext verify DIR`` for a classify output (``quantize --task classify``).

Two independent kinds of evidence, per region (box B, label l, report.json ``regions[i]``):

1. Re-derivation (tampering check): program.json must be exactly the program its own formats
   define (weights re-quantised from the model, every raw constant and type compared), and the
   analysis of that program (same code as quantize: symbolic ranges, error forms) must give
   bounds no weaker than report.json claims and the same verdicts. A report.json whose claims
   are stronger than the program supports is reported as inconsistent.
2. Execution: the program is run (``logits_of``, by default the bit-exact simulator) on
   random points of B, random corners, the centre, a gradient-guided search and a local search,
   against the real network (float64 evaluation of the IR). On every input x and class k != l:

       violation  iff  (y_l - y_k)(x) - (y~_l - y~_k)(x) > margin_error_bounds[k] + τ
                   or  y~_j(x) - y_j(x) outside [logit_error_lo_j - τ, logit_error_hi_j + τ]
                   or  (y_l - y_k)(x) < margin_lower_bounds[k] - τ   (the real-network bound)
                   or  the region is certified and argmax y~(x) != l,

   with τ = 2^-30·(1 + max_j |y_j(x)|) for the float64 evaluation of the real network (y~ is
   exact: raw integers of the program).

   The gradient search (PGD) minimises the program's weakest margin: at each step the class
   k* = argmin_k (y~_l - y~_k)(x) is taken from the program, and x moves by a signed step
   against the gradient of the *real* network's y_l - y_k* (exact for piecewise-linear nets,
   ``ops.attack.margin_gradients``), projected on B. The local search perturbs the inputs of
   largest drop/bound ratio (random coordinates moved to a bound or resampled) and keeps the
   worst. ``label_agreement`` = fraction of checked inputs where argmax y~ = argmax y.

A region without a label (``quantize --task regress`` on a graph: the whole input box) has no
margins: only the logit-error and overflow conditions apply, the claimed bound must be within
report.json's ``target_error``, the gradient search is skipped and the local search perturbs the
inputs of largest |logit error| / bound.

The program under test is the compiled C++ that quantize wrote (``report.json`` ``cpp``;
:class:`~aster_ext.codegen.graph_hls.CompiledGraphLogits`), compared bit for bit with the
simulator on >= BIT_EXACT_MIN random and corner inputs per region (``bit_exact_cpp``); with
``check_cpp=False`` (``--no-cpp``) or no C++ in the folder it is the bit-exact simulator and
``bit_exact_cpp`` is null. Any other evaluator can be passed as ``logits_of`` (a callable
xs [B, n_in] -> logits [B, n_cls]).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .classify import CPP_NOTE, NO_LABEL, REGIONS_FILE, fracs_of_program
from .errors import UserError
from .graph_program.certify import Region, max_magnitude, prepare, verdict
from .graph_program.errors import analyze_errors, deltas_for, logit_interval
from .graph_program.program import GraphProgram, build_program, is_rounding_node, n_channels
from .graph_program.simulate import simulate_graph
from .ir import Network

LogitsFn = Callable[[np.ndarray], np.ndarray]
SIM_CHUNK = 256
DEFAULT_SAMPLES = 300  # per region (the CLI's CLASSIFY_SAMPLES)
DEFAULT_SEARCH_ITERS = 20  # PGD steps per start, per region (the CLI's CLASSIFY_SEARCH_ITERS)
PGD_STARTS = 3
BIT_EXACT_MIN = 200  # inputs per region compared bit for bit with a reference evaluator


class SimulatorLogits:
    """``logits_of`` of the bit-exact simulator; counts the wrapped assignments it saw."""

    def __init__(self, prog: GraphProgram) -> None:
        from .ops import logits_node

        self.prog = prog
        self.node = logits_node(prog.net)
        self.overflows = 0

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        outs = []
        for s in range(0, xs.shape[0], SIM_CHUNK):
            tr = simulate_graph(self.prog, xs[s : s + SIM_CHUNK])
            self.overflows += int(sum(tr.overflows.values()))
            outs.append(tr.value(self.prog, self.node))
        return np.concatenate(outs, axis=0)


@dataclass
class RegionClaim:
    """What report.json claims for one region (the bounds verify tests)."""

    name: str
    label: int | None  # None: a box without a label (logit error only)
    certified: bool
    overflow_free: bool
    margin_lower_bounds: np.ndarray  # [n_cls], -inf where null (label / unbounded)
    margin_error_bounds: np.ndarray  # [n_cls], +inf at the label
    logit_lo: np.ndarray
    logit_hi: np.ndarray


@dataclass
class RegionCheck:
    """What verify observed on one region."""

    name: str
    label: int | None
    certified: bool
    random: int = 0
    corners: int = 0
    search: int = 0
    checked: int = 0
    agree: int = 0
    kept: int = 0
    max_drop: float = -math.inf
    max_drop_ratio: float = -math.inf
    max_logit_error: float = 0.0
    min_program_margin: float = math.inf
    min_real_margin: float = math.inf
    violations: int = 0
    bit_exact: bool | None = None  # logits_of vs the reference evaluator (None: not compared)
    bit_exact_samples: int = 0
    overflows: int = 0  # wrapped assignments seen by the evaluator (when it counts them)
    overflow_free: bool = True  # the report's claim for this region
    kinds: dict[str, int] = field(default_factory=dict)
    worst_input: np.ndarray | None = None
    violation_inputs: list[list[float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "certified": self.certified,
            "checked": self.checked,
            "random": self.random,
            "corners": self.corners,
            "search": self.search,
            "label_agreement": self.agree / self.checked if self.checked else None,
            "label_kept": self.kept / self.checked if self.checked and self.label is not None else None,
            "max_margin_drop": _json_float(self.max_drop),
            "max_drop_over_bound": _json_float(self.max_drop_ratio),
            "max_logit_error": self.max_logit_error,
            "min_program_margin": _json_float(self.min_program_margin),
            "min_real_margin": _json_float(self.min_real_margin),
            "violations": self.violations,
            "bit_exact_cpp": self.bit_exact,
            "bit_exact_samples": self.bit_exact_samples,
            "overflows": self.overflows,
            "violation_kinds": self.kinds,
            "violation_inputs": self.violation_inputs[:3],
        }


def _json_float(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass
class ClassifyVerifyResult:
    regions: list[RegionCheck]
    report_problems: list[str]
    time_s: float
    seed: int
    bit_exact_cpp: bool | None = None
    cpp_samples: int = 0
    cpp_note: str = CPP_NOTE
    recheck_s: float = 0.0

    @property
    def samples(self) -> int:
        return sum(r.checked for r in self.regions)

    @property
    def violations(self) -> int:
        return sum(r.violations for r in self.regions)

    @property
    def overflows(self) -> int:
        """Wrapped assignments in regions the report calls overflow-free (a failure)."""
        return sum(r.overflows for r in self.regions if r.overflow_free)

    @property
    def passed(self) -> bool:
        """No violating input, no overflow, a report consistent with program.json, C++ (if any) exact."""
        return (
            self.violations == 0
            and not self.report_problems
            and not self.overflows
            and self.bit_exact_cpp is not False
        )

    def summary_line(self) -> str:
        ratios = [r.max_drop_ratio for r in self.regions if math.isfinite(r.max_drop_ratio)]
        agree = [r.agree / r.checked for r in self.regions if r.checked]
        box = all(r.label is None for r in self.regions)  # --task regress: the whole input box
        what = "logit error" if box else "margin drop"
        text = (
            f"verify {'OK' if self.passed else 'FAILED'}: "
            + ("the input box" if box else f"{len(self.regions)} regions")
            + f", {self.samples} inputs ("
            + ("random, corners and local search" if box else "random, corners, gradient and local search")
            + ")"
            + (f", largest {what} / certified bound {max(ratios):.3g}" if ratios else "")
            + f", violating inputs {self.violations}"
            + (f", {'argmax' if box else 'label'} agreement >= {min(agree):.3f}" if agree else "")
            + (f", overflows {self.overflows}" if self.overflows else "")
            + f", C++ bit-exact {self.bit_exact_cpp}"
            + (" (C++ not checked)" if self.bit_exact_cpp is None else "")
        )
        return text + "".join(f"; REPORT INCONSISTENT: {p}" for p in self.report_problems[:3])

    def to_json(self) -> dict[str, Any]:
        return {
            "task": "regress" if all(r.label is None for r in self.regions) else "classify",
            "passed": self.passed,
            "samples": self.samples,
            "violations": self.violations,
            "regions": [r.to_json() for r in self.regions],
            "label_agreement_definition": "fraction of checked inputs whose program argmax equals the real "
            "network's argmax (float64)",
            "overflows": self.overflows,
            "report_problems": self.report_problems,
            "recheck_s": self.recheck_s,
            "bit_exact_cpp": self.bit_exact_cpp,
            "cpp_samples": self.cpp_samples,
            "cpp_note": self.cpp_note,
            "real_network": "float64 evaluation of the IR (aster_ext.ops.evaluate)",
            "time_s": self.time_s,
            "seed": self.seed,
        }


# --------------------------------------------------------------------------------------------
# Reading the claims
# --------------------------------------------------------------------------------------------


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def read_claims(report: dict[str, Any], n_cls: int, where: str) -> list[RegionClaim]:
    """The ``regions`` of report.json as typed claims; UserError on a malformed entry."""
    regs = report.get("regions")
    if not isinstance(regs, list) or not regs:
        raise UserError(f"{where}: 'regions' must be a non-empty list")
    out = []
    for i, e in enumerate(regs):
        at = f"{where}: regions[{i}]"
        if not isinstance(e, dict):
            raise UserError(f"{at} must be an object")
        for key in ("margin_lower_bounds", "margin_error_bounds", "logit_error_lo", "logit_error_hi"):
            v = e.get(key)
            if not isinstance(v, list) or len(v) != n_cls or not all(x is None or _num(x) for x in v):
                raise UserError(f"{at}: '{key}' must be a list of {n_cls} numbers or nulls")
        label = e.get("label")
        if label is None and report.get("task") == "regress":
            pass  # the whole input box: no label (classify.py, *Whole box*)
        elif not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n_cls:
            raise UserError(f"{at}: 'label' must be a class index")
        if not isinstance(e.get("certified"), bool):
            raise UserError(f"{at}: 'certified' must be true or false")
        mlb = np.array([-np.inf if x is None else float(x) for x in e["margin_lower_bounds"]])
        meb = np.array([np.inf if x is None else float(x) for x in e["margin_error_bounds"]])
        if label is not None:
            mlb[label], meb[label] = -np.inf, np.inf
        lo = np.array([-np.inf if x is None else float(x) for x in e["logit_error_lo"]])
        hi = np.array([np.inf if x is None else float(x) for x in e["logit_error_hi"]])
        out.append(
            RegionClaim(
                str(e.get("name", f"region_{i}")),
                label,
                e["certified"],
                bool(e.get("overflow_free", True)),
                mlb,
                meb,
                lo,
                hi,
            )
        )
    return out


def claim_problems(report: dict[str, Any], claims: list[RegionClaim]) -> list[str]:
    """Claims of report.json that do not add up among themselves."""
    problems = []
    target = report.get("target_error")
    for c, e in zip(claims, report["regions"], strict=True):
        if c.label is None:
            bound = max_magnitude(c.logit_lo, c.logit_hi)
            if c.certified and not (c.overflow_free and _num(target) and bound <= target):
                problems.append(
                    f"region {c.name} is marked certified but its logit error bound {bound:.6g} is not "
                    f"within the target {target} (or it may overflow)"
                )
            continue
        ks = [k for k in range(c.margin_lower_bounds.size) if k != c.label]
        slack = c.margin_lower_bounds[ks] - c.margin_error_bounds[ks]
        if c.certified and not (np.all(slack > 0) and c.overflow_free):
            problems.append(f"region {c.name} is marked certified but its own bounds do not certify it")
        elif c.certified and not np.all(c.margin_lower_bounds[ks] > 0):
            problems.append(f"region {c.name} is marked certified but its real margin is not proved positive")
        wk = e.get("worst_class")
        if c.certified and isinstance(wk, int) and wk in ks:
            if e.get("margin_error_bound") != c.margin_error_bounds[wk] or (
                e.get("margin_lower_bound") != c.margin_lower_bounds[wk]
            ):
                problems.append(
                    f"region {c.name}: margin bounds at class {wk} differ from its per-class lists"
                )
    n_cert = sum(c.certified for c in claims)
    if report.get("certified_regions") != n_cert or report.get("certified_fraction") != n_cert / len(claims):
        problems.append(
            f"certified_regions/certified_fraction do not match the {n_cert} regions marked certified"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Re-derivation
# --------------------------------------------------------------------------------------------


def rebuilt_program_differences(prog: GraphProgram) -> list[str]:
    """Nodes where ``prog`` differs from the program its own fractional and integer bits define
    (weights re-quantised from the network): a hand-edited program.json."""
    net = prog.net
    fc = fracs_of_program(prog)
    out_ib, acc_ib = {}, {}
    for op in net.ops():
        if not is_rounding_node(op):
            continue
        nd = prog.nodes[op.name]
        out_ib[op.name] = nd.out_t.int_bits.reshape(n_channels(op), -1)[:, 0]
        if nd.acc_t is not None:
            acc_ib[op.name] = nd.acc_t.int_bits
    if np.unique(prog.input_t.int_bits).size != 1 or np.unique(prog.input_t.frac).size != 1:
        return ["input: not one format for every input"]
    impls = {n: nd.act_impl for n, nd in prog.nodes.items() if nd.act_impl is not None}
    ref = build_program(net, fc, out_ib, int(prog.input_t.int_bits[0]), acc_ib, prog.quant, act_impls=impls)
    diffs = []
    if not _same_fmt(ref.input_t, prog.input_t):
        diffs.append("input")
    for name, nd in prog.nodes.items():
        r = ref.nodes[name]
        same = _same_fmt(r.out_t, nd.out_t) and r.x_frac == nd.x_frac and r.const_frac == nd.const_frac
        for a, b in ((r.acc_t, nd.acc_t),):
            same = same and (
                (a is None and b is None) or (a is not None and b is not None and _same_fmt(a, b))
            )
        for a, b in (
            (r.weight_raw, nd.weight_raw),
            (r.bias_raw, nd.bias_raw),
            (r.weight_width, nd.weight_width),
            (r.weight_frac, nd.weight_frac),
            (r.const_raw, nd.const_raw),
        ):
            same = same and (
                (a is None and b is None) or (a is not None and b is not None and _same_raw(a, b))
            )
        if not same:
            diffs.append(name)
    return diffs


def _same_fmt(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a.width, b.width) and np.array_equal(a.int_bits, b.int_bits))


def _same_raw(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    return a.shape == b.shape and bool(np.all(a == b))


def recheck_claims(
    net: Network,
    prog: GraphProgram,
    regions: list[Region],
    claims: list[RegionClaim],
    target: float | None = None,
) -> list[str]:
    """Re-derive every region's bounds from program.json and the model; the claims that are
    stronger than the derivation supports (module docstring, 1)."""
    problems = []
    diffs = rebuilt_program_differences(prog)
    if diffs:
        problems.append(
            "program.json is not the program its own formats define at " + ", ".join(diffs[:3])
            + " (edited after quantize?)"
        )  # fmt: skip
        return problems
    fc = fracs_of_program(prog)
    for r in regions:
        prepare(net, r)
    deltas = deltas_for(net, regions)
    deltas.acts.seed(prog)  # the program's own activation implementations are what it runs
    for r, c in zip(regions, claims, strict=True):
        a = analyze_errors(net, r.ranges, fc, prog.quant, r.label, deltas, logits=True)
        v = verdict(net, r, a, prog)
        bad = []
        if r.label is not None:
            assert r.margin_lb is not None and a.margin_err is not None
            ks = [k for k in range(r.margin_lb.size) if k != r.label]
            meb = -a.margin_err.lo
            claimed_lb, claimed_eb = c.margin_lower_bounds, c.margin_error_bounds
            bad = [k for k in ks if claimed_eb[k] < meb[k] or claimed_lb[k] > r.margin_lb[k]]
        if bad:
            k = bad[0]
            problems.append(
                f"region {c.name}, class {k}: report claims margin >= {c.margin_lower_bounds[k]:.6g} with "
                f"error <= {c.margin_error_bounds[k]:.6g}; program.json gives {r.margin_lb[k]:.6g} and "
                f"{meb[k]:.6g}"
            )
        e = logit_interval(net, a)  # forward ∩ backward, as quantize reports it under --error
        if np.any(c.logit_lo > e.lo.reshape(-1)) or np.any(c.logit_hi < e.hi.reshape(-1)):
            problems.append(f"region {c.name}: logit error intervals narrower than program.json gives")
        if r.label is None and c.certified:
            bound = max_magnitude(e.lo, e.hi)
            if target is None or not bound <= target:
                problems.append(
                    f"region {c.name} is marked certified; program.json's logit error bound {bound:.6g} "
                    f"is not within the target {target}"
                )
        if c.certified and not v.certified:
            problems.append(
                f"region {c.name} is marked certified; program.json does not certify it ({v.reason})"
            )
        if c.overflow_free and v.reason.startswith("overflow"):
            problems.append(f"region {c.name}: {v.reason} (report says overflow-free)")
    return problems


# --------------------------------------------------------------------------------------------
# Execution checks
# --------------------------------------------------------------------------------------------


def real_logits(net: Network, xs: np.ndarray) -> np.ndarray:
    from .ops import evaluate, logits_node

    node = logits_node(net)
    return evaluate(net, xs, upto=node)[node].reshape(xs.shape[0], -1)


FLOAT_NOISE = 2.0**-30


def float_noise(real: np.ndarray) -> np.ndarray:
    """[B, 1] allowance for the float64 evaluation of the real network: FLOAT_NOISE·(1 + max_j
    |y_j|), far above float64 rounding of these small networks (~1e-15 relative) and far below
    any meaningful error; the exact cross-check in the tests covers what this allowance hides."""
    return FLOAT_NOISE * (1.0 + np.abs(real).max(axis=1, keepdims=True))


def check_points(
    net: Network, logits_of: LogitsFn, claim: RegionClaim, rc: RegionCheck, xs: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate ``xs`` (points of the region), update ``rc``; returns (program margins [B, n_cls]
    with +inf at the label, drop/bound ratio per point). A claim without a label: (None, the
    largest logit error / its bound per point), the logit-error conditions only."""
    real = real_logits(net, xs)
    before = getattr(logits_of, "overflows", 0)
    prog = np.asarray(logits_of(xs), dtype=np.float64).reshape(real.shape)
    rc.overflows += getattr(logits_of, "overflows", 0) - before
    if claim.label is None:
        return None, _check_logits_only(claim, rc, xs, real, prog, kind)
    lab = claim.label
    real_m = real[:, [lab]] - real
    prog_m = prog[:, [lab]] - prog
    drop = real_m - prog_m
    real_m[:, lab] = np.inf
    prog_m[:, lab] = np.inf
    drop[:, lab] = -np.inf
    err = prog - real
    tol = float_noise(real)
    bad: dict[str, np.ndarray] = {}
    if claim.overflow_free:
        bad["margin_error"] = np.any(drop > claim.margin_error_bounds[None, :] + tol, axis=1)
        bad["logit_error"] = _logit_violations(claim, err, tol)
    bad["real_margin"] = np.any(real_m < claim.margin_lower_bounds[None, :] - tol, axis=1)
    if claim.certified:
        bad["label"] = np.any(prog_m <= 0, axis=1)
    _count_violations(rc, xs, bad)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_k = np.where(
            claim.margin_error_bounds[None, :] > 0, drop / claim.margin_error_bounds[None, :], -np.inf
        )
    ratio_k = np.where(np.isinf(claim.margin_error_bounds[None, :]), -np.inf, ratio_k)
    ratio = ratio_k.max(axis=1)
    _tally(rc, xs, real, prog, err, ratio, kind)
    rc.kept += int(np.sum(prog.argmax(axis=1) == lab))
    rc.max_drop = max(rc.max_drop, float(drop.max()))
    rc.min_program_margin = min(rc.min_program_margin, float(prog_m.min()))
    rc.min_real_margin = min(rc.min_real_margin, float(real_m.min()))
    return prog_m, ratio


def _logit_violations(claim: RegionClaim, err: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """[B] inputs whose logit error y~_j - y_j leaves the claimed [lo_j - τ, hi_j + τ] for some j."""
    return np.any((err < claim.logit_lo[None, :] - tol) | (err > claim.logit_hi[None, :] + tol), axis=1)


def _count_violations(rc: RegionCheck, xs: np.ndarray, bad: dict[str, np.ndarray]) -> None:
    """Add the violating inputs of ``bad`` (kind -> [B] flags) to ``rc`` (first three kept)."""
    any_bad = np.zeros(xs.shape[0], dtype=bool)
    for key, b in bad.items():
        if b.any():
            rc.kinds[key] = rc.kinds.get(key, 0) + int(b.sum())
            any_bad |= b
    rc.violations += int(any_bad.sum())
    for i in np.flatnonzero(any_bad)[: max(0, 3 - len(rc.violation_inputs))]:
        rc.violation_inputs.append([float(v) for v in xs[i]])


def _check_logits_only(
    claim: RegionClaim, rc: RegionCheck, xs: np.ndarray, real: np.ndarray, prog: np.ndarray, kind: str
) -> np.ndarray:
    """:func:`check_points` for a claim without a label: violation iff some logit error leaves
    its claimed interval (overflow-free claims). Returns per point the largest ratio of a logit
    error to the bound on its side: max_j max(err_j / hi_j, err_j / lo_j) over the sides whose
    bound is not zero (> 1 would be a violation)."""
    err = prog - real
    bad = {"logit_error": _logit_violations(claim, err, float_noise(real))} if claim.overflow_free else {}
    _count_violations(rc, xs, bad)
    with np.errstate(divide="ignore", invalid="ignore"):
        up_ratio = np.where(claim.logit_hi[None, :] > 0, err / claim.logit_hi[None, :], -np.inf)
        down_ratio = np.where(claim.logit_lo[None, :] < 0, err / claim.logit_lo[None, :], -np.inf)
    ratio = np.maximum(up_ratio, down_ratio).max(axis=1)
    _tally(rc, xs, real, prog, err, ratio, kind)
    return ratio


def _tally(
    rc: RegionCheck,
    xs: np.ndarray,
    real: np.ndarray,
    prog: np.ndarray,
    err: np.ndarray,
    ratio: np.ndarray,
    kind: str,
) -> None:
    """What every checked batch adds to ``rc``: the counts (all, and per ``kind``), argmax
    agreement, the worst ratio to its bound and its input, the largest |logit error| (``err`` =
    prog - real)."""
    rc.checked += xs.shape[0]
    setattr(rc, kind, getattr(rc, kind) + xs.shape[0])
    rc.agree += int(np.sum(prog.argmax(axis=1) == real.argmax(axis=1)))
    if ratio.size and float(ratio.max()) > rc.max_drop_ratio:
        rc.max_drop_ratio = float(ratio.max())
        rc.worst_input = xs[int(np.argmax(ratio))].copy()
    rc.max_logit_error = max(rc.max_logit_error, float(np.abs(err).max()))


def sample_points(lower: np.ndarray, upper: np.ndarray, n: int, rng: np.random.Generator):
    """(random points, random corners + the centre): about n//2 each."""
    half = max(1, n // 2)
    rand = lower + rng.random((half, lower.size)) * (upper - lower)
    corners = np.where(rng.random((max(0, n - half - 1), lower.size)) < 0.5, lower, upper)
    return rand, np.concatenate([((lower + upper) / 2)[None], corners])


def pgd_search(
    net: Network,
    logits_of: LogitsFn,
    claim: RegionClaim,
    rc: RegionCheck,
    region: Region,
    iters: int,
    rng: np.random.Generator,
) -> None:
    """Signed-gradient steps on the real margin y_l - y_k* with k* the program's weakest class."""
    from .ops.attack import margin_gradients

    lo, hi = region.lower, region.upper
    width = hi - lo
    starts = [(lo + hi) / 2, lo + rng.random(lo.size) * width]
    if rc.worst_input is not None:
        starts.append(rc.worst_input)
    x = np.stack(starts[:PGD_STARTS])
    ks = np.array([k for k in range(claim.margin_lower_bounds.size) if k != claim.label])
    maps: dict = {}
    prog_m, _ = check_points(net, logits_of, claim, rc, x, "search")
    for t in range(iters):
        step = width * (0.5 * (1.0 - t / iters) + 1.0 / 64)
        rows = []
        for s in range(x.shape[0]):
            k = int(np.argmin(prog_m[s, ks]))
            g = margin_gradients(net, x[s], claim.label, maps)[k]
            rows.append(np.clip(x[s] - step * np.sign(g), lo, hi))
        x = np.stack(rows)
        prog_m, _ = check_points(net, logits_of, claim, rc, x, "search")


def local_search(
    net: Network,
    logits_of: LogitsFn,
    claim: RegionClaim,
    rc: RegionCheck,
    region: Region,
    pool: np.ndarray,
    pool_ratio: np.ndarray,
    rounds: int,
    rng: np.random.Generator,
    per_round: int = 32,
) -> None:
    """Perturb the points of largest drop/bound ratio (5% of coordinates to a bound or resampled)."""
    lo, hi = region.lower, region.upper
    for _ in range(rounds):
        top = pool[np.argsort(-pool_ratio)[:4]]
        base = top[rng.integers(0, top.shape[0], per_round)]
        mask = rng.random(base.shape) < 0.05
        fresh = np.where(rng.random(base.shape) < 0.5, np.where(rng.random(base.shape) < 0.5, lo, hi),
                         lo + rng.random(base.shape) * (hi - lo))  # fmt: skip
        cand = np.where(mask, fresh, base)
        _, ratio = check_points(net, logits_of, claim, rc, cand, "search")
        pool = np.concatenate([pool, cand])
        pool_ratio = np.concatenate([pool_ratio, ratio])


def verify_regions(
    net: Network,
    regions: list[Region],
    claims: list[RegionClaim],
    logits_of: LogitsFn,
    samples: int,
    search_iters: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
    reference_logits_of: LogitsFn | None = None,
) -> list[RegionCheck]:
    """Execution checks of every region (module docstring, 2). With ``reference_logits_of``
    (the simulator, when ``logits_of`` is compiled code), the random and corner inputs of each
    region (at least BIT_EXACT_MIN of them) are also run through it and compared bit for bit."""
    from .progress import phase

    out = []
    with phase(
        progress, f"verify: {len(regions)} regions (samples, corners, gradient search)", total=len(regions)
    ) as ph:
        for i, (r, c) in enumerate(zip(regions, claims, strict=True)):
            rng = np.random.default_rng([seed, i])
            rc = RegionCheck(c.name, c.label, c.certified, overflow_free=c.overflow_free)
            rand, corners = sample_points(r.lower, r.upper, samples, rng)
            _, ra = check_points(net, logits_of, c, rc, rand, "random")
            _, rb = check_points(net, logits_of, c, rc, corners, "corners")
            if reference_logits_of is not None:
                xs = np.concatenate([rand, corners])
                if xs.shape[0] < BIT_EXACT_MIN:
                    extra = sample_points(r.lower, r.upper, BIT_EXACT_MIN - xs.shape[0], rng)
                    xs = np.concatenate([xs, *extra])
                same = np.array_equal(np.asarray(logits_of(xs)), np.asarray(reference_logits_of(xs)))
                rc.bit_exact, rc.bit_exact_samples = same, xs.shape[0]
            if search_iters > 0:
                if c.label is not None:
                    pgd_search(net, logits_of, c, rc, r, search_iters, rng)
                # without a label there is no margin to follow: the local search gets the PGD's rounds
                rounds = max(1, search_iters // 4) if c.label is not None else search_iters
                pool, ratio = np.concatenate([rand, corners]), np.concatenate([ra, rb])
                local_search(net, logits_of, c, rc, r, pool, ratio, rounds, rng)
            out.append(rc)
            ph.advance(1, f"{c.name}: {rc.checked} inputs, {rc.violations} violations")
    return out


# --------------------------------------------------------------------------------------------
# The directory
# --------------------------------------------------------------------------------------------


def load_regions(out_dir: Path, claims: list[RegionClaim], n_in: int) -> list[Region]:
    path = Path(out_dir) / REGIONS_FILE
    if not path.is_file():
        raise UserError(f"{out_dir}: no {REGIONS_FILE} (the region boxes quantize wrote)")
    try:
        with np.load(path, allow_pickle=False) as d:
            lower, upper, label = (np.asarray(d[k]) for k in ("lower", "upper", "label"))
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a readable regions file ({exc})") from None
    n = len(claims)
    if lower.shape != (n, n_in) or upper.shape != (n, n_in) or label.shape != (n,):
        raise UserError(f"{path}: boxes do not match the {n} regions of report.json ({n_in} inputs each)")
    if [int(v) for v in label] != [NO_LABEL if c.label is None else c.label for c in claims]:
        raise UserError(f"{path}: labels differ from report.json's regions")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))) or np.any(lower > upper):
        raise UserError(f"{path}: boxes must be finite with lower <= upper")
    return [
        Region(c.name, lower[i].astype(np.float64), upper[i].astype(np.float64), c.label)
        for i, c in enumerate(claims)
    ]


def verify_classify_directory(
    out_dir: Path,
    report: dict[str, Any],
    samples: int | None = None,
    search_iters: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    logits_of: LogitsFn | None = None,
    compiled_logits_of: LogitsFn | None = None,
    check_cpp: bool = True,
) -> ClassifyVerifyResult:
    """Verify a classify output folder and write DIR/verify.json (module docstring).

    ``logits_of`` replaces the evaluator under test (default: the bit-exact simulator).
    ``compiled_logits_of`` (e.g. the compiled C++ of the program) becomes the evaluator under
    test and is compared bit for bit with the simulator on >= BIT_EXACT_MIN inputs per region:
    ``bit_exact_cpp`` is then true/false instead of null."""
    from .frontend import load_model
    from .graph_program.io import load_graph_program
    from .outdir import check_output_file, record_output_file
    from .progress import phase

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    samples = DEFAULT_SAMPLES if samples is None else samples
    search_iters = DEFAULT_SEARCH_ITERS if search_iters is None else search_iters
    check_output_file(out_dir, "verify.json")
    where = f"{out_dir}/report.json"
    model_path = Path(str(report.get("model_path", "")))
    if not model_path.is_file():
        raise UserError(f"{out_dir}: the model {model_path} named in report.json is gone")
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != report.get("model_sha256"):
        raise UserError(f"{out_dir}: {model_path} changed since it was quantised (sha256 differs)")
    net, _ = load_model(model_path)
    from .classify import n_classes

    claims = read_claims(report, n_classes(net), where)
    prog = load_graph_program(out_dir / "program.json", net)
    regions = load_regions(out_dir, claims, net.n_inputs)
    problems = claim_problems(report, claims)
    t = time.perf_counter()
    with phase(progress, "verify: re-derive the certificate from program.json and the model"):
        target = report.get("target_error")
        problems += recheck_claims(
            net, prog, [Region(r.name, r.lower, r.upper, r.label) for r in regions], claims,
            float(target) if _num(target) else None,
        )  # fmt: skip
    recheck_s = time.perf_counter() - t
    sim = SimulatorLogits(prog)
    evaluator = logits_of if logits_of is not None else sim
    reference = None
    compiled = None
    cpp = report.get("cpp") if isinstance(report.get("cpp"), dict) else None
    note = CPP_NOTE
    if compiled_logits_of is None and logits_of is None and check_cpp and cpp is not None:
        from .codegen.graph_hls import CompiledGraphLogits

        name = str(cpp.get("name", ""))
        missing = [f for f in (f"{name}.cpp", f"{name}_tb.cpp", f"{name}.h") if not (out_dir / f).is_file()]
        if missing:
            raise UserError(f"{out_dir}: the C++ report.json names is missing ({', '.join(missing)})")
        with phase(progress, f"verify: compiling {name}.cpp with g++ -O1 (ap_types)"):
            compiled = CompiledGraphLogits(prog, out_dir, name)
        compiled_logits_of = compiled
    elif cpp is None:
        note = "no C++ in this output folder: the bit-exact simulator was checked"
    elif not check_cpp:
        note = "--no-cpp: the C++ was not compiled; the bit-exact simulator was checked"
    if compiled_logits_of is not None:
        evaluator, reference = compiled_logits_of, sim
    try:
        checks = verify_regions(
            net, regions, claims, evaluator, samples, search_iters, seed, progress, reference
        )
    finally:
        if compiled is not None:
            compiled.close()
    res = ClassifyVerifyResult(checks, problems, time.perf_counter() - t0, seed, recheck_s=recheck_s,
                               cpp_note=note)  # fmt: skip
    if reference is not None:
        res.bit_exact_cpp = all(c.bit_exact for c in checks)
        res.cpp_samples = sum(c.bit_exact_samples for c in checks)
        res.cpp_note = "the compiled C++ (or the evaluator passed in) compared bit for bit with the simulator"
    record_output_file(out_dir, "verify.json", json.dumps(res.to_json(), indent=1))
    return res
