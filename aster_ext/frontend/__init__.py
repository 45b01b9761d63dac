"""Model importers: ONNX and Aster's Scala DSL, lowered to the IR of :mod:`aster_ext.ir`."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..ir import Network
from ..spec import Spec, check_spec_matches, load_spec
from .onnx_import import load_onnx
from .scala_dsl import export_scala, load_scala

__all__ = ["load_model", "load_onnx", "load_scala", "export_scala", "spec_path_for"]


def load_model(path: str | Path, spec_path: str | Path | None = None) -> tuple[Network, Spec | None]:
    """Import ``path`` (.onnx or .scala) and its spec.

    The spec is ``spec_path`` if given; else for .onnx the file ``NAME.spec.json`` beside the
    model if it exists (else None); for .scala the bounds and targets written in the file.
    A spec whose input count differs from the network's raises UserError.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        net = load_onnx(p)
        spec = None
        if spec_path is None and spec_path_for(p).is_file():
            spec_path = spec_path_for(p)
    elif suffix == ".scala":
        net, spec = load_scala(p)
    else:
        raise UserError(f"{p.name}: unknown model type '{p.suffix}' (expected .onnx or .scala)")
    if spec_path is not None:
        spec = load_spec(spec_path)
    if spec is not None:
        check_spec_matches(spec, net.n_inputs)
    return net, spec


def spec_path_for(model_path: str | Path) -> Path:
    """``dir/NAME.spec.json`` for ``dir/NAME.onnx``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".spec.json")
