"""hls4ml on CNN classifiers: default vs 'auto' vs certified (results/hls4ml_cnn.csv; the CNN section
of results/hls4ml.md, which scripts/hls4ml_compare.py writes from that csv).

Per network (../shared/benchmarks/cnn, the spec's 5 regions; ε0 = 0.01 on the logits):
  default  hls4ml's default fixed<16,6> everywhere (config_from_onnx_model, granularity 'model')
  auto     hls4ml's own 'auto' accum/result inference, with input/weight/bias types = ours at ε0
  ours     `quantize --backend hls4ml` at ε = auto's observed error (also reported: ours at ε0)
Every configuration is generated and compiled by hls4ml itself from the same qonnx-cleaned ONNX
and run through hls_model.predict on the same inputs: per region 60 random points, 20 random
corners, the centre, the inputs of an adversarial local search on auto's own program and of one
against ours' certificate (run on our simulator, which is checked bit-exact with hls4ml on all of
them). Auto's observed error is taken before ours' search (ours is certified at it; also reported:
auto's error from random points, corners and centres alone, and ours' cost at it). Observed error =
max |hls4ml - real network| over the logits (float64 reference); flips = inputs whose argmax
differs from the real network's; ours' violations = inputs whose error exceeds their region's
certified bound. Cost (aster_ext.hls4ml_backend.cnn.program_cost, applied to the types hls4ml
holds for every configuration): bits of the multipliers (W_x + W_w) and adders (W_acc) hls4ml
instantiates in io_parallel/Latency: one K·C_out array for a Conv2D (its pixel loop is pipelined),
n_in·n_out for a Dense, S adders per output of an average pool (unrolled), one result-width adder
per element of a merge Add; max pooling and ReLU are comparisons and not counted; the default
config's ApplyAlpha (bias add): n multipliers and n adders.
Usage: python scripts/hls4ml_cnn_compare.py [--only NAME ...] [--eps EPS]
Timings are wall-clock on a shared machine (noisy).
"""

from __future__ import annotations

import argparse
import csv
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
from aster_ext.experiments.hls4ml_tables import CNN_NETS, code_version, read_csv  # noqa: E402
from aster_ext.experiments.script_steps import run_recorded

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_dir() / "benchmarks"
WORK = ROOT / "out" / "hls4ml_cnn_compare"
CSV = ROOT / "results" / "hls4ml_cnn.csv"
NETS = CNN_NETS
FIELDS = [
    "network", "eps0", "regions",
    "default_cost", "default_err", "default_overflow", "default_flips",
    "auto_cost", "auto_err", "auto_err_sampled", "auto_flips",
    "ours_eps", "ours_certified", "ours_top1_regions", "ours_cost", "ours_err", "ours_flips",
    "ours_bit_exact", "ours_violations", "ours_eps0_certified", "ours_eps0_cost", "ratio_vs_auto",
    "ours_cost_at_sampled", "ratio_at_sampled",
    "ours_certify_s", "samples", "code", "note",
]  # fmt: skip


def run_one(name: str, eps0: float, seed: int = 0) -> dict[str, object]:
    from aster_ext.hls4ml_backend import cnn as C
    from aster_ext.hls4ml_backend import cnn_project as CP
    from aster_ext.hls4ml_backend import project as P
    from aster_ext.hls4ml_backend.cnn_run import (
        adversarial_inputs,
        predict,
        quantize_hls4ml_cnn,
        region_inputs,
    )
    from aster_ext.hls4ml_backend.run import Hls4mlOptions

    path = SHARED / "cnn" / f"{name}.onnx"
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    row: dict[str, object] = {"network": name, "eps0": eps0}
    ours0 = quantize_hls4ml_cnn(path, Hls4mlOptions(error=eps0), None, build=False)
    s, regions = ours0.structure, ours0.regions
    row["regions"] = len(regions)
    cleaned = CP.cleaned_model(path)

    def build(cfg: dict, sub: str):
        hm = P.convert(cleaned, cfg, work / sub, "io_parallel", "Latency", 1)
        P.compile_model(hm)
        return hm, None

    # default fixed<16,6> (hls4ml then keeps the bias Add as an ApplyAlpha layer)
    hm_d, prog_d = build(P.base_config(cleaned, "fixed<16,6>", granularity="model"), "default_prj")
    # auto with ours' input/weight/bias types at ε0
    hm_a, prog_a = build(CP.auto_config(cleaned, ours0.program), "auto_prj")
    prog_a = CP.read_back(hm_a, ours0.program, cleaned)  # auto fuses the bias: our program form

    # the inputs: random, corners, centres, then an adversarial search against ours (below)
    x = region_inputs(regions, 60, 20, seed)
    reg = np.repeat(np.arange(len(regions)), 83)
    ref = C.real_forward(s, x)
    y_a = predict(hm_a, prog_a, x)
    auto_sampled = float(np.max(np.abs(y_a - ref)))
    # auto's observed error also from an adversarial search on its own program per region (our
    # simulator, checked bit-exact with hls_model.predict on every input below)
    rng = np.random.default_rng(seed)
    ones = np.ones(ref.shape[1])
    adv = [adversarial_inputs(prog_a, s, rr, ones, rng, iters=20) for rr in regions]
    reg = np.concatenate([reg, *[np.full(len(a), k) for k, a in enumerate(adv)]])
    x = np.concatenate([x, *adv])
    ref = C.real_forward(s, x)
    y_a = predict(hm_a, prog_a, x)
    auto_err = float(np.max(np.abs(y_a - ref)))
    eps = auto_err if auto_err > 0 else eps0
    ours = quantize_hls4ml_cnn(path, Hls4mlOptions(error=eps), work / "ours")
    # ours at auto's error from random points, corners and centres only (earlier runs' reading)
    ours_s = quantize_hls4ml_cnn(path, Hls4mlOptions(error=auto_sampled or eps0), None, build=False)
    adv = [
        adversarial_inputs(ours.program, s, rr, rc.bound, rng, iters=20)
        for rr, rc in zip(regions, ours.certificate.regions, strict=True)
    ]
    reg = np.concatenate([reg, *[np.full(len(a), k) for k, a in enumerate(adv)]])
    x = np.concatenate([x, *adv])
    ref = C.real_forward(s, x)
    lab = np.argmax(ref, axis=1)

    def observed(hm, prog) -> tuple[np.ndarray, float, int]:
        y = predict(hm, prog, x)
        return y, float(np.max(np.abs(y - ref))), int(np.sum(np.argmax(y, axis=1) != lab))

    y_d, err_d, fl_d = observed(hm_d, prog_d)
    # a sound range of the real network (any region) that leaves fixed<16,6>'s [-32, 32)
    rng_hi = max(float(np.max(iv.mag())) for rr in regions for iv in rr.ranges.values())
    row.update(
        default_cost=hls_model_cost(hm_d),
        default_err=f"{err_d:.3g}",
        default_overflow="yes" if rng_hi >= 32 or err_d > 1 else "no",
        default_flips=fl_d,
    )
    y_a, err_a, fl_a = observed(hm_a, prog_a)
    assert hls_model_cost(hm_a) == C.program_cost(prog_a)["cost"]  # one cost function
    if not np.array_equal(y_a, C.simulate(prog_a, x)):
        raise RuntimeError("auto: our simulator disagrees with hls_model.predict")
    row.update(
        auto_cost=C.program_cost(prog_a)["cost"],
        auto_err=f"{err_a:.3g}",
        auto_err_sampled=f"{auto_sampled:.3g}",
        auto_flips=fl_a,
    )
    y_o, err_o, fl_o = observed(ours.hls_model, ours.program)
    bound = np.stack([ours.certificate.regions[k].bound for k in reg])
    row.update(
        ours_eps=f"{eps:.3g}",
        ours_certified=f"{ours.certificate.max_bound:.3g}",
        ours_top1_regions=f"{sum(r.top1_preserved for r in ours.certificate.regions)}/"
        f"{sum(float(np.min(np.delete(r.margin_lb, r.label))) > 0 for r in regions)}/{len(regions)}",
        ours_cost=C.program_cost(ours.program)["cost"],
        ours_err=f"{err_o:.3g}",
        ours_flips=fl_o,
        ours_bit_exact=bool(np.array_equal(y_o, C.simulate(ours.program, x))),
        ours_violations=int(np.sum(np.any(np.abs(y_o - ref) > bound, axis=1))),
        ours_eps0_certified=f"{ours0.certificate.max_bound:.3g}",
        ours_eps0_cost=C.program_cost(ours0.program)["cost"],
        ours_certify_s=round(ours0.timings["load_s"] + ours0.timings["certify_s"], 2),
        samples=len(x),
    )
    row["ratio_vs_auto"] = round(int(row["ours_cost"]) / int(row["auto_cost"]), 3)
    row["ours_cost_at_sampled"] = C.program_cost(ours_s.program)["cost"]
    row["ratio_at_sampled"] = round(int(row["ours_cost_at_sampled"]) / int(row["auto_cost"]), 3)
    return row


def hls_model_cost(hm) -> int:
    """program_cost's rule on any converted hls4ml model, from its layers' types; an ApplyAlpha
    (the bias Add hls4ml keeps when the Dense result is not 'auto') counts n multipliers
    (W_x + W_scale) and n adders (W_result)."""
    cost = 0
    for ly in hm.get_layers():
        cls = ly.class_name
        if cls in ("Input", "Reshape", "Transpose", "Activation", "ReLU"):
            continue
        wx = ly.get_input_variable().type.precision.width
        t = ly.types
        if cls in ("Conv2D", "PointwiseConv2D", "Dense"):
            n = (
                int(ly.get_attr("filt_height")) * int(ly.get_attr("filt_width")) * int(ly.get_attr("n_chan"))
                * int(ly.get_attr("n_filt"))
                if cls != "Dense"
                else int(ly.get_attr("n_in")) * int(ly.get_attr("n_out"))
            )  # fmt: skip
            cost += n * (wx + t["weight_t"].precision.width + t["accum_t"].precision.width)
        elif cls == "Pooling2D":
            if str(ly.get_attr("pool_op")).lower() == "average":
                n_out = (
                    int(ly.get_attr("out_height"))
                    * int(ly.get_attr("out_width"))
                    * int(ly.get_attr("n_filt"))
                )
                size = int(ly.get_attr("pool_height")) * int(ly.get_attr("pool_width"))
                cost += n_out * size * t["accum_t"].precision.width
        elif cls == "Merge" and str(ly.get_attr("op")).lower() == "add":  # one res_T adder per element
            out = ly.get_output_variable()
            cost += int(np.prod(out.shape)) * out.type.precision.width
        elif cls == "ApplyAlpha":
            n = int(np.prod(ly.get_output_variable().shape))
            res_w = ly.get_output_variable().type.precision.width
            cost += n * (wx + t["scale_t"].precision.width + res_w)
        else:
            raise ValueError(f"no cost rule for hls4ml layer {ly.name} ({cls})")
    return cost



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--eps", type=float, default=0.01)
    args = ap.parse_args()
    rows = read_csv(CSV)
    code = code_version(ROOT)
    for name in NETS:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            row = run_one(name, args.eps)
        except Exception as exc:  # one line per failed network, the table says why
            row = {"network": name, "eps0": args.eps, "note": f"{type(exc).__name__}: {str(exc)[:120]}"}
        row["code"] = code
        rows = [r for r in rows if r["network"] != name] + [{k: str(v) for k, v in row.items()}]
        rows.sort(key=lambda r: NETS.index(r["network"]) if r["network"] in NETS else len(NETS))
        CSV.parent.mkdir(parents=True, exist_ok=True)
        with open(CSV, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        print(
            f"{name}: {row.get('ratio_vs_auto', row.get('note'))} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    # rewrite results/hls4ml.md (dense table from its csv + this CNN section)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "hls4ml_compare.py"), "--tables-only"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
