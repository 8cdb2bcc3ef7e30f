"""Making new nodes and constants for a rewrite, named after the block they belong to."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


class NodeFactory:
    """Builds nodes and initializers whose names start with one prefix (the block they belong to)."""

    def __init__(self, prefix: str, taken: set) -> None:
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

    def constant(self, base: str, value: ArrayLike) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op_type: str, inputs: Iterable[str], base: str, output: str | None = None,
             outputs: list[str] | None = None, name: str | None = None, **attrs: Any) -> Any:
        """Add one node named `name` or prefix/base; returns its output name (or names, given `outputs`)."""
        name = name or self.fresh(base)
        names = outputs or [output or self.fresh(base + "_output")]
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), names, name=name, **attrs))
        return names if outputs else names[0]

    def sum(self, terms: Sequence[str], base: str, output: str | None = None) -> str:
        """t0 + t1 + ... as a chain of Adds; the last writes `output`."""
        total = terms[0]
        for i, term in enumerate(terms[1:], start=1):
            last = i == len(terms) - 1
            total = self.node("Add", [total, term], base if last else f"{base}_partial", output if last else None)
        return total
