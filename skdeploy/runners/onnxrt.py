"""onnxruntime on the CPU: runs FP32, FP16 and Q/DQ INT8 graphs alike."""
import numpy as np

from ..onnx.run import open_session
from .base import Runner, TensorSpec, check_threads

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


class OnnxRuntimeRunner(Runner):
    """`model` is a path or an in-memory onnx.ModelProto."""

    name = "onnxruntime"

    def __init__(self, model, threads: int = 0, optimize: bool = True, priority_order: bool = False,
                 memory_arena: bool = True) -> None:
        super().__init__()
        self.model = model
        self.threads = check_threads(threads)
        self.optimize = optimize
        self.priority_order = priority_order
        self.memory_arena = memory_arena  # onnx.run.open_session
        self.session = None

    def activate_impl(self) -> None:
        self.session = open_session(self.model, self.threads, self.optimize, self.priority_order, self.memory_arena)

    def deactivate_impl(self) -> None:
        self.session = None

    def input_specs(self) -> list:
        return [TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                           np.dtype(_ORT_TYPES.get(i.type, np.float32))) for i in self.session.get_inputs()]

    def output_names(self) -> list:
        return [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feed: dict) -> dict:
        outputs = self.session.run(None, feed)
        return dict(zip(self.output_names(), outputs, strict=True))
