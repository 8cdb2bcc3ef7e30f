"""What calibration measures inside the graph (skdeploy.calib.collect), on tiny onnx.helper graphs run in
onnxruntime: which tensors cannot be negative, which ones run into a Relu and are bounded instead of
measured, and that the probed model's extremes and histogram samples are the tensors' own values."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.calib import collect
from skdeploy.calib.ranges import TensorHistogram
from skdeploy.data import InputShape, open_source, select_calibration
from skdeploy.onnx.index import GraphIndex
from skdeploy.onnx.run import run_model

FLOAT = TensorProto.FLOAT


def model_of(nodes, inputs, outputs, initializers=()):
    """inputs / outputs: {name: shape}; initializers: {name: numpy array}; shapes inferred for the rest."""
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in outputs.items()],
        [numpy_helper.from_array(np.asarray(array, np.float32), name) for name, array in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_sign_analysis_follows_ops_that_cannot_make_a_negative_value():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("Add", ["r", "s"], ["sum"]), helper.make_node("Mul", ["sum", "half"], ["scaled"]),
             helper.make_node("Mul", ["r", "minus"], ["flipped"]), helper.make_node("Sub", ["r", "s"], ["gap"]),
             helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"]),
             helper.make_node("Add", ["pooled", "x"], ["mixed"])]
    model = model_of(nodes, {"x": [1, 2, 3, 3]}, {"mixed": None, "flipped": None, "gap": None},
                     {"half": 0.5, "minus": -1.0})
    assert collect.nonnegative_tensors(GraphIndex(model)) == {"r", "s", "sum", "scaled", "pooled"}


def bottleneck(shortcut_reader=False):
    """x -> Conv -> c -> Relu -> r -> Conv -> c2 -> Add(c2, r) -> y -> Relu -> out: a residual block."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r"], ["y"]), helper.make_node("Relu", ["y"], ["out"])]
    outputs = {"out": None}
    if shortcut_reader:  # c2 read by something besides the Add: it is stored, so it is measured
        nodes.append(helper.make_node("Sigmoid", ["c2"], ["gate"]))
        outputs["gate"] = None
    return model_of(nodes, {"x": ["N", 1, 8, 8]}, outputs,
                    {"w1": rng.standard_normal((4, 1, 3, 3)), "w2": rng.standard_normal((4, 4, 3, 3))})


def test_what_only_runs_into_a_relu_is_bounded_not_measured():
    index = GraphIndex(bottleneck())
    assert collect.pre_activations(index, set()) == {"c": ("r", None), "y": ("out", None), "c2": ("out", "r")}
    # a Q/DQ tensor is always measured, and so is one with another reader
    assert collect.pre_activations(index, {"c"}) == {"y": ("out", None), "c2": ("out", "r")}
    assert "c2" not in collect.pre_activations(GraphIndex(bottleneck(shortcut_reader=True)), set())


@pytest.fixture()
def calibration_inputs(tmp_path):
    inputs = np.random.default_rng(1).standard_normal((6, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    shape = InputShape(1, 8, 8)
    return inputs, select_calibration(open_source(tmp_path / "inputs.npy", shape, None), shape, 6, 0, seed=0)


def test_extremes_bounds_and_samples_are_the_tensors_own_values(calibration_inputs, monkeypatch):
    """r has 4 x 8 x 8 = 256 values per sample: with 16 allowed, every 4th row and column is binned (4 x 2 x 2),
    while its largest |x| comes from all of them; c, y and c2 get the bounds pre_activations describes."""
    inputs, selection = calibration_inputs
    model = bottleneck()
    monkeypatch.setattr(collect, "VALUES_PER_SAMPLE", 16)
    histograms, absmax, batch, seconds = collect.collect_statistics(model, selection, ["r"], 2048, 512, batch_size=4)
    order = np.asarray(selection.calibration)
    probe = model_of(list(model.graph.node), {"x": ["N", 1, 8, 8]}, {t: None for t in ("c", "r", "c2", "y", "out")},
                     {i.name: numpy_helper.to_array(i) for i in model.graph.initializer})
    (real,) = run_model(probe, [{"x": inputs[order]}])
    assert absmax["x"] == pytest.approx(np.abs(inputs).max())
    assert absmax["r"] == pytest.approx(real["r"].max()) and absmax["out"] == pytest.approx(real["out"].max())
    assert absmax["c"] == pytest.approx(real["r"].max()) and absmax["y"] == pytest.approx(real["out"].max())
    assert absmax["c2"] == pytest.approx(real["out"].max() + real["r"].max())
    assert absmax["c2"] >= real["c2"].max()  # the bound holds for every value that reaches the Relu
    expected = TensorHistogram(2048)
    for start in range(0, len(order), batch):  # the same batches, binned from every 4th row and column
        chunk = real["r"][start:start + batch]
        expected.update(np.ascontiguousarray(chunk[:, :, ::4, ::4]), peak=float(chunk.max()), nonnegative=True)
    assert histograms["r"].counts.sum() == len(order) * 16
    assert histograms["r"].counts.tolist() == expected.counts.tolist()
    assert histograms["r"].absmax == pytest.approx(real["r"].max()) and seconds > 0
