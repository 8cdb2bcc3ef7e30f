"""Axis and size helpers of the graph passes, and the fuse-end tidy-up (stacked sums, Split to Slices).

Expected values are worked out from the ONNX operator definitions by hand; where onnxruntime is the
authority (how Softmax groups elements, how Split with num_outputs divides an axis) it is the oracle.
"""
import numpy as np
import onnxruntime
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from skdeploy.graph.ops import (
    normalized,
    reduce_axes,
    softmax_axis,
    softmax_groups,
    split_sizes,
    stacked_tensors,
    unsqueeze_axes,
)
from skdeploy.graph.rewrite import TOLERANCE
from skdeploy.graph.sk_fuse import split_slices
from skdeploy.graph.sk_select import rewrite_sk_blocks
from skdeploy.onnx.index import GraphIndex
from skdeploy.onnx.shapes import infer_types


def build_model(nodes, inputs, outputs, constants=None, opset=17):
    """Float32 `inputs` {name: shape}, outputs by name, int64 `constants` {name: values}."""
    graph = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(value, np.int64), name) for name, value in (constants or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def single_node(op_type, inputs, constants=None, opset=17, outputs=("y",), **attrs):
    """GraphIndex of one node reading x (and `constants`), and that node."""
    node = helper.make_node(op_type, inputs, list(outputs), **attrs)
    computed = [helper.make_node("Shape", ["x"], ["computed"])]
    model = build_model(computed + [node], {"x": [2, 3, 4]}, [o for o in outputs if o], constants, opset)
    return GraphIndex(model), node


def run(model, **feed):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.mark.parametrize("axes, rank, expected", [
    ([-1, 0], 4, [0, 3]),
    ([-4], 4, [0]),  # the most negative axis is the first
    ([0], 4, [0]),  # zero is not negative
    ([3, -2, 1], 4, [1, 2, 3]),
    ([], 3, []),
])
def test_normalized_counts_negative_axes_from_the_end(axes, rank, expected):
    assert normalized(axes, rank) == expected


@pytest.mark.parametrize("opset, constants, inputs, attrs, expected", [
    (11, {}, ["x"], {"axes": [-1, 0]}, [0, 3]),  # opset 11: attribute
    (13, {"axes": [1, -1]}, ["x", "axes"], {}, [1, 3]),  # opset 13: constant input
    (13, {}, ["x", "computed"], {}, None),  # computed axes cannot be read
], ids=["attribute", "input", "computed"])
def test_unsqueeze_axes(opset, constants, inputs, attrs, expected):
    index, node = single_node("Unsqueeze", inputs, constants, opset, **attrs)
    assert unsqueeze_axes(index, node, 4) == expected


@pytest.mark.parametrize("opset, constants, inputs, attrs, expected", [
    (13, {}, ["x"], {"axes": [-1]}, ([2], 1)),  # keepdims defaults to 1
    (18, {"axes": [2, 0]}, ["x", "axes"], {"keepdims": 0}, ([0, 2], 0)),
    (18, {}, ["x"], {}, ([0, 1, 2], 1)),  # no axes: all of them
    (18, {}, ["x", ""], {"keepdims": 0}, ([0, 1, 2], 0)),  # an empty optional input is no input
    (18, {}, ["x"], {"noop_with_empty_axes": 1}, ([], 1)),  # ... unless that is a no-op
    (18, {}, ["x", "computed"], {"keepdims": 0}, (None, 0)),
], ids=["attribute", "input", "all", "empty name", "no-op", "computed"])
def test_reduce_axes(opset, constants, inputs, attrs, expected):
    index, node = single_node("ReduceSum", inputs, constants, opset, **attrs)
    assert reduce_axes(index, node, 3) == expected


@pytest.mark.parametrize("opset, attrs, rank, expected", [
    (13, {}, 4, 3),  # opset 13 defaults to the last axis
    (12, {}, 4, 1),  # older opsets to axis 1
    (11, {"axis": -2}, 4, 2),
    (13, {"axis": 0}, 3, 0),
])
def test_softmax_axis(opset, attrs, rank, expected):
    index, node = single_node("Softmax", ["x"], opset=opset, **attrs)
    assert softmax_axis(index, node, rank) == expected


@pytest.mark.parametrize("shape, axis, opset, group, slot, size", [
    # per-sample (2, 3), positions (0,0) (0,1) (0,2) (1,0) (1,1) (1,2); axis counts the batch
    ((2, 3), 1, 13, [0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1], 2),  # along the size-2 axis, one group per column
    ((2, 3), 2, 13, [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2], 3),  # along the size-3 axis, one group per row
    ((2, 3), 1, 11, [0] * 6, list(range(6)), 6),  # opset 11 flattens axis 1 onwards: one group
    ((2, 3), 2, 11, [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2], 3),
    ((4,), 1, 13, [0, 0, 0, 0], [0, 1, 2, 3], 4),  # nothing besides the axis: one group
])
def test_softmax_groups_by_hand(shape, axis, opset, group, slot, size):
    got_group, got_slot, got_size = softmax_groups(shape, axis, opset)
    assert (got_group.tolist(), got_slot.tolist(), got_size) == (group, slot, size)
    assert got_group.dtype.kind == got_slot.dtype.kind == "i"  # they index arrays


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), data=st.data(), opset=st.sampled_from([11, 13]))
def test_softmax_groups_are_what_onnxruntime_normalises_together(shape, data, opset):
    axis = data.draw(st.integers(1, len(shape)))
    x = np.random.default_rng(len(shape) * 10 + axis).standard_normal([1, *shape]).astype(np.float32)
    model = build_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], {"x": [1, *shape]}, ["y"],
                        opset=opset)
    [softmax] = run(model, x=x)
    group, slot, size = softmax_groups(tuple(shape), axis, opset)
    flat_x, expected = x.ravel().astype(np.float64), np.zeros(x.size)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        # slots number a group's members 0..size-1 in the order they are laid out
        assert slot[members].tolist() == list(range(size))
        weights = np.exp(flat_x[members] - flat_x[members].max())
        expected[members] = weights / weights.sum()
    np.testing.assert_allclose(softmax.ravel(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("opset, constants, inputs, attrs, length, expected", [
    (13, {"sizes": [1, 3, 2]}, ["x", "sizes"], {}, 6, [1, 3, 2]),
    (11, {}, ["x"], {"split": [1, 2, 3]}, 6, [1, 2, 3]),
    (18, {}, ["x"], {"num_outputs": 3}, 10, [4, 4, 2]),  # ceil(10 / 3) = 4, the last part smaller
    (18, {}, ["x"], {"num_outputs": 3}, 9, [3, 3, 3]),
    (18, {}, ["x"], {"num_outputs": 3}, 7, [3, 3, 1]),
    (18, {}, ["x"], {"num_outputs": 3}, None, None),  # length unknown
    (13, {}, ["x", "computed"], {}, 6, None),
], ids=["input", "attribute", "10 in 3", "9 in 3", "7 in 3", "unknown length", "computed"])
def test_split_sizes(opset, constants, inputs, attrs, length, expected):
    index, node = single_node("Split", inputs, constants, opset, outputs=("a", "b", "c"), **attrs)
    assert split_sizes(index, node, length) == expected


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 12), count=st.integers(1, 5))
def test_split_sizes_with_num_outputs_match_onnxruntime(length, count):
    outputs = [f"part{i}" for i in range(count)]
    model = build_model([helper.make_node("Split", ["x"], outputs, axis=1, num_outputs=count)], {"x": [1, length]},
                        outputs, opset=18)
    try:
        parts = run(model, x=np.zeros((1, length), np.float32))
    except Exception:  # onnxruntime refuses splits that leave the last part negative; nothing to compare
        return
    assert split_sizes(GraphIndex(model), model.graph.node[0], length) == [part.shape[1] for part in parts]


def stack_model(unsqueeze_axis, concat_axis, opset=13):
    """Concat(Unsqueeze(a), Unsqueeze(b)) of two (1, 2, 3) tensors, axes given the opset's way."""
    constants = {"axes": [unsqueeze_axis]} if opset >= 13 else {}
    attrs = {} if opset >= 13 else {"axes": [unsqueeze_axis]}
    inputs = ["axes"] if opset >= 13 else []
    nodes = [helper.make_node("Unsqueeze", ["a", *inputs], ["a1"], **attrs),
             helper.make_node("Unsqueeze", ["b", *inputs], ["b1"], **attrs),
             helper.make_node("Concat", ["a1", "b1"], ["stack"], axis=concat_axis)]
    return build_model(nodes, {"a": [1, 2, 3], "b": [1, 2, 3]}, ["stack"], constants, opset)


@pytest.mark.parametrize("unsqueeze_axis, concat_axis, opset, expected", [
    (1, 1, 13, (["a", "b"], 1)),
    (-3, -3, 13, (["a", "b"], 1)),  # rank 4: -3 is axis 1 for both
    (3, -1, 11, (["a", "b"], 3)),
    (1, 2, 13, None),  # concatenated along another axis than the one inserted
], ids=["axis 1", "negative", "opset 11", "other axis"])
def test_stacked_tensors(unsqueeze_axis, concat_axis, opset, expected):
    model = stack_model(unsqueeze_axis, concat_axis, opset)
    assert stacked_tensors(GraphIndex(model), infer_types(model), "stack") == expected


@pytest.mark.parametrize("second_part", ["b2", "b1"], ids=["Identity", "graph input"])
def test_stacked_tensors_needs_an_unsqueeze_for_every_part(second_part):
    nodes = [helper.make_node("Unsqueeze", ["a", "axes"], ["a1"]), helper.make_node("Identity", ["b1"], ["b2"]),
             helper.make_node("Concat", ["a1", second_part], ["stack"], axis=0)]
    model = build_model(nodes, {"a": [2, 3], "b1": [1, 2, 3]}, ["stack"], {"axes": [0]})
    index, types = GraphIndex(model), infer_types(model)
    assert stacked_tensors(index, types, "stack") is None
    assert stacked_tensors(index, types, "a1") is None  # not a Concat


def test_stacked_tensors_of_unknown_shape_are_not_read():
    nodes = [helper.make_node("Unsqueeze", [name, "axes"], [f"{name}1"]) for name in "ab"]
    nodes.append(helper.make_node("Concat", ["a1", "b1"], ["stack"], axis=0))
    model = build_model(nodes, {"a": None, "b": None}, ["stack"], {"axes": [0]})
    types = infer_types(model)
    assert types["stack"].shape is None and stacked_tensors(GraphIndex(model), types, "stack") is None


def slice_bounds(model, nodes):
    """{output: [start, end, axis]} of Slice nodes whose bounds are constants of `model` or their own."""
    index = GraphIndex(model)
    return {node.output[0]: [index.constant(name).tolist() for name in node.input[1:]]
            for node in nodes if node.op_type == "Slice"}


def test_split_becomes_slices_at_running_offsets():
    # sizes 1, 3, 2 along axis -2 of (1, 6, 2): rows [0, 1), [1, 4), [4, 6); the data is computed (Relu)
    outputs = ["first", "middle", "last"]
    nodes = [helper.make_node("Relu", ["x"], ["data"]), helper.make_node("Split", ["data", "sizes"], outputs, axis=-2)]
    model = build_model(nodes, {"x": [1, 6, 2]}, outputs, {"sizes": [1, 3, 2]})
    assert rewrite_sk_blocks(model, TOLERANCE).splits_to_slices == 1
    assert slice_bounds(model, model.graph.node) == {"first": [[0], [1], [1]], "middle": [[1], [4], [1]],
                                                     "last": [[4], [6], [1]]}  # start, end, axis
    x = np.arange(12, dtype=np.float32).reshape(1, 6, 2)
    first, middle, last = run(model, x=x)
    assert (first.tolist(), middle.tolist(), last.tolist()) == ([[[0, 1]]], [[[2, 3], [4, 5], [6, 7]]],
                                                                [[[8, 9], [10, 11]]])


def test_split_output_left_unnamed_still_advances_the_offset():
    # onnxruntime crashes on such a Split, so only the planned Slices are read here, not run.
    model = build_model([helper.make_node("Split", ["x", "sizes"], ["first", "", "last"], axis=1)], {"x": [1, 6, 2]},
                        ["first", "last"], {"sizes": [1, 3, 2]})
    [rewrite] = split_slices(GraphIndex(model), infer_types(model), set())
    model.graph.initializer.extend(rewrite.new.initializers)
    assert slice_bounds(model, rewrite.new.nodes) == {"first": [[0], [1], [1]], "last": [[4], [6], [1]]}


def test_split_along_the_default_axis_after_one_it_cannot_change():
    # Two Splits are left alone: one of a tensor of unknown shape, one whose sizes are computed. The last has
    # no axis attribute: axis 0, sizes 2, 4.
    nodes = [helper.make_node("Split", ["free", "fixed_sizes"], ["free_top", "free_bottom"]),
             helper.make_node("Shape", ["x"], ["computed"]),
             helper.make_node("Slice", ["computed", "one", "two"], ["sizes"]),
             helper.make_node("Split", ["x", "sizes"], ["left_top", "left_bottom"]),
             helper.make_node("Split", ["x", "fixed_sizes"], ["top", "bottom"])]
    outputs = ["free_top", "free_bottom", "left_top", "left_bottom", "top", "bottom"]
    model = build_model(nodes, {"x": [6, 2], "free": None}, outputs, {"one": [0], "two": [2], "fixed_sizes": [2, 4]})
    assert rewrite_sk_blocks(model, TOLERANCE).splits_to_slices == 1
    assert [node.op_type for node in model.graph.node].count("Split") == 2
    bounds = slice_bounds(model, model.graph.node)
    assert (bounds["top"], bounds["bottom"]) == ([[0], [2], [0]], [[2], [6], [0]])


def test_split_into_equal_parts_becomes_slices():
    outputs = ["p0", "p1", "p2"]
    model = build_model([helper.make_node("Split", ["x"], outputs, axis=1, num_outputs=3)], {"x": [1, 10]}, outputs,
                        opset=18)
    assert rewrite_sk_blocks(model, TOLERANCE).splits_to_slices == 1
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    assert [part.ravel().tolist() for part in run(model, x=x)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def stacked_sum_model(count, reduce_axis=0, keepdims=0):
    """ReduceSum(stack(Relu(t0), ..., axis 0), reduce_axis): the stacked tensors are computed, not inputs."""
    names = [f"t{i}" for i in range(count)]
    nodes = [helper.make_node("Relu", [name], [f"{name}_relu"]) for name in names]
    nodes += [helper.make_node("Unsqueeze", [f"{name}_relu", "stack_axis"], [f"{name}_stacked"]) for name in names]
    nodes += [helper.make_node("Concat", [f"{name}_stacked" for name in names], ["stack"], axis=0),
              helper.make_node("ReduceSum", ["stack", "sum_axis"], ["y"], keepdims=keepdims)]
    return build_model(nodes, {name: [1, 2] for name in names}, ["y"], {"stack_axis": [0], "sum_axis": [reduce_axis]})


@pytest.mark.parametrize("count, expected", [(2, [[11, 22]]), (3, [[111, 222]])])
def test_stacked_sum_becomes_a_chain_of_adds(count, expected):
    model = stacked_sum_model(count)
    report = rewrite_sk_blocks(model, TOLERANCE)
    assert report.stacked_sums_unrolled == 1
    assert [node.op_type for node in model.graph.node] == ["Relu"] * count + ["Add"] * (count - 1)
    terms = {f"t{i}": np.array([[1, 2]], np.float32) * 10 ** i for i in range(count)}
    np.testing.assert_array_equal(run(model, **terms)[0], expected)


@pytest.mark.parametrize("count, reduce_axis, keepdims", [(3, 1, 0), (3, 0, 1), (1, 0, 0)],
                         ids=["summed over another axis", "keeps the stacking axis", "one tensor"])
def test_stacked_sum_left_when_it_is_not_a_plain_sum(count, reduce_axis, keepdims):
    model = stacked_sum_model(count, reduce_axis, keepdims)
    assert rewrite_sk_blocks(model, TOLERANCE).stacked_sums_unrolled == 0
    assert "ReduceSum" in [node.op_type for node in model.graph.node]


def test_stacked_sum_unrolled_after_reduce_sums_that_are_not_one():
    # Before the stacked sum: a ReduceSum of a plain input, and one of a stack over all its axes.
    nodes = [helper.make_node("ReduceSum", ["plain"], ["plain_total"], keepdims=0),
             helper.make_node("Unsqueeze", ["t0", "stack_axis"], ["t0_stacked"]),
             helper.make_node("Unsqueeze", ["t1", "stack_axis"], ["t1_stacked"]),
             helper.make_node("Concat", ["t0_stacked", "t1_stacked"], ["stack"], axis=0),
             helper.make_node("ReduceSum", ["stack"], ["grand_total"], keepdims=0),
             helper.make_node("ReduceSum", ["stack", "stack_axis"], ["y"], keepdims=0)]
    model = build_model(nodes, {"plain": [2], "t0": [1, 2], "t1": [1, 2]}, ["plain_total", "grand_total", "y"],
                        {"stack_axis": [0]})
    assert rewrite_sk_blocks(model, TOLERANCE).stacked_sums_unrolled == 1
    assert [node.output[0] for node in model.graph.node if node.op_type == "ReduceSum"] == ["plain_total",
                                                                                           "grand_total"]
