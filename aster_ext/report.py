"""report.json and report.md writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_reports(report: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(render_markdown(report))


def bits_text(bits: int | list[int]) -> str:
    """One layer's fractional bits: the int, or 'min-max' over its neurons."""
    if isinstance(bits, list):
        lo, hi = min(bits), max(bits)
        return str(lo) if lo == hi else f"{lo}-{hi}"
    return str(bits)


BOX_LISTED = 16  # input boxes with more values are summarised in report.md (report.json lists all)


def box_text(lower: list[float], upper: list[float]) -> str:
    """The input box in one line: every bound when small, else a summary of the bounds."""
    n = len(lower)
    if n <= BOX_LISTED:
        return f"lower {lower}, upper {upper}"
    if min(lower) == max(lower) and min(upper) == max(upper):
        return f"{n} inputs, each in [{lower[0]:g}, {upper[0]:g}] (report.json lists every bound)"
    return (
        f"{n} inputs; lower bounds in [{min(lower):g}, {max(lower):g}], upper bounds in "
        f"[{min(upper):g}, {max(upper):g}] (report.json lists every bound)"
    )


def solver_flags(r: dict[str, Any]) -> list[str]:
    """Ways the solver run fell short of an optimal ILP solution, in words (empty if none)."""
    s = r["solver"]
    flags = []
    if s.get("max_width_fallback"):
        flags.append(
            f"maximum-width fallback: every fractional bit at maxLen={r['setting_params']['maxLen']} "
            "(no ILP solution was used)"
        )
    if s.get("time_limit_hit"):
        cap = s.get("run_cap_s")
        flags.append(
            f"the ILP stopped at a time limit (--time-limit {s.get('time_limit_s', 0):g} s"
            + (f"; refined mode also stops each HiGHS run at {cap:g} s" if cap else "")
            + "): formats not proven cheapest"
        )
    return flags


def summary_line(r: dict[str, Any], out_dir: Any = None) -> str:
    """The one-line result ``quantize`` prints: the bound, exactly what it covers, and caveats."""
    if r["sound"]:
        kind = "certified " + r.get("certificate_condition", "")
    else:
        kind = "claimed by Aster, not sound"
        if r["input_on_grid"]:
            kind += f"; {r['certificate_condition']}"
    text = f"{r['network']}: error <= {r['certified_error']:.4g} ({kind.strip()})"
    text += f", target {r['target_error']:g}"
    text += "".join(f"; {f}" for f in solver_flags(r))
    text += f"; Daisy area {r['cost']['daisy_area']}, hw {r['cost']['hw']}"
    if out_dir is not None:
        text += f"; wrote {out_dir}"
    return text


def independent_text(r: dict[str, Any]) -> str:
    """The independent interval certificate's bound, and why it is infinite when it is."""
    b = r["independent_bound"]
    text = (
        f"- Independent interval certificate of the emitted program: {b:.6g} (a second, simpler "
        "analysis of the same program: plain interval ranges per neuron"
    )
    if b != float("inf"):
        return text + "; never below the certified error in sound modes)"
    n = r.get("independent_overflow_count", 0)
    first = (r.get("independent_overflows") or ["?"])[0]
    why = (
        "the integer bits were sized by the tighter symbolic ranges of refined mode, and the plain "
        "intervals, which are wider, reach values outside some types"
        if r["mode"] == "refined"
        else "the assigned types cannot hold every value of the interval ranges"
    )
    return text + (
        f"). It is inf because this interval analysis cannot exclude an overflow in {n} place(s) "
        f"(first: {first}): {why}. It is a cross-check only; the certified error above does not "
        "depend on it"
        + (" (it comes from the error-form certifier of refined mode)" if r["mode"] == "refined" else "")
        + "."
    )


def render_markdown(r: dict[str, Any]) -> str:
    """Human-readable summary: the certificate, formats per layer, cost, solver, timings."""
    sound = "sound certificate" if r["sound"] else "Aster's own claim (NOT a sound bound, DESIGN §7)"
    condition = r.get("certificate_condition")
    lines = [
        f"# {r['network']}: fixed-point implementation ({r['mode']}, setting {r['setting']})",
        "",
        f"- Real network (reference): {r['reference']}",
        f"- Input box: {box_text(r['input_lower'], r['input_upper'])}",
        f"- Target error: {r['target_error']:g}",
        f"- Certified error: {r['certified_error']:.6g} ({sound}"
        + (f", {condition}" if condition else "")
        + ")",
        independent_text(r),
    ]
    if r["input_on_grid"]:
        lines.append(
            f"- Inputs are assumed exactly representable in `{r['input_format']}` (noInitError): the "
            "certificate holds only for inputs on that grid; `aster-ext verify` also reports the error "
            "of off-grid inputs, which it does not cover."
        )
    lines += [f"- **Solver**: {f}" for f in solver_flags(r)]
    if r["overflows"]:
        lines.append("- **Overflow**: " + "; ".join(r["overflows"]))
    lines += [
        f"- Input type `{r['input_format']}`, output type `{r['output_format']}`",
        "",
        "## Fractional bits per layer (dot / bias)",
        "",
        "| layer | dot | bias |",
        "|---|---|---|",
    ]
    for i, (d, b) in enumerate(zip(r["frac_bits"]["dot"], r["frac_bits"]["bias"], strict=True)):
        lines.append(f"| {i + 1} | {bits_text(d)} | {bits_text(b)} |")
    lines += [
        "",
        "## Formats per layer",
        "",
        "| layer | act | weights | products | partial sums | dot | bias | bias sum | output |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in r["formats"]:
        cells = [
            ", ".join(f[k]["distinct"][:3]) + (" …" if len(f[k]["distinct"]) > 3 else "")
            for k in ("weight_t", "product_t", "psum_t", "dot_t", "bias_t", "bsum_t", "out_t")
        ]
        lines.append(f"| {f['layer']} | {f['activation']} | " + " | ".join(cells) + " |")
    c = r["cost"]
    lines += [
        "",
        "## Cost (from the declared types)",
        "",
        f"- Daisy area: {c['daisy_area']}",
        f"- hw (operand bits over multipliers and adders): {c['hw']}",
        f"- bilinear multiplier cost Σ W_w·W_x: {c['mult_bilinear']}",
        f"- weight + bias bits: {c['weight_bits']}",
        f"- activation table bits (one ROM per layer): {c.get('table_bits', 0)}",
        f"- ILP objective: {c.get('aster_objective', c.get('ilp_objective'))}",
        "",
        "## Solver and timings",
        "",
        f"- HiGHS status {r['solver']['status']}, {r['solver']['time_s']:.3f} s, exact re-check "
        f"{'passed' if r['solver']['exact_check_ok'] else 'FAILED'}",
        f"- Certify rounds: {len(r['certify_rounds'])}",
    ]
    lines += [f"- {k}: {v:.3f} s" for k, v in r["timings"].items()]
    lines += ["", "## Code layout", ""] + [
        f"- layer {i + 1}: {t}" for i, t in enumerate(r["codegen"]["layouts"])
    ]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"
