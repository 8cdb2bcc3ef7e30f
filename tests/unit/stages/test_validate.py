"""validate() end to end without PyTorch: tiny ONNX candidates (a 1x2x2 input, three classes) run by
onnxruntime against a saved FP32 reference (.npz), on data held in a small .npz, every number of the
ValidationResult worked out by hand."""
import hashlib
import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from skdeploy.errors import SkdeployError, UsageError
from skdeploy.manifest import FORMAT
from skdeploy.models.entry import ModelEntry
from skdeploy.reference import Reference, save_reference
from skdeploy.stages.validate import ValidateSettings, validate

PREPROCESSING = {"resize": 2, "crop": [2, 2], "mean": [0.0], "std": [1.0], "channel_order": "GRAY"}

# Four 1x2x2 samples, flattened row-major to (a, b, c, d).
INPUTS = np.array([[3, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [1, 0, 0, 2]], np.float32).reshape(4, 1, 2, 2)
LABELS = np.array([0, 1, 2, 0])

# The "rough" candidate computes (a, b, c + d): classes 0, 1, 2, 2.
ROUGH = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
# The "exact" candidate computes (2a, b, c + d/2), which is the FP32 reference below: classes 0, 1, 2, 0.
EXACT = [[2, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0.5]]
REFERENCE_LOGITS = np.array([[6, 0, 0], [0, 2, 0], [0, 0, 1.5], [2, 0, 1]], np.float32)


def linear_onnx(path, weights, batch="N", sample=(1, 2, 2)):
    """An ONNX computing flatten(x) @ weights, with a symbolic or a fixed batch."""
    weights = np.asarray(weights, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *sample])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, weights.shape[1]])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tolist())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def data_file(path, inputs=INPUTS, labels=LABELS):
    arrays = {"inputs": inputs} if labels is None else {"inputs": inputs, "labels": labels}
    np.savez(path, **arrays)
    return path


def saved_reference(path, data_path, logits=REFERENCE_LOGITS, inputs=INPUTS, labels=LABELS, kind="saved"):
    """A saved reference made from `inputs` as validation would have read them from `data_path`."""
    data = {"source": f"npz:{data_path}", "count": len(inputs),
            "inputs_sha256": hashlib.sha256(np.ascontiguousarray(inputs, np.float32).tobytes()).hexdigest()}
    reference = Reference("tiny", kind, ModelEntry(spec="tiny", num_classes=3), PREPROCESSING)
    save_reference(path, np.asarray(logits, np.float32), labels, data, reference)
    return path


@pytest.fixture
def setup(tmp_path):
    """(rough candidate, exact candidate, saved reference, data) in tmp_path."""
    data = data_file(tmp_path / "data.npz")
    return (linear_onnx(tmp_path / "rough.onnx", ROUGH), linear_onnx(tmp_path / "exact.onnx", EXACT),
            saved_reference(tmp_path / "ref.npz", data), data)


def check(candidate, name):
    return next(c for c in candidate.checks if c["name"] == name)


def test_rough_candidate_metrics_by_hand(setup):
    rough, _, reference, data = setup
    result = validate([rough], reference=reference, data=data)
    (candidate,) = result.candidates
    metrics = candidate.metrics
    # errors: sample 0 |3-6| = 3, sample 2 |2-1.5| = 0.5, sample 3 |1-2| and |2-1| = 1; the rest 0
    assert metrics["max_abs"] == 3.0
    assert metrics["mean_abs"] == pytest.approx(5.5 / 12)
    assert metrics["max_rel"] == pytest.approx(3.0 / 6.0)
    # only sample 3 changes direction: (1,0,2).(2,0,1) / (sqrt5 sqrt5) = 4/5
    assert metrics["cosine_min"] == pytest.approx(0.8)
    assert metrics["cosine_mean"] == pytest.approx(3.8 / 4)
    assert metrics["snr_db"] == pytest.approx(10 * math.log10(47.25 / 11.25))
    assert metrics["agreement"] == 0.75 and metrics["top5_overlap"] == 1.0
    assert metrics["top1"] == 0.75 and metrics["top5"] == 1.0 and metrics["top1_drop"] == pytest.approx(25.0)
    # FP32 predicts class 0 for samples 0 and 3 (the candidate keeps only 0), classes 1 and 2 once each
    assert candidate.per_class_agreement == [0.5, 1.0, 1.0]
    assert candidate.disagreements == 1
    assert candidate.examples == [{"index": 3, "label": 0, "reference": 0, "candidate": 2}]
    # 8 logits with error 0 land in the first bin, the 0.5, the 1s and the 3 near the top
    counts = candidate.error_histogram["counts"]
    assert sum(counts) == 12 and counts[0] == 8 and counts[-1] == 1
    assert candidate.error_histogram["edges"][-1] == pytest.approx(3.0)


def test_one_failing_candidate_fails_the_validation_and_keeps_the_order(setup):
    rough, exact, reference, data = setup
    settings = ValidateSettings(min_agreement=0.8, max_top1_drop=20.0)
    result = validate([exact, rough], reference=reference, data=data, settings=settings)
    assert [c.name for c in result.candidates] == ["exact.onnx", "rough.onnx"]
    assert [c.path for c in result.candidates] == [str(exact), str(rough)]
    exact_result, rough_result = result.candidates
    assert exact_result.passed and exact_result.failed_checks() == []
    assert exact_result.metrics["snr_db"] == math.inf and exact_result.metrics["max_abs"] == 0.0
    assert exact_result.metrics["top1_drop"] == 0.0 and exact_result.disagreements == 0
    assert not rough_result.passed
    # no manifest: precision unknown, so INT8's default limits (cosine 0.99, 20 dB) judge its 0.95 and 6.2 dB
    assert [c["name"] for c in rough_result.failed_checks()] == ["top-1 agreement", "cosine", "SNR dB",
                                                                 "top-1 drop (points)"]
    assert check(rough_result, "top-1 agreement") == {"name": "top-1 agreement", "value": 0.75, "limit": 0.8,
                                                      "rule": ">=", "passed": False}
    drop = check(rough_result, "top-1 drop (points)")
    assert (drop["limit"], drop["rule"], drop["passed"]) == (20.0, "<=", False)
    assert drop["value"] == pytest.approx(25.0)
    assert not result.passed and result.record()["passed"] is False


def test_every_candidate_within_the_thresholds_passes(setup):
    rough, exact, reference, data = setup
    # rough's cosine is 3.8 / 4 = 0.95 and its SNR 10 log10(47.25 / 11.25) = 6.23 dB
    settings = ValidateSettings(min_agreement=0.75, max_top1_drop=25.0, min_cosine=0.95, min_snr_db=6.2)
    result = validate([rough, exact], reference=reference, data=data, settings=settings)
    assert result.passed and all(c.passed for c in result.candidates)
    assert result.record()["passed"] is True


def test_only_the_top1_drop_can_fail_a_candidate(setup):
    rough, _, reference, data = setup
    result = validate([rough], reference=reference, data=data,
                      settings=ValidateSettings(min_agreement=0.5, max_top1_drop=24.9, min_cosine=0.9,
                                                min_snr_db=6.0))
    assert [c["name"] for c in result.candidates[0].failed_checks()] == ["top-1 drop (points)"]
    assert not result.passed


def test_reference_and_data_entries(setup):
    rough, _, reference, data = setup
    settings = ValidateSettings(min_agreement=0.5, max_top1_drop=30.0)
    result = validate([rough], reference=reference, data=data, settings=settings)
    assert result.reference == {"source": "saved ref.npz (tiny)", "kind": "saved", "model": "tiny",
                                "top1": 1.0, "top5": 1.0}
    assert result.data == {"source": f"npz:{data}", "count": 4, "labels": True,
                           "inputs_sha256": hashlib.sha256(INPUTS.tobytes()).hexdigest(), "class_names": [],
                           "preprocessing": {"resize": 2, "crop": [2, 2], "mean": [0.0], "std": [1.0],
                                             "channel_order": "GRAY", "interpolation": "bilinear",
                                             "scale": 1 / 255, "layout": "NCHW", "in_graph": False,
                                             "raw_dtype": "uint8"}}
    assert result.thresholds is settings and result.saved_reference is None
    assert len(result.samples) == 4
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in result.samples.batches(3)]), INPUTS)
    (candidate,) = result.candidates
    assert (candidate.runner, candidate.precision) == ("onnxruntime", "unknown")
    assert 0 <= candidate.seconds < 60  # the elapsed time of a four-sample run
    record = result.record()
    assert record["thresholds"] == {"max_top1_drop": 30.0, "min_agreement": 0.5, "batch": 256, "limit": None,
                                    "max_examples": 24, "min_cosine": None, "min_snr_db": None}
    assert record["candidates"][0]["metrics"]["agreement"] == 0.75
    assert json.loads(json.dumps(record)) == record


def test_precision_and_preprocessing_come_from_the_candidates_manifest(setup):
    rough, _, reference, data = setup
    manifest = {"format": FORMAT, "model": {"spec": "tiny", "dataset": "fashion-mnist"},
                "preprocessing": PREPROCESSING, "stages": [{"stage": "calibrate", "precision": "int8"}]}
    (rough.parent / "rough.onnx.json").write_text(json.dumps(manifest))
    result = validate([rough], reference=reference, data=data)
    assert result.candidates[0].precision == "int8"
    assert result.data["class_names"][:2] == ["T-shirt/top", "Trouser"] and len(result.data["class_names"]) == 10


def test_a_manifest_whose_preprocessing_is_not_the_saved_references_fails(setup):
    """The float inputs pass through unchanged, so only the manifests' comparison can see the change."""
    _, exact, reference, data = setup
    manifest = {"format": FORMAT, "model": {"spec": "tiny"}, "preprocessing": {**PREPROCESSING, "std": [0.5]},
                "stages": []}
    (exact.parent / "exact.onnx.json").write_text(json.dumps(manifest))
    result = validate([exact], reference=reference, data=data)
    (candidate,) = result.candidates
    assert candidate.failed_checks() == [{"name": "manifest preprocessing", "value": "std [0.5]",
                                          "limit": "the reference's std [1.0]", "rule": "==", "passed": False}]
    assert candidate.failure_reasons() == "manifest preprocessing std [0.5] vs the reference's std [1.0]"
    assert result.data["preprocessing"]["std"] == [1.0] and not result.passed


def test_deploy_names_a_failed_text_check_as_validate_does(setup, tmp_path):
    """The preprocessing check's value is text: deploy's failure line describes it through the same Check."""
    from skdeploy.deployment import validation_failure

    _, exact, reference, data = setup
    manifest = {"format": FORMAT, "model": {"spec": "tiny"}, "preprocessing": {**PREPROCESSING, "std": [0.5]},
                "stages": []}
    (exact.parent / "exact.onnx.json").write_text(json.dumps(manifest))
    error = validation_failure(validate([exact], reference=reference, data=data), tmp_path / "work")
    assert str(error) == ("validation failed (manifest preprocessing std [0.5] vs the reference's std [1.0]); "
                          f"no bundle written, work kept in {tmp_path / 'work'} for a rerun")


@pytest.mark.parametrize("recorded, limit, passes", [
    (1.0, 10.0, False),  # no spread at p = 1: rough's 25 points below are over the 10 allowed
    (0.9, 10.0 + 3 * math.sqrt(0.9 * 0.1 / 4) * 100, True)])  # 15 points below, 10 + 45 allowed
def test_labelled_top1_far_below_the_recorded_one_fails(setup, recorded, limit, passes):
    rough, _, reference, data = setup
    manifest = {"format": FORMAT, "model": {"spec": "tiny"}, "preprocessing": PREPROCESSING,
                "stages": [{"stage": "calibrate", "precision": "int8", "accuracy": {"top1": recorded}}]}
    (rough.parent / "rough.onnx.json").write_text(json.dumps(manifest))
    (candidate,) = validate([rough], reference=reference, data=data).candidates
    below = check(candidate, "top-1 below the recorded (points)")
    assert below["value"] == pytest.approx((recorded - 0.75) * 100)
    assert below["limit"] == pytest.approx(limit) and below["passed"] is passes


def test_nan_in_the_inputs_is_refused_naming_the_first_sample(setup, tmp_path):
    rough, _, reference, _ = setup
    inputs = INPUTS.copy()
    inputs[1, 0, 0, 1] = np.nan
    inputs[3, 0, 1, 0] = np.inf
    with pytest.raises(UsageError, match="holds NaN or Inf in sample 1 and 1 more of its batch"):
        validate([rough], reference=reference, data=data_file(tmp_path / "nan.npz", inputs))


def test_without_labels_no_accuracy_is_checked(tmp_path):
    data = data_file(tmp_path / "data.npz", labels=None)
    reference = saved_reference(tmp_path / "ref.npz", data, labels=None)
    rough = linear_onnx(tmp_path / "rough.onnx", ROUGH)
    result = validate([rough], reference=reference, data=data,
                      settings=ValidateSettings(min_agreement=0.7, min_cosine=0.9, min_snr_db=6.0))
    (candidate,) = result.candidates
    assert [c["name"] for c in candidate.checks] == ["non-finite outputs", "top-1 agreement", "cosine", "SNR dB"]
    assert candidate.passed
    assert "top1" not in candidate.metrics and "top1_drop" not in candidate.metrics
    assert candidate.examples == [{"index": 3, "label": None, "reference": 0, "candidate": 2}]
    assert result.data["labels"] is False and "top1" not in result.reference


def test_data_without_labels_takes_the_saved_references_labels(tmp_path):
    data = data_file(tmp_path / "data.npz", labels=None)
    reference = saved_reference(tmp_path / "ref.npz", data, labels=LABELS)
    result = validate([linear_onnx(tmp_path / "rough.onnx", ROUGH)], reference=reference, data=data)
    assert result.data["labels"] is True and result.reference["top1"] == 1.0
    assert result.candidates[0].metrics["top1"] == 0.75


def test_a_saved_reference_brings_its_own_data_and_count(tmp_path):
    data = data_file(tmp_path / "data.npz")
    # saved from the first three samples only: validation must read the same three
    reference = saved_reference(tmp_path / "ref.npz", data, REFERENCE_LOGITS[:3], INPUTS[:3], LABELS[:3])
    result = validate([linear_onnx(tmp_path / "rough.onnx", ROUGH)], reference=reference)
    assert result.data["count"] == 3 and result.data["source"] == f"npz:{data}"
    assert result.candidates[0].metrics["agreement"] == 1.0


def test_limit_takes_the_first_samples(tmp_path):
    data = data_file(tmp_path / "data.npz")
    reference = saved_reference(tmp_path / "ref.npz", data, REFERENCE_LOGITS[:2], INPUTS[:2], LABELS[:2])
    result = validate([linear_onnx(tmp_path / "rough.onnx", ROUGH)], reference=reference, data=data,
                      settings=ValidateSettings(limit=2))
    assert result.data["count"] == 2 and result.thresholds.limit == 2


@pytest.mark.parametrize("batch", [1, 3, 4, 256])
def test_batch_size_does_not_change_the_outputs(setup, batch):
    rough, _, reference, data = setup
    result = validate([rough], reference=reference, data=data, settings=ValidateSettings(batch=batch))
    assert result.candidates[0].metrics["mean_abs"] == pytest.approx(5.5 / 12)
    assert result.candidates[0].examples[0]["index"] == 3


def test_a_static_batch_candidate_runs_padded_batches(setup, tmp_path):
    _, _, reference, data = setup
    # batch 3 over four samples: one full batch and one padded with copies of sample 3
    static = linear_onnx(tmp_path / "static.onnx", EXACT, batch=3)
    result = validate([static], reference=reference, data=data)
    assert result.candidates[0].metrics["max_abs"] == 0.0 and result.passed


def test_a_candidate_with_other_classes_is_a_failure(setup, tmp_path):
    _, _, reference, data = setup
    wide = linear_onnx(tmp_path / "wide.onnx", np.ones((4, 5)))
    with pytest.raises(SkdeployError, match=r"wide.onnx outputs \(5,\) per sample but the reference outputs "
                                            r"\(3,\); is it the same model"):
        validate([wide], reference=reference, data=data)


def test_a_candidate_with_another_input_shape_is_refused(setup, tmp_path):
    _, _, reference, data = setup
    other = linear_onnx(tmp_path / "other.onnx", np.ones((9, 3)), sample=(1, 3, 3))
    with pytest.raises(UsageError, match=r"other.onnx takes inputs .*but the data is preprocessed to "
                                         r"\(N, 1, 2, 2\); check `data`"):
        validate([other], reference=reference, data=data)


def test_a_missing_candidate_is_refused(setup, tmp_path):
    _, _, reference, data = setup
    with pytest.raises(UsageError, match=f"candidate {tmp_path / 'gone.onnx'} does not exist"):
        validate([tmp_path / "gone.onnx"], reference=reference, data=data)


def test_a_candidate_that_is_no_onnx_nor_engine_is_refused(setup, tmp_path):
    _, _, reference, data = setup
    (tmp_path / "model.pt").write_bytes(b"weights")
    with pytest.raises(UsageError, match="model.pt is neither an ONNX file"):
        validate([tmp_path / "model.pt"], reference=reference, data=data)


def test_nothing_to_validate(setup):
    _, _, reference, data = setup
    with pytest.raises(UsageError, match="nothing to validate: give `candidates`"):
        validate([], reference=reference, data=data)


def test_a_saved_reference_cannot_be_saved_again(setup, tmp_path):
    rough, _, reference, data = setup
    with pytest.raises(UsageError, match="`save_reference_to` needs a PyTorch reference"):
        validate([rough], reference=reference, data=data, save_reference_to=tmp_path / "again.npz")


def test_other_data_than_the_saved_references_is_refused(setup, tmp_path):
    rough, _, reference, _ = setup
    other = data_file(tmp_path / "other.npz", inputs=INPUTS * 2)
    with pytest.raises(UsageError, match="input sha256 differs"):
        validate([rough], reference=reference, data=other)


def test_without_data_a_model_with_no_dataset_is_refused(setup):
    """A PyTorch-kind reference asks for the data before any model is loaded, so no torch is needed here."""
    from skdeploy.stages.validate import _samples

    rough = setup[0]

    reference = Reference("tiny", "pytorch", ModelEntry(spec="tiny"), PREPROCESSING)
    with pytest.raises(UsageError, match=r"`data` is required: the model \(tiny\) has no default dataset"):
        _samples(reference, {str(rough): None}, None, None)


def test_an_existing_reference_file_is_not_overwritten_without_force(setup, tmp_path):
    rough, _, reference, data = setup
    (tmp_path / "taken.npz").write_bytes(b"older")
    with pytest.raises(UsageError, match="taken.npz already exists; pass `force=True`"):
        validate([rough], reference=reference, data=data, save_reference_to=tmp_path / "taken.npz")
    assert (tmp_path / "taken.npz").read_bytes() == b"older"
