"""What TensorRT-RTX builds from our graph, on real CPU-only builds: every Conv of the demo INT8 ONNX runs
INT8, and a Conv whose Q/DQ pair is removed is named by the build's precision check. Classic TensorRT's
path (IEngineInspector) is exercised with the recording fake (tests/support/fake_tensorrt.py), as classic
TensorRT cannot run here."""
import json
import sys

import onnx
import pytest

from skdeploy.engine import layers_path
from skdeploy.errors import SkdeployError
from skdeploy.log import QUIET, log
from skdeploy.manifest import load_manifest
from skdeploy.stages.build import BuildSettings, build_engine
from tests.support.fake_tensorrt import make_fake_tensorrt
from tests.support.helpers import run_cli

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install 'skdeploy[rtx]') builds the engines")

RTX = {"backend": "tensorrt-rtx", "compute_capabilities": ["8.6"]}


@pytest.fixture(scope="module")
def demo_int8(exported, tmp_path_factory):
    """The demo model calibrated to Q/DQ INT8 (8 calibration images: placement, not accuracy, matters here)."""
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    path = tmp_path_factory.mktemp("layers") / "demo.int8.onnx"
    with log.verbosity(QUIET):
        calibrate_model(exported("sknet-fmnist", dynamic_batch=True), path,
                        CalibrationSettings(calib_images=8, holdout_images=0))
    return path


def without_qdq_before(model, conv_name):
    """`model` with the Q/DQ pair in front of Conv `conv_name`'s data input removed (the Conv reads FP32)."""
    nodes = {out: node for node in model.graph.node for out in node.output}
    conv = next(n for n in model.graph.node if n.name == conv_name)
    dequantize = nodes[conv.input[0]]
    quantize = nodes[dequantize.input[0]]
    assert (quantize.op_type, dequantize.op_type) == ("QuantizeLinear", "DequantizeLinear")
    conv.input[0] = quantize.input[0]
    readers = [n for n in model.graph.node if set(n.input) & {dequantize.output[0], quantize.output[0]}]
    if not readers:  # nothing else reads the pair: drop it
        model.graph.node.remove(dequantize)
        model.graph.node.remove(quantize)
    return model


def test_demo_int8_engine_runs_every_conv_int8(demo_int8, tmp_path):
    engine = tmp_path / "demo.engine"
    with log.verbosity(QUIET):
        result = build_engine(demo_int8, engine, BuildSettings(**RTX))
    convs = sorted(n.name for n in onnx.load(demo_int8, load_external_data=False).graph.node if n.op_type == "Conv")
    summary = load_manifest(engine)["engine"]["layers"]
    assert summary == json.loads(json.dumps(result.engine.layers))
    assert sorted(summary["convolutions"]["int8"]) == convs and len(convs) == 34
    assert summary["convolutions"]["fp16"] == summary["convolutions"]["fp32"] == []
    assert summary["int8_convolution_share"] == 1.0 and summary["unrealized_int8"] == []
    assert summary["source"] == "build-log" and summary["file"] == "demo.engine.layers.json"
    assert summary["activation_bytes"] > 1_000_000 and summary["weights_bytes"] > 100_000
    assert len(convs) < summary["kernels"] < 150
    full = json.loads(layers_path(engine).read_text())
    assert full["summary"] == summary and len(full["layers"]) >= summary["kernels"]

    shown = run_cli("inspect", engine, "--layers")
    assert shown.exit_code == 0, shown.stderr
    assert f"{summary['kernels']} kernels, 34/34 convolutions INT8" in shown.stdout
    assert "/layers/layers.0/sk/logit_gap" in json.loads(run_cli("inspect", engine, "--layers", "--json").stdout
                                                         )["summary"]["convolutions"]["int8"]


def test_a_conv_without_its_qdq_pair_is_named(demo_int8, tmp_path, capsys):
    conv = "/layers/layers.2/conv3/Conv"
    source = tmp_path / "one-fp32.onnx"
    onnx.save(without_qdq_before(onnx.load(demo_int8), conv), source)
    engine = tmp_path / "one-fp32.engine"
    result = build_engine(source, engine, BuildSettings(**RTX))
    assert result.engine.layers["unrealized_int8"] == [{"conv": conv, "precision": "fp32"}]
    assert conv in result.engine.layers["convolutions"]["fp32"]
    assert f"run in higher precision in the engine (a Q/DQ placement TensorRT could not fuse): {conv} (fp32)" \
        in " ".join(capsys.readouterr().err.split())

    strict = tmp_path / "strict.engine"
    with pytest.raises(SkdeployError, match=f"{conv} \\(fp32\\).*`strict_precision`"):
        build_engine(source, strict, BuildSettings(**RTX, strict_precision=True))
    assert list(tmp_path.glob("strict.engine*")) == []  # nothing written
    cli = run_cli("build-engine", source, "--compute-capability", "8.6", "--strict-precision", "-o", strict)
    assert cli.exit_code == 1 and "--strict-precision makes this an error" in cli.stderr
    assert list(tmp_path.glob("strict.engine*")) == []


def test_classic_tensorrt_reads_the_engine_inspector(demo_int8, tmp_path, monkeypatch):
    """The recording fake stands for classic TensorRT 10.3 (it cannot run here): the build asks for DETAILED
    profiling verbosity and reads the layers through IEngineInspector's JSON."""
    fake = make_fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    source = tmp_path / "one-fp32.onnx"
    onnx.save(without_qdq_before(onnx.load(demo_int8), "/layers/layers.2/conv3/Conv"), source)
    with log.verbosity(QUIET):
        result = build_engine(source, tmp_path / "demo.engine", BuildSettings(backend="tensorrt"))
    assert ("config.profiling_verbosity", "DETAILED") in fake.calls
    assert ("get_engine_information", "JSON") in fake.calls
    summary = result.engine.layers
    assert summary["source"] == "engine-inspector"
    assert summary["convolutions"]["fp32"] == ["/layers/layers.2/conv3/Conv"]
    assert len(summary["convolutions"]["int8"]) == 33
    assert summary["unrealized_int8"] == [{"conv": "/layers/layers.2/conv3/Conv", "precision": "fp32"}]


def test_validation_report_shows_an_engine_candidates_layers(demo_int8, tmp_path):
    """The HTML report's candidate section carries the sidecar's layer summary (engines cannot run here, so
    the section's helper is given the candidate's path directly)."""
    from types import SimpleNamespace

    from skdeploy.report import _layers_note

    engine = tmp_path / "demo.engine"
    with log.verbosity(QUIET):
        build_engine(demo_int8, engine, BuildSettings(**RTX))
    note = _layers_note(SimpleNamespace(path=str(engine)))
    assert "engine layers:" in note and "34/34 convolutions INT8" in note and "activations" in note
    assert _layers_note(SimpleNamespace(path=str(demo_int8))) == ""  # an ONNX candidate has no engine layers
