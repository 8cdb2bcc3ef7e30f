"""ONNX -> TensorRT engine plus its sidecar manifest (ENGINE.json), calibrating first when the build needs it.

    from skdeploy.stages.build import BuildSettings, build
    result = build("demo.onnx", "engines/demo.engine", BuildSettings(backend="tensorrt-rtx", precision="int8"))
    result.engine.engine_bytes, result.engine.precision    # the sidecar's "engine" section

`build` is what `skdeploy build-engine` does: when `precision` asks for INT8/FP16 of an FP32 ONNX and the
backend takes the precision from the graph (TensorRT 11, TensorRT-RTX), it runs the calibrate stage first
and builds its output. `build_engine` builds an ONNX as it is. The plan and the builder live in
skdeploy/engine/.
"""
from dataclasses import asdict, dataclass
from pathlib import Path

from ..engine.builder import DEFAULT_BATCHES, OPTIMIZATION_LEVELS, build_serialized, plan_onnx
from ..engine.layers import layers_path
from ..engine.sidecar import STAGE_KEYS, EngineSection
from ..errors import SkdeployError, UsageError, check_field_types
from ..fileio import output_transaction
from ..manifest import PRECISIONS, StageResult, manifest_path
from ..trt import BACKENDS, HARDWARE_COMPATIBILITY
from .stage import run_stage, source_record


@dataclass
class BuildSettings:
    backend: str = "auto"  # "auto" | "tensorrt" | "tensorrt-rtx"
    target: str | None = None  # see targets.TARGETS; default: "rtx" for tensorrt-rtx, "desktop" for tensorrt
    compute_capabilities: list | None = None  # TensorRT-RTX only, e.g. ["8.6", "8.9"]; default: the target's
    precision: str | None = None  # None: as the ONNX is; "fp16"/"int8" on an FP32 ONNX: build() calibrates first
    calib_data: str | None = None  # calibration data (stages.calibrate); None: the demo model's shipped set
    calib_images: int | None = None  # None: the calibration stage's default
    calibration: dict | None = None  # further CalibrationSettings fields, e.g. {"method": "max"}
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace: int | None = None  # bytes
    timing_cache: str | None = None  # path; loaded if present, merged and saved after the build
    dla_core: int | None = None
    gpu_fallback: bool = False
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    hardware_compatibility: str = "none"  # "none" | "ampere-plus" | "same-cc"
    optimization_level: int | None = None  # 0..5, builder default 3
    strongly_typed: bool | None = None  # TensorRT 10.x only; None: when the ONNX carries its precision
    strict_precision: bool = False  # a Conv the ONNX quantizes that the engine runs in FP16/FP32 is an error

    def __post_init__(self):
        """The checks that need no backend: each field alone, and fields that only make sense together."""
        check_field_types(self)
        if self.backend_name not in ("auto", *BACKENDS):
            raise UsageError(f"unknown `backend` {self.backend!r}; choose auto, {', '.join(BACKENDS)}")
        if self.precision not in (None, *PRECISIONS):
            raise UsageError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.dla_core is not None and self.dla_core < 0:
            raise UsageError(f"`dla_core` must be 0 or more, got {self.dla_core}")
        if self.gpu_fallback and self.dla_core is None:
            raise UsageError("`gpu_fallback` applies only with `dla_core`")
        if self.hardware_compatibility_level not in HARDWARE_COMPATIBILITY:
            raise UsageError(f"`hardware_compatibility` must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                             f"got {self.hardware_compatibility!r}")
        if self.exclude_lean_runtime and not self.version_compatible:
            raise UsageError("`exclude_lean_runtime` applies only with `version_compatible`")
        if self.optimization_level is not None and self.optimization_level not in OPTIMIZATION_LEVELS:
            raise UsageError(f"`optimization_level` must be 0..5, got {self.optimization_level}")
        if self.workspace is not None and self.workspace <= 0:
            raise UsageError(f"`workspace` must be positive, got {self.workspace}")
        self.profile_batches()  # raises unless 1 <= min <= opt <= max

    @property
    def backend_name(self) -> str:
        """The backend as BACKENDS spells it ("tensorrt_rtx" is taken for "tensorrt-rtx"), or "auto"."""
        return self.backend.replace("_", "-") if self.backend else "auto"

    @property
    def hardware_compatibility_level(self) -> str:
        return self.hardware_compatibility or "none"

    def profile_batches(self) -> tuple:
        """(min, opt, max) for a dynamic batch; DLA pins one size (it runs static shapes only)."""
        given = (self.min_batch, self.opt_batch, self.max_batch)
        if self.dla_core is not None:
            n = self.opt_batch or self.max_batch or self.min_batch or DEFAULT_BATCHES[0]
            return (n, n, n)
        low, opt, high = (v if v is not None else d for v, d in zip(given, DEFAULT_BATCHES, strict=True))
        if self.opt_batch is None:
            opt = min(max(opt, low), high)
        if not (1 <= low <= opt <= high):
            raise UsageError(f"batch sizes must satisfy 1 <= min <= opt <= max, got {low}/{opt}/{high}")
        return (low, opt, high)


@dataclass
class BuildResult(StageResult):
    """One engine build (`output` is the engine): its settings and its sidecar section; `record()` is the
    "build-engine" stage in ENGINE.json."""

    settings: BuildSettings
    source: dict  # {file, sha256} of the ONNX built
    engine: EngineSection
    seconds: float | None = None

    def record(self) -> dict:
        return {"settings": asdict(self.settings), "source": self.source,
                **{key: getattr(self.engine, key) for key in STAGE_KEYS}, "seconds": self.seconds}


def build(onnx_path, engine_path, settings: BuildSettings | None = None, force: bool = False) -> BuildResult:
    """What `skdeploy build-engine` does: calibrate first when the build needs it, then build. The
    calibrated ONNX lands beside the engine as ENGINE_STEM.PRECISION.onnx. Every file of the build, the
    calibration's included, appears when the engine does, or none does."""
    settings = settings or BuildSettings()
    engine_path = Path(engine_path)
    with output_transaction([engine_path, manifest_path(engine_path), layers_path(engine_path)], force,
                            inputs=[onnx_path, settings.calib_data]):
        plan = plan_onnx(onnx_path, settings)
        if plan.needs_calibration:
            onnx_path = calibrate_for(onnx_path, engine_path, plan.precision, settings, force)
        return build_engine(onnx_path, engine_path, settings, force=force)


def build_engine(onnx_path, engine_path, settings: BuildSettings | None = None, force: bool = False) -> BuildResult:
    """Build `onnx_path` as it is into `engine_path` (raw serialized engine) plus ENGINE.json. An FP32 ONNX
    whose precision the backend takes from the graph is refused: `build` calibrates it first."""
    settings = settings or BuildSettings()
    return run_stage("build-engine", engine_path, lambda: _build(Path(onnx_path), Path(engine_path), settings),
                     force=force, also=[layers_path(engine_path)], kind="engine", inputs=[onnx_path])


def _build(onnx_path: Path, engine_path: Path, settings: BuildSettings) -> tuple:
    manifest, engine = build_serialized(onnx_path, engine_path, settings)
    return BuildResult(engine_path, settings, source_record(onnx_path, engine.source_onnx["sha256"]), engine), manifest


def calibrate_for(onnx_path, engine_path: Path, precision: str, settings: BuildSettings, force) -> Path:
    """Run the calibrate stage on an FP32 ONNX with the build's calibration settings; returns the
    calibrated ONNX (its manifest's calibrate record travels into the engine's sidecar)."""
    try:
        from .calibrate import CalibrationSettings, calibrate_model
    except ImportError as exc:
        raise SkdeployError(f"`precision={precision}` on an FP32 ONNX needs the calibration stage, which is "
                            f"unavailable ({exc}); calibrate with 'skdeploy calibrate' and build the result") from None
    output = engine_path.with_name(f"{engine_path.stem}.{precision}.onnx")
    options = dict(settings.calibration or {}, precision=precision, calib_data=settings.calib_data)
    if settings.calib_images is not None:
        options["calib_images"] = settings.calib_images
    try:
        calibration_settings = CalibrationSettings(**options)
    except TypeError as exc:
        raise UsageError(f"unknown calibration setting: {exc}") from None
    return calibrate_model(onnx_path, output, calibration_settings, force=force).output
