"""Conformance battery of the operator classes (aster_ext.ops), parametrised over small ONNX graphs
that together cover every registered op kind, plus the benchmark CNNs:

- float evaluation through the graph interpreter equals onnxruntime;
- interval ranges contain every node's value on random and corner samples;
- symbolic ranges lie inside the interval ranges and contain the samples;
- the margin lower bound is <= every sampled margin (random, corners, and the corner that
  minimises the relaxed linear bound);
- hypothesis over random conv / pooling shapes and attributes;
- exact rational cross-check of interval and symbolic bounds on tiny cases.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from aster_ext import ops
from aster_ext.frontend.onnx_import import import_model, load_onnx
from aster_ext.graph_program.certify import FORMAT_RANGE_KINDS
from aster_ext.ops.attack import gradient_corners, margin_gradients, pgd_min_margin
from aster_ext.ops.exact_check import exact_backsubstitute, exact_interval_ranges
from aster_ext.ops.interpreter import interval_margins, margin_matrix

# --------------------------------------------------------------------------------------
# graph builders
# --------------------------------------------------------------------------------------


def _fill_heads(nodes, in_shape, inits, opset: int = 17) -> None:
    """Give each pending dense head (inits value (n_out, rng)) its input size, by shape inference."""
    for key, val in list(inits.items()):
        if not isinstance(val, tuple):
            continue
        n_out, rng = val
        flat = next(n for n in nodes if n.op_type == "Gemm" and n.input[1] == key).input[0]
        at = next(i for i, n in enumerate(nodes) if flat in n.output)
        src, body = nodes[at].input[0], nodes[:at]
        probe = helper.make_graph(
            body, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *in_shape])],
            [helper.make_tensor_value_info(src, TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()
                         if not isinstance(v, tuple)],
        )  # fmt: skip
        m = helper.make_model(probe, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        x = np.zeros((1, *in_shape), np.float32)
        y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]
        inits[key] = r32(rng, n_out, int(np.prod(y.shape[1:])))


def make_model(nodes, in_shape, inits=(), opset: int = 17) -> onnx.ModelProto:
    inits = dict(inits)
    _fill_heads(list(nodes), in_shape, inits, opset)
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(inits).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def r32(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _conv(name, x, y, rng, c_out, c_in, k, inits, **attrs):
    group = attrs.get("group", 1)
    ks = (k,) if isinstance(k, int) else tuple(k)
    inits[f"{name}W"] = r32(rng, c_out, c_in // group, *ks)
    inits[f"{name}B"] = r32(rng, c_out)
    return helper.make_node("Conv", [x, f"{name}W", f"{name}B"], [y], **attrs)


def _head(x, n_in, n_out, rng, inits, name="fc"):
    """Flatten + Gemm to n_out logits (n_in is filled in by :func:`make_model` when None)."""
    inits[f"{name}W"] = (n_out, rng)
    inits[f"{name}B"] = r32(rng, n_out)
    return [
        helper.make_node("Flatten", [x], [f"{name}_flat"], axis=1),
        helper.make_node("Gemm", [f"{name}_flat", f"{name}W", f"{name}B"], ["y"], transB=1),
    ]


def case_conv2d():
    rng, inits = np.random.default_rng(1), {}
    nodes = [
        _conv("c1", "x", "h", rng, 4, 2, (3, 2), inits, strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[1, 2]),
        *_head("m", None, 4, rng, inits),
    ]
    inits["shape"] = np.array([-1, 2, 8, 5], np.int64)
    return make_model(nodes, [2, 6, 6], inits), (2, 6, 6)


def case_conv_grouped_depthwise():
    rng, inits = np.random.default_rng(2), {}
    nodes = [
        _conv("c1", "x", "h", rng, 4, 4, (3, 3), inits, group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["a"]),
        _conv("c2", "a", "h2", rng, 4, 4, (2, 2), inits, group=4, strides=[2, 2]),
        helper.make_node("Sigmoid", ["h2"], ["a2"]),
        *_head("a2", None, 3, rng, inits),
    ]
    return make_model(nodes, [4, 5, 5], inits), (4, 5, 5)


def case_conv1d():
    rng, inits = np.random.default_rng(3), {}
    nodes = [
        _conv("c1", "x", "h", rng, 3, 2, 3, inits, strides=[2], pads=[2, 1], dilations=[2]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2], strides=[1]),
        helper.make_node("AveragePool", ["p"], ["q"], kernel_shape=[2], pads=[1, 0], count_include_pad=1),
        *_head("q", None, 3, rng, inits),
    ]
    return make_model(nodes, [2, 9], inits), (2, 9)


def case_pools():
    rng, inits = np.random.default_rng(4), {}
    nodes = [
        _conv("c1", "x", "h", rng, 3, 1, (2, 2), inits, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["a"], ["v"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1]),
        helper.make_node("Concat", ["m", "v"], ["cat"], axis=1),
        *_head("cat", None, 4, rng, inits),
    ]
    return make_model(nodes, [1, 6, 6], inits), (1, 6, 6)


def case_global_pools():
    rng, inits = np.random.default_rng(5), {}
    nodes = [
        _conv("c1", "x", "h", rng, 4, 2, (3, 3), inits),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("GlobalAveragePool", ["a"], ["g1"]),
        helper.make_node("GlobalMaxPool", ["a"], ["g2"]),
        helper.make_node("Concat", ["g1", "g2"], ["cat"], axis=1),
        *_head("cat", None, 3, rng, inits),
    ]
    return make_model(nodes, [2, 5, 6], inits), (2, 5, 6)


def case_residual_bn():
    """conv -> BN -> relu, two residual adds (one through a 1x1 projection), Pad before a conv."""
    rng, inits = np.random.default_rng(6), {}
    inits["s"] = (rng.random(4) + 0.5).astype(np.float32)
    inits["t"], inits["mu"] = r32(rng, 4), r32(rng, 4)
    inits["var"] = (rng.random(4) + 0.5).astype(np.float32)
    inits["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    nodes = [
        _conv("c0", "x", "h0", rng, 4, 2, (3, 3), inits, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h0", "s", "t", "mu", "var"], ["b0"]),
        helper.make_node("Relu", ["b0"], ["a0"]),
        helper.make_node("Pad", ["a0", "pads"], ["p0"]),
        _conv("c1", "p0", "h1", rng, 4, 4, (3, 3), inits),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Add", ["a1", "a0"], ["r1"]),
        _conv("c2", "r1", "h2", rng, 6, 4, (1, 1), inits),
        _conv("c3", "r1", "h3", rng, 6, 4, (3, 3), inits, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h3"], ["a3"]),
        helper.make_node("Add", ["a3", "h2"], ["r2"]),
        helper.make_node("Relu", ["r2"], ["a4"]),
        *_head("a4", None, 4, rng, inits),
    ]
    return make_model(nodes, [2, 4, 4], inits), (2, 4, 4)


def case_nhwc_transpose():
    """NHWC input transposed to NCHW, conv, transposed back, reshaped (cifar10_small's layout)."""
    rng, inits = np.random.default_rng(7), {}
    inits["shape"] = np.array([-1, 3 * 3 * 3], np.int64)
    inits["W1"] = r32(rng, 27, 5)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        _conv("c1", "t", "h", rng, 3, 2, (2, 2), inits, strides=[2, 2]),
        helper.make_node("LeakyRelu", ["h"], ["a"], alpha=0.1),
        helper.make_node("Transpose", ["a"], ["t2"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t2", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "W1"], ["y"]),
    ]
    return make_model(nodes, [6, 6, 2], inits), (6, 6, 2)


def case_pad_node_maxpool_softmax():
    """A nonzero Pad that stays a node, max-pool after it, trailing softmax (analyses stop at logits)."""
    rng, inits = np.random.default_rng(8), {}
    inits["pads"] = np.array([0, 1, 0, 1, 0, 0, 2, 1], np.int64)
    inits["v"] = np.array(0.25, np.float32)
    nodes = [
        _conv("c1", "x", "h", rng, 2, 2, (2, 2), inits),
        helper.make_node("Tanh", ["h"], ["a"]),
        helper.make_node("Pad", ["a", "pads", "v"], ["p"]),
        helper.make_node("MaxPool", ["p"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        *_head("m", None, 3, rng, inits),
    ]
    nodes[-1].output[0] = "logits"
    nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=-1))
    return make_model(nodes, [2, 4, 4], inits), (2, 4, 4)


CASES = {
    "conv2d": case_conv2d,
    "conv_grouped": case_conv_grouped_depthwise,
    "conv1d_pools": case_conv1d,
    "pools_concat": case_pools,
    "global_pools": case_global_pools,
    "residual_bn_pad": case_residual_bn,
    "nhwc_transpose": case_nhwc_transpose,
    "pad_maxpool_softmax": case_pad_node_maxpool_softmax,
}
EVAL_ONLY = {"softmax", "argmax", "output", "input"}  # not entered by the range analyses


# --------------------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------------------


def ort_run(model_or_path, input_shape, x: np.ndarray) -> np.ndarray:
    src = (
        model_or_path.SerializeToString()
        if isinstance(model_or_path, onnx.ModelProto)
        else str(model_or_path)
    )
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rows = [sess.run(None, {name: xi.reshape((1, *input_shape)).astype(np.float32)})[0] for xi in x]
    return np.concatenate([np.asarray(r, dtype=np.float64).reshape(1, -1) for r in rows])


def samples(lower: np.ndarray, upper: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Random points, random corners, and the two extreme corners of the box."""
    rng = np.random.default_rng(seed)
    pts = lower + rng.random((n, lower.size)) * (upper - lower)
    corners = np.where(rng.random((n, lower.size)) < 0.5, lower, upper)
    return np.concatenate([pts, corners, lower[None], upper[None]])


def assert_contains(ctx, values: dict[str, np.ndarray], names, tol: float = 0.0) -> None:
    for name in names:
        r = ctx.ranges[name]
        v = values[name].reshape(values[name].shape[0], -1)
        lo, hi = r.lo.reshape(-1), r.hi.reshape(-1)
        slack = tol * (1.0 + np.abs(v))
        assert np.all(v >= lo - slack), f"{name}: value below its range by {np.max(lo - v):.3g}"
        assert np.all(v <= hi + slack), f"{name}: value above its range by {np.max(v - hi):.3g}"


def check_ranges_and_margins(net, lower, upper, n_samples=40, seed=0):
    """Interval ⊇ samples, symbolic ⊆ interval and ⊇ samples, margin bound <= sampled margins."""
    x = samples(lower, upper, n_samples, seed)
    target = ops.logits_node(net)
    vals = ops.evaluate(net, x, upto=target)
    iv = ops.interval_ranges(net, lower, upper)
    sym, _ = ops.symbolic_ranges(net, lower, upper)
    # the graph programs' ranges: every row of a node with a chosen format back-substituted
    sym_all, _ = ops.symbolic_ranges(net, lower, upper, all_rows_of=FORMAT_RANGE_KINDS)
    names = list(iv.ranges)
    # float samples carry their own rounding (~1e-15 relative); the exact check is separate
    assert_contains(iv, vals, names, tol=1e-12)
    assert_contains(sym, vals, names, tol=1e-12)
    assert_contains(sym_all, vals, names, tol=1e-12)
    for name in names:
        for s in (sym, sym_all):
            assert np.all(s.ranges[name].lo >= iv.ranges[name].lo), name
            assert np.all(s.ranges[name].hi <= iv.ranges[name].hi), name
    y = vals[target].reshape(x.shape[0], -1)
    if y.shape[1] < 2:
        return iv, sym, 0
    centre = ops.evaluate(net, (0.5 * (lower + upper))[None], upto=target)[target].reshape(-1)
    label = int(np.argmax(centre))
    sampled = y[:, [label]] - y
    m_iv = interval_margins(iv, label)
    m_sym = ops.symbolic_margins(sym, label)
    # the corner minimising the relaxed linear lower bound of every margin row
    lam = margin_matrix(y.shape[1], label)
    coeffs, _ = ops.backsubstitute(sym, target, lam, upper=False)
    m = coeffs[net.input_name]
    adv = np.where(m > 0, lower[None, :], upper[None, :])
    ya = ops.evaluate(net, adv, upto=target)[target].reshape(adv.shape[0], -1)
    sampled = np.concatenate([sampled, ya[:, [label]] - ya])
    tol = 1e-12 * (1.0 + np.abs(sampled))
    for k in range(y.shape[1]):
        if k == label:
            continue
        assert np.all(m_iv[k] <= sampled[:, k] + tol[:, k]), f"interval margin {k}"
        assert np.all(m_sym[k] <= sampled[:, k] + tol[:, k]), f"symbolic margin {k}"
        assert m_sym[k] >= m_iv[k]
    return iv, sym, label


def box_around(rng, size: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    c = rng.uniform(-1, 1, size)
    return c - radius, c + radius


# --------------------------------------------------------------------------------------
# the battery over the small graphs
# --------------------------------------------------------------------------------------


def imported(case: str):
    model, shape = CASES[case]()
    return model, shape, import_model(model, name=case)


# --------------------------------------------------------------------------------------
# the battery over the activation registry: every activation on a conv tensor


def _act_nodes(name: str, x: str, y: str, inits: dict) -> list:
    """ONNX node(s) computing activation ``name`` elementwise (opset 20 for Gelu)."""
    single = {
        "relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus", "identity": "Identity",
    }  # fmt: skip
    if name in single:
        return [helper.make_node(single[name], [x], [y])]
    if name == "elu":
        return [helper.make_node("Elu", [x], [y], alpha=0.7)]
    if name == "leaky_relu":
        return [helper.make_node("LeakyRelu", [x], [y], alpha=0.1)]
    if name == "hard_sigmoid":
        return [helper.make_node("HardSigmoid", [x], [y], alpha=0.25, beta=0.5)]
    if name == "hard_tanh":
        inits["clip_lo"], inits["clip_hi"] = np.array(-1.0, np.float32), np.array(1.0, np.float32)
        return [helper.make_node("Clip", [x, "clip_lo", "clip_hi"], [y])]
    if name == "silu":  # x·sigmoid(x), as exporters write it
        return [helper.make_node("Sigmoid", [x], [f"{y}_s"]), helper.make_node("Mul", [x, f"{y}_s"], [y])]
    if name in ("gelu", "gelu_tanh"):
        return [helper.make_node("Gelu", [x], [y], approximate="tanh" if name == "gelu_tanh" else "none")]
    raise AssertionError(f"no ONNX spelling for activation {name!r}: add one to _act_nodes")


def case_activation(name: str):
    """conv (2 -> 3 channels, 2x2) -> σ -> avg-pool 2x2 -> conv 1x1 -> σ -> flatten -> dense (3 logits)."""
    rng, inits = np.random.default_rng(12), {}
    nodes = [
        _conv("c1", "x", "h", rng, 3, 2, (2, 2), inits),
        *_act_nodes(name, "h", "a", inits),
        helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
        _conv("c2", "p", "h2", rng, 3, 3, (1, 1), inits),
        *_act_nodes(name, "h2", "a2", inits),
        *_head("a2", None, 3, rng, inits),
    ]
    return make_model(nodes, [2, 5, 5], inits, opset=20), (2, 5, 5)


def test_every_activation_has_a_case() -> None:
    from aster_ext.activations import ACTIVATION_CLASSES

    for name in ACTIVATION_CLASSES:
        model, _ = case_activation(name)
        fns = {o.attrs.get("fn") for o in import_model(model, name=name).ops() if o.kind == "act"}
        assert fns == {name} or (name == "identity" and not fns), (name, fns)


@pytest.mark.parametrize("radius", [0.05, 0.5])
@pytest.mark.parametrize("act", sorted(__import__("aster_ext.activations").activations.ACTIVATION_CLASSES))
def test_each_activation_on_tensors(act: str, radius: float) -> None:
    """Per activation of the registry, applied to conv feature maps: float evaluation equals
    onnxruntime, interval ranges contain samples, symbolic ranges lie inside them and contain the
    samples, and the margin bounds stay below every sampled margin."""
    model, shape = case_activation(act)
    net = import_model(model, name=act)
    n = int(np.prod(shape))
    x = np.random.default_rng(5).uniform(-1, 1, (4, n))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(4, -1)
    assert np.max(np.abs(y - ort_run(model, shape, x))) <= 2e-5 * max(1.0, np.max(np.abs(y)))
    lower, upper = box_around(np.random.default_rng(6), n, radius)
    check_ranges_and_margins(net, lower, upper, n_samples=30, seed=6)


def test_cases_cover_every_registered_kind() -> None:
    seen = set()
    for case in CASES:
        seen |= {o.kind for o in imported(case)[2].ops()}
    missing = ops.registered_kinds() - seen - {"argmax", "output"}
    assert not missing, f"no conformance case for op kinds {sorted(missing)}"


@pytest.mark.parametrize("kind", sorted(ops.registered_kinds() - {"argmax", "output", "input"}))
def test_each_registered_kind(kind: str) -> None:
    """Per op kind: the first case holding it evaluates like onnxruntime and its ranges are sound."""
    case = next((c for c in sorted(CASES) if kind in {o.kind for o in imported(c)[2].ops()}), None)
    assert case is not None, f"no conformance case for op kind '{kind}'"
    model, shape, net = imported(case)
    x = np.random.default_rng(4).uniform(-1, 1, (3, int(np.prod(shape))))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(3, -1)
    assert np.max(np.abs(y - ort_run(model, shape, x))) <= 2e-5 * max(1.0, np.max(np.abs(y)))
    if kind not in EVAL_ONLY:
        lower, upper = box_around(np.random.default_rng(4), int(np.prod(shape)), 0.1)
        check_ranges_and_margins(net, lower, upper, n_samples=10, seed=4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_eval_matches_onnxruntime(case: str) -> None:
    model, shape, net = imported(case)
    x = np.random.default_rng(0).uniform(-1, 1, (6, int(np.prod(shape))))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(6, -1)
    y_ort = ort_run(model, shape, x.astype(np.float32).astype(np.float64))
    assert np.max(np.abs(y - y_ort)) <= 2e-5 * max(1.0, np.max(np.abs(y_ort)))


@pytest.mark.parametrize("radius", [0.01, 0.3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_ranges_and_margins_are_sound(case: str, radius: float) -> None:
    _, shape, net = imported(case)
    lower, upper = box_around(np.random.default_rng(1), int(np.prod(shape)), radius)
    check_ranges_and_margins(net, lower, upper)


def test_symbolic_is_tighter_somewhere() -> None:
    """Back-substitution must actually gain over intervals on a deep residual case."""
    _, shape, net = imported("residual_bn_pad")
    lower, upper = box_around(np.random.default_rng(2), int(np.prod(shape)), 0.2)
    iv, sym, label = check_ranges_and_margins(net, lower, upper)
    t = ops.logits_node(net)
    assert np.sum(sym.ranges[t].hi - sym.ranges[t].lo) < 0.9 * np.sum(iv.ranges[t].hi - iv.ranges[t].lo)


def test_bounds_wrt_intermediate_node_contain_samples() -> None:
    """Linear bounds of the logits w.r.t. an intermediate node, concretised over its range."""
    _, shape, net = imported("residual_bn_pad")
    lower, upper = box_around(np.random.default_rng(3), int(np.prod(shape)), 0.1)
    sym, _ = ops.symbolic_ranges(net, lower, upper)
    target = ops.logits_node(net)
    cut = next(o.name for o in net.ops() if o.kind == "add")  # every path to the logits crosses r1
    n = int(np.prod(net.op(target).shape))
    x = samples(lower, upper, 30)
    vals = ops.evaluate(net, x, upto=target)
    for upper_side in (True, False):
        coeffs, const = ops.backsubstitute(sym, target, np.eye(n), upper_side, stop=frozenset({cut}))
        assert set(coeffs) == {cut}
        bound = ops.concretize(sym, coeffs, const, upper_side)
        y = vals[target].reshape(x.shape[0], -1)
        assert np.all(y <= bound + 1e-12) if upper_side else np.all(y >= bound - 1e-12)
        # and pointwise: the linear function of the cut value bounds the logits sample by sample
        lin = vals[cut].reshape(x.shape[0], -1) @ coeffs[cut].T + const
        assert np.all(y <= lin + 1e-9) if upper_side else np.all(y >= lin - 1e-9)


def test_not_yet_implemented_places_say_so() -> None:
    _, _, net = imported("conv2d")
    for op in net.ops():
        cls = ops.op_class(op.kind)
        for method in ("error_form_step", "rounding_points", "simulate", "cpp"):
            with pytest.raises(NotImplementedError, match=op.kind):
                getattr(cls, method)(op)


# --------------------------------------------------------------------------------------
# exact rational cross-check
# --------------------------------------------------------------------------------------


def tiny_relu_net():
    rng, inits = np.random.default_rng(9), {}
    inits["bs"], inits["bt"] = np.array([0.7, 1.3], np.float32), np.array([0.1, -0.2], np.float32)
    inits["bm"], inits["bv"] = np.array([0.05, -0.1], np.float32), np.array([0.9, 1.7], np.float32)
    nodes = [
        _conv("c1", "x", "h0", rng, 2, 1, (2, 2), inits, pads=[1, 1, 0, 0]),
        helper.make_node("BatchNormalization", ["h0", "bs", "bt", "bm", "bv"], ["h"]),  # exact rationals
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("AveragePool", ["a"], ["v"], kernel_shape=[3, 3], strides=[1, 1]),
        _conv("c2", "m", "h2", rng, 2, 2, (2, 2), inits),
        helper.make_node("Add", ["h2", "v"], ["s"]),
        helper.make_node("Relu", ["s"], ["a2"]),
        *_head("a2", None, 3, rng, inits),
    ]
    return import_model(make_model(nodes, [1, 3, 3], inits), name="tiny")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_rational_cross_check(seed: int) -> None:
    net = tiny_relu_net()
    assert "kernel_exact" in net.ops()[1].attrs  # the folded BatchNorm is not a double: radii are exercised
    lower, upper = box_around(np.random.default_rng(seed), 9, 0.4)
    target = ops.logits_node(net)
    iv = ops.interval_ranges(net, lower, upper)
    exact = exact_interval_ranges(net, lower, upper, target)
    for name, (lo, hi) in exact.items():
        flo = iv.ranges[name].lo.reshape(-1)
        fhi = iv.ranges[name].hi.reshape(-1)
        assert all(Fraction(float(a)) <= b for a, b in zip(flo, lo, strict=True)), name
        assert all(Fraction(float(a)) >= b for a, b in zip(fhi, hi, strict=True)), name
    sym, stats = ops.symbolic_ranges(net, lower, upper, all_rows_of=FORMAT_RANGE_KINDS)
    assert target in stats.per_node_rows  # the logits (no nonlinear consumer) are back-substituted too
    n = int(np.prod(net.op(target).shape))
    for query in [*stats.per_node_rows, target]:
        size = int(np.prod(net.op(query).shape))
        for upper_side in (True, False):
            coeffs, const = ops.backsubstitute(sym, query, np.eye(size), upper_side)
            fb = ops.concretize(sym, coeffs, const, upper_side)
            eb = exact_backsubstitute(sym, query, np.eye(size), upper_side)
            for f, e in zip(fb, eb, strict=True):
                assert (Fraction(float(f)) >= e) if upper_side else (Fraction(float(f)) <= e)
    label = 0
    lam = margin_matrix(n, label)
    coeffs, const = ops.backsubstitute(sym, target, lam, upper=False)
    fm = ops.concretize(sym, coeffs, const, upper=False)
    em = exact_backsubstitute(sym, target, lam, upper=False)
    assert all(Fraction(float(f)) <= e for f, e in zip(fm, em, strict=True))


# --------------------------------------------------------------------------------------
# hypothesis: random conv / pooling graphs
# --------------------------------------------------------------------------------------


@st.composite
def conv_pool_graphs(draw):
    d = draw(st.sampled_from([1, 2]))
    c_in = draw(st.integers(1, 3))
    group = draw(st.sampled_from([1, c_in]))
    c_out = group * draw(st.integers(1, 2))
    sizes = [draw(st.integers(3, 6)) for _ in range(d)]
    k = [draw(st.integers(1, 3)) for _ in range(d)]
    stride = [draw(st.integers(1, 2)) for _ in range(d)]
    dil = [draw(st.integers(1, 2)) for _ in range(d)]
    pads = [draw(st.integers(0, 1)) for _ in range(2 * d)]
    for a in range(d):  # keep the output non-empty
        if sizes[a] + pads[a] + pads[a + d] < dil[a] * (k[a] - 1) + 1:
            dil[a] = 1
            k[a] = 1
    pool = draw(st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "none"]))
    act = draw(st.sampled_from(["Relu", "LeakyRelu", "Tanh"]))
    seed = draw(st.integers(0, 10_000))
    rng, inits = np.random.default_rng(seed), {}
    nodes = [
        _conv("c", "x", "h", rng, c_out, c_in, tuple(k), inits, strides=stride, dilations=dil, pads=pads,
              group=group),
        helper.make_node(act, ["h"], ["a"]),
    ]  # fmt: skip
    last = "a"
    out = [(sizes[a] + pads[a] + pads[a + d] - dil[a] * (k[a] - 1) - 1) // stride[a] + 1 for a in range(d)]
    if pool in ("MaxPool", "AveragePool"):
        attrs = {"kernel_shape": [min(2, o) for o in out], "strides": [1] * d}
        if pool == "AveragePool":
            attrs["count_include_pad"] = draw(st.integers(0, 1))
            ks = attrs["kernel_shape"]
            attrs["pads"] = [min(draw(st.integers(0, 1)), ks[a % d] - 1) for a in range(2 * d)]
        nodes.append(helper.make_node(pool, ["a"], ["p"], **attrs))
        last = "p"
    elif pool != "none":
        nodes.append(helper.make_node(pool, ["a"], ["p"]))
        last = "p"
    model = make_model(nodes + [helper.make_node("Identity", [last], ["y"])], [c_in, *sizes], inits)
    return model, (c_in, *sizes), seed


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_pool_graphs(), st.sampled_from([0.02, 0.5]))
def test_random_conv_pool_graphs(graph, radius: float) -> None:
    check_random_graph(graph, radius)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_pool_graphs(), st.sampled_from([0.02, 0.5, 2.0]))
def test_random_conv_pool_graphs_many(graph, radius: float) -> None:
    check_random_graph(graph, radius)


def check_random_graph(graph, radius: float) -> None:
    """ORT equality, interval and symbolic ranges containing samples, sound margins."""
    model, shape, seed = graph
    net = import_model(model, name="h")
    n = int(np.prod(shape))
    x = np.random.default_rng(seed).uniform(-1, 1, (4, n))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(4, -1)
    y_ort = ort_run(model, shape, x.astype(np.float32).astype(np.float64))
    assert np.max(np.abs(y - y_ort)) <= 2e-5 * max(1.0, np.max(np.abs(y_ort)))
    lower, upper = box_around(np.random.default_rng(seed + 1), n, radius)
    xs = samples(lower, upper, 20, seed)
    vals = ops.evaluate(net, xs)
    iv = ops.interval_ranges(net, lower, upper)
    sym, _ = ops.symbolic_ranges(net, lower, upper)
    assert_contains(iv, vals, list(iv.ranges), tol=1e-12)
    assert_contains(sym, vals, list(sym.ranges), tol=1e-12)
    check_ranges_and_margins(net, lower, upper, n_samples=10, seed=seed)


# --------------------------------------------------------------------------------------
# benchmark CNNs
# --------------------------------------------------------------------------------------

CNNS = ["cnn/Convnet_avgpool", "cnn/Convnet_maxpool", "cnn/cifar10_small", "cnn/resnet_2b",
        "external/cifar_base_kw"]  # fmt: skip


def benchmark(shared_dir: Path, name: str):
    path = shared_dir / "benchmarks" / f"{name}.onnx"
    spec = json.loads((shared_dir / "benchmarks" / f"{name}.spec.json").read_text())
    region = spec["regions"][0] if "regions" in spec else spec["vnnlib"]["example"]
    return path, load_onnx(path), spec, region


@pytest.mark.parametrize("name", CNNS)
def test_benchmark_cnn_eval_matches_onnxruntime(shared_dir: Path, name: str) -> None:
    path, net, spec, _ = benchmark(shared_dir, name)
    lo, hi = np.array(spec["input_lower"]), np.array(spec["input_upper"])
    x = samples(lo, hi, 3).astype(np.float32).astype(np.float64)
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(x.shape[0], -1)
    y_ort = ort_run(path, net.input_shape, x)
    assert np.max(np.abs(y - y_ort)) <= 1e-5 * max(1.0, np.max(np.abs(y_ort)))


@pytest.mark.slow
@pytest.mark.parametrize("name", CNNS)
def test_benchmark_cnn_margins_sound(shared_dir: Path, name: str) -> None:
    _, net, _, region = benchmark(shared_dir, name)
    lower, upper = np.array(region["lower"]), np.array(region["upper"])
    _, sym, label = check_ranges_and_margins(net, lower, upper, n_samples=15)
    assert label == region["label"]
    bound = np.min(np.delete(ops.symbolic_margins(sym, label), label))
    attacked = pgd_min_margin(net, lower, upper, label, steps=8, restarts=1)
    assert bound <= attacked + 1e-12 * (1.0 + abs(attacked))


def test_margin_gradients_are_exact_local_slopes() -> None:
    _, shape, net = imported("residual_bn_pad")
    n = int(np.prod(shape))
    x = np.random.default_rng(6).uniform(-1, 1, n)
    target = ops.logits_node(net)
    y = ops.evaluate(net, x[None], upto=target)[target].reshape(-1)
    label = int(np.argmax(y))
    g = margin_gradients(net, x, label)
    d = np.random.default_rng(7).standard_normal(n) * 1e-7

    def margins(z):
        v = ops.evaluate(net, z[None], upto=target)[target].reshape(-1)
        return np.delete(v[label] - v, label)

    assert np.allclose(margins(x + d) - margins(x), g @ d, rtol=1e-6, atol=1e-12)
    assert pgd_min_margin(net, x - 0.05, x + 0.05, label, steps=5) <= np.min(margins(x))

    # gradient_corners: per class k, the corner of a box around x where margin k falls most to
    # first order (on a box this small the network is affine: it falls by sum_i |g_ki| * r)
    r = 1e-7
    corners = gradient_corners(net, x - r, x + r, label)
    assert corners.shape == (g.shape[0], n)
    assert np.array_equal(corners, np.where(g > 0, x - r, x + r))
    drops = np.array([margins(x)[k] - margins(c)[k] for k, c in enumerate(corners)])
    assert np.allclose(drops, np.abs(g).sum(axis=1) * r, rtol=1e-5, atol=1e-12)


# --------------------------------------------------------------------------------------
# importer: the new kinds and rewrites
# --------------------------------------------------------------------------------------


def kinds_of(net) -> list[str]:
    return [o.kind for o in net.ops()]


def test_zero_pad_is_folded_into_conv_and_avgpool() -> None:
    rng, inits = np.random.default_rng(10), {}
    inits["pads"] = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"]),
        _conv("c1", "p", "h", rng, 2, 2, (3, 3), inits),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Pad", ["a", "pads"], ["p2"]),
        helper.make_node("AveragePool", ["p2"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    model = make_model(nodes, [2, 5, 5], inits)
    net = import_model(model, name="padfold")
    assert kinds_of(net) == ["input", "conv2d", "act", "avgpool"]
    conv = net.ops()[1]
    assert conv.attrs["padding"] == (1, 2, 2, 1)
    assert net.ops()[3].attrs["count_include_pad"] is True
    x = np.random.default_rng(0).uniform(-1, 1, (4, 50))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(4, -1)
    assert np.max(np.abs(y - ort_run(model, (2, 5, 5), x))) <= 2e-5 * max(1.0, np.max(np.abs(y)))


def test_pad_read_twice_or_nonzero_stays_a_node() -> None:
    rng, inits = np.random.default_rng(11), {}
    inits["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"]),
        _conv("c1", "p", "h", rng, 2, 2, (3, 3), inits),
        helper.make_node("MaxPool", ["p"], ["m"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Add", ["h", "m"], ["y"]),
    ]
    model = make_model(nodes, [2, 4, 4], inits)
    net = import_model(model, name="padkeep")
    assert kinds_of(net).count("pad") == 1
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(4, -1)
    assert np.max(np.abs(y - ort_run(model, (2, 4, 4), x))) <= 2e-5 * max(1.0, np.max(np.abs(y)))


@pytest.mark.parametrize("name", ["AC8", "ACC10NN", "VertCasNN", "UnicycleNN"])
def test_dense_benchmark_ranges_agree_with_the_refined_analysis(shared_dir: Path, name: str) -> None:
    """Two implementations of one back-substitution: on a dense chain, the graph interpreter with
    every row of the affine nodes back-substituted gives the refined mode's per-layer symbolic
    ranges (``refined.symbolic_ranges``) up to float rounding; with only the rows a relaxation
    reads, the logits and stable neurons stay at their (here much wider) interval steps."""
    from aster_ext.frontend import load_model
    from aster_ext.ir import ACTIVATIONS, dense_chain
    from aster_ext.refined.symbolic_ranges import symbolic_ranges as dense_symbolic_ranges

    net, spec = load_model(shared_dir / "benchmarks" / "aster" / f"{name}.onnx")
    layers = dense_chain(net, frozenset(ACTIVATIONS))
    lo, hi = spec.input_lower, spec.input_upper
    dense = dense_symbolic_ranges(layers, lo, hi)
    full, _ = ops.symbolic_ranges(net, lo, hi, all_rows_of=FORMAT_RANGE_KINDS)
    relax_only, _ = ops.symbolic_ranges(net, lo, hi)
    for layer, r in zip(layers, dense, strict=True):
        g = full.ranges[layer.name]
        for a, b in ((g.lo.reshape(-1), r.pre.lo), (g.hi.reshape(-1), r.pre.hi)):
            assert np.all(np.abs(a - b) <= 1e-12 * (1.0 + np.abs(b))), layer.name
    last = layers[-1].name
    width_full = full.ranges[last].hi - full.ranges[last].lo
    width_relax = relax_only.ranges[last].hi - relax_only.ranges[last].lo
    assert np.all(width_full <= width_relax * (1 + 1e-12)) and np.any(width_full < 0.9 * width_relax)


def test_benchmark_structure(shared_dir: Path) -> None:
    """cifar10_small keeps its two transposes; Convnet_avgpool's zero Pad disappears."""
    small = load_onnx(shared_dir / "benchmarks" / "cnn" / "cifar10_small.onnx")
    assert kinds_of(small).count("transpose") == 2
    avg = load_onnx(shared_dir / "benchmarks" / "cnn" / "Convnet_avgpool.onnx")
    assert kinds_of(avg) == ["input", "conv2d", "act", "avgpool", "flatten", "affine"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_module_agrees_with_op_classes(case: str) -> None:
    """aster_ext.evaluate (used by the rest of the tool) and the op interpreter give one reference."""
    from aster_ext.evaluate import evaluate_float64

    _, shape, net = imported(case)
    x = np.random.default_rng(5).uniform(-1, 1, (5, int(np.prod(shape))))
    a = evaluate_float64(net, x)
    b = ops.evaluate(net, x)[net.output_names[0]].reshape(5, -1)
    assert np.max(np.abs(a - b)) <= 1e-12 * max(1.0, np.max(np.abs(a)))


def test_pending_scaling_through_transpose_and_concat() -> None:
    """BatchNorm whose conv has a second reader stays pending: it is transposed along with the
    data, and materialised before a Concat; 1-D conv after a zero Pad folds the Pad."""
    rng, inits = np.random.default_rng(12), {}
    inits["bs"], inits["bt"] = (rng.random(3) + 0.5).astype(np.float32), r32(rng, 3)
    inits["bm"], inits["bv"] = r32(rng, 3), (rng.random(3) + 0.5).astype(np.float32)
    inits["pads"] = np.array([0, 0, 2, 0, 0, 1], np.int64)
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"]),
        _conv("c1", "p", "h", rng, 3, 2, 3, inits, strides=[1]),
        helper.make_node("BatchNormalization", ["h", "bs", "bt", "bm", "bv"], ["b"]),
        helper.make_node("Transpose", ["b"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Relu", ["t"], ["a"]),
        helper.make_node("Transpose", ["h"], ["th"], perm=[0, 2, 1]),
        helper.make_node("Concat", ["a", "th", "t"], ["y"], axis=2),
    ]
    model = make_model(nodes, [2, 6], inits)
    net = import_model(model, name="pending")
    assert "pad" not in kinds_of(net) and "conv1d" in kinds_of(net)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 12))
    y = ops.evaluate(net, x)[net.output_names[0]].reshape(4, -1)
    assert np.max(np.abs(y - ort_run(model, (2, 6), x))) <= 2e-5 * max(1.0, np.max(np.abs(y)))
    lower, upper = box_around(np.random.default_rng(1), 12, 0.2)
    iv = ops.interval_ranges(net, lower, upper)
    sym, _ = ops.symbolic_ranges(net, lower, upper)
    vals = ops.evaluate(net, samples(lower, upper, 20))
    assert_contains(iv, vals, list(iv.ranges), tol=1e-12)
    assert_contains(sym, vals, list(sym.ranges), tol=1e-12)
