"""Helpers for the hls4ml backend tests: small random dense ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def dense_onnx(
    path: Path, sizes: list[int], acts: list[str | None], seed: int = 0, scale: float = 1.0
) -> Path:
    """A Gemm chain with the given layer sizes and activations (ONNX op names or None), float32."""
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.normal(size=(b, a)) * scale / np.sqrt(a)).astype(np.float32)
        bias = (rng.normal(size=b) * 0.3).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bias, f"B{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [f"g{i}"], transB=1))
        cur = f"g{i}"
        if acts[i]:
            nodes.append(helper.make_node(acts[i], [cur], [f"a{i}"]))
            cur = f"a{i}"
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path
