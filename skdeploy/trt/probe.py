"""The two TensorRT flavours by name: is one installed, load it with its capabilities, or say which pip
extra installs it. Probing never imports TensorRT; only load_backend() does."""
import importlib
import importlib.util
import sys

from ..errors import MissingDependency, UsageError
from .capabilities import capabilities_of

BACKENDS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}  # backend name -> module, classic first
EXTRAS = {"tensorrt": "trt", "tensorrt-rtx": "rtx"}
TITLES = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX"}


def installed(backend: str) -> bool:
    module = BACKENDS[backend]
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def first_installed() -> str | None:
    """The backend to use when none is named: classic TensorRT when installed, else TensorRT-RTX, else None."""
    return next((backend for backend in BACKENDS if installed(backend)), None)


def missing_backend_message(backend: str, reason: str = "") -> str:
    hint = (" (TensorRT for RTX builds 'rtx' targets without a GPU)" if backend == "tensorrt-rtx" else
            "; for RTX targets, which build without a GPU, use `backend=tensorrt-rtx` "
            "(pip install 'skdeploy[rtx]')")
    return (f"the {backend} backend is not installed{f' ({reason})' if reason else ''}; "
            f"install it with: pip install 'skdeploy[{EXTRAS[backend]}]'{hint}")


def load_backend(backend: str) -> tuple:
    """(module, Capabilities) for 'tensorrt' or 'tensorrt-rtx'; one line naming the extra when missing."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(BACKENDS[backend])
    except ImportError as exc:
        raise MissingDependency(missing_backend_message(backend, str(exc))) from None
    return module, capabilities_of(module, backend)
