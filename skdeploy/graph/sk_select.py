"""The SK select rewrite: softmax-over-branches selection as plain 4-D math with static shapes.

An SK unit selects  V = sum_m a_m * U_m,  a = softmax over m of the logits l_m = W_m z + b_m, where
fc2 (one 1x1 conv) computes all M*C logits from the fused vector z.  Exporters write it as reshapes to
(N, M, C, ...) -> Softmax(axis=1) -> Split/Slice/Gather -> reshapes -> Mul -> Add (or, timm, a 5-D
stack times the softmax, ReduceSum), with Shape/Gather/Concat computing reshape targets.

Rewritten, per channel c:
  M = 2:  a_1 = e^l_1 / (e^l_1 + e^l_2) = 1 / (1 + e^-(l_1 - l_2)) = sigmoid(l_1 - l_2), a_2 = 1 - a_1, and
          l_1 - l_2 = (W_1 - W_2) z + (b_1 - b_2) is one conv. So: one 1x1 conv with weights W_1 - W_2
          (bias b_1 - b_2), a Sigmoid, and  V = a_1 U_1 + (1 - a_1) U_2 = U_2 + a_1 * (U_1 - U_2).
  M > 2:  the same softmax over m, laid out so TensorRT sees plain 4-D: fc2 with its output channels
          reordered channel-major (channel c*M + m computes l_m[c]), a static Reshape to (N, C, 1, M)
          (0 copies the batch), Softmax over axis 3, and V = sum_m U_m * a[..., m].

Matching is by structure and algebra, not names: from each Softmax, the attention must reach the
multiplies only through layout ops (reshape, slice, gather, ...), the products must be summed, and the
logits must come from a 1x1 conv. Which logit lands in which softmax slot and which slot weights which
branch channel is then read off exactly, by running the layout ops on labelled values (each element
carries its own index). The rewrite happens only when every branch takes one softmax slot, all
branches weight channel c from the same softmax group, and the M slots are covered once each.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..onnx.build import NodeFactory
from ..onnx.index import GraphIndex
from ..onnx.io import attribute
from ..onnx.scopes import common_scope, module_of_weight
from .ops import reduce_axes, softmax_axis, softmax_groups, stacked_tensors
from .regions import SHAPE_READERS, Region, region_between, run_regions
from .report import PassReport
from .rewrite import Rewrite, Shapes, apply_checked
from .sk_fuse import split_slices, stacked_sums

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

LAYOUT_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split", "Gather",
                        "Identity", "Expand"})
SUM_OPS = ("Add", "Sum")
MIN_OPSET = 11  # Slice with tensor bounds (opset 10) and Softmax as TensorRT parses it
LABEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # hold element indices exactly (below 2**24)


@dataclass(kw_only=True)
class SkRewriteReport(PassReport):
    """SK selects found and rewritten ({block, M, C, form, rewritten_as, max_rel}), near misses and failed
    rewrites left with the reason ({block, reason}), the fuse-end tidy-ups, and the worst parity."""

    name = "sk_rewrite"
    left_key = "block"
    blocks_found: int
    rewritten: list
    left: list
    stacked_sums_unrolled: int
    splits_to_slices: int
    max_rel: float

    def headline(self) -> str:
        by_m = collections.Counter(entry["M"] for entry in self.rewritten)
        kinds = ", ".join(f"M={m}: {n}" for m, n in sorted(by_m.items()))
        return (f"{self.blocks_found} SK blocks found, {len(self.rewritten)} rewritten"
                f"{f' ({kinds})' if kinds else ''}; {self.stacked_sums_unrolled} stacked sums unrolled, "
                f"{self.splits_to_slices} Splits made Slices; worst block parity {self.max_rel:.2g}")


class NotSelect(Exception):
    """A softmax that is no SK select at all (a classifier head, attention in a transformer)."""


class NearMiss(Exception):
    """Looks like an SK select, but an algebraic precondition fails: left as it is."""


@dataclass
class Select:
    """V = sum_m softmax_m(l)[m] * U_m per channel c, with l_m[c] = fc2(z)[logit_channel[m, c]]."""

    block: str
    fc2: object  # the 1x1 Conv computing the logits
    z: str
    branches: list  # U_m; branch m is weighted by softmax slot m
    logit_channel: np.ndarray  # (M, C)
    output: str  # V
    form: str  # how the export wrote it: "sum of products" or "stacked"
    dtype: np.dtype  # of fc2's weights, which the new constants keep

    @property
    def M(self) -> int:
        return len(self.branches)

    @property
    def C(self) -> int:
        return self.logit_channel.shape[1]


def _follow_attention(index, softmax):
    """Tensors derived from the softmax output by layout ops only, and the multiplies that apply them."""
    attention, multiplies, other = {softmax.output[0]}, [], set()
    frontier = [softmax.output[0]]
    while frontier:
        name = frontier.pop()
        if name in index.outputs:
            other.add("a graph output")
        for node in index.consumers.get(name, []):
            if node.op_type == "Mul":
                if all(node is not seen for seen in multiplies):
                    multiplies.append(node)
            elif node.op_type in LAYOUT_OPS and node.input[0] == name and name not in node.input[1:]:
                produced = [out for out in node.output if out and out not in attention]
                attention.update(produced)
                frontier += produced
            elif node.op_type not in SHAPE_READERS:
                other.add(node.op_type)
    if not multiplies:
        raise NotSelect()
    if other:
        raise NearMiss(f"the softmax output also feeds {', '.join(sorted(other))}")
    return attention, multiplies


def _sum_root(index, multiplies) -> str:
    """The output of the Add/Sum tree whose leaves are exactly the products."""
    leaves = sorted(m.output[0] for m in multiplies)

    def leaves_under(node):
        found = []
        for name in node.input:
            producer = index.producer.get(name)
            if name in leaves:
                found.append(name)
            elif producer is not None and producer.op_type in SUM_OPS:
                found += leaves_under(producer)
            else:
                raise NearMiss("the weighted branches are summed together with other terms")
        return found

    node = index.only_reader(multiplies[0].output[0])
    while node is not None and node.op_type in SUM_OPS:
        found = sorted(leaves_under(node))
        if found == leaves:
            return node.output[0]
        if len(set(found)) != len(found) or not set(found) <= set(leaves):
            break
        node = index.only_reader(node.output[0])
    raise NearMiss("the weighted branches are not summed into one tensor")


def _terms(index, types, multiplies, attention):
    """[(branch U, attention tensor, stack axis or None)], the output V, and the form."""
    def sides(mul):
        first, second = mul.input
        if (first in attention) == (second in attention):
            raise NearMiss("a multiply takes the attention on both sides or neither")
        return (second, first) if first in attention else (first, second)

    if len(multiplies) == 1:
        data, weights = sides(multiplies[0])
        stack = stacked_tensors(index, types, data)
        if stack is None:
            raise NearMiss("a single weighted branch is not a select")
        branches, axis = stack
        reducer = index.only_reader(multiplies[0].output[0])
        axes, keepdims = (reduce_axes(index, reducer, len(types[data].shape))
                          if reducer is not None and reducer.op_type == "ReduceSum" else (None, 1))
        if axes != [axis] or keepdims:
            raise NearMiss("the weighted stack of branches is not summed over its stacking axis")
        return [(branch, weights, axis) for branch in branches], reducer.output[0], "stacked"
    pairs = [sides(mul) for mul in multiplies]
    return [(data, weights, None) for data, weights in pairs], _sum_root(index, multiplies), "sum of products"


def _logits_conv(index, softmax):
    """The 1x1 Conv whose output reaches the softmax through layout ops, and that output."""
    name = softmax.input[0]
    while True:
        producer = index.producer.get(name)
        if producer is None:
            raise NearMiss("the softmax input is not computed by a convolution")
        if producer.op_type not in LAYOUT_OPS:
            break
        name = producer.input[0]
    if producer.op_type != "Conv":
        raise NearMiss(f"the logits come from {producer.op_type}, not a 1x1 convolution")
    weight = index.constant(producer.input[1])
    has_bias = len(producer.input) > 2 and producer.input[2]
    if weight is None or (has_bias and index.constant(producer.input[2]) is None):
        raise NearMiss("the logits convolution has computed weights")
    pads = attribute(producer, "pads", [0])
    if weight.ndim != 4 or weight.shape[2:] != (1, 1) or attribute(producer, "group", 1) != 1 or any(pads):
        raise NearMiss("the logits convolution is not 1x1, ungrouped and unpadded")
    return producer, name


def _check_layout_only(region, source) -> None:
    """Values from `source` may only move (layout ops, as their data input); other inputs only give shapes."""
    derived = {source}
    for node in region.nodes:
        hits = [i for i, name in enumerate(node.input) if name in derived]
        if not hits or node.op_type in SHAPE_READERS:
            continue
        if node.op_type not in LAYOUT_OPS or hits != [0]:
            raise NearMiss(f"{node.op_type} changes attention values between the logits and the multiplies")
        derived.update(node.output)
    for name in region.inputs:
        readers = [node for node in region.nodes if name in node.input]
        if name != source and any(node.op_type not in SHAPE_READERS for node in readers):
            raise NearMiss(f"the attention depends on the values of {name}")


def _propagate(index, types, source, labels, targets):
    """Run the layout ops between `source` and `targets` on `labels`; {target: labelled array}."""
    moved = [t for t in dict.fromkeys(targets) if t != source]
    result = {source: labels}
    if moved:
        region = region_between(index, moved, boundary=[source])
        _check_layout_only(region, source)
        feed = {name: np.zeros(types[name].shape, types[name].dtype) for name in region.inputs
                if name != source and name in types and types[name].shape is not None}
        feed[source] = labels
        if set(feed) != set(region.inputs):
            raise NearMiss("a shape in the select is unknown")
        try:
            result.update(run_regions(index, [region], [feed], types)[0])
        except Exception as exc:  # onnxruntime's errors share no base class beyond Exception
            raise NearMiss(f"its layout ops cannot be traced: {str(exc).splitlines()[0][:200]}") from None
    return result


def _label_maps(index, types, softmax, logits, terms):
    """For each term: its softmax slot, and per channel the softmax group and the logit channel."""
    logits_type = types.get(logits)
    if logits_type is None or logits_type.shape is None or len(logits_type.shape) != 4 \
            or logits_type.shape[2:] != (1, 1) or logits_type.dtype not in LABEL_DTYPES:
        raise NearMiss("the logits are not a float32/float64 (N, M*C, 1, 1) tensor")
    batch, channels = logits_type.shape[:2]
    x, y = softmax.input[0], softmax.output[0]
    logit_labels = np.arange(batch * channels, dtype=logits_type.dtype).reshape(logits_type.shape)
    x_labels = _propagate(index, types, logits, logit_labels, [x])[x]
    if x_labels.ndim < 2 or x_labels.shape[0] != batch:
        raise NearMiss("the logits reshape does not keep the batch axis first")
    per_sample = x_labels.reshape(batch, -1).astype(np.int64) - channels * np.arange(batch)[:, None]
    if per_sample.min() < 0 or per_sample.max() >= channels or (per_sample != per_sample[0]).any():
        raise NearMiss("the logits reshape mixes samples")
    logit_of_position = per_sample[0]
    positions = logit_of_position.size
    axis = softmax_axis(index, softmax, x_labels.ndim)
    if axis == 0:
        raise NearMiss("the softmax runs over the batch axis")
    group_of, slot_of, slots = softmax_groups(x_labels.shape[1:], axis, index.opset)
    y_labels = np.arange(batch * positions, dtype=logits_type.dtype).reshape(x_labels.shape)
    moved = _propagate(index, types, y, y_labels, [weights for _, weights, _ in terms])
    found = []
    for i, (branch, weights, stack_axis) in enumerate(terms):
        branch_shape = types[branch].shape if branch in types else None
        if branch_shape is None or len(branch_shape) != 4:
            raise NearMiss("the branches are not 4-D (N, C, H, W) tensors")
        labels = moved[weights]
        if stack_axis is not None:
            labels = labels.reshape((1,) * (5 - labels.ndim) + labels.shape)
            labels = labels.take(i if labels.shape[stack_axis] > 1 else 0, axis=stack_axis)
        labels = labels.reshape((1,) * (4 - labels.ndim) + labels.shape)
        if labels.ndim != 4 or labels.shape != (batch, branch_shape[1], 1, 1):
            raise NearMiss("the attention is not one weight per sample and channel")
        flat = labels.reshape(batch, -1).astype(np.int64)
        position = flat % positions
        if (flat // positions != np.arange(batch)[:, None]).any() or (position != position[0]).any():
            raise NearMiss("the attention mixes samples")
        position = position[0]
        slot = np.unique(slot_of[position])
        if slot.size != 1:
            raise NearMiss("a branch takes its weights from several softmax slots (softmax over the wrong axis)")
        found.append((int(slot[0]), branch, group_of[position], logit_of_position[position]))
    return _in_slot_order(found, slots)


def _in_slot_order(found, slots):
    """(branches, their logit channels) by softmax slot, from (slot, branch, softmax group per channel,
    logit channel per channel) per term: every slot taken once, each channel weighted from one group."""
    found = sorted(found, key=lambda item: item[0])
    if [slot for slot, *_ in found] != list(range(slots)) or slots < 2:
        raise NearMiss(f"{len(found)} branches do not take the {slots} softmax slots once each")
    groups = found[0][2]
    if any((group != groups).any() for _, _, group, _ in found) or np.unique(groups).size != groups.size:
        raise NearMiss("the branches weight a channel from different softmax groups")
    return [branch for _, branch, _, _ in found], np.stack([logit for *_, logit in found])


def match_select(index: GraphIndex, shapes: Shapes, softmax: NodeProto, fallback_name: str) -> Select:
    """The Select this Softmax belongs to; raises NotSelect or NearMiss."""
    attention, multiplies = _follow_attention(index, softmax)
    types = shapes.at(shapes.batches[0])
    terms, output, form = _terms(index, types, multiplies, attention)
    fc2, logits = _logits_conv(index, softmax)
    maps = [_label_maps(index, shapes.at(batch), softmax, logits, terms) for batch in dict.fromkeys(shapes.batches)]
    branches, logit_channel = maps[0]
    if any(b != branches or (c != logit_channel).any() for b, c in maps[1:]):
        raise NearMiss("the select is laid out differently at different batch sizes")
    block = (common_scope([fc2, softmax, index.producer[output]]) or module_of_weight(fc2.input[1])
             or fallback_name)
    dtype = index.constant(fc2.input[1]).dtype
    return Select(block, fc2, fc2.input[0], branches, logit_channel, output, form, dtype)


def _logits(f, select, weight, bias, base):
    """A 1x1 conv like fc2 with the given weights (computed in float64), applied to z."""
    inputs = [select.z, f.constant(f"{base}_weight", weight.astype(select.dtype))]
    if bias is not None:
        inputs.append(f.constant(f"{base}_bias", bias.astype(select.dtype)))
    attrs = {a.name: attribute(select.fc2, a.name) for a in select.fc2.attribute}
    return f.node("Conv", inputs, base, **attrs)


def two_branch_select(f: NodeFactory, select: Select, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """softmax(l_1, l_2)_1 = sigmoid(l_1 - l_2);  V = U_2 + a_1 * (U_1 - U_2)."""
    k1, k2 = select.logit_channel
    u1, u2 = select.branches
    gap = _logits(f, select, weight[k1] - weight[k2], None if bias is None else bias[k1] - bias[k2], "logit_gap")
    a1 = f.node("Sigmoid", [gap], "branch_weight")
    weighted_gap = f.node("Mul", [a1, f.node("Sub", [u1, u2], "branch_gap")], "weighted_gap")
    f.node("Add", [u2, weighted_gap], "select", output=select.output)


def many_branch_select(f: NodeFactory, select: Select, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Logits channel-major (conv channel c*M + m holds l_m[c]), viewed as (N, C, 1, M) with static
    dims, softmax over the last axis, V = sum_m U_m * a[..., m]."""
    M, C = select.M, select.C
    order = select.logit_channel.T.reshape(-1)
    logits = _logits(f, select, weight[order], None if bias is None else bias[order], "logits")
    by_channel = f.node("Reshape", [logits, f.constant("logits_shape", np.array([0, C, 1, M], np.int64))],
                        "logits_by_channel")
    a = f.node("Softmax", [by_channel], "branch_weights", axis=3)
    last_axis = f.constant("branch_axis", np.array([3], np.int64))
    weighted = []
    for m, branch in enumerate(select.branches):
        bounds = [f.constant(f"branch{m}_start", np.array([m], np.int64)),
                  f.constant(f"branch{m}_end", np.array([m + 1], np.int64))]
        a_m = f.node("Slice", [a, *bounds, last_axis], f"branch{m}_weight")
        weighted.append(f.node("Mul", [branch, a_m], f"weighted_branch{m}"))
    f.sum(weighted, "select", output=select.output)


def select_rewrite(index: GraphIndex, select: Select, taken: set) -> Rewrite:
    """The checked replacement of everything between (z, U_1..U_M) and V."""
    weight = index.constant(select.fc2.input[1]).astype(np.float64)
    has_bias = len(select.fc2.input) > 2 and select.fc2.input[2]
    bias = index.constant(select.fc2.input[2]).astype(np.float64) if has_bias else None
    f = NodeFactory(select.block, taken)
    build = two_branch_select if select.M == 2 else many_branch_select
    build(f, select, weight, bias)
    boundary = [select.z, *select.branches]
    old = region_between(index, [select.output], boundary=boundary)
    extra = [name for name in old.inputs if name not in boundary]
    if any(node.op_type not in SHAPE_READERS for name in extra for node in old.nodes if name in node.input):
        raise NearMiss("the select reads tensors other than z and the branches")
    new = Region(f.nodes, boundary, [select.output], f.initializers)
    return Rewrite(select.block, old, new, {"M": select.M, "C": select.C, "form": select.form,
                                             "rewritten_as": "sigmoid" if select.M == 2 else "softmax over axis 3"})


def plan_selects(index: GraphIndex, shapes: Shapes, taken: set) -> tuple:
    """([Rewrite] for every SK select found, [(name, reason)] for near misses)."""
    rewrites, near_misses = [], []
    if index.opset < MIN_OPSET:
        return rewrites, [("(model)", f"opset {index.opset} is below {MIN_OPSET}")]
    softmaxes = [node for node in index.graph.node if node.op_type == "Softmax"]
    for number, softmax in enumerate(softmaxes):
        try:
            select = match_select(index, shapes, softmax, f"sk_select_{number}")
            rewrites.append(select_rewrite(index, select, taken))
        except NotSelect:
            continue
        except NearMiss as reason:
            near_misses.append((common_scope([softmax]) or softmax.name or softmax.output[0], str(reason)))
    return rewrites, near_misses


def rewrite_sk_blocks(model: ModelProto, tolerance: float, sizes: dict | None = None) -> SkRewriteReport:
    """Rewrite every SK select of `model` (in place), then the stacked fuse sums and static Splits left
    around the blocks; returns the pass report. `sizes` as for fold_bn.fold_batchnorms."""
    index, shapes = GraphIndex(model), Shapes(model, sizes)
    selects, near_misses = plan_selects(index, shapes, index.names())
    applied, kept = apply_checked(model, index, shapes, selects, tolerance)
    index, shapes = GraphIndex(model), Shapes(model, sizes)
    taken, types = index.names(), shapes.at(shapes.batches[0])
    sums, splits = stacked_sums(index, types, taken), split_slices(index, types, taken)
    tidied, _ = apply_checked(model, index, shapes, sums + splits, tolerance)
    return SkRewriteReport(
        blocks_found=len(selects),
        rewritten=[dict(block=rewrite.label, **rewrite.details, max_rel=parity["max_rel"])
                   for rewrite, parity in applied],
        left=[{"block": name, "reason": reason} for name, reason in near_misses]
             + [{"block": rewrite.label, "reason": reason} for rewrite, reason in kept],
        stacked_sums_unrolled=sum(rewrite.details["kind"] == "stacked sum" for rewrite, _ in tidied),
        splits_to_slices=sum(rewrite.details["kind"] == "split" for rewrite, _ in tidied),
        max_rel=max((parity["max_rel"] for _, parity in applied + tidied), default=0.0),
    )
