"""``quantize --mode aster-original`` and its ``verify``: the user's build of the original Aster.

Quantize: the model must be an Aster ``.scala`` file (the only input the original reads). Its copy,
with the active ``ensuring(res => res +/- E)`` rewritten to the requested ε, goes into a fresh
working folder (``ASTER_WORKDIR`` if set, else a temporary folder holding a copy of the build's
``scip.set``, the solver settings the original reads from its working folder); the original runs
there in-process through :mod:`~.bridge` (main class ``daisy.Main``, or ``ASTER_MAIN_CLASS``) with
the command line of its settings A-D (:func:`~.bridge.original_args`); its solver runs under its
own time limit (``--time-limit`` does not reach it). Its report lines are parsed (objective,
dot_i/bias_i fractional bits, "Total Error" = its claimed bound, Daisy's cost) and its generated
C++ (``output/<object>.cpp``) is collected with the calling convention
``void nn1(ap_fixed<W,I> x_0, ..., ap_fixed<W,I> _result[m])``. DIR receives, through
:class:`~.outdir.OutputPlan` (never overwriting a user's file): report.json / report.md (mode
"aster-original"), the C++, the LP model if written, the input copy and the run's stdout/stderr.
An infeasible run writes nothing (exit 2), like the other modes.

Verify: the C++ is compiled with g++ against ap_types together with an adapter (below) and run on
random and corner inputs of the box (on the inputs' grid for settings C, D, whose claim covers only
exactly representable inputs). For input x (a double), the C++ receives ``ap_fixed<W,I>(x)`` (the
conversion an HLS test bench performs: truncation, wrap-around) and returns raw integers r_o of
its output format, i.e. ŷ_o = r_o · 2^-(W-I). The error |ŷ_o - N_o(x)| is screened in float64 and
re-evaluated exactly (rational weights, rational x) at the worst points and at every point the
screen puts near or above the claim; a violation is an exactly evaluated point with error >
the claimed "Total Error". Violations are an expected outcome (the original's analysis is not
sound), reported with the inputs, exit 1.

The adapter defines ``fmax(0, v)`` for ap_fixed values as the exact maximum: the original's C++
calls ``fmax`` from Xilinx's ``hls_math.h``, whose double overload computes the same value for
formats of at most 53 bits (the original emits at most 32).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .aster.settings import SETTINGS
from .bridge import (
    CppSignature,
    OriginalResult,
    aster_classpath,
    find_aster_home,
    original_args,
    parse_cpp_signature,
    parse_original_output,
    reset_fields_from_env,
    run_main,
)
from .errors import InfeasibleError, UserError
from .verify import VerifyResult, real_forward_exact, real_forward_float

MODE = "aster-original"
MAIN_CLASS_ENV = "ASTER_MAIN_CLASS"  # default bridge.DEFAULT_MAIN_CLASS (daisy.Main)
STDOUT_FILE, STDERR_FILE, INPUT_SUFFIX = "original_stdout.txt", "original_stderr.txt", ".original-input.scala"
MAX_EXACT = 400  # exact re-evaluations per verify run (worst screened points first)
EXACT_TOP = 4  # per output, the worst screened points are always re-evaluated exactly
#: screened errors above (1 - slack) * claim are re-evaluated exactly (float64 screening errors are
#: ~1e-16 relative to the outputs' magnitude, far below 1e-3 of any claim the original makes)
SCREEN_SLACK = 1e-3

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ENSURING = re.compile(r"(ensuring\s*\(\s*\w+\s*=>\s*\w+\s*\+/-\s*)(" + _NUMBER + r")(\s*\))")


def with_error_target(text: str, eps: float) -> str:
    """The DSL text with its one active (not commented out) ``ensuring(res => res +/- E)`` set to ε."""
    out, found = [], 0
    for line in text.splitlines(keepends=True):
        code, sep, comment = line.partition("//")
        code, n = _ENSURING.subn(lambda m: f"{m.group(1)}{eps!r}{m.group(3)}", code)
        found += n
        out.append(code + sep + comment)
    if found != 1:
        raise UserError(
            f"--mode {MODE}: expected one active 'ensuring(res => res +/- E)' in the model, found {found}"
        )
    return "".join(out)


def _object_name(text: str) -> str:
    m = re.search(r"\bobject\s+(\w+)", text)
    if m is None:
        raise UserError(f"--mode {MODE}: no 'object NAME' in the model")
    return m.group(1)


def _workdir(home: Path) -> tuple[Path, bool]:
    """The original's working folder: ``ASTER_WORKDIR``, or a new temporary one (True: remove it after)."""
    given = os.environ.get("ASTER_WORKDIR")
    if given:
        path = Path(given)
        if not path.is_dir():
            raise UserError(f"ASTER_WORKDIR={given} is not a directory")
        return path, False
    path = Path(tempfile.mkdtemp(prefix="aster-original-"))
    if (home / "scip.set").is_file():
        shutil.copy2(home / "scip.set", path / "scip.set")
    return path, True


def quantize_original(
    model_path: Path,
    eps: float,
    setting: str,
    out_dir: Path | str,
    force: bool = False,
    spec_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the user's build of the original on ``model_path`` for ε = ``eps`` in Aster setting
    ``setting``; write its C++ and claims into ``out_dir``; return report.json's contents."""
    from .frontend import load_model
    from .ir import dense_chain
    from .outdir import OutputPlan
    from .report import box_text

    home = find_aster_home()
    model_path = Path(model_path)
    if model_path.suffix != ".scala":
        raise UserError(
            f"--mode {MODE} reads Aster .scala models only (the original's input), not {model_path.name}"
        )
    if spec_path is not None:
        raise UserError(
            f"--mode {MODE}: the original analyses the box in the model's require(...); drop --spec"
        )
    if setting not in SETTINGS:
        raise UserError(f"unknown setting '{setting}' (choose from {', '.join(SETTINGS)})")
    if not (math.isfinite(eps) and eps > 0):
        raise UserError(f"the error target must be a positive number, got {eps}")
    s = SETTINGS[setting]
    plan = OutputPlan.prepare(out_dir, [model_path], force)
    classpath = aster_classpath(home)
    text = model_path.read_text(encoding="utf-8")
    net, spec = load_model(model_path)
    layers = dense_chain(net, frozenset({"relu", "identity"}))
    obj = _object_name(text)
    input_copy = f"{model_path.stem}{INPUT_SUFFIX}"
    args_file = f"{model_path.stem}.scala"
    work, temporary = _workdir(home)
    main_class = os.environ.get(MAIN_CLASS_ENV) or "daisy.Main"
    try:
        (work / "output").mkdir(exist_ok=True)
        scala = work / args_file
        scala.write_text(with_error_target(text, eps), encoding="utf-8")
        cpp_path, lp_path = work / "output" / f"{obj}.cpp", work / "model.lp"
        before = {p: p.stat().st_mtime_ns for p in (cpp_path, lp_path) if p.exists()}
        args = original_args(scala.resolve(), len(layers), s.min_len, s.max_len, s.init_len, s.no_init_error)
        if progress:
            progress(f"running the original Aster ({main_class}) in {work}")
        t = time.perf_counter()
        run = run_main(main_class, args, classpath, work, reset_fields_from_env())
        run_s = time.perf_counter() - t
        parsed = parse_original_output(run.stdout)

        def fresh(p: Path) -> bool:
            return p.is_file() and before.get(p) != p.stat().st_mtime_ns

        if parsed.status == "infeasible":
            raise InfeasibleError(f"{net.name}: the original Aster reports 'The solution is infeasible' for "
                                  f"--error {eps:g} in setting {setting}")  # fmt: skip
        if run.failure is not None or parsed.status != "ok" or not fresh(cpp_path):
            what = run.failure or (
                "no dot_i/bias_i bits and Total Error in its output" if parsed.status != "ok"
                else f"it wrote no output/{obj}.cpp"
            )  # fmt: skip
            tail = " | ".join(run.stdout.strip().splitlines()[-3:])
            raise UserError(
                f"the original Aster failed on {model_path.name}: {what}"
                + (f" (last output: {tail})" if tail else "")
            )
        cpp_text = cpp_path.read_text()
        lp_text = lp_path.read_text() if fresh(lp_path) else None
        scala_text = scala.read_text(encoding="utf-8")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    sig = parse_cpp_signature(cpp_text)
    if len(sig.inputs) != net.n_inputs or sig.n_outputs != net.n_outputs:
        raise UserError(
            f"the original's C++ {sig.name} takes {len(sig.inputs)} inputs and returns {sig.n_outputs} "
            f"outputs; the network has {net.n_inputs} and {net.n_outputs}"
        )
    report = _report(model_path, net, spec, eps, setting, parsed, sig, obj, run_s, main_class, args, home)
    report["box"] = box_text(report["input_lower"], report["input_upper"])

    def write(tmp: Path) -> None:
        (tmp / f"{obj}.cpp").write_text(cpp_text)
        (tmp / input_copy).write_text(scala_text, encoding="utf-8")
        (tmp / STDOUT_FILE).write_text(run.stdout)
        (tmp / STDERR_FILE).write_text(run.stderr)
        if lp_text is not None:
            (tmp / "model.lp").write_text(lp_text)
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.md").write_text(render_markdown(report))

    plan.commit(write)
    return report


def _report(model_path: Path, net: Any, spec: Any, eps: float, setting: str, parsed: OriginalResult,
            sig: CppSignature, obj: str, run_s: float, main_class: str, args: list[str],
            home: Path) -> dict[str, Any]:  # fmt: skip
    s = SETTINGS[setting]
    claimed = float(parsed.claimed_error)  # type: ignore[arg-type]
    return {
        "tool": "aster_ext",
        "network": net.name,
        "model_path": str(model_path.resolve()),
        "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "reference": net.reference,
        "mode": MODE,
        "setting": setting,
        "setting_params": s.to_json(),
        "target_error": eps,
        "claimed_error": claimed,
        "certified_error": claimed,  # the column sweeps read; NOT a certificate (sound: false)
        "certified_error_per_output": [claimed] * sig.n_outputs,
        "sound": False,
        "certificate_condition": "the original's own claim (its error analysis is not sound); "
        + (
            "for inputs on the input grid only (noInitError)"
            if s.no_init_error
            else "for every input in the box"
        ),
        "input_lower": [float(v) for v in spec.input_lower],
        "input_upper": [float(v) for v in spec.input_upper],
        "input_on_grid": s.no_init_error,
        "objective": parsed.objective,
        "daisy_area": parsed.daisy_area,
        "formats": [
            {"layer": i + 1, "dot_frac_bits": d, "bias_frac_bits": b}
            for i, (d, b) in enumerate(zip(parsed.dot_bits, parsed.bias_bits, strict=True))
        ],
        "notes": [
            "the claimed error is the original's own analysis (not a certificate); check it with verify",
            "the original's solver ran under the original's own time limit (--time-limit does not apply)",
        ],
        "cpp_file": f"{obj}.cpp",
        "cpp_function": sig.name,
        "input_formats": [f"ap_fixed<{w},{i}>" for w, i in sig.inputs],
        "output_format": f"ap_fixed<{sig.output[0]},{sig.output[1]}>",
        "original": {
            "aster_home": str(home.resolve()),
            "main_class": main_class,
            "args": [*args[:-1], Path(args[-1]).name],
            "run_s": run_s,
            "stdout": STDOUT_FILE,
            "stderr": STDERR_FILE,
        },
    }


def render_markdown(r: dict[str, Any]) -> str:
    """report.md of an aster-original output."""
    rows = "".join(f"| {f['layer']} | {f['dot_frac_bits']} | {f['bias_frac_bits']} |\n" for f in r["formats"])
    return (
        f"# {r['network']}: the original Aster (setting {r['setting']}, target {r['target_error']:g})\n\n"
        f'Claimed error (the original\'s "Total Error", not a certificate): {r["claimed_error"]:.6g}\n\n'
        f"Objective: {r['objective']}; Daisy's cost: {r['daisy_area']}\n\n"
        f"C++: `{r['cpp_file']}`, `{r['cpp_function']}({', '.join(r['input_formats'])}, "
        f"{r['output_format']} _result[{len(r['certified_error_per_output'])}])`\n\n"
        f"Input box: {r['box']}\n\n| layer | dot frac bits | bias frac bits |\n|---|---|---|\n{rows}\n"
        f"Check the claim: `aster-ext verify DIR` (random and corner inputs, exact re-evaluation).\n"
    )


# -- verify -------------------------------------------------------------------------------------

_PRELUDE = """\
// Adapter (aster_ext verify): the original Aster's C++ with an exact fmax for its ReLUs and a
// stdin/stdout driver. fmax(a, v) = max(a, v) exactly, in v's format (module docstring).
#include <ap_fixed.h>
#include <iostream>
#include <sstream>
#include <string>
#include <cstdlib>

template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
ap_fixed<W, I, Q, O, N> fmax(int a, const ap_fixed<W, I, Q, O, N> &v) {
  return v > a ? v : ap_fixed<W, I, Q, O, N>(a);
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
ap_fixed<W, I, Q, O, N> fmax(const ap_fixed<W, I, Q, O, N> &v, int a) {
  return fmax(a, v);
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
ap_fixed<W, I, Q, O, N> fmax(const ap_fixed<W, I, Q, O, N> &u, const ap_fixed<W, I, Q, O, N> &v) {
  return u > v ? u : v;
}
"""


def harness_source(cpp_file: Path, sig: CppSignature) -> str:
    """One translation unit: the prelude, the original's C++ (#included as is), and a main that
    reads lines of n_in decimal doubles, converts each to its ap_fixed input type, calls the top
    function and prints the m raw output integers."""
    w_out, i_out = sig.output
    n = len(sig.inputs)
    conv = ", ".join(f"ap_fixed<{w},{i}>(x[{k}])" for k, (w, i) in enumerate(sig.inputs))
    return (
        _PRELUDE
        + f'#include "{cpp_file.resolve()}"\n\n'
        + "int main() {\n  std::ios::sync_with_stdio(false);\n  std::string line;\n"
        + "  while (std::getline(std::cin, line)) {\n"
        + '    if (line.find_first_not_of(" \\t\\r") == std::string::npos) continue;\n'
        + f"    std::istringstream fields(line);\n    double x[{n}];\n"
        + f"    for (int k = 0; k < {n}; k++) {{\n      std::string tok;\n"
        + '      if (!(fields >> tok)) { std::cerr << "adapter: expected '
        + str(n)
        + ' numbers\\n"; return 2; }\n'
        + "      x[k] = std::strtod(tok.c_str(), 0);\n    }\n"
        + f"    ap_fixed<{w_out},{i_out}> y[{sig.n_outputs}];\n    {sig.name}({conv}, y);\n"
        + f"    for (int j = 0; j < {sig.n_outputs}; j++) {{\n      ap_int<{w_out}> r;\n"
        + f"      r.range({w_out - 1}, 0) = y[j].range({w_out - 1}, 0);\n"
        + '      std::cout << (j ? " " : "") << r.to_string(10);\n    }\n    std::cout << \'\\n\';\n  }\n'
        + "  return 0;\n}\n"
    )


def run_cpp(cpp_file: Path, sig: CppSignature, x: np.ndarray, workdir: Path) -> list[list[int]]:
    """Compile the adapter with the original's C++ and run it on the rows of ``x`` (doubles);
    returns the raw output integers per row."""
    import subprocess

    from .codegen.compile import compile_harness

    main = workdir / "adapter.cpp"
    main.write_text(harness_source(cpp_file, sig))
    binary = compile_harness([main], workdir / "adapter", include_dirs=[cpp_file.parent])
    text = "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in x)
    proc = subprocess.run([str(binary)], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"adapter for {cpp_file.name} failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    rows = [[int(t) for t in ln.split()] for ln in proc.stdout.splitlines() if ln.strip()]
    if len(rows) != len(x) or any(len(r) != sig.n_outputs for r in rows):
        raise RuntimeError(f"adapter for {cpp_file.name}: {len(rows)} output rows for {len(x)} inputs")
    return rows


def sample_inputs(
    lo: np.ndarray, hi: np.ndarray, n: int, seed: int, grid_frac: list[int] | None
) -> np.ndarray:
    """``n`` uniform points of the box, its corners (all if 2^d <= n, else n random ones) and its
    centre; with ``grid_frac`` every point is moved to the grid 2^-F_k of input k (inside the box)."""
    rng = np.random.default_rng(seed)
    d = lo.size
    pts = lo + (hi - lo) * rng.random((n, d))
    if 2**d <= n:
        bits = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)
    else:
        bits = rng.random((n, d)) < 0.5
    pts = np.vstack([pts, np.where(bits, hi, lo), (lo + hi) / 2])
    if grid_frac is None:
        return pts
    scale = np.ldexp(1.0, np.array(grid_frac))
    glo, ghi = np.ceil(lo * scale), np.floor(hi * scale)
    if np.any(glo > ghi):
        raise UserError("an input's interval holds no point of its ap_fixed grid")
    return np.clip(np.floor(pts * scale), glo, ghi) / scale


@dataclass
class OriginalVerifyResult(VerifyResult):
    """:class:`~.verify.VerifyResult` of an aster-original output: the bound is the original's claim."""

    exact_checked: int = 0
    screened_only_violations: int = 0  # screened above the claim beyond the MAX_EXACT exact checks
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.violations == 0 and self.screened_only_violations == 0

    def summary_line(self) -> str:
        verdict = "claim holds on these inputs" if self.passed else "CLAIM VIOLATED"
        return (
            f"verify (original Aster) {verdict}: {self.samples} inputs"
            + (" (on the input grid)" if self.input_on_grid else "")
            + f", max observed error {self.max_observed_error:.4g}, claimed {self.certified_error:.4g}"
            f" (ratio claimed/observed {self.ratio:.3g}), violating inputs {self.violations}"
            + (
                f" (+{self.screened_only_violations} by the float64 screen)"
                if self.screened_only_violations
                else ""
            )
        )

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d.update(mode=MODE, passed=self.passed, exact_checked=self.exact_checked,
                 screened_only_violations=self.screened_only_violations, notes=self.notes,
                 ratio_definition="claimed_error / max_observed_error")  # fmt: skip
        return d


def verify_original_directory(
    out_dir: Path,
    report: dict[str, Any],
    samples: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> OriginalVerifyResult:
    """Check the original's claim in ``out_dir`` (module docstring); writes ``out_dir/verify.json``."""
    from .frontend import load_model
    from .ir import dense_chain
    from .outdir import check_output_file, record_output_file

    t0 = time.perf_counter()
    check_output_file(out_dir, "verify.json")
    model_path = Path(report["model_path"])
    if not model_path.is_file():
        raise UserError(f"{out_dir}: the model {model_path} named in report.json is gone")
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != report["model_sha256"]:
        raise UserError(f"{out_dir}: {model_path} changed since it was quantised (sha256 differs)")
    cpp = Path(out_dir) / report["cpp_file"]
    sig = parse_cpp_signature(cpp.read_text(), report.get("cpp_function"))
    net, _ = load_model(model_path)
    layers = dense_chain(net, frozenset({"relu", "identity"}))
    claim = float(report["claimed_error"])
    lo, hi = np.array(report["input_lower"], float), np.array(report["input_upper"], float)
    on_grid = bool(report["input_on_grid"])
    x = sample_inputs(lo, hi, samples, seed, [w - i for w, i in sig.inputs] if on_grid else None)
    if progress:
        progress(f"verify: compiling the original's C++ with an adapter and running it on {len(x)} inputs")
    with tempfile.TemporaryDirectory(prefix="aster-ext-original-") as tmp:
        raw = run_cpp(cpp, sig, x, Path(tmp))
    out_frac = sig.output[0] - sig.output[1]
    y_fix = np.array(raw, dtype=np.float64) * 2.0**-out_frac  # raw < 2^53: exact
    screen = np.abs(y_fix - real_forward_float(layers, x))
    # exact re-evaluation: the worst screened points per output, then all near or above the claim
    order = np.argsort(-screen.max(axis=1), kind="stable")
    picked = {
        int(i) for o in range(screen.shape[1]) for i in np.argsort(-screen[:, o], kind="stable")[:EXACT_TOP]
    }
    near = [int(i) for i in order if screen[i].max() > (1 - SCREEN_SLACK) * claim]
    for i in near:
        if len(picked) >= MAX_EXACT:
            break
        picked.add(i)
    scale = Fraction(1, 2**out_frac) if out_frac >= 0 else Fraction(2**-out_frac)
    exact: dict[int, list[Fraction]] = {}
    for i in sorted(picked):
        y_real = real_forward_exact(layers, [Fraction(float(v)) for v in x[i]])
        exact[i] = [abs(Fraction(r) * scale - t) for r, t in zip(raw[i], y_real, strict=True)]
    per_output = [max(float(e[o]) for e in exact.values()) for o in range(sig.n_outputs)]
    worst = max(exact, key=lambda i: max(exact[i]))
    bad = [i for i in sorted(exact) if max(exact[i]) > claim]
    rest = [i for i in near if i not in exact and screen[i].max() > (1 + SCREEN_SLACK) * claim]
    res = OriginalVerifyResult(
        samples=len(x),
        max_observed_error=max(per_output),
        max_observed_per_output=per_output,
        worst_input=[float(v) for v in x[worst]],
        certified_error=claim,
        certified_per_output=[claim] * sig.n_outputs,
        violations=len(bad),
        violation_inputs=[[float(v) for v in x[i]] for i in bad],
        bit_exact_cpp=None,
        cpp_samples=len(x),
        time_s=time.perf_counter() - t0,
        reference=str(report.get("reference", "")),
        input_on_grid=on_grid,
        exact_checked=len(exact),
        screened_only_violations=len(rest),
        notes=["errors of the original's compiled C++ (adapter: exact fmax); the bound is its claim"],
    )
    record_output_file(out_dir, "verify.json", json.dumps(res.to_json(), indent=1))
    return res
