"""ONNX importer and float64 evaluation: benchmarks against onnxruntime, hand-built graphs per op."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from aster_ext.errors import UnsupportedError, UserError
from aster_ext.evaluate import evaluate_all, evaluate_float64
from aster_ext.frontend import load_model, load_onnx
from aster_ext.ir import dense_chain

EXTERNAL = ["ACASXU_run2a_1_1_batch_2000", "cifar_base_kw", "ffnnSIGMOID__Point_6x200", "tansig_200_50_onnx"]
ASTER = [
    "AC6", "AC7", "AC8", "ACC10NN", "ACC3NN", "ACC5NN", "ACC7NN", "ACCNew", "AcrobotNN", "AirplaneNN",
    "ControllerToraNN", "DoublePendulumNonRobustNN", "DoublePendulumRobustNN", "InvPendulumNN", "LyapunovNN",
    "MountainCarNN", "MpcNN", "SinglePendulumNN", "SmallNN", "TestNN", "UnicycleNN", "VertCASVer1",
    "VertCASVer2", "VertCasNN",
]  # fmt: skip


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def ort_outputs(model_or_path, input_name: str, input_shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """Run onnxruntime (CPU) one sample at a time; outputs flattened and concatenated."""
    src = (
        model_or_path.SerializeToString()
        if isinstance(model_or_path, onnx.ModelProto)
        else str(model_or_path)
    )
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    rows = []
    for xi in x:
        outs = sess.run(None, {input_name: xi.reshape((1, *input_shape)).astype(np.float32)})
        rows.append(np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outs]))
    return np.stack(rows)


def box_samples(lower: np.ndarray, upper: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return lower + rng.random((n, lower.size)) * (upper - lower)


def assert_close_to_ort(model, net, x: np.ndarray, rel: float = 1e-5) -> np.ndarray:
    y_ort = ort_outputs(model, net.input_name, net.input_shape, x)
    y = evaluate_float64(net, x)
    assert y.shape == y_ort.shape
    scale = max(1.0, float(np.max(np.abs(y_ort)))) if rel else 1.0
    err = float(np.max(np.abs(y - y_ort)))
    assert err <= rel * scale, f"max |float64 - ORT| = {err:.3g} > {rel:g} * {scale:.3g}"
    return y


def make_model(
    nodes, in_shape, out_shapes, inits=(), opset: int = 17, ir_version: int = 8
) -> onnx.ModelProto:
    """Graph with data input 'x' of shape ['N', *in_shape] and outputs given as {name: shape}."""
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in out_shapes],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(inits).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return onnx.shape_inference.infer_shapes(model)  # declares the output shapes


def save_and_load(model: onnx.ModelProto, tmp_path: Path, name: str = "m"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return load_onnx(path)


def rand32(rng, *shape, scale=1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def kinds(net) -> list[str]:
    return [o.kind if o.kind != "act" else f"act:{o.attrs['fn']}" for o in net.ops()]


def uniform(n: int, shape: tuple[int, ...], lo=-2.0, hi=2.0, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, (n, int(np.prod(shape))))


# --------------------------------------------------------------------------------------
# benchmark networks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXTERNAL)
def test_external_networks_match_onnxruntime(shared_dir: Path, name: str) -> None:
    path = shared_dir / "benchmarks" / "external" / f"{name}.onnx"
    net, spec = load_model(path)
    assert spec is not None and spec.n_inputs == net.n_inputs
    assert net.reference.startswith(f"ONNX float32 initializers of {name}.onnx")
    x = box_samples(spec.input_lower, spec.input_upper, 50)
    assert_close_to_ort(path, net, x)
    if spec.samples is not None and spec.labels is not None:  # the samples are classified as labelled
        y = evaluate_float64(net, spec.samples)
        assert np.array_equal(np.argmax(y, axis=1), spec.labels)


def test_external_structure(shared_dir: Path) -> None:
    ext = shared_dir / "benchmarks" / "external"
    acas, _ = load_model(ext / "ACASXU_run2a_1_1_batch_2000.onnx")
    assert [layer.activation for layer in dense_chain(acas)] == ["relu"] * 6 + ["identity"]
    tansig, _ = load_model(ext / "tansig_200_50_onnx.onnx")  # MATLAB Conv layers as dense
    assert kinds(tansig) == [
        "input",
        "flatten",
        "affine",
        "act:tanh",
        "affine",
        "act:tanh",
        "affine",
        "softmax",
    ]
    cifar, _ = load_model(ext / "cifar_base_kw.onnx")
    assert kinds(cifar).count("conv2d") == 2 and kinds(cifar).count("affine") == 2
    sig, _ = load_model(ext / "ffnnSIGMOID__Point_6x200.onnx")
    first = next(o for o in sig.ops() if o.kind == "affine")
    assert "weight_exact" in first.attrs and "bias_exact" in first.attrs  # (x - 0.1307)/0.3081 folded
    assert kinds(sig).count("affine") == 7 and "folded constants" in sig.reference


@pytest.mark.parametrize("name", ASTER)
def test_aster_onnx_match_onnxruntime(shared_dir: Path, name: str) -> None:
    path = shared_dir / "benchmarks" / "aster" / f"{name}.onnx"
    net, spec = load_model(path)
    assert spec is not None and spec.error_bounds[0] == 1e-3
    assert net.reference == f"ONNX float32 initializers of {name}.onnx"
    layers = dense_chain(net, frozenset({"relu"}))
    assert [
        [ly.n_in, ly.n_out, "relu" if ly.activation == "relu" else "linear"] for ly in layers
    ] == spec.extra["layers"]
    assert all(ly.weight_exact is None for ly in layers)  # float32 values are exact float64
    assert_close_to_ort(path, net, box_samples(spec.input_lower, spec.input_upper, 50))


# --------------------------------------------------------------------------------------
# hand-built graphs, one op family each
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_alpha_beta_trans(tmp_path: Path, trans_b: int) -> None:
    rng = np.random.default_rng(0)
    w = rand32(rng, 3, 4) if trans_b else rand32(rng, 4, 3)
    c = rand32(rng, 1, 3)
    node = helper.make_node("Gemm", ["x", "W", "C"], ["y"], alpha=0.5, beta=2.0, transB=trans_b, name="g")
    model = make_model([node], [4], {"y": [None, 3]}, {"W": w, "C": c})
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "affine"]
    op = net.op("g")
    assert op.source == "onnx:g (Gemm)"
    w_out = w if trans_b else w.T
    np.testing.assert_array_equal(op.attrs["weight"], 0.5 * w_out.astype(np.float64))
    np.testing.assert_array_equal(op.attrs["bias"], 2.0 * c.reshape(-1).astype(np.float64))
    assert_close_to_ort(model, net, uniform(20, (4,)))


def test_gemm_trans_a_is_rejected(tmp_path: Path) -> None:
    node = helper.make_node("Gemm", ["x", "W"], ["y"], transA=1, name="g")
    model = make_model([node], [4], {"y": None}, {"W": np.ones((1, 3), np.float32)})
    with pytest.raises(UnsupportedError, match="transA"):
        save_and_load(model, tmp_path)


def test_matmul_add_becomes_one_affine(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w, b = rand32(rng, 4, 3), rand32(rng, 3)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "B"], ["y"], name="add"),
    ]
    model = make_model(nodes, [4], {"y": None}, {"W": w, "B": b}, opset=8)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "affine"]
    op = net.op("mm")
    assert "weight_exact" not in op.attrs and "bias_exact" not in op.attrs
    np.testing.assert_array_equal(op.attrs["bias"], b.astype(np.float64))
    assert "(Add)" in op.source
    assert_close_to_ort(model, net, uniform(20, (4,)))


def test_matmul_add_not_folded_when_shared(tmp_path: Path) -> None:
    """The MatMul output is also a graph output: its bias must not be folded into it."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "B"], ["y"], name="add"),
    ]
    model = make_model(nodes, [4], {"y": None, "h": None}, {"W": rand32(rng, 4, 3), "B": rand32(rng, 3)})
    net = save_and_load(model, tmp_path)
    assert len(net.output_names) == 2
    assert_close_to_ort(model, net, uniform(20, (4,)))


def test_normalisation_folded_exactly(tmp_path: Path) -> None:
    """(x - mean) / std -> Gemm: one affine node holding exact rationals."""
    rng = np.random.default_rng(3)
    mean = np.array([0.1307, -0.5, 2.0, 0.25], np.float32)
    std = np.array([0.3081, 3.0, 0.5, 1.0], np.float32)
    w, b = rand32(rng, 2, 4), rand32(rng, 2)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["c"], name="sub"),
        helper.make_node("Div", ["c", "std"], ["n"], name="div"),
        helper.make_node("Gemm", ["n", "W", "B"], ["y"], transB=1, name="fc"),
    ]
    model = make_model(nodes, [4], {"y": None}, {"mean": mean, "std": std, "W": w, "B": b})
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "affine"]
    op = net.op("fc")
    wf = [[Fraction(float(v)) for v in row] for row in w]
    m = [Fraction(float(v)) for v in mean]
    s = [Fraction(float(v)) for v in std]
    for j in range(2):
        for i in range(4):
            assert op.attrs["weight_exact"][j, i] == wf[j][i] / s[i]
        assert op.attrs["bias_exact"][j] == Fraction(float(b[j])) - sum(
            wf[j][i] * m[i] / s[i] for i in range(4)
        )
    np.testing.assert_array_equal(
        op.attrs["weight"], [[float(q) for q in r] for r in op.attrs["weight_exact"]]
    )
    assert "folded constants kept as exact rationals" in net.reference
    assert_close_to_ort(model, net, uniform(20, (4,), 0.0, 1.0))


def test_mul_and_add_after_affine_fold_into_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], transB=1, name="fc"),
        helper.make_node("Mul", ["k", "h"], ["m"], name="mul"),
        helper.make_node("Sub", ["c", "m"], ["y"], name="sub"),  # c - k*h
        helper.make_node("Relu", ["y"], ["z"], name="r"),
    ]
    inits = {
        "W": rand32(rng, 3, 4),
        "k": np.array([0.5, 3.0, -0.1], np.float32),
        "c": np.array(1.5, np.float32),
    }
    model = make_model(nodes, [4], {"z": None}, inits)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "affine", "act:relu"]
    assert_close_to_ort(model, net, uniform(20, (4,)))


def test_scaling_between_activations_becomes_diagonal_affine(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="r1"),
        helper.make_node("Mul", ["r", "k"], ["m"], name="mul"),
        helper.make_node("Tanh", ["m"], ["y"], name="t"),
    ]
    model = make_model(nodes, [3], {"y": None}, {"k": np.array([0.5, -2.0, 3.0], np.float32)})
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "act:relu", "affine", "act:tanh"]
    assert_close_to_ort(model, net, uniform(20, (3,)))


def _bn_inits(rng, c: int, var=None) -> dict[str, np.ndarray]:
    return {
        "scale": rand32(rng, c),
        "bias": rand32(rng, c),
        "mean": rand32(rng, c),
        "var": (np.abs(rand32(rng, c)) + 0.5).astype(np.float32) if var is None else var,
    }


def test_batchnorm_folded_into_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    inits = {"K": rand32(rng, 4, 2, 3, 3), "Kb": rand32(rng, 4), **_bn_inits(rng, 4)}
    nodes = [
        helper.make_node("Conv", ["x", "K", "Kb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["y"], name="relu"),
    ]
    model = make_model(nodes, [2, 5, 5], {"y": None}, inits)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "conv2d", "act:relu"]
    assert "kernel_exact" in net.op("conv").attrs
    assert "BatchNormalization 1/sqrt(var+eps) rounded to 2^-128 relative" in net.reference
    assert_close_to_ort(model, net, uniform(10, (2, 5, 5)))


def test_batchnorm_exact_square_and_after_gemm(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    var = np.array([0.25, 4.0, 1.0], np.float32)  # epsilon = 0: 1/sqrt exact
    inits = {"W": rand32(rng, 3, 4), **_bn_inits(rng, 3, var)}
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], transB=1, name="fc"),
        helper.make_node("BatchNormalization", ["h", "scale", "bias", "mean", "var"], ["y"], epsilon=0.0),
    ]
    model = make_model(nodes, [4], {"y": None}, inits)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "affine"]
    assert "rounded" not in net.reference
    op = net.op("fc")
    s = inits["scale"].astype(np.float64) / np.sqrt(var.astype(np.float64))
    np.testing.assert_array_equal(op.attrs["weight"], s[:, None] * inits["W"].astype(np.float64))
    assert_close_to_ort(model, net, uniform(20, (4,)))


def test_batchnorm_at_input_before_padded_conv(tmp_path: Path) -> None:
    """Per-channel s*x+t cannot enter a padded conv: it becomes a depthwise 1x1 conv2d."""
    rng = np.random.default_rng(7)
    inits = {**_bn_inits(rng, 3), "K": rand32(rng, 2, 3, 3, 3)}
    nodes = [
        helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["b"], name="bn"),
        helper.make_node("Conv", ["b", "K"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv"),
    ]
    model = make_model(nodes, [3, 6, 6], {"y": None}, inits)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "conv2d", "conv2d"]
    assert net.ops()[1].attrs["group"] == 3
    assert_close_to_ort(model, net, uniform(10, (3, 6, 6)))


def test_normalisation_folded_into_unpadded_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    inits = {
        "m": np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1),
        "s": np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1),
        "K": rand32(rng, 4, 3, 2, 2),
    }
    nodes = [
        helper.make_node("Sub", ["x", "m"], ["c"]),
        helper.make_node("Div", ["c", "s"], ["n"]),
        helper.make_node("Conv", ["n", "K"], ["y"], strides=[2, 2], name="conv"),
    ]
    model = make_model(nodes, [3, 4, 4], {"y": None}, inits)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "conv2d"]
    assert "kernel_exact" in net.op("conv").attrs and "bias_exact" in net.op("conv").attrs
    assert_close_to_ort(model, net, uniform(10, (3, 4, 4), 0.0, 1.0))


def test_conv_as_fully_connected(tmp_path: Path) -> None:
    """MATLAB-style: Conv kernels covering the whole input -> affine, C-order flattening."""
    rng = np.random.default_rng(9)
    k1, b1, k2 = rand32(rng, 4, 2, 3, 3), rand32(rng, 4), rand32(rng, 5, 4, 1, 1)
    nodes = [
        helper.make_node("Conv", ["x", "K1", "B1"], ["c1"], kernel_shape=[3, 3], name="fc1"),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("Conv", ["r", "K2"], ["c2"], kernel_shape=[1, 1], name="fc2"),
        helper.make_node("Flatten", ["c2"], ["y"], axis=1),
    ]
    model = make_model(nodes, [2, 3, 3], {"y": None}, {"K1": k1, "B1": b1, "K2": k2}, opset=8)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "flatten", "affine", "act:relu", "affine"]
    np.testing.assert_array_equal(net.op("fc1").attrs["weight"], k1.reshape(4, -1).astype(np.float64))
    assert_close_to_ort(model, net, uniform(20, (2, 3, 3)))


def test_conv_with_1x1_output_and_padding(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Conv", ["x", "K"], ["y"], pads=[1, 0, 0, 1], dilations=[1, 2], name="c")]
    model = make_model(nodes, [2, 2, 2], {"y": None}, {"K": rand32(rng, 3, 2, 3, 2)})
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "flatten", "affine"]
    assert_close_to_ort(model, net, uniform(20, (2, 2, 2)))


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [2, 1], "pads": [1, 0, 2, 1]},
        {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
        {"group": 2, "strides": [1, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ],
)
def test_conv_general(tmp_path: Path, attrs: dict) -> None:
    rng = np.random.default_rng(11)
    group = attrs.get("group", 1)
    inits = {"K": rand32(rng, 4, 4 // group, 3, 3), "B": rand32(rng, 4)}
    model = make_model(
        [helper.make_node("Conv", ["x", "K", "B"], ["y"], **attrs)], [4, 7, 6], {"y": None}, inits
    )
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "conv2d"]
    assert_close_to_ort(model, net, uniform(8, (4, 7, 6)))


@pytest.mark.parametrize(
    "op,attrs",
    [
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("MaxPool", {"kernel_shape": [2, 2]}),
        ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("AveragePool", {"kernel_shape": [3, 2], "pads": [1, 1, 1, 0], "count_include_pad": 1}),
        ("GlobalAveragePool", {}),
        ("GlobalMaxPool", {}),
    ],
)
def test_pooling(tmp_path: Path, op: str, attrs: dict) -> None:
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [2, 6, 5], {"y": None})
    net = save_and_load(model, tmp_path)
    assert kinds(net)[1] in ("maxpool", "avgpool")
    assert_close_to_ort(model, net, uniform(8, (2, 6, 5)))


@pytest.mark.parametrize(
    "op,attrs,fn",
    [
        ("Relu", {}, "relu"),
        ("Sigmoid", {}, "sigmoid"),
        ("Tanh", {}, "tanh"),
        ("LeakyRelu", {"alpha": 0.1}, "leaky_relu"),
        ("LeakyRelu", {}, "leaky_relu"),
        ("Elu", {"alpha": 0.7}, "elu"),
        ("Softplus", {}, "softplus"),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, "hard_sigmoid"),
        ("HardSigmoid", {}, "hard_sigmoid"),
    ],
)
def test_activations(tmp_path: Path, op: str, attrs: dict, fn: str) -> None:
    rng = np.random.default_rng(12)
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], transB=1),
        helper.make_node(op, ["h"], ["y"], name="act", **attrs),
    ]
    model = make_model(nodes, [4], {"y": None}, {"W": rand32(rng, 6, 4, scale=2.0)})
    net = save_and_load(model, tmp_path)
    act = net.op("act")
    assert act.kind == "act" and act.attrs["fn"] == fn
    if op == "LeakyRelu":
        assert act.attrs["alpha"] == float(np.float32(attrs.get("alpha", 0.01)))
    if op == "HardSigmoid":
        assert act.attrs["beta"] == float(np.float32(attrs.get("beta", 0.5)))
    assert_close_to_ort(model, net, uniform(30, (4,), -3, 3))


def test_gelu_and_silu_pattern(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], name="gelu"),
        helper.make_node("Sigmoid", ["g"], ["s"], name="sig"),
        helper.make_node("Mul", ["g", "s"], ["y"], name="silu"),
    ]
    model = make_model(nodes, [5], {"y": None}, opset=20, ir_version=9)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "act:gelu", "act:silu"]
    assert_close_to_ort(model, net, uniform(30, (5,), -4, 4))


@pytest.mark.parametrize("opset", [8, 17])
def test_clip_to_hard_tanh(tmp_path: Path, opset: int) -> None:
    if opset < 11:
        node = helper.make_node("Clip", ["x"], ["y"], min=-1.0, max=1.0, name="clip")
        inits = {}
    else:
        node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")
        inits = {"lo": np.array(-1.0, np.float32), "hi": np.array(1.0, np.float32)}
    model = make_model([node], [4], {"y": None}, inits, opset=opset)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "act:hard_tanh"]
    assert_close_to_ort(model, net, uniform(20, (4,), -3, 3))


def test_clip_other_range_rejected(tmp_path: Path) -> None:
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="relu6")
    model = make_model(
        [node], [4], {"y": None}, {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    )
    with pytest.raises(UnsupportedError, match=r"node 'relu6' \(Clip\).*\[0.0, 6.0\]"):
        save_and_load(model, tmp_path)


@pytest.mark.parametrize("opset", [8, 17])
def test_same_network_opset_8_and_17(tmp_path: Path, opset: int) -> None:
    rng = np.random.default_rng(13)
    inits = {"W1": rand32(rng, 5, 3), "B1": rand32(rng, 5), "W2": rand32(rng, 4, 5), "B2": rand32(rng, 4)}
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=1),
    ]
    model = make_model(nodes, [3], {"y": None}, inits, opset=opset)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "affine", "act:relu", "affine", "softmax"]
    y = assert_close_to_ort(model, net, uniform(20, (3,)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0)


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_axis_semantics_differ_by_opset(tmp_path: Path, opset: int) -> None:
    """opset < 13 flattens the trailing dims from `axis`; opset >= 13 uses the single axis."""
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [2, 3], {"y": None}, opset=opset)
    net = save_and_load(model, tmp_path)
    assert_close_to_ort(model, net, uniform(10, (2, 3)))


def test_residual_add_and_sub(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    nodes = [
        helper.make_node("Gemm", ["x", "W1"], ["a"], transB=1),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Gemm", ["r", "W2"], ["b"], transB=1),
        helper.make_node("Add", ["a", "b"], ["s"], name="res"),
        helper.make_node("Sub", ["s", "r"], ["y"], name="diff"),
    ]
    model = make_model(nodes, [3], {"y": None}, {"W1": rand32(rng, 4, 3), "W2": rand32(rng, 4, 4)})
    net = save_and_load(model, tmp_path)
    assert kinds(net).count("add") == 2
    assert_close_to_ort(model, net, uniform(20, (3,)))


def test_pytorch_style_reshape_via_shape_ops(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    nodes = [
        helper.make_node("Conv", ["x", "K"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Shape", ["r"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    inits = {
        "K": rand32(rng, 2, 1, 3, 3),
        "zero": np.array(0, np.int64),
        "axes": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
        "W": rand32(rng, 32, 3),
    }
    model = make_model(nodes, [1, 4, 4], {"y": None}, inits)
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "conv2d", "act:relu", "flatten", "affine"]
    assert_close_to_ort(model, net, uniform(10, (1, 4, 4)))


def test_argmax_and_squeeze(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axes"], ["u"]),
        helper.make_node("Squeeze", ["u", "axes"], ["s"]),
        helper.make_node("ArgMax", ["s"], ["y"], axis=1, keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        initializer=[numpy_helper.from_array(np.array([2], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    net = save_and_load(model, tmp_path)
    assert kinds(net) == ["input", "argmax"]
    x = uniform(10, (5,))
    np.testing.assert_array_equal(evaluate_float64(net, x)[:, 0], np.argmax(x, axis=1))


def test_evaluate_accepts_shaped_and_flat_batches(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [2, 3], {"y": None})
    net = save_and_load(model, tmp_path)
    x = uniform(4, (2, 3))
    np.testing.assert_array_equal(evaluate_float64(net, x), evaluate_float64(net, x.reshape(4, 2, 3)))
    assert set(evaluate_all(net, x)) == {o.name for o in net.ops()}
    with pytest.raises(UserError, match="does not match input shape"):
        evaluate_float64(net, np.zeros((4, 5)))


# --------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\xffthis is not a protobuf\x13\x37" * 10)
    with pytest.raises(UserError, match="garbage.onnx") as exc:
        load_onnx(path)
    _one_line(exc)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="unknown model type"):
        load_model(other)


def test_made_up_op(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [3], {"z": None})
    model.graph.node.append(helper.make_node("FluxCapacitor", ["y"], ["z"], name="fc9"))
    with pytest.raises(UnsupportedError, match=r"node 'fc9' \(FluxCapacitor\)") as exc:
        save_and_load(model, tmp_path)
    _one_line(exc)


def test_lstm_unsupported(tmp_path: Path) -> None:
    h = 2
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=h, name="rnn")]
    inits = {"W": np.zeros((1, 4 * h, 3), np.float32), "R": np.zeros((1, 4 * h, h), np.float32)}
    model = make_model(nodes, [1, 3], {"y": None}, inits)
    with pytest.raises(UnsupportedError, match=r"node 'rnn' \(LSTM\): operator LSTM is not supported") as exc:
        save_and_load(model, tmp_path)
    _one_line(exc)


def test_nan_weights(tmp_path: Path) -> None:
    w = np.ones((2, 3), np.float32)
    w[1, 2] = np.nan
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], [3], {"y": None}, {"W": w})
    with pytest.raises(UserError, match="NaN") as exc:
        save_and_load(model, tmp_path)
    _one_line(exc)


def test_two_data_inputs_rejected(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(UnsupportedError, match="exactly one graph input"):
        save_and_load(model, tmp_path)


def test_spec_next_to_model_is_used(tmp_path: Path, shared_dir: Path) -> None:
    src = shared_dir / "benchmarks" / "aster" / "SmallNN.onnx"
    copy = tmp_path / "SmallNN.onnx"
    copy.write_bytes(src.read_bytes())
    net, spec = load_model(copy)
    assert spec is None
    (tmp_path / "SmallNN.spec.json").write_text('{"input_lower": [0, 0], "input_upper": [1, 2]}')
    net, spec = load_model(copy)
    assert spec is not None and list(spec.input_upper) == [1.0, 2.0]
    (tmp_path / "bad.spec.json").write_text('{"input_lower": [0, 0, 0], "input_upper": [1, 2, 3]}')
    with pytest.raises(UserError, match="3 input ranges but the network has 2 inputs"):
        load_model(copy, tmp_path / "bad.spec.json")
