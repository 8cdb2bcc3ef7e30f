"""The accuracy-budget fallback pinned by hand: scoring, each unit's own INT8 error, the ranking, the
search for the fewest units to move, and the whole INT8 build on a four-Conv model where exactly one
layer ("sensitive") cannot survive INT8.

The model works on two channels (a, b) of a 1x1 image; each Conv is a 2x2 matrix:
    spread    (a, b)       -> (1000 a, b)     its input is quantized with amax 1: fine
    sensitive (1000 a, b)  -> (b, -b)         per-tensor amax 1000 puts b (|b| <= 1) below half a step: 0
    mix       (b, -b)      -> (0.75 b, -0.75 b)
    head      identity; logits = head output, so FP32 predicts class 0 when b > 0, class 1 when b < 0.
Under INT8 "sensitive" outputs exactly 0, so its own error is exactly its signal (noise-to-signal 1) and
every prediction becomes class 0 (a tie), while the other units keep |b| >= 0.1 far from 0.
"""
import itertools
import math

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from skdeploy.calib.accuracy import Judge, rank_by_sensitivity, smallest_fallback, unit_errors
from skdeploy.calib.convert import Evaluation, build_int8, int8_with_fallback
from skdeploy.calib.qdq import plan_int8, sensitivity_model
from skdeploy.data import Selection
from skdeploy.data.sources import ArraySamples, InputShape
from skdeploy.errors import SkdeployError
from skdeploy.stages.calibrate import CalibrationSettings

UNITS = ("spread", "sensitive", "mix", "head")
MATRICES = {"spread": [[1000.0, 0.0], [0.0, 1.0]], "sensitive": [[0.0, 1.0], [0.0, -1.0]],
            "mix": [[1.0, 0.25], [0.25, 1.0]], "head": [[1.0, 0.0], [0.0, 1.0]]}
INPUTS = {"spread": "x", "sensitive": "h_spread", "mix": "h_sensitive", "head": "h_mix"}
AMAX = {"x": 1.0, "h_spread": 1000.0, "h_sensitive": 1.0, "h_mix": 0.75, "h_head": 0.75}
POSITIVE, NEGATIVE = 25, 15  # held-out samples by the sign of b
FP16_LIMIT = 32752.0  # calibration's default: half of 65504


def four_conv_model(matrices=MATRICES):
    nodes, initializers = [], []
    for unit in UNITS:
        weight = np.array(matrices[unit], np.float32).reshape(2, 2, 1, 1)
        initializers.append(numpy_helper.from_array(weight, f"w_{unit}"))
        nodes.append(helper.make_node("Conv", [INPUTS[unit], f"w_{unit}"], [f"h_{unit}"], name=unit))
    nodes.append(helper.make_node("Flatten", ["h_head"], ["logits"], name="flatten"))
    graph = helper.make_graph(nodes, "four_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 1, 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def samples(b_scale=1.0, seed=7):
    """(N, 2, 1, 1) float32: a uniform in [-1, 1], |b| uniform in [0.1, 1] * b_scale, 25 b > 0 and 15 b < 0."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, POSITIVE + NEGATIVE)
    signs = rng.permutation([1.0] * POSITIVE + [-1.0] * NEGATIVE)
    b = signs * rng.uniform(0.1, 1.0, POSITIVE + NEGATIVE) * b_scale
    return np.stack([a, b], axis=1).reshape(-1, 2, 1, 1).astype(np.float32)


def held_out(array):
    """A Selection whose every sample is held out (no labels: the reference's predictions are the labels)."""
    source = ArraySamples(array, None, "test samples", InputShape(2, 1, 1), None)
    return Selection(source, [], list(range(len(array))), 0, "")


def hand_ranges():
    return {name: {"absmax": value, "amax": value} for name, value in AMAX.items()}


# ---- an independent model of symmetric INT8 and of each unit's own error ----

def fake_quantize(values, amax):
    step = np.float32(amax) / np.float32(127)
    return np.clip(np.round(values / step), -128, 127) * step


def per_channel(matrix):
    """Each output row scaled so its largest |w| maps to 127, rounded, scaled back."""
    matrix = np.asarray(matrix, np.float64)
    steps = np.abs(matrix).max(axis=1, keepdims=True) / 127
    return np.round(matrix / steps) * steps


def expected_own_errors(array):
    """{unit: sum((INT8 shadow - FP32)^2) / sum(FP32^2)}, each unit fed the exact FP32 input."""
    activation = array.reshape(-1, 2).astype(np.float64)
    errors = {}
    for unit in UNITS:
        matrix = np.asarray(MATRICES[unit], np.float64)
        output = activation @ matrix.T
        shadow = fake_quantize(activation, AMAX[INPUTS[unit]]) @ per_channel(matrix).T
        errors[unit] = float(((shadow - output) ** 2).sum() / (output ** 2).sum())
        activation = output
    return errors


# ---- Judge ----

def test_without_labels_the_drop_is_100_minus_agreement():
    judge = Judge(np.array([0, 1, 2, 1]), None, "onnx-fp32")
    assert judge.score(np.array([0, 1, 1, 1])) == {"images": 4, "reference": "onnx-fp32", "agreement": 0.75,
                                                   "metric": "agreement", "drop": 25.0}


def test_with_labels_the_drop_is_reference_top1_minus_candidate_top1():
    judge = Judge(np.array([0, 1, 2, 1]), np.array([0, 1, 2, 2]), "pytorch")
    # reference right on 3 of 4 (75%); candidate right on 0, 1, 3 (75%) while agreeing on only 0 and 1
    assert judge.score(np.array([0, 1, 1, 2])) == {"images": 4, "reference": "pytorch", "agreement": 0.5,
                                                   "metric": "labels", "reference_top1": 0.75, "top1": 0.75,
                                                   "drop": 0.0}
    better = judge.score(np.array([0, 1, 2, 2]))  # right where the reference is wrong: a negative drop
    assert (better["top1"], better["drop"]) == (1.0, -25.0)


def test_fractions_round_to_five_decimals_and_drops_to_three():
    judge = Judge(np.array([0, 1, 1]), np.array([0, 1, 0]), "onnx-fp32")
    score = judge.score(np.array([2, 1, 2]))  # agrees on 1 of 3; top1 1 of 3; reference top1 2 of 3
    assert (score["agreement"], score["reference_top1"], score["top1"], score["drop"]) == (0.33333, 0.66667, 0.33333,
                                                                                           33.333)
    assert Judge(np.array([0, 1, 1]), None, "onnx-fp32").score(np.array([0, 1, 0]))["drop"] == 33.333


# ---- each unit's own error ----

def test_each_unit_error_is_its_own_quantisation_noise_over_its_signal():
    model, array = four_conv_model(), samples()
    plan = plan_int8(model)
    assert plan.units == list(UNITS)
    shadow, outputs = sensitivity_model(model, plan, AMAX)
    assert outputs == {unit: (f"{unit}_shadow_error", f"{unit}_shadow_signal") for unit in UNITS}
    errors = unit_errors(shadow, outputs, held_out(array), list(range(len(array))), batch_size=7)  # 6 batches
    expected = expected_own_errors(array)
    assert errors["sensitive"] == 1.0  # its INT8 output is exactly 0: the error is the whole signal
    assert expected["sensitive"] == 1.0
    for unit in ("spread", "mix", "head"):
        assert 0.0 < expected[unit] < 1e-3
        assert errors[unit] == pytest.approx(expected[unit], rel=1e-3), unit


def test_the_shadow_model_leaves_the_fp32_outputs_alone():
    model, array = four_conv_model(), samples()
    shadow, _ = sensitivity_model(model, plan_int8(model), AMAX)
    import onnxruntime as ort

    feed = {"x": array}
    cpu = ["CPUExecutionProvider"]
    fp32 = ort.InferenceSession(model.SerializeToString(), providers=cpu).run(["logits"], feed)
    shadowed = ort.InferenceSession(shadow.SerializeToString(), providers=cpu).run(["logits"], feed)
    assert np.array_equal(fp32[0], shadowed[0])
    b = array[:, 1, 0, 0]
    assert np.array_equal(fp32[0], np.stack([0.75 * b, -0.75 * b], axis=1))


def test_a_unit_with_no_signal_has_no_error_and_a_weak_signal_still_counts():
    model = four_conv_model()
    shadow, outputs = sensitivity_model(model, plan_int8(model), AMAX)
    silent = unit_errors(shadow, outputs, held_out(np.zeros((3, 2, 1, 1), np.float32)), [0, 1, 2], 2)
    assert silent == dict.fromkeys(UNITS, 0.0)
    faint = np.array([0.0, 0.1], np.float32).reshape(1, 2, 1, 1)  # "sensitive" signal 0.1^2 * 2 = 0.02
    assert unit_errors(shadow, outputs, held_out(faint), [0], 1)["sensitive"] == 1.0


# ---- ranking ----

def test_the_ranking_puts_the_largest_own_error_first():
    assert rank_by_sensitivity({"a": 0.1, "b": 0.9, "c": 0.5}) == ["b", "c", "a"]
    assert rank_by_sensitivity({"x": 0.2, "y": 0.3, "z": 0.2}) == ["y", "x", "z"]  # ties keep graph order
    assert rank_by_sensitivity({}) == []


def test_the_ranking_of_the_four_conv_model_puts_the_sensitive_layer_first():
    model, array = four_conv_model(), samples()
    shadow, outputs = sensitivity_model(model, plan_int8(model), AMAX)
    errors = unit_errors(shadow, outputs, held_out(array), list(range(len(array))), 16)
    expected = expected_own_errors(array)
    ranked = rank_by_sensitivity(errors)
    assert ranked[0] == "sensitive"
    assert ranked == sorted(UNITS, key=lambda unit: expected[unit], reverse=True)


@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), min_size=0, max_size=8))
@settings(deadline=None)
def test_the_ranking_is_a_stable_descending_order(values):
    errors = {f"unit{i}": value for i, value in enumerate(values)}
    ranked = rank_by_sensitivity(errors)
    assert sorted(ranked) == sorted(errors)
    for earlier, later in itertools.pairwise(ranked):
        assert errors[earlier] > errors[later] or (errors[earlier] == errors[later]
                                                   and int(earlier[4:]) < int(later[4:]))


# ---- the search for the fewest units ----

def search(count, threshold):
    """(smallest_fallback's answer, the k it evaluated in order) for meets(k) = k >= threshold."""
    evaluated = []

    def meets(k):
        evaluated.append(k)
        return k >= threshold

    return smallest_fallback(count, meets), evaluated


@pytest.mark.parametrize("count, threshold, evaluated", [
    (1, 1, []),  # meets(count) is known: nothing to measure
    (5, 1, [1]),
    (7, 3, [1, 2, 4, 3]),
    (4, 4, [1, 2, 3]),  # the gallop stops below count, which is known to meet
    (6, 5, [1, 2, 4, 5]),  # 1, 2, 4 fail; 8 is capped at 6, known; bisect (4, 6)
    (6, 6, [1, 2, 4, 5]),
    (7, 6, [1, 2, 4, 5, 6]),  # bisect (4, 7) takes the lower middle, 5
    (10, 6, [1, 2, 4, 8, 6, 5]),  # gallop 1, 2, 4 fail, 8 meets; bisect (4, 8): 6 meets, 5 fails
    (16, 9, [1, 2, 4, 8, 12, 10, 9]),
])
def test_the_search_gallops_then_bisects(count, threshold, evaluated):
    assert search(count, threshold) == (threshold, evaluated)


def test_every_count_and_every_threshold_up_to_16():
    for count in range(1, 17):
        for threshold in range(1, count + 1):
            answer, evaluated = search(count, threshold)
            assert answer == threshold, (count, threshold)
            assert len(evaluated) == len(set(evaluated)) and count not in evaluated, (count, threshold, evaluated)
            assert all(1 <= k < count for k in evaluated)
            assert len(evaluated) <= 2 * math.ceil(math.log2(count)), (count, threshold, evaluated)


@given(st.integers(1, 5000).flatmap(lambda count: st.tuples(st.just(count), st.integers(1, count))))
@settings(deadline=None)
def test_the_search_finds_any_threshold_in_logarithmic_steps(case):
    count, threshold = case
    answer, evaluated = search(count, threshold)
    assert answer == threshold and len(evaluated) == len(set(evaluated)) and count not in evaluated
    assert len(evaluated) <= 2 * math.ceil(math.log2(count))


# ---- INT8 with units moved back to float ----

def inputs_of(model, node_name):
    return list(next(node for node in model.graph.node if node.name == node_name).input)


def elem_types(model):
    return {init.name: init.data_type for init in model.graph.initializer}


def test_no_fallen_units_is_plain_int8():
    model = four_conv_model()
    quantized = int8_with_fallback(model, (), AMAX, AMAX, CalibrationSettings(fallback="fp16"), [])
    for unit in UNITS:
        assert inputs_of(quantized, unit) == [f"{INPUTS[unit]}_dequantized", f"w_{unit}_dequantized"]
    assert not any(node.op_type == "Cast" for node in quantized.graph.node)


@pytest.mark.parametrize("h_spread_absmax, precision", [
    (FP16_LIMIT, TensorProto.FLOAT16),  # exactly at the limit: FP16
    (32752.001953125, TensorProto.FLOAT),  # the next float32 up: the unit falls back to FP32 instead
])
def test_an_fp16_fallback_unit_goes_fp32_when_its_values_pass_the_limit(h_spread_absmax, precision):
    model = four_conv_model()
    absmax = dict(AMAX, h_spread=h_spread_absmax)
    mixed = int8_with_fallback(model, (), AMAX, absmax, CalibrationSettings(fallback="fp16"), ["sensitive"])
    assert elem_types(mixed)["w_sensitive"] == precision
    assert "w_sensitive_int8" not in elem_types(mixed)
    if precision == TensorProto.FLOAT16:
        assert inputs_of(mixed, "sensitive") == ["h_spread_cast_fp16", "w_sensitive"]
    else:
        assert inputs_of(mixed, "sensitive") == ["h_spread", "w_sensitive"]
    for unit in ("spread", "mix", "head"):
        assert inputs_of(mixed, unit)[1] == f"w_{unit}_dequantized"


def test_an_fp32_fallback_leaves_the_unit_in_float32_and_keep_fp32_units_out_of_int8():
    model = four_conv_model()
    mixed = int8_with_fallback(model, ("head",), AMAX, AMAX, CalibrationSettings(fallback="fp32"), ["sensitive"])
    assert inputs_of(mixed, "sensitive") == ["h_spread", "w_sensitive"]
    assert inputs_of(mixed, "head") == ["h_mix", "w_head"]
    assert inputs_of(mixed, "spread") == ["x_dequantized", "w_spread_dequantized"]
    assert not any(node.op_type == "Cast" for node in mixed.graph.node)
    assert elem_types(mixed)["w_sensitive"] == TensorProto.FLOAT


# ---- the whole INT8 build with a budget ----

def build(budget, fallback="fp16", array=None, matrices=MATRICES, evaluate=True):
    model = four_conv_model(matrices)
    array = samples() if array is None else array
    evaluation = Evaluation(model, None, None, held_out(array), 16) if evaluate else None
    settings = CalibrationSettings(max_top1_drop=budget, fallback=fallback)
    return build_int8(model, hand_ranges(), settings, evaluation)


PLAIN_DROP = 100.0 * NEGATIVE / (POSITIVE + NEGATIVE)  # INT8 ties every logit pair: class 0 for all 40


def test_the_budget_moves_exactly_the_sensitive_layer_to_fp16():
    result, record = build(budget=0.0)
    assert record["quantized_units"] == 4 and record["qdq_tensors"] == 4
    assert record["accuracy_plain_int8"]["drop"] == PLAIN_DROP == 37.5
    assert record["fallback_layers"] == [{"name": "sensitive", "op": "Conv", "own_error": 1.0, "precision": "fp16"}]
    assert record["accuracy"]["drop"] == 0.0 and record["accuracy"]["images"] == 40
    assert record["fallback_search"] == {"1": 0.0, "4": 0.0}  # all four first, then the search tries k = 1
    assert elem_types(result)["w_sensitive"] == TensorProto.FLOAT16
    for unit in ("spread", "mix", "head"):
        assert inputs_of(result, unit) == [f"{INPUTS[unit]}_dequantized", f"w_{unit}_dequantized"]


def test_the_fp32_fallback_moves_the_same_layer_to_fp32():
    result, record = build(budget=0.0, fallback="fp32")
    assert [(layer["name"], layer["precision"]) for layer in record["fallback_layers"]] == [("sensitive", "fp32")]
    assert inputs_of(result, "sensitive") == ["h_spread", "w_sensitive"]
    assert elem_types(result)["w_sensitive"] == TensorProto.FLOAT and record["accuracy"]["drop"] == 0.0
    for unit in ("spread", "mix", "head"):  # only the sensitive layer left INT8
        assert inputs_of(result, unit) == [f"{INPUTS[unit]}_dequantized", f"w_{unit}_dequantized"]


def test_a_drop_exactly_at_the_budget_needs_no_fallback():
    result, record = build(budget=PLAIN_DROP)
    assert record["fallback_layers"] == [] and record["accuracy"] == record["accuracy_plain_int8"]
    assert "fallback_search" not in record
    assert inputs_of(result, "sensitive") == ["h_spread_dequantized", "w_sensitive_dequantized"]


def test_without_a_budget_int8_is_scored_but_nothing_moves():
    result, record = build(budget=None)
    assert record["accuracy"]["drop"] == PLAIN_DROP and record["fallback_layers"] == []
    for unit in INPUTS:  # nothing moved: every unit reads INT8 (dequantized) activations and weights
        assert inputs_of(result, unit) == [f"{INPUTS[unit]}_dequantized", f"w_{unit}_dequantized"]
    _, unscored = build(budget=0.0, evaluate=False)
    assert unscored["accuracy"] is None and unscored["accuracy_plain_int8"] is None


def test_a_budget_even_fp16_cannot_meet_fails_with_the_worst_layers():
    """A head whose two logits differ by 1e-4 of one input: FP16 stores 1.0001 as 1.0, so even with every
    unit in FP16 the logits tie and the drop stays 37.5."""
    tied_head = dict(MATRICES, head=[[1.0, 1.0], [1.0, 1.0001]])
    with pytest.raises(SkdeployError, match=r"^top-1 budget of 5 points cannot be met: plain INT8 drops 37\.50, "
                                            r"and with all 4 quantized layers in fp16 it still drops 37\.50 "
                                            r"\(worst layers by own error: sensitive \(1\), "):
        build(budget=5.0, matrices=tied_head)
