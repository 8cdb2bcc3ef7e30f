"""Precision for TensorRT 11 / TensorRT-RTX, which read it from the ONNX: INT8 as Q/DQ pairs from
calibration data, FP16 as types, both checked against the FP32 model within an accuracy budget.

    from skdeploy.calib import CalibrationSettings, calibrate_model
    result = calibrate_model("model.onnx", "model_int8.onnx", CalibrationSettings(precision="int8"))

Modules: sources (calibration data), ranges (histograms, max/entropy/percentile), collect (streaming
onnxruntime pass), qdq (placement and insertion), fp16 (conversion), accuracy (held-out check and the
budget search), cache (ranges JSON and TensorRT calibration table), pipeline (the whole stage).
"""
from .pipeline import CalibrationResult, CalibrationSettings, calibrate_model

__all__ = ["CalibrationSettings", "CalibrationResult", "calibrate_model"]
