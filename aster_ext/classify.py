"""``aster-ext quantize --task classify``: certified top-1 preservation of a classifier per region.

A *region* is an input box B and a label l. The fixed-point graph program P (graph_program/) is
certified on B iff P cannot overflow on B and, for every class k != l,

    m_k + e_k > 0,    m_k <= min_{x in B} (y_l(x) - y_k(x))   (real network, float-sound
                                                              symbolic back-substitution)
                      e_k <= min_{x in B} [(y~_l - y~_k)(x) - (y_l - y_k)(x)]   (error forms of
                                                              the margin difference itself)

so y~_l(x) > y~_k(x) on all of B: the program's top-1 is l everywhere in the box. Regions come
from the spec's ``regions`` list (``lower``/``upper``/``label``) or from a data file (``.npz``
with images ``x`` and labels ``y``) and a radius R: B = [x - R, x + R] ∩ the spec's input box,
R in input units. ``certify_cnn`` (graph_program/certify.py) picks the formats: per-layer
fractional bits, per-channel integer bits from range ⊕ error over all regions.

With ``--error EPS`` the program must also keep every logit within EPS of the real one on every
region: all fractional bits of the margin-driven greedy choice are raised together by the
smallest d that gets the per-logit error bound <= EPS (or, with no provable region, the smallest
uniform F), and the ILP starts from there with the logits' error rows beside the margins'
(``certify_cnn(logit_eps=...)``).

*Whole box* (``ClassifyOptions.whole_box``; ``quantize --task regress`` on a network the dense
chain cannot hold: convolutions, pooling, residual adds): one region, the spec's input box,
without a label. Only the ε target is certified there: every logit within EPS of the real one
for every input of the box, and no overflow; the search is the same (uniform F raised to the
target, then the ILP with the logits' error rows, then the sound descent).

Outputs (through :class:`~.outdir.OutputPlan`): ``program.json`` (graph program,
graph_program/io.py), ``regions.npz`` (the boxes: ``lower``, ``upper`` [R, n_in], ``label``
[R], -1 for a box without a label), ``report.json`` (with ``regions``), ``report.md``, and the
HLS C++ of the program.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .activations.summary import impl_summary
from .errors import InfeasibleError, UserError
from .graph_program.certify import (
    CertifyReport,
    Region,
    RegionVerdict,
    certify_cnn,
    logit_error_bound,
    program_cost,
)
from .graph_program.errors import ErrorAnalysis, logit_interval
from .graph_program.program import LINEAR_KINDS, FracChoice, GraphProgram, is_rounding_node
from .ir import Network
from .spec import Spec

TASKS = ("classify", "regress")
QUANT = "TRN"
MAX_FRAC = 32
REGIONS_FILE = "regions.npz"
NO_LABEL = -1  # regions.npz's label of a box without one
WHOLE_BOX = "input box"  # the name of the whole-box region
CPP_NOTE = (
    "HLS C++ of the program (codegen/graph_hls.py): void NAME(const in_t x[N_IN], out_t y[N_OUT]), "
    "x = the ONNX input flattened in C order, y = the logits; verify compiles it and compares it bit "
    "for bit with the simulator"
)


@dataclass
class ClassifyOptions:
    """What ``quantize --task classify`` reads besides the model."""

    spec_path: Path | None = None
    input_lower: list[float] | None = None
    input_upper: list[float] | None = None
    regions_data: Path | None = None
    radius: float | None = None
    error: float | None = None  # optional ε on the logits over every region
    reuse_factor: int = 1  # HLS pragmas of the emitted C++ (codegen/graph_hls.py)
    granularity: str = "channel"  # ILP knobs: per output channel / dense neuron, or one per layer
    time_limit: float = 60.0  # HiGHS time limit per ILP solve
    ilp_rounds: int = 12  # ILP solves (each re-certified) at most, per linear margin model
    descent_checks: int | None = None  # sound checks of the descent after the ILP (None: descent_budget)
    whole_box: bool = False  # one unlabelled region, the spec's input box (--task regress on a graph)


@dataclass
class ClassifyResult:
    network: Network
    spec: Spec
    regions: list[Region]
    program: GraphProgram
    verdicts: list[RegionVerdict]
    report: dict[str, Any]
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Which task
# --------------------------------------------------------------------------------------------


def spec_says_classification(spec: Spec | None) -> bool:
    """The spec declares a classifier and lists regions to certify."""
    return spec is not None and spec.extra.get("task") == "classification" and bool(spec.extra.get("regions"))


def decide_task(
    task: str | None,
    model_path: Path,
    spec_path: Path | None,
    explicit_bounds: bool,
    regions_data: Path | None,
) -> str:
    """``--task`` if given; else classify when a data file of regions is given or when the spec in
    use (``--spec``, or NAME.spec.json beside an .onnx model) says ``"task": "classification"``
    and lists ``regions``; else regress (the dense ε path)."""
    if task is not None:
        if task not in TASKS:
            raise UserError(f"unknown task '{task}' (choose from {', '.join(TASKS)})")
        return task
    if regions_data is not None:
        return "classify"
    if explicit_bounds:
        return "regress"
    from .frontend import spec_path_for
    from .spec import load_spec

    path = spec_path
    if path is None and Path(model_path).suffix.lower() == ".onnx" and spec_path_for(model_path).is_file():
        path = spec_path_for(model_path)
    if path is None:
        return "regress"
    return "classify" if spec_says_classification(load_spec(path)) else "regress"


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------


def n_classes(net: Network) -> int:
    from .ops import logits_node

    return int(np.prod(net.op(logits_node(net)).shape))


def _check_label(label: Any, n_cls: int, where: str) -> int:
    if (
        isinstance(label, bool)
        or not isinstance(label, int | np.integer | float)
        or float(label) != int(label)
    ):
        raise UserError(f"{where}: label {label!r} is not a whole number")
    if not 0 <= int(label) < n_cls:
        raise UserError(f"{where}: label {int(label)} outside the network's classes 0..{n_cls - 1}")
    return int(label)


def _check_box(lo: np.ndarray, hi: np.ndarray, n_in: int, where: str) -> None:
    if lo.shape != (n_in,) or hi.shape != (n_in,):
        raise UserError(f"{where}: box has {lo.size}/{hi.size} bounds, the network has {n_in} inputs")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise UserError(f"{where}: box bounds must be finite")
    if np.any(lo > hi):
        raise UserError(f"{where}: lower bound above upper bound at input {int(np.argmax(lo > hi))}")


def regions_from_spec(spec: Spec, net: Network) -> list[Region]:
    """The spec's ``regions``: each ``{"lower": [...], "upper": [...], "label": l}`` (bounds
    flattened like the spec's input box); named by ``name``, else its vnnlib file, else its index."""
    from .spec import _float_vector

    raw = spec.extra.get("regions")
    if not isinstance(raw, list) or not raw:
        raise UserError(
            f"spec '{spec.name}': no 'regions' list to certify (give --regions-data FILE.npz --radius R)"
        )
    n_in, n_cls = net.n_inputs, n_classes(net)
    regions = []
    for i, r in enumerate(raw):
        where = f"spec '{spec.name}' region {i}"
        if not isinstance(r, dict) or not {"lower", "upper", "label"} <= set(r):
            raise UserError(f"{where}: needs 'lower', 'upper' and 'label'")
        lo = _float_vector(r["lower"], spec.name, f"region {i} lower")
        hi = _float_vector(r["upper"], spec.name, f"region {i} upper")
        _check_box(lo, hi, n_in, where)
        name = r.get("name") or (Path(str(r["vnnlib"])).name if r.get("vnnlib") else f"region_{i}")
        regions.append(Region(str(name), lo, hi, _check_label(r["label"], n_cls, where)))
    return regions


def regions_from_data(path: Path, radius: float, spec: Spec, net: Network) -> list[Region]:
    """One region per image of ``path`` (.npz: ``x`` [N, *input shape] or [N, n_in], ``y`` [N]):
    box [x - R, x + R] clipped to the spec's input box (R in input units)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--regions-data {p}: file not found")
    if radius is None or not math.isfinite(radius) or radius < 0:
        raise UserError("--regions-data needs --radius R (a finite number >= 0, in input units)")
    try:
        with np.load(p, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise UserError(f"--regions-data {p}: needs arrays 'x' (images) and 'y' (labels)")
            x, y = np.asarray(data["x"]), np.asarray(data["y"])
    except (OSError, ValueError) as exc:
        raise UserError(f"--regions-data {p}: not a readable .npz file ({exc})") from None
    n_in, n_cls = net.n_inputs, n_classes(net)
    if x.ndim < 1 or x.shape[0] == 0 or x.size != x.shape[0] * n_in:
        raise UserError(f"--regions-data {p}: x has shape {x.shape}, expected [N, {n_in} values each]")
    if y.shape != (x.shape[0],):
        raise UserError(f"--regions-data {p}: y has shape {y.shape}, expected [{x.shape[0]}]")
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.number):
        raise UserError(f"--regions-data {p}: x and y must be numeric arrays")
    xs = x.reshape(x.shape[0], n_in).astype(np.float64)
    if not np.all(np.isfinite(xs)):
        raise UserError(f"--regions-data {p}: x contains NaN or infinite values")
    lo_box, hi_box = spec.input_lower, spec.input_upper
    regions = []
    for i in range(xs.shape[0]):
        where = f"--regions-data {p.name} image {i}"
        lo = np.maximum(xs[i] - radius, lo_box)
        hi = np.minimum(xs[i] + radius, hi_box)
        if np.any(lo > hi):
            j = int(np.argmax(lo > hi))
            raise UserError(
                f"{where}: input {j} = {xs[i, j]:g} lies farther than --radius from the input box"
            )
        regions.append(Region(f"{p.stem}[{i}]", lo, hi, _check_label(y[i].item(), n_cls, where)))
    return regions


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def whole_box_region(spec: Spec) -> Region:
    """The spec's input box as one region without a label (module docstring, *Whole box*)."""
    lo, hi = np.asarray(spec.input_lower, np.float64), np.asarray(spec.input_upper, np.float64)
    return Region(WHOLE_BOX, lo.copy(), hi.copy(), None)


def no_provable_message(net: Network, regions: list[Region]) -> str:
    """The exit-2 line: every region's margin lower bound (min over k != label)."""
    shown = [f"{r.name}: {float(np.min(np.delete(r.margin_lb, r.label))):.4g}" for r in regions[:20]
             if r.label is not None]  # fmt: skip
    more = f", ... ({len(regions) - 20} more)" if len(regions) > 20 else ""
    return (
        f"{net.name}: no region is provable for the real network (margin lower bounds min_k "
        f"y_label - y_k: {', '.join(shown)}{more}); nothing certified, nothing written "
        "(give smaller regions, or --error EPS for an error target on the logits)"
    )


def fracs_of_program(prog: GraphProgram) -> FracChoice:
    """The fractional bits ``prog`` was built from (inverse of ``build_program`` on fractions)."""
    from .graph_program.program import n_channels

    net = prog.net
    fc = FracChoice(int(prog.input_t.frac.max()), {})
    for op in net.ops():
        if not is_rounding_node(op):
            continue
        nd = prog.nodes[op.name]
        fc.out[op.name] = nd.out_t.frac.reshape(n_channels(op), -1)[:, 0].astype(np.int64)
        if op.kind in LINEAR_KINDS:
            fc.weight[op.name] = np.asarray(nd.weight_frac, dtype=np.int64)
        if op.kind == "avgpool":
            fc.const[op.name] = int(nd.const_frac)
    return fc


def quantize_classify(
    model_path: Path,
    opts: ClassifyOptions,
    out_dir: Path | str | None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
    loaded: tuple[Network, Spec | None] | None = None,
) -> ClassifyResult:
    """Load, build the regions, certify (``certify_cnn``), optionally meet ``--error``, write.
    ``loaded``: ``load_model(model_path)``'s result when the caller already has it."""
    from .frontend import load_model
    from .graph_program.io import graph_program_to_json
    from .outdir import OutputPlan
    from .pipeline import resolve_spec
    from .progress import phase

    t0 = time.perf_counter()
    model_path = Path(model_path)
    if opts.error is not None and (not math.isfinite(opts.error) or opts.error <= 0):
        raise UserError(f"the error target must be a positive number, got {opts.error}")
    if opts.radius is not None and opts.regions_data is None:
        raise UserError("--radius applies to --regions-data FILE.npz; give both")
    if opts.whole_box and (opts.error is None or opts.regions_data is not None):
        raise UserError("the whole input box is certified for an --error target only, without regions")
    plan = None
    if out_dir is not None:
        protected = [model_path] + [Path(p) for p in (opts.spec_path, opts.regions_data) if p is not None]
        plan = OutputPlan.prepare(out_dir, protected, force)
    timings: dict[str, float] = {}
    with phase(progress, "load model and regions"):
        net, model_spec = loaded if loaded is not None else load_model(model_path)
        spec = resolve_spec(net, model_spec, opts)  # type: ignore[arg-type]
        if opts.whole_box:
            regions = [whole_box_region(spec)]
            source = f"spec '{spec.name}' input box (no label: the logit error target only)"
        elif opts.regions_data is not None:
            regions = regions_from_data(opts.regions_data, opts.radius, spec, net)  # type: ignore[arg-type]
            source = f"{Path(opts.regions_data).name} with radius {opts.radius:g} (clipped to the input box)"
        else:
            regions = regions_from_spec(spec, net)
            source = f"spec '{spec.name}' regions"
        from .graph_program.program import _check_supported

        _check_supported(net)
    timings["load_s"] = time.perf_counter() - t0
    if progress:
        progress(
            f"loaded {net.name}: {net.n_inputs} inputs, {n_classes(net)} outputs, "
            + ("the whole input box" if opts.whole_box else f"{len(regions)} regions")
        )
    t = time.perf_counter()
    what = "the input box: real ranges" if opts.whole_box else f"{len(regions)} regions: real margins"
    with phase(progress, f"certify {what}, error forms, format search"):
        rep = certify_cnn(
            net,
            regions,
            QUANT,
            0,
            MAX_FRAC,
            granularity=opts.granularity,
            time_limit=opts.time_limit,
            max_rounds=opts.ilp_rounds,
            logit_eps=opts.error,
            descent_checks=opts.descent_checks,
        )
    timings["certify_s"] = time.perf_counter() - t
    provable = [r.provable for r in regions]
    if not any(provable) and opts.error is None:
        raise InfeasibleError(no_provable_message(net, regions))
    prog, eps_step = rep.search.program, rep.search.target_step
    analyses, verdicts = rep.search.analyses, rep.search.verdicts  # the certificate of prog
    report = build_classify_report(
        net, spec, opts, model_path, source, regions, verdicts, analyses, prog, rep, eps_step, timings
    )
    result = ClassifyResult(net, spec, regions, prog, verdicts, report, None, timings)
    if plan is not None:
        import json

        from .codegen.graph_hls import generate_graph_hls, graph_identifier
        from .report import write_classify_reports

        report["cpp"] = {"name": graph_identifier(net.name), "reuse_factor": opts.reuse_factor}

        def write(tmp: Path) -> None:
            (tmp / "program.json").write_text(json.dumps(graph_program_to_json(prog)))
            files = generate_graph_hls(prog, tmp, net.name, reuse_factor=opts.reuse_factor)
            report["cpp"]["files"] = [p.name for p in files]
            buf = io.BytesIO()
            np.savez(
                buf,
                lower=np.stack([r.lower for r in regions]),
                upper=np.stack([r.upper for r in regions]),
                label=np.array([NO_LABEL if r.label is None else r.label for r in regions], np.int64),
            )
            (tmp / REGIONS_FILE).write_bytes(buf.getvalue())
            timings["total_s"] = time.perf_counter() - t0
            report["timings"] = timings
            write_classify_reports(report, tmp)

        with phase(progress, "write program and reports"):
            plan.commit(write)
        result.out_dir = Path(out_dir)  # type: ignore[arg-type]
    else:
        timings["total_s"] = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------------------------
# report.json
# --------------------------------------------------------------------------------------------


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def region_entry(
    net: Network, r: Region, v: RegionVerdict, a: ErrorAnalysis, target: float | None = None
) -> dict[str, Any]:
    """report.json ``regions[i]``: the verdict at the class of least slack, per-class bounds
    (``null`` at the label), the per-logit error intervals (forward ∩ backward where the analysis
    computed both, :func:`.graph_program.errors.logit_interval`) and whether the bounds hold.
    A region without a label has only the logit intervals: it is certified iff it cannot
    overflow and its logit error bound is <= ``target``."""
    if r.label is None:
        return unlabelled_entry(net, r, v, a, target)
    assert r.margin_lb is not None and a.margin_err is not None
    ks = [k for k in range(r.margin_lb.size) if k != r.label]
    mlb: list[float | None] = [None] * r.margin_lb.size
    meb: list[float | None] = [None] * r.margin_lb.size
    for k in ks:
        mlb[k] = _finite_or_none(float(r.margin_lb[k]))
        meb[k] = _finite_or_none(float(-a.margin_err.lo[k]))
    e = logit_interval(net, a)
    return {
        "name": r.name,
        "label": r.label,
        "margin_lower_bound": _finite_or_none(v.margin_lb),
        "margin_error_bound": _finite_or_none(v.margin_err),
        "certified": v.certified,
        "reason": v.reason or None,
        "provable": r.provable,
        "worst_class": v.worst_k,
        "slack": _finite_or_none(v.slack),
        "margin_min": _finite_or_none(v.margin_min),
        "margin_lower_bounds": mlb,
        "margin_error_bounds": meb,
        "logit_error_lo": [_finite_or_none(float(x)) for x in e.lo.reshape(-1)],
        "logit_error_hi": [_finite_or_none(float(x)) for x in e.hi.reshape(-1)],
        "logit_error_bound": _finite_or_none(logit_error_bound(net, a)),
        "overflow_free": not v.reason.startswith("overflow"),
    }


def unlabelled_entry(
    net: Network, r: Region, v: RegionVerdict, a: ErrorAnalysis, target: float | None
) -> dict[str, Any]:
    """report.json ``regions[i]`` of a box without a label (:func:`region_entry`)."""
    e = logit_interval(net, a)
    bound = logit_error_bound(net, a)
    within = target is not None and bound <= target
    n = e.lo.size
    reason = v.reason or ("" if within else "precision")
    return {
        "name": r.name,
        "label": None,
        "margin_lower_bound": None,
        "margin_error_bound": None,
        "certified": v.certified and within,
        "reason": reason or None,
        "provable": False,
        "worst_class": None,
        "slack": None,
        "margin_min": None,
        "margin_lower_bounds": [None] * n,
        "margin_error_bounds": [None] * n,
        "logit_error_lo": [_finite_or_none(float(x)) for x in e.lo.reshape(-1)],
        "logit_error_hi": [_finite_or_none(float(x)) for x in e.hi.reshape(-1)],
        "logit_error_bound": _finite_or_none(bound),
        "overflow_free": not v.reason.startswith("overflow"),
    }


def formats_summary(prog: GraphProgram) -> list[dict[str, Any]]:
    """Per rounding node: fractional bits and width range of outputs, weights, accumulators."""
    out = [{"node": "input", "kind": "input", **_fa_summary(prog.input_t)}]
    for op in prog.net.ops():
        if not is_rounding_node(op):
            continue
        nd = prog.nodes[op.name]
        d: dict[str, Any] = {"node": op.name, "kind": op.kind, **_fa_summary(nd.out_t)}
        if op.kind in LINEAR_KINDS:
            d["weight_frac"] = _range(nd.weight_frac)
            d["weight_width"] = _range(nd.weight_width)
        if nd.acc_t is not None:
            d["acc_width"] = _range(nd.acc_t.width)
        if op.kind == "avgpool":
            d["const_frac"] = int(nd.const_frac)
        if nd.act_impl is not None:
            d["impl"] = impl_summary(nd.act_impl)
        out.append(d)
    return out


def _range(a: np.ndarray) -> list[int]:
    a = np.asarray(a, dtype=np.int64)
    return [int(a.min()), int(a.max())]


def _fa_summary(fa: Any) -> dict[str, Any]:
    return {"frac": _range(fa.frac), "width": _range(fa.width), "int_bits": _range(fa.int_bits)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_classify_report(
    net: Network,
    spec: Spec,
    opts: ClassifyOptions,
    model_path: Path,
    source: str,
    regions: list[Region],
    verdicts: list[RegionVerdict],
    analyses: list[ErrorAnalysis],
    prog: GraphProgram,
    rep: CertifyReport,
    eps_step: int | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The machine-readable classify report (report.json)."""
    entries = [
        region_entry(net, r, v, a, opts.error) for r, v, a in zip(regions, verdicts, analyses, strict=True)
    ]
    n_cert = sum(e["certified"] for e in entries)
    n_prov = sum(e["provable"] for e in entries)
    res = rep.search
    notes = [CPP_NOTE]
    if opts.error is not None:
        start = (
            f"the margin-driven greedy choice raised by {eps_step} bits"
            if res.global_frac is not None
            else f"uniform F = {eps_step} ({'no label' if opts.whole_box else 'no provable region'})"
        )
        notes.append(
            f"--error {opts.error:g}: every logit within the target on every region; the search started "
            f"from {start}"
            + (", then the ILP with the logit-error rows in its model" if res.method == "ilp" else "")
        )
    condition = (
        "for every input in the box: every logit of the program within the target error of the real "
        "network's (error bound <= target, no overflow)"
        if opts.whole_box
        else "per certified region: for every input in its box the program's argmax is the label "
        "(margin lower bound of the real network > certified error bound of the margin, no overflow)"
    )
    return {
        "tool": "aster_ext",
        "task": "regress" if opts.whole_box else "classify",
        "analysis": "graph",
        "network": net.name,
        "model_path": str(Path(model_path).resolve()),
        "model_sha256": _sha256(model_path),
        "reference": net.reference,
        "spec": spec.name,
        "quant": prog.quant,
        "overflow": prog.overflow,
        "input_lower": [float(v) for v in spec.input_lower],
        "input_upper": [float(v) for v in spec.input_upper],
        "regions_source": source,
        "regions_file": REGIONS_FILE,
        "n_classes": n_classes(net),
        "regions": entries,
        "n_regions": len(entries),
        "provable_regions": n_prov,
        "certified_regions": n_cert,
        "certified_fraction": n_cert / len(entries),
        "certificate_condition": condition,
        "target_error": opts.error,
        "certified_logit_error": max(e["logit_error_bound"] for e in entries)
        if opts.error is not None
        else None,
        "formats": formats_summary(prog),
        "frac_search": {
            "method": (
                f"ILP (HiGHS) per-{opts.granularity} fractional bits over a linear model of every "
                f"region's {'logit' if opts.whole_box else 'margin'} error, each solution re-certified by "
                "the sound analysis (graph_program/ilp.py), then a descent lowering one group by one bit "
                "at a time while the sound analysis certifies (graph_program/descent.py)"
                if res.method == "ilp"
                else "greedy per-layer fractional bits (graph_program/certify.py)"
            )
            + "; integer bits per channel from range ⊕ error over the regions",
            "granularity": opts.granularity,
            "global_frac": res.global_frac,
            "checks": res.checks,
            "log": res.log,
            "error_target_step": eps_step,
            "start_hw": res.greedy_cost,  # cost of the ILP's start: greedy result (raised to --error)
        },
        "cost": {**asdict(cost := program_cost(prog)), "hw": cost.hw},
        "cost_model": "one multiply-accumulate array per conv layer, reused over all output pixels; "
        "hw = multiplier operand bits + adder bits + table ROM bits",
        "peak_mib": rep.peak_mib,
        "prepare_seconds": rep.prepare_seconds,
        "timings": timings,
        "cpp": None,
        "notes": notes,
    }
