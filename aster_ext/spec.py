"""Input specifications: the box of input ranges, error targets and optional sample inputs.

A :class:`Spec` is plain data. Bounds are float64 arrays flattened in the ONNX input order
(C-order of the input shape without the batch dimension). Two JSON layouts are read: the Aster
benchmark layout (``input_lower``, ``input_upper``, ``error_bounds``, ``layers``, ...) and the
external-benchmark layout (adds ``input_shape``, ``example_inputs``, ``vnnlib`` examples,
``vnnlib_properties`` boxes, ``input_normalization`` ...). Everything not mapped to a field is
kept in ``extra``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError


@dataclass
class Spec:
    """Input box ``input_lower <= x <= input_upper`` (elementwise) and error targets."""

    name: str
    input_lower: np.ndarray  # [n_in] float64
    input_upper: np.ndarray  # [n_in] float64
    error_bounds: list[float] = field(default_factory=list)  # absolute ε, preferred first
    source: str = ""
    samples: np.ndarray | None = None  # [n, n_in] float64 sample inputs
    labels: np.ndarray | None = None  # [n] int64 class labels of the samples (-1 = unknown)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return int(self.input_lower.shape[0])

    def validate(self) -> Spec:
        """Raise UserError (one line) unless the box and targets are well formed; return self."""
        lo, hi = self.input_lower, self.input_upper
        where = f"spec '{self.name}'"
        if lo.ndim != 1 or hi.ndim != 1:
            raise UserError(f"{where}: input bounds must be flat lists of numbers")
        if lo.size == 0 or hi.size == 0:
            raise UserError(f"{where}: empty input bounds")
        if lo.shape != hi.shape:
            raise UserError(
                f"{where}: {lo.size} lower bounds but {hi.size} upper bounds (lists must have equal length)"
            )
        for label, arr in (("lower", lo), ("upper", hi)):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise UserError(
                    f"{where}: {label} bound of input {bad[0]} is {float(arr[bad[0]])} (must be finite)"
                )
        inverted = np.flatnonzero(lo > hi)
        if inverted.size:
            i = int(inverted[0])
            raise UserError(
                f"{where}: inverted range for input {i}: lower {float(lo[i])!r} > upper {float(hi[i])!r}"
                + (f" ({inverted.size} inputs inverted)" if inverted.size > 1 else "")
            )
        for eps in self.error_bounds:
            if not math.isfinite(eps) or eps <= 0:
                raise UserError(f"{where}: error bound {eps!r} must be a finite number > 0")
        if self.samples is not None:
            if self.samples.ndim != 2 or self.samples.shape[1] != lo.size:
                raise UserError(
                    f"{where}: sample inputs have shape {self.samples.shape}, expected [n, {lo.size}]"
                )
            if not np.all(np.isfinite(self.samples)):
                raise UserError(f"{where}: sample inputs contain NaN or infinite values")
            if self.labels is not None and self.labels.shape != (self.samples.shape[0],):
                raise UserError(f"{where}: {self.labels.size} labels for {self.samples.shape[0]} samples")
        return self


def spec_from_bounds(
    lower: list[float] | np.ndarray,
    upper: list[float] | np.ndarray,
    name: str = "spec",
    error_bounds: list[float] | None = None,
    source: str = "user bounds",
) -> Spec:
    """Build and validate a Spec from two lists of bounds."""
    spec = Spec(
        name=name,
        input_lower=_float_vector(lower, name, "lower bounds"),
        input_upper=_float_vector(upper, name, "upper bounds"),
        error_bounds=[_float_scalar(e, name, "error bound") for e in (error_bounds or [])],
        source=source,
    )
    return spec.validate()


def check_spec_matches(spec: Spec, n_inputs: int) -> None:
    """Raise UserError unless the spec describes exactly ``n_inputs`` inputs."""
    if spec.n_inputs != n_inputs:
        raise UserError(
            f"spec '{spec.name}' has {spec.n_inputs} input ranges but the network has {n_inputs} inputs"
        )


def load_spec(path: str | Path) -> Spec:
    """Read a ``*.spec.json`` file (Aster or external benchmark layout) and validate it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{p.name}: not a readable JSON spec ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p.name}: a spec must be a JSON object")
    return spec_from_dict(data, default_name=p.name.removesuffix(".json").removesuffix(".spec"))


def spec_from_dict(data: dict[str, Any], default_name: str = "spec") -> Spec:
    """Map a decoded spec JSON object onto a :class:`Spec` (see module docstring)."""
    name = str(data.get("name", default_name))
    for key in ("input_lower", "input_upper"):
        if key not in data:
            raise UserError(f"spec '{name}': missing '{key}'")
    lower = _float_vector(data["input_lower"], name, "input_lower")
    upper = _float_vector(data["input_upper"], name, "input_upper")
    raw_eps = data.get("error_bounds", [])
    if not isinstance(raw_eps, list):
        raw_eps = [raw_eps]
    eps = [_float_scalar(e, name, "error bound") for e in raw_eps]
    samples, labels = _samples(data, name)
    extra = {k: v for k, v in data.items() if k not in _MAPPED_KEYS}
    if isinstance(data.get("params"), dict):
        extra.pop("params")  # the weights themselves: the model file is the source of truth
    boxes = _property_boxes(data, name)
    if boxes:
        extra["property_boxes"] = boxes
    if isinstance(data.get("labels"), list):
        extra["class_names"] = [str(c) for c in data["labels"]]
    source = data.get("source", "")
    if isinstance(source, dict):
        extra["source_info"] = source
        source = (
            f"{source.get('repo', '?')} @ {str(source.get('commit', '?'))[:10]}: {source.get('path', '?')}"
        )
    spec = Spec(
        name=name,
        input_lower=lower,
        input_upper=upper,
        error_bounds=eps,
        source=str(source),
        samples=samples,
        labels=labels,
        extra=extra,
    )
    return spec.validate()


_MAPPED_KEYS = frozenset({"name", "input_lower", "input_upper", "error_bounds", "source"})


def _samples(data: dict[str, Any], name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Sample inputs: ``example_inputs[*].x`` and the centres of ``vnnlib.example`` boxes."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for ex in data.get("example_inputs") or []:
        if isinstance(ex, dict) and "x" in ex:
            xs.append(_float_vector(ex["x"], name, "example input"))
            ys.append(_label(ex.get("label")))
    vnn = data.get("vnnlib")
    example = vnn.get("example") if isinstance(vnn, dict) else None
    if isinstance(example, dict) and "lower" in example and "upper" in example:
        lo = _float_vector(example["lower"], name, "vnnlib example lower")
        hi = _float_vector(example["upper"], name, "vnnlib example upper")
        if lo.shape == hi.shape:
            xs.append(lo + (hi - lo) / 2)
            ys.append(_label(example.get("label")))
    if not xs:
        return None, None
    if len({x.size for x in xs}) != 1:
        raise UserError(f"spec '{name}': sample inputs have different lengths")
    labels = np.array(ys, dtype=np.int64)
    return np.stack(xs), (labels if np.any(labels >= 0) else None)


def _property_boxes(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Input boxes of ``vnnlib_properties`` (ACAS Xu style), as float64 arrays."""
    boxes: list[dict[str, Any]] = []
    for prop in data.get("vnnlib_properties") or []:
        if not isinstance(prop, dict):
            continue
        for k, box in enumerate(prop.get("input_boxes") or []):
            boxes.append(
                {
                    "property": str(prop.get("file", "?")),
                    "index": k,
                    "lower": _float_vector(box["lower"], name, "property box lower"),
                    "upper": _float_vector(box["upper"], name, "property box upper"),
                    "output_constraint": prop.get("output_constraint", []),
                }
            )
    return boxes


def _label(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _float_vector(values: Any, name: str, what: str) -> np.ndarray:
    """Flatten a (possibly nested) list of numbers to a float64 vector."""
    if isinstance(values, np.ndarray):
        arr = values
    else:
        if not isinstance(values, (list, tuple)):
            raise UserError(f"spec '{name}': {what} must be a list of numbers, got {type(values).__name__}")
        try:
            arr = np.array(values, dtype=object)
        except ValueError:
            raise UserError(f"spec '{name}': {what} is a ragged nested list") from None
    try:
        out = np.asarray(arr, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"spec '{name}': {what} must contain only numbers") from None
    if out.size == 0:
        raise UserError(f"spec '{name}': {what} is empty")
    return out


def _float_scalar(value: Any, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"spec '{name}': {what} {value!r} is not a number")
    try:
        return float(value)
    except ValueError:
        raise UserError(f"spec '{name}': {what} {value!r} is not a number") from None
