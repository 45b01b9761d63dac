"""``aster-ext verify DIR``: re-load what ``quantize`` wrote and produce DIR/verify.json."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import UserError
from .frontend import load_model
from .ir import dense_chain
from .program import FixedProgram
from .program_io import load_program
from .simulate import simulate, simulate_raw
from .verify import VerifyBudget, VerifyResult, verify_program


def verify_directory(
    out_dir: Path,
    samples: int = 2000,
    search_iters: int = 60,
    seed: int = 0,
    check_cpp: bool = True,
    progress: Callable[[str], None] | None = None,
    classify_samples: int | None = None,
    classify_search_iters: int | None = None,
    split_boxes: int = 0,
    exact_time_limit: float | None = None,
) -> VerifyResult:
    """Verify the implementation in ``out_dir`` against the network its report names.

    The bound checked for output o is min(certified_error_per_output[o], certified_error): a
    top-level claim lower than the per-output values is tested as claimed, and reported as an
    inconsistency. With noInitError (settings C, D) the certificate covers only inputs on the in_t
    grid; the error of off-grid inputs (quantised by the implementation) is measured as well and
    reported, not counted as a violation. A graph-program output (report.json ``"task":
    "classify"``, or ``"analysis": "graph"``: ``--task regress`` on a CNN, the whole input box)
    is verified by :func:`~.classify_verify.verify_classify_directory` with ``classify_samples``
    random + corner inputs and ``classify_search_iters`` gradient steps per region (None: its
    defaults; for ``--task regress`` on a graph, one box: ``samples`` and ``search_iters``). An
    output of the original tool (mode "aster-original") is checked against its claim by
    :func:`~.original.verify_original_directory` with ``samples`` random + corner inputs (no search).
    ``split_boxes`` > 0 (refined-mode outputs): the certificate is re-derived on up to
    that many sub-boxes (:mod:`~.refined.split`) and reported beside the single-pass one (the
    violation check keeps the certificate of report.json). ``exact_time_limit`` (seconds, None: off):
    the true maximum error over the box by the MILP of :mod:`~.exact_milp` (ReLU networks), a
    measurement reported beside the certificate; a best input above the certificate is a violation."""
    from .outdir import check_output_file, record_output_file
    from .pipeline import load_report
    from .progress import phase

    out_dir = Path(out_dir)
    if samples < 1:
        raise UserError("--samples must be at least 1")
    if search_iters < 0:
        raise UserError("--search-iters must be >= 0")
    if seed < 0:
        raise UserError("--seed must be >= 0")
    report = load_report(out_dir)
    graph = report.get("task") == "classify" or report.get("analysis") == "graph"
    if exact_time_limit is not None and (graph or report.get("mode") == "aster-original"):
        raise UserError("--exact measures dense regression outputs, not graph programs or the original's")
    if exact_time_limit is not None and exact_time_limit <= 0:
        raise UserError("--exact-time-limit must be > 0 seconds")
    if graph:  # classify outputs and --task regress on a CNN: graph programs
        if split_boxes:
            raise UserError("--split-boxes is not implemented for graph programs (CNNs, --task classify)")
        from .classify_verify import verify_classify_directory

        if report.get("task") == "regress":  # one box, an ε target: the regression defaults
            classify_samples = samples if classify_samples is None else classify_samples
            classify_search_iters = search_iters if classify_search_iters is None else classify_search_iters
        return verify_classify_directory(  # type: ignore[return-value]
            out_dir, report, classify_samples, classify_search_iters, seed, progress, check_cpp=check_cpp
        )
    if report.get("mode") == "aster-original":
        if split_boxes:
            raise UserError("--split-boxes needs a refined-mode output; this one is mode 'aster-original'")
        if not check_cpp:
            raise UserError("--no-cpp: an output of the original tool is checked only by running its C++")
        from .original import verify_original_directory

        return verify_original_directory(out_dir, report, samples, seed, progress)
    check_output_file(out_dir, "verify.json")
    program = load_program(out_dir / "program.json")
    check_report_fields(report, program, out_dir)
    model_path = Path(report["model_path"])
    if not model_path.is_file():
        raise UserError(f"{out_dir}: the model {model_path} named in report.json is gone")
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != report["model_sha256"]:
        raise UserError(f"{out_dir}: {model_path} changed since it was quantised (sha256 differs)")
    net, _ = load_model(model_path)
    from .pipeline import allowed_activations

    layers = dense_chain(net, allowed_activations(report.get("mode", "refined")))
    lo = np.array(report["input_lower"], dtype=np.float64)
    hi = np.array(report["input_upper"], dtype=np.float64)
    budget = VerifyBudget(samples=samples, search_iters=search_iters, seed=seed)
    per_output = np.array(report["certified_error_per_output"], dtype=np.float64)
    top = float(report["certified_error"])
    problems = report_problems(report)
    bound = np.minimum(per_output, top)
    on_grid = bool(report["input_on_grid"])
    res = verify_program(
        program, layers, lo, hi, bound, on_grid, budget, reference=report["reference"], progress=progress
    )
    res.report_problems = problems
    if on_grid:
        off_budget = VerifyBudget(samples=min(samples, 1000), search_iters=min(search_iters, 20), seed=seed)
        with phase(progress, "verify: inputs off the in_t grid (not covered by the certificate)"):
            off = verify_program(program, layers, lo, hi, bound, False, off_budget, reference=net.name)
        res.off_grid_max_error, res.off_grid_samples = off.max_observed_error, off.samples
    if check_cpp:
        res.bit_exact_cpp, res.cpp_samples = cpp_matches_simulator(program, out_dir, lo, hi, seed, progress)
    if split_boxes > 0:
        res.split = split_summary(report, program, layers, lo, hi, on_grid, split_boxes, res, progress)
    if exact_time_limit is not None:
        from .exact_milp import exact_max_error
        from .progress import phase

        with phase(progress, "verify --exact: MILP of the program and the real network"):
            worst = np.array([res.worst_input], dtype=np.float64) if res.worst_input else None
            analysis = None
            if report.get("mode") == "refined":  # its own per-neuron enclosures tighten the MILP
                from .refined.error_forms import certify_forms

                analysis = certify_forms(program, layers, lo, hi, on_grid)
            ex = exact_max_error(
                program, layers, lo, hi, on_grid, bound, exact_time_limit, progress, seed, worst, analysis
            )
        res.exact = ex.to_json()
    record_output_file(out_dir, "verify.json", json.dumps(res.to_json(), indent=1))
    return res


def split_summary(
    report: dict,
    program: FixedProgram,
    layers: list,
    lo: np.ndarray,
    hi: np.ndarray,
    on_grid: bool,
    boxes: int,
    res: VerifyResult,
    progress: Callable[[str], None] | None,
) -> dict:
    """``verify --split-boxes``: the refined certificate on sub-boxes (split until ``boxes`` leaves
    or until every leaf is below the observed maximum), with the tightness before and after."""
    from .progress import phase
    from .refined.split import certify_by_splitting

    if report.get("mode") != "refined":
        raise UserError(f"--split-boxes needs a refined-mode output; this one is mode {report.get('mode')!r}")
    with phase(progress, f"verify: certificate on up to {boxes} sub-boxes"):
        sc = certify_by_splitting(
            program, layers, lo, hi, res.max_observed_error, boxes, on_grid, progress=progress
        )
    obs = res.max_observed_error
    return {
        "boxes": len(sc.leaves),
        "analysed": sc.analysed,
        "bound_before": float(sc.whole_bound.max()),
        "bound_after": sc.max_bound,
        "bound_after_per_output": [float(v) for v in sc.bound],
        "tightness_before": float(sc.whole_bound.max()) / obs if obs > 0 else None,
        "tightness_after": sc.max_bound / obs if obs > 0 else None,
        "violations_against_split": int(obs > sc.max_bound),
        "time_s": sc.time_s,
    }


def check_report_fields(report: dict, program: FixedProgram, out_dir: Path) -> None:
    """UserError (one line) unless report.json has every field verify reads, well typed and sized."""
    where = f"{out_dir}/report.json"
    if not isinstance(report, dict):
        raise UserError(f"{where}: not an aster_ext report (a JSON object is expected)")
    for key in ("model_path", "model_sha256", "reference"):
        if not isinstance(report.get(key), str):
            raise UserError(f"{where}: '{key}' is missing or not a string")
    if not isinstance(report.get("input_on_grid"), bool):
        raise UserError(f"{where}: 'input_on_grid' is missing or not true/false")
    for key, n in (("input_lower", program.n_in), ("input_upper", program.n_in),
                   ("certified_error_per_output", program.n_out)):  # fmt: skip
        v = report.get(key)
        ok = (
            isinstance(v, list)
            and len(v) == n
            and all(isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x) for x in v)
        )
        if not ok:
            raise UserError(f"{where}: '{key}' must be a list of {n} finite numbers")
    top = report.get("certified_error")
    if isinstance(top, bool) or not isinstance(top, int | float) or not np.isfinite(top) or top < 0:
        raise UserError(f"{where}: 'certified_error' must be a finite number >= 0")
    if any(x < 0 for x in report["certified_error_per_output"]):
        raise UserError(f"{where}: 'certified_error_per_output' has a negative value")
    if np.any(np.array(report["input_lower"]) > np.array(report["input_upper"])):
        raise UserError(f"{where}: 'input_lower' exceeds 'input_upper'")


def report_problems(report: dict) -> list[str]:
    """Claims of report.json that do not add up (a hand-edited or corrupted report)."""
    per = [float(v) for v in report["certified_error_per_output"]]
    top = float(report["certified_error"])
    problems = []
    if not per:
        problems.append("certified_error_per_output is empty")
    elif top != max(per):
        problems.append(
            f"certified_error {top:.6g} is not the largest per-output certified error {max(per):.6g}"
        )
    return problems


def cpp_matches_simulator(
    program: FixedProgram,
    out_dir: Path,
    lo: np.ndarray,
    hi: np.ndarray,
    seed: int,
    progress: Callable[[str], None] | None = None,
    n: int = 200,
    pch_dir: Path | None = None,
) -> tuple[bool, int]:
    """Compile the emitted C++ with a harness and compare raw outputs with the simulator
    (``pch_dir``: where a precompiled ap_fixed.h is kept, see ``codegen.compile.compile_harness``)."""
    from .codegen.compile import compile_harness, run_harness
    from .codegen.hls import c_identifier, generate_harness

    rng = np.random.default_rng(seed + 1)
    x = lo + (hi - lo) * rng.random((n, lo.size))
    x_raw, _ = simulate(program, x)
    # also inputs far outside the box, to exercise wrap-around paths bit for bit
    x_raw = np.vstack([x_raw, simulate(program, x * 3.0)[0]])
    y_sim = simulate_raw(program, x_raw)
    from .progress import phase

    with tempfile.TemporaryDirectory(prefix="aster-ext-cpp-") as tmp:
        tmp_path = Path(tmp)
        harness = generate_harness(program, tmp_path)
        cpp = out_dir / f"{c_identifier(program.name)}.cpp"
        with phase(progress, "verify: compiling the generated C++ with g++ (ap_types)"):
            binary = compile_harness(
                [cpp, harness], tmp_path / "harness", include_dirs=[out_dir], pch_dir=pch_dir
            )
        with phase(progress, f"verify: running the C++ on {len(x_raw)} inputs"):
            y_cpp = run_harness(binary, x_raw)
    same = bool(np.array_equal(np.asarray(y_cpp, dtype=object), np.asarray(y_sim, dtype=object)))
    if progress:
        progress(f"verify: C++ vs simulator on {len(x_raw)} inputs: {'bit-exact' if same else 'MISMATCH'}")
    return same, len(x_raw)
