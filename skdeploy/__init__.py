"""skdeploy: SKNet models from PyTorch to TensorRT engines.

The runner API is importable from here; heavy modules (torch, onnxruntime, tensorrt) load only
when a runner that needs them is created.
"""
__version__ = "0.1.0"
