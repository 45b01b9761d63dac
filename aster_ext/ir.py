"""Network IR: a networkx DiGraph of primitive operations (DESIGN §2).

Every node carries an :class:`Op` (kind + attributes) and the shape of its output (batch
dimension excluded). Edges go from producer to consumer; ``Op.inputs`` keeps the operand
order. Parameters are float64 numpy arrays; when the network's *real* parameters are not
exactly float64 (decimals of an Aster ``.scala`` file, or exactly folded rationals), the
exact values are kept beside them as object arrays of ``fractions.Fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import networkx as nx
import numpy as np

from .errors import UnsupportedError, UserError

NODE_KINDS = frozenset(
    {
        "input",
        "affine",  # dense: y = W x + b, W [n_out, n_in]
        "conv2d",  # kernel [C_out, C_in/group, kh, kw], bias [C_out], stride, padding, dilation, group
        "conv1d",  # kernel [C_out, C_in/group, k], bias, stride (s,), padding (begin, end), dilation, group
        "add",  # residual: y = a + b
        "act",  # activation: attrs["fn"] in ACTIVATIONS (+ "alpha" where it has one)
        "maxpool",  # kernel, stride, padding (begins..., ends...), dilation; 1-D or 2-D; global = whole map
        "avgpool",  # as maxpool + count_include_pad
        "pad",  # constant padding: padding (begins..., ends...) over the batch-free axes, value
        "flatten",
        "reshape",
        "transpose",  # perm over the batch-free axes
        "concat",  # axis (batch-free), two or more operands
        "softmax",
        "argmax",
        "output",
    }
)

ACTIVATIONS = frozenset(
    {
        "relu",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "softplus",
        "elu",
        "silu",
        "gelu",
        "gelu_tanh",
        "hard_sigmoid",
        "hard_tanh",
        "identity",
    }
)


@dataclass
class Op:
    """One IR operation. ``attrs`` holds kind-specific parameters (arrays, ints, strings)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it came from (ONNX node name/op, DSL line), for messages

    def __post_init__(self) -> None:
        if self.kind not in NODE_KINDS:
            raise ValueError(f"unknown IR node kind {self.kind!r}")
        if self.kind == "act" and self.attrs.get("fn") not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.attrs.get('fn')!r}")

    def describe(self) -> str:
        extra = f" ({self.source})" if self.source else ""
        fn = f":{self.attrs['fn']}" if self.kind == "act" else ""
        return f"node '{self.name}' [{self.kind}{fn}]{extra}"


@dataclass
class Network:
    """A lowered network: a DAG of :class:`Op` with one input and one or more outputs.

    ``reference`` names the real network N the analyses certify against, e.g.
    ``"DSL decimals (exact)"`` or ``"ONNX float32 initializers (exact)"`` (DESIGN §3).
    """

    name: str
    graph: nx.DiGraph
    input_name: str
    output_names: tuple[str, ...]
    reference: str
    input_shape: tuple[int, ...]

    def op(self, name: str) -> Op:
        return self.graph.nodes[name]["op"]

    def ops(self) -> list[Op]:
        """Operations in a deterministic topological order."""
        order = nx.lexicographical_topological_sort(self.graph, key=lambda n: self._rank(n))
        return [self.graph.nodes[n]["op"] for n in order]

    def _rank(self, name: str) -> str:
        return f"{self.graph.nodes[name].get('index', 0):08d}"

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return sum(int(np.prod(self.op(o).shape)) for o in self.output_names)


def build_network(
    name: str, ops: list[Op], reference: str, output_names: tuple[str, ...] | None = None
) -> Network:
    """Assemble a :class:`Network` from ops listed in a valid topological order.

    The last op is the output unless ``output_names`` says otherwise. Checks that every
    operand exists, that there is exactly one ``input`` op and that parameters are finite.
    """
    g = nx.DiGraph()
    inputs = [o for o in ops if o.kind == "input"]
    if len(inputs) != 1:
        raise UserError(f"{name}: expected exactly one input, found {len(inputs)}")
    for index, o in enumerate(ops):
        if o.name in g:
            raise UserError(f"{name}: duplicate node name {o.name!r}")
        for src in o.inputs:
            if src not in g:
                raise UserError(f"{name}: {o.describe()} uses undefined value {src!r}")
        _check_finite(name, o)
        g.add_node(o.name, op=o, index=index)
        for src in o.inputs:
            g.add_edge(src, o.name)
    outs = output_names if output_names is not None else (ops[-1].name,)
    return Network(
        name=name,
        graph=g,
        input_name=inputs[0].name,
        output_names=tuple(outs),
        reference=reference,
        input_shape=tuple(inputs[0].shape),
    )


def _check_finite(net_name: str, o: Op) -> None:
    for key, value in o.attrs.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise UserError(f"{net_name}: {o.describe()} has NaN or infinite values in '{key}'")


# --------------------------------------------------------------------------------------
# Dense-chain view used by the Aster-style analyses (fully connected ReLU/linear nets).
# --------------------------------------------------------------------------------------


@dataclass
class DenseLayer:
    """y = act(W x + b). ``weight``/``bias`` are float64; ``*_exact`` are Fraction arrays
    when the real parameters are not exactly the float64 values (else None)."""

    name: str
    weight: np.ndarray  # [n_out, n_in] float64
    bias: np.ndarray  # [n_out] float64
    activation: str  # "relu" | "identity" (linear) | other ACTIVATIONS
    weight_exact: np.ndarray | None = None
    bias_exact: np.ndarray | None = None
    alpha: float | None = None  # leaky_relu / elu / hard_sigmoid parameter
    beta: float | None = None  # hard_sigmoid parameter

    @property
    def act(self):  # -> aster_ext.activations.Activation
        """The rigorous activation object of this layer (cached per (name, alpha, beta))."""
        return activation_object(self.activation, self.alpha, self.beta)

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    def exact_weight(self) -> np.ndarray:
        """The real weights as an object array of Fractions."""
        return self.weight_exact if self.weight_exact is not None else to_fractions(self.weight)

    def exact_bias(self) -> np.ndarray:
        return self.bias_exact if self.bias_exact is not None else to_fractions(self.bias)


@lru_cache(maxsize=256)
def activation_object(name: str, alpha: float | None = None, beta: float | None = None):  # -> Activation
    """:func:`aster_ext.activations.get_activation`, cached (its shape analysis is computed once)."""
    from .activations import get_activation

    return get_activation(name, alpha, beta)


def trailing_softmax(net: Network) -> bool:
    """True when the network's single output is a softmax whose only successors are outputs.

    The dense-chain view then stops at the logits before it (DESIGN §6): softmax is monotone,
    so the predicted class follows from the logits, and the certified bound is on the logits."""
    if len(net.output_names) != 1:
        return False
    ops = [o for o in net.ops() if o.kind not in ("output",)]
    return bool(ops) and ops[-1].kind == "softmax"


def dense_chain(net: Network, allowed_activations: frozenset[str] | None = None) -> list[DenseLayer]:
    """View ``net`` as a chain input -> affine -> [act] -> affine -> ... (DESIGN §7 networks).

    Flatten/reshape/identity nodes are skipped; a softmax that is the network's last operation
    (:func:`trailing_softmax`) ends the chain at its logits; anything else raises
    UnsupportedError naming the node.
    """
    layers: list[DenseLayer] = []
    if len(net.output_names) != 1:
        raise UnsupportedError(f"{net.name}: the dense-chain analyses need a single output")
    stop_softmax = trailing_softmax(net)
    for o in net.ops():
        if o.kind in ("input", "flatten", "reshape", "output"):
            continue
        if o.kind == "affine":
            layers.append(
                DenseLayer(
                    name=o.name,
                    weight=o.attrs["weight"],
                    bias=o.attrs["bias"],
                    activation="identity",
                    weight_exact=o.attrs.get("weight_exact"),
                    bias_exact=o.attrs.get("bias_exact"),
                )
            )
            continue
        if o.kind == "act":
            fn = o.attrs["fn"]
            if fn == "identity":
                continue
            if not layers or layers[-1].activation != "identity":
                raise UnsupportedError(f"{net.name}: {o.describe()} does not follow an affine layer")
            if allowed_activations is not None and fn not in allowed_activations:
                raise UnsupportedError(
                    f"{net.name}: {o.describe()}: activation '{fn}' is not supported by this analysis "
                    f"(supported: {', '.join(sorted(allowed_activations))})"
                )
            layers[-1].activation = fn
            layers[-1].alpha = o.attrs.get("alpha")
            layers[-1].beta = o.attrs.get("beta")
            continue
        if o.kind == "softmax" and stop_softmax:
            break
        if o.kind == "softmax":
            raise UnsupportedError(f"{net.name}: {o.describe()}: softmax is not analysed by this mode")
        raise UnsupportedError(
            f"{net.name}: {o.describe()} is not supported by the dense-chain analyses "
            "(only affine layers with relu/linear activations)"
        )
    if not layers:
        raise UserError(f"{net.name}: the network has no affine layer")
    return layers


def to_fractions(a: np.ndarray) -> np.ndarray:
    """Exact Fraction copy of a float array (floats are dyadic rationals)."""
    out = np.empty(a.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(np.asarray(a, dtype=np.float64).reshape(-1)):
        flat[i] = Fraction(float(v))
    return out
