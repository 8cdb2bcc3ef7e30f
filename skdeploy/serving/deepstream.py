"""A DeepStream Gst-nvinfer config (config_infer_*.txt) for a classifier, as primary or secondary GIE.

nvinfer prepares each frame itself: it scales the frame to the network size, converts it to the
model's colour format and computes y = net-scale-factor * (x - offsets[c]) on pixels x in 0..255, with
ONE scalar factor. It resizes the whole frame (or object) straight to the network size with
`scaling-filter` (0 nearest, 1 bilinear), padding instead of stretching with `maintain-aspect-ratio`;
it cannot crop after the resize. The manifest's preprocessing is y = (x * scale - mean[c]) / std[c], which is exactly
(scale / std) * (x - mean[c] / scale) when std is the same for every channel. When it is not, no nvinfer
setting reproduces it: the model must take raw pixels (the raw-input graph, float32) and nvinfer passes
them through with net-scale-factor 1 and offsets 0. Key names and meanings: NVIDIA's Gst-nvinfer
documentation (docs/deploy.md cites it).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import Preprocessing
from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

    from ..fileio import PathLike

NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # network-mode
COLOR_FORMATS = {"RGB": 0, "BGR": 1, "GRAY": 2}  # model-color-format
INPUT_ORDERS = {"NCHW": 0, "NHWC": 1}  # network-input-order
PROCESS_MODES = {"primary": 1, "secondary": 2}  # process-mode
CLASSIFIER = 1  # network-type
SCALING_FILTERS = {"nearest": 0, "bilinear": 1}  # scaling-filter (NvBufSurfTransform_Inter); bicubic has no twin
# classifier-threshold: nvinfer's classifier reads the output as probabilities (the graph it runs ends in a
# Softmax) and attaches a label only above this; 0.5 keeps the labels of confident frames only
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class DeepStreamPreprocessing:
    """What nvinfer must compute for the model: y = net_scale_factor * (x - offsets[c])."""

    net_scale_factor: float
    offsets: tuple
    color_format: int
    needs_raw_input: bool  # per-channel std: only a raw-input graph (scale 1, offsets 0) is exact

    def apply(self, pixels: ArrayLike) -> np.ndarray:
        """nvinfer's formula on pixels (N, C, H, W), as DeepStream documents it."""
        import numpy as np

        offsets = np.asarray(self.offsets, np.float64).reshape(1, -1, 1, 1)
        return self.net_scale_factor * (np.asarray(pixels, np.float64) - offsets)


def nvinfer_preprocessing(preprocessing: Preprocessing) -> DeepStreamPreprocessing:
    """The nvinfer settings that reproduce `preprocessing` (or pass raw pixels to a raw-input graph)."""
    color = COLOR_FORMATS[preprocessing.channel_order]
    if preprocessing.in_graph:
        return DeepStreamPreprocessing(1.0, (0.0,) * preprocessing.channels, color, False)
    stds = set(preprocessing.std)
    if len(stds) > 1:
        return DeepStreamPreprocessing(1.0, (0.0,) * preprocessing.channels, color, True)
    std = stds.pop()
    mean = tuple(m / preprocessing.scale for m in preprocessing.mean)
    return DeepStreamPreprocessing(preprocessing.scale / std, mean, color, False)


def check_nvinfer_can_prepare(preprocessing: Preprocessing) -> None:
    """UsageError when nvinfer's transform (resize to the network size, no crop) cannot give the model its
    inputs: a centre crop smaller than the resize, or a filter nvinfer has no setting for."""
    height, width = preprocessing.crop
    if (height, width) != (preprocessing.resize, preprocessing.resize):
        raise UsageError(f"the model's preprocessing centre-crops {height}x{width} after resizing to "
                         f"{preprocessing.resize}, which nvinfer cannot do (it resizes straight to the network "
                         "size); `formats=deepstream` needs a crop equal to the resize")
    if preprocessing.interpolation not in SCALING_FILTERS:
        raise UsageError(f"nvinfer has no {preprocessing.interpolation} scaling filter (only nearest and "
                         "bilinear); `formats=deepstream` needs one of those")


def deepstream_config(manifest: dict, onnx_file: str, engine_file: str, labels_file: str, precision: str,
                      calib_file: str | None = None, batch_size: int = 1, process_mode: str = "primary",
                      gie_id: int = 1,
                      operate_on_gie_id: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                      dla_core: int | None = None) -> str:
    """The [property] section of a config_infer_*.txt for the classifier `manifest` describes (the ONNX the
    engine is built from, ending in a Softmax, with the preprocessing nvinfer feeds it)."""
    preprocessing = Preprocessing.from_dict(manifest["preprocessing"] or {})
    check_nvinfer_can_prepare(preprocessing)
    settings = nvinfer_preprocessing(preprocessing)
    if settings.needs_raw_input:
        raise UsageError(f"std {list(preprocessing.std)} differs per channel, which nvinfer's one scale factor "
                         "cannot reproduce; deploy the raw-input graph (`raw_input`, float32) for DeepStream")
    if preprocessing.in_graph and preprocessing.raw_dtype != "float32":
        raise UsageError("nvinfer feeds the network float pixels; the raw-input graph for DeepStream needs "
                         "`raw_dtype=float32`")
    if process_mode not in PROCESS_MODES:
        raise UsageError(f"the GIE process mode must be primary or secondary, got {process_mode!r}")
    channels, (height, width) = preprocessing.channels, preprocessing.crop
    lines = ["[property]", "gpu-id=0"]
    if preprocessing.in_graph:
        lines.append("# the graph normalizes (preprocessing in the ONNX): nvinfer passes raw pixels 0..255")
    lines += [
        f"net-scale-factor={settings.net_scale_factor!r}",
        "offsets=" + ";".join(repr(offset) for offset in settings.offsets),
        f"model-color-format={settings.color_format}",
        f"scaling-filter={SCALING_FILTERS[preprocessing.interpolation]}",
        "maintain-aspect-ratio=1",  # the model's policy keeps the aspect (shorter side); nvinfer pads the rest
        "symmetric-padding=1",
        f"onnx-file={onnx_file}",
        f"model-engine-file={engine_file}",
        f"labelfile-path={labels_file}",
    ]
    if precision == "int8" and calib_file:
        lines.append(f"int8-calib-file={calib_file}")
    lines += [
        f"batch-size={batch_size}",
        f"infer-dims={channels};{height};{width}",
        f"network-input-order={INPUT_ORDERS[preprocessing.layout]}",
        f"network-mode={NETWORK_MODES[precision]}",
        f"network-type={CLASSIFIER}",
        f"process-mode={PROCESS_MODES[process_mode]}",
        f"gie-unique-id={gie_id}",
        f"classifier-threshold={threshold!r}",
    ]
    if process_mode == "secondary" and operate_on_gie_id is not None:
        lines.append(f"operate-on-gie-id={operate_on_gie_id}")
    if dla_core is not None:
        lines += ["enable-dla=1", f"use-dla-core={dla_core}"]
    output = next(iter(manifest.get("outputs") or []), None)
    if output:
        lines.append(f"output-blob-names={output['name']}")
    return "\n".join(lines) + "\n"


def deepstream_labels(labels: Iterable[str]) -> str:
    """nvinfer's classifier label file: the labels of one output on one line, separated by ';'."""
    return ";".join(labels) + "\n"


def softmax_onnx(onnx_path: PathLike, output: PathLike) -> Path:
    """`onnx_path` with a Softmax over its first output's classes (output `probabilities`), saved to `output`
    with its manifest: nvinfer's classifier compares the output with `classifier-threshold` as a probability."""
    import json

    import onnx
    from onnx import helper

    from ..manifest import add_stage, load_manifest, write_manifest

    model = onnx.load(str(onnx_path))
    logits = model.graph.output[0]
    probabilities = helper.make_tensor_value_info("probabilities", logits.type.tensor_type.elem_type, None)
    probabilities.type.CopyFrom(logits.type)
    model.graph.node.append(helper.make_node("Softmax", [logits.name], ["probabilities"], axis=-1,
                                             name="nvinfer_probabilities"))
    model.graph.output.remove(logits)
    model.graph.output.insert(0, probabilities)
    onnx.checker.check_model(model)
    output = Path(output)
    onnx.save(model, str(output))
    manifest = json.loads(json.dumps(load_manifest(onnx_path)))
    if manifest.get("outputs"):
        manifest["outputs"][0]["name"] = "probabilities"
    add_stage(manifest, "softmax", {"source": {"file": Path(onnx_path).name, "sha256": manifest["artifact"]["sha256"]},
                                    "why": "nvinfer reads a classifier's output as probabilities"})
    write_manifest(output, manifest, "onnx")
    return output
