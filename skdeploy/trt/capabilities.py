"""What a loaded TensorRT module can do, decided once from the module and its version.

`tensorrt` (classic: 8.5, 8.6, 10.x, 11.x) and `tensorrt_rtx` share most of their Python API. Where they or
their versions differ, the difference is a field of `Capabilities`, derived from the module and its
version, so the build code asks "does this backend have X" instead of scattering version checks:

  explicit batch flag   8.x needs EXPLICIT_BATCH; 10.x ignores it; later versions drop it
  strong typing         absent in 8.x, opt-in in 10.x, the only mode in 11.x and TensorRT-RTX
  precision flags       BuilderFlag.FP16/INT8 exist up to 10.x; 11.x and RTX take precision from the ONNX
  memory pool API       set_memory_pool_limit (8.4+) or the older max_workspace_size
  compute capabilities  TensorRT-RTX builds ahead of time, without a GPU, for a list of them;
                        classic TensorRT builds for the GPU it runs on
  DLA                   classic TensorRT 8.5-10.x and 11.4.1+ (Jetson Orin, JetPack 7.2.2+, strongly typed
                        only); none in 11.0-11.3 nor on RTX, although every one has DeviceType.DLA. Whether
                        the device has DLA cores is asked at build time (builder.num_DLA_cores)
  NATIVE_INSTANCENORM   8.x parser flag that version/hardware-compatible builds need (the default from 10.0)
  portability           hardware compatibility levels and version-compatible (lean runtime) engines are
                        classic TensorRT's; TensorRT-RTX 1.7 ignores the level with a warning and has no
                        lean runtime, its engines are portable through the compute-capability list
  timing cache          classic TensorRT; TensorRT-RTX keeps the calls as no-ops (deprecated since 1.2)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere-plus": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class Capabilities:
    backend: str  # "tensorrt" | "tensorrt-rtx"
    version: str
    major: int
    explicit_batch_flag: bool  # must pass NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    strong_typing: str  # "unavailable" | "optional" | "always"
    precision_flags: tuple  # BuilderFlag names that enable reduced precision ("FP16", "INT8")
    memory_pool_limit: bool  # config.set_memory_pool_limit, else config.max_workspace_size
    compute_capabilities: tuple  # ahead-of-time targets ("8.6", ...); () = the build GPU only
    dla: bool
    hardware_compatibility: tuple  # levels ("none", "ampere-plus", "same-cc")
    version_compatible: bool
    exclude_lean_runtime: bool
    optimization_level: bool
    timing_cache: bool
    native_instancenorm_flag: bool  # 8.x: OnnxParserFlag.NATIVE_INSTANCENORM must be set for portable builds

    @property
    def label(self) -> str:
        return f"{self.backend} {self.version}"


# DLA builds: through 10.x; again from 11.4.1 (Orin, JetPack 7.2.2+)
DLA_RETURNS_IN = (11, 4, 1)


def version_tuple(text: object) -> tuple:
    """'10.3.0.26' -> (10, 3, 0); missing parts are 0."""
    parts = [int(part) for part in re.findall(r"\d+", str(text))[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def cc_tuple(compute_capability: str) -> tuple:
    """'8.6' -> (8, 6), '12.0' -> (12, 0): compute capabilities compare as numbers, never as text (where
    "10.0" < "8.0" would turn Blackwell away)."""
    major, _, minor = str(compute_capability).strip().partition(".")
    if not major.isdigit() or not (minor or "0").isdigit():
        raise ValueError(f"compute capability {compute_capability!r} is not like 8.6")
    return int(major), int(minor or 0)


def _members(enum) -> set:
    return set(getattr(enum, "__members__", {})) if enum is not None else set()


def compute_capability_name(member: str) -> str:
    """'SM86' -> '8.6', 'SM120' -> '12.0'."""
    digits = member[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def capabilities_of(module: ModuleType, backend: str) -> Capabilities:
    """Read what `module` (tensorrt or tensorrt_rtx) supports from its version and its API."""
    version = str(getattr(module, "__version__", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    rtx = backend == "tensorrt-rtx"
    network_flags = _members(getattr(module, "NetworkDefinitionCreationFlag", None))
    builder_flags = _members(getattr(module, "BuilderFlag", None))
    config_type = getattr(module, "IBuilderConfig", object)
    if rtx or major >= 11:
        strong_typing = "always"
    elif "STRONGLY_TYPED" in network_flags:
        strong_typing = "optional"
    else:
        strong_typing = "unavailable"
    levels = _members(getattr(module, "HardwareCompatibilityLevel", None))
    ccs = sorted((m for m in _members(getattr(module, "ComputeCapability", None)) if m.startswith("SM")),
                 key=lambda m: int(m[2:]))
    return Capabilities(
        backend=backend, version=version, major=major,
        explicit_batch_flag=not rtx and major < 10 and "EXPLICIT_BATCH" in network_flags,
        strong_typing=strong_typing,
        precision_flags=tuple(f for f in ("FP16", "INT8") if f in builder_flags and strong_typing != "always"),
        memory_pool_limit=hasattr(config_type, "set_memory_pool_limit"),
        compute_capabilities=tuple(compute_capability_name(m) for m in ccs) if rtx else (),
        dla=not rtx and (major < 11 or version_tuple(version) >= DLA_RETURNS_IN),
        hardware_compatibility=() if rtx else tuple(
            name for name, member in HARDWARE_COMPATIBILITY.items() if member in levels),
        version_compatible=not rtx and "VERSION_COMPATIBLE" in builder_flags,
        exclude_lean_runtime=not rtx and "EXCLUDE_LEAN_RUNTIME" in builder_flags,
        optimization_level=hasattr(config_type, "builder_optimization_level"),
        timing_cache=not rtx and hasattr(config_type, "create_timing_cache"),
        native_instancenorm_flag=not rtx and major < 10
        and "NATIVE_INSTANCENORM" in _members(getattr(module, "OnnxParserFlag", None)),
    )
