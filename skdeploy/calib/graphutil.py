"""Small ONNX graph facts the calibration passes share: who produces and consumes a tensor, its type,
and a topological re-sort after nodes are inserted."""
import collections

import numpy as np
import onnx
from onnx import TensorProto


SMALL_CONSTANT = 1024  # elements: shapes, axes and scalars that shape inference must read


def _without_weight_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with large initializers turned into typed graph inputs: shape inference needs their
    shapes, not their values, and serialising 100 MB of weights for it is most of its cost."""
    graph = model.graph
    small = [init for init in graph.initializer if np.prod(init.dims) <= SMALL_CONSTANT]
    large = [onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
             for init in graph.initializer if np.prod(init.dims) > SMALL_CONSTANT]
    skeleton = onnx.helper.make_graph(list(graph.node), graph.name, list(graph.input) + large, list(graph.output),
                                      small, value_info=list(graph.value_info))
    return onnx.helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)


class GraphIndex:
    """Producers, consumers, initializers and inferred types of one graph, built once per pass."""

    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.producer = {}
        self.consumers = collections.defaultdict(list)  # tensor -> [(node, input index)]
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for index, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, index))
        inferred = onnx.shape_inference.infer_shapes(_without_weight_data(model))
        self.value_info = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)
                           + list(inferred.graph.output)}
        self.graph_inputs = [v.name for v in graph.input if v.name not in self.initializers]
        self.graph_outputs = [v.name for v in graph.output]

    def elem_type(self, name: str) -> int:
        if name in self.initializers:
            return self.initializers[name].data_type
        info = self.value_info.get(name)
        return info.type.tensor_type.elem_type if info is not None else TensorProto.UNDEFINED

    def is_float(self, name: str) -> bool:
        return self.elem_type(name) == TensorProto.FLOAT

    def shape(self, name: str) -> list:
        """Dimensions as ints, None where unknown or symbolic."""
        info = self.value_info.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]

    def is_constant(self, name: str) -> bool:
        node = self.producer.get(name)
        return name in self.initializers or (node is not None and node.op_type == "Constant")

    def activations(self) -> list:
        """Every float32 tensor computed from the inputs (graph inputs and node outputs), in graph order."""
        names = [n for n in self.graph_inputs if self.is_float(n)]
        for name, node in self.producer.items():
            if node.op_type != "Constant" and self.is_float(name):
                names.append(name)
        return names

    def depth(self) -> dict:
        """Longest path (in nodes) from a graph input to each tensor; a residual's main branch is deeper."""
        depth = {name: 0 for name in self.graph_inputs}
        for node in toposorted(list(self.producer.values()), set(self.initializers) | set(self.graph_inputs)):
            level = 1 + max((depth.get(name, 0) for name in node.input if name), default=0)
            for name in node.output:
                depth[name] = level
        return depth


def toposorted(nodes: list, available: set) -> list:
    """Nodes ordered so every input is produced (or `available`) before it is read (Kahn's algorithm)."""
    produced_by = {}
    for node in nodes:
        for name in node.output:
            produced_by[name] = node
    pending = {id(node): sum(1 for name in set(node.input) if name not in available and name in produced_by)
               for node in nodes}
    readers = collections.defaultdict(list)
    for node in nodes:
        for name in set(node.input):
            if name not in available and name in produced_by:
                readers[name].append(node)
    ready = collections.deque(node for node in nodes if pending[id(node)] == 0)
    ordered = []
    while ready:
        node = ready.popleft()
        ordered.append(node)
        for name in node.output:
            for reader in readers.get(name, ()):
                pending[id(reader)] -= 1
                if pending[id(reader)] == 0:
                    ready.append(reader)
    if len(ordered) != len(nodes):
        raise ValueError("graph has a cycle")
    return ordered


def replace_nodes(model: onnx.ModelProto, nodes: list) -> None:
    """Put `nodes` into the graph in topological order."""
    available = {init.name for init in model.graph.initializer} | {v.name for v in model.graph.input}
    ordered = toposorted(nodes, available)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
