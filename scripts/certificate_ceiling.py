"""How much hardware a tighter certificate could save at most (the ceiling of issue 12's hw target).

    python scripts/certificate_ceiling.py [--eps 1e-3] [--settings A B C D] [--nets SmallNN ...]
                                          [--workers 2] [--modes-csv results/modes.csv] [--render]

Issue 12 asks path sensitivity for refined programs at <= 0.8x today's refined hw at equal ε and
setting. Path sensitivity changes only the certificate, never the arithmetic: its best case is a
certificate equal to the program's true maximum error. This script estimates what that best case
buys. Per refined run of results/modes.csv at ε with status ok (its hw, certified bound and
observed maximum error; t = certified / observed >= certified / true maximum, since observed <= true
maximum), it runs the same ``quantize --mode refined`` at the relaxed target ε·t in a child process
(the sweep runner's cell: quantize + verify with the modes table's verify budget and ILP time limit)
and reports that program's hw (``hw_relaxed``), certified bound and observed error.

Reading: an exact certificate accepts a program P at ε iff P's true maximum error <= ε. If P's
tightness under the refined analysis were the ε-run's t, the refined analysis accepts P at ε·t
exactly when an exact certificate accepts it at ε; and t_observed overstates the true t, so ε·t
relaxes at least as far as an exact certificate would. ``hw_relaxed / hw`` is therefore an
optimistic estimate (lower than reachable) of the hw ratio any tighter certificate of the refined
programs can give. A relaxed program whose observed error exceeds ε (``over_eps`` = yes) is one no
sound certificate may accept at ε: its row is even more optimistic. The estimate rests on the
tightness carrying over to the cheaper program and on the refined ILP's search (the same ILP, only
the target moved); it is a measurement of headroom, not a bound.
Times are wall clock on a shared 2-core machine. Writes results/certificate_ceiling.csv and .md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from aster_ext.experiments.cell import cell_identity, run_cell
from aster_ext.experiments.grid import DEFAULT_VERIFY, Cell
from aster_ext.experiments.reproduce import CELL_TIME_LIMIT, ILP_TIME_LIMIT
from aster_ext.experiments.runner import results_of
from aster_ext.experiments.script_steps import run_recorded
from aster_ext.experiments.tables import by_setting, geomean

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["network", "setting", "eps", "hw", "certified", "observed", "tightness", "eps_relaxed",
          "status", "hw_relaxed", "hw_ratio", "certified_relaxed", "observed_relaxed", "over_eps",
          "time_s"]  # fmt: skip


def base_runs(
    modes_csv: Path, eps: float, settings: list[str], nets: list[str] | None
) -> list[dict[str, str]]:
    """The refined rows of the modes table at ``eps`` that certified and have a positive observed error."""
    if not modes_csv.is_file():
        raise SystemExit(
            f"{modes_csv} not found: run `aster-ext experiments reproduce` (the modes table) first"
        )
    rows = list(csv.DictReader(modes_csv.open()))
    out = [
        r for r in rows
        if r["mode"] == "refined" and float(r["eps"]) == eps and r["setting"] in settings
        and r["status"] == "ok" and r["tightness"] and (nets is None or r["benchmark"] in nets)
    ]  # fmt: skip
    if not out:
        raise SystemExit(f"no certified refined row at eps={eps:g} in {modes_csv} for settings {settings}")
    return out


def relaxed_cell(base: dict[str, str], model_path: Path) -> Cell:
    """The base run's cell with its target multiplied by its tightness."""
    relaxed = float(base["eps"]) * float(base["tightness"])
    verify = tuple(sorted(DEFAULT_VERIFY.items()))
    return Cell(base["benchmark"], str(model_path), relaxed, base["setting"], "refined", "neuron",
                ILP_TIME_LIMIT, verify)  # fmt: skip


def row_of(base: dict[str, str], cell: Cell, result: dict) -> dict:
    eps = float(base["eps"])
    row = {
        "network": base["benchmark"], "setting": base["setting"], "eps": eps, "hw": int(float(base["hw"])),
        "certified": f"{float(base['certified']):.4g}", "observed": f"{float(base['max_observed']):.4g}",
        "tightness": f"{float(base['tightness']):.3g}", "eps_relaxed": f"{cell.eps:.4g}",
        "status": result["status"], "time_s": round(float(result.get("time_s") or 0.0), 1),
    }  # fmt: skip
    if result["status"] == "ok":
        hw = int(float(result["hw"]))
        observed = float(result["max_observed"])
        row.update(hw_relaxed=hw, hw_ratio=f"{hw / row['hw']:.3f}",
                   certified_relaxed=f"{float(result['certified']):.4g}", observed_relaxed=f"{observed:.4g}",
                   over_eps="yes" if observed > eps else "no")  # fmt: skip
    return row


def markdown(rows: list[dict], modes_csv: str) -> str:
    lines = [
        "# Ceiling of tighter certificates for refined hw (scripts/certificate_ceiling.py)",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Base runs: {modes_csv}. Σ time_s of the relaxed runs: {sum(float(r['time_s']) for r in rows):.0f}"
        " s (the wall time of the run is in MANIFEST.json).",
        "",
        "## Summary (hw at ε·t / hw at ε, geometric mean)",
        "",
        "``within ε``: the same over the runs whose relaxed program's observed error stays <= ε (the",
        "others are programs no sound certificate may accept at ε).",
        "",
        "| setting | runs | geo-mean hw ratio | min | max | relaxed programs observed above ε "
        "| within ε: runs | within ε: geo-mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s, sel in by_setting(rows, "hw_ratio"):
        v = [float(r["hw_ratio"]) for r in sel]
        within = [float(r["hw_ratio"]) for r in sel if r["over_eps"] == "no"]
        lines.append(
            f"| {s} | {len(v)} | {geomean(v):.3f} | {min(v):.3f} | {max(v):.3f} | {len(v) - len(within)} "
            f"| {len(within)} | {geomean(within):.3f} |"
        )
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += [
            "",
            f"Relaxed runs without a program: {len(failed)} ("
            + ", ".join(f"{r['network']} {r['setting']}: {r['status']}" for r in failed)
            + ").",
        ]
    lines += ["", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--eps", type=float, default=1e-3, help="the ε of the base refined runs (default 1e-3)")
    ap.add_argument("--settings", nargs="+", default=["A", "B", "C", "D"], help="settings (default A B C D)")
    ap.add_argument("--nets", nargs="+", help="only these benchmarks (default: every certified base run)")
    ap.add_argument("--workers", type=int, default=2, help="parallel runs (default 2)")
    ap.add_argument("--modes-csv", type=Path, default=ROOT / "results" / "modes.csv",
                    help="the modes table with the base runs (default results/modes.csv)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "certificate_ceiling",
                    help="writes STEM.csv and STEM.md (default results/certificate_ceiling)")  # fmt: skip
    ap.add_argument("--render", action="store_true", help="only rewrite STEM.md from STEM.csv")
    args = ap.parse_args()
    shown = args.modes_csv.relative_to(ROOT) if args.modes_csv.is_relative_to(ROOT) else args.modes_csv
    if args.render:
        with open(args.out.with_suffix(".csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        args.out.with_suffix(".md").write_text(markdown(rows, str(shown)))
        return 0
    bases = base_runs(args.modes_csv, args.eps, args.settings, args.nets)
    aster_dir = ROOT.parent / "shared" / "benchmarks" / "aster"
    if not aster_dir.is_dir():
        raise SystemExit(f"{aster_dir} not found: the Aster benchmarks live in ../shared/benchmarks/aster")
    cells = [relaxed_cell(b, aster_dir / f"{b['benchmark']}.onnx") for b in bases]
    by_key = {c.key: b for c, b in zip(cells, bases, strict=True)}
    done: dict[tuple, dict] = {}
    for cell, result in results_of(cells, CELL_TIME_LIMIT, args.workers, None, run_cell, cell_identity):
        row = done[cell.key] = row_of(by_key[cell.key], cell, result)
        print(f"[{len(done)}/{len(cells)}] {row['network']} {row['setting']}: hw {row['hw']} -> "
              f"{row.get('hw_relaxed', row['status'])}", flush=True)  # fmt: skip
    rows = [done[c.key] for c in cells if c.key in done]  # in the modes table's order
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    args.out.with_suffix(".md").write_text(markdown(rows, str(shown)))
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
