"""FP16 conversion pinned on tiny onnx.helper graphs: which nodes convert (the 65504 weight limit and the
calibration limit, both inclusive), how values round, where Casts go, and what the converted graphs compute.

onnxruntime's CPU provider runs FP16 nodes in FP32 and drops the Casts between them, so it rounds only
stored weights and FP16 graph inputs and outputs: its numbers are checked on graphs whose every rounding
sits there (fp16_io, one FP16 op per output). Longer mixed chains are checked with onnx's reference
evaluator, which computes each FP16 node in float16 as the graph says."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from skdeploy.calib.fp16 import convert_fp16, fp16_candidates
from skdeploy.errors import UsageError

F16 = TensorProto.FLOAT16
F32 = TensorProto.FLOAT
FP16_MAX = 65504.0  # (2 - 2^-10) * 2^15, the largest finite float16
ABOVE_FP16_MAX = 65504.00390625  # the next float32: 65504 + 2^-8


def tiny_model(nodes, inputs, outputs, initializers=()):
    """A checked opset-17 model; `inputs`/`outputs` are (name, elem type, shape)."""
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(*spec) for spec in inputs],
                              [helper.make_tensor_value_info(*spec) for spec in outputs], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def run(model, **feeds):
    """Every output of `model` from onnxruntime on the CPU, in graph-output order; the model must be valid
    ONNX first (onnxruntime tolerates some malformed nodes that TensorRT's parser rejects)."""
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def evaluate(model, **feeds):
    """Every output of `model` from onnx's reference evaluator: float16 nodes compute in float16."""
    return ReferenceEvaluator(model).run(None, feeds)


def weights(model) -> dict:
    return {init.name: init for init in model.graph.initializer}


def nodes(model) -> dict:
    return {node.name: node for node in model.graph.node}


def casts(model) -> dict:
    """{Cast node name: (input, output, target type)}."""
    return {node.name: (node.input[0], node.output[0], helper.get_attribute_value(node.attribute[0]))
            for node in model.graph.node if node.op_type == "Cast"}


def scale_model(weight):
    """y = x * w for a 4-vector x: one node, "scale", reading one weight."""
    return tiny_model([helper.make_node("Mul", ["x", "w"], ["y"], name="scale")],
                      [("x", F32, [4])], [("y", F32, [4])],
                      [numpy_helper.from_array(np.asarray(weight, np.float32), "w")])


def chain_model(bias):
    """m = x * w ("scale"), a = m + b ("shift"), y = relu(a) ("clip"); m and a carry float32 value_info
    as exported graphs do, which a converted graph must not keep."""
    nodes_ = [helper.make_node("Mul", ["x", "w"], ["m"], name="scale"),
              helper.make_node("Add", ["m", "b"], ["a"], name="shift"),
              helper.make_node("Relu", ["a"], ["y"], name="clip")]
    model = tiny_model(nodes_, [("x", F32, [5])], [("y", F32, [5])],
                       [numpy_helper.from_array(np.array([1.0, 1.0, -0.1, 3.0, 1.0], np.float32), "w"),
                        numpy_helper.from_array(np.asarray(bias, np.float32), "b")])
    model.graph.value_info.extend(helper.make_tensor_value_info(name, F32, [5]) for name in ("m", "a"))
    return model


# ---- which nodes convert ----

@pytest.mark.parametrize("peak, converts", [
    (FP16_MAX, True), (-FP16_MAX, True),  # exactly the largest FP16 value still fits
    (ABOVE_FP16_MAX, False), (-ABOVE_FP16_MAX, False),  # the next float32 up does not, whatever the sign
])
def test_a_weight_converts_up_to_exactly_65504(peak, converts):
    convert, kept = fp16_candidates(scale_model([0.5, peak, -1.0, 0.0]))
    if converts:
        assert (convert, kept) == ({"scale"}, {})
    else:
        assert convert == set() and kept == {"scale": "weight w reaches 6.55e+04, beyond FP16"}


@given(st.lists(st.floats(-2e5, 2e5, width=32), min_size=4, max_size=4))
@settings(max_examples=60, deadline=None)
def test_a_weight_converts_exactly_when_its_largest_magnitude_fits(values):
    convert, _ = fp16_candidates(scale_model(values))
    assert ("scale" in convert) == (max(abs(v) for v in values) <= 65504.0)


def test_the_calibration_limit_is_inclusive_and_marks_reader_and_writer():
    model = chain_model(np.zeros(5))
    at_limit = {"x": 1.0, "m": 100.0, "a": 100.0, "y": 100.0}
    assert fp16_candidates(model, absmax=at_limit, limit=100.0) == ({"scale", "shift", "clip"}, {})
    over = dict(at_limit, m=float(np.nextafter(np.float32(100.0), np.float32(200.0))))
    convert, kept = fp16_candidates(model, absmax=over, limit=100.0)
    assert convert == {"clip"}
    assert kept == {"scale": "m reaches 100 on the calibration data, beyond 100",
                    "shift": "m reaches 100 on the calibration data, beyond 100"}


def test_the_default_limit_is_fp16_max_and_unmeasured_tensors_count_as_zero():
    model = chain_model(np.zeros(5))
    assert fp16_candidates(model, absmax={"a": FP16_MAX}) == ({"scale", "shift", "clip"}, {})
    assert fp16_candidates(model) == ({"scale", "shift", "clip"}, {})
    convert, kept = fp16_candidates(model, absmax={"a": ABOVE_FP16_MAX})
    assert convert == {"scale"} and set(kept) == {"shift", "clip"}
    assert kept["clip"] == "a reaches 6.55e+04 on the calibration data, beyond 65504"
    assert fp16_candidates(model, absmax={"x": 0.5}, limit=0.5) == ({"scale", "shift", "clip"}, {})


def quantize_pair():
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    return ([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="DequantizeLinear")],
            [("x", F32, [4])], [("y", F32, [4])], [scale, zero])


def float_parameter_graph(op):
    """A graph around one op of FP32_ONLY_OPS, the node named after the op, plus an FP16-able Relu."""
    inputs, initializers = [("x", F32, [1, 1, 2, 2])], []
    if op == "Range":
        initializers = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
                        (("start", 0.0), ("limit", 4.0), ("delta", 1.0))]
        node, out = helper.make_node(op, ["start", "limit", "delta"], ["r"], name=op), ("r", F32, [4])
    elif op == "RandomUniform":
        node, out = helper.make_node(op, [], ["r"], name=op, shape=[1, 1, 2, 2]), ("r", F32, [1, 1, 2, 2])
    elif op == "RandomNormalLike":
        node, out = helper.make_node(op, ["x"], ["r"], name=op), ("r", F32, [1, 1, 2, 2])
    elif op == "RoiAlign":
        initializers = [numpy_helper.from_array(np.array([[0, 0, 1, 1]], np.float32), "rois"),
                        numpy_helper.from_array(np.array([0], np.int64), "batch")]
        node = helper.make_node(op, ["x", "rois", "batch"], ["r"], name=op, output_height=2, output_width=2)
        out = ("r", F32, [1, 1, 2, 2])
    else:  # NonMaxSuppression: float boxes and scores in, int64 indices out
        inputs = [("boxes", F32, [1, 1, 4]), ("scores", F32, [1, 1, 1]), ("x", F32, [1, 1, 2, 2])]
        node, out = helper.make_node(op, ["boxes", "scores"], ["r"], name=op), ("r", TensorProto.INT64, [1, 3])
    relu = helper.make_node("Relu", ["x"], ["y"], name="clip")
    return [node, relu], inputs, [out, ("y", F32, [1, 1, 2, 2])], initializers


@pytest.mark.parametrize("op", ["QuantizeLinear", "Range", "RandomUniform", "RandomNormalLike", "RoiAlign",
                                "NonMaxSuppression"])
def test_ops_that_take_float32_parameters_stay_fp32(op):
    if op == "QuantizeLinear":
        model = tiny_model(*quantize_pair())
        expected = {name: f"{name} takes float32 parameters" for name in ("QuantizeLinear", "DequantizeLinear")}
        assert fp16_candidates(model) == (set(), expected)
    else:
        expected = ({"clip"}, {op: f"{op} takes float32 parameters"})
        assert fp16_candidates(tiny_model(*float_parameter_graph(op))) == expected


def test_ops_with_float32_parameters_stay_fp32():
    scales = numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales")
    model = tiny_model([helper.make_node("Resize", ["x", "", "scales"], ["up"], name="up", mode="nearest"),
                        helper.make_node("Relu", ["up"], ["y"], name="clip")],
                       [("x", F32, [1, 1, 2, 2])], [("y", F32, [1, 1, 4, 4])], [scales])
    assert fp16_candidates(model) == ({"clip"}, {"up": "Resize takes float32 parameters"})


def test_keep_fp32_wins_over_any_other_reason_and_rejects_unknown_names():
    model = scale_model([1.0, 2.0 * FP16_MAX, 0.0, 0.0])
    assert fp16_candidates(model, keep_fp32=("scale",)) == (set(), {"scale": "named by --keep-fp32"})
    with pytest.raises(UsageError, match=r"^`keep_fp32` names no node 'scal'; .*\(e\.g\. 'scale'\)$"):
        fp16_candidates(model, keep_fp32=("scal",))


def test_nodes_without_float_tensors_are_neither_converted_nor_kept():
    count = numpy_helper.from_array(np.array([3], np.int64), "count")
    model = tiny_model([helper.make_node("Add", ["n", "count"], ["total"], name="count_up"),
                        helper.make_node("Relu", ["x"], ["y"], name="clip")],
                       [("n", TensorProto.INT64, [1]), ("x", F32, [4])],
                       [("total", TensorProto.INT64, [1]), ("y", F32, [4])], [count])
    assert fp16_candidates(model) == ({"clip"}, {})
    converted = convert_fp16(model, {"clip"}, fp16_io=True)
    assert [v.type.tensor_type.elem_type for v in converted.graph.input] == [TensorProto.INT64, F16]
    assert [v.type.tensor_type.elem_type for v in converted.graph.output] == [TensorProto.INT64, F16]
    assert weights(converted)["count"].data_type == TensorProto.INT64
    total, y = run(converted, n=np.array([4], np.int64), x=np.array([-1.0, 0.1, 2049.0, 0.0], np.float16))
    assert total.tolist() == [7] and y.tolist() == [0.0, 1638 / 16384, 2048.0, 0.0]


@pytest.mark.parametrize("attribute", [{"value": numpy_helper.from_array(np.array(1e5, np.float32))},
                                       {"value_float": 1e5}, {"value_floats": [1e5]}])
def test_a_constant_node_beyond_fp16_keeps_itself_and_its_reader_fp32(attribute):
    """Calibration measures no Constant output, so the value itself must decide: 1e5 in FP16 is inf."""
    gain = helper.make_node("Constant", [], ["gain"], name="gain", **attribute)
    model = tiny_model([gain, helper.make_node("Mul", ["x", "gain"], ["m"], name="amplify"),
                        helper.make_node("Mul", ["m", "shrink"], ["y"], name="attenuate")],
                       [("x", F32, [2])], [("y", F32, [2])],
                       [numpy_helper.from_array(np.array(1e-5, np.float32), "shrink")])
    convert, kept = fp16_candidates(model, absmax={"x": 1e-3, "m": 100.0, "y": 1e-3})
    assert convert == {"attenuate"}
    beyond = "weight gain reaches 1e+05, beyond FP16"
    assert kept == {"gain": beyond, "amplify": beyond}
    (y,) = run(convert_fp16(model, convert), x=np.array([1e-3, -2e-3], np.float32))
    # amplify (FP32) gives 100 and -200; attenuate reads fp16(1e-5), the subnormal 168 * 2^-24
    assert np.isfinite(y).all() and np.allclose(y, [100 * 168 * 2 ** -24, -200 * 168 * 2 ** -24], rtol=2 ** -10, atol=0)


# ---- how the converted graph looks ----

def test_weights_round_to_nearest_fp16_ties_to_even_and_tiny_values_flush_to_the_subnormal_grid():
    values = [0.1, 1 / 3, 2049.0, 2051.0, FP16_MAX, 2 ** -14, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -26]
    model = tiny_model([helper.make_node("Mul", ["x", "w"], ["y"], name="scale")],
                       [("x", F32, [10])], [("y", F32, [10])],
                       [numpy_helper.from_array(np.array(values, np.float32), "w")])
    converted = convert_fp16(model, {"scale"})
    stored = weights(converted)["w"]
    assert stored.data_type == F16
    # by hand: 0.1 = 1638/16384, 1/3 = 1365/4096, 2049 and 2051 are ties on the spacing-2 grid (to even:
    # 2048, 2052), 65504 and 2^-14 are exact, 2^-24 is the smallest subnormal, 2^-25 a tie (to 0),
    # 0.75 * 2^-24 rounds up to 2^-24, 0.25 * 2^-24 to 0
    assert numpy_helper.to_array(stored).astype(np.float64).tolist() == [
        1638 / 16384, 1365 / 4096, 2048.0, 2052.0, 65504.0, 2 ** -14, 2 ** -24, 0.0, 2 ** -24, 0.0]
    (y,) = run(converted, x=np.ones(10, np.float32))
    assert y.dtype == np.float32 and y.tolist() == numpy_helper.to_array(stored).astype(np.float32).tolist()


def test_casts_mark_every_fp32_fp16_boundary_and_the_output_stays_fp32():
    converted = convert_fp16(chain_model([0.0, 0.0, 0.0, 1e-4, 0.0]), {"scale", "clip"})
    assert casts(converted) == {"x_Cast_fp16": ("x", "x_cast_fp16", F16),
                                "m_Cast_fp32": ("m", "m_cast_fp32", F32),
                                "a_Cast_fp16": ("a", "a_cast_fp16", F16),
                                "y_Cast": ("y_before_cast", "y", F32)}
    graph_nodes = nodes(converted)
    assert list(graph_nodes["scale"].input) == ["x_cast_fp16", "w"]
    assert list(graph_nodes["shift"].input) == ["m_cast_fp32", "b"]
    assert list(graph_nodes["clip"].input) == ["a_cast_fp16"] and list(graph_nodes["clip"].output) == ["y_before_cast"]
    assert weights(converted)["w"].data_type == F16 and weights(converted)["b"].data_type == F32
    assert converted.graph.input[0].type.tensor_type.elem_type == F32
    assert converted.graph.output[0].type.tensor_type.elem_type == F32
    onnx.checker.check_model(converted, full_check=True)  # no stale float32 value_info for m or a


def test_the_converted_chain_computes_what_numpy_float16_arithmetic_says():
    x = np.array([0.1, 2049.0, -3.0, 1 / 3, -2.0], np.float32)
    bias = np.array([0.0, 0.0, 0.0, 1e-4, 0.0], np.float32)
    converted = convert_fp16(chain_model(bias), {"scale", "clip"})
    (y,) = evaluate(converted, x=x)
    w = np.array([1.0, 1.0, -0.1, 3.0, 1.0], np.float32)
    product = x.astype(np.float16) * w.astype(np.float16)  # "scale" in FP16
    shifted = product.astype(np.float32) + bias  # "shift" in FP32
    expected = np.maximum(shifted.astype(np.float16), np.float16(0)).astype(np.float32)  # "clip" in FP16
    assert y.dtype == np.float32 and np.array_equal(y, expected)
    # the same by hand: 2049 -> 2048; -3 * fp16(-0.1) = 0.29992676 is a tie -> 0.2998046875;
    # fp16(1/3) * 3 = 0.99975586 is a tie -> 1.0, and 1.0 + 1e-4 rounds back to 1.0 in FP16
    assert y.tolist() == [1638 / 16384, 2048.0, 0.2998046875, 1.0, 0.0]
    (runtime_y,) = run(converted, x=x)
    assert runtime_y.dtype == np.float32 and np.allclose(runtime_y, y, rtol=2 ** -10, atol=0)


@given(st.lists(st.floats(-255.0, 255.0, width=16), min_size=4, max_size=4),
       st.lists(st.floats(-255.0, 255.0, width=16), min_size=4, max_size=4))
@settings(max_examples=40, deadline=None)
def test_an_fp16_product_is_the_correctly_rounded_product(xs, ws):
    """Any two FP16 values: the converted Mul, run by onnxruntime with FP16 I/O, returns their exact
    product rounded once to FP16."""
    (y,) = run(convert_fp16(scale_model(ws), {"scale"}, fp16_io=True), x=np.array(xs, np.float16))
    exact = np.array(xs, np.float64) * np.array(ws, np.float64)  # exact: 11-bit times 11-bit mantissas
    assert y.dtype == np.float16 and np.array_equal(y, exact.astype(np.float16))


def test_a_weight_shared_by_fp16_and_fp32_readers_gets_an_fp16_copy():
    model = tiny_model([helper.make_node("Mul", ["x", "w"], ["half"], name="half_scale"),
                        helper.make_node("Mul", ["x", "w"], ["full"], name="full_scale"),
                        helper.make_node("Sub", ["full", "half"], ["y"], name="difference")],
                       [("x", F32, [2])], [("y", F32, [2])],
                       [numpy_helper.from_array(np.array([0.1, 3.0], np.float32), "w")])
    converted = convert_fp16(model, {"half_scale"})
    stored = weights(converted)
    assert len(stored) == 2
    assert stored["w"].data_type == F32 and stored["w_fp16"].data_type == F16
    assert numpy_helper.to_array(stored["w_fp16"]).tolist() == [1638 / 16384, 3.0]
    assert list(nodes(converted)["half_scale"].input) == ["x_cast_fp16", "w_fp16"]
    assert list(nodes(converted)["full_scale"].input) == ["x", "w"]
    (y,) = run(converted, x=np.array([1.0, 1.0], np.float32))
    assert y.tolist() == [np.float32(0.1) - np.float32(1638 / 16384), 0.0]  # the rounding FP16 cost


def test_unread_initializers_stay_as_they_are_and_do_not_stop_the_conversion():
    unused = numpy_helper.from_array(np.array([0.1], np.float32), "unused")
    model = scale_model([0.1, 2.0, 3.0, 4.0])
    model.graph.initializer.insert(0, unused)
    stored = weights(convert_fp16(model, {"scale"}))
    assert stored["unused"].data_type == F32 and numpy_helper.to_array(stored["unused"]).tolist() == [np.float32(0.1)]
    assert stored["w"].data_type == F16 and numpy_helper.to_array(stored["w"]).tolist() == [1638 / 16384, 2, 3, 4]


def test_one_cast_per_tensor_and_direction_however_many_readers():
    model = tiny_model([helper.make_node("Relu", ["x"], ["r"], name="first"),
                        helper.make_node("Neg", ["x"], ["n"], name="second"),
                        helper.make_node("Add", ["r", "n"], ["y"], name="join")],
                       [("x", F32, [3])], [("y", F32, [3])])
    converted = convert_fp16(model, {"first", "second"})
    assert casts(converted) == {"x_Cast_fp16": ("x", "x_cast_fp16", F16), "r_Cast_fp32": ("r", "r_cast_fp32", F32),
                                "n_Cast_fp32": ("n", "n_cast_fp32", F32)}
    (y,) = run(converted, x=np.array([-2.0, 0.5, 3.0], np.float32))
    assert y.tolist() == [2.0, 0.0, 0.0]  # relu(x) - x


def test_fp16_io_makes_inputs_and_outputs_fp16_with_casts_only_around_fp32_nodes():
    model = chain_model(np.zeros(5))
    all_half = convert_fp16(model, {"scale", "shift", "clip"}, fp16_io=True)
    assert casts(all_half) == {}
    assert all_half.graph.input[0].type.tensor_type.elem_type == F16
    assert all_half.graph.output[0].type.tensor_type.elem_type == F16
    (y,) = run(all_half, x=np.array([0.1, 2049.0, -3.0, 1 / 3, -2.0], np.float16))
    assert y.dtype == np.float16 and y.tolist() == [1638 / 16384, 2048.0, 0.2998046875, 1.0, 0.0]

    first_kept = convert_fp16(model, {"shift"}, fp16_io=True)
    assert casts(first_kept) == {"x_Cast_fp32": ("x", "x_cast_fp32", F32), "m_Cast_fp16": ("m", "m_cast_fp16", F16),
                                 "a_Cast_fp32": ("a", "a_cast_fp32", F32), "y_Cast": ("y_before_cast", "y", F16)}
    assert first_kept.graph.input[0].type.tensor_type.elem_type == F16
    assert first_kept.graph.output[0].type.tensor_type.elem_type == F16


def test_without_fp16_io_an_all_fp16_graph_still_takes_and_returns_float32():
    converted = convert_fp16(chain_model(np.zeros(5)), {"scale", "shift", "clip"})
    assert set(casts(converted)) == {"x_Cast_fp16", "y_Cast"}
    (y,) = evaluate(converted, x=np.array([0.1, 2049.0, -3.0, 1 / 3, -2.0], np.float32))
    assert y.dtype == np.float32 and y.tolist() == [1638 / 16384, 2048.0, 0.2998046875, 1.0, 0.0]


def test_conversion_leaves_the_source_model_untouched():
    model = chain_model(np.zeros(5))
    before = model.SerializeToString()
    convert_fp16(model, {"scale", "shift", "clip"}, fp16_io=True)
    assert model.SerializeToString() == before


# ---- constants and casts inside FP16 nodes ----

def test_constants_and_float_casts_inside_fp16_nodes_become_fp16():
    """idx (int64) -> Cast to float -> times a Constant 0.1: both nodes FP16, the int64 side untouched."""
    tenth = helper.make_node("Constant", [], ["tenth"], name="tenth",
                             value=numpy_helper.from_array(np.array(0.1, np.float32)))
    model = tiny_model([tenth, helper.make_node("Cast", ["idx"], ["f"], name="to_float", to=F32),
                        helper.make_node("Mul", ["f", "tenth"], ["y"], name="scale")],
                       [("idx", TensorProto.INT64, [3])], [("y", F32, [3])])
    convert, kept = fp16_candidates(model)
    assert convert == {"tenth", "to_float", "scale"} and kept == {}
    converted = convert_fp16(model, convert, fp16_io=True)
    graph_nodes = nodes(converted)
    assert helper.get_attribute_value(graph_nodes["to_float"].attribute[0]) == F16
    value = graph_nodes["tenth"].attribute[0].t
    assert value.data_type == F16 and float(numpy_helper.to_array(value)) == 1638 / 16384
    assert set(casts(converted)) == {"to_float"}  # no Cast of the int64 input, an FP16 output
    idx = np.array([1, 3, 7], np.int64)
    (y,) = run(converted, idx=idx)
    assert y.dtype == np.float16 and np.array_equal(y, idx.astype(np.float16) * np.float16(0.1))
    # by hand: 3 * 0.0999755859375 = 0.2999267578125 is a tie (to 0.2998046875), 7 * it rounds down
    assert y.tolist() == [1638 / 16384, 0.2998046875, 0.69970703125]


def test_a_cast_to_an_integer_inside_an_fp16_node_keeps_its_target():
    model = tiny_model([helper.make_node("Cast", ["x"], ["n"], name="truncate", to=TensorProto.INT64)],
                       [("x", F32, [3])], [("n", TensorProto.INT64, [3])])
    assert fp16_candidates(model) == ({"truncate"}, {})
    converted = convert_fp16(model, {"truncate"})
    assert casts(converted) == {"x_Cast_fp16": ("x", "x_cast_fp16", F16),
                                "truncate": ("x_cast_fp16", "n", TensorProto.INT64)}
    (n,) = evaluate(converted, x=np.array([2.5, -7.9, 2049.0], np.float32))
    assert n.tolist() == [2, -7, 2048]  # truncation toward zero after FP16 rounds 2049 to 2048


@pytest.mark.parametrize("attribute, value, expected", [
    ("value_float", 0.1, [1638 / 16384, -2 * 1638 / 16384]),
    ("value_floats", [0.1, 3.0], [1638 / 16384, -6.0]),
])
def test_scalar_and_list_float_constants_become_fp16_too(attribute, value, expected):
    constant = helper.make_node("Constant", [], ["c"], name="c", **{attribute: value})
    model = tiny_model([constant, helper.make_node("Mul", ["x", "c"], ["y"], name="scale")],
                       [("x", F32, [2])], [("y", F32, [2])])
    convert, _ = fp16_candidates(model)
    assert convert == {"c", "scale"}
    (y,) = run(convert_fp16(model, convert), x=np.array([1.0, -2.0], np.float32))
    assert y.tolist() == expected


# ---- weights and graph outputs ----

def test_an_empty_float_weight_does_not_stop_the_conversion():
    """An empty tensor has no largest magnitude: it fits FP16 like any other weight."""
    model = tiny_model([helper.make_node("Concat", ["x", "nothing"], ["y"], name="join", axis=0)],
                       [("x", F32, [2])], [("y", F32, [2])],
                       [numpy_helper.from_array(np.zeros(0, np.float32), "nothing")])
    assert fp16_candidates(model) == ({"join"}, {})
    (y,) = run(convert_fp16(model, {"join"}), x=np.array([0.1, 2049.0], np.float32))
    assert y.dtype == np.float32 and y.tolist() == [1638 / 16384, 2048.0]


def test_an_integer_initializer_read_by_an_fp16_node_keeps_its_type():
    """Reshape's target shape is int64 data, not a float weight: it must not be stored as FP16."""
    model = tiny_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten")],
                       [("x", F32, [2, 2])], [("y", F32, [4])],
                       [numpy_helper.from_array(np.array([4], np.int64), "shape")])
    converted = convert_fp16(model, {"flatten"})
    assert weights(converted)["shape"].data_type == TensorProto.INT64
    (y,) = run(converted, x=np.array([[0.1, 1.0], [2.0, 2049.0]], np.float32))
    assert y.tolist() == [1638 / 16384, 1.0, 2.0, 2048.0]


def test_weights_read_only_by_fp32_nodes_stay_fp32_without_an_fp16_copy():
    model = tiny_model([helper.make_node("Mul", ["x", "w_half"], ["m"], name="half_scale"),
                        helper.make_node("Mul", ["m", "w_full"], ["y"], name="full_scale")],
                       [("x", F32, [2])], [("y", F32, [2])],
                       [numpy_helper.from_array(np.array([0.1, 1.0], np.float32), "w_half"),
                        numpy_helper.from_array(np.array([1.0, 0.1], np.float32), "w_full")])
    stored = weights(convert_fp16(model, {"half_scale"}))
    assert {name: init.data_type for name, init in stored.items()} == {"w_half": F16, "w_full": F32}


def test_every_output_of_an_fp16_node_gets_its_cast_and_fp16_readers_keep_the_fp16_value():
    """Outputs: a from an FP32 node (no Cast), b from an FP16 node that an FP16 node also reads (squared),
    c from that node. b and c end in Casts to float32; the square reads b's FP16 value, so it rounds in FP16:
    0.1 -> 1638/16384 in FP16, squared 0.0099951... rounds to 0.0099945068359375 (655 x 2^-16)."""
    model = tiny_model([helper.make_node("Relu", ["x"], ["a"], name="full"),
                        helper.make_node("Neg", ["x"], ["b"], name="half_neg"),
                        helper.make_node("Mul", ["b", "b"], ["c"], name="half_square")],
                       [("x", F32, [1])], [("a", F32, [1]), ("b", F32, [1]), ("c", F32, [1])])
    converted = convert_fp16(model, {"half_neg", "half_square"})
    assert casts(converted) == {"x_Cast_fp16": ("x", "x_cast_fp16", F16), "b_Cast": ("b_before_cast", "b", F32),
                                "c_Cast": ("c_before_cast", "c", F32)}
    assert list(nodes(converted)["half_square"].input) == ["b_before_cast", "b_before_cast"]
    onnx.checker.check_model(converted)
    a, b, c = evaluate(converted, x=np.array([0.1], np.float32))  # onnxruntime may drop the exact Neg's Casts
    assert (a.dtype, b.dtype, c.dtype) == (np.float32,) * 3
    assert a.tolist() == [np.float32(0.1)] and b.tolist() == [-1638 / 16384] and c.tolist() == [655 / 65536]


def test_an_fp16_node_casts_its_float_inputs_after_a_non_float_one():
    """Where(condition, x, w): the bool condition is left alone, the float32 input after it still gets its Cast."""
    model = tiny_model([helper.make_node("Where", ["keep", "x", "w"], ["y"], name="choose")],
                       [("keep", TensorProto.BOOL, [2]), ("x", F32, [2])], [("y", F32, [2])],
                       [numpy_helper.from_array(np.array([5.0, 2049.0], np.float32), "w")])
    converted = convert_fp16(model, {"choose"})
    assert list(nodes(converted)["choose"].input) == ["keep", "x_cast_fp16", "w"]
    onnx.checker.check_model(converted, full_check=True)
    (y,) = evaluate(converted, keep=np.array([True, False]), x=np.array([0.1, 1.0], np.float32))
    assert y.tolist() == [1638 / 16384, 2048.0]
