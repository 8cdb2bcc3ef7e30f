"""Validation as deployed: the model a runtime serves, run on pictures prepared the way that runtime
prepares them, against the FP32 reference's top-1.

Validation proper feeds every candidate the reference preprocessing (Pillow, float pixels). A runtime does
its own: DeepStream's nvinfer scales the frame to the network size with its own filter on uint8 pixels,
and a Triton client runs whatever client.py does. Each gets its own figure here:
- DeepStream: `nvinfer_inputs`, an emulation of nvinfer's transform (Pillow's NEAREST and BILINEAR stand in
  for its scaling filters; a GPU's scaler rounds its own way, which no CPU run here can measure);
- Triton: the bundle's client.py imported from its file, and its `prepare_image` called as is.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Preprocessing
from .deepstream import SCALING_FILTERS, nvinfer_preprocessing

if TYPE_CHECKING:
    from types import ModuleType

    from PIL import Image

    from ..fileio import PathLike


def nvinfer_inputs(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """One PIL picture as nvinfer hands it to the network: converted to the colour format, scaled to the
    network size keeping its aspect (maintain-aspect-ratio, symmetric padding with black) with the
    configured filter, uint8 pixels, then y = net-scale-factor * (x - offsets[c]) in float32."""
    from PIL import Image

    settings = nvinfer_preprocessing(preprocessing)
    mode = "L" if preprocessing.channel_order == "GRAY" else "RGB"
    image = image.convert(mode)
    height, width = preprocessing.crop
    ratio = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    if size != image.size:
        image = image.resize(size, {0: Image.NEAREST, 1: Image.BILINEAR}[SCALING_FILTERS[preprocessing.interpolation]])
    canvas = Image.new(mode, (width, height))
    canvas.paste(image, ((width - size[0]) // 2, (height - size[1]) // 2))
    pixels = np.asarray(canvas, np.uint8).astype(np.float32)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if preprocessing.channel_order == "BGR":
        pixels = pixels[::-1]
    offsets = np.asarray(settings.offsets, np.float32).reshape(-1, 1, 1)
    network = np.float32(settings.net_scale_factor) * (pixels - offsets)
    return np.ascontiguousarray(network.transpose(1, 2, 0) if preprocessing.layout == "NHWC" else network,
                                dtype=np.float32)


def client_module(path: PathLike) -> ModuleType:
    """The bundle's client.py as a module (its tritonclient import happens only in main())."""
    spec = importlib.util.spec_from_file_location("bundle_triton_client", Path(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runtime_agreement(model: PathLike, pictures: Sequence, prepare: Callable[[Any], np.ndarray],
                      reference_logits: np.ndarray, batch: int = 256) -> float:
    """Fraction of `pictures` (PIL images) on which `model` (an ONNX or engine path), fed `prepare(picture)`,
    picks the FP32 reference's top-1 class."""
    from ..runners import load_runner

    expected = np.asarray(reference_logits).argmax(axis=1)
    hits = 0
    with load_runner(model) as runner:
        for start in range(0, len(pictures), batch):
            inputs = np.stack([prepare(picture) for picture in pictures[start:start + batch]])
            outputs = runner.run_batched(inputs, batch)
            hits += int((outputs.argmax(axis=1) == expected[start:start + len(inputs)]).sum())
    return hits / len(pictures)
