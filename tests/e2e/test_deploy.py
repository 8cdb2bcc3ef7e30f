"""`skdeploy deploy` and `skdeploy.deploy(...)` on the shipped demo model: one command from PyTorch to a
validated bundle; a rerun rebuilds nothing; a model that fails validation leaves no bundle; a classic-TensorRT
target gets the ONNX plus the exact command that builds its engine; Triton and DeepStream bundles are
admitted under their runtime's own preprocessing and every README command runs as written."""
import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from skdeploy.data.sources import FASHION_MNIST_DIR
from tests.support.helpers import run_cli

FAST = ("--limit", "100", "--max-batch", "4", "--compute-capability", "8.9")


def readme_steps(bundle) -> list:
    """README.txt's numbered commands, as typed."""
    lines = (bundle / "README.txt").read_text().splitlines()
    steps = [line.strip() for line in lines if line.strip()[:1].isdigit() and ". " in line]
    assert [step.split(". ", 1)[0] for step in steps] == [str(n) for n in range(1, len(steps) + 1)]
    return [step.split(". ", 1)[1] for step in steps]


def work_files(bundle):
    folder = bundle.parent / f".{bundle.name}.work"
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


def test_deploy_writes_a_validated_bundle_and_a_second_run_rebuilds_nothing(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    bundle = tmp_path / "bundle"
    result = run_cli("deploy", *FAST, "-o", bundle, "--json")
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)
    assert first["built"] == ["export", "build-engine"] and first["reused"] == [] and first["passed"]
    names = {str(path.relative_to(bundle)) for path in bundle.rglob("*") if path.is_file()}
    assert names == {"model.onnx", "model.onnx.json", "model.engine", "model.engine.json", "model.engine.layers.json",
                     "reference.npz",
                     "labels.txt", "validation.json", "validation.html", "README.txt", "example.png", "samples.npz",
                     ".skdeploy-bundle"}
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o755 for path in [bundle, *bundle.rglob("*")] if path.is_dir())
    assert (bundle / "labels.txt").read_text().splitlines()[:2] == ["T-shirt/top", "Trouser"]
    sidecar = json.loads((bundle / "model.engine.json").read_text())
    layers = json.loads((bundle / "model.engine.layers.json").read_text())
    assert layers["summary"] == sidecar["engine"]["layers"] and layers["summary"]["kernels"] > 0
    assert sidecar["engine"]["source_onnx"]["sha256"] == json.loads((bundle / "model.onnx.json").read_text())[
        "artifact"]["sha256"]
    assert json.loads((bundle / "validation.json").read_text())["data"]["count"] == 100
    steps = readme_steps(bundle)
    assert steps[1] == "skdeploy validate --reference reference.npz --candidate model.engine --data samples.npz"

    # the device's step 2 on the saved reference, here with the ONNX (the engine needs an RTX GPU)
    device = run_cli("validate", "--reference", bundle / "reference.npz", "--candidate", bundle / "model.onnx",
                     "--json")
    assert device.exit_code == 0, device.stderr
    assert json.loads(device.stdout)["candidates"][0]["metrics"]["agreement"] == 1.0

    before = work_files(bundle)
    from skdeploy import DeploySettings, deploy

    again = deploy(bundle, DeploySettings(limit=100, max_batch=4, compute_capabilities=["8.9"]), force=True)
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
    assert "model-engine-file=model_softmax.engine" in primary and "onnx-file=model_softmax.onnx" in primary
    assert "skdeploy build-engine deepstream/model_softmax.onnx --target jetson-orin --max-batch 4 --opt-batch 4 " \
           "-o deepstream/model_softmax.engine" in readme_steps(bundle)


@pytest.mark.parametrize("kind", ["triton", "deepstream"])
def test_triton_and_deepstream_refuse_the_rtx_target_in_one_line(kind, tmp_path):
    """The target x runtime matrix: both runtimes link classic TensorRT, which cannot load a TensorRT-RTX plan."""
    result = run_cli("deploy", "--format", kind, "-o", tmp_path / "b")
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"--format {kind} cannot use --target rtx" in line and "classic TensorRT engines only" in line
    assert "--target desktop" in line and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def classic_bundle(demo_artifacts, tmp_path_factory):
    """A desktop bundle with both runtimes, made without classic TensorRT (the server builds the engine)."""
    from skdeploy import DeploySettings, deploy
    from skdeploy.deps import available

    if available("tensorrt"):
        pytest.skip("classic TensorRT is installed: the engine is built here")
    bundle = tmp_path_factory.mktemp("classic") / "bundle"
    result = deploy(bundle, DeploySettings(onnx=str(demo_artifacts / "demo.onnx"), target="desktop",
                                           formats=("triton", "deepstream"), limit=200, max_batch=4))
    assert result.engine is None and result.validation.passed
    return bundle


def test_the_triton_bundle_has_an_onnxruntime_model_and_a_plan_model_the_server_builds(classic_bundle):
    from skdeploy.commands.build_engine import command as build_engine
    from tests.support.triton_schema import parse_pbtxt

    name = "sknet-fmnist"
    onnx_folder = classic_bundle / "triton" / "model_repository" / name
    _, config = parse_pbtxt((onnx_folder / "config.pbtxt").read_text())
    assert config.name == name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters)["precision_mode"] == "FP32"
    assert dict(accelerator.parameters)["trt_engine_cache_enable"] == "true"
    assert (onnx_folder / "1" / "model.onnx").read_bytes() == (classic_bundle / "model.onnx").read_bytes()
    plan_folder = classic_bundle / "triton" / "plan_repository" / name
    _, plan = parse_pbtxt((plan_folder / "config.pbtxt").read_text())
    assert plan.platform == "tensorrt_plan" and [i.name for i in plan.input] == [i.name for i in config.input]
    assert list(plan.input[0].dims) == [1, 32, 32] and list(plan.output[0].dims) == [10]
    assert list((plan_folder / "1").iterdir()) == []  # the server's TensorRT builds it
    (command,) = [step for step in readme_steps(classic_bundle) if step.endswith("/1/model.plan")]
    parsed = build_engine.make_context("build-engine", shlex.split(command)[2:]).params
    assert (parsed["onnx_path"], parsed["target"], parsed["output"]) == (
        "model.onnx", "desktop", f"triton/plan_repository/{name}/1/model.plan")


def test_the_triton_client_prepares_pictures_as_the_reference_does(classic_bundle):
    from PIL import Image

    from skdeploy.data import Preprocessing
    from skdeploy.manifest import load_manifest
    from skdeploy.serving.runtime_check import client_module

    client = client_module(classic_bundle / "triton" / "client.py")
    preprocessing = Preprocessing.from_dict(load_manifest(classic_bundle / "model.onnx")["preprocessing"])
    for size in ((28, 28), (40, 30)):
        picture = Image.open(classic_bundle / "example.png").resize(size)
        np.testing.assert_allclose(client.prepare_image(picture), preprocessing(picture), rtol=0, atol=1e-5)


def test_the_deepstream_graph_ends_in_a_softmax_and_its_config_uses_the_models_filter(classic_bundle):
    from skdeploy.onnx.run import run_model

    values = dict(line.split("=", 1) for line in
                  (classic_bundle / "deepstream" / "config_infer_primary_sknet-fmnist.txt").read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    assert (values["scaling-filter"], values["maintain-aspect-ratio"]) == ("1", "1")  # bilinear, as trained
    assert values["output-blob-names"] == "probabilities" and 0 < float(values["classifier-threshold"]) < 1
    inputs = np.random.default_rng(0).normal(size=(6, 1, 32, 32)).astype(np.float32)
    (logits,) = run_model(onnx.load(classic_bundle / "model.onnx"), [{"input": inputs}])
    (probabilities,) = run_model(onnx.load(classic_bundle / "deepstream" / "model_softmax.onnx"), [{"input": inputs}])
    logits, probabilities = logits["logits"], probabilities["probabilities"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_the_bundle_is_admitted_under_nvinfer_and_client_preprocessing(classic_bundle):
    """validation.json records agreement under each runtime's own preprocessing; nvinfer's emulated transform
    with the nearest filter (nvinfer's default, which an unset scaling-filter gets) scores lower on the same
    pictures, so the filter the config sets is what the figure depends on."""
    from dataclasses import replace

    from PIL import Image

    from skdeploy.data import Preprocessing, open_data
    from skdeploy.manifest import load_manifest
    from skdeploy.serving.runtime_check import nvinfer_inputs, runtime_agreement

    runtime = json.loads((classic_bundle / "validation.json").read_text())["runtime"]
    assert set(runtime) == {"reference_preprocessing", "deepstream_nvinfer", "triton_client"}
    assert min(runtime.values()) >= 0.99
    model = classic_bundle / "deepstream" / "model_softmax.onnx"
    bilinear = Preprocessing.from_dict(load_manifest(model)["preprocessing"])
    samples = open_data(classic_bundle / "samples.npz", bilinear)
    pictures = [samples.picture(index) for index in range(len(samples))]
    logits = np.load(classic_bundle / "reference.npz")["logits"]
    assert runtime_agreement(model, pictures, lambda p: nvinfer_inputs(p, bilinear), logits) == \
        runtime["deepstream_nvinfer"]
    nearest = replace(bilinear, interpolation="nearest")
    assert runtime_agreement(model, pictures, lambda p: nvinfer_inputs(p, nearest), logits) < \
        runtime["deepstream_nvinfer"]
    # the emulated transform itself: the documented formula on Pillow's bilinear uint8 pixels, and symmetric
    # black bars for a picture of another aspect (maintain-aspect-ratio)
    np.testing.assert_allclose(nvinfer_inputs(pictures[0], bilinear), bilinear(pictures[0]), atol=1e-5)
    wide = nvinfer_inputs(Image.new("L", (32, 16), 255), bilinear)[0]
    black, white = (0 - 0.286 * 255) / 255 / 0.353, (255 - 0.286 * 255) / 255 / 0.353
    assert np.allclose(wide[:8], black, atol=1e-4) and np.allclose(wide[8:24], white, atol=1e-4)
    assert np.allclose(wide[24:], black, atol=1e-4)


def test_every_readme_step_runs_as_written(classic_bundle, tmp_path):
    """Each numbered command, run from a copy of the bundle: skdeploy steps as typed (a step needing classic
    TensorRT exits 1 with its one "not installed" line); the validate step also with the engine's ONNX in
    its place (no GPU here), with and without --data; the client step answers that it needs a server."""
    import shutil

    bundle = Path(shutil.copytree(classic_bundle, tmp_path / "bundle"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}

    def run(args):
        result = subprocess.run([sys.executable, *args], cwd=bundle, env=env, capture_output=True, text=True,
                                timeout=600)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, errors

    for number, step in enumerate(readme_steps(bundle), 1):
        args = shlex.split(step)
        if args[0] == "skdeploy" and args[1] == "build-engine":
            code, errors = run(["-m", "skdeploy", *args[1:]])
            assert code == 1 and len(errors) == 1 and "tensorrt backend is not installed" in errors[0], errors
            print(f"{number}. {step}\n   -> exit {code}: {errors[0]}")
        elif args[0] == "skdeploy" and args[1] == "validate":
            candidate = args.index("--candidate") + 1
            assert args[candidate] == "model.engine"
            for variant in (args, args[:args.index("--data")], [*args, "--data", str(FASHION_MNIST_DIR)]):
                variant = [*variant[:candidate], "model.onnx", *variant[candidate + 1:], "--json"]
                code, errors = run(["-m", "skdeploy", *variant[1:]])
                assert code == 0 and errors == [], errors
            print(f"{number}. {step}\n   -> with model.onnx for the engine, with --data samples.npz, without --data "
                  f"and with the whole Fashion-MNIST test folder: exit 0, validation passed")
        elif args[:2] == ["python", "triton/client.py"]:
            code, errors = run([*args[1:], "--url", "localhost:9"])
            assert code == 1 and len(errors) == 1 and errors[0].startswith("error: this needs "), errors
            print(f"{number}. {step}\n   -> exit {code}: {errors[0][:100]}")
        else:
            assert args[0] == "tritonserver" and (bundle / args[1].split("=", 1)[1]).is_dir()
            print(f"{number}. {step}\n   -> not run here (no tritonserver); its repository parses with Triton's "
                  f"schema (test above)")


def test_implicit_int8_bundles_carry_the_fp32_onnx_and_its_table_and_explicit_ones_no_table(workspace):
    """DLA calibrates implicitly: TensorRT reads the table beside the FP32 graph and ignores one beside Q/DQ."""
    from skdeploy.manifest import load_manifest

    bundle = workspace / "orin-int8"
    small = ("--int8", "--calib-images", "64", "--holdout-images", "100", "--limit", "100", "--max-batch", "4",
             "--max-top1-drop", "3", "--min-agreement", "0.95")
    result = run_cli("deploy", workspace / "demo.onnx", "--target", "jetson-orin", "--dla-core", "0", "--format",
                     "deepstream", *small, "-o", bundle, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    table = (bundle / "model.onnx.calib.table").read_text().splitlines()
    assert table[0].startswith("TRT-") and len(table) > 10
    ops = {node.op_type for node in onnx.load(bundle / "model.onnx").graph.node}
    assert "QuantizeLinear" not in ops and load_manifest(bundle / "model.onnx")["stages"][-1]["stage"] == "optimize"
    assert record["build_command"] == ("trtexec --onnx=model.onnx --int8 --fp16 --calib=model.onnx.calib.table "
                                       "--minShapes=input:4x1x32x32 --optShapes=input:4x1x32x32 "
                                       "--maxShapes=input:4x1x32x32 --useDLACore=0 --allowGPUFallback "
                                       "--saveEngine=model.engine")
    assert record["build_command"] in readme_steps(bundle)
    primary = (bundle / "deepstream" / "config_infer_primary_sknet-fmnist.txt").read_text()
    assert "int8-calib-file=../model.onnx.calib.table" in primary and "enable-dla=1" in primary
    softmax_ops = [node.op_type for node in onnx.load(bundle / "deepstream" / "model_softmax.onnx").graph.node]
    assert "QuantizeLinear" not in softmax_ops and softmax_ops[-1] == "Softmax"
    assert record["runtime"]["deepstream_nvinfer"] >= 0.95  # measured on the Q/DQ graph with a Softmax

    explicit = run_cli("deploy", workspace / "demo.onnx", "--target", "jetson-orin", "--format", "deepstream", *small,
                       "-o", bundle, "--force", "--json")
    assert explicit.exit_code == 0, explicit.stderr
    assert "calibrate" in json.loads(explicit.stdout)["reused"]
    assert not list(bundle.glob("*.calib.table")) and not (bundle / "model.onnx").exists()
    assert "int8-calib-file" not in (bundle / "deepstream" / "config_infer_primary_sknet-fmnist.txt").read_text()
    graph = onnx.load(bundle / "deepstream" / "model_softmax.onnx").graph
    assert "QuantizeLinear" in {node.op_type for node in graph.node}
