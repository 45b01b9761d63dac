"""Segmented lookup tables (:mod:`aster_ext.activations.segtable`): rigour attacks and accounting.

References are independent: 160-bit mpmath values of σ (``tests.test_activations.ref`` via
``tests.test_interp_tables.ref``), the bit-level semantics re-written here in Python integers,
brute-force enumeration of segmentations for the builder's dynamic programme, and g++ with the
Xilinx ap_types headers for the emitted C++.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aster_ext.activations import SegmentedTableImpl, build_segmented, build_table, get_activation
from aster_ext.activations.segtable import _segment_dp
from aster_ext.cost import act_impl_ops, program_cost
from aster_ext.program_io import act_impl_from_json, act_impl_to_json

from .cpp_support import assert_impls_cpp_bit_exact
from .test_activations import SMOOTH
from .test_interp_tables import ref

mpmath.mp.prec = 160


def part_reference(part, t: int) -> int:
    """TableImpl's documented bit-level semantics (plain and interpolating), in Python ints."""
    s, base, n = part.shift, part.base, part.size
    k = min(max((t >> s) - base, 0), n - 1)
    if not part.interp:
        return int(part.entries[k])
    r = min(max(t - ((base + k) << s), 0), 1 << s)
    y0, y1 = int(part.entries[k]), int(part.entries[k + 1])
    return y0 + math.floor(Fraction((y1 - y0) * r, 1 << s))


def seg_reference(tab: SegmentedTableImpl, t: int) -> int:
    """The segmented semantics (module docstring): segment = number of breaks <= t, read from the
    ROM slice of that part (not from the part's own entries)."""
    i = sum(1 for b in tab.breaks if t >= b)
    part, off = tab.parts[i], tab.offsets[i]
    rom_part = type(part)(**{**part.__dict__, "entries": tab.entries[off : off + part.entries.shape[0]]})
    return part_reference(rom_part, t)


def _check(act, lo, hi, in_frac, out_frac, target, interp, max_coarsen=6, pad=40, finest=None):
    tab = build_segmented(act, lo, hi, in_frac, out_frac, target, interp=interp,
                          max_coarsen=max_coarsen, finest_shift=finest)  # fmt: skip
    t_lo, t_hi = tab.grid_range
    ts = np.arange(t_lo - pad, t_hi + pad + 1, dtype=np.int64)
    out = tab.apply(ts)
    out_obj = tab.apply(ts.astype(object))
    c_lo, c_hi = tab.clamped_error((t_lo - pad) / 2**in_frac, (t_hi + pad) / 2**in_frac)
    for t, y, yo in zip(ts, out, out_obj, strict=True):
        assert int(y) == int(yo) == seg_reference(tab, int(t)), (act.describe(), int(t))
        e = mpmath.mpf(int(y)) / 2**out_frac - ref(act, mpmath.mpf(int(t)) / 2**in_frac)
        assert c_lo <= e <= c_hi, (act.describe(), int(t), float(e), c_lo, c_hi)
        if t_lo <= t <= t_hi:
            assert tab.error_lo <= e <= tab.error_hi, (act.describe(), int(t), float(e))
    # sub-range queries straddling segment breaks
    rng = np.random.default_rng(abs(t_lo * 7919 + t_hi))
    probes = [*tab.breaks, t_lo, t_hi]
    for _ in range(4):
        a = int(rng.choice(probes)) - int(rng.integers(0, 9))
        b = a + int(rng.integers(0, 30))
        q_lo, q_hi = tab.clamped_error(a / 2**in_frac, b / 2**in_frac)
        for t, y in zip(ts, out, strict=True):
            if a <= t <= b:
                e = mpmath.mpf(int(y)) / 2**out_frac - ref(act, mpmath.mpf(int(t)) / 2**in_frac)
                assert q_lo <= e <= q_hi, (act.describe(), int(t), a, b)
    return tab


@pytest.mark.slow
@pytest.mark.parametrize("act", SMOOTH, ids=[a.describe() for a in SMOOTH])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lo=st.floats(-7.0, 6.0),
    width=st.floats(0.0, 9.0),
    in_frac=st.integers(0, 7),
    out_frac=st.integers(2, 16),
    target_exp=st.integers(2, 14),
    interp=st.booleans(),
    max_coarsen=st.integers(0, 5),
)
def test_segmented_error_bound_on_every_grid_point(
    act, lo, width, in_frac, out_frac, target_exp, interp, max_coarsen
) -> None:
    hi = lo + width
    assume(math.ceil(lo * 2**in_frac) <= math.floor(hi * 2**in_frac))
    _check(act, lo, hi, in_frac, out_frac, 2.0**-target_exp, interp, max_coarsen)


def test_segmented_fixed_cases() -> None:
    sig, tanh, silu = get_activation("sigmoid"), get_activation("tanh"), get_activation("silu")
    elu = get_activation("elu")
    tab = _check(sig, -6.0, 5.0, 6, 14, 2.0**-11, True)
    assert len(tab.parts) >= 3  # fine cells in the middle, coarse in the tails
    _check(tanh, -4.0, 4.0, 5, 12, 2.0**-7, False)
    _check(silu, -5.0, 2.0, 6, 12, 2.0**-9, True)
    _check(elu, -3.0, 3.0, 6, 13, 2.0**-10, True)  # kink at 0
    _check(sig, 0.0, 0.0, 5, 10, 2.0**-8, True)  # a single grid point
    _check(tanh, -1.0, 1.0, 3, 12, 2.0**-30, True)  # target out of reach: finest cells everywhere
    _check(sig, -6.0, 6.0, 4, 12, 2.0**-9, True, finest=0)  # shift-0 segments


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu", "softplus", "elu", "gelu"])
@pytest.mark.parametrize("interp", [True, False])
def test_segmented_rom_never_above_uniform_at_equal_budget(name: str, interp: bool) -> None:
    """The uniform table meeting the target is one of the builder's candidates (one segment at
    the finest shift), so the least-ROM segmentation never has more entries; the bound meets the
    target too. On these wide ranges it is several times smaller."""
    act = get_activation(name)
    lo, hi, fi, fo, target = -10.0, 8.0, 10, 18, 2.0**-12 if interp else 2.0**-6
    uni = None
    for bits in range(1, 17):
        uni = build_table(act, lo, hi, fi, fo, bits, interp=interp)
        if uni.error_bound <= target or uni.shift == 0:
            break
    assert uni is not None and uni.error_bound <= target
    seg = build_segmented(act, lo, hi, fi, fo, target, interp=interp, finest_shift=uni.shift)
    assert seg.error_bound <= target
    assert seg.entries.shape[0] <= uni.entries.shape[0]
    rom_seg, rom_uni = act_impl_ops(seg, np.zeros(1))[2], act_impl_ops(uni, np.zeros(1))[2]
    assert rom_seg <= rom_uni
    if interp:
        assert 2 * rom_seg <= rom_uni, (name, rom_seg, rom_uni)


@settings(max_examples=60, deadline=None)
@given(
    p0=st.integers(-20, 20),
    n=st.integers(1, 24),
    nd=st.integers(1, 3),
    price=st.sampled_from([0.5, 2.0, 5.0]),
    data=st.data(),
)
def test_segment_dp_is_optimal(p0: int, n: int, nd: int, price: float, data) -> None:
    """The DP's cover is valid and no cover found by brute force over every cut set is cheaper."""
    p1 = p0 + n
    ds = list(range(nd))
    bads = []
    for d in ds:
        cells = list(range(p0 >> d, ((p1 - 1) >> d) + 1))
        bads.append([] if d == 0 else sorted(data.draw(st.sets(st.sampled_from(cells)), label=f"bad{d}")))

    def seg_cost(i: int, j: int, d: int) -> float | None:
        aligned = (i == p0 or i % (1 << d) == 0) and (j == p1 or j % (1 << d) == 0)
        c0, c1 = i >> d, (j - 1) >> d
        if not aligned or any(c0 <= c <= c1 for c in bads[d]):
            return None
        return c1 - c0 + 1 + price

    segs = _segment_dp(p0, p1, ds, bads, price)
    assert segs[0][0] == p0 and segs[-1][1] == p1
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))
    costs = [seg_cost(i, j, d) for i, j, d in segs]
    assert all(c is not None for c in costs)
    got = sum(costs)
    best = math.inf
    inner = list(range(p0 + 1, p1))
    for k in range(min(len(inner), 5) + 1):
        for cuts in itertools.combinations(inner, k):
            pts = [p0, *cuts, p1]
            total = 0.0
            for i, j in zip(pts, pts[1:], strict=False):
                opts = [c for d in ds if (c := seg_cost(i, j, d)) is not None]
                if not opts:
                    total = math.inf
                    break
                total += min(opts)
            best = min(best, total)
    assert got <= best + 1e-9


def test_segmented_json_round_trip_and_validation() -> None:
    tab = build_segmented(get_activation("tanh"), -4.0, 4.0, 8, 16, 2.0**-12)
    assert len(tab.parts) > 1
    back = act_impl_from_json(act_impl_to_json(tab))
    assert isinstance(back, SegmentedTableImpl) and back.breaks == tab.breaks
    ts = np.arange(-1500, 1500, dtype=np.int64)
    assert np.array_equal(back.apply(ts), tab.apply(ts))
    assert back.clamped_error(-5.0, 5.0) == tab.clamped_error(-5.0, 5.0)
    bad = tab.entries.copy()
    bad[tab.offsets[1]] += 1  # a ROM that differs from a part's entries is rejected
    with pytest.raises(ValueError):
        SegmentedTableImpl(**{**tab.__dict__, "entries": bad})


def test_interp_boundary_nodes_shared() -> None:
    """Adjacent interpolating parts meet at a common node, stored once."""
    tab = build_segmented(get_activation("sigmoid"), -8.0, 8.0, 8, 16, 2.0**-13)
    n_parts = sum(int(p.entries.shape[0]) for p in tab.parts)
    assert tab.entries.shape[0] == n_parts - (len(tab.parts) - 1)


@pytest.mark.slow
def test_refined_programs_use_segmented_tables_and_stay_certified() -> None:
    """A small refined run: the layers' tables are segmented where cheaper, the ROM the cost
    counts is theirs, and the simulated program stays within its certificate (exact reference)."""
    from aster_ext.ir import DenseLayer
    from aster_ext.refined.solve import assign_refined

    from .test_activation_networks import attack, exact_errors

    rng = np.random.default_rng(5)
    widths = [3, 12, 12, 2]
    layers = []
    for li in range(3):
        w = (rng.normal(0, 2.0, (widths[li + 1], widths[li])) / np.sqrt(widths[li])).astype(np.float32)
        b = rng.normal(0, 0.3, widths[li + 1]).astype(np.float32)
        layers.append(DenseLayer(f"l{li}", w.astype(np.float64), b.astype(np.float64),
                                 "identity" if li == 2 else "silu"))  # fmt: skip
    lo, hi = -np.ones(3), np.ones(3)
    res = assign_refined(layers, lo, hi, 1e-3, "A", name="segnet")
    impls = [lp.act_impl for lp in res.program.layers if lp.act_impl is not None]
    assert any(isinstance(im, SegmentedTableImpl) for im in impls)
    assert program_cost(res.program).table_bits == sum(act_impl_ops(im, np.zeros(1))[2] for im in impls)
    xs = attack(rng, res.program, layers, lo, hi, n_random=30, n_search=12)
    obs = exact_errors(res.program, layers, xs)
    assert np.all(obs.max(axis=0) <= res.certificate.output_bound + 1e-12)


@pytest.mark.slow
def test_segmented_cpp_matches_apply_bit_for_bit(tmp_path: Path) -> None:
    sig, tanh, silu = get_activation("sigmoid"), get_activation("tanh"), get_activation("silu")
    impls = [
        ("s_sig", build_segmented(sig, -5.0, 4.0, 7, 14, 2.0**-11)),
        ("s_sig_plain", build_segmented(sig, -5.0, 4.0, 7, 12, 2.0**-7, interp=False)),
        ("s_tanh0", build_segmented(tanh, -1.0, 1.0, 7, 14, 2.0**-13, finest_shift=0)),  # shift-0 part
        ("s_wide", build_segmented(tanh, -3.0, 3.0, 7, 70, 2.0**-12)),  # entries > 64 bits
        ("s_silu", build_segmented(silu, -3.0, 1.5, 7, 16, 2.0**-12)),
        ("s_big", build_segmented(sig, -6.0, 6.0, 7, 40, 2.0**-8, max_coarsen=6)),  # large shifts
        ("s_one", build_segmented(sig, -0.5, 0.5, 7, 12, 2.0**-4)),  # a single segment
    ]
    assert any(len(t.parts) > 2 for _, t in impls) and any(len(t.parts) == 1 for _, t in impls)
    assert_impls_cpp_bit_exact([(name, impl, 11) for name, impl in impls], tmp_path, "segmented")
