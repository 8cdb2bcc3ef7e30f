"""`skdeploy deploy theirs.onnx` for an ONNX made elsewhere, from image folders: the preprocessing comes from
calibrate's flags, the FP32 ONNX itself (run in onnxruntime) is the reference its FP16/INT8 candidates are
judged against, and a rerun reuses every step. The demo ONNX without its manifest stands in for "theirs"."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skdeploy.data import read_idx
from skdeploy.data.sources import FASHION_MNIST_DIR
from tests.support.helpers import run_cli

MEAN_STD = ("--mean", "0.286", "--std", "0.353")  # Fashion-MNIST's, as the demo model was trained
SMALL = ("--calib-images", "64", "--holdout-images", "32", "--limit", "60", "--max-batch", "4")


def write_pictures(folder, images, labels=None):
    """PNGs, one subfolder per class when `labels` are given (the folder's labels)."""
    from PIL import Image

    for index, picture in enumerate(images):
        target = folder / (str(labels[index]) if labels is not None else "")
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(target / f"{index:04d}.png")


@pytest.fixture(scope="module")
def foreign(demo_artifacts, tmp_path_factory):
    """theirs.onnx (no manifest), photos/ (96 training pictures) and val/ (60 test pictures in class folders)."""
    root = tmp_path_factory.mktemp("foreign")
    shutil.copy(demo_artifacts / "demo.onnx", root / "theirs.onnx")
    write_pictures(root / "photos", read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")[:96])
    write_pictures(root / "val", read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:60],
                   read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:60])
    return root


def deploy_foreign(root, *extra):
    return run_cli("deploy", root / "theirs.onnx", "--target", "desktop", "--fp16", "--calib-data", root / "photos",
                   "--data", root / "val", *MEAN_STD, *SMALL, "-o", root / "bundles" / "theirs", "--json", *extra)


def work_mtimes(root) -> dict:
    return {path.name: path.stat().st_mtime_ns for path in (root / "bundles" / ".theirs.work").iterdir()}


def readme_validate_step(bundle, candidate):
    """README.txt's validate step, run as typed from the bundle's folder in a fresh process, with `candidate`
    in model.engine's place (the engine is built on the device)."""
    step = next(line.split(". ", 1)[1] for line in (bundle / "README.txt").read_text().splitlines()
                if line.strip()[:1].isdigit() and ". skdeploy validate " in line)
    args = shlex.split(step)
    assert args[args.index("--candidate") + 1] == "model.engine"
    args[args.index("--candidate") + 1] = candidate
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}
    return step, subprocess.run([sys.executable, "-m", *args, "--json"], cwd=bundle, env=env, capture_output=True,
                                text=True, timeout=600, check=False)


def test_a_foreign_onnx_deploys_from_image_folders_against_itself_and_a_rerun_reuses_every_step(foreign, tmp_path):
    from skdeploy.deps import available

    if available("tensorrt"):
        pytest.skip("classic TensorRT is installed: the desktop engine is built here")
    result = deploy_foreign(foreign)
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["built"] == ["optimize", "calibrate"] and record["reused"] == [] and record["passed"]
    reference = record["validation"]["reference"]
    assert reference["kind"] == "onnx-fp32" and str(foreign / "theirs.onnx") in reference["source"]
    candidate = record["validation"]["candidates"][0]
    assert candidate["precision"] == "fp16" and candidate["metrics"]["agreement"] >= 0.99
    assert record["validation"]["data"]["count"] == 60

    work = foreign / "bundles" / ".theirs.work"
    recorded = json.loads((work / "model.onnx.json").read_text())["preprocessing"]
    assert (recorded["mean"], recorded["std"], recorded["crop"], recorded["channel_order"]) == (
        [0.286], [0.353], [32, 32], "GRAY")
    calibrated = json.loads((work / "model.fp16.onnx.json").read_text())
    assert calibrated["preprocessing"] == recorded
    assert calibrated["stages"][-1]["accuracy"]["reference"] == "onnx-fp32"
    bundle = foreign / "bundles" / "theirs"
    assert "reference.npz   FP32 ONNX (onnxruntime) outputs" in (bundle / "README.txt").read_text()
    assert (bundle / "labels.txt").read_text().splitlines() == [str(n) for n in range(10)]

    # the device's validation step on the saved reference, with the bundle's ONNX (the engine is built there)
    device = run_cli("validate", "--reference", bundle / "reference.npz", "--candidate", bundle / "model.fp16.onnx",
                     "--data", foreign / "val", "--limit", "60", "--json")
    assert device.exit_code == 0, device.stderr
    assert json.loads(device.stdout)["candidates"][0]["metrics"]["agreement"] == candidate["metrics"]["agreement"]

    # ... and as README.txt writes it, from a copy of the bundle, with the image folder it was made from gone
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    (foreign / "val").rename(foreign / "val.away")
    try:
        step, ran = readme_validate_step(copy, "model.fp16.onnx")
    finally:
        (foreign / "val.away").rename(foreign / "val")
    assert "--data samples" in step and str(foreign) not in step
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stderr
    on_device = json.loads(ran.stdout)
    assert on_device["passed"] and on_device["data"]["count"] == 60
    assert on_device["data"]["inputs_sha256"] == record["validation"]["data"]["inputs_sha256"]
    assert on_device["candidates"][0]["metrics"]["agreement"] == candidate["metrics"]["agreement"]

    before = work_mtimes(foreign)
    again = deploy_foreign(foreign, "--force")
    assert again.exit_code == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["built"] == [] and second["reused"] == ["optimize", "calibrate"] and second["passed"]
    assert {name: stamp for name, stamp in work_mtimes(foreign).items() if name != "reference.npz"} == \
        {name: stamp for name, stamp in before.items() if name != "reference.npz"}


def test_validate_takes_a_foreign_fp32_onnx_as_the_reference(foreign):
    """Its preprocessing comes from the candidate's manifest, which deploy filled from the flags."""
    candidate = foreign / "bundles" / ".theirs.work" / "model.fp16.onnx"
    if not candidate.exists():
        pytest.skip("needs the deploy above")
    result = run_cli("validate", "--reference", foreign / "theirs.onnx", "--candidate", candidate,
                     "--data", foreign / "val", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["reference"]["kind"] == "onnx-fp32" and record["data"]["count"] == 60
    assert record["data"]["preprocessing"]["mean"] == [0.286]
    implicit = run_cli("validate", "--candidate", candidate, "--data", foreign / "val")
    assert implicit.exit_code == 2
    assert "comes from an ONNX made elsewhere (onnx:theirs.onnx), with no PyTorch model behind it; give that FP32 " \
           "ONNX as --reference" in implicit.stderr
    alone = run_cli("validate", "--reference", foreign / "theirs.onnx", "--candidate", foreign / "theirs.onnx",
                    "--data", foreign / "val")
    assert alone.exit_code == 2
    assert "records no preprocessing and no candidate's manifest does" in alone.stderr


def test_a_rerun_on_an_onnx_with_its_manifest_reuses_the_graph_passes(workspace):
    """The settings deploy compares against are those optimize records (with `sizes`)."""
    from skdeploy.deps import available

    if available("tensorrt"):
        pytest.skip("classic TensorRT is installed: the desktop engine is built here")
    args = ("deploy", workspace / "demo.onnx", "--target", "desktop", "--limit", "50", "--max-batch", "4",
            "-o", workspace / "b", "--json")
    first = run_cli(*args)
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["built"] == ["optimize"]
    again = run_cli(*args, "--force")
    assert again.exit_code == 0, again.stderr
    assert (json.loads(again.stdout)["built"], json.loads(again.stdout)["reused"]) == ([], ["optimize"])
