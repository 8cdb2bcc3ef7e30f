"""Which PyTorch module a node or weight came from, read off exporter metadata and names, so new nodes
can be named after the block they replace."""
from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the dynamo exporter's per-node module path


def scope_of(node: NodeProto) -> list:
    """The module path a node came from: torch.onnx's name scopes (dynamo) or its '/a/b/Op' name
    (TorchScript), outermost first, without the node's own op."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES_KEY:
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                break
            return scopes[:-1]
    parts = [p for p in node.name.split("/") if p]
    if len(parts) < 2 or not node.name.startswith("/"):
        return []
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def common_scope(nodes: Iterable[NodeProto]) -> str:
    """The innermost module every node belongs to ('' when they share none)."""
    scopes = [scope_of(node) for node in nodes]
    common = ""
    for level in zip(*scopes, strict=False):
        if len(set(level)) != 1:
            break
        common = level[0]
    return common


def module_of_weight(name: str) -> str:
    """'layers.0.sk.fc2.weight' -> 'layers.0.sk' (the module holding the layer), '' for generated names."""
    parts = name.split(".")
    if len(parts) < 3 or parts[-1] != "weight" or not all(p.isidentifier() or p.isdigit() for p in parts):
        return ""
    return ".".join(parts[:-2])


def copy_node_metadata(source: ModelProto, target: ModelProto) -> None:
    """Give `target`'s nodes the metadata (dynamo's module scopes) of `source`'s nodes of the same name;
    onnx-simplifier drops it, and the SK rewrite names new nodes after those scopes."""
    props = {node.name: node.metadata_props for node in source.graph.node if node.name and node.metadata_props}
    for node in target.graph.node:
        if node.name in props and not node.metadata_props:
            node.metadata_props.extend(props[node.name])
