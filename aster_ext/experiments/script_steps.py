"""The long tables of ``results/`` that the checkout's own scripts write (``reproduce --all``).

The steps of :mod:`.reproduce` rebuild the dense-network tables from sweep stores in about half
an hour; the later tables (hls4ml, CNNs, nonlinear depth, exact tightness, splitting, code size)
are written by the scripts in ``scripts/``, each with its own command line, and take hours on two
cores (hls4ml compiles every configuration it compares). A :class:`ScriptStep` names a table's
script invocations and the files they write, so ``aster-ext experiments reproduce --all`` (or
``--tables NAME``) runs them in one command and records them in ``MANIFEST.json`` like the others.

A script run directly (``python scripts/cnn_ilp.py --time-limit 30``) records itself too: its
``__main__`` calls :func:`run_recorded`, which, after a successful run, writes the table's entry
with the command actually run and, per file whose bytes it changed, the date and commit (the other
files of the table keep their earlier record). Under ``reproduce`` (``SCRIPT_RUN_ENV`` set) the
script leaves that to the step.

The scripts write into the checkout's ``results/`` (their ``ROOT / "results"``): a script step
therefore runs only when the reproduction's results folder is that folder, and only from a
checkout (the scripts are not part of an installed wheel). Each invocation runs in a fresh
process (``sys.executable``) with the checkout as working directory; its output goes to
``WORK/scripts/<step>.log``; a non-zero exit fails the step (the manifest records it and the
other steps still run).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .manifest import git_commit, read_manifest, write_manifest

CHECKOUT = Path(__file__).resolve().parents[2]
#: set by :func:`run_script_step` for its scripts: they leave the manifest entry to the step
SCRIPT_RUN_ENV = "ASTER_EXT_SCRIPT_STEP"


@dataclass(frozen=True)
class ScriptStep:
    """One table of a script: ``runs`` = the argument lists of its invocations, in order."""

    script: str  # file name in scripts/
    runs: tuple[tuple[str, ...], ...]
    writes: tuple[str, ...]  # files of results/ the invocations (re)write
    about: str


#: every table written by a script, in the order ``--all`` runs them (cheap ones first; the hls4ml
#: CNN tables before hls4ml.md, whose CNN section reads them)
SCRIPT_STEPS: dict[str, ScriptStep] = {
    "rom_weight": ScriptStep(
        "rom_weight_sweep.py", ((),), ("rom_weight.csv", "rom_weight.md"),
        "price of a table ROM bit in the refined objective",
    ),
    "off_grid": ScriptStep(
        "off_grid_errors.py", ((),), ("off_grid.csv", "off_grid.md"),
        "errors of inputs off the input grid (settings C/D)",
    ),
    "exact_tightness": ScriptStep(
        "exact_tightness.py", ((),),
        ("exact_tightness.csv", "exact_tightness.md", "exact_tightness_skipped.csv"),
        "certified / true maximum error by the MILP of verify --exact",
    ),
    "exact_tightness_10min": ScriptStep(
        "exact_tightness.py",
        (("--milp-s", "600", "--workers", "2", "--out", "results/exact_tightness_10min"),),
        ("exact_tightness_10min.csv", "exact_tightness_10min.md", "exact_tightness_10min_skipped.csv"),
        "the same with 10 minutes of MILP per network (issue 12's tightness target)",
    ),
    "path_sensitive": ScriptStep(
        "path_sensitive.py", ((),), ("path_sensitive.csv", "path_sensitive.md"),
        "input splitting of refined certificates",
    ),
    "path_sensitive_limits": ScriptStep(
        "path_sensitive_limits.py", ((),), ("path_sensitive_limits.csv", "path_sensitive_limits.md"),
        "where the all-maxLen bound of issue 12's targets comes from and how it falls with sub-boxes",
    ),
    "path_sensitive_ilp": ScriptStep(
        "path_sensitive_ilp.py", ((),), ("path_sensitive_ilp.csv", "path_sensitive_ilp.md"),
        "single-box vs multi-box refined ILP (--split-ilp): hw, bound over the cover, time",
    ),
    "certificate_ceiling": ScriptStep(
        "certificate_ceiling.py", ((),), ("certificate_ceiling.csv", "certificate_ceiling.md"),
        "refined hw at the target relaxed by its tightness: what any tighter certificate could save",
    ),
    "nonlinear_depth": ScriptStep(
        "nonlinear_depth.py",
        (
            ("--neighbours", "gelu:3:64:0.001:A", "silu:3:64:0.001:A", "softplus:3:64:0.01:A"),
            ("--label", "timing", "--depths", "2", "--widths", "64"),
            ("--mnist",),
            (),
            ("--md-only",),
        ),
        (
            "nonlinear_depth.csv", "nonlinear_depth.md", "nonlinear_depth_timing.csv",
            "nonlinear_depth_mnist_after.csv", "nonlinear_depth_neighbours.csv",
        ),
        "refined mode on random smooth-activation nets of depth 2-5 and the MNIST nets",
    ),
    "codegen": ScriptStep(
        "bench_codegen.py", ((),), ("codegen.csv", "codegen.md"),
        "code generation at scale: .cpp size, g++ time and memory",
    ),
    "cnn": ScriptStep(
        "cnn_certify.py", ((),), ("cnn.csv", "cnn.md", "cnn_networks.csv"),
        "certified CNN classifiers per region (greedy per-layer formats)",
    ),
    "cnn_ilp": ScriptStep(
        "cnn_ilp.py", ((),), ("cnn_ilp.csv", "cnn_ilp.md", "cnn_ilp_regions.csv"),
        "per-channel ILP formats for the CNNs",
    ),
    "cnn_separable_model": ScriptStep(
        "cnn_separable_model.py", ((),), ("cnn_separable_model.csv", "cnn_separable_model.md"),
        "per-channel formats: a separable model of the sound analysis (is 0.7x the analysis' limit?)",
    ),
    "cnn_oracle_ceiling": ScriptStep(
        "cnn_oracle_ceiling.py", ((),), ("cnn_oracle_ceiling.csv", "cnn_oracle_ceiling.md"),
        "per-channel vs per-layer under the sound analysis and an observed-error oracle (0.7x ceiling)",
    ),
    "cnn_margins": ScriptStep(
        "cnn_margins.py", ((),), ("cnn_margins.csv", "cnn_margins.md"),
        "margin lower bounds of the real CNNs per region",
    ),
    "cnn_codegen": ScriptStep(
        "cnn_codegen.py", ((),), ("cnn_codegen.csv", "cnn_codegen.md"),
        "CNN C++: size, compile time, bit-exactness",
    ),
    "classify_cli": ScriptStep(
        "classify_cli_times.py", ((),), ("classify_cli.csv", "classify_cli.md"),
        "the classifier CLI end to end (quantize + verify)",
    ),
    "cnn_regress": ScriptStep(
        "cnn_regress.py", ((),), ("cnn_regress.csv", "cnn_regress.md"),
        "an ε on every CNN logit over the whole input box (--task regress on a graph)",
    ),
    "graph_vs_refined": ScriptStep(
        "graph_vs_refined.py", ((),), ("graph_vs_refined.csv", "graph_vs_refined.md"),
        "dense regression on the graph path (whole box) vs the refined mode on Aster's benchmarks",
    ),
    "classify_nonlinear": ScriptStep(
        "classify_nonlinear.py", ((),), ("classify_nonlinear.csv", "classify_nonlinear.md"),
        "tanh / sigmoid MNIST classifiers end to end (table activations in graph programs)",
    ),
    "hls4ml_cnn": ScriptStep(
        "hls4ml_cnn_compare.py", ((),), ("hls4ml_cnn.csv",),
        "hls4ml default / auto / ours on the CNNs",
    ),
    "hls4ml_cnn_backward": ScriptStep(
        "hls4ml_cnn_backward.py", ((),), ("hls4ml_cnn_backward.csv", "hls4ml_cnn_backward.md"),
        "hls4ml CNN certificate: forward intervals vs backward error forms",
    ),
    "hls4ml_cnn_modes": ScriptStep(
        "hls4ml_cnn_modes.py", (("modes",), ("time",)), ("hls4ml_cnn_modes.csv", "hls4ml_cnn_time.csv"),
        "hls4ml io types / strategies and time to a certified CNN config",
    ),
    "hls4ml": ScriptStep(
        "hls4ml_compare.py", ((),), ("hls4ml.csv", "hls4ml.md"),
        "hls4ml default / auto / ours on the dense networks (and the CNN section)",
    ),
    "hls4ml_cnn_ceiling": ScriptStep(
        "hls4ml_cnn_ceiling.py", ((),), ("hls4ml_cnn_ceiling.csv", "hls4ml_cnn_ceiling.md"),
        "hls4ml CNN configs: our certificate of auto's program, and ours at ε relaxed by its tightness",
    ),
}  # fmt: skip


#: files of results/ kept as records of runs that today's code cannot repeat (rows computed with the
#: code before a change, for the before/after comparisons of the tables that read them)
RECORDS: dict[str, str] = {
    "nonlinear_depth_before.csv": "nonlinear_depth's grid on main's code before issue 13's changes",
    "nonlinear_depth_mnist_before.csv": "the MNIST nets on main's code before issue 13's changes",
}


def check_can_run(results: Path, scripts_dir: Path = CHECKOUT / "scripts") -> None:
    """UserError unless the script steps can run: a checkout with scripts/, writing to its results/."""
    if not scripts_dir.is_dir():
        raise UserError(f"the script tables need the checkout's scripts/ folder, not found at {scripts_dir}")
    own = (scripts_dir.parent / "results").resolve()
    if results.resolve() != own:
        raise UserError(
            f"the script tables are written by scripts/ into {own}; run them without --results "
            f"(asked for {results})"
        )


def run_script_step(
    name: str,
    step: ScriptStep,
    results: Path,
    log_dir: Path,
    scripts_dir: Path = CHECKOUT / "scripts",
) -> dict[str, dict[str, Any]]:
    """Run every invocation of ``step``; the manifest entry of its table (files, commands, log, wall
    time). Raises RuntimeError naming the log when an invocation exits with a non-zero status."""
    check_can_run(results, scripts_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", SCRIPT_RUN_ENV: name}
    commands: list[list[str]] = []
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        for args in step.runs:
            cmd = [sys.executable, str(scripts_dir / step.script), *args]
            commands.append(["python", f"scripts/{step.script}", *args])
            fh.write(f"$ {' '.join(commands[-1])}\n")
            fh.flush()
            done = subprocess.run(cmd, cwd=scripts_dir.parent, env=env, stdout=fh, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(commands[-1])} exited with {done.returncode} (log: {log})")
    files = [f for f in step.writes if (results / f).exists()]
    return {
        table_key(name, step): {
            "files": files,
            "commands": [" ".join(c) for c in commands],
            "log": str(log),
            "wall_s": time.perf_counter() - t0,
        }
    }


def table_key(name: str, step: ScriptStep) -> str:
    """The manifest key of a script step's table: its Markdown file, else its first file."""
    return f"{name}.md" if f"{name}.md" in step.writes else step.writes[0]


def steps_of_script(script: str) -> list[str]:
    """The names of the script steps whose script file is ``script`` (a file name): one script may
    write several tables, e.g. the same measurement with a longer time limit into other files."""
    return [name for name, step in SCRIPT_STEPS.items() if step.script == script]


def record_direct_run(
    results: Path,
    name: str,
    step: ScriptStep,
    command: str,
    rewritten: list[str],
    wall_s: float,
    repo: Path = CHECKOUT,
) -> dict[str, Any] | None:
    """Record in ``results/MANIFEST.json`` a direct run of ``step``'s script (``command``, ``wall_s``)
    that rewrote the files ``rewritten`` of the step; the new entry, or None when it rewrote none.

    The entry lists the step's files with, in ``file_runs``, per file the date, commit, command and
    wall time of the run that last wrote it: this run for ``rewritten``, the earlier entry's record
    for the others (an earlier entry without ``file_runs`` lends its own date, commit and
    commands)."""
    if not rewritten:
        return None
    path = results / "MANIFEST.json"
    manifest = read_manifest(path)
    tables = manifest.setdefault("tables", {})
    key = table_key(name, step)
    old = tables.get(key) or {}
    file_runs: dict[str, Any] = dict(old.get("file_runs") or {})
    for f in old.get("files", []):
        file_runs.setdefault(
            f,
            {
                "date_utc": old.get("date_utc", manifest.get("date_utc")),
                "commit": old.get("commit", manifest.get("commit")),
                "command": "; ".join(old.get("commands", [])) or None,
            },
        )
    code = git_commit(repo)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for f in rewritten:
        file_runs[f] = {"date_utc": now, **code, "command": command, "wall_s": wall_s}
    entry = {
        "files": [f for f in step.writes if f in file_runs and (results / f).exists()],
        "file_runs": {f: file_runs[f] for f in step.writes if f in file_runs},
        "commands": [command],
        "wall_s": wall_s,
        "step": name,
        "run": "direct",
        "date_utc": now,
        **code,
    }
    tables[key] = entry
    write_manifest(path, manifest)
    return entry


def _digests(paths: list[Path]) -> list[str | None]:
    """SHA-256 of each file's bytes, None where it does not exist."""
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None for p in paths]


def run_recorded(script_file: str, main: Callable[[], int | None], results: Path | None = None) -> int:
    """Run a script's ``main`` and, when it succeeds and the script is a step's (and not run by
    ``reproduce``), record the run in the manifest (:func:`record_direct_run`; a file counts as
    rewritten when its bytes changed or it is new: a run that rewrites a file identically, e.g. a
    re-render from the csv, leaves the record of the run that computed it). Returns main's exit status
    (None counts as 0), for ``raise SystemExit(run_recorded(__file__, main))``."""
    script = Path(script_file).resolve()
    names = steps_of_script(script.name)
    folder = results if results is not None else script.parent.parent / "results"
    paths = {name: [folder / f for f in SCRIPT_STEPS[name].writes] for name in names}
    before = {name: _digests(p) for name, p in paths.items()}
    t0 = time.perf_counter()
    status = main() or 0
    if status == 0 and names and not os.environ.get(SCRIPT_RUN_ENV):
        command = " ".join(["python", f"scripts/{script.name}", *sys.argv[1:]])
        wall_s = time.perf_counter() - t0
        repo = script.parent.parent
        for name in names:  # each table whose files the run changed
            rewritten = [
                p.name
                for p, b, a in zip(paths[name], before[name], _digests(paths[name]), strict=True)
                if a is not None and a != b
            ]
            try:
                entry = record_direct_run(folder, name, SCRIPT_STEPS[name], command, rewritten, wall_s, repo)
            except UserError as exc:  # someone else's MANIFEST.json: the tables stand, no record
                print(f"not recorded: {exc}", file=sys.stderr)
                return int(status)
            if entry is not None:
                print(f"recorded in {folder / 'MANIFEST.json'}: {', '.join(rewritten)} ({command})")
    return int(status)
