"""Precision for TensorRT 11 / TensorRT-RTX, which read it from the ONNX: INT8 as Q/DQ pairs from
calibration data, FP16 as types, both checked against the FP32 model within an accuracy budget.

Modules: collect (streaming onnxruntime pass), ranges (histograms, max/entropy/percentile), qdq (placement
and insertion), fp16 (conversion), accuracy (held-out check and the budget search), cache (ranges JSON and
TensorRT calibration table), convert (what the stage does with them), sensitivity (per-layer error of an
INT8 model and the fewest layers to keep wide; sensitivity_page its HTML). The stage itself, its settings and
its result: skdeploy.stages.calibrate.
"""
