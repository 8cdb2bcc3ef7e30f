"""Run the FP32 model batch by batch in onnxruntime and fold activations into per-tensor statistics.

Tensors that get Q/DQ come out of the session whole and go into histograms; every other float
activation is reduced inside the graph to its max and min (ReduceMax, ReduceMin: no temporary
tensor), so only two scalars leave onnxruntime. The batch is sized so one batch of activations stays
inside a memory budget, which bounds peak memory whatever the number of images.
"""
import copy

import numpy as np
import onnx
from onnx import helper

from ..data import Selection, pad_batch
from ..errors import SkdeployError
from ..log import log
from ..onnx.index import GraphIndex
from .ranges import TensorHistogram

MAX_AUTO_BATCH = 32
# ops whose output range follows from their inputs' (max, min) instead of being measured: exactly, except
# MaxPool's minimum (a bound); Relu clamps both at zero
RANGE_KEEPING_OPS = {"Relu", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "MaxPool",
                     "Concat"}
MAX_SUFFIX, MIN_SUFFIX = "__skdeploy_max", "__skdeploy_min"
# values per sample that go into a tensor's histogram (its maximum always sees all): 2^16 keeps every value of
# the demo model's tensors and down to a thirteenth of SKNet-50's largest ones at 224x224, where binning every
# value cost as much as a forward pass
HISTOGRAM_VALUES_PER_SAMPLE = 2 ** 16


def probe_model(model: onnx.ModelProto, index: GraphIndex, whole, reduced) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `whole` and the largest |x| of each of `reduced`.
    Each reduction sits right after its producer, so no activation outlives its place in the graph."""
    probed = copy.deepcopy(model)
    present = {o.name for o in probed.graph.output}
    for name in whole:
        if name not in present:
            probed.graph.output.append(helper.make_tensor_value_info(name, index.elem_type(name), None))
    reduced = set(reduced)
    nodes = []

    def reduce(name):
        for op, suffix in (("ReduceMax", MAX_SUFFIX), ("ReduceMin", MIN_SUFFIX)):
            nodes.append(helper.make_node(op, [name], [name + suffix], keepdims=0))
            probed.graph.output.append(helper.make_tensor_value_info(name + suffix, index.elem_type(name), []))

    for name in index.inputs:
        if name in reduced:
            reduce(name)
    for node in model.graph.node:
        nodes.append(node)
        for name in node.output:
            if name in reduced:
                reduce(name)
    del probed.graph.node[:]
    probed.graph.node.extend(nodes)
    return probed


def bytes_per_sample(index: GraphIndex, names) -> int:
    total = 0
    for name in names:
        dims = index.shape(name) or []
        total += 4 * int(np.prod([d for d in dims[1:] if d])) if dims else 4
    return total


def batch_size_for(index: GraphIndex, names, memory_mb: int) -> int:
    """As many samples as fit `memory_mb` of the tensors `names`."""
    per_sample = max(1, bytes_per_sample(index, names))
    return int(np.clip(memory_mb * 2 ** 20 // per_sample, 1, MAX_AUTO_BATCH))


def overflow_message(name) -> str:
    return f"tensor {name!r} is NaN or infinite on the calibration data; the FP32 model itself overflows"


def collect_statistics(model: onnx.ModelProto, selection: Selection, histogram_tensors, bins: int,
                       memory_mb: int, batch_size: int = None) -> tuple:
    """({tensor: TensorHistogram} for `histogram_tensors`, {tensor: largest |x|} for every float
    activation, batch size used)."""
    from ..runners.onnxrt import OnnxRuntimeRunner

    index = GraphIndex(model)
    histogram_tensors = list(dict.fromkeys(histogram_tensors))
    derived = _derived_tensors(index, set(histogram_tensors))
    reduced = [name for name in index.activations() if name not in set(histogram_tensors) and name not in derived]
    input_name = index.inputs[0]
    input_batch = (index.shape(input_name) or [None])[0]
    static = isinstance(input_batch, int) and input_batch > 0
    # onnxruntime keeps about every activation of the batch alive once some are outputs: size for all
    size = input_batch if static else (batch_size or batch_size_for(index, index.activations(), memory_mb))
    histograms = {name: TensorHistogram(bins) for name in histogram_tensors}
    extremes = {name: (-np.inf, np.inf) for name in reduced}  # (max, min)
    indices = selection.calibration
    with OnnxRuntimeRunner(probe_model(model, index, histogram_tensors, reduced), priority_order=True) as runner, \
            log.progress(len(indices), "calibrating") as advance:
        for batch, _ in selection.batches(indices, size):
            real = len(batch)
            outputs = runner.infer({input_name: pad_batch(batch, size) if static else batch})
            for name in histogram_tensors:
                values = outputs[name]
                if static and real < size and values.ndim and values.shape[0] == size:
                    values = values[:real]
                per_sample = values.size // max(1, len(values)) if values.ndim else values.size
                try:
                    histograms[name].update(values, stride=max(1, -(-per_sample // HISTOGRAM_VALUES_PER_SAMPLE)))
                except ValueError:
                    raise SkdeployError(overflow_message(name)) from None
            for name in reduced:
                high, low = float(outputs[name + MAX_SUFFIX]), float(outputs[name + MIN_SUFFIX])
                if not (np.isfinite(high) and np.isfinite(low)):
                    raise SkdeployError(overflow_message(name))
                extremes[name] = (max(extremes[name][0], high), min(extremes[name][1], low))
            del outputs
            advance(real)
    extremes.update({name: (hist.absmax, -hist.absmax) for name, hist in histograms.items()})  # sign unknown
    for name, (op, sources) in derived.items():  # graph order: a source is measured or derived before its reader
        high, low = max(extremes[s][0] for s in sources), min(extremes[s][1] for s in sources)
        extremes[name] = (max(high, 0.0), max(low, 0.0)) if op == "Relu" else (high, low)
    absmax = {name: max(abs(high), abs(low)) for name, (high, low) in extremes.items()}
    return histograms, absmax, size


def _derived_tensors(index: GraphIndex, histogram_tensors: set) -> dict:
    """{tensor: (op, its float inputs)} for outputs of RANGE_KEEPING_OPS reading only activations."""
    derived = {}
    for name, node in index.producer.items():
        if node.op_type not in RANGE_KEEPING_OPS or name in histogram_tensors or not index.is_float(name):
            continue
        sources = [i for i in node.input if i and index.is_float(i)]
        if sources and not any(index.is_constant(i) for i in sources):
            derived[name] = (node.op_type, sources)
    return derived
