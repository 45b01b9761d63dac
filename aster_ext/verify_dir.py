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
) -> VerifyResult:
    """Verify the implementation in ``out_dir`` against the network its report names."""
    from .pipeline import load_report

    out_dir = Path(out_dir)
    report = load_report(out_dir)
    program = load_program(out_dir / "program.json")
    model_path = Path(report["model_path"])
    if not model_path.is_file():
        raise UserError(f"{out_dir}: the model {model_path} named in report.json is gone")
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != report["model_sha256"]:
        raise UserError(f"{out_dir}: {model_path} changed since it was quantised (sha256 differs)")
    if samples < 1:
        raise UserError("--samples must be at least 1")
    net, _ = load_model(model_path)
    from .pipeline import allowed_activations

    layers = dense_chain(net, allowed_activations(report.get("mode", "refined")))
    lo = np.array(report["input_lower"], dtype=np.float64)
    hi = np.array(report["input_upper"], dtype=np.float64)
    budget = VerifyBudget(samples=samples, search_iters=search_iters, seed=seed)
    res = verify_program(
        program,
        layers,
        lo,
        hi,
        np.array(report["certified_error_per_output"], dtype=np.float64),
        bool(report["input_on_grid"]),
        budget,
        reference=report["reference"],
        progress=progress,
    )
    if check_cpp:
        res.bit_exact_cpp, res.cpp_samples = cpp_matches_simulator(program, out_dir, lo, hi, seed, progress)
    (out_dir / "verify.json").write_text(json.dumps(res.to_json(), indent=1))
    return res


def cpp_matches_simulator(
    program: FixedProgram,
    out_dir: Path,
    lo: np.ndarray,
    hi: np.ndarray,
    seed: int,
    progress: Callable[[str], None] | None = None,
    n: int = 200,
) -> tuple[bool, int]:
    """Compile the emitted C++ with a harness and compare raw outputs with the simulator."""
    from .codegen.compile import compile_harness, run_harness
    from .codegen.hls import c_identifier, generate_harness

    rng = np.random.default_rng(seed + 1)
    x = lo + (hi - lo) * rng.random((n, lo.size))
    x_raw, _ = simulate(program, x)
    # also inputs far outside the box, to exercise wrap-around paths bit for bit
    x_raw = np.vstack([x_raw, simulate(program, x * 3.0)[0]])
    y_sim = simulate_raw(program, x_raw)
    with tempfile.TemporaryDirectory(prefix="aster-ext-cpp-") as tmp:
        tmp_path = Path(tmp)
        harness = generate_harness(program, tmp_path)
        cpp = out_dir / f"{c_identifier(program.name)}.cpp"
        binary = compile_harness([cpp, harness], tmp_path / "harness", include_dirs=[out_dir])
        y_cpp = run_harness(binary, x_raw)
    same = bool(np.array_equal(np.asarray(y_cpp, dtype=object), np.asarray(y_sim, dtype=object)))
    if progress:
        progress(f"verify: C++ vs simulator on {len(x_raw)} inputs: {'bit-exact' if same else 'MISMATCH'}")
    return same, len(x_raw)
