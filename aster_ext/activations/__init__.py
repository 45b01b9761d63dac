"""Rigorous activation library (DESIGN §4): one class per activation holding all its transfer
functions (image, slope set, linear relaxation, high-precision and float evaluation), plus the
fixed-point implementations (lookup tables for smooth activations, quantised piecewise-linear
formulas otherwise) with rigorous implementation-error bounds, bit-exact ``apply`` and C++.
"""

from __future__ import annotations

from ._arb import working_precision as working_precision  # public: arb precision context
from .base import Activation, Structure
from .elu import Elu
from .gelu import Gelu
from .gelu_tanh import GeluTanh
from .hard import HardSigmoid, HardTanh
from .piecewise import PiecewiseImpl, build_piecewise, choose_const_frac
from .relu import Identity, LeakyRelu, Relu
from .segtable import SegmentedTableImpl, build_segmented
from .sigmoid import Sigmoid
from .silu import Silu
from .softplus import Softplus
from .table import TableImpl, build_table, choose_index_bits
from .tanh import Tanh

ACTIVATION_CLASSES: dict[str, type[Activation]] = {
    cls.name: cls
    for cls in (
        Sigmoid,
        Tanh,
        Softplus,
        Elu,
        LeakyRelu,
        Silu,
        Gelu,
        GeluTanh,
        HardSigmoid,
        HardTanh,
        Relu,
        Identity,
    )
}

_PARAMS = {"elu": ("alpha",), "leaky_relu": ("alpha",), "hard_sigmoid": ("alpha", "beta")}


def get_activation(name: str, alpha: float | None = None, beta: float | None = None) -> Activation:
    """The activation ``name`` (IR spelling, see :data:`aster_ext.ir.ACTIVATIONS`).

    ``alpha``/``beta`` are the ONNX attributes (None = ONNX default: leaky_relu α = 0.01,
    elu α = 1, hard_sigmoid α = 0.2, β = 0.5); giving one to an activation without it is an error.
    """
    cls = ACTIVATION_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown activation {name!r} (known: {', '.join(sorted(ACTIVATION_CLASSES))})")
    allowed = _PARAMS.get(name, ())
    kwargs: dict[str, float] = {}
    for key, value in (("alpha", alpha), ("beta", beta)):
        if value is None:
            continue
        if key not in allowed:
            raise ValueError(f"activation {name!r} has no parameter {key!r}")
        kwargs[key] = float(value)
    return cls(**kwargs)


__all__ = [
    "ACTIVATION_CLASSES",
    "Activation",
    "Elu",
    "Gelu",
    "GeluTanh",
    "HardSigmoid",
    "HardTanh",
    "Identity",
    "LeakyRelu",
    "PiecewiseImpl",
    "Relu",
    "Sigmoid",
    "Silu",
    "Softplus",
    "Structure",
    "SegmentedTableImpl",
    "TableImpl",
    "Tanh",
    "build_piecewise",
    "build_segmented",
    "build_table",
    "choose_const_frac",
    "choose_index_bits",
    "get_activation",
]
