"""A projected-gradient attack on classification margins (a heuristic *upper* reference for
the certified lower bounds; never used as a bound).

Networks with smooth activations take forward-difference gradients (:func:`margin_gradients`).
For a piecewise-linear network (affine/conv/pool/reshape/add/concat ops, ReLU and max-pool)
the network is affine around a point x: running the symbolic pass on the degenerate box
[x, x] makes every ReLU stably active or inactive and every max-pool window dominated, so the
back-substituted coefficients of y_label - y_k on the input are exactly its gradient at x.
The attack takes signed gradient steps on the currently smallest margin, projected on the
box, and returns the smallest margin it evaluated (float64)."""

from __future__ import annotations

import numpy as np

from ..ir import Network
from .activation import PIECEWISE_LINEAR_ACTS
from .interpreter import backsubstitute, evaluate, logits_node, margin_matrix, symbolic_ranges


def piecewise_linear(net: Network) -> bool:
    """True when every activation is relu or identity (the exact-gradient path applies)."""
    return all(op.kind != "act" or op.attrs["fn"] in PIECEWISE_LINEAR_ACTS for op in net.ops())


FD_STEP = 2.0**-20  # relative forward-difference step of the gradient of smooth networks
FD_BATCH = 512  # points per evaluation of the forward differences


def margin_gradients(net: Network, x: np.ndarray, label: int, maps: dict | None = None) -> np.ndarray:
    """Rows: gradient of y_label - y_k (k != label, in order) with respect to the flat input at x.
    ``maps``: linear-map cache shared between calls on one network. Networks with smooth
    activations (tanh, GELU, ...): forward differences of the float64 network (one batched
    evaluation of n_in + 1 points, step FD_STEP·max(1, |x_i|)) -- a search direction, never a bound."""
    if not piecewise_linear(net):
        return _fd_margin_gradients(net, np.asarray(x, dtype=np.float64).reshape(-1), label)
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


def _fd_margin_gradients(net: Network, x: np.ndarray, label: int) -> np.ndarray:
    """Forward-difference gradients of the margins y_label - y_k (k != label) at the flat x."""
    node = logits_node(net)
    h = FD_STEP * np.maximum(1.0, np.abs(x))
    rows = []
    for start in range(0, x.size + 1, FD_BATCH):  # bounded memory on large inputs (CIFAR: 3073 points)
        idx = np.arange(start, min(start + FD_BATCH, x.size + 1))
        pts = np.repeat(x[None, :], idx.size, axis=0)
        moved = idx > 0
        pts[np.flatnonzero(moved), idx[moved] - 1] += h[idx[moved] - 1]
        out = evaluate(net, pts.reshape(-1, *net.input_shape), upto=node)[node]
        rows.append(out.reshape(idx.size, -1))
    y = np.concatenate(rows)
    m = y[:, [label]] - y  # [n_in + 1, n_out]
    ks = [k for k in range(y.shape[1]) if k != label]
    return ((m[1:, ks] - m[0, ks][None, :]) / h[:, None]).T
