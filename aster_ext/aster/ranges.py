"""Aster's range analysis: ONE interval per layer, in exact rationals (DESIGN §7).

What Aster's code computes (facts from its source, NNRangeAnalysisPhase / NNQuantizationPhase):

- Every matrix is over-approximated by its hull ``Wh = [min W, max W]``, every bias vector by
  ``bh = [min b, max b]``; the network input by the hull ``X_0`` of all input intervals.
- Layer-level ranges (used for the bias sum and the activation): ``D_l = n_{l-1}·(Wh_l ⊗ X_{l-1})``,
  ``B_l = D_l ⊕ bh_l``, ``X_l = ReLU(B_l)`` (clamp at 0) or ``B_l`` for linear layers.
- The unrolled code's products and partial sums are then re-evaluated from the *individual* input
  elements: product k has range ``Wh_l ⊗ X_{l-1,k}``, partial sum k the sum of products 0..k, and
  the dot result (the last partial sum) overrides ``D_l``. For layers >= 2 all inputs share
  ``X_{l-1}``, so nothing changes; for layer 1 the dot range is ``Σ_k Wh_1 ⊗ X_0,k`` (the per-input
  intervals), which is narrower than ``D_1`` — this is why the layer-1 dot rows of Aster's LP have
  more slack than ``n_0·(Wh_1 ⊗ X_0)`` would give, while the layer-1 bias rows use ``D_1``.
- Integer bits: ``I(r) = bitlength(floor|r|) + 1`` (sign included) and unsigned ``u(r) =
  bitlength(floor|r|)`` of the maximum magnitude of the range. Aster computes ``floor`` through
  a Java ``double -> int`` conversion, which saturates at 2^31 - 1, so its ``I`` never exceeds 32
  (``u`` never exceeds 31); ``saturate=False`` gives the true values.
- Propagation factor of Aster's error model: ``M_l = max_i |Σ_j W_l[i, j]|`` (signed row sums).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import UserError
from ..ir import DenseLayer

JAVA_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Interval:
    """Closed interval [lo, hi] of exact rationals."""

    lo: Fraction
    hi: Fraction

    @staticmethod
    def of(lo: Fraction | float | int, hi: Fraction | float | int) -> Interval:
        a, b = Fraction(lo), Fraction(hi)
        if a > b:
            raise ValueError(f"empty interval [{a}, {b}]")
        return Interval(a, b)

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def __mul__(self, other: Interval) -> Interval:
        c = (self.lo * other.lo, self.lo * other.hi, self.hi * other.lo, self.hi * other.hi)
        return Interval(min(c), max(c))

    def scale(self, k: int | Fraction) -> Interval:
        a, b = self.lo * k, self.hi * k
        return Interval(min(a, b), max(a, b))

    def union(self, other: Interval) -> Interval:
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def relu(self) -> Interval:
        return Interval(max(Fraction(0), self.lo), max(Fraction(0), self.hi))

    @property
    def maxabs(self) -> Fraction:
        return max(abs(self.lo), abs(self.hi))

    def __repr__(self) -> str:
        return f"[{float(self.lo):.6g}, {float(self.hi):.6g}]"


def _floor_abs(r: Fraction, saturate: bool) -> int:
    if saturate:
        # Aster: Rational.integerPart = doubleValue.toInt (Java: truncation, saturating at 2^31-1)
        return min(int(float(abs(r))), JAVA_INT_MAX)
    a = abs(r)
    return a.numerator // a.denominator


def int_bits(r: Fraction, saturate: bool = False) -> int:
    """Signed integer bits I(r) = bitlength(floor|r|) + 1 (Aster's integerBitsNeeded)."""
    return _floor_abs(Fraction(r), saturate).bit_length() + 1


def uint_bits(r: Fraction, saturate: bool = False) -> int:
    """Unsigned integer bits u(r) = bitlength(floor|r|) (Aster's unsignedIntegerBitsNeeded)."""
    return _floor_abs(Fraction(r), saturate).bit_length()


def guard_bits(n_in: int) -> int:
    """Aster's guard bits g = ceil(log2 n) + 1 for a dot product of n terms."""
    return (n_in - 1).bit_length() + 1


@dataclass
class LayerRanges:
    """Aster's ranges and integer bits of one dense layer (index is 1-based, as in Aster's names)."""

    index: int
    name: str
    activation: str
    n_in: int
    n_out: int
    weight_hull: Interval
    bias_hull: Interval
    inputs: list[Interval]  # range of input element k
    products: list[Interval]  # Wh ⊗ inputs[k]
    psums: list[Interval]  # Σ_{m<=k} products[m]; psums[-1] is the dot range
    dot_layer: Interval  # n_in·(Wh ⊗ hull(inputs)): Aster's layer-level D_l (feeds the bias sum)
    bias_sum: Interval  # B_l = dot_layer ⊕ bias_hull
    out: Interval  # X_l = ReLU(B_l) or B_l
    m_signed: Fraction  # max_i |Σ_j W[i,j]|
    m_abs: Fraction  # max_i Σ_j |W[i,j]|
    saturate: bool
    guard: int
    I_weight: int
    I_bias: int
    u_in: list[int]  # u(inputs[k])
    I_in: list[int]  # I(inputs[k])
    I_prod: list[int]
    I_psum: list[int]
    I_dot: int
    I_bsum: int
    I_out: int

    @property
    def dot(self) -> Interval:
        """Aster's dot range for this layer (the one its dot rows and dot type use)."""
        return self.psums[-1]


def scaled_ints(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(ints, D) with a == ints / D exactly: Fractions over their common denominator (object ints)."""
    arr = np.asarray(a, dtype=object)
    dens = {Fraction(v).denominator for v in arr.flat}
    d = math.lcm(*dens) if dens else 1
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        f = Fraction(arr[idx])
        out[idx] = f.numerator * (d // f.denominator)
    return out, d


def to_fraction_array(a: np.ndarray) -> np.ndarray:
    """Object array of Fractions (floats are taken exactly; Fractions/ints kept); rejects NaN/inf."""
    arr = np.asarray(a)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        v = arr[idx]
        if isinstance(v, Fraction):
            out[idx] = v
            continue
        f = v if isinstance(v, int) else float(v)
        if isinstance(f, float) and not math.isfinite(f):
            raise UserError(f"input bound {idx} is not finite ({f})")
        out[idx] = Fraction(f)
    return out


def input_box(lower: np.ndarray, upper: np.ndarray) -> list[Interval]:
    lo = to_fraction_array(np.asarray(lower).reshape(-1))
    hi = to_fraction_array(np.asarray(upper).reshape(-1))
    if lo.shape != hi.shape:
        raise UserError("input lower and upper bounds have different lengths")
    box = []
    for k, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if a is None or b is None:
            raise UserError(f"input {k}: missing bound")
        if a > b:
            raise UserError(f"input {k}: empty range [{float(a)}, {float(b)}] (lower > upper)")
        box.append(Interval(a, b))
    return box


def aster_ranges(
    layers: list[DenseLayer], lower: np.ndarray, upper: np.ndarray, saturate: bool = True
) -> list[LayerRanges]:
    """Aster's per-layer ranges over the input box [lower, upper] (exact rationals)."""
    box = input_box(lower, upper)
    if layers and len(box) != layers[0].n_in:
        raise UserError(f"the input box has {len(box)} entries but the network has {layers[0].n_in} inputs")
    inputs = box
    out: list[LayerRanges] = []
    for index, layer in enumerate(layers, start=1):
        if layer.activation not in ("relu", "identity"):
            raise UserError(
                f"layer {layer.name}: Aster supports relu and linear layers, not {layer.activation}"
            )
        w = layer.exact_weight()
        b = layer.exact_bias()
        if len(inputs) != layer.n_in:
            raise UserError(
                f"layer {layer.name}: expects {layer.n_in} inputs, previous layer gives {len(inputs)}"
            )
        wh = Interval(min(w.flat), max(w.flat))
        bh = Interval(min(b.flat), max(b.flat))
        hull = inputs[0]
        for r in inputs[1:]:
            hull = hull.union(r)
        dot_layer = (wh * hull).scale(layer.n_in)
        bsum = dot_layer + bh
        act = bsum.relu() if layer.activation == "relu" else bsum
        products = [wh * r for r in inputs]
        psums: list[Interval] = []
        acc: Interval | None = None
        for p in products:
            acc = p if acc is None else acc + p
            psums.append(acc)
        wi, wd = scaled_ints(w)
        row_sums = wi.sum(axis=1)
        abs_sums = np.where(wi >= 0, wi, -wi).sum(axis=1)
        out.append(
            LayerRanges(
                index=index,
                name=layer.name,
                activation=layer.activation,
                n_in=layer.n_in,
                n_out=layer.n_out,
                weight_hull=wh,
                bias_hull=bh,
                inputs=list(inputs),
                products=products,
                psums=psums,
                dot_layer=dot_layer,
                bias_sum=bsum,
                out=act,
                m_signed=Fraction(max(abs(v) for v in row_sums), wd),
                m_abs=Fraction(max(abs_sums), wd),
                saturate=saturate,
                guard=guard_bits(layer.n_in),
                I_weight=int_bits(wh.maxabs, saturate),
                I_bias=int_bits(bh.maxabs, saturate),
                u_in=[uint_bits(r.maxabs, saturate) for r in inputs],
                I_in=[int_bits(r.maxabs, saturate) for r in inputs],
                I_prod=[int_bits(p.maxabs, saturate) for p in products],
                I_psum=[int_bits(s.maxabs, saturate) for s in psums],
                I_dot=int_bits(psums[-1].maxabs, saturate),
                I_bsum=int_bits(bsum.maxabs, saturate),
                I_out=int_bits(act.maxabs, saturate),
            )
        )
        inputs = [act] * layer.n_out
    return out
