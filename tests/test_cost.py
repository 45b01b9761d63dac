"""Hardware cost from the emitted types: an element-by-element recount, and activation implementations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aster_ext.activations import build_piecewise, build_table, get_activation
from aster_ext.cost import program_cost
from tests.programs import random_program


def _recount_hw(p) -> tuple[int, int, int, int]:
    """hw, multipliers, adders, multiplier operand bits of the dense part by explicit loops
    (independent of cost.py but for the partition into neuron groups and input groups, tested on
    their own)."""
    from aster_ext.codegen.layout import dense_groups, input_groups

    hw = mults = adds = operand = 0
    for li, lp in enumerate(p.layers):
        # a rolled neuron reads x[k] from its input group's array (one type per group); a neuron
        # with one statement per column narrows x[k] to its own format
        elem = p.input_formats(li).width.reshape(-1)
        part_w = np.zeros(lp.n_in, dtype=np.int64)
        for g in input_groups(p, li):
            part_w[g.inputs] = g.width
        kind = {int(j): g.kind for g in dense_groups(lp) for j in g.neurons}
        for j in range(lp.n_out):
            x_w = part_w if kind[j] == "rolled" else elem
            for k in range(lp.n_in):
                hw += int(lp.weight_t.width[j, k]) + int(x_w[k])
                operand += int(lp.weight_t.width[j, k]) + int(x_w[k])
                mults += 1
                if k >= 1:
                    hw += max(int(lp.psum_t.width[j, k - 1]), int(lp.product_t.width[j, k]))
                    adds += 1
            hw += max(int(lp.dot_t.width[j]), int(lp.bias_t.width[j]))
            adds += 1
    return hw, mults, adds, operand


@pytest.mark.parametrize("seed", range(4))
def test_dense_cost_matches_recount(seed: int) -> None:
    p = random_program(np.random.default_rng(seed), [3, 4, 2], layout="mixed")
    c = program_cost(p)
    hw, mults, adds, operand = _recount_hw(p)
    assert (c.hw, c.multipliers, c.adders, c.mult_operand_bits) == (hw, mults, adds, operand)
    assert c.adder_bits == hw - operand > 0
    assert c.table_bits == 0


def test_activation_implementations_are_costed() -> None:
    p = random_program(np.random.default_rng(7), [3, 4, 2], layout="column")
    base = program_cost(p)
    lp = p.layers[0]
    n = lp.n_out
    sig = get_activation("sigmoid")
    plain = build_table(sig, -4.0, 4.0, 6, 10, 5)
    interp = build_table(sig, -4.0, 4.0, 6, 10, 5, interp=True)
    layers = list(p.layers)

    layers[0] = dataclasses.replace(lp, act_impl=plain)
    c = program_cost(dataclasses.replace(p, layers=layers))
    assert c.table_bits == plain.entries.shape[0] * plain.entry_width > 0
    assert (c.hw, c.multipliers, c.adders) == (base.hw, base.multipliers, base.adders)

    layers[0] = dataclasses.replace(lp, act_impl=interp)
    c = program_cost(dataclasses.replace(p, layers=layers))
    dw = interp.entry_width + 1
    assert c.table_bits == (interp.size + 1) * interp.entry_width and interp.size <= 2**5
    assert c.multipliers == base.multipliers + n and c.adders == base.adders + n
    assert c.hw == base.hw + n * (dw + interp.shift) + n * dw
    assert c.mult_operand_bits == base.mult_operand_bits + n * (dw + interp.shift)
    assert c.adder_bits == base.adder_bits + n * dw

    pw = build_piecewise(get_activation("leaky_relu", alpha=0.1), 6, 10)
    layers[0] = dataclasses.replace(lp, act_impl=pw)
    c = program_cost(dataclasses.replace(p, layers=layers))
    assert c.multipliers == base.multipliers + n and c.hw > base.hw


def _uniform_out_program(seed: int, layout: str):
    """A random program whose layer outputs share one format per layer (container = own type)."""
    p = random_program(np.random.default_rng(seed), [4, 5, 3], layout=layout)
    for lp in p.layers:
        lp.out_t = type(lp.out_t)(
            np.full(lp.n_out, lp.out_t.width[0]), np.full(lp.n_out, lp.out_t.int_bits[0])
        )
    return p


@pytest.mark.parametrize("layout", ["element", "row", "column"])
def test_container_width_is_the_own_width_when_outputs_share_a_format(layout: str) -> None:
    p = _uniform_out_program(2, layout)
    hw = 0
    for li, lp in enumerate(p.layers):
        x_w = p.input_formats(li).width  # the per-element formats (all equal here)
        hw += int((lp.weight_t.width + x_w[None, :]).sum())
        hw += int(np.maximum(lp.psum_t.width[:, :-1], lp.product_t.width[:, 1:]).sum())
        hw += int(np.maximum(lp.dot_t.width, lp.bias_t.width).sum())
    assert program_cost(p).hw == hw


@pytest.mark.parametrize("seed", range(3))
def test_reuse_factor_divides_the_instantiated_operators(seed: int) -> None:
    from aster_ext.codegen.layout import dense_groups

    p = random_program(np.random.default_rng(seed), [7, 6, 3], layout="row")  # every layer rolled
    full = program_cost(p)
    assert full.multipliers == sum(lp.n_in * lp.n_out for lp in p.layers)
    prev = full
    for rf in (2, 3, 7, 50):
        c = program_cost(p, rf)
        want = sum(g.size * -(-lp.n_in // rf) for lp in p.layers for g in dense_groups(lp))
        assert all(g.kind == "rolled" for lp in p.layers for g in dense_groups(lp))
        assert c.multipliers == want
        assert c.adders == sum(
            g.size * (min(-(-lp.n_in // rf), lp.n_in - 1) + 1) for lp in p.layers for g in dense_groups(lp)
        )
        assert c.hw <= prev.hw and c.weight_bits == full.weight_bits
        prev = c
    assert program_cost(p, 50).multipliers == sum(lp.n_out for lp in p.layers)  # one MAC per neuron
    col = random_program(np.random.default_rng(seed), [7, 6, 3], layout="column")  # neuron loops
    assert program_cost(col, 2).multipliers == sum(-(-lp.n_out // 2) * lp.n_in for lp in col.layers)
    with pytest.raises(ValueError, match="reuse factor"):
        program_cost(p, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**90), 2**90), min_size=1, max_size=40), st.booleans())
def test_table_entry_width_is_the_widest_entry(values: list[int], as_object: bool) -> None:
    """entry_width (from the extreme entries) equals the width of every entry taken one by one."""
    from aster_ext.activations import _cpp
    from aster_ext.activations.table import TableImpl

    fits64 = all(-(2**63) <= v < 2**63 for v in values)
    entries = np.array(values, dtype=object if as_object or not fits64 else np.int64)
    table = TableImpl.__new__(TableImpl)
    for f in dataclasses.fields(TableImpl):
        object.__setattr__(table, f.name, None)
    object.__setattr__(table, "entries", entries)
    assert table.entry_width == _cpp.signed_width(values)


@pytest.mark.parametrize("layout", ["element", "column"])
def test_per_column_statements_count_each_input_in_its_own_format(layout: str) -> None:
    """loop / scalar groups narrow x[k] to its own format: the fully parallel cost is the
    per-element formula even when a layer's outputs have many formats (container wider)."""
    from aster_ext.codegen.layout import container, dense_groups

    p = random_program(np.random.default_rng(9), [4, 6, 3], layout=layout, int_bits=(-4, 8))
    assert all(g.kind != "rolled" for lp in p.layers for g in dense_groups(lp))
    if layout == "element":  # formats differ from neuron to neuron: the container is wider
        assert any(container(p, 1)[0] > w for w in p.input_formats(1).width)
    hw = 0
    for li, lp in enumerate(p.layers):
        x_w = p.input_formats(li).width
        hw += int((lp.weight_t.width + x_w[None, :]).sum())
        hw += int(np.maximum(lp.psum_t.width[:, :-1], lp.product_t.width[:, 1:]).sum())
        hw += int(np.maximum(lp.dot_t.width, lp.bias_t.width).sum())
    assert program_cost(p).hw == hw
