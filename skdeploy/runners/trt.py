"""TensorRT engines (classic `tensorrt` or `tensorrt_rtx`; their runtime APIs agree on what is used here).

    with TensorRTRunner("engines/demo.engine") as runner:
        logits = runner.infer(batch)["logits"]

Before deserialising, the engine's sidecar manifest (ENGINE.json) is checked against the running GPU
and the installed TensorRT, so a mismatch is one sentence instead of a crash inside TensorRT.
Each runner owns one execution context and one CUDA stream; pinned host buffers and device buffers
are reused across calls and grow when a larger batch arrives. Optionally the enqueue is captured as
a CUDA graph per input shape (TensorRT-RTX captures natively through its runtime config). Everything
is released on deactivate() and, as a last resort, at exit. TensorRT-RTX compiles kernels for the GPU on
first use; its runtime cache keeps them in RUNTIME_CACHE (default ENGINE.runtime-cache, or a per-user
cache folder when the engine's folder is read-only) so later starts skip the compilation.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from ..errors import SkdeployError, UsageError
from ..fileio import write_bytes_atomic
from ..log import log
from ..manifest import load_manifest
from ..trt import TITLES, check_compatibility, explain_incompatibility, first_installed, load_backend, sm
from .base import Runner, TensorSpec

# TensorRT DataType name -> numpy dtype (names agree between tensorrt and tensorrt_rtx)
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                "BOOL": np.bool_, "UINT8": np.uint8}


class TensorBuffer:
    """A pinned host buffer and a device buffer of the same capacity, grown (never shrunk) on demand."""

    def __init__(self, memory) -> None:
        self.memory = memory
        self.capacity = 0
        self.host = None
        self.device = 0

    def reserve(self, nbytes: int) -> bool:
        """Make room for `nbytes`; True when the buffers were (re)allocated, so addresses changed."""
        if nbytes <= self.capacity:
            return False
        self.release()
        self.host = self.memory.alloc_pinned(nbytes)
        self.device = self.memory.alloc_device(nbytes)
        self.capacity = nbytes
        return True

    def host_view(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return self.host[:nbytes].view(dtype).reshape(shape)

    def release(self) -> None:
        if self.host is not None:
            self.memory.free_pinned(self.host)
            self.memory.free_device(self.device)
        self.host, self.device, self.capacity = None, 0, 0


_LIVE = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    """Free what runners left active before the CUDA driver tears down."""
    for runner in list(_LIVE):
        runner.deactivate()


class TensorRTRunner(Runner):
    """`engine` is a serialized engine file with its sidecar manifest beside it (ENGINE.json).

    backend: "tensorrt" or "tensorrt-rtx" (default: the sidecar's); memory: a cudamem.DeviceMemory
    (default: pycuda when installed, else cuda-python); cuda_graph: capture the enqueue per input
    shape and replay it; device: the CUDA device index; check_compatibility: refuse engines the sidecar
    says cannot run here; lean_runtime: the building TensorRT's lean runtime library
    (libnvinfer_lean.so.N), needed by version-compatible engines built without it; runtime_cache:
    where TensorRT-RTX keeps the kernels it compiled for this GPU (default: see the module doc); verify:
    refuse an engine that is not the file its sidecar describes (sha256; None: manifest.hash_checks)."""

    name = "tensorrt"

    def __init__(self, engine, backend=None, memory=None, cuda_graph: bool = False, device: int = 0,
                 check_compatibility: bool = True,
                 lean_runtime=None, runtime_cache=None, verify=None) -> None:
        super().__init__()
        self.path = Path(engine)
        self.backend = backend
        self.cuda_graph = cuda_graph
        self.device_index = device
        self.check = check_compatibility
        self.lean_runtime = lean_runtime
        self.runtime_cache_path = Path(runtime_cache) if runtime_cache else None
        self.verify = verify
        self._given_memory = memory
        self.memory = None
        self.manifest = None
        self._reset()

    def _reset(self) -> None:
        self.trt = self.runtime = self.engine = self.context = None
        self.runtime_config = self.runtime_cache = None
        self.native_graphs = False
        self.stream = None
        self.inputs, self.outputs, self.profiles, self.buffers = [], [], {}, {}
        self.graphs = {}
        self._bound_shapes = None
        self._output_shapes = {}

    # ---- activation -------------------------------------------------------------------------
    def activate_impl(self) -> None:
        if not self.path.is_file():
            raise UsageError(f"engine {self.path} does not exist")
        self.manifest = load_manifest(self.path, required=False, verify=self.verify)
        info = (self.manifest or {}).get("engine")
        if self.manifest is not None and info is None:
            kind = (self.manifest.get("artifact") or {}).get("kind", "unknown")
            raise SkdeployError(f"{self.path}'s manifest describes an {kind} artifact, not an engine; "
                                "is it another file renamed?")
        backend = self.backend or (info or {}).get("backend") or first_installed()
        if backend is None:
            raise SkdeployError("neither tensorrt nor tensorrt_rtx is installed; install one with: "
                                "pip install 'skdeploy[trt]' or 'skdeploy[rtx]'")
        self.name = backend
        try:
            self.trt, _ = load_backend(backend)
            self.memory = self._given_memory
            if self.memory is None:
                from .cudamem import open_device_memory

                self.memory = open_device_memory(device=self.device_index)
            gpu = self.memory.device()
            with self.memory.bound():
                self.runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
                if info is None:
                    log.warning(f"no sidecar manifest beside {self.path}; cannot check it fits this GPU and "
                                f"{TITLES[backend]}")
                elif self.check:
                    problems = check_compatibility(info, gpu, getattr(self.trt, "__version__", None),
                                                   getattr(self.runtime, "num_DLA_cores", 0))
                    if problems:
                        raise SkdeployError(explain_incompatibility(self.path, info, gpu, problems))
                self._prepare_runtime(info or {})
                self._deserialize(self.path.read_bytes(), gpu)
        except BaseException:
            self._release()
            raise
        _LIVE.add(self)

    def _prepare_runtime(self, info: dict) -> None:
        """What the sidecar says the runtime needs before it deserialises: the building version's lean
        runtime (EXCLUDE_LEAN_RUNTIME plans), host code allowed (version-compatible plans carry the lean
        runtime as host code; an engine without a sidecar may be one), and the DLA core."""
        if info.get("lean_runtime_excluded"):
            if not self.lean_runtime:
                raise UsageError(f"{self.path.name} is version-compatible without its lean runtime (built with "
                                 f"EXCLUDE_LEAN_RUNTIME); pass lean_runtime=PATH to libnvinfer_lean.so of "
                                 f"TensorRT {info.get('backend_version', '?')}, which built it")
            if not Path(self.lean_runtime).is_file():
                raise UsageError(f"lean runtime {self.lean_runtime} does not exist")
            self.runtime = self.runtime.load_runtime(str(self.lean_runtime))
            if self.runtime is None:
                raise SkdeployError(f"TensorRT could not load the lean runtime {self.lean_runtime} (see its log above)")
        if info.get("version_compatible") or (not info and hasattr(self.runtime, "engine_host_code_allowed")):
            self.runtime.engine_host_code_allowed = True  # 8.5 lacks it, and builds no version-compatible engines
        if info.get("dla_core") is not None:
            self.runtime.DLA_core = int(info["dla_core"])

    def _deserialize(self, data: bytes, gpu: dict) -> None:
        validity = getattr(self.runtime, "get_engine_validity", None)  # TensorRT-RTX has a pre-check
        if validity is not None:
            verdict, diagnostics = validity(data)
            if getattr(verdict, "name", str(verdict)) == "INVALID":
                reasons = invalidity_reasons(self.trt, diagnostics)
                raise SkdeployError(f"{self.path.name} cannot run on this GPU ({sm(gpu['compute_capability'])}) with "
                                    f"{TITLES[self.name]} {self.trt.__version__}: {reasons}")
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise SkdeployError(f"{TITLES[self.name]} could not deserialize {self.path} (see its log above); "
                                "was it built by this TensorRT version for this GPU?")
        self.context = self._create_context()
        if self.context is None:
            raise SkdeployError(f"{TITLES[self.name]} could not create an execution context (out of GPU memory?)")
        self.stream = self.memory.create_stream()
        for index in range(self.engine.num_io_tensors):
            tensor = self.engine.get_tensor_name(index)
            dtype = self._numpy_dtype(self.engine.get_tensor_dtype(tensor))
            shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(tensor))
            self.buffers[tensor] = TensorBuffer(self.memory)
            if self.engine.get_tensor_mode(tensor).name == "INPUT":
                self.inputs.append(TensorSpec(tensor, shape, dtype))
                if None in shape:
                    low, _, high = self.engine.get_tensor_profile_shape(tensor, 0)
                    self.profiles[tensor] = (tuple(low), tuple(high))
            else:
                self.outputs.append(TensorSpec(tensor, shape, dtype))

    def _create_context(self):
        """TensorRT-RTX: through a runtime config that carries the runtime cache and, for CUDA graphs, its
        native whole-graph capture (its engines allocate at run time, which a plain stream capture cannot
        hold). Classic TensorRT: a plain execution context."""
        if not hasattr(self.engine, "create_runtime_config"):
            return self.engine.create_execution_context()
        self.runtime_config = self.engine.create_runtime_config()
        if not hasattr(self.runtime_config, "create_runtime_cache"):  # classic 10.x has the config, not the cache
            self.runtime_config = None
            return self.engine.create_execution_context()
        self.runtime_cache = self.runtime_config.create_runtime_cache()
        path = self.runtime_cache_file()
        if path.is_file() and not self.runtime_cache.deserialize(path.read_bytes()):
            log.warning(f"runtime cache {path} is from another TensorRT-RTX, GPU or driver; it will be rebuilt")
        self.runtime_config.set_runtime_cache(self.runtime_cache)
        if self.cuda_graph:
            self.runtime_config.cuda_graph_strategy = self.trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            self.native_graphs = True
        return self.engine.create_execution_context(self.runtime_config)

    def runtime_cache_file(self) -> Path:
        """The runtime cache file: as given, else ENGINE.runtime-cache beside the engine where that folder is
        writable, else one per engine path under ~/.cache/skdeploy/runtime-cache."""
        if self.runtime_cache_path is not None:
            return self.runtime_cache_path
        if os.access(self.path.parent, os.W_OK):
            return self.path.with_name(self.path.name + ".runtime-cache")
        key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return Path.home() / ".cache" / "skdeploy" / "runtime-cache" / f"{self.path.name}-{key}"

    def _save_runtime_cache(self) -> None:
        """Keep the kernels compiled in this session; a cache that cannot be written costs only start-up time."""
        path = self.runtime_cache_file()
        try:
            data = bytes(memoryview(self.runtime_cache.serialize()))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
        except OSError as exc:
            log.warning(f"could not save the runtime cache {path}: {exc.strerror or exc}")

    def _numpy_dtype(self, trt_dtype):
        name = getattr(trt_dtype, "name", str(trt_dtype))
        if name not in NUMPY_DTYPES:
            raise SkdeployError(f"engine tensor type {name} has no numpy equivalent")
        return np.dtype(NUMPY_DTYPES[name])

    def deactivate_impl(self) -> None:
        self._release()
        _LIVE.discard(self)

    def _release(self) -> None:
        """Save the runtime cache, then free in reverse order of creation: graphs, buffers, stream, context,
        engine, runtime."""
        if self.memory is not None:
            with self.memory.bound():
                if self.runtime_cache is not None and self.context is not None:
                    self._save_runtime_cache()
                for graph in self.graphs.values():
                    self.memory.destroy_graph(graph)
                for buffer in self.buffers.values():
                    buffer.release()
                if self.stream is not None:
                    self.memory.destroy_stream(self.stream)
                self.context = self.engine = self.runtime = None  # TensorRT frees them with the context current
            if self._given_memory is None:
                self.memory.close()
        self.memory = None
        self._reset()

    # ---- specs --------------------------------------------------------------------------------
    def input_specs(self) -> list:
        return list(self.inputs)

    def output_names(self) -> list:
        return [spec.name for spec in self.outputs]

    def batch_limits(self) -> tuple:
        first = self.inputs[0]
        if first.name in self.profiles:
            low, high = self.profiles[first.name]
            return low[0], high[0]
        return super().batch_limits()

    def check_profile(self, feed: dict) -> None:
        """Dynamic dimensions must lie inside the engine's optimization profile."""
        for name, (low, high) in self.profiles.items():
            shape = feed[name].shape
            for axis, (got, least, most) in enumerate(zip(shape, low, high, strict=True)):
                if not least <= got <= most:
                    what = "batch size" if axis == 0 else f"dimension {axis} of input '{name}'"
                    raise UsageError(f"{what} {got} is outside the engine's profile ({least}..{most}); "
                                     f"split the input or rebuild the engine for {tuple(shape)}")

    # ---- inference ----------------------------------------------------------------------------
    def infer_impl(self, feed: dict) -> dict:
        self.check_profile(feed)
        with self.memory.bound():
            return self._infer_bound(feed)

    def _infer_bound(self, feed):
        shapes = {name: tuple(array.shape) for name, array in feed.items()}
        if shapes != self._bound_shapes:
            self._bind_shapes(shapes)
        moved = False
        for spec in self.inputs + self.outputs:
            shape = shapes[spec.name] if spec.name in shapes else self._output_shapes[spec.name]
            moved |= self.buffers[spec.name].reserve(int(np.prod(shape, dtype=np.int64)) * spec.dtype.itemsize)
        if moved:
            for name, buffer in self.buffers.items():
                self.context.set_tensor_address(name, buffer.device)
            self._drop_graphs()
        for spec in self.inputs:
            host = self.buffers[spec.name].host_view(shapes[spec.name], spec.dtype)
            np.copyto(host, feed[spec.name])
            self.memory.copy_to_device(self.buffers[spec.name].device, host, self.stream)
        self._enqueue(shapes)
        results = {}
        for spec in self.outputs:
            host = self.buffers[spec.name].host_view(self._output_shapes[spec.name], spec.dtype)
            self.memory.copy_to_host(host, self.buffers[spec.name].device, self.stream)
            results[spec.name] = host
        self.memory.synchronize(self.stream)
        return {name: host.copy() for name, host in results.items()}

    def _bind_shapes(self, shapes: dict) -> None:
        for name, shape in shapes.items():
            if not self.context.set_input_shape(name, shape):
                raise UsageError(f"{TITLES[self.name]} rejected shape {shape} for input '{name}'")
        unresolved = self.context.infer_shapes()
        if unresolved:
            raise SkdeployError(f"engine output shapes depend on data ({', '.join(unresolved)}); not supported")
        self._output_shapes = {spec.name: tuple(int(d) for d in self.context.get_tensor_shape(spec.name))
                               for spec in self.outputs}
        self._bound_shapes = shapes

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise SkdeployError(f"{TITLES[self.name]} failed to enqueue inference (see its log above)")

    def _enqueue(self, shapes: dict) -> None:
        if not self.cuda_graph or self.native_graphs:
            self._execute()
            return
        key = tuple(sorted(shapes.items()))
        if key not in self.graphs:
            graph = self._capture()
            if graph is None:  # fell back; the plain enqueue before the capture computed this call
                return
            self.graphs[key] = graph
        self.memory.launch_graph(self.graphs[key], self.stream)

    def _capture(self):
        """Run once (TensorRT applies shape changes on the first enqueue), then capture the enqueue.
        Returns the graph, or None after falling back to plain enqueues with a warning: when the context
        says it cannot be captured on this stream (TensorRT-RTX's is_stream_capturable), the graph API
        is missing (pycuda without cuda-python), or the enqueue or the capture fails (DLA engines, run-time
        allocation)."""
        self._execute()
        capturable = getattr(self.context, "is_stream_capturable", None)
        if capturable is not None and not capturable(self.stream):
            return self._without_graphs("the execution context cannot be captured on this stream")
        try:
            self.memory.begin_capture(self.stream)
        except SkdeployError as exc:  # MissingDependency too: graphs need cuda-python
            return self._without_graphs(str(exc))
        enqueued = self.context.execute_async_v3(self.stream)
        try:
            graph = self.memory.end_capture(self.stream)
        except SkdeployError as exc:
            return self._without_graphs(str(exc))
        if not enqueued:
            self.memory.destroy_graph(graph)
            return self._without_graphs(f"{TITLES[self.name]} could not enqueue while capturing")
        return graph

    def _without_graphs(self, reason: str) -> None:
        log.warning(f"CUDA graph capture failed ({escape(reason)}); running without CUDA graphs")
        self.cuda_graph = False
        return None

    def _drop_graphs(self) -> None:
        """Captured graphs hold the old buffer addresses; recapture after buffers move."""
        for graph in self.graphs.values():
            self.memory.destroy_graph(graph)
        self.graphs.clear()


def invalidity_reasons(trt: Any, diagnostics: int) -> str:
    """TensorRT-RTX's get_engine_validity diagnostics bitmask in words: 'VERSION_MISMATCH, UNSUPPORTED_CC'."""
    members = getattr(getattr(trt, "EngineInvalidityDiagnostics", None), "__members__", {})
    bits = int(diagnostics)
    words = [name for name, member in members.items() if bits & int(member)]
    unknown = bits & ~sum(int(member) for member in members.values())
    if unknown:
        words.append(f"unknown diagnostics 0x{unknown:x}")
    return ", ".join(words) or "no diagnostics given"
