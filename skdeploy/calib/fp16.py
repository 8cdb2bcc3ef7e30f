"""FP16 by types: chosen nodes compute in float16, Casts mark every boundary with float32.

A node stays FP32 when the user names it, when its op has float inputs that must stay float32
(Resize scales, Q/DQ scales), when a weight it reads does not fit float16, or when any value it reads
or writes exceeded the FP16 limit on the calibration data (storing such a value in FP16 would
overflow whichever side of a Cast it sat on).
"""
import copy
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import UsageError
from ..onnx.index import GraphIndex
from ..onnx.toposort import replace_nodes

FP16_MAX = 65504.0
FP32_ONLY_OPS = {"QuantizeLinear", "DequantizeLinear", "Resize", "Upsample", "Range", "RoiAlign",
                 "NonMaxSuppression", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"}


def float_tensors(node: onnx.NodeProto, index: GraphIndex) -> list:
    return [name for name in list(node.input) + list(node.output) if name and index.is_float(name)]


def check_keep_fp32(model: onnx.ModelProto, keep_fp32: Iterable[str], argument: str = "keep_fp32") -> None:
    """Every name in `keep_fp32` (or the list `argument` names) must be a node of `model`: a misspelt name
    would keep nothing wide."""
    names = {node.name for node in model.graph.node}
    unknown = sorted(set(keep_fp32) - names)
    if unknown:
        raise UsageError(f"`{argument}` names no node {unknown[0]!r}; node names are in 'skdeploy inspect' "
                         f"or Netron (e.g. {next(iter(sorted(names)))!r})")


def fp16_candidates(model: onnx.ModelProto, keep_fp32: Iterable[str] = (), absmax: dict | None = None,
                    limit: float = FP16_MAX) -> tuple:
    """(node names to convert, {node name: why it stays FP32}) for a whole-model conversion."""
    check_keep_fp32(model, keep_fp32)
    index = GraphIndex(model)
    absmax = absmax or {}
    convert, kept = set(), {}
    for node in model.graph.node:
        floats = float_tensors(node, index)
        if not floats:
            continue
        reason = fp32_reason(node, index, floats, absmax, limit)
        if node.name in keep_fp32:
            reason = "named by --keep-fp32"
        if reason:
            kept[node.name] = reason
        else:
            convert.add(node.name)
    return convert, kept


def fp32_reason(node: onnx.NodeProto, index: GraphIndex, floats: list, absmax: dict, limit: float) -> str:
    """Why `node` cannot compute in FP16, or an empty string."""
    if node.op_type in FP32_ONLY_OPS:
        return f"{node.op_type} takes float32 parameters"
    for name in floats:
        values = constant_values(name, index)
        if values is not None:
            peak = float(np.abs(values).max(initial=0.0))
            if peak > FP16_MAX:
                return f"weight {name} reaches {peak:.3g}, beyond FP16"
        elif absmax.get(name, 0.0) > limit:
            return f"{name} reaches {absmax[name]:.3g} on the calibration data, beyond {limit:g}"
    return ""


def constant_values(name: str, index: GraphIndex) -> np.ndarray | None:
    """The values of an initializer or of a Constant node's output (calibration measures neither), else None."""
    if name in index.initializers:
        return numpy_helper.to_array(index.initializers[name])
    producer = index.producer.get(name)
    if producer is None or producer.op_type != "Constant":
        return None
    attribute = producer.attribute[0]
    if attribute.name == "value":
        return numpy_helper.to_array(attribute.t)
    return np.asarray(helper.get_attribute_value(attribute), np.float32)  # value_float, value_floats


def _to_fp16_constant(node) -> None:
    for attribute in node.attribute:
        if node.op_type == "Constant" and attribute.name in ("value_float", "value_floats"):
            values = np.asarray(helper.get_attribute_value(attribute), np.float16)
            attribute.CopyFrom(helper.make_attribute("value", numpy_helper.from_array(values)))
        if attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT:
            attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float16),
                                                         attribute.t.name))
        if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
            attribute.i = TensorProto.FLOAT16


def convert_fp16(model: onnx.ModelProto, fp16_nodes: Iterable[str], fp16_io: bool = False) -> onnx.ModelProto:
    """A copy of `model` whose `fp16_nodes` compute in FP16. Graph inputs and outputs keep FP32 unless
    `fp16_io`; Casts are shared per tensor, and weights read only by FP16 nodes are stored as FP16."""
    fp16_nodes = set(fp16_nodes)
    index = GraphIndex(model)
    converted = copy.deepcopy(model)
    graph = converted.graph
    dtype = _tensor_types(index, graph, fp16_nodes, fp16_io)
    weight_types, half_copies = _convert_weights(index, graph, fp16_nodes)
    dtype.update(weight_types)
    nodes = _insert_casts(graph, fp16_nodes, dtype, half_copies)
    _fix_io(index, graph, nodes, dtype, fp16_io)
    del graph.value_info[:]
    replace_nodes(graph, nodes)
    return converted


def _tensor_types(index: GraphIndex, graph, fp16_nodes: set, fp16_io: bool) -> dict:
    """Float tensor -> its element type in the converted graph: graph inputs as `fp16_io` says, every node
    output as its node computes."""
    def float_type(half):
        return TensorProto.FLOAT16 if half else TensorProto.FLOAT

    dtype = {name: float_type(fp16_io) for name in index.inputs if index.is_float(name)}
    for node in graph.node:
        for name in node.output:
            if index.is_float(name):
                dtype[name] = float_type(node.name in fp16_nodes)
    return dtype


def _convert_weights(index: GraphIndex, graph, fp16_nodes: set) -> tuple:
    """Store a float weight as FP16 when only FP16 nodes read it; one read by both precisions stays FP32
    and gets an FP16 copy. Returns ({weight: its element type}, {weight: its FP16 copy})."""
    readers: dict[str, set[bool]] = {}  # initializer -> set of precisions that read it (True: FP16)
    for node in graph.node:
        for name in node.input:
            if name in index.initializers and index.is_float(name):
                readers.setdefault(name, set()).add(node.name in fp16_nodes)
    types, half_copies = {}, {}
    for init in graph.initializer:
        if init.name not in readers:
            continue
        if readers[init.name] == {True}:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
            types[init.name] = TensorProto.FLOAT16
        else:
            types[init.name] = TensorProto.FLOAT
            if True in readers[init.name]:
                half_copies[init.name] = f"{init.name}_fp16"
    graph.initializer.extend(numpy_helper.from_array(numpy_helper.to_array(index.initializers[name])
                                                     .astype(np.float16), copy_name)
                             for name, copy_name in half_copies.items())
    return types, half_copies


def _insert_casts(graph, fp16_nodes: set, dtype: dict, half_copies: dict) -> list:
    """The graph's nodes with a Cast before every input whose type differs from what its node computes
    in (one Cast per tensor and type, shared by all its readers); FP16 nodes read FP16 weight copies."""
    casts, nodes = {}, []

    def cast(name, to):
        if (name, to) not in casts:
            suffix = "fp16" if to == TensorProto.FLOAT16 else "fp32"
            casts[(name, to)] = f"{name}_cast_{suffix}"
            nodes.append(helper.make_node("Cast", [name], [casts[(name, to)]], to=to, name=f"{name}_Cast_{suffix}"))
        return casts[(name, to)]

    for node in graph.node:
        want = TensorProto.FLOAT16 if node.name in fp16_nodes else TensorProto.FLOAT
        if node.name in fp16_nodes:
            _to_fp16_constant(node)
        for slot, name in enumerate(node.input):
            if name not in dtype:
                continue
            if want == TensorProto.FLOAT16 and name in half_copies:
                node.input[slot] = half_copies[name]
            elif dtype[name] != want:
                node.input[slot] = cast(name, want)
        nodes.append(node)
    return nodes


def _fix_io(index: GraphIndex, graph, nodes: list, dtype: dict, fp16_io: bool) -> None:
    """Give graph outputs the I/O type (a final Cast where the producer computes in the other one) and
    declare graph inputs with the types they now have."""
    wanted = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    for output in graph.output:
        have = dtype.get(output.name)
        if have is None or have == wanted:
            output.type.tensor_type.elem_type = have or output.type.tensor_type.elem_type
            continue
        inner = f"{output.name}_before_cast"
        for node in nodes:
            node.output[:] = [inner if n == output.name else n for n in node.output]
            node.input[:] = [inner if n == output.name else n for n in node.input]
        nodes.append(helper.make_node("Cast", [inner], [output.name], to=wanted, name=f"{output.name}_Cast"))
        output.type.tensor_type.elem_type = wanted
    for graph_input in graph.input:
        if graph_input.name in dtype and graph_input.name not in index.initializers:
            graph_input.type.tensor_type.elem_type = dtype[graph_input.name]
