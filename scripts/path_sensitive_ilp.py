"""Multi-box refined ILP vs single-box refined: hw, certified bound, sub-boxes, time (issue 12).

    python scripts/path_sensitive_ilp.py [--nets SmallNN ...] [--settings A C] [--eps 1e-3]
                                         [--boxes 32] [--time-limit 60]

Per network and setting: ``quantize --mode refined --split-boxes N --split-ilp`` (no output
folder; aster_ext/refined/multibox.py). The single-box refined result is computed first inside the
same run (``hw_refined``, ``bound_refined``, ``refined_s``); the multi-box search then solves one
ILP whose rows hold on every sub-box of a cover, certifies each sub-box and splits those above ε
(``hw_multibox``, ``bound_multibox`` = max over its cover, ``single_pass`` = the same program's
whole-box bound, ``leaves``, ``rounds``, ``multibox_s``). ``observed`` is the largest error
``verify_program`` finds on the multi-box program (random + corner samples, local search, worst
points re-evaluated exactly); the script stops if it exceeds the certificate. ``hw_relaxed`` is
the earlier ``--split-boxes N`` search without ``--split-ilp`` (single-box ILP at a relaxed target,
accepted by its split certificate; same box budget), run separately (not for ACAS Xu: time).
``ACASXU`` = the ACAS Xu net of ../shared/benchmarks/external at ε = 1e-2 in settings B and A (A:
the single-box search certifies nothing, so the multi-box search starts without a base). Times
are wall clock on a shared, loaded 2-core machine. Writes results/path_sensitive_ilp.md and .csv.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from aster_ext.errors import InfeasibleError
from aster_ext.experiments.script_steps import run_recorded
from aster_ext.experiments.tables import by_setting, geomean
from aster_ext.pipeline import QuantizeOptions, quantize
from aster_ext.verify import VerifyBudget, verify_program

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
DEFAULT_NETS = ["SmallNN", "LyapunovNN", "InvPendulumNN", "MountainCarNN", "AcrobotNN", "SinglePendulumNN",
                "AC6", "ACASXU"]  # fmt: skip
FIELDS = ["network", "setting", "eps", "hw_refined", "hw_multibox", "hw_ratio", "bound_refined",
          "bound_multibox", "single_pass", "leaves", "rounds", "observed", "refined_s", "multibox_s",
          "status", "hw_relaxed", "relaxed_ratio", "relaxed_s"]  # fmt: skip


def runs_of(name: str, settings: list[str], eps: float) -> list[tuple[Path, str, float]]:
    if name == "ACASXU":
        return [(SHARED / "external" / "ACASXU_run2a_1_1_batch_2000.onnx", s, 1e-2) for s in ("B", "A")]
    return [(SHARED / "aster" / f"{name}.onnx", s, eps) for s in settings]


def run_one(name: str, path: Path, setting: str, eps: float, boxes: int, time_limit: float) -> dict:
    row: dict = {"network": name, "setting": setting, "eps": eps}
    opts = QuantizeOptions(error=eps, mode="refined", setting=setting, split_boxes=boxes, split_ilp=True,
                           time_limit=time_limit)  # fmt: skip
    t = time.perf_counter()
    try:
        r = quantize(path, opts, None)
    except InfeasibleError as exc:
        msg = str(exc).splitlines()[0]
        part = next((x for x in msg.split("; ") if "sub-boxes" in x), msg)  # the multi-box search's own
        row.update(status=f"infeasible: {part[:200]}",
                   multibox_s=round(time.perf_counter() - t, 1))  # fmt: skip
        return row
    sp = r.report["split_search"]
    tm = r.report["timings"]
    base_ok = sp["hw_before"] is not None
    cert = r.certificate
    ver = verify_program(r.program, r.layers, r.spec.input_lower, r.spec.input_upper, cert.output_bound,
                         cert.input_on_grid, VerifyBudget(samples=800, search_iters=15))  # fmt: skip
    obs = ver.max_observed_error
    if obs > cert.bound:
        raise SystemExit(f"{name} {setting}: observed {obs} above the certificate {cert.bound}: unsound")
    single = [x.get("single_pass") for x in sp["rounds"] if x.get("result") == "accepted"]
    row.update(
        hw_refined=sp["hw_before"] if base_ok else "",
        hw_multibox=sp["hw_after"],
        hw_ratio=f"{sp['hw_after'] / sp['hw_before']:.3f}" if base_ok else "",
        bound_refined=f"{sp['bound_before']:.4g}" if base_ok else "",
        bound_multibox=f"{sp['bound_after']:.4g}",
        single_pass=f"{single[-1]:.4g}" if single and sp["chosen"] is not None else "",
        leaves=sp["leaves"],
        rounds=len(sp["rounds"]),
        observed=f"{obs:.4g}",
        refined_s=round(tm.get("assign_and_certify_s", 0.0), 1),
        multibox_s=round(tm.get("split_search_s", 0.0), 1),
        status="cheaper" if sp["chosen"] is not None and base_ok
        else "certified without a base" if sp["chosen"] is not None
        else "base kept",
    )  # fmt: skip
    return row


def run_relaxed(row: dict, path: Path, boxes: int, time_limit: float) -> None:
    """The earlier search (``--split-boxes N`` without ``--split-ilp``: single-box ILP at a relaxed
    target, accepted by its split certificate) on the same run, for comparison."""
    opts = QuantizeOptions(error=float(row["eps"]), mode="refined", setting=row["setting"], split_boxes=boxes,
                           time_limit=time_limit)  # fmt: skip
    try:
        r = quantize(path, opts, None)
    except InfeasibleError:
        row.update(hw_relaxed="infeasible")
        return
    hw = int(r.report["cost"]["hw"])
    row.update(hw_relaxed=hw, relaxed_s=round(r.report["timings"].get("split_search_s", 0.0), 1))
    if row.get("hw_refined"):
        row["relaxed_ratio"] = f"{hw / int(row['hw_refined']):.3f}"


def write(rows: list[dict], out: Path, boxes: int, time_limit: float) -> None:
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Multi-box refined ILP vs single-box refined (scripts/path_sensitive_ilp.py)",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Run: `--boxes {boxes} --time-limit {time_limit:g}`.",
        "",
        "## Summary (hw multi-box / hw refined, geometric mean over the runs with both)",
        "",
        "| setting | runs | geo-mean hw ratio | min | max | relaxed-target search: geo-mean (runs) |",
        "|---|---|---|---|---|---|",
    ]
    for s, sel in by_setting(rows, "hw_ratio"):
        v = [float(r["hw_ratio"]) for r in sel]
        rel = [float(r["relaxed_ratio"]) for r in sel if r.get("relaxed_ratio")]
        rel_s = f"{geomean(rel):.3f} ({len(rel)} runs)" if rel else ""
        lines.append(f"| {s} | {len(v)} | {geomean(v):.3f} | {min(v):.3f} | {max(v):.3f} | {rel_s} |")
    lines += ["", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="*", default=DEFAULT_NETS)
    ap.add_argument("--settings", nargs="*", default=["A", "C"])
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--boxes", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-relaxed", action="store_true", help="skip the relaxed-target comparison")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "path_sensitive_ilp")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"benchmarks not found at {SHARED}")
    rows = []
    for name in args.nets:
        for path, setting, eps in runs_of(name, args.settings, args.eps):
            rows.append(run_one(name, path, setting, eps, args.boxes, args.time_limit))
            if not args.no_relaxed and name != "ACASXU":
                run_relaxed(rows[-1], path, args.boxes, args.time_limit)
            print(rows[-1], flush=True)
            write(rows, args.out, args.boxes, args.time_limit)
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
