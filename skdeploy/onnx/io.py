"""Reading and writing ONNX files with errors a user can act on, and small facts read off a model:
opset, node counts, real inputs, input/output specs, node attributes."""
from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import EncodeError

from ..errors import SkdeployError
from ..fileio import atomic_path, existing_file, readable_path, write_bytes_atomic
from ..manifest import verify_beside

EXTERNAL_DATA_ABOVE = 2_000_000_000  # bytes: protobuf cannot serialise a larger model in one message


def load_onnx(path: str | os.PathLike, load_weights: bool = True, sha256: str | None = None) -> onnx.ModelProto:
    """The model at `path`, checked against its manifest (`sha256`: the file's, when the caller has it), or
    by the ONNX checker when no manifest vouches for it: every stage that writes an ONNX checks it (export,
    optimize, calibrate), and checking a 100 MB model again costs 0.2 s."""
    path = existing_file(path)
    written_by_skdeploy = verify_beside(path, sha256)
    try:
        model = onnx.load(str(readable_path(path)), load_external_data=load_weights)
    except Exception as exc:  # protobuf raises DecodeError and friends, not a common base
        raise SkdeployError(f"{path} is not a readable ONNX model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'truncated or corrupt'})") from None
    if not model.graph.node:
        raise SkdeployError(f"{path} is not a readable ONNX model (no graph nodes; truncated or not ONNX)")
    if not written_by_skdeploy:
        check_onnx_file(path)
    return model


def check_onnx_file(path: str | os.PathLike) -> None:
    """The ONNX checker on the file (no re-serialising of the model; works past 2 GB)."""
    try:
        onnx.checker.check_model(str(readable_path(path)))
    except onnx.checker.ValidationError as exc:
        raise SkdeployError(f"{path} fails the ONNX checker: {str(exc).splitlines()[0]}") from None


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write atomically; models over protobuf's 2 GB limit keep weights in a sidecar data file. The model is
    serialised once (sizing it first cost as much as writing it)."""
    path = Path(path)
    try:
        data = model.SerializeToString()
    except EncodeError:  # protobuf refuses a message over 2 GB
        data = None
    if data is not None and len(data) <= EXTERNAL_DATA_ABOVE:
        write_bytes_atomic(path, data)
        return
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp), save_as_external_data=True, location=path.name + ".data")


def lowered_precision(model: onnx.ModelProto) -> str | None:
    """Why `model` is not an FP32 graph ("Q/DQ nodes" or "FP16 weights"), or None when it is one."""
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        return "Q/DQ nodes"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return "FP16 weights"
    return None


def opset_of(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def node_counts(model: onnx.ModelProto) -> dict:
    return dict(sorted(collections.Counter(node.op_type for node in model.graph.node).items()))


def graph_inputs(model: onnx.ModelProto) -> list:
    """The inputs a caller feeds (ValueInfoProtos): older exports also list initializers as inputs."""
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _dims(value_info):
    dims = []
    for dim in value_info.type.tensor_type.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?"))
    return dims


def io_spec(model: onnx.ModelProto) -> tuple:
    """([{name, shape, dtype}] inputs, same for outputs); initializers are not inputs."""
    def spec(value_info):
        elem = value_info.type.tensor_type.elem_type
        return {"name": value_info.name, "shape": _dims(value_info),
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "unknown"}

    return [spec(v) for v in graph_inputs(model)], [spec(v) for v in model.graph.output]


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of `node`'s attribute `name` (ints, floats, lists, tensors as onnx gives them), else default."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default
