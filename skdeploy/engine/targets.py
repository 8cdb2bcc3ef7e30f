"""Named deployment targets: which backend builds for them and what each allows.

A target fixes the backend family and its limits (DLA only on Jetson, compute-capability lists only
with TensorRT-RTX, hardware compatibility only on discrete Ampere+ GPUs), so a wrong combination is
refused before any building starts.
"""
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    description: str
    dla: bool = False  # has DLA cores
    hardware_compatibility: bool = True  # engines may be built for GPUs other than the build GPU
    default_compute_capabilities: tuple = ()  # () = the build GPU's own


TARGETS = {t.name: t for t in (
    Target("jetson-orin", "tensorrt", "Jetson AGX/NX/Nano Orin (SM 8.7, 2 DLA cores on AGX/NX); build on the device",
           dla=True, hardware_compatibility=False),
    Target("jetson-xavier", "tensorrt", "Jetson AGX/NX Xavier (SM 7.2, 2 DLA cores); build on the device",
           dla=True, hardware_compatibility=False),
    Target("desktop", "tensorrt", "a desktop/workstation GPU; build on the GPU that will run it"),
    Target("datacenter", "tensorrt", "a datacenter GPU (A100, H100, L4, ...); build on a GPU of that kind"),
    Target("rtx", "tensorrt-rtx", "GeForce/RTX PCs via TensorRT for RTX; built ahead of time without a GPU",
           default_compute_capabilities=("8.6", "8.9", "12.0")),  # RTX 30, 40 and 50 series
)}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UsageError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    return TARGETS[name]


def targets_of(backend: str) -> list:
    return [t.name for t in TARGETS.values() if t.backend == backend]
