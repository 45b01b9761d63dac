"""report.json and report.md writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .activations.summary import impl_sentence


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
        f"- hw (operand bits over multipliers and adders): {c['hw']}"
        + (
            f" (multipliers {c['mult_operand_bits']}, adders {c['adder_bits']})"
            if c.get("mult_operand_bits") is not None and c.get("adder_bits") is not None
            else ""
        ),
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


# ------------------------------------------------------------------------------------------------
# Classifier outputs (quantize --task classify, aster_ext/classify.py)
# ------------------------------------------------------------------------------------------------


def write_classify_reports(report: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(render_classify_markdown(report))


def classify_summary_line(r: dict[str, Any], out_dir: Any = None) -> str:
    """The one-line result of ``quantize --task classify``: certified regions out of all, why
    the others are not, the tightest certified slack, the logit target when given, the cost."""
    if r.get("task") == "regress":
        return graph_regress_summary_line(r, out_dir)
    regs = r["regions"]
    not_provable = sum(1 for e in regs if not e["provable"])
    other = sum(1 for e in regs if e["provable"] and not e["certified"])
    why = []
    if not_provable:
        why.append(f"{not_provable} not provable for the real network")
    if other:
        why.append(f"{other} not certified: precision/overflow")
    text = f"{r['network']}: certified top-1 on {r['certified_regions']} of {r['n_regions']} regions"
    text += f" ({'; '.join(why)})" if why else ""
    cert = [e for e in regs if e["certified"]]
    if cert:
        e = min(cert, key=lambda e: e["slack"])
        text += (
            f"; tightest: {e['name']} margin >= {e['margin_lower_bound']:.4g}, "
            f"margin error <= {e['margin_error_bound']:.4g}"
        )
    if r.get("target_error") is not None:
        text += (
            f"; logit error <= {r['certified_logit_error']:.4g} on every region "
            f"(target {r['target_error']:g})"
        )
    return text + _cost_and_files(r, out_dir)


def _cost_and_files(r: dict[str, Any], out_dir: Any, hw: bool = False) -> str:
    """The summary lines' tail: multipliers, operand bits (``hw``: and hw), the C++, the folder."""
    c = r["cost"]
    text = f"; {c['mult_count']} multipliers, {c['mult_operand_bits']} operand bits"
    text += f", hw {c['hw']}" if hw else ""
    cpp = r.get("cpp")
    text += f"; C++ {cpp['name']}.cpp" if isinstance(cpp, dict) and cpp.get("name") else "; no C++"
    return text + (f"; wrote {out_dir}" if out_dir is not None else "")


def graph_regress_summary_line(r: dict[str, Any], out_dir: Any = None) -> str:
    """The one-line result of ``quantize --task regress`` on a graph (CNN): the certified logit
    error over the input box against the target, the cost, the C++."""
    e = r["regions"][0]
    bound = e["logit_error_bound"]
    text = (
        f"{r['network']}: certified error <= {bound:.4g} (target {r['target_error']:g}) on every output "
        f"over the input box" if e["certified"]
        else f"{r['network']}: NOT certified over the input box ({e['reason']})"
    )  # fmt: skip
    return text + _cost_and_files(r, out_dir, hw=True)


def render_classify_markdown(r: dict[str, Any]) -> str:
    """Human-readable classify report: regions table, formats, cost, timings, notes."""
    title = (
        "fixed-point network, certified logit error over the input box"
        if r.get("task") == "regress"
        else "fixed-point classifier, certified top-1 per region"
    )
    lines = [
        f"# {r['network']}: {title}",
        "",
        f"- Real network (reference): {r['reference']}",
        f"- Input box: {box_text(r['input_lower'], r['input_upper'])}",
        f"- Regions: {r['n_regions']} from {r['regions_source']} (boxes in `{r['regions_file']}`)",
        f"- Certified: **{r['certified_regions']} of {r['n_regions']}** "
        f"(fraction {r['certified_fraction']:.3g}); provable for the real network: {r['provable_regions']}",
        f"- Certificate: {r['certificate_condition']}",
    ]
    if r.get("target_error") is not None:
        lines.append(
            f"- Logit error target {r['target_error']:g}: certified <= {r['certified_logit_error']:.6g} "
            "on every region"
        )
    lines += [
        f"- Arithmetic: AP_{r['quant']}, AP_{r['overflow']}",
        "",
        "## Regions",
        "",
        "margin lower bound and margin error bound at the class of least slack (slack = lower bound - "
        "error bound; > 0 certifies the region).",
        "",
        "| region | label | class | margin lower bound | margin error bound | slack | logit error bound "
        "| certified | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    def num(v: float | None, digits: int = 5) -> str:
        return "inf/unbounded" if v is None else f"{v:.{digits}g}"

    def dash(v: int | None) -> str:
        return "-" if v is None else str(v)

    for e in r["regions"]:
        lines.append(
            f"| {e['name']} | {dash(e['label'])} | {dash(e['worst_class'])} | "
            f"{num(e['margin_lower_bound'])} | {num(e['margin_error_bound'])} | {num(e['slack'])} | "
            f"{num(e['logit_error_bound'], 4)} | "
            f"{'yes' if e['certified'] else 'no'} | {e['reason'] or ''} |"
        )
    lines += [
        "",
        "## Formats (fractional bits F and widths W, min-max over channels/elements)",
        "",
        "| node | kind | out F | out W | weight F | weight W | accumulator W |",
        "|---|---|---|---|---|---|---|",
    ]

    def rng(v: Any) -> str:
        return "" if v is None else (str(v[0]) if v[0] == v[1] else f"{v[0]}-{v[1]}")

    for f in r["formats"]:
        lines.append(
            f"| {f['node']} | {f['kind']} | {rng(f['frac'])} | {rng(f['width'])} | "
            f"{rng(f.get('weight_frac'))} | {rng(f.get('weight_width'))} | {rng(f.get('acc_width'))} |"
        )
    c = r["cost"]
    lines += [
        "",
        f"## Cost ({r['cost_model']})",
        "",
        f"- multipliers: {c['mult_count']}, operand bits Σ(W_w + W_x): {c['mult_operand_bits']}, "
        f"bilinear Σ W_w·W_x: {c['mult_bilinear']}",
        f"- adders: {c['adder_count']}, adder bits: {c['adder_bits']}",
        *([f"- activation table ROM bits: {c['table_bits']}"] if c.get("table_bits") else []),
        *[f"- {f['node']}: " + impl_sentence(f["impl"], "over the node's input range") for f in r["formats"]
          if f.get("impl")],
        "",
        "## Search and timings",
        "",
        f"- {r['frac_search']['method']}; global F {r['frac_search']['global_frac']}, "
        f"{r['frac_search']['checks']} region checks",
        f"- peak memory (resident set of the process): {r['peak_mib']:.1f} MiB",
    ]
    lines += [f"- {k}: {v:.3f} s" for k, v in r["timings"].items()]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"
