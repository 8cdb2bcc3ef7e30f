"""skdeploy: SKNet models from PyTorch to TensorRT engines.

The runner API is importable from here; heavy modules (torch, onnxruntime, tensorrt) load only
when a runner that needs them is created:

    from skdeploy import load_runner, classify
    with load_runner("engines/demo.engine") as runner:
        print(classify(runner, [image]))
"""
__version__ = "0.1.0"

_RUNNER_API = ("Runner", "TensorSpec", "OnnxRuntimeRunner", "TensorRTRunner", "TorchRunner", "load_runner",
               "classify")
__all__ = list(_RUNNER_API)


def __getattr__(name):
    if name in _RUNNER_API:
        from . import runners

        return getattr(runners, name)
    raise AttributeError(f"module 'skdeploy' has no attribute {name!r}")
