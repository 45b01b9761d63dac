"""Lossless JSON form of a :class:`~.program.GraphProgram` (``program.json`` of a classify output).

The file holds every type and raw constant of the program, never the network itself: the IR
comes from the model file (whose sha256 the report records), and :func:`load_graph_program`
checks that every node of the file is a node of that network with the same kind and sizes.

Layout (version 1)::

    {"format": "aster_ext.graph_program", "version": 1, "network": NAME,
     "quant": "TRN"|"RND", "overflow": "WRAP", "meta": {...},
     "input_t": {"width": [n_in ints], "int_bits": [n_in ints]},
     "nodes": {NAME: {"kind": KIND, "out_t": {"width": [...], "int_bits": [...]},
                      conv/affine: "weight_raw" (nested lists of decimal strings, kernel shape),
                                   "weight_frac", "weight_width", "bias_raw" (decimal strings),
                                   "acc_t", "x_frac";
                      avgpool:     "acc_t", "x_frac", "const_raw" (decimal strings), "const_frac";
                      table activation: "x_frac", "act_impl" (the implementation, in the JSON
                                   form of :func:`aster_ext.program_io.act_impl_to_json`)}}}

Raw integers are decimal strings (exact at any width); formats are lists of ints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..ir import Network
from ..program import FormatArray
from ..program_io import act_impl_from_json, act_impl_to_json
from .program import (
    LINEAR_KINDS,
    GraphProgram,
    NodeProgram,
    is_table_act,
    n_channels,
    node_size,
    weight_array,
)

FORMAT_TAG = "aster_ext.graph_program"
VERSION = 1
_SKIPPED_KINDS = ("input", "softmax", "argmax")


def _fmt_to_json(fa: FormatArray) -> dict[str, list[int]]:
    return {"width": fa.width.astype(int).tolist(), "int_bits": fa.int_bits.astype(int).tolist()}


def _raw_to_json(a: np.ndarray) -> Any:
    arr = np.asarray(a, dtype=object)
    return np.vectorize(lambda v: str(int(v)), otypes=[object])(arr).tolist() if arr.size else []


def graph_program_to_json(prog: GraphProgram) -> dict[str, Any]:
    """The JSON object of ``prog`` (module docstring)."""
    nodes: dict[str, Any] = {}
    for name, nd in prog.nodes.items():
        d: dict[str, Any] = {"kind": nd.kind, "out_t": _fmt_to_json(nd.out_t)}
        if nd.kind in LINEAR_KINDS:
            d["weight_raw"] = _raw_to_json(nd.weight_raw)
            d["weight_frac"] = np.asarray(nd.weight_frac).astype(int).tolist()
            d["weight_width"] = np.asarray(nd.weight_width).astype(int).tolist()
            d["bias_raw"] = _raw_to_json(nd.bias_raw)
        if nd.acc_t is not None:
            d["acc_t"] = _fmt_to_json(nd.acc_t)
            d["x_frac"] = int(nd.x_frac)
        if nd.const_raw is not None:
            d["const_raw"] = _raw_to_json(nd.const_raw)
            d["const_frac"] = int(nd.const_frac)
        if nd.act_impl is not None:
            d["x_frac"] = int(nd.x_frac)
            d["act_impl"] = act_impl_to_json(nd.act_impl)
        nodes[name] = d
    return {
        "format": FORMAT_TAG,
        "version": VERSION,
        "network": prog.net.name,
        "quant": prog.quant,
        "overflow": prog.overflow,
        "meta": prog.meta,
        "input_t": _fmt_to_json(prog.input_t),
        "nodes": nodes,
    }


def save_graph_program(prog: GraphProgram, path: Path) -> None:
    Path(path).write_text(json.dumps(graph_program_to_json(prog)))


class _Reader:
    """Typed access to the decoded JSON with one-line UserErrors naming the bad field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, what: str) -> UserError:
        return UserError(f"{self.where}: {what}")

    def ints(self, v: Any, what: str, size: int | None = None) -> np.ndarray:
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise self.fail(f"{what} must be a list of integers")
        if size is not None and len(v) != size:
            raise self.fail(f"{what} has {len(v)} entries, expected {size}")
        return np.asarray(v, dtype=np.int64)

    def fmt(self, v: Any, what: str, size: int) -> FormatArray:
        if not isinstance(v, dict):
            raise self.fail(f"{what} must be an object with 'width' and 'int_bits'")
        w = self.ints(v.get("width"), f"{what}.width", size)
        i = self.ints(v.get("int_bits"), f"{what}.int_bits", size)
        if np.any(w < 1):
            raise self.fail(f"{what}.width has a width < 1")
        return FormatArray(w, i)

    def raw(self, v: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            arr = np.array(v, dtype=object)
            if arr.shape != shape:
                raise ValueError
            flat = [int(x) if isinstance(x, str) else None for x in arr.reshape(-1)]
        except (TypeError, ValueError):
            raise self.fail(f"{what} must be decimal strings in shape {list(shape)}") from None
        if any(x is None for x in flat):
            raise self.fail(f"{what} must be decimal strings in shape {list(shape)}")
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(shape)

    def integer(self, v: Any, what: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(f"{what} must be an integer")
        return int(v)


def graph_program_from_json(data: Any, net: Network, where: str = "program.json") -> GraphProgram:
    """The program of ``data`` over ``net``; UserError unless it matches ``net`` node for node."""
    rd = _Reader(where)
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise rd.fail(f'not a graph program (expected "format": "{FORMAT_TAG}")')
    if data.get("version") != VERSION:
        raise rd.fail(
            f"unsupported graph program version {data.get('version')!r} (this tool reads {VERSION})"
        )
    quant, overflow = data.get("quant"), data.get("overflow")
    if quant not in ("TRN", "RND") or overflow != "WRAP":
        raise rd.fail("quant must be TRN or RND and overflow WRAP")
    n_in = int(np.prod(net.input_shape))
    input_t = rd.fmt(data.get("input_t"), "input_t", n_in)
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict):
        raise rd.fail("'nodes' must be an object")
    expected = [op for op in net.ops() if op.kind not in _SKIPPED_KINDS]
    names = {op.name for op in expected}
    extra = sorted(set(raw_nodes) - names)
    missing = [op.name for op in expected if op.name not in raw_nodes]
    if extra or missing:
        raise rd.fail(
            f"its nodes do not match the network {net.name}"
            + (f" (unknown: {', '.join(extra[:3])})" if extra else "")
            + (f" (missing: {', '.join(missing[:3])})" if missing else "")
        )
    nodes: dict[str, NodeProgram] = {}
    for op in expected:
        d = raw_nodes[op.name]
        at = f"node {op.name}"
        if not isinstance(d, dict) or d.get("kind") != op.kind:
            raise rd.fail(
                f"{at}: kind {d.get('kind') if isinstance(d, dict) else None!r}, network has {op.kind}"
            )
        nd = NodeProgram(op.name, op.kind, rd.fmt(d.get("out_t"), f"{at}.out_t", node_size(op)))
        if op.kind in LINEAR_KINDS:
            wshape = weight_array(op).shape
            c_out = wshape[0]
            nd.weight_raw = rd.raw(d.get("weight_raw"), f"{at}.weight_raw", wshape)
            nd.weight_frac = rd.ints(d.get("weight_frac"), f"{at}.weight_frac", c_out)
            nd.weight_width = rd.ints(d.get("weight_width"), f"{at}.weight_width", c_out)
            nd.bias_raw = rd.raw(d.get("bias_raw"), f"{at}.bias_raw", (c_out,))
        if op.kind in (*LINEAR_KINDS, "avgpool"):
            nd.acc_t = rd.fmt(d.get("acc_t"), f"{at}.acc_t", n_channels(op))
            nd.x_frac = rd.integer(d.get("x_frac"), f"{at}.x_frac")
        if op.kind == "avgpool":
            nd.const_raw = rd.raw(d.get("const_raw"), f"{at}.const_raw", (node_size(op),))
            nd.const_frac = rd.integer(d.get("const_frac"), f"{at}.const_frac")
        if is_table_act(op):
            nd.x_frac = rd.integer(d.get("x_frac"), f"{at}.x_frac")
            nd.act_impl = _read_impl(rd, d.get("act_impl"), op, nd.x_frac, at)
        nodes[op.name] = nd
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    return GraphProgram(net, input_t, nodes, quant, overflow, dict(meta))


def _read_impl(rd: _Reader, d: Any, op: Any, x_frac: int, at: str) -> Any:
    """The implementation of a table activation: it must implement the node's own activation
    and read the operand at its alignment ``x_frac``."""
    from ..ops.activation import activation_of_op

    if not isinstance(d, dict):
        raise rd.fail(f"{at}: 'act_impl' missing (a table activation needs its implementation)")
    try:
        impl = act_impl_from_json(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise rd.fail(f"{at}.act_impl: unreadable ({exc})") from None
    if impl.act != activation_of_op(op):
        raise rd.fail(f"{at}.act_impl implements {impl.act.describe()}, the node is {op.describe()}")
    if int(impl.in_frac) != x_frac:
        raise rd.fail(f"{at}.act_impl reads input frac {impl.in_frac}, the node's x_frac is {x_frac}")
    return impl


def load_graph_program(path: Path, net: Network) -> GraphProgram:
    """Read ``path`` (written by :func:`save_graph_program`) for the network ``net``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no graph program file")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{p}: not a readable program file ({exc})") from None
    return graph_program_from_json(data, net, str(p))
