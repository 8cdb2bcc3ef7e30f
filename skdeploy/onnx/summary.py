"""What an ONNX file says about itself, manifest or not: who made it, its opsets, inputs and outputs, nodes
by op, the weights' size and whether it is quantized (Q/DQ). `skdeploy inspect` prints it."""
import collections

import onnx

from ..fileio import PathLike, existing_file, sha256_file
from .io import io_spec, load_onnx, node_counts

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def initializer_bytes(tensor: onnx.TensorProto) -> int:
    """The tensor's size from its shape and element type, so weights kept in external data count too."""
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def summarize_onnx(path: PathLike) -> dict:
    """{file, bytes, sha256, format "onnx", ir_version, producer, opsets, inputs, outputs, nodes, node_counts,
    initializers: {count, bytes, by_dtype}, external_data, qdq: {QuantizeLinear, DequantizeLinear}}."""
    path = existing_file(path)
    model = load_onnx(path, load_weights=False)
    by_dtype: collections.Counter = collections.Counter()
    total = 0
    for tensor in model.graph.initializer:
        size = initializer_bytes(tensor)
        by_dtype[onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name] += size
        total += size
    inputs, outputs = io_spec(model)
    counts = node_counts(model)
    return {
        "file": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path), "format": "onnx",
        "ir_version": model.ir_version,
        "producer": " ".join(part for part in (model.producer_name, model.producer_version) if part) or None,
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "inputs": inputs, "outputs": outputs,
        "nodes": len(model.graph.node), "node_counts": counts,
        "initializers": {"count": len(model.graph.initializer), "bytes": total, "by_dtype": dict(by_dtype)},
        "external_data": any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer),
        "qdq": {op: counts.get(op, 0) for op in QDQ_OPS},
    }
