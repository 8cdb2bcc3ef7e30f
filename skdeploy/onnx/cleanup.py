"""Removing what a rewrite leaves behind (nodes no output depends on, initializers nobody reads) and keeping
what is left valid for the model's IR version."""
from __future__ import annotations

import onnx


def prune_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers that no node reads and no graph output names, and their graph-input entries
    (older exports list initializers as inputs too, which would otherwise become inputs to feed)."""
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    unused = {init.name for init in graph.initializer if init.name not in used}
    if not unused:
        return
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    kept_inputs = [value for value in graph.input if value.name not in unused]
    del graph.input[:]
    graph.input.extend(kept_inputs)


def remove_dead_code(model: onnx.ModelProto) -> None:
    """Drop nodes no graph output depends on, then initializers and value_info nobody uses."""
    graph = model.graph
    live = {value.name for value in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in live for name in node.output):
            kept.append(node)
            live.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    prune_initializers(graph)
    produced = {name for node in graph.node for name in node.output}
    for value in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(value)


def list_initializers_as_inputs(model: onnx.ModelProto) -> None:
    """IR version 3 requires every initializer to be a graph input as well; add the ones a rewrite made
    (no-op from IR version 4 on, where initializers need not be inputs)."""
    if model.ir_version >= 4:
        return
    listed = {value.name for value in model.graph.input}
    model.graph.input.extend(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
                             for init in model.graph.initializer if init.name not in listed)
