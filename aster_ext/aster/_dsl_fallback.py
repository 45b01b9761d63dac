"""Throwaway reader of Aster's `.scala` network DSL, used only until `aster_ext.frontend.scala_dsl` exists.

It keeps the exact decimals (Fractions) of weights, biases and input bounds, which is what Aster
itself analyses. :func:`load_benchmark` prefers the real frontend when it is importable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..ir import DenseLayer

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass
class Benchmark:
    """A dense chain with its exact input box and the error bounds written in the file."""

    name: str
    layers: list[DenseLayer]
    lower: np.ndarray  # object array of Fraction
    upper: np.ndarray
    error_bounds: list[float]
    source: str = "fallback"  # which reader produced it: "frontend" (aster_ext.frontend) or "fallback"


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _numbers(s: str) -> list[Fraction]:
    return [Fraction(t) for t in re.findall(_NUM, s)]


def _list_after(text: str, pos: int) -> tuple[str, int]:
    """Balanced-parenthesis text starting at the '(' at or after ``pos``."""
    start = text.index("(", pos)
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start : i + 1], i + 1
    raise ValueError("unbalanced parentheses")


def parse_scala(text: str, name: str = "net") -> Benchmark:
    raw = text
    text = _strip_comments(text)
    m_lo = re.search(r"lowerBounds\s*\(\s*\w+\s*,\s*List", text)
    m_hi = re.search(r"upperBounds\s*\(\s*\w+\s*,\s*List", text)
    if not m_lo or not m_hi:
        raise ValueError(f"{name}: no require(lowerBounds/upperBounds)")
    lower = _numbers(_list_after(text, m_lo.end())[0])
    upper = _numbers(_list_after(text, m_hi.end())[0])
    mats: dict[str, np.ndarray] = {}
    vecs: dict[str, np.ndarray] = {}
    for m in re.finditer(r"val\s+(\w+)\s*=\s*Matrix\s*", text):
        body, _ = _list_after(text, m.end())
        rows = [_numbers(r) for r in re.findall(r"List\s*\(([^()]*)\)", body)]
        arr = np.empty((len(rows), len(rows[0])), dtype=object)
        for i, r in enumerate(rows):
            if len(r) != arr.shape[1]:
                raise ValueError(f"{name}: ragged matrix {m.group(1)}")
            arr[i, :] = r
        mats[m.group(1)] = arr
    for m in re.finditer(r"val\s+(\w+)\s*=\s*Vector\s*", text):
        body, _ = _list_after(text, m.end())
        vals = _numbers(body[body.index("List") + 4 :])
        vecs[m.group(1)] = np.array(vals, dtype=object)
    layers: list[DenseLayer] = []
    for m in re.finditer(
        r"val\s+(\w+)\s*=\s*(relu|linear)\s*\(\s*(\w+)\s*\*\s*(\w+)\s*\+\s*(\w+)\s*\)", text
    ):
        lname, act, wname, _src, bname = m.groups()
        w, b = mats[wname], vecs[bname]
        layers.append(
            DenseLayer(
                name=lname,
                weight=np.array([[float(v) for v in r] for r in w], dtype=np.float64),
                bias=np.array([float(v) for v in b], dtype=np.float64),
                activation="relu" if act == "relu" else "identity",
                weight_exact=w,
                bias_exact=b,
            )
        )
    bounds = [float(v) for v in re.findall(r"ensuring\s*\(\s*\w+\s*=>\s*\w+\s*\+/-\s*(" + _NUM + ")", raw)]
    return Benchmark(name, layers, np.array(lower, dtype=object), np.array(upper, dtype=object), bounds)


def load_benchmark(path: str | Path) -> Benchmark:
    """Load an Aster `.scala` benchmark (exact decimals), via the real frontend when available."""
    path = Path(path)
    try:
        from ..frontend.scala_dsl import load_scala
    except ImportError:
        load_scala = None
    if load_scala is not None:
        return _from_frontend(path, load_scala)
    return parse_scala(path.read_text(), path.stem)


def _from_frontend(path: Path, load_scala) -> Benchmark:
    from ..ir import dense_chain

    net, spec = load_scala(path)
    layers = dense_chain(net)
    lower = spec.extra.get("input_lower_exact", spec.input_lower)
    upper = spec.extra.get("input_upper_exact", spec.input_upper)
    return Benchmark(
        path.stem,
        layers,
        np.array([Fraction(v) for v in lower], dtype=object),
        np.array([Fraction(v) for v in upper], dtype=object),
        [float(e) for e in spec.error_bounds],
        source="frontend",
    )
