"""Tensor types and shapes by ONNX shape inference on a weightless copy of the model.

Inference only needs the shapes of the weights, not their values, and serialising hundreds of MB of
weights is most of its cost; so initializers with more than SMALL_CONSTANT elements become typed graph
inputs and only the small ones keep their values.

SMALL_CONSTANT = 1024. What inference must read by value are reshape targets, axes, Slice bounds, pads,
Resize scales/sizes and scalars: a handful of elements each, far below either limit this package used
before (64 in the graph passes, 1024 in calibration). Keeping a value can only add information, so the
larger limit resolves every shape the smaller one did (and both give the same types on the zoo models);
it costs a few kB per kept constant: about 30 ms per inference for SKNet-50 either way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .io import graph_inputs
from .run import run_model

SMALL_CONSTANT = 1024  # elements: initializers up to this size keep their values for inference


@dataclass(frozen=True)
class TensorType:
    elem_type: int  # onnx.TensorProto data type
    dims: tuple  # per axis an int, or None where symbolic or unknown; None when even the rank is unknown

    @property
    def shape(self) -> tuple | None:
        """The concrete shape (a tuple of ints), or None unless every dimension is known."""
        if self.dims is None or any(d is None for d in self.dims):
            return None
        return self.dims

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))


def batch_dim_is_dynamic(model: onnx.ModelProto) -> bool:
    """True when the first dimension of every real input is symbolic or unknown."""
    dims = [value.type.tensor_type.shape.dim for value in graph_inputs(model)]
    return bool(dims) and all(len(d) > 0 and not d[0].HasField("dim_value") for d in dims)


def unsized_dims(model: onnx.ModelProto, sizes: dict | None = None) -> list:
    """[(input, axis, dim name or None)] for every symbolic or unknown dimension of a real input besides
    the batch (axis 0) that `sizes` ({dim name: size}) does not give a size."""
    sizes = sizes or {}
    return [(value.name, axis, dim.dim_param or None) for value in graph_inputs(model)
            for axis, dim in enumerate(value.type.tensor_type.shape.dim)
            if axis and not dim.HasField("dim_value") and dim.dim_param not in sizes]


def _with_sizes(value, batch, sizes):
    """A copy of the input `value` whose symbolic first dimension is `batch` (unchanged for None) and whose
    other symbolic dimensions take their size from `sizes` ({dim name: size}) where it names them."""
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    for axis, dim in enumerate(copy.type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            continue
        size = batch if axis == 0 else (sizes or {}).get(dim.dim_param)
        if size is not None:
            dim.dim_value = size
    return copy


def infer_types(model: onnx.ModelProto, batch: int | None = None, sizes: dict | None = None,
                measure_missing: bool = False) -> dict:
    """{tensor name: TensorType} for every typed tensor: inputs, initializers, node outputs. With `batch`,
    the symbolic batch dimension of the inputs is set to it first, and with `sizes` ({dim name: size}) the
    other symbolic dimensions it names, so shapes come out concrete; data propagation resolves
    Shape -> Gather -> Concat reshape targets. measure_missing: where inference still leaves a node output
    without a concrete shape, one onnxruntime run at those input sizes measures it (the graph passes' checks)."""
    graph = model.graph
    small, large = [], []
    for init in graph.initializer:
        (small if int(np.prod(init.dims)) <= SMALL_CONSTANT else large).append(init)
    inputs = [_with_sizes(value, batch, sizes) for value in graph_inputs(model)]
    inputs += [onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in large]
    skeleton = onnx.helper.make_graph(graph.node, "skeleton", inputs, graph.output, small)
    # at IR 4 at least: IR 3 would want the kept initializers listed as inputs, and inference ignores them otherwise
    skeleton_model = onnx.helper.make_model(skeleton, opset_imports=model.opset_import,
                                            ir_version=max(model.ir_version, 4))
    inferred = onnx.shape_inference.infer_shapes(skeleton_model, strict_mode=False, data_prop=True)
    types = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = value.type.tensor_type
        if not tensor.elem_type:
            continue
        dims = None
        if tensor.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        types[value.name] = TensorType(tensor.elem_type, dims)
    for init in small:
        types[init.name] = TensorType(init.data_type, tuple(init.dims))
    if measure_missing and all(value.name in types and types[value.name].shape is not None for value in inputs):
        types.update(_measured_types(model, inputs, types))
    return types


def _measured_types(model, inputs, types) -> dict:
    """Types of the node outputs inference left without a concrete shape, read off one onnxruntime run on
    zeros of the (concrete) input shapes. ONNX's data propagation does not reach every reshape target a
    plain TorchScript export computes (the demo SKNet's SK selects, exported without constant folding), nor
    targets read from weights above SMALL_CONSTANT; one run at the representative size resolves them.
    {} when nothing is missing or onnxruntime cannot run the model."""
    missing = [name for node in model.graph.node for name in node.output
               if name and (name not in types or types[name].shape is None)]
    if not missing:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    listed = {value.name for value in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in missing if name not in listed)
    feed = {value.name: np.zeros(types[value.name].shape, types[value.name].dtype) for value in inputs
            if value.name not in {init.name for init in model.graph.initializer}}
    try:
        [outputs] = run_model(probe, [feed], optimize=False)
    except Exception:  # onnxruntime's load and run errors (no common base); the shapes stay unknown
        return {}
    return {name: TensorType(onnx.helper.np_dtype_to_tensor_dtype(np.asarray(outputs[name]).dtype),
                             tuple(np.shape(outputs[name]))) for name in missing if name in outputs}
