"""Table ``nonlinear``: ε_min, quantize time and certified top-1 preservation of the external MNIST
sigmoid/tanh networks.

For each network (``../shared/benchmarks/external``: tansig_200_50_onnx, ffnnSIGMOID__Point_6x200)
and each input box (the spec's full box, and boxes sample ± r pixel levels clipped to it):

- ε_min: the smallest ε certifiable with every F, Fw <= maxLen = 32 (setting A): the certified
  bound of the all-maxLen program (``refined.solve.max_len_program``, the number the refined
  mode's InfeasibleError reports as ``smallest_error``).
- the wall time of ``quantize`` (load, analysis, ILP, certify, codegen) at ε = 1.05·ε_min.
- at that ε, for each sample input x of the spec (an exact point of the box): the real logits y as
  rigorous arb enclosures (exact float weights, ``act.f_arb``), top class t (certain when its lower
  end beats every other upper end), and for every k != t the certified bound on the error of
  y_t - y_k, taken from the error forms of the quantised program (form of output t minus form of
  output k, rigorously, min with bound_t + bound_k); the class is certified preserved when every
  such bound is strictly below the rigorous lower end of y_t - y_k.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from flint import arb

from ..activations import working_precision
from .benchmarks import shared_dir
from .tasks import TableRun, tasks_of

TABLE = "nonlinear"
NETS = {"tansig_200_50_onnx": 255.0, "ffnnSIGMOID__Point_6x200": 1.0}  # value of the full pixel range
RADII = (2.0, 5.0)
#: --quick: the tanh net on one small box
QUICK = {"tansig_200_50_onnx": ("sample0±2lv",)}
SETTING = "A"
FIELDS = [
    "network",
    "box",
    "eps_min",
    "eps_used",
    "certified",
    "quantize_s",
    "analyse_s",
    "codegen_s",
    "hw",
    "samples",
    "top1_certified",
    "min_margin",
    "max_diff_bound",
    "diff_bound_kind",
]


def external_dir() -> Path:
    return shared_dir() / "benchmarks" / "external"




def boxes(name: str, scale: float) -> list[dict[str, Any]]:
    """The full spec box and sample i ± r pixel levels (clipped to it) for every sample and radius,
    as ``run_box`` keyword arguments (the samples inside each box)."""
    from ..spec import load_spec

    spec = load_spec(external_dir() / f"{name}.spec.json")
    samples = np.asarray(spec.samples, dtype=np.float64)
    lo = np.asarray(spec.input_lower, dtype=np.float64)
    hi = np.asarray(spec.input_upper, dtype=np.float64)
    out = [
        {"name": name, "box": "full", "lower": lo.tolist(), "upper": hi.tolist(), "samples": samples.tolist()}
    ]
    level = scale / 255.0
    for r in RADII:
        for i, x in enumerate(samples):
            out.append(
                {
                    "name": name,
                    "box": f"sample{i}±{r:g}lv",
                    "lower": np.maximum(lo, x - r * level).tolist(),
                    "upper": np.minimum(hi, x + r * level).tolist(),
                    "samples": [x.tolist()],
                }
            )
    return out


def real_logits(layers: list, x: np.ndarray) -> list[arb]:
    """Rigorous arb enclosures of the real network's outputs at x (exact float64 weights)."""
    with working_precision(128):
        a = [arb(float(v)) for v in x]
        for layer in layers:
            w, b = layer.weight, layer.bias
            z = []
            for j in range(layer.n_out):
                s = arb(float(b[j]))
                row = w[j]
                for k in np.nonzero(row)[0]:
                    s += arb(float(row[k])) * a[k]
                z.append(s)
            a = z if layer.activation == "identity" else [layer.act.f_arb(v) for v in z]
    return a


def diff_bounds(
    program, layers: list, lower: np.ndarray, upper: np.ndarray, on_grid: bool, t: int, per_output: np.ndarray
) -> np.ndarray:
    """Certified bound on |err(y_t) - err(y_k)| for every k (entry t = 0): error forms of the
    program's outputs (row t minus row k, float subtraction error added to the slack), min with
    the per-output sum bound_t + bound_k."""
    from ..refined.error_forms import form_interval, forms_analysis
    from ..rigorous import MU, scaled_sum_bound, up

    run = forms_analysis(program, layers, lower, upper, on_grid)
    ca, sa = run.ca[-1], run.sa[-1]
    mag = up(np.abs(run.ctr) + run.rad)
    out = np.zeros(ca.shape[0])
    for k in range(ca.shape[0]):
        if k == t:
            continue
        d = ca[t] - ca[k]
        slack = up(up(sa[t] + sa[k]) + up(2 * MU * scaled_sum_bound(np.abs(d)[None, :], mag)[0]))
        iv = form_interval(d[None, :], np.array([slack]), run.ctr, run.rad)
        form_b = max(-float(iv.lo[0]), float(iv.hi[0]))
        out[k] = min(form_b, float(up(np.array(per_output[t] + per_output[k]))))
    return out


def run_box(name: str, box: str, lower: list[float], upper: list[float], samples: list[list[float]]) -> dict:
    """One row of the table (module docstring)."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    samples = np.asarray(samples, dtype=np.float64)
    from ..aster.settings import SETTINGS
    from ..errors import UserError
    from ..frontend import load_model
    from ..ir import dense_chain
    from ..pipeline import QuantizeOptions, allowed_activations, quantize
    from ..refined.solve import max_len_program

    path = external_dir() / f"{name}.onnx"
    net, _ = load_model(path)
    layers = dense_chain(net, allowed_activations("refined"))
    st = SETTINGS[SETTING]
    _, cert0 = max_len_program(name, layers, lower, upper, st)
    eps_min = float(cert0.bound)
    row: dict = {"eps_min": f"{eps_min:.4g}", "samples": len(samples)}
    eps = 1.05 * eps_min
    row["eps_used"] = f"{eps:.4g}"
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            opts = QuantizeOptions(
                error=eps,
                mode="refined",
                setting=SETTING,
                input_lower=list(map(float, lower)),
                input_upper=list(map(float, upper)),
            )
            res = quantize(path, opts, Path(tmp) / "out")
    except UserError as exc:
        row.update(certified=f"failed: {str(exc)[:60]}", quantize_s=round(time.perf_counter() - t0, 1))
        return row
    row["quantize_s"] = round(time.perf_counter() - t0, 1)
    tm = res.report["timings"]
    row.update(
        certified=f"{res.certificate.bound:.4g}",
        analyse_s=round(tm.get("assign_and_certify_s", 0), 1),
        codegen_s=round(tm.get("codegen_s", 0), 1),
        hw=res.report["cost"]["hw"],
    )
    ok, margins, dbs = 0, [], []
    for x in samples:
        y = real_logits(layers, x)
        t = int(np.argmax([float(v.mid()) for v in y]))
        marg = [float((y[t] - y[k]).lower()) for k in range(len(y)) if k != t]
        db = diff_bounds(res.program, layers, lower, upper, st.no_init_error, t, res.certificate.output_bound)
        dk = [db[k] for k in range(len(y)) if k != t]
        margins.append(min(marg))
        dbs.append(max(dk))
        if all(m > 0 for m in marg) and all(b < m for b, m in zip(dk, marg, strict=True)):
            ok += 1
    row.update(
        top1_certified=f"{ok}/{len(samples)}",
        min_margin=f"{min(margins):.4g}",
        max_diff_bound=f"{max(dbs):.4g}",
        diff_bound_kind="form difference (min with sum)",
    )
    return row


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the boxes in ``work/nonlinear`` and write results/nonlinear.csv/.md."""
    items = []
    for name, scale in NETS.items():
        if run.quick and name not in QUICK:
            continue
        items += [b for b in boxes(name, scale) if not run.quick or b["box"] in QUICK[name]]
    tasks = tasks_of(
        __name__,
        "run_box",
        items,
        lambda kw: {"network": kw["name"], "box": kw["box"]},
        lambda kw: len(kw["lower"]) * (2 if kw["box"] == "full" else 1),
    )
    rows = run.rows(TABLE, tasks, FIELDS, parse=False)
    lines = [
        "# External MNIST sigmoid / tanh networks: ε_min, time, certified top-1 preservation",
        "",
        "Written by `aster-ext experiments reproduce` (table 'nonlinear'; refined mode, setting A: "
        "maxLen 32, input frac 20 with input quantisation error). ε_min = certified logit bound of the "
        "all-maxLen program; quantize "
        "(analysis + ILP + certify + codegen) timed at 1.05·ε_min. A sample counts as certified when, for "
        "every k != top class t, the certified bound on the error of y_t - y_k (from the error forms: "
        "form of t minus form of k, min with bound_t + bound_k) is strictly below the rigorous (arb) "
        "real margin y_t - y_k. Boxes `sample<i>±r lv` are the sample ± r pixel levels clipped to the "
        "spec box (one level = 1 on the tanh net's [0,255] scale, 1/255 on the sigmoid net's [0,1]).",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(("" if r.get(k) is None else str(r[k])) for k in FIELDS) + " |" for r in rows]
    return run.write(TABLE, rows, FIELDS, "\n".join(lines) + "\n")
