"""GELU, tanh approximation (``gelu_tanh``): rigorous transfer functions against an independent
mpmath reference, ONNX import (opset-20 Gelu(approximate='tanh') and the decomposed patterns
exporters write, plus the erf pattern) against onnxruntime, and the pipeline end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mpmath
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from aster_ext.activations import GeluTanh, build_table, get_activation
from aster_ext.cli import main
from aster_ext.errors import UnsupportedError
from aster_ext.evaluate import evaluate_float64
from aster_ext.frontend.onnx_import import import_model, load_onnx

FIXTURES = Path(__file__).parent / "fixtures"
ACT = get_activation("gelu_tanh")
SQRT_2_PI = math.sqrt(2.0 / math.pi)
HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _prec(x) -> int:
    """Working bits for the tanh formula: 1 + tanh(u) ~ 2 e^(2u) cancels ~2.9|u| bits for u << 0."""
    xf = abs(float(x))
    return 300 + int(3.0 * SQRT_2_PI * (xf + 0.044715 * xf**3))


def ref(x) -> mpmath.mpf:
    """0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))), the ONNX formula, at enough bits to survive 1 + tanh."""
    with mpmath.workprec(_prec(x)):
        x = mpmath.mpf(x)
        u = mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf("0.044715") * x**3)
        v = x / 2 * (1 + mpmath.tanh(u))
    return v


def dref(x) -> mpmath.mpf:
    """σ' = (1 + tanh u)/2 + x/2 sech²(u) u' (written from the tanh formula, not the library's)."""
    with mpmath.workprec(_prec(x)):
        x = mpmath.mpf(x)
        c, k = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")
        u = c * (x + k * x**3)
        v = (1 + mpmath.tanh(u)) / 2 + x / 2 * mpmath.sech(u) ** 2 * c * (1 + 3 * k * x**2)
    return v


def d2ref(x) -> mpmath.mpf:
    """σ'' = sech²(u)·u' - x·tanh(u)·sech²(u)·u'² + x/2·sech²(u)·u'' (from the tanh formula)."""
    with mpmath.workprec(_prec(x)):
        x = mpmath.mpf(x)
        c, k = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")
        u = c * (x + k * x**3)
        du, d2u, s2 = c * (1 + 3 * k * x**2), 6 * c * k * x, mpmath.sech(u) ** 2
        v = s2 * du - x * mpmath.tanh(u) * s2 * du**2 + x / 2 * s2 * d2u
    return v


def _mp(a) -> mpmath.mpf:
    """An exact arb endpoint as an mpf (exactly: the mantissa is converted at its own length)."""
    man, exp = a.man_exp()
    with mpmath.workprec(int(man).bit_length() + 8):
        return mpmath.ldexp(mpmath.mpf(int(man)), int(exp))


POINTS = sorted(
    {float(v) for v in np.linspace(-20, 20, 401)}
    | {-60.0, -33.3, -8.3, -1.4185, -0.7525, -1e-8, 0.0, 5e-9, 0.7525, 1.4185, 7.77, 33.3, 60.0}
)


# --------------------------------------------------------------------------------------
# values and shape
# --------------------------------------------------------------------------------------


def test_registered_and_named() -> None:
    from aster_ext.ir import ACTIVATIONS

    assert "gelu_tanh" in ACTIVATIONS and isinstance(ACT, GeluTanh) and ACT.kind == "table"


def test_values_against_reference() -> None:
    """eval_mp to 2^-120 relative, eval_float to 1e-14 (absolute + relative), at many points."""
    x = np.array(POINTS)
    yf = ACT.eval_float(x)
    for xi, yi in zip(POINTS, yf, strict=True):
        r = ref(xi)
        assert abs(ACT.eval_mp(xi) - r) <= mpmath.mpf(2) ** -120 * abs(r) + mpmath.mpf(2) ** -1000
        assert abs(float(yi) - float(r)) <= 1e-14 * (1 + abs(float(r))), xi
        # numpy's tanh formula (the ONNX definition), where it does not cancel
        if xi > -5:
            onnx_formula = 0.5 * xi * (1 + math.tanh(SQRT_2_PI * (xi + 0.044715 * xi**3)))
            assert abs(onnx_formula - float(r)) <= 1e-14 * (1 + abs(float(r)))


def test_arb_enclosures_contain_value_and_derivative() -> None:
    from flint import arb

    from aster_ext.activations._arb import working_precision

    with working_precision():
        for xi in POINTS[::3]:
            for rad in (0.0, 2.0**-30, 0.25):
                ball = arb(xi).union(arb(xi + rad)) if rad else arb(xi)
                f, d = ACT.f_arb(ball), ACT.df_arb(ball)
                assert f.is_finite() and d.is_finite()
                for p in (xi, xi + rad / 2, xi + rad):
                    fv, dv = ref(p), dref(p)
                    assert _mp(f.lower()) <= fv <= _mp(f.upper()), (xi, rad, p)
                    assert _mp(d.lower()) <= dv <= _mp(d.upper()), (xi, rad, p)


def test_extreme_arguments_stay_finite() -> None:
    for lo, hi in ((-1e300, -1e300), (-1e300, 1e300), (-1e3, 1e3), (1e100, 1e300), (-1e200, -1e100)):
        ylo, yhi = ACT.image(lo, hi)
        smin, smax = ACT.slope(lo, hi)
        al, bl, au, bu = ACT.relax(lo, hi)
        assert all(np.isfinite(v) for v in (ylo, yhi, smin, smax, al, bl, au, bu))
        assert ylo <= yhi and smin <= smax
        assert yhi >= (hi if hi > 0 else -1e-300) and ylo <= (lo if lo > 0 else 0.0)
        if lo < -1 and hi > 0:
            assert ylo <= -0.1700407 and smin <= -0.128993 and smax >= 1.128993


def test_structure_encloses_inflection_and_minimum() -> None:
    """Breaks are tight enclosures of the zeros of σ'' (±x_i), critical of the zero of σ'."""
    st_ = ACT.structure
    (a1, a2), (b1, b2) = st_.breaks
    assert st_.curvature == (-1, 1, -1) and (a1, a2) == (-b2, -b1)
    with mpmath.workprec(200):
        xi = mpmath.findroot(d2ref, (1.40, 1.45), solver="anderson")
        assert abs(mpmath.diff(dref, xi, 1) - d2ref(xi)) < 1e-40  # the closed form is σ''
        xc = mpmath.findroot(dref, (-0.8, -0.7), solver="anderson")
    assert b1 <= xi <= b2 and b2 - b1 <= 4e-16 * 2
    ((c1, c2),) = st_.critical
    assert c1 <= xc <= c2 and c2 - c1 <= 2e-16
    # the curvature signs hold on each side (sampled)
    for x in (-6.0, -2.0, -1.43):
        assert d2ref(x) < 0
    for x in (-1.41, -0.5, 0.0, 1.0, 1.41):
        assert d2ref(x) > 0
    for x in (1.43, 3.0, 6.0):
        assert d2ref(x) < 0
    # the global minimum is the image's lower end, tight to float64
    gmin = float(ref(xc))
    lo, hi = ACT.image(-5.0, 5.0)
    assert lo[()] <= gmin <= lo[()] + 1e-15 and hi[()] >= float(ref(5.0))
    smin, smax = ACT.slope(-5.0, 5.0)
    assert smin[()] <= float(dref(-xi)) <= smin[()] + 1e-15
    assert smax[()] - 1e-15 <= float(dref(xi)) <= smax[()]


def _interval():
    f = st.one_of(
        st.floats(-6, 6), st.floats(-40, 40), st.sampled_from([-1.4185040087908284, -0.75246, 1.41850])
    )
    return st.tuples(f, f).map(lambda t: (min(t), max(t)))


@HYP
@given(iv=_interval(), fr=st.lists(st.floats(0, 1), min_size=8, max_size=8))
def test_image_slope_relax_sound(iv, fr) -> None:
    """Sampled points of [l, u]: σ(x) in image, secant slopes in slope set, σ between the lines."""
    lo, hi = iv
    pts = sorted({lo, hi, *(min(max(lo + f * (hi - lo), lo), hi) for f in fr)})
    pts += [c for pair in ACT.structure.critical + ACT.structure.breaks for c in pair if lo <= c <= hi]
    ylo, yhi = (float(v) for v in ACT.image(lo, hi))
    smin, smax = (float(v) for v in ACT.slope(lo, hi))
    al, bl, au, bu = (float(v) for v in ACT.relax(lo, hi))
    vals = {x: ref(x) for x in pts}
    with mpmath.workprec(300):  # exact for the line evaluations (products of doubles)
        for x, v in vals.items():
            assert ylo <= v <= yhi, (lo, hi, x)
            xm = mpmath.mpf(x)
            low, high = mpmath.mpf(al) * xm + mpmath.mpf(bl), mpmath.mpf(au) * xm + mpmath.mpf(bu)
            assert low <= v <= high, (lo, hi, x)
            assert smin <= dref(x) <= smax, (lo, hi, x)
        xs = sorted(vals)
        for a, b in zip(xs, xs[1:], strict=False):
            if b - a > 1e-6:
                sec = (vals[b] - vals[a]) / (mpmath.mpf(b) - mpmath.mpf(a))
                assert smin - 1e-60 <= sec <= smax + 1e-60


def test_relax_tight_on_convex_part() -> None:
    """On [-1, 1] (convex) the upper line is the chord."""
    al, bl, au, bu = (float(v) for v in ACT.relax(-1.0, 1.0))
    assert abs(au * -1.0 + bu - float(ref(-1.0))) < 1e-14 and abs(au + bu - float(ref(1.0))) < 1e-14


def test_table_error_bound_every_grid_point() -> None:
    tab = build_table(ACT, -4.0, 3.0, 7, 12, 6)
    t_lo, t_hi = tab.grid_range
    ts = np.arange(t_lo, t_hi + 1, dtype=np.int64)
    worst = 0.0
    for t, y in zip(ts, tab.apply(ts), strict=True):
        e = mpmath.mpf(int(y)) / 2**12 - ref(mpmath.mpf(int(t)) / 2**7)
        assert tab.error_lo <= e <= tab.error_hi
        worst = max(worst, abs(float(e)))
    assert worst <= tab.error_bound <= worst + 2.0**-40


# --------------------------------------------------------------------------------------
# ONNX import
# --------------------------------------------------------------------------------------


def _const(name: str, v: float, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(v, dtype=dtype), name)


def _model(act_nodes: list, inits: list, opset: int, n_out: int = 4) -> onnx.ModelProto:
    """x[N,3] -> Gemm -> z -> (activation nodes: z -> y) -> Gemm -> out[N,2]."""
    rng = np.random.default_rng(7)
    w1 = rng.normal(0, 1.2, (3, n_out)).astype(np.float32)
    b1 = rng.normal(0, 0.5, n_out).astype(np.float32)
    w2 = rng.normal(0, 1.0, (n_out, 2)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["z"], name="fc1"), *act_nodes]
    nodes.append(helper.make_node("Gemm", ["y", "w2"], ["out"], name="fc2"))
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"),
        *inits,
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _torchscript_tanh(x: str = "z", y: str = "y", k: float = 0.044715) -> tuple[list, list]:
    """torch.onnx (TorchScript) symbolic of GELU(approximate='tanh'), opset 9..19."""
    nodes = [
        helper.make_node("Mul", [x, x], ["x2"]),
        helper.make_node("Mul", [x, "x2"], ["x3"]),
        helper.make_node("Mul", ["kappa", "x3"], ["kx3"]),
        helper.make_node("Add", [x, "kx3"], ["s"]),
        helper.make_node("Mul", ["beta", "s"], ["inner"]),
        helper.make_node("Tanh", ["inner"], ["th"]),
        helper.make_node("Add", ["one", "th"], ["a"]),
        helper.make_node("Mul", [x, "a"], ["m"]),
        helper.make_node("Mul", ["half", "m"], [y], name="gelu_out"),
    ]
    inits = [_const("kappa", k), _const("beta", SQRT_2_PI), _const("one", 1.0), _const("half", 0.5)]
    return nodes, inits


def _onnxscript_tanh() -> tuple[list, list]:
    """torch.onnx dynamo (onnxscript aten_gelu tanh): Pow, Sqrt(Div(2, pi)) constants, other orders."""
    nodes = [
        helper.make_node("Constant", [], ["three"], value=numpy_helper.from_array(np.array(3.0, np.float32))),
        helper.make_node("Pow", ["z", "three"], ["cubed"]),
        helper.make_node("Mul", ["kappa", "cubed"], ["i1"]),
        helper.make_node("Add", ["z", "i1"], ["i2"]),
        helper.make_node("Div", ["two", "pi"], ["two_pi"]),
        helper.make_node("Sqrt", ["two_pi"], ["c"]),
        helper.make_node("Mul", ["c", "i2"], ["i3"]),
        helper.make_node("Tanh", ["i3"], ["i4"]),
        helper.make_node("Add", ["i4", "one"], ["i5"]),
        helper.make_node("Mul", ["z", "i5"], ["i6"]),
        helper.make_node("Mul", ["half", "i6"], ["y"]),
    ]
    inits = [_const("kappa", 0.044715), _const("two", 2.0), _const("pi", math.pi), _const("one", 1.0)]
    inits.append(_const("half", 0.5))
    return nodes, inits


def _hf_new_gelu() -> tuple[list, list]:
    """HuggingFace NewGELU: 0.5 * x * (1.0 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3.0))))."""
    nodes = [
        helper.make_node("Mul", ["z", "half"], ["hx"]),
        helper.make_node("Pow", ["z", "three"], ["p"]),
        helper.make_node("Mul", ["p", "kappa"], ["kp"]),
        helper.make_node("Add", ["z", "kp"], ["s"]),
        helper.make_node("Mul", ["s", "beta"], ["inner"]),
        helper.make_node("Tanh", ["inner"], ["th"]),
        helper.make_node("Add", ["th", "one"], ["a"]),
        helper.make_node("Mul", ["hx", "a"], ["y"]),
    ]
    inits = [_const("half", 0.5), _const("three", 3.0), _const("kappa", 0.044715), _const("beta", SQRT_2_PI)]
    inits.append(_const("one", 1.0))
    return nodes, inits


def _fast_gelu() -> tuple[list, list]:
    """HF FastGELU: 0.5 * x * (1 + tanh(x * 0.7978845608 * (1 + 0.044715 * x * x))), with Sub/Div/Neg."""
    nodes = [
        helper.make_node("Mul", ["z", "c"], ["xc"]),
        helper.make_node("Mul", ["kappa", "z"], ["kx"]),
        helper.make_node("Mul", ["kx", "z"], ["kxx"]),
        helper.make_node("Neg", ["kxx"], ["nkxx"]),
        helper.make_node("Sub", ["one", "nkxx"], ["w"]),
        helper.make_node("Mul", ["xc", "w"], ["inner"]),
        helper.make_node("Tanh", ["inner"], ["th"]),
        helper.make_node("Add", ["one", "th"], ["a"]),
        helper.make_node("Mul", ["z", "a"], ["m"]),
        helper.make_node("Div", ["m", "two"], ["y"]),
    ]
    inits = [_const("c", 0.7978845608), _const("kappa", 0.044715), _const("one", 1.0), _const("two", 2.0)]
    return nodes, inits


def _torchscript_erf() -> tuple[list, list]:
    """torch.onnx (TorchScript) symbolic of GELU(): x * (Erf(x / √2) + 1) * 0.5."""
    nodes = [
        helper.make_node("Div", ["z", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["z", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    return nodes, [_const("sqrt2", math.sqrt(2.0)), _const("one", 1.0), _const("half", 0.5)]


def _acts(net) -> list[str]:
    return [op.attrs["fn"] for op in net.ops() if op.kind == "act"]


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.astype(np.float32)})[0].astype(np.float64)


def _check_against_ort(model: onnx.ModelProto, fn: str):
    net = import_model(model)
    assert _acts(net) == [fn]
    assert [op.kind for op in net.ops()] == ["input", "affine", "act", "affine"]
    x = np.random.default_rng(1).uniform(-3, 3, (300, 3))
    xf = x.astype(np.float32).astype(np.float64)
    y = evaluate_float64(net, xf)
    y_ort = _ort(model, x)
    np.testing.assert_allclose(y, y_ort, atol=2e-5, rtol=1e-5)
    return net


def test_opset20_gelu_tanh_against_onnxruntime() -> None:
    node = helper.make_node("Gelu", ["z"], ["y"], name="g", approximate="tanh")
    model = _model([node], [], opset=20)
    net = _check_against_ort(model, "gelu_tanh")
    assert "pattern" not in net.reference
    # approximate='none' stays the erf GELU
    node = helper.make_node("Gelu", ["z"], ["y"], name="g")
    _check_against_ort(_model([node], [], opset=20), "gelu")


def test_opset20_gelu_unknown_approximation_is_refused() -> None:
    node = helper.make_node("Gelu", ["z"], ["y"], name="g", approximate="sigmoid")
    graph = _model([helper.make_node("Gelu", ["z"], ["y"], name="g")], [], opset=20).graph
    graph.node[1].CopyFrom(node)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    with pytest.raises(UnsupportedError, match="approximate='sigmoid' is not supported"):
        import_model(model)


@pytest.mark.parametrize(
    "build, fn",
    [
        (_torchscript_tanh, "gelu_tanh"),
        (_onnxscript_tanh, "gelu_tanh"),
        (_hf_new_gelu, "gelu_tanh"),
        (_fast_gelu, "gelu_tanh"),
        (_torchscript_erf, "gelu"),
    ],
    ids=["torchscript", "onnxscript", "hf_new_gelu", "fast_gelu", "erf"],
)
@pytest.mark.parametrize("opset", [13, 17])
def test_decomposed_patterns_against_onnxruntime(build, fn: str, opset: int) -> None:
    nodes, inits = build()
    net = _check_against_ort(_model(nodes, inits, opset=opset), fn)
    assert "GELU pattern(s) read as Gelu" in net.reference


def test_pattern_after_a_scalar_shift_and_twice() -> None:
    """x = z*2 + 0.5 (used by the pattern only) and two patterns in one graph."""
    n1, i1 = _torchscript_tanh(x="zs", y="g1")
    n2, i2 = _torchscript_tanh(x="g1", y="y")
    for n in n2:  # rename the second pattern's intermediates
        n.input[:] = [t if t in ("g1", "kappa", "beta", "one", "half") else f"{t}_2" for t in n.input]
        n.output[:] = [t if t == "y" else f"{t}_2" for t in n.output]
        n.name = f"{n.name}_2" if n.name else ""
    pre = [
        helper.make_node("Mul", ["z", "two"], ["z2x"]),
        helper.make_node("Add", ["z2x", "shift"], ["zs"]),
    ]
    model = _model(pre + n1 + n2, [*i1, _const("two", 2.0), _const("shift", 0.5)], opset=17)
    net = import_model(model)
    assert _acts(net) == ["gelu_tanh", "gelu_tanh"]
    x = np.random.default_rng(2).uniform(-2, 2, (200, 3))
    y = evaluate_float64(net, x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(y, _ort(model, x), atol=5e-5, rtol=1e-5)
    assert "2 decomposed tanh-GELU" in net.reference


def test_pattern_with_wrong_constant_is_left_alone() -> None:
    nodes, inits = _torchscript_tanh(k=0.05)
    with pytest.raises(UnsupportedError, match="multiplication of two data tensors is not supported"):
        import_model(_model(nodes, inits, opset=17))
    nodes, inits = _onnxscript_tanh()
    inits[0] = _const("kappa", 0.0447)
    with pytest.raises(UnsupportedError, match="operator Pow is not supported"):
        import_model(_model(nodes, inits, opset=17))
    nodes, inits = _torchscript_erf()
    inits[0] = _const("sqrt2", 1.5)
    with pytest.raises(UnsupportedError, match="operator Erf is not supported"):
        import_model(_model(nodes, inits, opset=17))


def test_pattern_with_shared_intermediate_is_left_alone() -> None:
    """An intermediate also used outside the pattern (here: added to the output) blocks the fusion."""
    nodes, inits = _torchscript_tanh(y="g")
    nodes.append(helper.make_node("Add", ["g", "th"], ["y"]))
    with pytest.raises(UnsupportedError, match="multiplication of two data tensors"):
        import_model(_model(nodes, inits, opset=17))


# --------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------


def test_fixture_is_the_opset20_node() -> None:
    model = onnx.load(str(FIXTURES / "mlp_gelu_tanh.onnx"))
    gelus = [n for n in model.graph.node if n.op_type == "Gelu"]
    assert len(gelus) == 2
    assert all(
        helper.get_attribute_value(a) == b"tanh"
        for n in gelus
        for a in n.attribute
        if a.name == "approximate"
    )
    assert _acts(load_onnx(FIXTURES / "mlp_gelu_tanh.onnx")) == ["gelu_tanh", "gelu_tanh"]


def _decomposed_fixture(path: Path) -> None:
    """The gelu_tanh fixture with each Gelu node replaced by the TorchScript pattern (opset 17)."""
    model = onnx.load(str(FIXTURES / "mlp_gelu_tanh.onnx"))
    nodes, inits = [], []
    for n in model.graph.node:
        if n.op_type != "Gelu":
            nodes.append(n)
            continue
        pat, pinit = _torchscript_tanh(x=n.input[0], y=n.output[0])
        tag = n.output[0]
        names = {t for p in pat for t in p.output} | {i.name for i in pinit}
        for j, p in enumerate(pat):
            p.input[:] = [f"{tag}_{t}" if t in names and t != n.output[0] else t for t in p.input]
            p.output[:] = [f"{tag}_{t}" if t != n.output[0] else t for t in p.output]
            p.name = f"{tag}_{j}_{p.op_type}"
        for i in pinit:
            i.name = f"{tag}_{i.name}"
        nodes += pat
        inits += pinit
    graph = helper.make_graph(
        nodes,
        "decomposed",
        list(model.graph.input),
        list(model.graph.output),
        [*model.graph.initializer, *inits],
    )
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out.ir_version = 9
    onnx.checker.check_model(out)
    onnx.save(out, str(path))


@pytest.mark.slow
def test_decomposed_fixture_quantizes_like_the_opset20_one(tmp_path: Path) -> None:
    """Same IR -> same certified bound; verify (exact reference, 0 violations) on the decomposed file."""
    dec = tmp_path / "mlp_gelu_tanh.onnx"
    _decomposed_fixture(dec)
    spec = (FIXTURES / "mlp_gelu_tanh.spec.json").read_text()
    (tmp_path / "mlp_gelu_tanh.spec.json").write_text(spec)
    x = np.random.default_rng(3).uniform(-1.5, 1.5, (100, 2)).astype(np.float32)
    s1 = ort.InferenceSession(str(dec), providers=["CPUExecutionProvider"])
    s2 = ort.InferenceSession(str(FIXTURES / "mlp_gelu_tanh.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s1.run(None, {"x": x})[0], s2.run(None, {"x": x})[0], atol=1e-5)
    out = {}
    for key, model in (("dec", dec), ("node", FIXTURES / "mlp_gelu_tanh.onnx")):
        out[key] = tmp_path / f"out_{key}"
        assert main(["quantize", str(model), "--error", "1e-2", "--out", str(out[key]), "--quiet"]) == 0
    r1 = json.loads((out["dec"] / "report.json").read_text())
    r2 = json.loads((out["node"] / "report.json").read_text())
    assert r1["certified_error"] == r2["certified_error"] <= 1e-2
    assert [d["activation"] for d in r1["activation_impls"]] == ["gelu_tanh", "gelu_tanh"]
    args = ["verify", str(out["dec"]), "--samples", "300", "--search-iters", "20", "--no-cpp", "--quiet"]
    assert main(args) == 0
    v = json.loads((out["dec"] / "verify.json").read_text())
    assert v["violations"] == 0 and 0 < v["max_observed_error"] <= r1["certified_error"]
