"""A pip-installed skdeploy works without the repository: build the wheel, install it with its extras into a
fresh virtual environment outside the checkout, and run the demo pipeline from an empty folder: export ->
calibrate (the shipped default set) -> build-engine (TensorRT-RTX, on the CPU) -> validate.

Offline and fast: the new environment sees this interpreter's installed packages (torch, onnxruntime,
tensorrt_rtx...) through a path file, so pip resolves the extras with --no-index; the editable skdeploy
of this environment is not on that path, and the test checks that the wheel's copy is what runs."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SET = "fashion-mnist-train-2048.npz"
EXTRAS = "export,calib,rtx"


def run(command, cwd, timeout=900):
    """`command` in `cwd` with no trace of this checkout in the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def succeeded(result):
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of what it is made of (links kept, as in the repository)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("skdeploy", "calibration"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    succeeded(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                   "-w", folder / "dist", "./source"], folder))
    (built,) = (folder / "dist").glob("skdeploy-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel and its extras; this interpreter's site-packages below its own."""
    env_dir = tmp_path_factory.mktemp("wheel_venv") / "venv"
    succeeded(run([sys.executable, "-m", "venv", "--without-pip", env_dir], env_dir.parent))
    python = env_dir / "bin" / "python"
    site = Path(succeeded(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              env_dir.parent)).stdout.strip())
    (site / "base_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    succeeded(run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--quiet",
                   f"{wheel}[{EXTRAS}]"], env_dir.parent))
    return env_dir


def test_the_wheel_ships_the_calibration_set_and_the_demo_weights_as_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = archive.read(f"skdeploy/data/calibration/{SHIPPED_SET}")
    assert {"skdeploy/weights/sknet_fmnist.pt", "skdeploy/weights/sknet_fmnist.json"} <= names
    # the one copy: the package's file is a link to calibration/, and the wheel holds its bytes
    assert (REPO / "skdeploy" / "data" / "calibration" / SHIPPED_SET).is_symlink()
    assert shipped == (REPO / "calibration" / SHIPPED_SET).read_bytes()


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_pipeline_from_an_empty_folder(installed, tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    skdeploy = installed / "bin" / "skdeploy"
    where = succeeded(run([installed / "bin" / "python", "-c", "import skdeploy; print(skdeploy.__file__)"], work))
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout
    succeeded(run([skdeploy, "export", "--dynamic-batch", "-o", "demo.onnx"], work))
    calibrated = json.loads(succeeded(run([skdeploy, "calibrate", "demo.onnx", "--int8", "--calib-images", "128",
                                           "--holdout-images", "128", "-o", "demo.int8.onnx", "--json"], work)).stdout)
    shipped = Path(calibrated["data"]["path"])
    assert shipped.name == SHIPPED_SET and shipped.is_relative_to(installed) and not shipped.is_symlink()
    succeeded(run([skdeploy, "build-engine", "demo.int8.onnx", "--backend", "tensorrt-rtx", "--target", "rtx",
                   "--compute-capability", "8.9", "-o", "demo.int8.engine"], work))
    assert (work / "demo.int8.engine").stat().st_size > 0
    # INT8 from 128 calibration images may lose a point on 256 test images; FP32 must match exactly
    validated = json.loads(succeeded(run([skdeploy, "validate", "--candidate", "demo.onnx", "--candidate",
                                          "demo.int8.onnx", "--limit", "256", "--min-agreement", "0.95",
                                          "--max-top1-drop", "3", "--save-reference", "ref.npz", "--json"],
                                         work)).stdout)
    assert validated["passed"] and validated["data"]["count"] == 256 and validated["reference"]["kind"] == "pytorch"
    fp32, int8 = (candidate["metrics"] for candidate in validated["candidates"])
    assert fp32["agreement"] == 1.0 and fp32["max_abs"] < 1e-3 and int8["agreement"] >= 0.95
    assert (work / "ref.npz").stat().st_size > 0
