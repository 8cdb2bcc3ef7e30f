"""ENGINE.json: the engine's manifest, derived from its ONNX's, with the "engine" section the runtime
checks before deserialising (contract in docs/engines.md)."""
import json
from pathlib import Path

from ..fileio import sha256_file
from ..log import log
from ..manifest import add_stage, derive, last_stage, load_manifest, manifest_path, new_manifest, write_manifest

SECTION_KEYS = ("backend", "backend_version", "target", "compute_capabilities", "hardware_compatibility",
                "version_compatible", "precision", "dla_core", "profiles", "io", "source_onnx",
                "build_seconds", "peak_rss_mb", "engine_bytes", "warnings")


def source_manifest(onnx_path: Path) -> dict:
    """The ONNX's manifest; a bare one (with a warning) for an ONNX that skdeploy did not make."""
    manifest = load_manifest(onnx_path, required=False)
    if manifest is not None:
        return derive(manifest)
    log.warning(f"no manifest beside {onnx_path}; the engine's sidecar will not record the model or preprocessing")
    from ..onnx.io import io_spec, load_onnx

    manifest = new_manifest({"spec": None, "checkpoint": None, "kwargs": {}, "num_classes": None, "dataset": None},
                            {})
    manifest["inputs"], manifest["outputs"] = io_spec(load_onnx(onnx_path, load_weights=False))
    return manifest


def write_sidecar(engine_path: Path, onnx_path: Path, plan, settings, *, io, profile, dla_fallback,
                  build_seconds, peak_rss_mb, warnings, timing_cache, settings_record) -> dict:
    """Derive the manifest, fill the engine section, add the build stage and write ENGINE.json atomically;
    returns the sidecar as written (JSON types)."""
    manifest = source_manifest(onnx_path)
    has_manifest = manifest_path(onnx_path).exists()
    engine = {
        "backend": plan.backend,
        "backend_version": plan.caps.version,
        "target": plan.target,
        "compute_capabilities": list(plan.compute_capabilities),
        "hardware_compatibility": settings.hardware_compatibility or "none",
        "version_compatible": bool(settings.version_compatible),
        "lean_runtime_excluded": bool(settings.exclude_lean_runtime),
        "precision": plan.precision,
        "precision_from": "builder-flags" if plan.builder_flags and not plan.strongly_typed else "onnx",
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "dla_core": settings.dla_core,
        "dla_fallback_layers": dla_fallback,
        "profiles": [profile] if profile else [],
        "io": io,
        "source_onnx": {"file": str(onnx_path), "sha256": sha256_file(onnx_path),
                        "manifest": str(manifest_path(onnx_path)) if has_manifest else None},
        "calibration": last_stage(manifest, "calibrate"),  # the stage that made the source ONNX
        "timing_cache": timing_cache,
        "optimization_level": settings.optimization_level,
        "workspace_bytes": settings.workspace,
        "build_seconds": build_seconds,
        "peak_rss_mb": peak_rss_mb,
        "engine_bytes": engine_path.stat().st_size,
        "warnings": list(warnings),
    }
    manifest["engine"] = engine
    add_stage(manifest, "build-engine", settings=settings_record,
              **{key: engine[key] for key in ("backend", "backend_version", "target", "precision",
                                               "build_seconds", "peak_rss_mb", "engine_bytes")})
    return json.loads(write_manifest(engine_path, manifest, kind="engine").read_text())  # as written

