"""TensorRT-RTX (CPU-only build, compute capability 8.6) accepts the graph shapes only calibration makes:
INT8 with layers moved to FP16 by the budget (Casts around them), and FP16 with FP16 I/O and FP32
islands. Plain INT8/FP16 builds of the demo model and SKNet-50 run in test_engine_build.py, through
build-engine's own call of calibrate_model."""
import json

import onnx
import pytest

from skdeploy.calib.convert import int8_with_fallback
from skdeploy.calib.qdq import plan_int8
from skdeploy.stages.build import BuildSettings, build_engine
from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install 'skdeploy[rtx]') builds the engines")

RTX = BuildSettings(backend="tensorrt-rtx", target="rtx", compute_capabilities=["8.6"])


def test_int8_with_fp16_fallback_layers_builds(exported, tmp_path):
    source = exported("sknet-fmnist", dynamic_batch=True)
    base = tmp_path / "demo_int8.onnx"
    calibrate_model(source, base, CalibrationSettings(precision="int8", calib_images=32, holdout_images=0))
    model = onnx.load(source)
    ranges = json.loads((tmp_path / "demo_int8.onnx.ranges.json").read_text())["tensors"]
    amax = {k: v["amax"] for k, v in ranges.items() if "amax" in v}
    absmax = {k: v["absmax"] for k, v in ranges.items()}
    units = plan_int8(model).units
    fallen = [units[0], units[len(units) // 2], units[-1]]  # first conv, a middle unit, the last unit
    mixed = int8_with_fallback(model, (), amax, absmax, CalibrationSettings(fallback="fp16"), fallen)
    counts = {op: sum(n.op_type == op for n in mixed.graph.node) for op in ("Cast", "QuantizeLinear")}
    assert counts["Cast"] >= 2 * len(fallen) and counts["QuantizeLinear"] > 0
    mixed_path = tmp_path / "demo_mixed.onnx"
    onnx.save(mixed, mixed_path)
    engine = build_engine(mixed_path, tmp_path / "demo_mixed.engine", RTX).engine
    assert engine.precision == "int8" and engine.engine_bytes > 100_000


def test_fp16_with_fp16_io_and_fp32_islands_builds(exported, tmp_path):
    source = exported("sknet-fmnist", dynamic_batch=True)
    first_conv = next(n.name for n in onnx.load(source).graph.node if n.op_type == "Conv")
    output = tmp_path / "demo_fp16.onnx"
    calibrate_model(source, output, CalibrationSettings(precision="fp16", calib_images=32, holdout_images=0,
                                                        fp16_io=True, keep_fp32=(first_conv,)))
    engine = build_engine(output, tmp_path / "demo_fp16.engine", RTX).engine
    assert engine.precision == "fp16"
    assert [io["dtype"] for io in engine.io] == ["float16", "float16"]


def test_default_int8_with_mse_ranges_and_spike_free_entropy_ranges_builds(exported, tmp_path):
    """The ranges methods change only the scales of a plain Q/DQ graph: the default (mse) and the entropy
    graphs must both stay what TensorRT-RTX builds, with every planned unit INT8."""
    source = exported("sknet-fmnist", dynamic_batch=True)
    assert CalibrationSettings().method == "mse"
    for method in ("mse", "entropy"):
        output = tmp_path / f"demo_{method}.onnx"
        result = calibrate_model(source, output, CalibrationSettings(method=method, calib_images=32,
                                                                     holdout_images=0))
        assert result.quantized_units == len(plan_int8(onnx.load(source)).units)
        engine = build_engine(output, tmp_path / f"demo_{method}.engine", RTX).engine
        assert engine.precision == "int8" and engine.engine_bytes > 100_000
