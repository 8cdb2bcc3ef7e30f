"""Preprocessing inside the graph (`--raw-input`): the model takes raw pixels and normalizes them itself.

    model, raw = embed_preprocessing(model, Preprocessing.from_dict(manifest["preprocessing"]), "NHWC")
    raw.in_graph, raw.layout       # True, "NHWC": what the manifest records from now on

Before the first layer come Cast (uint8 -> float) / Transpose (NHWC -> NCHW) / Sub (mean / scale) /
Mul (scale / std), so the graph computes (pixels * scale - mean) / std, the manifest's preprocessing, per
channel. Resize and crop stay outside (they depend on the picture's size). The graph input keeps its
name; the normalized tensor that the first layer reads is NORMALIZED_INPUT, which calibration treats
like a model input (its Q/DQ range is the full range the pixels reach).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..compare import compare_outputs, merge_comparisons
from ..data import Preprocessing, load_fashion_mnist
from ..errors import SkdeployError, UsageError
from ..log import log
from ..onnx.io import graph_inputs
from ..onnx.run import run_model

if TYPE_CHECKING:
    from onnx import ModelProto

NORMALIZED_INPUT = "input_normalized"
TOLERANCE = 1e-6  # relative: the raw graph against numpy preprocessing plus the normalized graph
CHECK_IMAGES = 8


def embed_preprocessing(model: ModelProto, preprocessing: Preprocessing, layout: str = "NCHW",
                        raw_dtype: str = "uint8") -> tuple:
    """Put `preprocessing`'s scale, mean and std into `model` (changed in place) in front of its one image
    input; returns (model, the Preprocessing the manifest now records: in_graph, `layout`, `raw_dtype`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if preprocessing.in_graph:
        raise UsageError("the model already takes raw pixels (its manifest records preprocessing in the graph)")
    raw = preprocessing.in_graph_form(layout, raw_dtype)
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise UsageError(f"raw input needs a model with one image input; this one has {len(inputs)}")
    value = inputs[0]
    tensor_type = value.type.tensor_type
    float_type = tensor_type.elem_type
    if float_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise UsageError(f"input {value.name!r} is not a float tensor; raw input goes in front of a normalized input")
    dims = list(tensor_type.shape.dim)
    expected = (preprocessing.channels, *preprocessing.crop)
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
    if len(dims) != 4 or any(f is not None and f != e for f, e in zip(fixed, expected, strict=True)):
        raise UsageError(f"input {value.name!r} has shape {['?' if f is None else f for f in fixed]} per sample; "
                         f"the manifest's preprocessing makes {list(expected)}")
    for node in model.graph.node:
        node.input[:] = [NORMALIZED_INPUT if name == value.name else name for name in node.input]
    numpy_float = np.float16 if float_type == TensorProto.FLOAT16 else np.float32
    offset = (np.asarray(preprocessing.mean, np.float64) / preprocessing.scale).reshape(1, -1, 1, 1)
    factor = (preprocessing.scale / np.asarray(preprocessing.std, np.float64)).reshape(1, -1, 1, 1)
    model.graph.initializer.extend([numpy_helper.from_array(offset.astype(numpy_float), "input_offset"),
                                    numpy_helper.from_array(factor.astype(numpy_float), "input_factor")])
    nodes, current = [], value.name
    raw_type = TensorProto.UINT8 if raw_dtype == "uint8" else TensorProto.FLOAT
    if raw_type != float_type:
        nodes.append(helper.make_node("Cast", [current], ["input_pixels"], name="preprocess_cast", to=float_type))
        current = "input_pixels"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["input_nchw"], name="preprocess_to_nchw",
                                      perm=[0, 3, 1, 2]))
        current = "input_nchw"
    nodes.append(helper.make_node("Sub", [current, "input_offset"], ["input_centred"], name="preprocess_mean"))
    nodes.append(helper.make_node("Mul", ["input_centred", "input_factor"], [NORMALIZED_INPUT], name="preprocess_std"))
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + existing)
    tensor_type.elem_type = raw_type
    if layout == "NHWC":
        batch = onnx.TensorShapeProto.Dimension()
        batch.CopyFrom(dims[0])
        tensor_type.shape.ClearField("dim")
        tensor_type.shape.dim.append(batch)
        for size in (*preprocessing.crop, preprocessing.channels):
            tensor_type.shape.dim.add().dim_value = size
    onnx.checker.check_model(model)
    return model, raw


def check_pixels(raw: Preprocessing, dataset: str | None = None, count: int = CHECK_IMAGES) -> tuple:
    """(raw model inputs, what they are): real Fashion-MNIST test images for a model trained on them, else
    seeded random pixels 0-255."""
    if dataset == "fashion-mnist":
        pictures, _ = load_fashion_mnist("test")
        return raw.arrays(pictures[:count]), "real"
    pixels = np.random.default_rng(0).integers(0, 256, (count, *raw.input_shape))
    return pixels.astype(raw.raw_dtype), "random"


def raw_input_parity(raw_model: ModelProto, normalized_model: ModelProto, raw: Preprocessing,
                     pixels: np.ndarray) -> dict:
    """The raw-input graph on `pixels` against numpy preprocessing plus the normalized graph (worst output),
    fed in batches the graph accepts: a fixed batch dimension of B takes the images B at a time."""
    raw_name, normalized_name = graph_inputs(raw_model)[0].name, graph_inputs(normalized_model)[0].name
    step = fixed_batch(normalized_model) or len(pixels)
    count = max(step, len(pixels) // step * step)  # whole batches; a batch larger than `pixels` repeats them
    pixels = np.take(pixels, np.arange(count) % len(pixels), axis=0)
    normalized = raw.reference_inputs(pixels)
    if graph_inputs(normalized_model)[0].type.tensor_type.elem_type == 10:  # FLOAT16 input
        normalized = normalized.astype(np.float16)
    starts = range(0, len(pixels), step)
    got = run_model(raw_model, [{raw_name: pixels[i:i + step]} for i in starts])
    expected = run_model(normalized_model, [{normalized_name: normalized[i:i + step]} for i in starts])
    worst = merge_comparisons([compare_outputs(want[name], have[name])
                               for want, have in zip(expected, got, strict=True) for name in want])
    return dict(worst, tolerance=TOLERANCE, passed=worst["max_rel"] <= TOLERANCE, images=len(pixels))


def fixed_batch(model: ModelProto) -> int | None:
    """The batch size `model`'s first input is fixed to, or None where the batch dimension is symbolic."""
    batch = graph_inputs(model)[0].type.tensor_type.shape.dim[0]
    return batch.dim_value if batch.HasField("dim_value") and batch.dim_value > 0 else None


def with_raw_input(model: ModelProto, preprocessing: Preprocessing, layout: str, raw_dtype: str,
                   dataset: str | None = None) -> tuple:
    """(raw-input copy of `model`, its Preprocessing, its parity record) after checking it against `model`
    with numpy preprocessing; an SkdeployError, with nothing written, when they differ."""
    import onnx

    raw_model = onnx.ModelProto()
    raw_model.CopyFrom(model)
    raw_model, raw = embed_preprocessing(raw_model, preprocessing, layout, raw_dtype)
    pixels, kind = check_pixels(raw, dataset)
    parity = dict(raw_input_parity(raw_model, model, raw, pixels), inputs=kind)
    log.info(f"raw input ({layout}, {raw_dtype}) vs numpy preprocessing on {len(pixels)} {kind} images: "
             f"max rel {parity['max_rel']:.3g} (tolerance {TOLERANCE:g})")
    if not parity["passed"]:
        raise SkdeployError(f"the raw-input graph differs from numpy preprocessing plus the normalized graph: max "
                            f"relative error {parity['max_rel']:.3g} > {TOLERANCE:g}; nothing written")
    return raw_model, raw, parity
