"""What an engine file says about itself, sidecar or not. A TensorRT or TensorRT-RTX plan is opaque bytes:
only the runtime that built it can read it, and it needs a GPU to. So the file's size, sha256 and first
bytes are always given, and then the installed runtime tries: where it deserialises the plan (a GPU, the
right version), its IO tensors and layer count; where it cannot, its reason in one line."""
from typing import Any

from ..errors import MissingDependency, SkdeployError
from ..fileio import PathLike, existing_file, readable_path, sha256_file
from ..trt import BACKENDS, TITLES, first_installed, installed, load_backend
from .network import capturing_logger

HEAD_BYTES = 4  # a plan's first bytes: a tag (TensorRT-RTX 1.x plans start with b"vtrt")


def _head(data: bytes) -> str:
    head = data[:HEAD_BYTES]
    return head.decode("ascii") if head.isascii() and head.decode("ascii").isprintable() else head.hex()


def summarize_engine(path: PathLike, backend: str | None = None) -> dict:
    """{file, bytes, sha256, format "engine", head, runtime}: `runtime` is what `backend` (the sidecar's, else
    the first installed) makes of the plan: {backend, version, deserialized, ...}, or None when no TensorRT
    is installed."""
    path = existing_file(path)
    data = readable_path(path).read_bytes()
    summary = {"file": str(path), "bytes": len(data), "sha256": sha256_file(path), "format": "engine",
               "head": _head(data)}
    backend = backend if backend in BACKENDS and installed(backend) else first_installed()
    summary["runtime"] = _deserialize(backend, data) if backend else None
    return summary


def _deserialize(backend: str, data: bytes) -> dict:
    """Try the plan in `backend`'s runtime; every failure, a missing GPU first of all, is a reason."""
    try:
        trt, _ = load_backend(backend)
    except (MissingDependency, SkdeployError) as exc:
        return {"backend": backend, "deserialized": False, "reason": str(exc)}
    logger = capturing_logger(trt)
    result = {"backend": backend, "version": getattr(trt, "__version__", None), "deserialized": False}
    try:
        engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    except Exception as exc:  # the bindings raise TypeError/RuntimeError and friends, no common base
        engine, logger.errors = None, [*logger.errors, f"{type(exc).__name__}: {exc}"]
    if engine is None:
        reason = logger.errors[0].strip().splitlines()[0] if logger.errors else "no reason given"
        result["reason"] = (f"{TITLES[backend]} could not deserialise the plan here (it needs the runtime that "
                            f"built it and a GPU it supports): {reason}")
        return result
    result.update(deserialized=True, layers=int(engine.num_layers), io=[_tensor(engine, index)
                                                                         for index in range(engine.num_io_tensors)])
    return result


def _tensor(engine: Any, index: int) -> dict:
    name = engine.get_tensor_name(index)
    return {"name": name, "mode": engine.get_tensor_mode(name).name.lower(),
            "dtype": engine.get_tensor_dtype(name).name.lower(),
            "shape": [int(d) if d >= 0 else "?" for d in engine.get_tensor_shape(name)]}
