"""Preprocessing inside the graph (`--raw-input`): on the shipped demo model and real Fashion-MNIST
test images, the raw-pixel graph equals "preprocess in numpy, then the normalized graph"; validation, classify()
and INT8 calibration feed it raw pixels; TensorRT-RTX builds it."""
import json

import numpy as np
import onnx
import pytest
from PIL import Image

from skdeploy.data import load_fashion_mnist
from tests.support.helpers import run_cli

DEMO_MEAN, DEMO_STD = 0.286, 0.353  # the demo model's registry entry (README "The demo model")


def pictures_32(count):
    """Fashion-MNIST test pictures resized 28 -> 32 with Pillow's bilinear filter, as uint8 (N, 32, 32)."""
    pixels, labels = load_fashion_mnist("test")
    return np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BILINEAR)) for p in pixels[:count]]), \
        labels[:count]


def run_onnx(path, array):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: array})[0]


@pytest.fixture(scope="module")
def raw_models(demo_artifacts, tmp_path_factory):
    """The demo ONNX with the raw input added by `optimize`: NCHW uint8 and NHWC float32."""
    folder = tmp_path_factory.mktemp("raw")
    made = {}
    for layout, dtype in (("nchw", "uint8"), ("nhwc", "float32")):
        path = folder / f"demo.{layout}.onnx"
        result = run_cli("optimize", demo_artifacts / "demo.onnx", "-o", path, "--no-fold-bn", "--no-sk-rewrite",
                         "--raw-input", "--layout", layout, "--raw-dtype", dtype, "--json")
        assert result.exit_code == 0, result.stderr
        made[layout] = path
    return made


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_raw_graph_equals_numpy_preprocessing_then_normalized_graph(raw_models, demo_artifacts, layout):
    pictures, _ = pictures_32(64)
    normalized = ((pictures.astype(np.float64) / 255 - DEMO_MEAN) / DEMO_STD).astype(np.float32)[:, None]
    expected = run_onnx(demo_artifacts / "demo.onnx", normalized)
    raw = pictures[:, None] if layout == "nchw" else pictures[..., None].astype(np.float32)
    got = run_onnx(raw_models[layout], raw)
    assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) < 1e-6
    model = onnx.load(raw_models[layout])
    ops = [node.op_type for node in model.graph.node[:3]]
    assert ops == (["Cast", "Sub", "Mul"] if layout == "nchw" else ["Transpose", "Sub", "Mul"])
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == (["batch", 1, 32, 32] if layout == "nchw" else ["batch", 32, 32, 1])
    manifest = json.loads((raw_models[layout].parent / f"{raw_models[layout].name}.json").read_text())
    assert manifest["preprocessing"]["in_graph"] is True and manifest["preprocessing"]["layout"] == layout.upper()
    assert manifest["stages"][-1]["raw_input"]["max_rel"] < 1e-6


def test_classify_feeds_raw_pixels_and_validate_feeds_pytorch_normalized_inputs(raw_models, demo_artifacts):
    from skdeploy import classify, load_runner

    images = [Image.open(path) for path in sorted((demo_artifacts / "images").iterdir())]
    with load_runner(raw_models["nchw"]) as raw, load_runner(demo_artifacts / "demo.onnx") as normalized:
        assert raw.input_specs()[0].dtype == np.uint8
        got, expected = classify(raw, images, top_k=2), classify(normalized, images, top_k=2)
    assert [[name for name, _ in row] for row in got] == [[name for name, _ in row] for row in expected]
    assert [p for row in got for _, p in row] == pytest.approx([p for row in expected for _, p in row], rel=1e-5)
    result = run_cli("validate", "--candidate", raw_models["nhwc"], "--limit", "200", "--json")
    assert result.exit_code == 0, result.stderr
    candidate = json.loads(result.stdout)["candidates"][0]
    assert candidate["metrics"]["agreement"] == 1.0 and candidate["metrics"]["max_rel"] < 1e-5


def first_conv_input_scale(path):
    """The scale of the Q/DQ in front of the first Conv (what INT8 quantizes the normalized pixels with)."""
    from onnx import numpy_helper

    model = onnx.load(path)
    producer = {out: node for node in model.graph.node for out in node.output}
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    dequantize = producer[conv.input[0]]
    assert dequantize.op_type == "DequantizeLinear"
    return float(inits[dequantize.input[1]])


def test_int8_calibration_of_the_raw_graph_keeps_the_input_range_and_agreement(raw_models, demo_artifacts, tmp_path):
    outputs = {}
    for name, source in (("normalized", demo_artifacts / "demo.onnx"), ("raw", raw_models["nchw"])):
        outputs[name] = tmp_path / f"{name}.int8.onnx"
        result = run_cli("calibrate", source, "--int8", "-o", outputs[name], "--calib-images", "64",
                         "--holdout-images", "0", "--json")
        assert result.exit_code == 0, result.stderr
    # the normalized pixels span (0 - mean)/std .. (1 - mean)/std; max over 64 images reaches the brightest
    # pixel 255 -> (1 - 0.286)/0.353 = 2.0227, so the symmetric INT8 scale is 2.0227/127
    assert first_conv_input_scale(outputs["raw"]) == pytest.approx((1 - DEMO_MEAN) / DEMO_STD / 127, rel=1e-3)
    assert first_conv_input_scale(outputs["raw"]) == pytest.approx(first_conv_input_scale(outputs["normalized"]),
                                                                   rel=1e-6)
    result = run_cli("validate", "--candidate", outputs["normalized"], "--candidate", outputs["raw"],
                     "--limit", "500", "--min-agreement", "0", "--max-top1-drop", "5", "--json")
    assert result.exit_code == 0, result.stderr
    normalized, raw = (c["metrics"]["agreement"] for c in json.loads(result.stdout)["candidates"])
    # a uint8 raw input holds the resized (28 -> 32) pixels rounded to whole levels, which the normalized
    # graph gets unrounded: allow one sample in 500 (10,000 images: 99.73% raw vs 99.75% normalized)
    assert raw >= normalized - 0.002 and normalized > 0.97


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_tensorrt_rtx_builds_the_raw_input_graph(raw_models, tmp_path, layout):
    pytest.importorskip("tensorrt_rtx")
    engine = tmp_path / f"raw.{layout}.engine"
    result = run_cli("build-engine", raw_models[layout], "--backend", "tensorrt-rtx", "--compute-capability", "8.9",
                     "--max-batch", "4", "-o", engine, "--json")
    assert result.exit_code == 0, result.stderr
    sidecar = json.loads((tmp_path / f"raw.{layout}.engine.json").read_text())
    image = next(io for io in sidecar["engine"]["io"] if io["mode"] == "input")
    assert image["dtype"] == ("uint8" if layout == "nchw" else "float32")
    assert image["shape"] == ([-1, 1, 32, 32] if layout == "nchw" else [-1, 32, 32, 1])
    assert sidecar["preprocessing"]["in_graph"] is True


def test_export_raw_input_with_a_fixed_batch_checks_the_raw_graph_one_batch_at_a_time(tmp_path):
    """A batch-1 export has no room for the check's 8 images in one run; they go through one by one."""
    path = tmp_path / "demo.raw.onnx"
    result = run_cli("export", "--raw-input", "--layout", "nhwc", "-o", path, "--json")
    assert result.exit_code == 0, result.stderr
    dims = [d.dim_value or d.dim_param for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 32, 32, 1]
    check = json.loads(result.stdout)["raw_input"]
    assert check["images"] == 8 and check["max_rel"] < 1e-6
