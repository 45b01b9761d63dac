"""Certified fixed-point CNNs end to end (issue 9): per benchmark CNN and region, is the chosen
fixed-point program provably label-preserving on the whole input box?

For every CNN in shared/benchmarks/cnn/ and its 5 regions (box + label from its spec), and
external/cifar_base_kw on the regions of benchmarks/cifar_base_kw.regions.npz (vnnlib boxes of its
spec's files, see scripts/cifar_base_kw_regions.py):
``aster_ext.graph_program.certify.certify_cnn`` computes the real network's ranges and margin
lower bounds (symbolic back-substitution), searches per-layer fractional bits (smallest global F
certifying every provable region, then greedy per-layer decrease; integer bits from range ⊕
error over all regions, per output channel), and certifies each region: margin lower bound >
error bound of the margin for every k != label, and no overflow. Columns per region:
``margin_min`` = min_k of the real margin lower bounds (> 0: provable), ``margin_lb`` and
``margin_err`` at the class ``worst_k`` of least slack (slack = margin_lb_k + err_lo_k, the
certified lower bound of the program's margin y~_label - y~_k), certified or why not;
``ours_obs_margin_err`` = the largest drop of that margin observed on the points below (never
above ``margin_err``). Then, on >= 200 points per region (random + corners + centre), the chosen
program and an all-``ap_fixed<16,6>`` program (hls4ml's default precision; weights truncated as
ap_fixed's constructor does; our exact accumulators, which hls4ml does not have) are simulated
bit-exactly: max |logit error| vs the real network (float64), label agreement with the real
network's prediction, and overflow counts.
Cost: ONE multiply-accumulate array per conv layer reused over all output pixels, each
multiplier as wide as its weight plus the input channel (dense: element) format it reads, each
adder at the F of the products it sums where a partial sum pays (see ``program_cost``).
Times: wall-clock of one process on a shared 2-core machine (noisy); peak = tracemalloc peak
of ``certify_cnn`` for the network.
Writes results/cnn.md, results/cnn.csv and results/cnn_networks.csv; with --nets, the rows of the
other networks are kept from the existing csv files (not recomputed).
Usage: python scripts/cnn_certify.py [--nets NAME ...] [--points N]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
NETS = ["Convnet_maxpool", "Convnet_avgpool", "resnet_2b", "cifar10_small", "cifar_base_kw"]
FIELDS = [
    "network", "region", "label", "provable", "margin_min", "worst_k", "margin_lb", "margin_err", "slack",
    "certified", "reason", "ours_obs_margin_err", "ours_max_logit_err", "ours_label_agree", "ours_overflows",
    "hls16_6_max_logit_err", "hls16_6_label_flips", "hls16_6_overflows", "n_points", "prepare_s",
]  # fmt: skip
NET_FIELDS = [
    "network", "regions", "provable", "certified", "global_F", "formats", "mult_count", "mult_operand_bits",
    "mult_bilinear", "adder_count", "adder_bits", "checks", "search_s", "total_s", "peak_mib",
]  # fmt: skip


def points(lower: np.ndarray, upper: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = n // 2
    rand = lower + rng.random((half, lower.size)) * (upper - lower)
    corners = np.where(rng.random((n - half - 1, lower.size)) < 0.5, lower, upper)
    return np.concatenate([((lower + upper) / 2)[None], rand, corners])


def formats_summary(prog, fracs) -> str:
    from aster_ext.graph_program.program import LINEAR_KINDS, is_rounding_node

    parts = [f"in<{int(prog.input_t.width.max())},{int(prog.input_t.int_bits.max())}>"]
    for op in prog.net.ops():
        if not is_rounding_node(op):
            continue
        nd = prog.nodes[op.name]
        s = f"{op.name}: out F{int(fracs.out[op.name].max())} W<={int(nd.out_t.width.max())}"
        if op.kind in LINEAR_KINDS:
            s += f", w F{int(fracs.weight[op.name].max())} W<={int(nd.weight_width.max())}"
            s += f", acc W<={int(nd.acc_t.width.max())}"
        if op.kind == "avgpool":
            s += f", 1/k F{nd.const_frac}"
        parts.append(s)
    return "; ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", "--only", dest="only", nargs="*", choices=NETS, help="default: all")
    ap.add_argument("--points", type=int, default=200)
    args = ap.parse_args()
    from aster_ext import ops
    from aster_ext.benchmark_regions import benchmark_regions
    from aster_ext.frontend.onnx_import import load_onnx
    from aster_ext.graph_program.certify import certify_cnn
    from aster_ext.graph_program.program import uniform_program
    from aster_ext.graph_program.simulate import simulate_graph

    rows, net_rows = [], []
    for stem in NETS:
        if args.only and stem not in args.only:
            continue
        onnx_path, regs = benchmark_regions(SHARED, ROOT, stem)
        net = load_onnx(onnx_path)
        t0 = time.perf_counter()
        # per-layer formats (the per-channel ILP: cnn_ilp.py); peak = tracemalloc, as this table defines it
        rep = certify_cnn(net, regs, search="greedy", granularity="layer", trace_memory=True)
        total = time.perf_counter() - t0
        prog, res = rep.search.program, rep.search
        hls = uniform_program(net, 16, 6)
        logits = ops.logits_node(net)
        for reg, v, prep_s in zip(regs, res.verdicts, rep.prepare_seconds, strict=True):
            x = points(reg.lower, reg.upper, args.points)
            real = ops.evaluate(net, x, upto=logits)[logits].reshape(x.shape[0], -1)
            real_lab = real.argmax(axis=1)
            obs = {}
            for tag, p in (("ours", prog), ("hls", hls)):
                tr = simulate_graph(p, x)
                y = tr.value(p, logits)
                obs[tag] = (float(np.abs(y - real).max()), y.argmax(axis=1), int(sum(tr.overflows.values())))
                if tag == "ours":  # observed drop of the margin at worst_k: compare with margin_err
                    k, lab = v.worst_k, reg.label
                    drop = float(np.max((real[:, lab] - real[:, k]) - (y[:, lab] - y[:, k])))
            row = {
                "network": stem,
                "region": reg.name,
                "label": reg.label,
                "provable": "yes" if reg.provable else "no",
                "margin_min": f"{v.margin_min:.5g}",
                "worst_k": v.worst_k,
                "margin_lb": f"{v.margin_lb:.5g}",
                "margin_err": f"{v.margin_err:.5g}",
                "slack": f"{v.slack:.5g}",
                "certified": "yes" if v.certified else "no",
                "reason": v.reason,
                "ours_obs_margin_err": f"{drop:.4g}",
                "ours_max_logit_err": f"{obs['ours'][0]:.4g}",
                "ours_label_agree": f"{float(np.mean(obs['ours'][1] == real_lab)):.3f}",
                "ours_overflows": obs["ours"][2],
                "hls16_6_max_logit_err": f"{obs['hls'][0]:.4g}",
                "hls16_6_label_flips": int(np.sum(obs["hls"][1] != real_lab)),
                "hls16_6_overflows": obs["hls"][2],
                "n_points": x.shape[0],
                "prepare_s": round(prep_s, 2),
            }
            rows.append(row)
            print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
        c = rep.cost
        nrow = {
            "network": stem,
            "regions": len(regs),
            "provable": sum(r.provable for r in regs),
            "certified": sum(v.certified for v in res.verdicts),
            "global_F": "" if res.global_frac is None else res.global_frac,
            "formats": formats_summary(prog, res.fracs)
            if res.global_frac is not None
            else "no provable region: no search (program at F = max_frac = 32)",
            "mult_count": c.mult_count,
            "mult_operand_bits": c.mult_operand_bits,
            "mult_bilinear": c.mult_bilinear,
            "adder_count": c.adder_count,
            "adder_bits": c.adder_bits,
            "checks": res.checks,
            "search_s": round(res.seconds, 1),
            "total_s": round(total, 1),
            "peak_mib": round(rep.peak_mib, 1),
        }
        net_rows.append(nrow)
        print(" ".join(f"{k}={nrow[k]}" for k in NET_FIELDS), flush=True)
    out = ROOT / "results"
    if args.only:  # keep the other networks' rows of the previous run
        rows = merge_rows(out / "cnn.csv", rows)
        net_rows = merge_rows(out / "cnn_networks.csv", net_rows)
    with open(out / "cnn.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    with open(out / "cnn_networks.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=NET_FIELDS)
        w.writeheader()
        w.writerows(net_rows)
    write_md(rows, net_rows, out / "cnn.md")
    return 0


def merge_rows(path: Path, new: list[dict]) -> list[dict]:
    """Rows of ``path`` (if it exists) whose network is not in ``new``, plus ``new``, in NETS order."""
    ran = {r["network"] for r in new}
    old = []
    if path.exists():
        with open(path, newline="") as fh:
            old = [r for r in csv.DictReader(fh) if r["network"] not in ran]
    order = {n: i for i, n in enumerate(NETS)}
    return sorted(old + new, key=lambda r: order.get(r["network"], len(NETS)))  # stable within a network


def write_md(rows: list[dict], net_rows: list[dict], path: Path) -> None:
    doc = (__doc__ or "").split("Writes results")[0].strip().splitlines()
    lines = ["# Certified fixed-point CNNs (graph programs, per-region label preservation)", ""]
    lines += ["Written by `scripts/cnn_certify.py`. " + doc[0], *doc[1:], ""]
    lines += [
        "Formats are per-layer uniform fractional bits (F) with per-output-channel integer bits (W<= is",
        "the widest channel): the greedy per-layer search alone. The per-channel ILP (the default of",
        "`quantize --task classify`) is measured in results/cnn_ilp.md (scripts/cnn_ilp.py). AP_TRN,",
        "AP_WRAP everywhere.",
        "",
        "| " + " | ".join(NET_FIELDS) + " |",
        "|" + "---|" * len(NET_FIELDS),
    ]
    lines += ["| " + " | ".join(str(r[k]) for k in NET_FIELDS) + " |" for r in net_rows]
    lines += ["", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r[k]) for k in FIELDS) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
