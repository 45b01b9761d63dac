"""Drive hls4ml itself: qonnx clean-up, config, conversion, compile, predict, program read-back.

hls4ml's ONNX front end needs the model cleaned by qonnx first (``cleanup_model``,
``ConvertToChannelsLastAndClean``, ``GemmToMatMul``, ``cleanup_model`` again); node names then
are ``MatMul_k``/``Add_k``/``Relu_k``/``Tanh_k``/``Sigmoid_k`` and the config keys are those
names (``config_from_onnx_model(granularity='name')``). Precisions we set: ``global_in`` result
(input_t); ``MatMul_k`` weight, bias, accum (result stays 'auto' so hls4ml fuses the Add into
the Dense layer, see :mod:`.program`); activation ``result`` and ``table_t`` + ``TableSize``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedError, UserError
from ..ir import DenseLayer
from .program import ActStage, DenseStage, Hls4mlProgram
from .types import HlsType

ACT_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def require_hls4ml() -> Any:
    try:
        import hls4ml  # noqa: F401
        import qonnx  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"--backend hls4ml needs hls4ml and qonnx: pip install 'aster_ext[hls4ml]' ({exc})"
        ) from exc
    import hls4ml

    return hls4ml


_ONNX_ACT = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}


def write_dense_onnx(layers: list[DenseLayer], path: Path) -> Path:
    """The network as a plain Gemm -> activation chain (input [1, n_in]), for hls4ml's ONNX front end.

    The model's own graph may wrap the dense chain in operations hls4ml would turn into extra
    layers (an all-zero ``Sub``, ``Flatten`` of a 4-d input, fully connected layers written as
    ``Conv``, a trailing ``Softmax``); the analysis works on the dense chain (``ir.dense_chain``),
    so hls4ml gets exactly that chain. Parameters are written as float32 when every value is a
    float32 number (the usual case: nothing changes), else as float64."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    exact32 = all(
        np.array_equal(a.astype(np.float32).astype(np.float64), a) for l in layers for a in (l.weight, l.bias)
    )
    dt, et = (np.float32, TensorProto.FLOAT) if exact32 else (np.float64, TensorProto.DOUBLE)
    nodes, inits, cur = [], [], "x"
    for i, layer in enumerate(layers):
        inits += [
            numpy_helper.from_array(layer.weight.astype(dt), f"W{i}"),
            numpy_helper.from_array(layer.bias.astype(dt), f"B{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [f"z{i}"], transB=1))
        cur = f"z{i}"
        if layer.activation != "identity":
            nodes.append(helper.make_node(_ONNX_ACT[layer.activation], [cur], [f"a{i}"]))
            cur = f"a{i}"
    graph = helper.make_graph(
        nodes,
        "dense_chain",
        [helper.make_tensor_value_info("x", et, [1, layers[0].n_in])],
        [helper.make_tensor_value_info(cur, et, [1, layers[-1].n_out])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def clean_onnx(onnx_path: str | Path) -> Any:
    """The qonnx-cleaned ModelWrapper hls4ml's ONNX converter expects."""
    require_hls4ml()
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cleanup_model(ModelWrapper(str(onnx_path)))
        m = m.transform(ConvertToChannelsLastAndClean())
        m = m.transform(GemmToMatMul())
        return cleanup_model(m)


def base_config(
    model: Any, default_precision: str = "fixed<16,6>", granularity: str = "name"
) -> dict[str, Any]:
    hls4ml = require_hls4ml()
    with contextlib.redirect_stdout(io.StringIO()):
        return hls4ml.utils.config_from_onnx_model(
            model, granularity=granularity, backend="Vivado", default_precision=default_precision
        )


def node_names(model: Any) -> tuple[list[str], list[str | None]]:
    """Names of the MatMul nodes in order, and of the activation following each (None if linear)."""
    mats: list[str] = []
    acts: list[str | None] = []
    for n in model.graph.node:
        if n.op_type == "MatMul":
            mats.append(n.name)
            acts.append(None)
        elif n.op_type in ("Relu", "Tanh", "Sigmoid") and mats:
            acts[-1] = n.name
        elif n.op_type not in ("Add",):
            raise UnsupportedError(
                f"hls4ml backend: ONNX node {n.name} ({n.op_type}) is not supported for dense networks"
            )
    return mats, acts


def convert(
    model: Any, config: dict[str, Any], out_dir: Path, io_type: str, strategy: str, reuse: int
) -> Any:
    """hls4ml.converters.convert_from_onnx_model with the given config (quietly)."""
    hls4ml = require_hls4ml()
    cfg = copy.deepcopy(config)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hls4ml.converters.convert_from_onnx_model(
            model, output_dir=str(out_dir), io_type=io_type, backend="Vivado", hls_config=cfg
        )


def compile_model(hls_model: Any) -> None:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hls_model.compile()


def predict(hls_model: Any, x: np.ndarray) -> np.ndarray:
    """hls4ml's compiled C simulation on double inputs (the ``_double`` bridge)."""
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float64)))
    with contextlib.redirect_stdout(io.StringIO()):
        y = hls_model.predict(x)
    return np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)


def read_program(hls_model: Any) -> Hls4mlProgram:
    """The arithmetic program of a converted hls4ml dense model, from its layers and types."""
    layers = list(hls_model.get_layers())
    inp = layers[0]
    input_t = HlsType.of_precision(inp.get_output_variable().type.precision)
    stages: list[DenseStage | ActStage] = []
    for layer in layers[1:]:
        cls = layer.class_name
        if cls == "Dense":
            w = np.asarray(layer.weights["weight"].data, dtype=np.float64)
            b = np.asarray(layer.weights["bias"].data, dtype=np.float64).reshape(-1)
            t = layer.types
            stages.append(
                DenseStage(
                    name=layer.name,
                    weight=w.reshape(layer.get_attr("n_in"), layer.get_attr("n_out")).T.copy(),
                    bias=b,
                    weight_t=HlsType.of_precision(t["weight_t"].precision),
                    bias_t=HlsType.of_precision(t["bias_t"].precision),
                    accum_t=HlsType.of_precision(t["accum_t"].precision),
                    result_t=HlsType.of_precision(layer.get_output_variable().type.precision),
                )
            )
        elif cls in ("Activation", "ReLU", "TanH", "Sigmoid"):
            act = str(layer.get_attr("activation")).lower()
            if act not in ACT_NAMES:
                raise UnsupportedError(f"hls4ml backend: activation {act} of {layer.name} is not modelled")
            table_t = size = None
            if act in ("tanh", "sigmoid"):
                table_t = HlsType.of_precision(layer.get_attr("table_t").precision)
                size = int(layer.get_attr("table_size"))
            stages.append(
                ActStage(
                    layer.name,
                    ACT_NAMES[act],
                    HlsType.of_precision(layer.get_output_variable().type.precision),
                    table_t,
                    size,
                )
            )
        else:
            raise UnsupportedError(
                f"hls4ml backend: layer {layer.name} ({cls}) is not modelled for dense networks"
            )
    return Hls4mlProgram(input_t, stages)


@contextlib.contextmanager
def project_folder(out_dir: Path, protected: list[Path]):
    """The output folder of an hls4ml run: the rules of every backend (:class:`~..outdir.OutputPlan`:
    never '.', home, a protected file's folder or a parent of it), and only a new or empty folder,
    because the compiled C simulation reads its weights from an absolute path baked in at compile
    time, so the project is generated in place. A run that fails removes only what it created: the
    folder's contents when it existed empty, else the folder."""
    import shutil

    from ..outdir import OutputPlan

    OutputPlan.prepare(out_dir, protected)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out {out_dir}: not empty; the hls4ml backend needs a new or empty folder")
    existed = out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield out_dir
    except BaseException:
        if existed:  # it was empty: everything inside is this run's
            for child in out_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        else:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
