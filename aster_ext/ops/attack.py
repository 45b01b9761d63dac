"""A projected-gradient attack on classification margins (a heuristic *upper* reference for
the certified lower bounds; never used as a bound).

For a piecewise-linear network (affine/conv/pool/reshape/add/concat ops, ReLU and max-pool)
the network is affine around a point x: running the symbolic pass on the degenerate box
[x, x] makes every ReLU stably active or inactive and every max-pool window dominated, so the
back-substituted coefficients of y_label - y_k on the input are exactly its gradient at x.
With smooth activations (tanh, GELU, ...) the same back-substitution runs on a *point
context*: every node's range is its float64 value at x and every activation's two lines have
the slope σ'(z) at its own pre-activation z (the chain rule: ∂y/∂x = Π W_l·diag(σ'(z_l))), so
one forward and one backward pass give the gradient instead of n_in + 1 forward evaluations.
The attack takes signed gradient steps on the currently smallest margin, projected on the
box, and returns the smallest margin it evaluated (float64)."""

from __future__ import annotations

import numpy as np

from ..ir import Network
from ..rigorous import Interval
from .activation import ActRelaxation, activation_of_op, is_table_act
from .base import AnalysisContext, op_class
from .interpreter import (
    ancestors_order,
    backsubstitute,
    evaluate,
    logits_node,
    margin_matrix,
    symbolic_ranges,
)


def piecewise_linear(net: Network) -> bool:
    """True when every activation is relu or identity (the exact-gradient path applies)."""
    return not any(is_table_act(op) for op in net.ops())


def point_context(net: Network, x: np.ndarray, maps: dict | None = None) -> AnalysisContext:
    """The analysis context of the single point x (module docstring): ranges = float64 values,
    activation lines = the tangent slope σ'(z) with intercept 0 (the back-substitution then
    carries derivatives, not bounds), other nonlinear ops (max-pool) relaxed on their point."""
    node = logits_node(net)
    values = evaluate(net, np.asarray(x, dtype=np.float64).reshape(1, -1), upto=node)
    ctx = AnalysisContext(net, _maps=maps if maps is not None else {})
    for name in ancestors_order(net, node):
        op = net.op(name)
        v = values[name][0]
        ctx.ranges[name] = Interval(v, v)
        cls = op_class(op.kind)
        if not cls.nonlinear:
            continue
        ins = [ctx.ranges[i] for i in op.inputs]
        if is_table_act(op):
            slope = activation_of_op(op).df_float(ins[0].lo.reshape(-1))
            ctx.relaxations[name] = ActRelaxation(slope, np.zeros_like(slope), slope, np.zeros_like(slope))
        else:
            ctx.relaxations[name] = cls.relaxation(op, ins)
    return ctx


def margin_gradients(net: Network, x: np.ndarray, label: int, maps: dict | None = None) -> np.ndarray:
    """Rows: gradient of y_label - y_k (k != label, in order) with respect to the flat input at x.
    ``maps``: linear-map cache shared between calls on one network. Piecewise-linear networks:
    the symbolic pass on [x, x]; smooth ones: the chain rule on :func:`point_context` -- a search
    direction, never a bound."""
    if piecewise_linear(net):
        ctx, _ = symbolic_ranges(net, x, x, maps=maps)
    else:
        ctx = point_context(net, x, maps)
    node = logits_node(net)
    lam = margin_matrix(int(np.prod(net.op(node).shape)), label)
    coeffs, _ = backsubstitute(ctx, node, lam, upper=False)
    return coeffs[net.input_name]


def gradient_corners(net: Network, lower: np.ndarray, upper: np.ndarray, label: int) -> np.ndarray:
    """[n_classes - 1, n_in]: per class k != label (in order), the corner of the flat box [lower,
    upper] at the bound where each input lowers y_label - y_k to first order at the box centre
    (the lower bound where the margin's gradient there is positive, else the upper one)."""
    lo, hi = np.asarray(lower).reshape(-1), np.asarray(upper).reshape(-1)
    grads = margin_gradients(net, (lo + hi) / 2, label)
    return np.where(grads > 0, lo[None, :], hi[None, :])


def pgd_min_margin(
    net: Network,
    lower: np.ndarray,
    upper: np.ndarray,
    label: int,
    steps: int = 30,
    restarts: int = 2,
    seed: int = 0,
) -> float:
    """Smallest min_k (y_label - y_k) found by signed-gradient descent inside the box."""
    rng = np.random.default_rng(seed)
    node = logits_node(net)
    ks = None
    best = np.inf
    maps: dict = {}
    width = upper - lower
    for r in range(restarts):
        x = 0.5 * (lower + upper) if r == 0 else lower + rng.random(lower.size) * width
        for t in range(steps):
            y = evaluate(net, x[None], upto=node)[node].reshape(-1)
            margins = y[label] - y
            margins[label] = np.inf
            best = min(best, float(margins.min()))
            ks = [k for k in range(y.size) if k != label]
            worst = int(np.argmin(margins[ks]))
            grad = margin_gradients(net, x, label, maps)[worst]
            step = 0.5 * width * (1.0 - t / steps) + 1e-12
            x = np.clip(x - step * np.sign(grad), lower, upper)
        y = evaluate(net, x[None], upto=node)[node].reshape(-1)
        margins = y[label] - y
        margins[label] = np.inf
        best = min(best, float(margins.min()))
    return best
