"""The TensorRT runtime's defect classes, one test each: lean runtime, host code, DLA core, runtime cache,
graph capture and its fallback, device binding per thread.

No GPU and no classic TensorRT exist here, so these tests run the runner and the builder against the
recording fakes (tests/support/fake_tensorrt.py, tests/support/fake_pycuda.py) and
check which calls are made, in which order, with which values. The names those fakes use are checked
against the real bindings by tests/e2e/test_trt_contract.py; the gpu-marked tests in tests/e2e/test_gpu_memory.py
run the memory half on a real GPU where there is one.
"""
import json
import sys
import threading
import types

import numpy as np
import pytest

from skdeploy.errors import MissingDependency, SkdeployError, UsageError
from skdeploy.runners import TensorRTRunner, cudamem
from skdeploy.runners.trt import invalidity_reasons
from skdeploy.stages.build import BuildSettings, build_engine
from tests.support.fake_engines import engine_section, expected_logits, write_fake_engine
from tests.support.fake_pycuda import make_fake_pycuda
from tests.support.fake_tensorrt import FakeDeviceMemory, make_fake_tensorrt
from tests.support.tiny_models import tiny_onnx

CLASSIC_10 = dict(backend="tensorrt", backend_version="10.3.0", compute_capabilities=[])


def classic_engine(tmp_path, monkeypatch, memory=None, **section):
    """A fake classic TensorRT 10.3 engine (no RTX-only API) whose sidecar carries `section`."""
    return write_fake_engine(tmp_path, monkeypatch, memory=memory, section=engine_section(**{**CLASSIC_10, **section}),
                             version="10.3.0", rtx=False)


def names(fake):
    return [call[0] for call in fake.calls]


def stderr_text(capsys) -> str:
    """What was logged, with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def batch_of(size, seed=0):
    return np.random.default_rng(seed).standard_normal((size, 1, 32, 32)).astype(np.float32)


# 1 ---------------------------------------------------------------------------------------------------------
def test_version_compatible_engine_allows_host_code_before_deserialising(tmp_path, monkeypatch):
    """Recording fake: a version-compatible plan carries the lean runtime as host code, which TensorRT runs
    only after runtime.engine_host_code_allowed = True (Polygraphy's EngineFromBytes does the same)."""
    path, fake, memory = classic_engine(tmp_path, monkeypatch, backend_version="8.6.1", version_compatible=True)
    with TensorRTRunner(path, memory=memory) as runner:
        runner.infer(batch_of(2))
    calls = names(fake)
    assert ("Runtime.engine_host_code_allowed", True) in fake.calls
    assert calls.index("Runtime.engine_host_code_allowed") < calls.index("deserialize_cuda_engine")


def test_plain_engine_does_not_allow_host_code(fake_engine):
    path, fake, memory = fake_engine
    with TensorRTRunner(path, memory=memory):
        pass
    assert "Runtime.engine_host_code_allowed" not in names(fake)


# 2 ---------------------------------------------------------------------------------------------------------
def test_engine_without_its_lean_runtime_is_refused_in_one_sentence(tmp_path, monkeypatch):
    """Recording fake: a plan built with EXCLUDE_LEAN_RUNTIME cannot deserialise without the building
    version's lean runtime; the runner says so before TensorRT is asked."""
    path, fake, memory = classic_engine(tmp_path, monkeypatch, version_compatible=True, lean_runtime_excluded=True)
    with pytest.raises(UsageError, match=r"^demo.engine is version-compatible without its lean runtime \(built with "
                                         r"EXCLUDE_LEAN_RUNTIME\); pass lean_runtime=PATH to libnvinfer_lean.so of "
                                         r"TensorRT 10.3.0, which built it$"):
        TensorRTRunner(path, memory=memory).activate()
    assert "deserialize_cuda_engine" not in names(fake) and memory.streams == set()


def test_engine_without_its_lean_runtime_runs_on_the_given_one(tmp_path, monkeypatch):
    """Recording fake: runtime.load_runtime(path) gives the runtime that deserialises, with host code allowed."""
    path, fake, memory = classic_engine(tmp_path, monkeypatch, version_compatible=True, lean_runtime_excluded=True)
    lean = tmp_path / "libnvinfer_lean.so.10"
    lean.write_bytes(b"\x7fELF")
    with TensorRTRunner(path, memory=memory, lean_runtime=lean) as runner:
        np.testing.assert_array_equal(runner.infer(batch_of(3))["logits"], expected_logits(batch_of(3)))
    calls = names(fake)
    assert ("load_runtime", str(lean)) in fake.calls
    # the loaded runtime (the second Runtime) is told host code is allowed, then deserialises
    assert calls.index("load_runtime") < calls.index("Runtime.engine_host_code_allowed") \
        < calls.index("deserialize_cuda_engine")
    assert calls.count("Runtime") == 2
    with pytest.raises(UsageError, match="lean runtime .*missing.so does not exist"):
        TensorRTRunner(path, memory=memory, lean_runtime=tmp_path / "missing.so").activate()


# 3 ---------------------------------------------------------------------------------------------------------
def test_cuda_graph_falls_back_when_the_enqueue_cannot_be_captured(tmp_path, monkeypatch, capsys):
    """Recording fake: execute_async_v3 returns False inside a capture (DLA, run-time allocation); the
    runner warns once, frees the half-made graph and keeps answering correctly without graphs."""
    path, fake, memory = write_fake_engine(tmp_path, monkeypatch, section=engine_section(**CLASSIC_10),
                                           version="10.3.0", rtx=False, enqueue_while_capturing=False)
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        for size in (4, 4, 2):
            np.testing.assert_array_equal(runner.infer(batch_of(size, size))["logits"],
                                          expected_logits(batch_of(size, size)))
        assert runner.cuda_graph is False and runner.graphs == {}
    assert memory.names().count("begin_capture") == 1 and "launch_graph" not in memory.names()
    assert memory.graphs == set()
    assert names(fake).count("execute_async_v3") == 4  # before capture, in capture, then plain twice
    assert stderr_text(capsys).count("running without CUDA graphs") == 1


class NoGraphApiMemory(FakeDeviceMemory):
    """pycuda installed, cuda-python not: the runtime graph API is missing (fake, as no GPU exists here)."""

    def begin_capture(self, stream):
        self.calls.append(("begin_capture",))
        raise MissingDependency("cuda is not installed; install it with: pip install 'skdeploy[cuda-python]'")


def test_cuda_graph_without_cuda_python_falls_back_instead_of_raising(tmp_path, monkeypatch, capsys):
    path, fake, memory = classic_engine(tmp_path, monkeypatch, memory=NoGraphApiMemory())
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        np.testing.assert_array_equal(runner.infer(batch_of(2))["logits"], expected_logits(batch_of(2)))
        np.testing.assert_array_equal(runner.infer(batch_of(5))["logits"], expected_logits(batch_of(5)))
    assert memory.names().count("begin_capture") == 1
    assert "pip install 'skdeploy[cuda-python]'); running without CUDA graphs" in stderr_text(capsys)


def test_cuda_graph_asks_is_stream_capturable_where_it_exists(tmp_path, monkeypatch, capsys):
    """Recording fake of a TensorRT-RTX without the runtime config: the context says it cannot be captured,
    so no capture is begun."""
    path, fake, memory = write_fake_engine(tmp_path, monkeypatch, capturable=False, runtime_config=False)
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        np.testing.assert_array_equal(runner.infer(batch_of(2))["logits"], expected_logits(batch_of(2)))
        stream = runner.stream
    assert ("is_stream_capturable", stream) in fake.calls and "begin_capture" not in memory.names()
    assert "cannot be captured on this stream" in stderr_text(capsys)


# 4 ---------------------------------------------------------------------------------------------------------
def test_rtx_cuda_graphs_use_the_native_strategy(fake_engine):
    """Recording fake: TensorRT-RTX engines allocate at run time, which a stream capture cannot hold; its
    runtime config captures whole graphs itself."""
    path, fake, memory = fake_engine
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        for size in (2, 2, 6):
            np.testing.assert_array_equal(runner.infer(batch_of(size))["logits"], expected_logits(batch_of(size)))
    calls = names(fake)
    assert ("RuntimeConfig.cuda_graph_strategy", "WHOLE_GRAPH_CAPTURE") in fake.calls
    assert calls.index("RuntimeConfig.cuda_graph_strategy") < calls.index("create_execution_context")
    assert "begin_capture" not in memory.names() and calls.count("execute_async_v3") == 3


def test_rtx_runtime_cache_is_kept_beside_the_engine_and_reused(fake_engine):
    """Recording fake: the kernels compiled on the first start are saved and handed to the next start."""
    path, fake, memory = fake_engine
    cache = path.with_name("demo.engine.runtime-cache")
    with TensorRTRunner(path, memory=memory) as runner:
        runner.infer(batch_of(1))
    assert cache.read_bytes() == b"kernels for 1.7.1.116"
    assert "runtime_cache.deserialize" not in names(fake)  # nothing to load on the first start
    fake.calls.clear()
    with TensorRTRunner(path, memory=memory):
        pass
    assert ("runtime_cache.deserialize", b"kernels for 1.7.1.116") in fake.calls
    assert ("runtime_config.set_runtime_cache", b"kernels for 1.7.1.116") in fake.calls
    create = next(call for call in fake.calls if call[0] == "create_execution_context")
    assert len(create) == 2  # created with the runtime config


def test_rtx_runtime_cache_goes_to_the_user_cache_when_the_engine_folder_is_read_only(fake_engine, monkeypatch,
                                                                                       tmp_path):
    path, fake, memory = fake_engine
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr("os.access", lambda where, mode: where != path.parent)
    with TensorRTRunner(path, memory=memory) as runner:
        chosen = runner.runtime_cache_file()
    assert chosen.parent == home / ".cache" / "skdeploy" / "runtime-cache" and chosen.name.startswith("demo.engine-")
    assert chosen.read_bytes() == b"kernels for 1.7.1.116"
    assert not path.with_name("demo.engine.runtime-cache").exists()


# 5 ---------------------------------------------------------------------------------------------------------
def test_every_tensorrt_call_runs_with_the_device_bound_in_its_thread(fake_engine):
    """Recording fake: TensorRT uses the calling thread's current context, so activation, inference from
    several threads and release all call TensorRT inside memory.bound()."""
    path, fake, memory = fake_engine
    with TensorRTRunner(path, memory=memory) as runner:
        threads = [threading.Thread(target=runner.infer, args=(batch_of(n),)) for n in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert names(fake).count("execute_async_v3") == 3
    assert fake.unbound == []


class FakeCudaRuntime:
    """cuda-python's runtime API for the calls CudaPythonMemory makes, with the current device kept per
    thread as CUDA keeps it (a fake: no GPU exists here)."""

    def __init__(self):
        self.local = threading.local()
        self.cudaError_t = types.SimpleNamespace(cudaSuccess=0)

    def cudaGetDeviceCount(self):
        return 0, 2

    def cudaSetDevice(self, device):
        self.local.device = device
        return (0,)

    def current(self):
        return getattr(self.local, "device", 0)


def test_cuda_python_memory_selects_its_device_in_every_thread(monkeypatch):
    runtime = FakeCudaRuntime()
    monkeypatch.setattr(cudamem, "_runtime", lambda: runtime)
    memory = cudamem.CudaPythonMemory(device=1)
    seen = []

    def work():
        with memory.bound():
            seen.append(runtime.current())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [1]


@pytest.fixture
def fake_pycuda(monkeypatch):
    cuda = make_fake_pycuda()
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    monkeypatch.setattr(cudamem, "_PRIMARY_CONTEXTS", {})
    return cuda


def test_pycuda_memory_makes_its_context_current_for_tensorrt(fake_pycuda):
    """Fake pycuda (see fake_pycuda.py): inside bound() the device's primary context is current, and
    afterwards the thread's context stack is as it was."""
    memory = cudamem.PyCudaMemory(device=1)
    assert fake_pycuda.current() is None
    with memory.bound():
        assert fake_pycuda.current().device == 1
    assert fake_pycuda.current() is None


# 6 ---------------------------------------------------------------------------------------------------------
def test_dla_core_is_checked_against_the_device(fake_trt, tmp_path, monkeypatch):
    """Recording fake: DeviceType.DLA exists in every TensorRT; builder.num_DLA_cores says what exists."""
    onnx_path = tiny_onnx(tmp_path / "q.onnx", qdq=True)
    settings = dict(backend="tensorrt", target="jetson-orin", precision="int8", gpu_fallback=True)
    for cores, message in ((0, "this device has no DLA"), (1, r"this device has DLA cores 0\.\.0")):
        monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.3.0", dla_cores=cores))
        with pytest.raises(UsageError, match=rf"^DLA core 1 does not exist: {message}$"):
            build_engine(onnx_path, tmp_path / "e.engine", BuildSettings(dla_core=1, **settings))
        assert not (tmp_path / "e.engine").exists()
    build_engine(onnx_path, tmp_path / "e.engine", BuildSettings(dla_core=0, **settings))


@pytest.mark.parametrize("version, allowed", [("10.3.0", True), ("11.0.0", False), ("11.4.1", True)])
def test_dla_builds_follow_the_version_table(fake_trt, tmp_path, version, allowed):
    """Recording fake: none in 11.0-11.3; 11.4.1 builds DLA strongly typed, with no precision flags."""
    trt = fake_trt(version)
    settings = BuildSettings(backend="tensorrt", target="jetson-orin", dla_core=0, gpu_fallback=True)
    onnx_path = tiny_onnx(tmp_path / "q.onnx", qdq=True)
    if not allowed:
        with pytest.raises(UsageError, match=f"tensorrt {version} cannot build for DLA"):
            build_engine(onnx_path, tmp_path / "e.engine", settings)
        return
    result = build_engine(onnx_path, tmp_path / "e.engine", settings)
    assert ("config.default_device_type", "DLA") in trt.calls and ("config.DLA_core", 0) in trt.calls
    flags = [call[1] for call in trt.calls if call[0] == "config.set_flag"]
    assert flags == (["GPU_FALLBACK"] if version == "11.4.1" else ["INT8", "FP16", "GPU_FALLBACK"])
    assert result.engine.strongly_typed is (version == "11.4.1")


def test_runner_puts_the_engine_on_its_dla_core(tmp_path, monkeypatch):
    """Recording fake: the sidecar's DLA core goes to runtime.DLA_core before deserialising."""
    path, fake, memory = classic_engine(tmp_path, monkeypatch, dla_core=1)
    fake.Runtime.num_DLA_cores = 2
    with TensorRTRunner(path, memory=memory):
        pass
    calls = names(fake)
    assert ("Runtime.DLA_core", 1) in fake.calls and calls.index("Runtime.DLA_core") < calls.index(
        "deserialize_cuda_engine")


# 7 ---------------------------------------------------------------------------------------------------------
def test_tensorrt_8_5_builds_and_runs(fake_trt, tmp_path, monkeypatch):
    """Recording fake of 8.5.2 (JetPack 5.1): it builds with EXPLICIT_BATCH and the INT8 flag, refuses
    what 8.5 lacks by name, and the runner runs its engines."""
    trt = fake_trt("8.5.2")
    result = build_engine(tiny_onnx(tmp_path / "q.onnx", qdq=True), tmp_path / "e.engine",
                          BuildSettings(backend="tensorrt"))
    assert ("create_network", 1) in trt.calls and result.engine.builder_flags == ["INT8"]
    with pytest.raises(UsageError, match="tensorrt 8.5.2 cannot build version-compatible engines "
                                         r"\(TensorRT 8.6 or later can\)"):
        build_engine(tmp_path / "q.onnx", tmp_path / "f.engine", BuildSettings(backend="tensorrt",
                                                                               version_compatible=True))
    with pytest.raises(UsageError, match="tensorrt 8.5.2 has no builder optimization level"):
        build_engine(tmp_path / "q.onnx", tmp_path / "f.engine", BuildSettings(backend="tensorrt",
                                                                               optimization_level=2))
    section = {**CLASSIC_10, "backend_version": "8.5.2"}
    path, fake, memory = write_fake_engine(tmp_path, monkeypatch, section=engine_section(**section),
                                           version="8.5.2", rtx=False)
    with TensorRTRunner(path, memory=memory) as runner:
        np.testing.assert_array_equal(runner.infer(batch_of(2))["logits"], expected_logits(batch_of(2)))
    path.with_name("demo.engine.json").unlink()  # without a sidecar: no host-code switch to set on 8.5
    with TensorRTRunner(path, memory=memory, backend="tensorrt") as runner:
        np.testing.assert_array_equal(runner.infer(batch_of(2))["logits"], expected_logits(batch_of(2)))
    assert "Runtime.engine_host_code_allowed" not in names(fake)


# 8 ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version, portable, expected", [
    ("8.6.1", dict(version_compatible=True), True),
    ("8.6.1", dict(hardware_compatibility="ampere-plus"), True),
    ("8.6.1", {}, False),  # not portable: the plugin is allowed
    ("10.3.0", dict(version_compatible=True), False),  # native InstanceNormalization is the default from 10.0
])
def test_portable_8_6_builds_parse_instancenorm_natively(fake_trt, tmp_path, version, portable, expected):
    """Recording fake: which parser flags the builder sets."""
    trt = fake_trt(version)
    build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine", BuildSettings(backend="tensorrt", **portable))
    assert (("parser.set_flag", "NATIVE_INSTANCENORM") in trt.calls) is expected


# 9 ---------------------------------------------------------------------------------------------------------
def release(memory, stream):
    memory.destroy_stream(stream)
    memory.close()


def test_pycuda_deactivate_leaves_no_context_pushed_and_no_stream_leaked(fake_pycuda):
    """Fake pycuda (see fake_pycuda.py): 100 open/use/close cycles, streams dropped from another thread
    too, leave the thread's context stack empty, one retain of the primary context, and nothing live."""
    for cycle in range(100):
        memory = cudamem.PyCudaMemory(device=0)
        stream = memory.create_stream()
        pointer = memory.alloc_device(64)
        pinned = memory.alloc_pinned(64)
        memory.copy_to_device(pointer, pinned, stream)
        memory.synchronize(stream)
        memory.free_device(pointer)
        memory.free_pinned(pinned)
        closer = threading.Thread(target=release, args=(memory, stream))
        if cycle % 2:  # the atexit hook or another thread may release a runner
            closer.start()
            closer.join()
        else:
            closer.run()
        del memory, closer
    assert fake_pycuda.current() is None and all(not stack for stack in fake_pycuda.stacks.values())
    assert fake_pycuda.leaked_streams == 0
    assert fake_pycuda.live == {"streams": 0, "allocations": 0, "pinned": 0}
    assert fake_pycuda.retained == {0: 1}


# 10 --------------------------------------------------------------------------------------------------------
def test_rtx_engine_validity_bitmask_is_spelled_out(tmp_path, monkeypatch):
    """Recording fake: get_engine_validity returns (EngineValidity, diagnostics bitmask)."""
    path, fake, memory = write_fake_engine(tmp_path, monkeypatch, validity=("INVALID", 1 | 2))
    with pytest.raises(SkdeployError, match=r"^demo.engine cannot run on this GPU \(sm_86\) with TensorRT-RTX "
                                            r"1.7.1.116: VERSION_MISMATCH, UNSUPPORTED_CC$"):
        TensorRTRunner(path, memory=memory).activate()
    assert "deserialize_cuda_engine" not in names(fake)
    assert invalidity_reasons(fake, 4 | 128) == "OLD_CUDA_DRIVER, unknown diagnostics 0x80"
    assert invalidity_reasons(fake, 0) == "no diagnostics given"


def test_timing_cache_that_cannot_be_combined_is_left_alone(fake_trt, tmp_path, monkeypatch, capsys):
    """Recording fake: while this build ran, another TensorRT version rewrote the shared cache file;
    combine() returns False and the file keeps the other version's entries."""
    cache = tmp_path / "trt.cache"
    trt = fake_trt("10.3.0")
    other = json.dumps({"version": "10.7.0", "entries": ["from 10.7"]})
    real_get = trt.IBuilderConfig.get_timing_cache

    def rewritten_meanwhile(config):
        cache.write_text(other)
        return real_get(config)

    monkeypatch.setattr(trt.IBuilderConfig, "get_timing_cache", rewritten_meanwhile)
    result = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine",
                          BuildSettings(backend="tensorrt", timing_cache=str(cache)))
    assert ("timing_cache.combine", False) in trt.calls
    assert cache.read_text() == other and result.engine.timing_cache["saved_bytes"] == 0
    assert "this build's were not added to it" in stderr_text(capsys)
