"""TensorRT engine building for Jetson, desktop/datacenter GPUs and RTX PCs.

    from skdeploy.engine import BuildSettings, build_engine
    result = build_engine("demo.int8.onnx", "engines/demo.engine",
                          BuildSettings(backend="tensorrt-rtx", compute_capabilities=["8.6", "8.9"]))

One adapter serves classic `tensorrt` (8.6, 10.x, 11.x) and `tensorrt_rtx`; what differs between them
is spelled out in `skdeploy.trt.Capabilities`. Importing this package imports no TensorRT. An FP32 ONNX
that must be calibrated for an INT8/FP16 engine goes through `skdeploy.pipeline.build`, which calibrates
and then builds here.
"""
from .build import BuildSettings, build_engine, onnx_precision, plan_build, plan_onnx
from .sidecar import BuildResult, EngineSection
from .targets import TARGETS, get_target

__all__ = ["BuildSettings", "BuildResult", "EngineSection", "build_engine", "onnx_precision", "plan_build",
           "plan_onnx", "TARGETS", "get_target"]
