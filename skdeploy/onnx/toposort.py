"""Topological order of ONNX nodes, for graphs whose nodes were inserted or replaced out of order."""
from __future__ import annotations

import collections
import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto


def toposort(nodes: Sequence[NodeProto]) -> list:
    """`nodes` reordered so each comes after the producers of its inputs. Among the nodes ready at any
    point the earliest in the given order goes first (Kahn's algorithm on a heap of positions): a graph
    already in order stays exactly as it is, and nodes appended at the end wait until a node needs them."""
    nodes = list(nodes)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    waiting = [set() for _ in nodes]
    readers = collections.defaultdict(set)
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in producer and producer[name] != i:
                waiting[i].add(producer[name])
                readers[producer[name]].add(i)
    ready = [i for i, producers in enumerate(waiting) if not producers]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for reader in readers[i]:
            waiting[reader].discard(i)
            if not waiting[reader]:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle")
    return [nodes[i] for i in order]


def replace_nodes(graph: GraphProto, nodes: Sequence[NodeProto]) -> None:
    """Make `nodes` the nodes of `graph`, in topological order."""
    ordered = toposort(nodes)
    del graph.node[:]
    graph.node.extend(ordered)
