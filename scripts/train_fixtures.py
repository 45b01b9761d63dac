"""Train the small activation test networks in ``tests/fixtures/`` (numpy only, seeded).

Each network is a 2-16-16-1 regressor  y = W3 σ(W2 σ(W1 x + b1) + b2) + b3  fitted to
f(x, y) = sin(x)·cos(y) on [-1.5, 1.5]^2 by full-batch Adam (mean squared error), for one hidden
activation σ each. Export: ONNX with float32 initializers, Gemm nodes and the activation as
the standard ONNX pattern — Sigmoid, Tanh, Softplus, Elu, LeakyRelu(alpha=0.1), HardSigmoid
(alpha=0.2, beta=0.5), Clip(-1, 1) for hard_tanh, x * Sigmoid(x) for SiLU (opset 17), and the
opset-20 ``Gelu`` node for GELU (approximate='tanh' for gelu_tanh). Beside each model,
NAME.spec.json gives the input box and error targets (format of the benchmark specs).

    python scripts/train_fixtures.py [--out tests/fixtures] [--steps 3000] [--only gelu_tanh ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from aster_ext.activations import get_activation

LOWER, UPPER = -1.5, 1.5
HIDDEN = 16
ACTS: dict[str, dict[str, float]] = {
    "sigmoid": {},
    "tanh": {},
    "silu": {},
    "gelu": {},
    "softplus": {},
    "elu": {"alpha": 1.0},
    "leaky_relu": {"alpha": 0.1},
    "hard_sigmoid": {"alpha": 0.2, "beta": 0.5},
    "hard_tanh": {},
    "gelu_tanh": {},  # last: the seeds of the others (1000 + position) stay as they were
}


def target(x: np.ndarray) -> np.ndarray:
    return (np.sin(x[:, 0]) * np.cos(x[:, 1]))[:, None]


def train(act_name: str, params: dict[str, float], steps: int, seed: int) -> list[np.ndarray]:
    """Full-batch Adam on a 21x21 grid; returns [W1, b1, W2, b2, W3, b3] (float32, W: [out, in])."""
    act = get_activation(act_name, **params)
    rng = np.random.default_rng(seed)
    g = np.linspace(LOWER, UPPER, 21)
    x = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    y = target(x)
    sizes = [2, HIDDEN, HIDDEN, 1]
    theta: list[np.ndarray] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        theta += [rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), (n_out, n_in)), np.zeros(n_out)]
    m = [np.zeros_like(p) for p in theta]
    v = [np.zeros_like(p) for p in theta]
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        w1, c1, w2, c2, w3, c3 = theta
        z1 = x @ w1.T + c1
        a1 = act.eval_float(z1)
        z2 = a1 @ w2.T + c2
        a2 = act.eval_float(z2)
        out = a2 @ w3.T + c3
        d_out = 2.0 * (out - y) / len(x)
        d_a2 = d_out @ w3
        d_z2 = d_a2 * act.df_float(z2)
        d_a1 = d_z2 @ w2
        d_z1 = d_a1 * act.df_float(z1)
        grads = [d_z1.T @ x, d_z1.sum(0), d_z2.T @ a1, d_z2.sum(0), d_out.T @ a2, d_out.sum(0)]
        for i, gr in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * gr
            v[i] = b2 * v[i] + (1 - b2) * gr * gr
            theta[i] = theta[i] - lr * (m[i] / (1 - b1**step)) / (np.sqrt(v[i] / (1 - b2**step)) + eps)
    return [p.astype(np.float32) for p in theta]


def _act_nodes(act_name: str, params: dict[str, float], inp: str, out: str, tag: str) -> tuple[list, list]:
    """ONNX nodes (and extra initializers) computing the activation from ``inp`` into ``out``."""
    if act_name == "silu":
        return [
            helper.make_node("Sigmoid", [inp], [f"{tag}_sig"], name=f"{tag}_sigmoid"),
            helper.make_node("Mul", [inp, f"{tag}_sig"], [out], name=f"{tag}_silu"),
        ], []
    if act_name == "hard_tanh":
        inits = [
            numpy_helper.from_array(np.array(-1.0, dtype=np.float32), f"{tag}_min"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{tag}_max"),
        ]
        return [helper.make_node("Clip", [inp, f"{tag}_min", f"{tag}_max"], [out], name=f"{tag}_clip")], inits
    op = {
        "sigmoid": "Sigmoid",
        "tanh": "Tanh",
        "softplus": "Softplus",
        "elu": "Elu",
        "leaky_relu": "LeakyRelu",
        "hard_sigmoid": "HardSigmoid",
        "gelu": "Gelu",
        "gelu_tanh": "Gelu",
    }[act_name]
    attrs = {"approximate": "tanh"} if act_name == "gelu_tanh" else {}
    return [helper.make_node(op, [inp], [out], name=f"{tag}_{act_name}", **params, **attrs)], []


def export(name: str, act_name: str, params: dict[str, float], theta: list[np.ndarray], path: Path) -> None:
    nodes, inits = [], []
    prev = "x"
    for k in range(3):
        w, b = theta[2 * k], theta[2 * k + 1]
        inits += [numpy_helper.from_array(w, f"W{k + 1}"), numpy_helper.from_array(b, f"b{k + 1}")]
        z = f"z{k + 1}" if k < 2 else "y"
        nodes.append(
            helper.make_node("Gemm", [prev, f"W{k + 1}", f"b{k + 1}"], [z], name=f"fc{k + 1}", transB=1)
        )
        if k < 2:
            act_nodes, act_inits = _act_nodes(act_name, params, z, f"a{k + 1}", f"act{k + 1}")
            nodes += act_nodes
            inits += act_inits
            prev = f"a{k + 1}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    opset = 20 if act_name in ("gelu", "gelu_tanh") else 17
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="aster_ext"
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--only", nargs="+", choices=sorted(ACTS), help="train only these activations")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (act_name, params) in enumerate(ACTS.items()):
        if args.only and act_name not in args.only:
            continue
        name = f"mlp_{act_name}"
        theta = train(act_name, params, args.steps, seed=1000 + i)
        export(name, act_name, params, theta, args.out / f"{name}.onnx")
        spec = {
            "name": name,
            "source": "scripts/train_fixtures.py (numpy Adam, sin(x)cos(y) regressor)",
            "input_lower": [LOWER, LOWER],
            "input_upper": [UPPER, UPPER],
            "error_bounds": [0.01, 0.001],
            "layers": [[2, HIDDEN, act_name], [HIDDEN, HIDDEN, act_name], [HIDDEN, 1, "linear"]],
            "activation": act_name,
            "activation_params": params,
        }
        (args.out / f"{name}.spec.json").write_text(json.dumps(spec, indent=1) + "\n")
        g = np.linspace(LOWER, UPPER, 41)
        xs = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
        act = get_activation(act_name, **params)
        h = xs
        for k in range(3):
            h = h @ theta[2 * k].astype(np.float64).T + theta[2 * k + 1]
            if k < 2:
                h = act.eval_float(h)
        rmse = float(np.sqrt(np.mean((h - target(xs)) ** 2)))
        print(f"{name}: test RMSE {rmse:.4f}")


if __name__ == "__main__":
    main()
