"""One index over a graph, built once per pass: producer and readers of every tensor, constant values,
inferred types, and the depth of each tensor from the inputs."""
from __future__ import annotations

import collections
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto, numpy_helper

from .io import attribute, graph_inputs, opset_of
from .shapes import infer_types
from .toposort import toposort

if TYPE_CHECKING:
    from onnx import NodeProto

CONSTANT_VALUE_ATTRIBUTES = ("value_float", "value_int", "value_floats", "value_ints")


class GraphIndex:
    """Who produces and who reads each tensor of `model`'s graph, plus its constants and types.

    `consumers[name]` lists the reading nodes once per input slot that reads `name` (Add(x, x) reads x
    twice), so its length is the number of reads: the graph passes walk the readers, calibration counts
    them. Types come from weight-free shape inference at the model's own batch, run on first use.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.graph = model.graph
        self.opset = opset_of(model)
        self.producer = {}
        self.consumers = collections.defaultdict(list)
        self.position = {}
        for position, node in enumerate(self.graph.node):
            self.position[id(node)] = position
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {init.name: init for init in self.graph.initializer}
        self.inputs = [value.name for value in graph_inputs(model)]
        self.outputs = [value.name for value in self.graph.output]

    @cached_property
    def types(self) -> dict:
        """{tensor: shapes.TensorType}, symbolic dimensions unknown."""
        return infer_types(self.model)

    def elem_type(self, name: str) -> int:
        tensor = self.types.get(name)
        return tensor.elem_type if tensor is not None else TensorProto.UNDEFINED

    def is_float(self, name: str) -> bool:
        return self.elem_type(name) == TensorProto.FLOAT

    def shape(self, name: str) -> list:
        """Dimensions as ints, None where unknown or symbolic; None when the rank is unknown."""
        tensor = self.types.get(name)
        return None if tensor is None or tensor.dims is None else list(tensor.dims)

    def is_constant(self, name: str) -> bool:
        node = self.producer.get(name)
        return name in self.initializers or (node is not None and node.op_type == "Constant")

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant":
            return None
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in CONSTANT_VALUE_ATTRIBUTES:
                return np.array(attribute(node, attr.name))
        return None

    def only_reader(self, name: str) -> NodeProto | None:
        """The single node reading `name`, or None when several read it or it is a graph output."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or name in self.outputs:
            return None
        return readers[0]

    def names(self) -> set:
        """Every node, tensor and initializer name in use, so new ones never clash."""
        taken = set(self.initializers) | set(self.inputs) | set(self.outputs)
        for node in self.graph.node:
            taken.add(node.name)
            taken.update(node.input)
            taken.update(node.output)
        return taken

    def activations(self) -> list:
        """Every float32 tensor computed from the inputs (graph inputs and node outputs), in graph order."""
        names = [name for name in self.inputs if self.is_float(name)]
        for name, node in self.producer.items():
            if node.op_type != "Constant" and self.is_float(name):
                names.append(name)
        return names

    def depth(self) -> dict:
        """Longest path (in nodes) from a graph input to each tensor; a residual's main branch is deeper."""
        depth = {name: 0 for name in self.inputs}
        for node in toposort(self.graph.node):
            level = 1 + max((depth.get(name, 0) for name in node.input if name), default=0)
            for name in node.output:
                depth[name] = level
        return depth
