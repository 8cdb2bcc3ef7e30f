"""Top-1 accuracy on the held-out split against the FP32 reference, per-layer quantisation error, and
the accuracy-budget search that moves the worst layers back to float.

The reference is the FP32 PyTorch model when the manifest names weights that can be loaded and hashed
to the same sha256; otherwise the FP32 ONNX, which export proved equal to PyTorch (its parity record).
With labels the drop is reference accuracy minus candidate accuracy; without labels the reference's
own predictions are the labels, so the drop is 100 * (1 - agreement). Agreement and accuracy are
fractions, drops are percentage points.
"""
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from ..data import Preprocessing, Selection, pad_batch
from ..deps import available
from ..errors import SkdeployError
from ..fileio import PathLike
from ..log import log
from ..models.entry import ModelEntry
from ..reference import Reference, reference_from_manifest

FALLBACKS = ("fp16", "fp32")  # where a layer kept out of INT8 computes: calibrate's and debug-precision's choices


def runs(model: onnx.ModelProto | PathLike, selection: Selection, indices: Sequence[int], batch_size: int,
         description: str, priority_order: bool = False) -> Iterator[tuple]:
    """(every output, samples in the batch) per batch of `indices` through onnxruntime, with progress: for
    the sensitivity models, whose outputs are sums rather than logits. A model with a static batch gets its
    own batch size, the last one padded. `priority_order` for a model whose outputs read many intermediate
    tensors (runners/onnxrt.py)."""
    from ..runners.onnxrt import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(model, priority_order=priority_order)
    with runner, log.progress(len(indices), description) as advance:
        spec = runner.input_specs()[0]
        low, high = runner.batch_limits()
        size = low if low == high else batch_size
        for batch, _ in selection.batches(indices, size):
            yield runner.infer({spec.name: pad_batch(batch, low).astype(spec.dtype)}), len(batch)
            advance(len(batch))


def onnx_predictions(model: onnx.ModelProto | PathLike, selection: Selection, indices: Sequence[int],
                     batch_size: int, description: str) -> np.ndarray:
    """Top-1 class per held-out sample from onnxruntime (`model` is a ModelProto or a path), through
    Runner.run_batched as every other run over a data set."""
    from ..runners.onnxrt import OnnxRuntimeRunner

    top1 = []
    with OnnxRuntimeRunner(model) as runner, log.progress(len(indices), description) as advance:
        dtype = runner.input_specs()[0].dtype
        low, high = runner.batch_limits()
        for batch, _ in selection.batches(indices, low if low == high else batch_size):
            logits = runner.run_batched(batch.astype(dtype), batch_size, advance)
            top1.append(logits.reshape(len(batch), -1).argmax(axis=1))
    return np.concatenate(top1) if top1 else np.zeros(0, np.int64)


def pytorch_reference(manifest: dict, artifact: PathLike) -> Reference | None:
    """The FP32 PyTorch model the ONNX came from, when torch is installed and its weights can be found
    with the same sha256; else None (the FP32 ONNX stands in)."""
    if not ModelEntry.from_manifest(manifest).checkpoint or not available("torch"):
        return None
    try:
        return reference_from_manifest(artifact, same_weights=True)
    except (SkdeployError, OSError):
        return None


def reference_predictions(manifest: dict, artifact: PathLike, fp32_model: onnx.ModelProto, selection: Selection,
                          indices: Sequence[int], batch_size: int) -> tuple:
    """(top-1 per sample, "pytorch" | "onnx-fp32"); `artifact` is the FP32 ONNX the manifest describes."""
    reference = pytorch_reference(manifest, artifact)
    if reference is None:
        return onnx_predictions(fp32_model, selection, indices, batch_size, "FP32 reference"), "onnx-fp32"
    top1 = []
    recorded = manifest.get("preprocessing")
    # PyTorch takes normalized inputs, also when the ONNX takes raw pixels (preprocessing in the graph)
    to_reference = Preprocessing.from_dict(recorded).reference_inputs if recorded else np.asarray
    with reference.runner() as runner, log.progress(len(indices), "FP32 PyTorch reference") as advance:
        for batch, _ in selection.batches(indices, batch_size):
            top1.append(runner.run_batched(to_reference(batch), batch_size, advance).argmax(axis=1))
    return np.concatenate(top1), "pytorch"


@dataclass
class Judge:
    """Scores candidate predictions against the reference on one held-out split."""

    reference: np.ndarray
    labels: np.ndarray | None  # None when the data has no labels
    reference_kind: str

    def score(self, predictions: np.ndarray) -> dict:
        """Agreement and top-1 as fractions (as validation reports them); the drop in points, the unit
        of `max_top1_drop`."""
        agreement = float(np.mean(predictions == self.reference))
        result = {"images": int(len(predictions)), "reference": self.reference_kind,
                  "agreement": round(agreement, 5)}
        if self.labels is None:
            result.update(metric="agreement", drop=round(100.0 * (1.0 - agreement), 3))
        else:
            reference_top1 = float(np.mean(self.reference == self.labels))
            top1 = float(np.mean(predictions == self.labels))
            result.update(metric="labels", reference_top1=round(reference_top1, 5), top1=round(top1, 5),
                          drop=round(100.0 * (reference_top1 - top1), 3))
        return result


def unit_errors(shadow_model: onnx.ModelProto, outputs: dict, selection: Selection, indices: Sequence[int],
                batch_size: int) -> dict:
    """{unit: noise-to-signal power ratio of its own quantisation} over the held-out samples."""
    error = dict.fromkeys(outputs, 0.0)
    signal = dict.fromkeys(outputs, 0.0)
    for result, _ in runs(shadow_model, selection, indices, batch_size, "ranking layers"):
        for unit, (err_name, sig_name) in outputs.items():
            error[unit] += float(result[err_name])
            signal[unit] += float(result[sig_name])
    return {unit: error[unit] / signal[unit] if signal[unit] > 0 else 0.0 for unit in outputs}


def rank_by_sensitivity(errors: dict) -> list:
    """Units from the largest own error to the smallest: the fallback returns the first k to float.
    Equal errors keep the order of `errors` (graph order)."""
    return sorted(errors, key=lambda unit: -errors[unit])


def smallest_fallback(count: int, meets: Callable[[int], bool]) -> int:
    """The smallest k in 1..count with meets(k), assuming meets is (nearly) monotone: gallop 1, 2, 4, ...
    then bisect. meets(count) must already be known true. Each k is evaluated at most once."""
    cache = {}

    def check(k):
        if k not in cache:
            cache[k] = meets(k)
        return cache[k]

    low, high = 0, 1
    while high < count and not check(high):
        low, high = high, min(count, high * 2)
    high = min(high, count)
    while high - low > 1:
        middle = (low + high) // 2
        if check(middle):
            high = middle
        else:
            low = middle
    return high
