"""A projected-gradient attack on classification margins (a heuristic *upper* reference for
the certified lower bounds; never used as a bound).

For a piecewise-linear network (affine/conv/pool/reshape/add/concat ops, ReLU and max-pool)
the network is affine around a point x: running the symbolic pass on the degenerate box
[x, x] makes every ReLU stably active or inactive and every max-pool window dominated, so the
back-substituted coefficients of y_label - y_k on the input are exactly its gradient at x.
The attack takes signed gradient steps on the currently smallest margin, projected on the
box, and returns the smallest margin it evaluated (float64)."""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir import Network
from .interpreter import backsubstitute, evaluate, logits_node, margin_matrix, symbolic_ranges


def _check_piecewise_linear(net: Network) -> None:
    for op in net.ops():
        if op.kind == "act" and op.attrs["fn"] not in ("relu", "identity"):
            raise UnsupportedError(f"margin attack: {op.describe()} is not piecewise linear")


def margin_gradients(net: Network, x: np.ndarray, label: int, maps: dict | None = None) -> np.ndarray:
    """Rows: gradient of y_label - y_k (k != label, in order) with respect to the flat input at x.
    ``maps``: linear-map cache shared between calls on one network."""
    _check_piecewise_linear(net)
    ctx, _ = symbolic_ranges(net, x, x, maps=maps)
    node = logits_node(net)
    lam = margin_matrix(int(np.prod(net.op(node).shape)), label)
    coeffs, _ = backsubstitute(ctx, node, lam, upper=False)
    return coeffs[net.input_name]


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
    _check_piecewise_linear(net)
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
