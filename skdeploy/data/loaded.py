"""A whole data set preprocessed into memory, for stages that run every sample through several models
(validation): each model then sees the very same float32 inputs, identified by their sha256.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..log import log
from .preprocessing import Preprocessing
from .sources import InputShape, UnreadableSample, fashion_mnist_file, open_source


def inputs_sha256(inputs: np.ndarray) -> str:
    """What a saved reference is keyed by: the sha256 of the preprocessed float32 inputs."""
    return hashlib.sha256(np.ascontiguousarray(inputs, dtype=np.float32).tobytes()).hexdigest()


@dataclass
class LoadedData:
    """Preprocessed inputs (N, C, H, W) float32, labels (N,) or None, and how to show sample i."""

    inputs: np.ndarray
    labels: np.ndarray
    source: str
    pictures: object = None  # uint8 (N, H, W[, C]) array or a list of image paths, for the report
    class_names: tuple = None
    preprocessing: Preprocessing = None  # what made the inputs; None when they came preprocessed

    def sha256(self) -> str:
        return inputs_sha256(self.inputs)

    def reference_inputs(self) -> np.ndarray:
        """The inputs as the FP32 PyTorch model takes them: normalized NCHW even when the artifact
        takes raw pixels (preprocessing in the graph) or NHWC."""
        return self.inputs if self.preprocessing is None else self.preprocessing.reference_inputs(self.inputs)

    def picture(self, index: int):
        """Sample `index` as a PIL image (the original picture when known, else the input rescaled)."""
        from PIL import Image

        if isinstance(self.pictures, np.ndarray):
            return Image.fromarray(self.pictures[index])
        if isinstance(self.pictures, list):
            return Image.open(self.pictures[index])
        array = self.inputs[index].astype(np.float64)
        array = (array - array.min()) / max(array.max() - array.min(), 1e-12) * 255
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
        return Image.fromarray(array.astype(np.uint8))


def load_data(path, preprocessing: Preprocessing, limit=None, class_names=None) -> LoadedData:
    """`path`: a Fashion-MNIST folder (its test split), or any calibration-data format
    (calibration/README.md): an image folder (one subfolder per class gives labels), .npy/.npz
    (uint8 pictures or preprocessed float32 NCHW, optional labels), an IDX images file."""
    path = Path(path)
    kind = "images" if path.is_dir() else path.suffix.lstrip(".") or "data"
    file = path
    if path.is_dir() and fashion_mnist_file("test", path).exists():
        kind, file = "fashion-mnist", fashion_mnist_file("test", path)
    shape = InputShape(preprocessing.channels, *preprocessing.crop)
    source = open_source(file, shape, lambda what: preprocessing, argument="data")
    if preprocessing.in_graph and getattr(source, "preprocessing", preprocessing) is None:
        raise UsageError(f"{path} holds preprocessed float arrays, but the model takes raw pixels (preprocessing "
                         "in the graph); give the pictures (uint8) or image files")
    count = len(source) if limit is None else min(limit, len(source))
    inputs = np.empty((count, *preprocessing.input_shape), preprocessing.input_dtype)
    with log.progress(count, f"preprocessing {count} samples") as advance:
        for index in range(count):
            try:
                inputs[index] = source.sample(index)
            except UnreadableSample as exc:
                raise UsageError(f"cannot read {exc}") from None
            advance()
    labels = None if source.labels is None else source.labels[:count]
    pictures = None if source.pictures is None else source.pictures[:count]
    return LoadedData(inputs, labels, f"{kind}:{path}", pictures, source.class_names or class_names, preprocessing)
