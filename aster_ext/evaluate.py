"""Batched float64 evaluation of an IR network (the numerical reference, not a certified one).

``evaluate_float64(net, x)`` runs every node kind of :data:`aster_ext.ir.NODE_KINDS` on a batch
with numpy: x has shape ``[batch, *input_shape]`` or ``[batch, n_in]``; the result is
``[batch, n_out]``, the outputs flattened (C order) and concatenated in ``net.output_names``
order. Parameters used are the float64 ones (``weight``, ``kernel``, ``bias``), not the exact
Fraction copies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import special

from .errors import UnsupportedError, UserError
from .ir import Network, Op


def evaluate_float64(net: Network, x: np.ndarray) -> np.ndarray:
    """Evaluate ``net`` on a batch ``x``; returns ``[batch, n_out]`` float64."""
    values = evaluate_all(net, x)
    return np.concatenate([values[o].reshape(values[o].shape[0], -1) for o in net.output_names], axis=1)


def evaluate_all(net: Network, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's value on the batch ``x`` (each ``[batch, *op.shape]``)."""
    batch = _input_batch(net, x)
    values: dict[str, np.ndarray] = {}
    for op in net.ops():
        if op.kind == "input":
            values[op.name] = batch
            continue
        args = [values[i] for i in op.inputs]
        kernel = _KERNELS.get(op.kind)
        if kernel is None or (op.kind in ("maxpool", "avgpool") and len(op.shape) != 3):
            kernel = _op_class_kernel  # conv1d, pad, transpose, concat, 1-D pooling
        out = kernel(op, args)
        values[op.name] = out.reshape((out.shape[0], *op.shape))
    return values


def _input_batch(net: Network, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    shape = tuple(net.input_shape)
    if a.ndim == 1 and a.size == net.n_inputs:
        a = a[None, :]
    if a.ndim == 2 and a.shape[1] == net.n_inputs:
        return a.reshape((a.shape[0], *shape))
    if a.shape[1:] == shape:
        return a
    raise UserError(
        f"{net.name}: input batch of shape {a.shape} does not match input shape {shape} "
        f"(or [batch, {net.n_inputs}])"
    )


# --------------------------------------------------------------------------------------
# One function per node kind: f(op, [operand batches]) -> batch.
# --------------------------------------------------------------------------------------


def _affine(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """y = x W^T + b on the flattened operand."""
    x = args[0].reshape(args[0].shape[0], -1)
    return x @ op.attrs["weight"].T + op.attrs["bias"]


def _conv2d(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """Grouped, strided, dilated, zero-padded 2-D cross-correlation (ONNX Conv)."""
    x = args[0]
    w = np.asarray(op.attrs["kernel"], dtype=np.float64)
    c_out, cg, kh, kw = w.shape
    group = int(op.attrs.get("group", 1))
    sh, sw = _pair(op.attrs.get("stride", (1, 1)))
    dh, dw = _pair(op.attrs.get("dilation", (1, 1)))
    xp = _pad(x, op.attrs.get("padding", (0, 0, 0, 0)), 0.0)
    ho, wo = op.shape[1], op.shape[2]
    b = x.shape[0]
    xg = xp.reshape(b, group, cg, xp.shape[2], xp.shape[3])
    wg = w.reshape(group, c_out // group, cg, kh, kw)
    out = np.zeros((b, group, c_out // group, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xg[
                :, :, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw
            ]
            out += np.einsum("bgchw,goc->bgohw", patch, wg[:, :, :, i, j], optimize=True)
    out = out.reshape(b, c_out, ho, wo)
    bias = op.attrs.get("bias")
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out


def _pool_windows(op: Op, x: np.ndarray, fill: float):
    """Yield the (kh*kw) shifted strided views of the padded input for a pooling node."""
    kh, kw = _pair(op.attrs["kernel"])
    sh, sw = _pair(op.attrs.get("stride", (kh, kw)))
    dh, dw = _pair(op.attrs.get("dilation", (1, 1)))
    xp = _pad(x, op.attrs.get("padding", (0, 0, 0, 0)), fill)
    ho, wo = op.shape[1], op.shape[2]
    for i in range(kh):
        for j in range(kw):
            yield xp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]


def _maxpool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """max over each window; padding never wins (padded with -inf)."""
    out = None
    for view in _pool_windows(op, args[0], -np.inf):
        out = view.copy() if out is None else np.maximum(out, view)
    return out


def _avgpool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """mean over each window; divisor k_h*k_w if count_include_pad else the unpadded count."""
    x = args[0]
    total = sum(view for view in _pool_windows(op, x, 0.0))
    if op.attrs.get("count_include_pad", False):
        kh, kw = _pair(op.attrs["kernel"])
        return total / (kh * kw)
    ones = np.ones((1, 1, x.shape[2], x.shape[3]))
    count = sum(view for view in _pool_windows(op, ones, 0.0))
    return total / count


def _add(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0] + args[1]


def _reshape(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0].reshape((args[0].shape[0], *op.shape))


def _identity(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0]


def _softmax(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """exp(x - max) / sum exp(x - max) along the node's axis (axis counted without batch)."""
    axis = _batch_axis(int(op.attrs.get("axis", -1)))
    x = args[0]
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _argmax(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """Index of the (first) maximum along the axis, as float64."""
    axis = _batch_axis(int(op.attrs.get("axis", -1)))
    idx = np.argmax(args[0], axis=axis)
    if op.attrs.get("keepdims", True):
        idx = np.expand_dims(idx, axis)
    return idx.astype(np.float64)


def _batch_axis(axis: int) -> int:
    """Convert an axis of a node's shape (batch excluded) into an axis of the batched array."""
    return axis + 1 if axis >= 0 else axis


def _act(op: Op, args: list[np.ndarray]) -> np.ndarray:
    fn = op.attrs["fn"]
    if fn not in ACTIVATION_FUNCTIONS:
        raise UnsupportedError(f"{op.describe()}: activation '{fn}' has no float64 evaluation")
    return ACTIVATION_FUNCTIONS[fn](args[0], op.attrs)


def _leaky_relu(x: np.ndarray, attrs: dict) -> np.ndarray:
    alpha = float(attrs.get("alpha", 0.01))
    return np.where(x >= 0, x, alpha * x)


def _elu(x: np.ndarray, attrs: dict) -> np.ndarray:
    alpha = float(attrs.get("alpha", 1.0))
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _hard_sigmoid(x: np.ndarray, attrs: dict) -> np.ndarray:
    """max(0, min(1, alpha*x + beta)), ONNX defaults alpha=0.2, beta=0.5."""
    return np.clip(float(attrs.get("alpha", 0.2)) * x + float(attrs.get("beta", 0.5)), 0.0, 1.0)


def _gelu(x: np.ndarray, attrs: dict) -> np.ndarray:
    """x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)) (exact GELU, not the tanh approximation)."""
    return 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0)))


def _gelu_tanh(x: np.ndarray, attrs: dict) -> np.ndarray:
    """x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) (ONNX Gelu approximate='tanh')."""
    with np.errstate(over="ignore"):
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x * x * x)))


ACTIVATION_FUNCTIONS: dict[str, Callable[[np.ndarray, dict], np.ndarray]] = {
    "relu": lambda x, a: np.maximum(x, 0.0),
    "leaky_relu": _leaky_relu,
    "sigmoid": lambda x, a: special.expit(x),
    "tanh": lambda x, a: np.tanh(x),
    "softplus": lambda x, a: np.logaddexp(0.0, x),
    "elu": _elu,
    "silu": lambda x, a: x * special.expit(x),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "hard_sigmoid": _hard_sigmoid,
    "hard_tanh": lambda x, a: np.clip(x, -1.0, 1.0),
    "identity": lambda x, a: x,
}


_KERNELS: dict[str, Callable[[Op, list[np.ndarray]], np.ndarray]] = {
    "affine": _affine,
    "conv2d": _conv2d,
    "add": _add,
    "act": _act,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "flatten": _reshape,
    "reshape": _reshape,
    "softmax": _softmax,
    "argmax": _argmax,
    "output": _identity,
}


def _op_class_kernel(op: Op, args: list[np.ndarray]) -> np.ndarray:
    """Evaluation by the node kind's operator class (:mod:`aster_ext.ops`)."""
    from .ops import op_class

    return op_class(op.kind).evaluate(op, args)


def _pair(v) -> tuple[int, int]:
    if np.isscalar(v):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _pad(x: np.ndarray, pads, fill: float) -> np.ndarray:
    """Pad [B, C, H, W] by ONNX pads (top, left, bottom, right)."""
    t, l, b, r = (int(p) for p in pads)
    if t == l == b == r == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
