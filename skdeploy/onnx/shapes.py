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
from dataclasses import dataclass

import numpy as np
import onnx

from .io import graph_inputs

SMALL_CONSTANT = 1024  # elements: initializers up to this size keep their values for inference


@dataclass(frozen=True)
class TensorType:
    elem_type: int  # onnx.TensorProto data type
    dims: tuple  # per axis an int, or None where symbolic or unknown; None when even the rank is unknown

    @property
    def shape(self):
        """The concrete shape (a tuple of ints), or None unless every dimension is known."""
        if self.dims is None or any(d is None for d in self.dims):
            return None
        return self.dims

    @property
    def dtype(self):
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))


def batch_dim_is_dynamic(model) -> bool:
    """True when the first dimension of every real input is symbolic or unknown."""
    dims = [value.type.tensor_type.shape.dim for value in graph_inputs(model)]
    return bool(dims) and all(len(d) > 0 and not d[0].HasField("dim_value") for d in dims)


def _with_batch(value, batch):
    """A copy of the input `value` whose symbolic first dimension is `batch` (unchanged for None)."""
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    dims = copy.type.tensor_type.shape.dim
    if batch is not None and len(dims) and not dims[0].HasField("dim_value"):
        dims[0].dim_value = batch
    return copy


def infer_types(model, batch=None) -> dict:
    """{tensor name: TensorType} for every typed tensor: inputs, initializers, node outputs. With `batch`,
    the symbolic batch dimension of the inputs is set to it first, so shapes come out concrete; data
    propagation resolves Shape -> Gather -> Concat reshape targets."""
    graph = model.graph
    small, large = [], []
    for init in graph.initializer:
        (small if int(np.prod(init.dims)) <= SMALL_CONSTANT else large).append(init)
    inputs = [_with_batch(value, batch) for value in graph_inputs(model)]
    inputs += [onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in large]
    skeleton = onnx.helper.make_graph(graph.node, "skeleton", inputs, graph.output, small)
    skeleton_model = onnx.helper.make_model(skeleton, opset_imports=model.opset_import, ir_version=model.ir_version)
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
    return types
