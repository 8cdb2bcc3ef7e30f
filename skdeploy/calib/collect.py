"""Run the FP32 model batch by batch in onnxruntime and fold activations into per-tensor statistics.

Every measurement is a node of the graph, placed right after the tensor's producer, so only small tensors
leave onnxruntime and the session keeps its fused, blocked-layout (NCHWc) convolutions:
  - the largest value of each float activation: GlobalMaxPool on a 4-D tensor (it runs in the blocked
    layout, so the tensor is not reordered for it), ReduceMax otherwise; and its smallest (ReduceMin) unless
    the tensor cannot be negative (`nonnegative_tensors`);
  - for each tensor that gets Q/DQ, a histogram sample: the whole tensor up to VALUES_PER_SAMPLE values per
    sample, else every s-th row and column of a 4-D tensor (MaxPool with a 1x1 kernel and stride s).
Some tensors are not measured at all: outputs of ops that only clamp, reshape, pool or concatenate follow
from their inputs' extremes, and what runs into a Relu alone is bounded by the Relu's output
(`pre_activations`). The batch is sized so one batch of activations stays inside a memory budget, which
bounds peak memory whatever the number of images.
"""
import copy
import math
import time
from collections.abc import Iterable
from typing import NamedTuple

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
NONNEGATIVE_OPS = {"Relu", "Sigmoid", "Softmax", "Abs", "Exp", "Sqrt"}  # never negative, whatever they read
# non-negative when every float input is (a constant input included)
SIGN_KEEPING_OPS = {"Add", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose"}
MAX_SUFFIX, MIN_SUFFIX, SAMPLE_SUFFIX = "__skdeploy_max", "__skdeploy_min", "__skdeploy_sample"
# values per sample that go into a tensor's histogram (its extremes always see all): 2^16 keeps every value
# of the demo model's tensors, and 25,088 to 51,200 of each of SKNet-50's large ones at 224x224, where binning
# every value cost as much as a forward pass (2^15 lowered the demo's INT8 agreement: docs/precision.md)
VALUES_PER_SAMPLE = 2 ** 16


def nonnegative_tensors(index: GraphIndex) -> set:
    """Activations that cannot be negative: outputs of NONNEGATIVE_OPS, and of SIGN_KEEPING_OPS reading only
    such tensors or non-negative constants. Their minimum is not measured (it is at least 0)."""
    known: set[str] = set()

    def nonnegative(name):
        if name in known:
            return True
        value = index.constant(name)
        return value is not None and value.size > 0 and float(np.min(value)) >= 0

    for node in index.graph.node:
        floats = [name for name in node.input if name and index.is_float(name)]
        if node.op_type in NONNEGATIVE_OPS or (node.op_type in SIGN_KEEPING_OPS and floats
                                               and all(map(nonnegative, floats))):
            known.update(name for name in node.output if name)
    return known


def pre_activations(index: GraphIndex, histogram_tensors: set) -> dict:
    """{tensor: (the Relu's output, the residual shortcut or None)} for what runs into a Relu and nothing else:
      - a tensor read by a Relu alone: only its positive values matter, and they are the Relu's output;
      - the main input of a residual Add read by such a tensor alone (a bottleneck's last Conv): its values
        that matter lie within the Relu output's maximum plus the shortcut's largest |x|.
    Neither is measured (nor graph inputs or outputs, nor Q/DQ tensors, which are). TensorRT fuses both into
    the Conv or Add that makes them, so they are never stored and a calibration table's range for them is
    unused; and a value beyond those bounds cannot reach the Relu's output (in FP16 it overflows to -inf,
    which the Relu still turns into 0). Measuring them would cost more than all other measurements together:
    a reduction reading a Conv's output keeps onnxruntime from fusing the Conv with its Add and Relu."""
    found = {}

    def only_feeds(name, reader):
        return (name not in histogram_tensors and name not in index.inputs and index.is_float(name)
                and not index.is_constant(name) and index.only_reader(name) is reader)

    for relu in index.graph.node:
        if relu.op_type != "Relu" or not relu.input or not only_feeds(relu.input[0], relu):
            continue
        found[relu.input[0]] = (relu.output[0], None)
        add = index.producer.get(relu.input[0])
        if add is None or add.op_type != "Add" or len(add.input) != 2:
            continue
        for main, shortcut in (add.input, reversed(add.input)):
            if only_feeds(main, add) and index.is_float(shortcut) and not index.is_constant(shortcut):
                found[main] = (relu.output[0], shortcut)
                break
    return found


def derived_tensors(index: GraphIndex, measured: set) -> dict:
    """{tensor: (op, its float inputs)} for outputs of RANGE_KEEPING_OPS reading only activations, except
    the tensors in `measured`."""
    derived = {}
    for name, node in index.producer.items():
        if node.op_type not in RANGE_KEEPING_OPS or name in measured or not index.is_float(name):
            continue
        sources = [i for i in node.input if i and index.is_float(i)]
        if sources and not any(index.is_constant(i) for i in sources):
            derived[name] = (node.op_type, sources)
    return derived


def sample_stride(index: GraphIndex, name: str) -> int:
    """s for a 4-D tensor of more than VALUES_PER_SAMPLE values per sample (every s-th row and column keeps
    about a quarter to all of that many); 1 for a smaller tensor or one whose size is not known up front."""
    dims = index.shape(name) or []
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        return 1
    per_sample = int(np.prod(dims[1:]))
    return 1 if per_sample <= VALUES_PER_SAMPLE else math.ceil(math.sqrt(per_sample / VALUES_PER_SAMPLE))


def probe_model(model: onnx.ModelProto, index: GraphIndex, measured: Iterable[str], nonnegative: set,
                histogram_tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns the largest (and, unless non-negative, smallest) value of each
    tensor in `measured`, and a histogram sample of each of `histogram_tensors`."""
    probed = copy.deepcopy(model)
    measured, histogram_tensors = set(measured), set(histogram_tensors)
    present = {o.name for o in probed.graph.output}
    nodes = []

    def measure(name: str) -> None:
        def output(tensor: str) -> None:
            if tensor not in present:
                probed.graph.output.append(helper.make_tensor_value_info(tensor, index.elem_type(name), None))
                present.add(tensor)

        four_d = len(index.shape(name) or []) == 4
        nodes.append(helper.make_node("GlobalMaxPool", [name], [name + MAX_SUFFIX]) if four_d else
                     helper.make_node("ReduceMax", [name], [name + MAX_SUFFIX], keepdims=0))
        output(name + MAX_SUFFIX)
        if name not in nonnegative:
            nodes.append(helper.make_node("ReduceMin", [name], [name + MIN_SUFFIX], keepdims=0))
            output(name + MIN_SUFFIX)
        if name in histogram_tensors:
            stride = sample_stride(index, name)
            if stride == 1:
                output(name)
            else:
                nodes.append(helper.make_node("MaxPool", [name], [name + SAMPLE_SUFFIX], kernel_shape=[1, 1],
                                              strides=[stride, stride]))
                output(name + SAMPLE_SUFFIX)

    for name in index.inputs:
        if name in measured:
            measure(name)
    for node in model.graph.node:
        nodes.append(node)
        for name in node.output:
            if name in measured:
                measure(name)
    del probed.graph.node[:]
    probed.graph.node.extend(nodes)
    return probed


def bytes_per_sample(index: GraphIndex, names: Iterable[str]) -> int:
    total = 0
    for name in names:
        dims = index.shape(name) or []
        total += 4 * int(np.prod([d for d in dims[1:] if d])) if dims else 4
    return total


def batch_size_for(index: GraphIndex, names: Iterable[str], memory_mb: int) -> int:
    """As many samples as fit `memory_mb` of the tensors `names`."""
    per_sample = max(1, bytes_per_sample(index, names))
    return int(np.clip(memory_mb * 2 ** 20 // per_sample, 1, MAX_AUTO_BATCH))


def overflow_message(name: str) -> str:
    return f"tensor {name!r} is NaN or infinite on the calibration data; the FP32 model itself overflows"


class Statistics(NamedTuple):
    histograms: dict  # {tensor: TensorHistogram} for the histogram tensors
    absmax: dict  # {tensor: largest |x|} for every float activation
    batch: int  # the batch size used
    seconds: float  # the image loop: decoding, the probed model, binning (not opening the session)


def collect_statistics(model: onnx.ModelProto, selection: Selection, histogram_tensors: Iterable[str], bins: int,
                       memory_mb: int, batch_size: int | None = None) -> Statistics:
    from ..runners.onnxrt import OnnxRuntimeRunner

    index = GraphIndex(model)
    histogram_tensors = list(dict.fromkeys(histogram_tensors))
    unmeasured = pre_activations(index, set(histogram_tensors))
    derived = derived_tensors(index, set(histogram_tensors) | {relu for relu, _ in unmeasured.values()})
    measured = [name for name in index.activations() if name not in derived and name not in unmeasured]
    nonnegative = nonnegative_tensors(index)
    input_name = index.inputs[0]
    input_batch = (index.shape(input_name) or [None])[0]
    static = isinstance(input_batch, int) and input_batch > 0
    size = input_batch if static else (batch_size or batch_size_for(index, index.activations(), memory_mb))
    histograms = {name: TensorHistogram(bins) for name in histogram_tensors}
    extremes = {name: (-np.inf, np.inf) for name in measured}  # (max, min)
    probe = probe_model(model, index, measured, nonnegative, histogram_tensors)
    with OnnxRuntimeRunner(probe, priority_order=True, memory_arena=False) as runner, \
            log.progress(len(selection.calibration), "calibrating") as advance:
        started = time.perf_counter()
        for batch, _ in selection.batches(selection.calibration, size):
            real = len(batch)
            outputs = runner.infer({input_name: pad_batch(batch, size) if static else batch})
            # copies of the last sample pad a static batch: they change no extreme, but their values are not binned
            for name in measured:
                high = float(np.max(outputs[name + MAX_SUFFIX]))
                low = 0.0 if name in nonnegative else float(outputs[name + MIN_SUFFIX])
                if not (math.isfinite(high) and math.isfinite(low)):
                    raise SkdeployError(overflow_message(name))
                extremes[name] = (max(extremes[name][0], high), min(extremes[name][1], low))
                if name in histograms:
                    _bin(histograms[name], outputs.get(name + SAMPLE_SUFFIX, outputs.get(name)), real, static,
                         high, low, name)
            del outputs
            advance(real)
        seconds = time.perf_counter() - started
    for name, (op, sources) in derived.items():  # graph order: a source is measured or derived before its reader
        high, low = max(extremes[s][0] for s in sources), min(extremes[s][1] for s in sources)
        extremes[name] = (max(high, 0.0), max(low, 0.0)) if op == "Relu" else (high, low)
    absmax = {name: max(abs(high), abs(low)) for name, (high, low) in extremes.items()}
    for name, (relu, shortcut) in unmeasured.items():  # the values that reach the Relu (see pre_activations)
        absmax[name] = extremes[relu][0] + (absmax[shortcut] if shortcut else 0.0)
    return Statistics(histograms, absmax, size, seconds)


def _bin(histogram: TensorHistogram, values: np.ndarray, real: int, static: bool, high: float, low: float,
         name: str) -> None:
    if static and values.ndim and values.shape[0] > real:
        values = values[:real]
    per_sample = values.size // max(1, len(values)) if values.ndim else values.size
    try:
        histogram.update(values, stride=max(1, -(-per_sample // VALUES_PER_SAMPLE)), peak=max(high, -low),
                         nonnegative=low >= 0)
    except ValueError:
        raise SkdeployError(overflow_message(name)) from None
