"""The one stand-in for TensorRT in the tests: its builder half (`make_fake_tensorrt`, classic TensorRT's build
API) and its runtime half (`make_fake_trt`, what the runner calls on `tensorrt`/`tensorrt_rtx`, with
`FakeDeviceMemory` for the GPU).

Builder half: a recording stand-in for classic TensorRT (`import tensorrt`), versions 8.2, 8.5, 8.6, 10.3, 10.13,
11.0, 11.4.

It exists only because classic TensorRT cannot be installed here (its libraries download from NVIDIA's
own index, which this machine and CI cannot reach). It builds nothing: it exposes the Python API surface
each version has, and tests/e2e/test_trt_contract.py checks every public name of each version's fake against
the real bindings of that version (8.5 against 8.6's minus its documented differences, 8.2 against 8.5's),
records in `trt.calls` which
calls skdeploy makes, and refuses what the real builder refuses (an ONNX parse without EXPLICIT_BATCH on
8.x, precision flags on a strongly typed network, dynamic inputs without an optimization profile,
dynamic shapes on the DLA). Its "engine" is a marker followed by a JSON record of the build.
Real engines are built with TensorRT-RTX in the same tests, and with classic TensorRT by the
gpu-marked test where it is installed.
"""
import contextlib
import enum
import json
import threading
import time
import types

import numpy as np
import onnx

from skdeploy.runners.cudamem import DeviceMemory

# What each version's API has (8.2 only to exercise the pre-8.4 workspace attribute of JetPack 4).
API = {
    "8.2.1": dict(network_flags=["EXPLICIT_BATCH"], precision_flags=True, memory_pool=False, levels=[],
                  version_compatible=False, optimization_level=False, parser_node_names=False),
    "8.5.2": dict(network_flags=["EXPLICIT_BATCH"], precision_flags=True, memory_pool=True, levels=[],
                  version_compatible=False, optimization_level=False, parser_node_names=False),  # JetPack 5.1
    "8.6.1": dict(network_flags=["EXPLICIT_BATCH"], precision_flags=True, memory_pool=True,
                  levels=["AMPERE_PLUS"], version_compatible=True, optimization_level=True,
                  parser_node_names=False),
    "10.3.0": dict(network_flags=["EXPLICIT_BATCH", "STRONGLY_TYPED"], precision_flags=True, memory_pool=True,
                   levels=["AMPERE_PLUS"], version_compatible=True, optimization_level=True,
                   parser_node_names=True),
    "10.13.0": dict(network_flags=["EXPLICIT_BATCH", "STRONGLY_TYPED"], precision_flags=True, memory_pool=True,
                    levels=["AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], version_compatible=True,
                    optimization_level=True, parser_node_names=True),
    "11.0.0": dict(network_flags=["STRONGLY_TYPED"], precision_flags=False, memory_pool=True,
                   levels=["AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], version_compatible=True,
                   optimization_level=True, parser_node_names=True),
    "11.4.1": dict(network_flags=["STRONGLY_TYPED"], precision_flags=False, memory_pool=True,
                   levels=["AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], version_compatible=True,
                   optimization_level=True, parser_node_names=True),  # DLA again, on Orin with JetPack 7.2.2+
}
PLAN_MARKER = b"FAKE-TENSORRT-PLAN\n"
UNSUPPORTED_OPS = {"Frobnicate"}  # the fake parser's "no importer" ops
NOT_ON_DLA = {"Softmax", "ReduceSum", "ReduceMean", "GlobalAveragePool"}  # the fake's DLA rule


def make_fake_tensorrt(version: str, dla_cores: int = 2) -> types.ModuleType:
    """The fake of `version` (a key of API) on a device with `dla_cores` DLA cores."""
    api = API[version]
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    record = trt.calls.append
    parser_flags = tuple(int(part) for part in version.split(".")[:2]) >= (8, 6)  # OnnxParserFlag arrived in 8.6

    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", {name: i for i, name in enumerate(api["network_flags"])})
    flag_names = ["GPU_FALLBACK", "REFIT", "TF32"] + (["FP16", "INT8"] if api["precision_flags"] else []) \
        + (["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"] if api["version_compatible"] else [])
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flag_names)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    trt.DeviceType = enum.IntEnum("DeviceType", ["GPU", "DLA"])
    if api["levels"]:  # the enum arrived in 8.6
        trt.HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel", ["NONE"] + api["levels"])
    trt.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL"]
                                + (["INT64"] if major(version) >= 10 else []))
    if parser_flags:
        trt.OnnxParserFlag = enum.IntEnum("OnnxParserFlag", ["NATIVE_INSTANCENORM"])
    trt.ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"])
    trt.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"])

    class ILogger:
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})

        def __init__(self):
            pass

    trt.ILogger = ILogger

    class Tensor:
        def __init__(self, value_info):
            self.name = value_info.name
            dims = value_info.type.tensor_type.shape.dim
            self.shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
            elem = value_info.type.tensor_type.elem_type
            self.dtype = {onnx.TensorProto.FLOAT16: trt.DataType.HALF}.get(elem, trt.DataType.FLOAT)

    class Layer:
        def __init__(self, node):
            self.name, self.type = node.name, types.SimpleNamespace(name=node.op_type.upper())
            self.op_type = node.op_type

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs, self.outputs, self.layers = [], [], []

        def _has(self, name):
            return name in trt.NetworkDefinitionCreationFlag.__members__ and \
                bool(self.flags & (1 << trt.NetworkDefinitionCreationFlag[name]))

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, index, node, message):
            self._index, self._node, self._message = index, node, message
            if api["parser_node_names"]:
                self.node_name = lambda: node.name
                self.node_operator = lambda: node.op_type

        def node(self):
            return self._index

        def desc(self):
            return self._message

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse_from_file(self, path):
            record(("parse_from_file", str(path)))
            model = onnx.load(str(path))
            if major(version) < 10 and not self.network._has("EXPLICIT_BATCH"):
                self.errors.append(ParserError(-1, None, "network must have the explicit batch flag"))
                return False
            for index, node in enumerate(model.graph.node):
                if node.op_type in UNSUPPORTED_OPS:
                    self.errors.append(ParserError(index, node, f"No importer registered for op: {node.op_type}"))
            initializers = {i.name for i in model.graph.initializer}
            self.network.inputs = [Tensor(v) for v in model.graph.input if v.name not in initializers]
            self.network.outputs = [Tensor(v) for v in model.graph.output]
            self.network.layers = [Layer(n) for n in model.graph.node]
            self.network.onnx_nodes = list(model.graph.node)
            return not self.errors

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

    if parser_flags:
        def set_flag(self, flag):
            record(("parser.set_flag", flag.name))

        OnnxParser.set_flag = set_flag

    class TimingCache:
        """Its bytes name the TensorRT version; combining caches of two versions fails, as in TensorRT."""

        def __init__(self, data: bytes):
            saved = json.loads(data.decode()) if data else {"version": version, "entries": []}
            self._version, self._entries = saved["version"], set(saved["entries"])

        def combine(self, input_cache, ignore_mismatch):
            record(("timing_cache.combine", ignore_mismatch))
            if input_cache._version != self._version and not ignore_mismatch:
                return False
            self._entries |= input_cache._entries
            return True

        def serialize(self):
            return json.dumps({"version": self._version, "entries": sorted(self._entries)}).encode()

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            record(("profile.set_shape", name, list(low), list(opt), list(high)))
            self.shapes[name] = (list(low), list(opt), list(high))

    class BuilderConfig:
        def __init__(self):
            object.__setattr__(self, "flags_set", set())
            object.__setattr__(self, "profiles", [])
            object.__setattr__(self, "cache", None)
            object.__setattr__(self, "default_device_type", trt.DeviceType.GPU)

        def __setattr__(self, name, value):
            record(("config." + name, getattr(value, "name", value)))
            object.__setattr__(self, name, value)

        def set_flag(self, flag):
            record(("config.set_flag", flag.name))
            self.flags_set.add(flag.name)

        def add_optimization_profile(self, profile):
            record(("config.add_optimization_profile",))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            record(("config.set_timing_cache", ignore_mismatch))
            if cache._version != version and not ignore_mismatch:
                return False
            object.__setattr__(self, "cache", cache)
            return True

        def get_timing_cache(self):
            return self.cache

        def can_run_on_DLA(self, layer):
            return layer.op_type not in NOT_ON_DLA

    if api["memory_pool"]:
        def set_memory_pool_limit(self, pool, size):
            record(("config.set_memory_pool_limit", pool.name, size))

        BuilderConfig.set_memory_pool_limit = set_memory_pool_limit
    if api["optimization_level"]:
        BuilderConfig.builder_optimization_level = 3

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.num_DLA_cores = dla_cores

        def create_network(self, flags=0):
            record(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def _fail(self, message):
            self.logger.log(ILogger.Severity.ERROR, message)
            return None

        def build_serialized_network(self, network, config):
            record(("build_serialized_network",))
            strongly = major(version) >= 11 or network._has("STRONGLY_TYPED")
            if strongly and config.flags_set & {"FP16", "INT8"}:
                return self._fail("precision flags are not allowed for strongly typed networks")
            dynamic = any(-1 in t.shape for t in network.inputs)
            if dynamic and not config.profiles:
                return self._fail("network has dynamic inputs, but no optimization profile has been defined")
            on_dla = config.default_device_type == trt.DeviceType.DLA
            if on_dla and any(low != high for p in config.profiles for low, _, high in p.shapes.values()):
                return self._fail("DLA supports static shapes only")
            if on_dla and not strongly and not config.flags_set & {"FP16", "INT8"}:
                return self._fail("DLA requires FP16 or INT8 precision")
            self.logger.log(ILogger.Severity.WARNING, "fake builder: no tactics were timed")
            if config.cache is not None:
                config.cache._entries.add(f"{len(network.layers)}-layers-{sorted(config.flags_set)}")
            detailed = getattr(config, "profiling_verbosity", None) == trt.ProfilingVerbosity.DETAILED
            summary = {"version": version, "strongly_typed": strongly, "flags": sorted(config.flags_set),
                       "inputs": [t.name for t in network.inputs], "layers": inspector_layers(network, detailed)}
            return PLAN_MARKER + json.dumps(summary).encode()

    class EngineInspector:
        def __init__(self, summary):
            self._summary = summary

        def get_engine_information(self, layer_format):
            record(("get_engine_information", layer_format.name))
            return json.dumps({"Layers": self._summary["layers"], "Bindings": self._summary["inputs"]})

    class Engine:
        def __init__(self, summary):
            self._summary = summary

        def create_engine_inspector(self):
            return EngineInspector(self._summary)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            return Engine(json.loads(data[len(PLAN_MARKER):])) if data.startswith(PLAN_MARKER) else None

    trt.Builder, trt.OnnxParser, trt.IBuilderConfig, trt.Runtime = Builder, OnnxParser, BuilderConfig, Runtime
    return trt


def inspector_layers(network, detailed: bool) -> list:
    """What IEngineInspector's JSON lists: one layer per ONNX node but Q/DQ (which fuse into their
    neighbours); a Conv reads INT8 when a DequantizeLinear feeds it. Without DETAILED verbosity a layer
    is its name only, as in TensorRT."""
    nodes = getattr(network, "onnx_nodes", [])
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}
    layers = []
    for node in nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        int8 = node.op_type == "Conv" and node.input[0] in dequantized
        data_type = "Channel major INT8 format where channel % 32 == 0" if int8 else "Row major linear FP32 format"
        layers.append({"Name": node.name, "LayerType": "CaskConvolution" if node.op_type == "Conv" else node.op_type,
                       "Inputs": [{"Name": node.input[0], "Location": "Device", "Format/Datatype": data_type}],
                       "Outputs": [{"Name": out, "Location": "Device",
                                    "Format/Datatype": "Row major linear FP32 format"} for out in node.output],
                       "TacticName": "fake", "Metadata": f"[ONNX Layer: {node.name}]"} if detailed else node.name)
    return layers


def major(version: str) -> int:
    return int(version.split(".")[0])


def plan_summary(engine_path) -> dict:
    """The JSON record the fake builder put in its 'engine'."""
    data = open(engine_path, "rb").read()
    assert data.startswith(PLAN_MARKER), "not a fake engine"
    return json.loads(data[len(PLAN_MARKER):])


# ---- runtime half ----------------------------------------------------------------------------------
class FakeDeviceMemory(DeviceMemory):
    """Stands in for a GPU, which does not exist here: "device" buffers are host byte arrays so copies
    round-trip, and every call is recorded so tests can check which calls the runner makes and that
    it frees what it allocates. It proves nothing about CUDA itself (the gpu-marked tests do)."""

    name = "fake"

    def __init__(self, compute_capability="8.6"):
        self.compute_capability = compute_capability
        self.calls, self.device_buffers, self.pinned, self.streams, self.graphs = [], {}, [], set(), set()
        self._next = 0x1000
        self._bound = threading.local()

    @contextlib.contextmanager
    def bound(self):
        """Counts, per thread, how deep the caller is inside bound(): TensorRT calls must all be inside."""
        self._bound.depth = self.is_bound() + 1
        try:
            yield
        finally:
            self._bound.depth -= 1

    def is_bound(self) -> int:
        return getattr(self._bound, "depth", 0)

    def _pointer(self):
        self._next += 0x1000
        return self._next

    def device(self):
        return {"name": "Fake GPU", "compute_capability": self.compute_capability}

    def create_stream(self):
        stream = self._pointer()
        self.streams.add(stream)
        self.calls.append(("create_stream",))
        return stream

    def destroy_stream(self, stream):
        self.streams.remove(stream)
        self.calls.append(("destroy_stream",))

    def alloc_device(self, nbytes):
        pointer = self._pointer()
        self.device_buffers[pointer] = bytearray(nbytes)
        self.calls.append(("alloc_device", nbytes))
        return pointer

    def free_device(self, pointer):
        del self.device_buffers[pointer]
        self.calls.append(("free_device",))

    def alloc_pinned(self, nbytes):
        array = np.zeros(nbytes, np.uint8)
        self.pinned.append(array)
        self.calls.append(("alloc_pinned", nbytes))
        return array

    def free_pinned(self, array):
        self.pinned = [a for a in self.pinned if a is not array]
        self.calls.append(("free_pinned",))

    def copy_to_device(self, pointer, host, stream):
        self.device_buffers[pointer][:host.nbytes] = host.tobytes()
        self.calls.append(("copy_to_device", pointer, host.nbytes))

    def copy_to_host(self, host, pointer, stream):
        host.view(np.uint8).reshape(-1)[:] = np.frombuffer(bytes(self.device_buffers[pointer][:host.nbytes]), np.uint8)
        self.calls.append(("copy_to_host", pointer, host.nbytes))

    def synchronize(self, stream):
        self.calls.append(("synchronize",))

    capturing = False

    def begin_capture(self, stream):
        self.calls.append(("begin_capture",))
        self.capturing = True

    def end_capture(self, stream):
        self.capturing = False
        graph = self._pointer()
        self.graphs.add(graph)
        self.calls.append(("end_capture",))
        return graph

    def launch_graph(self, graph, stream):
        assert graph in self.graphs
        self.calls.append(("launch_graph",))
        self.context._compute()

    def destroy_graph(self, graph):
        self.graphs.remove(graph)
        self.calls.append(("destroy_graph",))

    def names(self):
        return [call[0] for call in self.calls]


PLAN = b"FAKE-TRT-RUNTIME-PLAN"


def make_fake_trt(version="1.7.1.116", memory=None, rtx=True, validity=("VALID", 0), capturable=True,
                  enqueue_while_capturing=True, runtime_config=True):
    """A recording stand-in for the runtime half of `tensorrt`/`tensorrt_rtx` (neither can execute
    here). It mimics only what the runner calls: Runtime, ICudaEngine's I/O queries and one execution
    context that "computes" logits = the first 10 input values of each sample times 2, so tests can
    see that inputs and outputs travel through the addresses the runner set. It checks call order
    (shapes before addresses before execution) and records calls and attribute sets in `trt.calls`.

    rtx=True adds what only TensorRT-RTX has (tests/e2e/test_trt_contract.py checks these names against the
    real modules): get_engine_validity (answering `validity`, a (verdict, bitmask) pair), the runtime
    config with its runtime cache and CUDA graph strategy, and is_stream_capturable (answering
    `capturable`); runtime_config=False leaves the runtime config out. enqueue_while_capturing=False
    makes execute_async_v3 fail inside a stream capture, as TensorRT does for engines that cannot be
    captured. `trt.unbound` lists the calls made while the memory's device was not bound in that thread."""
    trt = types.SimpleNamespace(__version__=version, calls=[], unbound=[])

    def record(call):
        trt.calls.append(call)
        if not memory.is_bound():
            trt.unbound.append(call[0])
    trt.TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
    trt.DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    io = [("input", trt.TensorIOMode.INPUT, (-1, 1, 32, 32)), ("logits", trt.TensorIOMode.OUTPUT, (-1, 10))]

    class Recording:
        """Records every attribute the runner sets (engine_host_code_allowed, DLA_core, ...); like a
        pybind11 object it refuses attributes its class does not have."""

        def __setattr__(self, name, value):
            if not hasattr(type(self), name):
                raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
            record((f"{type(self).__name__}.{name}", getattr(value, "name", value)))
            object.__setattr__(self, name, value)

    class Context:
        def __init__(self):
            self.shapes, self.addresses, self.running, self.max_running = {}, {}, 0, 0
            memory.context = self

        def set_input_shape(self, name, shape):
            record(("set_input_shape", name, tuple(shape)))
            self.shapes[name] = tuple(shape)
            return 1 <= shape[0] <= 32

        def infer_shapes(self):
            return []

        def get_tensor_shape(self, name):
            return (self.shapes["input"][0], 10) if name == "logits" else self.shapes[name]

        def set_tensor_address(self, name, pointer):
            record(("set_tensor_address", name, pointer))
            self.addresses[name] = pointer
            return True

        def _compute(self):
            batch = self.shapes["input"][0]
            source = memory.device_buffers[self.addresses["input"]]
            values = np.frombuffer(bytes(source[:batch * 1024 * 4]), np.float32).reshape(batch, -1)[:, :10] * 2
            memory.device_buffers[self.addresses["logits"]][:values.nbytes] = values.astype(np.float32).tobytes()

        def execute_async_v3(self, stream):
            record(("execute_async_v3", stream))
            assert set(self.addresses) == {"input", "logits"} and "input" in self.shapes
            capturing = memory.capturing
            if capturing and not enqueue_while_capturing:
                return False
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            time.sleep(0.002)
            if not capturing:
                self._compute()
            self.running -= 1
            return True

    class RuntimeCache:
        def __init__(self):
            self.kernels = b""

        def deserialize(self, blob):
            record(("runtime_cache.deserialize", bytes(blob)))
            self.kernels = bytes(blob)
            return bytes(blob).startswith(b"kernels for " + version.encode())

        def serialize(self):
            record(("runtime_cache.serialize",))
            return b"kernels for " + version.encode()

    class RuntimeConfig(Recording):
        cuda_graph_strategy = None

        def create_runtime_cache(self):
            return RuntimeCache()

        def set_runtime_cache(self, cache):
            record(("runtime_config.set_runtime_cache", cache.kernels))
            return True

    class Engine:
        num_io_tensors = len(io)

        def get_tensor_name(self, index):
            return io[index][0]

        def get_tensor_mode(self, name):
            return next(mode for n, mode, _ in io if n == name)

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def get_tensor_shape(self, name):
            return next(shape for n, _, shape in io if n == name)

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 1, 32, 32), (8, 1, 32, 32), (32, 1, 32, 32)]

        def create_execution_context(self, runtime_config=None):
            record(("create_execution_context",) + ((runtime_config,) if runtime_config else ()))
            self.context = Context()
            return self.context

    class Runtime(Recording):
        num_DLA_cores = 0
        DLA_core = -1

        def __init__(self, logger):
            record(("Runtime",))

        def deserialize_cuda_engine(self, data):
            record(("deserialize_cuda_engine",))
            return Engine() if bytes(data) == PLAN else None

    def load_runtime(self, path):
        record(("load_runtime", path))
        return Runtime(None) if path.endswith(".so.10") else None

    if rtx or not version.startswith("8.5"):  # the lean runtime calls arrived in 8.6
        Runtime.engine_host_code_allowed = False
        Runtime.load_runtime = load_runtime

    if rtx:
        trt.EngineValidity = enum.Enum("EngineValidity", "VALID SUBOPTIMAL INVALID")
        trt.EngineInvalidityDiagnostics = enum.IntEnum("EngineInvalidityDiagnostics", {
            "VERSION_MISMATCH": 1, "UNSUPPORTED_CC": 2, "OLD_CUDA_DRIVER": 4, "OLD_CUDA_RUNTIME": 8,
            "INSUFFICIENT_GPU_MEMORY": 16, "MALFORMED_ENGINE": 32, "CUDA_ERROR": 64})
        trt.CudaGraphStrategy = enum.Enum("CudaGraphStrategy", "DISABLED WHOLE_GRAPH_CAPTURE")
        Runtime.get_engine_validity = lambda self, data: (
            record(("get_engine_validity",)) or (trt.EngineValidity[validity[0]], validity[1]))
        if runtime_config:
            Engine.create_runtime_config = lambda self: record(("create_runtime_config",)) or RuntimeConfig()
        Context.is_stream_capturable = lambda self, stream: record(("is_stream_capturable", stream)) or capturable
    trt.Runtime = Runtime
    return trt
