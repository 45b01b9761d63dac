"""hls4ml's own project for a CNN classifier: qonnx clean-up, config, conversion, type read-back.

hls4ml 1.3.0's ONNX front end needs channels-last Conv/pooling nodes (domain
``qonnx.custom_op.channels_last``), which qonnx's ``ConvertToChannelsLastAndClean`` produces for
Conv and MaxPool. qonnx has no channels-last AveragePool, so after the clean-up an AveragePool is
left behind a Transpose back to channels-first; :func:`rewrite_avgpool` moves it in front of that
Transpose as a channels-last node (pooling commutes with the axis permutation) and absorbs the
Transpose -> Flatten into the next MatMul by permuting the MatMul's rows (what qonnx does itself
for MaxPool). After conversion the types, the layer kinds and the weights hls4ml holds are read
back and compared with our program (:func:`read_back`), which is then certified from scratch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedError, UserError
from . import project as P
from .cnn import AddStage, CnnProgram, LinearStage, PoolStage, ReluStage, Stage, chw_to_hwc
from .program import DenseStage
from .types import HlsType

_SKIP = ("Transpose", "Flatten", "Reshape", "Add")
# layers hls4ml adds or keeps that only move or copy values: Reshape (Flatten), and in io_stream
# ZeroPadding2D (nnet_padding_stream.h: the padded conv reads a zero-padded copy) and Clone (a
# tensor read by two layers: nnet_stream.h clone_stream writes the value to both outputs)
_COPIES = ("Reshape", "ZeroPadding2D", "Clone")


def rewrite_avgpool(model: Any) -> Any:
    """Channels-last AveragePool for hls4ml (module docstring); other models are returned as is."""
    from onnx import helper

    g = model.graph
    nodes = list(g.node)
    for n in nodes:
        if n.op_type != "AveragePool" or n.domain == "qonnx.custom_op.channels_last":
            continue
        prod = [m for m in nodes if n.input[0] in m.output]
        if not prod or prod[0].op_type != "Transpose":
            raise UnsupportedError(f"hls4ml backend: cannot bring AveragePool {n.name} to channels-last")
        tr = prod[0]
        perm = list(helper.get_attribute_value(next(a for a in tr.attribute if a.name == "perm")))
        if perm != [0, 3, 1, 2]:
            raise UnsupportedError(f"hls4ml backend: unexpected Transpose {perm} before {n.name}")
        cons = [m for m in nodes if n.output[0] in m.input]
        if len(cons) != 1 or cons[0].op_type != "Flatten":
            raise UnsupportedError(f"hls4ml backend: AveragePool {n.name} must feed a Flatten")
        fl = cons[0]
        mm = [m for m in nodes if fl.output[0] in m.input]
        if len(mm) != 1 or mm[0].op_type != "MatMul":
            raise UnsupportedError(f"hls4ml backend: the Flatten after {n.name} must feed a MatMul")
        in_shape = model.get_tensor_shape(tr.input[0])  # N, H, W, C
        out_nchw = model.get_tensor_shape(n.output[0])  # N, C, OH, OW
        _, c, oh, ow = out_nchw
        # AveragePool now reads the channels-last tensor and writes [N, OH, OW, C]
        n.input[0] = tr.input[0]
        n.domain = "qonnx.custom_op.channels_last"
        model.set_tensor_shape(n.output[0], [in_shape[0], oh, ow, c])
        # MatMul rows were in (c, h, w) order of the flattened NCHW tensor: permute to (h, w, c)
        w = model.get_initializer(mm[0].input[1])
        perm_rows = np.arange(c * oh * ow).reshape(c, oh, ow).transpose(1, 2, 0).reshape(-1)
        model.set_initializer(mm[0].input[1], np.ascontiguousarray(w[perm_rows]))
        if not any(tr.output[0] in m.input for m in nodes if m is not n):
            g.node.remove(tr)
    return model


def explicit_defaults(model: Any) -> bool:
    """Write ONNX's default Conv attributes (``pads`` all 0, ``group`` 1) onto Conv nodes that omit
    them, and give symbolic batch dimensions the value 1; True if anything changed.

    Same network: these are the values ONNX defines for absent attributes, and the spec's regions
    are single inputs. qonnx's channels-last Conv requires ``pads`` to be present (a tf2onnx export
    such as cifar10_small omits it) and its shape inference needs a numeric batch."""
    from onnx import helper

    changed = False
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        have = {a.name for a in n.attribute}
        if "pads" not in have:
            ks = [a for a in n.attribute if a.name == "kernel_shape"]
            rank = len(ks[0].ints) if ks else 2
            n.attribute.append(helper.make_attribute("pads", [0] * (2 * rank)))
            changed = True
        if "group" not in have:
            n.attribute.append(helper.make_attribute("group", 1))
            changed = True
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
            changed = True
    return changed


def cleaned_model(onnx_path: Path) -> Any:
    """qonnx's clean-up (:func:`.project.clean_onnx`) of the model with explicit default Conv
    attributes (:func:`explicit_defaults`), then :func:`rewrite_avgpool`."""
    import tempfile

    import onnx

    model = onnx.load(str(onnx_path))
    if not explicit_defaults(model):
        return rewrite_avgpool(P.clean_onnx(onnx_path))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(onnx_path).name
        onnx.save(model, str(path))
        return rewrite_avgpool(P.clean_onnx(path))


def layer_nodes(model: Any) -> list[tuple[str, str]]:
    """(ONNX node name, kind) of the cleaned model's layers in order: conv, relu, pool, dense."""
    out: list[tuple[str, str]] = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            out.append((n.name, "conv"))
        elif n.op_type == "Relu":
            out.append((n.name, "relu"))
        elif n.op_type in ("MaxPool", "AveragePool"):
            out.append((n.name, "pool"))
        elif n.op_type == "MatMul":
            out.append((n.name, "dense"))
        elif n.op_type not in _SKIP:
            raise UnsupportedError(f"hls4ml backend: ONNX node {n.name} ({n.op_type}) is not supported")
    return out


def _kind(st: Any) -> str:
    if isinstance(st, LinearStage):
        return "dense" if st.gather is None else "conv"
    if isinstance(st, AddStage):
        return "add"
    return "relu" if isinstance(st, ReluStage) else "pool"


_ONNX_KIND = {"Conv": "conv", "MatMul": "dense", "Relu": "relu", "MaxPool": "pool", "AveragePool": "pool"}


def match_layers(model: Any, program: CnnProgram) -> list[tuple[str, int]]:
    """(ONNX node name, index of the program stage it is) for every layer of the cleaned model, in
    the model's (topological) order. Matched by the graph: a node's data inputs must be the tensors
    the stage reads, with the same layer kind; Convs reading the same tensor are told apart by their
    weights (as multisets, so the layout does not matter). Every stage must be matched once."""
    inits = {i.name for i in model.graph.initializer}
    tmap: dict[str, str] = {model.graph.input[0].name: program.input_node}
    made_by: dict[str, str] = {}  # tensor -> op type of the node that wrote it
    used: set[int] = set()
    out: list[tuple[str, int]] = []
    for n in model.graph.node:
        data = [i for i in n.input if i and i not in inits]
        if any(i not in tmap for i in data):
            raise UserError(f"hls4ml backend: ONNX node {n.name} reads a tensor the analysis does not model")
        src = [tmap[i] for i in data]
        made_by[n.output[0]] = n.op_type
        bias_add = n.op_type == "Add" and len(data) == 1 and made_by.get(data[0]) == "MatMul"
        if n.op_type in ("Transpose", "Flatten", "Reshape") or bias_add:
            tmap[n.output[0]] = src[0]  # a layout change, or the bias of the MatMul before it
            continue
        if n.op_type == "Add" and len(data) == 2:
            kind = "add"
        elif n.op_type in _ONNX_KIND:
            kind = _ONNX_KIND[n.op_type]
        else:
            raise UnsupportedError(f"hls4ml backend: ONNX node {n.name} ({n.op_type}) is not supported")
        cands = [
            k
            for k, st in enumerate(program.stages)
            if k not in used and _kind(st) == kind and sorted(st.src) == sorted(src)
        ]
        if kind == "conv" and len(cands) > 1:
            w = np.sort(np.asarray(model.get_initializer(n.input[1]), dtype=np.float64).reshape(-1))
            cands = [
                k
                for k in cands
                if np.array_equal(np.sort(program.stages[k].dense.weight.reshape(-1)), w)  # type: ignore[union-attr]
            ]
        if len(cands) != 1:
            raise UserError(f"hls4ml backend: ONNX node {n.name} matches {len(cands)} layers of the analysis")
        used.add(cands[0])
        tmap[n.output[0]] = program.stages[cands[0]].node
        out.append((n.name, cands[0]))
    if len(used) != len(program.stages):
        raise UserError("hls4ml backend: some layers of the analysis have no ONNX node in the cleaned model")
    return out


def cnn_config(model: Any, program: CnnProgram, strategy: str, reuse: int) -> dict[str, Any]:
    cfg = P.base_config(model)
    cfg["Model"]["Strategy"] = strategy
    cfg["Model"]["ReuseFactor"] = int(reuse)
    names = cfg["LayerName"]
    names["global_in"]["Precision"]["result"] = program.input_t.to_string()
    for name, k in match_layers(model, program):
        st = program.stages[k]
        prec = names[name]["Precision"]
        if isinstance(st, AddStage):
            prec["result"] = st.result_t.to_string()
        elif isinstance(st, LinearStage):
            d = st.dense
            prec.update(weight=d.weight_t.to_string(), bias=d.bias_t.to_string(), accum=d.accum_t.to_string())
            prec["result"] = "auto" if st.result_auto else d.result_t.to_string()
            names[name]["ReuseFactor"] = int(reuse)
        elif isinstance(st, ReluStage):
            prec["result"] = st.result_t.to_string()
        else:
            prec.update(accum=st.accum_t.to_string(), result=st.result_t.to_string())
    return cfg


def auto_config(model: Any, program: CnnProgram) -> dict[str, Any]:
    """hls4ml's 'auto' configuration as the comparisons build it: ``program``'s input type and each
    Conv2D / Dense layer's weight and bias types, every accum and result type left to hls4ml's own
    inference (:func:`.project.base_config`)."""
    cfg = P.base_config(model)
    names = cfg["LayerName"]
    names["global_in"]["Precision"]["result"] = program.input_t.to_string()
    for name, k in match_layers(model, program):
        st = program.stages[k]
        if isinstance(st, LinearStage):
            d = st.dense
            names[name]["Precision"].update(weight=d.weight_t.to_string(), bias=d.bias_t.to_string())
    return cfg


def _hls_layer(by_name: dict[str, Any], onnx_name: str) -> Any:
    """hls4ml's layer for an ONNX node: named as the node, or ``<Class>_<node>`` (Conv2D_, Dense_)."""
    hits = [ly for nm, ly in by_name.items() if nm == onnx_name or nm.endswith("_" + onnx_name)]
    exact = [ly for ly in hits if ly.name == onnx_name]
    if len(exact) == 1:
        return exact[0]
    if len(hits) != 1:
        raise UserError(f"hls4ml backend: {len(hits)} hls4ml layers are named after ONNX node {onnx_name}")
    return hits[0]


def read_back(hls_model: Any, program: CnnProgram, model: Any) -> CnnProgram:
    """Our program with the types hls4ml's model holds, its stages in the cleaned ``model``'s
    order; refuses any layer kind or weight that differs from the analysed program (so the
    certificate is about what hls4ml built)."""
    all_layers = list(hls_model.get_layers())
    if all_layers[0].class_name != "Input":
        raise UserError(f"hls4ml model starts with {all_layers[0].class_name}, expected Input")
    input_t = HlsType.of_precision(all_layers[0].get_output_variable().type.precision)
    has_tr = len(all_layers) > 1 and all_layers[1].class_name == "Transpose"
    if has_tr:  # CHW -> HWC permutation of the input values; it must not cast them
        tr = all_layers[1]
        t_tr = HlsType.of_precision(tr.get_output_variable().type.precision)
        if t_tr != input_t or list(tr.get_attr("perm")) != [1, 2, 0]:
            raise UserError("hls4ml's input Transpose is not the plain CHW -> HWC permutation")
        shape = tuple(int(v) for v in all_layers[0].get_output_variable().shape)
        layout = chw_to_hwc(shape)
    else:  # the values are stored in the input's order
        layout = np.arange(program.input_perm.size)
    if not np.array_equal(layout, program.input_perm):
        raise UserError("hls4ml's input layout differs from the analysis (input Transpose layer)")
    if any(ly.class_name == "Transpose" for ly in all_layers[2:]):
        raise UserError("hls4ml built a Transpose layer inside the network; not modelled")
    for ly in all_layers[1:]:
        if ly.class_name in _COPIES:  # element moves / copies: they must not cast
            t_in = HlsType.of_precision(ly.get_input_variable().type.precision)
            outs = [ly.get_output_variable(o) for o in ly.outputs]
            if any(HlsType.of_precision(v.type.precision) != t_in for v in outs):
                raise UserError(f"hls4ml's {ly.class_name} layer {ly.name} changes the type of its values")
    layers = [ly for ly in all_layers if ly.class_name not in ("Transpose", *_COPIES)]
    if len(layers) - 1 != len(program.stages):
        raise UserError(
            f"hls4ml built {[ly.class_name for ly in layers]}, the analysis has {len(program.stages)} stages"
        )
    by_name = {ly.name: ly for ly in layers[1:]}
    stages: list[Stage] = []
    for onnx_name, k in match_layers(model, program):
        st = program.stages[k]
        ly = _hls_layer(by_name, onnx_name)
        res_t = HlsType.of_precision(ly.get_output_variable().type.precision)
        cls = ly.class_name
        if isinstance(st, AddStage):
            if cls != "Merge" or str(ly.get_attr("op")).lower() != "add":
                raise UserError(f"hls4ml layer {ly.name} is {cls} ({ly.get_attr('op')}), expected Merge add")
            stages.append(replace(st, result_t=res_t))
        elif isinstance(st, LinearStage):
            want = ("Dense",) if st.gather is None else ("Conv2D", "PointwiseConv2D")
            if cls not in want:
                raise UserError(f"hls4ml layer {ly.name} is {cls}, expected {want}")
            d = st.dense
            w = np.asarray(ly.weights["weight"].data, dtype=np.float64)
            if ly.get_attr("_weights_transposed", False):  # Resource: (F, H, W, C) / (n_out, n_in)
                w = w.reshape(d.n_out, d.n_in)
            else:  # (H, W, C, F) / (n_in, n_out)
                w = w.reshape(d.n_in, d.n_out).T
            b = np.asarray(ly.weights["bias"].data, dtype=np.float64).reshape(-1)
            if not (np.array_equal(w, d.weight) and np.array_equal(b, d.bias)):
                raise UserError(f"hls4ml layer {ly.name}: its weights differ from the analysed network's")
            t = ly.types
            d2 = DenseStage(
                d.name,
                d.weight,
                d.bias,
                HlsType.of_precision(t["weight_t"].precision),
                HlsType.of_precision(t["bias_t"].precision),
                HlsType.of_precision(t["accum_t"].precision),
                res_t,
            )
            stages.append(replace(st, dense=d2))
        elif isinstance(st, ReluStage):
            if cls not in ("Activation", "ReLU") or str(ly.get_attr("activation")).lower() != "relu":
                raise UserError(f"hls4ml layer {ly.name} is {cls}, expected a ReLU")
            stages.append(replace(st, result_t=res_t))
        else:
            if cls != "Pooling2D":
                raise UserError(f"hls4ml layer {ly.name} is {cls}, expected Pooling2D")
            op = str(ly.get_attr("pool_op")).lower()
            if op != ("max" if st.kind == "max" else "average") or bool(ly.get_attr("count_pad", False)):
                raise UserError(f"hls4ml layer {ly.name}: pooling {op} differs from the analysis ({st.kind})")
            stages.append(
                PoolStage(
                    st.name,
                    st.node,
                    st.kind,
                    st.windows,
                    HlsType.of_precision(ly.types["accum_t"].precision),
                    res_t,
                    st.src,
                )
            )
    return CnnProgram(input_t, program.input_perm, stages, program.input_node, program.stream)
