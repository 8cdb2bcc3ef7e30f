"""Lazy imports of heavy optional modules, so the base install (numpy, onnx, click) stays enough for
building and validating engines on a target without PyTorch."""
import importlib

from .errors import MissingDependency

_EXTRA_OF = {
    "torch": "export",
    "torchvision": "timm",
    "timm": "timm",
    "onnxruntime": "calib",
    "onnxsim": "export",
    "onnxscript": "export",
    "tensorrt": "trt",
    "tensorrt_rtx": "rtx",
    "pycuda": "gpu",
    "cuda": "cuda-python",
}


def require(module: str):
    """Import `module` or raise MissingDependency naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top, top)
        raise MissingDependency(
            f"{top} is not installed ({exc}); install it with: pip install 'skdeploy[{extra}]'"
        ) from None


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False
