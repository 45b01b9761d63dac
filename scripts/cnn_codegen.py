"""HLS C++ of certified CNN programs (aster_ext/codegen/graph_hls.py): size, compile cost, bit-exactness.

For every CNN in shared/benchmarks/cnn/: ``certify_cnn`` on its 5 spec regions gives the program
(as in scripts/cnn_certify.py; cifar10_small has no provable region, so its program is the
search's fallback at F = 32 with > 64-bit accumulators), ``generate_graph_hls`` writes the
folder, then ``<net>.cpp`` alone is compiled (``g++ -std=c++14 -O1 -c``, ap_types from hls4ml)
under ``/usr/bin/time -v`` for wall time, CPU time and peak memory. The testbench is linked and
run on every region's points (``check_points``: ``--points`` uniform points of the box, as many
random corners plus the two extreme ones, and points of the box scaled 3x about its centre to
exercise wrap-around paths); every raw output is compared with ``simulate_graph``.
One more row, ``dense784_graph``: a random 784-256-256-10 ReLU network (N(0, 1/n_in) weights,
seed 0) as a graph program with F = 10 everywhere and random per-neuron integer bits (output
4..11, accumulator 8..15: many distinct per-neuron formats, the worst case for the number of
channel groups), checked on one box [0, 1]^784 (no certification: a code-size/compile-time probe
for dense layers through this emitter).
Columns: ``groups`` = channel groups (one block of code each), ``formats`` = distinct
per-channel typedefs, ``cpp_bytes`` = size of ``<net>.cpp``; g++ -O1 of ``<net>.cpp``:
``compile_s`` (wall), ``compile_cpu_s`` (user + system, less sensitive to other jobs) and
``compile_peak_mb``; ``run_s`` = C simulation of all regions' points; ``bit_exact`` = regions
whose every output matched / regions; ``inputs_per_region`` (in-box points in brackets);
``load`` = the machine's 1-minute load average when the compile started.
Timings: wall clock on a shared 2-core machine (noisy when other jobs run; see ``load``).
Writes results/cnn_codegen.md and results/cnn_codegen.csv.
Usage: python scripts/cnn_codegen.py [--only NAME ...] [--points N] [--reuse-factor R]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTER_EXT_SHARED", ROOT.parent / "shared")) / "benchmarks"
NETS = ["Convnet_maxpool", "Convnet_avgpool", "resnet_2b", "cifar10_small"]
FIELDS = [
    "network", "certified_regions", "nodes", "groups", "formats", "widest_bits", "generate_s", "cpp_bytes",
    "compile_s", "compile_cpu_s", "compile_peak_mb", "load", "run_s", "bit_exact", "inputs_per_region",
    "certify_s",
]  # fmt: skip


def timed_compile(cmd: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s = user + system, peak RSS MB) of one compiler run under /usr/bin/time -v
    (CPU and peak nan without it)."""
    has_time = Path("/usr/bin/time").is_file()
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd] if has_time else cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"compile failed: {proc.stderr.strip()[-2000:]}")
    def field(name: str) -> float:
        m = re.search(rf"{name}: ([0-9.]+)", proc.stderr)
        return float(m.group(1)) if m else float("nan")

    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    return wall, cpu, field(r"Maximum resident set size \(kbytes\)") / 1024


def dense_probe():
    """The ``dense784_graph`` network, its program and its one region (module docstring)."""
    from aster_ext.graph_program.certify import Region
    from aster_ext.graph_program.program import FracChoice, build_program
    from aster_ext.ir import Op, build_network

    rng = np.random.default_rng(0)
    ops, prev, sizes = [Op("x", "input", (), (784,))], "x", [784, 256, 256, 10]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.normal(0, 1 / np.sqrt(a), (b, a))
        ops.append(Op(f"fc{i}", "affine", (prev,), (b,), {"weight": w, "bias": rng.normal(0, 0.05, b)}))
        prev = f"fc{i}"
        if i < len(sizes) - 2:
            ops.append(Op(f"relu{i}", "act", (prev,), (b,), {"fn": "relu"}))
            prev = f"relu{i}"
    net = build_network("dense784_graph", ops, "float64 (exact)")
    fc = FracChoice.uniform(net, 10)
    out_ib = {n: rng.integers(4, 12, size=v.size) for n, v in fc.out.items()}
    acc_ib = {n: rng.integers(8, 16, size=v.size) for n, v in fc.out.items()}
    prog = build_program(net, fc, out_ib, 2, acc_ib)
    return prog, [Region("box [0,1]^784", np.zeros(784), np.ones(784), 0)]


def measure(stem, prog, regs, certified: str, certify_s: float, args) -> dict[str, object]:
    """Generate, compile (timed) and check one program on its regions; the table row."""
    from aster_ext.codegen.compile import CXX_STD, find_ap_types, find_cxx
    from aster_ext.codegen.graph_hls import (
        check_points,
        compare_with_simulator,
        compile_graph_testbench,
        generate_graph_hls,
    )
    from aster_ext.graph_program.simulate import widest_intermediate_bits

    with tempfile.TemporaryDirectory(prefix="cnn-codegen-") as tmp:
        out = Path(tmp) / "hls"
        t = time.perf_counter()
        paths = generate_graph_hls(prog, out, stem, reuse_factor=args.reuse_factor)
        gen_s = time.perf_counter() - t
        cpp = paths[1]
        text = cpp.read_text()
        cmd = [
            find_cxx(), CXX_STD, "-O1", "-Wno-unknown-pragmas", f"-I{find_ap_types()}", f"-I{out}",
            "-c", str(cpp), "-o", str(Path(tmp) / "net.o"),
        ]  # fmt: skip
        load = os.getloadavg()[0]
        compile_s, compile_cpu, peak = timed_compile(cmd)
        binary = compile_graph_testbench(out, Path(tmp) / "tb", stem)
        exact, n_pts = [], 0
        t = time.perf_counter()
        for i, reg in enumerate(regs):
            pts, _ = check_points(reg.lower, reg.upper, args.points, seed=i)
            ok, msg = compare_with_simulator(prog, binary, pts)
            print(f"{stem} {reg.name}: {msg}", flush=True)
            exact.append(ok)
            n_pts = len(pts)
        run_s = time.perf_counter() - t
    row = {
        "network": stem,
        "certified_regions": certified,
        "nodes": len(prog.nodes),
        "groups": len(re.findall(r"^ +// group \d+: ", text, flags=re.M)),
        "formats": len(re.findall(r"^typedef ap_fixed<[^;]*> fx\d+_m?\d+;", text, flags=re.M)),
        "widest_bits": widest_intermediate_bits(prog),
        "generate_s": round(gen_s, 2),
        "cpp_bytes": len(text.encode()),
        "compile_s": round(compile_s, 1),
        "compile_cpu_s": round(compile_cpu, 1),
        "compile_peak_mb": round(peak, 0),
        "load": round(load, 1),
        "run_s": round(run_s, 1),
        "bit_exact": f"{sum(exact)}/{len(exact)}",
        "inputs_per_region": f"{n_pts} ({2 * args.points + 2} in the box)",
        "certify_s": "" if np.isnan(certify_s) else round(certify_s, 1),
    }
    print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--points", type=int, default=100, help="uniform points per region (and as many corners)")
    ap.add_argument("--reuse-factor", type=int, default=1)
    args = ap.parse_args()
    from aster_ext.frontend.onnx_import import load_onnx
    from aster_ext.graph_program.certify import Region, certify_cnn

    rows = []
    for stem in [*NETS, "dense784_graph"]:
        if args.only and stem not in args.only:
            continue
        if stem == "dense784_graph":
            prog, regs = dense_probe()
            rows.append(measure(stem, prog, regs, "-", float("nan"), args))
            continue
        net = load_onnx(SHARED / "cnn" / f"{stem}.onnx")
        spec = json.loads((SHARED / "cnn" / f"{stem}.spec.json").read_text())
        regs = [
            Region(Path(r["vnnlib"]).name, np.array(r["lower"], float), np.array(r["upper"], float), int(lab))
            for r, lab in ((r, r["label"]) for r in spec["regions"])
        ]
        t = time.perf_counter()
        rep = certify_cnn(net, regs)
        certify_s = time.perf_counter() - t
        prog = rep.search.program
        certified = f"{sum(v.certified for v in rep.search.verdicts)}/{len(regs)}"
        rows.append(measure(stem, prog, regs, certified, certify_s, args))
    out_dir = ROOT / "results"
    suffix = "" if not args.only else "_" + "_".join(args.only)
    with open(out_dir / f"cnn_codegen{suffix}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    doc = (__doc__ or "").split("Writes results")[0].strip().splitlines()
    lines = ["# HLS C++ of certified CNN graph programs", ""]
    lines += ["Written by `scripts/cnn_codegen.py`. " + doc[0]]
    lines += [*doc[1:], "", f"Reuse factor {args.reuse_factor}.", ""]
    lines += ["| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r[k]) for k in FIELDS) + " |" for r in rows]
    (out_dir / f"cnn_codegen{suffix}.md").write_text("\n".join(lines) + "\n")
    return 0 if all(r["bit_exact"].split("/")[0] == r["bit_exact"].split("/")[1] for r in rows) else 1


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
