"""Table ``tightness_breakdown``: where the refined certificate's slack comes from.

For every Aster benchmark at ε = 1e-3 in settings A and C, the refined program is built
(``pipeline.analyse``), its error forms recomputed (``refined.error_forms.forms_analysis``) and the
certified bound of output 0, |Σ_c C_c ctr_c| + Σ_c |C_c| rad_c + slack, split into

- ``input``: the input-quantisation columns (Σ |C| rad over them),
- ``centre``: |Σ_c C_c ctr_c| (systematic, sign-consistent part; attainable in principle),
- ``dW``: the radius part of Σ_k ΔW_jk x~_k in the z columns (weight quantisation over the range),
- ``rounding``: the rest of the z-column radii (product / partial-sum / dot / bias-sum truncations),
- ``relu_rem``: the a-column radii of unstable ReLU neurons (remainder ½ max|e_z| + out rounding),
- ``act_other``: the a-column radii of every other layer (out rounding, activation implementations),

each as a share of the bound; the number of unstable ReLU neurons; max observed error and the
tightness ratio bound / observed under the verify budget of the ``modes`` table (``DEFAULT_VERIFY``);
``local_max``: the largest *pattern-fixed* bound over 20000 random inputs x — the forms' column
centres and radii carried through the exact Jacobian of the real network at x (its ReLU pattern;
remainders of unstable neurons dropped), i.e. what an analysis exact in the activation pattern but
still treating the roundings as independent would have to certify at x — which factors the
tightness into ``loose`` = bound / local_max (the analysis' relaxations) times ``align`` =
local_max / observed (worst-case alignment of independent roundings that no searched input
reaches); and, for inputs of dimension <= 6, the bound of the *same program* re-certified on 2^d
and 3^d sub-boxes (max over the boxes) — what input splitting would buy the analysis.
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from .benchmarks import QUICK, aster_model_paths
from .grid import DEFAULT_VERIFY
from .tasks import TableRun, tasks_of

TABLE = "tightness_breakdown"
EPS = 1e-3
SETTINGS = ("A", "C")
SHARES = ("input", "centre", "dW", "rounding", "relu_rem", "act_other")
FIELDS = [
    "benchmark",
    "setting",
    "status",
    "bound",
    "observed",
    "tightness",
    "unstable",
    "neurons",
    *SHARES,
    "local_max",
    "loose",
    "align",
    "split2",
    "split3",
]


def split_bound(program: Any, layers: Any, lo: np.ndarray, hi: np.ndarray, k: int, on_grid: bool) -> float:
    """max over the k^d equal sub-boxes of the refined certificate of the same program."""
    from ..refined.error_forms import certify_forms

    edges = [np.linspace(a, b, k + 1) for a, b in zip(lo, hi, strict=True)]
    worst = 0.0
    for idx in itertools.product(range(k), repeat=lo.size):
        blo = np.array([edges[d][i] for d, i in enumerate(idx)])
        bhi = np.array([edges[d][i + 1] for d, i in enumerate(idx)])
        worst = max(worst, float(certify_forms(program, layers, blo, bhi, on_grid).bound))
    return worst


def local_bound(run: Any, layers: Any, lo: np.ndarray, hi: np.ndarray, n: int = 20000) -> float:
    """max over n random inputs of the pattern-fixed bound of output 0 (module docstring)."""
    from ..refined.error_forms import UNSTABLE

    lay, ctr, rad = run.layout, run.ctr, run.rad
    x = lo + (hi - lo) * np.random.default_rng(0).random((n, lo.size))
    weights = [np.asarray(layer.weight, dtype=np.float64) for layer in layers]
    masks, a = [], x
    for layer, w in zip(layers, weights, strict=True):
        z = a @ w.T + np.asarray(layer.bias, dtype=np.float64)
        m = z > 0 if layer.activation == "relu" else np.ones(z.shape, dtype=bool)
        masks.append(m)
        a = np.where(m, z, 0.0)
    g = np.zeros((n, weights[-1].shape[0]))
    g[:, 0] = 1.0
    radius = np.zeros(n)
    centre = np.zeros(n)
    for li in range(len(layers) - 1, -1, -1):
        gz = g * masks[li]
        zc, ac = lay.z_cols(li), lay.a_cols(li)
        ra = np.where(run.decisions[li] == UNSTABLE, 0.0, rad[ac])
        radius += np.abs(g) @ ra + np.abs(gz) @ rad[zc]
        centre += g @ ctr[ac] + gz @ ctr[zc]
        g = gz @ weights[li]
    radius += np.abs(g) @ rad[: lay.n_in]
    centre += g @ ctr[: lay.n_in]
    return float(np.max(radius + np.abs(centre)))


def weight_error_enclosure(
    raw: np.ndarray, frac: np.ndarray, exact: np.ndarray, exact_rad: np.ndarray | None
):
    """Interval enclosure of the quantised weights raw·2^-frac (object ints of any width, rounded to
    float with a radius where inexact) minus the exact weights ``exact`` ± ``exact_rad``."""
    from ..rigorous import Interval, down, up

    flat = raw.reshape(-1)
    vals = np.array([float(r) for r in flat], dtype=np.float64).reshape(raw.shape)
    inexact = np.array([abs(int(r)).bit_length() > 53 for r in flat], dtype=bool).reshape(raw.shape)
    value = np.ldexp(vals, -np.asarray(frac, dtype=np.int64))
    value_rad = np.where(inexact, up(np.abs(value) * 2.0**-52), 0.0)
    d = value - exact
    rad = up(value_rad + (exact_rad if exact_rad is not None else 0.0))
    return Interval(down(down(d) - rad), up(up(d) + rad))


def breakdown(model_path: str, setting: str) -> dict[str, Any]:
    """One row of the table (module docstring)."""
    from ..aster.settings import SETTINGS as ST
    from ..pipeline import QuantizeOptions
    from ..ranges import ExactParams
    from ..refined.error_forms import UNSTABLE, forms_analysis
    from ..rigorous import Interval, matvec
    from ..verify import VerifyBudget, verify_program
    from .analysis_cache import analyse_cached

    row: dict[str, Any] = {}
    on_grid = ST[setting].no_init_error
    # the refined analysis of the modes sweep's cell (model, ε, setting) when a reproduce run has it
    got = analyse_cached(Path(model_path), QuantizeOptions(error=EPS, setting=setting))
    if got.infeasible is not None:
        row["status"] = "infeasible"
        return row
    layers, prog, cert = got.layers, got.program, got.certificate
    lo = np.asarray(got.input_lower, dtype=np.float64)
    hi = np.asarray(got.input_upper, dtype=np.float64)
    run = forms_analysis(prog, layers, lo, hi, on_grid)
    lay = run.layout
    c = run.ca[-1][0]
    ctr, rad = run.ctr, run.rad
    bound = abs(c @ ctr) + np.abs(c) @ rad + run.sa[-1][0]
    parts = dict.fromkeys(SHARES, 0.0)
    parts["input"] = float(np.abs(c[: lay.n_in]) @ rad[: lay.n_in])
    parts["centre"] = float(abs(c @ ctr))
    x_real = Interval(lo, hi)
    for li, (lp, layer) in enumerate(zip(prog.layers, layers, strict=True)):
        p = ExactParams.of(layer)
        dw_m, dw_r = weight_error_enclosure(lp.weight_raw, lp.weight_t.frac, p.weight, p.weight_rad).mid_rad()
        xr = x_real if li == 0 else run.ranges[li - 1].post
        _m, dw_rad = matvec(dw_m, dw_r, xr).mid_rad()
        zc, ac = lay.z_cols(li), lay.a_cols(li)
        z_rad = float(np.abs(c[zc]) @ rad[zc])
        dw_part = min(float(np.abs(c[zc]) @ dw_rad), z_rad)
        parts["dW"] += dw_part
        parts["rounding"] += z_rad - dw_part
        a_part = float(np.abs(c[ac]) @ rad[ac])
        parts["relu_rem" if layer.activation == "relu" else "act_other"] += a_part
    row.update({k: v / bound for k, v in parts.items()})
    row["unstable"] = int(sum(int(np.sum(d == UNSTABLE)) for d in run.decisions))
    row["neurons"] = int(sum(lay.sizes[:-1]))
    budget = VerifyBudget(**DEFAULT_VERIFY)
    vr = verify_program(prog, layers, lo, hi, np.asarray(cert.output_bound), on_grid, budget)
    row.update(status="ok", bound=float(cert.output_bound[0]), observed=float(vr.max_observed_per_output[0]))
    row["tightness"] = row["bound"] / row["observed"] if row["observed"] > 0 else math.inf
    if all(layer.activation in ("relu", "identity") for layer in layers):
        row["local_max"] = local_bound(run, layers, lo, hi)
        row["loose"] = row["bound"] / row["local_max"]
        row["align"] = row["local_max"] / row["observed"] if row["observed"] > 0 else math.inf
    if lo.size <= 6:
        row["split2"] = split_bound(prog, layers, lo, hi, 2, on_grid)
        if 3**lo.size <= 243:
            row["split3"] = split_bound(prog, layers, lo, hi, 3, on_grid)
    return row


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the breakdowns in ``work/tightness_breakdown``; write results/tightness_breakdown.*."""
    paths = aster_model_paths(QUICK if run.quick else None)
    items = [{"model_path": str(p), "setting": s} for p in paths for s in SETTINGS]
    tasks = tasks_of(
        __name__,
        "breakdown",
        items,
        lambda kw: {"benchmark": Path(kw["model_path"]).stem, "setting": kw["setting"]},
        lambda kw: Path(kw["model_path"]).stat().st_size,
    )
    rows = run.rows(TABLE, tasks, FIELDS)
    return run.write(TABLE, rows, FIELDS, markdown(rows))


def _f(v: Any, fmt: str = ".3g") -> str:
    return format(v, fmt) if isinstance(v, float) else ("" if v is None else str(v))


def markdown(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if r.get("status") == "ok"]
    out = [
        "# Refined certificate: which error sources make up the bound (aster-ext experiments reproduce, "
        "table 'tightness_breakdown')",
        "",
        f"ε = {EPS:g}, settings {', '.join(SETTINGS)}, output 0 of each benchmark. Shares of the certified "
        "bound per source (module docstring of `aster_ext/experiments/tightness_breakdown.py`); "
        "`split2`/`split3`: the same program re-certified "
        "on 2^d / 3^d equal sub-boxes (max over boxes), inputs of dimension <= 6 only; `inf` = on some "
        "sub-box the analysis reports a possible overflow that the full-box analysis excludes (symbolic "
        "ranges are not monotone in the box: both are sound, the sub-box one is looser there).",
        "",
    ]
    if ok:
        gm = math.exp(statistics.mean(math.log(r["tightness"]) for r in ok))
        hi_t = [r for r in ok if r["tightness"] > 20]
        lo_t = [r for r in ok if r["tightness"] <= 20]
        out += [
            f"Feasible: {len(ok)}; tightness geo-mean {gm:.2f}.",
            "",
            "| group | runs | tightness geo-mean | loose geo-mean | align geo-mean | mean share relu_rem "
            "| mean share rounding | mean share dW |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, grp in (("all", ok), ("tightness > 20", hi_t), ("tightness <= 20", lo_t)):
            if grp:
                g = math.exp(statistics.mean(math.log(r["tightness"]) for r in grp))
                lg = math.exp(statistics.mean(math.log(r["loose"]) for r in grp))
                ag = math.exp(statistics.mean(math.log(r["align"]) for r in grp))
                out.append(
                    f"| {label} | {len(grp)} | {g:.2f} | {lg:.2f} | {ag:.2f} | "
                    f"{statistics.mean(r['relu_rem'] for r in grp):.2f} | "
                    f"{statistics.mean(r['rounding'] for r in grp):.2f} | "
                    f"{statistics.mean(r['dW'] for r in grp):.2f} |"
                )
        out.append("")
    out += ["| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    for r in rows:
        out.append("| " + " | ".join(_f(r.get(k)) for k in FIELDS) + " |")
    return "\n".join(out) + "\n"
