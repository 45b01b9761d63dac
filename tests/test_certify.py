"""Attacks on the sound analyses: interval ranges, rigorous matvec and the program certifier.

- ranges and matvec: exact rational evaluation at random and corner points must stay inside;
- certify_program: on random networks with Aster-typed programs at random precisions, the exact
  error of the bit-exact simulation at random, corner and locally searched inputs never exceeds
  the certified bound; and an exact-rational replay of the certifier (same ReLU decisions) never
  exceeds the float bound.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.aster.ranges import aster_ranges
from aster_ext.aster.settings import SETTINGS
from aster_ext.aster.types import build_program
from aster_ext.certify import certify_program
from aster_ext.ir import DenseLayer
from aster_ext.program import FormatArray
from aster_ext.ranges import interval_ranges
from aster_ext.rigorous import Interval, matvec
from aster_ext.simulate import simulate, simulate_raw
from aster_ext.verify import real_forward_exact


def random_layers(rng: np.random.Generator, sizes: list[int], decimals: bool) -> list[DenseLayer]:
    """Dense chain with ReLU hidden layers; with ``decimals`` the real weights are 4-digit decimals."""
    layers = []
    for li, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.normal(0, 1.0 / np.sqrt(n_in), (n_out, n_in))
        b = rng.normal(0, 0.2, n_out)
        w_ex = b_ex = None
        if decimals:
            w_ex = np.vectorize(lambda v: Fraction(f"{v:.4f}"), otypes=[object])(w)
            b_ex = np.vectorize(lambda v: Fraction(f"{v:.4f}"), otypes=[object])(b)
            w = np.vectorize(float)(w_ex).astype(np.float64)
            b = np.vectorize(float)(b_ex).astype(np.float64)
        act = "relu" if li < len(sizes) - 2 else "identity"
        layers.append(DenseLayer(f"layer{li + 1}", w, b, act, w_ex, b_ex))
    return layers


def _exact_points(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    pts = lo + (hi - lo) * rng.random((n, lo.size))
    corners = np.where(rng.random((n, lo.size)) < 0.5, lo, hi)
    return np.vstack([pts, corners])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), depth=st.integers(1, 3), width=st.integers(1, 6), decimals=st.booleans())
def test_interval_ranges_contain_exact_values(seed: int, depth: int, width: int, decimals: bool) -> None:
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 5))
    layers = random_layers(rng, [n_in] + [width] * depth + [2], decimals)
    lo = rng.uniform(-3, 0, n_in)
    hi = lo + rng.uniform(0, 3, n_in)
    rs = interval_ranges(layers, lo, hi)
    for x in _exact_points(lo, hi, rng, 10):
        a = [Fraction(float(v)) for v in x]
        for layer, r in zip(layers, rs, strict=True):
            w, b = layer.exact_weight(), layer.exact_bias()
            z = [
                sum((w[j, k] * a[k] for k in range(layer.n_in)), Fraction(0)) + b[j]
                for j in range(layer.n_out)
            ]
            assert all(Fraction(r.pre.lo[j]) <= z[j] <= Fraction(r.pre.hi[j]) for j in range(layer.n_out))
            a = [max(v, Fraction(0)) for v in z] if layer.activation == "relu" else z


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 40), scale=st.sampled_from([1e-8, 1.0, 1e6]))
def test_matvec_encloses_exact_products(seed: int, n: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, scale, (3, n))
    w_rad = np.abs(rng.normal(0, scale * 1e-10, (3, n)))
    lo = rng.normal(0, 1, n)
    hi = lo + np.abs(rng.normal(0, 1, n))
    y = matvec(w, w_rad, Interval(lo, hi))
    for _ in range(5):
        t = rng.random(n)
        x = [Fraction(float(v)) for v in lo + (hi - lo) * t]
        x = [min(max(v, Fraction(float(lo[k]))), Fraction(float(hi[k]))) for k, v in enumerate(x)]
        sign = rng.choice([-1, 1], size=(3, n))
        for j in range(3):
            exact = sum(
                (
                    (Fraction(float(w[j, k])) + sign[j, k] * Fraction(float(w_rad[j, k]))) * x[k]
                    for k in range(n)
                ),
                Fraction(0),
            )
            assert Fraction(float(y.lo[j])) <= exact <= Fraction(float(y.hi[j]))


def _aster_program(layers, lo, hi, setting, dot, bias, mode="aster-sound"):
    s = SETTINGS[setting]
    ranges = aster_ranges(layers, lo, hi, saturate=False)
    return build_program(layers, ranges, s, dot, bias, mode)


def _exact_errors(program, layers, x_float: np.ndarray, on_grid: bool, lo=None, hi=None) -> np.ndarray:
    if on_grid:
        # the certificate covers grid points inside the box: snap down, but never below ceil(lo)
        # (a floor alone leaves the box by up to one grid step, where overflows are allowed)
        f = program.input_t.frac_bits
        g_lo = [math.ceil(v * 2.0**f) for v in lo]
        g_hi = [math.floor(v * 2.0**f) for v in hi]
        x_raw = np.array(
            [[min(max(int(np.floor(v * 2.0**f)), a), b) for v, a, b in zip(row, g_lo, g_hi, strict=True)]
             for row in x_float],
            dtype=object,
        )  # fmt: skip
        y_raw = simulate_raw(program, x_raw)
        xs = [[Fraction(int(v), 2**f) for v in row] for row in x_raw]
    else:
        _, y_raw = simulate(program, x_float)
        xs = [[Fraction(float(v)) for v in row] for row in x_float]
    of = program.output_t.frac_bits
    out = []
    for row, x in zip(y_raw, xs, strict=True):
        y = real_forward_exact(layers, x)
        out.append([abs(Fraction(int(r), 2**of) - t) for r, t in zip(row, y, strict=True)])
    return np.array(out, dtype=object)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    depth=st.integers(1, 3),
    setting=st.sampled_from(["A", "B", "C", "D"]),
    bits=st.integers(4, 14),
    mode=st.sampled_from(["aster", "aster-sound"]),
)
def test_certified_bound_is_never_exceeded(seed: int, depth: int, setting: str, bits: int, mode: str) -> None:
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    layers = random_layers(rng, [n_in] + [int(rng.integers(1, 6))] * depth + [2], decimals=bool(seed % 2))
    lo = rng.uniform(-2, 0, n_in)
    hi = lo + rng.uniform(0.1, 2, n_in)
    dot = [bits + int(rng.integers(0, 3)) for _ in layers]
    bias = [bits + int(rng.integers(0, 3)) for _ in layers]
    program = _aster_program(layers, lo, hi, setting, dot, bias, mode)
    on_grid = SETTINGS[setting].no_init_error
    cert = certify_program(program, layers, lo, hi, input_on_grid=on_grid)
    if not cert.ok:
        return  # overflow reported: the certificate claims nothing
    pts = _exact_points(lo, hi, rng, 40)
    f_in = program.input_t.frac_bits
    g_lo, g_hi = np.ceil(lo * 2.0**f_in), np.floor(hi * 2.0**f_in)
    empty_grid = bool(np.any(g_lo > g_hi))
    if on_grid and empty_grid:
        return  # no grid point in the box: the certificate covers no input
    errs = _exact_errors(program, layers, pts, on_grid, lo, hi)
    for o in range(errs.shape[1]):
        worst = max(errs[:, o])
        assert worst <= Fraction(float(cert.output_bound[o])), (o, float(worst), cert.output_bound[o])


# ---- exact-rational replay of the certifier ------------------------------------------------


def _exact_certify(program, layers, lo, hi, on_grid: bool, float_cert) -> list[Fraction]:
    """The certifier's interval error analysis in exact rationals, replaying its ReLU decisions."""

    def rnd(src: int, dst: int) -> tuple[Fraction, Fraction]:
        if src <= dst:
            return Fraction(0), Fraction(0)
        return -(Fraction(1, 2**dst) - Fraction(1, 2**src)), Fraction(0)

    x_lo = [Fraction(float(v)) for v in lo]
    x_hi = [Fraction(float(v)) for v in hi]
    f_in = program.input_t.frac_bits
    e = [(Fraction(0), Fraction(0)) if on_grid else (-Fraction(1, 2**f_in), Fraction(0)) for _ in lo]
    for li, (lp, layer) in enumerate(zip(program.layers, layers, strict=True)):
        w, b = layer.exact_weight(), layer.exact_bias()
        xf = program.input_formats(li).frac
        z_lo, z_hi, e_lo, e_hi = [], [], [], []
        for j in range(lp.n_out):
            zl = zh = b[j]
            el = eh = Fraction(0)
            for k in range(lp.n_in):
                wt = Fraction(int(lp.weight_raw[j, k]), 2 ** int(lp.weight_t.frac[j, k]))
                dw = wt - w[j, k]
                c = [w[j, k] * x_lo[k], w[j, k] * x_hi[k]]
                zl, zh = zl + min(c), zh + max(c)
                t = [wt * e[k][0], wt * e[k][1]]
                el, eh = el + min(t), eh + max(t)
                t = [dw * x_lo[k], dw * x_hi[k]]
                el, eh = el + min(t), eh + max(t)
                pl, _ = rnd(int(lp.weight_t.frac[j, k]) + int(xf[k]), int(lp.product_t.frac[j, k]))
                src = (
                    int(lp.product_t.frac[j, 0])
                    if k == 0
                    else max(int(lp.psum_t.frac[j, k - 1]), int(lp.product_t.frac[j, k]))
                )
                sl, _ = rnd(src, int(lp.psum_t.frac[j, k]))
                el += pl + sl
            dl, _ = rnd(int(lp.psum_t.frac[j, -1]), int(lp.dot_t.frac[j]))
            bl, _ = rnd(max(int(lp.dot_t.frac[j]), int(lp.bias_t.frac[j])), int(lp.bsum_t.frac[j]))
            bt = Fraction(int(lp.bias_raw[j]), 2 ** int(lp.bias_t.frac[j]))
            el += dl + bl + (bt - b[j])
            eh += bt - b[j]
            z_lo.append(zl)
            z_hi.append(zh)
            e_lo.append(el)
            e_hi.append(eh)
        new_e = []
        state = float_cert.relu_states[li]
        for j in range(lp.n_out):
            al, _ = rnd(int(lp.bsum_t.frac[j]), int(lp.out_t.frac[j]))
            if state[j] == 0:
                lo_j, hi_j = Fraction(0), Fraction(0)
            elif state[j] == 1:
                lo_j, hi_j = e_lo[j], e_hi[j]
            else:
                lo_j, hi_j = min(Fraction(0), e_lo[j]), max(Fraction(0), e_hi[j])
            new_e.append((lo_j + al, hi_j))
        e = new_e
        if lp.activation == "relu":
            x_lo = [max(v, Fraction(0)) for v in z_lo]
            x_hi = [max(v, Fraction(0)) for v in z_hi]
        else:
            x_lo, x_hi = z_lo, z_hi
    return [max(-lo_, hi_) for lo_, hi_ in e]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), setting=st.sampled_from(["A", "C"]), bits=st.integers(6, 16))
def test_float_certificate_is_not_below_exact_replay(seed: int, setting: str, bits: int) -> None:
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    layers = random_layers(rng, [n_in, int(rng.integers(1, 5)), 2], decimals=True)
    lo = rng.uniform(-2, 0, n_in)
    hi = lo + rng.uniform(0.1, 2, n_in)
    program = _aster_program(layers, lo, hi, setting, [bits] * 2, [bits + 1] * 2)
    on_grid = SETTINGS[setting].no_init_error
    cert = certify_program(program, layers, lo, hi, input_on_grid=on_grid)
    exact = _exact_certify(program, layers, lo, hi, on_grid, cert)
    for o, ex in enumerate(exact):
        fb = Fraction(float(cert.output_bound[o]))
        assert fb >= ex
        assert fb <= ex * (1 + Fraction(1, 10**6)) + Fraction(1, 2**60)  # and not wildly loose


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    quant=st.sampled_from(["TRN", "RND"]),
    overflow=st.sampled_from(["WRAP", "SAT"]),
)
def test_random_formats_overflow_is_caught_or_bound_holds(seed: int, quant: str, overflow: str) -> None:
    """Arbitrary (often overflowing) formats: either certify reports an overflow, or the bound holds."""
    from tests.programs import random_program

    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 4)), int(rng.integers(1, 5)), 2]
    program = random_program(rng, sizes, quant=quant, overflow=overflow, width=(6, 20), int_bits=(1, 5))
    for lp in program.layers:  # widen accumulators by a random amount: some overflow, most do not
        for name in ("product_t", "psum_t", "dot_t", "bsum_t", "out_t"):
            fa = getattr(lp, name)
            extra = int(rng.integers(4, 14))
            setattr(lp, name, FormatArray(fa.width + extra, fa.int_bits + extra))
    layers = []
    for lp in program.layers:
        noise = np.vectorize(lambda v: Fraction(int(v), 10**4), otypes=[object])(
            rng.integers(-9, 10, lp.weight_raw.shape)
        )
        w_ex = _raw_values(lp.weight_raw, lp.weight_t.frac) + noise
        b_ex = _raw_values(lp.bias_raw, lp.bias_t.frac)
        w_f = np.vectorize(float)(w_ex).astype(np.float64)
        b_f = np.vectorize(float)(b_ex).astype(np.float64)
        layers.append(DenseLayer(lp.name, w_f, b_f, lp.activation, w_ex, b_ex))
    fin = program.input_t
    top = float(2 ** (fin.int_bits - 1))
    lo = rng.uniform(-top, 0, sizes[0])
    hi = np.minimum(lo + rng.uniform(0, top, sizes[0]), top * 0.99)
    cert = certify_program(program, layers, lo, hi)
    if not cert.ok:
        return
    errs = _exact_errors(program, layers, _exact_points(lo, hi, rng, 40), False)
    for o in range(errs.shape[1]):
        assert max(errs[:, o]) <= Fraction(float(cert.output_bound[o]))


def _raw_values(raw: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Exact values raw·2^-frac as Fractions."""
    out = np.empty(raw.shape, dtype=object)
    for idx in np.ndindex(raw.shape):
        out[idx] = Fraction(int(raw[idx])) / Fraction(2) ** int(frac[idx])
    return out
