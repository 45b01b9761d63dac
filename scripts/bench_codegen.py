"""Code generation at scale: generation time, .cpp size, g++ compile time and peak memory, bit-exactness.

    python scripts/bench_codegen.py [--label after] [--nets rand784 tansig]
                                    [--opt -O1] [--timeout 1800] [--samples 20] [--no-compile]

Networks (both quantised by the pipeline, refined mode):
- ``rand784``: a random 784-256-256-10 ReLU network (He-normal weights, seed 0, written as ONNX),
  input box [0, 1]^784, setting C, ε = 1e-2;
- ``tansig``: /work/shared/benchmarks/external/tansig_200_50_onnx.onnx with its spec, setting A,
  ε = 0.001822 (1.05·ε_min, as in results/nonlinear.md).

Per network it times ``generate_hls``, measures the emitted ``<net>.cpp``, compiles it alone
(``g++ -std=c++14 <opt> -c``, one translation unit, ap_types from hls4ml) under
``/usr/bin/time -v`` for wall time and peak resident memory, then links it with the stdin/stdout
harness and compares ``--samples`` random raw inputs with the simulator bit for bit. When the
generator also writes a testbench (``<net>_tb.cpp``), that is compiled and run too.

To measure another checkout's code (e.g. main before a change), run the script with that
checkout first on the import path: ``PYTHONPATH=/path/to/checkout python scripts/bench_codegen.py
--label before`` (the script prints which ``aster_ext`` it imported); ``--label`` names the rows.
Rows of other labels already in results/codegen.csv are kept, so "before" and "after" runs end up
in one table (results/codegen.md + .csv).
Timings are wall-clock on a shared 2-core machine: noisy when other jobs run.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from aster_ext.experiments.benchmarks import shared_dir
from aster_ext.experiments.script_steps import run_recorded

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = shared_dir() / "benchmarks" / "external"
FIELDS = [
    "label",
    "network",
    "sizes",
    "layouts",
    "generate_s",
    "cpp_bytes",
    "compile_s",
    "compile_cpu_s",
    "compile_peak_mb",
    "status",
    "bit_exact",
    "samples",
    "testbench",
]


def random_onnx(path: Path, sizes: list[int], seed: int = 0) -> None:
    """A dense ReLU network (Gemm + Relu, last layer linear) with He-normal weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.standard_normal((b, a)) * np.sqrt(2.0 / a)).astype(np.float32)
        bias = (rng.standard_normal(b) * 0.05).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bias, f"B{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [f"h{i}"], transB=1))
        prev = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "rand784",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, sizes[-1]])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def quantize_net(name: str, tmp: Path):
    from aster_ext.pipeline import QuantizeOptions, quantize

    if name == "rand784":
        model = tmp / "rand784.onnx"
        random_onnx(model, [784, 256, 256, 10])
        opts = QuantizeOptions(
            error=1e-2, mode="refined", setting="C", input_lower=[0.0] * 784, input_upper=[1.0] * 784
        )
    elif name == "tansig":
        model = EXTERNAL / "tansig_200_50_onnx.onnx"
        opts = QuantizeOptions(
            error=0.001822, mode="refined", setting="A", spec_path=EXTERNAL / "tansig_200_50_onnx.spec.json"
        )
    else:
        raise SystemExit(f"unknown network {name}")
    return quantize(model, opts, None).program


def timed_compile(cmd: list[str], timeout: float) -> tuple[str, float, float, float]:
    """(status, wall s, CPU s = user + system, peak RSS MB) of one compiler run under /usr/bin/time -v."""
    t = time.perf_counter()
    try:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timeout > {timeout:.0f} s", time.perf_counter() - t, float("nan"), float("nan")
    wall = time.perf_counter() - t

    def field(name: str) -> float:
        m = re.search(rf"{name}: ([0-9.]+)", proc.stderr)
        return float(m.group(1)) if m else float("nan")

    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    peak = field(r"Maximum resident set size \(kbytes\)") / 1024
    if proc.returncode != 0:
        return f"compile failed: {proc.stderr.strip().splitlines()[0][:80]}", wall, cpu, peak
    return "ok", wall, cpu, peak


def bench_one(name: str, label: str, args: argparse.Namespace) -> dict[str, object]:
    from aster_ext.codegen import compile_harness, generate_harness, generate_hls, layer_layouts, run_harness
    from aster_ext.codegen.compile import CXX_STD, find_ap_types, find_cxx
    from aster_ext.simulate import simulate_raw

    row: dict[str, object] = {"label": label, "network": name}
    with tempfile.TemporaryDirectory(prefix="bench-codegen-") as tmpname:
        tmp = Path(tmpname)
        prog = quantize_net(name, tmp)
        row["sizes"] = "-".join(str(v) for v in [prog.n_in, *(lp.n_out for lp in prog.layers)])
        row["layouts"] = "; ".join(layer_layouts(prog))
        t = time.perf_counter()
        files = generate_hls(prog, tmp / "hls")
        row["generate_s"] = round(time.perf_counter() - t, 2)
        row["cpp_bytes"] = files["source"].stat().st_size
        cmd = [find_cxx(), CXX_STD, args.opt, "-Wno-unknown-pragmas", f"-I{find_ap_types()}"]
        cmd += [f"-I{tmp / 'hls'}", "-c", str(files["source"]), "-o", str(tmp / "net.o")]
        if args.no_compile:
            row["status"] = "not compiled (--no-compile)"
            print(f"{label} {name}: {row}", flush=True)
            return row
        status, wall, cpu, peak = timed_compile(cmd, args.timeout)
        peak_mb = round(peak) if peak == peak else ""  # NaN when the compile timed out
        row.update(status=status, compile_s=round(wall, 1), compile_cpu_s=round(cpu, 1))
        row["compile_peak_mb"] = peak_mb
        print(f"{label} {name}: {row}", flush=True)
        if status != "ok":
            return row
        harness = generate_harness(prog, tmp / "h")
        binary = compile_harness([files["source"], harness], tmp / "h" / "bin", opt=args.opt)
        in_w = prog.input_t.width
        rng = np.random.default_rng(7)
        lo, hi = -(1 << (in_w - 1)), 1 << (in_w - 1)
        x = np.array([[int(v) for v in rng.integers(lo, hi, size=prog.n_in)] for _ in range(args.samples)])
        x = x.astype(object)
        row["bit_exact"] = run_harness(binary, x).tolist() == simulate_raw(prog, x).tolist()
        row["samples"] = args.samples
        tb = files.get("testbench")
        if tb is not None:
            exe = tmp / "tb"
            compile_harness([files["source"], tb], exe, opt=args.opt)
            proc = subprocess.run([str(exe)], capture_output=True, text=True)
            row["testbench"] = "pass" if proc.returncode == 0 else f"FAIL (exit {proc.returncode})"
        else:
            row["testbench"] = "not generated"
    print(f"{label} {name}: {row}", flush=True)
    return row


def write_tables(rows: list[dict[str, object]], opt: str) -> None:
    out = ROOT / "results"
    with open(out / "codegen.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)
    lines = [
        "# Code generation at scale: C++ size, g++ compile time and memory",
        "",
        "Written by `scripts/bench_codegen.py` (one row per label and network; `before` = the code "
        "generator of main before the loop emitter, run with that checkout on PYTHONPATH). Compile: the "
        "network's "
        f"`.cpp` alone, `g++ -std=c++14 {opt} -c` against the hls4ml ap_types headers, under "
        "`/usr/bin/time -v` (wall time, CPU time = user + system, peak resident memory). "
        "bit_exact: the compiled C++ against "
        "the simulator on random raw inputs over the whole input type; testbench: the emitted "
        "`<net>_tb.cpp` (simulator-produced expected outputs) compiled with g++ and run. Timings were "
        "taken on a shared 2-core machine with other jobs running (load average up to ~17): wall times are "
        "inflated and noisy; compile_cpu_s (the compiler's own CPU time) is the load-independent figure.",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |")
    (out / "codegen.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="after")
    ap.add_argument("--nets", nargs="*", default=["rand784", "tansig"])
    ap.add_argument("--opt", default="-O1")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true", help="only generation time and .cpp size")
    args = ap.parse_args()
    mod = importlib.import_module("aster_ext")
    print(f"aster_ext from {mod.__file__}", flush=True)
    rows = [bench_one(n, args.label, args) for n in args.nets]
    old = []
    csv_path = ROOT / "results" / "codegen.csv"
    if csv_path.exists():
        with open(csv_path) as fh:
            old = [r for r in csv.DictReader(fh) if r["label"] != args.label]
    write_tables(old + rows, args.opt)
    print("wrote results/codegen.md and .csv")
    return 0 if all(r.get("bit_exact") in (True, None) or r["status"] != "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
