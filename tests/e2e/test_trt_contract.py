"""Contract: every TensorRT name skdeploy touches exists in every TensorRT version that will be asked for it.

The surfaces are the real Python bindings of classic TensorRT 8.6.1, 10.3.0 (JetPack 6), 10.7.0, 10.13.3,
10.16.1 (JetPack 7.2), 11.0.0 and 11.4.0, imported against stub libraries (tests/support/trt_surface.py), and the
installed TensorRT-RTX. TensorRT 8.5 (JetPack 5.1) has no binding wheel on PyPI: its surface is 8.6.1's
minus TRT85_LACKS, each row read from NVIDIA/TensorRT's python/src at tags 8.5.3 and v8.6.1.

USES lists each name with *when* the code uses it, as a predicate on the Capabilities skdeploy derives for
that version; the Capabilities themselves are derived here from a module built from the real surface, so
the check is: for each version, whatever skdeploy would plan to call, the real bindings have. USES is
checked both ways against an AST walk of skdeploy/engine/, skdeploy/trt/ and skdeploy/runners/trt.py.
The recording fakes (tests/support/fake_tensorrt.py: make_fake_tensorrt and make_fake_trt) are checked against
the same surfaces. The wheels download once into ~/.cache/skdeploy-contract; without network on a cold
cache the test fails (it never skips).
"""
import ast
import types
from pathlib import Path

import pytest

from skdeploy.trt import capabilities_of
from tests.support import trt_surface
from tests.support.fake_tensorrt import API as FAKE_API, FakeDeviceMemory, make_fake_tensorrt, make_fake_trt

ROOT = Path(__file__).resolve().parents[2]
TRT_CODE = sorted((ROOT / "skdeploy" / "engine").glob("*.py")) + sorted((ROOT / "skdeploy" / "trt").glob("*.py")) \
    + [ROOT / "skdeploy" / "runners" / "trt.py"]

# name in 8.6.1 -> where NVIDIA/TensorRT defines it at v8.6.1 (absent from python/src at tag 8.5.3)
TRT85_LACKS = {
    "Runtime.engine_host_code_allowed": "python/src/infer/pyCore.cpp:1297",
    "Runtime.load_runtime": "python/src/infer/pyCore.cpp:1295",
    "IBuilderConfig.builder_optimization_level": "python/src/infer/pyCore.cpp:1227",
    "IBuilderConfig.hardware_compatibility_level": "python/src/infer/pyCore.cpp:1229",
    "ICudaEngine.hardware_compatibility_level": "python/src/infer/pyCore.cpp:1045",
    "HardwareCompatibilityLevel": "python/src/infer/pyCore.cpp:1113",
    "BuilderFlag.VERSION_COMPATIBLE": "python/src/infer/pyCore.cpp:1089",
    "BuilderFlag.EXCLUDE_LEAN_RUNTIME": "python/src/infer/pyCore.cpp:1090",
    "OnnxParserFlag": "python/src/parsers/pyOnnx.cpp:121",
    "OnnxParser.set_flag": "python/src/parsers/pyOnnx.cpp:115",
}


def always(caps):
    return True


def rtx(caps):
    return caps.backend == "tensorrt-rtx"


def dla(caps):
    return caps.dla


def portable(caps):
    return caps.version_compatible


def level(name):
    return lambda caps: name in caps.hardware_compatibility


# name -> when skdeploy uses it (a predicate on the version's Capabilities)
USES = {
    # engine/network.py: logger, network, parser
    "ILogger": always, "ILogger.__init__": always, "ILogger.Severity": always,
    "ILogger.Severity.ERROR": always, "ILogger.Severity.WARNING": always,
    "NetworkDefinitionCreationFlag": always,
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": lambda caps: caps.explicit_batch_flag,
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": lambda caps: caps.strong_typing == "optional",
    "OnnxParser": always, "OnnxParser.parse_from_file": always, "OnnxParser.num_errors": always,
    "OnnxParser.get_error": always, "ParserError.node": always, "ParserError.desc": always,
    "ParserError.node_name": lambda caps: caps.major >= 10 or rtx(caps),  # guarded by hasattr: 8.x lacks it
    "ParserError.node_operator": lambda caps: caps.major >= 10 or rtx(caps),
    "OnnxParser.set_flag": lambda caps: caps.native_instancenorm_flag,
    "OnnxParserFlag": lambda caps: caps.native_instancenorm_flag,
    "OnnxParserFlag.NATIVE_INSTANCENORM": lambda caps: caps.native_instancenorm_flag,
    "INetworkDefinition.num_inputs": always, "INetworkDefinition.num_outputs": always,
    "INetworkDefinition.get_input": always, "INetworkDefinition.get_output": always,
    "INetworkDefinition.num_layers": dla, "INetworkDefinition.get_layer": dla,
    "ITensor.name": always, "ITensor.shape": always, "ITensor.dtype": always,
    "ILayer.name": dla, "ILayer.type": dla,
    # engine/network.py: Ctrl-C cancels a build through a progress monitor (guarded by hasattr: 8.x lacks it)
    "IProgressMonitor": lambda caps: caps.major >= 10 or rtx(caps),
    "IProgressMonitor.__init__": lambda caps: caps.major >= 10 or rtx(caps),
    "IBuilderConfig.progress_monitor": lambda caps: caps.major >= 10 or rtx(caps),
    # engine/builder.py: builder and its config
    "Builder": always, "Builder.create_network": always, "Builder.create_builder_config": always,
    "Builder.create_optimization_profile": always, "Builder.build_serialized_network": always,
    "Builder.num_DLA_cores": dla,
    "IBuilderConfig": always, "IBuilderConfig.set_flag": always,
    "IBuilderConfig.set_memory_pool_limit": lambda caps: caps.memory_pool_limit,
    "IBuilderConfig.max_workspace_size": lambda caps: not caps.memory_pool_limit,
    "MemoryPoolType": lambda caps: caps.memory_pool_limit,
    "MemoryPoolType.WORKSPACE": lambda caps: caps.memory_pool_limit,
    "IBuilderConfig.num_compute_capabilities": rtx, "IBuilderConfig.set_compute_capability": rtx,
    "ComputeCapability": rtx,
    "IBuilderConfig.default_device_type": dla, "IBuilderConfig.DLA_core": dla,
    "IBuilderConfig.can_run_on_DLA": dla, "DeviceType": dla, "DeviceType.DLA": dla,
    "IBuilderConfig.hardware_compatibility_level": lambda caps: bool(caps.hardware_compatibility),
    "HardwareCompatibilityLevel": lambda caps: bool(caps.hardware_compatibility),
    "HardwareCompatibilityLevel.NONE": lambda caps: bool(caps.hardware_compatibility),
    "HardwareCompatibilityLevel.AMPERE_PLUS": level("ampere-plus"),
    "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY": level("same-cc"),
    "IBuilderConfig.builder_optimization_level": lambda caps: caps.optimization_level,
    "IBuilderConfig.add_optimization_profile": always, "IOptimizationProfile.set_shape": always,
    "BuilderFlag": always,
    "BuilderFlag.FP16": lambda caps: "FP16" in caps.precision_flags or (dla(caps) and caps.strong_typing != "always"),
    "BuilderFlag.INT8": lambda caps: "INT8" in caps.precision_flags,
    "BuilderFlag.GPU_FALLBACK": dla,
    "BuilderFlag.VERSION_COMPATIBLE": portable,
    "BuilderFlag.EXCLUDE_LEAN_RUNTIME": lambda caps: caps.exclude_lean_runtime,
    # engine/build.py + engine/layers.py: the engine's layer list (RTX: the build log; classic: the inspector)
    "IBuilderConfig.profiling_verbosity": always, "ProfilingVerbosity": always, "ProfilingVerbosity.DETAILED": always,
    "ICudaEngine.create_engine_inspector": lambda caps: not rtx(caps),
    "EngineInspector.get_engine_information": lambda caps: not rtx(caps),
    "LayerInformationFormat": lambda caps: not rtx(caps), "LayerInformationFormat.JSON": lambda caps: not rtx(caps),
    # engine/timing.py
    "IBuilderConfig.create_timing_cache": lambda caps: caps.timing_cache,
    "IBuilderConfig.set_timing_cache": lambda caps: caps.timing_cache,
    "IBuilderConfig.get_timing_cache": lambda caps: caps.timing_cache,
    "ITimingCache.combine": lambda caps: caps.timing_cache,
    "ITimingCache.serialize": lambda caps: caps.timing_cache,
    # runners/trt.py
    "Logger": always, "Logger.WARNING": always, "Runtime": always, "Runtime.deserialize_cuda_engine": always,
    "Runtime.num_DLA_cores": always, "Runtime.DLA_core": dla,
    "Runtime.engine_host_code_allowed": lambda caps: portable(caps) or rtx(caps),
    "Runtime.load_runtime": lambda caps: caps.exclude_lean_runtime,
    "Runtime.get_engine_validity": rtx, "EngineValidity.INVALID": rtx, "EngineInvalidityDiagnostics": rtx,
    "ICudaEngine.num_io_tensors": always, "ICudaEngine.get_tensor_name": always,
    "ICudaEngine.get_tensor_dtype": always, "ICudaEngine.get_tensor_shape": always,
    "ICudaEngine.get_tensor_mode": always, "ICudaEngine.get_tensor_profile_shape": always,
    "ICudaEngine.create_execution_context": always, "TensorIOMode.INPUT": always,
    "ICudaEngine.create_runtime_config": rtx, "IRuntimeConfig.create_runtime_cache": rtx,
    "IRuntimeConfig.set_runtime_cache": rtx, "IRuntimeConfig.cuda_graph_strategy": rtx,
    "CudaGraphStrategy": rtx, "CudaGraphStrategy.WHOLE_GRAPH_CAPTURE": rtx,
    "IRuntimeCache.serialize": rtx, "IRuntimeCache.deserialize": rtx,
    "IExecutionContext.set_input_shape": always, "IExecutionContext.infer_shapes": always,
    "IExecutionContext.get_tensor_shape": always, "IExecutionContext.set_tensor_address": always,
    "IExecutionContext.execute_async_v3": always, "IExecutionContext.is_stream_capturable": rtx,
}

# names in that code that TensorRT also has, but that the code does not ask of TensorRT
NOT_TENSORRT = {
    "append", "clear", "read", "start", "release", "max", "min", "opt", "mode", "file", "engine", "precision",
    "itemsize", "kind",  # Python, numpy, onnx and skdeploy's own (kind: a manifest key)
    "name", "type",  # also enum members' .name (read as text), besides ITensor/ILayer's (in USES)
    # DataType names: keys of name -> numpy/ONNX dtype maps; a name a version lacks is never looked up
    "FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL", "UINT8", "BF16", "FP8", "INT4", "FLOAT16",
    # engine/layers.py: keys of the layer lists it reads and writes, and str.count
    "LayerType", "count", "format", "metadata", "tactic", "weights",
    "update",  # engine/plan.py: dict.update of the summary it builds
}

# keyword arguments the code passes, checked in each version that uses the method
KWARGS = {"IBuilderConfig.set_timing_cache": ["ignore_mismatch"]}


@pytest.fixture(scope="module")
def surfaces():
    """version -> real surface: the classic wheels, 8.5 (derived), and the installed TensorRT-RTX."""
    found = {version: trt_surface.surface(version) for version in trt_surface.CLASSIC}
    found["8.5.2"] = without(found["8.6.1"], TRT85_LACKS)
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install 'skdeploy[rtx]') is checked too")
    found["rtx"] = trt_surface.rtx_surface()
    return found


def without(api: dict, names) -> dict:
    """A copy of `api` lacking `names` ('Class' or 'Class.member'); its version becomes 8.5.2."""
    classes = {name: {**info, "members": dict(info["members"])} for name, info in api["classes"].items()}
    for dotted in names:
        owner, _, member = dotted.partition(".")
        if member:
            classes[owner]["members"].pop(member)
            if classes[owner]["enum"] is not None:
                classes[owner]["enum"] = [name for name in classes[owner]["enum"] if name != member]
        else:
            del classes[owner]
    return {"version": "8.5.2", "classes": classes, "functions": api["functions"]}


def surface_module(api: dict) -> types.ModuleType:
    """A module with the surface's classes, members and enum members, and nothing else: what
    capabilities_of reads from a real TensorRT."""
    module = types.ModuleType("tensorrt_surface")
    module.__version__ = api["version"]
    for name, info in api["classes"].items():
        if "." in name:
            continue
        attrs = {member: None for member in info["members"] if not member.startswith("__")}
        if info["enum"] is not None:
            attrs["__members__"] = dict.fromkeys(info["enum"])
        setattr(module, name, type(name, (), attrs))
    return module


def caps_of(version, api):
    return capabilities_of(surface_module(api), "tensorrt-rtx" if version == "rtx" else "tensorrt")


def names_in_code() -> tuple:
    """(attribute names, identifier-like string constants, (method, keyword) pairs) in the TensorRT code."""
    attributes, strings, keywords = set(), set(), set()
    for path in TRT_CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                attributes.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                strings.add(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                keywords |= {(node.func.attr, k.arg) for k in node.keywords if k.arg}
    return attributes, strings, keywords


def leaf(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


def test_capabilities_read_from_the_real_bindings(surfaces):
    """What skdeploy decides each version can do, from the real API surface of that version."""
    expected = {  # explicit batch, strong typing, precision flags, DLA, hardware levels, version-compatible, opt level
        "8.5.2": (True, "unavailable", ("FP16", "INT8"), True, (), False, False),
        "8.6.1": (True, "unavailable", ("FP16", "INT8"), True, ("none", "ampere-plus"), True, True),
        "10.3.0": (False, "optional", ("FP16", "INT8"), True, ("none", "ampere-plus"), True, True),
        "10.7.0": (False, "optional", ("FP16", "INT8"), True, ("none", "ampere-plus"), True, True),
        "10.13.3": (False, "optional", ("FP16", "INT8"), True, ("none", "ampere-plus", "same-cc"), True, True),
        "10.16.1": (False, "optional", ("FP16", "INT8"), True, ("none", "ampere-plus", "same-cc"), True, True),
        "11.0.0": (False, "always", (), False, ("none", "ampere-plus", "same-cc"), True, True),
        "11.4.0": (False, "always", (), False, ("none", "ampere-plus", "same-cc"), True, True),
        "rtx": (False, "always", (), False, (), False, True),
    }
    assert set(expected) == set(surfaces)
    for version, want in expected.items():
        caps = caps_of(version, surfaces[version])
        got = (caps.explicit_batch_flag, caps.strong_typing, caps.precision_flags, caps.dla,
               caps.hardware_compatibility, caps.version_compatible, caps.optimization_level)
        assert got == want, version
        assert caps.native_instancenorm_flag is version.startswith("8.6")
        assert caps.memory_pool_limit and caps.timing_cache is (version != "rtx")


def test_every_name_the_code_uses_exists_where_it_is_used(surfaces):
    missing = [f"{name} (TensorRT {version})" for version, api in surfaces.items()
               for name, used in USES.items() if used(caps_of(version, api)) and not trt_surface.has(api, name)]
    assert missing == []
    wrong_kwargs = [f"{method}({kwarg}=) (TensorRT {version})" for version, api in surfaces.items()
                    for method, kwargs in KWARGS.items() if USES[method](caps_of(version, api))
                    for kwarg in kwargs if kwarg not in trt_surface.kwargs(api, method)]
    assert wrong_kwargs == []


def test_uses_table_matches_the_code_both_ways(surfaces):
    """A TensorRT name in the code must be in USES (or be known not to be asked of TensorRT), and every
    USES entry must still be in the code; every keyword argument the code passes to a TensorRT method is
    in KWARGS."""
    attributes, strings, keywords = names_in_code()
    everything = set()
    for api in surfaces.values():
        everything |= set(api["functions"])
        for owner, info in api["classes"].items():
            everything |= {leaf(owner), *info["members"]}
    in_code = attributes | strings
    declared = {leaf(name) for name in USES}
    assert sorted((in_code & everything) - declared - NOT_TENSORRT) == []
    assert sorted(declared - in_code) == []
    assert sorted(NOT_TENSORRT - in_code) == []
    methods = {leaf(name): name for name in USES}
    passed = {(methods[method], kwarg) for method, kwarg in keywords if method in methods}
    assert passed == {(method, kwarg) for method, kwargs in KWARGS.items() for kwarg in kwargs}


def test_a_name_missing_in_a_version_fails_the_check(surfaces):
    """The check can fail: 8.5 lacks engine_host_code_allowed, which the runner sets on 8.6+ only."""
    api = surfaces["8.5.2"]
    assert not trt_surface.has(api, "Runtime.engine_host_code_allowed")
    assert not USES["Runtime.engine_host_code_allowed"](caps_of("8.5.2", api))
    assert not trt_surface.has(surfaces["8.6.1"], "ParserError.node_name")


# ---- the recording fakes against the real surfaces ----------------------------------------------------------

# fake_tensorrt version -> the surface it is checked against (8.2 has no wheel: it must fit within 8.5's names)
FAKE_SURFACE = {"8.2.1": "8.5.2", "8.5.2": "8.5.2", "8.6.1": "8.6.1", "10.3.0": "10.3.0", "10.13.0": "10.13.3",
                "11.0.0": "11.0.0", "11.4.1": "11.4.0"}


def fake_names(module, stands_for: dict) -> set:
    """'Class.member' for each public name a fake defines: module attributes, enum members, and the
    class-level members of each fake class (`stands_for`: real class name -> fake class)."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or name in ("calls", "unbound"):
            continue
        names.add(name)
        if isinstance(value, type) and hasattr(value, "__members__"):
            names |= {f"{name}.{member}" for member in value.__members__}
        elif isinstance(value, type):
            stands_for.setdefault(name, value)
    for real, cls in stands_for.items():
        for klass in cls.__mro__[:-1]:
            names |= {f"{real}.{member}" for member in vars(klass) if not member.startswith("_")}
            names |= {f"{real}.{nested}.{member}" for nested, value in vars(klass).items()
                      if isinstance(value, type) and hasattr(value, "__members__") for member in value.__members__}
    return names


def classic_fake_classes(trt) -> dict:
    """The fake's classes that are not module attributes, by the real class each stands for."""
    builder = trt.Builder(None)
    network = builder.create_network(0)
    config = builder.create_builder_config()
    return {"INetworkDefinition": type(network), "IOptimizationProfile": type(builder.create_optimization_profile()),
            "ITimingCache": type(config.create_timing_cache(b"")), "IBuilderConfig": trt.IBuilderConfig}


def test_fake_tensorrt_has_only_real_names(surfaces):
    assert set(FAKE_SURFACE) == set(FAKE_API)
    invented = []
    for version, real in FAKE_SURFACE.items():
        trt = make_fake_tensorrt(version)
        invented += [f"{name} (fake {version} vs real {real})" for name in fake_names(trt, classic_fake_classes(trt))
                     if not trt_surface.has(surfaces[real], name)]
    assert invented == []


@pytest.mark.parametrize("real, options", [("rtx", {}), ("10.3.0", {"version": "10.3.0", "rtx": False})])
def test_runner_fake_has_only_real_names(surfaces, real, options):
    """make_fake_trt (tests/support/fake_tensorrt.py) stands for TensorRT-RTX, or with rtx=False for classic
    TensorRT."""
    memory = FakeDeviceMemory()
    trt = make_fake_trt(memory=memory, **options)
    engine = trt.Runtime(None).deserialize_cuda_engine(b"FAKE-TRT-RUNTIME-PLAN")
    classes = {"ICudaEngine": type(engine), "IExecutionContext": type(engine.create_execution_context())}
    if real == "rtx":
        config = engine.create_runtime_config()
        classes.update({"IRuntimeConfig": type(config), "IRuntimeCache": type(config.create_runtime_cache())})
    invented = [name for name in fake_names(trt, classes) if not trt_surface.has(surfaces[real], name)]
    assert invented == []
