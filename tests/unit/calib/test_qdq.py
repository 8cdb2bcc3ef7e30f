"""Q/DQ numbers of skdeploy.calib.qdq on tiny onnx.helper graphs: activation scale amax/127 with an int8
zero point of 0, per-channel INT8 weights on the output-channel axis of Conv, Gemm (both transB) and MatMul,
and the quantized graphs run in onnxruntime against dequantized weights worked out by hand."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from skdeploy.calib.qdq import (
    _gemm_dims,
    _too_small,
    _weight_axis,
    activation_scale,
    insert_qdq,
    plan_int8,
    quantize_weight,
    sensitivity_model,
)
from skdeploy.errors import UsageError
from skdeploy.onnx.index import GraphIndex

FLOAT = TensorProto.FLOAT


def model_of(nodes, inputs, outputs, initializers=(), opset=17):
    """inputs / outputs: {name: shape}; initializers: {name: numpy array}."""
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in outputs.items()],
        [numpy_helper.from_array(np.asarray(array), name) for name, array in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run(model, **feeds):
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {name: np.asarray(value, np.float32) for name, value in feeds.items()})[0]


def initializer(model, name):
    found = [init for init in model.graph.initializer if init.name == name]
    assert len(found) == 1, f"{name}: {len(found)} initializers"
    return numpy_helper.to_array(found[0])


def nodes_of(model, op_type):
    return [node for node in model.graph.node if node.op_type == op_type]


def attribute(node, name):
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


# ---- scales and weight quantization -------------------------------------------------------------------

@pytest.mark.parametrize("amax, scale", [
    (127.0, 1.0),
    (63.5, 0.5),
    (2.54, 0.02),
    (2e-8, 2e-8 / 127),  # above the floor: its own scale
    (1e-8, 1e-8 / 127),  # at the floor
    (5e-9, 1e-8 / 127),  # below the floor: a positive scale anyway
    (0.0, 1e-8 / 127),
])
def test_activation_scale_is_amax_over_127_with_a_positive_floor(amax, scale):
    assert activation_scale(amax) == pytest.approx(scale, rel=1e-12)


def test_quantize_weight_rounds_to_nearest_per_row():
    weight = np.array([[127.0, 50.4, -50.6],     # amax 127: scale 1, values round to the nearest integer
                       [0.25, -1.0, 0.6]],       # amax 1: scale 1/127; 31.75 -> 32, 76.2 -> 76
                      np.float32)
    quantized, scale = quantize_weight(weight, axis=0)
    assert quantized.dtype == np.int8 and scale.dtype == np.float32
    assert quantized.tolist() == [[127, 50, -51], [32, -127, 76]]
    assert scale == pytest.approx([1.0, 1 / 127], rel=1e-7)


def test_quantize_weight_per_column():
    weight = np.array([[127.0, 0.25], [50.4, -1.0], [-50.6, 0.6]], np.float32)
    quantized, scale = quantize_weight(weight, axis=1)
    assert quantized.tolist() == [[127, 32], [50, -127], [-51, 76]]
    assert scale == pytest.approx([1.0, 1 / 127], rel=1e-7)


def test_quantize_conv_weight_per_output_channel_with_a_zero_channel():
    weight = np.zeros((2, 2, 1, 2), np.float32)
    weight[0] = [[[63.5, -10.1]], [[3.3, 0.0]]]  # amax 63.5 over all its inputs and taps: scale 0.5
    quantized, scale = quantize_weight(weight, axis=0)
    assert quantized.shape == (2, 2, 1, 2)
    assert quantized[0].tolist() == [[[127, -20]], [[7, 0]]]  # -20.2 -> -20, 6.6 -> 7
    assert quantized[1].tolist() == [[[0, 0]], [[0, 0]]]  # an all-zero channel stays zero ...
    assert scale == pytest.approx([0.5, 1e-8 / 127], rel=1e-6)  # ... behind a tiny positive scale


finite_weights = hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6)),
                            elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=False))


@settings(max_examples=80, deadline=None)
@given(weight=finite_weights, axis=st.sampled_from([0, 1]))
def test_quantized_weights_stay_within_127_and_half_a_step(weight, axis):
    quantized, scale = quantize_weight(weight, axis)
    channels = np.moveaxis(weight, axis, 0).astype(np.float64)
    codes = np.moveaxis(quantized, axis, 0).astype(np.float64)
    for values, code, step in zip(channels, codes, scale.astype(np.float64), strict=True):
        amax = np.abs(values).max()
        assert step == pytest.approx(max(amax, 1e-8) / 127, rel=1e-6)
        assert np.all(np.abs(code) <= 127)
        assert np.all(np.abs(code * step - values) <= step * (0.5 + 1e-5))
        if amax >= 1e-8:  # the largest magnitude maps onto the last level, sign kept
            largest = np.abs(values) == amax
            assert np.all(code[largest] == 127 * np.sign(values[largest]))


# ---- which axis, which dims ---------------------------------------------------------------------------

def weight_tensor(*shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), "w")


@pytest.mark.parametrize("op_type, attributes, shape, axis", [
    ("Conv", {}, (8, 4, 3, 3), 0),
    ("Gemm", {"transB": 1}, (16, 32), 0),                # B is (N, K): output channels are rows
    ("Gemm", {"transA": 0, "transB": 1}, (16, 32), 0),
    ("Gemm", {"transB": 0}, (32, 16), 1),                # B is (K, N): output channels are columns
    ("Gemm", {"transA": 1, "transB": 0}, (32, 16), 1),
    ("Gemm", {}, (32, 16), 1),                           # transB defaults to 0
    ("MatMul", {}, (32, 16), 1),
    ("MatMul", {}, (2, 32, 16), 2),
], ids=["conv", "gemm-transB1", "gemm-transA0-transB1", "gemm-transB0", "gemm-transA1-transB0", "gemm-no-transB",
        "matmul", "matmul-batched"])
def test_weight_axis_is_the_output_channel_axis(op_type, attributes, shape, axis):
    node = helper.make_node(op_type, ["x", "w"], ["y"], **attributes)
    assert _weight_axis(node, weight_tensor(*shape)) == axis


def index_with_input_b(shape):
    """A GraphIndex where the MatMul's second operand is a graph input of `shape` (no initializer)."""
    model = model_of([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                     {"a": [4, shape[0] if shape and isinstance(shape[0], int) else "k"], "b": shape}, {"y": None})
    return GraphIndex(model), model.graph.node[0]


@pytest.mark.parametrize("op_type, attributes, shape, dims, too_small", [
    ("Gemm", {"transB": 1}, (10, 20), (20, 10), True),    # (N, K): N = 10 classes
    ("Gemm", {"transB": 0}, (20, 10), (20, 10), True),
    ("Gemm", {"transB": 1}, (16, 15), (15, 16), True),    # K = 15
    ("Gemm", {"transB": 1}, (16, 16), (16, 16), False),   # 16 is enough
    ("Gemm", {}, (20, 10), (20, 10), True),               # transB defaults to 0: (K, N)
    ("MatMul", {}, (16, 16), (16, 16), False),
    ("MatMul", {}, (15, 16), (15, 16), True),
    ("MatMul", {}, (16, 15), (16, 15), True),
    ("MatMul", {}, (3, 16, 32), (16, 32), False),         # batched weights: the last two dims
    ("MatMul", {}, (8,), (None, None), False),            # a vector: no GEMM to judge
], ids=["gemm-transB1-10-classes", "gemm-transB0-10-classes", "gemm-K15", "gemm-16", "gemm-no-transB", "matmul-16",
        "matmul-K15",
        "matmul-N15", "matmul-batched", "matmul-vector"])
def test_gemm_dims_and_the_16_threshold(op_type, attributes, shape, dims, too_small):
    node = helper.make_node(op_type, ["x", "w"], ["y"], **attributes)
    index, _ = index_with_input_b([16, 16])  # unused: the weight gives the dims
    assert _gemm_dims(node, weight_tensor(*shape), index) == dims
    assert _too_small(node, weight_tensor(*shape), index) is too_small


def test_a_conv_is_never_too_small():
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    index, _ = index_with_input_b([16, 16])
    assert _too_small(node, weight_tensor(2, 1, 1, 1), index) is False


@pytest.mark.parametrize("shape, dims, too_small", [
    ([16, 8], (16, 8), True),
    ([32, 16], (32, 16), False),
    (["k", "n"], (None, None), False),  # symbolic sizes are unknown, not small
], ids=["N8", "32x16", "symbolic"])
def test_gemm_dims_of_a_computed_operand_come_from_shape_inference(shape, dims, too_small):
    index, node = index_with_input_b(shape)
    assert _gemm_dims(node, None, index) == dims
    assert _too_small(node, None, index) is too_small


# ---- placement ----------------------------------------------------------------------------------------

def classifier():
    """A MatMul of two constants, then x -> Conv -> Relu -> Flatten -> f, and on f: an FP16 MatMul, a
    10-class Gemm head and a 64 -> 16 Gemm. Every layer that stays float comes before one that does not."""
    nodes = [helper.make_node("MatMul", ["table_a", "table_b"], ["table"], name="const_mm"),
             helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Cast", ["f"], ["f16"], to=TensorProto.FLOAT16),
             helper.make_node("MatMul", ["f16", "half_w"], ["half"], name="half_mm"),
             helper.make_node("Cast", ["half"], ["half32"], to=FLOAT),
             helper.make_node("Gemm", ["f", "head_w"], ["logits"], name="head", transB=1),
             helper.make_node("Gemm", ["f", "fc_w"], ["h"], name="fc", transB=1)]
    return model_of(nodes, {"x": [1, 2, 4, 4]}, {"table": [16, 16], "half32": [1, 16], "logits": [1, 10], "h": [1, 16]},
                    {"table_a": np.ones((16, 16), np.float32), "table_b": np.ones((16, 16), np.float32),
                     "conv_w": np.ones((4, 2, 1, 1), np.float32), "conv_b": np.zeros(4, np.float32),
                     "half_w": np.ones((64, 16), np.float16), "head_w": np.ones((10, 64), np.float32),
                     "fc_w": np.ones((16, 64), np.float32)})


def test_plan_quantizes_conv_and_large_gemm_only():
    plan = plan_int8(classifier())
    assert plan.units == ["conv", "fc"]
    assert plan.activation_slots == {"conv": [0], "fc": [0]}
    assert plan.weight_axes == {"conv": (1, 0), "fc": (1, 0)}
    assert plan.activation_tensors(classifier()) == ["x", "f"]


def test_plan_leaves_excluded_nodes_in_float():
    plan = plan_int8(classifier(), exclude=["conv"])
    assert plan.units == ["fc"] and "conv" not in plan.activation_slots and "conv" not in plan.weight_axes


def test_plan_quantizes_both_activations_of_a_matmul_without_weights():
    model = model_of([helper.make_node("MatMul", ["a", "b"], ["y"], name="attention")],
                     {"a": [1, 16, 32], "b": [1, 32, 16]}, {"y": [1, 16, 16]})
    plan = plan_int8(model)
    assert plan.activation_slots == {"attention": [0, 1]} and plan.weight_axes == {}
    assert plan.activation_tensors(model) == ["a", "b"]


def conv(name, source, output):
    return helper.make_node("Conv", [source, "w"], [output], name=name)


def residual_model(nodes, add_inputs):
    """x -> Conv c0 -> Relu r, the given nodes, then Add(add_inputs) -> out; graph outputs are the tensors
    no node reads."""
    nodes = [conv("c0", "x", "t0"), helper.make_node("Relu", ["t0"], ["r"], name="relu0")] + nodes + [
        helper.make_node("Add", add_inputs, ["out"], name="add")]
    read = {name for node in nodes for name in node.input}
    outputs = {name: None for node in nodes for name in node.output if name not in read}
    return model_of(nodes, {"x": [1, 4, 4, 4], "bias": [1, 4, 1, 1]}, outputs, {"w": np.ones((4, 4, 1, 1), np.float32)})


DEEP_AND_SHALLOW = [conv("deep1", "r", "d1"), helper.make_node("Relu", ["d1"], ["d1r"], name="relu1"),
                    conv("deep2", "d1r", "d"), conv("down", "r", "s")]
TWIN = [conv("left", "r", "p"), conv("right", "r", "q")]


@pytest.mark.parametrize("nodes, add_inputs, slot", [
    ([conv("c1", "r", "b")], ["b", "r"], 1),   # the shortcut (not a Conv) is quantized
    ([conv("c1", "r", "b")], ["r", "b"], 0),
    (DEEP_AND_SHALLOW, ["d", "s"], 1),          # both Convs: the shallower (downsample) one
    (DEEP_AND_SHALLOW, ["s", "d"], 0),
    (TWIN, ["p", "q"], 1),                      # equal depth: the second input
], ids=["conv-then-shortcut", "shortcut-then-conv", "deep-then-downsample", "downsample-then-deep", "equal-depth"])
def test_residual_add_quantizes_the_input_that_is_not_the_main_conv(nodes, add_inputs, slot):
    plan = plan_int8(residual_model(nodes, add_inputs))
    assert plan.activation_slots["add"] == [slot]
    assert plan.units[-1] == "add"


@pytest.mark.parametrize("nodes, add_inputs", [
    ([conv("c1", "r", "b")], ["b", "bias"]),    # broadcasting: a bias, not a residual
    ([conv("c1", "r", "b"), helper.make_node("Constant", [], ["shift"], value=numpy_helper.from_array(
        np.ones((1, 4, 4, 4), np.float32)))], ["b", "shift"]),  # a constant of the same shape
    ([conv("c1", "r", "b"), helper.make_node("Sigmoid", ["b"], ["gate"])], ["b", "r"]),  # b read twice
    ([helper.make_node("Relu", ["r"], ["b"])], ["b", "r"]),  # no Conv feeds the Add
], ids=["broadcast", "constant", "conv-output-read-twice", "no-conv"])
def test_adds_that_are_not_fusible_residuals_stay_float(nodes, add_inputs):
    plan = plan_int8(residual_model(nodes, add_inputs))
    assert "add" not in plan.activation_slots and "add" not in plan.units


def test_an_excluded_conv_or_add_takes_the_residual_out_of_the_plan():
    model = residual_model([conv("c1", "r", "b")], ["b", "r"])
    assert "add" not in plan_int8(model, exclude=["c1"]).units
    assert "add" not in plan_int8(model, exclude=["add"]).units
    assert "c1" in plan_int8(model, exclude=["add"]).units


@pytest.mark.parametrize("excluded, add_inputs", [
    (["down"], ["d", "s"]), (["down"], ["s", "d"]), (["deep2"], ["d", "s"]), (["deep1", "down"], ["d", "s"])])
def test_exclusions_never_move_a_residual_qdq_to_a_tensor_the_full_plan_leaves_float(excluded, add_inputs):
    """Ranges are collected for the full plan; the budget fallback re-plans with exclusions. Excluding the
    downsample Conv once moved the Add's Q/DQ onto the deep Conv's output, which had no range."""
    model = residual_model(DEEP_AND_SHALLOW, add_inputs)
    full = set(plan_int8(model).activation_tensors(model))
    reduced = plan_int8(model, exclude=excluded)
    assert set(reduced.activation_tensors(model)) <= full
    shortcut = add_inputs.index("s")
    if "deep2" in excluded:  # the Conv the Add fuses into is float: the Add has nothing to fuse with
        assert "add" not in reduced.units
    else:
        assert reduced.activation_slots["add"] == [shortcut]


# ---- inserted Q/DQ, run in onnxruntime ----------------------------------------------------------------

def designed_weight(channels=16, inputs=32):
    """(weight (channels, inputs), int8 codes, per-channel scale) with the codes known by construction:
    weight = scale_c x (code + offset), scale_c a power of two, each channel's largest magnitude exactly
    127 x scale_c (negative on odd channels), every other entry a code in [-126, 126] plus 0.3 or -0.4,
    which rounds back to the code."""
    c, k = np.meshgrid(np.arange(channels), np.arange(inputs), indexing="ij")
    codes = (c * 7 + k * 13) % 253 - 126
    offsets = np.where(k % 2 == 0, 0.3, -0.4)
    peak = k == c % inputs
    codes[peak] = np.where(c[peak] % 2 == 0, 127, -127)
    offsets[peak] = 0.0
    scale = 2.0 ** -(np.arange(channels) % 5)
    weight = (scale[:, None] * (codes + offsets)).astype(np.float32)
    return weight, codes.astype(np.int8), scale.astype(np.float32)


def dense_model(op_type, weight, attributes):
    inputs = weight.shape[1] if attributes.get("transB") else weight.shape[0]
    outputs = weight.shape[0] if attributes.get("transB") else weight.shape[1]
    node = helper.make_node(op_type, ["x", "w"], ["y"], name="dense", **attributes)
    return model_of([node], {"x": [inputs, inputs]}, {"y": [inputs, outputs]}, {"w": weight})


# (op, attributes, weight layout from the (channels, inputs) design, channel axis)
DENSE_CASES = [("Gemm", {"transB": 1}, False, 0),
               ("Gemm", {"transB": 0}, True, 1),
               ("MatMul", {}, True, 1)]


@pytest.mark.parametrize("op_type, attributes, transposed, axis", DENSE_CASES,
                         ids=["gemm-transB1", "gemm-transB0", "matmul"])
def test_dense_weights_become_int8_per_output_channel(op_type, attributes, transposed, axis):
    weight, codes, scale = designed_weight()
    layout = (lambda a: a.T) if transposed else (lambda a: a)
    model = dense_model(op_type, layout(weight), attributes)
    quantized = insert_qdq(model, plan_int8(model), {"x": 1.0})

    assert initializer(quantized, "w_int8").dtype == np.int8
    assert np.array_equal(initializer(quantized, "w_int8"), layout(codes))
    assert np.array_equal(initializer(quantized, "w_scale"), scale)
    assert initializer(quantized, "w_zero_point").tolist() == [0] * 16
    assert initializer(quantized, "w_zero_point").dtype == np.int8
    assert [init.name for init in quantized.graph.initializer if init.name == "w"] == []  # FP32 copy gone
    (weight_dq,) = [n for n in nodes_of(quantized, "DequantizeLinear") if n.input[0] == "w_int8"]
    assert attribute(weight_dq, "axis") == axis
    assert initializer(quantized, "x_scale") == np.float32(1 / 127)
    assert initializer(quantized, "x_zero_point").dtype == np.int8
    assert initializer(quantized, "x_zero_point").shape == () and initializer(quantized, "x_zero_point") == 0
    (dense,) = [n for n in quantized.graph.node if n.name == "dense"]
    assert list(dense.input) == ["x_dequantized", "w_dequantized"]

    # the identity as input reads the dequantized weights back out: column k of y is input k's weights
    y = run(quantized, x=np.eye(32))
    assert y == pytest.approx((scale[:, None] * codes).T, rel=1e-6, abs=1e-7)


def test_conv_weights_and_bias_in_onnxruntime():
    weight = np.array([[1.0, -127.0, 20.2],        # scale 1: codes 1, -127, 20
                       [63.5, 0.2, -31.9],         # scale 0.5: codes 127, 0, -64
                       [0.0, 3.0, 31.75],          # scale 0.25: codes 0, 12, 127
                       [0.0, 0.0, 0.0]],           # a dead channel: codes 0
                      np.float32).reshape(4, 3, 1, 1)
    bias = np.array([0.5, -1.0, 0.0, 2.0], np.float32)
    model = model_of([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")],
                     {"x": [3, 3, 1, 1]}, {"y": [3, 4, 1, 1]}, {"w": weight, "b": bias})
    quantized = insert_qdq(model, plan_int8(model), {"x": 1.0})

    assert initializer(quantized, "w_int8").reshape(4, 3).tolist() == [[1, -127, 20], [127, 0, -64],
                                                                       [0, 12, 127], [0, 0, 0]]
    assert initializer(quantized, "w_scale") == pytest.approx([1.0, 0.5, 0.25, 1e-8 / 127], rel=1e-6)
    (weight_dq,) = [n for n in nodes_of(quantized, "DequantizeLinear") if n.input[0] == "w_int8"]
    assert attribute(weight_dq, "axis") == 0
    assert np.array_equal(initializer(quantized, "b"), bias)  # the bias stays FP32

    dequantized = np.array([[1.0, -127.0, 20.0], [63.5, 0.0, -32.0], [0.0, 3.0, 31.75], [0.0, 0.0, 0.0]])
    y = run(quantized, x=np.eye(3).reshape(3, 3, 1, 1)).reshape(3, 4)
    assert y == pytest.approx(dequantized.T + bias, rel=1e-6)


def single_weight_conv(with_shortcut=False, opset=17):
    """x (5, 1, 1, 1) -> 1x1 Conv with weight 1 -> c, optionally y = c + x."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    if with_shortcut:
        nodes.append(helper.make_node("Add", ["c", "x"], ["y"], name="add"))
    return model_of(nodes, {"x": [5, 1, 1, 1]}, {nodes[-1].output[0]: [5, 1, 1, 1]},
                    {"w": np.ones((1, 1, 1, 1), np.float32)}, opset)


def test_activations_quantize_on_a_grid_of_amax_over_127_and_saturate():
    model = single_weight_conv()
    quantized = insert_qdq(model, plan_int8(model), {"x": 2.54})  # a step of 0.02
    x = np.array([0.5, 1.0, -1.5, 0.013, 10.0]).reshape(5, 1, 1, 1)
    # 0.5 -> 25 steps, 1.0 -> 50, -1.5 -> -75, 0.013 -> 0.65 -> 1 step, 10 -> 500 -> 127 steps
    assert run(quantized, x=x).reshape(5) == pytest.approx([0.5, 1.0, -1.5, 0.02, 2.54], rel=1e-6)


def test_residual_shortcut_shares_the_conv_inputs_quantization():
    model = single_weight_conv(with_shortcut=True)
    plan = plan_int8(model)
    assert plan.activation_slots == {"conv": [0], "add": [1]}
    quantized = insert_qdq(model, plan, {"x": 2.54})
    assert [n.input[0] for n in nodes_of(quantized, "QuantizeLinear")] == ["x"]  # one pair, read twice
    (add,) = nodes_of(quantized, "Add")
    assert list(add.input) == ["c", "x_dequantized"]
    x = np.array([0.5, 1.0, -1.5, 0.013, 10.0]).reshape(5, 1, 1, 1)
    assert run(quantized, x=x).reshape(5) == pytest.approx([1.0, 2.0, -3.0, 0.04, 5.08], rel=1e-6)


def test_each_tensor_gets_its_own_named_qdq_and_layers_chain():
    """x -> Conv(w1 = 2) -> Relu -> r -> Conv(w2 = 0.5): two activations on their own grids, two weights."""
    model = model_of([helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1"),
                      helper.make_node("Relu", ["c"], ["r"], name="relu"),
                      helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")],
                     {"x": [5, 1, 1, 1]}, {"y": [5, 1, 1, 1]},
                     {"w1": np.full((1, 1, 1, 1), 2.0, np.float32), "w2": np.full((1, 1, 1, 1), 0.5, np.float32)})
    quantized = insert_qdq(model, plan_int8(model), {"x": 2.54, "r": 3.81})  # steps 0.02 and 0.03
    assert sorted(n.name for n in nodes_of(quantized, "QuantizeLinear")) == ["r_QuantizeLinear", "x_QuantizeLinear"]
    assert sorted(n.name for n in nodes_of(quantized, "DequantizeLinear")) == [
        "r_DequantizeLinear", "w1_DequantizeLinear", "w2_DequantizeLinear", "x_DequantizeLinear"]
    assert initializer(quantized, "r_scale") == np.float32(0.03)
    assert initializer(quantized, "w2_scale") == pytest.approx([0.5 / 127], rel=1e-7)
    (conv2,) = [n for n in quantized.graph.node if n.name == "conv2"]
    assert list(conv2.input) == ["r_dequantized", "w2_dequantized"]

    x = np.array([0.5, 1.0, -1.5, 0.013, 10.0]).reshape(5, 1, 1, 1)
    # x on its grid: 0.5, 1.0, -1.5, 0.02, 2.54; times 2, ReLU: 1.0, 2.0, 0, 0.04, 5.08
    # on the 0.03 grid: 33, 67, 0, 1, 127 (saturated) steps = 0.99, 2.01, 0, 0.03, 3.81; times 0.5:
    assert run(quantized, x=x).reshape(5) == pytest.approx([0.495, 1.005, 0.0, 0.015, 1.905], rel=1e-5)


def test_a_matmul_of_two_activations_quantizes_both_sides():
    model = model_of([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                     {"a": [16, 16], "b": [16, 16]}, {"y": [16, 16]})
    quantized = insert_qdq(model, plan_int8(model), {"a": 1.0, "b": 2.54})
    rows = np.resize([0.5, 1.0, -1.5, 0.013, 10.0], 16)
    b = np.repeat(rows[:, None], 16, axis=1)
    # a = 2 I saturates to 1 I on a's grid, so y is b on its own grid (steps of 0.02, at most 2.54)
    on_grid = np.resize([0.5, 1.0, -1.5, 0.02, 2.54], 16)
    assert run(quantized, a=2 * np.eye(16), b=b) == pytest.approx(np.repeat(on_grid[:, None], 16, axis=1),
                                                                    rel=1e-6)


def test_a_weight_shared_by_two_layers_is_quantized_once():
    model = model_of([helper.make_node("Conv", ["x", "w"], ["c"], name="conv_a"),
                      helper.make_node("Conv", ["c", "w"], ["y"], name="conv_b")],
                     {"x": [1, 1, 1, 1]}, {"y": [1, 1, 1, 1]}, {"w": np.full((1, 1, 1, 1), 3.0, np.float32)})
    quantized = insert_qdq(model, plan_int8(model), {"x": 1.27, "c": 3.81})
    assert [n.name for n in nodes_of(quantized, "DequantizeLinear") if n.input[0] == "w_int8"] == [
        "w_DequantizeLinear"]
    assert [n.input[1] for n in nodes_of(quantized, "Conv")] == ["w_dequantized", "w_dequantized"]
    # 1 -> 100 steps of 0.01 -> 1.0; x 3 -> 3.0 = 100 steps of 0.03; x 3 -> 9.0
    assert run(quantized, x=np.ones((1, 1, 1, 1))).item() == pytest.approx(9.0, rel=1e-6)


def test_insert_qdq_leaves_the_input_model_alone():
    model = single_weight_conv()
    before = model.SerializeToString()
    insert_qdq(model, plan_int8(model), {"x": 1.0})
    assert model.SerializeToString() == before


def test_a_tensor_without_a_range_is_a_usage_error():
    model = single_weight_conv()
    with pytest.raises(UsageError, match="no calibration range for tensor 'x'"):
        insert_qdq(model, plan_int8(model), {"c": 1.0})


def test_per_channel_qdq_needs_opset_13():
    oldest = single_weight_conv(opset=13)
    assert nodes_of(insert_qdq(oldest, plan_int8(oldest), {"x": 1.0}), "QuantizeLinear")
    old = single_weight_conv(opset=12)
    with pytest.raises(UsageError, match="needs opset 13 or newer; this model is opset 12"):
        insert_qdq(old, plan_int8(old), {"x": 1.0})


def test_sensitivity_model_declares_scalar_error_and_signal_and_names_each_shadow_after_its_unit():
    """x on the 0.02 grid of amax 2.54 through the weight-1 Conv: the shadow differs by 0.007 and -7.46."""
    model = single_weight_conv()
    shadowed, outputs = sensitivity_model(model, plan_int8(model), {"x": 2.54})
    assert outputs == {"conv": ("conv_shadow_error", "conv_shadow_signal")}
    assert [n.op_type for n in shadowed.graph.node if n.name == "conv_shadow"] == ["Conv"]
    declared = {out.name: out.type.tensor_type for out in shadowed.graph.output}
    for name in outputs["conv"]:
        assert declared[name].elem_type == FLOAT
        assert declared[name].HasField("shape") and len(declared[name].shape.dim) == 0  # a scalar, not unknown rank
    onnx.checker.check_model(shadowed, full_check=True)
    session = ort.InferenceSession(shadowed.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([0.5, 1.0, -1.5, 0.013, 10.0], np.float32).reshape(5, 1, 1, 1)
    error, signal = session.run(list(outputs["conv"]), {"x": x})
    assert error.shape == signal.shape == ()
    assert error == pytest.approx(0.007 ** 2 + 7.46 ** 2, rel=1e-5)
    assert signal == pytest.approx(0.25 + 1.0 + 2.25 + 0.013 ** 2 + 100.0, rel=1e-6)
