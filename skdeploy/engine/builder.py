"""ONNX -> serialized TensorRT engine: the build plan and the builder run (skdeploy.stages.build is the stage
that calls them with its BuildSettings and records the result).

The engine file holds the builder's bytes exactly (trtexec and DeepStream load it as is); everything a
deployment must know sits beside it in ENGINE.json. `plan_build` settles every choice (backend,
target, precision, typing, profile) before the builder runs, so bad combinations fail in a second.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ..errors import MissingDependency, SkdeployError, UsageError
from ..fileio import atomic_path, readable_path
from ..log import log
from ..onnx.io import load_onnx
from ..trt import HARDWARE_COMPATIBILITY, first_installed, load_backend
from ..trt.capabilities import cc_tuple
from .layers import record as record_layers
from .memory import PeakMemory
from .network import (
    batch_profile,
    capturing_logger,
    interruptible_build,
    io_tensors,
    is_dynamic,
    network_flags,
    parse_onnx,
)
from .sidecar import engine_section
from .targets import get_target, targets_of
from .timing import TimingCache

if TYPE_CHECKING:
    from onnx import ModelProto

    from ..trt.capabilities import Capabilities

DEFAULT_BATCHES = (1, 8, 32)
OPTIMIZATION_LEVELS = range(0, 6)


@dataclass
class BuildPlan:
    """Every decision about one build, made before the builder runs."""

    backend: str
    target: str
    caps: object
    onnx_precision: str  # what the source ONNX carries
    precision: str  # what the engine runs
    needs_calibration: bool
    strongly_typed: bool
    builder_flags: list = field(default_factory=list)
    compute_capabilities: list = field(default_factory=list)
    batches: tuple = DEFAULT_BATCHES


def onnx_precision(model: ModelProto) -> str:
    """int8 when the graph has Q/DQ nodes, fp16 when it carries FP16 tensors, else fp32."""
    import onnx

    ops = {node.op_type for node in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "int8"
    half = onnx.TensorProto.FLOAT16
    typed = [init.data_type for init in model.graph.initializer]
    typed += [v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)]
    casts = [a.i for n in model.graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    return "fp16" if half in typed or half in casts else "fp32"


def resolve_backend(settings: Any) -> tuple:
    """(backend, target name) from the settings' backend, target and compute capabilities and from what
    is installed."""
    backend = settings.backend_name
    if settings.target:
        target = get_target(settings.target)
        if backend not in ("auto", target.backend):
            raise UsageError(f"target {target.name} is built with the {target.backend} backend; "
                             f"{backend} builds: {', '.join(targets_of(backend))}")
        return target.backend, target.name
    if backend == "auto":
        # only TensorRT-RTX builds for a list of compute capabilities
        backend = "tensorrt-rtx" if settings.compute_capabilities else first_installed()
        if backend is None:
            raise MissingDependency("no TensorRT backend is installed; install one with: pip install "
                                    "'skdeploy[rtx]' (TensorRT for RTX: builds 'rtx' targets without a GPU) or "
                                    "'skdeploy[trt]' (classic TensorRT, on the GPU or Jetson that will run it)")
    return backend, "rtx" if backend == "tensorrt-rtx" else "desktop"


def normalize_cc(text: str) -> str:
    """'8.6', '86', 'sm86', 'SM_86' -> '8.6'."""
    raw = str(text).strip().lower().removeprefix("sm").lstrip("_")
    if raw.isdigit() and len(raw) >= 2:
        raw = f"{raw[:-1]}.{raw[-1]}"
    try:
        if "." not in raw:
            raise ValueError(raw)
        major, minor = cc_tuple(raw)
    except ValueError:
        raise UsageError(f"compute capability {text!r} is not like 8.6") from None
    return f"{major}.{minor}"


def plan_build(settings: Any, caps: Capabilities, target_name: str, model: ModelProto) -> BuildPlan:
    """Check the settings against the backend's capabilities and the target; decide precision,
    typing and builder flags."""
    target = get_target(target_name)
    compute_capabilities = _compute_capabilities(settings, caps, target)
    for check in CAPABILITY_CHECKS:
        check(settings, caps, target)
    source = onnx_precision(model)
    wanted = _wanted_precision(settings, source)
    dla = settings.dla_core is not None
    flag_fp16 = wanted == "fp16" and source == "fp32" and "FP16" in caps.precision_flags
    strongly = _strong_typing(settings, caps, source, wanted, dla, flag_fp16)
    return BuildPlan(backend=caps.backend, target=target.name, caps=caps, onnx_precision=source, precision=wanted,
                     needs_calibration=source == "fp32" and wanted != "fp32" and not flag_fp16,
                     strongly_typed=strongly, builder_flags=_builder_flags(settings, caps, wanted, strongly),
                     compute_capabilities=compute_capabilities, batches=settings.profile_batches())


def _compute_capabilities(settings, caps, target) -> list:
    """The ahead-of-time list TensorRT-RTX builds for (the target's default when none is given); classic
    TensorRT builds for the GPU it runs on and takes none."""
    ccs = [normalize_cc(c) for c in (settings.compute_capabilities or [])]
    if caps.compute_capabilities:
        ccs = ccs or list(target.default_compute_capabilities)
        known = {cc_tuple(c) for c in caps.compute_capabilities}
        unknown = [c for c in ccs if cc_tuple(c) not in known]
        if unknown:
            raise UsageError(f"{caps.label} cannot build for compute capability {', '.join(unknown)}; "
                             f"it builds for {', '.join(caps.compute_capabilities)}")
    elif ccs:
        raise UsageError(f"{caps.label} builds for the GPU it runs on and takes no `compute_capabilities` list "
                         f"(targets: {', '.join(targets_of(caps.backend))}); ahead-of-time builds for a list "
                         "are the rtx target's (`backend=tensorrt-rtx`)")
    return ccs


def _check_dla(settings, caps, target) -> None:
    if settings.dla_core is None:
        return
    if not target.dla:
        raise UsageError(f"target {target.name} has no DLA; DLA targets: "
                         + ", ".join(t for t in targets_of("tensorrt") if get_target(t).dla))
    if not caps.dla:
        raise UsageError(f"{caps.label} cannot build for DLA (TensorRT 8.5 to 10.x on Jetson can, and 11.4.1 or "
                         "later on Jetson Orin with JetPack 7.2.2 or later)")


def _check_hardware_compatibility(settings, caps, target) -> None:
    level = settings.hardware_compatibility_level
    if level == "none":
        return
    if not target.hardware_compatibility:
        raise UsageError(f"target {target.name} cannot build hardware-compatible engines "
                         "(Jetson and DLA engines run only on the device kind they were built on)")
    if level not in caps.hardware_compatibility:
        raise UsageError(f"{caps.label} cannot build hardware compatibility {level}; it can: "
                         f"{', '.join(caps.hardware_compatibility) or 'none'}"
                         + (" (RTX engines cover GPUs through `compute_capabilities`)"
                            if caps.compute_capabilities else ""))


def _check_version_compatibility(settings, caps, target) -> None:
    if settings.version_compatible and not caps.version_compatible:
        raise UsageError(f"{caps.label} cannot build version-compatible engines (TensorRT 8.6 or later can)")
    if settings.exclude_lean_runtime and not caps.exclude_lean_runtime:
        raise UsageError(f"{caps.label} cannot leave the lean runtime out of the engine")


def _check_builder_options(settings, caps, target) -> None:
    if settings.optimization_level is not None and not caps.optimization_level:
        raise UsageError(f"{caps.label} has no builder optimization level")
    if settings.timing_cache and not caps.timing_cache:
        raise UsageError(f"{caps.label} has no timing cache (TensorRT-RTX tunes kernels on the target GPU at run "
                         "time); leave out `timing_cache`")


# what the settings ask of the backend and the target, checked in this order: (settings, caps, target) -> None
CAPABILITY_CHECKS = (_check_dla, _check_hardware_compatibility, _check_version_compatibility, _check_builder_options)


def _wanted_precision(settings, source: str) -> str:
    """The engine's precision: the settings' or, by default, the ONNX's; an ONNX already INT8 or FP16
    builds only as what it is."""
    wanted = settings.precision or source
    if source not in ("fp32", wanted):
        raise UsageError(f"the ONNX is already {source} ({'Q/DQ nodes' if source == 'int8' else 'FP16 tensors'}); "
                         f"build it without `precision={wanted}`, or start from the FP32 ONNX")
    if settings.dla_core is not None and wanted == "fp32":
        raise UsageError("DLA runs FP16 or INT8 only; pass `precision=fp16` or `precision=int8`")
    return wanted


def _strong_typing(settings, caps, source, wanted, dla, flag_fp16) -> bool:
    if caps.strong_typing == "always":
        if settings.strongly_typed is False:
            raise UsageError(f"{caps.label} builds strongly typed networks only")
        return True
    if caps.strong_typing == "unavailable":
        if settings.strongly_typed:
            raise UsageError(f"{caps.label} has no strongly typed networks (TensorRT 10 or later has)")
        return False
    if settings.strongly_typed and (dla or flag_fp16):
        raise UsageError("strongly typed networks take no precision builder flags: "
                         + ("DLA needs them" if dla else "give an FP16 ONNX instead of `precision=fp16`"))
    if settings.strongly_typed is not None:
        return settings.strongly_typed
    # opt in when the ONNX carries its precision, as 11.x and RTX always do; DLA needs the flags
    return wanted != "fp32" and not dla and not flag_fp16


def _builder_flags(settings, caps, wanted: str, strongly: bool) -> list:
    """Precision flags for a weakly typed network (DLA INT8 needs FP16 too), and DLA's GPU fallback."""
    dla = settings.dla_core is not None
    flags = []
    if not strongly and wanted != "fp32":
        flags = ["INT8", "FP16"] if wanted == "int8" and dla else [wanted.upper()]
        missing = [f for f in flags if f not in caps.precision_flags]
        if missing:  # only when strong typing is unavailable and flags are too: not a real TensorRT
            raise UsageError(f"{caps.label} has no {'/'.join(missing)} builder flag")
    if dla and settings.gpu_fallback:
        flags.append("GPU_FALLBACK")
    return flags


def configure(trt: Any, builder: Any, plan: BuildPlan, settings: Any, profile: dict, dynamic: bool) -> tuple:
    """The IBuilderConfig for `plan`; returns (config, timing cache or None). A profile is added only for
    dynamic inputs: static networks need none."""
    caps = plan.caps
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the layer list names kernels and ONNX nodes
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.compute_capabilities:
        config.num_compute_capabilities = len(plan.compute_capabilities)
        for index, cc in enumerate(plan.compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), index)
    if settings.workspace:
        _limit_workspace(trt, config, caps, settings.workspace)
    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
    if settings.hardware_compatibility_level != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                      HARDWARE_COMPATIBILITY[settings.hardware_compatibility_level])
    if settings.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if settings.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    if settings.optimization_level is not None:
        config.builder_optimization_level = settings.optimization_level
    if dynamic:
        config.add_optimization_profile(_optimization_profile(builder, profile))
    cache = TimingCache(trt, config, settings.timing_cache) if settings.timing_cache else None
    log.debug(describe_configuration(plan, settings, profile if dynamic else None))
    return config, cache


def _limit_workspace(trt, config, caps, workspace: int) -> None:
    if caps.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:
        config.max_workspace_size = workspace


def _optimization_profile(builder, profile: dict):
    optimization_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        optimization_profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    return optimization_profile


def describe_configuration(plan: BuildPlan, settings: Any, profile: dict | None) -> str:
    """The builder configuration in one line, for -v: what was set, and the profile of a dynamic network."""
    parts = [f"builder config: {plan.backend} for {plan.target}, {plan.precision} "
             f"({'strongly' if plan.strongly_typed else 'weakly'} typed)",
             f"flags {', '.join(plan.builder_flags) or 'none'}"]
    if plan.compute_capabilities:
        parts.append(f"compute capabilities {', '.join(plan.compute_capabilities)}")
    if settings.workspace:
        parts.append(f"workspace {settings.workspace} bytes")
    if settings.dla_core is not None:
        parts.append(f"DLA core {settings.dla_core}")
    if settings.hardware_compatibility_level != "none":
        parts.append(f"hardware compatibility {settings.hardware_compatibility_level}")
    if settings.version_compatible:
        parts.append("version compatible" + (" without the lean runtime" if settings.exclude_lean_runtime else ""))
    if settings.optimization_level is not None:
        parts.append(f"optimization level {settings.optimization_level}")
    for name, shapes in (profile or {}).items():
        parts.append(f"profile {name} min {shapes['min']} opt {shapes['opt']} max {shapes['max']}")
    parts.append(f"timing cache {settings.timing_cache or 'none'}")
    return "; ".join(parts)


def check_dla_core(builder: Any, settings: Any) -> None:
    """The DLA core asked for must exist on this device (DeviceType.DLA exists in every TensorRT, DLA cores
    only on Jetson/DRIVE)."""
    if settings.dla_core is None:
        return
    cores = int(builder.num_DLA_cores)
    if settings.dla_core >= cores:
        have = f"DLA cores 0..{cores - 1}" if cores else "no DLA"
        raise UsageError(f"DLA core {settings.dla_core} does not exist: this device has {have}")


def dla_fallback_layers(network: Any, config: Any, settings: Any) -> list:
    """'name (type)' of layers that cannot run on the DLA and fall back to the GPU (none without a DLA
    core); a UsageError when some cannot and the settings do not allow the GPU fallback."""
    if settings.dla_core is None:
        return []
    layers = (network.get_layer(i) for i in range(network.num_layers))
    fallback = [f"{layer.name} ({layer.type.name})" for layer in layers if not config.can_run_on_DLA(layer)]
    if fallback and not settings.gpu_fallback:
        raise UsageError(f"{len(fallback)} layers cannot run on the DLA ({', '.join(fallback[:8])}"
                         f"{', ...' if len(fallback) > 8 else ''}); pass `gpu_fallback=True` to run them on the GPU")
    return fallback


def serialize(trt: Any, builder: Any, network: Any, config: Any, plan: BuildPlan, logger: Any,
              onnx_name: str) -> Any:
    """The builder's serialized engine, or an SkdeployError with the builder's last errors."""
    with log.status(f"building {plan.precision} engine for {plan.target} with {plan.caps.label}"
                    + (f" (compute capabilities {', '.join(plan.compute_capabilities)})"
                       if plan.compute_capabilities else "")), interruptible_build(trt, config):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(logger.errors[-3:]) or "the builder gave no reason"
        raise SkdeployError(f"{plan.caps.label} could not build {onnx_name}: {detail}")
    return serialized


def plan_onnx(onnx_path: str | Path, settings: Any) -> BuildPlan:
    """Settle every choice for building `onnx_path` without building: the build stage asks this whether
    the ONNX must be calibrated first."""
    return _prepare(load_onnx(onnx_path), settings)[1]


def _prepare(model, settings) -> tuple:
    """(TensorRT module, BuildPlan) for `model` under `settings`."""
    backend, target = resolve_backend(settings)
    trt, caps = load_backend(backend)
    return trt, plan_build(settings, caps, target, model)


def build_serialized(onnx_path: Path, engine_path: Path, settings: Any) -> tuple:
    """Build `onnx_path` as it is into `engine_path` (the builder's bytes exactly); returns (the engine's
    manifest, its EngineSection) for skdeploy.stages.build to record. An FP32 ONNX whose precision the backend
    takes from the graph is refused: calibrate it first."""
    model = load_onnx(onnx_path)
    trt, plan = _prepare(model, settings)
    caps = plan.caps
    if plan.needs_calibration:
        raise UsageError(f"{caps.label} takes {plan.precision} from the ONNX, and {onnx_path.name} is FP32: calibrate "
                         "it first (skdeploy.stages.calibrate, or skdeploy.stages.build.build, which does)")
    started = time.time()
    logger = capturing_logger(trt)
    with PeakMemory() as peak:
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt, caps, plan.strongly_typed))
        check_dla_core(builder, settings)
        parser = trt.OnnxParser(network, logger)
        if caps.native_instancenorm_flag and (settings.version_compatible
                                              or settings.hardware_compatibility_level != "none"):
            # 8.x imports InstanceNormalization as a plugin, which portable engines cannot hold
            parser.set_flag(trt.OnnxParserFlag.NATIVE_INSTANCENORM)
        parse_onnx(parser, readable_path(onnx_path), model)  # a calibration of this command: still staged
        io = io_tensors(network)
        dynamic = is_dynamic(io)
        if not dynamic and any(v is not None for v in (settings.min_batch, settings.opt_batch, settings.max_batch)):
            log.warning(f"{onnx_path.name} has a static batch; `min_batch`/`opt_batch`/`max_batch` are ignored")
        profile = batch_profile(io, plan.batches if dynamic else None)
        config, cache = configure(trt, builder, plan, settings, profile, dynamic)
        fallback = dla_fallback_layers(network, config, settings)
        serialized = serialize(trt, builder, network, config, plan, logger, onnx_path.name)
        with atomic_path(engine_path) as tmp:
            Path(tmp).write_bytes(memoryview(serialized))
        if cache:
            cache.save()
        layers = record_layers(trt, plan.backend, logger, serialized, engine_path, model, settings.strict_precision)
    build_seconds = round(time.time() - started, 2)
    for message in logger.warnings:
        log.info(f"[dim]builder: {escape(message)}[/dim]")
    return engine_section(engine_path, onnx_path, plan, settings, io=io, profile=profile,
                         dla_fallback=fallback, build_seconds=build_seconds,
                         peak_rss_mb=peak.mb, warnings=logger.warnings,
                         timing_cache=cache.summary() if cache else None, layers=layers)

