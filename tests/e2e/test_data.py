"""The data layer: the padding rule for static batches, Fashion-MNIST's file layout, picture arrays, and
that skdeploy.data stands on its own (no model, runner or stage is imported with it)."""
import gzip
import struct
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.data import (
    InputShape,
    Preprocessing,
    default_calibration_path,
    fashion_mnist_file,
    load_fashion_mnist,
    open_data,
    open_source,
    pad_batch,
    select_calibration,
)
from skdeploy.errors import SkdeployError
from tests.support.helpers import REPO

IDENTITY_GRAY = Preprocessing(resize=2, crop=(2, 2), mean=(0.0,), std=(1.0,), channel_order="GRAY", scale=1.0)


# ---- padding ------------------------------------------------------------------------------------

def test_pad_batch_repeats_the_last_sample():
    batch = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], np.float32)
    padded = pad_batch(batch, 5)
    np.testing.assert_array_equal(padded, [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    assert pad_batch(batch, 3) is batch and pad_batch(batch, 2) is batch


def distance_from_ten(batch: int) -> onnx.ModelProto:
    """y = 2 * (10 - x) over x (batch, 1, 2, 2), batch static: its values are known by hand for any x,
    and a row of zeros gives 10 and 20, far outside what inputs near 10 give."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1, 2, 2])
    nodes = [helper.make_node("Sub", ["ten", "x"], ["gap"], name="sub"),
             helper.make_node("Mul", ["gap", "two"], ["y"], name="mul")]
    constants = [numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
                 numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    model = helper.make_model(helper.make_graph(nodes, "distance", [x], [y], constants),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_a_padded_static_batch_adds_nothing_to_calibration_ranges(tmp_path):
    """5 samples near 10 through a batch-4 model: the last batch is padded with 3 rows; copies of a real
    sample keep every measured range that of the 5 real samples (zero rows would make it 10 and 20)."""
    from skdeploy.calib.collect import collect_statistics

    inputs = (10.0 + np.random.default_rng(1).uniform(-0.1, 0.1, (5, 1, 2, 2))).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", inputs=inputs)
    shape = InputShape(1, 2, 2)
    selection = select_calibration(open_source(tmp_path / "inputs.npz", shape, None), shape, 5, 0, seed=0)
    histograms, absmax, batch, seconds = collect_statistics(distance_from_ten(4), selection, ["y"], 2048, 512)
    largest_gap = float(np.max(np.abs(np.float32(10.0) - inputs)))
    assert batch == 4 and seconds > 0
    assert absmax["x"] == pytest.approx(float(inputs.max()))
    assert absmax["gap"] == pytest.approx(largest_gap, rel=1e-6)
    assert absmax["y"] == pytest.approx(2 * largest_gap, rel=1e-6)
    assert histograms["y"].counts.sum() == inputs.size  # the padded rows' outputs are dropped


def test_validation_runs_a_static_batch_model_over_any_number_of_samples(tmp_path):
    from skdeploy.runners import OnnxRuntimeRunner

    path = tmp_path / "distance.onnx"
    onnx.save(distance_from_ten(3), str(path))
    inputs = np.arange(7 * 4, dtype=np.float32).reshape(7, 1, 2, 2)
    with OnnxRuntimeRunner(path) as runner:
        got = runner.run_batched(inputs, batch=256)
    np.testing.assert_array_equal(got, 2 * (10 - inputs))  # 7 rows from batches of 3, 3 and a padded 1


# ---- Fashion-MNIST ------------------------------------------------------------------------------

def write_idx(path, array: np.ndarray):
    """A gzipped IDX file of uint8 values: two zero bytes, type 0x08, the rank, big-endian sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_folder(tmp_path):
    """A Fashion-MNIST folder with a 2x2 train split of 2 images and a test split of 3."""
    folder = tmp_path / "fmnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.array([[[9, 9], [9, 9]], [[8, 8], [8, 8]]]))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.array([5, 6]))
    write_idx(folder / "t10k-images-idx3-ubyte.gz",
              np.array([[[0, 1], [2, 3]], [[10, 20], [30, 40]], [[255, 0], [0, 255]]]))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([7, 1, 4]))
    return folder


def test_fashion_mnist_splits_by_file_name(fashion_folder):
    assert fashion_mnist_file("train", fashion_folder) == fashion_folder / "train-images-idx3-ubyte.gz"
    assert fashion_mnist_file("test", fashion_folder) == fashion_folder / "t10k-images-idx3-ubyte.gz"
    images, labels = load_fashion_mnist("train", fashion_folder)
    assert images.shape == (2, 2, 2) and images[1, 0, 0] == 8 and labels.tolist() == [5, 6]
    assert labels.dtype == np.int64
    images, labels = load_fashion_mnist(root=fashion_folder)  # the test split by default
    assert images[2].tolist() == [[255, 0], [0, 255]] and labels.tolist() == [7, 1, 4]
    with pytest.raises(SkdeployError, match="Fashion-MNIST not found in .*empty"):
        load_fashion_mnist(root=fashion_folder.parent / "empty")


def test_validation_data_from_a_fashion_mnist_folder_is_its_test_split(fashion_folder):
    data = open_data(fashion_folder, IDENTITY_GRAY, limit=2)
    assert data.origin == f"fashion-mnist:{fashion_folder}" and len(data) == 2
    assert data.labels.tolist() == [7, 1]
    (start, inputs), = data.batches(8)
    assert start == 0
    np.testing.assert_array_equal(inputs, [[[[0, 1], [2, 3]]], [[[10, 20], [30, 40]]]])


def test_the_demo_model_calibrates_on_the_shipped_set_by_default():
    shipped = default_calibration_path({"model": {"dataset": "fashion-mnist"}})
    # package data (what a wheel carries), a link to the one copy in calibration/
    assert shipped == REPO / "skdeploy" / "data" / "calibration" / "fashion-mnist-train-2048.npz"
    assert shipped.resolve() == REPO / "calibration" / "fashion-mnist-train-2048.npz"
    assert default_calibration_path({"model": {"dataset": "imagenet"}}) is None
    assert default_calibration_path(None) is None


# ---- pictures -----------------------------------------------------------------------------------

def test_single_channel_pictures_with_and_without_a_channel_axis_preprocess_alike():
    half = Preprocessing(resize=2, crop=(2, 2), mean=(0.5,), std=(0.5,), channel_order="GRAY")
    picture = np.array([[0, 255], [255, 0]], np.uint8)
    expected = [[[-1.0, 1.0], [1.0, -1.0]]]  # (x / 255 - 0.5) / 0.5
    np.testing.assert_allclose(half.pixels(picture), expected)
    np.testing.assert_allclose(half.pixels(picture[..., None]), expected)
    np.testing.assert_allclose(half.arrays(np.stack([picture, 255 - picture])[..., None]),
                               [expected, [[[1.0, -1.0], [-1.0, 1.0]]]])


def test_the_data_layer_imports_no_model_runner_or_stage():
    code = ("import sys, skdeploy.data; print(sorted(m for m in sys.modules if m.startswith('skdeploy.') "
            "and not m.startswith('skdeploy.data') and m not in ('skdeploy.errors', 'skdeploy.log')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
