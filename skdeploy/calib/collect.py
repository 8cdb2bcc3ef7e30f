"""Run the FP32 model batch by batch in onnxruntime and fold every activation into its histogram.

The model is copied with each float activation added as a graph output; the batch size is chosen so
one batch of those outputs stays inside a memory budget, which bounds peak memory whatever the
number of images.
"""
import copy

import numpy as np
import onnx

from .. import ui
from ..errors import SkdeployError
from .graphutil import GraphIndex
from .ranges import TensorHistogram
from .sources import Selection

MAX_AUTO_BATCH = 32


def with_outputs(model: onnx.ModelProto, index: GraphIndex, names) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `names`."""
    probed = copy.deepcopy(model)
    present = {o.name for o in probed.graph.output}
    for name in names:
        if name not in present:
            probed.graph.output.append(onnx.helper.make_tensor_value_info(name, index.elem_type(name), None))
    return probed


def bytes_per_sample(index: GraphIndex, names) -> int:
    total = 0
    for name in names:
        dims = index.shape(name) or []
        total += 4 * int(np.prod([d for d in dims[1:] if d])) if dims else 4
    return total


def batch_size_for(index: GraphIndex, names, input_batch, memory_mb: int) -> int:
    """The model's own batch when static, else as many samples as fit `memory_mb` of activations."""
    if isinstance(input_batch, int) and input_batch > 0:
        return input_batch
    per_sample = max(1, bytes_per_sample(index, names))
    return int(np.clip(memory_mb * 2 ** 20 // per_sample, 1, MAX_AUTO_BATCH))


def padded(batch: np.ndarray, size: int) -> np.ndarray:
    """A short last batch, padded with copies of its last sample for a model with a static batch."""
    if len(batch) == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - len(batch), axis=0)])


def collect_histograms(model: onnx.ModelProto, selection: Selection, bins: int, keep_histograms: bool,
                       memory_mb: int) -> tuple:
    """({tensor: TensorHistogram} over every float activation, batch size used)."""
    from ..runners.onnxrt import OnnxRuntimeRunner

    index = GraphIndex(model)
    names = index.activations()
    input_name = index.graph_inputs[0]
    input_batch = (index.shape(input_name) or [None])[0]
    batch_size = batch_size_for(index, names, input_batch, memory_mb)
    static = isinstance(input_batch, int) and input_batch > 0
    histograms = {name: TensorHistogram(bins, keep_histograms) for name in names}
    probed = with_outputs(model, index, names)
    indices = selection.calibration
    with OnnxRuntimeRunner(probed) as runner, ui.progress(len(indices), "calibrating") as advance:
        for batch, _ in selection.batches(indices, batch_size):
            real = len(batch)
            outputs = runner.infer({input_name: padded(batch, batch_size) if static else batch})
            for name in names:
                values = outputs[name]
                if static and real < batch_size and values.ndim and values.shape[0] == batch_size:
                    values = values[:real]
                try:
                    histograms[name].update(values)
                except ValueError:
                    raise SkdeployError(f"tensor {name!r} is NaN or infinite on the calibration data; "
                                        "the FP32 model itself overflows on these inputs") from None
            del outputs
            advance(real)
    return histograms, batch_size
