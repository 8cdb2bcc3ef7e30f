"""The TensorRT runner's device half on a real GPU, without TensorRT (gpu-marked; skipped without CUDA).

No machine here can run a TensorRT engine, but everything around the engine can run on a real GPU. A
stand-in for TensorRT's execution context (STANDIN below: a fake only of TensorRT, which cannot be
installed, the GPU work is real) makes execute_async_v3 enqueue a real kernel on the runner's stream,
compiled with NVRTC: logits[n, j] = 2 * input[n, j] for j < 10, read from the bound input address and
written to the bound output address. So copies, streams, buffer growth, pinned memory, CUDA graph
capture and replay, devices and threads are all exercised for real, with pycuda and with cuda-python.
"""
import ctypes
import json
import threading
import types

import numpy as np
import pytest

from skdeploy.runners import TensorRTRunner, trt as trt_runner

pytestmark = pytest.mark.gpu

KERNEL = r"""
extern "C" __global__ void double_first_ten(const float *input, float *logits, int batch) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < batch * 10) logits[i] = 2.0f * input[(i / 10) * 1024 + i % 10];
}
"""
PLAN = b"GPU-STANDIN-PLAN"


def cuda_or_skip():
    """(runtime, driver, nvrtc) of cuda-python when a CUDA GPU is here, else skip."""
    try:
        from cuda.bindings import driver, nvrtc, runtime
    except ImportError:
        pytest.skip("cuda-python is not installed")
    error, count = runtime.cudaGetDeviceCount()
    if int(error) != 0 or count < 1:
        pytest.skip(f"no CUDA GPU here ({getattr(error, 'name', error)})")
    return runtime, driver, nvrtc


def checked(result):
    error, *values = result
    assert int(error) == 0, error
    return values[0] if len(values) == 1 else values


def compile_kernel(driver, nvrtc, runtime, device):
    """The kernel's function handle in the current context, built with NVRTC for this device."""
    major = checked(runtime.cudaDeviceGetAttribute(runtime.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, device))
    minor = checked(runtime.cudaDeviceGetAttribute(runtime.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, device))
    program = checked(nvrtc.nvrtcCreateProgram(KERNEL.encode(), b"standin.cu", 0, [], []))
    options = [f"--gpu-architecture=compute_{major}{minor}".encode()]
    checked(nvrtc.nvrtcCompileProgram(program, len(options), options))
    ptx = b" " * checked(nvrtc.nvrtcGetPTXSize(program))
    checked(nvrtc.nvrtcGetPTX(program, ptx))
    module = checked(driver.cuModuleLoadData(ptx))
    return checked(driver.cuModuleGetFunction(module, b"double_first_ten"))


def make_standin_trt(device=0):
    """STANDIN: the runtime half of TensorRT 10.3 as the runner calls it; execute_async_v3 launches the
    kernel on the given stream (returning False inside a stream capture when `capturable` is False)."""
    runtime, driver, nvrtc = cuda_or_skip()
    trt = types.SimpleNamespace(__version__="10.3.0", capturable=True, launches=0)
    trt.TensorIOMode = types.SimpleNamespace(INPUT=types.SimpleNamespace(name="INPUT"),
                                            OUTPUT=types.SimpleNamespace(name="OUTPUT"))
    trt.DataType = types.SimpleNamespace(FLOAT=types.SimpleNamespace(name="FLOAT"))
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    io = {"input": (trt.TensorIOMode.INPUT, (-1, 1, 32, 32)), "logits": (trt.TensorIOMode.OUTPUT, (-1, 10))}
    kernels = {}

    class Context:
        def __init__(self):
            self.shapes, self.addresses = {}, {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def infer_shapes(self):
            return []

        def get_tensor_shape(self, name):
            return (self.shapes["input"][0], 10) if name == "logits" else self.shapes[name]

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer
            return True

        def execute_async_v3(self, stream):
            status = checked(runtime.cudaStreamIsCapturing(stream))
            if status != runtime.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone and not trt.capturable:
                return False
            context = checked(driver.cuCtxGetCurrent())
            if int(context) not in kernels:  # one module per context (the device's primary context)
                kernels[int(context)] = compile_kernel(driver, nvrtc, runtime, device)
            batch = self.shapes["input"][0]
            args = ((self.addresses["input"], self.addresses["logits"], batch),
                    (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int))
            checked(driver.cuLaunchKernel(kernels[int(context)], (batch * 10 + 127) // 128, 1, 1, 128, 1, 1, 0,
                                          stream, args, 0))
            trt.launches += 1
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index):
            return list(io)[index]

        def get_tensor_mode(self, name):
            return io[name][0]

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def get_tensor_shape(self, name):
            return io[name][1]

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 1, 32, 32), (8, 1, 32, 32), (64, 1, 32, 32)]

        def create_execution_context(self):
            return Context()

    class Runtime:
        num_DLA_cores = 0

        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if bytes(data) == PLAN else None

    trt.Runtime = Runtime
    return trt


def expected(batch):
    return batch.reshape(len(batch), -1)[:, :10] * 2


def batch_of(size, seed=0):
    return np.random.default_rng(seed).standard_normal((size, 1, 32, 32)).astype(np.float32)


@pytest.fixture(params=["cuda-python", "pycuda"])
def gpu_engine(request, tmp_path, monkeypatch):
    """(engine path, stand-in module, memory backend name) for each CUDA memory backend."""
    from skdeploy.deps import available

    trt = make_standin_trt()
    if request.param == "pycuda" and not available("pycuda.driver"):
        pytest.skip("pycuda is not installed")
    monkeypatch.setattr(trt_runner, "load_backend", lambda backend: (trt, None))
    path = tmp_path / "standin.engine"
    path.write_bytes(PLAN)
    sidecar = {"format": "skdeploy-manifest/1", "engine": {
        "backend": "tensorrt", "backend_version": "10.3.0", "compute_capabilities": [],
        "hardware_compatibility": "none", "version_compatible": False, "dla_core": None, "precision": "fp32"}}
    path.with_name("standin.engine.json").write_text(json.dumps(sidecar))
    return path, trt, request.param


def memory_for(backend, device=0):
    from skdeploy.runners.cudamem import open_device_memory

    return open_device_memory(backend, device)


def test_buffers_copies_and_dynamic_batch(gpu_engine):
    path, trt, backend = gpu_engine
    memory = memory_for(backend)
    with TensorRTRunner(path, memory=memory) as runner:
        for size in (4, 4, 2, 16, 3):
            np.testing.assert_array_equal(runner.infer(batch_of(size, size))["logits"], expected(batch_of(size, size)))
        assert runner.buffers["input"].capacity == 16 * 1024 * 4  # grown to the largest batch, never shrunk
        pinned = runner.buffers["input"].host
        assert isinstance(pinned, np.ndarray) and pinned.nbytes == 16 * 1024 * 4
    memory.close()


def test_cuda_graph_capture_replay_and_fallback(gpu_engine, capsys):
    path, trt, backend = gpu_engine
    cuda_or_skip()
    memory = memory_for(backend)
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        for size in (4, 4, 4, 2):
            np.testing.assert_array_equal(runner.infer(batch_of(size, size))["logits"], expected(batch_of(size, size)))
        assert len(runner.graphs) == 2 and runner.cuda_graph
        launches = trt.launches
        runner.infer(batch_of(4, 9))  # a replay: the graph runs the kernel, the stand-in is not called
        assert trt.launches == launches
    trt.capturable = False
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        np.testing.assert_array_equal(runner.infer(batch_of(5))["logits"], expected(batch_of(5)))
        np.testing.assert_array_equal(runner.infer(batch_of(6))["logits"], expected(batch_of(6)))
        assert runner.graphs == {} and not runner.cuda_graph
    assert "running without CUDA graphs" in capsys.readouterr().err
    memory.close()


def test_eight_threads_share_one_runner(gpu_engine):
    path, trt, backend = gpu_engine
    batches = [batch_of(n + 1, n) for n in range(8)]
    with TensorRTRunner(path, memory=memory_for(backend)) as runner:
        alone = [runner.infer(batch)["logits"] for batch in batches]
        shared = [None] * 8

        def work(index):
            for _ in range(20):
                shared[index] = runner.infer(batches[index])["logits"]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for single, threaded in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(threaded, single)


def test_device_index_is_honoured(gpu_engine):
    runtime, driver, _ = cuda_or_skip()
    path, trt, backend = gpu_engine
    if checked(runtime.cudaGetDeviceCount()) < 2:
        pytest.skip("needs two GPUs")
    with TensorRTRunner(path, memory=memory_for(backend, 1), device=1) as runner:
        runner.infer(batch_of(2))
        pointer = runner.buffers["input"].device
        ordinal = checked(driver.cuPointerGetAttribute(
            driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, pointer))
    assert ordinal == 1


def test_thousand_activations_leak_no_device_memory(gpu_engine):
    runtime, _, _ = cuda_or_skip()
    path, trt, backend = gpu_engine
    memory = memory_for(backend)
    runner = TensorRTRunner(path, memory=memory)
    runner.activate()
    runner.infer(batch_of(8))
    runner.deactivate()  # the first round loads the kernel module and CUDA's own pools
    free_before, _ = checked(runtime.cudaMemGetInfo())
    for cycle in range(1000):
        runner.activate()
        runner.infer(batch_of(1 + cycle % 8))
        runner.deactivate()
    free_after, _ = checked(runtime.cudaMemGetInfo())
    memory.close()
    assert free_before - free_after < 4 << 20, (free_before, free_after)  # less than 4 MiB over 1,000 cycles
