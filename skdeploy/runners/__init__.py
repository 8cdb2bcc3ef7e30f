"""Runners: one interface for PyTorch, onnxruntime and TensorRT (Polygraphy style).

    with OnnxRuntimeRunner("model.onnx") as runner:
        logits = runner.infer({"input": batch})["logits"]
"""
from .base import Runner, TensorSpec
from .onnxrt import OnnxRuntimeRunner

__all__ = ["Runner", "TensorSpec", "OnnxRuntimeRunner"]
