"""Lossless JSON form of a :class:`FixedProgram` (raw constants as decimal strings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .fixedpoint import FixedFormat
from .program import FixedProgram, FormatArray, LayerProgram

_FORMAT_FIELDS = ("weight_t", "product_t", "psum_t", "dot_t", "bias_t", "bsum_t", "out_t")


def _ints_to_json(a: np.ndarray) -> Any:
    return np.vectorize(lambda v: str(int(v)), otypes=[object])(a).tolist()


def _ints_from_json(v: Any) -> np.ndarray:
    arr = np.array(v, dtype=object)
    return np.vectorize(int, otypes=[object])(arr) if arr.size else arr


def program_to_json(p: FixedProgram) -> dict[str, Any]:
    layers = []
    for lp in p.layers:
        d: dict[str, Any] = {"name": lp.name, "activation": lp.activation}
        d["weight_raw"] = _ints_to_json(lp.weight_raw)
        d["bias_raw"] = _ints_to_json(lp.bias_raw)
        for f in _FORMAT_FIELDS:
            d[f] = getattr(lp, f).to_json()
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
    return program_from_json(json.loads(path.read_text()))
