"""How the objective's price of a table ROM bit (``refined.model.ROM_WEIGHT``) trades hw for ROM.

For each weight w, activation and depth (the random nets of ``scripts/nonlinear_depth.py``,
width 32, input box [-1, 1]^4, ε = 1e-2, setting A) runs ``assign_refined`` with ROM_WEIGHT = w
and records hw cost and table ROM bits of the emitted program (``program_cost``) and the certified
bound. Writes results/rom_weight.csv and .md (per weight: geo-mean hw and ROM relative to the
first weight, and the depth 3 / depth 2 ROM ratio).
Usage: python scripts/rom_weight_sweep.py [--weights 0.25 1 4] [--acts tanh silu ...]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import aster_ext.refined.model as refined_model
    from aster_ext.cost import program_cost
    from aster_ext.experiments.random_nets import random_activation_net
    from aster_ext.refined.solve import assign_refined

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="*", type=float, default=[0.25, 1.0, 4.0])
    ap.add_argument("--acts", nargs="*", default=["tanh", "softplus", "silu", "gelu"])
    ap.add_argument("--eps", type=float, default=1e-2)
    ap.add_argument("--setting", default="A")
    args = ap.parse_args()
    rows = []
    for w in args.weights:
        refined_model.ROM_WEIGHT = w
        for act in args.acts:
            for depth in (2, 3):
                layers = random_activation_net(act, depth, 32)
                n = layers[0].n_in
                t0 = time.perf_counter()
                res = assign_refined(layers, -np.ones(n), np.ones(n), args.eps, args.setting, name="net")
                cost = program_cost(res.program)
                rows.append({"weight": w, "act": act, "depth": depth, "hw": cost.hw,
                             "table_bits": cost.table_bits, "certified": f"{res.certificate.bound:.3g}",
                             "time_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
                print(rows[-1], flush=True)
    out = ROOT / "results"
    with open(out / "rom_weight.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    base = {(r["act"], r["depth"]): r for r in rows if r["weight"] == args.weights[0]}
    lines = [
        "# Price of a table ROM bit in the refined objective (scripts/rom_weight_sweep.py)",
        "",
        f"Random width-32 nets of depth 2 and 3 ({', '.join(args.acts)}), ε = {args.eps:g}, setting "
        f"{args.setting}. Ratios are geo-means over the nets, relative to ROM_WEIGHT = {args.weights[0]:g}.",
        "HiGHS runs under wall-time caps, so a loaded machine can give slightly different solutions.",
        "",
        "| ROM_WEIGHT | hw / base | table ROM / base | depth 3 / depth 2 ROM (median, max) |",
        "|---|---|---|---|",
    ]
    for w in args.weights:
        mine = [r for r in rows if r["weight"] == w]
        hw = np.exp(np.mean([np.log(r["hw"] / base[(r["act"], r["depth"])]["hw"]) for r in mine]))
        rom_base = [max(base[(r["act"], r["depth"])]["table_bits"], 1) for r in mine]
        rom_now = [max(r["table_bits"], 1) for r in mine]
        rom = np.exp(np.mean(np.log(np.array(rom_now) / np.array(rom_base))))
        by = {(r["act"], r["depth"]): r for r in mine}
        d32 = [by[(a, 3)]["table_bits"] / max(by[(a, 2)]["table_bits"], 1) for a in args.acts]
        lines.append(f"| {w:g} | {hw:.3f} | {rom:.3f} | {np.median(d32):.2f}, {max(d32):.2f} |")
    cols = ["weight", "act", "depth", "hw", "table_bits", "certified", "time_s"]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (out / "rom_weight.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
