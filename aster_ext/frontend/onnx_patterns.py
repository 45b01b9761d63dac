"""Recognise decomposed GELU subgraphs in an ONNX graph and replace each by one ``Gelu`` node.

Exporters below opset 20 write GELU as elementwise arithmetic:

- tanh form (PyTorch ``GELU(approximate='tanh')``, HF ``NewGELU``/``FastGELU``, tf2onnx):
  0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³))), with x³ as Pow(x, 3), Mul(x, Mul(x, x)) or a
  factored c·x·(1 + k·x²), in any operand order;
- erf form (PyTorch ``GELU()``): 0.5·x·(1 + Erf(x/√2)), x/√2 as Div or Mul.

Method: one forward pass computes, for every tensor reachable from a data tensor x by
Add/Sub/Mul/Div/Neg/Pow(integer)/Identity with *scalar* constants and at most one Tanh or Erf,
its symbolic value  Σ c_ij · x^i · t^j  with t = Tanh(p(x)) (or Erf(p(x))) and p a polynomial
in x. A tensor y whose value is 0.5·x + 0.5·x·t with p(x) = √(2/π)·x + √(2/π)·0.044715·x³
(tanh) or p(x) = x/√2 (erf), every coefficient within a relative ``TOLERANCE`` of these and
every other coefficient (relatively) zero, is a GELU of x. The nodes that built y are replaced by
``Gelu(x, approximate='tanh' | 'none')`` when none of their other outputs is used outside the
pattern or is a graph output; otherwise the graph is left alone (and the import then fails on
the first unsupported node with its usual message).

The fused node computes GELU with the exact constants (√(2/π), 0.044715, 1/√2): float32
constants of the model differ by <= TOLERANCE relative (about 1e-7 for float32), which the
import reference mentions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

TOLERANCE = 1e-6
MAX_DEGREE = 8  # cap on the total degree of tracked polynomials

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
KAPPA = 0.044715
INV_SQRT2 = 1.0 / math.sqrt(2.0)

_Poly = dict[tuple[int, int], float]  # (power of x, power of t) -> coefficient


@dataclass(frozen=True)
class _Sym:
    """Symbolic value of a tensor: Σ poly[i, j] x^i t^j with x = ``root`` and t = fn(targ(x))."""

    root: str
    poly: tuple[tuple[tuple[int, int], float], ...]
    nodes: frozenset[int]  # indices of the graph nodes that computed it (from root)
    t_node: int | None = None  # index of the Tanh/Erf node defining t
    t_fn: str | None = None  # "Tanh" | "Erf"
    t_arg: tuple[tuple[tuple[int, int], float], ...] | None = None  # p(x): monomials (i, 0)

    @staticmethod
    def leaf(name: str) -> _Sym:
        return _Sym(name, (((1, 0), 1.0),), frozenset())

    def as_dict(self) -> _Poly:
        return dict(self.poly)


def _freeze(p: _Poly) -> tuple[tuple[tuple[int, int], float], ...]:
    return tuple(sorted((k, v) for k, v in p.items() if v != 0.0))


def _scalar(c: np.ndarray | None) -> float | None:
    """The value of a size-1 float/int constant, else None."""
    if c is None or c.size != 1 or c.dtype.kind not in "fiu":
        return None
    v = float(c.reshape(-1)[0])
    return v if math.isfinite(v) else None


def _combine(a: _Sym, b: _Sym, poly: _Poly, node: int) -> _Sym | None:
    if a.root != b.root:
        return None
    if a.t_node is not None and b.t_node is not None and a.t_node != b.t_node:
        return None
    if any(i + j > MAX_DEGREE for i, j in poly):
        return None
    t_src = a if a.t_node is not None else b
    return _Sym(a.root, _freeze(poly), a.nodes | b.nodes | {node}, t_src.t_node, t_src.t_fn, t_src.t_arg)


def _with_poly(a: _Sym, poly: _Poly, node: int) -> _Sym:
    return _Sym(a.root, _freeze(poly), a.nodes | {node}, a.t_node, a.t_fn, a.t_arg)


def _add(p: _Poly, q: _Poly, sign: float = 1.0) -> _Poly:
    out = dict(p)
    for k, v in q.items():
        out[k] = out.get(k, 0.0) + sign * v
    return out


def _mul(p: _Poly, q: _Poly) -> _Poly:
    out: _Poly = {}
    for (i1, j1), v1 in p.items():
        for (i2, j2), v2 in q.items():
            k = (i1 + i2, j1 + j2)
            out[k] = out.get(k, 0.0) + v1 * v2
    return out


def _close(p: _Poly, target: _Poly) -> bool:
    """p equals target within TOLERANCE relative per coefficient (other coefficients ~ 0)."""
    scale = max(abs(v) for v in target.values())
    for k in set(p) | set(target):
        got, want = p.get(k, 0.0), target.get(k, 0.0)
        tol = TOLERANCE * (abs(want) if want else scale)
        if not abs(got - want) <= tol:
            return False
    return True


_TANH_ARG: _Poly = {(1, 0): SQRT_2_OVER_PI, (3, 0): SQRT_2_OVER_PI * KAPPA}
_ERF_ARG: _Poly = {(1, 0): INV_SQRT2}
_OUTER: _Poly = {(1, 0): 0.5, (1, 1): 0.5}


def _gelu_kind(s: _Sym) -> str | None:
    """'tanh' / 'none' if s is a GELU of its root (see module docstring), else None."""
    if s.t_node is None or s.t_arg is None or not _close(s.as_dict(), _OUTER):
        return None
    arg = dict(s.t_arg)
    if s.t_fn == "Tanh" and _close(arg, _TANH_ARG):
        return "tanh"
    if s.t_fn == "Erf" and _close(arg, _ERF_ARG):
        return "none"
    return None


class _Analysis:
    def __init__(self, graph: onnx.GraphProto, opset: int):
        self.graph = graph
        self.opset = opset
        self.const: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        self.sym: dict[str, _Sym] = {}  # computed value of each tracked tensor
        uses: dict[str, int] = {}
        for node in graph.node:
            for t in node.input:
                if t:
                    uses[t] = uses.get(t, 0) + 1
        for o in graph.output:
            uses[o.name] = uses.get(o.name, 0) + 2
        # a tensor used more than once is a leaf for its consumers: GELU's x is always used at least
        # twice, the intermediate tensors of a pattern once (a shared intermediate blocks the match)
        self.shared = {t for t, n in uses.items() if n > 1}

    def run(self) -> None:
        for index, node in enumerate(self.graph.node):
            if node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type == "Constant":
                self._constant(node)
                continue
            ins = [t for t in node.input if t]
            if ins and all(t in self.const for t in ins):
                self._fold(node)
                continue
            out = self._transfer(node, index)
            if out is not None and len(node.output) >= 1:
                self.sym[node.output[0]] = out

    def value(self, t: str) -> _Sym:
        """The symbolic value of a data tensor as seen by its consumers (a leaf if untracked or shared)."""
        if t in self.shared or t not in self.sym:
            return _Sym.leaf(t)
        return self.sym[t]

    def _constant(self, node: onnx.NodeProto) -> None:
        for a in node.attribute:
            if a.name == "value":
                self.const[node.output[0]] = numpy_helper.to_array(a.t)
            elif a.name == "value_float":
                self.const[node.output[0]] = np.array(a.f, dtype=np.float32)
            elif a.name == "value_int":
                self.const[node.output[0]] = np.array(a.i, dtype=np.int64)

    def _fold(self, node: onnx.NodeProto) -> None:
        """Evaluate a small constant-only node (e.g. Sqrt(Div(2, pi)), Cast) with the reference runtime."""
        from onnx.reference import ReferenceEvaluator

        ins = [t for t in node.input if t]
        if any(self.const[t].size > 16 for t in ins):
            return
        try:
            undefined = onnx.TensorProto.UNDEFINED
            graph = helper.make_graph(
                [node],
                "fold",
                [helper.make_tensor_value_info(t, undefined, None) for t in ins],
                [helper.make_tensor_value_info(t, undefined, None) for t in node.output if t],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
            results = ReferenceEvaluator(model).run(None, {t: self.const[t] for t in ins})
        except Exception:
            return
        for t, r in zip([t for t in node.output if t], results, strict=False):
            self.const[t] = np.asarray(r)

    def _operands(self, node: onnx.NodeProto) -> tuple[_Sym | None, _Sym | None, float | None, int]:
        """Binary op: (data a, data b, None, -1) or (data, None, scalar constant, position of data)."""
        a, b = node.input[0], node.input[1]
        if a in self.const and b not in self.const:
            return self.value(b), None, _scalar(self.const[a]), 1
        if b in self.const and a not in self.const:
            return self.value(a), None, _scalar(self.const[b]), 0
        return self.value(a), self.value(b), None, -1

    def _transfer(self, node: onnx.NodeProto, index: int) -> _Sym | None:
        op = node.op_type
        if op == "CastLike" and node.input and node.input[0] in self.const:
            self.const[node.output[0]] = self.const[node.input[0]]
            return None
        if op == "Identity":
            return _with_poly(self.value(node.input[0]), self.value(node.input[0]).as_dict(), index)
        if op == "Neg":
            a = self.value(node.input[0])
            return _with_poly(a, {k: -v for k, v in a.as_dict().items()}, index)
        if op in ("Tanh", "Erf"):
            a = self.value(node.input[0])
            p = a.as_dict()
            if a.t_node is not None or any(j for _, j in p):
                return None
            return _Sym(a.root, (((0, 1), 1.0),), a.nodes | {index}, index, op, _freeze(p))
        if op not in ("Add", "Sub", "Mul", "Div", "Pow") or len(node.input) != 2:
            return None
        a, b, c, pos = self._operands(node)
        if a is None:
            return None
        if b is not None:  # two data operands
            if op in ("Add", "Sub"):
                return _combine(a, b, _add(a.as_dict(), b.as_dict(), 1.0 if op == "Add" else -1.0), index)
            if op == "Mul":
                return _combine(a, b, _mul(a.as_dict(), b.as_dict()), index)
            return None
        if c is None:
            return None
        p = a.as_dict()
        if op == "Add":
            return _with_poly(a, _add(p, {(0, 0): c}), index)
        if op == "Sub":
            diff = _add(p, {(0, 0): c}, -1.0) if pos == 0 else _add({(0, 0): c}, p, -1.0)
            return _with_poly(a, diff, index)
        if op == "Mul":
            return _with_poly(a, {k: v * c for k, v in p.items()}, index)
        if op == "Div":
            if pos != 0 or c == 0.0:
                return None
            return _with_poly(a, {k: v / c for k, v in p.items()}, index)
        # Pow(data, integer constant)
        if pos != 0 or c != int(c) or not 1 <= int(c) <= 4:
            return None
        out: _Poly = {(0, 0): 1.0}
        for _ in range(int(c)):
            out = _mul(out, p)
        if any(i + j > MAX_DEGREE for i, j in out):
            return None
        return _with_poly(a, out, index)


def fuse_gelu_patterns(model: onnx.ModelProto, opset: int) -> tuple[onnx.ModelProto, list[str]]:
    """(model with decomposed GELU subgraphs fused to Gelu nodes, notes for the import reference).

    Returns the model itself (and no notes) when nothing matched.
    """
    graph = model.graph
    analysis = _Analysis(graph, opset)
    analysis.run()
    consumers: dict[str, set[int]] = {}
    for index, node in enumerate(graph.node):
        for t in node.input:
            if t:
                consumers.setdefault(t, set()).add(index)
    graph_outputs = {o.name for o in graph.output}
    taken: set[int] = set()
    fused: dict[int, onnx.NodeProto] = {}  # index of the pattern's last node -> replacement
    counts = {"tanh": 0, "none": 0}
    for index in range(len(graph.node) - 1, -1, -1):
        node = graph.node[index]
        if not node.output or node.output[0] not in analysis.sym or index in taken:
            continue
        y = node.output[0]
        s = analysis.sym[y]
        kind = _gelu_kind(s)
        if kind is None or s.nodes & taken or max(s.nodes) != index:
            continue
        inner = [t for i in s.nodes for t in graph.node[i].output if t and t != y]
        if any(t in graph_outputs or not consumers.get(t, set()) <= s.nodes for t in inner):
            continue
        label = node.name or f"{node.op_type}_{index}"
        fused[index] = helper.make_node("Gelu", [s.root], [y], name=label, approximate=kind)
        taken |= s.nodes
        counts[kind] += 1
    if not fused:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for index, node in enumerate(graph.node):
        if index in fused:
            out.graph.node.append(fused[index])
        elif index not in taken:
            out.graph.node.append(node)
    notes = [
        f"{n} decomposed {'tanh' if kind == 'tanh' else 'erf'}-GELU pattern(s) read as "
        f"Gelu(approximate='{kind}') with exact constants"
        for kind, n in counts.items()
        if n
    ]
    return out, notes
