"""ONNX importer: lower an ONNX graph (opset >= 7) to the IR of :mod:`aster_ext.ir`.

Conventions.
- The first dimension of the (single) graph input is the batch; IR shapes exclude it.
- Float initializers are upcast to float64 (exact for float16/float32). Where a folded parameter
  is not exactly a float64 number, the exact rational value is kept beside it as an object array
  of ``Fraction`` (``weight_exact``/``bias_exact`` on affine, ``kernel_exact``/``bias_exact``
  on conv2d); the float64 arrays then hold the nearest doubles.
- Elementwise affine steps by constants (Add/Sub/Mul/Div, BatchNormalization) are kept pending
  as x -> s*x + t (s, t exact Fractions over the value's shape) and folded exactly into the
  producing affine/conv node (y = diag(s)(Wx + b) + t) when that node has no other consumer, or
  into the consuming affine/conv node (W diag(s), b + W t). Otherwise they become an explicit
  diagonal affine or a depthwise 1x1 conv2d.
- Flatten/Reshape/Squeeze/Unsqueeze/Identity/Dropout only change the logical shape; IR
  ``flatten``/``reshape`` nodes are emitted only where a consumer needs another layout.
- A Conv whose output is 1x1 (fully connected layers exported as Conv, e.g. by MATLAB) becomes
  an ``affine`` node acting on the C-order flattening (C, H, W) of its input.
- GELU: opset-20 ``Gelu`` (approximate 'none' -> ``gelu``, 'tanh' -> ``gelu_tanh``); the decomposed
  tanh/Erf forms exporters write below opset 20 are first fused into ``Gelu`` nodes
  (:mod:`.onnx_patterns`, constants matched to 1e-6 relative, said in the reference).
- BatchNormalization needs 1/sqrt(var + eps); that is exact when var + eps is a rational square
  and otherwise rounded to a rational within 2^-INV_SQRT_BITS relative (said in the reference).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import UnsupportedError, UserError
from ..ir import Network, Op, build_network, to_fractions
from .onnx_patterns import fuse_gelu_patterns

INV_SQRT_BITS = 128
FLOAT32_MAX = float(np.finfo(np.float32).max)
MIN_OPSET = 7
MAX_DIAGONAL_AFFINE = 4096  # largest n for which a pending s*x+t may become a dense n x n affine node

SUPPORTED_OPS = (
    "Add AveragePool BatchNormalization Clip Concat Constant Conv Div Dropout Elu Flatten Gemm "
    "GlobalAveragePool GlobalMaxPool Gelu HardSigmoid Identity LeakyRelu MatMul MaxPool Mul Pad PRelu Relu "
    "Reshape Shape Sigmoid Softmax Softplus Squeeze Sub Tanh Transpose Unsqueeze ArgMax"
).split()


def load_onnx(path: str | Path) -> Network:
    """Read an ONNX file and lower it to a :class:`Network` (float64 + exact parameters)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf raises several unrelated exception types
        raise UserError(f"{p.name}: not a readable ONNX model ({_one_line(exc)})") from None
    _check_registered(model, p.name)
    _check_valid(model, p.name)
    return import_model(model, name=p.stem, file_name=p.name)


def _check_valid(model: onnx.ModelProto, file_name: str) -> None:
    """onnx.checker; a model only lacking declared output shapes passes after shape inference."""
    try:
        onnx.checker.check_model(model)
        return
    except Exception as exc:
        first = exc
    try:
        onnx.checker.check_model(onnx.shape_inference.infer_shapes(model))
    except Exception:
        raise UserError(f"{file_name}: invalid ONNX model ({_one_line(first)})") from None


def _check_registered(model: onnx.ModelProto, file_name: str) -> None:
    """Name the first node whose operator is unknown to ONNX (before the checker's generic message)."""
    for index, node in enumerate(model.graph.node):
        domain = node.domain if node.domain != "ai.onnx" else ""
        if not onnx.defs.has(node.op_type, domain):
            label = node.name or f"{node.op_type}_{index}"
            where = f"domain '{node.domain}'" if node.domain else "ONNX"
            raise UnsupportedError(
                f"{file_name}: node '{label}' ({node.op_type}): operator {node.op_type} "
                f"is unknown to {where} and not supported"
            )


def import_model(model: onnx.ModelProto, name: str = "model", file_name: str | None = None) -> Network:
    """Lower an in-memory ONNX model (see module docstring for the conventions)."""
    return _Importer(model, name, file_name or f"{name}.onnx").run()


# --------------------------------------------------------------------------------------
# Exact parameters
# --------------------------------------------------------------------------------------


@dataclass
class _Param:
    """A parameter array: float64 values plus the exact Fractions when they differ."""

    value: np.ndarray
    exact: np.ndarray | None = None

    def fractions(self) -> np.ndarray:
        return self.exact if self.exact is not None else to_fractions(self.value)

    @staticmethod
    def of_fractions(fr: np.ndarray, what: str) -> _Param:
        """Nearest float64 of each Fraction; keep ``fr`` only if some element is not a double."""
        flat = fr.reshape(-1)
        try:
            values = np.array([float(q) for q in flat], dtype=np.float64).reshape(fr.shape)
        except OverflowError:
            raise UserError(f"{what}: a folded parameter exceeds the float64 range") from None
        exact_needed = any(Fraction(float(v)) != q for v, q in zip(values.reshape(-1), flat, strict=True))
        return _Param(values, fr if exact_needed else None)


def _fractions_of(a: np.ndarray) -> np.ndarray:
    return to_fractions(np.asarray(a, dtype=np.float64))


def _all_equal_to(a: np.ndarray | None, q: Fraction) -> bool:
    return a is None or all(v == q for v in a.reshape(-1))


def _inv_sqrt(q: Fraction, bits: int = INV_SQRT_BITS) -> tuple[Fraction, bool]:
    """1/sqrt(q) for q > 0: exact if q is a rational square, else within 2^-bits relative."""
    n, d = q.numerator, q.denominator
    prod = n * d  # sqrt(n/d) = sqrt(n d) / d
    root = math.isqrt(prod)
    if root * root == prod:
        return Fraction(d, root), True
    k = max(0, bits + 2 - prod.bit_length() // 2)
    r = math.isqrt(prod << (2 * k))
    return Fraction(d << k, r), False


# --------------------------------------------------------------------------------------
# Values flowing through the graph
# --------------------------------------------------------------------------------------


@dataclass
class _Value:
    """An ONNX tensor: ``scale * data + shift`` where data is IR node ``node``.

    ``shape`` is the ONNX shape without the batch dimension; the IR node may hold the same
    elements (C order) in another shape ``ir_shape``. ``scale``/``shift`` (object arrays of
    Fraction over ``shape``, None = 1 / 0) are an elementwise affine step not emitted yet.
    """

    node: str
    ir_shape: tuple[int, ...]
    shape: tuple[int, ...]
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    pending_from: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.scale is not None or self.shift is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class _Importer:
    def __init__(self, model: onnx.ModelProto, name: str, file_name: str):
        self.model = model
        self.name = name
        self.file = file_name
        self.opset = self._opset()
        # decomposed GELU (tanh or erf form) -> one Gelu node (see onnx_patterns)
        self.model, fused_notes = fuse_gelu_patterns(model, self.opset)
        self.graph = self.model.graph
        self.ops: list[Op] = []
        self.op_by_name: dict[str, Op] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.const_dtype: dict[str, np.dtype] = {}
        self.values: dict[str, _Value] = {}
        self.refs: dict[str, int] = {}  # IR node -> outstanding ONNX uses of tensors aliasing it
        self.used: set[str] = set()  # IR nodes that already have an IR consumer
        self.reshape_cache: dict[tuple[str, tuple[int, ...]], str] = {}
        self.uses = self._count_uses()
        self.graph_outputs = [o.name for o in self.graph.output]
        self.batch = 1
        self.notes: set[str] = set(fused_notes)
        self.float_types: set[str] = set()

    # ---- driver ------------------------------------------------------------------------

    def run(self) -> Network:
        self._load_initializers()
        self._add_input()
        for index, node in enumerate(self.graph.node):
            self._node(node, index)
        outputs = tuple(self._output(o) for o in self.graph_outputs)
        if not outputs:
            raise UserError(f"{self.file}: the graph has no outputs")
        if any(key.endswith("_exact") for op in self.ops for key in op.attrs):
            self.notes.add("folded constants kept as exact rationals")
        dtypes = "/".join(sorted(self.float_types)) or "float32"
        reference = f"ONNX {dtypes} initializers of {self.file}"
        if self.notes:
            reference += " (" + "; ".join(sorted(self.notes)) + ")"
        return build_network(self.name, self.ops, reference, output_names=outputs)

    def _opset(self) -> int:
        versions = [o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        opset = max(versions) if versions else 1
        if opset < MIN_OPSET:
            raise UnsupportedError(
                f"{self.file}: opset {opset} is older than {MIN_OPSET} (legacy broadcasting); re-export it"
            )
        return opset

    def _count_uses(self) -> dict[str, int]:
        uses: dict[str, int] = {}
        for node in self.graph.node:
            for t in node.input:
                if t:
                    uses[t] = uses.get(t, 0) + 1
        for o in self.graph.output:
            uses[o.name] = uses.get(o.name, 0) + 1
        return uses

    def _load_initializers(self) -> None:
        for init in self.graph.initializer:
            self._set_const(init.name, numpy_helper.to_array(init), f"initializer '{init.name}'")

    def _set_const(self, name: str, arr: np.ndarray, what: str) -> None:
        self.const_dtype[name] = arr.dtype
        self.consts[name] = self._upcast(arr, what)

    def _upcast(self, arr: np.ndarray, what: str) -> np.ndarray:
        if arr.dtype.kind == "f":
            self.float_types.add(str(arr.dtype))
            out = arr.astype(np.float64)
            if not np.all(np.isfinite(out)):
                raise UserError(f"{self.file}: {what} has NaN or infinite values")
            return out
        return np.asarray(arr)

    def _add_input(self) -> None:
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs) or "none"
            raise UnsupportedError(f"{self.file}: expected exactly one graph input, found {names}")
        inp = inputs[0]
        ttype = inp.type.tensor_type
        if not ttype.HasField("shape"):
            raise UserError(f"{self.file}: input '{inp.name}' has no shape")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        if len(dims) < 2:
            self.batch = 0
        elif dims[0] not in (None, 1):
            raise UnsupportedError(
                f"{self.file}: input '{inp.name}' has fixed batch dimension {dims[0]} (need 1 or symbolic)"
            )
        shape = dims[self.batch :]
        if any(d is None or d <= 0 for d in shape):
            raise UserError(f"{self.file}: input '{inp.name}' has a non-fixed dimension {dims}")
        shape_t = tuple(int(d) for d in shape)
        name = self._unique(inp.name)
        self._emit_op(
            Op(name=name, kind="input", inputs=(), shape=shape_t, source=f"onnx:{inp.name} (input)")
        )
        self._set_value(inp.name, _Value(name, shape_t, shape_t))

    def _output(self, tensor: str) -> str:
        if tensor in self.consts:
            raise UnsupportedError(f"{self.file}: graph output '{tensor}' is a constant")
        if tensor not in self.values:
            raise UserError(f"{self.file}: graph output '{tensor}' is never computed")
        v = self._materialise(self.values[tensor], f"output {tensor}")
        return v.node

    # ---- bookkeeping -------------------------------------------------------------------

    def _unique(self, base: str) -> str:
        name = re.sub(r"\s+", "_", base) or "node"
        if name not in self.op_by_name:
            return name
        k = 1
        while f"{name}_{k}" in self.op_by_name:
            k += 1
        return f"{name}_{k}"

    def _emit_op(self, op: Op) -> str:
        self.ops.append(op)
        self.op_by_name[op.name] = op
        self.used.update(op.inputs)
        return op.name

    def _emit(self, kind: str, base: str, inputs: tuple[str, ...], shape, attrs: dict, source: str) -> str:
        op = Op(
            name=self._unique(base),
            kind=kind,
            inputs=inputs,
            shape=tuple(int(s) for s in shape),
            attrs=attrs,
            source=source,
        )
        return self._emit_op(op)

    def _set_value(self, tensor: str, value: _Value) -> None:
        self.values[tensor] = value
        self.refs[value.node] = self.refs.get(value.node, 0) + self.uses.get(tensor, 0)

    def _ir_node_with_shape(self, v: _Value, shape: tuple[int, ...], source: str) -> str:
        """The IR node holding v's data with IR shape ``shape`` (emits flatten/reshape if needed)."""
        if v.ir_shape == shape:
            return v.node
        key = (v.node, shape)
        if key not in self.reshape_cache:
            kind = "flatten" if len(shape) == 1 else "reshape"
            self.reshape_cache[key] = self._emit(
                kind, f"{v.node}_{kind}", (v.node,), shape, {"shape": shape}, source
            )
        return self.reshape_cache[key]

    # ---- node dispatch -----------------------------------------------------------------

    def _node(self, node: onnx.NodeProto, index: int) -> None:
        label = node.name or f"{node.op_type}_{index}"
        src = f"onnx:{label} ({node.op_type})"
        where = f"{self.file}: node '{label}' ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedError(f"{where}: operator from domain '{node.domain}' is not supported")
        for t in node.input:
            if t and t not in self.consts and t not in self.values:
                raise UserError(f"{where}: uses undefined tensor '{t}' (graph not topologically sorted?)")
        if node.op_type == "Constant":
            self._set_const(node.output[0], self._constant_node(node), where)
            return
        data_inputs = [t for t in node.input if t and t not in self.consts]
        if not data_inputs:
            self._fold_constant_node(node, where)
            return
        if node.op_type == "Shape":
            self._shape(node, where)
            return
        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None:
            raise UnsupportedError(
                f"{where}: operator {node.op_type} is not supported (supported: {', '.join(SUPPORTED_OPS)})"
            )
        for t in data_inputs:
            self.refs[self.values[t].node] -= 1
        try:
            handler(node, _Ctx(label=label, src=src, where=where, attrs=_attrs(node)))
        except (UserError, UnsupportedError):
            raise
        except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
            raise UserError(f"{where}: cannot import ({_one_line(exc)})") from None

    # ---- constants ---------------------------------------------------------------------

    def _constant_node(self, node: onnx.NodeProto) -> np.ndarray:
        where = f"{self.file}: node '{node.name}' (Constant)"
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name == "value_float":
                return np.array(a.f, dtype=np.float32)
            if a.name == "value_floats":
                return np.array(list(a.floats), dtype=np.float32)
            if a.name == "value_int":
                return np.array(a.i, dtype=np.int64)
            if a.name == "value_ints":
                return np.array(list(a.ints), dtype=np.int64)
        raise UnsupportedError(f"{where}: Constant without a dense 'value' attribute is not supported")

    def _fold_constant_node(self, node: onnx.NodeProto, where: str) -> None:
        """Evaluate a node whose inputs are all constants with the ONNX reference runtime."""
        from onnx.reference import ReferenceEvaluator

        ins = [t for t in node.input if t]
        graph = onnx.helper.make_graph(
            [node],
            "fold",
            [onnx.helper.make_tensor_value_info(t, onnx.TensorProto.UNDEFINED, None) for t in ins],
            [
                onnx.helper.make_tensor_value_info(t, onnx.TensorProto.UNDEFINED, None)
                for t in node.output
                if t
            ],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", self.opset)])
        feeds = {t: self._const_for_eval(t) for t in ins}
        try:
            results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:
            raise UnsupportedError(f"{where}: cannot fold constant node ({_one_line(exc)})") from None
        for t, r in zip([t for t in node.output if t], results, strict=False):
            self._set_const(t, np.asarray(r), where)

    def _const_for_eval(self, t: str) -> np.ndarray:
        """Constants are stored upcast to float64; give them back in their original type."""
        return self.consts[t].astype(self.const_dtype.get(t, self.consts[t].dtype))

    def _const(self, node: onnx.NodeProto, pos: int, where: str, what: str) -> np.ndarray:
        if len(node.input) <= pos or not node.input[pos]:
            raise UserError(f"{where}: missing {what}")
        t = node.input[pos]
        if t not in self.consts:
            raise UnsupportedError(f"{where}: the {what} '{t}' must be a constant (initializer)")
        return self.consts[t]

    def _opt_const(self, node: onnx.NodeProto, pos: int, where: str, what: str) -> np.ndarray | None:
        if len(node.input) <= pos or not node.input[pos]:
            return None
        return self._const(node, pos, where, what)

    def _shape(self, node: onnx.NodeProto, where: str) -> None:
        v = self.values[node.input[0]]
        self.refs[v.node] -= 1
        full = np.array((1,) * self.batch + v.shape, dtype=np.int64)
        a = _attrs(node)
        start, end = int(a.get("start", 0)), a.get("end")
        self._set_const(node.output[0], full[start : (int(end) if end is not None else None)], where)

    # ---- helpers on values -------------------------------------------------------------

    def _data(self, node: onnx.NodeProto, pos: int = 0) -> _Value:
        return self.values[node.input[pos]]

    def _full(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1,) * self.batch + tuple(shape)

    def _axis(self, axis: int, rank: int, where: str) -> int:
        """ONNX axis (with batch) -> axis of the batch-free shape."""
        full_rank = rank + self.batch
        a = axis + full_rank if axis < 0 else axis
        if not 0 <= a < full_rank:
            raise UserError(f"{where}: axis {axis} out of range for rank {full_rank}")
        if a < self.batch:
            raise UnsupportedError(f"{where}: operating along the batch axis is not supported")
        return a - self.batch

    def _broadcast_const(self, c: np.ndarray, v: _Value, where: str) -> np.ndarray:
        """Constant c broadcast to v's batch-free shape (must not enlarge v)."""
        full = self._full(v.shape)
        try:
            target = np.broadcast_shapes(c.shape, full)
        except ValueError:
            raise UserError(f"{where}: constant of shape {c.shape} does not broadcast to {full}") from None
        if tuple(target) != full:
            raise UnsupportedError(
                f"{where}: constant of shape {c.shape} would enlarge the data tensor {full} to {target}"
            )
        b = np.broadcast_to(c, full)
        return np.ascontiguousarray(b[0] if self.batch else b)

    def _alias(self, node: onnx.NodeProto, v: _Value, shape: tuple[int, ...]) -> None:
        """Output = input with a new logical shape (same elements in C order)."""
        if int(np.prod(shape, dtype=np.int64)) != v.size:
            raise UserError(
                f"{self.file}: node '{node.name}': reshape of {v.shape} to {shape} changes the size"
            )
        nv = _Value(
            v.node,
            v.ir_shape,
            tuple(int(s) for s in shape),
            None if v.scale is None else v.scale.reshape(shape),
            None if v.shift is None else v.shift.reshape(shape),
            list(v.pending_from),
        )
        self._set_value(node.output[0], nv)

    def _elementwise(
        self, node: onnx.NodeProto, v: _Value, s: np.ndarray | None, t: np.ndarray | None, src: str
    ):
        """Output = s * v + t (s, t Fraction arrays over v.shape, None = 1 / 0)."""
        if _all_equal_to(s, Fraction(1)):
            s = None
        if _all_equal_to(t, Fraction(0)):
            t = None
        if s is None and t is None:
            self._alias(node, v, v.shape)
            return
        if not v.pending and self._post_fold(v, s, t, src):
            self._set_value(node.output[0], _Value(v.node, v.ir_shape, v.shape))
            return
        scale = v.scale if s is None else (s if v.scale is None else s * v.scale)
        if t is None:
            shift = None if v.shift is None else (v.shift if s is None else s * v.shift)
        else:
            shift = t if v.shift is None else (v.shift + t if s is None else s * v.shift + t)
        self._set_value(
            node.output[0], _Value(v.node, v.ir_shape, v.shape, scale, shift, [*v.pending_from, src])
        )

    def _post_fold(self, v: _Value, s: np.ndarray | None, t: np.ndarray | None, src: str) -> bool:
        """Fold y = s*v + t into the affine/conv node producing v, if it has no other consumer."""
        op = self.op_by_name[v.node]
        if op.kind not in ("affine", "conv2d") or self.refs.get(v.node, 0) != 0 or v.node in self.used:
            return False
        if op.kind == "affine":
            s_out = None if s is None else s.reshape(-1)
            t_out = None if t is None else t.reshape(-1)
            w_key = "weight"
        else:
            c_out = op.shape[0]
            s_out = None if s is None else _per_channel(s.reshape(op.shape), c_out)
            t_out = None if t is None else _per_channel(t.reshape(op.shape), c_out)
            if (s is not None and s_out is None) or (t is not None and t_out is None):
                return False
            w_key = "kernel"
        w = _Param(op.attrs[w_key], op.attrs.get(f"{w_key}_exact"))
        b = _Param(op.attrs["bias"], op.attrs.get("bias_exact"))
        what = f"{self.file}: {op.describe()}"
        if s_out is not None:
            bcast = s_out.reshape((-1,) + (1,) * (w.value.ndim - 1))
            w = _Param.of_fractions(w.fractions() * bcast, what)
            b_fr = b.fractions() * s_out
        else:
            b_fr = b.fractions()
        if t_out is not None:
            b_fr = b_fr + t_out
        b = _Param.of_fractions(b_fr, what)
        _store(op, w_key, w)
        _store(op, "bias", b)
        op.source = f"{op.source} + {src}"
        return True

    def _materialise(self, v: _Value, src: str) -> _Value:
        """Emit any pending s*x+t as an IR node; returns a value without pending step."""
        if not v.pending:
            return v
        size = v.size
        s = v.scale if v.scale is not None else _fill(v.shape, Fraction(1))
        t = v.shift if v.shift is not None else _fill(v.shape, Fraction(0))
        source = " + ".join(v.pending_from)
        what = f"{self.file}: {source}"
        if (
            len(v.shape) == 3
            and _per_channel(s, v.shape[0]) is not None
            and _per_channel(t, v.shape[0]) is not None
        ):
            c = v.shape[0]
            data = self._ir_node_with_shape(v, v.shape, source)
            kernel = _Param.of_fractions(_per_channel(s, c).reshape(c, 1, 1, 1), what)
            bias = _Param.of_fractions(_per_channel(t, c), what)
            attrs = {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "group": c}
            _store_into(attrs, "kernel", kernel)
            _store_into(attrs, "bias", bias)
            name = self._emit("conv2d", f"{v.node}_scale", (data,), v.shape, attrs, source)
            out = _Value(name, v.shape, v.shape)
        elif size <= MAX_DIAGONAL_AFFINE:
            data = self._ir_node_with_shape(v, (size,), source)
            diag = np.empty((size, size), dtype=object)
            diag[...] = Fraction(0)
            np.fill_diagonal(diag, s.reshape(-1))
            attrs: dict[str, Any] = {}
            _store_into(attrs, "weight", _Param.of_fractions(diag, what))
            _store_into(attrs, "bias", _Param.of_fractions(t.reshape(-1), what))
            name = self._emit("affine", f"{v.node}_scale", (data,), (size,), attrs, source)
            out = _Value(name, (size,), v.shape)
        else:
            raise UnsupportedError(
                f"{self.file}: {source}: elementwise constant scaling of a {v.shape} tensor that cannot be "
                "folded into a neighbouring affine/conv layer"
            )
        # later consumers of the same tensors reuse the emitted node
        for key, val in self.values.items():
            if val is v:
                self.values[key] = out
        self.refs[out.node] = self.refs.get(out.node, 0) + self.refs.get(v.node, 0)
        return out

    # ---- affine / conv -----------------------------------------------------------------

    def _emit_affine(self, node, ctx, v: _Value, w: _Param, b: _Param, out_shape: tuple[int, ...]) -> None:
        """y = W x + b on the flattened input, pre-folding any pending s*x+t into W, b."""
        n_in = w.value.shape[1]
        if v.size != n_in:
            raise UserError(f"{ctx.where}: weight expects {n_in} inputs, data has shape {v.shape}")
        if v.pending:
            w_fr = w.fractions()
            b_fr = b.fractions()
            what = ctx.where
            if v.shift is not None:
                b_fr = b_fr + w_fr.dot(v.shift.reshape(-1))
            if v.scale is not None:
                w_fr = w_fr * v.scale.reshape(1, -1)
            w, b = _Param.of_fractions(w_fr, what), _Param.of_fractions(b_fr, what)
            src = " + ".join([*v.pending_from, ctx.src])
        else:
            src = ctx.src
        data = self._ir_node_with_shape(v, (n_in,), src)
        attrs: dict[str, Any] = {}
        _store_into(attrs, "weight", w)
        _store_into(attrs, "bias", b)
        name = self._emit("affine", ctx.label, (data,), (w.value.shape[0],), attrs, src)
        self._set_value(node.output[0], _Value(name, (w.value.shape[0],), tuple(out_shape)))

    def _op_Gemm(self, node, ctx) -> None:
        """Y = alpha * A' B' + beta * C with A the data ([batch, K]) and B, C constants."""
        if node.input[0] not in self.values or node.input[1] not in self.consts:
            raise UnsupportedError(f"{ctx.where}: only Gemm(data, constant B[, constant C]) is supported")
        if int(ctx.attrs.get("transA", 0)):
            raise UnsupportedError(
                f"{ctx.where}: transA=1 would transpose the batch dimension of the data input"
            )
        v = self._data(node)
        if len(v.shape) != 1:
            raise UserError(f"{ctx.where}: Gemm input must be 2-D [batch, K], got {self._full(v.shape)}")
        bmat = self._const(node, 1, ctx.where, "matrix B")
        w = bmat if int(ctx.attrs.get("transB", 0)) else bmat.T
        n_out = w.shape[0]
        alpha = _f32(ctx.attrs, "alpha", 1.0)
        beta = float(ctx.attrs.get("beta", 1.0))
        weight = _scaled(_Param(np.ascontiguousarray(w, dtype=np.float64)), alpha, ctx.where)
        c = self._opt_const(node, 2, ctx.where, "bias C")
        if c is None:
            bias = _Param(np.zeros(n_out))
        else:
            if c.size not in (1, n_out):
                raise UserError(f"{ctx.where}: bias C of shape {c.shape} does not match {n_out} outputs")
            bias = _scaled(
                _Param(np.broadcast_to(c.reshape(-1), (n_out,)).astype(np.float64)), beta, ctx.where
            )
        self._emit_affine(node, ctx, v, weight, bias, (n_out,))

    def _op_MatMul(self, node, ctx) -> None:
        """Y = X B with X the data (vector in its last axis) and B a constant [K, N]."""
        if node.input[0] not in self.values or node.input[1] not in self.consts:
            raise UnsupportedError(f"{ctx.where}: only MatMul(data, constant matrix) is supported")
        v = self._data(node)
        bmat = self._const(node, 1, ctx.where, "matrix")
        if bmat.ndim != 2:
            raise UnsupportedError(f"{ctx.where}: constant operand of rank {bmat.ndim} (need a 2-D matrix)")
        if not v.shape or int(np.prod(v.shape[:-1], dtype=np.int64)) != 1:
            raise UnsupportedError(
                f"{ctx.where}: MatMul over a data tensor of shape {v.shape} (need a vector)"
            )
        out_shape = (*v.shape[:-1], bmat.shape[1])
        weight = _Param(np.ascontiguousarray(bmat.T, dtype=np.float64))
        self._emit_affine(node, ctx, v, weight, _Param(np.zeros(bmat.shape[1])), out_shape)

    def _op_Conv(self, node, ctx) -> None:
        """2-D convolution (a conv with 1x1 output is lowered to an affine node) or 1-D convolution;
        a preceding zero Pad that nothing else reads is folded into the conv's pads."""
        v = self._data(node)
        kernel = self._const(node, 1, ctx.where, "kernel")
        if kernel.ndim == 3 and len(v.shape) == 2:
            self._conv1d(node, ctx, v, kernel)
            return
        v, extra = self._fold_pad(v)
        if kernel.ndim != 4 or len(v.shape) != 3:
            raise UnsupportedError(
                f"{ctx.where}: only 2-D convolutions are supported (kernel {kernel.shape})"
            )
        c_in, h, w = v.shape
        c_out, cg, kh, kw = kernel.shape
        group = int(ctx.attrs.get("group", 1))
        if cg * group != c_in or c_out % group:
            raise UserError(
                f"{ctx.where}: kernel {kernel.shape} with group {group} does not fit input {v.shape}"
            )
        stride = _ints(ctx.attrs.get("strides", (1, 1)), 2)
        dil = _ints(ctx.attrs.get("dilations", (1, 1)), 2)
        pads = _pads(ctx.attrs, (h, w), (kh, kw), stride, dil, ctx.where)
        if extra is not None:
            if ctx.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID"):
                raise UnsupportedError(f"{ctx.where}: Pad followed by a Conv with auto_pad SAME")
            pads = tuple(a + b for a, b in zip(pads, extra, strict=True))
        ho, wo = _out_size((h, w), (kh, kw), stride, dil, pads, ceil=False)
        if ho < 1 or wo < 1:
            raise UserError(f"{ctx.where}: kernel larger than the padded input")
        bias_c = self._opt_const(node, 2, ctx.where, "bias")
        bias = _Param(np.zeros(c_out) if bias_c is None else bias_c.reshape(-1).astype(np.float64))
        kern = _Param(np.ascontiguousarray(kernel, dtype=np.float64))
        if ho == 1 and wo == 1:
            dense = _conv_as_dense(kern, (c_in, h, w), group, pads, dil)
            self._emit_affine(node, ctx, v, dense, bias, (c_out, 1, 1))
            return
        self._emit_conv(node, ctx, v, kern, bias, group, stride, dil, pads, (c_out, ho, wo))

    def _conv1d(self, node, ctx, v: _Value, kernel: np.ndarray) -> None:
        """1-D convolution of a (C, L) tensor: IR ``conv1d`` (zero Pad folded as in 2-D)."""
        v, extra = self._fold_pad(v)
        c_in, length = v.shape
        c_out, cg, k = kernel.shape
        group = int(ctx.attrs.get("group", 1))
        if cg * group != c_in or c_out % group:
            raise UserError(
                f"{ctx.where}: kernel {kernel.shape} with group {group} does not fit input {v.shape}"
            )
        stride = _ints(ctx.attrs.get("strides", (1,)), 1)
        dil = _ints(ctx.attrs.get("dilations", (1,)), 1)
        pads = _pads(ctx.attrs, (length,), (k,), stride, dil, ctx.where)
        if extra is not None:
            if ctx.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID"):
                raise UnsupportedError(f"{ctx.where}: Pad followed by a Conv with auto_pad SAME")
            pads = tuple(a + b for a, b in zip(pads, extra, strict=True))
        (lo,) = _out_size((length,), (k,), stride, dil, pads, ceil=False)
        if lo < 1:
            raise UserError(f"{ctx.where}: kernel larger than the padded input")
        bias_c = self._opt_const(node, 2, ctx.where, "bias")
        bias = _Param(np.zeros(c_out) if bias_c is None else bias_c.reshape(-1).astype(np.float64))
        kern = _Param(np.ascontiguousarray(kernel, dtype=np.float64))
        self._emit_conv(node, ctx, v, kern, bias, group, stride, dil, pads, (c_out, lo), kind="conv1d")

    def _fold_pad(self, v: _Value) -> tuple[_Value, tuple[int, ...] | None]:
        """If v is an IR ``pad`` node of zeros on the spatial axes only, read by nothing else,
        drop it and return its operand plus its (begins..., ends...) spatial pads."""
        op = self.op_by_name.get(v.node)
        if (
            op is None
            or op.kind != "pad"
            or v.pending
            or v.ir_shape != v.shape
            or float(op.attrs["value"]) != 0.0
            or self.refs.get(v.node, 0) != 0
            or v.node in self.used
        ):
            return v, None
        pads = op.attrs["padding"]
        r = len(op.shape)
        if pads[0] != 0 or pads[r] != 0:  # channel axis padded
            return v, None
        src = op.inputs[0]
        self.ops.remove(self.op_by_name.pop(v.node))
        for key in [k for k, val in self.values.items() if val.node == v.node]:
            del self.values[key]
        in_shape = self.op_by_name[src].shape
        spatial = tuple(pads[1:r]) + tuple(pads[r + 1 :])
        self.notes.add("Pad folded into the following Conv/AveragePool")
        return _Value(src, in_shape, in_shape), spatial

    def _emit_conv(
        self, node, ctx, v, kern: _Param, bias: _Param, group, stride, dil, pads, out_shape, kind="conv2d"
    ) -> None:
        src = ctx.src
        if v.pending:
            folded = self._pre_fold_conv(v, kern, bias, group, pads, ctx.where)
            if folded is not None:
                kern, bias = folded
                src = " + ".join([*v.pending_from, ctx.src])
                v = _Value(v.node, v.ir_shape, v.shape)
            else:
                v = self._materialise(v, ctx.src)
        data = self._ir_node_with_shape(v, v.shape, src)
        attrs: dict[str, Any] = {"stride": stride, "padding": pads, "dilation": dil, "group": group}
        _store_into(attrs, "kernel", kern)
        _store_into(attrs, "bias", bias)
        name = self._emit(kind, ctx.label, (data,), out_shape, attrs, src)
        self._set_value(node.output[0], _Value(name, out_shape, out_shape))

    def _pre_fold_conv(self, v: _Value, kern: _Param, bias: _Param, group, pads, where):
        """conv(s*x + t) = conv'(x) when s, t are per input channel (and t = 0 or no padding)."""
        c_in = v.shape[0]
        s = None if v.scale is None else _per_channel(v.scale, c_in)
        t = None if v.shift is None else _per_channel(v.shift, c_in)
        if (v.scale is not None and s is None) or (v.shift is not None and t is None):
            return None
        if t is not None and any(pads):
            return None
        k_fr = kern.fractions()
        b_fr = bias.fractions()
        c_out, cg = k_fr.shape[:2]
        og = c_out // group
        spatial = tuple(range(2, k_fr.ndim))
        # input channel of kernel[o, c] is (o // og) * cg + c
        chan = (np.arange(c_out)[:, None] // og) * cg + np.arange(cg)[None, :]
        if t is not None:
            b_fr = b_fr + (k_fr.sum(axis=spatial) * t[chan]).sum(axis=1)
        if s is not None:
            k_fr = k_fr * s[chan].reshape(c_out, cg, *((1,) * len(spatial)))
        return _Param.of_fractions(k_fr, where), _Param.of_fractions(b_fr, where)

    # ---- elementwise with constants ----------------------------------------------------

    def _split_const(self, node, ctx) -> tuple[_Value | None, np.ndarray | None, int]:
        """(data value, constant, position of the data operand) for a binary op."""
        a, b = node.input[0], node.input[1]
        if a in self.values and b in self.consts:
            return self.values[a], self.consts[b], 0
        if b in self.values and a in self.consts:
            return self.values[b], self.consts[a], 1
        return None, None, -1

    def _op_Add(self, node, ctx) -> None:
        v, c, _ = self._split_const(node, ctx)
        if v is not None:
            self._elementwise(node, v, None, _fractions_of(self._broadcast_const(c, v, ctx.where)), ctx.src)
            return
        self._add_two(node, ctx, negate_second=False)

    def _op_Sub(self, node, ctx) -> None:
        v, c, pos = self._split_const(node, ctx)
        if v is not None:
            cf = _fractions_of(self._broadcast_const(c, v, ctx.where))
            if pos == 0:
                self._elementwise(node, v, None, -cf, ctx.src)
            else:
                self._elementwise(node, v, _fill(v.shape, Fraction(-1)), cf, ctx.src)
            return
        self._add_two(node, ctx, negate_second=True)

    def _add_two(self, node, ctx, negate_second: bool) -> None:
        """Residual y = a + b (or a - b) of two data tensors of the same shape."""
        va, vb = self._data(node, 0), self._data(node, 1)
        if va.shape != vb.shape:
            raise UnsupportedError(
                f"{ctx.where}: broadcasting between data tensors {va.shape} and {vb.shape}"
            )
        if negate_second:
            neg = _fill(vb.shape, Fraction(-1))
            vb = _Value(
                vb.node,
                vb.ir_shape,
                vb.shape,
                neg if vb.scale is None else -vb.scale,
                None if vb.shift is None else -vb.shift,
                [*vb.pending_from, ctx.src],
            )
        va = self._materialise(va, ctx.src)
        vb = self._materialise(vb, ctx.src)
        na = self._ir_node_with_shape(va, va.shape, ctx.src)
        nb = self._ir_node_with_shape(vb, vb.shape, ctx.src)
        name = self._emit("add", ctx.label, (na, nb), va.shape, {}, ctx.src)
        self._set_value(node.output[0], _Value(name, va.shape, va.shape))

    def _op_Mul(self, node, ctx) -> None:
        v, c, _ = self._split_const(node, ctx)
        if v is not None:
            self._elementwise(node, v, _fractions_of(self._broadcast_const(c, v, ctx.where)), None, ctx.src)
            return
        self._maybe_silu(node, ctx)

    def _maybe_silu(self, node, ctx) -> None:
        """x * Sigmoid(x) -> act silu (the Sigmoid node is dropped if nothing else uses it)."""
        producers = {o: n for n in self.graph.node for o in n.output}
        for pos in (0, 1):
            x, sig = node.input[pos], node.input[1 - pos]
            p = producers.get(sig)
            if p is not None and p.op_type == "Sigmoid" and p.input[0] == x:
                self._activation(node, ctx, "silu", {}, pos=pos)
                self._drop_if_dead(self.values[sig].node)
                return
        raise UnsupportedError(
            f"{ctx.where}: multiplication of two data tensors is not supported (recognised products: "
            "x * Sigmoid(x) as SiLU and the tanh or Erf GELU decompositions with their standard constants)"
        )

    def _drop_if_dead(self, name: str) -> None:
        if self.refs.get(name, 0) == 0 and name not in self.used and self.op_by_name[name].kind == "act":
            self.ops.remove(self.op_by_name.pop(name))
            for key in [k for k, v in self.values.items() if v.node == name]:
                del self.values[key]

    def _op_Div(self, node, ctx) -> None:
        v, c, pos = self._split_const(node, ctx)
        if v is None or pos != 0:
            raise UnsupportedError(f"{ctx.where}: only division of data by a constant is supported")
        cf = _fractions_of(self._broadcast_const(c, v, ctx.where))
        if any(q == 0 for q in cf.reshape(-1)):
            raise UserError(f"{ctx.where}: division by zero constant")
        inv = np.frompyfunc(lambda q: 1 / q, 1, 1)(cf)
        self._elementwise(node, v, np.asarray(inv, dtype=object), None, ctx.src)

    def _op_BatchNormalization(self, node, ctx) -> None:
        """y = scale (x - mean) / sqrt(var + eps) + B per channel, as s*x + t."""
        if int(ctx.attrs.get("training_mode", 0)):
            raise UnsupportedError(f"{ctx.where}: training_mode=1 is not supported")
        if len(node.output) > 1 and any(node.output[1:]):
            raise UnsupportedError(f"{ctx.where}: running-statistics outputs are not supported")
        v = self._data(node)
        if not v.shape:
            raise UserError(f"{ctx.where}: BatchNormalization of a scalar")
        c = v.shape[0]
        params = [
            self._const(node, k, ctx.where, w) for k, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
        ]
        if any(p.size != c for p in params):
            raise UserError(f"{ctx.where}: parameters do not have {c} channels")
        scale, b, mean, var = (_fractions_of(p.reshape(-1)) for p in params)
        eps = Fraction(float(ctx.attrs.get("epsilon", 1e-5)))
        s = np.empty(c, dtype=object)
        for k in range(c):
            denom = var[k] + eps
            if denom <= 0:
                raise UserError(f"{ctx.where}: var + epsilon <= 0 in channel {k}")
            inv, exact = _inv_sqrt(denom)
            if not exact:
                self.notes.add(f"BatchNormalization 1/sqrt(var+eps) rounded to 2^-{INV_SQRT_BITS} relative")
            s[k] = scale[k] * inv
        t = b - mean * s
        bshape = (c,) + (1,) * (len(v.shape) - 1)
        s_full = np.broadcast_to(s.reshape(bshape), v.shape).copy()
        t_full = np.broadcast_to(t.reshape(bshape), v.shape).copy()
        self._elementwise(node, v, s_full, t_full, ctx.src)

    # ---- shape-only ops ----------------------------------------------------------------

    def _op_Identity(self, node, ctx) -> None:
        v = self._data(node)
        self._alias(node, v, v.shape)

    def _op_Dropout(self, node, ctx) -> None:
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1], 0):
            raise UnsupportedError(f"{ctx.where}: the Dropout mask output is not supported")
        self._op_Identity(node, ctx)

    def _op_Flatten(self, node, ctx) -> None:
        v = self._data(node)
        full = self._full(v.shape)
        axis = int(ctx.attrs.get("axis", 1))
        axis = axis + len(full) if axis < 0 else axis
        outer = int(np.prod(full[:axis], dtype=np.int64))
        if self.batch and outer != 1:
            raise UnsupportedError(f"{ctx.where}: Flatten axis {axis} would merge the batch dimension")
        self._alias(
            node, v, (int(np.prod(full[axis:], dtype=np.int64)),) if self.batch else (outer, v.size // outer)
        )

    def _op_Reshape(self, node, ctx) -> None:
        v = self._data(node)
        target = [int(d) for d in self._const(node, 1, ctx.where, "shape").reshape(-1)]
        full = self._full(v.shape)
        allowzero = int(ctx.attrs.get("allowzero", 0))
        if not allowzero:
            target = [full[k] if d == 0 and k < len(full) else d for k, d in enumerate(target)]
        new = np.empty(full, dtype=np.int8).reshape(target).shape
        self._alias(node, v, self._drop_batch(new, ctx.where))

    def _drop_batch(self, full: tuple[int, ...], where: str) -> tuple[int, ...]:
        if not self.batch:
            return tuple(full)
        if not full or full[0] != 1:
            raise UnsupportedError(f"{where}: reshaping to {tuple(full)} would change the batch dimension")
        return tuple(full[1:])

    def _axes(self, node, ctx, pos: int) -> list[int]:
        if "axes" in ctx.attrs:
            return [int(a) for a in ctx.attrs["axes"]]
        c = self._opt_const(node, pos, ctx.where, "axes")
        return [] if c is None else [int(a) for a in c.reshape(-1)]

    def _op_Squeeze(self, node, ctx) -> None:
        v = self._data(node)
        full = list(self._full(v.shape))
        axes = self._axes(node, ctx, 1)
        axes = [a + len(full) if a < 0 else a for a in axes] or [k for k, d in enumerate(full) if d == 1]
        if self.batch and 0 in axes:
            axes = [a for a in axes if a != 0]
        new = tuple(d for k, d in enumerate(full) if k not in axes)
        self._alias(node, v, self._drop_batch(new, ctx.where))

    def _op_Unsqueeze(self, node, ctx) -> None:
        v = self._data(node)
        full = list(self._full(v.shape))
        axes = self._axes(node, ctx, 1)
        rank = len(full) + len(axes)
        for a in sorted(a + rank if a < 0 else a for a in axes):
            full.insert(a, 1)
        self._alias(node, v, self._drop_batch(tuple(full), ctx.where))

    # ---- activations -------------------------------------------------------------------

    def _activation(self, node, ctx, fn: str, attrs: dict, pos: int = 0) -> None:
        v = self._materialise(self._data(node, pos), ctx.src)
        name = self._emit("act", ctx.label, (v.node,), v.ir_shape, {"fn": fn, **attrs}, ctx.src)
        self._set_value(node.output[0], _Value(name, v.ir_shape, v.shape))

    def _op_Relu(self, node, ctx) -> None:
        self._activation(node, ctx, "relu", {})

    def _op_Sigmoid(self, node, ctx) -> None:
        self._activation(node, ctx, "sigmoid", {})

    def _op_Tanh(self, node, ctx) -> None:
        self._activation(node, ctx, "tanh", {})

    def _op_Softplus(self, node, ctx) -> None:
        self._activation(node, ctx, "softplus", {})

    def _op_LeakyRelu(self, node, ctx) -> None:
        self._activation(node, ctx, "leaky_relu", {"alpha": _f32(ctx.attrs, "alpha", 0.01)})

    def _op_Elu(self, node, ctx) -> None:
        self._activation(node, ctx, "elu", {"alpha": _f32(ctx.attrs, "alpha", 1.0)})

    def _op_HardSigmoid(self, node, ctx) -> None:
        attrs = {"alpha": _f32(ctx.attrs, "alpha", 0.2), "beta": _f32(ctx.attrs, "beta", 0.5)}
        self._activation(node, ctx, "hard_sigmoid", attrs)

    def _op_Gelu(self, node, ctx) -> None:
        """Gelu (opset 20): approximate='none' -> gelu (erf form), 'tanh' -> gelu_tanh."""
        approx = ctx.attrs.get("approximate", "none")
        fn = {"none": "gelu", "tanh": "gelu_tanh"}.get(approx)
        if fn is None:
            raise UnsupportedError(
                f"{ctx.where}: Gelu approximate='{approx}' is not supported (only 'none' and 'tanh')"
            )
        self._activation(node, ctx, fn, {})

    def _op_PRelu(self, node, ctx) -> None:
        slope = np.unique(self._const(node, 1, ctx.where, "slope").reshape(-1))
        if slope.size != 1:
            raise UnsupportedError(f"{ctx.where}: PRelu with per-channel slopes is not supported")
        self._activation(node, ctx, "leaky_relu", {"alpha": float(slope[0])})

    def _op_Clip(self, node, ctx) -> None:
        """Clip to [-1, 1] is hard_tanh, to [0, inf) is relu; other ranges are not supported."""
        if self.opset < 11:
            lo, hi = ctx.attrs.get("min"), ctx.attrs.get("max")
        else:
            c_lo = self._opt_const(node, 1, ctx.where, "min")
            c_hi = self._opt_const(node, 2, ctx.where, "max")
            lo = None if c_lo is None else float(c_lo.reshape(-1)[0])
            hi = None if c_hi is None else float(c_hi.reshape(-1)[0])
        lo = -math.inf if lo is None or float(lo) <= -FLOAT32_MAX else float(lo)
        hi = math.inf if hi is None or float(hi) >= FLOAT32_MAX else float(hi)
        if (lo, hi) == (-1.0, 1.0):
            self._activation(node, ctx, "hard_tanh", {})
        elif lo == 0.0 and hi == math.inf:
            self._activation(node, ctx, "relu", {})
        else:
            raise UnsupportedError(
                f"{ctx.where}: Clip to [{lo}, {hi}] is not supported "
                "(only [-1, 1] = hard_tanh, [0, inf) = relu)"
            )

    def _op_Softmax(self, node, ctx) -> None:
        v = self._materialise(self._data(node), ctx.src)
        rank = len(v.shape)
        default = -1 if self.opset >= 13 else 1
        axis = self._axis(int(ctx.attrs.get("axis", default)), rank, ctx.where)
        if self.opset >= 13:
            data = self._ir_node_with_shape(v, v.shape, ctx.src)
            shape, ir_axis = v.shape, axis - rank
        else:  # coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])]
            inner = int(np.prod(v.shape[axis:], dtype=np.int64))
            shape = (inner,) if axis == 0 else (v.size // inner, inner)
            data = self._ir_node_with_shape(v, shape, ctx.src)
            ir_axis = -1
        name = self._emit("softmax", ctx.label, (data,), shape, {"axis": ir_axis}, ctx.src)
        self._set_value(node.output[0], _Value(name, shape, v.shape))

    def _op_ArgMax(self, node, ctx) -> None:
        if int(ctx.attrs.get("select_last_index", 0)):
            raise UnsupportedError(f"{ctx.where}: select_last_index=1 is not supported")
        v = self._materialise(self._data(node), ctx.src)
        axis = self._axis(int(ctx.attrs.get("axis", 0)), len(v.shape), ctx.where)
        keep = bool(int(ctx.attrs.get("keepdims", 1)))
        data = self._ir_node_with_shape(v, v.shape, ctx.src)
        shape = tuple(1 if k == axis else d for k, d in enumerate(v.shape) if keep or k != axis)
        attrs = {"axis": axis, "keepdims": keep}
        name = self._emit("argmax", ctx.label, (data,), shape, attrs, ctx.src)
        self._set_value(node.output[0], _Value(name, shape, shape))

    # ---- padding, transposition, concatenation -----------------------------------------

    def _op_Pad(self, node, ctx) -> None:
        """Constant Pad: no-op when all pads are 0; else an IR ``pad`` node (a later Conv or
        AveragePool folds a zero Pad that nothing else reads)."""
        mode = ctx.attrs.get("mode", "constant")
        if mode != "constant":
            raise UnsupportedError(f"{ctx.where}: Pad mode '{mode}' is not supported (only 'constant')")
        v = self._data(node)
        full = self._full(v.shape)
        if self.opset < 11:
            pads = [int(p) for p in ctx.attrs.get("pads", ())]
            value = float(ctx.attrs.get("value", 0.0))
        else:
            pads = [int(p) for p in self._const(node, 1, ctx.where, "pads").reshape(-1)]
            c = self._opt_const(node, 2, ctx.where, "constant_value")
            value = 0.0 if c is None or c.size == 0 else float(c.reshape(-1)[0])
            axes_c = self._opt_const(node, 3, ctx.where, "axes")
            if axes_c is not None:
                axes = [int(a) + len(full) if int(a) < 0 else int(a) for a in axes_c.reshape(-1)]
                dense = [0] * (2 * len(full))
                for k, a in enumerate(axes):
                    dense[a], dense[a + len(full)] = pads[k], pads[k + len(axes)]
                pads = dense
        r = len(full)
        if len(pads) != 2 * r:
            raise UserError(f"{ctx.where}: pads {pads} do not match rank {r}")
        if any(p < 0 for p in pads):
            raise UnsupportedError(f"{ctx.where}: negative pads (cropping) are not supported")
        if self.batch and (pads[0] or pads[r]):
            raise UnsupportedError(f"{ctx.where}: padding the batch axis is not supported")
        if not any(pads):
            self._alias(node, v, v.shape)
            return
        b = self.batch
        pads_ir = tuple(pads[b:r]) + tuple(pads[r + b :])
        v = self._materialise(v, ctx.src)
        data = self._ir_node_with_shape(v, v.shape, ctx.src)
        rank = len(v.shape)
        shape = tuple(d + pads_ir[k] + pads_ir[k + rank] for k, d in enumerate(v.shape))
        attrs = {"padding": pads_ir, "value": float(np.float32(value))}
        name = self._emit("pad", ctx.label, (data,), shape, attrs, ctx.src)
        self._set_value(node.output[0], _Value(name, shape, shape))

    def _op_Transpose(self, node, ctx) -> None:
        """Transpose (the batch axis must stay first): IR ``transpose`` with the batch-free perm;
        a pending elementwise s*x+t is transposed along."""
        v = self._data(node)
        full = self._full(v.shape)
        perm = [int(p) for p in ctx.attrs.get("perm", list(range(len(full)))[::-1])]
        if sorted(perm) != list(range(len(full))):
            raise UserError(f"{ctx.where}: perm {perm} is not a permutation of rank {len(full)}")
        if self.batch:
            if perm[0] != 0:
                raise UnsupportedError(f"{ctx.where}: Transpose would move the batch axis (perm {perm})")
            perm = [p - 1 for p in perm[1:]]
        shape = tuple(v.shape[p] for p in perm)
        data = self._ir_node_with_shape(v, v.shape, ctx.src)
        name = self._emit("transpose", ctx.label, (data,), shape, {"perm": tuple(perm)}, ctx.src)
        scale = None if v.scale is None else v.scale.transpose(perm)
        shift = None if v.shift is None else v.shift.transpose(perm)
        self._set_value(node.output[0], _Value(name, shape, shape, scale, shift, list(v.pending_from)))

    def _op_Concat(self, node, ctx) -> None:
        """Concat of data tensors along a non-batch axis: IR ``concat``."""
        if any(t in self.consts for t in node.input if t):
            raise UnsupportedError(f"{ctx.where}: Concat with a constant operand is not supported")
        vals = [self._materialise(self.values[t], ctx.src) for t in node.input if t]
        rank = len(vals[0].shape)
        axis = self._axis(int(ctx.attrs["axis"]), rank, ctx.where)
        for val in vals:
            if len(val.shape) != rank or any(
                d != e for k, (d, e) in enumerate(zip(val.shape, vals[0].shape, strict=True)) if k != axis
            ):
                raise UserError(f"{ctx.where}: operand shapes {[x.shape for x in vals]} do not concatenate")
        datas = tuple(self._ir_node_with_shape(val, val.shape, ctx.src) for val in vals)
        shape = list(vals[0].shape)
        shape[axis] = sum(val.shape[axis] for val in vals)
        name = self._emit("concat", ctx.label, datas, tuple(shape), {"axis": axis}, ctx.src)
        self._set_value(node.output[0], _Value(name, tuple(shape), tuple(shape)))

    # ---- pooling -----------------------------------------------------------------------

    def _pool(self, node, ctx, kind: str, global_pool: bool) -> None:
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1], 0):
            raise UnsupportedError(f"{ctx.where}: the pooling indices output is not supported")
        v = self._materialise(self._data(node), ctx.src)
        if len(v.shape) not in (2, 3):
            raise UnsupportedError(f"{ctx.where}: only 1-D and 2-D pooling are supported (input {v.shape})")
        c, sizes = v.shape[0], tuple(v.shape[1:])
        d = len(sizes)
        ones = (1,) * d
        if global_pool:
            kernel, stride, dil, pads = sizes, ones, ones, (0,) * (2 * d)
        else:
            kernel = _ints(ctx.attrs["kernel_shape"], d)
            stride = _ints(ctx.attrs.get("strides", ones), d)
            dil = _ints(ctx.attrs.get("dilations", ones), d)
            pads = _pads(ctx.attrs, sizes, kernel, stride, dil, ctx.where)
        count_pad = bool(int(ctx.attrs.get("count_include_pad", 0)))
        if kind == "avgpool" and not any(pads) and not global_pool:
            # zero Pad + AveragePool without pads of its own = AveragePool counting the pad
            folded, extra = self._fold_pad(v)
            if extra is not None:
                v, pads, count_pad = folded, extra, True
                sizes = tuple(v.shape[1:])
        out = _out_size(sizes, kernel, stride, dil, pads, ceil=False)
        ceil = _out_size(sizes, kernel, stride, dil, pads, ceil=True)
        if int(ctx.attrs.get("ceil_mode", 0)) and ceil != out:
            raise UnsupportedError(f"{ctx.where}: ceil_mode=1 changing the output size is not supported")
        if min(out) < 1:
            raise UserError(f"{ctx.where}: pooling window larger than the padded input")
        attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "padding": pads, "dilation": dil}
        if kind == "avgpool":
            if dil != ones:
                raise UnsupportedError(f"{ctx.where}: dilated AveragePool is not supported")
            attrs["count_include_pad"] = count_pad
        data = self._ir_node_with_shape(v, v.shape, ctx.src)
        shape = (c, *out)
        name = self._emit(kind, ctx.label, (data,), shape, attrs, ctx.src)
        self._set_value(node.output[0], _Value(name, shape, shape))

    def _op_MaxPool(self, node, ctx) -> None:
        self._pool(node, ctx, "maxpool", global_pool=False)

    def _op_AveragePool(self, node, ctx) -> None:
        self._pool(node, ctx, "avgpool", global_pool=False)

    def _op_GlobalAveragePool(self, node, ctx) -> None:
        self._pool(node, ctx, "avgpool", global_pool=True)

    def _op_GlobalMaxPool(self, node, ctx) -> None:
        self._pool(node, ctx, "maxpool", global_pool=True)


@dataclass
class _Ctx:
    label: str
    src: str
    where: str
    attrs: dict[str, Any]


# --------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        val = onnx.helper.get_attribute_value(a)
        out[a.name] = val.decode() if isinstance(val, bytes) else val
    return out


def _f32(attrs: dict[str, Any], key: str, default: float) -> float:
    """A float attribute (ONNX stores float32), defaults rounded to float32 as runtimes do."""
    return float(np.float32(attrs.get(key, default)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def _ints(v, n: int) -> tuple[int, ...]:
    t = tuple(int(a) for a in v)
    if len(t) != n:
        raise UnsupportedError(
            f"expected {n} spatial values, got {list(t)} (only 1-D and 2-D conv/pool are supported)"
        )
    return t


def _pads(attrs, hw, kernel, stride, dil, where) -> tuple[int, ...]:
    """Explicit ONNX pads (begins..., ends...; 2-D: top, left, bottom, right), resolving auto_pad."""
    auto = attrs.get("auto_pad", "NOTSET")
    d = len(hw)
    if auto in ("NOTSET", ""):
        p = tuple(int(a) for a in attrs.get("pads", (0,) * (2 * d)))
        if len(p) != 2 * d:
            raise UnsupportedError(f"{where}: pads {list(p)} do not match {d} spatial axes")
        return p
    if auto == "VALID":
        return (0,) * (2 * d)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedError(f"{where}: auto_pad={auto} is not supported")
    begin, end = [], []
    for size, k, s, d in zip(hw, kernel, stride, dil, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return (*begin, *end)


def _out_size(hw, kernel, stride, dil, pads, ceil: bool) -> tuple[int, ...]:
    """floor/ceil((size + pad_begin + pad_end - d (k - 1) - 1) / s) + 1 per spatial axis."""
    out = []
    d = len(hw)
    for axis in range(d):
        span = hw[axis] + pads[axis] + pads[axis + d] - dil[axis] * (kernel[axis] - 1) - 1
        q = -(-span // stride[axis]) if ceil else span // stride[axis]
        out.append(q + 1)
    return tuple(out)


def _conv_as_dense(kern: _Param, in_shape, group: int, pads, dil) -> _Param:
    """Dense [C_out, C_in*H*W] matrix of a conv whose output is 1x1 (C-order input flattening)."""
    c_in, h, w = in_shape
    c_out, cg, kh, kw = kern.value.shape
    og = c_out // group
    exact = kern.exact
    dense = np.zeros((c_out, c_in, h, w))
    dense_exact = None
    if exact is not None:
        dense_exact = np.empty((c_out, c_in, h, w), dtype=object)
        dense_exact[...] = Fraction(0)
    for o_group in range(group):
        rows = slice(o_group * og, (o_group + 1) * og)
        chans = slice(o_group * cg, (o_group + 1) * cg)
        for i in range(kh):
            y = i * dil[0] - pads[0]
            if not 0 <= y < h:
                continue
            for j in range(kw):
                x = j * dil[1] - pads[1]
                if not 0 <= x < w:
                    continue
                dense[rows, chans, y, x] = kern.value[rows, :, i, j]
                if dense_exact is not None:
                    dense_exact[rows, chans, y, x] = exact[rows, :, i, j]
    n_in = c_in * h * w
    return _Param(
        dense.reshape(c_out, n_in), None if dense_exact is None else dense_exact.reshape(c_out, n_in)
    )


def _per_channel(a: np.ndarray, c: int) -> np.ndarray | None:
    """If ``a`` (shape (c, ...)) is constant over all axes but the first, its [c] values; else None."""
    if a.ndim == 0 or a.shape[0] != c:
        return None
    flat = a.reshape(c, -1)
    if flat.shape[1] > 1 and not np.all(flat == flat[:, :1]):
        return None
    return flat[:, 0].copy()


def _fill(shape, q: Fraction) -> np.ndarray:
    a = np.empty(shape, dtype=object)
    a[...] = q
    return a


def _scaled(p: _Param, factor: float, where: str) -> _Param:
    if factor == 1.0:
        return p
    return _Param.of_fractions(p.fractions() * Fraction(factor), where)


def _store(op: Op, key: str, p: _Param) -> None:
    _store_into(op.attrs, key, p)


def _store_into(attrs: dict[str, Any], key: str, p: _Param) -> None:
    attrs[key] = p.value
    if p.exact is not None:
        attrs[f"{key}_exact"] = p.exact
    else:
        attrs.pop(f"{key}_exact", None)
