"""hls4ml backend on CNN classifiers: certificate soundness (random, corner and adversarial inputs,
random types incl. narrow accumulators, RND and SAT), one-line refusals of unsupported layers, and
(slow) bit-exactness of our simulator with hls4ml's compiled model plus an end-to-end
quantize/verify of a benchmark CNN on one region."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aster_ext.errors import UnsupportedError
from aster_ext.frontend import load_model
from aster_ext.hls4ml_backend import cnn as C
from aster_ext.hls4ml_backend.cnn_run import load_regions
from aster_ext.hls4ml_backend.types import HlsType

HAVE_HLS4ML = importlib.util.find_spec("hls4ml") is not None and importlib.util.find_spec("qonnx") is not None
needs_hls4ml = pytest.mark.skipif(not HAVE_HLS4ML, reason="hls4ml/qonnx not installed")


def cnn_onnx(
    path: Path,
    seed: int,
    pool: str = "MaxPool",
    c_in: int = 1,
    hw: int = 7,
    c1: int = 3,
    k: int = 2,
    conv_pad: int = 0,
    hidden: int = 4,
    n_cls: int = 3,
    extra: str | None = None,
    pool_k: int = 2,
) -> Path:
    """Conv(kxk) -> Relu -> Pool(pool_k x pool_k, stride pool_k) -> Flatten -> Gemm -> Relu -> Gemm,
    float32, input
    [1, c_in, hw, hw]; with the spec (3 regions of radius 0.05 in [0, 1], labels = the real
    network's argmax at the centres) written beside it. ``extra`` inserts an unsupported node."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.6, (c1, c_in, k, k)).astype(f32), "cw"),
        numpy_helper.from_array(rng.normal(0, 0.2, c1).astype(f32), "cb"),
    ]
    ho = hw + 2 * conv_pad - k + 1
    hp = (ho - pool_k) // pool_k + 1
    n = c1 * hp * hp
    inits += [
        numpy_helper.from_array(rng.normal(0, 0.6, (hidden, n)).astype(f32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.2, hidden).astype(f32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.6, (n_cls, hidden)).astype(f32), "w2"),
        numpy_helper.from_array(rng.normal(0, 0.2, n_cls).astype(f32), "b2"),
    ]
    act = extra if extra in ("Sigmoid", "Tanh") else "Relu"
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "cw", "cb"],
            ["c"],
            kernel_shape=[k, k],
            pads=[conv_pad] * 4,
            strides=[1, 1],
            dilations=[1, 1],
            group=1,
        ),
        helper.make_node(act, ["c"], ["r"]),
        helper.make_node(pool, ["r"], ["p"], kernel_shape=[pool_k] * 2, strides=[pool_k] * 2, pads=[0] * 4),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_cls])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    net, _ = load_model(path)
    d = c_in * hw * hw
    regions = []
    for _ in range(3):
        centre = rng.random(d)
        lo, hi = np.clip(centre - 0.05, 0, 1), np.clip(centre + 0.05, 0, 1)
        label = 0
        if extra is None:
            label = int(np.argmax(C.real_forward(C.structure(net), centre[None])[0]))
        regions.append({"lower": lo.tolist(), "upper": hi.tolist(), "label": label})
    spec = {
        "name": path.stem,
        "input_lower": [0.0] * d,
        "input_upper": [1.0] * d,
        "task": "classification",
        "regions": regions,
    }
    path.with_name(path.stem + ".spec.json").write_text(json.dumps(spec))
    return path


def _setup(path: Path):
    net, spec = load_model(path)
    s = C.structure(net)
    return s, load_regions(net, spec)


def _random_fracs(rng: np.random.Generator, s: C.CnnStructure, base: int) -> list[C.StageFracs]:
    """Per-slot F around ``base``, some below the incoming F (narrow accumulators that drop bits)."""
    out = []
    for f in C.uniform_fracs(s, base):
        out.append(
            C.StageFracs(
                *(None if v is None else int(v + rng.integers(-4, 3)) for v in (f.weight, f.accum, f.result))
            )
        )
    return out


def _with_modes(program: C.CnnProgram, rng: np.random.Generator) -> C.CnnProgram:
    """The same program with random rounding/overflow modes per type (widths unchanged)."""

    def m(t: HlsType) -> HlsType:
        return replace(t, quant=str(rng.choice(["TRN", "RND"])), overflow=str(rng.choice(["WRAP", "SAT"])))

    stages: list[C.Stage] = []
    for st in program.stages:
        if isinstance(st, C.LinearStage):
            d = st.dense
            dense = C.DenseStage(
                d.name, d.weight, d.bias, m(d.weight_t), m(d.bias_t), m(d.accum_t), m(d.result_t)
            )
            stages.append(replace(st, dense=dense))
        elif isinstance(st, (C.ReluStage, C.AddStage)):
            stages.append(replace(st, result_t=m(st.result_t)))
        else:
            stages.append(replace(st, accum_t=m(st.accum_t), result_t=m(st.result_t)))
    return replace(program, input_t=m(program.input_t), stages=stages)


def _attack(program, s, rr, bound, rng, iters=25):
    """Local search for a large |simulated - real| / bound and for a small implemented margin."""
    from aster_ext.hls4ml_backend.cnn_run import adversarial_inputs

    return adversarial_inputs(program, s, rr, bound, rng, iters=iters)


def _region_points(prog, s, rr, rc, rng) -> np.ndarray:
    """64 random points and 32 random corners of the region's box, and the points of an attack on
    the certificate ``rc``."""
    lo, hi = np.asarray(rr.lower), np.asarray(rr.upper)
    return np.concatenate(
        [
            lo + (hi - lo) * rng.random((64, lo.size)),
            np.where(rng.random((32, lo.size)) < 0.5, hi, lo),
            _attack(prog, s, rr, rc.bound, rng),
        ]
    )


def _exact_real(s: C.CnnStructure, x: np.ndarray) -> list[Fraction]:
    """The real network on one input in exact rationals (loops, independent of real_forward)."""
    v = [Fraction(float(t)) for t in np.asarray(x, float)[s.input_perm]]
    vals = {s.net.input_name: v}
    for ly in s.layers:
        v = vals[ly.src[0]]
        if ly.kind == "add":
            v = [a + b for a, b in zip(v, vals[ly.src[1]], strict=True)]
        elif ly.kind in ("conv", "dense"):
            w = [[Fraction(float(a)) for a in row] for row in ly.weight]
            b = [Fraction(float(a)) for a in ly.bias]
            g = [list(range(len(v)))] if ly.gather is None else ly.gather.tolist()
            v = [
                b[o] + sum((w[o][kk] * v[i] for kk, i in enumerate(win) if i >= 0), Fraction(0))
                for win in g
                for o in range(len(b))
            ]
        elif ly.kind == "relu":
            v = [max(t, Fraction(0)) for t in v]
        else:
            wins = ly.windows.tolist()
            v = [
                max(v[i] for i in win) if ly.kind == "maxpool" else sum(v[i] for i in win) / len(win)
                for win in wins
            ]
        vals[ly.node] = v
    return v


def residual_onnx(path: Path, seed: int, c_in: int = 2, hw: int = 6, c: int = 3, n_cls: int = 3) -> Path:
    """A tiny ResNet block pair as in resnet_2b: Conv(3x3, pad 1, stride 2) -> Relu = r0;
    Conv(3x3, pad 1) -> Relu -> Conv(3x3, pad 1), + Conv1x1(r0) (shortcut) -> Relu = r2;
    Conv(3x3, pad 1) + r2 (identity skip) -> Relu -> Flatten -> Gemm. float32, spec as cnn_onnx."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    ho = (hw + 2 - 3) // 2 + 1
    shapes = {"w0": (c, c_in, 3, 3), "w1": (c, c, 3, 3), "w2": (c, c, 3, 3), "ws": (c, c, 1, 1)}
    shapes["w3"] = (c, c, 3, 3)
    inits = []
    for nm, sh in shapes.items():
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, sh).astype(f32), nm))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, sh[0]).astype(f32), "b" + nm[1:]))
    inits += [
        numpy_helper.from_array(rng.normal(0, 0.5, (n_cls, c * ho * ho)).astype(f32), "wd"),
        numpy_helper.from_array(rng.normal(0, 0.2, n_cls).astype(f32), "bd"),
    ]

    def conv(x, w, y, k=3, stride=1):
        p = k // 2
        return helper.make_node(
            "Conv", [x, w, "b" + w[1:]], [y], kernel_shape=[k, k], pads=[p] * 4, strides=[stride] * 2,
            dilations=[1, 1], group=1,
        )  # fmt: skip

    nodes = [
        conv("x", "w0", "c0", stride=2),
        helper.make_node("Relu", ["c0"], ["r0"]),
        conv("r0", "w1", "c1"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        conv("r1", "w2", "c2"),
        conv("r0", "ws", "cs", k=1),
        helper.make_node("Add", ["c2", "cs"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r2"]),
        conv("r2", "w3", "c3"),
        helper.make_node("Add", ["c3", "r2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["r3"]),
        helper.make_node("Flatten", ["r3"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wd", "bd"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_resnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_cls])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    net, _ = load_model(path)
    d = c_in * hw * hw
    regions = []
    for _ in range(3):
        centre = rng.random(d)
        lo, hi = np.clip(centre - 0.05, 0, 1), np.clip(centre + 0.05, 0, 1)
        label = int(np.argmax(C.real_forward(C.structure(net), centre[None])[0]))
        regions.append({"lower": lo.tolist(), "upper": hi.tolist(), "label": label})
    spec = {"name": path.stem, "input_lower": [0.0] * d, "input_upper": [1.0] * d,
            "task": "classification", "regions": regions}  # fmt: skip
    path.with_name(path.stem + ".spec.json").write_text(json.dumps(spec))
    return path


def nhwc_onnx(
    path: Path,
    seed: int,
    hw: int = 9,
    c_in: int = 3,
    c1: int = 3,
    c2: int = 4,
    n_cls: int = 3,
    in_perm: tuple[int, ...] = (0, 3, 1, 2),
    relu_last: bool = False,
) -> Path:
    """A tf2onnx-style channels-last CNN as cifar10_small: input [N, hw, hw, c_in] (symbolic batch),
    Transpose(in_perm) -> Conv(3x3/2, no pads/group attributes) -> Relu -> Conv(2x2/1) -> Relu ->
    Transpose(0, 2, 3, 1) -> Reshape [-1, n] -> MatMul + Add -> Relu -> MatMul + Add. Spec as
    cnn_onnx (its boxes in the NHWC input order); labels from onnxruntime. ``relu_last``: the second
    ReLU after the second Transpose (an elementwise layer on a channels-last natural tensor)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    h1 = (hw - 3) // 2 + 1
    h2 = h1 - 1
    n = h2 * h2 * c2
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (c1, c_in, 3, 3)).astype(f32), "k1"),
        numpy_helper.from_array(rng.normal(0, 0.2, c1).astype(f32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (c2, c1, 2, 2)).astype(f32), "k2"),
        numpy_helper.from_array(rng.normal(0, 0.2, c2).astype(f32), "b2"),
        numpy_helper.from_array(np.array([-1, n], dtype=np.int64), "shape"),
        numpy_helper.from_array(rng.normal(0, 0.5, (n, 5)).astype(f32), "m1"),
        numpy_helper.from_array(rng.normal(0, 0.2, 5).astype(f32), "a1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (5, n_cls)).astype(f32), "m2"),
        numpy_helper.from_array(rng.normal(0, 0.2, n_cls).astype(f32), "a2"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["t0"], perm=list(in_perm)),
        helper.make_node(
            "Conv", ["t0", "k1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], dilations=[1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node(
            "Conv", ["r1", "k2", "b2"], ["c2"], kernel_shape=[2, 2], strides=[1, 1], dilations=[1, 1]
        ),
        *(
            [
                helper.make_node("Transpose", ["c2"], ["t2"], perm=[0, 2, 3, 1]),
                helper.make_node("Relu", ["t2"], ["t1"]),
            ]
            if relu_last
            else [
                helper.make_node("Relu", ["c2"], ["r2"]),
                helper.make_node("Transpose", ["r2"], ["t1"], perm=[0, 2, 3, 1]),
            ]
        ),
        helper.make_node("Reshape", ["t1", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "m1"], ["g1"]),
        helper.make_node("Add", ["g1", "a1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["q1"]),
        helper.make_node("MatMul", ["q1", "m2"], ["g2"]),
        helper.make_node("Add", ["g2", "a2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", hw, hw, c_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_cls])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)]), str(path))
    d = hw * hw * c_in
    centres = rng.random((3, d))
    labels = np.argmax(_onnxruntime(path, centres), axis=1)
    regions = [
        {
            "lower": np.clip(c - 0.05, 0, 1).tolist(),
            "upper": np.clip(c + 0.05, 0, 1).tolist(),
            "label": int(lb),
        }
        for c, lb in zip(centres, labels, strict=True)
    ]
    spec = {"name": path.stem, "input_lower": [0.0] * d, "input_upper": [1.0] * d,
            "task": "classification", "regions": regions}  # fmt: skip
    path.with_name(path.stem + ".spec.json").write_text(json.dumps(spec))
    return path


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX model itself (onnxruntime, float32) on flat inputs in the ONNX input's order."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape][1:]
    return np.concatenate(
        [sess.run(None, {inp.name: xi.reshape([1, *shape]).astype(np.float32)})[0] for xi in x]
    ).astype(np.float64)


@pytest.mark.parametrize("kind", ["MaxPool", "AveragePool", "residual", "nhwc", "nhwc_relu_last"])
def test_layouts_match_the_onnx_model(tmp_path, kind):
    """The structure's layouts (channels-first inputs permuted by hls4ml, channels-last inputs behind
    a Transpose kept as they are, Flatten/Transpose aliases, Dense columns permuted to the stored
    order) give the ONNX model's outputs: real_forward (input in the ONNX input's order) against
    onnxruntime, to float32 precision."""
    rng = np.random.default_rng(3)
    if kind == "residual":
        path = residual_onnx(tmp_path / "n.onnx", 3)
    elif kind.startswith("nhwc"):
        path = nhwc_onnx(tmp_path / "n.onnx", 3, relu_last=kind == "nhwc_relu_last")
    else:
        path = cnn_onnx(tmp_path / "n.onnx", 3, kind, c_in=2)
    s, _ = _setup(path)
    x = rng.random((8, s.input_perm.size))
    y = _onnxruntime(path, x)
    assert np.allclose(C.real_forward(s, x), y, atol=1e-4 * (1 + np.abs(y).max()))
    if kind == "nhwc":  # stored as given (no input Transpose in hls4ml), Dense columns unpermuted
        assert np.array_equal(s.input_perm, np.arange(s.input_perm.size))
        assert [ly.kind for ly in s.layers] == ["conv", "relu", "conv", "relu", "dense", "relu", "dense"]


def test_transpose_to_a_non_channels_last_layout_is_refused(tmp_path):
    """An NHWC input transposed to (C, W, H) before the conv: the conv would not read hls4ml's
    channels-last array; refused in one line."""
    path = nhwc_onnx(tmp_path / "n.onnx", 0, in_perm=(0, 3, 2, 1))
    net, _ = load_model(path)
    with pytest.raises(UnsupportedError, match="not stored channels-last") as exc:
        C.structure(net)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool", "residual", "nhwc"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cnn_certificate_is_sound_under_attack(tmp_path, pool, seed):
    """Random types (some accumulators/results dropping bits, random TRN/RND and WRAP/SAT): where a
    certificate is issued, no random, corner or adversarial input of any region exceeds it, and a
    region certified to keep top-1 keeps it; the worst inputs are checked in exact arithmetic.
    ``residual``: the two-block residual net (merge Adds, padded and strided convs)."""
    rng = np.random.default_rng(100 + seed)
    if pool == "residual":
        s, regions = _setup(residual_onnx(tmp_path / "n.onnx", seed, c_in=1 + seed % 2))
        assert [ly.kind for ly in s.layers].count("add") == 2
    elif pool == "nhwc":
        s, regions = _setup(nhwc_onnx(tmp_path / "n.onnx", seed, c_in=1 + seed % 3))
    else:
        s, regions = _setup(cnn_onnx(tmp_path / "n.onnx", seed, pool, c_in=1 + seed % 2, conv_pad=seed % 2))
    issued = 0
    for trial in range(6):
        base = int(rng.integers(5, 12))
        prog, _ = C.build_program(s, regions, base, _random_fracs(rng, s, base))
        if trial % 2:
            prog = _with_modes(prog, rng)
        cert = C.certify(s, regions, prog)
        if not cert.ok:
            continue
        issued += 1
        for rr, rc in zip(regions, cert.regions, strict=True):
            x = _region_points(prog, s, rr, rc, rng)
            y = C.simulate(prog, x)
            err = y - C.real_forward(s, x)
            assert np.all(err >= rc.err_lo - 1e-9) and np.all(err <= rc.err_hi + 1e-9)
            margin_err = np.delete(err[:, [rr.label]] - err, rr.label, axis=1)  # error of y_l - y_k
            assert np.all(margin_err >= np.delete(rc.margin_error_lo(), rr.label)[None, :] - 1e-9)
            worst = int(np.argmax(np.max(np.abs(err) / rc.bound, axis=1)))
            exact = _exact_real(s, x[worst])
            for o in range(y.shape[1]):
                e = Fraction(float(y[worst, o])) - exact[o]
                assert Fraction(float(rc.err_lo[o])) <= e <= Fraction(float(rc.err_hi[o]))
            if rc.top1_preserved:
                assert np.all(np.argmax(y, axis=1) == rr.label)
    assert issued >= 2  # the test exercised certificates


def test_certificate_refuses_an_accumulator_that_wraps(tmp_path):
    """A conv accumulator one or more integer bits too narrow for the sum's certified range gets
    no certificate (the overflow check names the accumulator)."""
    s, regions = _setup(cnn_onnx(tmp_path / "n.onnx", 3, "MaxPool", c1=4, k=3))
    prog, cert = C.build_program(s, regions, 10, C.uniform_fracs(s, 10))
    assert cert.ok
    conv = prog.stages[0]
    assert isinstance(conv, C.LinearStage)
    acc = conv.dense.accum_t
    hi = max(float(np.max(np.abs(rr.ranges[conv.node].hi))) for rr in regions)
    narrow_i = max(1, int(np.floor(np.log2(hi))))  # hi >= 2^(I-1): out of range
    narrow = HlsType(acc.frac + narrow_i, narrow_i, True, acc.quant, "WRAP")
    d = conv.dense
    bad = replace(
        conv, dense=C.DenseStage(d.name, d.weight, d.bias, d.weight_t, d.bias_t, narrow, d.result_t)
    )
    prog2 = replace(prog, stages=[bad, *prog.stages[1:]])
    cert2 = C.certify(s, regions, prog2)
    assert not cert2.ok and any("accumulator" in o for o in cert2.overflow)


@pytest.mark.parametrize(
    "extra,words",
    [("Sigmoid", "activation sigmoid"), ("residual", "must end with a Dense"), ("padpool", "padded")],
)
def test_unsupported_layers_are_refused_in_one_line(tmp_path, extra, words):
    path = tmp_path / "n.onnx"
    if extra == "Sigmoid":
        cnn_onnx(path, 0, extra="Sigmoid")
    else:
        cnn_onnx(path, 0)
        m = onnx.load(str(path))
        if extra == "residual":  # y = Gemm(...) + Gemm(...) on the same input: a DAG
            g2 = helper.make_node("Gemm", ["a1", "w2", "b2"], ["y2"], transB=1)
            m.graph.node[-1].output[0] = "y1"
            m.graph.node.extend([g2, helper.make_node("Add", ["y1", "y2"], ["y"])])
        else:
            pool = m.graph.node[2]
            for a in pool.attribute:
                if a.name == "pads":
                    a.CopyFrom(helper.make_attribute("pads", [1, 1, 1, 1]))
            # the padded pool's output is larger: 7x7 conv output 6x6 -> (6+2-2)/2+1 = 4
            w1 = numpy_helper.to_array(m.graph.initializer[2])
            new = np.zeros((w1.shape[0], 3 * 16), dtype=np.float32)
            m.graph.initializer[2].CopyFrom(numpy_helper.from_array(new, "w1"))
        onnx.save(m, str(path))
    net, _ = load_model(path)
    with pytest.raises(UnsupportedError) as exc:
        C.structure(net)
    msg = str(exc.value)
    assert words in msg and "\n" not in msg
    res = subprocess.run(
        [sys.executable, "-m", "aster_ext.cli", "quantize", str(path), "--backend", "hls4ml",
         "--error", "0.1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 2
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_search_meets_target_on_a_tiny_cnn(tmp_path):
    s, regions = _setup(cnn_onnx(tmp_path / "n.onnx", 4, "AveragePool", c_in=2))
    res = C.choose_types(s, regions, 0.02)
    assert res.certificate.ok and res.certificate.max_bound <= 0.02
    again = C.certify(s, regions, res.program)
    assert again.ok and again.max_bound == res.certificate.max_bound
    f = next(
        f for f in range(0, 40) if C.build_program(s, regions, f, C.uniform_fracs(s, f))[1].max_bound <= 0.02
    )
    uni = C.build_program(s, regions, f, C.uniform_fracs(s, f))[0]
    assert C.program_cost(res.program)["cost"] <= C.program_cost(uni)["cost"]


# --- through hls4ml itself (slow) -------------------------------------------------------------


def _build_hls4ml(
    path: Path, program: C.CnnProgram, out: Path, io_type: str = "io_parallel", strategy: str = "Latency"
):
    from aster_ext.hls4ml_backend import cnn_project as CP
    from aster_ext.hls4ml_backend import project as P

    model = CP.cleaned_model(path)
    cfg = CP.cnn_config(model, program, strategy, 1)
    hm = P.convert(model, cfg, out, io_type, strategy, 1)
    built = CP.read_back(hm, program, model)
    P.compile_model(hm)
    return hm, built


def _bit_exact_inputs(s: C.CnnStructure, rng) -> np.ndarray:
    """150 random points of [0, 1]^d, 50 of its corners and 50 points of [-3, 3]^d (out of range)."""
    d = s.input_perm.size
    return np.concatenate(
        [rng.random((150, d)), (rng.random((50, d)) < 0.5).astype(float), rng.uniform(-3, 3, (50, d))]
    )


def _assert_bit_exact(hm, built: C.CnnProgram, x: np.ndarray) -> np.ndarray:
    """hls_model.predict equals our simulator bit for bit on ``x``; returns hls4ml's outputs."""
    from aster_ext.hls4ml_backend.cnn_run import predict

    y_h = predict(hm, built, x)
    y_s = C.simulate(built, x)
    assert np.array_equal(y_h, y_s), int(np.sum(np.any(y_h != y_s, axis=1)))
    return y_h


@pytest.mark.slow
@needs_hls4ml
@pytest.mark.parametrize(
    "pool,seed,pool_k", [("MaxPool", 5, 2), ("AveragePool", 6, 2), ("AveragePool", 7, 3)]
)
def test_simulator_bit_exact_with_hls4ml_cnn(tmp_path, pool, seed, pool_k):
    """Types with bits dropped at every cast (narrow accumulators, pool accum below its input's F),
    random TRN/RND and WRAP/SAT modes, some of them overflowing: our simulator equals
    hls_model.predict bit for bit on random, corner and out-of-range inputs."""

    rng = np.random.default_rng(seed)
    path = cnn_onnx(tmp_path / "n.onnx", seed, pool, c_in=2, conv_pad=1, hw=8, pool_k=pool_k)
    s, regions = _setup(path)
    prog, _ = C.build_program(s, regions, 7, _random_fracs(rng, s, 7))
    prog = _with_modes(prog, rng)
    # the pool accumulator: 2 fractional bits below its input's (every addition rounds) and one
    # integer bit short (WRAP/SAT really act); 3x3 average pooling divides by 9
    pool_st = next(st for st in prog.stages if isinstance(st, C.PoolStage))
    a, f_in = pool_st.accum_t, prog.stages[1].result_t.frac
    pool_st.accum_t = HlsType(a.int_bits - 1 + f_in - 2, a.int_bits - 1, True, a.quant, a.overflow)
    hm, built = _build_hls4ml(path, prog, tmp_path / "prj")
    assert built.stages[2].accum_t == pool_st.accum_t  # hls4ml holds the types we asked for
    x = _bit_exact_inputs(s, rng)
    _assert_bit_exact(hm, built, x)


@pytest.mark.slow
@needs_hls4ml
@pytest.mark.parametrize("mode", [(), ("--io-type", "io_stream", "--strategy", "Resource")])
def test_quantize_and_verify_benchmark_cnn_one_region(tmp_path, shared_dir, mode):
    """Convnet_avgpool (the AveragePool rewrite for qonnx) on its first region, through the CLI
    (io_parallel + Latency, and io_stream + Resource):
    quantize certifies ε on the logits and top-1, verify runs hls4ml's compiled model on random,
    corner and adversarial inputs: bit-exact, no violation."""
    src = shared_dir / "benchmarks" / "cnn"
    spec = json.loads((src / "Convnet_avgpool.spec.json").read_text())
    spec["regions"] = spec["regions"][:1]
    spec_path = tmp_path / "one_region.spec.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "aster_ext.cli"]
    res = subprocess.run(
        [*cmd, "quantize", str(src / "Convnet_avgpool.onnx"), "--backend", "hls4ml", "--error", "0.05",
         "--spec", str(spec_path), "--out", str(out), "--quiet", *mode],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["certified_error"] <= 0.05 and report["regions"][0]["top1_preserved"]
    assert (report["io_type"], report["strategy"]) == (
        ("io_stream", "Resource") if mode else ("io_parallel", "Latency")
    )
    assert (out / "hls4ml_config.yml").is_file()
    res = subprocess.run(
        [*cmd, "verify", str(out), "--samples", "200", "--search-iters", "15"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    v = json.loads((out / "verify.json").read_text())
    assert v["bit_exact"] and v["violations"] == 0 and v["label_violations"] == 0
    assert 0 < v["max_observed_error"] <= report["certified_error"]


def test_cnn_options_not_modelled_are_refused(tmp_path):
    """An io type / strategy not modelled for CNNs (here hls4ml's Resource_Unrolled): one line, no
    output."""
    from aster_ext.errors import UserError
    from aster_ext.hls4ml_backend import Hls4mlOptions, quantize_hls4ml

    path = cnn_onnx(tmp_path / "n.onnx", 0)
    with pytest.raises(UserError, match="io_parallel/io_stream") as exc:
        quantize_hls4ml(path, Hls4mlOptions(error=0.1, strategy="Resource_Unrolled"), tmp_path / "out")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("seed", [0, 1])
def test_stream_certificate_is_sound_under_attack(tmp_path, pool, seed):
    """io_stream pooling (every window value cast to accum_t, then max / tree sum): random types and
    modes, some pool accumulators narrower than their inputs; where a certificate is issued no
    random, corner or adversarial input exceeds it."""
    rng = np.random.default_rng(200 + seed)
    s, regions = _setup(cnn_onnx(tmp_path / "n.onnx", seed, pool, c_in=2, conv_pad=1, hw=8, pool_k=3))
    issued = 0
    for trial in range(8):
        base = int(rng.integers(5, 12))
        prog, _ = C.build_program(s, regions, base, _random_fracs(rng, s, base), stream=True)
        prog = _with_modes(prog, rng) if trial % 2 else prog
        assert prog.stream
        cert = C.certify(s, regions, prog)
        if not cert.ok:
            continue
        issued += 1
        for rr, rc in zip(regions, cert.regions, strict=True):
            x = _region_points(prog, s, rr, rc, rng)
            err = C.simulate(prog, x) - C.real_forward(s, x)
            assert np.all(err >= rc.err_lo - 1e-9) and np.all(err <= rc.err_hi + 1e-9)
    assert issued >= 2


@pytest.mark.slow
@needs_hls4ml
def test_simulator_bit_exact_with_hls4ml_residual(tmp_path):
    """The two-block residual net (merge Adds of a conv with a 1x1 shortcut conv and with a ReLU
    output; padded, strided and pointwise convs) with random narrow types and modes: our simulator
    equals hls_model.predict bit for bit, and hls4ml holds the Add types we asked for."""

    rng = np.random.default_rng(11)
    path = residual_onnx(tmp_path / "r.onnx", 11)
    s, regions = _setup(path)
    prog, _ = C.build_program(s, regions, 6, _random_fracs(rng, s, 6))
    prog = _with_modes(prog, rng)
    adds = [st for st in prog.stages if isinstance(st, C.AddStage)]
    # the first Add too narrow for its sums (its overflow mode acts), the second 2 fractional
    # bits below its inputs' (its rounding mode acts)
    x = _bit_exact_inputs(s, rng)
    upto = replace(prog, stages=prog.stages[: prog.stages.index(adds[0]) + 1])
    big = float(np.max(np.abs(C.simulate(upto, x))))  # the implemented sums' largest magnitude
    t0, t1 = adds[0].result_t, adds[1].result_t
    i0 = int(np.floor(np.log2(big)))  # 2^(i0 - 1) < big: some sums overflow
    f_in = max(st.result_t.frac for st in prog.stages if st.node in adds[1].src)
    adds[0].result_t = replace(t0, width=t0.frac + i0, int_bits=i0)
    adds[1].result_t = replace(t1, width=t1.int_bits + f_in - 2, quant="RND")
    hm, built = _build_hls4ml(path, prog, tmp_path / "prj")
    got = {st.node: st.result_t for st in built.stages if isinstance(st, C.AddStage)}
    assert got == {st.node: st.result_t for st in adds}
    y_h = _assert_bit_exact(hm, built, x)
    # the narrow Adds change the outputs (so the test sees their overflow and rounding)
    for k, t in ((0, t0), (1, t1)):
        wide = replace(
            built, stages=[replace(st, result_t=t) if st.node == adds[k].node else st for st in built.stages]
        )
        assert not np.array_equal(C.simulate(wide, x), y_h)


@pytest.mark.slow
@needs_hls4ml
def test_simulator_bit_exact_with_hls4ml_nhwc(tmp_path):
    """A channels-last ONNX input behind a Transpose (as cifar10_small; Conv without pads/group
    attributes, symbolic batch): qonnx removes both Transposes, hls4ml builds no Transpose layer
    and takes the inputs in the ONNX input's order; with random narrow types and modes our
    simulator equals hls_model.predict bit for bit."""

    rng = np.random.default_rng(12)
    path = nhwc_onnx(tmp_path / "n.onnx", 12)
    s, regions = _setup(path)
    prog, _ = C.build_program(s, regions, 6, _random_fracs(rng, s, 6))
    prog = _with_modes(prog, rng)
    hm, built = _build_hls4ml(path, prog, tmp_path / "prj")
    assert not any(ly.class_name == "Transpose" for ly in hm.get_layers())
    x = _bit_exact_inputs(s, rng)
    _assert_bit_exact(hm, built, x)


@pytest.mark.slow
@needs_hls4ml
@pytest.mark.parametrize(
    "io_type,strategy,net,seed",
    [("io_stream", "Latency", "AveragePool", 8), ("io_stream", "Latency", "MaxPool", 9),
     ("io_parallel", "Resource", "AveragePool", 7), ("io_stream", "Resource", "residual", 11)],
)  # fmt: skip
def test_simulator_bit_exact_with_hls4ml_stream_resource(tmp_path, io_type, strategy, net, seed):
    """io_stream (line-buffer conv and pooling, ZeroPadding2D and Clone copies, the input
    Transpose) and Resource (transposed weights, its own accumulation order): with random narrow
    types and modes (a 3x3 average pool whose accumulator drops 2 bits and lacks an integer bit)
    our simulator equals hls_model.predict bit for bit on random, corner and out-of-range inputs."""

    rng = np.random.default_rng(seed)
    if net == "residual":
        path = residual_onnx(tmp_path / "n.onnx", seed)
    else:
        path = cnn_onnx(tmp_path / "n.onnx", seed, net, c_in=2, conv_pad=1, hw=8, pool_k=3)
    s, regions = _setup(path)
    stream = io_type == "io_stream"
    prog, _ = C.build_program(s, regions, 7, _random_fracs(rng, s, 7), stream=stream)
    prog = _with_modes(prog, rng)
    for st in prog.stages:
        if isinstance(st, C.PoolStage):
            a, f_in = st.accum_t, prog.stages[1].result_t.frac
            ovf = "WRAP" if net == "MaxPool" else a.overflow  # window values that wrap: stream != parallel
            st.accum_t = HlsType(a.int_bits - 1 + f_in - 2, a.int_bits - 1, True, a.quant, ovf)
    hm, built = _build_hls4ml(path, prog, tmp_path / "prj", io_type, strategy)
    assert built.stream == stream
    x = _bit_exact_inputs(s, rng)
    y_h = _assert_bit_exact(hm, built, x)
    if net == "MaxPool":  # max of the wrapped values (stream) != the wrapped max (io_parallel)
        assert not np.array_equal(C.simulate(replace(built, stream=False), x), y_h)


@pytest.mark.parametrize("quant,overflow", [("TRN", "WRAP"), ("RND", "WRAP"), ("TRN", "SAT"), ("RND", "SAT")])
def test_split_products_equal_exact_integers(monkeypatch, quant, overflow):
    """Products wider than int64 (33-bit inputs x 31-bit weights) quantised into accum_t: the split
    int64 evaluation equals the exact Python-integer one, incl. negative values, ties of RND and
    narrow accumulators that wrap or saturate."""
    from aster_ext.hls4ml_backend import simulate as S
    from aster_ext.hls4ml_backend.program import DenseStage

    rng = np.random.default_rng(7)
    w = rng.uniform(-1.5, 1.5, (5, 9))
    w[0, :3] = [-1.5, 1.5, -(2.0**-30)]
    # result types: narrow, and wider than the products (72 fractional bits, like hls4ml's 'auto'), whose
    # cast from the int64 accumulator leaves int64 (ACAS Xu's 'auto' results wrapped there)
    for acc_i, res_t in [
        (12, HlsType(24, 8, True, quant, overflow)),
        (3, HlsType(24, 8, True, quant, overflow)),
        (3, HlsType(80, 8, True, quant, overflow)),
    ]:
        w_t, b_t = HlsType(32, 2, True, "TRN", "WRAP"), HlsType(40, 8, True, quant, "WRAP")
        acc_t = HlsType(31 + acc_i, acc_i, True, quant, overflow)
        st = DenseStage("d", w, rng.uniform(-1, 1, 5), w_t, b_t, acc_t, res_t)
        x = rng.integers(-(2**32), 2**32, (300, 9), dtype=np.int64)
        x[0], x[1] = 2**32 - 1, -(2**32)
        x[2] = (2**30) * rng.integers(-3, 3, 9)  # products on exact tie points of the quantisation
        assert S._split_bits(x, st, 31 + 30 - 31) > 0
        got = S._dense(x, 31, st)
        monkeypatch.setattr(S, "_split_bits", lambda *a: 0)
        ref = S._dense(x.astype(object), 31, st)
        monkeypatch.undo()
        assert np.array_equal(got.astype(object), ref)
        assert ref.dtype == object and got.dtype == (np.int64 if res_t.width < 62 else object)
