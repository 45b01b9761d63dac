"""How far a tighter certificate could take the hls4ml CNN configs (issue 10's cost target).

Issue 10 asks ours <= 0.6x hls4ml 'auto' (geo-mean), ours certified at ε = auto's *observed*
error. This script measures, per CNN of results/hls4ml_cnn.csv (scripts/hls4ml_cnn_compare.py),
what stands between the two:

- ``auto_certified``: our sound certificate (forward ∩ backward, every region of the spec) of
  auto's own program (the same 'auto' config the comparison builds: ours' input/weight/bias types
  at ε0, hls4ml's accum/result inference, converted by hls4ml and read back; no compilation);
  ``auto_tightness`` = auto_certified / auto_err: how much more than auto's observed error any
  rounding-interval analysis of that very program certifies;
- ``t`` = ours_certified / ours_err, the tightness of our certificate on our own program
  (>= certified / true maximum, since the observed error is a lower bound of the true one);
- ``relaxed_cost``: ``quantize --backend hls4ml`` at ε·t, i.e. what the same type search buys if
  the certificate were t times tighter — at best an exact certificate, so this estimates the
  cost any tighter certificate could reach (optimistic: it assumes the tightness carries over to
  the cheaper program), and ``relaxed_ratio`` = relaxed_cost / auto_cost.

The summary combines the dense rows of results/hls4ml.csv (their ``ratio_vs_auto``) with the CNN
rows, as results/hls4ml.md does, once as measured and once with the CNNs' relaxed ratios.
Usage: python scripts/hls4ml_cnn_ceiling.py [--render]
Writes results/hls4ml_cnn_ceiling.csv and .md.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from aster_ext.experiments.benchmarks import shared_dir  # noqa: E402
from aster_ext.experiments.hls4ml_tables import read_csv  # noqa: E402
from aster_ext.experiments.script_steps import run_recorded  # noqa: E402
from aster_ext.experiments.tables import geomean  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CNN_CSV = ROOT / "results" / "hls4ml_cnn.csv"
DENSE_CSV = ROOT / "results" / "hls4ml.csv"
OUT = ROOT / "results" / "hls4ml_cnn_ceiling"
FIELDS = [
    "network", "eps0", "auto_cost", "auto_err", "auto_certified", "auto_tightness",
    "ours_eps", "ours_certified", "ours_err", "ours_cost", "ratio_vs_auto",
    "t", "relaxed_eps", "relaxed_certified", "relaxed_cost", "relaxed_ratio", "seconds",
]  # fmt: skip


def run_one(row: dict[str, str], work: Path) -> dict[str, object]:
    from aster_ext.hls4ml_backend import cnn as C
    from aster_ext.hls4ml_backend import cnn_project as CP
    from aster_ext.hls4ml_backend import project as P
    from aster_ext.hls4ml_backend.cnn_run import quantize_hls4ml_cnn
    from aster_ext.hls4ml_backend.run import Hls4mlOptions

    t0 = time.perf_counter()
    name = row["network"]
    path = shared_dir() / "benchmarks" / "cnn" / f"{name}.onnx"
    eps0 = float(row["eps0"])
    ours0 = quantize_hls4ml_cnn(path, Hls4mlOptions(error=eps0), None, build=False)
    cleaned = CP.cleaned_model(path)
    cfg = CP.auto_config(cleaned, ours0.program)  # the comparison's 'auto': ours' types at ε0
    hm = P.convert(cleaned, cfg, work / name, "io_parallel", "Latency", 1)
    auto = CP.read_back(hm, ours0.program, cleaned)
    auto_cost = C.program_cost(auto)["cost"]
    if auto_cost != int(row["auto_cost"]):
        raise SystemExit(
            f"{name}: auto's cost {auto_cost} differs from hls4ml_cnn.csv's {row['auto_cost']}: rerun it"
        )
    auto_cert = C.certify(ours0.structure, ours0.regions, auto)
    auto_bound = math.inf if auto_cert.overflow else auto_cert.max_bound
    eps, cert, err = float(row["ours_eps"]), float(row["ours_certified"]), float(row["ours_err"])
    t = cert / err
    relaxed = quantize_hls4ml_cnn(path, Hls4mlOptions(error=eps * t), None, build=False)
    relaxed_cost = C.program_cost(relaxed.program)["cost"]
    return {
        "network": name, "eps0": eps0, "auto_cost": auto_cost, "auto_err": row["auto_err"],
        "auto_certified": f"{auto_bound:.4g}", "auto_tightness": f"{auto_bound / float(row['auto_err']):.3g}",
        "ours_eps": row["ours_eps"], "ours_certified": row["ours_certified"], "ours_err": row["ours_err"],
        "ours_cost": row["ours_cost"], "ratio_vs_auto": row["ratio_vs_auto"], "t": f"{t:.3g}",
        "relaxed_eps": f"{eps * t:.3g}", "relaxed_certified": f"{relaxed.certificate.max_bound:.3g}",
        "relaxed_cost": relaxed_cost, "relaxed_ratio": f"{relaxed_cost / auto_cost:.3f}",
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def render(rows: list[dict[str, str]], dense: list[dict[str, str]]) -> str:
    d = [float(r["ratio_vs_auto"]) for r in dense if r.get("ratio_vs_auto")]
    d_ok = [float(r["ratio_vs_auto"]) for r in dense if r.get("ratio_vs_auto") and float(r["auto_err"]) <= 1]
    c = [float(r["ratio_vs_auto"]) for r in rows]
    c_rel = [float(r["relaxed_ratio"]) for r in rows]
    lines = [
        "# hls4ml CNN configs: what a tighter certificate could buy (scripts/hls4ml_cnn_ceiling.py)",
        "",
        __doc__.split("\n\n", 1)[1].split("Usage:")[0].strip(),
        "",
        "## Summary",
        "",
        "| geo-mean of ours / auto | measured | CNNs at ε·t (a certificate t times tighter) | target |",
        "|---|---|---|---|",
        f"| {len(c)} CNNs | {geomean(c):.3f} | {geomean(c_rel):.3f} | |",
        f"| {len(d)} dense networks (results/hls4ml.csv) | {geomean(d):.3f} | {geomean(d):.3f} (unchanged) "
        "| <= 0.6 |",
        f"| all {len(d) + len(c)} | {geomean(d + c):.3f} | {geomean(d + c_rel):.3f} | <= 0.6 |",
        f"| dense, leaving out networks where auto overflows (error > 1; {len(d_ok)}) "
        f"| {geomean(d_ok):.3f} | | |",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .csv")
    args = ap.parse_args()
    dense = read_csv(DENSE_CSV)
    if not dense:
        raise SystemExit(f"{DENSE_CSV} is missing or empty: run scripts/hls4ml_compare.py first")
    if args.render:
        rows = read_csv(OUT.with_suffix(".csv"))
    else:
        cnn = [r for r in read_csv(CNN_CSV) if r.get("ratio_vs_auto")]
        if not cnn:
            raise SystemExit(f"{CNN_CSV} has no measured CNN rows: run scripts/hls4ml_cnn_compare.py first")
        rows = []
        with tempfile.TemporaryDirectory(prefix="hls4ml_cnn_ceiling_") as tmp:
            for r in cnn:
                rows.append({k: str(v) for k, v in run_one(r, Path(tmp)).items()})
                print(
                    f"{rows[-1]['network']}: {rows[-1]['ratio_vs_auto']} -> {rows[-1]['relaxed_ratio']}",
                    flush=True,
                )
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with open(OUT.with_suffix(".csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    OUT.with_suffix(".md").write_text(render(rows, dense))
    print(f"wrote {OUT.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
