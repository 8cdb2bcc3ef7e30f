"""Can an engine run here? Its sidecar's "engine" section against the installed TensorRT, the GPU and
its DLA cores, answered as readable reasons before TensorRT is asked to deserialise anything."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .capabilities import cc_tuple, version_tuple
from .probe import BACKENDS, EXTRAS, TITLES

if TYPE_CHECKING:
    from ..fileio import PathLike

# version-compatible engines may cross these major versions (build major -> runtime major)
_CROSS_MAJOR = {(8, 10), (10, 11)}
AMPERE = (8, 0)  # the oldest compute capability an ampere-plus engine runs on


def sm(compute_capability: str) -> str:
    """'8.6' -> 'sm_86'."""
    return "sm_" + str(compute_capability).replace(".", "")


def versions_compatible(backend: str, built: str, runtime: str, version_compatible: bool) -> bool:
    """TensorRT-RTX engines run only on the release that built them; classic TensorRT engines too,
    unless built version-compatible (then any newer runtime of the same or the next supported major)."""
    built_v, have_v = version_tuple(built), version_tuple(runtime)
    if backend == "tensorrt" and version_compatible:
        return have_v >= built_v and (have_v[:1] == built_v[:1] or (built_v[0], have_v[0]) in _CROSS_MAJOR)
    return built_v == have_v


def describe_targets(engine: dict) -> str:
    """The GPUs an engine was built for, in words."""
    if engine.get("hardware_compatibility") == "ampere-plus":
        return "Ampere or newer GPUs (sm_80+)"
    wanted = engine.get("compute_capabilities") or []
    return ", ".join(sm(cc) for cc in wanted) if wanted else "the GPU it was built on"


def check_compatibility(engine: dict, gpu: dict, installed_version: str | None, dla_cores: int = 0) -> list:
    """Reasons the engine described by a sidecar's "engine" section cannot run here (empty: it can).

    `gpu` is {"name", "compute_capability"}; `installed_version` is that of the sidecar's backend
    (None when it is not installed)."""
    backend = engine.get("backend")
    if backend not in BACKENDS:
        return [f"unknown engine backend {backend!r} (expected {' or '.join(BACKENDS)})"]
    title = TITLES[backend]
    problems = []
    built = engine.get("backend_version")
    if installed_version is None:
        problems.append(f"{title} is not installed (pip install 'skdeploy[{EXTRAS[backend]}]')")
    elif built and not versions_compatible(backend, built, installed_version, bool(engine.get("version_compatible"))):
        if backend == "tensorrt-rtx":
            rule = "engines run only on the TensorRT-RTX release that built them"
        elif engine.get("version_compatible"):
            rule = "a version-compatible engine needs the same or a newer TensorRT of a supported major version"
        else:
            rule = "the engine runs only on the TensorRT version that built it; rebuild it, or build it " \
                   "version-compatible"
        problems.append(f"the installed {title} is {installed_version} ({rule})")
    cc = (gpu or {}).get("compute_capability")
    if cc:
        here = f"this GPU is {sm(cc)}" + (f" ({gpu['name']})" if gpu.get("name") else "")
        wanted = [cc_tuple(c) for c in engine.get("compute_capabilities") or []]
        if engine.get("hardware_compatibility") == "ampere-plus":
            if cc_tuple(cc) < AMPERE:
                problems.append(here + ", older than the Ampere GPUs an ampere-plus engine needs")
        elif wanted and cc_tuple(cc) not in wanted:
            problems.append(here)
    if engine.get("dla_core") is not None and not dla_cores:
        problems.append(f"the engine runs on DLA core {engine['dla_core']} but this device has no DLA")
    return problems


def explain_incompatibility(path: PathLike, engine: dict, gpu: dict, problems: list) -> str:
    """One sentence: what the engine was built for, why it cannot run here, and how to rebuild it."""
    built = f"{TITLES.get(engine.get('backend'), engine.get('backend'))} {engine.get('backend_version', '?')}"
    advice = ""
    if engine.get("backend") == "tensorrt-rtx" and gpu and gpu.get("compute_capability"):
        advice = (f"; rebuild it: skdeploy build-engine ONNX --backend tensorrt-rtx "
                  f"--compute-capability {gpu['compute_capability']}")
    elif engine.get("backend") == "tensorrt":
        advice = "; rebuild it on this device: skdeploy build-engine ONNX --backend tensorrt"
    return f"{Path(path).name} was built for {describe_targets(engine)} with {built}; " + "; ".join(problems) + advice
