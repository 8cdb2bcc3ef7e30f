"""Lazy imports of heavy optional modules, so the base install (numpy, onnx, click) stays enough for
building and validating engines on a target without PyTorch."""
import importlib
from types import ModuleType

from .errors import MissingDependency, SkdeployError

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


def require(module: str) -> ModuleType:
    """Import `module` or raise MissingDependency naming the pip extra that installs it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != top:
            raise SkdeployError(f"{top} is installed but cannot be imported: {exc}") from None
        extra = _EXTRA_OF.get(top, top)
        raise MissingDependency(
            f"{top} is not installed ({exc}); install it with: pip install 'skdeploy[{extra}]'"
        ) from None
    except (ImportError, OSError) as exc:  # present, but its libraries did not load (out of memory, say)
        raise SkdeployError(f"{top} is installed but cannot be loaded ({exc}); if memory is limited (ulimit -v), "
                            "allow more") from None


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False
