"""What this machine offers for building and running engines: the TensorRT flavours and where they come
from, the CUDA memory backends, the GPUs, and on a Jetson whether JetPack's TensorRT is visible.

    from skdeploy.runners.doctor import diagnose
    report = diagnose()      # {"python", "platform", "backends", "cuda", "gpus", "advice"}

On a Jetson, TensorRT and pycuda come from JetPack's system packages (/usr/lib/python3/dist-packages), not
from pip: a virtual environment sees them only when made with `python3 -m venv --system-site-packages`.
"""
import importlib
import importlib.metadata
import platform
import sys
from pathlib import Path

from ..trt import BACKENDS, TITLES, capabilities_of, installed

TEGRA_RELEASE = Path("/etc/nv_tegra_release")  # present on Jetson (L4T), e.g. "# R36 (release), REVISION: 4.3"
SYSTEM_PACKAGES = "/usr/lib/python3/dist-packages"


def _venv() -> dict:
    """Whether Python runs in a virtual environment and whether it sees the system's site-packages."""
    config = Path(sys.prefix) / "pyvenv.cfg"
    system = None
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "include-system-site-packages":
                system = value.strip().lower() == "true"
    return {"active": sys.prefix != sys.base_prefix, "system_site_packages": system}


def _backend(backend: str) -> dict:
    """Installed?, version, where from, and what skdeploy can do with it."""
    if not installed(backend):
        return {"installed": False}
    try:
        module = importlib.import_module(BACKENDS[backend])
    except Exception as exc:  # a broken install (missing libnvinfer, wrong CUDA) must be reported, not raised
        return {"installed": True, "error": f"{type(exc).__name__}: {exc}"}
    path = str(Path(module.__file__).resolve().parent)
    caps = capabilities_of(module, backend)
    return {"installed": True, "version": caps.version, "path": path, "system_package": path.startswith("/usr/"),
            "strong_typing": caps.strong_typing, "dla": caps.dla, "version_compatible": caps.version_compatible,
            "hardware_compatibility": list(caps.hardware_compatibility),
            "compute_capabilities": list(caps.compute_capabilities)}


def _package_version(distribution: str):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda() -> dict:
    """The CUDA memory backends the TensorRT runner can use (pycuda is preferred when both are there)."""
    from ..deps import available

    return {"pycuda": _package_version("pycuda") if available("pycuda.driver") else None,
            "cuda-python": (_package_version("cuda-python") or _package_version("cuda-bindings"))
            if available("cuda.bindings.runtime") or available("cuda.cudart") else None}


def _gpus() -> dict:
    """{"devices": [{index, name, compute_capability}], "error": why none}; asks cuda-python or pycuda."""
    from ..errors import SkdeployError
    from .cudamem import open_device_memory

    devices = []
    try:
        index = 0
        while True:
            memory = open_device_memory(device=index)
            devices.append({"index": index, **memory.device()})
            memory.close()
            index += 1
    except SkdeployError as exc:  # past the last device, or no GPU / no driver / no CUDA module at all
        return {"devices": devices, "error": None if devices else str(exc)}


def diagnose() -> dict:
    jetson = TEGRA_RELEASE.read_text().splitlines()[0].lstrip("# ").strip() if TEGRA_RELEASE.is_file() else None
    report = {
        "python": {"version": platform.python_version(), "executable": sys.executable, "venv": _venv()},
        "platform": {"machine": platform.machine(), "system": platform.system(), "jetson_l4t": jetson},
        "backends": {backend: _backend(backend) for backend in BACKENDS},
        "cuda": _cuda(),
        "gpus": _gpus(),
    }
    report["advice"] = advice(report)
    return report


def advice(report: dict) -> list:
    """What to do about what is missing, one sentence each."""
    classic = report["backends"]["tensorrt"]
    venv = report["python"]["venv"]
    hints = []
    if report["platform"]["jetson_l4t"] and not classic["installed"]:
        if venv["active"] and not venv["system_site_packages"]:
            hints.append("this virtual environment hides JetPack's TensorRT: recreate it with "
                         "`python3 -m venv --system-site-packages VENV` (TensorRT and pycuda come from JetPack, "
                         "not pip)")
        else:
            hints.append("JetPack's TensorRT is not installed: sudo apt install nvidia-tensorrt python3-libnvinfer")
    if not any(info.get("version") for info in report["backends"].values()):
        hints.append(f"no TensorRT is importable: pip install 'skdeploy[rtx]' ({TITLES['tensorrt-rtx']}, builds "
                     "without a GPU) or 'skdeploy[trt]' (classic TensorRT)")
    for backend, info in report["backends"].items():
        if info.get("error"):
            hints.append(f"{TITLES[backend]} is installed but does not import ({info['error']})")
    if not any(report["cuda"].values()):
        hints.append("no CUDA memory backend for running engines: pip install 'skdeploy[cuda-python]' "
                     "(or use JetPack's pycuda on a Jetson)")
    return hints
