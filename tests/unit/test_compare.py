"""skdeploy.compare against numbers worked out by hand: errors, top-k, cosine, SNR, agreement, accuracy."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from skdeploy.compare import (
    Check,
    accuracy,
    compare_outputs,
    logit_agreement,
    merge_comparisons,
    prediction_agreement,
    top_k,
)

SIX_DB = 20 * math.log10(2)  # 6.0206 dB: the noise is half the reference's amplitude
SMALL_INTEGERS = st.integers(-3, 3)


def small_logits(max_rows=6, max_classes=8, values=SMALL_INTEGERS):
    """(rows, classes) float arrays of small integers, so exact ties are common."""
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_classes))
    return shape.flatmap(lambda s: arrays(np.float64, s, elements=values.map(float)))


def ranked_classes(row):
    """Classes best first, ties to the lower index (what np.argmax picks)."""
    return sorted(range(len(row)), key=lambda c: (-row[c], c))


# ---- compare_outputs / merge_comparisons -------------------------------------------------------
def test_compare_outputs_scales_by_largest_reference_magnitude_even_when_negative():
    reference = np.array([[1.0, -4.0], [2.0, 0.0]])
    candidate = np.array([[1.5, -4.0], [2.0, -3.0]])
    # |diff| = [[0.5, 0], [0, 3]]; max |reference| = 4 (from -4, not the largest value 2)
    assert compare_outputs(reference, candidate) == {"max_abs": 3.0, "mean_abs": 0.875, "max_rel": 0.75}


def test_integer_outputs_are_measured_in_float_without_wrap_around():
    reference = np.array([[-128, 100]], dtype=np.int8)  # |-128| does not fit in int8
    candidate = np.array([[-64, 50]], dtype=np.int8)
    assert compare_outputs(reference, candidate) == {"max_abs": 64.0, "mean_abs": 57.0, "max_rel": 0.5}
    metrics = logit_agreement(reference, candidate)  # half amplitude; squares overflow int8
    assert metrics["snr_db"] == pytest.approx(SIX_DB, rel=1e-12)
    assert metrics["max_rel"] == 0.5


def test_compare_outputs_relative_error_below_unit_scale():
    assert compare_outputs(np.array([0.5, -0.25]), np.array([0.25, -0.25]))["max_rel"] == 0.5


def test_compare_outputs_all_zero_reference_reports_absolute_error_as_relative():
    result = compare_outputs(np.zeros(3), np.array([0.25, -0.5, 0.0]))
    assert result == {"max_abs": 0.5, "mean_abs": 0.25, "max_rel": 0.5}


def test_compare_outputs_of_empty_arrays_is_all_zero():
    assert compare_outputs(np.zeros((0, 3)), np.zeros((0, 3))) == {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0}


def test_compare_outputs_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) vs \(3, 2\)"):
        compare_outputs(np.zeros((2, 3)), np.zeros((3, 2)))


def test_merge_takes_worst_max_and_mean_of_means():
    merged = merge_comparisons([{"max_abs": 1.0, "mean_abs": 0.2, "max_rel": 0.5},
                                {"max_abs": 3.0, "mean_abs": 0.6, "max_rel": 0.1}])
    assert merged == {"max_abs": 3.0, "mean_abs": pytest.approx(0.4, abs=1e-15), "max_rel": 0.5}


# ---- top_k --------------------------------------------------------------------------------------
def test_top_k_orders_best_first_and_clips_k_to_class_count():
    logits = np.array([[0.1, 0.9, 0.5, 0.3],
                       [0.7, -1.0, 0.2, 0.8]])
    assert top_k(logits, 1).tolist() == [[1], [3]]
    assert top_k(logits, 2).tolist() == [[1, 2], [3, 0]]
    assert top_k(logits, 4).tolist() == [[1, 2, 3, 0], [3, 0, 2, 1]]
    assert top_k(logits, 10).tolist() == [[1, 2, 3, 0], [3, 0, 2, 1]]


def test_top_k_breaks_ties_to_the_lower_class_like_argmax():
    logits = np.array([[1.0, 1.0, 2.0, 2.0, 0.0, 1.0]])
    assert top_k(logits, 1).tolist() == [[2]]
    assert top_k(logits, 6).tolist() == [[2, 3, 0, 1, 5, 4]]


@settings(deadline=None, max_examples=50)
@given(small_logits(), st.integers(1, 10))
def test_top_k_matches_a_plain_sort(logits, k):
    assert top_k(logits, k).tolist() == [ranked_classes(row)[:k] for row in logits.tolist()]


# ---- logit_agreement: errors, cosine, SNR -------------------------------------------------------
def test_logit_agreement_carries_the_absolute_and_relative_errors():
    metrics = logit_agreement(np.array([[1.0, -4.0], [2.0, 0.0]]), np.array([[1.5, -4.0], [2.0, -3.0]]))
    assert (metrics["max_abs"], metrics["mean_abs"], metrics["max_rel"]) == (3.0, 0.875, 0.75)


def test_cosine_per_sample_mean_and_min():
    reference = np.array([[3.0, 4.0], [1.0, 0.0], [1.0, 2.0], [1.0, 0.0]])
    candidate = np.array([[6.0, 8.0], [0.0, 2.0], [-1.0, -2.0], [1.0, 1.0]])
    # cosines: 1 (same direction), 0 (orthogonal), -1 (opposite), 1/sqrt(2)
    metrics = logit_agreement(reference, candidate)
    assert metrics["cosine_mean"] == pytest.approx((1 + 0 - 1 + 1 / math.sqrt(2)) / 4, rel=1e-12)
    assert metrics["cosine_min"] == pytest.approx(-1.0, rel=1e-12)


def test_cosine_of_short_vectors():
    # norms 0.5 and 0.3: their product 0.15 is below 1 and must still divide the dot product
    metrics = logit_agreement(np.array([[0.3, 0.4]]), np.array([[0.0, 0.3]]))
    assert metrics["cosine_mean"] == pytest.approx(0.8, rel=1e-12)


def test_cosine_of_zero_vectors_is_one_only_when_both_are_zero():
    both_zero = logit_agreement(np.zeros((1, 3)), np.zeros((1, 3)))
    assert both_zero["cosine_mean"] == 1.0
    dead_candidate = logit_agreement(np.array([[1.0, 2.0, 3.0]]), np.zeros((1, 3)))
    assert dead_candidate["cosine_mean"] == 0.0
    zero_reference = logit_agreement(np.zeros((1, 3)), np.array([[0.0, -1.0, 0.5]]))
    assert zero_reference["cosine_mean"] == 0.0


def test_cosine_mean_and_min_when_one_sample_is_dead():
    metrics = logit_agreement(np.array([[1.0, 1.0], [2.0, 0.0]]), np.array([[2.0, 2.0], [0.0, 0.0]]))
    assert (metrics["cosine_mean"], metrics["cosine_min"]) == (pytest.approx(0.5, rel=1e-12), 0.0)


def test_snr_of_half_amplitude_candidate_is_six_db():
    reference = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    assert logit_agreement(reference, 0.5 * reference)["snr_db"] == pytest.approx(6.0206, abs=5e-5)
    assert logit_agreement(reference, 0.5 * reference)["snr_db"] == pytest.approx(SIX_DB, rel=1e-12)
    small = np.array([[0.5, -0.25]])  # a total signal power below 1 is still a signal
    assert logit_agreement(small, 0.5 * small)["snr_db"] == pytest.approx(SIX_DB, rel=1e-12)


def test_snr_sums_squares_over_all_logits():
    # signal (-2)^2 + 1^2 + 0^2 + 3^2 = 14, noise 1^2 + 0 + 1^2 + 0 = 2: 10*log10(7)
    metrics = logit_agreement(np.array([[-2.0, 1.0], [0.0, 3.0]]), np.array([[-1.0, 1.0], [1.0, 3.0]]))
    assert metrics["snr_db"] == pytest.approx(8.450980400142567, rel=1e-12)


def test_snr_is_infinite_without_noise():
    reference = np.array([[1.0, -2.0]])
    assert logit_agreement(reference, reference.copy())["snr_db"] == math.inf
    assert logit_agreement(np.zeros((2, 2)), np.zeros((2, 2)))["snr_db"] == math.inf


@pytest.mark.filterwarnings("error")
def test_snr_of_zero_reference_with_noise_is_minus_infinity_without_warnings():
    assert logit_agreement(np.zeros((1, 2)), np.array([[0.0, 0.1]]))["snr_db"] == -math.inf


@settings(deadline=None, max_examples=50)
@given(arrays(np.float64, (3, 4), elements=st.floats(-100, 100).filter(lambda v: abs(v) > 1e-3)),
       st.floats(-3, 3).filter(lambda s: abs(s - 1) > 1e-3))
def test_snr_of_a_scaled_reference_depends_only_on_the_scale(reference, scale):
    """cand = s*ref leaves noise (1-s)^2 * signal, so SNR = -20*log10|1-s| whatever ref is."""
    expected = -20 * math.log10(abs(1 - scale))
    assert logit_agreement(reference, scale * reference)["snr_db"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


# ---- prediction_agreement / accuracy ------------------------------------------------------------
REFERENCE = np.array([[3, 2, 1, 0],   # class 0, top-2 {0, 1}
                      [0, 3, 2, 1],   # class 1, top-2 {1, 2}
                      [0, 1, 3, 2],   # class 2, top-2 {2, 3}
                      [3, 0, 1, 2],   # class 0, top-2 {0, 3}
                      [3, 1, 2, 0]],  # class 0, top-2 {0, 2}
                     dtype=float)
CANDIDATE = np.array([[3, 2, 1, 0],   # class 0 (agrees), top-2 {0, 1}: overlap 1
                      [0, 2, 3, 1],   # class 2 (differs), top-2 {2, 1}: overlap 1
                      [0, 1, 2, 3],   # class 3 (differs), top-2 {3, 2}: overlap 1
                      [3, 2, 0, 1],   # class 0 (agrees), top-2 {0, 1}: overlap 1/2
                      [1, 3, 2, 0]],  # class 1 (differs), top-2 {1, 2}: overlap 1/2
                     dtype=float)


def test_prediction_agreement_by_hand():
    result = prediction_agreement(REFERENCE, CANDIDATE, k=2)
    assert result["agreement"] == pytest.approx(2 / 5, rel=1e-12)
    assert result["top5_overlap"] == pytest.approx(4 / 5, rel=1e-12)
    assert result["disagreements"] == [1, 2, 4]
    # grouped by the REFERENCE's class: class 0 holds samples 0, 3, 4 (two agree); nobody is class 3
    assert result["per_class"] == [pytest.approx(2 / 3, rel=1e-12), 0.0, 0.0, None]


def test_top5_overlap_divides_by_k_clipped_to_the_class_count():
    result = prediction_agreement(REFERENCE, CANDIDATE)  # k=5 on 4 classes: both sides hold all 4
    assert result["top5_overlap"] == 1.0


def test_prediction_agreement_defaults_to_top_5():
    reference = np.array([[6.0, 5, 4, 3, 2, 1, 0]])
    candidate = reference[:, ::-1].copy()
    # top-5 {0..4} vs {6, 5, 4, 3, 2}: 3 shared of 5 (top-4 would give 1/4, top-6 5/6)
    assert prediction_agreement(reference, candidate)["top5_overlap"] == pytest.approx(0.6, rel=1e-12)


@settings(deadline=None, max_examples=50)
@given(small_logits())
def test_a_candidate_equal_to_the_reference_agrees_everywhere(logits):
    result = prediction_agreement(logits, logits.copy())
    assert result["agreement"] == 1.0 and result["top5_overlap"] == 1.0 and result["disagreements"] == []
    predicted = {ranked_classes(row)[0] for row in logits.tolist()}
    assert result["per_class"] == [1.0 if c in predicted else None for c in range(logits.shape[1])]


def test_accuracy_top1_top2_top3_by_hand():
    logits = np.array([[0.1, 0.7, 0.2],
                       [0.5, 0.3, 0.2],
                       [0.2, 0.3, 0.5],
                       [0.6, 0.3, 0.1]])
    labels = np.array([1, 1, 0, 2])
    # label ranks: 1st, 2nd, 3rd, 3rd
    assert accuracy(logits, labels) == 0.25
    assert accuracy(logits, labels, 1) == 0.25
    assert accuracy(logits, labels, 2) == 0.5
    assert accuracy(logits, labels, 3) == 1.0


@settings(deadline=None, max_examples=50)
@given(small_logits(), st.integers(1, 9), st.data())
def test_accuracy_counts_labels_ranked_within_k(logits, k, data):
    labels = np.array(data.draw(st.lists(st.integers(0, logits.shape[1] - 1), min_size=len(logits),
                                         max_size=len(logits))))
    hits = [ranked_classes(row).index(label) < k for row, label in zip(logits.tolist(), labels, strict=True)]
    assert accuracy(logits, labels, k) == pytest.approx(sum(hits) / len(hits), rel=1e-12)


@pytest.mark.parametrize("value, limit, rule, passed", [
    (0.995, 0.99, ">=", True), (0.98, 0.99, ">=", False), (0.5, 0.5, "<=", True), (0.6, 0.5, "<=", False),
    (0, 0, "==", True), (3, 0, "==", False)])
def test_a_check_decides_by_its_rule(value, limit, rule, passed):
    assert Check.of("x", value, limit, rule)["passed"] is passed


def test_a_number_check_describes_value_rule_and_limit():
    assert Check.of("cosine", 0.523456, 0.99, ">=").describe() == "cosine 0.5235 vs limit >= 0.99"


def test_a_text_check_describes_itself_without_number_formats():
    check = Check.of("manifest preprocessing", "std [0.5]", "the reference's std [1.0]", "==", passed=False)
    assert check.describe() == "manifest preprocessing std [0.5] vs the reference's std [1.0]"
    assert check["passed"] is False


def test_a_check_read_back_from_json_describes_itself_the_same_way():
    check = Check.of("SNR dB", -33.81, 60, ">=")
    assert Check(json.loads(json.dumps(check))).describe() == check.describe() == "SNR dB -33.81 vs limit >= 60"


def test_a_data_origin_is_its_text_with_kind_and_path():
    from skdeploy.data import DataOrigin

    origin = DataOrigin.of("images", "photos/a:b")
    assert origin == "images:photos/a:b" and (origin.kind, origin.path) == ("images", "photos/a:b")
    assert DataOrigin.parse(json.loads(json.dumps(origin))).path == "photos/a:b"


@pytest.mark.parametrize("text", ["photos", ":photos", "images:"])
def test_text_without_kind_and_path_is_no_data_origin(text):
    from skdeploy.data import DataOrigin

    with pytest.raises(ValueError, match="KIND:PATH"):
        DataOrigin.parse(text)
