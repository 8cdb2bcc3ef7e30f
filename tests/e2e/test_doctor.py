"""`skdeploy doctor`: what this machine offers for engines, checked against independent look-ups."""
import importlib.metadata
import importlib.util
import json
import subprocess
import sys

from skdeploy.runners import doctor
from tests.support.bad_input_cases import checkout_environment


def test_doctor_json_reports_what_is_installed_here(tmp_path):
    done = subprocess.run([sys.executable, "-m", "skdeploy", "doctor", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, env=checkout_environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["python"]["executable"] == sys.executable
    assert report["backends"]["tensorrt"]["installed"] is (importlib.util.find_spec("tensorrt") is not None)
    rtx = report["backends"]["tensorrt-rtx"]
    if importlib.util.find_spec("tensorrt_rtx"):
        assert rtx["version"] == importlib.metadata.version("tensorrt_rtx") and not rtx["system_package"]
        assert "8.6" in rtx["compute_capabilities"] and rtx["dla"] is False
    if importlib.util.find_spec("cuda") and importlib.util.find_spec("cuda.bindings"):
        versions = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
        assert report["cuda"]["cuda-python"] in (versions.get("cuda-python"), versions.get("cuda-bindings"))
    gpus = report["gpus"]
    assert bool(gpus["devices"]) != bool(gpus["error"])  # either devices, or why there are none


def test_doctor_table_lists_each_item(tmp_path):
    done = subprocess.run([sys.executable, "-m", "skdeploy", "doctor"], cwd=tmp_path, capture_output=True, text=True,
                          env=checkout_environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    for item in ("python", "virtual environment", "platform", "tensorrt", "tensorrt-rtx", "pycuda", "cuda-python"):
        assert f"│ {item} " in done.stdout


def test_doctor_on_a_jetson_says_how_to_see_jetpacks_tensorrt(tmp_path, monkeypatch):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64\n")
    monkeypatch.setattr(doctor, "TEGRA_RELEASE", release)
    monkeypatch.setattr(doctor, "installed", lambda backend: False)
    monkeypatch.setattr(doctor, "_venv", lambda: {"active": True, "system_site_packages": False})
    report = doctor.diagnose()
    assert report["platform"]["jetson_l4t"].startswith("R35 (release), REVISION: 3.1")
    assert any("python3 -m venv --system-site-packages" in hint for hint in report["advice"])
    monkeypatch.setattr(doctor, "_venv", lambda: {"active": True, "system_site_packages": True})
    hints = doctor.diagnose()["advice"]
    assert not any("--system-site-packages" in hint for hint in hints)
    assert any("apt install nvidia-tensorrt" in hint for hint in hints)
