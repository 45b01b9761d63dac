"""Forward intervals vs backward error forms on the hls4ml CNN certificate (results/hls4ml_cnn_backward.*).

For each CNN of ../shared/benchmarks/cnn (the spec's 5 regions) and a few uniform fractional-bit
programs (every type F bits; aster_ext.hls4ml_backend.cnn.uniform_fracs), the certified logit
error bound max |E| per region from the forward interval walk alone and from the certificate
(forward ∩ backward, aster_ext/hls4ml_backend/cnn_backward.py), and the smallest margin-error lower
bound both give; then the time of one certification of the 5 regions with and without the
backward pass (median of 5). Usage: python scripts/hls4ml_cnn_backward.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np

from aster_ext.experiments.benchmarks import shared_dir
from aster_ext.experiments.hls4ml_tables import CNN_NETS
from aster_ext.experiments.script_steps import run_recorded
from aster_ext.hls4ml_backend import cnn as C
from aster_ext.hls4ml_backend.cnn_run import analyse_cnn

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "results" / "hls4ml_cnn_backward.csv"
MD = ROOT / "results" / "hls4ml_cnn_backward.md"
FRACS = (12, 16, 20)
FIELDS = [
    "network",
    "F",
    "region",
    "forward_bound",
    "bound",
    "ratio",
    "forward_margin_err_lo",
    "margin_err_lo",
]


def forward_only(s: C.CnnStructure, rr: C.RegionRanges, prog: C.CnnProgram) -> tuple[float, float]:
    """(max |E|, min margin error lower bound) of the forward interval walk alone."""
    rc = C.certify_region(s, rr, prog, "none")
    m = np.delete(rc.margin_error_lo(), rr.label)
    return rc.max_bound, float(m.min())


def certify_times(
    s: C.CnnStructure, regions: list[C.RegionRanges], prog: C.CnnProgram, reps: int = 5
) -> tuple[float, float]:
    """Median seconds of one certification of every region: forward walk only, full certificate."""
    fwd, both = [], []
    for _ in range(reps):
        t = time.perf_counter()
        for rr in regions:
            forward_only(s, rr, prog)
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        C.certify(s, regions, prog)
        both.append(time.perf_counter() - t)
    return statistics.median(fwd), statistics.median(both)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="network names (default: every CNN)")
    args = ap.parse_args()
    bench = shared_dir() / "benchmarks" / "cnn"
    rows: list[dict[str, object]] = []
    times: list[tuple[str, float, float]] = []
    for name in args.only or CNN_NETS:
        _, s, regions, _ = analyse_cnn(bench / f"{name}.onnx", bench / f"{name}.spec.json")
        for f in FRACS:
            prog, cert = C.build_program(s, regions, f, C.uniform_fracs(s, f))
            if not cert.ok:
                print(f"{name} F={f}: overflow ({cert.overflow[0]}), skipped", flush=True)
                continue
            for rr, rc in zip(regions, cert.regions, strict=True):
                fb, fm = forward_only(s, rr, prog)
                m = float(np.delete(rc.margin_error_lo(), rr.label).min())
                rows.append(dict(network=name, F=f, region=rr.name, forward_bound=f"{fb:.6g}",
                                 bound=f"{rc.max_bound:.6g}", ratio=f"{fb / rc.max_bound:.4g}",
                                 forward_margin_err_lo=f"{fm:.6g}", margin_err_lo=f"{m:.6g}"))  # fmt: skip
            print(f"{name} F={f}: forward/backward " + " ".join(r["ratio"] for r in rows[-len(regions):]),
                  flush=True)  # fmt: skip
            if f == FRACS[1]:
                times.append((name, *certify_times(s, regions, prog)))
    CSV.parent.mkdir(exist_ok=True)
    with CSV.open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    lines = [
        "# hls4ml CNN certificate: forward intervals vs backward error forms",
        "",
        "`python scripts/hls4ml_cnn_backward.py`. Per network and uniform program (every type F "
        "fractional bits), the logit error bound max |E| of the forward interval walk alone and of "
        "the certificate (forward ∩ backward), per region; `ratio` = forward / certificate (> 1: the "
        "backward pass is tighter). Margin columns: the smallest lower bound of the error of "
        "y~_l - y~_k over k (the closer to 0, the tighter). Rows per region in hls4ml_cnn_backward.csv.",
        "",
        "| network | F | ratio min | ratio median | ratio max | margin err lo, forward "
        "| margin err lo, certificate |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["network"] for r in rows):
        for f in FRACS:
            sel = [r for r in rows if r["network"] == name and r["F"] == f]
            if not sel:
                continue
            ratios = [float(r["ratio"]) for r in sel]
            fm = min(float(r["forward_margin_err_lo"]) for r in sel)
            bm = min(float(r["margin_err_lo"]) for r in sel)
            lines.append(f"| {name} | {f} | {min(ratios):.3g} | {statistics.median(ratios):.3g} | "
                         f"{max(ratios):.3g} | {fm:.4g} | {bm:.4g} |")  # fmt: skip
    lines += [
        "",
        f"Time of one certification of the 5 regions at F = {FRACS[1]} (median of 5, shared 2-core machine):",
        "",
        "| network | forward only (s) | forward + backward (s) |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {a:.3f} | {b:.3f} |" for n, a, b in times]
    MD.write_text("\n".join(lines) + "\n")
    print(f"wrote {CSV.relative_to(ROOT)} and {MD.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
