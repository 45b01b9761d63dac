"""The backward error bound of hls4ml CNN programs (aster_ext/hls4ml_backend/cnn_backward.py).

A random DAG of records (input, Dense, ReLU in its three regimes, max pooling with and without a
dominating element, average pooling, a residual Add) is realised many times with every local term
ν drawn from its interval and every unstable ReLU at a random real pre-activation; every
realised c·e_out must stay below the bound, for random directions c. Forward intervals are
propagated by interval arithmetic, as the walker does."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.hls4ml_backend import cnn_backward as B
from aster_ext.rigorous import Interval, down, matvec, up


def _noise(rng: np.random.Generator, n: int, scale: float) -> Interval:
    a = rng.uniform(-scale, scale, n)
    b = a + rng.uniform(0, scale, n)
    return Interval(down(a), up(b))


def _draw(rng: np.random.Generator, iv: Interval, k: int) -> np.ndarray:
    """Points of the interval, half of the coordinates at an end (where the extremes are)."""
    t = rng.random((k, iv.lo.size))
    t = np.where(rng.random(t.shape) < 0.5, np.round(t), t)
    return iv.lo + (iv.hi - iv.lo) * t


def _case(seed: int):
    """Records (in topological order), forward intervals and a sampler of realised output errors."""
    rng = np.random.default_rng(seed)
    n0, n1, n2 = 6, 8, 4
    recs: dict[str, B.Rec] = {}
    fwd: dict[str, Interval] = {}
    scale = 10.0 ** rng.uniform(-4, -1)
    recs["in"] = B.InputRec(_noise(rng, n0, scale))
    fwd["in"] = recs["in"].noise
    w1 = rng.normal(size=(n1, n0))
    recs["d1"] = B.LinearRec("in", w1, None, _noise(rng, n1, scale))
    fwd["d1"] = matvec(w1, None, fwd["in"]).add(recs["d1"].noise)
    mode = rng.integers(0, 3, n1)  # 0 inactive, 1 active, 2 unstable
    cast = _noise(rng, n1, scale / 4)
    cast = Interval(np.where(mode == 0, 0.0, cast.lo), np.where(mode == 0, 0.0, cast.hi))
    recs["r1"] = B.ReluRec("d1", fwd["d1"], mode == 1, mode == 0, cast)
    a, b = fwd["d1"].lo, fwd["d1"].hi
    r_lo = np.where(mode == 1, a, np.where(mode == 2, np.minimum(a, 0.0), 0.0))
    r_hi = np.where(mode == 1, b, np.where(mode == 2, np.maximum(b, 0.0), 0.0))
    fwd["r1"] = Interval(r_lo, r_hi).add(cast)
    # max pooling over pairs (0,1), (2,3), ...: even windows dominated by their first element
    win = np.arange(n1).reshape(-1, 2)
    pick = np.where(np.arange(win.shape[0]) % 2 == 0, win[:, 0], -1)
    mp_cast = _noise(rng, win.shape[0], scale / 4)
    pooled = Interval(
        np.minimum(fwd["r1"].lo[win[:, 0]], fwd["r1"].lo[win[:, 1]]),
        np.maximum(fwd["r1"].hi[win[:, 0]], fwd["r1"].hi[win[:, 1]]),
    ).add(mp_cast)
    recs["mp"] = B.MaxRec(
        "r1",
        pick,
        Interval(np.where(pick >= 0, mp_cast.lo, pooled.lo), np.where(pick >= 0, mp_cast.hi, pooled.hi)),
    )
    fwd["mp"] = pooled
    # average pooling of overlapping windows of r1
    aw = np.stack([np.arange(n1 - 2), np.arange(1, n1 - 1), np.arange(2, n1)], axis=1)
    recs["ap"] = B.AvgRec("r1", aw, _noise(rng, aw.shape[0], scale / 4))
    fwd["ap"] = matvec(
        np.full((1, 3), 1 / 3), np.full((1, 3), 1e-16), Interval(fwd["r1"].lo[aw].T, fwd["r1"].hi[aw].T)
    )
    fwd["ap"] = Interval(fwd["ap"].lo[0], fwd["ap"].hi[0]).add(recs["ap"].noise)
    w2 = rng.normal(size=(n2, win.shape[0]))
    recs["d2"] = B.LinearRec("mp", w2, None, _noise(rng, n2, scale))
    fwd["d2"] = matvec(w2, None, fwd["mp"]).add(recs["d2"].noise)
    w3 = rng.normal(size=(n2, aw.shape[0]))
    recs["d3"] = B.LinearRec("ap", w3, None, _noise(rng, n2, scale))
    fwd["d3"] = matvec(w3, None, fwd["ap"]).add(recs["d3"].noise)
    recs["add"] = B.AddRec(("d2", "d3"), _noise(rng, n2, scale / 4))
    fwd["add"] = fwd["d2"].add(fwd["d3"]).add(recs["add"].noise)

    def realise(k: int) -> np.ndarray:
        e0 = _draw(rng, recs["in"].noise, k)
        z1 = e0 @ w1.T + _draw(rng, recs["d1"].noise, k)
        # the real pre-activation of an unstable ReLU: 0 (d = max(0, e)), far above (d = e) or
        # below (d = 0), or anywhere between
        real = rng.choice([0.0, 1e3, -1e3, np.nan], size=(k, n1))
        real = np.where(np.isnan(real), rng.uniform(-2 * scale, 2 * scale, (k, n1)), real)
        d = np.where(mode == 1, z1, np.where(mode == 2, np.maximum(real + z1, 0) - np.maximum(real, 0), 0.0))
        r1 = d + _draw(rng, cast, k)
        # max: dominated windows pass their first element's error; the others any value of the
        # max's error interval over their two elements (a real/implemented max of the pair)
        xa, xb = rng.normal(size=(k, win.shape[0])), rng.normal(size=(k, win.shape[0]))
        ea, eb = r1[:, win[:, 0]], r1[:, win[:, 1]]
        free = np.maximum(xa + ea, xb + eb) - np.maximum(xa, xb)
        mp = np.where(pick >= 0, ea, free) + _draw(rng, mp_cast, k)
        ap = r1[:, aw].mean(axis=2) + _draw(rng, recs["ap"].noise, k)
        d2 = mp @ w2.T + _draw(rng, recs["d2"].noise, k)
        d3 = ap @ w3.T + _draw(rng, recs["d3"].noise, k)
        return d2 + d3 + _draw(rng, recs["add"].noise, k)

    return recs, fwd, realise, rng  # recs in topological order (insertion order)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_backward_bound_holds_on_realisations(seed):
    recs, fwd, realise, rng = _case(seed)
    dirs = rng.normal(size=(6, 4))
    dirs[0] = np.eye(4)[0]
    ub = B.upper_bounds(recs, fwd, "add", dirs, B.Scatter())
    e = realise(4000)
    assert np.all(e @ dirs.T <= ub[None, :])


def test_backward_bound_keeps_cancellations():
    """Two Dense layers whose product cancels on the only nonzero input error: the backward bound
    of the output error is 0 (up to rounding charges), the forward interval counts |W2||W1|."""
    w1 = np.array([[1.0, 1.0], [1.0, -1.0]])
    w2 = np.array([[1.0, -1.0]])  # W2 W1 = [0, 2]: the first input's error cancels
    e_in = Interval(np.array([-1.0, 0.0]), np.array([1.0, 0.0]))
    zero2, zero1 = Interval(np.zeros(2), np.zeros(2)), Interval(np.zeros(1), np.zeros(1))
    recs = {
        "in": B.InputRec(e_in),
        "d1": B.LinearRec("in", w1, None, zero2),
        "d2": B.LinearRec("d1", w2, None, zero1),
    }
    fwd = {"in": e_in}
    fwd["d1"] = matvec(w1, None, e_in)
    fwd["d2"] = matvec(w2, None, fwd["d1"])
    ub = B.upper_bounds(recs, fwd, "d2", np.array([[1.0], [-1.0]]), B.Scatter())
    assert fwd["d2"].hi[0] >= 2.0 and ub[0] <= 1e-12 and ub[1] <= 1e-12


def test_conv_scatter_is_the_transpose_of_the_window_gather():
    """The backward coefficients of a Conv2D record are Λ W~ scattered to the window elements
    (padding dropped): equal to the transpose of the forward gather-and-multiply."""
    rng = np.random.default_rng(0)
    n_src, c_out, k, p = 7, 3, 4, 5
    gather = rng.integers(-1, n_src, size=(p, k))
    w = rng.normal(size=(c_out, k))
    dense = np.zeros((p * c_out, n_src))  # the forward map as a matrix
    for pi in range(p):
        for ki in range(k):
            if gather[pi, ki] >= 0:
                dense[pi * c_out : (pi + 1) * c_out, gather[pi, ki]] += w[:, ki]
    e_in = Interval(np.zeros(n_src), np.ones(n_src))
    recs = {
        "in": B.InputRec(e_in),
        "c": B.LinearRec("in", w, gather, Interval(np.zeros(p * c_out), np.zeros(p * c_out))),
    }
    fwd = {"in": e_in, "c": matvec(dense, None, e_in)}
    lam = rng.normal(size=(3, p * c_out))
    ub = B.upper_bounds(recs, fwd, "c", lam, B.Scatter())
    exact = np.maximum(lam @ dense, 0.0).sum(axis=1)  # max over e in [0, 1]^n of (Λ A) e
    assert np.allclose(ub, exact, rtol=1e-9, atol=1e-12) and np.all(ub >= exact)


def test_relu_relaxation_is_exact_at_the_error_interval_ends():
    """Unstable ReLUs alone: max of c·d over d_i between 0 and e_i, e_i ∈ [a_i, b_i], is
    Σ_{c_i > 0} c_i max(0, b_i) + Σ_{c_i < 0} c_i min(0, a_i); the chords through the ends reach it
    (the bound equals it up to the rounding charges), and never fall below it."""
    rng = np.random.default_rng(5)
    n = 50
    a = -rng.random(n)
    b = rng.random(n)
    a[:5], b[5:10] = 0.1, -0.1  # error intervals on one side of 0
    a[:5] = np.minimum(a[:5], b[:5])
    b[5:10] = np.maximum(b[5:10], a[5:10])
    e_in = Interval(a, b)
    flags = np.zeros(n, dtype=bool)
    zero = Interval(np.zeros(n), np.zeros(n))
    recs = {"in": B.InputRec(e_in), "r": B.ReluRec("in", e_in, flags, flags, zero)}
    fwd = {"in": e_in, "r": Interval(np.minimum(a, 0.0), np.maximum(b, 0.0))}
    c = rng.normal(size=(4, n))
    ub = B.upper_bounds(recs, fwd, "r", c, B.Scatter())
    exact = np.where(c > 0, c * np.maximum(b, 0.0), c * np.minimum(a, 0.0)).sum(axis=1)
    assert np.all(ub >= exact) and np.allclose(ub, exact, rtol=1e-12, atol=1e-12)
