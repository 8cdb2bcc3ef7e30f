"""The base install (no extras) is what a Jetson without PyTorch gets: it must import, run the CLI and
not pull in torch. Builds a fresh virtual environment; pip takes numpy/onnx/click/rich/pillow from
PyPI or its cache."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base_install")
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):  # only what a wheel is built from, not the shared tree
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "skdeploy", source / "skdeploy", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True, timeout=900,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if install.returncode != 0:
        pytest.fail(f"pip install of the base package failed:\n{install.stderr[-3000:]}")
    return env_dir


def run(env_dir, *args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=env_dir,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})


def test_base_install_imports_and_runs_the_cli_without_torch(base_env):
    python = base_env / "bin" / "python"
    probe = run(base_env, python, "-c",
                "import importlib.util, skdeploy; from skdeploy import load_runner, TensorRTRunner, Runner; "
                "print(skdeploy.__version__, importlib.util.find_spec('torch') is None, "
                "importlib.util.find_spec('onnxruntime') is None)")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["0.1.0", "True", "True"]
    helped = run(base_env, base_env / "bin" / "skdeploy", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "validate" in helped.stdout and "bench" in helped.stdout
    validate_help = run(base_env, base_env / "bin" / "skdeploy", "validate", "--help")
    assert validate_help.returncode == 0 and "--save-reference" in validate_help.stdout
    no_torch = run(base_env, base_env / "bin" / "skdeploy", "validate", "--reference", "sknet-fmnist",
                   "--candidate", python)
    assert no_torch.returncode == 2 or no_torch.returncode == 1
    assert "torch is not installed" in no_torch.stderr and "Traceback" not in no_torch.stderr
    engine = base_env / "model.engine"
    engine.write_bytes(b"not an engine")
    no_tensorrt = run(base_env, python, "-c",
                      "from skdeploy import TensorRTRunner; TensorRTRunner('model.engine').activate()")
    assert no_tensorrt.returncode == 1
    assert no_tensorrt.stderr.strip().splitlines()[-1] == (
        "skdeploy.errors.SkdeployError: neither tensorrt nor tensorrt_rtx is installed; install one with: "
        "pip install 'skdeploy[trt]' or 'skdeploy[rtx]'")
