"""Concrete tensor shapes at a chosen batch size, and the batch sizes parity checks use."""
from dataclasses import dataclass

import numpy as np

SMALL_CONSTANT = 64  # initializers up to this many elements keep their values (reshape targets, axes)


@dataclass(frozen=True)
class TensorType:
    elem_type: int
    shape: tuple  # ints; None when shape inference could not tell

    @property
    def dtype(self):
        import onnx

        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))


def batch_dim_is_dynamic(model) -> bool:
    """True when the first dimension of every real input is symbolic or unknown."""
    index_inputs = {init.name for init in model.graph.initializer}
    dims = [value.type.tensor_type.shape.dim for value in model.graph.input if value.name not in index_inputs]
    return bool(dims) and all(len(d) > 0 and not d[0].HasField("dim_value") for d in dims)


def parity_batches(model) -> list:
    """Two runs: batch 1 and 3 for a dynamic batch, the fixed batch twice (new random draws) otherwise."""
    if batch_dim_is_dynamic(model):
        return [1, 3]
    return [None, None]


class Shapes:
    """Tensor types of one version of a model at each parity batch size, inferred once per size."""

    def __init__(self, model):
        self.model = model
        self.batches = parity_batches(model)
        self._types = {}

    def at(self, batch) -> dict:
        if batch not in self._types:
            self._types[batch] = infer_types(self.model, batch)
        return self._types[batch]


def infer_types(model, batch=None) -> dict:
    """{tensor name: TensorType} for every tensor, with the batch dimension of the inputs set to `batch`.

    Inference runs on a weightless skeleton (large initializers become typed inputs), so it costs
    milliseconds even for SKNet-101; data propagation resolves Shape->Gather->Concat reshape targets.
    """
    import onnx

    graph = model.graph
    small, large = [], []
    for init in graph.initializer:
        (small if int(np.prod(init.dims)) <= SMALL_CONSTANT else large).append(init)
    initializer_names = {init.name for init in graph.initializer}
    inputs = []
    for value in graph.input:
        if value.name in initializer_names:
            continue
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        dims = copy.type.tensor_type.shape.dim
        if batch is not None and len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
        inputs.append(copy)
    inputs += [onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in large]
    skeleton = onnx.helper.make_graph(graph.node, "skeleton", inputs, graph.output, small)
    skeleton_model = onnx.helper.make_model(skeleton, opset_imports=model.opset_import, ir_version=model.ir_version)
    inferred = onnx.shape_inference.infer_shapes(skeleton_model, strict_mode=False, data_prop=True)
    types = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = value.type.tensor_type
        if not tensor.elem_type:
            continue
        shape = None
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shape = tuple(d.dim_value for d in tensor.shape.dim)
        types[value.name] = TensorType(tensor.elem_type, shape)
    for init in small:
        types[init.name] = TensorType(init.data_type, tuple(init.dims))
    return types
