"""Table ``aster_lp_match``: our reproduction of Aster's ILP against the model.lp files the original
Aster wrote.

For every reference LP (``benchmarks/aster-reference/lp/NAME_SETTING.lp``):

1. build our ``aster`` model for that network (exact DSL decimals) and setting with the ε of the file,
   and diff it row by row against the reference (same names, coefficients and bounds to 1e-12 rel.);
2. solve our model with HiGHS + exact rational re-check and compare the optimum with the reference's
   ``exact_optimum_same_model`` (or, where that timed out, with the objective Aster's SCIP returned);
3. at the bits Aster itself chose, recompute Aster's "Total Error" and Daisy's area cost from our
   types and compare them with what Aster reported;
4. run ``aster-sound`` (the repaired model) for the same benchmark and setting, for comparison.
"""

from __future__ import annotations

import csv
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from .benchmarks import QUICK, shared_dir
from .tasks import TableRun, tasks_of

TABLE = "aster_lp_match"
TIME_LIMIT = 60.0

FIELDS = [
    "benchmark",
    "setting",
    "lp_match",
    "n_rows",
    "n_vars",
    "n_diffs",
    "max_rel_diff",
    "first_diff",
    "our_status",
    "our_objective",
    "our_bits",
    "our_solve_s",
    "our_rounds",
    "ref_status",
    "ref_objective",
    "ref_bits",
    "ref_exact_optimum",
    "ref_exact_bits",
    "agreement",
    "ref_lp_highs_objective",
    "claimed_error_at_ref_bits",
    "ref_claimed_error",
    "claimed_match",
    "daisy_cost_at_ref_bits",
    "ref_daisy_cost",
    "daisy_match",
    "sound_status",
    "sound_objective",
    "sound_bits",
    "sound_certified_error",
    "sound_solve_s",
]


def parse_bits(text: str) -> tuple[list[int], list[int]] | None:
    if not text:
        return None
    pairs = [p.split("/") for p in text.split()]
    return [int(a) for a, _ in pairs], [int(b) for _, b in pairs]


def fmt_bits(d: list[int], b: list[int]) -> str:
    return " ".join(f"{x}/{y}" for x, y in zip(d, b, strict=True))


def agreement(ref: dict[str, str], status: str, objective: int | None) -> str:
    exact = ref["exact_optimum_same_model"]
    if exact == "infeasible":
        return "both infeasible" if status == "infeasible" else f"ref infeasible, ours {status}"
    if status != "optimal" or objective is None:
        return f"ours {status}"
    if exact and not exact.startswith("timeout"):
        e = int(float(exact))
        return "same optimum" if objective == e else f"differs ({objective} vs {e})"
    r = int(float(ref["objective"]))
    if objective == r:
        return "ref exact timed out; same as Aster's objective"
    if objective < r:
        return f"ref exact timed out; better than Aster's by {r - objective}"
    return f"ref exact timed out; WORSE than Aster's by {objective - r}"


def match_one(lp_path: str, time_limit: float) -> dict[str, Any]:
    """One row: the LP diff, both optima, Aster's claim and cost at its bits, and aster-sound."""
    from .. import ilp
    from ..aster import assign_aster, aster_ranges, build_aster_model, build_program, get_setting
    from ..aster.benchmark import load_benchmark
    from ..aster.types import daisy_area_cost
    from ..errors import InfeasibleError

    lp = Path(lp_path)
    name, st = lp.stem.rsplit("_", 1)
    ref = _reference()[(name, st)]
    bench = load_benchmark(shared_dir() / "benchmarks" / "aster" / f"{name}.scala")
    setting = get_setting(st)
    eps = Fraction(str(bench.error_bounds[0]))
    ranges = aster_ranges(bench.layers, bench.lower, bench.upper, saturate=True)
    am = build_aster_model(bench.layers, ranges, setting, eps, "aster")
    ref_model = ilp.parse_lp(lp.read_text())
    diffs, worst = ilp.compare_models(am.model, ref_model, rel_tol=1e-12)
    row: dict[str, object] = {
        "benchmark": name,
        "setting": st,
        "lp_match": "yes" if not diffs else "no",
        "n_rows": len(am.model.rows),
        "n_vars": len(am.model.vars),
        "n_diffs": len(diffs),
        "max_rel_diff": f"{worst:.1e}",
        "first_diff": diffs[0] if diffs else "",
    }
    t0 = time.perf_counter()
    sol = ilp.solve_exact(am.model, time_limit=time_limit, col_scale=am.col_scale())
    row["our_solve_s"] = f"{time.perf_counter() - t0:.3f}"
    row["our_rounds"] = sol.rounds
    row["our_status"] = sol.status
    L = am.n_layers
    obj = None
    if sol.values is not None:
        obj = int(sol.objective)
        d = [int(sol.values[f"dot_{l}"]) for l in range(1, L + 1)]
        b = [int(sol.values[f"bias_{l}"]) for l in range(1, L + 1)]
        row["our_objective"] = obj
        row["our_bits"] = fmt_bits(d, b)
    row["ref_status"] = ref["status"]
    row["ref_objective"] = ref["objective"]
    row["ref_bits"] = ref["frac_bits_dot_bias_per_layer"]
    row["ref_exact_optimum"] = ref["exact_optimum_same_model"]
    row["ref_exact_bits"] = ref["exact_optimum_bits"]
    row["agreement"] = agreement(ref, sol.status, obj)
    ref_sol = ilp.solve_exact(ref_model, time_limit=time_limit, col_scale=am.col_scale())
    row["ref_lp_highs_objective"] = (
        int(ref_sol.objective) if ref_sol.objective is not None else ref_sol.status
    )
    bits = parse_bits(ref["frac_bits_dot_bias_per_layer"])
    if bits is not None:
        claimed = am.error_bound(*bits)
        row["claimed_error_at_ref_bits"] = repr(float(claimed))
        row["ref_claimed_error"] = ref["claimed_total_error"]
        rel = abs(float(claimed) - float(ref["claimed_total_error"])) / float(ref["claimed_total_error"])
        row["claimed_match"] = "yes" if rel < 1e-9 else f"no (rel {rel:.1e})"
        prog = build_program(bench.layers, ranges, setting, bits[0], bits[1], "aster")
        cost = daisy_area_cost(prog)
        row["daisy_cost_at_ref_bits"] = cost
        row["ref_daisy_cost"] = ref["daisy_area_cost"]
        row["daisy_match"] = "yes" if cost == int(float(ref["daisy_area_cost"])) else "no"
    t0 = time.perf_counter()
    try:
        res = assign_aster(bench.layers, bench.lower, bench.upper, float(eps), st, "aster-sound", time_limit)
        row["sound_status"] = res.solver_status
        row["sound_objective"] = res.objective
        row["sound_bits"] = fmt_bits(res.dot_bits, res.bias_bits)
        row["sound_certified_error"] = f"{float(res.claimed_error):.6g}"
    except InfeasibleError as e:
        row["sound_status"] = "infeasible"
        row["sound_certified_error"] = (
            f"min at maxLen {e.smallest_error:.4g}" if e.smallest_error is not None else str(e)
        )
    row["sound_solve_s"] = f"{time.perf_counter() - t0:.3f}"
    return row


def _reference() -> dict[tuple[str, str], dict[str, str]]:
    with (shared_dir() / "benchmarks" / "aster-reference" / "aster_runs.csv").open() as fh:
        return {(r["benchmark"], r["setting"]): r for r in csv.DictReader(fh)}


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the comparisons in ``work/aster_lp_match``; write results/aster_lp_match.csv/.md."""
    lps = sorted((shared_dir() / "benchmarks" / "aster-reference" / "lp").glob("*.lp"))
    if run.quick:
        lps = [p for p in lps if p.stem.rsplit("_", 1)[0] in QUICK]
    items = [{"lp_path": str(p), "time_limit": TIME_LIMIT} for p in lps]
    tasks = tasks_of(
        __name__,
        "match_one",
        items,
        lambda kw: dict(zip(("benchmark", "setting"), Path(kw["lp_path"]).stem.rsplit("_", 1), strict=True)),
    )
    rows = run.rows(TABLE, tasks, FIELDS, parse=False)
    return run.write(TABLE, rows, FIELDS, markdown(rows))


def markdown(rows: list[dict[str, Any]]) -> str:
    n = len(rows)
    lp_ok = sum(r["lp_match"] == "yes" for r in rows)
    agree: dict[str, int] = {}
    for r in rows:
        key = str(r["agreement"]).split(" by ")[0]
        agree[key] = agree.get(key, 0) + 1
    with_bits = [r for r in rows if r.get("claimed_match")]
    claimed_ok = sum(r["claimed_match"] == "yes" for r in with_bits)
    daisy_ok = sum(r["daisy_match"] == "yes" for r in with_bits)
    times = sorted(float(r["our_solve_s"]) for r in rows)
    rounds = sum(int(r["our_rounds"]) > 1 for r in rows)
    ties = sum(
        1 for r in rows if r["agreement"] == "same optimum" and r.get("our_bits") != r.get("ref_exact_bits")
    )
    out = [
        "# Aster ILP reproduction vs. the original tool's model.lp files",
        "",
        "Generated by `aster-ext experiments reproduce` (table 'aster_lp_match'). For each reference LP",
        "we build our `aster` model",
        "(exact DSL decimals, ε = 1e-3 as in the files), diff it row by row (names, coefficients, senses,",
        "right-hand sides, bounds, variable kinds, objective; relative tolerance 1e-12), solve it with HiGHS",
        "plus an exact rational re-check, and compare with the reference's exact optimum of the same model.",
        "",
        "## Summary",
        "",
        f"- LP files compared: {n}; identical models (rows, bounds, objective within 1e-12): **{lp_ok}/{n}**",
        "- Optimum agreement:",
    ]
    out += [f"  - {k}: {v}" for k, v in sorted(agree.items())]
    out += [
        f"- Same optimum but different (tied) bits than the reference's exact solution: {ties}",
        f"- Aster's \"Total Error\" recomputed at Aster's own chosen bits matches its report: "
        f"{claimed_ok}/{len(with_bits)}",
        f"- Daisy's area cost recomputed from our types at Aster's bits matches its report: "
        f"{daisy_ok}/{len(with_bits)}",
        f"- Our solve time (HiGHS + exact re-check): median {times[len(times) // 2]:.2f} s, "
        f"max {times[-1]:.2f} s; solves needing a cut-off round after the exact re-check: {rounds}",
        "- Networks read by: the DSL frontend (exact DSL decimals)",
        "",
        "## Findings needed for an exact reproduction",
        "",
        "- Layer-1 dot range: Aster's range phase first computes one interval per layer,",
        "  D_l = n_{l-1}·([min W_l, max W_l] ⊗ X_{l-1}) with X_0 the hull of all inputs, and uses it for the",
        "  bias sum B_l = D_l ⊕ [min b, max b] and X_l = ReLU(B_l). It then re-evaluates the unrolled",
        "  products and partial sums from the individual input elements, and the dot variables take the",
        "  partial-sum range Σ_k Wh ⊗ X_{l-1,k}. For layers >= 2 every input has the range X_{l-1}, so",
        "  nothing changes; for layer 1 the dot rows use Σ_k Wh ⊗ [lo_k, hi_k] (SmallNN: [-4.5, 4.5],",
        "  slack 3.5) while the bias rows use the hull-based D_1 ([-6, 6], B_1 = [-5, 8]).",
        "- Integer bits saturate at 32: I(r) is computed from a Java double->int conversion, which clamps",
        "  at 2^31-1. ACC10NN/A is infeasible in Aster because of this (layer 7 onwards the overflow rows",
        "  have negative slack); without the saturation the same model would only fail the error row.",
        "- Constants in the LP are Aster's exact rationals printed as doubles; products of propagation",
        "  factors (e.g. 13.419255831916956 = 4.6554487·2.88248388 in ACC3NN) are double products.",
        "- Numbering: per layer 2·(maxLen-minLen+1) binaries plus 4 unused numbers; x_{base+k} selects",
        "  2^-(maxLen+1-k); the cost integers come after all layers' blocks.",
        "",
        "## Per model",
        "",
        "| benchmark | set | LP | ours (obj, bits) | reference exact optimum | agreement | Aster's SCIP run |"
        " Total Error @ref bits | Daisy cost @ref bits | aster-sound (obj, certified err) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours = f"{r.get('our_objective', r['our_status'])} ({r.get('our_bits', '')})"
        refx = (
            f"{r['ref_exact_optimum']} ({r['ref_exact_bits']})"
            if r["ref_exact_bits"]
            else r["ref_exact_optimum"]
        )
        aster = f"{r['ref_objective']} ({r['ref_bits']})" if r["ref_bits"] else r["ref_status"]
        sound = (
            f"{r.get('sound_objective')} ({r.get('sound_certified_error')})"
            if r.get("sound_status") != "infeasible"
            else f"infeasible ({r.get('sound_certified_error')})"
        )
        out.append(
            f"| {r['benchmark']} | {r['setting']} | {r['lp_match']} | {ours} | {refx} | {r['agreement']} "
            f"| {aster} | {r.get('claimed_match', '')} | {r.get('daisy_match', '')} | {sound} |"
        )
    out += [
        "",
        "Notes: `aster-sound` is the repaired model (see aster_ext/aster/model.py); its error is a certified",
        "bound for the generated program (inputs on the 2^-initLen grid for settings C/D). In setting A the",
        "input error 2^-20, scaled by the product of the layers' absolute row sums, alone exceeds 1e-3",
        "for the deeper networks, hence the infeasible entries.",
        "",
    ]
    return "\n".join(out)
