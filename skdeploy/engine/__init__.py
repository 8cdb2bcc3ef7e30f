"""TensorRT engine building for Jetson, desktop/datacenter GPUs and RTX PCs: build plans, the builder run,
engine sidecars. The stage that uses them (settings, entry point, result) is skdeploy.stages.build.

One adapter serves classic `tensorrt` (8.6, 10.x, 11.x) and `tensorrt_rtx`; what differs between them
is spelled out in `skdeploy.trt.Capabilities`. Importing this package imports no TensorRT.
"""
from .builder import onnx_precision, plan_build, plan_onnx
from .layers import layers_path, load_layers
from .sidecar import EngineSection
from .targets import TARGETS, get_target

__all__ = ["EngineSection", "onnx_precision", "plan_build", "plan_onnx", "TARGETS", "get_target", "layers_path",
           "load_layers"]
