"""Lossless JSON form of a :class:`FixedProgram` (raw constants as decimal strings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .fixedpoint import FixedFormat
from .program import FixedProgram, FormatArray, LayerProgram

_FORMAT_FIELDS = ("weight_t", "product_t", "psum_t", "dot_t", "bias_t", "bsum_t", "out_t")


def _ints_to_json(a: np.ndarray) -> Any:
    return np.vectorize(lambda v: str(int(v)), otypes=[object])(a).tolist()


def _ints_from_json(v: Any) -> np.ndarray:
    arr = np.array(v, dtype=object)
    return np.vectorize(int, otypes=[object])(arr) if arr.size else arr


def _int_or_none(v: Any) -> str | None:
    return None if v is None else str(int(v))


def act_impl_to_json(impl: Any) -> dict[str, Any] | None:
    """JSON of a TableImpl / PiecewiseImpl: every raw integer as a decimal string, floats as JSON
    floats (exact round trip), the activation by name and parameters."""
    from .activations import PiecewiseImpl, SegmentedTableImpl, TableImpl

    if impl is None:
        return None
    if isinstance(impl, SegmentedTableImpl):
        return {
            "kind": "segmented_table",
            "activation": impl.act.name,
            "params": dict(impl.act.params),
            "in_frac": int(impl.in_frac),
            "out_frac": int(impl.out_frac),
            "interp": bool(impl.interp),
            "breaks": [str(int(b)) for b in impl.breaks],
            "parts": [act_impl_to_json(p) for p in impl.parts],
            "offsets": [int(o) for o in impl.offsets],
            "entries": [str(int(v)) for v in impl.entries],
            "lo": float(impl.lo),
            "hi": float(impl.hi),
            "error_bound": float(impl.error_bound),
            "error_lo": float(impl.error_lo),
            "error_hi": float(impl.error_hi),
        }
    head = {"activation": impl.act.name, "params": dict(impl.act.params)}
    head.update({"in_frac": int(impl.in_frac), "out_frac": int(impl.out_frac)})
    if isinstance(impl, TableImpl):
        return {
            "kind": "table",
            **head,
            "shift": int(impl.shift),
            "base": str(int(impl.base)),
            "entries": [str(int(v)) for v in impl.entries],
            "lo": float(impl.lo),
            "hi": float(impl.hi),
            "error_bound": float(impl.error_bound),
            "error_lo": float(impl.error_lo),
            "error_hi": float(impl.error_hi),
            "index_bits": int(impl.index_bits),
            "interp": bool(impl.interp),
        }
    if isinstance(impl, PiecewiseImpl):
        return {
            "kind": "piecewise",
            **head,
            "const_frac": int(impl.const_frac),
            "s_neg": str(int(impl.s_neg)),
            "s_pos": str(int(impl.s_pos)),
            "offset": str(int(impl.offset)),
            "clamp_lo": _int_or_none(impl.clamp_lo),
            "clamp_hi": _int_or_none(impl.clamp_hi),
            "rounding": impl.rounding,
        }
    raise TypeError(f"unknown activation implementation {type(impl).__name__}")


def act_impl_from_json(d: dict[str, Any] | None) -> Any:
    from .activations import PiecewiseImpl, SegmentedTableImpl, TableImpl, get_activation

    if d is None:
        return None
    act = get_activation(d["activation"], **{k: float(v) for k, v in d.get("params", {}).items()})
    if d["kind"] == "segmented_table":
        entries = np.empty(len(d["entries"]), dtype=object)
        entries[:] = [int(v) for v in d["entries"]]
        return SegmentedTableImpl(
            act=act, in_frac=int(d["in_frac"]), out_frac=int(d["out_frac"]), interp=bool(d["interp"]),
            breaks=tuple(int(b) for b in d["breaks"]), parts=tuple(act_impl_from_json(p) for p in d["parts"]),
            offsets=tuple(int(o) for o in d["offsets"]), entries=entries,
            lo=float(d["lo"]), hi=float(d["hi"]),
            error_bound=float(d["error_bound"]), error_lo=float(d["error_lo"]), error_hi=float(d["error_hi"]),
        )  # fmt: skip
    if d["kind"] == "table":
        entries = np.empty(len(d["entries"]), dtype=object)
        entries[:] = [int(v) for v in d["entries"]]
        return TableImpl(
            act=act, in_frac=int(d["in_frac"]), out_frac=int(d["out_frac"]), shift=int(d["shift"]),
            base=int(d["base"]), entries=entries, lo=float(d["lo"]), hi=float(d["hi"]),
            error_bound=float(d["error_bound"]), error_lo=float(d["error_lo"]),
            error_hi=float(d["error_hi"]), index_bits=int(d["index_bits"]),
            interp=bool(d.get("interp", False)),
        )  # fmt: skip
    if d["kind"] == "piecewise":
        opt = lambda v: None if v is None else int(v)  # noqa: E731
        return PiecewiseImpl(
            act=act, in_frac=int(d["in_frac"]), out_frac=int(d["out_frac"]), const_frac=int(d["const_frac"]),
            s_neg=int(d["s_neg"]), s_pos=int(d["s_pos"]), offset=int(d["offset"]),
            clamp_lo=opt(d["clamp_lo"]), clamp_hi=opt(d["clamp_hi"]), rounding=d["rounding"],
        )  # fmt: skip
    raise ValueError(f"unknown activation implementation kind {d['kind']!r}")


def program_to_json(p: FixedProgram) -> dict[str, Any]:
    layers = []
    for lp in p.layers:
        d: dict[str, Any] = {"name": lp.name, "activation": lp.activation}
        d["weight_raw"] = _ints_to_json(lp.weight_raw)
        d["bias_raw"] = _ints_to_json(lp.bias_raw)
        for f in _FORMAT_FIELDS:
            d[f] = getattr(lp, f).to_json()
        if lp.act_impl is not None:
            d["act_impl"] = act_impl_to_json(lp.act_impl)
        layers.append(d)
    t = p.input_t
    return {
        "name": p.name,
        "quant": p.quant,
        "overflow": p.overflow,
        "input_t": {"width": t.width, "int_bits": t.int_bits},
        "layers": layers,
        "meta": p.meta,
    }


def program_from_json(d: dict[str, Any]) -> FixedProgram:
    layers = []
    for ld in d["layers"]:
        fmts = {f: FormatArray(np.array(ld[f]["width"]), np.array(ld[f]["int_bits"])) for f in _FORMAT_FIELDS}
        layers.append(
            LayerProgram(
                name=ld["name"],
                activation=ld["activation"],
                weight_raw=_ints_from_json(ld["weight_raw"]),
                bias_raw=_ints_from_json(ld["bias_raw"]),
                **fmts,
                act_impl=act_impl_from_json(ld.get("act_impl")),
            )
        )
    t = d["input_t"]
    return FixedProgram(
        name=d["name"],
        input_t=FixedFormat(t["width"], t["int_bits"], d["quant"], d["overflow"]),
        layers=layers,
        quant=d["quant"],
        overflow=d["overflow"],
        meta=d.get("meta", {}),
    )


def save_program(p: FixedProgram, path: Path) -> None:
    path.write_text(json.dumps(program_to_json(p)))


def load_program(path: Path) -> FixedProgram:
    """Read program.json; a malformed file is a one-line UserError."""
    try:
        return program_from_json(json.loads(Path(path).read_text()))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UserError(f"{path}: not a valid aster_ext program.json ({type(exc).__name__}: {exc})") from None
