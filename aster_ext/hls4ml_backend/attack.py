"""Adversarial local search in an input box, shared by the hls4ml verifiers and comparison scripts.

Maximises a per-input score (e.g. max_o |y~_o(x) - y_o(x)| / bound_o on the bit-exact simulator)
over the box [lo, hi]: keep the ``keep`` best points, each round perturb each of them
``per_start`` times uniformly within ±step·(hi - lo) per coordinate (clipped to the box), with
step = 2^-(first + it mod cycle) (coarse to fine, restarted every ``cycle`` rounds), and keep the
``keep`` best of the old and new points. Random search, no gradient: the simulators are integer
programs (piecewise constant), so gradients of the score carry no information.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def box_local_search(
    score: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
    iters: int,
    keep: int = 8,
    per_start: int = 16,
    first: int = 1,
    cycle: int = 12,
) -> np.ndarray:
    """The starts (the ``keep`` best of ``x`` by ``score``) and every round's kept points, stacked
    (``keep`` · (iters + 1) rows; the best point found is among them)."""
    starts = x[np.argsort(-score(x))[:keep]]
    found = [starts]
    for it in range(iters):
        step = (hi - lo) * 0.5 ** (first + it % cycle)
        cand = np.clip(
            starts[:, None, :] + step * rng.uniform(-1, 1, (starts.shape[0], per_start, lo.size)), lo, hi
        ).reshape(-1, lo.size)
        both = np.concatenate([starts, cand])
        starts = both[np.argsort(-score(both))[:keep]]
        found.append(starts)
    return np.concatenate(found)
