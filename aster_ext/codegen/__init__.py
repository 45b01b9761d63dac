"""HLS C++ generation (``hls``) and the g++ compile/run harness (``compile``)."""

from .compile import compile_harness, find_ap_types, run_harness
from .hls import generate_harness, generate_hls, generate_multi_harness
from .layout import layer_layouts

__all__ = [
    "compile_harness",
    "find_ap_types",
    "generate_harness",
    "generate_hls",
    "generate_multi_harness",
    "layer_layouts",
    "run_harness",
]
