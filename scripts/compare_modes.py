#!/usr/bin/env python
"""`aster`, `aster-sound` and `refined` side by side on the 24 Aster benchmarks, plus an ablation.

For every benchmark (``/work/shared/benchmarks/aster/NAME.scala``; VertCASVer1 as ``.onnx`` with
its ``NAME.spec.json``), ε ∈ {1e-3, 1e-5} and setting A–D (same input format, input error and
[minLen, maxLen] for every mode) each mode runs ``analyse`` (assignment + certificate), code
generation into a temporary directory, ``program_cost`` on the emitted types and ``verify_program``
with one fixed budget (``VERIFY`` below) for the tightness ratio certified / max observed and the
violation count. ``aster`` is verified against the error it claims (it has no certificate).

Ablation (ε = 1e-3, setting A, refined only, no verify): each refinement switched off in turn —
interval instead of symbolic ranges, no ReLU stability (all unstable), per-layer instead of
per-neuron formats, worst-case |ΔW| <= 2^-(Fw+1) instead of exact ΔW, no bias-offset folding.

Writes results/modes.csv, results/ablation.csv and results/modes.md (summary + tables).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

BENCH = Path("/work/shared/benchmarks/aster")
RESULTS = ROOT / "results"
MODES = ("aster", "aster-sound", "refined")
SETTINGS = ("A", "B", "C", "D")
EPSILONS = (1e-3, 1e-5)
VERIFY = {  # the same budget as scripts/reproduce_aster.py
    "samples": 400,
    "search_starts": 16,
    "search_iters": 15,
    "search_batch": 64,
    "exact_candidates": 4,
    "seed": 0,
}
TIME_LIMIT = 60.0
ABLATION = {
    "full": {},
    "interval-ranges": {"symbolic": False},
    "no-relu-stability": {"relu_stability": False},
    "layer-granularity": {"granularity": "layer"},
    "worst-case-dW": {"exact_dw": False},
    "no-bias-folding": {"fold_bias": False},
}
FIELDS = [
    "benchmark", "eps", "setting", "mode", "status", "certified", "smallest_eps", "daisy_area", "hw",
    "mult_bilinear", "time_s", "verify_s", "max_observed", "tightness", "violations", "message",
]  # fmt: skip
AB_FIELDS = [
    "benchmark",
    "eps",
    "setting",
    "variant",
    "status",
    "certified",
    "hw",
    "daisy_area",
    "time_s",
    "message",
]


def benchmarks() -> list[str]:
    names = sorted(p.stem for p in BENCH.glob("*.spec.json"))
    return [n.removesuffix(".spec") for n in names]


def model_path(name: str) -> Path:
    return BENCH / (f"{name}.onnx" if name == "VertCASVer1" else f"{name}.scala")


def run_mode(name: str, eps: float, setting: str, mode: str) -> dict[str, Any]:
    """One (benchmark, ε, setting, mode) cell: analyse + codegen + cost + verify."""
    from aster_ext.aster.settings import SETTINGS as ST
    from aster_ext.codegen.hls import generate_hls
    from aster_ext.cost import program_cost
    from aster_ext.errors import InfeasibleError
    from aster_ext.frontend import load_model
    from aster_ext.pipeline import QuantizeOptions, analyse
    from aster_ext.verify import VerifyBudget, verify_program

    row: dict[str, Any] = {"benchmark": name, "eps": eps, "setting": setting, "mode": mode}
    net, spec = load_model(model_path(name))
    opts = QuantizeOptions(error=eps, mode=mode, setting=setting, time_limit=TIME_LIMIT)
    t0 = time.perf_counter()
    try:
        layers, program, cert, asg, _info, _t = analyse(net, spec, opts)
        with tempfile.TemporaryDirectory() as tmp:
            generate_hls(program, Path(tmp))
    except InfeasibleError as exc:
        row.update(status="infeasible", time_s=time.perf_counter() - t0, message=str(exc)[:160])
        if getattr(exc, "smallest_error", None) is not None:
            row["smallest_eps"] = exc.smallest_error
        return row
    except Exception as exc:  # reported in the table, never hidden
        row.update(
            status="error", time_s=time.perf_counter() - t0, message=f"{type(exc).__name__}: {exc}"[:160]
        )
        return row
    row["time_s"] = time.perf_counter() - t0
    cost = program_cost(program)
    row.update(daisy_area=cost.daisy_area, hw=cost.hw, mult_bilinear=cost.mult_bilinear)
    if mode == "aster":
        claimed = float(asg.claimed_error)
        per_out = np.full(program.n_out, claimed)
        row["certified"] = claimed
    else:
        per_out = np.asarray(cert.output_bound, dtype=np.float64)
        row["certified"] = cert.bound
    row["status"] = "ok"
    t1 = time.perf_counter()
    try:
        vr = verify_program(
            program, layers, spec.input_lower, spec.input_upper, per_out, ST[setting].no_init_error,
            VerifyBudget(**VERIFY),
        )  # fmt: skip
        row.update(
            max_observed=vr.max_observed_error,
            tightness=vr.ratio,
            violations=vr.violations,
            verify_s=time.perf_counter() - t1,
        )
    except Exception as exc:
        row.update(verify_s=time.perf_counter() - t1, message=f"verify: {type(exc).__name__}: {exc}"[:160])
    return row


def run_ablation(name: str, variant: str) -> dict[str, Any]:
    """One ablation cell: assign_refined with one refinement switched off (ε = 1e-3, setting A)."""
    from aster_ext.cost import program_cost
    from aster_ext.errors import InfeasibleError
    from aster_ext.frontend import load_model
    from aster_ext.ir import dense_chain
    from aster_ext.refined import assign_refined

    eps, setting = 1e-3, "A"
    row: dict[str, Any] = {"benchmark": name, "eps": eps, "setting": setting, "variant": variant}
    net, spec = load_model(model_path(name))
    layers = dense_chain(net, frozenset({"relu", "identity"}))
    kw = dict(ABLATION[variant])
    gran = kw.pop("granularity", "neuron")
    t0 = time.perf_counter()
    try:
        res = assign_refined(
            layers, spec.input_lower, spec.input_upper, eps, setting, gran, TIME_LIMIT, name, **kw
        )
    except InfeasibleError as exc:
        row.update(status="infeasible", time_s=time.perf_counter() - t0, certified=exc.smallest_error)
        return row
    except Exception as exc:
        row.update(
            status="error", time_s=time.perf_counter() - t0, message=f"{type(exc).__name__}: {exc}"[:160]
        )
        return row
    cost = program_cost(res.program)
    row.update(status="ok", certified=res.certificate.bound, hw=cost.hw, daisy_area=cost.daisy_area,
               time_s=time.perf_counter() - t0)  # fmt: skip
    return row


def _job(kind: str, args: tuple) -> tuple[str, dict[str, Any]]:
    return kind, (run_mode(*args) if kind == "mode" else run_ablation(*args))


def geomean(values: list[float]) -> float:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


def _f(v: Any, fmt: str = ".3g") -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return format(v, fmt)
    return str(v)


def summarise(rows: list[dict[str, Any]], ab_rows: list[dict[str, Any]], wall: float, workers: int) -> str:
    key = {(r["benchmark"], r["eps"], r["setting"], r["mode"]): r for r in rows}
    combos = sorted({(r["benchmark"], r["eps"], r["setting"]) for r in rows})
    ratios: dict[str, list[float]] = {"hw_s": [], "hw_a": [], "da_s": [], "da_a": []}
    n_all = 0
    for c in combos:
        rs = [key.get((*c, m)) for m in MODES]
        if all(r is not None and r.get("status") == "ok" for r in rs):
            a, s, f = rs
            n_all += 1
            ratios["hw_s"].append(f["hw"] / s["hw"])
            ratios["hw_a"].append(f["hw"] / a["hw"])
            ratios["da_s"].append(f["daisy_area"] / s["daisy_area"])
            ratios["da_a"].append(f["daisy_area"] / a["daisy_area"])
    lines = ["# aster vs aster-sound vs refined (scripts/compare_modes.py)", ""]
    lines.append(
        f"24 benchmarks x eps {{1e-3, 1e-5}} x settings A-D x 3 modes; wall time {wall / 60:.1f} min with "
        f"{workers} worker processes (machine shared with other jobs). Verify budget for every mode: "
        f"{VERIFY} (random + corner samples, then the adversarial local search; exact re-evaluation of "
        "the worst candidates). `aster` is checked against the error it claims; the other two against "
        "their certificates. Costs are from the emitted types (`aster_ext.cost.program_cost`)."
    )
    lines += ["", "## Summary", ""]
    lines.append(f"Combinations where all three modes are feasible: {n_all}")
    lines.append("")
    lines.append("| metric | value | target |")
    lines.append("|---|---|---|")
    lines.append(f"| hw: refined / aster-sound (geo-mean) | {geomean(ratios['hw_s']):.3f} | <= 0.6 |")
    lines.append(f"| hw: refined / aster (geo-mean) | {geomean(ratios['hw_a']):.3f} | <= 0.8 |")
    lines.append(f"| Daisy area: refined / aster-sound (geo-mean) | {geomean(ratios['da_s']):.3f} | <= 0.6 |")
    lines.append(f"| Daisy area: refined / aster (geo-mean) | {geomean(ratios['da_a']):.3f} | <= 0.8 |")
    for m in MODES:
        ok = [r for r in rows if r["mode"] == m and r.get("status") == "ok"]
        tight = [r["tightness"] for r in ok if r.get("tightness") not in (None, "")]
        viol = sum(int(r.get("violations") or 0) for r in ok)
        times = [r["time_s"] for r in rows if r["mode"] == m]
        lines.append(
            f"| {m}: feasible {len(ok)}/{len([r for r in rows if r['mode'] == m])}, tightness geo-mean "
            f"{geomean(tight):.2f} (median {statistics.median(tight) if tight else float('nan'):.2f}), "
            f"violations {viol}, time median {statistics.median(times):.2f} s / max {max(times):.1f} s | | "
            f"{'tightness <= 4, 0 violations, median <= 5 s, max < 60 s' if m == 'refined' else ''} |"
        )
    # per-benchmark time of refined (max over its 8 cells)
    lines += ["", "## ACC7NN / ACC10NN (Aster's ranges overflow 32 integer bits in C and D)", ""]
    lines.append(
        "| benchmark | eps | setting | aster | aster-sound | refined | refined bound | smallest eps |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for b in ("ACC7NN", "ACC10NN"):
        for eps in EPSILONS:
            for s in SETTINGS:
                cells = [key.get((b, eps, s, m), {}) for m in MODES]
                f = cells[2]
                lines.append(
                    f"| {b} | {eps:g} | {s} | "
                    + " | ".join(c.get("status", "") for c in cells)
                    + f" | {_f(f.get('certified'))} | {_f(f.get('smallest_eps'))} |"
                )
    if ab_rows:
        lines += ["", "## Ablation (refined, eps 1e-3, setting A; hw cost relative to the full analysis)", ""]
        full = {r["benchmark"]: r for r in ab_rows if r["variant"] == "full" and r.get("status") == "ok"}
        lines.append("| variant | feasible | hw / full (geo-mean over both feasible) | time median s |")
        lines.append("|---|---|---|---|")
        for v in ABLATION:
            vr = [r for r in ab_rows if r["variant"] == v]
            rat = [
                r["hw"] / full[r["benchmark"]]["hw"]
                for r in vr
                if r.get("status") == "ok" and r["benchmark"] in full
            ]
            ok = sum(r.get("status") == "ok" for r in vr)
            tm = statistics.median([r["time_s"] for r in vr]) if vr else float("nan")
            lines.append(f"| {v} | {ok}/{len(vr)} | {geomean(rat):.3f} | {tm:.2f} |")
    lines += ["", "## All cells", ""]
    lines.append(
        "| benchmark | eps | set | mode | status | certified | Daisy | hw | time | observed | tight | viol |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["benchmark"], r["eps"], r["setting"], MODES.index(r["mode"]))):
        cert = r.get("certified") if r.get("status") == "ok" else r.get("smallest_eps")
        lines.append(
            f"| {r['benchmark']} | {r['eps']:g} | {r['setting']} | {r['mode']} | {r.get('status')} | "
            f"{_f(cert)}{'' if r.get('status') == 'ok' or cert in (None, '') else ' (smallest)'} | "
            f"{_f(r.get('daisy_area'))} | {_f(r.get('hw'))} | {_f(r.get('time_s'), '.2f')} | "
            f"{_f(r.get('max_observed'))} | {_f(r.get('tightness'), '.2f')} | {_f(r.get('violations'))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmarks", nargs="*", help="subset (default: all 24)")
    ap.add_argument("--modes", nargs="*", default=list(MODES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--merge", action="store_true", help="replace matching rows of existing csv files")
    args = ap.parse_args()
    names = args.benchmarks or benchmarks()
    jobs: list[tuple[str, tuple]] = [
        ("mode", (n, e, s, m)) for n in names for e in EPSILONS for s in SETTINGS for m in args.modes
    ]
    if not args.no_ablation:
        jobs += [("ablation", (n, v)) for n in names for v in ABLATION]
    # larger networks first, so the pool is not left waiting on one slow tail job
    size = {n: model_path(n).stat().st_size for n in names}
    jobs.sort(key=lambda j: -size[j[1][0]])
    rows: list[dict[str, Any]] = []
    ab_rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futs = [pool.submit(_job, k, a) for k, a in jobs]
        for i, fut in enumerate(as_completed(futs)):
            kind, row = fut.result()
            (rows if kind == "mode" else ab_rows).append(row)
            print(f"[{i + 1}/{len(jobs)} {time.perf_counter() - t0:6.0f}s] {kind} {row}", flush=True)
    wall = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    if args.merge:
        rows = _merge(RESULTS / "modes.csv", rows, ("benchmark", "eps", "setting", "mode"))
        ab_rows = _merge(RESULTS / "ablation.csv", ab_rows, ("benchmark", "variant"))
    _write_csv(RESULTS / "modes.csv", rows, FIELDS)
    _write_csv(RESULTS / "ablation.csv", ab_rows, AB_FIELDS)
    (RESULTS / "modes.md").write_text(summarise(rows, ab_rows, wall, args.workers))
    print(f"done in {wall / 60:.1f} min")


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in sorted(rows, key=lambda r: tuple(str(r.get(f, "")) for f in fields[:4])):
            w.writerow(r)


def _merge(path: Path, new: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Old rows of ``path`` (numbers parsed) not replaced by a new row with the same key."""
    if not path.exists():
        return new
    seen = {tuple(str(r[k]) for k in keys) for r in new}
    old = []
    with path.open() as fh:
        for r in csv.DictReader(fh):
            if tuple(r[k] for k in keys) in seen:
                continue
            for k, v in r.items():
                if v == "":
                    r[k] = None
                    continue
                try:
                    r[k] = int(v) if v.lstrip("-").isdigit() else float(v)
                except ValueError:
                    pass
            old.append(r)
    return old + new


if __name__ == "__main__":
    main()
