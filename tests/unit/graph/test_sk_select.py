"""The SK select algebra: V = sum_m softmax_m(l) * U_m, l_m = W_m z + b_m.

M = 2 is rewritten as a = sigmoid(l_1 - l_2) with one conv of weights W_1 - W_2 and V = U_2 + a (U_1 - U_2);
M > 2 as a channel-major softmax over axis 3. The node builders are run on their own (no parity check can
hide a wrong formula there) and the whole pass on tiny onnx.helper selects in the layouts exporters write.
The reference everywhere is a numerically stable softmax written here in float64.
"""
import math

import numpy as np
import onnxruntime
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from skdeploy.graph.rewrite import TOLERANCE
from skdeploy.graph.sk_select import Select, SkRewriteReport, many_branch_select, rewrite_sk_blocks, two_branch_select
from skdeploy.onnx.build import NodeFactory

BRANCH_MAJOR = "branch-major"  # the reference and SKConv: logits viewed (N, M, C), channel m*C + c; the batch
# size of that view read by Shape -> Gather -> Concat, as TorchScript exports it
CHANNEL_MAJOR = "channel-major"  # a user module: logits viewed (N, C, M), channel c*M + m
STACKED = "stacked"  # timm: (N, M, C, 1, 1) softmax times the 5-D stack of branches, ReduceSum
FLAT = "flat"  # one channel (C = 1): logits viewed (N, M), a 2-D softmax


def softmax_select(logits, branches):
    """sum_m softmax over m of logits (N, M, C) times branches (M, N, C, H, W), stable in float64."""
    logits = np.asarray(logits, np.float64)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return sum(weights[:, m, :, None, None] * np.asarray(branch, np.float64) for m, branch in enumerate(branches))


def run(model, feed):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {name: np.asarray(value, np.float32) for name, value in feed.items()})[0]


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def to_model(nodes, inputs, initializers, opset=17, outputs=("v",)):
    graph = helper.make_graph(nodes, "select", inputs, [float_input(name, None) for name in outputs], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def built_select(build, weight, bias, logit_channel, branch_shape):
    """The nodes `build` makes for fc2 = (weight (M*C, Cz), bias), as a model of z, u0..u{M-1} -> v."""
    weight = np.asarray(weight, np.float64)
    logit_channel = np.asarray(logit_channel)
    fc2 = helper.make_node("Conv", ["z", "fc2_weight"], ["logits"], kernel_shape=[1, 1])
    branches = [f"u{m}" for m in range(len(logit_channel))]
    select = Select("sk", fc2, "z", branches, logit_channel, "v", "sum of products", np.dtype(np.float32))
    f = NodeFactory("sk", {"z", "v", *branches})
    build(f, select, weight.reshape(weight.shape + (1, 1)), None if bias is None else np.asarray(bias, np.float64))
    inputs = [float_input("z", [None, weight.shape[1], 1, 1])]
    inputs += [float_input(name, [None, *branch_shape]) for name in branches]
    return to_model(f.nodes, inputs, f.initializers), {init.name: numpy_helper.to_array(init)
                                                       for init in f.initializers}


def select_feed(z, branches):
    return {"z": np.reshape(z, np.shape(z) + (1, 1)), **{f"u{m}": u for m, u in enumerate(branches)}}


def test_two_branch_weights_by_hand_equal_logits_give_one_half():
    # channel 0: l = (ln 3, 0) -> a = sigmoid(ln 3) = 3/4; channel 1: l = (0.7, 0.7) -> a = 1/2
    bias = [math.log(3), 0.7, 0.0, 0.7]  # branch-major: fc2 channel m*C + c
    model, constants = built_select(two_branch_select, np.zeros((4, 1)), bias, [[0, 1], [2, 3]], (2, 1, 1))
    u1, u2 = [[[[4.0]], [[10.0]]]], [[[[8.0]], [[2.0]]]]
    v = run(model, select_feed([[0.0]], [u1, u2]))
    # V = U_2 + a (U_1 - U_2): [8 + 3/4 * (4 - 8), 2 + 1/2 * (10 - 2)]
    np.testing.assert_allclose(v.ravel(), [5.0, 6.0], rtol=1e-6)
    np.testing.assert_allclose(constants["sk/logit_gap_bias"], [math.log(3), 0.0], rtol=1e-7)


def test_two_branch_gap_conv_is_w1_minus_w2():
    # channel-major fc2: l_1[c] is channel 2c, l_2[c] channel 2c + 1.
    weight = [[1.0, 2.0], [3.0, 5.0], [7.0, 11.0], [13.0, 17.0]]
    bias = [0.5, 0.25, 1.0, 3.0]
    model, constants = built_select(two_branch_select, weight, bias, [[0, 2], [1, 3]], (2, 1, 1))
    gap_weight = constants["sk/logit_gap_weight"]
    assert gap_weight.shape == (2, 2, 1, 1) and gap_weight.dtype == np.float32
    np.testing.assert_array_equal(gap_weight.reshape(2, 2), [[1 - 3, 2 - 5], [7 - 13, 11 - 17]])
    np.testing.assert_array_equal(constants["sk/logit_gap_bias"], [0.5 - 0.25, 1.0 - 3.0])
    # z = (1, -1): channel 0 gap = (-2 + 3) + 0.25 = 1.25; channel 1 gap = (-6 + 6) - 2 = -2
    u1, u2 = [[[[1.0]], [[1.0]]]], [[[[0.0]], [[0.0]]]]
    v = run(model, select_feed([[1.0, -1.0]], [u1, u2]))
    np.testing.assert_allclose(v.ravel(), [1 / (1 + math.exp(-1.25)), 1 / (1 + math.exp(2.0))], rtol=1e-6)


def test_two_branch_without_bias_uses_the_weights_alone():
    # z = (2, 1): l_1 = (1, 2) . z = 4, l_2 = (2, 1) . z = 5, a = sigmoid(-1) = 1 / (1 + e); V = 8 + a (4 - 8)
    model, constants = built_select(two_branch_select, [[1.0, 2.0], [2.0, 1.0]], None, [[0], [1]], (1, 1, 1))
    assert sorted(constants) == ["sk/logit_gap_weight"]
    np.testing.assert_array_equal(constants["sk/logit_gap_weight"].ravel(), [-1.0, 1.0])
    v = run(model, select_feed([[2.0, 1.0]], [[[[[4.0]]]], [[[[8.0]]]]]))
    np.testing.assert_allclose(v.ravel(), [8 - 4 / (1 + math.e)], rtol=1e-6)


@pytest.mark.parametrize("gap, chosen", [(1000.0, 0), (-1000.0, 1), (89.0, 0), (-89.0, 1)])
def test_two_branch_huge_logit_gap_selects_one_branch_exactly(gap, chosen):
    # exp(89) overflows float32: a naive exp(l_1) / (exp(l_1) + exp(l_2)) would give inf / inf here.
    model, _ = built_select(two_branch_select, np.zeros((2, 1)), [gap, 0.0], [[0], [1]], (1, 2, 2))
    branches = [np.full((1, 1, 2, 2), 3.0), np.full((1, 1, 2, 2), -5.0)]
    v = run(model, select_feed([[0.0]], branches))
    np.testing.assert_array_equal(v, branches[chosen])


def test_many_branch_softmax_by_hand():
    # M = 3, C = 2, branch-major fc2. Channel 0: l = (0, ln 2, ln 5) -> a = (1, 2, 5) / 8;
    # channel 1: l = (ln 3, 0, 0) -> a = (3, 1, 1) / 5.
    bias = [0.0, math.log(3), math.log(2), 0.0, math.log(5), 0.0]
    model, constants = built_select(many_branch_select, np.zeros((6, 1)), bias, [[0, 1], [2, 3], [4, 5]], (2, 1, 1))
    # conv channel c*M + m holds l_m[c]: order (l_0[0], l_1[0], l_2[0], l_0[1], l_1[1], l_2[1])
    np.testing.assert_allclose(constants["sk/logits_bias"], [0.0, math.log(2), math.log(5), math.log(3), 0.0, 0.0],
                               rtol=1e-7)
    np.testing.assert_array_equal(constants["sk/logits_shape"], [0, 2, 1, 3])
    assert [node.op_type for node in model.graph.node if node.op_type == "Softmax"] == ["Softmax"]
    assert helper.get_attribute_value(next(n for n in model.graph.node if n.op_type == "Softmax").attribute[0]) == 3
    branches = [[[[[8.0]], [[5.0]]]], [[[[16.0]], [[10.0]]]], [[[[24.0]], [[15.0]]]]]
    v = run(model, select_feed([[0.0]], branches))
    # (8 * 1 + 16 * 2 + 24 * 5) / 8 = 20; (5 * 3 + 10 + 15) / 5 = 8
    np.testing.assert_allclose(v.ravel(), [20.0, 8.0], rtol=1e-6)


def test_many_branch_reorders_weight_rows_channel_major():
    # branch-major rows (m*C + c) become channel-major (c*M + m): rows 0, 2, 4, 1, 3, 5.
    weight = np.arange(12.0).reshape(6, 2)
    _, constants = built_select(many_branch_select, weight, None, [[0, 1], [2, 3], [4, 5]], (2, 1, 1))
    np.testing.assert_array_equal(constants["sk/logits_weight"].reshape(6, 2), weight[[0, 2, 4, 1, 3, 5]])
    _, constants = built_select(many_branch_select, weight, None, [[0, 3], [1, 4], [2, 5]], (2, 1, 1))
    np.testing.assert_array_equal(constants["sk/logits_weight"].reshape(6, 2), weight)


def test_many_branch_huge_logits_select_one_branch_exactly():
    model, _ = built_select(many_branch_select, np.zeros((3, 1)), [-1000.0, 1000.0, 0.0], [[0], [1], [2]], (1, 1, 2))
    branches = [np.full((1, 1, 1, 2), 1.0), np.full((1, 1, 1, 2), 7.0), np.full((1, 1, 1, 2), -2.0)]
    np.testing.assert_array_equal(run(model, select_feed([[0.0]], branches)), branches[1])


logit_values = st.one_of(st.floats(-1000, 1000, allow_nan=False), st.floats(-20, 20, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), branches=st.integers(2, 4), channels=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_builders_equal_the_softmax_weighted_sum(data, branches, channels, seed):
    """Any assignment of fc2 channels to (branch, channel), logits up to +-1000 (a naive softmax overflows)."""
    rng = np.random.default_rng(seed)
    count = branches * channels
    logit_channel = np.array(data.draw(st.permutations(range(count)))).reshape(branches, channels)
    bias = np.float32(data.draw(st.lists(logit_values, min_size=count, max_size=count))).astype(np.float64)
    weight = np.float32(rng.uniform(-1, 1, (count, 2))).astype(np.float64)
    build = two_branch_select if branches == 2 else many_branch_select
    model, _ = built_select(build, weight, bias, logit_channel, (channels, 2, 3))
    z = rng.standard_normal((2, 2)).astype(np.float32)
    units = [rng.standard_normal((2, channels, 2, 3)).astype(np.float32) for _ in range(branches)]
    logits = z.astype(np.float64) @ weight.T + bias
    # float32 logits near 1000 are rounded by up to 3e-5, which moves each softmax weight by about 6e-5
    np.testing.assert_allclose(run(model, select_feed(z, units)), softmax_select(logits[:, logit_channel], units),
                               rtol=0, atol=5e-4)


BRANCH_NAMES = ["branch_d", "branch_c", "branch_b", "branch_a"]  # against the alphabet: only slot order fits


def exported_select(weight, bias, branches, layout, softmax_axis=None, opset=17, **fc2_attrs):
    """x -> Relu -> z -> fc2 (conv "sk.fc2" of `weight` (M*C, Cz) or 4-D, M*C logits) -> softmax over the
    branches as `layout` writes it -> V. A classifier softmax of x comes first: it is no select."""
    weight = np.asarray(weight, np.float32)
    weight = weight.reshape(weight.shape + (1, 1)) if weight.ndim == 2 else weight
    channels = len(weight) // branches
    units = BRANCH_NAMES[:branches]
    constants = {"sk.fc2.weight": weight}
    fc2_inputs = ["z", "sk.fc2.weight"]
    if bias is not None:
        constants["sk.fc2.bias"] = bias
        fc2_inputs.append("sk.fc2.bias")
    nodes = [helper.make_node("Softmax", ["x"], ["class_probs"], axis=1), helper.make_node("Relu", ["x"], ["z"]),
             helper.make_node("Conv", fc2_inputs, ["logits"], kernel_shape=list(weight.shape[2:]), **fc2_attrs)]
    if layout == STACKED:
        constants.update(grouped_shape=[-1, branches, channels, 1, 1], stack_axis=[1])
        nodes += [helper.make_node("Reshape", ["logits", "grouped_shape"], ["grouped"]),
                  helper.make_node("Softmax", ["grouped"], ["attention"], axis=softmax_axis or 1)]
        nodes += [helper.make_node("Unsqueeze", [unit, "stack_axis"], [f"{unit}_stacked"]) for unit in units]
        nodes += [helper.make_node("Concat", [f"{unit}_stacked" for unit in units], ["stack"], axis=1),
                  helper.make_node("Mul", ["attention", "stack"], ["weighted"]),
                  helper.make_node("ReduceSum", ["weighted", "stack_axis"], ["v"], keepdims=0)]
    else:
        constants["branch_shape"] = [-1, channels, 1, 1]
        constants.update({f"index{m}": np.array(m) for m in range(branches)})
        if layout == BRANCH_MAJOR:
            constants.update(first=[0], group_dims=[branches, channels, 1])
            nodes += [helper.make_node("Shape", ["x"], ["x_shape"]),
                      helper.make_node("Gather", ["x_shape", "first"], ["batch"], axis=0),
                      helper.make_node("Concat", ["batch", "group_dims"], ["grouped_shape"], axis=0)]
            axis = 1
            slices = [helper.make_node("Split", ["attention"], [f"a{m}" for m in range(branches)], axis=1)]
        else:  # CHANNEL_MAJOR gathers slot m from the last axis of (N, C, M), FLAT (C = 1) from (N, M)
            constants["grouped_shape"] = [-1, channels, branches] if layout == CHANNEL_MAJOR else [-1, branches]
            axis = -1 if layout == CHANNEL_MAJOR else 1
            last = len(constants["grouped_shape"]) - 1
            slices = [helper.make_node("Gather", ["attention", f"index{m}"], [f"a{m}"], axis=last)
                      for m in range(branches)]
        nodes += [helper.make_node("Reshape", ["logits", "grouped_shape"], ["grouped"]),
                  helper.make_node("Softmax", ["grouped"], ["attention"], axis=softmax_axis or axis)]
        nodes += slices
        for m, unit in enumerate(units):  # the attention on either side of the multiply
            operands = [unit, f"w{m}"] if m % 2 == 0 else [f"w{m}", unit]
            nodes += [helper.make_node("Reshape", [f"a{m}", "branch_shape"], [f"w{m}"]),
                      helper.make_node("Mul", operands, [f"p{m}"])]
        total = "p0"
        for m in range(1, branches):  # the partial sum on either side of the Add
            operands = [total, f"p{m}"] if m % 2 == 1 else [f"p{m}", total]
            nodes.append(helper.make_node("Add", operands, ["v" if m == branches - 1 else f"s{m}"]))
            total = f"s{m}"
    initializers = [numpy_helper.from_array(np.asarray(value, np.float32 if "fc2" in name else np.int64), name)
                    for name, value in constants.items()]
    inputs = [float_input("x", ["N", weight.shape[1] * fc2_attrs.get("group", 1), 1, 1])]
    inputs += [float_input(unit, ["N", channels, 3, 2]) for unit in units]
    return to_model(nodes, inputs, initializers, opset, outputs=("v", "class_probs"))


def logit_channels(branches, channels, layout):
    """Which fc2 channel holds l_m[c] in each layout, as (M, C)."""
    grid = np.arange(branches * channels)
    return grid.reshape(channels, branches).T if layout == CHANNEL_MAJOR else grid.reshape(branches, channels)


def check_against_softmax(model, weight, bias, branches, layout):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, np.shape(weight)[1], 1, 1)).astype(np.float32)
    units = [rng.standard_normal((3, len(weight) // branches, 3, 2)).astype(np.float32) for _ in range(branches)]
    logits = np.maximum(x.reshape(3, -1), 0).astype(np.float64) @ np.float32(weight).T.astype(np.float64)
    if bias is not None:
        logits = logits + np.float32(bias)
    expected = softmax_select(logits[:, logit_channels(branches, len(weight) // branches, layout)], units)
    feed = {"x": x, **dict(zip(BRANCH_NAMES, units, strict=False))}
    np.testing.assert_allclose(run(model, feed), expected, rtol=1e-5, atol=1e-6)


def initializer(model, name):
    return next(numpy_helper.to_array(init) for init in model.graph.initializer if init.name == name)


def block_nodes(model):
    """{name: node} of the nodes the rewrite made for block "sk"."""
    return {node.name: node for node in model.graph.node if node.name.startswith("sk/")}


def rewritten(report):
    assert all(entry["max_rel"] <= 1e-6 for entry in report.rewritten)
    return [{key: entry[key] for key in ("block", "M", "C", "form", "rewritten_as")} for entry in report.rewritten]


TWO_BRANCH_WEIGHT = [[1.0, 2.0], [3.0, 5.0], [7.0, 11.0], [13.0, 17.0]]
TWO_BRANCH_BIAS = [0.5, 0.25, 1.0, 3.0]


@pytest.mark.parametrize("layout, gap_weight, gap_bias", [
    (BRANCH_MAJOR, [[1 - 7, 2 - 11], [3 - 13, 5 - 17]], [0.5 - 1.0, 0.25 - 3.0]),  # l_1 rows 0, 1; l_2 rows 2, 3
    (STACKED, [[1 - 7, 2 - 11], [3 - 13, 5 - 17]], [0.5 - 1.0, 0.25 - 3.0]),
    (CHANNEL_MAJOR, [[1 - 3, 2 - 5], [7 - 13, 11 - 17]], [0.5 - 0.25, 1.0 - 3.0]),  # l_1 rows 0, 2; l_2 rows 1, 3
])
def test_pass_rewrites_two_branches_as_sigmoid_of_w1_minus_w2(layout, gap_weight, gap_bias):
    model = exported_select(TWO_BRANCH_WEIGHT, TWO_BRANCH_BIAS, 2, layout)
    report = rewrite_sk_blocks(model, TOLERANCE)
    form = "stacked" if layout == STACKED else "sum of products"
    assert rewritten(report) == [{"block": "sk", "M": 2, "C": 2, "form": form, "rewritten_as": "sigmoid"}]
    assert (report.blocks_found, report.left) == (1, [])
    nodes = block_nodes(model)
    assert {name: node.op_type for name, node in nodes.items()} == {
        "sk/logit_gap": "Conv", "sk/branch_weight": "Sigmoid", "sk/branch_gap": "Sub", "sk/weighted_gap": "Mul",
        "sk/select": "Add"}
    assert sorted(node.op_type for node in model.graph.node if node.name not in nodes) == ["Relu", "Softmax"]
    gap_conv = nodes["sk/logit_gap"]
    assert {a.name: helper.get_attribute_value(a) for a in gap_conv.attribute} == {"kernel_shape": [1, 1]}
    np.testing.assert_array_equal(initializer(model, "sk/logit_gap_weight").reshape(2, 2), gap_weight)
    np.testing.assert_array_equal(initializer(model, "sk/logit_gap_bias"), gap_bias)
    check_against_softmax(model, TWO_BRANCH_WEIGHT, TWO_BRANCH_BIAS, 2, layout)


@pytest.mark.parametrize("layout, rows", [
    (BRANCH_MAJOR, [0, 2, 4, 1, 3, 5]), (STACKED, [0, 2, 4, 1, 3, 5]), (CHANNEL_MAJOR, [0, 1, 2, 3, 4, 5]),
])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no bias"])
def test_pass_rewrites_three_branches_as_channel_major_softmax(layout, rows, with_bias):
    rng = np.random.default_rng(5)
    weight = np.float32(rng.uniform(-2, 2, (6, 3)))
    bias = np.float32(rng.uniform(-1, 1, 6)) if with_bias else None
    model = exported_select(weight, bias, 3, layout)
    report = rewrite_sk_blocks(model, TOLERANCE)
    form = "stacked" if layout == STACKED else "sum of products"
    assert rewritten(report) == [{"block": "sk", "M": 3, "C": 2, "form": form, "rewritten_as": "softmax over axis 3"}]
    assert report.headline() == ("1 SK blocks found, 1 rewritten (M=3: 1); 0 stacked sums unrolled, 0 Splits made "
                                 f"Slices; worst block parity {report.max_rel:.2g}")
    assert sorted(block_nodes(model)) == [
        "sk/branch0_weight", "sk/branch1_weight", "sk/branch2_weight", "sk/branch_weights", "sk/logits",
        "sk/logits_by_channel", "sk/select", "sk/select_partial", "sk/weighted_branch0", "sk/weighted_branch1",
        "sk/weighted_branch2"]
    np.testing.assert_array_equal(initializer(model, "sk/logits_weight").reshape(6, 3), weight[rows])
    if with_bias:
        np.testing.assert_array_equal(initializer(model, "sk/logits_bias"), bias[rows])
    check_against_softmax(model, weight, bias, 3, layout)


@pytest.mark.parametrize("branches", [2, 3])
def test_pass_rewrites_a_one_channel_select_softmaxed_in_two_dimensions(branches):
    weight = np.arange(2.0 * branches).reshape(branches, 2) / 4
    model = exported_select(weight, None, branches, FLAT)
    report = rewrite_sk_blocks(model, TOLERANCE)
    assert [(entry["M"], entry["C"]) for entry in rewritten(report)] == [(branches, 1)]
    check_against_softmax(model, weight, None, branches, FLAT)


@pytest.mark.parametrize("opset, left", [(11, []), (10, [{"block": "(model)", "reason": "opset 10 is below 11"}])])
def test_pass_needs_opset_11(opset, left):
    model = exported_select(TWO_BRANCH_WEIGHT, TWO_BRANCH_BIAS, 2, CHANNEL_MAJOR, opset=opset)
    report = rewrite_sk_blocks(model, TOLERANCE)
    assert (len(report.rewritten), report.left) == (1 - len(left), left)


def test_pass_keeps_every_rewrite_that_fails_the_callers_tolerance():
    model = exported_select(TWO_BRANCH_WEIGHT, TWO_BRANCH_BIAS, 2, BRANCH_MAJOR)
    report = rewrite_sk_blocks(model, tolerance=-1.0)
    assert (report.rewritten, report.splits_to_slices, report.max_rel) == ([], 0, 0.0)
    [entry] = report.left
    assert entry["block"] == "sk" and entry["reason"].startswith("parity failed: max relative error ")


TWO_BRANCH_REASON = "a branch takes its weights from several softmax slots (softmax over the wrong axis)"
FC2_REASON = "the logits convolution is not 1x1, ungrouped and unpadded"


@pytest.mark.parametrize("layout, weight, settings, reason", [
    (BRANCH_MAJOR, TWO_BRANCH_WEIGHT, {"softmax_axis": 2}, TWO_BRANCH_REASON),
    (STACKED, TWO_BRANCH_WEIGHT, {"softmax_axis": 2}, TWO_BRANCH_REASON),
    (BRANCH_MAJOR, np.ones((4, 1, 1, 1)), {"group": 2}, FC2_REASON),
    (BRANCH_MAJOR, np.ones((4, 2, 3, 3)), {"pads": [1, 1, 1, 1]}, FC2_REASON),
    (CHANNEL_MAJOR, np.ones((4, 2, 1, 1)), {"pads": [0, 0, 1, 1]}, FC2_REASON),
], ids=["softmax over channels", "stacked softmax over channels", "grouped fc2", "3x3 fc2", "padded fc2"])
def test_pass_leaves_near_misses_with_the_reason(layout, weight, settings, reason):
    model = exported_select(weight, TWO_BRANCH_BIAS, 2, layout, **settings)
    softmax_before = [node for node in model.graph.node if node.output[0] == "attention"]
    report = rewrite_sk_blocks(model, TOLERANCE)
    assert report.headline().startswith("0 SK blocks found, 0 rewritten; 0 stacked sums unrolled, ")
    assert (report.rewritten, report.left, report.max_rel) == ([], [{"block": "attention", "reason": reason}],
                                                                         0.0)
    assert [node for node in model.graph.node if node.output[0] == "attention"] == softmax_before


def replace_node(model, output, *new_nodes):
    """The node writing `output` swapped for `new_nodes` (in its place, so the graph stays sorted)."""
    nodes = list(model.graph.node)
    at = next(i for i, node in enumerate(nodes) if output in node.output)
    del model.graph.node[:]
    model.graph.node.extend(nodes[:at] + list(new_nodes) + nodes[at + 1:])


def also_output(name):
    def edit(model):
        model.graph.output.append(float_input(name, None))
    return edit


def attention_also_into_relu(model):
    model.graph.node.append(helper.make_node("Relu", ["attention"], ["attention_relu"]))
    also_output("attention_relu")(model)


def extra_term_in_the_sum(model):
    """v = (p0 + extra) + p1: the products are summed together with a tensor that is no product."""
    model.graph.input.append(float_input("extra", ["N", 2, 3, 2]))
    replace_node(model, "v", helper.make_node("Add", ["p0", "extra"], ["with_extra"]),
                 helper.make_node("Add", ["with_extra", "p1"], ["v"]))


def products_concatenated(model):
    replace_node(model, "v", helper.make_node("Concat", ["p0", "p1"], ["v"], axis=1))


def attention_on_both_sides(model):
    replace_node(model, "p0", helper.make_node("Mul", ["w1", "w0"], ["p0"]))


def logits_from_relu(model):
    replace_node(model, "logits", helper.make_node("Relu", ["x"], ["logits"]))


def logits_from_graph_input(model):
    replace_node(model, "logits")
    model.graph.input.append(float_input("logits", ["N", 4, 1, 1]))


def fc2_bias_computed(model):
    model.graph.input.append(float_input("bias_in", [4]))
    fc2 = next(node for node in model.graph.node if node.output[0] == "logits")
    fc2.input[2] = "bias_in"


def fc2_weight_computed(model):
    model.graph.node.insert(0, helper.make_node("Identity", ["weight_in"], ["weight_copy"]))
    model.graph.input.append(float_input("weight_in", [4, 2, 1, 1]))
    fc2 = next(node for node in model.graph.node if node.output[0] == "logits")
    fc2.input[1] = "weight_copy"


@pytest.mark.parametrize("layout, edit, reason", [
    (BRANCH_MAJOR, also_output("attention"), "the softmax output also feeds a graph output"),
    (CHANNEL_MAJOR, attention_also_into_relu, "the softmax output also feeds Relu"),
    (BRANCH_MAJOR, lambda model: (attention_also_into_relu(model), also_output("attention")(model)),
     "the softmax output also feeds Relu, a graph output"),
    (BRANCH_MAJOR, extra_term_in_the_sum, "the weighted branches are summed together with other terms"),
    (CHANNEL_MAJOR, products_concatenated, "the weighted branches are not summed into one tensor"),
    (BRANCH_MAJOR, attention_on_both_sides, "a multiply takes the attention on both sides or neither"),
    (CHANNEL_MAJOR, logits_from_relu, "the logits come from Relu, not a 1x1 convolution"),
    (CHANNEL_MAJOR, logits_from_graph_input, "the softmax input is not computed by a convolution"),
    (CHANNEL_MAJOR, fc2_bias_computed, "the logits convolution has computed weights"),
    (BRANCH_MAJOR, fc2_weight_computed, "the logits convolution has computed weights"),
], ids=["attention is an output", "attention into Relu", "attention into Relu and out", "extra term",
        "products concatenated", "attention times attention", "logits of Relu", "logits are an input",
        "computed fc2 bias", "computed fc2 weight"])
def test_pass_leaves_edited_near_misses_with_the_reason(layout, edit, reason):
    model = exported_select(TWO_BRANCH_WEIGHT, TWO_BRANCH_BIAS, 2, layout)
    edit(model)
    softmax_before = [node for node in model.graph.node if node.output[0] == "attention"]
    report = rewrite_sk_blocks(model, TOLERANCE)
    assert (report.blocks_found, report.rewritten, report.left) == (0, [], [{"block": "attention", "reason": reason}])
    assert [node for node in model.graph.node if node.output[0] == "attention"] == softmax_before
    assert block_nodes(model) == {}


def test_headline_counts_rewrites_per_branch_count_in_order():
    report = SkRewriteReport(blocks_found=4, rewritten=[{"M": 3}, {"M": 2}, {"M": 3}], left=[{"block": "b"}],
                             stacked_sums_unrolled=1, splits_to_slices=2, max_rel=1.234e-7)
    assert report.headline() == ("4 SK blocks found, 3 rewritten (M=2: 1, M=3: 2); 1 stacked sums unrolled, "
                                 "2 Splits made Slices; worst block parity 1.2e-07")
