"""Pieces of a graph cut out and run on their own in onnxruntime.

A pass uses them twice: to learn where each value of a layout subgraph comes from (run it on labelled
inputs) and to check a rewrite (run the old and the new piece on the same random inputs).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..onnx.io import graph_inputs
from ..onnx.run import run_model

if TYPE_CHECKING:
    from onnx import ModelProto

    from ..onnx.index import GraphIndex

SHAPE_READERS = ("Shape", "Size")


@dataclass
class Region:
    """Nodes (graph order) computing `outputs` from `inputs` (non-constant tensors read from outside)."""

    nodes: list
    inputs: list
    outputs: list
    initializers: list = field(default_factory=list)  # new constants the nodes read (rewrites only)


def region_between(index: GraphIndex, outputs: Iterable[str], boundary: Iterable[str] = ()) -> Region:
    """The nodes computing `outputs` back to `boundary` tensors, graph inputs and constants.

    Shape and Size read only the shape of their input, so the walk stops there and that input counts as
    a region input: the batch-size bookkeeping of a block does not pull in the whole network before it.
    """
    boundary = set(boundary)
    nodes, inputs, seen, shape_read = {}, set(), set(), set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        producer = index.producer.get(name)
        if name in boundary or name in index.inputs or producer is None:
            inputs.add(name)
            continue
        if id(producer) in nodes:
            continue
        nodes[id(producer)] = producer
        if producer.op_type in SHAPE_READERS:
            shape_read.add(producer.input[0])
        else:
            stack.extend(producer.input)
    produced = {name for node in nodes.values() for name in node.output}
    inputs = {name for name in inputs | (shape_read - produced) if name not in index.initializers}
    ordered = sorted(nodes.values(), key=lambda node: index.position[id(node)])
    return Region(ordered, sorted(inputs), list(outputs))


def _renamed(region, tag, constants):
    """Copies of the region's nodes with every non-constant tensor prefixed by `tag`."""
    import onnx

    def rename(name):
        return name if (not name or name in constants) else f"{tag}{name}"

    nodes = []
    for node in region.nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]
        copy.name = f"{tag}{node.name}" if node.name else ""  # unnamed nodes are valid ONNX; "r0:" twice is not
        nodes.append(copy)
    return nodes


def regions_model(index: GraphIndex, regions: list[Region], types: dict) -> ModelProto:
    """One model holding every region side by side (tensors renamed per region, so regions that share
    nodes stay independent); input/output names are f"r{i}:{name}"."""
    import onnx

    constants = set(index.initializers)
    for region in regions:
        constants.update(init.name for init in region.initializers)
    nodes, inputs, outputs, used = [], [], [], set()
    for i, region in enumerate(regions):
        tag = f"r{i}:"
        region_nodes = _renamed(region, tag, constants)
        read = {name for node in region_nodes for name in node.input}
        nodes += region_nodes
        used |= read
        for name in region.inputs:
            if tag + name in read:
                shape = types[name].shape
                dims = None if shape is None else [None] * len(shape)
                inputs.append(onnx.helper.make_tensor_value_info(tag + name, types[name].elem_type, dims))
        for name in region.outputs:
            elem = types[name].elem_type if name in types else onnx.TensorProto.FLOAT
            outputs.append(onnx.helper.make_tensor_value_info(tag + name, elem, None))
    initializers = [init for init in index.graph.initializer if init.name in used]
    initializers += [init for region in regions for init in region.initializers if init.name in used]
    graph = onnx.helper.make_graph(nodes, "regions", inputs, outputs, initializers)
    return onnx.helper.make_model(graph, opset_imports=index.model.opset_import, ir_version=index.model.ir_version)


def run_regions(index: GraphIndex, regions: list[Region], feeds: list[dict], types: dict) -> list:
    """Run the regions on `feeds` ([{input name: array}] per region); returns [{output name: array}]."""
    model = regions_model(index, regions, types)
    feed = {f"r{i}:{name}": value for i, region_feed in enumerate(feeds) for name, value in region_feed.items()}
    wanted = {value.name for value in graph_inputs(model)}
    results = run_model(model, [{name: value for name, value in feed.items() if name in wanted}], optimize=False)[0]
    return [{name: results[f"r{i}:{name}"] for name in region.outputs} for i, region in enumerate(regions)]


def shape_only_inputs(region: Region) -> set:
    """Region inputs that only Shape/Size nodes read: their values never matter."""
    read_for_values = {name for node in region.nodes if node.op_type not in SHAPE_READERS for name in node.input}
    return {name for name in region.inputs if name not in read_for_values and name not in region.outputs}


def random_feed(region: Region, types: dict, rng: np.random.Generator) -> dict:
    """Random normal values for float inputs; zeros for the rest and for inputs read only for their shape."""
    feed = {}
    zeros = shape_only_inputs(region)
    for name in region.inputs:
        tensor = types.get(name)
        if tensor is None or tensor.shape is None:
            raise KeyError(name)
        if tensor.dtype.kind == "f" and name not in zeros:
            feed[name] = rng.standard_normal(tensor.shape, dtype=np.float32).astype(tensor.dtype, copy=False)
        else:
            feed[name] = np.zeros(tensor.shape, dtype=tensor.dtype)
    return feed
