"""hls4ml on CNN classifiers: the io types / strategies, and the time to a certified config.

``modes`` (results/hls4ml_cnn_modes.csv): per network of ../shared/benchmarks/cnn and per
(io_type, strategy) in {io_parallel, io_stream} x {Latency, Resource} (ReuseFactor 1; io_parallel
+ Latency is also in results/hls4ml_cnn.csv, on other inputs),
`quantize --backend hls4ml --error ε0` (the certified config, hls4ml's project generated and
compiled by hls4ml itself), then hls_model.predict on per region 40 random points, 10 corners,
the centre, and an adversarial local search against the certificate (on our simulator):
bit-exact = every output equals our simulator's; violations = inputs whose error against the
real network (float64) exceeds their region's certified bound.

``time`` (results/hls4ml_cnn_time.csv): wall clock of the two CLI runs at ε0 on the same spec:
  ours-hls4ml  `aster-ext quantize MODEL --backend hls4ml --error ε0`, minus hls4ml's own
               conversion and compilation (report.json timings); certify = load + type search only
  own          `aster-ext quantize MODEL --task classify --error ε0` (our own graph-program
               backend: per-channel formats searched by the ILP with every region's logit-error
               rows, each logit within ε0, every provable region's label kept)
Both are whole processes (Python start-up and model loading included), run one at a time on a
shared, loaded 2-core machine: the numbers are noisy.

Usage: python scripts/hls4ml_cnn_modes.py {modes,time} [--only NAME ...] [--eps EPS]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from aster_ext.experiments.benchmarks import shared_dir  # noqa: E402
from aster_ext.experiments.hls4ml_tables import (  # noqa: E402
    CNN_NETS as NETS,
)
from aster_ext.experiments.hls4ml_tables import (
    TIME_FIELDS,
    code_version,
    read_csv,
    write_csv,
)
from aster_ext.experiments.script_steps import run_recorded

ROOT = Path(__file__).resolve().parents[1]

WORK = ROOT / "out" / "hls4ml_cnn_modes"
SHARED = shared_dir() / "benchmarks"
MODES_CSV = ROOT / "results" / "hls4ml_cnn_modes.csv"
TIME_CSV = ROOT / "results" / "hls4ml_cnn_time.csv"
MODES = [
    ("io_parallel", "Latency"),
    ("io_stream", "Latency"),
    ("io_parallel", "Resource"),
    ("io_stream", "Resource"),
]
MODE_FIELDS = [
    "network", "io_type", "strategy", "eps", "certified", "cost", "max_err", "bit_exact", "mismatches",
    "violations", "samples", "certify_s", "convert_s", "compile_s", "code", "note",
]  # fmt: skip


def run_mode(name: str, io_type: str, strategy: str, eps: float, seed: int = 0) -> dict[str, object]:
    from aster_ext.hls4ml_backend import cnn as C
    from aster_ext.hls4ml_backend.cnn_run import (
        adversarial_inputs,
        predict,
        quantize_hls4ml_cnn,
        region_inputs,
    )
    from aster_ext.hls4ml_backend.run import Hls4mlOptions

    path = SHARED / "cnn" / f"{name}.onnx"
    work = WORK / f"{name}_{io_type}_{strategy}"
    shutil.rmtree(work, ignore_errors=True)
    opts = Hls4mlOptions(error=eps, io_type=io_type, strategy=strategy)
    res = quantize_hls4ml_cnn(path, opts, work)
    s, regions, prog, cert = res.structure, res.regions, res.program, res.certificate
    x = region_inputs(regions, 40, 10, seed)
    reg = np.repeat(np.arange(len(regions)), 53)
    rng = np.random.default_rng(seed)
    adv = [
        adversarial_inputs(prog, s, rr, rc.bound, rng, iters=10)
        for rr, rc in zip(regions, cert.regions, strict=True)
    ]
    x = np.concatenate([x, *adv])
    reg = np.concatenate([reg, *[np.full(len(a), k) for k, a in enumerate(adv)]])
    y = predict(res.hls_model, prog, x)
    err = np.abs(y - C.real_forward(s, x))
    bound = np.stack([cert.regions[k].bound for k in reg])
    mism = int(np.sum(np.any(y != C.simulate(prog, x), axis=1)))
    t = res.timings
    return {
        "network": name, "io_type": io_type, "strategy": strategy, "eps": eps,
        "certified": f"{cert.max_bound:.4g}", "cost": C.program_cost(prog)["cost"],
        "max_err": f"{float(err.max()):.3g}", "bit_exact": mism == 0, "mismatches": mism,
        "violations": int(np.sum(np.any(err > bound, axis=1))), "samples": len(x),
        "certify_s": round(t["load_s"] + t["certify_s"], 2), "convert_s": round(t["hls4ml_convert_s"], 2),
        "compile_s": round(t["hls4ml_compile_s"], 2),
    }  # fmt: skip


def _cli(args: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[str] | None]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "aster_ext.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, None
    return time.perf_counter() - t0, p


def run_time(name: str, eps: float, timeout: float) -> dict[str, object]:
    model = SHARED / "cnn" / f"{name}.onnx"
    spec = SHARED / "cnn" / f"{name}.spec.json"
    row: dict[str, object] = {"network": name, "eps": eps}
    out = WORK / f"time_{name}_hls4ml"
    shutil.rmtree(out, ignore_errors=True)
    wall, p = _cli(["quantize", str(model), "--spec", str(spec), "--backend", "hls4ml", "--error", str(eps),
                    "--out", str(out), "--quiet"], timeout)  # fmt: skip
    if p is None or p.returncode != 0:
        row["note"] = "hls4ml run failed: " + ("timeout" if p is None else p.stderr.strip()[-120:])
        return row
    rep = json.loads((out / "report.json").read_text())
    tm = rep["timings"]
    hls = tm["hls4ml_convert_s"] + tm["hls4ml_compile_s"]
    row.update(
        hls4ml_total_s=round(wall, 2), hls4ml_convert_compile_s=round(hls, 2), hls4ml_s=round(wall - hls, 2),
        hls4ml_certify_s=round(tm["load_s"] + tm["certify_s"], 2),
        hls4ml_certified=f"{rep['certified_error']:.4g}",
    )  # fmt: skip
    out = WORK / f"time_{name}_own"
    shutil.rmtree(out, ignore_errors=True)
    wall, p = _cli(["quantize", str(model), "--spec", str(spec), "--task", "classify", "--error", str(eps),
                    "--out", str(out), "--quiet"], timeout)  # fmt: skip
    row["own_s"] = round(wall, 2)
    if p is None:
        row.update(own_ok="timeout", note=f"own run stopped after {timeout:.0f} s")
    else:
        row["own_ok"] = "yes" if p.returncode == 0 else f"exit {p.returncode}"
        rep_path = out / "report.json"
        if p.returncode == 0 and rep_path.is_file():
            rep = json.loads(rep_path.read_text())
            cert = rep.get("certified_logit_error")
            row["own_certified"] = f"{cert:.4g}" if isinstance(cert, float) else ""
        elif p.returncode != 0:
            row["note"] = p.stderr.strip().splitlines()[-1][:120] if p.stderr.strip() else ""
    row["ratio"] = round(float(row["hls4ml_s"]) / float(row["own_s"]), 3)
    return row



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["modes", "time"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=1800.0, help="time: per CLI run (s)")
    args = ap.parse_args()
    code = code_version(ROOT)
    nets = [n for n in NETS if not args.only or n in args.only]
    for name in nets:
        if args.what == "modes":
            for io_type, strategy in MODES:
                t0 = time.perf_counter()
                try:
                    row = run_mode(name, io_type, strategy, args.eps)
                except Exception as exc:  # one line per failed run, the table says why
                    row = {"network": name, "io_type": io_type, "strategy": strategy, "eps": args.eps,
                           "note": f"{type(exc).__name__}: {str(exc)[:120]}"}  # fmt: skip
                row["code"] = code
                key = (name, io_type, strategy)
                rows = [r for r in read_csv(MODES_CSV) if (r["network"], r["io_type"], r["strategy"]) != key]
                rows.append({k: str(v) for k, v in row.items()})
                rows.sort(
                    key=lambda r: (NETS.index(r["network"]), MODES.index((r["io_type"], r["strategy"])))
                )
                write_csv(MODES_CSV, MODE_FIELDS, rows)
                print(f"{name} {io_type} {strategy}: {row.get('bit_exact', row.get('note'))} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        else:
            row = run_time(name, args.eps, args.timeout)
            row["code"] = code
            rows = [r for r in read_csv(TIME_CSV) if r["network"] != name] + [
                {k: str(v) for k, v in row.items()}
            ]
            rows.sort(key=lambda r: NETS.index(r["network"]))
            write_csv(TIME_CSV, TIME_FIELDS, rows)
            print(f"{name}: {row}", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "hls4ml_compare.py"), "--tables-only"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
