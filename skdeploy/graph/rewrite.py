"""Checked rewrites: a piece of graph is replaced only after onnxruntime shows old and new agree."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..compare import compare_outputs, merge_comparisons
from ..onnx.cleanup import remove_dead_code
from ..onnx.shapes import batch_dim_is_dynamic, infer_types
from ..onnx.toposort import replace_nodes
from .regions import Region, random_feed, run_regions

if TYPE_CHECKING:
    from onnx import ModelProto

    from ..onnx.index import GraphIndex

TOLERANCE = 1e-5  # max |old - new| / max |old| per rewrite, on random inputs


def parity_batches(model: ModelProto) -> list:
    """Two runs: batch 1 and 3 for a dynamic batch, the fixed batch twice (new random draws) otherwise."""
    if batch_dim_is_dynamic(model):
        return [1, 3]
    return [None, None]


class Shapes:
    """Tensor types of one version of a model at each parity batch size, inferred once per size; `sizes`
    ({dim name: size}) sizes the inputs' other symbolic dimensions."""

    def __init__(self, model, sizes=None) -> None:
        self.model = model
        self.sizes = sizes
        self.batches = parity_batches(model)
        self._types = {}

    def at(self, batch: int | None) -> dict:
        if batch not in self._types:
            self._types[batch] = infer_types(self.model, batch, self.sizes, measure_missing=True)
        return self._types[batch]


@dataclass
class Rewrite:
    """Replace what `old` computes by `new` (same output names)."""

    label: str  # the block or node it concerns, as reports name it
    old: Region
    new: Region
    details: dict = field(default_factory=dict)


def _compare(rewrites, old_results, new_results, parity) -> None:
    for i, (old, new) in enumerate(zip(old_results, new_results, strict=True)):
        for name in rewrites[i].old.outputs:
            parity[i].append(compare_outputs(old[name], new[name]))


def check_rewrites(index: GraphIndex, shapes: Shapes, rewrites: list[Rewrite], seed: int = 0) -> list:
    """Run every rewrite's old and new region on the same random inputs at the parity batch sizes.

    Returns one entry per rewrite: {"max_abs", "max_rel"} or {"error": why it could not be checked}.
    All rewrites run together in one session; when that fails, each runs alone to find the culprit.
    """
    rng = np.random.default_rng(seed)
    parity = [[] for _ in rewrites]
    errors = [None] * len(rewrites)
    for batch in shapes.batches:
        types = shapes.at(batch)
        feeds = []
        for i, rewrite in enumerate(rewrites):
            try:
                feeds.append(random_feed(rewrite.old, types, rng))
            except KeyError as missing:
                errors[i] = errors[i] or f"shape of {missing.args[0]} unknown, parity cannot be checked"
                feeds.append(None)
        live = [i for i in range(len(rewrites)) if errors[i] is None]
        groups = [live]
        while groups:
            group = groups.pop()
            if not group:
                continue
            try:
                old = run_regions(index, [rewrites[i].old for i in group], [feeds[i] for i in group], types)
                new = run_regions(index, [rewrites[i].new for i in group], [feeds[i] for i in group], types)
            except Exception as exc:  # onnxruntime load/run errors have no common base
                if len(group) == 1:
                    errors[group[0]] = f"onnxruntime could not run it: {str(exc).splitlines()[0][:200]}"
                else:
                    groups += [[i] for i in group]
                continue
            _compare([rewrites[i] for i in group], old, new, [parity[i] for i in group])
    return [{"error": errors[i]} if errors[i] else merge_comparisons(parity[i]) for i in range(len(rewrites))]


def apply_checked(model: ModelProto, index: GraphIndex, shapes: Shapes, rewrites: list[Rewrite],
                  tolerance: float = TOLERANCE) -> tuple:
    """Apply the rewrites whose parity holds; returns ([(rewrite, parity)] applied, [(rewrite, reason)] kept)."""
    applied, kept = [], []
    if not rewrites:
        return applied, kept
    for rewrite, parity in zip(rewrites, check_rewrites(index, shapes, rewrites), strict=True):
        if "error" in parity:
            kept.append((rewrite, parity["error"]))
        elif not parity["max_rel"] <= tolerance:
            kept.append((rewrite, f"parity failed: max relative error {parity['max_rel']:.3g} > {tolerance:g}"))
        else:
            applied.append((rewrite, parity))
    replace_regions(model, index, [rewrite for rewrite, _ in applied])
    return applied, kept


def replace_regions(model: ModelProto, index: GraphIndex, rewrites: list[Rewrite]) -> None:
    """Put each rewrite's nodes where the producer of its first output was; what that leaves unused goes."""
    if not rewrites:
        return
    replacing = {}
    for rewrite in rewrites:
        for name in rewrite.old.outputs:
            replacing.setdefault(id(index.producer[name]), []).append(rewrite)
    nodes, placed = [], set()
    for node in model.graph.node:
        for rewrite in replacing.get(id(node), [node]):
            if rewrite is node:
                nodes.append(node)
            elif id(rewrite) not in placed:
                placed.add(id(rewrite))
                nodes += rewrite.new.nodes
                model.graph.initializer.extend(rewrite.new.initializers)
    replace_nodes(model.graph, nodes)
    remove_dead_code(model)
