"""onnxruntime on the CPU: runs FP32, FP16 and Q/DQ INT8 graphs alike."""
from pathlib import Path

import numpy as np

from ..deps import require
from ..errors import SkdeployError
from .base import Runner, TensorSpec

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


class OnnxRuntimeRunner(Runner):
    """`model` is a path or an in-memory onnx.ModelProto."""

    name = "onnxruntime"

    def __init__(self, model, threads: int = 0, optimize: bool = True, priority_order: bool = False):
        super().__init__()
        self.model = model
        self.threads = threads
        self.optimize = optimize
        # onnxruntime's priority-based execution order runs consumers early; it keeps peak memory low
        # when many intermediate tensors are also outputs (calibration probes)
        self.priority_order = priority_order
        self.session = None

    def activate_impl(self):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        if not self.optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if self.priority_order:
            options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        source = str(self.model) if isinstance(self.model, (str, Path)) else self.model.SerializeToString()
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SkdeployError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from None

    def deactivate_impl(self):
        self.session = None

    def input_specs(self):
        return [TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                           np.dtype(_ORT_TYPES.get(i.type, np.float32))) for i in self.session.get_inputs()]

    def output_names(self):
        return [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feed):
        outputs = self.session.run(None, feed)
        return dict(zip(self.output_names(), outputs))
