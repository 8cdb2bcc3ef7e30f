"""The real Python API surface of classic TensorRT releases and of the installed TensorRT-RTX.

Classic TensorRT's libraries cannot be installed here, but its Python bindings are small wheels on PyPI
(`tensorrt-bindings`, `tensorrt-cu12-bindings`). Their `tensorrt.so` leaves only a dozen C entry points of
libnvinfer/libnvonnxparser/libnvinfer_plugin (8.6: also libnvparsers) undefined; every other call goes
through C++ interfaces. A stub library per soname that defines those entry points (returning null) lets
the real bindings import on a CPU-only machine: classes, methods, properties, enum members and the
pybind11 signatures in each `__doc__` are real; no object can be created.

    surface("10.3.0") -> {"version", "classes": {name: {"members": {member: kind}, "kwargs": {method: [...]},
                                                  "enum": [members] or None}},
                          "functions": [module-level callables]}

Surfaces are cached under ~/.cache/skdeploy-contract/<version>/ (SKDEPLOY_CONTRACT_CACHE overrides).
A wheel that cannot be downloaded is an error, never a skip: CI must see it.
"""
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

# the classic releases the code claims, each read from its real binding wheel (pip name, version, soname major)
CLASSIC = {
    "8.6.1": ("tensorrt-bindings", "8.6.1", 8),
    "10.3.0": ("tensorrt-cu12-bindings", "10.3.0", 10),  # JetPack 6
    "10.7.0": ("tensorrt-cu12-bindings", "10.7.0", 10),  # the last release with DLA on Jetson Orin (JetPack 6.x)
    "10.13.3": ("tensorrt-cu12-bindings", "10.13.3.9", 10),
    "10.16.1": ("tensorrt-cu12-bindings", "10.16.1.11", 10),  # JetPack 7.2
    "11.0.0": ("tensorrt-cu12-bindings", "11.0.0.114", 11),
    "11.4.0": ("tensorrt-cu12-bindings", "11.4.0.106", 11),
}

# the TensorRT C entry points the bindings leave undefined (nm -D --undefined-only tensorrt.so); 8.6 adds
# the UFF/Caffe parser factories and nvuffparser::FieldMap's constructor (C-mangled names are valid C names)
STUB_SOURCE = """
void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
void *getBuilderPluginRegistry(int capability) { return 0; }
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
void *_ZN11nvuffparser15createUffParserEv(void) { return 0; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void *self, const char *n, const void *d, int t, int l) {}
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
"""
STUB_LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers")

# run in a child process with the bindings importable: prints the surface as JSON
EXTRACT = r"""
import inspect, json, re, sys, importlib
module = importlib.import_module(sys.argv[1])
KWARG = re.compile(r"(\w+)\s*:")
def kwargs_of(doc):
    names = []
    for line in (doc or "").splitlines():
        head = re.match(r"\s*(?:\d+\.\s*)?\w+\((.*)\)\s*->", line)
        if head:
            names += [n for n in KWARG.findall(head.group(1)) if n != "self"]
    return sorted(set(names))
classes, functions = {}, []
for name in dir(module):
    if name.startswith("_"):
        continue
    value = getattr(module, name)
    if inspect.isclass(value):
        members, kwargs = {}, {}
        for attr in dir(value):
            if attr.startswith("__") and attr != "__init__":
                continue
            raw = inspect.getattr_static(value, attr)
            kind = "property" if isinstance(raw, property) else "method" if callable(raw) else "attribute"
            if hasattr(value, "__members__") and attr in value.__members__:
                kind = "enum"
            members[attr] = kind
            if kind == "method":
                kwargs[attr] = kwargs_of(getattr(value, attr).__doc__)
        enum = sorted(value.__members__) if hasattr(value, "__members__") else None
        classes[name] = {"members": members, "kwargs": kwargs, "enum": enum}
        for attr, nested in vars(value).items():  # enums inside a class, e.g. ILogger.Severity
            if inspect.isclass(nested) and hasattr(nested, "__members__"):
                classes[f"{name}.{attr}"] = {"members": {m: "enum" for m in nested.__members__}, "kwargs": {},
                                             "enum": sorted(nested.__members__)}
    elif callable(value):
        functions.append(name)
print(json.dumps({"version": str(getattr(module, "__version__", "?")), "classes": classes,
                  "functions": sorted(functions)}))
"""


def cache_root() -> Path:
    return Path(os.environ.get("SKDEPLOY_CONTRACT_CACHE", Path.home() / ".cache" / "skdeploy-contract"))


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {(done.stderr or done.stdout).strip()[-600:]}")
    return done


def _download_wheel(package: str, version: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheels = list(folder.glob("*.whl"))
    if not wheels:
        platforms = [arg for p in ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64") for arg in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
              f"{sys.version_info.major}.{sys.version_info.minor}", *platforms, "-d", str(folder),
              f"{package}=={version}"])
        wheels = list(folder.glob("*.whl"))
    return wheels[0]


def _stub_libraries(folder: Path, major: int) -> Path:
    libs = folder / "stubs"
    if not all((libs / f"lib{name}.so.{major}").exists() for name in STUB_LIBRARIES):
        libs.mkdir(parents=True, exist_ok=True)
        source = libs / "entry_points.c"
        source.write_text(STUB_SOURCE)
        for name in STUB_LIBRARIES:
            _run(["cc", "-shared", "-fPIC", f"-Wl,-soname,lib{name}.so.{major}", "-o",
                  str(libs / f"lib{name}.so.{major}"), str(source)])
    return libs


def surface(version: str) -> dict:
    """The real API surface of classic TensorRT `version` (a key of CLASSIC), cached."""
    package, exact, major = CLASSIC[version]
    folder = cache_root() / exact
    cached = folder / "surface.json"
    if cached.exists():
        return json.loads(cached.read_text())
    wheel = _download_wheel(package, exact, folder / "wheel")
    site = folder / "site"
    if not (site / "tensorrt_bindings").is_dir():
        zipfile.ZipFile(wheel).extractall(site)
    libs = _stub_libraries(folder, major)
    env = dict(os.environ, PYTHONPATH=str(site), LD_LIBRARY_PATH=str(libs))
    found = json.loads(_run([sys.executable, "-c", EXTRACT, "tensorrt_bindings"], env=env, cwd=folder).stdout)
    cached.write_text(json.dumps(found))
    return found


def rtx_surface() -> dict:
    """The API surface of the installed tensorrt_rtx (read in a child process, like the classic ones)."""
    return json.loads(_run([sys.executable, "-c", EXTRACT, "tensorrt_rtx"]).stdout)


def has(api: dict, dotted: str) -> bool:
    """'Runtime.load_runtime', 'BuilderFlag.FP16', 'ILogger.Severity.ERROR', 'Runtime' -> whether the surface
    has it."""
    owner, _, member = dotted.rpartition(".") if dotted.count(".") == 2 else dotted.partition(".")
    if owner not in api["classes"]:
        return not member and owner in api["functions"]
    return not member or member in api["classes"][owner]["members"]


def kwargs(api: dict, dotted: str) -> list:
    """The keyword arguments of method 'Class.method' in its pybind11 signature(s)."""
    owner, _, member = dotted.rpartition(".")
    return api["classes"][owner]["kwargs"].get(member, [])


def version_key(text: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])
