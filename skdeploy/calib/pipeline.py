"""calibrate_model: FP32 ONNX in, explicit-precision ONNX out (INT8 Q/DQ or FP16 types) plus manifest,
ranges cache and TensorRT calibration table.

    from skdeploy.calib import CalibrationSettings, calibrate_model
    result = calibrate_model("demo.onnx", "demo_int8.onnx", CalibrationSettings(precision="int8",
                             method="entropy", max_top1_drop=0.3))
    result.accuracy["drop"], result.fallback_layers   # also in the manifest's "calibrate" stage: result.record()
"""
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from onnx import TensorProto

from ..data import InputShape, Preprocessing, default_calibration_path, open_source, select_calibration
from ..errors import SkdeployError, UsageError, require_finite
from ..fileio import existing_file, output_transaction, sha256_file
from ..graph.preprocess import NORMALIZED_INPUT
from ..log import log
from ..manifest import StageResult, add_stage, load_manifest, manifest_path, write_manifest
from ..models.entry import ModelEntry, derive_manifest, new_manifest
from ..onnx.index import GraphIndex
from ..onnx.io import check_onnx_file, io_spec, load_onnx, node_counts, opset_of, save_onnx
from . import accuracy, cache
from .collect import collect_statistics
from .fp16 import FP16_MAX, check_keep_fp32, convert_fp16, float_tensors, fp16_candidates, fp32_reason
from .qdq import insert_qdq, plan_int8, sensitivity_model
from .ranges import ALGORITHM, METHODS, MIN_BINS, amax_of

PRECISIONS = ("int8", "fp16")
FALLBACKS = ("fp16", "fp32")
TRT_VERSION = re.compile(r"\d{1,2}\.\d{1,2}(\.\d{1,2})?")  # MAJOR.MINOR[.PATCH], as the table header encodes
PREPROCESSING_OPTIONS = ("mean", "std", "resize", "crop", "channel_order", "interpolation", "scale")


@dataclass
class CalibrationSettings:
    precision: str = "int8"  # int8 | fp16
    method: str = "mse"  # mse | max | entropy | percentile (INT8 activation ranges; see docs/precision.md)
    percentile: float = 99.99  # for percentile, and the floor of mse
    calib_data: str = None  # folder of images, .npy/.npz, IDX file; None: the demo model's shipped set
    calib_images: int = 512
    holdout_images: int = 1000  # samples after the calibration subset that measure accuracy (0: skip)
    seed: int = 0
    bins: int = MIN_BINS  # histogram bins over [0, max] (at least 2048)
    batch_size: int = None  # None: the model's static batch, else what fits memory_mb of activations
    memory_mb: int = 512
    max_top1_drop: float = None  # accuracy budget in points against the FP32 reference
    fallback: str = "fp16"  # where layers go when the budget needs it: fp16 | fp32
    keep_fp32: tuple = ()  # node names that stay FP32 (not quantized, not converted)
    fp16_io: bool = False
    fp16_limit: float = FP16_MAX / 2  # values beyond this on calibration data keep their node FP32
    trt_version: str = "10.3.0"  # header of the TensorRT calibration table
    preprocessing: dict = field(default_factory=dict)  # only for a model without a manifest
    reuse_cache: bool = True

    def __post_init__(self):
        require_finite(percentile=self.percentile, max_top1_drop=self.max_top1_drop, fp16_limit=self.fp16_limit)
        if self.precision not in PRECISIONS:
            raise UsageError(f"`precision` must be int8 or fp16, got {self.precision!r}")
        if self.method not in METHODS:
            raise UsageError(f"`method` must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < self.percentile <= 100:
            raise UsageError(f"`percentile` must be in (0, 100], got {self.percentile}")
        if self.bins < MIN_BINS:
            raise UsageError(f"`bins` must be at least {MIN_BINS}, got {self.bins}")
        if self.fallback not in FALLBACKS:
            raise UsageError(f"`fallback` must be fp16 or fp32, got {self.fallback!r}")
        if self.max_top1_drop is not None and self.max_top1_drop < 0:
            raise UsageError(f"`max_top1_drop` must be 0 or more points, got {self.max_top1_drop}")
        if self.calib_images < 1:
            raise UsageError(f"`calib_images` must be at least 1, got {self.calib_images}")
        if self.holdout_images < 0 or (self.batch_size is not None and self.batch_size < 1):
            raise UsageError("`holdout_images` must be 0 or more and `batch_size` at least 1")
        if not TRT_VERSION.fullmatch(str(self.trt_version)):
            raise UsageError(f"`trt_version` must look like 10.3.0 or 8.6, got {self.trt_version!r}")
        unknown = set(self.preprocessing) - set(PREPROCESSING_OPTIONS)
        if unknown:
            raise UsageError(f"unknown preprocessing option(s): {', '.join(sorted(unknown))}")


@dataclass
class CalibrationResult(StageResult):
    """What one calibration made and measured; `record()` is its "calibrate" stage in the manifest.
    The INT8 fields are None for FP16 and the FP16 fields None for INT8; neither is recorded for the other."""

    settings: CalibrationSettings
    source_onnx: dict  # {file, sha256}
    data: dict  # {path, description, sha256, images, holdout_images, skipped_unreadable}
    ranges_file: str  # name of the ranges cache beside the output
    ranges_cache: str  # "computed" | "reused"
    calibration_table: str  # name of the TensorRT calibration table beside the output (INT8), else None
    accuracy: dict  # the held-out score (accuracy.Judge.score), None without held-out samples
    node_counts: dict
    seconds: float
    collect_seconds: float = None  # the image loop (decoding, the probed model, binning); None: ranges reused
    quantized_units: int = None
    qdq_tensors: int = None
    fallback_layers: list = None  # [{name, op, own_error, precision}] moved out of INT8 by the budget
    accuracy_plain_int8: dict = None
    fallback_search: dict = None  # {layer count: drop} tried by the budget search; None when none ran
    fp16_nodes: int = None
    kept_fp32: list = None  # [{name, reason}] left FP32 by the FP16 conversion
    fp16_io: bool = None

    @property
    def precision(self) -> str:
        return self.settings.precision

    @property
    def method(self) -> str:
        """The INT8 range method; None for FP16."""
        return self.settings.method if self.precision == "int8" else None

    def record(self) -> dict:
        if self.precision == "int8":
            outcome = {"quantized_units": self.quantized_units, "qdq_tensors": self.qdq_tensors,
                       "fallback_layers": self.fallback_layers, "accuracy": self.accuracy,
                       "accuracy_plain_int8": self.accuracy_plain_int8}
            if self.fallback_search is not None:
                outcome["fallback_search"] = self.fallback_search
        else:
            outcome = {"fp16_nodes": self.fp16_nodes, "kept_fp32": self.kept_fp32, "fp16_io": self.fp16_io,
                       "accuracy": self.accuracy}
        return {"precision": self.precision, "method": self.method, "settings": asdict(self.settings),
                "source_onnx": self.source_onnx, "data": self.data, "ranges_file": self.ranges_file,
                "ranges_cache": self.ranges_cache, "calibration_table": self.calibration_table,
                "budget": {"max_top1_drop": self.settings.max_top1_drop, "fallback": self.settings.fallback},
                **outcome, "node_counts": self.node_counts, "seconds": self.seconds,
                "collect_seconds": self.collect_seconds}


def _model_input(model, manifest=None) -> tuple:
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


def _check_fp32(model, path) -> None:
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        raise UsageError(f"{path} already has Q/DQ nodes; calibrate takes the FP32 ONNX from export")
    if any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer):
        raise UsageError(f"{path} already has FP16 weights; calibrate takes the FP32 ONNX from export")


def _name_nodes(model) -> None:
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
    return Preprocessing(resize=int(options.get("resize") or min(crop)), crop=crop, mean=per_channel("mean"),
                         std=per_channel("std"), channel_order=order,
                         interpolation=options.get("interpolation") or "bilinear",
                         scale=float(options.get("scale") or 1.0 / 255.0))


def _preprocessing_resolver(path, manifest, settings: CalibrationSettings, shape: InputShape):
    given = {k: v for k, v in settings.preprocessing.items() if v}
    recorded = (manifest or {}).get("preprocessing")
    if recorded and given:
        raise UsageError(f"{path} has a manifest that records its preprocessing; "
                         + ", ".join(f"`{key}`" for key in sorted(given)) + " are only for models without one")

    def resolve(what):
        if recorded:
            return Preprocessing.from_dict(recorded)
        if not given:
            missing = "its manifest records no preprocessing" if manifest else "has no manifest"
            raise UsageError(f"{path} {missing}, so its preprocessing is unknown; {what} need `mean` and "
                             f"`std` (plus `resize`/`crop`/`channel_order` if not {shape.height}x{shape.width} "
                             f"{'GRAY' if shape.channels == 1 else 'RGB'})")
        return preprocessing_from_options(given, shape)

    return resolve


def _collect_ranges(model, selection, settings, onnx_sha256, output) -> tuple:
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

    def __init__(self, model, manifest, artifact, selection, batch_size):
        self.selection, self.batch_size = selection, batch_size
        self.indices = selection.holdout
        labels = selection.source.labels
        reference, kind = accuracy.reference_predictions(manifest, artifact, model, selection, self.indices,
                                                         batch_size)
        self.judge = accuracy.Judge(reference, labels[self.indices] if labels is not None else None, kind)

    def score(self, candidate, description) -> dict:
        return self.judge.score(accuracy.onnx_predictions(candidate, self.selection, self.indices,
                                                          self.batch_size, description))


def int8_with_fallback(model, plan_exclude, amax, absmax, settings, fallen):
    """INT8 with the units in `fallen` returned to settings.fallback (FP32 where FP16 would overflow)."""
    plan = plan_int8(model, exclude=set(plan_exclude) | set(fallen))
    quantized = insert_qdq(model, plan, amax)
    if settings.fallback == "fp16" and fallen:
        index = GraphIndex(model)
        nodes = {node.name: node for node in model.graph.node}
        half = {name for name in fallen if not fp32_reason(nodes[name], index, float_tensors(nodes[name], index),
                                                           absmax, settings.fp16_limit)}
        quantized = convert_fp16(quantized, half)
    return quantized


def _build_int8(model, ranges, settings, evaluation) -> tuple:
    amax = {name: entry["amax"] for name, entry in ranges.items() if "amax" in entry}
    absmax = {name: entry["absmax"] for name, entry in ranges.items()}
    plan = plan_int8(model, exclude=settings.keep_fp32)
    if not plan.units:
        raise UsageError("the model has no Conv, Gemm or MatMul to quantize")
    record = {"quantized_units": len(plan.units), "qdq_tensors": len(plan.activation_tensors(model)),
              "fallback_layers": [], "accuracy": None, "accuracy_plain_int8": None}
    budget = settings.max_top1_drop
    # only the budget's fallback search goes back to the FP32 model
    quantized = insert_qdq(model, plan, amax, in_place=budget is None)
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


def _build_fp16(model, ranges, settings, evaluation) -> tuple:
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


def calibrate_model(input_onnx, output_onnx, settings: CalibrationSettings, force=False) -> CalibrationResult:
    """Calibrate `input_onnx` (FP32) into `output_onnx`, written with its manifest, ranges cache and (INT8)
    TensorRT table: all of them, or none."""
    output = Path(output_onnx)
    with output_transaction(calibration_outputs(output, settings.precision), force):
        return _calibrate(input_onnx, output, settings)


def calibration_outputs(output: Path, precision: str) -> list:
    """Every file calibrating into `output` writes, the manifest last."""
    table = [cache.table_path(output)] if precision == "int8" else []
    return [output, *table, cache.ranges_path(output), manifest_path(output)]


def _calibrate(input_onnx, output: Path, settings: CalibrationSettings) -> CalibrationResult:
    started = time.time()
    try:
        onnx_sha256 = sha256_file(existing_file(input_onnx))  # hashed once: the manifest check and the record
    except OSError as exc:
        raise SkdeployError(f"cannot read {input_onnx}: {exc.strerror}") from None
    model = load_onnx(input_onnx, sha256=onnx_sha256)
    _check_fp32(model, input_onnx)
    _name_nodes(model)
    check_keep_fp32(model, settings.keep_fp32)  # for INT8 too, before the statistics are collected
    manifest = load_manifest(input_onnx, required=False, verify=False)  # load_onnx checked the hash
    _, shape = _model_input(model, manifest)
    resolve = _preprocessing_resolver(input_onnx, manifest, settings, shape)
    data_path, source, selection = _calibration_data(settings, manifest, shape, resolve)
    ranges, cache_state, collect_seconds = _collect_ranges(model, selection, settings, onnx_sha256, output)
    batch = settings.batch_size or 16
    evaluation = Evaluation(model, manifest, input_onnx, selection, batch) if selection.holdout else None
    build = _build_int8 if settings.precision == "int8" else _build_fp16
    calibrated, outcome = build(model, ranges, settings, evaluation)
    table = None
    if settings.precision == "int8":
        table = cache.table_path(output)
        cache.write_table(table, ranges, settings.method, settings.trt_version)
    save_onnx(calibrated, output)
    check_onnx_file(output)
    result_manifest = _derived_manifest(manifest, calibrated, shape, resolve, settings)
    result = CalibrationResult(
        output, settings, source_onnx={"file": str(input_onnx), "sha256": onnx_sha256},
        data={"path": str(data_path), "description": source.description, "sha256": selection.sha256,
              "images": len(selection.calibration), "holdout_images": len(selection.holdout),
              "skipped_unreadable": selection.skipped},
        ranges_file=cache.ranges_path(output).name, ranges_cache=cache_state,
        calibration_table=table.name if table else None, node_counts=node_counts(calibrated),
        seconds=round(time.time() - started, 2), collect_seconds=collect_seconds, **outcome)
    add_stage(result_manifest, "calibrate", result.record())
    write_manifest(output, result_manifest, kind="onnx")
    if result.accuracy:
        log.info(f"{settings.precision.upper()} on {result.accuracy['images']} held-out samples: drop "
                 f"{result.accuracy['drop']:.2f} points, agreement {result.accuracy['agreement']:.2%} "
                 f"(reference: {result.accuracy['reference']})")
    return result


def _calibration_data(settings: CalibrationSettings, manifest, shape: InputShape, resolve) -> tuple:
    """(data path, Source, Selection): the settings' data or the demo model's shipped set, split into the
    calibration subset and the held-out samples an accuracy budget needs."""
    data_path = settings.calib_data or default_calibration_path(manifest)
    if data_path is None:
        raise UsageError("`calib_data` is required (a folder of images, .npy/.npz, or an IDX file); only the "
                         "demo model has a shipped calibration set")
    source = open_source(data_path, shape, resolve)
    selection = select_calibration(source, shape, settings.calib_images, settings.holdout_images, settings.seed)
    if settings.max_top1_drop is not None and not selection.holdout:
        raise UsageError(f"`max_top1_drop` needs held-out samples, but all {len(selection.calibration)} usable "
                         "samples calibrate; lower `calib_images` or give more data")
    return data_path, source, selection


def _derived_manifest(manifest, calibrated, shape: InputShape, resolve, settings: CalibrationSettings) -> dict:
    """The output's manifest: the input's carried on (a new one for an ONNX without), with the output's I/O."""
    if manifest is None:
        derived = new_manifest(ModelEntry(input_size=[shape.channels, shape.height, shape.width]),
                               resolve("the manifest").to_dict() if any(settings.preprocessing.values()) else None)
    else:
        derived = derive_manifest(manifest)
    derived["inputs"], derived["outputs"] = io_spec(calibrated)
    derived["opset"] = opset_of(calibrated)
    return derived
