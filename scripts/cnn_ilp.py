"""Per-channel ILP formats for certified CNN classifiers (issue 9 §3, cost target of §7).

For each benchmark CNN and its spec regions (box + label): prepare every region (real ranges and
margin lower bounds), run the greedy per-layer search (smallest global F, then per-layer
descent), then the ILP of ``aster_ext.graph_program.ilp`` twice from that result: one format per
layer (``granularity="layer"``) and one per output channel / dense neuron (``"channel"``); each
runs with the linear margin model from the backward error forms and with the interval
adjoints, both from the greedy result (``rounds_*`` counts the solves of both).
Every ILP choice is re-certified by the sound error analysis (forward ∩ backward bound); a
choice that fails is cut off and the ILP re-solved; from the cheapest certified choice, a sound
descent (``aster_ext.graph_program.descent``) lowers one group (a channel, or a whole layer in
the per-layer run) by one bit at a time while the analysis certifies. Costs are ``program_cost``
of the emitted program (ONE multiply-accumulate array per conv layer reused over all output
pixels, each multiplier its output channel's weight width plus the width of the input channel
(dense: input element) it reads, as the emitted code narrows it, lane adders at the F of their
products where a partial sum pays (``program.partial_sums``); hw = multiplier operand bits +
adder bits, the ILP's objective; bilinear = Σ W_w·W_x over multipliers). ``uniform_F`` = the
program with one F everywhere (the smallest certifying one), ``best_layer`` = the cheaper of the
greedy and the per-layer ILP (the cheapest certified per-layer format found), ``ratio`` =
hw(channel ILP) / hw(best_layer) (target <= 0.7), ``ratio_vs_greedy`` and ``ratio_vs_uniform_F``
the same against the greedy per-layer program and the one-F-everywhere program.

Per region, the channel-ILP program is simulated bit-exactly on random, corner and
gradient-attack points (signed steps from the centre along each margin's gradient) and compared
with the real network (float64): ``obs_margin_drop`` = the largest observed drop of y_l - y_k
relative to its certified error bound over all k (<= 1 means never exceeded), label agreement
and overflow counts. ``s_per_region`` = (prepare + greedy + channel ILP + final certification)
/ regions, wall-clock of one process on a shared 2-core machine (noisy; code generation not
included). ``peak_rss_mib``: peak resident memory of the process so far.
Writes results/cnn_ilp.md and results/cnn_ilp.csv (+ cnn_ilp_regions.csv).
With --nets, the other networks' rows are kept from the existing csv files (not recomputed).
Usage: python scripts/cnn_ilp.py [--nets NAME ...] [--time-limit S] [--points N]
       python scripts/cnn_ilp.py --render   (rewrite the .md and ratio columns from the .csv files)
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
NETS = ["Convnet_maxpool", "Convnet_avgpool", "resnet_2b", "cifar_base_kw"]
NET_FIELDS = [
    "network", "regions", "provable", "certified", "global_F", "hw_uniform_F", "hw_greedy", "hw_ilp_layer",
    "hw_ilp_channel", "ratio", "ratio_vs_greedy", "ratio_vs_uniform_F", "bilinear_greedy",
    "bilinear_ilp_channel", "method", "rounds_layer", "rounds_channel", "binaries_channel", "prepare_s",
    "greedy_s", "ilp_layer_s", "ilp_channel_s", "s_per_region", "peak_rss_mib", "time_limit_s",
    "formats_channel",
]  # fmt: skip
REGION_FIELDS = [
    "network", "region", "label", "provable", "certified", "reason", "worst_k", "margin_lb", "margin_err",
    "slack", "obs_margin_drop", "label_agree", "overflows", "n_points",
]  # fmt: skip


def points(net, reg, n: int, seed: int = 0) -> np.ndarray:
    """Random points, the centre and random corners (verify's ``sample_points``) and one
    signed-gradient end point per margin (``gradient_corners``)."""
    from aster_ext.classify_verify import sample_points
    from aster_ext.ops.attack import gradient_corners

    lo, hi = reg.lower.reshape(-1), reg.upper.reshape(-1)
    rand, corners = sample_points(lo, hi, n, np.random.default_rng(seed))
    return np.concatenate([rand, corners, gradient_corners(net, lo, hi, reg.label)])


def formats_summary(net, fracs) -> str:
    """Per rounding node: range of output F and weight F over its channels."""
    from aster_ext.graph_program.program import LINEAR_KINDS, is_rounding_node

    def span(v) -> str:
        a, b = int(np.min(v)), int(np.max(v))
        return f"{a}" if a == b else f"{a}-{b}"

    parts = [f"in F{fracs.input}"]
    for op in net.ops():
        if is_rounding_node(op):
            s = f"{op.name}: out F{span(fracs.out[op.name])}"
            if op.kind in LINEAR_KINDS:
                s += f", w F{span(fracs.weight[op.name])}"
            parts.append(s)
    return "; ".join(parts)


def run_network(stem: str, time_limit: float, n_points: int) -> tuple[dict, list[dict]]:
    from aster_ext import ops
    from aster_ext.benchmark_regions import benchmark_regions
    from aster_ext.frontend.onnx_import import load_onnx
    from aster_ext.graph_program.certify import (
        certify_choice,
        ilp_refine,
        prepare,
        program_cost,
        search_formats,
    )
    from aster_ext.graph_program.errors import analyze_errors
    from aster_ext.graph_program.program import FracChoice
    from aster_ext.graph_program.simulate import simulate_graph

    onnx_path, regs = benchmark_regions(SHARED, ROOT, stem)
    net = load_onnx(onnx_path)
    t0 = time.perf_counter()
    for r in regs:
        prepare(net, r)
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy = search_formats(net, regs)
    greedy.greedy_cost = program_cost(greedy.program).hw
    t_greedy = time.perf_counter() - t0
    row: dict = {"network": stem, "regions": len(regs), "provable": sum(r.provable for r in regs)}
    if greedy.global_frac is None:
        row.update(certified=0, method="no provable region: no search")
        return row, []
    uni_prog, _, _ = certify_choice(net, regs, FracChoice.uniform(net, greedy.global_frac), "TRN")
    results = {}
    for gran in ("layer", "channel"):
        t0 = time.perf_counter()
        res = ilp_refine(net, regs, greedy, "TRN", 0, 32, gran, time_limit, 12)
        results[gran] = (res, time.perf_counter() - t0)
        print(stem, gran, *res.log[-(len(res.ilp.rounds) + 1) :], sep="\n  ", flush=True)
    res_c, t_chan = results["channel"]
    res_l, t_layer = results["layer"]
    hw_c = program_cost(res_c.program).hw
    row.update(
        certified=sum(v.certified for v in res_c.verdicts),
        global_F=greedy.global_frac,
        hw_uniform_F=program_cost(uni_prog).hw,
        hw_greedy=greedy.greedy_cost,
        hw_ilp_layer=program_cost(res_l.program).hw,
        hw_ilp_channel=hw_c,
        bilinear_greedy=program_cost(greedy.program).mult_bilinear,
        bilinear_ilp_channel=program_cost(res_c.program).mult_bilinear,
        method=res_c.method,
        rounds_layer=len(res_l.ilp.rounds),
        rounds_channel=len(res_c.ilp.rounds),
        binaries_channel=res_c.ilp.n_binaries,
        prepare_s=round(t_prep, 1),
        greedy_s=round(t_greedy, 1),
        ilp_layer_s=round(t_layer, 1),
        ilp_channel_s=round(t_chan, 1),
        s_per_region=round((t_prep + t_greedy + t_chan) / len(regs), 1),
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        formats_channel=formats_summary(net, res_c.fracs),
    )
    add_ratios(row)
    prog = res_c.program
    logits = ops.logits_node(net)
    rows = []
    for reg, v in zip(regs, res_c.verdicts, strict=True):
        a = analyze_errors(net, reg.ranges, res_c.fracs, "TRN", reg.label)
        x = points(net, reg, n_points)
        tr = simulate_graph(prog, x)
        y = tr.value(prog, logits)
        yr = ops.evaluate(net, x, upto=logits)[logits].reshape(x.shape[0], -1)
        ks = [k for k in range(yr.shape[1]) if k != reg.label]
        drop = (yr[:, [reg.label]] - yr[:, ks]) - (y[:, [reg.label]] - y[:, ks])
        bound = -a.margin_err.lo[ks]
        rows.append(
            {
                "network": stem,
                "region": reg.name,
                "label": reg.label,
                "provable": "yes" if reg.provable else "no",
                "certified": "yes" if v.certified else "no",
                "reason": v.reason,
                "worst_k": v.worst_k,
                "margin_lb": f"{v.margin_lb:.5g}",
                "margin_err": f"{v.margin_err:.5g}",
                "slack": f"{v.slack:.5g}",
                "obs_margin_drop": f"{float(np.max(drop / np.maximum(bound, 1e-300))):.3f}",
                "label_agree": f"{float(np.mean(y.argmax(axis=1) == yr.argmax(axis=1))):.3f}",
                "overflows": int(sum(tr.overflows.values())),
                "n_points": x.shape[0],
            }
        )
        print(" ".join(f"{k}={rows[-1][k]}" for k in REGION_FIELDS), flush=True)
    return row, rows


def add_ratios(row: dict) -> None:
    """ratio columns (module docstring) from the hw columns."""
    if row.get("hw_ilp_channel", "") == "":
        return
    hw_c = float(row["hw_ilp_channel"])
    best_layer = min(float(row["hw_greedy"]), float(row["hw_ilp_layer"]))
    row["ratio"] = f"{hw_c / best_layer:.3f}"
    row["ratio_vs_greedy"] = f"{hw_c / float(row['hw_greedy']):.3f}"
    row["ratio_vs_uniform_F"] = f"{hw_c / float(row['hw_uniform_F']):.3f}"


def merge_rows(path: Path, new: list[dict], ran: set[str] | None = None) -> list[dict]:
    """Rows of ``path`` (if it exists) whose network was not run, plus ``new``, in NETS order."""
    ran = {r["network"] for r in new} if ran is None else ran
    old = []
    if path.exists():
        with open(path, newline="") as fh:
            old = [r for r in csv.DictReader(fh) if r["network"] not in ran]
    order = {n: i for i, n in enumerate(NETS)}
    return sorted(old + new, key=lambda r: order.get(r["network"], len(NETS)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", "--only", dest="only", nargs="*", choices=NETS, help="default: all")
    ap.add_argument("--time-limit", type=float, default=60.0, help="HiGHS seconds per solve")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .csv files")
    args = ap.parse_args()
    out = ROOT / "results"
    suffix = ""
    net_rows, region_rows = [], []
    if args.render:
        with open(out / f"cnn_ilp{suffix}.csv") as fh:
            net_rows = list(csv.DictReader(fh))
        with open(out / f"cnn_ilp{suffix}_regions.csv") as fh:
            region_rows = list(csv.DictReader(fh))
        for row in net_rows:
            add_ratios(row)
            row["time_limit_s"] = row.get("time_limit_s") or args.time_limit  # csv of an older run
        args.time_limit = float(net_rows[0]["time_limit_s"]) if net_rows else 0.0
    for stem in NETS if not args.render else []:
        if args.only and stem not in args.only:
            continue
        row, rows = run_network(stem, args.time_limit, args.points)
        row["time_limit_s"] = args.time_limit
        net_rows.append(row)
        region_rows += rows
        print(" ".join(f"{k}={row.get(k, '')}" for k in NET_FIELDS), flush=True)
    if args.only and not args.render:  # keep the other networks' rows of the previous run
        net_rows = merge_rows(out / "cnn_ilp.csv", net_rows)
        region_rows = merge_rows(
            out / "cnn_ilp_regions.csv",
            region_rows,
            {r["network"] for r in net_rows if r["network"] in args.only},
        )
        for row in net_rows:
            add_ratios(row)
    with open(out / f"cnn_ilp{suffix}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=NET_FIELDS)
        w.writeheader()
        w.writerows([{k: r.get(k, "") for k in NET_FIELDS} for r in net_rows])
    with open(out / f"cnn_ilp{suffix}_regions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=REGION_FIELDS)
        w.writeheader()
        w.writerows(region_rows)
    doc = (__doc__ or "").split("Writes results")[0].strip().splitlines()
    lines = ["# Per-channel ILP formats for certified CNNs", "", "Written by `scripts/cnn_ilp.py`. " + doc[0]]
    limits = sorted({float(r["time_limit_s"]) for r in net_rows if r.get("time_limit_s") not in (None, "")})
    limit = f"{limits[0]:g} s" if len(limits) == 1 else "per network (column time_limit_s)"
    note = f"HiGHS time limit {limit} per solve, at most 12 solves per search."
    lines += [*doc[1:], "", "AP_TRN, AP_WRAP everywhere; candidate F in [0, 32]; " + note, ""]
    lines += ["| " + " | ".join(NET_FIELDS) + " |", "|" + "---|" * len(NET_FIELDS)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in NET_FIELDS) + " |" for r in net_rows]
    lines += ["", "| " + " | ".join(REGION_FIELDS) + " |", "|" + "---|" * len(REGION_FIELDS)]
    lines += ["| " + " | ".join(str(r[k]) for k in REGION_FIELDS) + " |" for r in region_rows]
    (out / f"cnn_ilp{suffix}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
