"""Random smooth-activation networks of the nonlinear-depth experiments (issue 13).

As ``tests/programs.py`` makes them: weights N(0, 1)/sqrt(fan-in) and biases N(0, 0.1), both
float32-representable (stored as float64), hidden layers of one activation, a linear output layer;
n_in = 4, n_out = 3 for widths <= 32, n_in = 8, n_out = 4 for wider ones. The seed is the CRC-32 of
"act-depth-width", so a network depends on (activation, depth, width) only.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..ir import DenseLayer

#: the activation parameter of the layers whose activation has one
ALPHA = {"elu": 1.0}


def random_activation_net(act: str, depth: int, width: int) -> list[DenseLayer]:
    """The random network of (act, depth, width) (module docstring); its input box is [-1, 1]^n_in."""
    rng = np.random.default_rng(zlib.crc32(f"{act}-{depth}-{width}".encode()))
    n_in, n_out = (4, 3) if width <= 32 else (8, 4)
    widths = [n_in] + [width] * depth + [n_out]
    layers = []
    for li in range(len(widths) - 1):
        w = (rng.normal(0, 1, (widths[li + 1], widths[li])) / np.sqrt(widths[li])).astype(np.float32)
        b = rng.normal(0, 0.1, widths[li + 1]).astype(np.float32)
        fn = "identity" if li == len(widths) - 2 else act
        weight, bias = w.astype(np.float64), b.astype(np.float64)
        layers.append(DenseLayer(f"l{li}", weight, bias, fn, alpha=ALPHA.get(fn)))
    return layers
