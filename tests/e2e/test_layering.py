"""The package's import layering: every skdeploy module imports only its own unit or layers below it.

Layers, highest first (README "Layout"):

    interface   cli.py, __main__.py, commands/        parse flags, call one API function, print its result
    deployment  deployment.py              the one-shot deploy: every stage into a bundle
    stages      stages/                    export, optimize, calibrate, build, validate: entry point, settings,
                                           result each, and the one skeleton that writes a stage's files
    serving     serving/                   runtime configs (Triton, DeepStream), the bundle's README and labels
    judge       bench.py | report.py       (separate units: neither imports the other)
    calib       calib/                     ranges, Q/DQ, FP16, the accuracy budget
    engine      engine/                    build plans, builder runs, sidecars
    reference   reference.py               the FP32 reference, built and run one way
    runners     runners/                   one Runner contract for torch, onnxruntime, TensorRT
    trt         trt/                       which TensorRT is installed, what it can do, compatibility
    graph       graph/                     passes over ONNX
    models      models/                    registry, SK unit, checkpoints
    data        data/                      preprocessing, readers, splits, padding
    onnx        onnx/                      the graph toolkit
    compare     compare.py                 metrics: a leaf every layer above may use
    floor       manifest, fileio, errors, log, ui, deps, the package __init__

The reference sits below the stages because export parity and calibration's accuracy budget run it as
well as validation and bench. The check reads every import statement with `ast`, at module level and
inside functions, plus `__import__` / `importlib.import_module` calls with a literal skdeploy name.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "skdeploy"

LAYERS = (  # (layer, units): a unit is a set of top-level names under skdeploy/ (module or package)
    ("interface", [{"cli", "__main__", "commands"}]),
    ("deployment", [{"deployment"}]),
    ("stages", [{"stages"}]),
    ("serving", [{"serving"}]),
    ("judge", [{"bench"}, {"report"}]),
    ("calib", [{"calib"}]),
    ("engine", [{"engine"}]),
    ("reference", [{"reference"}]),
    ("runners", [{"runners"}]),
    ("trt", [{"trt"}]),
    ("graph", [{"graph"}]),
    ("models", [{"models"}]),
    ("data", [{"data"}]),
    ("onnx", [{"onnx"}]),
    ("compare", [{"compare"}]),
    ("floor", [{"manifest", "fileio", "errors", "log", "ui", "deps", "__init__"}]),
)
RANK = {name: (len(LAYERS) - depth, frozenset(unit))
        for depth, (_, units) in enumerate(LAYERS) for unit in units for name in unit}

# The package root is the public entry point as well as the floor (it defines __version__):
# `from skdeploy import load_runner` re-exports the runner API lazily, on first attribute access, and
# `from skdeploy import deploy` the one-shot deployment.
PUBLIC_API = {("skdeploy", "runners"), ("skdeploy", "deployment")}



def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_name(module: str) -> str:
    """The layer key of a skdeploy module: its first component below the package, or __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, root: Path = REPO) -> list:
    """(line, absolute skdeploy module) for every import in the file, wherever it stands."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def exists(module):
        file = root.joinpath(*module.split("."))
        return file.with_suffix(".py").is_file() or (file / "__init__.py").is_file()

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            # `from pkg import name` imports the submodule pkg.name when there is one
            found += [(node.lineno, f"{target}.{alias.name}" if exists(f"{target}.{alias.name}") else target)
                      for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "id", None) == "__import__"
                   or getattr(node.func, "attr", None) == "import_module")):
            found.append((node.lineno, node.args[0].value))
    return sorted((line, module) for line, module in found if module == "skdeploy" or module.startswith("skdeploy."))


def package_modules() -> list:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = sorted({top_name(module_name(path)) for path in package_modules()} - set(RANK))
    assert unplaced == [], f"place these in LAYERS: {unplaced}"


def test_imports_point_down_or_stay_in_their_unit():
    violations = []
    for path in package_modules():
        source = module_name(path)
        source_rank, source_unit = RANK[top_name(source)]
        for line, target in imported_modules(path):
            target_rank, target_unit = RANK[top_name(target)]
            if target_unit == source_unit or target_rank < source_rank:
                continue
            if (source, top_name(target)) in PUBLIC_API:
                continue
            direction = "up" if target_rank > source_rank else "sideways"
            violations.append(f"{path.relative_to(REPO)}:{line} imports {target} ({direction})")
    assert violations == []


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """On a made-up package: relative and absolute, top-level and inside functions, submodule or name."""
    package = tmp_path / "skdeploy"
    for folder in ("runners", "engine"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").touch()
    for file in ("__init__.py", "ui.py", "runners/base.py"):
        (package / file).touch()
    runners = package / "runners"
    (runners / "x.py").write_text(
        "import json\n"
        "from . import base\n"
        "from .. import ui, __version__\n"
        "def lazy():\n"
        "    from ..engine import build_engine\n"
        "    import skdeploy.engine\n"
        "    return __import__('skdeploy.deps', fromlist=['require'])\n")
    assert imported_modules(runners / "x.py", tmp_path) == [
        (2, "skdeploy.runners.base"), (3, "skdeploy"), (3, "skdeploy.ui"), (5, "skdeploy.engine"),
        (6, "skdeploy.engine"), (7, "skdeploy.deps")]


@pytest.mark.parametrize("module", ["skdeploy", "skdeploy.runners", "skdeploy.runners.trt"])
def test_importing_the_runtime_loads_no_build_calibration_or_graph_code(module):
    code = (f"import sys, {module}; "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.count('.') >= 1 and m.startswith('skdeploy.')}))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env=env).stdout
    loaded = set(ast.literal_eval(out.strip()))
    assert loaded & {"stages", "engine", "calib", "graph"} == set()
    if module == "skdeploy":
        assert loaded == set()  # the lazily re-exported runner API (PUBLIC_API) loads nothing until used
