"""Explicit INT8: where QuantizeLinear/DequantizeLinear pairs go, and inserting them.

Placement follows what TensorRT fuses (and what NVIDIA ModelOpt's ONNX PTQ does):
  - Conv, Gemm, MatMul: per-tensor symmetric Q/DQ on the activation input, per-channel symmetric
    INT8 weights (output-channel axis) behind a DequantizeLinear; bias stays FP32. A Gemm/MatMul with
    K or N under 16 (a 10-class classifier) stays FP32: no INT8 kernel speeds it up.
  - a residual Add whose one input comes straight from a quantized Conv gets Q/DQ on its other input
    (the shortcut), so TensorRT fuses the Add into that Conv; when both inputs come from Convs the
    deeper one is the main branch and the shallower one (the downsample) is quantized.
  - nothing else: Sigmoid, Softmax, Mul, Reshape, pooling stay in floating point.
"""
import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import UsageError
from ..onnx.cleanup import prune_initializers
from ..onnx.index import GraphIndex
from ..onnx.io import attribute, opset_of
from ..onnx.toposort import replace_nodes

LAYER_OPS = ("Conv", "Gemm", "MatMul")
MIN_GEMM_DIM = 16  # INT8 tensor-core GEMMs need K and N of 16 or more; smaller ones gain nothing and lose accuracy
INT8_MAX = 127
MIN_AMAX = 1e-8  # a tensor that was all zeros on the calibration data still needs a positive scale
MIN_OPSET = 13  # per-channel DequantizeLinear


@dataclass
class Int8Plan:
    """Which node inputs get Q/DQ. `units` are the nodes the accuracy budget can move back to float."""

    activation_slots: dict = field(default_factory=dict)  # node name -> [input index]
    weight_axes: dict = field(default_factory=dict)  # node name -> (input index, channel axis)
    units: list = field(default_factory=list)  # node names, graph order

    def activation_tensors(self, model: onnx.ModelProto) -> list:
        nodes = {node.name: node for node in model.graph.node}
        names = []
        for node_name, slots in self.activation_slots.items():
            for slot in slots:
                tensor = nodes[node_name].input[slot]
                if tensor not in names:
                    names.append(tensor)
        return names


def _weight_axis(node, weight) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if attribute(node, "transB", 0) else 1
    return len(weight.dims) - 1  # MatMul: (..., K, N), output features last


def _gemm_dims(node, weight, index: GraphIndex):
    """(K, N) of a Gemm/MatMul from its weight (or its second input's shape), None where unknown."""
    dims = list(weight.dims) if weight is not None else (index.shape(node.input[1]) or [])
    if len(dims) < 2:
        return None, None
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return dims[-1], dims[-2]
    return dims[-2], dims[-1]


def _too_small(node, weight, index: GraphIndex) -> bool:
    if node.op_type == "Conv":
        return False
    return any(d is not None and d < MIN_GEMM_DIM for d in _gemm_dims(node, weight, index))


def _residual_slot(node, index: GraphIndex, layers: set, depth: dict):
    """The input of a residual Add to quantize, or None when this Add is not a fusible residual.
    `layers` are all quantizable Convs/Gemms, excluded or not: which input is the shortcut is a property
    of the graph, so a plan with exclusions only drops Adds and never moves a Q/DQ to a tensor that the
    full plan (the one ranges are collected for) does not quantize."""
    if len(node.input) != 2 or any(index.is_constant(n) or not index.is_float(n) for n in node.input):
        return None
    if index.shape(node.input[0]) != index.shape(node.input[1]):
        return None  # broadcasting adds (biases, scalings) are not residual connections

    def from_layer(name):
        producer = index.producer.get(name)
        return (producer is not None and producer.op_type == "Conv" and producer.name in layers
                and len(index.consumers[name]) == 1)

    fed = [slot for slot in (0, 1) if from_layer(node.input[slot])]
    if not fed:
        return None
    if len(fed) == 1:
        return 1 - fed[0]
    return 1 if depth.get(node.input[0], 0) >= depth.get(node.input[1], 0) else 0


def _quantizable(node, index: GraphIndex) -> list:
    """The activation input slots of a Conv/Gemm/MatMul that INT8 speeds up, [] for any other node."""
    if node.op_type not in LAYER_OPS:
        return []
    weight = index.initializers.get(node.input[1]) if len(node.input) > 1 else None
    if (weight is not None and weight.data_type != TensorProto.FLOAT) or _too_small(node, weight, index):
        return []
    return [s for s in (0, 1) if s < len(node.input) and not index.is_constant(node.input[s])
            and index.is_float(node.input[s])]


def plan_int8(model: onnx.ModelProto, exclude: Iterable[str] = ()) -> Int8Plan:
    """The Q/DQ placement for `model`, leaving the nodes named in `exclude` in floating point. A residual
    Add whose main Conv is excluded stays float too (nothing to fuse into). Every tensor this plan
    quantizes is one that the plan without exclusions quantizes."""
    index = GraphIndex(model)
    exclude = set(exclude)
    plan = Int8Plan()
    eligible = set()
    for node in model.graph.node:
        slots = _quantizable(node, index)
        if not slots:
            continue
        eligible.add(node.name)
        if node.name in exclude:
            continue
        plan.activation_slots[node.name] = slots
        weight = index.initializers.get(node.input[1])
        if weight is not None:
            plan.weight_axes[node.name] = (1, _weight_axis(node, weight))
        plan.units.append(node.name)
    depth = index.depth()
    for node in model.graph.node:
        if node.op_type == "Add" and node.name not in exclude:
            slot = _residual_slot(node, index, eligible, depth)
            if slot is not None and index.producer[node.input[1 - slot]].name not in exclude:
                plan.activation_slots[node.name] = [slot]
                plan.units.append(node.name)
    return plan


def activation_scale(amax: float) -> float:
    return max(float(amax), MIN_AMAX) / INT8_MAX


def quantize_weight(weight: np.ndarray, axis: int) -> tuple:
    """(int8 weights, float32 scale per channel): symmetric, each channel's max maps to 127."""
    moved = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)
    amax = np.maximum(np.abs(moved).max(axis=1), MIN_AMAX).astype(np.float32)
    scale = (amax / INT8_MAX).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantized = np.clip(np.round(weight / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return quantized, scale


class QdqBuilder:
    """Makes Q/DQ nodes and their constants once per tensor and hands out the dequantized names."""

    def __init__(self, index: GraphIndex, amax: dict) -> None:
        self.index, self.amax = index, amax
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.made: dict[tuple, str] = {}  # (tensor, kind[, axis]) -> its dequantized name

    def activation(self, tensor: str) -> str:
        key = ("activation", tensor)
        if key not in self.made:
            if tensor not in self.amax:
                raise UsageError(f"no calibration range for tensor {tensor!r}")
            scale, zero = f"{tensor}_scale", f"{tensor}_zero_point"
            self.initializers += [numpy_helper.from_array(np.array(activation_scale(self.amax[tensor]), np.float32),
                                                          scale),
                                  numpy_helper.from_array(np.array(0, np.int8), zero)]
            self.nodes += [
                helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}_quantized"],
                                 name=f"{tensor}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [f"{tensor}_quantized", scale, zero], [f"{tensor}_dequantized"],
                                 name=f"{tensor}_DequantizeLinear")]
            self.made[key] = f"{tensor}_dequantized"
        return self.made[key]

    def weight(self, name: str, axis: int) -> str:
        key = ("weight", name, axis)
        if key not in self.made:
            values = numpy_helper.to_array(self.index.initializers[name])
            quantized, scale = quantize_weight(values, axis)
            self.initializers += [numpy_helper.from_array(quantized, f"{name}_int8"),
                                  numpy_helper.from_array(scale, f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero_point")]
            self.nodes.append(helper.make_node(
                "DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"], [f"{name}_dequantized"],
                name=f"{name}_DequantizeLinear", axis=axis))
            self.made[key] = f"{name}_dequantized"
        return self.made[key]

    def quantized_inputs(self, node: onnx.NodeProto, plan: Int8Plan) -> list:
        """`node`'s inputs with its planned slots pointing at dequantized tensors."""
        inputs = list(node.input)
        for slot in plan.activation_slots.get(node.name, ()):
            inputs[slot] = self.activation(inputs[slot])
        if node.name in plan.weight_axes:
            slot, axis = plan.weight_axes[node.name]
            inputs[slot] = self.weight(inputs[slot], axis)
        return inputs


def _check_opset(model) -> None:
    if opset_of(model) < MIN_OPSET:
        raise UsageError(f"INT8 Q/DQ with per-channel weights needs opset {MIN_OPSET} or newer; this model is "
                         f"opset {opset_of(model)} (re-export with `opset=17`)")


def _finish(model, builder: QdqBuilder, nodes: list) -> None:
    model.graph.initializer.extend(builder.initializers)
    replace_nodes(model.graph, nodes + builder.nodes)
    prune_initializers(model.graph)
    del model.graph.value_info[:]


def insert_qdq(model: onnx.ModelProto, plan: Int8Plan, amax: dict, in_place: bool = False) -> onnx.ModelProto:
    """A copy of `model` with the planned Q/DQ pairs; FP32 weights of quantized layers become INT8.
    `in_place`: `model` itself becomes the quantized one, for a caller that needs no FP32 copy afterwards (copying
    SKNet-50 takes 0.1 s)."""
    _check_opset(model)
    builder = QdqBuilder(GraphIndex(model), amax)
    quantized = model if in_place else copy.deepcopy(model)
    nodes = []
    for node in quantized.graph.node:
        new_inputs = builder.quantized_inputs(node, plan)
        del node.input[:]
        node.input.extend(new_inputs)
        nodes.append(node)
    _finish(quantized, builder, nodes)
    return quantized


def sensitivity_model(model: onnx.ModelProto, plan: Int8Plan, amax: dict) -> tuple:
    """The FP32 model plus, for each unit, a shadow copy fed by quantized inputs and weights; returns
    (model, {unit: (error output, signal output)}) where error = sum((shadow - fp32)^2) over the batch.
    Each unit sees exact FP32 inputs, so its error is its own, not inherited from earlier layers."""
    _check_opset(model)
    shadowed = copy.deepcopy(model)
    builder = QdqBuilder(GraphIndex(model), amax)
    nodes = list(shadowed.graph.node)
    by_name = {node.name: node for node in nodes}
    outputs = {}
    for unit in plan.units:
        node = by_name[unit]
        shadow, shadow_out = shadow_node(node, builder, plan)
        error, signal = f"{unit}_shadow_error", f"{unit}_shadow_signal"
        nodes += [shadow,
                  helper.make_node("Sub", [shadow_out, node.output[0]], [f"{shadow_out}_diff"]),
                  helper.make_node("ReduceSumSquare", [f"{shadow_out}_diff"], [error], keepdims=0),
                  helper.make_node("ReduceSumSquare", [node.output[0]], [signal], keepdims=0)]
        shadowed.graph.output.extend([helper.make_tensor_value_info(error, TensorProto.FLOAT, []),
                                      helper.make_tensor_value_info(signal, TensorProto.FLOAT, [])])
        outputs[unit] = (error, signal)
    _finish(shadowed, builder, nodes)
    return shadowed, outputs


def shadow_node(node: onnx.NodeProto, builder: QdqBuilder, plan: Int8Plan) -> tuple:
    """(a copy of `node` that reads the quantized form of its FP32 inputs, its output name): that unit's
    own quantisation error, next to the exact FP32 node."""
    shadow_out = f"{node.output[0]}_shadow"
    shadow = helper.make_node(node.op_type, builder.quantized_inputs(node, plan), [shadow_out],
                              name=f"{node.name}_shadow")
    shadow.attribute.extend(node.attribute)
    return shadow, shadow_out
