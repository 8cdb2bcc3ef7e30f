"""The split and fuse ends of an SK unit in plain 4-D form.

timm's SelectiveKernel and skdeploy's SKConv fuse the branches as stack(U_1..U_M).sum(axis), which
exports as Unsqueeze -> Concat -> ReduceSum through a 5-D tensor; that sum is U_1 + ... + U_M.
timm's split_input=True divides the input channels with a Split; Slices with static bounds are the
same and keep Split out of the block.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..onnx.build import NodeFactory
from ..onnx.io import attribute
from ..onnx.scopes import common_scope
from .ops import reduce_axes, split_sizes, stacked_tensors
from .regions import Region, region_between
from .rewrite import Rewrite

if TYPE_CHECKING:
    from ..onnx.index import GraphIndex


def stacked_sums(index: GraphIndex, types: dict, taken: set) -> list:
    """One Rewrite per ReduceSum(stack(X_1..X_M), axis) without kept dims: X_1 + ... + X_M."""
    rewrites = []
    for node in [n for n in index.graph.node if n.op_type == "ReduceSum"]:
        stack = stacked_tensors(index, types, node.input[0])
        if stack is None or len(stack[0]) < 2:
            continue
        tensors, axis = stack
        axes, keepdims = reduce_axes(index, node, len(types[node.input[0]].shape))
        if axes != [axis] or keepdims:
            continue
        f = NodeFactory(common_scope([node]) or node.name or node.output[0], taken)
        f.sum(tensors, "fuse_sum", output=node.output[0])
        old = region_between(index, node.output, boundary=tensors)
        rewrites.append(Rewrite(f.prefix, old, Region(f.nodes, tensors, list(node.output), f.initializers),
                                {"kind": "stacked sum", "branches": len(tensors)}))
    return rewrites


def split_slices(index: GraphIndex, types: dict, taken: set) -> list:
    """One Rewrite per Split with static sizes: a Slice per output, same output names."""
    rewrites = []
    for node in [n for n in index.graph.node if n.op_type == "Split"]:
        data = node.input[0]
        shape = types[data].shape if data in types else None
        if shape is None:
            continue
        axis = attribute(node, "axis", 0)
        axis = axis + len(shape) if axis < 0 else axis
        sizes = split_sizes(index, node, shape[axis])
        if sizes is None or len(sizes) != len(node.output) or sum(sizes) != shape[axis]:
            continue
        f = NodeFactory(common_scope([node]) or node.name or node.output[0], taken)
        axes = f.constant("split_axis", np.array([axis], np.int64))
        start = 0
        for i, (size, output) in enumerate(zip(sizes, node.output, strict=True)):
            if not output:
                start += size
                continue
            bounds = [f.constant(f"part{i}_start", np.array([start], np.int64)),
                      f.constant(f"part{i}_end", np.array([start + size], np.int64))]
            f.node("Slice", [data, *bounds, axes], f"part{i}", output=output)
            start += size
        old = region_between(index, [o for o in node.output if o], boundary=[data])
        rewrites.append(Rewrite(f.prefix, old, Region(f.nodes, [data], old.outputs, f.initializers),
                                {"kind": "split", "parts": len(sizes)}))
    return rewrites
