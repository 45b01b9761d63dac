"""``aster-ext experiments reproduce [--quick]``: rebuild the sweep tables of ``results/`` in one command.

One sweep store (``WORK/``) feeds two tables: Aster's benchmarks × ε {1e-3, 1e-5} × settings A–D
× modes {aster, aster-sound, refined} (the full analysis), plus the refined-mode ablation variants
at ε = 1e-3, setting A. From its rows: ``modes.md/.csv`` + ``ablation.csv``,
``aster_reproduction.md/.csv`` and the figures. A second store (``WORK/violations``) holds
``aster`` mode at ε = 1e-3 under a stronger verify budget (3000 samples, 80 search rounds):
``aster_violations.md/.csv``. Then ``MANIFEST.json``. ``--quick`` runs the same on four small
benchmarks (for CI; written to ``out/reproduce-quick/results`` unless ``--results`` says otherwise).

Tables of ``results/`` that this command does not rebuild yet are listed in the manifest under
``not_rebuilt`` with the script that still writes them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

from .benchmarks import QUICK, aster_model_paths, aster_reference_csv
from .cell import ROW_FIELDS
from .figures import write_figures
from .grid import DEFAULT_VERIFY, VARIANTS, Grid
from .manifest import build_manifest, git_commit
from .runner import run_sweep
from .store import ResultStore
from .tables import read_reference, write_modes, write_reproduction, write_violations

EPSILONS = [1e-3, 1e-5]
SETTINGS = ["A", "B", "C", "D"]
MODES = ["aster", "aster-sound", "refined"]
ILP_TIME_LIMIT = 60.0
CELL_TIME_LIMIT = 600.0
VIOLATIONS_VERIFY = {**DEFAULT_VERIFY, "samples": 3000, "search_iters": 80}
NOT_REBUILT = {
    "aster_lp_match.md": "scripts/compare_aster_lp.py",
    "refined_timing.md": "scripts/time_refined.py",
    "cpp_check.md": "scripts/check_cpp.py",
    "tightness_breakdown.md": "scripts/tightness_breakdown.py",
    "activations_e2e.md": "scripts/activations_e2e.py",
    "nonlinear.md": "scripts/mnist_nonlinear.py",
    "tightness_nonlinear.md": "scripts/tightness_nonlinear.py",
}


def grids(quick: bool) -> dict[str, Grid]:
    """The main comparison grid and the ablation grid (refined variants at ε = 1e-3, setting A), one
    store; the stronger-verify grid of ``aster`` mode, its own store (``violations``)."""
    models = aster_model_paths(QUICK if quick else None)
    common = {
        "cell_time_limit": CELL_TIME_LIMIT,
        "ilp_time_limit": ILP_TIME_LIMIT,
        "verify": dict(DEFAULT_VERIFY),
    }
    return {
        "modes": Grid(models=models, eps=EPSILONS, settings=SETTINGS, modes=MODES, **common),
        "ablation": Grid(
            models=models,
            eps=[1e-3],
            settings=["A"],
            modes=["refined"],
            variants=[v for v in VARIANTS if v != "full"],
            **common,
        ),
        "violations": Grid(
            models=models,
            eps=[1e-3],
            settings=SETTINGS,
            modes=["aster"],
            **{**common, "verify": dict(VIOLATIONS_VERIFY)},
        ),
    }


def reproduce(
    results: Path, work: Path, quick: bool, workers: int, ray_address: str | None, progress: bool
) -> dict[str, Any]:
    """Run (or resume) the sweeps in ``work`` and write tables, figures and MANIFEST.json to ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    code = git_commit(Path(__file__).resolve().parents[2])  # the code the cells run, taken at the start
    walls: dict[str, float] = {}
    cells: dict[str, int] = {}
    for name, grid in grids(quick).items():
        summary = run_sweep(grid, _store_dir(work, name), workers, ray_address, progress=progress)
        if summary.crashed:
            names = ", ".join(f"{c.model}/{c.eps:g}/{c.setting}/{c.mode}" for c in summary.crashed[:5])
            raise RuntimeError(
                f"{len(summary.crashed)} cells crashed twice ({names}); rerun with --resume {work}"
            )
        walls[name], cells[name] = summary.wall_s, summary.total
    rows = ResultStore(work, ROW_FIELDS).rows()
    n = len({r["model"] for r in rows})
    header = (
        f"{n} benchmarks x eps {{1e-3, 1e-5}} x settings A-D x 3 modes; sweep wall time "
        f"{(walls['modes'] + walls['ablation']) / 60:.1f} min with {workers} workers"
        f"{' on Ray' if ray_address else ''} (shared machine: times are noisy). Verify budget for every "
        f"mode: {DEFAULT_VERIFY} (random + corner samples, then the adversarial local search; exact "
        "re-evaluation of the worst candidates). `aster` is checked against the error it claims; the "
        "other two against their certificates. Costs are from the emitted types "
        "(`aster_ext.cost.program_cost`). Rebuild: `aster-ext experiments reproduce`; "
        "figures: `figures/`; provenance: MANIFEST.json."
    )
    t = time.perf_counter()
    figures = write_figures(rows, results)
    fig_s = time.perf_counter() - t
    t = time.perf_counter()
    files = write_modes(rows, results, header, figures)
    modes_s = time.perf_counter() - t
    t = time.perf_counter()
    files += write_reproduction(rows, read_reference(aster_reference_csv()), results, DEFAULT_VERIFY)
    repro_s = time.perf_counter() - t
    t = time.perf_counter()
    violation_rows = ResultStore(_store_dir(work, "violations"), ROW_FIELDS).rows()
    files += write_violations(violation_rows, results, VIOLATIONS_VERIFY, 1e-3)
    viol_s = time.perf_counter() - t
    tables = {
        "modes.md": {
            "files": ["modes.md", "modes.csv", "ablation.csv"],
            "sweeps": ["modes", "ablation"],
            "wall_s": walls["modes"] + walls["ablation"] + modes_s,
        },
        "aster_reproduction.md": {
            "files": ["aster_reproduction.md", "aster_reproduction.csv"],
            "sweeps": ["modes"],
            "wall_s": walls["modes"] + repro_s,
        },
        "aster_violations.md": {
            "files": ["aster_violations.md", "aster_violations.csv"],
            "sweeps": ["violations"],
            "wall_s": walls["violations"] + viol_s,
        },
        "figures": {
            "files": sorted(str(p.relative_to(results)) for p in (results / "figures").iterdir()),
            "sweeps": ["modes"],
            "wall_s": fig_s,
        },
    }
    extra = {
        **code,
        "command": "aster-ext experiments reproduce" + (" --quick" if quick else ""),
        "quick": quick,
        "workers": workers,
        "backend": f"ray ({ray_address})" if ray_address else "local process pool",
        "sweep_stores": {k: str(_store_dir(work, k) / "results.csv") for k in walls},
        "sweeps": {
            k: {"cells": cells[k], "wall_s": walls[k], "grid": g.to_json()} for k, g in grids(quick).items()
        },
        "seeds": {"verify": DEFAULT_VERIFY["seed"], "violations_verify": VIOLATIONS_VERIFY["seed"]},
        "not_rebuilt": NOT_REBUILT,
    }
    manifest = build_manifest(tables, extra)
    (results / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _store_dir(work: Path, sweep: str) -> Path:
    """The store of a sweep: modes and ablation share WORK/, the stronger verify has WORK/violations."""
    return work / "violations" if sweep == "violations" else work


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="four small benchmarks (CI, a few minutes)")
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="where tables go (default: results/, or out/reproduce-quick/results with --quick)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="WORK",
        help="continue the sweep store in WORK (default: a new out/reproduce-<UTC time>)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel cells (default 2)")
    p.add_argument(
        "--ray", metavar="ADDRESS", default=None, help="run the cells on Ray ('auto': local instance)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    work = args.resume or Path("out") / f"reproduce{'-quick' if args.quick else ''}-{stamp}"
    results = args.results or (Path("out") / "reproduce-quick" / "results" if args.quick else Path("results"))
    t0 = time.perf_counter()
    address = args.ray or os.environ.get("RAY_ADDRESS") or None
    m = reproduce(results, work, args.quick, args.workers, address, not args.quiet)
    print(
        f"reproduce: {len(m['tables'])} tables/figure sets in {results} from {work / 'results.csv'} "
        f"in {(time.perf_counter() - t0) / 60:.1f} min; manifest {results / 'MANIFEST.json'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aster_ext.experiments", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("reproduce", help="rebuild the sweep tables of results/"))
    c = sub.add_parser("compare", help="compare two versions of a results CSV, ignoring time columns")
    c.add_argument("new", type=Path)
    c.add_argument("old", type=Path)
    c.add_argument("--key", nargs="+", required=True, help="columns that identify a row")
    args = ap.parse_args(argv)
    if args.command == "compare":
        from .compare import compare_csv

        diff = compare_csv(args.new, args.old, args.key)
        print("\n".join(diff.lines()))
        return 0 if not (diff.differing or diff.only_new or diff.only_old) else 1
    return run(args)
