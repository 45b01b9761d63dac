#!/usr/bin/env python
"""Range tightness of the nonlinear-activation relaxations, and certified / observed error (issue 4).

For every network and input box, the pre-activation range of each neuron is computed three ways:

- interval: :func:`aster_ext.ranges.interval_ranges` (sound, outer);
- symbolic: :func:`aster_ext.refined.symbolic_ranges` (DeepPoly/CROWN back-substitution, sound, outer);
- inner:    :func:`aster_ext.inner_bounds.inner_bounds`: per-neuron minimisation and maximisation by
            projected gradient descent/ascent from many starts; the values found are attained at
            real inputs, so the true range contains them.

The ratio outer width / inner width (>= 1 when the analysis is sound) is reported as median and
90th percentile over neurons, per layer and over all layers ("all") and over the layers after the
first ("deep": the first affine layer's interval range is exact, so its ratio is 1 by construction).
Any inner bound outside an outer range (beyond float tolerance) is re-evaluated exactly
(:func:`aster_ext.inner_bounds.exact_pre`) and, if confirmed, reported as a SOUNDNESS BUG.

Networks: the activation fixtures tests/fixtures/mlp_{act}.onnx (2-16-16-1, spec box); one seeded
random synthetic net per activation (16-32-32-32-4, box [-1, 1]^16, wider input so the search is not
trivial); the external MNIST nets tansig_200_50_onnx (784-200-50-10 tanh) and ffnnSIGMOID__Point_6x200
(784-6x200-10 sigmoid), on the full spec box and on sample 0 ± 2 pixel levels (as
scripts/mnist_nonlinear.py). For the fixtures, also the refined quantize at ε = 1e-2 (setting A) and
verify with a fixed budget: certified bound / max observed error.

Convergence of the inner search: ``--convergence`` re-runs the search with twice the starts and steps
(same neurons, other seed) and reports how much the inner widths grew (median / max of 2x / 1x).

Writes results/tightness_nonlinear.csv and results/tightness_nonlinear.md; one progress line per
network on stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from aster_ext.inner_bounds import SearchBudget, exact_pre, inner_bounds  # noqa: E402
from aster_ext.ir import DenseLayer  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
EXT = ROOT.parent / "shared" / "benchmarks" / "external"
RESULTS = ROOT / "results"
ACTS = ["sigmoid", "tanh", "softplus", "elu", "leaky_relu", "silu", "gelu", "hard_sigmoid", "hard_tanh"]
MNIST = {"tansig_200_50_onnx": 255.0, "ffnnSIGMOID__Point_6x200": 1.0}  # value of the full pixel range
SMALL_BUDGET = SearchBudget(starts=16, steps=80, seed=0)
MNIST_BUDGET = SearchBudget(
    starts=8, steps=200, step_final=1e-2, seed=0, max_neurons=32, search_dtype="float32"
)
EPS = 1e-2
SETTING = "A"
VERIFY = {"samples": 2000, "search_starts": 16, "search_iters": 60, "search_batch": 64,
          "exact_candidates": 4, "seed": 0}  # fmt: skip
SYNTH_WIDTHS = [16, 32, 32, 32, 4]
SYNTH_PARAMS = {"leaky_relu": {"alpha": 0.1}, "elu": {"alpha": 1.0}}
FIELDS = [
    "network", "activation", "box", "layer", "n_neurons", "searched", "degenerate",
    "sym_median", "sym_p90", "int_median", "int_p90", "inner_width_median",
    "outside_sym", "outside_int", "search_s", "conv_median", "conv_max",
    "certified", "max_observed", "cert_over_obs", "violations",
]  # fmt: skip
TOL = 1e-9  # relative float tolerance of the containment screen (exact re-check beyond it)


def synthetic_net(act: str, seed: int) -> list[DenseLayer]:
    """A seeded random chain SYNTH_WIDTHS with activation ``act`` on every hidden layer."""
    rng = np.random.default_rng([seed, ACTS.index(act)])
    layers = []
    n = len(SYNTH_WIDTHS) - 1
    for li in range(n):
        w = rng.normal(0, 1.5 / np.sqrt(SYNTH_WIDTHS[li]), (SYNTH_WIDTHS[li + 1], SYNTH_WIDTHS[li]))
        b = rng.normal(0, 0.3, SYNTH_WIDTHS[li + 1])
        fn = "identity" if li == n - 1 else act
        p = SYNTH_PARAMS.get(act, {}) if fn == act else {}
        layers.append(DenseLayer(f"l{li}", w.astype(np.float32).astype(np.float64),
                                 b.astype(np.float32).astype(np.float64), fn, **p))  # fmt: skip
    return layers


def _pct(v: np.ndarray, q: float) -> float:
    return float(np.percentile(v, q)) if v.size else float("nan")


def _stats(row: dict, sym_r: np.ndarray, int_r: np.ndarray) -> None:
    row.update(
        sym_median=_pct(sym_r, 50),
        sym_p90=_pct(sym_r, 90),
        int_median=_pct(int_r, 50),
        int_p90=_pct(int_r, 90),
    )


def outside_check(layers, li: int, j: int, x: np.ndarray, outer_lo: float, outer_hi: float) -> str | None:
    """Exact re-evaluation of a screened violation: a message if z_lj(x) is really outside."""
    z = exact_pre(layers, li, j, x)
    if z < outer_lo or z > outer_hi:
        return f"layer {li} neuron {j}: exact z = {float(z)!r} outside [{outer_lo!r}, {outer_hi!r}]"
    return None


def tightness(
    name: str, act: str, box: str, layers: list[DenseLayer], lo: np.ndarray, hi: np.ndarray,
    budget: SearchBudget, convergence: bool, bugs: list[str],
) -> list[dict]:  # fmt: skip
    """Rows (per layer, "all", "deep") of one network and box."""
    from aster_ext.ranges import ExactParams, interval_ranges
    from aster_ext.refined.symbolic_ranges import symbolic_ranges

    ps = [ExactParams.of(layer) for layer in layers]
    iv = interval_ranges(layers, lo, hi, ps)
    sym = symbolic_ranges(layers, lo, hi, ps)
    t0 = time.perf_counter()
    inner = inner_bounds(layers, lo, hi, budget)
    search_s = time.perf_counter() - t0
    conv_g: list[np.ndarray] = []
    if convergence:
        # a second search with twice the starts and steps (other seed, same neurons); the reported inner
        # bounds are the hull of both runs (still attained), conv = hull width / first-run width
        big = replace(budget, starts=2 * budget.starts, steps=2 * budget.steps, seed=budget.seed + 1)
        second = inner_bounds(layers, lo, hi, big)
        for a, b in zip(inner, second, strict=True):
            w0 = a.width
            take_lo, take_hi = b.lo < a.lo, b.hi > a.hi
            a.lo = np.where(take_lo, b.lo, a.lo)
            a.argmin = np.where(take_lo[:, None], b.argmin, a.argmin)
            a.hi = np.where(take_hi, b.hi, a.hi)
            a.argmax = np.where(take_hi[:, None], b.argmax, a.argmax)
            conv_g.append(np.where(w0 > 0, a.width / np.where(w0 > 0, w0, 1.0), 1.0))
    rows: list[dict] = []
    acc = {"sym": [], "int": [], "sym_deep": [], "int_deep": [], "conv": []}
    tot = {"n": 0, "m": 0, "deg": 0, "os": 0, "oi": 0}
    for li, (ib, ri, rs) in enumerate(zip(inner, iv, sym, strict=True)):
        nr = ib.neurons
        w_in = ib.width
        w_sym = (rs.pre.hi - rs.pre.lo)[nr]
        w_int = (ri.pre.hi - ri.pre.lo)[nr]
        ok = w_in > 0
        sym_r, int_r = w_sym[ok] / w_in[ok], w_int[ok] / w_in[ok]
        n_out = {}
        for tag, r in (("sym", rs), ("int", ri)):
            tol_lo = TOL * (1 + np.abs(ib.lo))
            tol_hi = TOL * (1 + np.abs(ib.hi))
            bad_lo = np.nonzero(ib.lo < r.pre.lo[nr] - tol_lo)[0]
            bad_hi = np.nonzero(ib.hi > r.pre.hi[nr] + tol_hi)[0]
            count = 0
            for k in bad_lo:
                msg = outside_check(layers, li, int(nr[k]), ib.argmin[k], r.pre.lo[nr[k]], r.pre.hi[nr[k]])
                if msg:
                    count += 1
                    bugs.append(f"{name} {box} {tag}: {msg}; x = {ib.argmin[k].tolist()}")
            for k in bad_hi:
                msg = outside_check(layers, li, int(nr[k]), ib.argmax[k], r.pre.lo[nr[k]], r.pre.hi[nr[k]])
                if msg:
                    count += 1
                    bugs.append(f"{name} {box} {tag}: {msg}; x = {ib.argmax[k].tolist()}")
            n_out[tag] = count
        row = {
            "network": name, "activation": act, "box": box, "layer": str(li + 1), "n_neurons": ib.n_total,
            "searched": nr.size, "degenerate": int(np.sum(~ok)), "inner_width_median": _pct(w_in, 50),
            "outside_sym": n_out["sym"], "outside_int": n_out["int"],
        }  # fmt: skip
        _stats(row, sym_r, int_r)
        if conv_g:
            g = conv_g[li][ok]
            row.update(conv_median=_pct(g, 50), conv_max=float(g.max()) if g.size else float("nan"))
            acc["conv"].append(g)
        rows.append(row)
        acc["sym"].append(sym_r)
        acc["int"].append(int_r)
        if li > 0:
            acc["sym_deep"].append(sym_r)
            acc["int_deep"].append(int_r)
        tot["n"] += ib.n_total
        tot["m"] += nr.size
        tot["deg"] += int(np.sum(~ok))
        tot["os"] += n_out["sym"]
        tot["oi"] += n_out["int"]
    for kind, s_key, i_key in (("all", "sym", "int"), ("deep", "sym_deep", "int_deep")):
        row = {
            "network": name, "activation": act, "box": box, "layer": kind, "n_neurons": tot["n"],
            "searched": tot["m"], "degenerate": tot["deg"], "outside_sym": tot["os"],
            "outside_int": tot["oi"], "search_s": round(search_s, 2),
        }  # fmt: skip
        s = np.concatenate(acc[s_key]) if acc[s_key] else np.zeros(0)
        i = np.concatenate(acc[i_key]) if acc[i_key] else np.zeros(0)
        _stats(row, s, i)
        if acc["conv"]:
            g = np.concatenate(acc["conv"])
            row.update(conv_median=_pct(g, 50), conv_max=float(g.max()))
        rows.append(row)
    return rows


def quantize_verify(path: Path) -> dict:
    """Refined quantize at EPS + verify: certified, max observed, ratio, violations."""
    from aster_ext.aster.settings import SETTINGS
    from aster_ext.frontend import load_model
    from aster_ext.pipeline import QuantizeOptions, analyse
    from aster_ext.verify import VerifyBudget, verify_program

    net, spec = load_model(path)
    layers, program, cert, _asg, _info, _t = analyse(net, spec, QuantizeOptions(error=EPS, setting=SETTING))
    vr = verify_program(
        program, layers, spec.input_lower, spec.input_upper, np.asarray(cert.output_bound, dtype=np.float64),
        SETTINGS[SETTING].no_init_error, VerifyBudget(**VERIFY),
    )  # fmt: skip
    return {
        "certified": cert.bound,
        "max_observed": vr.max_observed_error,
        "cert_over_obs": vr.ratio,
        "violations": vr.violations,
    }


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_md(rows: list[dict], bugs: list[str], wall: float, args: argparse.Namespace) -> str:
    lines = ["# Range tightness of the nonlinear activations (scripts/tightness_nonlinear.py)", ""]
    lines.append(
        "Ratio = outer range width / inner width, per neuron pre-activation (>= 1 when the analysis is "
        "sound; 1 = the outer range equals the best range the search found, which is itself inside the "
        "true range, so the ratios over-estimate the true looseness by at most the search's shortfall). "
        "Outer: `symbolic` = `refined.symbolic_ranges` (back-substitution with the activations' linear "
        "relaxations, intersected with intervals), `interval` = `ranges.interval_ranges`. Inner: per-neuron "
        "projected gradient descent and ascent over the input box (`aster_ext.inner_bounds`), every value "
        "attained at a real input."
    )
    lines.append("")
    lines.append(f"- Search, small nets: {SMALL_BUDGET.describe()}.")
    lines.append(f"- Search, MNIST nets: {MNIST_BUDGET.describe()}.")
    lines.append(
        "- `deep` = layers 2.. (the first layer's interval range is exact: ratio 1). `degenerate` = neurons "
        "with inner width 0 (left out of the ratios). `conv` = inner width with twice the starts and steps "
        "(other seed, same neurons), hull of both runs / first run's inner width: 1 means the first search "
        "had converged; where a convergence run is done, the reported ratios use the hull of both runs."
        if args.convergence != "none"
        else "- `deep` = layers 2.. (the first layer's interval range is exact: ratio 1)."
    )
    lines.append(
        f"- Fixtures: refined quantize at ε = {EPS:g}, setting {SETTING}; verify budget {VERIFY}; "
        "cert/obs = certified bound / max observed error (exact re-evaluation)."
    )
    lines.append(
        f"- Synthetic: seeded random nets {'-'.join(map(str, SYNTH_WIDTHS))}, weights N(0, 1.5/sqrt(n_in)), "
        "biases N(0, 0.3), box [-1, 1]^16."
    )
    lines.append(f"- Wall time of the script: {wall:.0f} s (2-core machine shared with other jobs).")
    lines.append("")
    lines.append("## Soundness")
    lines.append("")
    if bugs:
        lines.append(
            f"**{len(bugs)} inner bound(s) outside a computed range (exactly re-checked): SOUNDNESS BUG**"
        )
        lines += [f"- {b}" for b in bugs[:50]]
    else:
        n_in = sum(r["searched"] for r in rows if r["layer"] == "all")
        lines.append(
            f"All {2 * n_in} inner bounds ({n_in} neurons x min/max) lie inside both the symbolic and the "
            "interval ranges."
        )
    lines += ["", "## Summary (median / 90th percentile over neurons)", ""]
    hdr = ["network", "act", "box", "searched", "sym all", "int all", "sym deep", "int deep"]
    if args.convergence != "none":
        hdr.append("conv med/max")
    hdr += ["certified", "max observed", "cert/obs"]
    lines.append("| " + " | ".join(hdr) + " |")
    lines.append("|" + "---|" * len(hdr))
    key = {(r["network"], r["box"], r["layer"]): r for r in rows}
    for r in rows:
        if r["layer"] != "all":
            continue
        d = key[(r["network"], r["box"], "deep")]
        cells = [r["network"], r["activation"], r["box"], f"{r['searched']}/{r['n_neurons']}"]
        cells += [f"{_fmt(q[k + '_median'])} / {_fmt(q[k + '_p90'])}" for q in (r, d) for k in ("sym", "int")]
        if args.convergence != "none":
            cells.append(
                f"{_fmt(r.get('conv_median'))} / {_fmt(r.get('conv_max'))}" if "conv_median" in r else ""
            )
        cells += [_fmt(r.get("certified")), _fmt(r.get("max_observed")), _fmt(r.get("cert_over_obs"))]
        lines.append("| " + " | ".join(cells) + " |")
    loose = [
        f"{r['network']} ({r['box']}: conv median {_fmt(r['conv_median'])}, max {_fmt(r['conv_max'])})"
        for r in rows
        if r["layer"] == "all" and r.get("conv_max", 1.0) > 1.05
    ]
    if loose:
        lines += [
            "",
            "Search not fully converged (the 2x run widened some inner ranges by > 5%): "
            + "; ".join(loose)
            + ". There the true range is wider than the inner one, so the ratios over-state the looseness "
            "of the outer ranges (they remain upper bounds of it).",
        ]
    lines += ["", "## Per layer", ""]
    cols = ["network", "box", "layer", "n_neurons", "searched", "degenerate", "sym_median", "sym_p90",
            "int_median", "int_p90", "inner_width_median"]  # fmt: skip
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        if r["layer"] in ("all", "deep"):
            continue
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="restrict to these groups: fixtures synthetic mnist")
    ap.add_argument("--acts", nargs="*", default=ACTS, help="activations of the fixture/synthetic nets")
    ap.add_argument(
        "--convergence", choices=["none", "small", "all"], default="small",
        help="re-run the search with 2x starts and steps: on no nets, the small nets (default), or all",
    )  # fmt: skip
    ap.add_argument("--no-verify", action="store_true", help="skip quantize + verify of the fixtures")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output directory (default results/)")
    args = ap.parse_args()
    groups = set(args.only or ["fixtures", "synthetic", "mnist"])
    from aster_ext.frontend import load_model
    from aster_ext.ir import dense_chain
    from aster_ext.pipeline import allowed_activations

    t_all = time.perf_counter()
    rows: list[dict] = []
    bugs: list[str] = []
    conv_small = args.convergence in ("small", "all")

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - t_all:7.1f} s] {msg}", file=sys.stderr, flush=True)

    for act in args.acts:
        if "fixtures" in groups:
            path = FIXTURES / f"mlp_{act}.onnx"
            net, spec = load_model(path)
            layers = dense_chain(net, allowed_activations("refined"))
            t0 = time.perf_counter()
            rs = tightness(net.name, act, "spec", layers, spec.input_lower, spec.input_upper, SMALL_BUDGET,
                           conv_small, bugs)  # fmt: skip
            if not args.no_verify:
                rs[-2].update(quantize_verify(path))
            rows += rs
            a = rs[-2]
            progress(
                f"{net.name}: sym median {a['sym_median']:.3g}, int median {a['int_median']:.3g}, "
                f"cert/obs {_fmt(a.get('cert_over_obs'))} ({time.perf_counter() - t0:.1f} s)"
            )
        if "synthetic" in groups:
            layers = synthetic_net(act, 0)
            t0 = time.perf_counter()
            box_lo, box_hi = -np.ones(SYNTH_WIDTHS[0]), np.ones(SYNTH_WIDTHS[0])
            rs = tightness(f"synth_{act}", act, "[-1,1]^16", layers, box_lo, box_hi, SMALL_BUDGET, conv_small,
                           bugs)  # fmt: skip
            rows += rs
            a = rs[-2]
            progress(
                f"synth_{act}: sym median {a['sym_median']:.3g}, int median {a['int_median']:.3g} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    if "mnist" in groups:
        from aster_ext.spec import load_spec

        for name, scale in MNIST.items():
            net, _ = load_model(EXT / f"{name}.onnx")
            spec = load_spec(EXT / f"{name}.spec.json")
            layers = dense_chain(net, allowed_activations("refined"))
            act = "/".join(sorted({la.activation for la in layers} - {"identity"}))
            lo = np.asarray(spec.input_lower, dtype=np.float64)
            hi = np.asarray(spec.input_upper, dtype=np.float64)
            x = np.asarray(spec.samples, dtype=np.float64)[0]
            level = scale / 255.0
            boxes = [
                ("full", lo, hi),
                ("sample0±2lv", np.maximum(lo, x - 2 * level), np.minimum(hi, x + 2 * level)),
            ]
            for box, b_lo, b_hi in boxes:
                t0 = time.perf_counter()
                rs = tightness(
                    name, act, box, layers, b_lo, b_hi, MNIST_BUDGET, args.convergence == "all", bugs
                )
                rows += rs
                a, d = rs[-2], rs[-1]
                progress(
                    f"{name} {box}: sym median {a['sym_median']:.3g} (deep {d['sym_median']:.3g}), "
                    f"int median {a['int_median']:.3g} (deep {d['int_median']:.3g}) "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
    wall = time.perf_counter() - t_all
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "tightness_nonlinear.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in FIELDS})
    (args.out / "tightness_nonlinear.md").write_text(write_md(rows, bugs, wall, args))
    if bugs:
        progress(f"SOUNDNESS: {len(bugs)} inner bound(s) outside a computed range:")
        for b in bugs:
            print("  " + b, file=sys.stderr)
        return 1
    progress(f"done: results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
