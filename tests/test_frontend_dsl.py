"""Aster Scala DSL: parsing all benchmark files, agreement with the ONNX copies, export round trips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.errors import UnsupportedError, UserError
from aster_ext.evaluate import evaluate_float64
from aster_ext.frontend import export_scala, load_model, load_onnx, load_scala
from aster_ext.frontend.scala_dsl import scala_to_network
from aster_ext.ir import DenseLayer, dense_chain
from aster_ext.spec import load_spec, spec_from_bounds

from .test_frontend_onnx import ASTER, box_samples

PARSEABLE = [n for n in ASTER if n != "VertCASVer1"]

# Largest |y_dsl - y_onnx| / max|y| seen on 1000 box samples was 7.2e-7 (ACC10NN); float32 rounding
# of the decimal weights is the only difference (checked exactly below).
SCALA_VS_ONNX_REL_TOL = 2e-6


def aster_dir(shared_dir: Path) -> Path:
    return shared_dir / "benchmarks" / "aster"


@pytest.mark.parametrize("name", PARSEABLE)
def test_scala_matches_onnx(shared_dir: Path, name: str) -> None:
    net, spec = load_scala(aster_dir(shared_dir) / f"{name}.scala")
    onnx_net = load_onnx(aster_dir(shared_dir) / f"{name}.onnx")
    json_spec = load_spec(aster_dir(shared_dir) / f"{name}.spec.json")
    assert net.reference == f"DSL decimals of {name}.scala (exact)"
    assert net.name == name and spec.name == name
    # the spec: same targets, bounds = exact decimals rounded outwards (JSON has the nearest doubles)
    assert spec.error_bounds == json_spec.error_bounds
    assert np.all(spec.input_lower <= json_spec.input_lower) and np.all(
        spec.input_upper >= json_spec.input_upper
    )
    assert np.all(
        np.abs(spec.input_lower - json_spec.input_lower) <= np.spacing(np.abs(json_spec.input_lower))
    )
    assert spec.extra["scala_object"] == json_spec.extra["scala_object"]
    assert spec.extra["layers"] == json_spec.extra["layers"]
    for lo, lo_exact in zip(spec.input_lower, spec.extra["input_lower_exact"], strict=True):
        assert Fraction(lo) <= lo_exact
    # the parameters: float32(exact decimal) is exactly the ONNX initializer
    dsl_layers, onnx_layers = dense_chain(net), dense_chain(onnx_net)
    assert [ly.activation for ly in dsl_layers] == [ly.activation for ly in onnx_layers]
    for a, b in zip(dsl_layers, onnx_layers, strict=True):
        assert a.weight_exact is not None and a.bias_exact is not None
        np.testing.assert_array_equal(a.weight.astype(np.float32), b.weight.astype(np.float32))
        np.testing.assert_array_equal(a.bias.astype(np.float32), b.bias.astype(np.float32))
        np.testing.assert_array_equal(a.weight, [[float(q) for q in row] for row in a.weight_exact])
    x = box_samples(json_spec.input_lower, json_spec.input_upper, 200, seed=3)
    y_dsl, y_onnx = evaluate_float64(net, x), evaluate_float64(onnx_net, x)
    rel = float(np.max(np.abs(y_dsl - y_onnx))) / float(np.max(np.abs(y_onnx)))
    assert rel <= SCALA_VS_ONNX_REL_TOL, f"{name}: relative difference {rel:.2e}"


def test_vertcasver1_missing_comma_rejected_with_line(shared_dir: Path) -> None:
    with pytest.raises(UserError) as exc:
        load_scala(aster_dir(shared_dir) / "VertCASVer1.scala")
    msg = str(exc.value)
    assert msg.startswith("VertCASVer1.scala:2178: expected ',' between numbers -0.00328702 and 0.0651457")
    assert "\n" not in msg


def test_vertcasver1_repaired_matches_onnx(shared_dir: Path, tmp_path: Path) -> None:
    text = (aster_dir(shared_dir) / "VertCASVer1.scala").read_text()
    lines = text.split("\n")
    assert "-0.00328702  0.0651457" in lines[2177] and "-0.00939971  0.14868" in lines[2189]
    lines[2177] = lines[2177].replace("-0.00328702  0.0651457", "-0.00328702, 0.0651457")
    with pytest.raises(UserError, match=r"^VertCASVer1.scala:2190: expected ','"):
        scala_to_network("\n".join(lines), "VertCASVer1", "VertCASVer1.scala")
    lines[2189] = lines[2189].replace("-0.00939971  0.14868", "-0.00939971, 0.14868")
    # the file also lacks the closing brace of its object (not listed in the README)
    with pytest.raises(UserError, match=r"expected '\}' closing the object, found 'end of file'"):
        scala_to_network("\n".join(lines), "VertCASVer1")
    net, spec = scala_to_network("\n".join(lines) + "}\n", "VertCASVer1")
    onnx_net = load_onnx(aster_dir(shared_dir) / "VertCASVer1.onnx")
    for a, b in zip(dense_chain(net), dense_chain(onnx_net), strict=True):
        np.testing.assert_array_equal(a.weight.astype(np.float32), b.weight.astype(np.float32))
        np.testing.assert_array_equal(a.bias.astype(np.float32), b.bias.astype(np.float32))


def test_exact_decimals_and_oddities(shared_dir: Path) -> None:
    small, spec = load_scala(aster_dir(shared_dir) / "SmallNN.scala")
    w1 = small.op("layer1").attrs["weight_exact"]
    assert w1[0, 0] == Fraction(1, 10) and w1[1, 1] == Fraction(15, 100)
    assert spec.extra["input_lower_exact"] == [-10, -5]  # integer bounds
    assert [o.kind for o in small.ops()] == ["input", "affine", "act", "affine", "act"]
    inv, _ = load_scala(aster_dir(shared_dir) / "InvPendulumNN.scala")  # exponent notation
    assert inv.op("layer2").attrs["weight_exact"][0, 7] == Fraction(330555729, 10**20)
    assert inv.op("layer2").source.startswith("InvPendulumNN.scala:")
    _, ac6 = load_scala(aster_dir(shared_dir) / "AC6.scala")  # tabs, object name differs
    assert ac6.extra["scala_object"] == "AC6NN" and ac6.name == "AC6"
    _, acc = load_scala(aster_dir(shared_dir) / "ACCNew.scala")  # no commented alternative
    assert acc.error_bounds == [1e-3]
    net, spec = load_model(aster_dir(shared_dir) / "VertCasNN.scala")  # point interval
    assert spec.input_lower[2] == spec.input_upper[2] == 25.0


MINI = """import daisy.lang._
object Mini {{
  def nn1(x: Vector): Vector = {{
    require(lowerBounds(x, List({lo})) && /* comment */ upperBounds(x, List(1, 1)))
    val weights1 = Matrix(List(
      List(0.5, -2.5e-1),
      List(1, 2)))
    val bias1 = Vector(List({bias}))
    val layer1 = {act}(weights1 * {src} + bias1)
    layer1
  }} ensuring(res => res +/- 1e-3)
  // ensuring(res => res +/- 1e-6)
}}
"""


def mini(lo="0, 0", bias="0.1, 0.2", act="relu", src="x") -> str:
    return MINI.format(lo=lo, bias=bias, act=act, src=src)


def test_mini_program() -> None:
    net, spec = scala_to_network(mini(), "mini")
    assert spec.error_bounds == [1e-3, 1e-6]
    assert spec.extra["scala_object"] == "Mini"
    y = evaluate_float64(net, np.array([[1.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(y, [[0.35, 3.2], [0.0, 2.2]])


@pytest.mark.parametrize(
    "text,pattern",
    [
        (mini(bias="0.1 0.2"), r"^mini.scala:8: expected ',' between numbers 0.1 and 0.2"),
        (mini(bias="0.1, -0.2 -3"), r"^mini.scala:8: expected ',' between numbers -0.2 and -3"),
        (mini(bias="0.1, 0.2, 0.3"), r"^mini.scala:9: bias1 has 3 entries but weights1 has 2 rows"),
        (mini(lo="0, 0, 0"), r"^mini.scala:4: 3 lower bounds but 2 upper bounds"),
        (mini(lo="0, 2"), r"^mini.scala:4: inverted range for input 1: lower 2.0 > upper 1.0"),
        (mini(src="layer7"), r"^mini.scala:9: 'layer7' is not defined before use"),
        (
            mini().replace("List(1, 2)))", "List(1)))"),
            r"^mini.scala:5: matrix 'weights1' has rows of different",
        ),
        (mini().replace("require(", "requires("), r"^mini.scala:4: expected 'require'"),
        (mini().replace("val bias1", "val weights1"), r"^mini.scala:8: 'weights1' is defined twice"),
        (
            mini().replace("    layer1\n", "    weights1\n"),
            r"^mini.scala:\d+: the result 'weights1' is not a layer",
        ),
        (mini().replace("0.5,", "0.5#"), r"^mini.scala:6: unexpected character '#'"),
    ],
)
def test_dsl_errors_carry_file_and_line(text: str, pattern: str) -> None:
    with pytest.raises(UserError, match=pattern) as exc:
        scala_to_network(text, "mini")
    assert "\n" not in str(exc.value)


def test_dsl_unsupported_activation() -> None:
    with pytest.raises(UnsupportedError, match=r"^mini.scala:9: activation 'tanh' is not supported"):
        scala_to_network(mini(act="tanh"), "mini")


def test_dsl_dimension_mismatch() -> None:
    more = (
        "\n    val layer2 = linear(weights1 * layer1 + bias1)"
        "\n    val layer3 = linear(weights1 * layer2 + bias1)"
    )
    text = mini().replace(
        "val layer1 = relu(weights1 * x + bias1)", "val layer1 = relu(weights1 * x + bias1)" + more
    )
    scala_to_network(text, "mini")  # 2x2 chains fine
    bad = MINI.replace("List(0.5, -2.5e-1),\n      List(1, 2)", "List(0.5, -2.5e-1, 1)").format(
        lo="0, 0", bias="0.1", act="relu", src="x"
    )
    with pytest.raises(UserError, match="weights1 has 3 columns, x has 2 values"):
        scala_to_network(bad, "mini")


# --------------------------------------------------------------------------------------
# export -> import round trips
# --------------------------------------------------------------------------------------


def assert_same_real_network(a_layers: list[DenseLayer], b_layers: list[DenseLayer]) -> None:
    assert len(a_layers) == len(b_layers)
    for a, b in zip(a_layers, b_layers, strict=True):
        assert a.activation == b.activation
        assert a.exact_weight().shape == b.exact_weight().shape
        assert np.all(a.exact_weight() == b.exact_weight()) and np.all(a.exact_bias() == b.exact_bias())
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)


@pytest.mark.parametrize("name", ["SmallNN", "InvPendulumNN", "ACCNew", "MpcNN", "VertCASVer2", "AC6"])
def test_export_round_trip_of_benchmarks(shared_dir: Path, tmp_path: Path, name: str) -> None:
    net, spec = load_scala(aster_dir(shared_dir) / f"{name}.scala")
    text = export_scala(net, spec, tmp_path / f"{name}.scala")
    net2, spec2 = load_scala(tmp_path / f"{name}.scala")
    assert (tmp_path / f"{name}.scala").read_text() == text
    assert_same_real_network(dense_chain(net), dense_chain(net2))
    assert spec2.error_bounds == spec.error_bounds
    assert spec2.extra["input_lower_exact"] == spec.extra["input_lower_exact"]
    assert spec2.extra["input_upper_exact"] == spec.extra["input_upper_exact"]
    np.testing.assert_array_equal(spec2.input_lower, spec.input_lower)
    assert spec2.extra["scala_object"] == spec.extra["scala_object"]


def test_export_of_onnx_network_is_exact(shared_dir: Path, tmp_path: Path) -> None:
    """float32 weights are written as their full decimal expansion: the real network survives."""
    net, spec = load_model(aster_dir(shared_dir) / "AcrobotNN.onnx")
    assert spec is not None
    net2, spec2 = scala_to_network(export_scala(net, spec), "AcrobotNN")
    assert_same_real_network(dense_chain(net), dense_chain(net2))
    np.testing.assert_array_equal(spec2.input_lower, spec.input_lower)
    np.testing.assert_array_equal(spec2.input_upper, spec.input_upper)
    # repr style: the same doubles, but the re-imported real network is the short decimals
    net3, _ = scala_to_network(export_scala(net, spec, float_style="repr"), "AcrobotNN")
    for a, b in zip(dense_chain(net), dense_chain(net3), strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)


def test_export_rejects_non_decimal_and_non_dense(shared_dir: Path) -> None:
    spec = spec_from_bounds([0.0], [1.0], "third", error_bounds=[1e-3])
    third = DenseLayer(
        "l1", np.array([[1 / 3]]), np.zeros(1), "relu", weight_exact=np.array([[Fraction(1, 3)]])
    )
    with pytest.raises(UserError, match="no finite decimal expansion"):
        export_scala([third], spec)
    tanh_net = load_onnx(shared_dir / "benchmarks" / "external" / "tansig_200_50_onnx.onnx")
    with pytest.raises(UnsupportedError, match="tanh"):
        export_scala(tanh_net, spec_from_bounds([0.0] * 784, [1.0] * 784))


def _decimal_strategy():
    return st.one_of(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.floats(
            min_value=-1e-3, max_value=1e-3, allow_nan=False, allow_infinity=False, allow_subnormal=False
        ),
        st.builds(lambda n, k: Fraction(n, 10**k), st.integers(-(10**12), 10**12), st.integers(0, 30)),
    )


@st.composite
def dense_chains(draw):
    sizes = draw(st.lists(st.integers(1, 4), min_size=2, max_size=5))
    use_exact = draw(st.booleans())
    layers = []
    for k in range(len(sizes) - 1):
        n_in, n_out = sizes[k], sizes[k + 1]
        vals = [draw(_decimal_strategy()) for _ in range(n_out * (n_in + 1))]
        exact = np.array(
            [Fraction(v) if isinstance(v, Fraction) else Fraction(float(v)) for v in vals], dtype=object
        )
        floats = np.array([float(q) for q in exact])
        w, b = floats[: n_out * n_in].reshape(n_out, n_in), floats[n_out * n_in :]
        act = draw(st.sampled_from(["relu", "identity"]))
        if use_exact:
            layers.append(
                DenseLayer(
                    f"l{k}", w, b, act, exact[: n_out * n_in].reshape(n_out, n_in), exact[n_out * n_in :]
                )
            )
        else:
            layers.append(DenseLayer(f"l{k}", w, b, act))
    lo = draw(st.lists(st.floats(-100, 0, allow_nan=False), min_size=sizes[0], max_size=sizes[0]))
    eps = draw(st.lists(st.floats(1e-9, 1.0), min_size=0, max_size=2))
    return layers, spec_from_bounds(lo, [v + 1.5 for v in lo], "rand", error_bounds=eps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_chains())
def test_export_round_trip_random_chains(chain) -> None:
    layers, spec = chain
    net, spec2 = scala_to_network(export_scala(layers, spec), "rand")
    assert_same_real_network(layers, dense_chain(net))
    np.testing.assert_array_equal(spec2.input_lower, spec.input_lower)
    np.testing.assert_array_equal(spec2.input_upper, spec.input_upper)
    assert spec2.error_bounds == spec.error_bounds
