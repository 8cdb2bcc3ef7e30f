"""Serving configs from hand-written manifests, through the pure functions in skdeploy.serving: Triton's
dims and batching, DeepStream's scale and offsets, and the order of the labels. The end-to-end tests build
real bundles; these pin the numbers without an engine or an export."""
import re

import numpy as np
import pytest

from skdeploy.data import FASHION_MNIST_CLASSES, Preprocessing
from skdeploy.errors import UsageError
from skdeploy.models.registry import IMAGENET_MEAN, IMAGENET_STD, REGISTRY
from skdeploy.serving import class_labels, deepstream_config, triton_config
from skdeploy.serving.deepstream import deepstream_labels, nvinfer_preprocessing
from skdeploy.serving.triton import batching

DEMO = REGISTRY["sknet-fmnist"].preprocessing


def engine_manifest(batch=-1, profile=(1, 4, 8), layout="NCHW"):
    """An engine sidecar as far as Triton reads it: its I/O and its one optimization profile."""
    image = [batch, 1, 32, 32] if layout == "NCHW" else [batch, 32, 32, 1]
    io = [{"name": "input", "mode": "input", "dtype": "float32", "shape": image},
          {"name": "logits", "mode": "output", "dtype": "float32", "shape": [batch, 10]}]
    profiles = [] if batch > 0 else [{"input": {key: [size, *image[1:]] for key, size in
                                                zip(("min", "opt", "max"), profile, strict=True)}}]
    return {"engine": {"io": io, "profiles": profiles},
            "preprocessing": {**DEMO.to_dict(), "layout": layout}}


def onnx_manifest(batch="N"):
    return {"inputs": [{"name": "input", "dtype": "uint8", "shape": [batch, 32, 32, 1]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [batch, 10]}],
            "preprocessing": DEMO.in_graph_form("NHWC").to_dict(), "model": {"dataset": "fashion-mnist"}}


BLOCK = r'name: "(\w+)"\n    data_type: (\w+)\n(?:.*\n)*?    dims: \[ ([^\]]*) \]'


def blocks(config, kind):
    """[(name, data_type, dims)] of the input or output blocks of a config.pbtxt."""
    section = config.split(f"{kind} [", 1)[1].split("\n]", 1)[0]
    return [(name, data_type, [int(d) for d in dims.split(", ")])
            for name, data_type, dims in re.findall(BLOCK, section)]


def field(config, name):
    return re.search(rf"^\s*{name}: (.*)$", config, re.M).group(1)


def test_a_dynamic_engine_drops_the_batch_dim_and_batches_up_to_its_profile():
    config = triton_config(engine_manifest(profile=(1, 4, 8)), "demo")
    assert blocks(config, "input") == [("input", "TYPE_FP32", [1, 32, 32])]
    assert blocks(config, "output") == [("logits", "TYPE_FP32", [10])]
    assert field(config, "max_batch_size") == "8" and field(config, "preferred_batch_size") == "[ 4 ]"
    assert field(config, "platform") == '"tensorrt_plan"' and field(config, "format") == "FORMAT_NCHW"
    assert 'label_filename: "labels.txt"' in config.split("output [", 1)[1]


def test_a_fixed_batch_engine_keeps_every_dim_and_is_never_batched():
    config = triton_config(engine_manifest(batch=4), "demo")
    assert batching(engine_manifest(batch=4)) == (0, None)
    assert blocks(config, "input") == [("input", "TYPE_FP32", [4, 1, 32, 32])]
    assert blocks(config, "output") == [("logits", "TYPE_FP32", [4, 10])]
    assert field(config, "max_batch_size") == "0" and "dynamic_batching" not in config


def test_a_dynamic_onnx_batches_up_to_the_asked_size_in_its_own_layout():
    config = triton_config(onnx_manifest(), "raw", max_batch=16)
    assert blocks(config, "input") == [("input", "TYPE_UINT8", [32, 32, 1])]
    assert field(config, "max_batch_size") == "16" and field(config, "format") == "FORMAT_NHWC"
    assert field(config, "platform") == '"onnxruntime_onnx"'


# nvinfer resizes straight to the network size: DeepStream takes preprocessing that crops nothing
UNCROPPED_IMAGENET = Preprocessing(224, (224, 224), IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("preprocessing", [DEMO, Preprocessing(224, (224, 224), IMAGENET_MEAN, (0.25, 0.25, 0.25)),
                                           Preprocessing(56, (56, 56), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2),
                                                         channel_order="BGR", scale=1.0)])
def test_deepstream_scale_and_offsets_reproduce_the_preprocessing(preprocessing):
    """nvinfer computes net-scale-factor * (x - offsets[c]) on pixels 0..255; that must equal the manifest's
    (x * scale - mean[c]) / std on every pixel value."""
    settings = nvinfer_preprocessing(preprocessing)
    pixels = np.arange(256, dtype=np.float64).reshape(1, 1, 16, 16).repeat(preprocessing.channels, axis=1)
    np.testing.assert_allclose(settings.apply(pixels), preprocessing.normalized(pixels), rtol=1e-5, atol=1e-5)
    config = deepstream_config({"preprocessing": preprocessing.to_dict()}, "m.onnx", "m.engine", "labels.txt", "fp32")
    assert float(field(config.replace("=", ": "), "net-scale-factor")) == pytest.approx(settings.net_scale_factor)
    offsets = [float(v) for v in field(config.replace("=", ": "), "offsets").split(";")]
    assert offsets == pytest.approx([m / preprocessing.scale for m in preprocessing.mean])
    assert field(config.replace("=", ": "), "model-color-format") == {"RGB": "0", "BGR": "1", "GRAY": "2"}[
        preprocessing.channel_order]


def test_deepstream_refuses_a_per_channel_std_it_cannot_reproduce():
    assert nvinfer_preprocessing(UNCROPPED_IMAGENET).needs_raw_input
    with pytest.raises(UsageError, match="differs per channel"):
        deepstream_config({"preprocessing": UNCROPPED_IMAGENET.to_dict()}, "m.onnx", "m.engine", "l.txt", "fp32")


def test_labels_follow_the_class_indices_of_the_model():
    """Line i of labels.txt is what Triton and nvinfer print for output i: the dataset's order, never sorted."""
    labels = class_labels({"model": {"dataset": "fashion-mnist", "num_classes": 10}})
    assert labels == list(FASHION_MNIST_CLASSES) and labels != sorted(labels)
    assert labels[7] == "Sneaker" and labels[9] == "Ankle boot"
    assert deepstream_labels(labels).rstrip("\n").split(";") == labels
    assert class_labels({"model": {"num_classes": 12}}) == [str(i) for i in range(12)]  # "10" after "9"
    with pytest.raises(UsageError, match="neither a dataset nor a class count"):
        class_labels({"model": {}})
