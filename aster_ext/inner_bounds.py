"""Inner bounds of the true pre-activation ranges by projected gradient search (issue 4, item 7).

For a dense chain z_l = W_l a_{l-1} + b_l, a_l = σ_l(z_l) and an input box [lower, upper], every
searched neuron j of layer l is minimised and maximised over the box by projected gradient
descent / ascent from many starts at once. Whatever the search returns is an *inner* bound:
the values min_found(z_lj) and max_found(z_lj) are attained at the returned input points
(``argmin`` / ``argmax``), so the true range [min z_lj, max z_lj] over the box contains
[min_found, max_found]. A sound outer range (interval or symbolic) must therefore contain it
too; the width ratio outer / inner (>= 1) measures how loose the outer range is, and the true
range lies somewhere in between.

Search (all neurons of a layer, both directions and all starts in one batch; no Python loop
over neurons): starts are the box centre plus ``starts`` random points per (neuron,
direction): half of them random box corners, half uniform points. Each step moves x by
``step_t · (upper - lower) · d`` and clips to the box (the projection), with
d = sign(∇) on even starts (the L∞-steepest step, best for corner optima) and d = ∇ / max|∇|
on odd starts (the scaled gradient, which can settle in the interior); a start whose gradient
is exactly zero (saturated piecewise activations, dead ReLUs) takes a random sign step instead.
The step size decays geometrically from ``step0`` to ``step_final``. The gradient of z_lj with
respect to x is back-propagated through the chain in numpy (``Activation.df_float``; right
derivative at kinks). The best value ever evaluated per (neuron, direction) is kept.

Everything here is float64 screening arithmetic: the attained values are reproduced by
:func:`forward_pre` at the returned points up to float rounding (relative ~1e-15); a rigorous
check re-evaluates those points exactly (:func:`exact_pre`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .ir import DenseLayer


@dataclass(frozen=True)
class SearchBudget:
    """How hard the gradient search works (module docstring)."""

    starts: int = 8  # random starts per (neuron, direction); the box centre is added to them
    steps: int = 60
    step0: float = 0.5  # first step, as a fraction of the box width per coordinate
    step_final: float = 1e-4  # last step
    max_neurons: int | None = None  # per layer: search a random subset of this size (None = all)
    chunk_points: int = 4096  # points per batch (memory: chunk_points x widest layer floats)
    seed: int = 0
    search_dtype: str = "float64"  # "float32" halves the search time; results are re-evaluated in float64
    subset_seed: int = 0  # seed of the neuron subset (kept apart from ``seed``: reruns search the same ones)

    def describe(self) -> str:
        sub = "all neurons" if self.max_neurons is None else f"<= {self.max_neurons} random neurons per layer"
        return (
            f"{self.starts} random starts (half corners, half uniform) + the centre per neuron and "
            f"direction, {self.steps} steps decaying {self.step0:g} -> {self.step_final:g} of the box "
            f"width, sign/scaled-gradient steps alternating over starts, {sub}, seed {self.seed}, "
            f"search arithmetic {self.search_dtype} (found points re-evaluated in float64)"
        )


@dataclass
class LayerInner:
    """Inner bounds of the pre-activations of one layer (only the searched neurons)."""

    neurons: np.ndarray  # [m] indices of the searched neurons (sorted)
    n_total: int  # neurons in the layer
    lo: np.ndarray  # [m] smallest value of z_j found
    hi: np.ndarray  # [m] largest value of z_j found
    argmin: np.ndarray  # [m, n_in] the input points attaining lo
    argmax: np.ndarray  # [m, n_in] the input points attaining hi

    @property
    def width(self) -> np.ndarray:
        return self.hi - self.lo

    @property
    def subsampled(self) -> bool:
        return self.neurons.size < self.n_total


def _act_f(layer: DenseLayer, z: np.ndarray) -> np.ndarray:
    if layer.activation == "identity":
        return z
    if layer.activation == "relu":
        return np.maximum(z, 0.0)
    return np.asarray(layer.act.eval_float(z), dtype=np.float64)


def _act_df(layer: DenseLayer, z: np.ndarray) -> np.ndarray:
    if layer.activation == "identity":
        return np.ones_like(z)
    if layer.activation == "relu":
        return (z >= 0).astype(np.float64)
    return np.asarray(layer.act.df_float(z), dtype=np.float64)


def forward_pre(layers: list[DenseLayer], x: np.ndarray) -> list[np.ndarray]:
    """Float64 pre-activations z_l [batch, n_l] of every layer at the inputs x [batch, n_in]."""
    a = np.asarray(x, dtype=np.float64)
    out = []
    with np.errstate(all="ignore"):
        for layer in layers:
            z = a @ layer.weight.T + layer.bias
            out.append(z)
            a = _act_f(layer, z)
    return out


def exact_pre(layers: list[DenseLayer], li: int, j: int, x: np.ndarray) -> Fraction:
    """z_{li,j}(x) with the exact real parameters, exact rational arithmetic for the affine parts
    and 128-bit activations (:func:`aster_ext.verify.real_forward_exact`; within ~2^-80)."""
    from dataclasses import replace

    from .verify import real_forward_exact

    last = layers[li]
    head = replace(
        last,
        weight=last.weight[j : j + 1],
        bias=last.bias[j : j + 1],
        weight_exact=None if last.weight_exact is None else last.weight_exact[j : j + 1],
        bias_exact=None if last.bias_exact is None else last.bias_exact[j : j + 1],
        activation="identity",
        alpha=None,
        beta=None,
    )
    return real_forward_exact([*layers[:li], head], [Fraction(float(v)) for v in x])[0]


def _objective_and_grad(
    layers: list[DenseLayer],
    params: list[tuple[np.ndarray, np.ndarray]],
    li: int,
    x: np.ndarray,
    target: np.ndarray,
    sign: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """sign[p] · z_{li, target[p]}(x[p]) and its gradient with respect to x[p], for a batch
    (``params``: the (W, b) of every layer in the search dtype)."""
    dt = params[0][0].dtype
    zs = []
    a = x
    with np.errstate(all="ignore"):
        for layer, (w, b) in zip(layers[:li], params[:li], strict=True):
            z = a @ w.T + b
            zs.append(z)
            a = _act_f(layer, z).astype(dt, copy=False)
        w, b = params[li]
        rows = w[target]  # [P, n_{li-1}]
        val = sign * (np.einsum("pk,pk->p", a, rows) + b[target])
        g = sign[:, None].astype(dt) * rows  # d val / d a_{li-1}
        for k in range(li - 1, -1, -1):
            g = (g * _act_df(layers[k], zs[k]).astype(dt, copy=False)) @ params[k][0]  # d val / d a_{k-1}
    return val.astype(np.float64), g.astype(np.float64)


def _search_layer(
    layers: list[DenseLayer],
    li: int,
    neurons: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: SearchBudget,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Best value found and its point, per task (neuron, direction): shape [m, 2] and [m, 2, n_in]."""
    m, n_in = neurons.size, lo.size
    k = budget.starts + 1
    width = hi - lo
    centre = 0.5 * (lo + hi)
    steps = np.geomspace(budget.step0, budget.step_final, budget.steps) if budget.steps > 0 else np.zeros(0)
    best_val = np.full((m, 2), -np.inf)
    best_x = np.repeat(centre[None, None, :], m * 2, axis=0).reshape(m, 2, n_in)
    tasks_per_chunk = max(1, budget.chunk_points // k)
    dt = np.dtype(budget.search_dtype)
    params = [(layer.weight.astype(dt), layer.bias.astype(dt)) for layer in layers[: li + 1]]
    all_tasks = np.arange(m * 2)
    for c0 in range(0, all_tasks.size, tasks_per_chunk):
        tasks = all_tasks[c0 : c0 + tasks_per_chunk]
        t_rep = np.repeat(tasks, k)  # task of every point
        target = neurons[t_rep // 2]
        sign = np.where(t_rep % 2 == 0, -1.0, 1.0)  # task 2i: minimise z_i, 2i+1: maximise
        slot = np.tile(np.arange(k), tasks.size)  # start index within its task
        u = rng.random((t_rep.size, n_in))
        corner = rng.random((t_rep.size, n_in)) < 0.5
        is_corner = (slot % 2 == 1)[:, None]
        x = lo + width * np.where(is_corner, corner.astype(np.float64), u)
        x[slot == 0] = centre
        sign_mode = (slot % 2 == 0)[:, None]
        for it in range(budget.steps + 1):
            val, g = _objective_and_grad(layers, params, li, x.astype(dt, copy=False), target, sign)
            val = np.where(np.isfinite(val), val, -np.inf)
            # best per task among its k points, kept over the iterations
            v2 = val.reshape(tasks.size, k)
            j = np.argmax(v2, axis=1)
            cand = v2[np.arange(tasks.size), j]
            better = cand > best_val.reshape(-1)[tasks]
            if np.any(better):
                tb = tasks[better]
                best_val.reshape(-1)[tb] = cand[better]
                rows = x.reshape(tasks.size, k, n_in)[np.nonzero(better)[0], j[better]]
                best_x.reshape(-1, n_in)[tb] = rows
            if it == budget.steps:
                break
            g = np.where(np.isfinite(g), g, 0.0)
            gmax = np.max(np.abs(g), axis=1, keepdims=True)
            dead = gmax == 0
            rnd = np.where(rng.random(g.shape) < 0.5, -1.0, 1.0)
            d = np.where(sign_mode, np.sign(g), g / np.where(dead, 1.0, gmax))
            d = np.where(dead, rnd, d)
            x = np.clip(x + steps[it] * width * d, lo, hi)
    return best_val, best_x


def neuron_subset(n: int, max_neurons: int | None, seed: int, li: int) -> np.ndarray:
    """The neurons searched in layer ``li``: all, or a random sorted subset of ``max_neurons``
    (depends only on n, max_neurons, seed and li, so different budgets search the same ones)."""
    if max_neurons is None or n <= max_neurons:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, li, 0]).choice(n, max_neurons, replace=False))


def inner_bounds(
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    budget: SearchBudget | None = None,
    layer_indices: list[int] | None = None,
) -> list[LayerInner | None]:
    """Per-layer inner bounds of the pre-activation ranges over the box (module docstring).

    Returns one :class:`LayerInner` per layer (None for layers not in ``layer_indices``). The
    returned lo/hi are re-evaluated by :func:`forward_pre` at the returned points."""
    b = budget or SearchBudget()
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape or lo.size != layers[0].n_in:
        raise ValueError(f"box of size {lo.size} for a network with {layers[0].n_in} inputs")
    if np.any(lo > hi):
        raise ValueError("inner_bounds: lower > upper")
    wanted = range(len(layers)) if layer_indices is None else layer_indices
    out: list[LayerInner | None] = [None] * len(layers)
    for li in wanted:
        n = layers[li].n_out
        neurons = neuron_subset(n, b.max_neurons, b.subset_seed, li)
        rng = np.random.default_rng([b.seed, li, 1])
        _, best_x = _search_layer(layers, li, neurons, lo, hi, b, rng)
        pts = best_x.reshape(-1, lo.size)
        z = forward_pre(layers[: li + 1], pts)[li]
        tgt = np.repeat(neurons, 2)
        vals = z[np.arange(pts.shape[0]), tgt].reshape(-1, 2)
        out[li] = LayerInner(
            neurons=neurons,
            n_total=n,
            lo=vals[:, 0],
            hi=vals[:, 1],
            argmin=best_x[:, 0, :],
            argmax=best_x[:, 1, :],
        )
    return out
