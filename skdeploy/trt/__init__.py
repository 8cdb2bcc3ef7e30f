"""Which TensorRT is installed and what it can do, shared by the engine builder and the engine runner.

    probe.py         the two flavours (`tensorrt`, `tensorrt_rtx`): installed?, load one, its install hint
    capabilities.py  what a loaded module supports, decided once from its version and API
    compat.py        can an engine built for X run here: TensorRT version, GPU, DLA

Nothing here imports TensorRT until load_backend() is called, and nothing here builds or runs engines:
engine/ (building) and runners/ (running) both sit on top of this package, never on each other.
"""
from .capabilities import HARDWARE_COMPATIBILITY, Capabilities, capabilities_of
from .compat import check_compatibility, describe_targets, explain_incompatibility, sm, versions_compatible
from .probe import BACKENDS, EXTRAS, TITLES, first_installed, installed, load_backend, missing_backend_message

__all__ = ["BACKENDS", "EXTRAS", "TITLES", "HARDWARE_COMPATIBILITY", "Capabilities", "capabilities_of",
           "check_compatibility", "describe_targets", "explain_incompatibility", "first_installed", "installed",
           "load_backend", "missing_backend_message", "sm", "versions_compatible"]
