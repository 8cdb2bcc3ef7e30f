"""Graph passes over ONNX models: BatchNorm folding and the TensorRT-friendly SK select rewrite.

    model, reports = optimize_graph(onnx.load("sknet50.onnx"))          # in memory

Every rewrite is checked in onnxruntime against what it replaces (random inputs, two batch sizes) and
left out when they disagree; see docs/graph-passes.md. The file-to-file stage is skdeploy.stages.optimize.
"""
from .passes import as_report, describe, optimize_graph

__all__ = ["optimize_graph", "as_report", "describe"]
