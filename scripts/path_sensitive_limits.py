"""Why input splitting does not reach issue 12's ACAS Xu / ACC10NN targets: where the bound comes from.

    python scripts/path_sensitive_limits.py [--targets ACASXU-A ACC10NN-C ...] [--budgets 32 128 512 2048]
                                            [--cells 40] [--ks 0 4 8 16 32 64] [--workers 1]

Per target (network, setting, ε) the program is the all-maxLen one (every F and Fw = maxLen = 32:
:func:`aster_ext.refined.solve.max_len_program`); no format choice has smaller roundings, so if it is
not certified at ε, no program of the setting is (up to the analysis). Tables:

1. ``single``: its single-pass certificate (``certify_forms``); for settings with input quantisation
   (A, B) also the same program's bound with inputs declared on the grid (no input error), which
   isolates the input quantisation as the origin; ``observed`` = the largest error ``verify_program``
   finds (random + corner samples, local search; exact re-evaluation).
2. ``layer``: per layer, ReLUs the certificate treats as unstable on the whole box (symbolic ranges
   ⊕ error) vs ReLUs seen to change sign on 20,000 random inputs + the box corners (a lower bound on
   the truly unstable ones), and the direct contribution |C_o,c|·(|ctr_c| + rad_c) of each term to the
   worst output o's form (their sum bounds the certificate from above): ``z_dw`` weight quantisation
   Σ_k |ΔW_jk| mag(x~_k) (capped at the column), ``z_round`` the rest of the z columns (product,
   partial-sum, dot, bias roundings and Δb), ``a_round`` the rounding to the output type,
   ``a_remainder`` the unstable-ReLU remainders ½·max|e_z,j|; row ``input``: the input quantisation.
3. ``split``: :func:`certify_by_splitting` of the program at target ε with checkpoints: the bound over
   the cover, the fraction of the box volume whose leaves are certified at ε, analyses, time (1 process).
4. ``cells``: random cells of side 1/k of the box in every dimension (a uniform grid has k^n of them):
   forms bound with the symbolic ranges (sound) and with *sampled* ranges (500 random points + the
   cell's corners; an inner approximation, NOT sound: the ``oracle`` columns show what exact real
   ranges could give at best with this error domain) and, between them, with the sound ranges that
   intersect the back-substitutions of every lower-slope choice λ in {area, 0, 1} (``multi``:
   ``symbolic_ranges(..., slopes=SLOPES)``); ``frac_above`` = the fraction of cells whose bound
   exceeds ε; ``time_s`` = seconds per sound (symbolic-range) cell analysis. ``k = 0`` rows:
   degenerate boxes (points), the analysis's limit as boxes shrink.
5. ``intbits``: integer bits of the program from the whole-box ranges (what the code does) vs from the
   union of the symbolic ranges of the largest split cover's leaves (also sound for the box): Σ
   integer bits over every type, hw cost, and the certificate with those ranges. F <= maxLen caps the
   fractional bits only (no word-length cap), so integer bits never change a bound.

Writes results/path_sensitive_limits.csv (rows of earlier runs of other targets are kept) and .md.
Times are wall clock on a shared, loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from aster_ext.aster.settings import SETTINGS
from aster_ext.certify import raw_to_float
from aster_ext.cost import program_cost
from aster_ext.experiments.script_steps import run_recorded
from aster_ext.experiments.tables import write_csv
from aster_ext.frontend import load_model
from aster_ext.ir import DenseLayer, dense_chain
from aster_ext.pipeline import QuantizeOptions, allowed_activations, resolve_spec
from aster_ext.ranges import ExactParams, LayerRanges
from aster_ext.refined.error_forms import UNSTABLE, FormsRun, certify_forms, forms_analysis
from aster_ext.refined.solve import build_program, max_len_program
from aster_ext.refined.split import certify_by_splitting
from aster_ext.refined.symbolic_ranges import SLOPES, symbolic_ranges
from aster_ext.rigorous import Interval
from aster_ext.verify import VerifyBudget, box_corners, verify_program

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
TARGETS: dict[str, tuple[Path, str, float]] = {
    "ACASXU-A": (SHARED / "external" / "ACASXU_run2a_1_1_batch_2000.onnx", "A", 1e-2),
    "ACC10NN-C": (SHARED / "aster" / "ACC10NN.scala", "C", 1e-3),
    "ACC10NN-D": (SHARED / "aster" / "ACC10NN.scala", "D", 1e-3),
    "ACC10NN.onnx-C": (SHARED / "aster" / "ACC10NN.onnx", "C", 1e-3),
    "ACC10NN.onnx-D": (SHARED / "aster" / "ACC10NN.onnx", "D", 1e-3),
}
FIELDS = [
    "target",
    "network",
    "reference",
    "setting",
    "eps",
    "kind",
    "layer",
    "k",
    "cells",
    "leaves",
    "analysed",
    "bound",
    "bound_on_grid",
    "observed",
    "certified_volume",
    "time_s",
    "unstable_symbolic",
    "unstable_sampled",
    "input",
    "z_dw",
    "z_round",
    "a_round",
    "a_remainder",
    "bound_max",
    "bound_p90",
    "bound_median",
    "frac_above",
    "multi_max",
    "multi_frac_above",
    "oracle_max",
    "oracle_median",
    "oracle_frac_above",
    "int_bits",
    "hw",
    "n_in",
    "note",
]


def g(x: float) -> str:
    return f"{x:.4g}"


def sample_ranges(layers: list[DenseLayer], xs: np.ndarray) -> tuple[list[LayerRanges], list[int]]:
    """Min/max of every pre-activation over the sample rows ``xs`` (float64; an inner approximation
    of the real ranges) and per layer the number of ReLUs that change sign on the samples."""
    out, unstable = [], []
    v = xs.T
    for layer in layers:
        z = layer.weight @ v + layer.bias[:, None]
        pre = Interval(z.min(axis=1), z.max(axis=1))
        post = (
            Interval(np.maximum(pre.lo, 0.0), np.maximum(pre.hi, 0.0)) if layer.activation == "relu" else pre
        )
        out.append(LayerRanges(pre, post))
        unstable.append(int(np.sum((pre.lo < 0) & (pre.hi > 0))) if layer.activation == "relu" else 0)
        v = np.maximum(z, 0.0) if layer.activation == "relu" else z
    return out, unstable


def in_box(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, m: int) -> np.ndarray:
    """``m`` uniform points of the box and all its corners (the targets have 5 inputs)."""
    return np.vstack([lo + (hi - lo) * rng.random((m, lo.size)), box_corners(rng, lo, hi, 2**lo.size)])


def breakdown(program, layers: list[DenseLayer], run: FormsRun, lo: np.ndarray, hi: np.ndarray) -> list[dict]:
    """Direct contributions |C_o,c|·mag_c of the terms to the worst output's form (module docstring)."""
    o = int(np.argmax(run.output_bound))
    c = np.abs(run.ca[-1][o])
    mag = np.abs(run.ctr) + run.rad
    lay = run.layout
    rows = [{"layer": "input", "input": g(float(c[: lay.n_in] @ mag[: lay.n_in]))}]
    x_real = Interval(lo, hi)
    for li, lp in enumerate(program.layers):
        x_mag = x_real.add(run.a_err[li - 1] if li > 0 else Interval(-mag[: lay.n_in], mag[: lay.n_in])).mag()
        w_t, _ = raw_to_float(lp.weight_raw, lp.weight_t.frac)
        dw = np.abs(w_t - layers[li].weight) @ x_mag
        zc, ac = lay.z_cols(li), lay.a_cols(li)
        dw_part = np.minimum(dw, mag[zc])
        unst = run.decisions[li] == UNSTABLE
        rem = np.where(unst, 0.5 * run.z_err[li].mag(), 0.0)
        rem = np.minimum(rem, mag[ac])
        rows.append(
            {
                "layer": li + 1,
                "unstable_symbolic": int(np.sum(unst)),
                "z_dw": g(float(c[zc] @ dw_part)),
                "z_round": g(float(c[zc] @ (mag[zc] - dw_part))),
                "a_round": g(float(c[ac] @ (mag[ac] - rem))),
                "a_remainder": g(float(c[ac] @ rem)),
            }
        )
        x_real = run.ranges[li].post
    return rows


def cell_rows(prog, layers, ps, lo, hi, on_grid, eps, ks, n_cells, rng) -> list[dict]:
    rows = []
    for k in ks:
        sym, mul, orc, un_s, un_o = [], [], [], [], []
        t_sym = 0.0  # time of the sound (symbolic-range) analyses only
        for _ in range(n_cells):
            if k == 0:  # a point
                a = lo + (hi - lo) * rng.random(lo.size)
                b = a.copy()
            else:
                h = (hi - lo) / k
                a = lo + rng.integers(0, k, lo.size) * h
                b = np.minimum(a + h, hi)
            t1 = time.perf_counter()
            run = forms_analysis(prog, layers, a, b, on_grid, ps)
            t_sym += time.perf_counter() - t1
            sym.append(float(run.output_bound.max()))
            un_s.append(sum(int(np.sum(d == UNSTABLE)) for d in run.decisions))
            if k == 0:
                continue
            run_m = forms_analysis(prog, layers, a, b, on_grid, ps, symbolic_ranges(layers, a, b, ps, SLOPES))
            mul.append(float(run_m.output_bound.max()))
            rg, un = sample_ranges(layers, in_box(rng, a, b, 500))
            run_o = forms_analysis(prog, layers, a, b, on_grid, ps, rg)
            orc.append(float(run_o.output_bound.max()))
            un_o.append(sum(un))
        s = np.array(sym)
        row = {
            "k": k,
            "cells": n_cells,
            "bound_max": g(s.max()),
            "bound_p90": g(float(np.quantile(s, 0.9))),
            "bound_median": g(float(np.median(s))),
            "frac_above": f"{np.mean(s > eps):.3f}",
            "unstable_symbolic": g(float(np.median(un_s))),
            "time_s": f"{t_sym / n_cells:.3f}",
        }
        if orc:
            o, m = np.array(orc), np.array(mul)
            row.update(
                multi_max=g(m.max()),
                multi_frac_above=f"{np.mean(m > eps):.3f}",
                oracle_max=g(o.max()),
                oracle_median=g(float(np.median(o))),
                oracle_frac_above=f"{np.mean(o > eps):.3f}",
                unstable_sampled=g(float(np.median(un_o))),
            )
        rows.append(row)
        print(f"  cells k={k}: {row}", flush=True)
    return rows


def int_bits(program) -> int:
    tot = 0
    for lp in program.layers:
        for t in (lp.weight_t, lp.product_t, lp.psum_t, lp.dot_t, lp.bias_t, lp.bsum_t, lp.out_t):
            tot += int(np.sum(t.int_bits))
    return tot


def union_ranges(layers, ps, leaves) -> list[LayerRanges]:
    """Per neuron the hull over the leaves of their symbolic ranges (sound for the union of the leaves)."""
    out = None
    for a, b in leaves:
        rg = symbolic_ranges(layers, a, b, ps)
        if out is None:
            out = [[r.pre.lo.copy(), r.pre.hi.copy(), r.post.lo.copy(), r.post.hi.copy()] for r in rg]
            continue
        for o, r in zip(out, rg, strict=True):
            np.minimum(o[0], r.pre.lo, out=o[0])
            np.maximum(o[1], r.pre.hi, out=o[1])
            np.minimum(o[2], r.post.lo, out=o[2])
            np.maximum(o[3], r.post.hi, out=o[3])
    return [LayerRanges(Interval(o[0], o[1]), Interval(o[2], o[3])) for o in out]


def run_target(name: str, budgets: list[int], ks: list[int], n_cells: int, workers: int) -> list[dict]:
    path, setting, eps = TARGETS[name]
    net, model_spec = load_model(path)
    spec = resolve_spec(net, model_spec, QuantizeOptions(error=eps, mode="refined", setting=setting))
    layers = dense_chain(net, allowed_activations("refined"))
    lo = np.asarray(spec.input_lower, dtype=np.float64)
    hi = np.asarray(spec.input_upper, dtype=np.float64)
    st = SETTINGS[setting]
    on_grid = st.no_init_error
    ps = [ExactParams.of(layer) for layer in layers]
    base = {"target": name, "network": net.name, "reference": net.reference, "setting": setting, "eps": eps}
    rng = np.random.default_rng(12)
    rows: list[dict] = []
    t = time.perf_counter()
    prog, cert = max_len_program(net.name, layers, lo, hi, st, ps)
    t_cert = time.perf_counter() - t
    grid = certify_forms(prog, layers, lo, hi, True).bound if not on_grid else cert.bound
    ver = verify_program(
        prog, layers, lo, hi, cert.output_bound, on_grid, VerifyBudget(samples=400, search_iters=10)
    )
    if ver.max_observed_error > cert.bound:
        raise SystemExit(
            f"{name}: observed {ver.max_observed_error} above the certificate {cert.bound}: unsound"
        )
    rows.append(
        {
            **base,
            "kind": "single",
            "bound": g(cert.bound),
            "bound_on_grid": g(grid),
            "observed": g(ver.max_observed_error),
            "time_s": f"{t_cert:.2f}",
            "hw": int(program_cost(prog).hw),
            "n_in": lo.size,
            "int_bits": int_bits(prog),
        }
    )
    print(f"{name}: single pass {cert.bound:.4g} (on grid {grid:.4g}), observed {ver.max_observed_error:.3g}")
    run = forms_analysis(prog, layers, lo, hi, on_grid, ps)
    _, sampled_unstable = sample_ranges(layers, in_box(rng, lo, hi, 20000))
    for r in breakdown(prog, layers, run, lo, hi):
        if isinstance(r["layer"], int):
            r["unstable_sampled"] = sampled_unstable[r["layer"] - 1]
        rows.append({**base, "kind": "layer", **r})
    rows += [
        {**base, "kind": "cells", **r}
        for r in cell_rows(prog, layers, ps, lo, hi, on_grid, eps, ks, n_cells, rng)
    ]
    sc = certify_by_splitting(
        prog,
        layers,
        lo,
        hi,
        eps,
        max(budgets),
        on_grid,
        workers=workers,
        batch=16,
        checkpoints=tuple(budgets),
    )
    for h in sc.history:
        rows.append(
            {
                **base,
                "kind": "split",
                "leaves": h["leaves"],
                "analysed": h["analysed"],
                "bound": g(h["bound"]),
                "certified_volume": f"{h['certified_volume']:.4f}",
                "time_s": f"{h['time_s']:.1f}",
            }
        )
        print(f"  split: {h}", flush=True)
    urg = union_ranges(layers, ps, sc.leaves)
    f = [np.full(layer.n_out, st.max_len) for layer in layers]
    prog_u, _ = build_program(net.name, layers, f, f, st, lo, hi, ps, urg)
    cert_u = certify_forms(prog_u, layers, lo, hi, on_grid, urg)
    rows.append(
        {
            **base,
            "kind": "intbits",
            "leaves": len(sc.leaves),
            "int_bits": int_bits(prog_u),
            "hw": int(program_cost(prog_u).hw),
            "bound": g(cert_u.bound),
            "note": "overflow-free" if cert_u.ok else f"{len(cert_u.overflows)} overflow issue(s)",
        }
    )
    return rows


def first_k(cells: list[dict], col: str, n: int) -> str:
    """The smallest sampled k whose cells all have ``col`` (a fraction above ε) = 0, with the size and
    time of a uniform grid of such cells (n input dimensions)."""
    ok = [r for r in cells if r.get(col) not in (None, "") and float(r[col]) == 0.0]
    if not ok:
        return "none of the sampled k"
    k, per = int(ok[0]["k"]), float(ok[0]["time_s"])
    if n <= 0:
        return f"k = {k}"
    return f"k = {k} ({float(k) ** n:.3g} uniform cells, ~{float(k) ** n * per:.3g} s at {per:g} s per cell)"


def summary(rows: list[dict]) -> list[str]:
    """One line per target, computed from the rows (module docstring): single pass vs observed, the
    unstable-ReLU remainders' share of the direct contributions, the largest split cover, and the
    smallest cell side 1/k at which none of the sampled cells exceeds ε (sound ranges / oracle ranges),
    with the size and time of a uniform grid of such cells (an optimistic estimate: 40 random cells
    can miss bad ones; an adaptive cover needs fewer cells where the bound is small)."""
    out = []
    for t in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["target"] == t]
        one = next(r for r in rs if r["kind"] == "single")
        eps, n = float(one["eps"]), int(one["n_in"]) if one.get("n_in") else 0  # 0: a row of an older run
        lay = [r for r in rs if r["kind"] == "layer"]
        parts = [
            float(r[c])
            for r in lay
            for c in ("input", "z_dw", "z_round", "a_round", "a_remainder")
            if r.get(c)
        ]
        rem = sum(float(r["a_remainder"]) for r in lay if r.get("a_remainder"))
        sp = [r for r in rs if r["kind"] == "split"]
        last = sp[-1] if sp else None
        cells = [r for r in rs if r["kind"] == "cells" and int(r["k"]) > 0]

        reached = last is not None and float(last["bound"]) <= eps
        out.append(
            f"- **{t}** (ε = {eps:g}): single pass {one['bound']} vs observed {one['observed']}; "
            f"unstable-ReLU remainders are {rem / max(sum(parts), 1e-300):.0%} of the direct contributions"
            + (
                f"; split cover of {last['leaves']} leaves: bound {last['bound']}, certified volume "
                f"{last['certified_volume']}, {last['time_s']} s ({'REACHED' if reached else 'not reached'})"
                if last is not None
                else ""
            )
            + f"; all sampled cells <= ε from {first_k(cells, 'frac_above', n)} with the sound ranges, from "
            f"{first_k(cells, 'oracle_frac_above', n)} with oracle (sampled) ranges."
        )
    return out


def md_table(rows: list[dict], cols: list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return out


def write(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    write_csv(out.with_suffix(".csv"), rows, FIELDS)
    lines = [
        "# Limits of input splitting on issue 12's targets (scripts/path_sensitive_limits.py)",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "## Summary",
        "",
        *summary(rows),
        "",
    ]
    by = lambda kind: [r for r in rows if r["kind"] == kind]  # noqa: E731
    sections = [
        (
            "single",
            "Single pass of the all-maxLen program",
            [
                "target",
                "reference",
                "setting",
                "eps",
                "bound",
                "bound_on_grid",
                "observed",
                "int_bits",
                "hw",
                "time_s",
            ],
        ),
        (
            "layer",
            "Where the single-pass bound comes from (direct contributions to the worst output)",
            [
                "target",
                "layer",
                "unstable_symbolic",
                "unstable_sampled",
                "input",
                "z_dw",
                "z_round",
                "a_round",
                "a_remainder",
            ],
        ),
        (
            "split",
            "Bound of the all-maxLen program vs sub-boxes (certify_by_splitting at target ε)",
            ["target", "leaves", "analysed", "bound", "certified_volume", "time_s"],
        ),
        (
            "cells",
            "Random cells of side 1/k (k = 0: points); oracle = sampled ranges (not sound)",
            [
                "target",
                "k",
                "cells",
                "bound_max",
                "bound_p90",
                "bound_median",
                "frac_above",
                "unstable_symbolic",
                "multi_max",
                "multi_frac_above",
                "oracle_max",
                "oracle_median",
                "oracle_frac_above",
                "unstable_sampled",
                "time_s",
            ],
        ),
        (
            "intbits",
            "Integer bits: union of the sub-box ranges of the largest cover",
            ["target", "leaves", "int_bits", "hw", "bound", "note"],
        ),
    ]
    for kind, title, cols in sections:
        lines += [f"## {title}", ""] + md_table(by(kind), cols) + [""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--budgets", nargs="+", type=int, default=[32, 128, 512, 2048])
    ap.add_argument("--ks", nargs="+", type=int, default=[0, 4, 8, 16, 32, 64])
    ap.add_argument("--cells", type=int, default=40)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "path_sensitive_limits")
    args = ap.parse_args()
    old: list[dict] = []
    if args.out.with_suffix(".csv").exists():
        with open(args.out.with_suffix(".csv")) as fh:
            old = [r for r in csv.DictReader(fh) if r["target"] not in args.targets]
    rows = old
    for name in args.targets:
        rows = [r for r in rows if r["target"] != name] + run_target(
            name, args.budgets, args.ks, args.cells, args.workers
        )
        order = list(TARGETS)
        rows.sort(key=lambda r: order.index(r["target"]))
        write(rows, args.out, args)


if __name__ == "__main__":
    raise SystemExit(run_recorded(__file__, main))
