"""Running a model in onnxruntime on the CPU: the one place a session is opened, for the runners and
for the parity checks of the graph passes and export (which sit below the runners)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..deps import require
from ..errors import SkdeployError

if TYPE_CHECKING:
    from onnx import ModelProto
    from onnxruntime import InferenceSession

    from ..fileio import PathLike


def open_session(model: ModelProto | PathLike, threads: int = 0, optimize: bool = True, priority_order: bool = False,
                 memory_arena: bool = True) -> InferenceSession:
    """An onnxruntime InferenceSession on the CPU for `model` (a path or an onnx.ModelProto).

    optimize=False runs the graph as written (no fusions); priority_order runs readers early, which
    keeps peak memory low when many intermediate tensors are also outputs (calibration probes).
    memory_arena=False gives each tensor its own allocation, returned when freed, so the peak is what is live
    at once, not what onnxruntime's arena has grown to: it grows in regions of doubling size and keeps them for
    the session's life (calibration probes hand back many large outputs).
    """
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if priority_order:
        options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    if not memory_arena:
        options.enable_cpu_mem_arena = False
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise SkdeployError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from None


def run_model(model: ModelProto | PathLike, feeds: Iterable[dict], optimize: bool = True) -> list:
    """`model`'s outputs ({name: array}) for each feed ({input name: array}) in `feeds`, one session."""
    session = open_session(model, optimize=optimize)
    names = [output.name for output in session.get_outputs()]
    return [dict(zip(names, session.run(None, {name: np.ascontiguousarray(value) for name, value in feed.items()}),
                     strict=True))
            for feed in feeds]
