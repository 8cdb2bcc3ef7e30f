"""Runtime configs: the Triton config.pbtxt parsed with Triton's own schema and checked field by
field against a real TensorRT-RTX engine's sidecar; the DeepStream nvinfer config's preprocessing, applied as
DeepStream documents it (y = net-scale-factor * (x - offsets)), against the manifest's preprocessing."""
import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from skdeploy.data import Preprocessing
from skdeploy.errors import UsageError
from skdeploy.serving import deepstream_config, triton_config, write_triton_repository
from skdeploy.serving.deepstream import deepstream_labels
from tests.support.triton_schema import model_config_pb2, parse_pbtxt


def test_triton_repository_for_the_engine_matches_its_sidecar_field_by_field(demo_artifacts, tmp_path):
    sidecar = json.loads((demo_artifacts / "demo.engine.json").read_text())
    labels = [f"class {i}" for i in range(10)]
    folder = write_triton_repository(tmp_path / "model_repository", "sknet", demo_artifacts / "demo.engine", sidecar,
                                     labels)
    schema, config = parse_pbtxt((folder / "config.pbtxt").read_text())
    engine = sidecar["engine"]
    (image,) = [t for t in engine["io"] if t["mode"] == "input"]
    (logits,) = [t for t in engine["io"] if t["mode"] == "output"]
    profile = engine["profiles"][0][image["name"]]
    assert config.name == "sknet" and config.platform == "tensorrt_plan"
    assert config.max_batch_size == profile["max"][0] == 8  # the fixture builds with max batch 8
    assert len(config.input) == 1 and len(config.output) == 1
    assert config.input[0].name == image["name"] and list(config.input[0].dims) == image["shape"][1:] == [1, 32, 32]
    assert config.input[0].data_type == schema.TYPE_FP32 and image["dtype"] == "float32"
    assert config.input[0].format == schema.ModelInput.FORMAT_NCHW
    assert config.output[0].name == logits["name"] and list(config.output[0].dims) == logits["shape"][1:] == [10]
    assert config.output[0].data_type == schema.TYPE_FP32 and config.output[0].label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [profile["opt"][0]]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, schema.ModelInstanceGroup.KIND_GPU)]
    assert (folder / "1" / "model.plan").read_bytes() == (demo_artifacts / "demo.engine").read_bytes()
    assert (folder / "labels.txt").read_text().splitlines() == labels
    client = (tmp_path / "client.py").read_text()
    compile(client, "client.py", "exec")
    assert "MODEL, INPUT, OUTPUT = 'sknet', 'input', 'logits'" in client


def test_triton_config_for_a_raw_input_onnx_and_for_a_fixed_batch():
    schema = model_config_pb2()
    manifest = {"inputs": [{"name": "pixels", "shape": ["batch", 32, 32, 3], "dtype": "uint8"}],
                "outputs": [{"name": "logits", "shape": ["batch", 5], "dtype": "float32"}],
                "preprocessing": {"layout": "NHWC"}}
    _, config = parse_pbtxt(triton_config(manifest, "raw", max_batch=16))
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 16
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and dict(accelerator.parameters)["precision_mode"] == "FP32"
    assert config.input[0].data_type == schema.TYPE_UINT8 and list(config.input[0].dims) == [32, 32, 3]
    assert config.input[0].format == schema.ModelInput.FORMAT_NHWC
    fixed = {"inputs": [{"name": "input", "shape": [4, 1, 8, 8], "dtype": "float32"}],
             "outputs": [{"name": "logits", "shape": [4, 3], "dtype": "float16"}], "preprocessing": None}
    _, config = parse_pbtxt(triton_config(fixed, "fixed"))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 1, 8, 8]
    assert config.output[0].data_type == schema.TYPE_FP16 and not config.HasField("dynamic_batching")


@pytest.mark.parametrize("name", ["../x", "/abs", "a\"b", "a b", ".", "..", ""])
def test_a_name_triton_cannot_hold_is_refused_before_anything_is_written(name, tmp_path):
    manifest = {"inputs": [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}],
                "outputs": [{"name": "logits", "shape": ["batch", 3], "dtype": "float32"}],
                "preprocessing": {"resize": 8, "crop": [8, 8], "mean": [0.5], "std": [0.5], "channel_order": "GRAY",
                                  "scale": 1 / 255}}
    with pytest.raises(UsageError, match="is not a Triton model name"):
        write_triton_repository(tmp_path / "repo", name, None, manifest, ["a", "b", "c"], kind="engine")
    assert list(tmp_path.iterdir()) == []
    _, config = parse_pbtxt(triton_config(manifest, "ok_name-1.2"))
    assert config.name == "ok_name-1.2"


def written_values(text):
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return float(values["net-scale-factor"]), [float(v) for v in values["offsets"].split(";")], values


def test_deepstream_formula_on_raw_pixels_reproduces_the_demo_preprocessing(demo_artifacts):
    manifest = json.loads((demo_artifacts / "demo.onnx.json").read_text())
    text = deepstream_config(manifest, "demo.onnx", "demo.engine", "labels.txt", "int8", calib_file="demo.calib.table",
                             batch_size=4, process_mode="secondary", gie_id=3, operate_on_gie_id=1, threshold=0.2)
    assert "scaling-filter=1" in text and "maintain-aspect-ratio=1" in text  # bilinear, aspect kept as trained
    nearest = dict(manifest, preprocessing=dict(manifest["preprocessing"], interpolation="nearest"))
    assert "scaling-filter=0" in deepstream_config(nearest, "a.onnx", "a.engine", "l.txt", "fp32")
    for changed, reason in (({"interpolation": "bicubic"}, "no bicubic scaling filter"),
                            ({"resize": 36}, "centre-crops 32x32 after resizing to 36")):
        with pytest.raises(UsageError, match=reason):
            deepstream_config(dict(manifest, preprocessing=dict(manifest["preprocessing"], **changed)), "a.onnx",
                              "a.engine", "l.txt", "fp32")
    scale_factor, offsets, values = written_values(text)
    pixels = np.arange(256, dtype=np.float64).reshape(1, 1, 16, 16)  # every uint8 value once
    deepstream = scale_factor * (pixels - np.asarray(offsets).reshape(1, -1, 1, 1))  # DeepStream's documented formula
    expected = (pixels / 255 - 0.286) / 0.353  # the demo model's registry preprocessing
    assert np.max(np.abs(deepstream - expected)) / np.max(np.abs(expected)) < 1e-6
    assert values["model-color-format"] == "2" and values["infer-dims"] == "1;32;32"
    assert values["network-mode"] == "1" and values["int8-calib-file"] == "demo.calib.table"
    assert (values["network-type"], values["process-mode"], values["gie-unique-id"], values["operate-on-gie-id"],
            values["batch-size"], values["classifier-threshold"]) == ("1", "2", "3", "1", "4", "0.2")
    assert values["onnx-file"] == "demo.onnx" and values["model-engine-file"] == "demo.engine"
    assert values["network-input-order"] == "0" and "enable-dla" not in values
    dla = written_values(deepstream_config(manifest, "a.onnx", "a.engine", "l.txt", "fp16", dla_core=1))[2]
    assert (dla["enable-dla"], dla["use-dla-core"], dla["network-mode"]) == ("1", "1", "2")
    assert deepstream_labels(["a", "b c"]) == "a;b c\n"


def identity_graph(channels=3, size=4):
    """input (N, C, H, W) float -> output: the same values; the raw-input pass puts normalization in front."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", channels, size, size])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_per_channel_std_needs_the_raw_input_graph_and_then_deepstream_passes_pixels_through():
    from skdeploy.graph.preprocess import embed_preprocessing
    from skdeploy.onnx.run import run_model

    imagenet = Preprocessing(resize=4, crop=(4, 4), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             channel_order="BGR")
    manifest = {"preprocessing": imagenet.to_dict(), "outputs": [{"name": "output"}]}
    with pytest.raises(UsageError, match="differs per channel"):
        deepstream_config(manifest, "m.onnx", "m.engine", "l.txt", "fp32")
    model, raw = embed_preprocessing(identity_graph(), imagenet, "NCHW", "float32")
    text = deepstream_config({"preprocessing": raw.to_dict(), "outputs": []}, "m.onnx", "m.engine", "l.txt", "fp32")
    scale_factor, offsets, values = written_values(text)
    assert (scale_factor, offsets, values["model-color-format"]) == (1.0, [0.0, 0.0, 0.0], "1")
    assert "the graph normalizes" in text
    pixels = np.random.default_rng(1).integers(0, 256, (2, 3, 4, 4)).astype(np.float64)
    fed = scale_factor * (pixels - np.asarray(offsets).reshape(1, -1, 1, 1))  # what nvinfer hands the network
    (got,) = run_model(model, [{"input": fed.astype(np.float32)}])
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    expected = (pixels / 255 - mean) / std
    assert np.max(np.abs(got["output"] - expected)) / np.max(np.abs(expected)) < 1e-6
    uint8_raw = embed_preprocessing(identity_graph(), imagenet, "NCHW", "uint8")[1]
    with pytest.raises(UsageError, match="raw_dtype=float32"):
        deepstream_config({"preprocessing": uint8_raw.to_dict()}, "m.onnx", "m.engine", "l.txt", "fp32")
