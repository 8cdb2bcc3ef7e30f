"""ENGINE.json: the engine's manifest, derived from its ONNX's, with the "engine" section the runtime
checks before deserialising (contract in docs/engines.md)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import readable_path, sha256_file
from ..log import log
from ..manifest import last_stage, load_manifest, manifest_path
from ..models.entry import ModelEntry, derive_manifest, new_manifest

if TYPE_CHECKING:
    from .builder import BuildPlan

STAGE_KEYS = ("backend", "backend_version", "target", "precision", "build_seconds", "peak_rss_mb", "engine_bytes")


@dataclass
class EngineSection:
    """The sidecar's "engine" section: what was built, for what, and at what cost."""

    backend: str  # "tensorrt" | "tensorrt-rtx"
    backend_version: str
    target: str
    compute_capabilities: list  # TensorRT-RTX builds, e.g. ["8.6", "8.9"]; [] for the build GPU
    hardware_compatibility: str
    version_compatible: bool
    lean_runtime_excluded: bool
    precision: str  # what the engine runs: fp32 | fp16 | int8
    precision_from: str  # "onnx" (strongly typed / Q/DQ) | "builder-flags"
    strongly_typed: bool
    builder_flags: list
    dla_core: int
    dla_fallback_layers: list
    profiles: list  # [{input: {min, opt, max}}]; [] for a static network
    io: list  # [{name, mode, shape (-1 = dynamic), dtype}]
    source_onnx: dict  # {file, sha256, manifest (path or None)}
    calibration: dict  # the "calibrate" stage that made the source ONNX, else None
    timing_cache: dict
    optimization_level: int
    workspace_bytes: int
    build_seconds: float
    peak_rss_mb: float
    engine_bytes: int
    warnings: list  # the builder's warnings
    layers: dict | None = None  # engine/layers.py summarize(): kernels, convolutions by precision, memory; None: unread


def source_manifest(onnx_path: Path) -> dict:
    """The ONNX's manifest; a bare one (with a warning) for an ONNX that skdeploy did not make."""
    manifest = load_manifest(onnx_path, required=False)
    if manifest is not None:
        return derive_manifest(manifest)
    log.warning(f"no manifest beside {onnx_path}; the engine's sidecar will not record the model or preprocessing")
    from ..onnx.io import io_spec, load_onnx

    inputs, outputs = io_spec(load_onnx(onnx_path, load_weights=False))
    manifest = new_manifest(ModelEntry.of_graph(inputs), None)
    manifest["inputs"], manifest["outputs"] = inputs, outputs
    return manifest


def engine_section(engine_path: Path, onnx_path: Path, plan: BuildPlan, settings: Any, *, io: list,
                   profile: dict | None, dla_fallback: list, build_seconds: float, peak_rss_mb: float,
                   warnings: Iterable[str], timing_cache: dict | None, layers: dict | None = None) -> tuple:
    """(the engine's manifest, derived from its ONNX's, with the "engine" section filled in; that EngineSection).
    skdeploy.stages.build adds the stage record and writes ENGINE.json."""
    manifest = source_manifest(onnx_path)
    has_manifest = readable_path(manifest_path(onnx_path)).exists()
    engine = EngineSection(
        backend=plan.backend,
        backend_version=plan.caps.version,
        target=plan.target,
        compute_capabilities=list(plan.compute_capabilities),
        hardware_compatibility=settings.hardware_compatibility or "none",
        version_compatible=bool(settings.version_compatible),
        lean_runtime_excluded=bool(settings.exclude_lean_runtime),
        precision=plan.precision,
        precision_from="builder-flags" if plan.builder_flags and not plan.strongly_typed else "onnx",
        strongly_typed=plan.strongly_typed,
        builder_flags=list(plan.builder_flags),
        dla_core=settings.dla_core,
        dla_fallback_layers=dla_fallback,
        profiles=[profile] if profile else [],
        io=io,
        source_onnx={"file": str(onnx_path), "sha256": sha256_file(onnx_path),
                     "manifest": str(manifest_path(onnx_path)) if has_manifest else None},
        calibration=last_stage(manifest, "calibrate"),
        timing_cache=timing_cache,
        optimization_level=settings.optimization_level,
        workspace_bytes=settings.workspace,
        build_seconds=build_seconds,
        peak_rss_mb=peak_rss_mb,
        engine_bytes=readable_path(engine_path).stat().st_size,
        warnings=list(warnings),
        layers=layers,
    )
    manifest["engine"] = asdict(engine)
    return manifest, engine
