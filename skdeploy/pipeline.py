"""Orchestration across stages: the one place where a command's work spans more than one stage.

    from skdeploy.engine import BuildSettings
    from skdeploy.pipeline import build
    result = build("demo.onnx", "engines/demo.engine", BuildSettings(backend="tensorrt-rtx", precision="int8"))

The stages below never call each other: the engine builder does not calibrate and calibration does not
build. When `skdeploy build-engine --int8/--fp16` gets an FP32 ONNX and the backend takes the precision
from the graph (TensorRT 11, TensorRT-RTX), this module runs the calibration stage first and builds
its output.
"""
from pathlib import Path

from .engine import BuildResult, BuildSettings, build_engine, plan_onnx
from .errors import SkdeployError, UsageError
from .fileio import output_transaction
from .manifest import manifest_path


def build(onnx_path, engine_path, settings: BuildSettings = None, force=False) -> BuildResult:
    """What `skdeploy build-engine` does: calibrate first when the build needs it, then build. The
    calibrated ONNX lands beside the engine as ENGINE_STEM.PRECISION.onnx. Every file of the build, the
    calibration's included, appears when the engine does, or none does."""
    settings = settings or BuildSettings()
    engine_path = Path(engine_path)
    with output_transaction([engine_path, manifest_path(engine_path)], force):
        plan = plan_onnx(onnx_path, settings)
        if plan.needs_calibration:
            onnx_path = calibrate_for(onnx_path, engine_path, plan.precision, settings, force)
        return build_engine(onnx_path, engine_path, settings, force=force)


def calibrate_for(onnx_path, engine_path: Path, precision: str, settings: BuildSettings, force) -> Path:
    """Run the calibration stage on an FP32 ONNX with the build's calibration settings; returns the
    calibrated ONNX (its manifest's calibrate record travels into the engine's sidecar)."""
    try:
        from .calib import CalibrationSettings, calibrate_model
    except ImportError as exc:
        raise SkdeployError(f"`precision={precision}` on an FP32 ONNX needs the calibration stage, which is unavailable "
                            f"({exc}); calibrate with 'skdeploy calibrate' and build the result") from None
    output = engine_path.with_name(f"{engine_path.stem}.{precision}.onnx")
    options = dict(settings.calibration or {}, precision=precision, calib_data=settings.calib_data)
    if settings.calib_images is not None:
        options["calib_images"] = settings.calib_images
    try:
        calibration_settings = CalibrationSettings(**options)
    except TypeError as exc:
        raise UsageError(f"unknown calibration setting: {exc}") from None
    return calibrate_model(onnx_path, output, calibration_settings, force=force).output
