"""Device memory, pinned host memory, streams and CUDA graphs for the TensorRT runner.

Two interchangeable backends: pycuda when installed (the Jetson habit), cuda-python's
`cuda.bindings.runtime` otherwise. Both work on the device's primary context, the one TensorRT
itself uses, so pointers and streams from either are valid for TensorRT. Graph capture always goes
through the runtime API (cuda-python), which accepts a pycuda stream handle as well.

TensorRT uses whatever context is current in the calling thread, so every TensorRT call the runner
makes sits inside `memory.bound()`: cuda-python selects the runner's device in that thread
(cudaSetDevice is per thread), pycuda pushes the runner's primary context and pops it afterwards.
"""
from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator

import numpy as np

from ..deps import available, require
from ..errors import MissingDependency, SkdeployError


class DeviceMemory:
    """The operations the TensorRT runner needs; pointers and streams are plain integers."""

    name = "cuda"

    def device(self) -> dict:
        """{"name", "compute_capability": "8.6"} of the current device."""
        raise NotImplementedError

    def create_stream(self) -> int:
        raise NotImplementedError

    def destroy_stream(self, stream: int) -> None:
        raise NotImplementedError

    def alloc_device(self, nbytes: int) -> int:
        raise NotImplementedError

    def free_device(self, pointer: int) -> None:
        raise NotImplementedError

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        """A page-locked uint8 host array of `nbytes`; free it with free_pinned."""
        raise NotImplementedError

    def free_pinned(self, array: np.ndarray) -> None:
        raise NotImplementedError

    def copy_to_device(self, pointer: int, host: np.ndarray, stream: int) -> None:
        raise NotImplementedError

    def copy_to_host(self, host: np.ndarray, pointer: int, stream: int) -> None:
        raise NotImplementedError

    def synchronize(self, stream: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend's own handles (not the buffers, which their owners free)."""

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        """Make this memory's device current in the calling thread for the block (TensorRT calls go here)."""
        yield

    # CUDA graphs (runtime API for both backends)
    def begin_capture(self, stream: int) -> None:
        rt = _runtime()
        _check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture")

    def end_capture(self, stream: int) -> int:
        """End capture and instantiate; returns the executable graph."""
        rt = _runtime()
        graph = _check(rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            return _check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            rt.cudaGraphDestroy(graph)

    def launch_graph(self, graph: int, stream: int) -> None:
        _check(_runtime().cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: int) -> None:
        _runtime().cudaGraphExecDestroy(graph)


def _runtime():
    """cuda-python's runtime API: `cuda.bindings.runtime` (12.6+), or `cuda.cudart` in older releases."""
    if not available("cuda.bindings.runtime") and available("cuda.cudart"):
        return require("cuda.cudart")
    return require("cuda.bindings.runtime")


def _check(result, call: str):
    """cuda-python returns (error, value...) tuples; raise a readable error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        rt = _runtime()
        _, text = rt.cudaGetErrorString(error)
        raise SkdeployError(f"CUDA {call} failed: {text.decode() if isinstance(text, bytes) else text} "
                            f"({getattr(error, 'name', error)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _pinned_view(pointer: int, nbytes: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(pointer), dtype=np.uint8)


class CudaPythonMemory(DeviceMemory):
    """cuda-python's runtime API (`cuda.bindings.runtime`)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        rt = _runtime()
        count = rt.cudaGetDeviceCount()
        if int(count[0]) != 0 or count[1] < 1:
            raise SkdeployError(f"no usable CUDA GPU: cudaGetDeviceCount says "
                                f"{getattr(count[0], 'name', count[0])} (no NVIDIA driver or GPU on this machine?)")
        if device >= count[1]:
            raise SkdeployError(f"CUDA device {device} does not exist; this machine has {count[1]}")
        _check(rt.cudaSetDevice(device), "cudaSetDevice")
        self.index = device
        self._pinned = {}

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        """cudaSetDevice holds per thread, and a runner may be shared by threads: select it every time."""
        _check(_runtime().cudaSetDevice(self.index), "cudaSetDevice")
        yield

    def device(self) -> dict:
        rt = _runtime()
        major = _check(rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, self.index),
                       "cudaDeviceGetAttribute")
        minor = _check(rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, self.index),
                       "cudaDeviceGetAttribute")
        props = _check(rt.cudaGetDeviceProperties(self.index), "cudaGetDeviceProperties")
        name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else str(props.name)
        return {"name": name, "compute_capability": f"{major}.{minor}"}

    def create_stream(self) -> int:
        return int(_check(_runtime().cudaStreamCreate(), "cudaStreamCreate"))

    def destroy_stream(self, stream: int) -> None:
        _runtime().cudaStreamDestroy(stream)

    def alloc_device(self, nbytes: int) -> int:
        return int(_check(_runtime().cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free_device(self, pointer: int) -> None:
        _runtime().cudaFree(pointer)

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        pointer = int(_check(_runtime().cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        array = _pinned_view(pointer, nbytes)
        self._pinned[id(array)] = pointer
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        pointer = self._pinned.pop(id(array), None)
        if pointer is not None:
            _runtime().cudaFreeHost(pointer)

    def copy_to_device(self, pointer: int, host: np.ndarray, stream: int) -> None:
        rt = _runtime()
        _check(rt.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                  stream), "cudaMemcpyAsync")

    def copy_to_host(self, host: np.ndarray, pointer: int, stream: int) -> None:
        rt = _runtime()
        _check(rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                  stream), "cudaMemcpyAsync")

    def synchronize(self, stream: int) -> None:
        _check(_runtime().cudaStreamSynchronize(stream), "cudaStreamSynchronize")


class PyCudaMemory(DeviceMemory):
    """pycuda's driver API on the device's retained primary context (shared with TensorRT)."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        cuda = require("pycuda.driver")
        try:
            self.context = _primary_context(cuda, device)
        except cuda.Error as exc:
            raise SkdeployError(f"no usable CUDA GPU for pycuda: {exc}") from None
        self.cuda = cuda
        self.index = device
        self._streams = {}
        self._allocations = {}

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def device(self) -> dict:
        dev = self.cuda.Device(self.index)
        major, minor = dev.compute_capability()
        return {"name": dev.name(), "compute_capability": f"{major}.{minor}"}

    def create_stream(self) -> int:
        with self.bound():
            stream = self.cuda.Stream()
        self._streams[stream.handle] = stream
        return int(stream.handle)

    def destroy_stream(self, stream: int) -> None:
        """pycuda destroys a stream when its last reference goes, and only inside its context (elsewhere it
        warns "out-of-thread context could not be cleaned up" and leaks it): drop it while bound."""
        with self.bound():
            self._streams.pop(stream, None)

    def alloc_device(self, nbytes: int) -> int:
        with self.bound():
            allocation = self.cuda.mem_alloc(max(nbytes, 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free_device(self, pointer: int) -> None:
        allocation = self._allocations.pop(pointer, None)
        if allocation is not None:
            with self.bound():
                allocation.free()

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        with self.bound():
            return self.cuda.pagelocked_empty(nbytes, np.uint8)

    def free_pinned(self, array: np.ndarray) -> None:
        base = array.base if getattr(array, "base", None) is not None else array
        free = getattr(base, "free", None)
        if free is not None:
            with self.bound():
                free()

    def copy_to_device(self, pointer: int, host: np.ndarray, stream: int) -> None:
        with self.bound():
            self.cuda.memcpy_htod_async(pointer, host, self._streams[stream])

    def copy_to_host(self, host: np.ndarray, pointer: int, stream: int) -> None:
        with self.bound():
            self.cuda.memcpy_dtoh_async(host, pointer, self._streams[stream])

    def synchronize(self, stream: int) -> None:
        with self.bound():
            self._streams[stream].synchronize()

    def close(self) -> None:
        """Drop the streams inside the context. The primary context stays retained (see _primary_context)."""
        with self.bound():
            self._streams.clear()


_PRIMARY_CONTEXTS = {}
_PRIMARY_LOCK = threading.Lock()


def _primary_context(cuda, device: int):
    """The device's primary context, retained once per process and never detached by a runner: pycuda's
    detach() of a primary context that is not current pushes it and releases it without popping, which
    would leave one context on the thread's stack per runner deactivated."""
    with _PRIMARY_LOCK:
        if device not in _PRIMARY_CONTEXTS:
            cuda.init()
            _PRIMARY_CONTEXTS[device] = cuda.Device(device).retain_primary_context()
        return _PRIMARY_CONTEXTS[device]


def open_device_memory(prefer: str | None = None, device: int = 0) -> DeviceMemory:
    """pycuda when installed (or asked for), cuda-python otherwise."""
    if prefer not in (None, "pycuda", "cuda-python"):
        raise SkdeployError(f"unknown CUDA memory backend {prefer!r}; use pycuda or cuda-python")
    if prefer == "pycuda" or (prefer is None and available("pycuda.driver")):
        return PyCudaMemory(device)
    if not (available("cuda.bindings.runtime") or available("cuda.cudart")):
        raise MissingDependency("neither pycuda nor cuda-python is installed; install one with: "
                                "pip install 'skdeploy[cuda-python]' (or 'skdeploy[gpu]' for pycuda)")
    return CudaPythonMemory(device)
