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


def render_markdown(r: dict[str, Any]) -> str:
    """Human-readable summary: the certificate, formats per layer, cost, solver, timings."""
    sound = "sound certificate" if r["sound"] else "Aster's own claim (NOT a sound bound, DESIGN §7)"
    lines = [
        f"# {r['network']}: fixed-point implementation ({r['mode']}, setting {r['setting']})",
        "",
        f"- Real network (reference): {r['reference']}",
        f"- Input box: lower {r['input_lower']}, upper {r['input_upper']}",
        f"- Target error: {r['target_error']:g}",
        f"- Certified error: {r['certified_error']:.6g} ({sound})",
        f"- Independent interval certificate of the emitted program: {r['independent_bound']:.6g}",
    ]
    if r["input_on_grid"]:
        lines.append(
            f"- Inputs are assumed exactly representable in `{r['input_format']}` (noInitError): the "
            "certificate holds only for inputs on that grid."
        )
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
