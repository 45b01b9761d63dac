"""Table ``tightness_nonlinear``: range tightness of the nonlinear-activation relaxations, and
certified / observed error (issue 4).

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
aster_ext/experiments/nonlinear.py). For the fixtures, also the refined quantize at ε = 1e-2 (setting A) and
verify with a fixed budget: certified bound / max observed error.

Convergence of the inner search: the search is re-run the search with twice the starts and steps
(same neurons, other seed) and reports how much the inner widths grew (median / max of 2x / 1x):
done on the small nets (the MNIST nets would take minutes more).

Every network and box is one task of the table (``tasks.run_tasks``); its rows (per layer, ``all``
and ``deep``) and any soundness findings are stored JSON-encoded in the table's store.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..inner_bounds import SearchBudget, exact_pre, inner_bounds
from ..ir import DenseLayer
from .benchmarks import shared_dir
from .tasks import TableRun, tasks_of

TABLE = "tightness_nonlinear"
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
ACTS = ["sigmoid", "tanh", "softplus", "elu", "leaky_relu", "silu", "gelu", "hard_sigmoid", "hard_tanh"]
#: --quick: one fixture and one synthetic net, no MNIST
QUICK_ACTS = ["sigmoid"]
MNIST = {"tansig_200_50_onnx": 255.0, "ffnnSIGMOID__Point_6x200": 1.0}  # value of the full pixel range
SMALL_BUDGET = SearchBudget(starts=16, steps=80, seed=0)
MNIST_BUDGET = SearchBudget(
    starts=8, steps=200, step_final=1e-2, seed=0, max_neurons=32, search_dtype="float32"
)
EPS = 1e-2
SETTING = "A"
VERIFY = {
    "samples": 2000,
    "search_starts": 16,
    "search_iters": 60,
    "search_batch": 64,
    "exact_candidates": 4,
    "seed": 0,
}
SYNTH_WIDTHS = [16, 32, 32, 32, 4]
SYNTH_PARAMS = {"leaky_relu": {"alpha": 0.1}, "elu": {"alpha": 1.0}}
FIELDS = [
    "network",
    "activation",
    "box",
    "layer",
    "n_neurons",
    "searched",
    "degenerate",
    "sym_median",
    "sym_p90",
    "int_median",
    "int_p90",
    "inner_width_median",
    "outside_sym",
    "outside_int",
    "search_s",
    "conv_median",
    "conv_max",
    "certified",
    "max_observed",
    "cert_over_obs",
    "violations",
]
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
        layers.append(
            DenseLayer(
                f"l{li}",
                w.astype(np.float32).astype(np.float64),
                b.astype(np.float32).astype(np.float64),
                fn,
                **p,
            )
        )
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
    name: str,
    act: str,
    box: str,
    layers: list[DenseLayer],
    lo: np.ndarray,
    hi: np.ndarray,
    budget: SearchBudget,
    convergence: bool,
    bugs: list[str],
) -> list[dict]:
    """Rows (per layer, "all", "deep") of one network and box."""
    from ..ranges import ExactParams, interval_ranges
    from ..refined.symbolic_ranges import symbolic_ranges

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
            for bad, arg in ((bad_lo, ib.argmin), (bad_hi, ib.argmax)):
                for k in bad:
                    msg = outside_check(layers, li, int(nr[k]), arg[k], r.pre.lo[nr[k]], r.pre.hi[nr[k]])
                    if msg:
                        count += 1
                        bugs.append(f"{name} {box} {tag}: {msg}; x = {arg[k].tolist()}")
            n_out[tag] = count
        row = {
            "network": name,
            "activation": act,
            "box": box,
            "layer": str(li + 1),
            "n_neurons": ib.n_total,
            "searched": nr.size,
            "degenerate": int(np.sum(~ok)),
            "inner_width_median": _pct(w_in, 50),
            "outside_sym": n_out["sym"],
            "outside_int": n_out["int"],
        }
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
            "network": name,
            "activation": act,
            "box": box,
            "layer": kind,
            "n_neurons": tot["n"],
            "searched": tot["m"],
            "degenerate": tot["deg"],
            "outside_sym": tot["os"],
            "outside_int": tot["oi"],
            "search_s": round(search_s, 2),
        }
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
    from ..aster.settings import SETTINGS
    from ..frontend import load_model
    from ..pipeline import QuantizeOptions, analyse
    from ..verify import VerifyBudget, verify_program

    net, spec = load_model(path)
    layers, program, cert, _asg, _info, _t = analyse(net, spec, QuantizeOptions(error=EPS, setting=SETTING))
    vr = verify_program(
        program,
        layers,
        spec.input_lower,
        spec.input_upper,
        np.asarray(cert.output_bound, dtype=np.float64),
        SETTINGS[SETTING].no_init_error,
        VerifyBudget(**VERIFY),
    )
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


def markdown(rows: list[dict], bugs: list[str], wall: float, convergence: str, workers: int) -> str:
    lines = [
        "# Range tightness of the nonlinear activations (aster-ext experiments reproduce, table "
        "'tightness_nonlinear')",
        "",
    ]
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
        if convergence != "none"
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
    lines.append(f"- Wall time: {wall:.0f} s with {workers} workers (2-core machine shared with other jobs).")
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
    if convergence != "none":
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
        if convergence != "none":
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
    cols = [f for f in FIELDS[: FIELDS.index("inner_width_median") + 1] if f != "activation"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        if r["layer"] in ("all", "deep"):
            continue
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def fixture_rows(act: str, convergence: bool, verify: bool = True) -> dict[str, Any]:
    """The trained fixture mlp_<act> on its spec box (+ quantize/verify on its ``all`` row)."""
    from ..frontend import load_model
    from ..ir import dense_chain
    from ..pipeline import allowed_activations

    path = FIXTURES / f"mlp_{act}.onnx"
    net, spec = load_model(path)
    layers = dense_chain(net, allowed_activations("refined"))
    bugs: list[str] = []
    rs = tightness(
        net.name, act, "spec", layers, spec.input_lower, spec.input_upper, SMALL_BUDGET, convergence, bugs
    )
    if verify:
        rs[-2].update(quantize_verify(path))
    return _task_row(rs, bugs)


def synthetic_rows(act: str, convergence: bool) -> dict[str, Any]:
    """The seeded random net of ``act`` on [-1, 1]^16."""
    layers = synthetic_net(act, 0)
    box_lo, box_hi = -np.ones(SYNTH_WIDTHS[0]), np.ones(SYNTH_WIDTHS[0])
    bugs: list[str] = []
    rs = tightness(f"synth_{act}", act, "[-1,1]^16", layers, box_lo, box_hi, SMALL_BUDGET, convergence, bugs)
    return _task_row(rs, bugs)


def mnist_rows(name: str, box: str, convergence: bool) -> dict[str, Any]:
    """An external MNIST net on its full spec box or on sample 0 ± 2 pixel levels."""
    from ..frontend import load_model
    from ..ir import dense_chain
    from ..pipeline import allowed_activations
    from ..spec import load_spec

    ext = shared_dir() / "benchmarks" / "external"
    net, _ = load_model(ext / f"{name}.onnx")
    spec = load_spec(ext / f"{name}.spec.json")
    layers = dense_chain(net, allowed_activations("refined"))
    act = "/".join(sorted({la.activation for la in layers} - {"identity"}))
    lo = np.asarray(spec.input_lower, dtype=np.float64)
    hi = np.asarray(spec.input_upper, dtype=np.float64)
    if box != "full":
        x = np.asarray(spec.samples, dtype=np.float64)[0]
        level = MNIST[name] / 255.0
        lo, hi = np.maximum(lo, x - 2 * level), np.minimum(hi, x + 2 * level)
    bugs: list[str] = []
    rs = tightness(name, act, box, layers, lo, hi, MNIST_BUDGET, convergence, bugs)
    return _task_row(rs, bugs)


def _task_row(rows: list[dict], bugs: list[str]) -> dict[str, Any]:
    """The store row of one network: its table rows and soundness findings as JSON."""
    clean = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows]
    return {"status": "ok", "rows": json.dumps(clean), "bugs": json.dumps(bugs)}


STORE_FIELDS = ["status", "rows", "bugs"]


def build(run: TableRun, convergence: str = "small") -> list[Path]:
    """Run (or resume) the networks in ``work/tightness_nonlinear``; write results/tightness_nonlinear.*.
    ``convergence``: the 2x search on no nets, the small nets (default) or all nets."""
    t0 = time.perf_counter()
    conv_small = convergence in ("small", "all")
    acts = QUICK_ACTS if run.quick else ACTS
    mod = __name__
    tasks = []
    for act in acts:
        tasks += tasks_of(
            mod,
            "fixture_rows",
            [{"act": act, "convergence": conv_small}],
            lambda kw: {"kind": "fixture", "name": kw["act"], "box": "spec"},
        )
        tasks += tasks_of(
            mod,
            "synthetic_rows",
            [{"act": act, "convergence": conv_small}],
            lambda kw: {"kind": "synthetic", "name": kw["act"], "box": "[-1,1]^16"},
        )
    if not run.quick:
        items = [
            {"name": n, "box": b, "convergence": convergence == "all"}
            for n in MNIST
            for b in ("full", "sample0±2lv")
        ]
        tasks += tasks_of(
            mod,
            "mnist_rows",
            items,
            lambda kw: {"kind": "mnist", "name": kw["name"], "box": kw["box"]},
            lambda kw: 100.0,
        )
    done = run.rows(TABLE, tasks, STORE_FIELDS, parse=False)
    failed = [f"{r['kind']} {r['name']} {r['box']}: {r['status']}" for r in done if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{TABLE}: networks without rows: {failed}")
    rows: list[dict] = []
    bugs: list[str] = []
    for r in done:
        rows += json.loads(r["rows"])
        bugs += json.loads(r["bugs"])
    run.results.mkdir(parents=True, exist_ok=True)
    with open(run.results / f"{TABLE}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in FIELDS})
    wall = time.perf_counter() - t0
    (run.results / f"{TABLE}.md").write_text(markdown(rows, bugs, wall, convergence, run.workers))
    if bugs:
        raise RuntimeError(
            f"{TABLE}: SOUNDNESS: {len(bugs)} inner bound(s) outside a computed range: {bugs[:3]}"
        )
    return [run.results / f"{TABLE}.csv", run.results / f"{TABLE}.md"]
