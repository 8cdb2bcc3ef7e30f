"""Calibration's accuracy check on real onnxruntime sessions: held-out samples through tiny ONNX graphs in
batches (dynamic and static), the FP32 reference's predictions when no PyTorch model can stand in, and the
per-unit noise-to-signal ratios of a shadow graph, all worked out by hand."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from skdeploy.calib import accuracy
from skdeploy.calib.accuracy import onnx_predictions, pytorch_reference, reference_predictions, runs, unit_errors
from skdeploy.data.sources import ArraySamples, InputShape
from skdeploy.data.splits import Selection

# Four 1x2x2 samples flattened to (a, b, c, d); the linear model below scores (a, b, c + d).
INPUTS = np.array([[3, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [1, 0, 0, 2]], np.float32).reshape(4, 1, 2, 2)
CLASSES = [0, 1, 2, 2]
WEIGHTS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], np.float32)


def opset13(graph):
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def linear_model(batch="N"):
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor("w", TensorProto.FLOAT, WEIGHTS.shape, WEIGHTS.ravel().tolist())])
    return opset13(graph)


def shadow_model():
    """Unit "live": error sum(x) over signal sum(x^2); unit "silent": error sum(x) over a zero signal."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["live_error"], keepdims=0),
         helper.make_node("ReduceSumSquare", ["x"], ["live_signal"], keepdims=0),
         helper.make_node("Sub", ["x", "x"], ["zero"]),
         helper.make_node("ReduceSum", ["zero"], ["silent_signal"], keepdims=0)],
        "shadow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, []) for name in
         ("live_error", "live_signal", "silent_signal")])
    return opset13(graph)


@pytest.fixture
def selection():
    source = ArraySamples(INPUTS, np.array(CLASSES), "four samples", InputShape(1, 2, 2), lambda what: None)
    return Selection(source, calibration=[], holdout=[3, 0, 2, 1], skipped=0, sha256="")


@pytest.mark.parametrize("batch, sizes", [(1, [1, 1, 1, 1]), (3, [3, 1]), (4, [4]), (10, [4])])
def test_runs_chunks_a_dynamic_model_by_the_batch_size(selection, batch, sizes):
    chunks = list(runs(linear_model(), selection, selection.holdout, batch, "scoring"))
    assert [real for _, real in chunks] == sizes
    assert [len(outputs["logits"]) for outputs, _ in chunks] == sizes


def test_runs_gives_a_static_model_its_own_batch_and_pads_the_last(selection):
    chunks = list(runs(linear_model(batch=3), selection, selection.holdout, 256, "scoring"))
    assert [real for _, real in chunks] == [3, 1]
    last = chunks[1][0]["logits"]
    # sample 1 alone, padded with two copies of itself
    np.testing.assert_array_equal(last, [[0, 2, 0]] * 3)


@pytest.mark.parametrize("batch_dim", ["N", 3])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnx_predictions_follow_the_indices(selection, batch_dim, batch_size):
    predictions = onnx_predictions(linear_model(batch_dim), selection, selection.holdout, batch_size, "scoring")
    np.testing.assert_array_equal(predictions, [CLASSES[i] for i in selection.holdout])


def test_onnx_predictions_take_a_path_too(selection, tmp_path):
    onnx.save(linear_model(), tmp_path / "linear.onnx")
    np.testing.assert_array_equal(onnx_predictions(str(tmp_path / "linear.onnx"), selection, [2, 1], 4, "x"), [2, 1])


def test_onnx_predictions_of_no_samples_is_empty(selection):
    predictions = onnx_predictions(linear_model(), selection, [], 4, "scoring")
    assert predictions.shape == (0,) and predictions.dtype == np.int64


def test_the_progress_bar_names_the_pass_and_counts_the_samples(selection, capsys):
    onnx_predictions(linear_model(), selection, selection.holdout, 3, "scoring held-out")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("scoring held-out") and "4/4" in line


def test_without_a_checkpoint_the_fp32_onnx_is_the_reference(selection, capsys):
    manifest = {"model": {"spec": "tiny", "checkpoint": None}}
    predictions, kind = reference_predictions(manifest, "tiny.onnx", linear_model(), selection, [0, 3], 2)
    assert kind == "onnx-fp32"
    np.testing.assert_array_equal(predictions, [0, 2])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("FP32 reference") and "2/2" in line


def test_no_pytorch_reference_without_a_recorded_checkpoint():
    assert pytorch_reference({"model": {"spec": "tiny"}}, "tiny.onnx") is None
    assert pytorch_reference(None, "tiny.onnx") is None


def test_no_pytorch_reference_without_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(accuracy, "available", lambda package: package != "torch")
    manifest = {"model": {"spec": "tiny", "checkpoint": {"path": str(tmp_path / "w.pt"), "sha256": "0" * 64}}}
    assert pytorch_reference(manifest, tmp_path / "tiny.onnx") is None


def test_no_pytorch_reference_when_the_artifact_has_no_manifest(tmp_path):
    manifest = {"model": {"spec": "tiny", "checkpoint": {"path": str(tmp_path / "w.pt"), "sha256": "0" * 64}}}
    assert pytorch_reference(manifest, tmp_path / "tiny.onnx") is None


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_unit_errors_are_summed_noise_over_summed_signal(selection, batch_size, capsys):
    outputs = {"live": ("live_error", "live_signal"), "silent": ("live_error", "silent_signal")}
    errors = unit_errors(shadow_model(), outputs, selection, selection.holdout, batch_size)
    # sum(x) over the four samples: 3 + 2 + 2 + 3 = 10; sum(x^2): 9 + 4 + 2 + 5 = 20
    assert errors == {"live": pytest.approx(0.5), "silent": 0.0}
    assert list(errors) == ["live", "silent"]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ranking layers") and "4/4" in line
