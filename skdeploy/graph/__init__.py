"""Graph passes over ONNX models: BatchNorm folding and the TensorRT-friendly SK select rewrite.

    model, reports = optimize_graph(onnx.load("sknet50.onnx"))          # in memory
    result = optimize_onnx("elsewhere.onnx", "elsewhere.opt.onnx")       # file to file, with manifest

Every rewrite is checked in onnxruntime against what it replaces (random inputs, two batch sizes) and
left out when they disagree; see docs/graph-passes.md.
"""
from .pipeline import OptimizeResult, describe, optimize_graph, optimize_onnx, show_passes

__all__ = ["optimize_graph", "optimize_onnx", "OptimizeResult", "describe", "show_passes"]
