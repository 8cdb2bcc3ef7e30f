"""ONNX -> TensorRT network: the builder's logger, parsing with readable errors, IO and profiles.

Everything here works the same for `tensorrt` and `tensorrt_rtx`; `trt` is whichever module builds.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SkdeployError, UsageError
from .layers import is_report

if TYPE_CHECKING:
    from onnx import ModelProto

    from ..trt.capabilities import Capabilities

DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
          "INT32": "int32", "INT64": "int64", "BOOL": "bool", "FP8": "float8", "INT4": "int4"}


def capturing_logger(trt: Any) -> Any:
    """An ILogger of `trt` that keeps warnings and errors (they go into the sidecar and error messages), and
    the INFO/VERBOSE messages that report the engine's layers and memory (engine/layers.py reads them)."""

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.warnings, self.errors, self.reports = [], [], []

        def log(self, severity, message) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(message))
            elif level == int(trt.ILogger.Severity.WARNING):
                self.warnings.append(str(message))
            elif is_report(str(message)):
                self.reports.append(str(message))

    return CapturingLogger()


_INTERRUPTING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def interruptible_build(trt: Any, config: Any) -> Iterator[None]:
    """Ctrl-C (or SIGTERM, SIGHUP where the CLI handles them) during a build. Python raises in whatever Python
    code runs next, which during a build is TensorRT's callback into our logger: TensorRT swallows the
    exception there and builds on. So here the signal is only noted, a progress monitor (where the backend
    has one) cancels the build at its next step, and the signal's own handler raises once the builder has
    returned."""
    handled = [number for number in _INTERRUPTING if signal.getsignal(number) is signal.default_int_handler
               or number != signal.SIGINT and callable(signal.getsignal(number))]
    if threading.current_thread() is not threading.main_thread() or not handled:
        yield
        return
    interrupted = []
    monitor = None
    if hasattr(trt, "IProgressMonitor") and hasattr(config, "progress_monitor"):
        class CancelOnInterrupt(trt.IProgressMonitor):
            def __init__(self) -> None:
                trt.IProgressMonitor.__init__(self)

            def phase_start(self, phase_name, parent_phase, num_steps) -> None:
                pass

            def step_complete(self, phase_name, step) -> bool:
                return not interrupted  # False cancels the build

            def phase_finish(self, phase_name) -> None:
                pass

        monitor = CancelOnInterrupt()
        config.progress_monitor = monitor
    previous = {number: signal.signal(number, lambda signum, frame: interrupted.append(signum))
                for number in handled}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if interrupted:
        previous[interrupted[0]](interrupted[0], None)  # KeyboardInterrupt, or the CLI's Terminated


def network_flags(trt: Any, caps: Capabilities, strongly_typed: bool) -> int:
    """create_network() flags: EXPLICIT_BATCH on 8.x, STRONGLY_TYPED where it is opt-in (10.x)."""
    flags = 0
    if caps.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed and caps.strong_typing == "optional":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def parse_errors(parser: Any, onnx_model: ModelProto) -> list:
    """'node 12 Conv_3 (Conv): message' for each parser error; op types come from the ONNX when the
    parser does not name them (TensorRT 8.6 reports only the node index)."""
    nodes = onnx_model.graph.node
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        index = error.node()
        name = error.node_name() if hasattr(error, "node_name") else ""
        op = error.node_operator() if hasattr(error, "node_operator") else ""
        if 0 <= index < len(nodes):
            name, op = name or nodes[index].name, op or nodes[index].op_type
        where = f"node {index} {name or '?'} ({op or '?'})" if index >= 0 else "model"
        lines.append(f"{where}: {str(error.desc()).strip()}")
    return lines


def parse_onnx(parser: Any, onnx_path: str | Path, onnx_model: ModelProto) -> None:
    if not parser.parse_from_file(str(onnx_path)):
        errors = parse_errors(parser, onnx_model) or ["no error detail from the parser"]
        raise SkdeployError(f"TensorRT could not parse {onnx_path}: " + "; ".join(errors))


def io_tensors(network: Any) -> list:
    """[{name, mode, shape (-1 = dynamic), dtype}] of the network's inputs then outputs."""
    tensors = [("input", network.get_input(i)) for i in range(network.num_inputs)]
    tensors += [("output", network.get_output(i)) for i in range(network.num_outputs)]
    return [{"name": t.name, "mode": mode, "shape": [int(d) for d in t.shape],
             "dtype": DTYPES.get(t.dtype.name, t.dtype.name.lower())} for mode, t in tensors]


def batch_profile(io: list, batches: tuple | None) -> dict:
    """{input: {min, opt, max}} with the batch dimension from `batches` (min, opt, max; None for a static
    network) wherever it is dynamic; static inputs get their own shape three times. Only the batch dimension
    may be dynamic."""
    profile = {}
    for tensor in io:
        if tensor["mode"] != "input":
            continue
        shape = tensor["shape"]
        if any(d < 0 for d in shape[1:]):
            raise UsageError(f"input '{tensor['name']}' has dynamic dimensions besides the batch {shape}; "
                             "export it with a fixed input shape")
        profile[tensor["name"]] = {key: ([n] + shape[1:] if shape and shape[0] < 0 else list(shape))
                                   for key, n in zip(("min", "opt", "max"), batches or (None,) * 3, strict=True)}
    return profile


def is_dynamic(io: list) -> bool:
    return any(d < 0 for t in io if t["mode"] == "input" for d in t["shape"])
