"""Certified classification margins of the benchmark CNNs on their input regions (issue 9 step 1).

For every CNN in shared/benchmarks/cnn/ (5 vnnlib regions each, from its spec) and
external/cifar_base_kw (only the one example region its spec carries: the vnnlib files
themselves are not in shared/), per region: float-sound lower bounds of min_{k != label}
(y_label - y_k) over the box by interval propagation and by DeepPoly/CROWN back-substitution
over the graph (aster_ext.ops), "robust" = the symbolic bound is > 0 (every point of the box
keeps the label), wall time of each analysis, and the peak traced heap (tracemalloc: numpy and
scipy buffers included) of the symbolic one. cifar10_small's properties are targeted (unsafe iff
the target class is the maximum); its table also gives the bound on y_label - y_target.
Upper references (not bounds): the smallest margin on random points and corners of the box, and
the smallest found by a signed-gradient attack (aster_ext.ops.attack, 2 restarts).
Timing is of one process while other jobs may share the machine.
Writes results/cnn_margins.csv and results/cnn_margins.md.
Usage: python scripts/cnn_margins.py [--only NAME ...] [--samples N] [--attack-steps N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
NETS = [
    "cnn/Convnet_avgpool", "cnn/Convnet_maxpool", "cnn/cifar10_small", "cnn/resnet_2b",
    "external/cifar_base_kw",
]  # fmt: skip
FIELDS = [
    "network", "region", "label", "radius", "interval_margin", "symbolic_margin", "robust",
    "target", "symbolic_target_margin", "sampled_min_margin", "attack_min_margin", "interval_s", "symbolic_s",
    "symbolic_peak_mib", "backsub_rows",
]  # fmt: skip


def regions(spec: dict) -> list[dict]:
    if "regions" in spec:
        return spec["regions"]
    ex = spec["vnnlib"]["example"]
    return [{"vnnlib": ex["file"], "label": ex["label"], "lower": ex["lower"], "upper": ex["upper"]}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="network names (stems)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--attack-steps", type=int, default=30)
    args = ap.parse_args()
    from aster_ext import ops
    from aster_ext.frontend.onnx_import import load_onnx
    from aster_ext.ops.attack import pgd_min_margin
    from aster_ext.ops.interpreter import interval_margins

    rows = []
    for rel in NETS:
        stem = rel.split("/")[-1]
        if args.only and stem not in args.only:
            continue
        net = load_onnx(SHARED / f"{rel}.onnx")
        spec = json.loads((SHARED / f"{rel}.spec.json").read_text())
        target_node = ops.logits_node(net)
        for reg in regions(spec):
            lower, upper = np.array(reg["lower"], dtype=np.float64), np.array(reg["upper"], dtype=np.float64)
            label = int(reg["label"])
            t0 = time.perf_counter()
            iv = ops.interval_ranges(net, lower, upper)
            m_iv = interval_margins(iv, label)
            t1 = time.perf_counter()
            tracemalloc.start()
            t2 = time.perf_counter()
            sym, stats = ops.symbolic_ranges(net, lower, upper)
            m_sym = ops.symbolic_margins(sym, label)
            t3 = time.perf_counter()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rng = np.random.default_rng(0)
            n = args.samples
            xs = np.concatenate([
                lower + rng.random((n, lower.size)) * (upper - lower),
                np.where(rng.random((n, lower.size)) < 0.5, lower, upper),
            ])  # fmt: skip
            y = ops.evaluate(net, xs, upto=target_node)[target_node].reshape(xs.shape[0], -1)
            sampled = np.delete(y[:, [label]] - y, label, axis=1).min()
            attack = pgd_min_margin(net, lower, upper, label, steps=args.attack_steps)
            sym_min = float(np.min(np.delete(m_sym, label)))
            target = reg.get("target")
            row = {
                "network": stem,
                "region": Path(reg["vnnlib"]).name,
                "label": label,
                "radius": f"{0.5 * float(np.max(upper - lower)):.5g}",
                "interval_margin": f"{float(np.min(np.delete(m_iv, label))):.5g}",
                "symbolic_margin": f"{sym_min:.5g}",
                "robust": "yes" if sym_min > 0 else "no",
                "target": "" if target is None else int(target),
                "symbolic_target_margin": "" if target is None else f"{float(m_sym[int(target)]):.5g}",
                "sampled_min_margin": f"{float(sampled):.5g}",
                "attack_min_margin": f"{attack:.5g}",
                "interval_s": round(t1 - t0, 3),
                "symbolic_s": round(t3 - t2, 2),
                "symbolic_peak_mib": round(peak / 2**20, 1),
                "backsub_rows": stats.queried_rows,
            }
            rows.append(row)
            print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
    out = ROOT / "results"
    with open(out / "cnn_margins.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    write_md(rows, out / "cnn_margins.md")
    return 0


def write_md(rows: list[dict], path: Path) -> None:
    lines = [
        "# Certified margins of the benchmark CNNs (interval vs. symbolic back-substitution)",
        "",
        "Written by `scripts/cnn_margins.py`. Margin = float-sound lower bound of min over k != label of",
        "y_label - y_k over the region's input box (the real network, exact float32 weights);",
        "robust = symbolic margin > 0. `sampled_min_margin` is the smallest margin found on random points",
        "and random corners of the box, `attack_min_margin` the smallest found by a signed-gradient attack",
        "(`aster_ext.ops.attack`, exact local gradients, 2 restarts): upper references, not bounds;",
        "a negative one is a real counterexample (up to float64 evaluation). cifar_base_kw: only the one",
        "example region of its spec (the oval21 vnnlib files are not in shared/). cifar10_small's",
        "properties are targeted (target = (label + 1) mod 10): `symbolic_target_margin` bounds",
        "y_label - y_target. Times are wall-clock seconds of one process on a shared 2-core machine",
        "(noisy); peak = tracemalloc peak of the symbolic analysis.",
        "",
    ]
    by_net: dict[str, list[dict]] = {}
    for r in rows:
        by_net.setdefault(r["network"], []).append(r)
    lines.append(
        "| network | regions | robust (symbolic) | robust (interval) | median symbolic s | max peak MiB |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name, rs in by_net.items():
        rob = sum(r["robust"] == "yes" for r in rs)
        rob_iv = sum(float(r["interval_margin"]) > 0 for r in rs)
        med = float(np.median([float(r["symbolic_s"]) for r in rs]))
        peak = max(float(r["symbolic_peak_mib"]) for r in rs)
        lines.append(f"| {name} | {len(rs)} | {rob} | {rob_iv} | {med:.2f} | {peak:.1f} |")
    lines += ["", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]) for k in FIELDS) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
