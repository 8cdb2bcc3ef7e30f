"""Small helpers every pass shares: who produces and reads each tensor, constants, naming, clean-up."""
import ast
import collections
import heapq

import numpy as np

from ..onnxutil import opset_of


def attribute(node, name, default=None):
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


class GraphIndex:
    """Producer and readers of every tensor of one graph, plus the values of its constants."""

    def __init__(self, model):
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
        self.inputs = {value.name for value in self.graph.input} - set(self.initializers)
        self.outputs = {value.name for value in self.graph.output}

    def constant(self, name):
        """The value of an initializer or Constant node output, else None."""
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant":
            return None
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_float", "value_int"):
                return np.array(attribute(node, attr.name))
            if attr.name in ("value_floats", "value_ints"):
                return np.array(attribute(node, attr.name))
        return None

    def only_reader(self, name):
        """The single node reading `name`, or None when several read it or it is a graph output."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or name in self.outputs:
            return None
        return readers[0]

    def names(self) -> set:
        """Every node, tensor and initializer name in use, so new ones never clash."""
        taken = set(self.initializers) | self.inputs | self.outputs
        for node in self.graph.node:
            taken.add(node.name)
            taken.update(node.input)
            taken.update(node.output)
        return taken


def scope_of(node) -> list:
    """The module path a node came from: torch.onnx's name scopes (dynamo) or its '/a/b/Op' name
    (TorchScript), outermost first, without the node's own op."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                break
            return scopes[:-1]
    parts = [p for p in node.name.split("/") if p]
    if len(parts) < 2 or not node.name.startswith("/"):
        return []
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def copy_node_metadata(source, target) -> None:
    """Give `target`'s nodes the metadata (dynamo's module scopes) of `source`'s nodes of the same name;
    onnx-simplifier drops it, and the SK rewrite names new nodes after those scopes."""
    props = {node.name: node.metadata_props for node in source.graph.node if node.name and node.metadata_props}
    for node in target.graph.node:
        if node.name in props and not node.metadata_props:
            node.metadata_props.extend(props[node.name])


def module_of_weight(name: str) -> str:
    """'layers.0.sk.fc2.weight' -> 'layers.0.sk' (the module holding the layer), '' for generated names."""
    parts = name.split(".")
    if len(parts) < 3 or parts[-1] != "weight" or not all(p.isidentifier() or p.isdigit() for p in parts):
        return ""
    return ".".join(parts[:-2])


def common_scope(nodes) -> str:
    """The innermost module every node belongs to ('' when they share none)."""
    scopes = [scope_of(node) for node in nodes]
    common = ""
    for level in zip(*scopes):
        if len(set(level)) != 1:
            break
        common = level[0]
    return common


class NodeFactory:
    """Builds nodes and initializers whose names start with one prefix (the block they belong to)."""

    def __init__(self, prefix: str, taken: set):
        self.prefix = prefix
        self.taken = taken
        self.nodes = []
        self.initializers = []

    def fresh(self, base: str) -> str:
        name, count = f"{self.prefix}/{base}", 1
        while name in self.taken:
            count += 1
            name = f"{self.prefix}/{base}_{count}"
        self.taken.add(name)
        return name

    def constant(self, base: str, value) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op_type: str, inputs, base: str, output: str = None, outputs=None, name=None, **attrs):
        """Add one node named `name` or prefix/base; returns its output name (or names, given `outputs`)."""
        import onnx

        name = name or self.fresh(base)
        names = outputs or [output or self.fresh(base + "_output")]
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), names, name=name, **attrs))
        return names if outputs else names[0]

    def sum(self, terms, base: str, output: str = None) -> str:
        """t0 + t1 + ... as a chain of Adds; the last writes `output`."""
        total = terms[0]
        for i, term in enumerate(terms[1:], start=1):
            last = i == len(terms) - 1
            total = self.node("Add", [total, term], base if last else f"{base}_partial", output if last else None)
        return total


def topological_sort(graph) -> None:
    """Reorder nodes so each comes after the producers of its inputs, keeping the given order otherwise."""
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    waiting = [set() for _ in nodes]
    readers = collections.defaultdict(set)
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in producer and producer[name] != i:
                waiting[i].add(producer[name])
                readers[producer[name]].add(i)
    ready = [i for i, deps in enumerate(waiting) if not deps]
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
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def remove_dead_code(model) -> None:
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
    unused = [init for init in graph.initializer if init.name not in live]
    for init in unused:
        graph.initializer.remove(init)
    unused_names = {init.name for init in unused}
    for value in [v for v in graph.input if v.name in unused_names]:
        graph.input.remove(value)
    produced = {name for node in graph.node for name in node.output}
    for value in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(value)
