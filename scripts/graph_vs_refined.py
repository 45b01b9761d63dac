"""Dense regression on the graph path: how far the graph analysis (the CNN path: one region = the
whole input box, per-neuron fractional bits by the ILP over the logits' error rows, then the
sound descent; ``classify.quantize_classify`` with ``whole_box``) is from the refined dense mode
on Aster's 24 benchmarks, at the two targets of results/modes.csv. It measures what
moving ``--task regress`` on dense chains onto the graph backbone would cost today (issue 9,
ARCHITECTURE.md target shape 1); the CLI keeps dense chains on the refined mode.

Columns: graph = certified on the graph path (else the reason), graph_bound = its certified
max |error| over the box, graph_hw = its cost (graph_program certify.program_cost: multiplier
operand bits W_w + W_x + adder bits + ROM bits), graph_s = its wall time (in-process, a shared
2-core machine: noisy); observed = the largest |error| and violations = inputs above the
certified intervals (or overflowing) found by verify's random points, corners and local search
on the graph program (bit-exact simulator); refined_A / refined_B = the refined mode's hw in
settings A and B from results/modes.csv (cost.hw: the same operand + adder bits over the
emitted dense layout; the reason when it certifies nothing), the two settings whose certificate
covers every input of the box (C and D cover only inputs on the input grid); ratio = graph_hw /
the cheaper of refined_A and refined_B where both paths certify. The programs differ in more
than the search: the graph program rounds by truncation with one fractional-bit count per
neuron for its weights, picks the input format freely and has no width cap (fractional bits
up to 32, or up to 48 where a target needs more: ACC10NN, ACC7NN / ACCNew / VertCASVer1-2 at
1e-5, VertCASVer1 at 1e-3), the refined program has per-weight-row formats and the setting's
input length, width cap and rounding rules, and each cost counts the adders of its own emitted
code.
Writes results/graph_vs_refined.md and results/graph_vs_refined.csv.
Usage: python scripts/graph_vs_refined.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from aster_ext.classify import ClassifyOptions, quantize_classify
from aster_ext.classify_verify import SimulatorLogits, read_claims, verify_regions
from aster_ext.errors import InfeasibleError
from aster_ext.experiments.benchmarks import shared_dir
from aster_ext.experiments.tables import geomean, write_script_table

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    "benchmark", "eps", "graph", "graph_bound", "graph_hw", "graph_s", "observed", "violations", "refined_A",
    "refined_B", "ratio",
]  # fmt: skip
SETTINGS = ("A", "B")
VERIFY_SAMPLES, VERIFY_ROUNDS = 600, 20


def refined_cells() -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    """(benchmark, eps) -> setting -> the refined row of results/modes.csv (settings A and B)."""
    out: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    with open(ROOT / "results" / "modes.csv") as fh:
        for r in csv.DictReader(fh):
            if r["mode"] == "refined" and r["setting"] in SETTINGS:
                out.setdefault((r["benchmark"], r["eps"]), {})[r["setting"]] = r
    return out


def graph_cell(model: Path, eps: float) -> dict[str, object]:
    """The graph path's row; its program is then attacked: random points, corners and the local
    search of ``aster-ext verify`` (bit-exact simulator, VERIFY_SAMPLES + VERIFY_ROUNDS x 32 inputs)."""
    t = time.perf_counter()
    try:
        res = quantize_classify(model, ClassifyOptions(error=eps, whole_box=True), None)
    except InfeasibleError as exc:
        low = exc.smallest_error
        why = f"infeasible (smallest bound {low:.3g})" if low is not None else f"infeasible: {exc}"
        return {"graph": why, "graph_s": time.perf_counter() - t}
    seconds = time.perf_counter() - t
    [e] = res.report["regions"]
    claims = read_claims(res.report, len(e["logit_error_lo"]), model.name)
    sim = SimulatorLogits(res.program)
    [check] = verify_regions(res.network, res.regions, claims, sim, VERIFY_SAMPLES, VERIFY_ROUNDS, 0)
    return {
        "graph": "certified" if e["certified"] else f"not certified ({e['reason']})",
        "graph_bound": f"{e['logit_error_bound']:.4g}",
        "graph_hw": res.report["cost"]["hw"],
        "graph_s": seconds,
        "observed": f"{check.max_logit_error:.3g}",
        "violations": check.violations + sim.overflows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="benchmark names (default: all 24)")
    args = ap.parse_args()
    refined = refined_cells()
    folder = shared_dir() / "benchmarks" / "aster"
    rows = []
    for (bench, eps), ref in sorted(refined.items(), key=lambda kv: (kv[0][0], -float(kv[0][1]))):
        if args.only and bench not in args.only:
            continue
        row: dict[str, object] = {"benchmark": bench, "eps": eps}
        row |= {k: "" for k in ("graph_bound", "graph_hw", "observed", "violations")}
        row |= graph_cell(folder / f"{bench}.onnx", float(eps))
        row["graph_s"] = f"{row['graph_s']:.1f}"
        hws = [int(ref[s]["hw"]) for s in SETTINGS if ref[s]["status"] == "ok"]
        for s in SETTINGS:
            row[f"refined_{s}"] = ref[s]["hw"] if ref[s]["status"] == "ok" else ref[s]["status"]
        both = row["graph"] == "certified" and hws
        row["ratio"] = f"{int(row['graph_hw']) / min(hws):.3f}" if both else ""
        rows.append(row)
        print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
    ratios = [float(r["ratio"]) for r in rows if r["ratio"] != ""]
    n_graph = sum(r["graph"] == "certified" for r in rows)
    n_ref = {s: sum(str(r[f"refined_{s}"]).isdigit() for r in rows) for s in SETTINGS}
    summary = {
        "benchmark": "**summary**", "eps": "", "graph": f"{n_graph} of {len(rows)} certified",
        "graph_bound": "", "graph_hw": "", "graph_s": "", "observed": "",
        "violations": sum(int(r["violations"] or 0) for r in rows),
        **{f"refined_{s}": f"{n_ref[s]} of {len(rows)} certified" for s in SETTINGS},
        "ratio": f"geo-mean {geomean(ratios):.3f} over {len(ratios)}" if ratios else "",
    }  # fmt: skip
    title = "Dense regression: the graph path (whole box) vs the refined mode (settings A and B)"
    write_script_table(ROOT / "results" / "graph_vs_refined", title, __doc__ or "", rows + [summary], FIELDS,
                       args.only)  # fmt: skip
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
