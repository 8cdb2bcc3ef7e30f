"""The conversions of the calibrate stage (skdeploy.stages.calibrate): checking the FP32 input, its
preprocessing, the ranges (through the cache), the held-out evaluation, and building the INT8 Q/DQ model
(with the accuracy budget's fallback search) or the FP16 one.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from onnx import AttributeProto, TensorProto

from ..data import InputShape, Preprocessing
from ..errors import SkdeployError, UsageError
from ..graph.preprocess import NORMALIZED_INPUT
from ..log import log
from ..onnx.index import GraphIndex
from ..onnx.io import lowered_precision
from . import accuracy, cache
from .collect import collect_statistics
from .fp16 import convert_fp16, float_tensors, fp16_candidates, fp32_reason
from .qdq import insert_qdq, plan_int8, sensitivity_model
from .ranges import ALGORITHM, amax_of

if TYPE_CHECKING:
    from onnx import ModelProto

    from ..data.splits import Selection
    from ..fileio import PathLike

PREPROCESSING_OPTIONS = ("mean", "std", "resize", "crop", "channel_order", "interpolation", "scale")


def model_input(model: ModelProto, manifest: dict | None = None) -> tuple:
    index = GraphIndex(model)
    if len(index.inputs) != 1:
        raise UsageError(f"calibration feeds one image input; this model has {len(index.inputs)} inputs")
    name = index.inputs[0]
    recorded = (manifest or {}).get("preprocessing") or {}
    if recorded.get("in_graph"):  # raw pixels in, preprocessing in the graph (graph/preprocess.py)
        raw = Preprocessing.from_dict(recorded)
        if raw.layout != "NCHW":
            raise UsageError(f"{raw.layout} raw input: calibrate the NCHW model, then add the raw input with "
                             "'skdeploy optimize --raw-input --layout nhwc'")
        return name, InputShape(raw.channels, *raw.crop)
    if index.elem_type(name) != TensorProto.FLOAT:
        raise UsageError(f"input {name!r} is not float32; calibrate takes an FP32 ONNX")
    dims = index.shape(name) or []
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise UsageError(f"input {name!r} must be (N, C, H, W) with fixed C, H, W; got {dims}")
    return name, InputShape(*dims[1:])


def check_fp32(model: ModelProto, path: PathLike) -> None:
    lowered = lowered_precision(model)
    if lowered:
        raise UsageError(f"{path} already has {lowered}; calibrate takes the FP32 ONNX from export")
    subgraph_kinds = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
    with_subgraphs = next((node for node in model.graph.node
                           if any(a.type in subgraph_kinds for a in node.attribute)), None)
    if with_subgraphs is not None:  # Q/DQ placement and range collection see the main graph only
        named = f" '{with_subgraphs.name}'" if with_subgraphs.name else ""
        raise UsageError(f"{path} has control flow ({with_subgraphs.op_type} node{named} with subgraphs), which "
                         "calibration does not handle; give a graph without If, Loop or Scan, or build it as FP32")


def name_nodes(model: ModelProto) -> None:
    """Unique node names: ranges, fallback reports and `keep_fp32` all refer to nodes by name."""
    seen = set()
    for position, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{position}"
        seen.add(node.name)


def preprocessing_from_options(options: dict, shape: InputShape) -> Preprocessing:
    """A Preprocessing from mean/std (required) and the optional rest, defaulting to the input size."""
    missing = [key for key in ("mean", "std") if not options.get(key)]
    if missing:
        raise UsageError("preprocessing needs " + " and ".join(f"`{k}`" for k in missing))

    def per_channel(key):
        values = tuple(float(v) for v in options[key])
        if len(values) == 1:
            values *= shape.channels
        if len(values) != shape.channels:
            raise UsageError(f"`{key}` needs {shape.channels} values (one per input channel), got {len(values)}")
        return values

    crop = tuple(options.get("crop") or (shape.height, shape.width))
    order = options.get("channel_order") or ("GRAY" if shape.channels == 1 else "RGB")
    if order not in ("RGB", "BGR", "GRAY") or (order == "GRAY") != (shape.channels == 1):
        raise UsageError(f"`channel_order={order}` does not fit a {shape.channels}-channel input")
    resize = options.get("resize")
    return Preprocessing(resize=min(crop) if resize is None else int(resize), crop=crop, mean=per_channel("mean"),
                         std=per_channel("std"), channel_order=order,
                         interpolation=options.get("interpolation") or "bilinear",
                         scale=float(options.get("scale") or 1.0 / 255.0))


def preprocessing_resolver(path: PathLike, manifest: dict | None, settings: Any,
                           shape: InputShape) -> Callable[[str], Preprocessing]:
    given = {k: v for k, v in settings.preprocessing.items() if v}
    recorded = (manifest or {}).get("preprocessing")
    if recorded and given:
        raise UsageError(f"{path} has a manifest that records its preprocessing; "
                         + ", ".join(f"`{key}`" for key in sorted(given)) + " are only for models without one")

    def resolve(what):
        if recorded:
            return Preprocessing.from_dict(recorded)
        if not given:
            missing = ": its manifest records no preprocessing" if manifest else " has no manifest"
            raise UsageError(f"{path}{missing}, so its preprocessing is unknown; {what} need `mean` and "
                             f"`std` (plus `resize`/`crop`/`channel_order` if not {shape.height}x{shape.width} "
                             f"{'GRAY' if shape.channels == 1 else 'RGB'})")
        return preprocessing_from_options(given, shape)

    return resolve


def collect_ranges(model: ModelProto, selection: Selection, settings: Any, onnx_sha256: str, output: PathLike) -> tuple:
    """({tensor: {absmax[, amax]}}, "reused" | "computed", seconds of the image loop or None when reused)
    through the cache beside the output.
    INT8 histograms every tensor the Q/DQ placement can use; the rest only need their largest |x|."""
    method = settings.method if settings.precision == "int8" else "absmax"
    key = {"onnx_sha256": onnx_sha256, "data_sha256": selection.sha256, "images": len(selection.calibration),
           "method": method, "percentile": settings.percentile if method in ("percentile", "mse") else None,
           "bins": settings.bins, "algorithm": ALGORITHM}
    path = cache.ranges_path(output)
    tensors = cache.load_ranges(path, key) if settings.reuse_cache else None
    if tensors is not None:
        log.info(f"reusing calibration ranges from {path} (same model, data and settings)")
        return tensors, "reused", None
    started = time.time()
    histogram_tensors = plan_int8(model).activation_tensors(model) if method != "absmax" else []
    histograms, absmax, batch, loop_seconds = collect_statistics(model, selection, histogram_tensors, settings.bins,
                                                                 settings.memory_mb, settings.batch_size)
    tensors = {name: {"absmax": float(peak)} for name, peak in absmax.items()}
    inputs = set(GraphIndex(model).inputs) | {NORMALIZED_INPUT}
    for name, hist in histograms.items():
        # the model input (or, with raw input, the graph's normalized pixels) keeps its full range: preprocessing
        # bounds it, and a spike such as a constant
        # background would otherwise pull the entropy threshold below the brightest pixels of every image
        amax = hist.absmax if name in inputs else amax_of(hist, method, settings.percentile)
        tensors[name]["amax"] = float(amax)
    cache.save_ranges(path, key, tensors)
    log.info(f"collected {len(histograms)} histograms and {len(tensors)} maxima from "
             f"{len(selection.calibration)} samples (batch {batch}) in {time.time() - started:.1f}s (image loop "
             f"{loop_seconds:.1f}s)")
    return tensors, "computed", round(loop_seconds, 2)


class Evaluation:
    """The held-out split, its reference predictions, and a scorer for candidate models."""

    def __init__(self, model, manifest, artifact, selection, batch_size) -> None:
        self.selection, self.batch_size = selection, batch_size
        self.indices = selection.holdout
        labels = selection.source.labels
        reference, kind = accuracy.reference_predictions(manifest, artifact, model, selection, self.indices,
                                                         batch_size)
        self.judge = accuracy.Judge(reference, labels[self.indices] if labels is not None else None, kind)

    def score(self, candidate: ModelProto, description: str) -> dict:
        return self.judge.score(accuracy.onnx_predictions(candidate, self.selection, self.indices,
                                                          self.batch_size, description))


def int8_with_fallback(model: ModelProto, plan_exclude: Iterable[str], amax: dict, absmax: dict, settings: Any,
                       fallen: Iterable[str]) -> ModelProto:
    """INT8 with the units in `fallen` returned to settings.fallback and those in settings.keep_fp16 in FP16
    (FP32 where FP16 would overflow)."""
    plan = plan_int8(model, exclude=set(plan_exclude) | set(fallen) | set(settings.keep_fp16))
    quantized = insert_qdq(model, plan, amax)
    wanted = set(settings.keep_fp16) | (set(fallen) if settings.fallback == "fp16" else set())
    if wanted:
        index = GraphIndex(model)
        nodes = {node.name: node for node in model.graph.node}
        half = {name for name in wanted if not fp32_reason(nodes[name], index, float_tensors(nodes[name], index),
                                                           absmax, settings.fp16_limit)}
        quantized = convert_fp16(quantized, half)
    return quantized


def build_int8(model: ModelProto, ranges: dict, settings: Any, evaluation: Evaluation | None) -> tuple:
    amax = {name: entry["amax"] for name, entry in ranges.items() if "amax" in entry}
    absmax = {name: entry["absmax"] for name, entry in ranges.items()}
    for name in sorted(amax):
        log.debug(f"range {name}: amax {amax[name]:.4g} of largest |x| {absmax[name]:.4g} ({settings.method})")
    plan = plan_int8(model, exclude=set(settings.keep_fp32) | set(settings.keep_fp16))
    if not plan.units:
        raise UsageError("the model has no Conv, Gemm or MatMul to quantize")
    record = {"quantized_units": len(plan.units), "qdq_tensors": len(plan.activation_tensors(model)),
              "fallback_layers": [], "accuracy": None, "accuracy_plain_int8": None}
    budget = settings.max_top1_drop
    # only the budget's fallback search goes back to the FP32 model
    quantized = (int8_with_fallback(model, settings.keep_fp32, amax, absmax, settings, ()) if settings.keep_fp16
                 else insert_qdq(model, plan, amax, in_place=budget is None))
    if evaluation is None:
        return quantized, record
    score = evaluation.score(quantized, "INT8 accuracy")
    record["accuracy"] = record["accuracy_plain_int8"] = score
    if budget is None or score["drop"] <= budget:
        return quantized, record
    log.info(f"INT8 drops top-1 by {score['drop']:.2f} points, over the budget of {budget:g}; ranking layers")
    shadow, outputs = sensitivity_model(model, plan, amax)
    errors = accuracy.unit_errors(shadow, outputs, evaluation.selection, evaluation.indices, evaluation.batch_size)
    ranked = accuracy.rank_by_sensitivity(errors)
    scores = {}

    def attempt(count):
        candidate = int8_with_fallback(model, settings.keep_fp32, amax, absmax, settings, ranked[:count])
        scores[count] = evaluation.score(candidate, f"INT8 with {count} layer(s) in {settings.fallback}")
        return candidate, scores[count]

    everything, worst_case = attempt(len(ranked))
    if worst_case["drop"] > budget:
        worst = ", ".join(f"{u} ({errors[u]:.2g})" for u in ranked[:5])
        raise SkdeployError(f"top-1 budget of {budget:g} points cannot be met: plain INT8 drops "
                            f"{score['drop']:.2f}, and with all {len(ranked)} quantized layers in "
                            f"{settings.fallback} it still drops {worst_case['drop']:.2f} (worst layers by own "
                            f"error: {worst}); nothing written")
    count = accuracy.smallest_fallback(len(ranked), lambda k: attempt(k)[1]["drop"] <= budget)
    final = everything if count == len(ranked) else attempt(count)[0]
    nodes = {node.name: node for node in model.graph.node}
    record["fallback_layers"] = [{"name": unit, "op": nodes[unit].op_type, "own_error": round(errors[unit], 6),
                                  "precision": settings.fallback} for unit in ranked[:count]]
    record["accuracy"] = scores[count]
    record["fallback_search"] = {str(k): v["drop"] for k, v in sorted(scores.items())}
    log.info(f"budget met with {count} layer(s) in {settings.fallback}: "
             + ", ".join(unit for unit in ranked[:count]))
    return final, record


def build_fp16(model: ModelProto, ranges: dict, settings: Any, evaluation: Evaluation | None) -> tuple:
    absmax = {name: entry["absmax"] for name, entry in ranges.items()}
    convert, kept = fp16_candidates(model, settings.keep_fp32, absmax, settings.fp16_limit)
    converted = convert_fp16(model, convert, settings.fp16_io)
    record = {"fp16_nodes": len(convert), "kept_fp32": [{"name": k, "reason": v} for k, v in kept.items()],
              "fp16_io": settings.fp16_io, "accuracy": None}
    if evaluation is not None:
        record["accuracy"] = evaluation.score(converted, "FP16 accuracy")
        budget = settings.max_top1_drop
        if budget is not None and record["accuracy"]["drop"] > budget:
            raise SkdeployError(f"FP16 drops top-1 by {record['accuracy']['drop']:.2f} points, over the budget of "
                                f"{budget:g}; keep the sensitive nodes FP32 with `keep_fp32`; nothing written")
    return converted, record


