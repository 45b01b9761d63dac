"""The arithmetic program an hls4ml project executes for a dense network, as plain data.

hls4ml 1.3.0 turns the cleaned ONNX chain MatMul -> Add -> [Relu|Tanh|Sigmoid] into
``Dense`` layers (the Add is fused into the bias by ``bn_fuse.py``, which requires the
MatMul's result precision to be 'auto') followed by ``Activation`` layers. Facts used, from the
wheel's ``templates/vivado/nnet_utils``:

- ``nnet_dense_latency.h`` l. 38-44: every product data·weight is stored into ``accum_t`` (one
  quantisation + overflow per product); l. 48-50: the bias is cast to ``accum_t``; l. 54-60: the
  sum is accumulated in ``accum_t`` (overflow handling after each addition; the addition itself
  is exact); l. 64-67: the sum is cast to the layer's ``result_t`` (``nnet_mult.h`` ``cast``).
  ``nnet_dense_resource.h`` performs the same products, bias cast, accum_t additions and
  final cast in another order; with WRAP accumulators (modular) the result is the same, with
  SAT accumulators the certificate requires that no partial sum can saturate.
- ``nnet_activation.h`` l. 40-49: ReLU res = data > 0 ? res_T(data) : 0; tanh/sigmoid: see
  :mod:`.tables`.
- Weights: ``WeightVariable.update_precision`` (``model/types.py`` l. 720-731) prints each value
  with max(0, F) decimals; the C simulation reads the text back with ``operator>>`` into a
  double and assigns it to ``weight_t`` (``ap_fixed_base.h`` l. 2076-2082), the synthesised code
  initialises from the same decimal literals. So w~ = weight_t(double(format(w, '.Ff'))).
- Input: ``<project>_double`` converts each double with ``input_t(double)`` (``nnet_helpers.h``
  ``convert_data`` l. 139-143), i.e. quantisation and overflow of input_t.
- 'auto' Dense result/accum (``infer_precision.py`` l. 160-193): width W_w + W_x + ceil(log2 n_in),
  integer bits I_w + I_x + ceil(log2 n_in); with a bias, I = max(I + (S_b and not S), I_b + (S and
  not S_b)) + 1 and W = I + max(F, F_b).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from .types import HlsType, from_doubles

ACTIVATION_KINDS = ("relu", "tanh", "sigmoid")


@dataclass
class DenseStage:
    """res = result_t(accum_t(b~) + Σ_i accum_t(x_i · w~_ji)) for one hls4ml Dense layer."""

    name: str
    weight: np.ndarray  # real weights [n_out, n_in] float64
    bias: np.ndarray  # real bias [n_out]
    weight_t: HlsType
    bias_t: HlsType
    accum_t: HlsType
    result_t: HlsType
    weight_raw: np.ndarray = field(init=False)  # [n_out, n_in] object ints at weight_t.frac
    bias_raw: np.ndarray = field(init=False)  # [n_out] object ints at bias_t.frac

    weight_q: np.ndarray = field(init=False)  # float64 values of weight_raw (exact: <= 53-bit integers)
    nnz: np.ndarray = field(init=False)  # nonzero quantised weights per row

    def __post_init__(self) -> None:
        self.weight_raw, self.weight_q = _quantized(self.weight, self.weight_t)
        self.bias_raw, _ = _quantized(self.bias, self.bias_t)
        self.nnz = np.count_nonzero(self.weight_q, axis=1).astype(np.float64)

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class ActStage:
    """An hls4ml Activation layer: relu, or a tanh/sigmoid lookup table."""

    name: str
    kind: str  # relu | tanh | sigmoid
    result_t: HlsType
    table_t: HlsType | None = None
    table_size: int | None = None


@dataclass
class Hls4mlProgram:
    input_t: HlsType
    stages: list[DenseStage | ActStage]

    @property
    def output_t(self) -> HlsType:
        return self.stages[-1].result_t


def decimal_round_trip(values: np.ndarray, frac: int) -> np.ndarray:
    """double(format(v, '.{max(0,frac)}f')) for every value: what hls4ml's weight text holds."""
    digits = max(0, int(frac))
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.array([float(f"{v:.{digits}f}") for v in flat.tolist()], dtype=np.float64).reshape(
        np.shape(values)
    )


_PARAM_CACHE: dict[tuple[bytes, tuple[int, ...], HlsType], tuple[np.ndarray, np.ndarray]] = {}


def quantize_parameter(values: np.ndarray, t: HlsType) -> np.ndarray:
    """Raw integers of a weight/bias array as the hls4ml project holds them."""
    return _quantized(values, t)[0].copy()


def _quantized(values: np.ndarray, t: HlsType) -> tuple[np.ndarray, np.ndarray]:
    """(raw integers, their float64 values), memoised and read-only: the type search quantises
    the same arrays many times. The float values are exact while the type is <= 53 bits wide."""
    arr = np.ascontiguousarray(values, dtype=np.float64)
    key = (hashlib.sha1(arr.tobytes()).digest(), arr.shape, t)
    hit = _PARAM_CACHE.get(key)
    if hit is None:
        if len(_PARAM_CACHE) > 4096:
            _PARAM_CACHE.clear()
        raw = from_doubles(decimal_round_trip(arr, t.frac), t)
        vals = np.ldexp(raw.astype(np.float64), -t.frac)
        raw.flags.writeable = False
        vals.flags.writeable = False
        hit = _PARAM_CACHE[key] = (raw, vals)
    return hit


def auto_dense_type(
    input_t: HlsType, weight_t: HlsType, bias_t: HlsType, n_in: int, bias_nonzero: bool = True
) -> HlsType:
    """The type hls4ml's infer_precision gives an 'auto' Dense accum/result (module docstring).

    hls4ml applies the bias rule unless ``infer_no_bias`` is set (it is False by default), so
    ``bias_nonzero`` only matters if a caller enables that option."""
    lg = math.ceil(math.log2(n_in)) if n_in > 0 else 0
    width = weight_t.width + input_t.width + lg
    integers = weight_t.int_bits + input_t.int_bits + lg
    signed = weight_t.signed or input_t.signed
    frac = width - integers
    if bias_nonzero:
        integers = (
            max(integers + (bias_t.signed and not signed), bias_t.int_bits + (signed and not bias_t.signed))
            + 1
        )
        width = integers + max(frac, bias_t.frac)
        signed = signed or bias_t.signed
    return HlsType(width, integers, signed, "TRN", "WRAP")
