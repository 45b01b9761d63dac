"""The fixed-point program of a dense network: every type and every raw constant.

This is the single contract between precision assignment (which fills it in), the bit-exact
simulator, the HLS code generator and the certifier. Semantics of one layer, exactly what the
generated C++ does with ``ap_fixed`` (Q(v -> T) = assignment of the exact value v to type T,
with the program's quantisation and overflow modes; x has one raw value per input element):

    p[j,k]  = Q( w[j,k] * x[k]            -> product_t[j,k] )
    s[j,0]  = Q( p[j,0]                   -> psum_t[j,0] )
    s[j,k]  = Q( s[j,k-1] + p[j,k]        -> psum_t[j,k] )      k = 1 .. n_in-1
    d[j]    = Q( s[j,n_in-1]              -> dot_t[j] )
    t[j]    = Q( d[j] + b[j]              -> bsum_t[j] )
    a[j]    = Q( act(t[j])                -> out_t[j] )         act = relu (max(t,0)) or identity

Other activations (sigmoid, tanh, softplus, elu, leaky_relu, silu, gelu, hard_sigmoid, hard_tanh)
carry an implementation ``act_impl`` (a :class:`~aster_ext.activations.TableImpl` lookup table
or a :class:`~aster_ext.activations.PiecewiseImpl` quantised clamp(s·t + c)), ONE per layer,
shared by all its neurons (one ROM per layer keeps the C++ small; the table covers the hull of
the layer's finite-precision pre-activation ranges). It works on raw integers: with
F_in = act_impl.in_frac >= every bsum_t[j].frac and F_o = act_impl.out_frac,

    r[j]    = t[j]·2^(F_in - F_t[j])                                  (exact: the raw at F_in)
    a[j]    = Q( act_impl.apply(r[j])·2^-F_o   -> out_t[j] )

i.e. the C++ assigns t[j] to a type with F_in fractional bits (exact), calls the generated
implementation function, and assigns its result (F_o fractional bits, exact) to out_t[j].
``activation`` then names the activation (for messages, the report and the certifier).

Inputs: x = Q(x_real -> input_t) (the caller's double -> in_t assignment). Formats are stored as
integer arrays (``width``, ``int_bits``) of the shapes given above; a layer's ``out`` formats
are the next layer's input element formats. The network output type ``output_t`` is one type
wide enough to hold every last-layer out format exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fixedpoint import FixedFormat


@dataclass
class FormatArray:
    """Elementwise ap_fixed formats: ``width`` and ``int_bits`` are int arrays of one shape."""

    width: np.ndarray
    int_bits: np.ndarray

    def __post_init__(self) -> None:
        self.width = np.asarray(self.width, dtype=np.int64)
        self.int_bits = np.broadcast_to(np.asarray(self.int_bits, dtype=np.int64), self.width.shape).copy()
        if np.any(self.width < 1):
            raise ValueError("fixed-point widths must be >= 1")

    @property
    def frac(self) -> np.ndarray:
        return self.width - self.int_bits

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.width.shape)

    @staticmethod
    def uniform(shape: tuple[int, ...], width: int, int_bits: int) -> FormatArray:
        return FormatArray(np.full(shape, width, dtype=np.int64), np.full(shape, int_bits, dtype=np.int64))

    @staticmethod
    def from_frac(frac: np.ndarray, int_bits: np.ndarray) -> FormatArray:
        f = np.asarray(frac, dtype=np.int64)
        i = np.broadcast_to(np.asarray(int_bits, dtype=np.int64), f.shape)
        return FormatArray(f + i, i)

    def at(self, idx: Any, quant: str = "TRN", overflow: str = "WRAP") -> FixedFormat:
        return FixedFormat(int(self.width[idx]), int(self.int_bits[idx]), quant, overflow)

    def distinct(self) -> list[tuple[int, int]]:
        """Distinct (width, int_bits) pairs, sorted."""
        pairs = np.stack([self.width.reshape(-1), self.int_bits.reshape(-1)], axis=1)
        return [tuple(map(int, p)) for p in np.unique(pairs, axis=0)]

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width.tolist(), "int_bits": self.int_bits.tolist()}


@dataclass
class LayerProgram:
    """Types and raw constants of one dense layer (see module docstring for the semantics)."""

    name: str
    activation: str  # "relu" | "identity" | any activation with an act_impl (module docstring)
    weight_raw: np.ndarray  # [n_out, n_in] object ints, value = raw * 2^-weight_t.frac
    weight_t: FormatArray  # [n_out, n_in]
    product_t: FormatArray  # [n_out, n_in]
    psum_t: FormatArray  # [n_out, n_in]
    dot_t: FormatArray  # [n_out]
    bias_raw: np.ndarray  # [n_out] object ints
    bias_t: FormatArray  # [n_out]
    bsum_t: FormatArray  # [n_out]
    out_t: FormatArray  # [n_out]
    act_impl: Any | None = None  # TableImpl | PiecewiseImpl (module docstring); None for relu/identity

    @property
    def n_out(self) -> int:
        return int(self.weight_raw.shape[0])

    @property
    def n_in(self) -> int:
        return int(self.weight_raw.shape[1])


@dataclass
class FixedProgram:
    """A whole fixed-point network: input type, layers, output type, modes."""

    name: str
    input_t: FixedFormat
    layers: list[LayerProgram]
    quant: str = "TRN"
    overflow: str = "WRAP"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out

    @property
    def output_t(self) -> FixedFormat:
        """One type holding every last-layer output format exactly."""
        out = self.layers[-1].out_t
        frac = int(out.frac.max())
        int_bits = int(out.int_bits.max())
        return FixedFormat(frac + int_bits, int_bits, self.quant, self.overflow)

    def input_formats(self, layer_index: int) -> FormatArray:
        """Element formats of the values entering layer ``layer_index``."""
        if layer_index == 0:
            n = self.n_in
            return FormatArray.uniform((n,), self.input_t.width, self.input_t.int_bits)
        return self.layers[layer_index - 1].out_t
