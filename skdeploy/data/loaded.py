"""A data set read batch by batch for stages that run every sample through several models (validation):
each model sees the very same float32 inputs, identified by their sha256, and memory holds a batch or
two whatever the data set's size.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from .origin import DataOrigin
from .preprocessing import Preprocessing
from .sources import InputShape, Source, UnreadableSample, fashion_mnist_file, open_source, read_batches

if TYPE_CHECKING:
    from PIL import Image

    from ..fileio import PathLike


class InputsDigest:
    """The sha256 of preprocessed float32 inputs fed batch by batch; equal to inputs_sha256 of them all."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def update(self, inputs: np.ndarray) -> None:
        self.digest.update(np.ascontiguousarray(inputs, dtype=np.float32).data)  # no copy of the bytes

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def inputs_sha256(inputs: np.ndarray) -> str:
    """What a saved reference is keyed by: the sha256 of the preprocessed float32 inputs."""
    digest = InputsDigest()
    digest.update(inputs)
    return digest.hexdigest()


@dataclass
class StreamedData:
    """The first `count` samples of a Source, read in batches; labels (count,) or None, and how to show
    sample i."""

    source: Source
    count: int
    origin: DataOrigin  # what reports and saved references name the data by
    labels: np.ndarray | None = None
    class_names: tuple | None = None
    preprocessing: Preprocessing | None = None  # what made the inputs; None when they came preprocessed

    def __len__(self) -> int:
        return self.count

    def batches(self, batch_size: int) -> Iterator[tuple]:
        """(first sample number, float32 batch) over the data in order, decoded by a thread pool."""
        starts = range(0, self.count, batch_size)
        try:
            yield from zip(starts, read_batches(self.source, range(self.count), batch_size), strict=True)
        except UnreadableSample as exc:
            raise UsageError(f"cannot read {exc}") from None

    def reference_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """A batch as the FP32 PyTorch model takes it: normalized NCHW even when the data is prepared as
        raw pixels (preprocessing in the graph) or NHWC."""
        return inputs if self.preprocessing is None else self.preprocessing.reference_inputs(inputs)

    def inputs_for(self, inputs: np.ndarray, form: Preprocessing) -> np.ndarray:
        """A batch as a model prepared in `form` takes it (raw or normalized, layout, dtype)."""
        return inputs if self.preprocessing is None else self.preprocessing.convert(inputs, form)

    def picture(self, index: int) -> Image.Image:
        """Sample `index` as a PIL image (the original picture when known, else the input rescaled)."""
        from PIL import Image

        pictures = self.source.pictures
        if isinstance(pictures, np.ndarray):
            return Image.fromarray(pictures[index])
        if isinstance(pictures, list):
            return Image.open(pictures[index])
        array = self.source.sample(index).astype(np.float64)
        array = (array - array.min()) / max(array.max() - array.min(), 1e-12) * 255
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
        return Image.fromarray(array.astype(np.uint8))


def open_data(path: PathLike, preprocessing: Preprocessing, limit: int | None = None,
              class_names: Sequence[str] | None = None, classes: int | None = None) -> StreamedData:
    """`path`: a Fashion-MNIST folder (its test split), or any calibration-data format
    (calibration/README.md): an image folder (one subfolder per class gives labels), .npy/.npz
    (uint8 pictures or preprocessed float32 NCHW, optional labels), an IDX images file. Nothing is
    decoded until the batches are read. Labels are checked against the model's `class_names` and number
    of `classes` when given (open_source)."""
    path = Path(path)
    kind = "images" if path.is_dir() else path.suffix.lstrip(".") or "data"
    file = path
    if path.is_dir() and fashion_mnist_file("test", path).exists():
        kind, file = "fashion-mnist", fashion_mnist_file("test", path)
    shape = InputShape(preprocessing.channels, *preprocessing.crop)
    source = open_source(file, shape, lambda what: preprocessing, argument="data", class_names=class_names,
                         classes=classes)
    if preprocessing.in_graph and getattr(source, "preprocessing", preprocessing) is None:
        raise UsageError(f"{path} holds preprocessed float arrays, but the model takes raw pixels (preprocessing "
                         "in the graph); give the pictures (uint8) or image files")
    count = len(source) if limit is None else min(limit, len(source))
    labels = None if source.labels is None else source.labels[:count]
    return StreamedData(source, count, DataOrigin.of(kind, path), labels, source.class_names or class_names,
                        preprocessing)
