"""calibrate_model: FP32 ONNX in, explicit-precision ONNX out (INT8 Q/DQ or FP16 types) plus manifest,
ranges cache and TensorRT calibration table.

    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model
    result = calibrate_model("demo.onnx", "demo_int8.onnx", CalibrationSettings(precision="int8",
                             method="entropy", max_top1_drop=0.3))
    result.accuracy["drop"], result.fallback_layers   # also in the manifest's "calibrate" stage: result.record()

The conversions themselves live in skdeploy/calib/ (convert.py drives ranges, Q/DQ, FP16 and the budget).
"""
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..calib import cache
from ..calib.accuracy import FALLBACKS
from ..calib.convert import (
    PREPROCESSING_OPTIONS,
    Evaluation,
    build_fp16,
    build_int8,
    check_fp32,
    collect_ranges,
    model_input,
    name_nodes,
    preprocessing_resolver,
)
from ..calib.fp16 import FP16_MAX, check_keep_fp32
from ..calib.ranges import MAX_BINS, METHODS, MIN_BINS
from ..data import MAX_BATCH, InputShape, class_names_for, default_calibration_path, open_source, select_calibration
from ..errors import SkdeployError, UsageError, check_field_types, require_finite
from ..fileio import existing_file, sha256_file
from ..log import log
from ..manifest import CALIBRATED_PRECISIONS, StageResult, load_manifest, manifest_path
from ..models.entry import ModelEntry, derive_manifest, new_manifest
from ..onnx.io import check_onnx_file, io_spec, load_onnx, node_counts, opset_of, save_onnx
from .stage import run_stage, source_record

TRT_VERSION = re.compile(r"\d{1,2}\.\d{1,2}(\.\d{1,2})?")  # MAJOR.MINOR[.PATCH], as the table header encodes


@dataclass
class CalibrationSettings:
    precision: str = "int8"  # int8 | fp16
    method: str = "mse"  # mse | max | entropy | percentile (INT8 activation ranges; see docs/precision.md)
    percentile: float = 99.99  # for percentile, and the floor of mse
    calib_data: str | None = None  # folder of images, .npy/.npz, IDX file; None: the demo model's shipped set
    calib_images: int = 512
    holdout_images: int = 1000  # samples after the calibration subset that measure accuracy (0: skip)
    seed: int = 0
    bins: int = MIN_BINS  # histogram bins over [0, max] (at least 2048)
    batch_size: int | None = None  # None: the model's static batch, else what fits memory_mb of activations
    memory_mb: int = 512
    max_top1_drop: float | None = None  # accuracy budget in points against the FP32 reference
    fallback: str = "fp16"  # where layers go when the budget needs it: fp16 | fp32
    keep_fp32: tuple = ()  # node names that stay FP32 (not quantized, not converted)
    keep_fp16: tuple = ()  # INT8: layers that compute in FP16 instead (FP32 where FP16 would overflow)
    fp16_io: bool = False
    fp16_limit: float = FP16_MAX / 2  # values beyond this on calibration data keep their node FP32
    trt_version: str = "10.3.0"  # header of the TensorRT calibration table
    preprocessing: dict = field(default_factory=dict)  # only for a model without a manifest
    reuse_cache: bool = True

    def __post_init__(self):
        check_field_types(self)
        require_finite(percentile=self.percentile, max_top1_drop=self.max_top1_drop, fp16_limit=self.fp16_limit)
        if self.precision not in CALIBRATED_PRECISIONS:
            raise UsageError(f"`precision` must be int8 or fp16, got {self.precision!r}")
        if self.method not in METHODS:
            raise UsageError(f"`method` must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < self.percentile <= 100:
            raise UsageError(f"`percentile` must be in (0, 100], got {self.percentile}")
        if not MIN_BINS <= self.bins <= MAX_BINS:
            raise UsageError(f"`bins` must be {MIN_BINS}..{MAX_BINS}, got {self.bins}")
        if not 0 <= self.seed < 2 ** 32:
            raise UsageError(f"`seed` must be 0..{2 ** 32 - 1}, got {self.seed}")
        if self.memory_mb < 1:
            raise UsageError(f"`memory_mb` must be at least 1, got {self.memory_mb}")
        if self.keep_fp16 and self.precision != "int8":
            raise UsageError("`keep_fp16` names INT8 layers to keep in FP16; an FP16 model has them in FP16 already")
        if self.fallback not in FALLBACKS:
            raise UsageError(f"`fallback` must be fp16 or fp32, got {self.fallback!r}")
        if self.max_top1_drop is not None and self.max_top1_drop < 0:
            raise UsageError(f"`max_top1_drop` must be 0 or more points, got {self.max_top1_drop}")
        self._check_counts()
        if not TRT_VERSION.fullmatch(str(self.trt_version)):
            raise UsageError(f"`trt_version` must look like 10.3.0 or 8.6, got {self.trt_version!r}")
        self._check_preprocessing()

    def _check_counts(self) -> None:
        if self.calib_images < 1:
            raise UsageError(f"`calib_images` must be at least 1, got {self.calib_images}")
        if self.holdout_images < 0 or (self.batch_size is not None and self.batch_size < 1):
            raise UsageError("`holdout_images` must be 0 or more and `batch_size` at least 1")
        if self.batch_size is not None and self.batch_size > MAX_BATCH:
            raise UsageError(f"`batch_size` must be at most {MAX_BATCH}, got {self.batch_size}")

    def _check_preprocessing(self) -> None:
        """Only known options, and a resize that is a positive integer (0 would silently mean "none")."""
        unknown = set(self.preprocessing) - set(PREPROCESSING_OPTIONS)
        if unknown:
            raise UsageError(f"unknown preprocessing option(s): {', '.join(sorted(unknown))}")
        resize = self.preprocessing.get("resize")
        if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize < 1):
            raise UsageError(f"`resize` must be a positive integer, got {resize!r}")


@dataclass
class CalibrationResult(StageResult):
    """What one calibration made and measured; `record()` is its "calibrate" stage in the manifest.
    The INT8 fields are None for FP16 and the FP16 fields None for INT8; neither is recorded for the other."""

    settings: CalibrationSettings
    source: dict  # {file, sha256} of the FP32 ONNX
    data: dict  # {path, description, sha256, images, holdout_images, skipped_unreadable}
    ranges_file: str  # name of the ranges cache beside the output
    ranges_cache: str  # "computed" | "reused"
    calibration_table: str | None  # name of the TensorRT calibration table beside the output (INT8), else None
    accuracy: dict  # the held-out score (accuracy.Judge.score), None without held-out samples
    node_counts: dict
    seconds: float | None  # None until the stage skeleton (stages/stage.py) times the stage
    collect_seconds: float | None = None  # the image loop (decoding, the probed model, binning); None: ranges reused
    quantized_units: int | None = None
    qdq_tensors: int | None = None
    fallback_layers: list | None = None  # [{name, op, own_error, precision}] moved out of INT8 by the budget
    accuracy_plain_int8: dict | None = None
    fallback_search: dict | None = None  # {layer count: drop} tried by the budget search; None when none ran
    fp16_nodes: int | None = None
    kept_fp32: list | None = None  # [{name, reason}] left FP32 by the FP16 conversion
    fp16_io: bool | None = None

    @property
    def precision(self) -> str:
        return self.settings.precision

    @property
    def method(self) -> str | None:
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
                "source": self.source, "data": self.data, "ranges_file": self.ranges_file,
                "ranges_cache": self.ranges_cache, "calibration_table": self.calibration_table,
                "budget": {"max_top1_drop": self.settings.max_top1_drop, "fallback": self.settings.fallback},
                **outcome, "node_counts": self.node_counts, "seconds": self.seconds,
                "collect_seconds": self.collect_seconds}


def calibrate_model(input_onnx, output_onnx, settings: CalibrationSettings, force: bool = False) -> CalibrationResult:
    """Calibrate `input_onnx` (FP32) into `output_onnx`, written with its manifest, ranges cache and (INT8)
    TensorRT table: all of them, or none."""
    output = Path(output_onnx)
    result = run_stage("calibrate", output, lambda: _calibrate(input_onnx, output, settings), force=force,
                       also=calibration_outputs(output, settings.precision)[1:-1],
                       inputs=[input_onnx, settings.calib_data])
    if result.accuracy:
        log.info(f"{settings.precision.upper()} on {result.accuracy['images']} held-out samples: drop "
                 f"{result.accuracy['drop']:.2f} points, agreement {result.accuracy['agreement']:.2%} "
                 f"(reference: {result.accuracy['reference']})")
    return result


def calibration_outputs(output: Path, precision: str) -> list:
    """Every file calibrating into `output` writes, the manifest last."""
    table = [cache.table_path(output)] if precision == "int8" else []
    return [output, *table, cache.ranges_path(output), manifest_path(output)]


def _calibrate(input_onnx, output: Path, settings: CalibrationSettings) -> tuple:
    try:
        onnx_sha256 = sha256_file(existing_file(input_onnx))  # hashed once: the manifest check and the record
    except OSError as exc:
        raise SkdeployError(f"cannot read {input_onnx}: {exc.strerror}") from None
    model = load_onnx(input_onnx, sha256=onnx_sha256)
    check_fp32(model, input_onnx)
    name_nodes(model)
    check_keep_fp32(model, settings.keep_fp32)  # for INT8 too, before the statistics are collected
    check_keep_fp32(model, settings.keep_fp16, "keep_fp16")
    manifest = load_manifest(input_onnx, required=False, verify=False)  # load_onnx checked the hash
    _, shape = model_input(model, manifest)
    resolve = preprocessing_resolver(input_onnx, manifest, settings, shape)
    data_path, source, selection = _calibration_data(settings, manifest, shape, resolve)
    ranges, cache_state, collect_seconds = collect_ranges(model, selection, settings, onnx_sha256, output)
    batch = settings.batch_size or 16
    evaluation = Evaluation(model, manifest, input_onnx, selection, batch) if selection.holdout else None
    build = build_int8 if settings.precision == "int8" else build_fp16
    calibrated, outcome = build(model, ranges, settings, evaluation)
    table = None
    if settings.precision == "int8":
        table = cache.table_path(output)
        cache.write_table(table, ranges, settings.method, settings.trt_version)
    save_onnx(calibrated, output)
    check_onnx_file(output)
    result_manifest = _derived_manifest(manifest, calibrated, shape, resolve, settings)
    result = CalibrationResult(
        output, settings, source=source_record(input_onnx, onnx_sha256),
        data={"path": str(data_path), "description": source.description, "sha256": selection.sha256,
              "images": len(selection.calibration), "holdout_images": len(selection.holdout),
              "skipped_unreadable": selection.skipped},
        ranges_file=cache.ranges_path(output).name, ranges_cache=cache_state,
        calibration_table=table.name if table else None, node_counts=node_counts(calibrated),
        seconds=None, collect_seconds=collect_seconds, **outcome)
    return result, result_manifest


def _calibration_data(settings: CalibrationSettings, manifest, shape: InputShape, resolve) -> tuple:
    """(data path, Source, Selection): the settings' data or the demo model's shipped set, split into the
    calibration subset and the held-out samples an accuracy budget needs."""
    data_path = settings.calib_data or default_calibration_path(manifest)
    if data_path is None:
        raise UsageError("`calib_data` is required (a folder of images, .npy/.npz, or an IDX file); only the "
                         "demo model has a shipped calibration set")
    model = ModelEntry.from_manifest(manifest)
    source = open_source(data_path, shape, resolve, class_names=class_names_for(model.dataset),
                         classes=model.num_classes)
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
