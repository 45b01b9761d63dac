"""Is the per-channel cost target of issue 9 (<= 0.7x the best per-layer formats) out of reach of
the sound analysis itself, or of the search? A *separable model* of the analysis, measured group
by group, estimates the cheapest per-channel choice the analysis could certify.

For each benchmark CNN on its provable spec regions: the per-layer ILP and the per-channel ILP of
results/cnn_ilp.md (greedy start, ``ilp_refine``, HiGHS ``--time-limit`` s per solve) give
``best_layer`` (the cheaper of greedy and per-layer ILP) and ``ref`` (the per-channel choice).
Then, with every knob group (a channel's output F, its weights' F, the input, an avg-pool
channel or constant) at HI = 24 fractional bits except one group g at F, the sound analysis
gives every margin row's error E_r(g, F) (row r = region x class k != label: the downward error
of y_label - y_k); e_gr(F) = E_r(g, F) - E_r(all at HI), measured for F from ref_g + 3 down to
the first F where that group alone breaks a row (E_r >= margin_lb_r) or 0; lower F are excluded,
higher F keep the value at ref_g + 3. The separable model of a choice c is
Σ_g e_gr(c_g) + E_r(all at HI) per row. ``sep_at_ref`` = its largest row / budget at ref (the
analysis itself: <= 1, ref is certified).

If the analysis were superadditive (joint error >= the sum of the single-group errors) the
separable model would be a lower model of it: every certified choice satisfies the model's rows,
and the ILP (``graph_program.ilp.solve_mip`` without a safety margin, the hw cost model of
results/cnn_ilp.md at ref's integer bits, 60 s) over the model's feasible set would give a LOWER
BOUND on the hw of any certified per-channel choice. It is not superadditive in general (single-
group truncation can lower a margin's error, groups interact through the ReLU relaxations), so
``super_gap`` measures it: the largest (model - analysis) / margin_lb over 20 choices next to ref
(15 % of its groups, drawn at random, one bit lower; ``near_joint`` = the largest analysed error /
margin_lb among them): <= 0 means the model stayed below the analysis on every sample (a lower
model there); At the model's optimum (``model_cert``, ``model_slack`` below) the analysis exceeding
the model is again what a lower model allows. ``model_hw`` = the ILP's optimum + (hw(ref) - cost
model(ref)) (the model's constant terms), ``model_ratio`` = model_hw / best_layer, ``model_status``
the HiGHS status (time_limit: the optimum may be lower); ``model_lb_hw`` / ``model_lb_ratio`` the
same from HiGHS's dual bound (no choice the model allows costs less, in the cost model; ref's cost
when the bound is above it: ref is one); ``model_cert`` = whether the analysis certifies the
model's optimum, ``model_slack`` its worst margin slack (negative: margin_lb minus the analysed
error of the worst row). ``evals`` = single-group analyses of every region; ``seconds`` = the whole
network, one process on a shared 2-core machine.
Writes results/cnn_separable_model.md and results/cnn_separable_model.csv.
Usage: python scripts/cnn_separable_model.py [--only NAME ...] [--time-limit S]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from aster_ext.experiments.tables import write_script_table

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
NETS = ("Convnet_maxpool", "Convnet_avgpool", "resnet_2b")
HI = 24  # fractional bits of every other group while one is measured
ABOVE = 3  # measured above the reference choice's F
NEAR_SAMPLES, NEAR_SHARE = 20, 0.15
MODEL_TIME_S = 60.0
FIELDS = [
    "network", "rows", "groups", "evals", "best_layer", "ref_hw", "ref_ratio", "sep_at_ref", "near_joint",
    "super_gap", "model_status", "model_hw", "model_ratio", "model_lb_hw", "model_lb_ratio", "model_cert",
    "model_slack", "seconds",
]  # fmt: skip


def run_network(stem: str, time_limit: float) -> dict[str, object]:
    from aster_ext.benchmark_regions import benchmark_regions
    from aster_ext.frontend.onnx_import import load_onnx
    from aster_ext.graph_program.certify import (
        certify_choice,
        ilp_refine,
        prepare,
        program_cost,
        search_formats,
    )
    from aster_ext.graph_program.errors import analyze_errors, deltas_for
    from aster_ext.graph_program.ilp import cost_model, knob_groups, solve_mip
    from aster_ext.graph_program.sensitivity import MarginModel, block_fracs, knob_blocks, set_block_fracs

    t0 = time.perf_counter()
    onnx_path, regions = benchmark_regions(SHARED, ROOT, stem)
    net = load_onnx(onnx_path)
    for r in regions:
        prepare(net, r)
    greedy = search_formats(net, regions)
    greedy.greedy_cost = program_cost(greedy.program).hw
    layer = ilp_refine(net, regions, greedy, "TRN", 0, 32, "layer", time_limit, 12)
    channel = ilp_refine(net, regions, greedy, "TRN", 0, 32, "channel", time_limit, 12)
    best_layer = min(greedy.greedy_cost, program_cost(layer.program).hw)
    ref = channel.fracs
    prov = [r for r in regions if r.provable]
    deltas = deltas_for(net, prov)
    rows = [(i, k) for i, r in enumerate(prov) for k in range(r.margin_lb.size) if k != r.label]
    margin = np.array([prov[i].margin_lb[k] for i, k in rows])

    def row_error(fc) -> np.ndarray:
        """Every row's downward margin error under the sound analysis of the choice ``fc``."""
        per = [-analyze_errors(net, r.ranges, fc, "TRN", r.label, deltas).margin_err.lo for r in prov]
        return np.array([per[i][k] for i, k in rows])

    blocks = knob_blocks(net)
    groups = knob_groups(blocks, "channel")
    fracs = np.arange(0, 33)
    high = ref.copy()
    for b in blocks:
        set_block_fracs(high, b, np.full(b.n, HI))
    floor = row_error(high)
    big = 1e6 * float(margin.max())  # a candidate the group alone already breaks: excluded
    err = [np.zeros((b.n, fracs.size, len(rows))) for b in blocks]
    evals = 0
    for bi, b in enumerate(blocks):
        start = block_fracs(ref, b)
        for c in range(b.n):
            top = min(int(start[c]) + ABOVE, HI)
            for f in range(top, -1, -1):
                fc = high.copy()
                fr = np.full(b.n, HI)
                fr[c] = f
                set_block_fracs(fc, b, fr)
                e = row_error(fc)
                evals += 1
                err[bi][c, f] = e - floor
                if f == top:
                    err[bi][c, top + 1 :] = e - floor
                if np.any(e >= margin):
                    err[bi][c, :f] = big
                    break
        print(f"{stem}: {b.kind} {b.node} measured ({evals} analyses)", flush=True)
    model = MarginModel(blocks, fracs, rows, margin - floor, err, ref, floor)
    prog, analyses, _ = certify_choice(net, prov, ref, "TRN")
    ref_hw = program_cost(prog).hw
    cost = cost_model(net, blocks, fracs, ref, analyses, "TRN")
    ones = np.ones(len(rows))
    _, _, ref_obj, _, _ = solve_mip(blocks, fracs, groups, cost, [(model, ones)], 0.0, MODEL_TIME_S, ref, 0)
    rng = np.random.default_rng(0)
    gaps, joints = [], []
    for _ in range(NEAR_SAMPLES):
        fc = ref.copy()
        for b in blocks:
            lower = (rng.random(b.n) < NEAR_SHARE).astype(np.int64)
            set_block_fracs(fc, b, np.maximum(block_fracs(ref, b) - lower, 0))
        joint = row_error(fc)
        gaps.append(float(np.max((model.evaluate(fc) + floor - joint) / margin)))
        joints.append(float(np.max(joint / margin)))
    status, best, obj, _, dual = solve_mip(
        blocks, fracs, groups, cost, [(model, ones)], 0.0, MODEL_TIME_S, ref
    )
    row: dict[str, object] = {
        "network": stem, "rows": len(rows), "groups": int(max(g.max() for g in groups)) + 1, "evals": evals,
        "best_layer": best_layer, "ref_hw": ref_hw, "ref_ratio": f"{ref_hw / best_layer:.3f}",
        "sep_at_ref": f"{float(np.max((model.evaluate(ref) + floor) / margin)):.3f}",
        "near_joint": f"{max(joints):.3f}", "super_gap": f"{max(gaps):.3f}", "model_status": status,
    }  # fmt: skip
    if best is not None and obj is not None and ref_obj is not None:
        model_hw = obj + ref_hw - ref_obj
        lb_hw = min(dual if dual is not None else -np.inf, ref_obj) + ref_hw - ref_obj
        _, _, verdicts = certify_choice(net, prov, best, "TRN")
        row.update(
            model_hw=int(round(model_hw)),
            model_ratio=f"{model_hw / best_layer:.3f}",
            model_lb_hw=int(np.floor(lb_hw)) if np.isfinite(lb_hw) else "",
            model_lb_ratio=f"{lb_hw / best_layer:.3f}" if np.isfinite(lb_hw) else "",
            model_cert="yes" if all(v.certified for v in verdicts) else "no",
            model_slack=f"{min(v.slack for v in verdicts):.3g}",
        )
    row["seconds"] = f"{time.perf_counter() - t0:.0f}"
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=NETS, help="default: all three")
    ap.add_argument("--time-limit", type=float, default=30.0, help="HiGHS seconds per solve of the searches")
    args = ap.parse_args()
    rows = []
    for stem in NETS:
        if args.only and stem not in args.only:
            continue
        rows.append(run_network(stem, args.time_limit))
        print(" ".join(f"{k}={rows[-1].get(k, '')}" for k in FIELDS), flush=True)
    write_script_table(
        ROOT / "results" / "cnn_separable_model",
        "Per-channel formats: a separable model of the sound analysis",
        __doc__ or "",
        rows,
        FIELDS,
        args.only,
    )
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
