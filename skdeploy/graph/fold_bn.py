"""BatchNormalization folding.

Inference BatchNorm is an affine map per channel:  y = s * x + t,  s = gamma / sqrt(var + eps),
t = beta - mean * s.  After a Conv, ConvTranspose or Gemm it folds into the weights (each output
channel's filter times s) and the bias (b * s + t). Anywhere else it becomes one Mul by s and one Add of t.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..onnx.build import NodeFactory
from ..onnx.index import GraphIndex
from ..onnx.io import attribute
from .regions import Region, region_between
from .report import PassReport
from .rewrite import Rewrite, Shapes, apply_checked

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


@dataclass(kw_only=True)
class FoldReport(PassReport):
    """BatchNormalization nodes found, how many folded into each layer type or made a scale-and-shift, and
    the ones left with the reason ({node, reason}); max_rel is the worst parity of an applied fold."""

    name = "fold_bn"
    left_key = "node"
    batchnorms: int
    folded: dict
    scale_and_shift: int
    left: list
    max_rel: float

    def headline(self) -> str:
        into = f" (into {', '.join(f'{op} {n}' for op, n in self.folded.items())})" if self.folded else ""
        return (f"{self.batchnorms} BatchNormalization: {sum(self.folded.values())} folded{into}, "
                f"{self.scale_and_shift} made scale-and-shift, {len(self.left)} left")


class Unfoldable(Exception):
    """A BatchNormalization that is not an inference-time affine map."""


def bn_affine(index: GraphIndex, bn: NodeProto) -> tuple:
    """(s, t) of y = s * x + t, computed in float64."""
    if len(bn.input) < 5 or any(output for output in bn.output[1:]) or attribute(bn, "training_mode", 0):
        raise Unfoldable("training-mode BatchNormalization (it normalises with batch statistics)")
    params = [index.constant(name) for name in bn.input[1:5]]
    if any(p is None for p in params):
        raise Unfoldable("its scale, bias, mean or variance is computed, not constant")
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
    scale = gamma / np.sqrt(var + attribute(bn, "epsilon", 1e-5))
    return scale, beta - mean * scale


def _folded_layer(index, layer, scale, shift, f, output):
    """`layer` (Conv/ConvTranspose/Gemm) with s and t folded in, writing `output`; None when it cannot be."""
    weight = index.constant(layer.input[1])
    if weight is None:
        return None
    has_bias = len(layer.input) > 2 and layer.input[2]
    bias = index.constant(layer.input[2]) if has_bias else None
    if has_bias and bias is None:
        return None
    dtype = weight.dtype
    weight = weight.astype(np.float64)
    attrs = {a.name: attribute(layer, a.name) for a in layer.attribute}
    if layer.op_type == "Conv":
        weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        new_bias = (0.0 if bias is None else bias.astype(np.float64)) * scale + shift
    elif layer.op_type == "ConvTranspose":
        groups = attrs.get("group", 1)
        grouped = weight.reshape((groups, weight.shape[0] // groups) + weight.shape[1:])
        grouped = grouped * scale.reshape((groups, 1, weight.shape[1]) + (1,) * (weight.ndim - 2))
        weight = grouped.reshape(weight.shape)
        new_bias = (0.0 if bias is None else bias.astype(np.float64)) * scale + shift
    else:  # Gemm: y = alpha * A @ B' + beta * C, B' = B or B^T
        columns = scale if attrs.get("transB", 0) == 0 else scale.reshape(-1, 1)
        weight = weight * columns
        beta = attrs.get("beta", 1.0)
        if bias is None or beta == 0:
            new_bias, attrs["beta"] = shift, 1.0
        else:
            if bias.size != 1 and bias.shape[-1:] != scale.shape:
                return None  # a per-row bias cannot absorb a per-column shift
            new_bias = np.broadcast_to(bias.astype(np.float64).reshape(-1), scale.shape) * scale + shift / beta
    inputs = [layer.input[0], f.constant("weight_bn_folded", weight.astype(dtype)),
              f.constant("bias_bn_folded", np.asarray(new_bias).astype(dtype))]
    f.node(layer.op_type, inputs, "bn_folded", output=output, name=layer.name or None, **attrs)
    return f.nodes[-1]


def _scale_and_shift(scale, shift, rank, dtype, f, x, output) -> None:
    """y = x * s + t with s, t shaped (C, 1, ..., 1) to broadcast over channel axis 1."""
    shape = (-1,) + (1,) * (rank - 2)
    scaled = f.node("Mul", [x, f.constant("scale", scale.reshape(shape).astype(dtype))], "scale")
    f.node("Add", [scaled, f.constant("shift", shift.reshape(shape).astype(dtype))], "shift", output=output)


def plan_folds(index: GraphIndex, shapes: Shapes) -> tuple:
    """One Rewrite per BatchNormalization, plus [(name, reason)] for those left alone."""
    rewrites, skipped = [], []
    taken = index.names()
    types = shapes.at(shapes.batches[0])
    for bn in [node for node in index.graph.node if node.op_type == "BatchNormalization"]:
        label = bn.name or bn.output[0]
        try:
            scale, shift = bn_affine(index, bn)
        except Unfoldable as reason:
            skipped.append((label, str(reason)))
            continue
        x, y = bn.input[0], bn.output[0]
        layer = index.producer.get(x)
        if layer is not None and layer.op_type in FOLDABLE and index.only_reader(x) is bn:
            f = NodeFactory(layer.name or label, taken)
            if _folded_layer(index, layer, scale, shift, f, y) is not None:
                new = Region(f.nodes, [layer.input[0]], [y], f.initializers)
                old = region_between(index, [y], boundary=[layer.input[0]])
                rewrites.append(Rewrite(label, old, new, {"into": layer.op_type}))
                continue
        shape = types[x].shape if x in types else None
        if shape is None:
            skipped.append((label, "the rank of its input is unknown"))
            continue
        f = NodeFactory(label, taken)
        _scale_and_shift(scale, shift, len(shape), index.constant(bn.input[1]).dtype, f, x, y)
        new = Region(f.nodes, [x], [y], f.initializers)
        rewrites.append(Rewrite(label, region_between(index, [y], boundary=[x]), new, {"into": "scale-and-shift"}))
    return rewrites, skipped


def fold_batchnorms(model: ModelProto, tolerance: float, sizes: dict | None = None) -> FoldReport:
    """Fold every BatchNormalization of `model` (in place); returns the pass report. `sizes` sizes the
    inputs' symbolic dimensions besides the batch for the checks ({dim name: size})."""
    index, shapes = GraphIndex(model), Shapes(model, sizes)
    rewrites, skipped = plan_folds(index, shapes)
    applied, kept = apply_checked(model, index, shapes, rewrites, tolerance)
    folded = collections.Counter(rewrite.details["into"] for rewrite, _ in applied)
    return FoldReport(
        batchnorms=len(rewrites) + len(skipped),
        folded={op: folded[op] for op in FOLDABLE if folded[op]},
        scale_and_shift=folded["scale-and-shift"],
        left=[{"node": label, "reason": reason} for label, reason in skipped]
             + [{"node": rewrite.label, "reason": reason} for rewrite, reason in kept],
        max_rel=max((parity["max_rel"] for _, parity in applied), default=0.0),
    )
