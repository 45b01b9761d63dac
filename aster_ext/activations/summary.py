"""What implements an activation, for reports: one summary dict and one sentence per
implementation (tables, segmented tables, piecewise-linear maps), shared by the dense refined
report (one per layer) and the classifier report (one per table-activation node)."""

from __future__ import annotations

from typing import Any


def impl_summary(impl: Any) -> dict[str, Any]:
    """activation, in/out fracs and kind; tables add entries, rigorous error bound, range,
    interpolation (segmented ones their segment count); piecewise maps their constant frac."""
    d: dict[str, Any] = {"activation": impl.act.describe(), "in_frac": int(impl.in_frac),
                         "out_frac": int(impl.out_frac)}  # fmt: skip
    if hasattr(impl, "entries"):
        d.update(kind="table", entries=int(impl.size), error_bound=float(impl.error_bound),
                 range=[float(impl.lo), float(impl.hi)], interpolating=bool(impl.interp))  # fmt: skip
        if hasattr(impl, "parts"):  # SegmentedTableImpl: cells of different widths per segment
            d.update(kind="segmented table", segments=len(impl.parts))
    else:
        d.update(kind="piecewise", const_frac=int(impl.const_frac), exact=bool(impl.exact))
    return d


def impl_sentence(s: dict[str, Any], where: str) -> str:
    """'<activation> implemented as a <kind> (fracs, entries), <its error>' from :func:`impl_summary`;
    ``where`` says over what a piecewise map's error is bounded in the certificate."""
    return (
        f"{s['activation']} implemented as a {s['kind']} "
        f"(input frac {s['in_frac']}, output frac {s['out_frac']}"
        + (f", {s['entries']} entries" if "entries" in s else "")
        + (
            f"), rigorous implementation error <= {s['error_bound']:.3g} on its range"
            if "error_bound" in s
            else f"), error bounded {where} in the certificate"
        )
    )
