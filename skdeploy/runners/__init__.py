"""Runners: one interface for PyTorch, onnxruntime and TensorRT (Polygraphy style).

    from skdeploy import load_runner, classify
    with load_runner("engines/demo.engine") as runner:    # .onnx -> onnxruntime, a model name -> PyTorch
        print(classify(runner, [Image.open("shoe.png")]))  # [[("Sneaker", 0.97)]]

Runner classes import their backend (torch, onnxruntime, tensorrt) only when used.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Runner, TensorSpec

if TYPE_CHECKING:
    from ..data import Preprocessing
    from ..fileio import PathLike

_LAZY = {"OnnxRuntimeRunner": ".onnxrt", "TensorRTRunner": ".trt", "TorchRunner": ".torch_runner"}
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

__all__ = ["Runner", "TensorSpec", "OnnxRuntimeRunner", "TensorRTRunner", "TorchRunner", "load_runner",
           "classify", "runner_kind"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def runner_kind(target: PathLike) -> str:
    """'onnxruntime', 'tensorrt' or 'pytorch' for a path or model name."""
    text = str(target)
    if text.endswith(".onnx"):
        return "onnxruntime"
    if text.endswith(ENGINE_SUFFIXES):
        return "tensorrt"
    return "pytorch"


def load_runner(target: PathLike, verify: bool = True, **options: Any) -> Runner:
    """A runner for an ONNX file, an engine file, or a model name/spec (PyTorch, shipped weights).

    The runner carries `manifest` (the artifact's manifest, or None), from which classify() takes the
    preprocessing and class names. The file must match the sha256 its manifest records unless `verify`
    is False. Options go to the runner's constructor."""
    from ..errors import UsageError
    from ..manifest import load_manifest

    if not isinstance(target, (str, os.PathLike)) or not str(target).strip():
        raise UsageError(f"`target` must be an ONNX file, an engine file or a model name, got {target!r}")
    kind = runner_kind(target)
    if kind == "pytorch":
        runner = __getattr__("TorchRunner").from_model(spec=str(target), **options)
        runner.manifest = {"model": runner.loaded.entry().record(),
                           "preprocessing": runner.loaded.config.preprocessing.to_dict()}
        return runner
    from pathlib import Path

    if not Path(target).is_file():
        raise UsageError(f"{target} does not exist")
    manifest = load_manifest(target, required=False, verify=verify)
    if kind == "tensorrt":
        options["verify"] = verify
    runner = __getattr__("OnnxRuntimeRunner" if kind == "onnxruntime" else "TensorRTRunner")(target, **options)
    runner.manifest = manifest
    return runner


def classify(runner: Runner, images: Any, top_k: int = 1, preprocessing: Preprocessing | None = None,
             class_names: Sequence[str] | None = None) -> list:
    """PIL images (or uint8 pictures as an (N, H, W[, C]) array) -> for each, the top_k (class name or
    index, probability), best first; no images give []. Runs in the model's own batch sizes.

    Preprocessing and class names default to those the runner's manifest records."""
    import numpy as np

    from ..data import Preprocessing, class_names_for
    from ..errors import UsageError
    from ..models.entry import ModelEntry

    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise UsageError(f"`top_k` must be a whole number of classes, at least 1, got {top_k!r}")
    manifest = getattr(runner, "manifest", None) or {}
    if preprocessing is None:
        if not manifest.get("preprocessing"):  # absent, null, or {} (earlier versions)
            raise UsageError("the runner has no manifest with preprocessing; pass preprocessing=Preprocessing(...)")
        preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
    if class_names is None:
        class_names = class_names_for(ModelEntry.from_manifest(manifest).dataset)
    inputs = _classify_inputs(images, preprocessing)
    if not len(inputs):
        return []
    logits = runner.run_batched(inputs, len(inputs)).astype(np.float64)
    classes = logits.shape[1]
    if top_k > classes:
        raise UsageError(f"`top_k` must be at most {classes}, the model's number of classes, got {top_k}")
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    return [[(class_names[i] if class_names else int(i), float(row[i])) for i in order]
            for row, order in zip(probs, best, strict=True)]


def _classify_inputs(images, preprocessing):
    """float32 (N, C, H, W) from a list of PIL images or an array of uint8 pictures."""
    import numpy as np

    from ..errors import UsageError

    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise UsageError(f"`images` as an array must hold uint8 pictures (N, H, W[, C]), got {images.dtype} "
                             f"{images.shape}")
        return preprocessing.arrays(images)
    if hasattr(images, "convert") or not hasattr(images, "__iter__"):
        raise UsageError(f"`images` must be a list of PIL images, got one {type(images).__name__}; wrap it: [image]")
    images = list(images)
    wrong = next((image for image in images if not hasattr(image, "convert")), None)
    if wrong is not None:
        raise UsageError(f"`images` must hold PIL images, got a {type(wrong).__name__}")
    if not images:
        return np.zeros((0, preprocessing.channels, *preprocessing.crop), np.float32)
    return preprocessing.batch(images)
