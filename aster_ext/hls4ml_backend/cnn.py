"""hls4ml's arithmetic for convolutional classifiers: program, bit-exact simulator, sound error bound.

Scope: the layers hls4ml 1.3.0 builds (``io_parallel``/``io_stream``, ``Latency``/``Resource``)
from a qonnx-cleaned ONNX Conv2D (padded, strided, 1x1 pointwise) / ReLU / MaxPool / AveragePool /
Flatten / Dense and the merge Add of two same-shape tensors (residual connections), as a DAG
walked in topological order (every stage names the graph nodes it reads, ``Stage.src``). Tensors are
channels-last (hls4ml's layout), flattened as (h, w, c); the real network (the graph IR of the
ONNX importer, CHW) is mapped to that layout by permuting its parameters and ranges.

Template facts (``templates/vivado/nnet_utils`` of the 1.3.0 wheel):

- ``nnet_conv2d_latency.h`` ``conv_2d_latency_cl``: per output pixel, ``fill_buffer`` gathers the
  K = kh·kw·C_in window values in (kh, kw, c) order (padding reads 0), every product data·weight
  is stored into ``accum_t`` (the ``mult`` array), ``acc = accum_t(bias)``, then ``acc += mult``
  in the order of the window (i_in = 0..K-1), then ``res = res_T(acc)`` (``nnet_mult.h``
  ``cast``). That is the dense template (:mod:`.program`) applied to each pixel's window.
- ``nnet_pooling.h`` ``pooling2d_cl`` (no padding here): max: ``y`` = the largest data_T value
  of the window (exact), returned as ``accum_t`` (a cast), then assigned to ``res_T`` (a cast);
  average: ``accum_t y = 0; y += x[i]`` (each sum is exact then assigned to accum_t: since y is
  on accum_t's grid this is y + Q(x_i), with overflow handling after each addition), then
  ``y /= length`` (ap_fixed division by an integer keeps y's fractional bits and truncates
  towards zero), returned as accum_t and assigned to ``res_T``.
- ``Reshape``/``Flatten`` in io_parallel is an alias of its input array (no cast).
- ``nnet_merge.h`` ``add``: ``res[i] = data1[i] + data2[i]``, the ap_fixed sum exact, then one
  assignment to ``res_T``. ``pointwise_conv_2d_cl`` (a 1x1 Conv2D) calls ``conv_2d_latency_cl``.
- ReLU and Dense as in :mod:`.program`.
- ``Resource`` (``nnet_conv2d_resource.h`` ``conv_2d_resource_cl``, ``nnet_dense_resource.h``):
  the same products into accum_t, bias cast, accum_t additions and result cast; with ReuseFactor 1
  in the same order, otherwise reordered (the same bits with WRAP accumulators, and certified SAT
  ones cannot saturate). hls4ml stores its weights transposed (read back accordingly).
- ``io_stream`` (``CnnProgram.stream``): Conv2D (``nnet_conv_stream.h`` line buffer) gathers the
  same (kh, kw, c) window and calls the same dense kernel; padding is a ZeroPadding2D copy, a
  tensor read twice a Clone copy, Flatten a Reshape copy (all checked to keep the type); ReLU and
  merge Add as in io_parallel; pooling (``nnet_pooling_stream.h`` ``reduce_pool``) differs: every
  window value is first assigned to accum_t (cast + overflow), then max, or the balanced-tree sum
  of ``nnet_common.h`` ``reduce`` (each addition assigned to accum_t) divided by N. The
  certificate then also requires every window value's reachable range to fit accum_t (so no
  value wraps or saturates and the analysis above applies unchanged).

Error bound (per region: input box + label, real ranges from the graph's back-substitution,
:func:`aster_ext.graph_program.certify.prepare`): every stored value carries a *signed* error
interval E ∋ v~ - v (v~ implemented, v real), elementwise:

- input: input_t(x) - x ∈ [-ulp, 0] (TRN) or [-ulp/2, ulp/2] (RND) (if the box fits input_t);
- Conv/Dense output j (window values x, implemented x~ = x + e, e ∈ E):
  z~_j - z_j = Σ_i w~_ji e_i + (A(b~_j) - b_j) + Σ_i (A(p_ji) - p_ji) + Σ_i (w~ - W)_ji x_i,
  the first sum enclosed by a rigorous interval matrix product of w~ with E, the last by one of
  (w~ - W) with the real window range; the product casts each in [-ulp_acc, 0] (TRN) or
  ±ulp_acc/2 (RND) for each nonzero weight, 0 when accum_t keeps all F_x + F_w bits; then the
  result cast;
- ReLU (real pre-activation range [lo, hi]): 0 if hi <= 0 and hi + E_hi <= 0; E if lo >= 0 and
  lo + E_lo >= 0; otherwise relu(z + e) - relu(z) lies between 0 and e: [min(E_lo, 0), max(E_hi, 0)];
  plus the result cast (whose interval contains 0, so it also covers an output of exactly 0);
- max pooling: max_i(x_i + e_i) - max_i x_i ∈ [min_i E_lo_i, max_i E_hi_i]; plus the two casts;
- average pooling of n values: (Σ e_i + Σ q_i)/n + d, q_i the casts of the additions, d the
  truncating division (∈ [-ulp_acc, 0] if the sum is surely >= 0, [0, ulp_acc] if surely <= 0,
  else both), plus the result cast;
- merge Add: (x1~ + x2~) - (x1 + x2) ∈ E1 + E2, plus the cast to res_T from max(F1, F2) bits; its
  reachable range (the real range of the sum, from the back-substitution, plus that interval)
  must fit res_T.

Overflow: every stored value's reachable range (the real range plus its error interval) must fit
its type, with WRAP accumulators checked on the final sum only (modular addition) and SAT ones
on every partial sum (sum of magnitudes). A program failing a check gets no certificate.

Certificate per region: the logits' error intervals E (certified ε = max |E|) and, with the
region's real margin lower bounds m_k (y_l - y_k >= m_k on the box), top-1 is preserved on the
whole box when m_k + M_k > 0 for every k != l, M_k a lower bound of the error of y~_l - y~_k.
The intervals above feed a second, backward pass (:mod:`.cnn_backward`): the errors as linear
forms of every stage's local terms, back-substituted from each logit (up and down) and each
margin, so that dependences cancel through consecutive layers. E is the intersection of the two
(both sound) and M_k the larger of E_lo_l - E_hi_k and the backward margin bound
(``scripts/hls4ml_cnn_backward.py`` measures the difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backsub import dominating, pooled_error
from ..errors import InfeasibleError, UnsupportedError
from ..ir import Network
from ..ops.windows import window_table
from ..rigorous import Interval, down, matvec, scaled_sum_bound, up
from . import cnn_backward as B
from .certify import int_bits_for
from .forms import cast_interval
from .program import DenseStage, auto_dense_type
from .search import Slot, TypeSearch, lazy_greedy_descent
from .simulate import _dense
from .types import HlsType, as_values, bring_in_range, from_doubles, requantize, with_room

_INFLATE = 1.0 + 1e-12


# ---------------------------------------------------------------------------------------------
# program
# ---------------------------------------------------------------------------------------------


@dataclass
class LinearStage:
    """A Conv2D (gather = the [P, K] window table) or Dense (gather None) layer of hls4ml."""

    name: str
    node: str  # graph node of its real output (ranges)
    dense: DenseStage  # weight [C_out, K] (K in (kh, kw, c) order), types
    gather: np.ndarray | None  # [P, K] flat HWC input indices, -1 = zero padding
    result_auto: bool = False  # hls4ml's 'auto' result type (a Dense with its Add fused)
    src: tuple[str, ...] = ()  # graph node of its input (empty: the previous stage's output)

    @property
    def result_t(self) -> HlsType:
        return self.dense.result_t

    @property
    def n_pix(self) -> int:
        return 1 if self.gather is None else int(self.gather.shape[0])


@dataclass
class ReluStage:
    name: str
    node: str
    result_t: HlsType
    src: tuple[str, ...] = ()


@dataclass
class PoolStage:
    name: str
    node: str
    kind: str  # max | avg
    windows: np.ndarray  # [Q, S] flat HWC input indices of each output (no padding)
    accum_t: HlsType
    result_t: HlsType
    src: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return int(self.windows.shape[1])


@dataclass
class AddStage:
    """hls4ml's Merge ``add`` (``nnet_merge.h``): ``res[i] = data1[i] + data2[i]``; the ap_fixed
    sum is exact (its type has max(F1, F2) fractional bits and one more integer bit), then it is
    assigned to ``res_T`` (one cast)."""

    name: str
    node: str
    result_t: HlsType
    size: int  # number of elements
    src: tuple[str, ...] = ()  # the two summed graph nodes


Stage = LinearStage | ReluStage | PoolStage | AddStage


def stage_src(st: Stage, prev: str) -> tuple[str, ...]:
    """The graph nodes a stage reads (its ``src``, or the previous stage's output ``prev``)."""
    return st.src if st.src else (prev,)


@dataclass
class CnnProgram:
    input_t: HlsType
    input_perm: np.ndarray  # HWC flat position -> CHW flat index of the network's input
    stages: list[Stage]
    input_node: str = "\x00input"  # the graph node stages read as the input (see Stage.src)
    stream: bool = False  # io_stream pooling (each window value cast to accum_t first, tree sum)

    @property
    def output_t(self) -> HlsType:
        return self.stages[-1].result_t


# ---------------------------------------------------------------------------------------------
# structure from the graph IR
# ---------------------------------------------------------------------------------------------


def chw_to_hwc(shape: tuple[int, ...]) -> np.ndarray:
    """perm with hwc_flat = chw_flat[perm] for a (C, H, W) tensor (identity for 1-d shapes)."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


@dataclass
class Layout:
    """One hls4ml layer of the network, with its real parameters in hls4ml's layout."""

    kind: str  # conv | dense | relu | maxpool | avgpool | add
    node: str
    weight: np.ndarray | None = None  # [C_out, K]
    bias: np.ndarray | None = None
    gather: np.ndarray | None = None
    windows: np.ndarray | None = None
    n_in: int = 0
    src: tuple[str, ...] = ()  # graph nodes it reads (Flatten resolved to the flattened node)


@dataclass
class CnnStructure:
    net: Network
    input_perm: np.ndarray
    layers: list[Layout]
    perms: dict[str, np.ndarray] = field(default_factory=dict)  # graph node -> CHW->HWC perm
    scatter: B.Scatter = field(default_factory=B.Scatter, repr=False, compare=False)  # backward pass


SUPPORTED = (
    "Conv2D (group 1, no dilation), ReLU, MaxPool/AveragePool (no padding), Flatten, Gemm/MatMul, "
    "Add of two tensors of the same shape (residual connections)"
)


def transpose_layout(in_shape: tuple[int, ...], perm: tuple[int, ...], lp_in: np.ndarray) -> np.ndarray:
    """Layout of a Transpose's output when it aliases its input's stored array.

    A tensor's layout ``lp`` says where hls4ml keeps its values: stored[k] = natural_flat[lp[k]].
    out = in.transpose(perm) has out_flat[j] = in_flat[m[j]] with m the transposed index array, so
    stored[k] = in_flat[lp_in[k]] = out_flat[m^-1[lp_in[k]]]: lp_out = m^-1[lp_in]."""
    m = np.arange(int(np.prod(in_shape))).reshape(in_shape).transpose(perm).reshape(-1)
    inv = np.empty_like(m)
    inv[m] = np.arange(m.size)
    return inv[lp_in]


def structure(net: Network) -> CnnStructure:
    """The hls4ml layers of a CNN classifier in the graph's topological order (a DAG: an Add reads
    two earlier tensors), or a one-line UnsupportedError.

    Layouts: hls4ml keeps every 3-d tensor channels-last. A channels-first input (C, H, W) is
    permuted to (H, W, C) by hls4ml's input Transpose; an input whose graph starts with a
    Transpose to (C, H, W) (a channels-last ONNX input, e.g. a tf2onnx export) is used as is, the
    Transpose being an index permutation that qonnx removes. Every Transpose/Flatten aliases its
    input's stored array (:func:`transpose_layout`); a Conv2D/pooling must read a tensor stored
    channels-last and a Dense reading a flattened tensor gets its columns permuted to the stored
    order."""
    in_shape = tuple(net.input_shape)
    if len(in_shape) != 3:
        raise UnsupportedError(f"hls4ml CNN backend: input shape {in_shape} is not 3-d")
    first = [op for op in net.ops() if op.kind != "input" and net.input_name in op.inputs]
    if first and all(op.kind == "transpose" for op in first):
        return _structure(net, np.arange(int(np.prod(in_shape))))  # channels-last input, stored as is
    return _structure(net, chw_to_hwc(in_shape))


def _structure(net: Network, input_layout: np.ndarray) -> CnnStructure:
    ops = [op for op in net.ops() if op.kind != "input"]
    layers: list[Layout] = []
    perms: dict[str, np.ndarray] = {net.input_name: input_layout}
    lp: dict[str, np.ndarray] = {net.input_name: input_layout}  # graph node -> its stored layout
    alias: dict[str, str] = {net.input_name: net.input_name}  # graph node -> node holding its values

    def channels_last(node: str, shape: tuple[int, ...], what: str) -> None:
        if len(shape) != 3 or not np.array_equal(lp[node], chw_to_hwc(shape)):
            raise UnsupportedError(
                f"hls4ml CNN backend: {what} reads {node}, which is not stored channels-last"
            )

    for op in ops:
        if op.kind == "add":
            if len(op.inputs) != 2 or any(tuple(net.op(i).shape) != tuple(op.shape) for i in op.inputs):
                raise UnsupportedError(
                    f"hls4ml CNN backend: {op.describe()}: only a sum of two same-shape tensors is supported"
                )
        elif len(op.inputs) != 1:
            raise UnsupportedError(f"hls4ml CNN backend: {op.describe()} has {len(op.inputs)} inputs")
        if any(i not in alias for i in op.inputs):
            raise UnsupportedError(f"hls4ml CNN backend: {op.describe()} reads a tensor not modelled")
        src = tuple(alias[i] for i in op.inputs)
        prev = op.inputs[0]
        ishape = tuple(net.op(prev).shape)
        perms[op.name] = chw_to_hwc(tuple(op.shape))
        lp[op.name] = perms[op.name]
        alias[op.name] = op.name
        n_layers = len(layers)
        if op.kind == "conv2d":
            if int(op.attrs.get("group", 1)) != 1 or tuple(op.attrs.get("dilation", (1, 1))) != (1, 1):
                raise UnsupportedError(f"hls4ml CNN backend: {op.describe()}: grouped/dilated conv")
            if op.attrs.get("kernel_exact") is not None:
                raise UnsupportedError(f"hls4ml CNN backend: {op.describe()}: folded (non-double) kernel")
            channels_last(prev, ishape, op.describe())
            k = np.asarray(op.attrs["kernel"], dtype=np.float64)
            c_out, c_in, kh, kw = k.shape
            pads = tuple(int(v) for v in op.attrs.get("padding", (0, 0, 0, 0)))
            table = window_table(
                tuple(ishape[1:]), (kh, kw), tuple(op.attrs["stride"]), (1, 1), pads[:2], tuple(op.shape[1:])
            )  # [P, kh*kw] flat spatial
            c = np.arange(c_in)
            gather = np.where(table[:, :, None] >= 0, table[:, :, None] * c_in + c[None, None, :], -1)
            bias = np.asarray(op.attrs.get("bias", np.zeros(c_out)), dtype=np.float64)
            layers.append(
                Layout(
                    "conv",
                    op.name,
                    k.transpose(0, 2, 3, 1).reshape(c_out, -1).copy(),
                    bias,
                    gather.reshape(table.shape[0], -1),
                    n_in=kh * kw * c_in,
                )
            )
        elif op.kind == "act":
            if op.attrs.get("fn") != "relu":
                raise UnsupportedError(
                    f"hls4ml CNN backend: activation {op.attrs.get('fn')} ({op.describe()}) not supported"
                )
            lp[op.name] = perms[op.name] = lp[prev]  # elementwise: stored in its input's order
            layers.append(Layout("relu", op.name))
        elif op.kind in ("maxpool", "avgpool"):
            padded = any(int(v) for v in op.attrs.get("padding", ()))
            if padded or tuple(op.attrs.get("dilation", (1, 1))) != (1, 1):
                raise UnsupportedError(f"hls4ml CNN backend: {op.describe()}: padded/dilated pooling")
            channels_last(prev, ishape, op.describe())
            c = ishape[0]
            table = window_table(
                tuple(ishape[1:]),
                tuple(op.attrs["kernel"]),
                tuple(op.attrs["stride"]),
                (1, 1),
                (0, 0),
                tuple(op.shape[1:]),
            )  # [P, S]
            win = table[:, None, :] * c + np.arange(c)[None, :, None]  # [P, C, S]: (p, c) order
            layers.append(Layout(op.kind, op.name, windows=win.reshape(-1, table.shape[1])))
        elif op.kind == "flatten":
            alias[op.name] = src[0]  # io_parallel Reshape/Flatten: an alias of its input array
            lp[op.name] = lp[prev]  # natural flat order = the input's natural flat order
            del perms[op.name]
        elif op.kind == "transpose":
            alias[op.name] = src[0]  # an index permutation: an alias of the stored array
            lp[op.name] = transpose_layout(ishape, tuple(int(v) for v in op.attrs["perm"]), lp[prev])
            del perms[op.name]
        elif op.kind == "affine":
            w = np.asarray(op.attrs["weight"], dtype=np.float64)
            if op.attrs.get("weight_exact") is not None:
                raise UnsupportedError(f"hls4ml CNN backend: {op.describe()}: folded (non-double) weights")
            if len(ishape) != 1:
                raise UnsupportedError(f"hls4ml CNN backend: {op.describe()} reads a {len(ishape)}-d tensor")
            w = w[:, lp[prev]]  # columns in the natural flat order -> the stored order
            b = np.asarray(op.attrs.get("bias", np.zeros(w.shape[0])), dtype=np.float64)
            layers.append(Layout("dense", op.name, w.copy(), b, n_in=w.shape[1]))
        elif op.kind == "add":
            if not np.array_equal(lp[op.inputs[0]], lp[op.inputs[1]]):
                raise UnsupportedError(f"hls4ml CNN backend: {op.describe()} adds tensors in two layouts")
            lp[op.name] = perms[op.name] = lp[op.inputs[0]]  # elementwise, like its inputs
            layers.append(Layout("add", op.name, n_in=int(np.prod(op.shape))))
        else:
            raise UnsupportedError(
                f"hls4ml CNN backend: {op.describe()} is not supported (supported: {SUPPORTED})"
            )
        if len(layers) > n_layers:
            layers[-1].src = src
    if not layers or layers[-1].kind != "dense" or alias.get(ops[-1].name) != layers[-1].node:
        raise UnsupportedError("hls4ml CNN backend: the network must end with a Dense (Gemm/MatMul) layer")
    return CnnStructure(net, input_layout, layers, perms)


# ---------------------------------------------------------------------------------------------
# simulator (bit-exact with hls_model.predict)
# ---------------------------------------------------------------------------------------------


def _gather(raw: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = raw[:, np.maximum(idx, 0)]
    return np.where(idx[None] >= 0, out, 0) if np.any(idx < 0) else out


def _avg_sum(xw: np.ndarray, x_frac: int, acc_t: HlsType) -> np.ndarray:
    """Σ accum_t-assignments of y + x_i (y on accum_t's grid): y + Q(x_i), overflow per addition."""
    shift = x_frac - acc_t.frac
    xw = with_room(xw, max(-shift, 1) + xw.shape[-1].bit_length(), acc_t.width)
    if shift > 0:
        q = (xw + (1 << (shift - 1))) >> shift if acc_t.quant == "RND" else xw >> shift
    else:
        q = xw << (-shift)
    if acc_t.overflow == "WRAP":
        return bring_in_range(q.sum(axis=-1), acc_t)
    y = np.zeros(q.shape[:-1], dtype=q.dtype)
    for i in range(q.shape[-1]):
        y = bring_in_range(y + q[..., i], acc_t)
    return y


def _tree_sum(q: np.ndarray, acc_t: HlsType) -> np.ndarray:
    """``reduce<accum_t, N, Op_add>`` of ``nnet_common.h`` over the last axis: N = 1 -> x[0];
    N = 2 -> x[0] + x[1]; else the first L = 2^floor(log2(N - 1)) values and the other N - L
    reduced separately and added; every addition is assigned to accum_t (overflow)."""
    n = q.shape[-1]
    if n == 1:
        return q[..., 0]
    if acc_t.overflow == "WRAP":  # modular: the order does not matter
        return bring_in_range(q.sum(axis=-1), acc_t)
    if n == 2:
        return bring_in_range(q[..., 0] + q[..., 1], acc_t)
    left = 1 << int(math.floor(math.log2(n - 1)))
    return bring_in_range(_tree_sum(q[..., :left], acc_t) + _tree_sum(q[..., left:], acc_t), acc_t)


def _trunc_div(y: np.ndarray, n: int) -> np.ndarray:
    """C integer division (truncation towards zero) by a positive n."""
    q = np.abs(y) // n
    return np.where(y < 0, -q, q)


def simulate_raw(program: CnnProgram, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Raw output integers (and their fractional bits) for inputs x [n, n_in] in the network's
    own (CHW-flattened) input order."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))[:, program.input_perm]
    raw = np.asarray(from_doubles(x, program.input_t))
    frac = program.input_t.frac
    vals: dict[str, tuple[np.ndarray, int]] = {program.input_node: (raw, frac)}
    prev = program.input_node
    for st in program.stages:
        src = stage_src(st, prev)
        raw, frac = vals[src[0]]
        if isinstance(st, AddStage):
            (r1, f1), (r2, f2) = vals[src[0]], vals[src[1]]
            frac = max(f1, f2)  # the exact ap_fixed sum, then res_T(sum)
            s12 = _shl(r1, frac - f1) + _shl(r2, frac - f2)
            raw = requantize(s12, frac, st.result_t)
        elif isinstance(st, LinearStage):
            if st.gather is None:
                raw = _dense(raw, frac, st.dense)
            else:
                b = raw.shape[0]
                xg = _gather(raw, st.gather).reshape(b * st.n_pix, -1)
                raw = _dense(xg, frac, st.dense).reshape(b, -1)
        elif isinstance(st, ReluStage):
            raw = np.where(raw > 0, requantize(raw, frac, st.result_t), 0)
        else:
            xw = raw[:, st.windows]
            if program.stream:  # nnet_pooling_stream.h: accum_t window, reduce, sum / N
                q = with_room(requantize(xw, frac, st.accum_t), st.size.bit_length(), st.accum_t.width)
                y = q.max(axis=-1) if st.kind == "max" else _trunc_div(_tree_sum(q, st.accum_t), st.size)
            elif st.kind == "max":
                y = requantize(xw.max(axis=-1), frac, st.accum_t)
            else:
                y = _trunc_div(_avg_sum(xw, frac, st.accum_t), st.size)
            raw = requantize(y, st.accum_t.frac, st.result_t)
        frac = st.result_t.frac
        vals[st.node] = (raw, frac)
        prev = st.node
    return np.asarray(raw), frac


def _shl(raw: np.ndarray, k: int) -> np.ndarray:
    raw = np.asarray(raw)
    if k == 0:
        return raw
    return raw.astype(object) << k if raw.dtype != object else raw << k


def simulate(program: CnnProgram, x: np.ndarray) -> np.ndarray:
    raw, frac = simulate_raw(program, x)
    return as_values(raw, frac)


def real_forward(s: CnnStructure, x: np.ndarray) -> np.ndarray:
    """The real network in float64 (hls4ml layout), for observed errors."""
    v = np.atleast_2d(np.asarray(x, dtype=np.float64))[:, s.input_perm]
    vals: dict[str, np.ndarray] = {s.net.input_name: v}
    for ly in s.layers:
        v = vals[ly.src[0]]
        if ly.kind == "add":
            v = v + vals[ly.src[1]]
        elif ly.kind in ("conv", "dense"):
            assert ly.weight is not None and ly.bias is not None
            if ly.gather is None:
                v = v @ ly.weight.T + ly.bias
            else:
                g = np.where(ly.gather[None] >= 0, v[:, np.maximum(ly.gather, 0)], 0.0)
                v = (g @ ly.weight.T + ly.bias).reshape(v.shape[0], -1)
        elif ly.kind == "relu":
            v = np.maximum(v, 0.0)
        else:
            assert ly.windows is not None
            w = v[:, ly.windows]
            v = w.max(axis=-1) if ly.kind == "maxpool" else w.mean(axis=-1)
        vals[ly.node] = v
    return v


# ---------------------------------------------------------------------------------------------
# sound error bound
# ---------------------------------------------------------------------------------------------


@dataclass
class RegionRanges:
    """One region's real ranges in hls4ml's layout, and its margin lower bounds."""

    name: str
    label: int
    lower: np.ndarray  # network input order
    upper: np.ndarray
    ranges: dict[str, Interval]  # graph node -> HWC-flat interval
    margin_lb: np.ndarray


def region_ranges(s: CnnStructure, region: Any) -> RegionRanges:
    """From a prepared :class:`aster_ext.graph_program.certify.Region`."""
    assert region.ranges is not None and region.margin_lb is not None
    rng: dict[str, Interval] = {}
    for node, perm in s.perms.items():
        iv = region.ranges.ranges[node]
        rng[node] = Interval(np.asarray(iv.lo).reshape(-1)[perm], np.asarray(iv.hi).reshape(-1)[perm])
    return RegionRanges(region.name, int(region.label), region.lower, region.upper, rng, region.margin_lb)


@dataclass
class RegionCert:
    name: str
    label: int
    err_lo: np.ndarray  # logits' error interval
    err_hi: np.ndarray
    margin_lb: np.ndarray
    overflow: list[str] = field(default_factory=list)
    margin_err_lo: np.ndarray | None = None  # a direct lower bound of each margin's error (+inf at l)

    @property
    def ok(self) -> bool:
        return not self.overflow

    @property
    def bound(self) -> np.ndarray:
        return np.maximum(np.abs(self.err_lo), np.abs(self.err_hi))

    @property
    def max_bound(self) -> float:
        return float(np.max(self.bound)) if self.ok else math.inf

    def margin_error_lo(self) -> np.ndarray:
        """Lower end of the error of y~_l - y~_k, per k (+inf at the label)."""
        out = down(self.err_lo[self.label] - self.err_hi)
        if self.margin_err_lo is not None:
            out = np.maximum(out, self.margin_err_lo)
        out[self.label] = np.inf
        return out

    @property
    def top1_preserved(self) -> bool:
        """m_k + (error of the margin)_lo > 0 for every k != label (module docstring)."""
        if not self.ok:
            return False
        s = down(self.margin_lb + self.margin_error_lo())
        return bool(np.all(np.delete(s, self.label) > 0))


@dataclass
class CnnCertificate:
    regions: list[RegionCert]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.regions)

    @property
    def overflow(self) -> list[str]:
        return [f"{r.name}: {o}" for r in self.regions for o in r.overflow]

    @property
    def bound(self) -> np.ndarray:
        return np.max(np.stack([r.bound for r in self.regions]), axis=0)

    @property
    def max_bound(self) -> float:
        return max(r.max_bound for r in self.regions)


def _iv(lo: np.ndarray, hi: np.ndarray) -> Interval:
    return Interval(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))


def _patch(v: np.ndarray, gather: np.ndarray | None) -> np.ndarray:
    """[K, P] window values (padding 0); for a Dense layer [n_in, 1]."""
    if gather is None:
        return v[:, None]
    return np.where(gather >= 0, v[np.maximum(gather, 0)], 0.0).T


def _lin(w: np.ndarray, w_rad: np.ndarray | None, e: Interval, gather: np.ndarray | None) -> Interval:
    """Rigorous enclosure of {w' x : x ∈ e, |w' - w| <= w_rad} per window, flattened (p, c_out)."""
    r = matvec(w, w_rad, _iv(_patch(e.lo, gather), _patch(e.hi, gather)))  # [C_out, P]
    return _iv(r.lo.T.reshape(-1), r.hi.T.reshape(-1))


def _cast_if(dst: HlsType, src_frac: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    if dst.frac < src_frac:
        return cast_interval(dst, np.ones(n))
    return np.zeros(n), np.zeros(n)


def _fits(t: HlsType, lo: np.ndarray, hi: np.ndarray) -> bool:
    return t.contains(lo, hi)


class CnnWalker:
    """Error/range state of one region through the program's stages (module docstring)."""

    def __init__(self, s: CnnStructure, rr: RegionRanges, input_t: HlsType, stream: bool = False):
        self.s, self.rr = s, rr
        self.stream = stream
        self.over: list[str] = []
        lo = np.asarray(rr.lower, dtype=np.float64)[s.input_perm]
        hi = np.asarray(rr.upper, dtype=np.float64)[s.input_perm]
        c_lo, c_hi = cast_interval(input_t, np.ones(lo.size))
        self.e = _iv(c_lo, c_hi)
        self.r = _iv(lo, hi)
        self.cur_t = input_t
        if not _fits(input_t, down(lo + c_lo), up(hi + c_hi)):
            self.over.append(f"input box exceeds input_t {input_t.to_string()}")
        # per stored tensor (graph node): (error interval, real range, type); the walker's current
        # state (e, r, cur_t) is the input of the stage being processed
        self.states: dict[str, tuple[Interval, Interval, HlsType]] = {}
        self.prev = ""
        # the stages' records for the backward bound (:mod:`.cnn_backward`), in topological order
        self.records: dict[str, B.Rec] = {}
        self._rec: B.Rec | None = None
        self.src = ""  # the tensor the stage being processed reads (its first input)

    def begin(self, st: Stage, input_node: str) -> None:
        """Load the state of the stage's (first) input."""
        self.load(stage_src(st, self.prev or input_node), input_node)

    def load(self, src: tuple[str, ...], input_node: str) -> None:
        if not self.states:
            self.states[input_node] = (self.e, self.r, self.cur_t)
            self.prev = input_node
            self.records[input_node] = B.InputRec(self.e)
        self.e, self.r, self.cur_t = self.states[src[0]]
        self.src = src[0]

    def end(self, st: Stage) -> None:
        self.states[st.node] = (self.e, self.r, self.cur_t)
        self.prev = st.node
        assert self._rec is not None
        self.records[st.node] = self._rec
        self._rec = None

    # -- merge add ------------------------------------------------------------------------------
    def add(self, st: AddStage) -> None:
        """res_T(x1~ + x2~) - (x1 + x2) ∈ E1 + E2 + cast(res_T from max(F1, F2)); the reachable range
        (real range of the sum + that interval) must fit res_T."""
        (e1, _, t1), (e2, _, t2) = (self.states[n] for n in st.src)
        frac = max(t1.frac, t2.frac)
        c_lo, c_hi = _cast_if(st.result_t, frac, e1.lo.size)
        self.e = _iv(down(down(e1.lo + e2.lo) + c_lo), up(up(e1.hi + e2.hi) + c_hi))
        self._rec = B.AddRec((st.src[0], st.src[1]), _iv(c_lo, c_hi))
        out = self.rr.ranges[st.node]
        if not _fits(st.result_t, down(out.lo + self.e.lo), up(out.hi + self.e.hi)):
            self.over.append(f"{st.name}: sum range exceeds {st.result_t.to_string()}")
        self.r = out
        self.cur_t = st.result_t

    # -- linear ---------------------------------------------------------------------------------
    def accum(self, st: LinearStage) -> tuple[Interval, Interval]:
        """(error interval of the accumulator, the accumulator's reachable range)."""
        d, n_pix = st.dense, st.n_pix
        acc_t = d.accum_t
        prop = _lin(d.weight_q, None, self.e, st.gather)
        dw = d.weight_q - d.weight
        dw_rad = np.abs(dw) * 2.0**-52 + 1e-300
        wq = _lin(dw, dw_rad, self.r, st.gather)
        b_acc = as_values(requantize(d.bias_raw, d.bias_t.frac, acc_t), acc_t.frac)
        bd = b_acc - d.bias
        loc_lo, loc_hi = down(bd), up(bd)
        if acc_t.frac < self.cur_t.frac + d.weight_t.frac:
            p_lo, p_hi = cast_interval(acc_t, d.nnz)
            loc_lo, loc_hi = down(loc_lo + p_lo), up(loc_hi + p_hi)
        local = wq.add(_iv(np.tile(loc_lo, n_pix), np.tile(loc_hi, n_pix)))
        e_acc = prop.add(local)
        self._acc_local = local  # what the stage adds to W~ e (the backward bound's ν, before the cast)
        pre = self.rr.ranges[st.node]
        reach = _iv(down(pre.lo + e_acc.lo), up(pre.hi + e_acc.hi))
        return e_acc, reach

    def linear(self, st: LinearStage, e_acc: Interval | None = None, reach: Interval | None = None) -> None:
        if e_acc is None or reach is None:
            e_acc, reach = self.accum(st)
        d = st.dense
        acc_t = d.accum_t
        # a parameter that wrapped is far from its real value
        for what, q, real, t in (
            ("weight", d.weight_q, d.weight, d.weight_t),
            ("bias", as_values(d.bias_raw, d.bias_t.frac), d.bias, d.bias_t),
        ):
            if np.any(np.abs(q - real) > 2 * t.ulp * (1 + 1e-9)):
                self.over.append(f"{st.name}: a {what} does not fit {t.to_string()}")
        if acc_t.overflow == "WRAP":
            if not _fits(acc_t, reach.lo, reach.hi):
                self.over.append(f"{st.name}: accumulator range exceeds {acc_t.to_string()}")
        else:  # every partial sum: |A(b~)| + Σ |w~| |x~| + nnz ulp
            t_mag = max(-self.cur_t.min_value, self.cur_t.max_value)
            xmag = _patch(np.minimum(up(self.r.mag() + self.e.mag()), t_mag), st.gather)
            psum = scaled_sum_bound(np.abs(d.weight_q), xmag).T.reshape(-1)
            b_acc = np.abs(as_values(requantize(d.bias_raw, d.bias_t.frac, acc_t), acc_t.frac))
            tot = up(psum + np.tile(b_acc + d.nnz * acc_t.ulp, st.n_pix))
            if not _fits(acc_t, -tot, tot):
                self.over.append(f"{st.name}: a partial sum may saturate {acc_t.to_string()}")
        c_lo, c_hi = _cast_if(st.result_t, acc_t.frac, e_acc.lo.size)
        self.e = e_acc.add(_iv(c_lo, c_hi))
        self._rec = B.LinearRec(self.src, d.weight_q, st.gather, self._acc_local.add(_iv(c_lo, c_hi)))
        if not _fits(st.result_t, down(reach.lo + c_lo), up(reach.hi + c_hi)):
            self.over.append(f"{st.name}: result range exceeds {st.result_t.to_string()}")
        self.r = self.rr.ranges[st.node]
        self.cur_t = st.result_t

    # -- relu -----------------------------------------------------------------------------------
    def relu(self, st: ReluStage) -> None:
        pre, e = self.r, self.e
        inactive = (pre.hi <= 0) & (up(pre.hi + e.hi) <= 0)
        active = ~inactive & (pre.lo >= 0) & (down(pre.lo + e.lo) >= 0)
        lo = np.where(active, e.lo, np.minimum(e.lo, 0.0))
        hi = np.where(active, e.hi, np.maximum(e.hi, 0.0))
        c_lo, c_hi = _cast_if(st.result_t, self.cur_t.frac, lo.size)
        lo, hi = down(lo + c_lo), up(hi + c_hi)
        self.e = _iv(np.where(inactive, 0.0, lo), np.where(inactive, 0.0, hi))
        cast = _iv(np.where(inactive, 0.0, c_lo), np.where(inactive, 0.0, c_hi))
        self._rec = B.ReluRec(self.src, e, active, inactive, cast)
        top = up(np.maximum(pre.hi + e.hi, 0.0) + c_hi)
        if not _fits(st.result_t, 0.0, top):
            self.over.append(f"{st.name}: ReLU result range exceeds {st.result_t.to_string()}")
        self.r = pre.relu()
        self.cur_t = st.result_t

    # -- pooling --------------------------------------------------------------------------------
    def pool_accum(self, st: PoolStage) -> tuple[Interval, Interval]:
        """(error interval of the pooled accum_t value, its reachable range; before the result cast)."""
        w = st.windows
        el, eh = self.e.lo[w], self.e.hi[w]
        out = self.rr.ranges[st.node]
        if st.kind == "max":
            c_lo, c_hi = _cast_if(st.accum_t, self.cur_t.frac, w.shape[0])
            pooled, _, _ = pooled_error(w, self.r, self.e)  # the graph analysis' max-pool rule
            err = _iv(down(pooled.lo + c_lo), up(pooled.hi + c_hi))
            self._max_pick = dominating(w, self.r, self.e), _iv(c_lo, c_hi)
            reach = _iv(down(out.lo + err.lo), up(out.hi + err.hi))
            if not self.cur_t.signed:  # the max of ufixed values (and its cast) is >= 0
                reach = _iv(np.maximum(reach.lo, 0.0), reach.hi)
            return err, reach
        n = st.size
        q_lo, q_hi = _cast_if(st.accum_t, self.cur_t.frac, 1)
        ones = np.ones((1, n))
        es = matvec(ones, None, _iv(el.T, eh.T))  # Σ e_i, [1, Q]
        s_lo = down(es.lo[0] + n * q_lo[0])
        s_hi = up(es.hi[0] + n * q_hi[0])
        rs = matvec(ones, None, _iv(self.r.lo[w].T, self.r.hi[w].T))  # real sum range
        y_lo, y_hi = down(rs.lo[0] + s_lo), up(rs.hi[0] + s_hi)  # implemented sum
        if not self.cur_t.signed:  # a sum of ufixed values (each cast keeps it >= 0) is >= 0
            y_lo = np.maximum(y_lo, 0.0)
        u = st.accum_t.ulp
        d_lo = np.where(y_lo >= 0, -u, np.where(y_hi <= 0, 0.0, -u))
        d_hi = np.where(y_lo >= 0, 0.0, u)
        err = _iv(down(down(s_lo / n) + d_lo), up(up(s_hi / n) + d_hi))
        self._avg_local = _iv(down(q_lo[0] + d_lo), up(q_hi[0] + d_hi))  # mean of the casts + division
        reach = _iv(down(out.lo + err.lo), up(out.hi + err.hi))
        if not self.cur_t.signed:
            reach = _iv(np.maximum(reach.lo, 0.0), reach.hi)
        self._avg_sum = (y_lo, y_hi)
        return err, reach

    def pool_inputs(self, st: PoolStage) -> Interval:
        """Reachable range of the window values once assigned to accum_t (io_stream casts each)."""
        w = np.unique(st.windows)
        c_lo, c_hi = _cast_if(st.accum_t, self.cur_t.frac, w.size)
        lo = down(down(self.r.lo[w] + self.e.lo[w]) + c_lo)
        if not self.cur_t.signed:  # a value >= 0 stays >= 0 when cast
            lo = np.maximum(lo, 0.0)
        return _iv(lo, up(up(self.r.hi[w] + self.e.hi[w]) + c_hi))

    def pool(self, st: PoolStage) -> None:
        err, reach = self.pool_accum(st)
        acc_t = st.accum_t
        if self.stream:  # every window value is cast to accum_t: none may overflow (then the max
            # of the casts is the cast of the max, and the sums are those analysed below)
            iv = self.pool_inputs(st)
            if not _fits(acc_t, iv.lo, iv.hi):
                self.over.append(f"{st.name}: a pooled window value exceeds {acc_t.to_string()}")
        if st.kind == "max":
            if not _fits(acc_t, reach.lo, reach.hi):
                self.over.append(f"{st.name}: pooled value exceeds {acc_t.to_string()}")
        else:
            y_lo, y_hi = self._avg_sum
            if acc_t.overflow == "WRAP":
                if not _fits(acc_t, y_lo, y_hi):
                    self.over.append(f"{st.name}: average-pool sum exceeds {acc_t.to_string()}")
            else:
                mag = up(np.maximum(np.abs(self.r.lo + self.e.lo), np.abs(self.r.hi + self.e.hi)))
                m = up(np.sum(mag[st.windows], axis=1) * _INFLATE + acc_t.ulp * st.size)
                if not _fits(acc_t, -m, m):
                    self.over.append(f"{st.name}: an average-pool partial sum may saturate {acc_t}")
        c_lo, c_hi = _cast_if(st.result_t, acc_t.frac, err.lo.size)
        self.e = err.add(_iv(c_lo, c_hi))
        if st.kind == "max":
            pick, casts = self._max_pick
            noise = _iv(np.where(pick >= 0, down(casts.lo + c_lo), self.e.lo),
                        np.where(pick >= 0, up(casts.hi + c_hi), self.e.hi))  # fmt: skip
            self._rec = B.MaxRec(self.src, pick, noise)
        else:
            self._rec = B.AvgRec(self.src, st.windows, self._avg_local.add(_iv(c_lo, c_hi)))
        r_lo = down(reach.lo + c_lo)
        if not self.cur_t.signed:  # casting a value >= 0 keeps it >= 0
            r_lo = np.maximum(r_lo, 0.0)
        if not _fits(st.result_t, r_lo, up(reach.hi + c_hi)):
            self.over.append(f"{st.name}: result range exceeds {st.result_t.to_string()}")
        self.r = self.rr.ranges[st.node]
        self.cur_t = st.result_t

    def step(self, st: Stage, input_node: str) -> None:
        self.begin(st, input_node)
        if isinstance(st, AddStage):
            self.add(st)
        elif isinstance(st, LinearStage):
            self.linear(st)
        elif isinstance(st, ReluStage):
            self.relu(st)
        else:
            self.pool(st)
        self.end(st)

    def certificate(self, backward: str = "full") -> RegionCert:
        """The logits' error intervals: the forward ones intersected with the backward bounds
        (:mod:`.cnn_backward`, which also bound each margin's error directly). ``backward``:
        "full" (logits and margins), "logits" (no margin bounds) or "none" (forward only: a
        sound, looser certificate, for the search's first test of a candidate)."""
        if self.over or backward == "none":
            return RegionCert(
                self.rr.name, self.rr.label, self.e.lo, self.e.hi, self.rr.margin_lb, list(self.over)
            )
        e_fwd = {node: st[0] for node, st in self.states.items()}
        lo, hi, m_lo = B.logit_and_margin_bounds(
            self.records, e_fwd, self.prev, self.rr.label, self.s.scatter, backward == "full"
        )
        return RegionCert(
            self.rr.name, self.rr.label, np.maximum(self.e.lo, lo), np.minimum(self.e.hi, hi),
            self.rr.margin_lb, [], m_lo,
        )  # fmt: skip


def certify(
    s: CnnStructure, regions: list[RegionRanges], program: CnnProgram, backward: str = "full"
) -> CnnCertificate:
    """Certify ``program`` on every region, from scratch (``backward``: :meth:`CnnWalker.certificate`)."""
    return CnnCertificate([certify_region(s, rr, program, backward) for rr in regions])


def certify_region(
    s: CnnStructure, rr: RegionRanges, program: CnnProgram, backward: str = "full"
) -> RegionCert:
    """Certify ``program`` on one region (``backward``: :meth:`CnnWalker.certificate`)."""
    w = CnnWalker(s, rr, program.input_t, program.stream)
    for st in program.stages:
        w.step(st, program.input_node)
    return w.certificate(backward)


# ---------------------------------------------------------------------------------------------
# building programs from fractional bits, cost, search
# ---------------------------------------------------------------------------------------------


@dataclass
class StageFracs:
    """Fractional bits of one layer's types (None = the layer has no such type)."""

    weight: int | None = None
    accum: int | None = None
    result: int | None = None  # conv / relu / pool result (dense: hls4ml's 'auto')

    def key(self) -> tuple[int | None, ...]:
        return (self.weight, self.accum, self.result)


def _fit(frac: int, quant: str, lo: float, hi: float) -> HlsType:
    i = int_bits_for(lo, hi, frac)
    return HlsType(i + frac, i, True, quant, "WRAP")


def _fit_unsigned(frac: int, quant: str, hi: float) -> HlsType:
    """The narrowest ufixed<I+frac, I> holding [0, hi] (for values that cannot be negative)."""
    i = max(1 - frac, math.ceil(math.log2(max(hi, 2.0**-frac))))
    while hi > 2.0**i - 2.0**-frac:
        i += 1
    return HlsType(i + frac, i, False, quant, "WRAP")


def _wide(frac: int, quant: str) -> HlsType:
    return HlsType(frac + 80, 80, True, quant, "WRAP")


def build_program(
    s: CnnStructure,
    regions: list[RegionRanges],
    input_frac: int,
    fracs: list[StageFracs],
    quant: str = "TRN",
    unsigned: bool = True,
    stream: bool = False,
    backward: str = "full",
) -> tuple[CnnProgram, CnnCertificate]:
    """The program whose integer bits fit every region's certified reachable ranges, certified.

    Stage by stage: the stage is built with 80 integer bits, every region's walker gives its
    reachable range, the integer bits are fitted to their union (same fractional bits, so the
    error intervals do not change), and the walkers advance with the fitted stage. With
    ``unsigned``, ReLU results and pooling types whose reachable range is >= 0 are ``ufixed``
    (one bit less for the same range; ReLU outputs are never negative, and truncating or
    rounding a nonnegative value keeps it nonnegative)."""
    e0 = 2.0**-input_frac
    lo0 = min(float(np.min(r.lower)) for r in regions) - e0
    hi0 = max(float(np.max(r.upper)) for r in regions) + e0
    input_t = _fit(input_frac, quant, lo0, hi0)
    walkers = [CnnWalker(s, rr, input_t, stream) for rr in regions]
    stages: list[Stage] = []
    in_node = s.net.input_name
    for ly, fr in zip(s.layers, fracs, strict=True):
        for w in walkers:
            w.load(ly.src, in_node)
        cur_t = walkers[0].cur_t
        st: Stage
        if ly.kind == "add":
            assert fr.result is not None
            ast = AddStage(ly.node, ly.node, _wide(fr.result, quant), ly.n_in, ly.src)
            for w in walkers:
                w.add(ast)
            lo = min(float(np.min(w.r.lo + w.e.lo)) for w in walkers)
            hi = max(float(np.max(w.r.hi + w.e.hi)) for w in walkers)
            ast.result_t = _fit(fr.result, quant, lo, hi)  # same frac: the intervals do not change
            for w in walkers:
                w.load(ly.src, in_node)
                w.add(ast)
            st = ast
        elif ly.kind in ("conv", "dense"):
            assert ly.weight is not None and ly.bias is not None and fr.weight is not None
            assert fr.accum is not None
            uw = 2.0**-fr.weight
            w_t = _fit(fr.weight, quant, float(ly.weight.min()) - uw, float(ly.weight.max()) + uw)
            ub = 2.0**-fr.accum
            b_t = _fit(fr.accum, quant, float(min(ly.bias.min(), 0)) - ub, float(max(ly.bias.max(), 0)) + ub)
            if ly.kind == "dense":
                res_t = auto_dense_type(cur_t, w_t, b_t, ly.n_in)
            else:
                assert fr.result is not None
                res_t = _wide(fr.result, quant)
            d = DenseStage(ly.node, ly.weight, ly.bias, w_t, b_t, _wide(fr.accum, quant), res_t)
            st = LinearStage(ly.node, ly.node, d, ly.gather, result_auto=ly.kind == "dense", src=ly.src)
            accs = [w.accum(st) for w in walkers]
            b_q = as_values(d.bias_raw, b_t.frac)
            lo = min(min(float(r.lo.min()), float(b_q.min(initial=0))) for _, r in accs)
            hi = max(max(float(r.hi.max()), float(b_q.max(initial=0))) for _, r in accs)
            d.accum_t = _fit(fr.accum, quant, lo, hi)
            if ly.kind == "conv":
                c = _cast_if(_wide(fr.result, quant), fr.accum, 1)  # type: ignore[arg-type]
                d.result_t = _fit(fr.result, quant, lo + float(c[0][0]), hi + float(c[1][0]))  # type: ignore[arg-type]
            for w, (e_acc, reach) in zip(walkers, accs, strict=True):
                w.linear(st, e_acc, reach)
        elif ly.kind == "relu":
            assert fr.result is not None
            top = max(float(np.max(np.maximum(w.r.hi + w.e.hi, 0.0))) for w in walkers)
            hi_r = top + 2.0**-fr.result
            r_t = _fit_unsigned(fr.result, quant, hi_r) if unsigned else _fit(fr.result, quant, 0.0, hi_r)
            st = ReluStage(ly.node, ly.node, r_t, ly.src)
            for w in walkers:
                w.relu(st)
        else:
            assert ly.windows is not None and fr.accum is not None and fr.result is not None
            kind = "max" if ly.kind == "maxpool" else "avg"
            st = PoolStage(
                ly.node, ly.node, kind, ly.windows, _wide(fr.accum, quant), _wide(fr.result, quant), ly.src
            )
            pa = [w.pool_accum(st) for w in walkers]
            lo = min(float(r.lo.min()) for _, r in pa)
            hi = max(float(r.hi.max()) for _, r in pa)
            if kind == "avg":
                lo = min(lo, min(float(w._avg_sum[0].min()) for w in walkers))
                hi = max(hi, max(float(w._avg_sum[1].max()) for w in walkers))
            if stream:  # the window values cast to accum_t (same frac: the ranges do not change)
                ivs = [w.pool_inputs(st) for w in walkers]
                lo = min(lo, min(float(iv.lo.min()) for iv in ivs))
                hi = max(hi, max(float(iv.hi.max()) for iv in ivs))
            u = 2.0**-fr.result
            if unsigned and lo >= 0:
                st.accum_t = _fit_unsigned(fr.accum, quant, hi)
                st.result_t = _fit_unsigned(fr.result, quant, hi + u)
            else:
                st.accum_t = _fit(fr.accum, quant, lo, hi)
                st.result_t = _fit(fr.result, quant, lo - u, hi + u)
            for w in walkers:
                w.pool(st)
        for w in walkers:
            w.end(st)
        stages.append(st)
    prog = CnnProgram(input_t, s.input_perm, stages, in_node, stream)
    return prog, CnnCertificate([w.certificate(backward) for w in walkers])


def program_cost(program: CnnProgram) -> dict[str, int]:
    """Bits of the multipliers and adders hls4ml instantiates (io_parallel, Latency, reuse 1).

    Conv2D: ``conv_2d_latency_cl`` pipelines its partition loop, so one array of K·C_out
    multipliers (W_x + W_w bits) and K·C_out accum_t adders serves every output pixel; Dense:
    n_in·n_out of each; average pooling: every window's additions are unrolled (the function is
    pipelined), S accum_t adders per output; ReLU and max pooling are comparisons (not counted)."""
    mult = add = 0
    types = {program.input_node: program.input_t}
    prev = program.input_node
    for st in program.stages:
        cur = types[stage_src(st, prev)[0]]
        if isinstance(st, AddStage):
            add += st.result_t.width * st.size  # one adder per element
        elif isinstance(st, LinearStage):
            d = st.dense
            n = d.n_in * d.n_out
            mult += n * (cur.width + d.weight_t.width)
            add += n * d.accum_t.width
        elif isinstance(st, PoolStage) and st.kind == "avg":
            add += st.windows.size * st.accum_t.width
        types[st.node] = st.result_t
        prev = st.node
    return {"cost": mult + add, "multiplier_bits": mult, "adder_bits": add}


F_MIN, F_MAX = -4, 40


def uniform_fracs(s: CnnStructure, f: int) -> list[StageFracs]:
    out = []
    for ly in s.layers:
        if ly.kind == "conv":
            out.append(StageFracs(f, f, f))
        elif ly.kind == "dense":
            out.append(StageFracs(f, f, None))
        elif ly.kind in ("relu", "add"):
            out.append(StageFracs(None, None, f))
        else:
            out.append(StageFracs(None, f, f))
    return out


@dataclass
class CnnSearchResult:
    program: CnnProgram
    certificate: CnnCertificate
    input_frac: int
    fracs: list[StageFracs]
    cost: int
    evaluations: int


def choose_types(
    s: CnnStructure,
    regions: list[RegionRanges],
    eps: float,
    quant: str = "TRN",
    headroom: int = 2,
    max_evaluations: int = 800,
    stream: bool = False,
) -> CnnSearchResult:
    """Smallest uniform F certifying ε on every region (no overflow, logits' error <= ε), then from
    F + ``headroom``, a lazy greedy: repeatedly the single-variable decrement with the best cost
    saving per unit of bound increase among those that still certify (galloping steps: 4 at
    first, doubled when taken, halved when not); the cheaper of that and uniform F is returned.
    Every candidate is certified in full by the forward intervals (sound; the backward pass of
    :mod:`.cnn_backward` would make each certification several times slower); the returned
    program's certificate is the full one (forward ∩ backward, logits and margins), so its
    bound is at most the search's."""
    evals = 0

    def run(f_in: int, fr: list[StageFracs]) -> tuple[CnnProgram, CnnCertificate, int]:
        # the forward certificate: sound, looser, several times faster than with the backward
        # pass, which the returned program gets (tried: polishing the descent on the backward
        # bounds saved 3% on cifar10_small and < 0.1% on the MNIST nets, for 2-4x the time)
        nonlocal evals
        evals += 1
        p, c = build_program(s, regions, f_in, fr, quant, stream=stream, backward="none")
        return p, c, program_cost(p)["cost"]

    def good(c: CnnCertificate) -> bool:
        return c.ok and c.max_bound <= eps

    _, c, _ = run(F_MAX, uniform_fracs(s, F_MAX))
    if not good(c):
        why = "; ".join(c.overflow[:2]) if c.overflow else f"bound {c.max_bound:.3g} at {F_MAX} bits"
        raise InfeasibleError(f"hls4ml backend: ε = {eps:g} cannot be certified ({why})")
    lo, hi = F_MIN, F_MAX
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if good(run(mid, uniform_fracs(s, mid))[1]):
            hi = mid
        else:
            lo = mid
    best_uniform = (hi, uniform_fracs(s, hi), *run(hi, uniform_fracs(s, hi)))
    f_in = min(hi + headroom, F_MAX)
    fracs = uniform_fracs(s, f_in)
    prog, cert, cost = run(f_in, fracs)
    variables: list[Slot] = [(-1, "input")]
    for li, fr in enumerate(fracs):
        for name in ("weight", "accum", "result"):
            if getattr(fr, name) is not None:
                variables.append((li, name))

    problem = TypeSearch(run, good, eps, lambda: evals < max_evaluations)
    f_in, fracs, prog, cert, cost = lazy_greedy_descent(f_in, fracs, (prog, cert, cost), variables, problem)
    if best_uniform[4] < cost:  # the descent from F + headroom may stop above uniform F
        f_in, fracs, prog, cert, cost = best_uniform
    cert = certify(s, regions, prog)  # forward ∩ backward: logits and margins
    return CnnSearchResult(prog, cert, f_in, fracs, cost, evals)
