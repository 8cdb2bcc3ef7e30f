"""`skdeploy deploy` and `skdeploy.deploy(...)` (issue 12) on the shipped demo model: one command from PyTorch to
a validated bundle with Triton and DeepStream configs; a rerun rebuilds nothing; a model that fails validation
leaves no bundle; a classic-TensorRT target gets the ONNX plus the exact command that builds its engine."""
import hashlib
import json
import shlex

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import run_cli

FAST = ("--limit", "100", "--max-batch", "4", "--compute-capability", "8.9")


def work_files(bundle):
    folder = bundle.parent / f".{bundle.name}.work"
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


def test_deploy_writes_a_validated_bundle_and_a_second_run_rebuilds_nothing(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    bundle = tmp_path / "bundle"
    result = run_cli("deploy", "--format", "triton", "--format", "deepstream", *FAST, "-o", bundle, "--json")
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)
    assert first["built"] == ["export", "build-engine"] and first["reused"] == [] and first["passed"]
    names = {str(path.relative_to(bundle)) for path in bundle.rglob("*") if path.is_file()}
    assert names == {"model.onnx", "model.onnx.json", "model.engine", "model.engine.json", "reference.npz",
                     "labels.txt", "validation.json", "validation.html", "README.txt", "triton/client.py",
                     "triton/model_repository/sknet-fmnist/config.pbtxt",
                     "triton/model_repository/sknet-fmnist/labels.txt",
                     "triton/model_repository/sknet-fmnist/1/model.plan", "deepstream/labels.txt",
                     "deepstream/config_infer_primary_sknet-fmnist.txt",
                     "deepstream/config_infer_secondary_sknet-fmnist.txt"}
    assert (bundle / "labels.txt").read_text().splitlines()[:2] == ["T-shirt/top", "Trouser"]
    sidecar = json.loads((bundle / "model.engine.json").read_text())
    assert sidecar["engine"]["source_onnx"]["sha256"] == json.loads((bundle / "model.onnx.json").read_text())[
        "artifact"]["sha256"]
    assert json.loads((bundle / "validation.json").read_text())["data"]["count"] == 100
    readme = (bundle / "README.txt").read_text()
    steps = [line.strip() for line in readme.splitlines() if line.strip()[:3] in ("1. ", "2. ", "3. ")]
    assert [step[:3] for step in steps] == ["1. ", "2. ", "3. "]
    assert "skdeploy validate --reference reference.npz --candidate model.engine" in steps[1]
    primary = (bundle / "deepstream" / "config_infer_primary_sknet-fmnist.txt").read_text()
    assert "model-engine-file=../model.engine" in primary and "onnx-file=../model.onnx" in primary

    # the device's step 2 on the saved reference, here with the ONNX (the engine needs an RTX GPU)
    device = run_cli("validate", "--reference", bundle / "reference.npz", "--candidate", bundle / "model.onnx",
                     "--json")
    assert device.exit_code == 0, device.stderr
    assert json.loads(device.stdout)["candidates"][0]["metrics"]["agreement"] == 1.0

    before = work_files(bundle)
    from skdeploy import DeploySettings, deploy

    again = deploy(bundle, DeploySettings(formats=("triton", "deepstream"), limit=100, max_batch=4,
                                          compute_capabilities=["8.9"]), force=True)
    assert again.built == [] and again.reused == ["export", "build-engine"] and again.validation.passed
    after = work_files(bundle)
    assert {name: after[name] for name in ("model.onnx", "model.onnx.json", "model.engine", "model.engine.json")} \
        == {name: before[name] for name in ("model.onnx", "model.onnx.json", "model.engine", "model.engine.json")}


def test_a_model_that_fails_validation_leaves_no_bundle(workspace):
    """The demo ONNX with its last layer's weights scaled: its manifest still names the demo checkpoint, so
    the FP32 reference is the real model and agreement collapses."""
    model = onnx.load(workspace / "demo.onnx")
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    weight = next(init for init in model.graph.initializer if init.name == gemm.input[1])
    values = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array(values * np.linspace(-1, 1, values.shape[0])[:, None].astype(values.dtype),
                                            weight.name))
    onnx.save(model, workspace / "broken.onnx")
    manifest = json.loads((workspace / "demo.onnx.json").read_text())
    manifest["artifact"].update(file="broken.onnx",
                                sha256=hashlib.sha256((workspace / "broken.onnx").read_bytes()).hexdigest())
    (workspace / "broken.onnx.json").write_text(json.dumps(manifest))
    bundle = workspace / "bundle"
    result = run_cli("deploy", workspace / "broken.onnx", "--target", "desktop", "--limit", "100", "-o", bundle)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: validation failed (top-1 agreement") and "no bundle written" in lines[-1]
    assert not bundle.exists()  # and no staging folder: only the work kept for a rerun
    assert [path.name for path in workspace.glob(".bundle*")] == [".bundle.work"]


def test_a_classic_tensorrt_target_gets_the_onnx_and_the_exact_build_command(workspace):
    from skdeploy.deps import available

    if available("tensorrt"):
        pytest.skip("classic TensorRT is installed: the engine is built here")
    bundle = workspace / "orin"
    result = run_cli("deploy", workspace / "demo.onnx", "--target", "jetson-orin", "--format", "deepstream",
                     "--limit", "100", "--max-batch", "4", "-o", bundle, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["engine"] is None and record["built"] == ["optimize"]
    assert not (bundle / "model.engine").exists() and (bundle / "model.onnx").exists()
    command = record["build_command"]
    assert command in (bundle / "README.txt").read_text()
    args = shlex.split(command)
    assert args[:3] == ["skdeploy", "build-engine", "model.onnx"]
    from skdeploy.commands.build_engine import command as build_engine

    parsed = build_engine.make_context("build-engine", args[2:]).params
    assert (parsed["target"], parsed["max_batch"], parsed["output"]) == ("jetson-orin", 4, "model.engine")
    primary = (bundle / "deepstream" / "config_infer_primary_sknet-fmnist.txt").read_text()
    assert "model-engine-file=../model.engine" in primary  # where command 1 writes it
