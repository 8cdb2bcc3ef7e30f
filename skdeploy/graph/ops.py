"""What a few ONNX ops do, read from their attributes or constant inputs across opset versions."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..onnx.io import attribute

if TYPE_CHECKING:
    from onnx import NodeProto

    from ..onnx.index import GraphIndex


def _axes_argument(index, node, position):
    """Axes given as an attribute (older opsets) or a constant input (newer); None when computed."""
    if len(node.input) > position and node.input[position]:
        value = index.constant(node.input[position])
        return None if value is None else [int(v) for v in np.ravel(value)]
    axes = attribute(node, "axes")
    return None if axes is None else [int(v) for v in axes]


def normalized(axes: Iterable[int], rank: int) -> list[int]:
    return sorted(a + rank if a < 0 else a for a in axes)


def unsqueeze_axes(index: GraphIndex, node: NodeProto, rank_out: int) -> list[int] | None:
    axes = _axes_argument(index, node, 1)
    return None if axes is None else normalized(axes, rank_out)


def reduce_axes(index: GraphIndex, node: NodeProto, rank_in: int) -> tuple:
    """Axes a Reduce* node sums over (all of them when none are given), and keepdims."""
    axes = _axes_argument(index, node, 1)
    keepdims = attribute(node, "keepdims", 1)
    if axes is None:
        if len(node.input) > 1 and node.input[1]:
            return None, keepdims  # computed axes
        if attribute(node, "noop_with_empty_axes", 0):
            return [], keepdims
        axes = list(range(rank_in))
    return normalized(axes, rank_in), keepdims


def stacked_tensors(index: GraphIndex, types: dict, name: str) -> tuple | None:
    """(tensors, axis) when `name` is stack(tensors, axis), i.e. Concat on `axis` of Unsqueeze(t, axis)."""
    concat = index.producer.get(name)
    if concat is None or concat.op_type != "Concat" or name not in types or types[name].shape is None:
        return None
    rank = len(types[name].shape)
    axis = normalized([attribute(concat, "axis")], rank)[0]
    tensors = []
    for part in concat.input:
        unsqueeze = index.producer.get(part)
        if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or unsqueeze_axes(index, unsqueeze, rank) != [axis]:
            return None
        tensors.append(unsqueeze.input[0])
    return tensors, axis


def split_sizes(index: GraphIndex, node: NodeProto, length: int) -> list[int] | None:
    """Sizes of a Split's outputs along its axis (input of `length` there); None when not static."""
    count = len(node.output)
    sizes = None
    if len(node.input) > 1 and node.input[1]:
        sizes = index.constant(node.input[1])
        if sizes is None:
            return None
    elif attribute(node, "split") is not None:
        sizes = attribute(node, "split")
    elif length is not None:
        step = -(-length // count)  # opset 18 num_outputs: equal parts, the last one smaller
        sizes = [min(step, length - i * step) for i in range(count)]
    return None if sizes is None else [int(s) for s in np.ravel(sizes)]


def softmax_axis(index: GraphIndex, node: NodeProto, rank: int) -> int:
    default = -1 if index.opset >= 13 else 1
    return normalized([attribute(node, "axis", default)], rank)[0]


def softmax_groups(shape: Sequence[int], axis: int, opset: int) -> tuple:
    """For a softmax over a tensor of per-sample `shape` (batch axis 0 excluded, `axis` counts it):
    (group, slot, size) arrays over the flat per-sample positions. Elements of one group are normalised
    together; `slot` is the position inside the group. Opset 13 normalises along `axis`; older opsets
    flatten everything from `axis` on into one group per row."""
    positions = int(np.prod(shape))
    if opset >= 13:
        grid = np.indices(shape).reshape(len(shape), positions)
        slot = grid[axis - 1]
        rest = np.delete(grid, axis - 1, axis=0)
        rest_dims = tuple(np.delete(np.array(shape), axis - 1))
        group = np.ravel_multi_index(tuple(rest), rest_dims) if rest_dims else np.zeros(positions, np.int64)
        return group, slot, shape[axis - 1]
    size = int(np.prod(shape[axis - 1:]))
    flat = np.arange(positions)
    return flat // size, flat % size, size
