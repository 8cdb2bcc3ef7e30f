"""skdeploy.stages.build: `build-engine --int8` on an FP32 ONNX calibrates first (against the FP32 PyTorch
model its manifest records), then builds a real TensorRT-RTX engine (CPU-only) of the calibrated ONNX."""
import json

import onnx
import pytest

from skdeploy.manifest import load_manifest
from tests.support.helpers import run_cli

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install 'skdeploy[rtx]') builds the engines")


def test_build_engine_int8_from_fp32_calibrates_then_builds(demo_checkpoint_export, tmp_path):
    _, source = demo_checkpoint_export
    engine_path = tmp_path / "demo.engine"
    result = run_cli("build-engine", source, "--int8", "--calib-images", 16, "--target", "rtx",
                     "--compute-capability", "8.6", "-o", engine_path, "--json")
    assert result.exit_code == 0, result.stderr
    engine = json.loads(result.stdout)
    calibrated = tmp_path / "demo.int8.onnx"  # beside the engine, named after it
    ops = {node.op_type for node in onnx.load(str(calibrated)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert engine["precision"] == "int8" and engine["precision_from"] == "onnx"
    assert engine["source_onnx"]["file"] == str(calibrated)
    assert engine["calibration"] == load_manifest(calibrated)["stages"][-1]
    accuracy = engine["calibration"]["accuracy"]
    # the manifest names the demo checkpoint, so the held-out split is scored against PyTorch
    assert accuracy["reference"] == "pytorch" and accuracy["images"] == 1000
    agreeing = accuracy["agreement"] * 1000  # a fraction of the 1000 samples, not a percentage
    assert 500 <= agreeing <= 1000 and agreeing == pytest.approx(round(agreeing), abs=1e-6)
    stages = [stage["stage"] for stage in load_manifest(engine_path)["stages"]]
    assert stages == ["export", "calibrate", "build-engine"]
