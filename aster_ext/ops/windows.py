"""Sliding-window index tables shared by convolution and pooling (any number of spatial axes).

For an input with spatial shape S (d axes), kernel K, stride s, dilation δ and leading pads p,
output position o and kernel offset k read input position  o·s - p + k·δ  (per axis); positions
outside [0, S) are padding. :func:`window_table` returns, for every (output position, kernel
offset) pair, the C-order flat spatial index of the input element read, or -1 for padding.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError


def spatial_attrs(op_attrs: dict, d: int, default_stride: tuple[int, ...] | None = None):
    """(kernel-independent) stride, dilation, (pads_begin, pads_end) of a conv/pool node with d axes."""
    stride = tuple(int(v) for v in op_attrs.get("stride", default_stride or (1,) * d))
    dil = tuple(int(v) for v in op_attrs.get("dilation", (1,) * d))
    pads = tuple(int(v) for v in op_attrs.get("padding", (0,) * (2 * d)))
    if len(stride) != d or len(dil) != d or len(pads) != 2 * d:
        raise UnsupportedError(f"conv/pool attributes do not match {d} spatial axes")
    return stride, dil, pads[:d], pads[d:]


def window_table(
    in_spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    pads_begin: tuple[int, ...],
    out_spatial: tuple[int, ...],
) -> np.ndarray:
    """int64 [P, K]: flat input spatial index read by output position p at kernel offset k, or -1."""
    d = len(in_spatial)
    out_pos = np.indices(out_spatial).reshape(d, -1)  # [d, P]
    ker_pos = np.indices(kernel).reshape(d, -1)  # [d, K]
    s = np.asarray(stride).reshape(d, 1, 1)
    dl = np.asarray(dilation).reshape(d, 1, 1)
    pb = np.asarray(pads_begin).reshape(d, 1, 1)
    coord = out_pos[:, :, None] * s - pb + ker_pos[:, None, :] * dl  # [d, P, K]
    size = np.asarray(in_spatial).reshape(d, 1, 1)
    valid = np.all((coord >= 0) & (coord < size), axis=0)
    flat = np.ravel_multi_index(tuple(np.clip(coord, 0, size - 1)), in_spatial)
    return np.where(valid, flat, -1).astype(np.int64)


def channel_windows(
    op_attrs: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...], kernel
) -> np.ndarray:
    """Pooling windows per channel: int64 [C·P, K] of flat input indices (C-order), -1 = padding."""
    c = in_shape[0]
    d = len(in_shape) - 1
    kernel = tuple(int(k) for k in kernel)
    stride, dil, pb, _ = spatial_attrs(op_attrs, d, default_stride=kernel)
    table = window_table(tuple(in_shape[1:]), kernel, stride, dil, pb, tuple(out_shape[1:]))
    n_sp = int(np.prod(in_shape[1:]))
    idx = np.arange(c)[:, None, None] * n_sp + table[None, :, :]
    idx = np.where(table[None, :, :] >= 0, idx, -1)
    return idx.reshape(c * table.shape[0], table.shape[1])
