"""The main job as a Python API: load -> analyse -> assign (ILP) -> certify -> codegen -> report.

``quantize`` writes into a temporary sibling directory and renames it into place only when
every stage succeeded, so a failure never leaves a partial output directory behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .activations.summary import impl_sentence, impl_summary
from .aster.settings import SETTINGS
from .aster.solve import AsterResult, assign_aster
from .certify import Certificate, certify_program
from .codegen.hls import generate_hls, layer_layouts
from .cost import program_cost
from .errors import InfeasibleError, UserError
from .frontend import load_model
from .ir import DenseLayer, Network, dense_chain, trailing_softmax
from .program import FixedProgram
from .program_io import save_program
from .refined.solve import SOLVE_CAP_S, RefinedResult, assign_refined
from .report import write_reports
from .spec import Spec, check_spec_matches, spec_from_bounds

MODES = ("refined", "aster", "aster-sound")
GRANULARITIES = ("neuron", "layer")
MAX_CERTIFY_ROUNDS = 6


@dataclass
class QuantizeOptions:
    error: float
    mode: str = "refined"
    setting: str = "A"
    granularity: str = "neuron"
    spec_path: Path | None = None
    input_lower: list[float] | None = None
    input_upper: list[float] | None = None
    time_limit: float = 60.0
    reuse_factor: int = 1  # HLS reuse factor of the emitted code; the reported cost counts that hardware
    split_boxes: int = 0  # refined: also search formats certified on up to this many sub-boxes (0: off)
    split_ilp: bool = False  # with split_boxes: the multi-box ILP (refined/multibox.py) instead of the
    # relaxed-target search of refined/split.py; it also runs when the single-box search finds nothing


@dataclass
class QuantizeResult:
    network: Network
    layers: list[DenseLayer]
    spec: Spec
    program: FixedProgram
    certificate: Certificate
    assignment: AsterResult | RefinedResult
    report: dict[str, Any]
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def cpp_identifier(name: str) -> str:
    """A C++ identifier for the top function and file names: [A-Za-z_][A-Za-z0-9_]*."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name) or "network"
    return ident if not ident[0].isdigit() else f"net_{ident}"


def resolve_spec(net: Network, model_spec: Spec | None, opts: QuantizeOptions) -> Spec:
    """--input-lower/--input-upper override --spec, which overrides the model's own spec."""
    from .spec import load_spec

    if opts.input_lower is not None or opts.input_upper is not None:
        if opts.input_lower is None or opts.input_upper is None:
            raise UserError("give both --input-lower and --input-upper")
        spec = spec_from_bounds(opts.input_lower, opts.input_upper, net.name)
    elif opts.spec_path is not None:
        spec = load_spec(opts.spec_path)
    elif model_spec is not None:
        spec = model_spec
    else:
        raise UserError(f"{net.name}: no input ranges: pass --spec FILE or --input-lower/--input-upper")
    check_spec_matches(spec, net.n_inputs)
    return spec


def allowed_activations(mode: str) -> frozenset[str]:
    """Activations a mode analyses: every IR activation in refined mode (DESIGN §4); ReLU and
    linear only in the Aster modes (the published analysis has no other activation)."""
    from .ir import ACTIVATIONS

    return frozenset(ACTIVATIONS) if mode == "refined" else frozenset({"relu", "identity"})


def _check_error_target(eps: float) -> None:
    if not np.isfinite(eps) or eps <= 0:
        raise UserError(f"the error target must be a positive number, got {eps}")


def analyse(
    net: Network,
    spec: Spec,
    opts: QuantizeOptions,
    progress: Callable[[str], None] | None = None,
) -> tuple[
    list[DenseLayer], FixedProgram, Certificate, AsterResult | RefinedResult, dict[str, Any], dict[str, float]
]:
    """Assign formats and certify them; aster-sound tightens the ILP target until certified."""
    from .progress import phase

    check_options(opts)
    if opts.mode not in MODES:
        raise UserError(f"unknown mode '{opts.mode}' (choose from {', '.join(MODES)})")
    if opts.setting not in SETTINGS:
        raise UserError(f"unknown setting '{opts.setting}' (choose from {', '.join(SETTINGS)})")
    if opts.granularity not in GRANULARITIES:
        raise UserError(f"unknown granularity '{opts.granularity}' (choose from {', '.join(GRANULARITIES)})")
    setting = SETTINGS[opts.setting]
    timings: dict[str, float] = {}
    layers = dense_chain(net, allowed_activations(opts.mode))
    lo, hi = spec.input_lower, spec.input_upper
    if opts.mode == "refined":
        t = time.perf_counter()
        base_error: InfeasibleError | None = None
        with phase(progress, "refined analysis: ranges, ILP (HiGHS), certificate", limit_s=opts.time_limit):
            try:
                refined = assign_refined(
                    layers,
                    lo,
                    hi,
                    opts.error,
                    opts.setting,
                    opts.granularity,
                    opts.time_limit,
                    cpp_identifier(net.name),
                )
            except InfeasibleError as exc:
                if not (opts.split_ilp and opts.split_boxes > 0):
                    raise
                base_error, refined = exc, None
        timings["assign_and_certify_s"] = time.perf_counter() - t
        if refined is not None:
            refined.program.name = cpp_identifier(net.name)
            cert = refined.certificate
            if not cert.ok or cert.bound > opts.error:
                raise RuntimeError(
                    f"{net.name}: refined result not certified ({cert.bound:g}): a bug, please report"
                )
        split_log = None
        if opts.split_boxes > 0 and opts.split_ilp:
            from .refined.multibox import assign_multibox

            t = time.perf_counter()
            with phase(
                progress, f"multi-box ILP on up to {opts.split_boxes} sub-boxes", limit_s=opts.time_limit
            ):
                try:
                    refined, cert, split_log = assign_multibox(
                        layers, lo, hi, opts.error, refined, opts.setting, opts.granularity, opts.time_limit,
                        cpp_identifier(net.name), opts.split_boxes, progress,
                    )  # fmt: skip
                except InfeasibleError as exc:
                    if base_error is None:  # not reached: with a base, the base is returned
                        raise
                    raise InfeasibleError(
                        f"{base_error}; {exc}", base_error.smallest_error, base_error.node
                    ) from None
            refined.program.name = cpp_identifier(net.name)
            timings["split_search_s"] = time.perf_counter() - t
            if not cert.ok or cert.bound > opts.error:
                raise RuntimeError(
                    f"{net.name}: multi-box result not certified ({cert.bound:g}): a bug, please report"
                )
        elif opts.split_boxes > 0:
            from .refined.split import assign_with_splitting

            t = time.perf_counter()
            with phase(
                progress, f"formats certified on up to {opts.split_boxes} sub-boxes", limit_s=opts.time_limit
            ):
                refined, cert, split_log = assign_with_splitting(
                    layers, lo, hi, opts.error, refined, opts.setting, opts.granularity, opts.time_limit,
                    cpp_identifier(net.name), opts.split_boxes, progress,
                )  # fmt: skip
            refined.program.name = cpp_identifier(net.name)
            timings["split_search_s"] = time.perf_counter() - t
            if not cert.ok or cert.bound > opts.error:
                raise RuntimeError(
                    f"{net.name}: split result not certified ({cert.bound:g}): a bug, please report"
                )
        with phase(progress, "independent interval certificate"):
            interval = certify_program(refined.program, layers, lo, hi, input_on_grid=setting.no_init_error)
        info = {
            "rounds": [{"rounds": refined.rounds, "certified": cert.bound}],
            "interval_certificate": interval,
            "split_search": None if split_log is None else split_log.to_json(),
        }
        return layers, refined.program, cert, refined, info, timings
    target = opts.error
    rounds: list[dict[str, Any]] = []
    for rnd in range(MAX_CERTIFY_ROUNDS):
        t = time.perf_counter()
        with phase(progress, f"round {rnd + 1}: {opts.mode} ranges and ILP (HiGHS)", limit_s=opts.time_limit):
            result = assign_aster(layers, lo, hi, target, opts.setting, opts.mode, time_limit=opts.time_limit)
        result.program.name = cpp_identifier(net.name)
        timings["assign_s"] = timings.get("assign_s", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        with phase(progress, f"round {rnd + 1}: interval certificate"):
            cert = certify_program(result.program, layers, lo, hi, input_on_grid=setting.no_init_error)
        timings["certify_s"] = timings.get("certify_s", 0.0) + time.perf_counter() - t
        rounds.append({"ilp_target": target, "certified": cert.bound, "overflows": len(cert.overflows)})
        if progress:
            progress(f"round {rnd + 1}: ILP target {target:.4g}, certified bound {cert.bound:.4g}")
        if opts.mode == "aster" or (cert.ok and cert.bound <= opts.error):
            break
        if not cert.ok and rnd == MAX_CERTIFY_ROUNDS - 1:
            raise InfeasibleError(
                f"{net.name}: the assigned formats overflow: {cert.overflows[0].message()}",
                node=cert.overflows[0].layer,
            )
        shrink = opts.error / cert.bound if cert.ok and cert.bound > 0 else 0.5
        target = target * min(0.95, shrink * 0.98)
    else:
        raise InfeasibleError(
            f"{net.name}: no certified assignment after {MAX_CERTIFY_ROUNDS} rounds "
            f"(last certified bound {cert.bound:.4g} > {opts.error:g})"
        )
    info = {"rounds": rounds}
    return layers, result.program, cert, result, info, timings


def quantize(
    model_path: Path,
    opts: QuantizeOptions,
    out_dir: Path | str | None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
    loaded: tuple[Network, Spec | None] | None = None,
) -> QuantizeResult:
    """Run the whole job; with ``out_dir`` write report.json/.md, <net>.cpp/.h, model.lp there.

    ``out_dir`` is validated before the analysis and written by :class:`~.outdir.OutputPlan`
    (never deletes or overwrites a file the tool did not write; ``force`` replaces an earlier
    aster_ext output's own files). ``loaded``: ``load_model(model_path)``'s result when the
    caller already has it (the CLI loads an ONNX model once to route it)."""
    from .outdir import OutputPlan
    from .progress import phase

    t0 = time.perf_counter()
    model_path = Path(model_path)
    check_options(opts)
    plan = None
    if out_dir is not None:
        protected = [model_path] + ([Path(opts.spec_path)] if opts.spec_path is not None else [])
        plan = OutputPlan.prepare(out_dir, protected, force)
    t = time.perf_counter()
    with phase(progress, "load model"):
        net, model_spec = loaded if loaded is not None else load_model(model_path)
        spec = resolve_spec(net, model_spec, opts)
    load_s = time.perf_counter() - t
    if progress:
        progress(f"loaded {net.name} ({net.reference}); {net.n_inputs} inputs, {net.n_outputs} outputs")
    try:
        layers, program, cert, assignment, info, timings = analyse(net, spec, opts, progress)
    except InfeasibleError as exc:
        raise InfeasibleError(
            str(exc) + infeasible_hint(exc, net, spec, opts), exc.smallest_error, exc.node
        ) from None
    timings = {"load_s": load_s, **timings}
    report = build_report(net, spec, opts, model_path, program, cert, assignment, info, timings)
    result = QuantizeResult(net, layers, spec, program, cert, assignment, report, None, timings)
    if plan is not None:

        def write(tmp: Path) -> None:
            t = time.perf_counter()
            generate_hls(program, tmp, reuse_factor=opts.reuse_factor)
            (tmp / "model.lp").write_text(assignment.lp_text)
            save_program(program, tmp / "program.json")
            timings["codegen_s"] = time.perf_counter() - t
            timings["total_s"] = time.perf_counter() - t0
            report["timings"] = timings
            write_reports(report, tmp)

        with phase(progress, "write C++ and reports"):
            plan.commit(write)
        result.out_dir = Path(out_dir)
    else:
        timings["total_s"] = time.perf_counter() - t0
    return result


HINT_MAX_NEURONS = 200  # infeasible refined runs: other settings are tried only on networks this small


def _ceil_2_digits(x: float) -> float:
    """The smallest number with 2 significant decimal digits that is >= x (x > 0, finite)."""
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / step * (1 + 1e-12)) * step


def infeasible_hint(exc: InfeasibleError, net: Network, spec: Spec, opts: QuantizeOptions) -> str:
    """What does work, when the tool knows it: the smallest certifiable ε of this setting, and for
    small refined-mode networks the other settings whose smallest certifiable ε is <= the target;
    in refined mode, also the pointer to --mode graph (not run here: it can take minutes)."""
    hints: list[str] = []
    smallest = exc.smallest_error
    if smallest is not None and math.isfinite(smallest) and smallest > 0:
        verb = "works" if opts.mode == "refined" else "is the smallest to try"
        hints.append(f"--error {_ceil_2_digits(smallest):.2g} {verb} in setting {opts.setting}")
    if opts.mode != "refined" and "input quantisation" in str(exc):
        hints.append("settings B (initLen 32) or C/D (inputs on the in_t grid) avoid that input error")
    elif opts.mode == "refined" and exc.node is None:
        try:
            layers = dense_chain(net, allowed_activations(opts.mode))
        except UserError:
            layers = []
        if layers and sum(layer.n_out for layer in layers) <= HINT_MAX_NEURONS:
            from .aster.settings import SETTINGS as REFINED_SETTINGS
            from .refined.solve import smallest_certifiable

            for name, other in REFINED_SETTINGS.items():
                if name == opts.setting:
                    continue
                e = smallest_certifiable(net.name, layers, spec.input_lower, spec.input_upper, other)
                if e <= opts.error:
                    hints.append(
                        f"setting {name} certifies down to {e:.3g}"
                        + (" (inputs on its in_t grid only)" if other.no_init_error else "")
                    )
    suffix = f" (what works: {'; '.join(hints)})" if hints else ""
    if opts.mode == "refined":  # not tried here: the graph path can take minutes
        suffix += "; --mode graph (no 32-bit width cap, up to 48 fractional bits) may certify it"
    return suffix


def check_options(opts: QuantizeOptions) -> None:
    """Numeric options a user can get wrong: one-line UserError each."""
    _check_error_target(opts.error)
    tl = opts.time_limit
    if isinstance(tl, bool) or not isinstance(tl, int | float) or not math.isfinite(tl) or tl <= 0:
        raise UserError(f"--time-limit must be a positive number of seconds, got {tl}")
    if isinstance(opts.reuse_factor, bool) or not isinstance(opts.reuse_factor, int) or opts.reuse_factor < 1:
        raise UserError(f"--reuse-factor must be an integer >= 1, got {opts.reuse_factor}")


def time_limit_hit(assignment: AsterResult | RefinedResult) -> bool:
    """The ILP stopped at a time limit (its incumbent, or the maximum-width fallback, was used)."""
    status = str(assignment.solver_status)
    return "time_limit" in status or any("time limit reached" in n for n in assignment.notes)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_report(
    net: Network,
    spec: Spec,
    opts: QuantizeOptions,
    model_path: Path,
    program: FixedProgram,
    cert: Certificate,
    assignment: AsterResult,
    info: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The machine-readable report (report.json)."""
    setting = SETTINGS[opts.setting]
    sound = opts.mode != "aster"
    independent = info.get("interval_certificate", cert)  # the interval certifier's own bound
    cost = program_cost(program, opts.reuse_factor).to_json()
    if isinstance(assignment, AsterResult):
        cost["aster_objective"] = assignment.objective
        cost["daisy_area_aster_types"] = int(assignment.daisy_area_cost)
    else:
        cost["ilp_objective"] = assignment.objective
    if sound:
        certified, per_output = cert.bound, [float(v) for v in cert.output_bound]
    else:
        certified = float(assignment.claimed_error)
        per_output = [certified] * program.n_out
    formats = []
    for lp in program.layers:
        formats.append(
            {
                "layer": lp.name,
                "activation": lp.activation,
                **{
                    f: _fmt_summary(getattr(lp, f))
                    for f in ("weight_t", "product_t", "psum_t", "dot_t", "bias_t", "bsum_t", "out_t")
                },
            }
        )
    return {
        "tool": "aster_ext",
        "network": net.name,
        "model_path": str(model_path.resolve()),
        "model_sha256": _sha256(model_path),
        "reference": net.reference,
        "mode": opts.mode,
        "setting": opts.setting,
        "granularity": opts.granularity if opts.mode == "refined" else "layer",
        "setting_params": setting.to_json(),
        "target_error": opts.error,
        "certified_error": certified,
        "certified_error_per_output": per_output,
        "sound": sound,
        "certificate_condition": certificate_condition(setting.no_init_error, program.input_t.cpp()),
        "independent_bound": independent.bound,
        "independent_bound_per_output": [float(v) for v in independent.output_bound],
        "independent_overflow_count": len(independent.overflows),
        "independent_overflows": [o.message() for o in independent.overflows[:5]],
        "claimed_error": float(assignment.claimed_error),
        "overflows": [o.message() for o in cert.overflows],
        "input_on_grid": setting.no_init_error,
        "input_lower": [float(v) for v in spec.input_lower],
        "input_upper": [float(v) for v in spec.input_upper],
        "frac_bits": {
            "dot": _bits_json(assignment.dot_bits),
            "bias": _bits_json(assignment.bias_bits),
        },
        "input_format": program.input_t.cpp(),
        "output_format": program.output_t.cpp(),
        "cost": cost,
        "formats": formats,
        "solver": {
            "name": "HiGHS",
            "status": assignment.solver_status,
            "time_s": assignment.solver_time_s,
            "exact_check_ok": assignment.exact_check_ok,
            "time_limit_s": opts.time_limit,
            "run_cap_s": SOLVE_CAP_S if opts.mode == "refined" else None,
            "time_limit_hit": time_limit_hit(assignment),
            "max_width_fallback": bool(getattr(assignment, "max_width_fallback", False)),
        },
        "certify_rounds": info["rounds"],
        "timings": timings,
        "codegen": {"layouts": layer_layouts(program), "reuse_factor": opts.reuse_factor},
        "notes": list(assignment.notes) + _extra_notes(net, program),
        "split_search": info.get("split_search"),
        "logits_before_softmax": trailing_softmax(net),
        "activation_impls": _impl_summary(program),
    }


def certificate_condition(input_on_grid: bool, input_format: str) -> str:
    """Which inputs the certified bound covers, in words (report, summary line, README)."""
    if input_on_grid:
        return f"for inputs on the in_t grid: {input_format} only (noInitError; off-grid inputs not covered)"
    return "for every input in the box"


def _extra_notes(net: Network, program: FixedProgram) -> list[str]:
    notes = []
    if trailing_softmax(net):
        notes.append(
            "the network ends in a softmax: the certified bound is on the logits before the trailing "
            "softmax (softmax is monotone, the predicted class follows from the logits)"
        )
    for s in _impl_summary(program):
        notes.append(f"layer {s['layer']}: " + impl_sentence(s, "per neuron over its range"))
    return notes


def _impl_summary(program: FixedProgram) -> list[dict[str, Any]]:
    """Per layer with an activation implementation: its layer name and :func:`impl_summary`."""
    return [
        {"layer": lp.name, **impl_summary(lp.act_impl)} for lp in program.layers if lp.act_impl is not None
    ]


def _bits_json(bits: list[Any]) -> list[Any]:
    """Per layer: an int (one choice per layer) or a list of per-neuron ints."""
    return [list(map(int, b)) if isinstance(b, list | tuple | np.ndarray) else int(b) for b in bits]


def _fmt_summary(fa: Any) -> dict[str, Any]:
    pairs = fa.distinct()
    return {
        "distinct": [f"ap_fixed<{w},{i}>" for w, i in pairs[:8]] + (["..."] if len(pairs) > 8 else []),
        "max_width": int(fa.width.max()),
        "min_width": int(fa.width.min()),
    }


def load_report(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "report.json"
    if not path.is_file():
        raise UserError(f"{out_dir}: no report.json (run 'aster-ext quantize ... --out {out_dir}' first)")
    return json.loads(path.read_text())
