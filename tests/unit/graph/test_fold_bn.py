"""BatchNorm folding pinned to hand-computed numbers: y = gamma * (x - mean) / sqrt(var + eps) + beta.

Tiny onnx.helper graphs run through the real pass and through onnxruntime. Every fold is checked twice:
the pass must report it as applied (a wrong fold fails its own parity check and is left, so a test that
only compared outputs could not fail) and the folded constants or outputs must equal numbers worked out
by hand.
"""
import math

import numpy as np
import onnxruntime
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from skdeploy.graph.fold_bn import FoldReport, Unfoldable, bn_affine, fold_batchnorms
from skdeploy.graph.rewrite import TOLERANCE
from skdeploy.onnx.index import GraphIndex

# Per-channel BN statistics whose folded affine map is exact in binary: with eps = 0.25,
# sqrt(var + eps) = [1, 2], so s = gamma / [1, 2] = [2, 0.5] and t = beta - mean * s = [1 - 1, -1 - 1] = [0, -2].
EXACT_BN = {"gamma": [2.0, 1.0], "beta": [1.0, -1.0], "mean": [0.5, 2.0], "var": [0.75, 3.75]}
EXACT_EPS = 0.25


def build_model(nodes, inputs, constants, opset=17):
    """A float32 model: `inputs` {name: shape or None}, `constants` {name: values}; output is 'out'."""
    graph = helper.make_graph(
        nodes, "unit",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value, np.float32), name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def batchnorm(source, epsilon=None, outputs=("out",), **attrs):
    if epsilon is not None:
        attrs["epsilon"] = epsilon
    return helper.make_node("BatchNormalization", [source, "gamma", "beta", "mean", "var"], list(outputs),
                            name="bn", **attrs)


def run(model, **feed):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {name: np.asarray(value, np.float32) for name, value in feed.items()})[0]


def node_of(model, op_type):
    [node] = [node for node in model.graph.node if node.op_type == op_type]
    return node


def constant_input(model, node, position):
    return GraphIndex(model).constant(node.input[position])


def affine_of(stats, epsilon=None, opset=17, **attrs):
    model = build_model([batchnorm("x", epsilon, **attrs)], {"x": [1, len(stats["gamma"])]}, stats, opset)
    return bn_affine(GraphIndex(model), model.graph.node[0])


def test_bn_affine_by_hand_with_non_default_epsilon():
    # sqrt(var + 0.25) = [1, 0.5, 2]; s = [2, 0.5, -1] / that = [2, 1, -0.5];
    # t = beta - mean * s = [1 - 2, 0 + 2, 3 + 0.25] = [-1, 2, 3.25]
    stats = {"gamma": [2.0, 0.5, -1.0], "beta": [1.0, 0.0, 3.0], "mean": [1.0, -2.0, 0.5], "var": [0.75, 0.0, 3.75]}
    scale, shift = affine_of(stats, epsilon=0.25)
    assert scale.dtype == shift.dtype == np.float64
    np.testing.assert_array_equal(scale, [2.0, 1.0, -0.5])
    np.testing.assert_array_equal(shift, [-1.0, 2.0, 3.25])


@pytest.mark.parametrize("epsilon", [None, 1e-5], ids=["default epsilon", "explicit 1e-5"])
def test_bn_affine_epsilon_decides_tiny_variances(epsilon):
    # var = 0: s = 1 / sqrt(1e-5); var = 1e-5: s = 1 / sqrt(2e-5); var = 1: epsilon changes s by 5e-6 only.
    stats = {"gamma": [1.0, 1.0, 1.0], "beta": [0.5, 0.0, -1.0], "mean": [1.0, -1.0, 2.0], "var": [0.0, 1e-5, 1.0]}
    scale, shift = affine_of(stats, epsilon)
    expected = [math.sqrt(1e5), math.sqrt(5e4), 1 / math.sqrt(1.00001)]
    np.testing.assert_allclose(scale, expected, rtol=1e-7)
    np.testing.assert_allclose(shift, [0.5 - expected[0], expected[1], -1.0 - 2 * expected[2]], rtol=1e-7)


def test_bn_affine_seeded_statistics_match_the_textbook_formula():
    rng = np.random.default_rng(14)
    stats = {"gamma": rng.uniform(-2, 2, 6), "beta": rng.uniform(-1, 1, 6), "mean": rng.uniform(-1, 1, 6),
             "var": np.concatenate([[0.0, 1e-5], rng.uniform(0, 3, 4)])}
    x = rng.uniform(-3, 3, 6)
    scale, shift = affine_of(stats, epsilon=1e-3)
    as32 = {name: np.float32(values).astype(np.float64) for name, values in stats.items()}
    textbook = as32["gamma"] * (x - as32["mean"]) / np.sqrt(as32["var"] + np.float32(1e-3)) + as32["beta"]
    np.testing.assert_allclose(scale * x + shift, textbook, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attrs, outputs, opset", [
    ({"training_mode": 1}, ("out",), 15),
    ({}, ("out", "running_mean", "running_var"), 15),
    ({}, ("out", "running_mean"), 15),
    ({}, ("out", "", "", "saved_mean", ""), 9),
], ids=["training_mode=1", "running statistics written", "running mean written", "opset 9 saved mean"])
def test_bn_affine_refuses_training_mode(attrs, outputs, opset):
    with pytest.raises(Unfoldable, match="training-mode"):
        affine_of(EXACT_BN, EXACT_EPS, opset, outputs=outputs, **attrs)


def test_bn_affine_accepts_explicit_inference_mode_and_empty_optional_outputs():
    scale, shift = affine_of(EXACT_BN, EXACT_EPS, 15, outputs=("out", "", ""), training_mode=0)
    np.testing.assert_array_equal(scale, [2.0, 0.5])
    np.testing.assert_array_equal(shift, [0.0, -2.0])


def test_bn_affine_refuses_computed_statistics():
    stats = {name: value for name, value in EXACT_BN.items() if name != "var"}
    nodes = [helper.make_node("Abs", ["v"], ["var"]), batchnorm("x", EXACT_EPS)]
    model = build_model(nodes, {"x": [1, 2], "v": [2]}, stats)
    with pytest.raises(Unfoldable, match="computed, not constant"):
        bn_affine(GraphIndex(model), model.graph.node[1])


def conv_bn_model(with_bias):
    # W = [[1, 2], [3, -1]] (1x1), b = [0.5, -1], then EXACT_BN.
    constants = dict(EXACT_BN, w=np.array([[1.0, 2.0], [3.0, -1.0]]).reshape(2, 2, 1, 1))
    inputs = ["x", "w"]
    if with_bias:
        constants["b"] = [0.5, -1.0]
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["y"], name="conv"), batchnorm("y", EXACT_EPS)]
    return build_model(nodes, {"x": ["N", 2, 1, 1]}, constants)


@pytest.mark.parametrize("with_bias, folded_bias, expected", [
    (True, [1.0, -2.5], [7.0, -1.5]),  # b * s + t = [0.5 * 2 + 0, -1 * 0.5 - 2]; at x = [1, 1] the conv gives
    (False, [0.0, -2.0], [6.0, -1.0]),  # [3.5, 1] with bias, [3, 2] without: BN gives [7, -1.5] and [6, -1]
], ids=["with bias", "without bias"])
def test_conv_folds_to_hand_computed_weights_and_bias(with_bias, folded_bias, expected):
    model = conv_bn_model(with_bias)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.batchnorms, report.folded, report.scale_and_shift, report.left) == \
        (1, {"Conv": 1}, 0, [])
    assert report.max_rel <= 1e-6
    conv = node_of(model, "Conv")
    assert [node.op_type for node in model.graph.node] == ["Conv"] and conv.output[0] == "out"
    assert (conv.name, conv.input[1]) == ("conv", "conv/weight_bn_folded")  # named after the layer
    # each output channel's filter times s = [2, 0.5]
    np.testing.assert_array_equal(constant_input(model, conv, 1).reshape(2, 2), [[2.0, 4.0], [1.5, -0.5]])
    np.testing.assert_array_equal(constant_input(model, conv, 2), folded_bias)
    np.testing.assert_array_equal(run(model, x=np.ones((1, 2, 1, 1))).ravel(), expected)


def test_unnamed_conv_and_batchnorm_fold():
    # Node names are optional in ONNX; the parity check must still run a region of two unnamed nodes.
    constants = dict(EXACT_BN, w=np.array([[1.0, 2.0], [3.0, -1.0]]).reshape(2, 2, 1, 1))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]),
             helper.make_node("BatchNormalization", ["y", "gamma", "beta", "mean", "var"], ["out"], epsilon=EXACT_EPS)]
    model = build_model(nodes, {"x": [1, 2, 1, 1]}, constants)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.left) == ({"Conv": 1}, [])
    np.testing.assert_array_equal(run(model, x=np.ones((1, 2, 1, 1))).ravel(), [6.0, -1.0])


def gemm_bn_model(trans_b, beta, bias):
    """A = [1, 1] times B = [[1, 2], [3, 4]] (stored transposed when trans_b) plus beta * C, then EXACT_BN.
    Attributes at their defaults (transB 0, beta 1) are left out, as exporters do."""
    b_matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    constants = dict(EXACT_BN, B=b_matrix.T if trans_b else b_matrix)
    inputs = ["a", "B"]
    if bias is not None:
        constants["C"] = bias
        inputs.append("C")
    attrs = {name: value for name, value, default in (("transB", trans_b, 0), ("beta", beta, 1.0)) if value != default}
    nodes = [helper.make_node("Gemm", inputs, ["y"], name="gemm", **attrs), batchnorm("y", EXACT_EPS)]
    return build_model(nodes, {"a": [1, 2]}, constants)


@pytest.mark.parametrize("trans_b", [0, 1], ids=["B", "B transposed"])
@pytest.mark.parametrize("beta, bias, folded_bias, expected", [
    # A @ B = [4, 6]; + 2 * C = [6, 2]; BN: [(6 - 0.5) * 2 + 1, (2 - 2) * 0.5 - 1] = [12, -1].
    # C' = C * s + t / beta = [2, -1] + [0, -1]
    (2.0, [1.0, -2.0], [2.0, -2.0], [12.0, -1.0]),
    (2.0, [[1.0, -2.0]], [2.0, -2.0], [12.0, -1.0]),  # C as a (1, N) row: the same per-column bias
    # A @ B + 3 = [7, 9]; BN: [13 + 1, 3.5 - 1]; C' = 3 * s + t = [6, 1.5] + [0, -2]
    (1.0, [3.0], [6.0, -0.5], [14.0, 2.5]),
    # beta = 0 ignores C: BN([4, 6]) = [3.5 * 2 + 1, 4 * 0.5 - 1] = [8, 1]; C' = t with beta 1
    (0.0, [5.0, 5.0], [0.0, -2.0], [8.0, 1.0]),
    (1.0, None, [0.0, -2.0], [8.0, 1.0]),
], ids=["beta 2", "row C", "scalar C", "beta 0", "no C"])
def test_gemm_folds_columns_and_bias_by_hand(trans_b, beta, bias, folded_bias, expected):
    model = gemm_bn_model(trans_b, beta, bias)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.left) == ({"Gemm": 1}, [])
    gemm = node_of(model, "Gemm")
    folded = np.array([[2.0, 1.0], [6.0, 2.0]])  # column j of B times s_j = [2, 0.5]
    np.testing.assert_array_equal(constant_input(model, gemm, 1), folded.T if trans_b else folded)
    np.testing.assert_array_equal(constant_input(model, gemm, 2), folded_bias)
    assert {a.name: helper.get_attribute_value(a) for a in gemm.attribute}.get("beta", 1.0) == (beta or 1.0)
    np.testing.assert_array_equal(run(model, a=[[1.0, 1.0]]), [expected])


def test_gemm_with_per_row_bias_becomes_scale_and_shift():
    # C of shape (rows, 1) adds per row; the per-column shift t cannot go into it, so BN stays a Mul and Add.
    constants = dict(EXACT_BN, B=[[1.0, 2.0], [3.0, 4.0]], C=[[1.0], [-1.0]])
    nodes = [helper.make_node("Gemm", ["a", "B", "C"], ["y"]), batchnorm("y", EXACT_EPS)]
    model = build_model(nodes, {"a": [2, 2]}, constants)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.scale_and_shift, report.left) == ({}, 1, [])
    # rows of A @ B + C: [4 + 1, 6 + 1] and [1 - 1, 2 - 1]; BN: [(5 - 0.5) * 2 + 1, (7 - 2) * 0.5 - 1], ...
    np.testing.assert_array_equal(run(model, a=[[1.0, 1.0], [1.0, 0.0]]), [[10.0, 1.5], [0.0, -1.5]])


def test_grouped_conv_transpose_folds_per_output_channel():
    # group 2, 2 input channels per group, W (4 in, 2 out per group): output 2g + j = sum over the group's
    # inputs i of x_i * W[i, j]. eps 0.25 with var [0.75, 3.75, 0.75, 3.75] gives sqrt [1, 2, 1, 2];
    # s = [2, 1, -1, 4] / that = [2, 0.5, -1, 2]; t = [1, 1, 0, 0] - [0, 0, 1, 1] * s = [1, 1, 1, -2].
    stats = {"gamma": [2.0, 1.0, -1.0, 4.0], "beta": [1.0, 1.0, 0.0, 0.0], "mean": [0.0, 0.0, 1.0, 1.0],
             "var": [0.75, 3.75, 0.75, 3.75]}
    constants = dict(stats, w=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]).reshape(4, 2, 1, 1))
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2), batchnorm("y", EXACT_EPS)]
    model = build_model(nodes, {"x": [1, 4, 1, 1]}, constants)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.left) == ({"ConvTranspose": 1}, [])
    layer = node_of(model, "ConvTranspose")
    # rows 0, 1 (group 0) times s[0:2] = [2, 0.5]; rows 2, 3 (group 1) times s[2:4] = [-1, 2]
    np.testing.assert_array_equal(constant_input(model, layer, 1).reshape(4, 2),
                                  [[2.0, 1.0], [6.0, 2.0], [-5.0, 12.0], [-7.0, 16.0]])
    np.testing.assert_array_equal(constant_input(model, layer, 2), [1.0, 1.0, 1.0, -2.0])
    # x = [1, 1, 1, 1]: before BN [1 + 3, 2 + 4, 5 + 7, 6 + 8]; after [8 + 1, 3 + 1, -12 + 1, 28 - 2]
    np.testing.assert_array_equal(run(model, x=np.ones((1, 4, 1, 1))).ravel(), [9.0, 4.0, -11.0, 26.0])


def test_conv_transpose_with_bias_folds_it():
    # one input, three outputs (no group attribute): y_j = x * W[0, j] + b_j. With eps 0.25:
    # sqrt(var + eps) = [1, 2, 1]; s = [2, 1, -1] / that = [2, 0.5, -1]; t = [1, 1, 0] - [0, 0, 1] * s = [1, 1, 1].
    stats = {"gamma": [2.0, 1.0, -1.0], "beta": [1.0, 1.0, 0.0], "mean": [0.0, 0.0, 1.0], "var": [0.75, 3.75, 0.75]}
    constants = dict(stats, w=np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1), b=[1.0, -2.0, 0.5])
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"]), batchnorm("y", EXACT_EPS)]
    model = build_model(nodes, {"x": [1, 1, 1, 1]}, constants)
    assert fold_batchnorms(model, TOLERANCE).folded == {"ConvTranspose": 1}
    layer = node_of(model, "ConvTranspose")
    np.testing.assert_array_equal(constant_input(model, layer, 1).ravel(), [2.0, 1.0, -3.0])
    np.testing.assert_array_equal(constant_input(model, layer, 2), [1 * 2 + 1, -2 * 0.5 + 1, 0.5 * -1 + 1])
    # x = 2: before BN [3, 2, 6.5]; after [6 + 1, 1 + 1, -6.5 + 1]
    np.testing.assert_array_equal(run(model, x=[[[[2.0]]]]).ravel(), [7.0, 2.0, -5.5])


@pytest.mark.parametrize("shape", [[1, 2], [1, 2, 3], [1, 2, 2, 2]], ids=["rank 2", "rank 3", "rank 4"])
def test_batchnorm_after_a_non_layer_becomes_mul_and_add(shape):
    model = build_model([helper.make_node("Relu", ["x"], ["y"]), batchnorm("y", EXACT_EPS)], {"x": shape}, EXACT_BN)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.batchnorms, report.folded, report.scale_and_shift, report.left) == (1, {}, 1, [])
    assert [node.op_type for node in model.graph.node] == ["Relu", "Mul", "Add"]
    per_channel = (2,) + (1,) * (len(shape) - 2)
    scale = constant_input(model, node_of(model, "Mul"), 1)
    shift = constant_input(model, node_of(model, "Add"), 1)
    assert scale.shape == shift.shape == per_channel and scale.dtype == np.float32
    np.testing.assert_array_equal(scale.ravel(), [2.0, 0.5])
    np.testing.assert_array_equal(shift.ravel(), [0.0, -2.0])
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    channel_scale, channel_shift = np.reshape([2.0, 0.5], per_channel), np.reshape([0.0, -2.0], per_channel)
    np.testing.assert_array_equal(run(model, x=x), x * channel_scale + channel_shift)


def test_conv_whose_output_is_also_read_elsewhere_is_not_changed():
    constants = dict(EXACT_BN, w=np.array([[1.0, 2.0], [3.0, -1.0]]).reshape(2, 2, 1, 1))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), batchnorm("y", EXACT_EPS, outputs=("normed",)),
             helper.make_node("Add", ["normed", "y"], ["out"])]
    model = build_model(nodes, {"x": [1, 2, 1, 1]}, constants)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.scale_and_shift) == ({}, 1)
    np.testing.assert_array_equal(constant_input(model, node_of(model, "Conv"), 1).reshape(2, 2),
                                  [[1.0, 2.0], [3.0, -1.0]])
    # conv([1, 1]) = [3, 2]; BN = s * y + t = [3 * 2 + 0, 2 * 0.5 - 2] = [6, -1]; plus the conv output again
    np.testing.assert_array_equal(run(model, x=np.ones((1, 2, 1, 1))).ravel(), [9.0, 1.0])


@pytest.mark.parametrize("computed", ["w", "b"], ids=["computed weight", "computed bias"])
def test_conv_with_computed_weights_becomes_scale_and_shift(computed):
    constants = dict(EXACT_BN, w=np.ones((2, 2, 1, 1)), b=[0.0, 1.0])
    source = constants.pop(computed)
    constants["source"] = source
    nodes = [helper.make_node("Identity", ["source"], [computed]), helper.make_node("Conv", ["x", "w", "b"], ["y"]),
             batchnorm("y", EXACT_EPS)]
    model = build_model(nodes, {"x": [1, 2, 1, 1]}, constants)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.scale_and_shift, report.left) == ({}, 1, [])
    # conv([1, 1]) = [2, 3]; BN = s * y + t = [2 * 2 + 0, 3 * 0.5 - 2]
    np.testing.assert_array_equal(run(model, x=np.ones((1, 2, 1, 1))).ravel(), [4.0, -0.5])


def test_each_batchnorm_is_planned_whatever_came_before():
    # In graph order: a training-mode BN (left), a BN after a Conv (folded), a BN of unknown rank (left),
    # a BN after a Relu (scale and shift).
    stats = {f"{name}{n}": value for n in (1, 2, 3, 4) for name, value in EXACT_BN.items()}
    constants = dict(stats, w=np.array([[1.0, 2.0], [3.0, -1.0]]).reshape(2, 2, 1, 1))

    def numbered_bn(n, source, outputs, **attrs):
        return helper.make_node("BatchNormalization", [source] + [f"{name}{n}" for name in EXACT_BN], outputs,
                                name=f"bn{n}", epsilon=EXACT_EPS, **attrs)

    nodes = [numbered_bn(1, "x", ["trained", "running_mean", "running_var"], training_mode=1),
             helper.make_node("Conv", ["trained", "w"], ["y"], name="conv"), numbered_bn(2, "y", ["folded"]),
             numbered_bn(3, "free", ["unranked"]),
             helper.make_node("Relu", ["folded"], ["r"]), numbered_bn(4, "r", ["out"])]
    model = build_model(nodes, {"x": [1, 2, 1, 1], "free": None}, constants, opset=15)
    model.graph.output.append(helper.make_tensor_value_info("unranked", TensorProto.FLOAT, None))
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.batchnorms, report.folded, report.scale_and_shift) == (4, {"Conv": 1}, 1)
    assert report.headline() == "4 BatchNormalization: 1 folded (into Conv 1), 1 made scale-and-shift, 2 left"
    assert report.left == [
        {"node": "bn1", "reason": "training-mode BatchNormalization (it normalises with batch statistics)"},
        {"node": "bn3", "reason": "the rank of its input is unknown"}]
    assert [node.name for node in model.graph.node if node.op_type == "BatchNormalization"] == ["bn1", "bn3"]


def test_rewrites_outside_the_callers_tolerance_are_left():
    report = fold_batchnorms(conv_bn_model(with_bias=True), tolerance=-1.0)
    assert (report.folded, report.max_rel) == ({}, 0.0)
    assert report.headline() == "1 BatchNormalization: 0 folded, 0 made scale-and-shift, 1 left"
    [entry] = report.left
    assert entry["node"] == "bn" and entry["reason"].startswith("parity failed: max relative error ")


finite = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=20, deadline=None)
@given(data=st.data(), in_channels=st.integers(1, 3), out_channels=st.integers(1, 4), kernel=st.integers(1, 3),
       with_bias=st.booleans(), epsilon=st.sampled_from([1e-5, 1e-3, 0.1]), seed=st.integers(0, 2**16))
def test_folding_matches_conv_then_batchnorm_in_onnxruntime(data, in_channels, out_channels, kernel, with_bias,
                                                            epsilon, seed):
    def channel_values(low, high, extra=()):
        values = st.one_of(st.sampled_from(extra), st.floats(low, high, **finite)) if extra \
            else st.floats(low, high, **finite)
        return data.draw(st.lists(values, min_size=out_channels, max_size=out_channels))

    stats = {"gamma": channel_values(-2, 2), "beta": channel_values(-1, 1), "mean": channel_values(-1, 1),
             "var": channel_values(0, 4, extra=(0.0, 1e-5))}
    rng = np.random.default_rng(seed)
    constants = dict(stats, w=rng.uniform(-1, 1, (out_channels, in_channels, kernel, kernel)))
    conv_inputs = ["x", "w"]
    if with_bias:
        constants["b"] = rng.uniform(-1, 1, out_channels)
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["y"], pads=[kernel // 2] * 4), batchnorm("y", epsilon)]
    model = build_model(nodes, {"x": ["N", in_channels, 4, 4]}, constants)
    x = rng.standard_normal((2, in_channels, 4, 4)).astype(np.float32)
    expected = run(model, x=x)
    report = fold_batchnorms(model, TOLERANCE)
    assert (report.folded, report.left) == ({"Conv": 1}, [])
    assert [node.op_type for node in model.graph.node] == ["Conv"]
    np.testing.assert_allclose(run(model, x=x), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("folded, scale_and_shift, left, headline", [
    ({"Conv": 2, "Gemm": 1}, 1, [{"node": "bn9"}],
     "5 BatchNormalization: 3 folded (into Conv 2, Gemm 1), 1 made scale-and-shift, 1 left"),
    ({}, 2, [], "2 BatchNormalization: 0 folded, 2 made scale-and-shift, 0 left"),
])
def test_headline_says_where_the_batchnorms_went(folded, scale_and_shift, left, headline):
    report = FoldReport(batchnorms=sum(folded.values()) + scale_and_shift + len(left), folded=folded,
                        scale_and_shift=scale_and_shift, left=left, max_rel=0.0)
    assert report.headline() == headline
