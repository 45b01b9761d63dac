"""Tightness of refined certificates against the true maximum error, by ``verify --exact`` (issue 12).

    python scripts/exact_tightness.py [--nets SmallNN ...] [--eps 1e-3] [--setting A] [--milp-s 60]
                                      [--workers 1] [--out results/exact_tightness]

Per Aster benchmark (../shared/benchmarks/aster, the .onnx network): refined ``quantize`` (no
output folder); the observed maximum error of the program over its box (``verify_program``: 2000
random + corner samples and 30 local-search rounds, worst points re-evaluated exactly); then the
MILP of :mod:`aster_ext.exact_milp` with ``--milp-s`` seconds for all its solves (two per output),
started from the worst sampled input.
The true maximum error lies in [``milp_lower``, ``milp_upper``]: ``milp_lower`` is an error the
program really makes (its input re-evaluated exactly), ``milp_upper`` the solver's bound (inf when
a solve found none). ``tightness`` = certified / true maximum lies in [``tight_lo`` =
certified / milp_upper, ``tight_hi`` = certified / milp_lower]; both are equal when every solve
ended ``optimal``. ``failed`` = solves where HiGHS failed numerically (see aster_ext/exact_milp.py;
their upper end is the difference-interval bound). ``tight_obs`` = certified / observed, the
sampling estimate used elsewhere.
Times: wall clock on a shared 2-core machine (noisy). Writes results/exact_tightness.md and .csv.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from aster_ext.exact_milp import exact_max_error
from aster_ext.experiments.script_steps import run_recorded
from aster_ext.experiments.tables import geomean
from aster_ext.pipeline import QuantizeOptions, quantize
from aster_ext.verify import VerifyBudget, verify_program

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
FIELDS = ["network", "setting", "eps", "n_in", "n_out", "neurons", "certified", "observed", "milp_lower",
          "milp_upper", "optimal", "failed", "tight_lo", "tight_hi", "tight_obs", "integer_cols",
          "quantize_s", "milp_s"]  # fmt: skip


def run_net(name: str, eps: float, setting: str, milp_s: float) -> dict:
    path = SHARED / "aster" / f"{name}.onnx"
    t = time.perf_counter()
    r = quantize(path, QuantizeOptions(error=eps, mode="refined", setting=setting), None)
    q_s = time.perf_counter() - t
    lo, hi = r.spec.input_lower, r.spec.input_upper
    on_grid = r.certificate.input_on_grid
    cert = np.asarray(r.certificate.output_bound, dtype=np.float64)
    budget = VerifyBudget(samples=2000, search_iters=30)
    ver = verify_program(r.program, r.layers, lo, hi, cert, on_grid, budget)
    worst = np.array([ver.worst_input], dtype=np.float64)
    ex = exact_max_error(r.program, r.layers, lo, hi, on_grid, cert, time_limit=milp_s, extra_starts=worst,
                         analysis=r.certificate)  # fmt: skip
    c, low, up = float(cert.max()), ex.lower, ex.upper
    if ver.violations or ex.to_json()["violations"]:
        raise SystemExit(f"{name}: an input exceeds the certificate (unsound)")
    return {
        "network": name, "setting": setting, "eps": eps, "n_in": r.program.n_in, "n_out": r.program.n_out,
        "neurons": sum(lp.n_out for lp in r.program.layers[:-1]),
        "certified": f"{c:.4g}", "observed": f"{ver.max_observed_error:.4g}", "milp_lower": f"{low:.4g}",
        "milp_upper": f"{up:.4g}" if math.isfinite(up) else "inf",
        "optimal": int(all(s.status == "optimal" for s in ex.solves)),
        "failed": sum(s.status.startswith("solver_failed") for s in ex.solves),
        "tight_lo": f"{c / up:.3g}" if math.isfinite(up) and up > 0 else "0",
        "tight_hi": f"{c / low:.3g}" if low > 0 else "inf",
        "tight_obs": f"{c / ver.max_observed_error:.3g}" if ver.max_observed_error > 0 else "inf",
        "integer_cols": ex.n_integer, "quantize_s": round(q_s, 1), "milp_s": round(ex.time_s, 1),
    }  # fmt: skip


def _try_net(name: str, eps: float, setting: str, milp_s: float) -> dict | Exception:
    """:func:`run_net`, or the exception that stopped it (an unsound certificate, SystemExit, still
    stops the run: it is no Exception)."""
    try:
        return run_net(name, eps, setting, milp_s)
    except Exception as exc:
        return exc


def write(rows: list[dict], skipped: dict[str, str], out: Path, milp_s: float) -> None:
    """The measured rows (.csv, .md) and the networks not measured with the reason (their own
    small .csv beside it, listed at the end of the .md)."""
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    with open(skipped_csv(out), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["network", "reason"])
        w.writeheader()
        w.writerows({"network": k, "reason": v} for k, v in sorted(skipped.items()))
    opt = [r for r in rows if int(r["optimal"])]
    lines = [
        "# Refined certificates against the true maximum error (scripts/exact_tightness.py)",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"## Summary ({len(rows)} networks, {milp_s:g} s of MILP each)",
        "",
        f"- every solve optimal (true maximum known): {len(opt)} networks"
        + (f"; tightness geo-mean there {geomean([float(r['tight_hi']) for r in opt]):.3g}" if opt else ""),
        f"- all networks: tightness geo-mean between {geomean([float(r['tight_lo']) for r in rows]):.3g} "
        f"(certified / solver bound) and {geomean([float(r['tight_hi']) for r in rows]):.3g} "
        "(certified / best input found); sampling estimate "
        f"{geomean([float(r['tight_obs']) for r in rows]):.3g}",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(str(r[k]) for k in FIELDS) + " |" for r in rows]
    if skipped:
        lines += ["", f"## Not measured ({len(skipped)} networks)", "", "| network | reason |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(skipped.items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def skipped_csv(out: Path) -> Path:
    return out.with_name(out.name + "_skipped.csv")


def read_previous(out: Path) -> tuple[list[dict], dict[str, str]]:
    """Rows and skipped networks of an earlier run (a run with --nets replaces only those)."""
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    if out.with_suffix(".csv").is_file():
        with open(out.with_suffix(".csv")) as f:
            rows = list(csv.DictReader(f))
    if skipped_csv(out).is_file():
        with open(skipped_csv(out)) as f:
            skipped = {r["network"]: r["reason"] for r in csv.DictReader(f)}
    return rows, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="*", default=None, help="Aster benchmark names (default: all)")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--setting", default="A")
    ap.add_argument("--milp-s", type=float, default=60.0, help="seconds of MILP per network (all solves)")
    ap.add_argument("--workers", type=int, default=1, help="networks measured at once, one process each")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "results" / "exact_tightness",
        help="path of the tables without suffix (.md, .csv and _skipped.csv are written)",
    )
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"benchmarks not found at {SHARED}")
    names = args.nets or sorted(p.stem for p in (SHARED / "aster").glob("*.onnx"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows, skipped = read_previous(args.out) if args.nets else ([], {})
    rows = [r for r in rows if r["network"] not in names]
    for name in names:
        skipped.pop(name, None)

    def done(name: str, result: dict | Exception) -> None:
        if isinstance(result, Exception):  # an infeasible ε or a program the MILP does not model
            skipped[name] = f"{type(result).__name__}: {str(result).splitlines()[0][:160]}".replace("|", "/")
            print(f"{name}: skipped ({skipped[name]})", flush=True)
        else:
            rows.append(result)
            print(result, flush=True)
        rows.sort(key=lambda r: r["network"])
        write(rows, skipped, args.out, args.milp_s)

    if args.workers <= 1:
        for name in names:
            done(name, _try_net(name, args.eps, args.setting, args.milp_s))
    else:  # one network per worker process; each MILP keeps its own time limit
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = {pool.submit(_try_net, n, args.eps, args.setting, args.milp_s): n for n in names}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
