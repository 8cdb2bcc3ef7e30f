"""debug-precision on real models: the shipped demo exported, calibrated to INT8 by calibrate, and analysed in
onnxruntime; a copy with a planted outlier channel must be found and fixed."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from tests.support.helpers import run_cli

SCALED = "/layers/layers.1/conv1/Conv"
# the SK unit's two branch convolutions both read SCALED's output (through a Relu): its consumers
PLANTED = ["/layers/layers.1/sk/conv.0/conv.0.0/Conv", "/layers/layers.1/sk/conv.1/conv.1.0/Conv"]
FACTOR = 1000.0
FAST = {"samples": 100, "tensors_per_pass": 40}  # one comparison pass over 100 held-out samples


def plant_outlier(source, target) -> int:
    """Scale SCALED's output channel with the largest weights (weights and bias) up by FACTOR and that input
    channel of its consumers down by FACTOR: the same function in FP32 (the Relu between them commutes with
    the scaling), an input range ~FACTOR times too wide for every other channel under per-tensor INT8."""
    from skdeploy.manifest import load_manifest, write_manifest
    from skdeploy.onnx.io import attribute

    model = onnx.load(source)
    nodes = {node.name: node for node in model.graph.node}
    initializers = {init.name: init for init in model.graph.initializer}

    def scale(name, index, factor):
        values = numpy_helper.to_array(initializers[name]).copy()
        values[index] *= factor
        initializers[name].CopyFrom(numpy_helper.from_array(values.astype(np.float32), name))

    weight = numpy_helper.to_array(initializers[nodes[SCALED].input[1]])
    channel = int(np.argmax(np.abs(weight).reshape(len(weight), -1).sum(axis=1)))
    scale(nodes[SCALED].input[1], channel, FACTOR)
    scale(nodes[SCALED].input[2], channel, FACTOR)
    for name in PLANTED:  # grouped convolutions: the channel is one input of one group's filters
        consumer = numpy_helper.to_array(initializers[nodes[name].input[1]])
        per_group, outputs = consumer.shape[1], consumer.shape[0] // attribute(nodes[name], "group", 1)
        group = channel // per_group
        scale(nodes[name].input[1], (slice(group * outputs, (group + 1) * outputs), channel % per_group),
              1.0 / FACTOR)
    onnx.save(model, target)
    write_manifest(target, load_manifest(source), kind="onnx")
    return channel


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory):
    """A folder with the shipped demo model (trained weights, so agreement means something) and a planted copy,
    as FP32 ONNX and INT8 from calibrate on the shipped data: demo.onnx, demo_int8.onnx, planted[_int8].onnx."""
    from skdeploy.log import QUIET, log
    from skdeploy.models import load_model
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model
    from skdeploy.stages.export import ExportSettings, export_model

    folder = tmp_path_factory.mktemp("debug_precision")
    settings = CalibrationSettings(precision="int8", calib_images=256, holdout_images=0)
    with log.verbosity(QUIET):
        export_model(load_model(), folder / "demo.onnx", ExportSettings(dynamic_batch=True))
        calibrate_model(folder / "demo.onnx", folder / "demo_int8.onnx", settings)
        plant_outlier(folder / "demo.onnx", folder / "planted.onnx")
        calibrate_model(folder / "planted.onnx", folder / "planted_int8.onnx", settings)
    return folder


def test_planted_layer_is_equal_in_fp32(demo_int8):
    from skdeploy.onnx.run import run_model

    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    [plain], [planted] = (run_model(demo_int8 / name, [{"input": x}]) for name in ("demo.onnx", "planted.onnx"))
    np.testing.assert_allclose(next(iter(planted.values())), next(iter(plain.values())), rtol=1e-3, atol=1e-3)


def test_planted_layer_ranks_first_is_in_the_minimal_set_and_write_keeps_it_fp16(demo_int8, tmp_path):
    result = run_cli("debug-precision", demo_int8 / "planted_int8.onnx", "--samples", FAST["samples"],
                     "--tensors-per-pass", FAST["tensors_per_pass"], "--min-agreement", 0.99, "--json",
                     "--html", tmp_path / "page.html", "--write", tmp_path / "fixed.onnx")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    layers = record["layers"]
    assert {row["name"] for row in layers[:2]} == set(PLANTED) and layers[0]["rank"] == 1
    # their own error is the worst by far: the other channels of their input are quantized to almost nothing
    others = [row["isolated"]["snr_db"] for row in layers[2:] if row["isolated"]["snr_db"] is not None]
    assert max(row["isolated"]["snr_db"] for row in layers[:2]) < min(others) - 10
    assert layers[0]["agreement_gain"] > 0
    search = record["search"]
    assert search["met"] and set(PLANTED) <= set(search["minimal"]) and search["agreement"] >= 0.99
    assert search["steps"][0]["agreement"] == record["agreement"] < 0.99
    assert [step["agreement"] for step in search["steps"] if step["action"] == "add"][-1] >= 0.99
    for name in PLANTED:
        assert record["flags"][record["flags"].index(name) - 1] == "--keep-fp16"
    # the page plots every layer twice (accumulated, isolated) and rings the kept ones
    page = (tmp_path / "page.html").read_text()
    assert page.count("<circle") == 2 * len(layers) and page.count('data-wide="1"') == 2 * len(search["minimal"])
    # --write went through calibrate: the planted layer computes in FP16, the rest stays INT8
    written = onnx.load(tmp_path / "fixed.onnx")
    producers = {out: node for node in written.graph.node for out in node.output}
    for planted in (node for node in written.graph.node if node.name in PLANTED):
        assert producers[planted.input[0]].op_type == "Cast"
        assert any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in producers[planted.input[0]].attribute)
    assert sum(node.op_type == "QuantizeLinear" for node in written.graph.node) > 20
    stage = json.loads((tmp_path / "fixed.onnx.json").read_text())["stages"][-1]
    assert stage["settings"]["keep_fp16"] == search["minimal"]


def test_report_on_the_demo_is_the_same_across_two_runs_with_the_same_seed(demo_int8):
    from skdeploy.calib.sensitivity import PrecisionSettings, debug_precision
    from skdeploy.log import QUIET, log

    settings = PrecisionSettings(min_agreement=0.999, **FAST)
    with log.verbosity(QUIET):
        first, second = (debug_precision(demo_int8 / "demo_int8.onnx", settings).record() for _ in range(2))
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert len(first["layers"]) == 39 and first["data"]["samples"] == FAST["samples"]
    assert sorted(row["rank"] for row in first["layers"]) == list(range(1, 40))
    gains = [row["agreement_gain"] for row in first["layers"]]
    assert gains == sorted(gains, reverse=True)


def test_a_model_that_is_not_int8_or_not_from_its_fp32_is_refused(demo_int8, tmp_path):
    result = run_cli("debug-precision", demo_int8 / "demo.onnx")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "INT8" in result.stderr
    result = run_cli("debug-precision", demo_int8 / "planted_int8.onnx", "--fp32", demo_int8 / "demo.onnx")
    assert result.exit_code == 2 and "sha256 differs" in result.stderr
    assert not list(tmp_path.iterdir())
