"""Verdicts from numbers: validate's thresholds (exactly at, just above, just below), its error
histogram and batching, and calibration's accuracy judge and fallback search."""
import math

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

from skdeploy.calib.accuracy import Judge, smallest_fallback
from skdeploy.compare import error_histogram
from skdeploy.errors import UsageError
from skdeploy.runners.onnxrt import OnnxRuntimeRunner
from skdeploy.stages.validate import ValidateSettings, check_input_shape, compare_candidate

# Four samples, seven classes. The candidate gets samples 0 and 1 right (top-1 = 0.5), has sample 2's
# label (4) at rank 5 and sample 3's (5) at rank 6 (top-5 = 0.75), and disagrees with FP32 on sample 3
# only (agreement = 0.75). FP32 gets 0, 1 and 3 right: its top-1 is 0.75, a drop of 25 points.
DESCENDING = [6.0, 5, 4, 3, 2, 1, 0]
CANDIDATE = np.array([DESCENDING, [0.0, 6, 5, 4, 3, 2, 1], DESCENDING, DESCENDING])
REFERENCE = np.array([DESCENDING, [0.0, 6, 5, 4, 3, 2, 1], DESCENDING, [0.0, 1, 2, 3, 4, 6, 5]])
LABELS = np.array([0, 1, 4, 5])
REFERENCE_TOP1 = 0.75


# logit closeness (cosine, SNR) has its own tests below; elsewhere its limits are off
CLOSENESS_OFF = {"min_cosine": -1.0, "min_snr_db": -1000.0}


def judged(min_agreement=0.99, max_top1_drop=0.5, labels=LABELS, reference_top1=REFERENCE_TOP1, **extra):
    thresholds = ValidateSettings(min_agreement=min_agreement, max_top1_drop=max_top1_drop,
                                  **{**CLOSENESS_OFF, **extra})
    return compare_candidate(REFERENCE, CANDIDATE, labels, thresholds, reference_top1)


def check_named(result, name):
    return next(check for check in result["checks"] if check["name"] == name)


# ---- ValidateSettings' own checks ---------------------------------------------------------------------
def test_documented_defaults():
    defaults = ValidateSettings()
    assert (defaults.max_top1_drop, defaults.min_agreement, defaults.batch, defaults.limit,
            defaults.max_examples, defaults.min_cosine, defaults.min_snr_db) == (0.5, 0.99, 256, None, 24, None, None)


@pytest.mark.parametrize("fields", [dict(min_agreement=0.0), dict(min_agreement=1.0), dict(max_top1_drop=0.0),
                                    dict(max_top1_drop=100.0), dict(batch=1), dict(limit=1)])
def test_settings_accept_their_boundaries(fields):
    ValidateSettings(**fields)


@pytest.mark.parametrize("fields, argument", [
    (dict(min_agreement=-0.01), "`min_agreement`"), (dict(min_agreement=1.01), "`min_agreement`"),
    (dict(min_agreement=math.nan), "`min_agreement`"), (dict(max_top1_drop=-0.01), "`max_top1_drop`"),
    (dict(batch=0), "`batch`"), (dict(limit=0), "`limit`"), (dict(min_cosine=1.01), "`min_cosine`"),
    (dict(min_cosine=-1.01), "`min_cosine`"), (dict(min_cosine=math.nan), "`min_cosine`"),
    (dict(min_snr_db=math.nan), "`min_snr_db`")])
def test_settings_refuse_values_past_their_boundaries(fields, argument):
    with pytest.raises(UsageError, match=argument) as error:
        ValidateSettings(**fields)
    assert "\n" not in str(error.value)


# ---- compare_candidate: metrics ------------------------------------------------------------------
def test_candidate_metrics_by_hand():
    result = judged()
    metrics = result["metrics"]
    assert metrics["agreement"] == 0.75
    # samples 0-2 share all of their top-5; sample 3: {5, 6, 4, 3, 2} vs {0, 1, 2, 3, 4} share 3
    assert metrics["top5_overlap"] == pytest.approx((3 + 3 / 5) / 4, rel=1e-12)
    assert (metrics["top1"], metrics["top5"], metrics["top1_drop"]) == (0.5, 0.75, 25.0)
    assert result["per_class_agreement"] == [1.0, 1.0, None, None, None, 0.0, None]
    assert result["disagreements"] == 1
    assert result["examples"] == [{"index": 3, "label": 5, "reference": 5, "candidate": 0}]
    # |error| is 0 for 22 logits and 6, 4, 2, 2, 5, 5 on sample 3: 24 bins of 10^(7.778/24) from 1e-7
    # up to 6 put 2 in bin 22 (log10 2 = 0.301) and 4, 5, 6 in bin 23
    assert result["error_histogram"]["counts"] == [22] + [0] * 21 + [2, 4]
    assert result["error_histogram"]["edges"][-1] == pytest.approx(6.0, rel=1e-6)


def test_examples_are_capped_at_max_examples():
    flipped = CANDIDATE[:, ::-1].copy()  # every top-1 becomes a different class
    capped = compare_candidate(REFERENCE, flipped, None, ValidateSettings(max_examples=2))
    assert capped["disagreements"] == 4
    assert [example["index"] for example in capped["examples"]] == [0, 1]
    assert capped["examples"][0] == {"index": 0, "label": None, "reference": 0, "candidate": 6}


def test_without_labels_only_agreement_is_judged():
    result = judged(min_agreement=0.75, max_top1_drop=0.0, labels=None, reference_top1=None)
    assert [check["name"] for check in result["checks"]] == ["non-finite outputs", "top-1 agreement", "cosine",
                                                             "SNR dB"]
    assert "top1" not in result["metrics"] and "top1_drop" not in result["metrics"]
    assert result["passed"] is True
    assert result["examples"][0]["label"] is None


def test_tied_logits_are_not_a_disagreement():
    """Same argmax on both sides (class 5, tied with 7 and 8 in FP32) must count as agreement."""
    reference = np.array([[1.0, 1, 0, 1, 0, 2, 0, 2, 2, 1]])
    candidate = reference.copy()
    candidate[0, 7] = 1.5
    result = compare_candidate(reference, candidate, None, ValidateSettings(min_agreement=1.0, **CLOSENESS_OFF))
    assert result["metrics"]["agreement"] == 1.0 and result["examples"] == [] and result["passed"]


# ---- compare_candidate: thresholds ---------------------------------------------------------------
@pytest.mark.parametrize("min_agreement, passes", [(0.75, True), (math.nextafter(0.75, 1.0), False),
                                                   (0.76, False), (0.74, True), (0.0, True), (1.0, False)])
def test_agreement_threshold_passes_at_equality(min_agreement, passes):
    check = check_named(judged(min_agreement=min_agreement, max_top1_drop=100.0), "top-1 agreement")
    assert check == {"name": "top-1 agreement", "value": 0.75, "limit": min_agreement, "rule": ">=",
                     "passed": passes}


@pytest.mark.parametrize("max_top1_drop, passes", [(25.0, True), (25.01, True), (24.99, False),
                                                   (25.0 - 1e-9, True),  # inside the rounding allowance
                                                   (25.0 - 1e-8, False), (0.0, False), (100.0, True)])
def test_top1_drop_threshold_passes_at_equality(max_top1_drop, passes):
    check = check_named(judged(min_agreement=0.0, max_top1_drop=max_top1_drop), "top-1 drop (points)")
    assert check == {"name": "top-1 drop (points)", "value": 25.0, "limit": max_top1_drop, "rule": "<=",
                     "passed": passes}


def test_top1_drop_equal_to_the_limit_up_to_float_rounding_passes():
    # (0.755 - 0.75) * 100 is 0.5000000000000004 in floating point: still "a drop of 0.5 points"
    # sample 2's label 1 is the candidate's second choice: top-1 3/4 (top-2 would be 4/4)
    result = judged(min_agreement=0.0, max_top1_drop=0.5, labels=np.array([0, 1, 1, 0]), reference_top1=0.755)
    assert result["metrics"]["top1"] == 0.75
    assert result["metrics"]["top1_drop"] == pytest.approx(0.5, abs=1e-12)
    assert result["passed"] is True


def test_a_candidate_that_loses_accuracy_fails_a_finite_budget():
    result = judged(min_agreement=0.0, max_top1_drop=0.5)  # loses 25 points
    assert result["metrics"]["top1_drop"] == 25.0 and result["passed"] is False


def test_a_candidate_that_gains_accuracy_passes_a_zero_budget():
    result = judged(min_agreement=0.0, max_top1_drop=0.0, reference_top1=0.25)  # gains 25 points
    assert result["metrics"]["top1_drop"] == -25.0 and result["passed"] is True


@pytest.mark.parametrize("min_agreement, max_top1_drop, passes", [(0.75, 25.0, True), (0.76, 25.0, False),
                                                                  (0.75, 24.0, False), (0.76, 24.0, False)])
def test_verdict_needs_every_check(min_agreement, max_top1_drop, passes):
    assert judged(min_agreement=min_agreement, max_top1_drop=max_top1_drop)["passed"] is passes


# ---- compare_candidate: logit closeness and finite outputs -----------------------------------------
# cosine: samples 0-2 are identical (1); sample 3 has 36 / (sqrt 91 sqrt 91). SNR: every row's squares
# sum to 91, so the signal is 364; sample 3's differences (-6, -4, -2, 0, 2, 5, 5) square to 110
COSINE = (3 + 36 / 91) / 4
SNR_DB = 10 * math.log10(364 / 110)


@pytest.mark.parametrize("min_cosine, min_snr_db, failed", [
    (COSINE - 1e-9, SNR_DB - 1e-9, []), (COSINE + 1e-9, SNR_DB - 1e-9, ["cosine"]),
    (COSINE - 1e-9, SNR_DB + 1e-9, ["SNR dB"]), (0.9, 6.0, ["cosine", "SNR dB"])])
def test_cosine_and_snr_limits_are_least_values(min_cosine, min_snr_db, failed):
    result = judged(min_agreement=0.0, max_top1_drop=100.0, min_cosine=min_cosine, min_snr_db=min_snr_db)
    assert check_named(result, "cosine")["value"] == pytest.approx(COSINE, rel=1e-12)
    assert check_named(result, "SNR dB")["value"] == pytest.approx(SNR_DB, rel=1e-12)
    assert [check["name"] for check in result["checks"] if not check["passed"]] == failed


@pytest.mark.parametrize("precision, min_cosine, min_snr_db", [
    ("fp32", 0.9999, 60.0), ("fp16", 0.999, 40.0), ("int8", 0.99, 20.0), ("unknown", 0.99, 20.0)])
def test_closeness_limits_default_by_precision(precision, min_cosine, min_snr_db):
    result = compare_candidate(REFERENCE, CANDIDATE, None, ValidateSettings(), precision=precision)
    assert (check_named(result, "cosine")["limit"], check_named(result, "SNR dB")["limit"]) == (min_cosine,
                                                                                              min_snr_db)


def test_logits_fifty_times_too_large_agree_in_direction_but_fail_on_snr():
    """Classifier weights x50 keep every top-1 and every cosine, yet the logits are wrong."""
    result = compare_candidate(REFERENCE, 50 * REFERENCE, None, ValidateSettings(), precision="int8")
    assert result["metrics"]["agreement"] == 1.0 and check_named(result, "cosine")["passed"]
    snr = check_named(result, "SNR dB")
    assert snr["value"] == pytest.approx(-20 * math.log10(49)) and not snr["passed"]  # noise is 49x the signal
    assert not result["passed"]


def test_nan_or_inf_in_the_outputs_fails_the_candidate_whatever_the_limits():
    broken = REFERENCE.astype(np.float64)
    broken[1, 2], broken[2, 0] = np.nan, np.inf
    result = compare_candidate(REFERENCE, broken, LABELS, ValidateSettings(min_agreement=0.0, max_top1_drop=100.0,
                                                                           **CLOSENESS_OFF), REFERENCE_TOP1)
    assert check_named(result, "non-finite outputs") == {"name": "non-finite outputs", "value": 2, "limit": 0,
                                                         "rule": "==", "passed": False}
    assert not result["passed"]
    assert sum(result["error_histogram"]["counts"]) == REFERENCE.size - 2  # the two have no bin


# ---- error_histogram -----------------------------------------------------------------------------
def test_error_histogram_by_hand():
    reference = np.array([1.0, -1.0, 2.0, 0.5, 0.0, 3.0, -2.0])
    errors = np.array([0.0, 5e-7, 2e-6, 3e-6, 7e-6, 5e-5, 1e-4])
    signs = np.array([1, -1, 1, -1, 1, -1, 1])
    # largest error 1e-4 and 3 bins: edges 1e-7, 1e-6, 1e-5, 1e-4 (each a factor 10)
    histogram = error_histogram(reference, reference + signs * errors, bins=3)
    assert histogram["edges"] == pytest.approx([1e-7, 1e-6, 1e-5, 1e-4], rel=1e-6)
    assert histogram["counts"] == [2, 3, 2]


def test_error_histogram_of_no_outputs_is_empty_over_the_smallest_range():
    histogram = error_histogram(np.zeros((0, 10)), np.zeros((0, 10)), bins=2)
    assert histogram["counts"] == [0, 0]
    assert histogram["edges"] == pytest.approx([1e-7, math.sqrt(1e-7 * 1e-6), 1e-6], rel=1e-6)


def test_error_histogram_of_identical_outputs_starts_at_1e7_up_to_1e6():
    histogram = error_histogram(np.ones((2, 3)), np.ones((2, 3)))
    assert len(histogram["edges"]) == 25 and len(histogram["counts"]) == 24
    assert histogram["edges"][0] == pytest.approx(1e-7, rel=1e-12)
    assert histogram["edges"][-1] == pytest.approx(1e-6, rel=1e-6)
    assert histogram["counts"] == [6] + [0] * 23


@settings(deadline=None, max_examples=50)
@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=30), st.integers(1, 30))
def test_error_histogram_counts_every_logit_in_log_spaced_bins(errors, bins):
    errors = np.array(errors)
    histogram = error_histogram(np.zeros_like(errors), errors, bins=bins)
    edges = np.array(histogram["edges"])
    assert sum(histogram["counts"]) == len(errors) and len(edges) == bins + 1
    assert edges[0] == pytest.approx(1e-7, rel=1e-12)
    assert edges[-1] == pytest.approx(max(errors.max(), 1e-6), rel=1e-6) and edges[-1] >= errors.max()
    assert np.allclose(edges[1:] / edges[:-1], (edges[-1] / edges[0]) ** (1 / bins), rtol=1e-9)


# ---- Runner.run_batched / check_input_shape -------------------------------------------------------------
def plus_batch_sum_model(batch):
    """y = x + (sum of x over the batch it came in): each output shows which rows shared its batch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1),
             helper.make_node("Add", ["x", "total"], ["y"])]
    graph = helper.make_graph(nodes, "plus_batch_sum", [x], [y], initializer=[axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


class ProfileRunner(OnnxRuntimeRunner):
    """onnxruntime standing in for an engine whose optimisation profile bounds the batch."""

    def __init__(self, model, limits):
        super().__init__(model)
        self.limits = limits

    def batch_limits(self):
        return self.limits


INPUTS = np.arange(20, dtype=np.float32).reshape(10, 2)  # row i = [2i, 2i + 1]


def expected_for_chunks(sizes, padded_to=None):
    """Each row plus the sum of the rows its chunk ran with: a chunk shorter than `padded_to` ran with its
    last row repeated to fill the batch."""
    rows, start = [], 0
    for size in sizes:
        chunk = INPUTS[start:start + size]
        filler = max(0, (padded_to or 0) - size) * chunk[-1]
        rows.extend(chunk + chunk.sum(axis=0) + filler)
        start += size
    return np.array(rows)


@pytest.mark.parametrize("runner, batch, chunks, padded_to", [
    (OnnxRuntimeRunner(plus_batch_sum_model(4)), 3, [4, 4, 2], 4),  # fixed batch 4, last chunk padded
    (OnnxRuntimeRunner(plus_batch_sum_model("N")), 3, [3, 3, 3, 1], None),  # dynamic: --batch
    (ProfileRunner(plus_batch_sum_model("N"), (1, 4)), 256, [4, 4, 2], None),  # profile max 4 caps --batch
    (ProfileRunner(plus_batch_sum_model("N"), (2, 3)), 256, [3, 3, 3, 1], 2),  # last chunk padded to 2
])
def test_run_batched_chunks_and_pads(runner, batch, chunks, padded_to):
    advanced = []
    with runner:
        outputs = runner.run_batched(INPUTS, batch, advanced.append)
    assert outputs.dtype == np.float32
    np.testing.assert_array_equal(outputs, expected_for_chunks(chunks, padded_to))
    assert advanced == chunks


def test_check_input_shape_compares_fixed_sample_dims_only():
    with OnnxRuntimeRunner(plus_batch_sum_model("N")) as runner:
        check_input_shape(runner, np.zeros((5, 2), np.float32), "model.onnx")
        for wrong, shown in [((5, 3), "(N, 3)"), ((5, 2, 1), "(N, 2, 1)")]:
            with pytest.raises(UsageError) as error:
                check_input_shape(runner, np.zeros(wrong, np.float32), "model.onnx")
            assert str(error.value).startswith(
                f"model.onnx takes inputs (N, 2) but the data is preprocessed to {shown};")


def test_check_input_shape_accepts_any_size_in_a_dynamic_dim():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "any", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "F"])]),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    with OnnxRuntimeRunner(model) as runner:
        check_input_shape(runner, np.zeros((5, 7), np.float32), "any.onnx")


# ---- calibration: Judge.score --------------------------------------------------------------------
def test_judge_without_labels_drop_is_disagreement():
    judge = Judge(reference=np.array([0, 1, 2, 0]), labels=None, reference_kind="pytorch")
    assert judge.score(np.array([0, 1, 2, 1])) == {"images": 4, "reference": "pytorch", "agreement": 0.75,
                                                   "metric": "agreement", "drop": 25.0}


def test_judge_rounds_fractions_to_five_decimals_and_drops_to_thousandths_of_a_point():
    judge = Judge(reference=np.array([0, 1, 2]), labels=None, reference_kind="onnx-fp32")
    score = judge.score(np.array([0, 1, 0]))
    assert (score["agreement"], score["drop"]) == (0.66667, 33.333)


def test_judge_with_labels_drop_is_reference_minus_candidate_accuracy():
    judge = Judge(reference=np.array([0, 1, 2, 0, 1]), labels=np.array([0, 1, 2, 1, 1]), reference_kind="pytorch")
    # FP32 right on 4 of 5 (80%); candidate right on samples 0, 1, 3 (60%), equal to FP32 on 0, 1 (40%)
    assert judge.score(np.array([0, 1, 0, 1, 2])) == {
        "images": 5, "reference": "pytorch", "agreement": 0.4, "metric": "labels",
        "reference_top1": 0.8, "top1": 0.6, "drop": 20.0}


def test_judge_candidate_better_than_reference_has_negative_drop():
    judge = Judge(reference=np.array([0, 0, 0]), labels=np.array([0, 1, 1]), reference_kind="pytorch")
    score = judge.score(np.array([0, 1, 0]))  # right on 2 of 3, FP32 on 1 of 3
    assert (score["reference_top1"], score["top1"], score["drop"]) == (0.33333, 0.66667, -33.333)


# ---- calibration: smallest_fallback --------------------------------------------------------------
def traced_search(count, threshold):
    """smallest_fallback on `k >= threshold`, and the ks it evaluated in order."""
    asked = []
    found = smallest_fallback(count, lambda k: asked.append(k) or k >= threshold)
    return found, asked


@pytest.mark.parametrize("count, threshold, found, asked", [
    (1, 1, 1, []),  # meets(count) is known: nothing to ask
    (10, 1, 1, [1]),
    (10, 3, 3, [1, 2, 4, 3]),  # gallop 1, 2, 4 then bisect (2, 4)
    (10, 10, 10, [1, 2, 4, 8, 9]),  # gallop stops at count without asking it
    (2, 2, 2, [1]),
    (12, 6, 6, [1, 2, 4, 8, 6, 5]),
])
def test_smallest_fallback_gallops_then_bisects(count, threshold, found, asked):
    assert traced_search(count, threshold) == (found, asked)


@settings(deadline=None, max_examples=50)
@given(st.integers(1, 300).flatmap(lambda count: st.tuples(st.just(count), st.integers(1, count))))
def test_smallest_fallback_finds_the_threshold_asking_each_k_once(case):
    count, threshold = case
    found, asked = traced_search(count, threshold)
    assert found == threshold
    assert len(asked) == len(set(asked)) and all(1 <= k < count for k in asked)
    assert len(asked) <= 2 * math.ceil(math.log2(count)) + 1
