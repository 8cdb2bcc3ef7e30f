"""skdeploy: SKNet models from PyTorch to TensorRT engines.

The runner API is importable from here; heavy modules (torch, onnxruntime, tensorrt) load only
when a runner that needs them is created:

    from skdeploy import load_runner, classify
    with load_runner("engines/demo.engine") as runner:
        print(classify(runner, [image]))

    from skdeploy import deploy, DeploySettings      # export -> calibrate -> engine -> validate -> bundle
    deploy("bundles/demo", DeploySettings(target="rtx", precision="int8", formats=("triton",)))
"""
__version__ = "0.1.0"

_RUNNER_API = ("Runner", "TensorSpec", "OnnxRuntimeRunner", "TensorRTRunner", "TorchRunner", "load_runner",
               "classify")
_DEPLOY_API = ("deploy", "DeploySettings")
__all__ = list(_RUNNER_API) + list(_DEPLOY_API)


def __getattr__(name):
    if name in _RUNNER_API:
        from . import runners

        return getattr(runners, name)
    if name in _DEPLOY_API:
        from . import deployment

        return getattr(deployment, name)
    raise AttributeError(f"module 'skdeploy' has no attribute {name!r}")
