"""Runners: PyTorch and onnxruntime for real; TensorRT's host-side logic with a recording fake (no GPU
exists here) and a real TensorRT-RTX engine for the sidecar checks; gpu-marked tests run real engines."""
import json
import math
import subprocess
import sys
import threading

import numpy as np
import pytest

from skdeploy.errors import SkdeployError, UsageError
from skdeploy.runners import OnnxRuntimeRunner, TensorRTRunner, TorchRunner, classify, load_runner, trt as trt_runner
from skdeploy.trt import compat
from tests.support.fake_engines import engine_section, expected_logits, write_fake_engine
from tests.support.fake_tensorrt import FakeDeviceMemory
from tests.support.validation_helpers import static_batch_copy

# ---- onnxruntime and PyTorch, for real ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_batch():
    from skdeploy.data import load_fashion_mnist
    from skdeploy.models import REGISTRY

    pixels, labels = load_fashion_mnist("test")
    return REGISTRY["sknet-fmnist"].preprocessing.arrays(pixels[:16]), pixels[:16], labels[:16]


def test_torch_and_onnxruntime_runners_agree(demo_checkpoint_export, demo_batch):
    checkpoint, onnx_path = demo_checkpoint_export
    batch = demo_batch[0]
    with TorchRunner.from_model(arch="sknet-fmnist", checkpoint=checkpoint) as torch_runner, \
            OnnxRuntimeRunner(onnx_path) as ort_runner:
        assert torch_runner.batch_limits() == (1, None) and ort_runner.batch_limits() == (1, None)
        expected = torch_runner.infer(batch)["logits"]
        got = ort_runner.infer({"input": batch})["logits"]
    assert expected.shape == (16, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["onnxruntime", "pytorch"])
def test_runner_shared_between_threads_gives_sequential_results(kind, demo_checkpoint_export, demo_batch):
    checkpoint, onnx_path = demo_checkpoint_export
    runner = OnnxRuntimeRunner(onnx_path) if kind == "onnxruntime" else \
        TorchRunner.from_model(arch="sknet-fmnist", checkpoint=checkpoint)
    batches = [demo_batch[0][i:i + 4] for i in range(0, 16, 4)]
    with runner:
        expected = [runner.infer(b)["logits"] for b in batches]
        results, errors = {}, []

        def work(index):
            try:
                for repeat in range(3):
                    results[(index, repeat)] = runner.infer(batches[index])["logits"]
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for (index, _), logits in results.items():
        np.testing.assert_array_equal(logits, expected[index])
    assert len(results) == 12


def test_wrong_inputs_get_clear_errors(demo_checkpoint_export, tmp_path):
    with OnnxRuntimeRunner(demo_checkpoint_export[1]) as runner:
        good = np.zeros((2, 1, 32, 32), np.float32)
        with pytest.raises(UsageError, match="must be float32, got float64"):
            runner.infer(good.astype(np.float64))
        with pytest.raises(UsageError, match=r"must have shape \(N, 1, 32, 32\), got \(2, 3, 32, 32\)"):
            runner.infer(np.zeros((2, 3, 32, 32), np.float32))
        with pytest.raises(UsageError, match="must have 4 dims"):
            runner.infer(np.zeros((1, 32, 32), np.float32))
        with pytest.raises(UsageError, match=r"expects inputs \['input'\], got \['image'\]"):
            runner.infer({"image": good})
    for call in (lambda: runner.infer(good), runner.input_specs, runner.output_names, runner.batch_limits):
        with pytest.raises(UsageError, match="not active"):
            call()
    with OnnxRuntimeRunner(static_batch_copy(demo_checkpoint_export[1], tmp_path / "static.onnx", 4)) as runner:
        assert runner.batch_limits() == (4, 4)
        with pytest.raises(UsageError, match=r"shape \(4, 1, 32, 32\), got \(2, 1, 32, 32\)"):
            runner.infer(good)


def doubling_onnx(path, batch):
    """y = 2 * x for x of shape (batch, 3); `batch` an int (static) or a name (dynamic)."""
    import onnx
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [two])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("batch_dim, batch, chunks", [
    (4, 256, [4, 4, 2]),              # a static batch sets the chunk size; the last chunk is padded to 4
    ("batch", 3, [3, 3, 3, 1]),       # a dynamic batch takes the requested size
])
def test_run_batched_covers_every_row_once(tmp_path, batch_dim, batch, chunks):
    inputs = np.arange(30, dtype=np.float32).reshape(10, 3)
    seen = []
    with OnnxRuntimeRunner(doubling_onnx(tmp_path / "double.onnx", batch_dim)) as runner:
        outputs = runner.run_batched(inputs, batch, progress=seen.append)
    assert seen == chunks
    assert outputs.dtype == np.float32 and outputs.tolist() == (2 * inputs).tolist()


def test_load_runner_and_classify_use_the_manifest(demo_checkpoint_export, demo_batch):
    _, onnx_path = demo_checkpoint_export
    from PIL import Image

    images = [Image.fromarray(p) for p in demo_batch[1][:3]]
    with load_runner(onnx_path) as runner:
        assert runner.name == "onnxruntime"
        top = classify(runner, images, top_k=3)
        logits = runner.infer(demo_batch[0][:3])["logits"]
    from skdeploy.data import FASHION_MNIST_CLASSES

    assert len(top) == 3 and all(len(row) == 3 for row in top)
    for row, sample_logits in zip(top, logits, strict=True):
        assert row[0][0] == FASHION_MNIST_CLASSES[int(np.argmax(sample_logits))]
        assert row[0][1] >= row[1][1] >= row[2][1] and 0 < sum(p for _, p in row) <= 1.0 + 1e-9


@pytest.mark.parametrize("unknown", [None, {}])  # today's form, and the form earlier versions wrote
def test_classify_without_recorded_preprocessing_asks_for_it(tmp_path, unknown):
    """A manifest that does not know the preprocessing (an ONNX skdeploy did not export) makes classify ask
    for it; given, the 2x2 picture [[0, 255], [0, 0]] scaled by 1/255 flattens to logits [0, 1, 0, 0]."""
    import onnx
    from onnx import TensorProto, helper
    from PIL import Image

    from skdeploy.data import Preprocessing

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "flatten",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "flatten.onnx")
    picture = Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8))
    with OnnxRuntimeRunner(tmp_path / "flatten.onnx") as runner:
        runner.manifest = {"model": {"spec": None, "checkpoint": None, "kwargs": {}, "num_classes": None,
                                     "dataset": None}, "preprocessing": unknown}
        with pytest.raises(UsageError, match="no manifest with preprocessing; pass preprocessing="):
            classify(runner, [picture])
        given = Preprocessing(resize=2, crop=(2, 2), mean=(0.0,), std=(1.0,), channel_order="GRAY")
        [[(index, probability)]] = classify(runner, [picture], preprocessing=given)
    assert index == 1 and probability == pytest.approx(math.e / (math.e + 3))


def test_import_skdeploy_stays_light():
    code = ("import sys, skdeploy; skdeploy.TensorRTRunner; skdeploy.TorchRunner; skdeploy.load_runner; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'tensorrt_rtx', 'pycuda', 'cuda.bindings')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- TensorRT: compatibility rules (pure logic) ---------------------------------------------------

GPU_86 = {"name": "RTX A6000", "compute_capability": "8.6"}
GPU_90 = {"name": "H100", "compute_capability": "9.0"}


def test_compatible_engine_has_no_problems():
    assert compat.check_compatibility(engine_section(), GPU_86, "1.7.1.116") == []
    two = engine_section(compute_capabilities=["8.6", "9.0"])
    assert compat.check_compatibility(two, GPU_90, "1.7.1.116") == []


def test_compute_capability_mismatch_is_explained():
    section = engine_section()
    problems = compat.check_compatibility(section, GPU_90, "1.7.1.116")
    assert problems == ["this GPU is sm_90 (H100)"]
    text = compat.explain_incompatibility("demo.engine", section, GPU_90, problems)
    assert text.startswith("demo.engine was built for sm_86 with TensorRT-RTX 1.7.1.116; this GPU is sm_90 (H100)")
    assert "--compute-capability 9.0" in text


@pytest.mark.parametrize("section, installed, expected", [
    (engine_section(), "1.8.0.10", "the installed TensorRT-RTX is 1.8.0.10 (engines run only on the TensorRT-RTX "
                                   "release that built them)"),
    (engine_section(), None, "TensorRT-RTX is not installed (pip install 'skdeploy[rtx]')"),
    (engine_section(backend="tensorrt", backend_version="10.3.0"), "10.4.0",
     "the installed TensorRT is 10.4.0 (the engine runs only on the TensorRT version that built it; rebuild it, "
     "or build it version-compatible)"),
    (engine_section(backend="tensorrt", backend_version="10.3.0", version_compatible=True), "10.2.0",
     "the installed TensorRT is 10.2.0 (a version-compatible engine needs the same or a newer TensorRT of a "
     "supported major version)"),
    (engine_section(backend="tensorrt", backend_version="8.6.1", version_compatible=True), "11.0.0",
     "the installed TensorRT is 11.0.0 (a version-compatible engine needs the same or a newer TensorRT of a "
     "supported major version)"),
    (engine_section(backend="tensorrt", backend_version="8.6.1", compute_capabilities=[],
                    hardware_compatibility="ampere-plus"), "8.6.1", None),
    (engine_section(backend="tensorrt", backend_version="10.3.0", dla_core=0), "10.3.0",
     "the engine runs on DLA core 0 but this device has no DLA"),
])
def test_version_backend_and_dla_rules(section, installed, expected):
    problems = compat.check_compatibility(section, GPU_86, installed)
    assert problems == ([expected] if expected else [])


def test_version_compatible_and_ampere_plus_engines_travel():
    classic = engine_section(backend="tensorrt", backend_version="10.3.0", version_compatible=True,
                             hardware_compatibility="ampere-plus", compute_capabilities=[])
    assert compat.check_compatibility(classic, GPU_90, "10.13.0") == []
    assert compat.check_compatibility(classic, GPU_90, "11.0.0") == []
    turing = {"name": "T4", "compute_capability": "7.5"}
    assert compat.check_compatibility(classic, turing, "10.3.0") == [
        "this GPU is sm_75 (T4), older than the Ampere GPUs an ampere-plus engine needs"]


# ---- TensorRT: the runner against a recording fake ------------------------------------------------


def test_trt_runner_binds_runs_and_returns_outputs(fake_engine):
    path, fake, memory = fake_engine
    batch = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    with TensorRTRunner(path, memory=memory) as runner:
        assert runner.name == "tensorrt-rtx"
        assert [s.name for s in runner.input_specs()] == ["input"] and runner.output_names() == ["logits"]
        assert runner.input_specs()[0].shape == (None, 1, 32, 32) and runner.batch_limits() == (1, 32)
        out = runner.infer(batch)
        stream = runner.stream
    np.testing.assert_array_equal(out["logits"], expected_logits(batch))
    names = [c[0] for c in fake.calls]
    assert names[:6] == ["Runtime", "get_engine_validity", "deserialize_cuda_engine", "create_runtime_config",
                         "runtime_config.set_runtime_cache", "create_execution_context"]
    assert names.index("set_input_shape") < names.index("set_tensor_address") < names.index("execute_async_v3")
    stream_calls = memory.names()
    assert stream_calls.index("copy_to_device") < stream_calls.index("copy_to_host") < stream_calls.index("synchronize")
    assert ("execute_async_v3", stream) in fake.calls
    # everything freed on exit
    assert memory.device_buffers == {} and memory.pinned == [] and memory.streams == set()


def test_trt_buffers_are_reused_and_grow_for_larger_batches(fake_engine):
    path, fake, memory = fake_engine
    rng = np.random.default_rng(1)
    with TensorRTRunner(path, memory=memory) as runner:
        for batch_size, expect_alloc in ((4, True), (4, False), (2, False), (8, True), (3, False)):
            before = memory.names().count("alloc_pinned")
            shapes_before = len([c for c in fake.calls if c[0] == "set_input_shape"])
            batch = rng.standard_normal((batch_size, 1, 32, 32)).astype(np.float32)
            np.testing.assert_array_equal(runner.infer(batch)["logits"], expected_logits(batch))
            allocated = memory.names().count("alloc_pinned") - before
            assert allocated == (2 if expect_alloc else 0), batch_size
            new_shapes = len([c for c in fake.calls if c[0] == "set_input_shape"]) - shapes_before
            assert new_shapes == (0 if batch_size == 4 and not expect_alloc else 1)
        # capacity is the largest batch seen: 8 samples of 1x32x32 float32 and 8x10 logits
        assert runner.buffers["input"].capacity == 8 * 1024 * 4 and runner.buffers["logits"].capacity == 8 * 10 * 4
        assert ("alloc_device", 8 * 1024 * 4) in memory.calls
    assert memory.names().count("free_pinned") == memory.names().count("alloc_pinned") == 4


def test_trt_rejects_batches_outside_the_profile_and_wrong_types(fake_engine):
    path, fake, memory = fake_engine
    with TensorRTRunner(path, memory=memory) as runner:
        with pytest.raises(UsageError, match=r"batch size 64 is outside the engine's profile \(1\.\.32\)"):
            runner.infer(np.zeros((64, 1, 32, 32), np.float32))
        with pytest.raises(UsageError, match="must be float32, got float16"):
            runner.infer(np.zeros((2, 1, 32, 32), np.float16))
        with pytest.raises(UsageError, match=r"shape \(N, 1, 32, 32\)"):
            runner.infer(np.zeros((2, 3, 32, 32), np.float32))
    assert "execute_async_v3" not in [c[0] for c in fake.calls]


def test_trt_refuses_an_engine_for_another_gpu_before_deserialising(fake_engine):
    path, fake, _ = fake_engine
    memory = FakeDeviceMemory(compute_capability="9.0")
    with pytest.raises(SkdeployError, match=r"demo.engine was built for sm_86 with TensorRT-RTX 1.7.1.116; "
                                            r"this GPU is sm_90 \(Fake GPU\)"):
        TensorRTRunner(path, memory=memory).activate()
    assert "deserialize_cuda_engine" not in [c[0] for c in fake.calls]


def test_trt_cuda_graph_is_captured_once_per_shape_and_recaptured_after_buffers_move(tmp_path, monkeypatch):
    section = engine_section(backend="tensorrt", backend_version="10.3.0", compute_capabilities=[])
    path, fake, memory = write_fake_engine(tmp_path, monkeypatch, section=section, version="10.3.0", rtx=False)
    rng = np.random.default_rng(2)
    with TensorRTRunner(path, memory=memory, cuda_graph=True) as runner:
        for batch_size in (4, 4, 2, 2, 8):
            batch = rng.standard_normal((batch_size, 1, 32, 32)).astype(np.float32)
            np.testing.assert_array_equal(runner.infer(batch)["logits"], expected_logits(batch))
        names = memory.names()
        # captures: 4, 2 (new shape), 8 (new shape; its larger buffers dropped the old graphs)
        assert names.count("begin_capture") == names.count("end_capture") == 3
        assert names.count("launch_graph") == 5
        assert names.count("destroy_graph") == 2 and len(memory.graphs) == 1
    assert memory.graphs == set()


def test_trt_runner_serialises_threads(fake_engine):
    path, fake, memory = fake_engine
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((n, 1, 32, 32)).astype(np.float32) for n in (1, 2, 3, 4)]
    errors = []
    with TensorRTRunner(path, memory=memory) as runner:
        def work(batch):
            try:
                for _ in range(5):
                    np.testing.assert_array_equal(runner.infer(batch)["logits"], expected_logits(batch))
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert runner.context.max_running == 1
    assert not errors


def test_trt_resources_released_at_exit_and_failed_activation_frees(fake_engine, tmp_path):
    path, fake, memory = fake_engine
    runner = TensorRTRunner(path, memory=memory)
    runner.activate()
    runner.infer(np.zeros((2, 1, 32, 32), np.float32))
    assert runner in trt_runner._LIVE
    trt_runner._release_at_exit()
    assert not runner.is_active and memory.device_buffers == {} and memory.streams == set()
    broken = tmp_path / "broken.engine"
    broken.write_bytes(b"not a plan")
    (tmp_path / "broken.engine.json").write_text((tmp_path / "demo.engine.json").read_text())
    with pytest.raises(SkdeployError, match="could not deserialize"):
        TensorRTRunner(broken, memory=memory).activate()
    assert memory.streams == set()


def test_trt_engine_without_sidecar_warns_and_runs(fake_engine, capsys):
    path, fake, memory = fake_engine
    (path.parent / "demo.engine.json").unlink()
    with TensorRTRunner(path, memory=memory, backend="tensorrt-rtx") as runner:
        assert runner.infer(np.ones((1, 1, 32, 32), np.float32))["logits"].shape == (1, 10)
    assert "no sidecar manifest" in capsys.readouterr().err


# ---- TensorRT-RTX for real ----------------------------------------------------------------------

def gpu_state():
    """(compute capability or None, reason) of the CUDA device here."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        return None, "cuda-python is not installed"
    error, count = runtime.cudaGetDeviceCount()
    if int(error) != 0 or count < 1:
        return None, f"no CUDA GPU here (cudaGetDeviceCount: {getattr(error, 'name', error)})"
    major = runtime.cudaDeviceGetAttribute(runtime.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, 0)[1]
    minor = runtime.cudaDeviceGetAttribute(runtime.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, 0)[1]
    return f"{major}.{minor}", ""


@pytest.fixture(scope="module")
def rtx_engine(demo_checkpoint_export, tmp_path_factory):
    """A real TensorRT-RTX engine of the demo export for sm_86 (built without a GPU), with its sidecar."""
    pytest.importorskip("tensorrt_rtx")
    from skdeploy.stages.build import BuildSettings, build_engine

    path = tmp_path_factory.mktemp("rtx") / "demo.engine"
    build_engine(demo_checkpoint_export[1], path, BuildSettings(backend="tensorrt-rtx", compute_capabilities=["8.6"]))
    return path


def test_real_rtx_engine_sidecar_check_explains_other_gpu(rtx_engine):
    import tensorrt_rtx

    memory = FakeDeviceMemory(compute_capability="7.0")
    with pytest.raises(SkdeployError) as info:
        TensorRTRunner(rtx_engine, memory=memory).activate()
    assert json.loads(rtx_engine.with_name("demo.engine.json").read_text())["engine"]["compute_capabilities"] == ["8.6"]
    assert str(info.value).startswith(f"demo.engine was built for sm_86 with TensorRT-RTX {tensorrt_rtx.__version__}; "
                                      "this GPU is sm_70 (Fake GPU)")


def test_real_rtx_engine_without_gpu_fails_with_one_line(rtx_engine):
    cc, reason = gpu_state()
    if cc:
        pytest.skip("a CUDA GPU is present; the gpu-marked tests run the engine")
    with pytest.raises(SkdeployError, match="no usable CUDA GPU"):
        TensorRTRunner(rtx_engine).activate()


@pytest.fixture(scope="module")
def gpu_engine(demo_checkpoint_export, tmp_path_factory):
    """An engine for the GPU here: TensorRT-RTX when it supports this GPU, else classic TensorRT."""
    cc, reason = gpu_state()
    if not cc:
        pytest.skip(f"needs an NVIDIA GPU with TensorRT: {reason}")
    from skdeploy.stages.build import BuildSettings, build_engine
    from skdeploy.trt import installed, load_backend

    settings = None
    if installed("tensorrt-rtx") and cc in load_backend("tensorrt-rtx")[1].compute_capabilities:
        settings = BuildSettings(backend="tensorrt-rtx", compute_capabilities=[cc])
    elif installed("tensorrt"):
        settings = BuildSettings(backend="tensorrt")
    if settings is None:
        pytest.skip(f"no TensorRT for this GPU ({compat.sm(cc)}): TensorRT-RTX does not target it and classic "
                    "tensorrt is not installed")
    path = tmp_path_factory.mktemp("gpu") / "demo.engine"
    build_engine(demo_checkpoint_export[1], path, settings)
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_gpu_engine_matches_onnxruntime(gpu_engine, demo_checkpoint_export, demo_batch, cuda_graph):
    batch = demo_batch[0]
    with OnnxRuntimeRunner(demo_checkpoint_export[1]) as reference:
        expected = reference.infer(batch)["logits"]
    with TensorRTRunner(gpu_engine, cuda_graph=cuda_graph) as runner:
        for size in (1, 8, 16, 8):
            np.testing.assert_allclose(runner.infer(batch[:size])["logits"], expected[:size], rtol=1e-2, atol=1e-2)
        errors = []

        def work(start):
            try:
                got = runner.infer(batch[start:start + 4])["logits"]
                np.testing.assert_allclose(got, expected[start:start + 4], rtol=1e-2, atol=1e-2)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in (0, 4, 8, 12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors


def test_device_memory_backends_fail_with_one_line_without_a_gpu():
    cc, _ = gpu_state()
    if cc:
        pytest.skip("a CUDA GPU is present; the gpu-marked tests use device memory for real")
    runtime = pytest.importorskip("cuda.bindings.runtime")
    from skdeploy.deps import available
    from skdeploy.errors import MissingDependency
    from skdeploy.runners.cudamem import _check, open_device_memory

    with pytest.raises(SkdeployError, match=r"^CUDA cudaMalloc failed: CUDA driver version is insufficient .*"
                                            r"\(cudaErrorInsufficientDriver\)$"):
        _check(runtime.cudaMalloc(16), "cudaMalloc")
    with pytest.raises(SkdeployError, match="no usable CUDA GPU"):
        open_device_memory("cuda-python")
    with pytest.raises(SkdeployError, match="unknown CUDA memory backend"):
        open_device_memory("cupy")
    if not available("pycuda.driver"):
        with pytest.raises(MissingDependency, match=r"skdeploy\[gpu\]"):
            open_device_memory("pycuda")
