"""What calibration counts and measures, on tiny graphs run in onnxruntime: a static batch's padding is not
binned, a tensor's largest magnitude may be its most negative value, and the calibration and hold-out
samples never overlap. End-to-end calibrations touch all three without pinning any."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.calib import collect
from skdeploy.data import InputShape, open_source, select_calibration
from skdeploy.data.sources import ArraySamples, UnreadableSample

SHAPE = InputShape(1, 4, 4)


def scaled_model(batch, factor):
    """x -> Relu(x) -> y = factor * Relu(x) -> out = y + 0: a static or dynamic batch of 1x4x4 samples."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 4, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 1, 4, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "factor"], ["y"]),
             helper.make_node("Add", ["y", "zero"], ["out"])]
    constants = [numpy_helper.from_array(np.array(factor, np.float32), "factor"),
                 numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    return helper.make_model(helper.make_graph(nodes, "scaled", [x], [out], constants),
                             opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def selection_of(tmp_path, inputs, count=None):
    np.save(tmp_path / "inputs.npy", inputs)
    return select_calibration(open_source(tmp_path / "inputs.npy", SHAPE, None), SHAPE, count or len(inputs), 0, seed=0)


def test_the_padding_of_a_static_batch_is_not_binned(tmp_path):
    """6 samples through a batch-4 model: the second batch is padded with 2 copies of its last sample, whose
    16 values each would otherwise be counted; the histogram holds exactly the 6 real samples."""
    inputs = np.random.default_rng(0).uniform(0.1, 1.0, (6, 1, 4, 4)).astype(np.float32)
    inputs[:, 0, 0, 0] = np.arange(1, 7)  # each sample's own peak, so a miscount shows in the counts too
    selection = selection_of(tmp_path, inputs)
    statistics = collect.collect_statistics(scaled_model(4, 1.0), selection, ["r"], 64, 512)
    assert statistics.batch == 4
    histogram = statistics.histograms["r"]
    assert histogram.counts.sum() == 6 * 16 and histogram.absmax == pytest.approx(6.0)


def test_a_tensors_largest_magnitude_is_measured_on_both_signs(tmp_path):
    """y = -3 * Relu(x): every value is negative, so its largest |y| is 3 * max(x), found through its minimum."""
    inputs = np.random.default_rng(1).uniform(-1.0, 2.0, (5, 1, 4, 4)).astype(np.float32)
    selection = selection_of(tmp_path, inputs)
    statistics = collect.collect_statistics(scaled_model("N", -3.0), selection, [], 64, 512, batch_size=2)
    peak = float(np.maximum(inputs, 0).max())
    assert statistics.absmax["y"] == pytest.approx(3 * peak, rel=1e-6)
    assert statistics.absmax["r"] == pytest.approx(peak, rel=1e-6)
    assert statistics.absmax["x"] == pytest.approx(float(np.abs(inputs).max()), rel=1e-6)


class SomeUnreadable(ArraySamples):
    """Array samples of which every 7th cannot be decoded, as a folder with damaged files."""

    def sample(self, index):
        if index % 7 == 3:
            raise UnreadableSample(f"sample {index}")
        return super().sample(index)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("count, holdout", [(10, 20), (30, 100), (50, 0), (1, 1)])
def test_calibration_and_hold_out_samples_never_overlap(seed, count, holdout):
    source = SomeUnreadable(np.zeros((50, 1, 4, 4), np.float32), None, "fifty", SHAPE, None)
    selection = select_calibration(source, SHAPE, count, holdout, seed)
    readable = [i for i in range(50) if i % 7 != 3]
    calibration, held = selection.calibration, selection.holdout
    assert not set(calibration) & set(held)
    assert len(set(calibration)) == len(calibration) and len(set(held)) == len(held)
    assert len(calibration) == min(count, len(readable))
    assert len(held) == min(holdout, len(readable) - len(calibration))
    assert set(calibration) | set(held) <= set(readable)
    again = select_calibration(source, SHAPE, count, holdout, seed)
    assert (again.calibration, again.holdout) == (calibration, held)  # the seed decides both
