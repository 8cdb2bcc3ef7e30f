"""Streaming validation: batches decoded by a thread pool arrive whole and in order, the inputs' sha256
fed batch by batch equals the one-shot hash (and a saved reference's), and the running comparison over
batches gives the whole-array metrics, so no logits need be kept."""
import hashlib
import threading

import numpy as np
import pytest

from skdeploy.compare import (
    ErrorHistogram,
    RunningComparison,
    accuracy,
    error_histogram,
    logit_agreement,
    prediction_agreement,
)
from skdeploy.data import InputsDigest, Preprocessing, Source, UnreadableSample, inputs_sha256, open_data, read_batches
from skdeploy.errors import UsageError
from skdeploy.reference import load_saved_reference
from skdeploy.stages.validate import ValidateSettings, compare_candidate, validate

GRAY = Preprocessing(resize=4, crop=(4, 4), mean=(0.0,), std=(1.0,), channel_order="GRAY", scale=1.0)


class NumberedSamples(Source):
    """Sample i is a 1x2x2 block filled with i; records which threads decoded it."""

    def __init__(self, count, unreadable=()):
        self.count, self.unreadable, self.threads = count, set(unreadable), set()

    def __len__(self):
        return self.count

    def sample(self, index):
        self.threads.add(threading.get_ident())
        if index in self.unreadable:
            raise UnreadableSample(f"sample{index}.png: broken")
        return np.full((1, 2, 2), index, np.float32)


# ---- read_batches -------------------------------------------------------------------------------
def test_batches_come_whole_and_in_order_from_worker_threads():
    source = NumberedSamples(23)
    batches = list(read_batches(source, list(range(23)), 5, workers=4))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert np.concatenate(batches)[:, 0, 0, 0].tolist() == list(range(23))
    assert threading.get_ident() not in source.threads


def test_batches_follow_the_given_indices():
    batches = list(read_batches(NumberedSamples(10), [7, 2, 9], 2))
    assert [b[:, 0, 0, 0].tolist() for b in batches] == [[7, 2], [9]]


def test_an_unreadable_sample_surfaces_as_a_usage_error_naming_it(tmp_path):
    np.save(tmp_path / "data.npy", np.zeros((3, 4, 4), np.uint8))
    data = open_data(tmp_path / "data.npy", GRAY)
    data.source = NumberedSamples(3, unreadable={2})
    with pytest.raises(UsageError, match="cannot read sample2.png: broken"):
        list(data.batches(2))


# ---- the inputs' sha256 -------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3, 7, 100])
def test_streamed_sha256_equals_the_one_shot_hash_for_any_batch(tmp_path, batch):
    pictures = np.random.default_rng(1).integers(0, 256, (7, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "pictures.npy", pictures)
    digest = InputsDigest()
    for _, inputs in open_data(tmp_path / "pictures.npy", GRAY).batches(batch):
        digest.update(inputs)
    # the preprocessing is the identity here (scale 1, mean 0, std 1, no resize): inputs are the pixels
    whole = pictures.astype(np.float32)[:, None]
    assert digest.hexdigest() == hashlib.sha256(whole.tobytes()).hexdigest() == inputs_sha256(whole)


# ---- the running comparison ---------------------------------------------------------------------
def random_logits(rows=50, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    reference = rng.standard_normal((rows, classes)).astype(np.float32)
    candidate = (reference + rng.standard_normal((rows, classes)) * 0.6).astype(np.float32)
    return reference, candidate, rng.integers(0, classes, rows)


@pytest.mark.parametrize("batch", [1, 8, 50])
def test_running_comparison_over_batches_equals_the_whole_array_metrics(batch):
    reference, candidate, labels = random_logits()
    running = RunningComparison(keep=3)
    for start in range(0, len(reference), batch):
        part = slice(start, start + batch)
        running.add(reference[part], candidate[part], labels[part])
    metrics = running.metrics()
    expected = logit_agreement(reference, candidate)
    predictions = prediction_agreement(reference, candidate)
    expected.update(agreement=predictions["agreement"], top5_overlap=predictions["top5_overlap"],
                    top1=accuracy(candidate, labels, 1), top5=accuracy(candidate, labels, 5))
    assert metrics == pytest.approx(expected, rel=1e-12)
    assert running.per_class() == pytest.approx(predictions["per_class"], rel=1e-12)
    assert running.disagreements == len(predictions["disagreements"]) > 3
    first = predictions["disagreements"][:3]
    assert [e["index"] for e in running.examples] == first
    assert [e["label"] for e in running.examples] == labels[first].tolist()
    assert [e["reference"] for e in running.examples] == np.argmax(reference[first], axis=1).tolist()
    assert [e["candidate"] for e in running.examples] == np.argmax(candidate[first], axis=1).tolist()


def test_streamed_histogram_counts_like_the_whole_array_one_away_from_edges():
    reference, candidate, _ = random_logits(rows=200)
    streamed = ErrorHistogram()
    for start in range(0, 200, 16):
        streamed.add(reference[start:start + 16], candidate[start:start + 16])
    result, exact = streamed.result(), error_histogram(reference, candidate)
    assert result["edges"] == pytest.approx(exact["edges"], rel=1e-12)
    assert sum(result["counts"]) == sum(exact["counts"]) == 1400
    # a fine bin is 1/100 decade: only errors that close to an edge may change sides
    errors = np.abs(candidate.astype(np.float64) - reference).ravel()
    near_edge = np.min(np.abs(np.log10(np.maximum(errors, 1e-7))[:, None] - np.log10(exact["edges"])[None]), axis=1)
    assert np.sum(np.abs(np.subtract(result["counts"], exact["counts"]))) <= 2 * np.sum(near_edge < 0.01)


def test_compare_candidate_keeps_the_first_max_examples_disagreements():
    reference, candidate, _ = random_logits()
    judged = compare_candidate(reference, candidate, None, ValidateSettings(max_examples=2))
    assert [e["index"] for e in judged["examples"]] == prediction_agreement(reference, candidate)["disagreements"][:2]


# ---- validate() streams, and its saved reference keeps the streamed hash ----------------------------
def linear_candidate(path, classes=3):
    """An ONNX computing flatten(x) @ W for 1x4x4 inputs (W fixed, seeded)."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(3).standard_normal((16, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tolist())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path, weights


def test_saved_reference_hash_equals_the_streamed_one(tmp_path, monkeypatch):
    """A saved reference made in batches of 3 (its logits are the candidate's own here) validates the
    same data streamed in batches of 4, and its sha256 is the one-shot hash of every input."""
    from skdeploy.models.entry import ModelEntry
    from skdeploy.reference import Reference, save_reference

    pictures = np.random.default_rng(2).integers(0, 256, (10, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", images=pictures, labels=np.arange(10) % 3)
    candidate, weights = linear_candidate(tmp_path / "linear.onnx")
    inputs = pictures.astype(np.float32)[:, None]
    logits = inputs.reshape(10, 16) @ weights
    digest = InputsDigest()
    for _, batch in open_data(tmp_path / "data.npz", GRAY).batches(3):
        digest.update(batch)
    reference = Reference("tiny", "pytorch", ModelEntry(spec="tiny", num_classes=3), GRAY.to_dict())
    data = {"source": f"npz:{tmp_path / 'data.npz'}", "count": 10, "inputs_sha256": digest.hexdigest()}
    save_reference(tmp_path / "ref.npz", logits, np.arange(10) % 3, data, reference)
    assert str(load_saved_reference(tmp_path / "ref.npz").saved["inputs_sha256"]) == inputs_sha256(inputs)
    result = validate([candidate], reference=tmp_path / "ref.npz", settings=ValidateSettings(batch=4))
    assert result.data["inputs_sha256"] == inputs_sha256(inputs) and result.data["count"] == 10
    assert result.passed and result.candidates[0].metrics["max_abs"] < 1e-4


def test_changed_data_fails_the_saved_reference_after_streaming(tmp_path):
    from skdeploy.models.entry import ModelEntry
    from skdeploy.reference import Reference, save_reference

    pictures = np.zeros((4, 4, 4), np.uint8)
    np.save(tmp_path / "data.npy", pictures)
    candidate, _ = linear_candidate(tmp_path / "linear.onnx")
    reference = Reference("tiny", "pytorch", ModelEntry(spec="tiny", num_classes=3), GRAY.to_dict())
    data = {"source": f"npy:{tmp_path / 'data.npy'}", "count": 4, "inputs_sha256": "0" * 64}
    save_reference(tmp_path / "ref.npz", np.zeros((4, 3), np.float32), None, data, reference)
    with pytest.raises(UsageError, match="input sha256 differs"):
        validate([candidate], reference=tmp_path / "ref.npz")
