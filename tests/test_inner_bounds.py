"""Inner bounds by gradient search (aster_ext.inner_bounds) as a soundness attack on the range analyses.

Every value the search returns is attained at a real input, so it must lie inside the interval and
the symbolic range of that neuron: a value outside is a soundness bug of the range analysis. The
containment is checked on the exact value (rational affine parts, 128-bit activations) at the
returned points, so float rounding in the search cannot cause or hide a failure.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from aster_ext.frontend import load_model
from aster_ext.inner_bounds import SearchBudget, exact_pre, forward_pre, inner_bounds, neuron_subset
from aster_ext.ir import DenseLayer, dense_chain
from aster_ext.pipeline import allowed_activations
from aster_ext.ranges import ExactParams, interval_ranges
from aster_ext.refined import symbolic_ranges
from aster_ext.verify import REF_MARGIN, real_forward_float
from tests.programs import random_dense_net

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ACTS = [
    "sigmoid",
    "tanh",
    "softplus",
    "elu",
    "leaky_relu",
    "silu",
    "gelu",
    "hard_sigmoid",
    "hard_tanh",
    "relu",
]
BUDGET = SearchBudget(starts=6, steps=40, seed=0)




def check_inner_inside(
    layers: list[DenseLayer], lo: np.ndarray, hi: np.ndarray, budget: SearchBudget
) -> None:
    """Attained (float re-evaluation) and exactly inside the interval and symbolic ranges."""
    ps = [ExactParams.of(layer) for layer in layers]
    iv = interval_ranges(layers, lo, hi, ps)
    sym = symbolic_ranges(layers, lo, hi, ps)
    inner = inner_bounds(layers, lo, hi, budget)
    for li, ib in enumerate(inner):
        assert ib is not None
        nr = ib.neurons
        assert np.all(ib.argmin >= lo) and np.all(ib.argmin <= hi)
        assert np.all(ib.argmax >= lo) and np.all(ib.argmax <= hi)
        # attained: the network evaluated at the returned points reproduces the bounds
        zmin = forward_pre(layers, ib.argmin)[li][np.arange(nr.size), nr]
        zmax = forward_pre(layers, ib.argmax)[li][np.arange(nr.size), nr]
        assert np.allclose(zmin, ib.lo, rtol=1e-12, atol=1e-12)
        assert np.allclose(zmax, ib.hi, rtol=1e-12, atol=1e-12)
        assert np.all(ib.lo <= ib.hi)
        # and the network's last layer output agrees with the independent float reference
        if li == len(layers) - 1:
            assert np.allclose(
                real_forward_float(layers, ib.argmax)[np.arange(nr.size), nr], ib.hi, rtol=1e-12
            )
        for k, j in enumerate(nr):
            for x in (ib.argmin[k], ib.argmax[k]):
                z = exact_pre(layers, li, int(j), x)
                margin = Fraction(REF_MARGIN) * (1 + abs(z))
                for name, r in (("interval", iv[li]), ("symbolic", sym[li])):
                    r_lo, r_hi = Fraction(float(r.pre.lo[j])), Fraction(float(r.pre.hi[j]))
                    assert r_lo - margin <= z <= r_hi + margin, (
                        f"UNSOUND {name} range: layer {li} neuron {j}: z = {float(z)!r} at x = {x.tolist()} "
                        f"outside [{float(r_lo)!r}, {float(r_hi)!r}]"
                    )


@pytest.mark.parametrize("act", ACTS)
def test_inner_bounds_inside_ranges_random(act: str) -> None:
    for seed in range(6):
        rng = np.random.default_rng([seed, ACTS.index(act)])
        widths = [int(rng.integers(2, 6)), int(rng.integers(3, 9)), int(rng.integers(3, 9)), 2]
        layers = random_dense_net(rng, act, widths)
        lo = rng.uniform(-2, 0.5, widths[0])
        hi = lo + rng.uniform(0.05, 3, widths[0])
        check_inner_inside(layers, lo, hi, BUDGET)


def test_inner_bounds_inside_ranges_fixture() -> None:
    net, spec = load_model(FIXTURES / "mlp_silu.onnx")
    layers = dense_chain(net, allowed_activations("refined"))
    check_inner_inside(layers, spec.input_lower, spec.input_upper, SearchBudget(starts=4, steps=30))


def test_search_finds_first_layer_optimum_and_detects_a_shrunk_range() -> None:
    """On the first (affine) layer the exact range is the interval range (attained at corners): the
    search must reach it, so a range shrunk by a tiny amount is caught as unsound."""
    rng = np.random.default_rng(7)
    layers = random_dense_net(rng, "tanh", [12, 20, 10, 3])
    lo = rng.uniform(-1, 0, 12)
    hi = lo + rng.uniform(0.1, 2, 12)
    w, b = layers[0].weight, layers[0].bias
    exact_hi = np.maximum(w * lo, w * hi).sum(axis=1) + b
    exact_lo = np.minimum(w * lo, w * hi).sum(axis=1) + b
    ib = inner_bounds(layers, lo, hi, BUDGET, layer_indices=[0])[0]
    assert np.allclose(ib.hi, exact_hi, rtol=1e-12, atol=1e-12)
    assert np.allclose(ib.lo, exact_lo, rtol=1e-12, atol=1e-12)
    shrunk_hi = exact_hi - 1e-6 * (exact_hi - exact_lo)
    assert np.all(ib.hi > shrunk_hi)


def test_search_beats_random_sampling() -> None:
    """The inner range of every neuron contains the range seen on many uniform samples (up to a
    small relative shortfall): the search is a better reference than sampling."""
    rng = np.random.default_rng(11)
    for act in ("sigmoid", "gelu", "hard_tanh"):
        layers = random_dense_net(rng, act, [6, 16, 16, 4])
        lo, hi = -np.ones(6), np.ones(6)
        inner = inner_bounds(layers, lo, hi, SearchBudget(starts=8, steps=60))
        xs = lo + (hi - lo) * rng.random((20000, 6))
        zs = forward_pre(layers, xs)
        for ib, z in zip(inner, zs, strict=True):
            s_lo, s_hi = z.min(axis=0), z.max(axis=0)
            slack = 1e-3 * (s_hi - s_lo) + 1e-12
            assert np.all(ib.hi >= s_hi - slack), act
            assert np.all(ib.lo <= s_lo + slack), act


def test_neuron_subsampling() -> None:
    rng = np.random.default_rng(3)
    layers = random_dense_net(rng, "sigmoid", [5, 40, 8, 2])
    lo, hi = -np.ones(5), np.ones(5)
    out = inner_bounds(layers, lo, hi, SearchBudget(starts=2, steps=5, max_neurons=10))
    assert out[0].neurons.size == 10 and out[0].subsampled and out[0].n_total == 40
    assert out[1].neurons.size == 8 and not out[1].subsampled
    assert np.array_equal(out[0].neurons, neuron_subset(40, 10, 0, 0))
    assert np.array_equal(out[0].neurons, np.unique(out[0].neurons))
    only = inner_bounds(layers, lo, hi, SearchBudget(starts=2, steps=5), layer_indices=[1])
    assert only[0] is None and only[2] is None and only[1] is not None
    with pytest.raises(ValueError):
        inner_bounds(layers, hi, lo)
