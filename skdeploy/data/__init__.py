"""Samples in, model-ready arrays out: preprocessing, every reader of data, the calibration/hold-out
split, and the padding rule for static batches. numpy and Pillow only; nothing here imports a model,
a runner or a stage.

    source = open_source("photos/", InputShape(3, 224, 224), lambda what: preprocessing)
    selection = select_calibration(source, shape, count=512, holdout=1000, seed=0)
"""
from .batches import MAX_BATCH, pad_batch
from .loaded import InputsDigest, StreamedData, inputs_sha256, open_data
from .origin import DataOrigin
from .preprocessing import Preprocessing
from .sources import (
           FASHION_MNIST_CLASSES,
           FASHION_MNIST_DIR,
           InputShape,
           Source,
           UnreadableSample,
           check_label_range,
           checked_labels,
           class_names_for,
           fashion_mnist_file,
           load_fashion_mnist,
           open_source,
           read_arrays,
           read_batches,
           read_idx,
)
from .splits import Selection, default_calibration_path, select_calibration

__all__ = ["MAX_BATCH", "pad_batch", "DataOrigin", "InputsDigest", "StreamedData", "inputs_sha256", "open_data",
           "Preprocessing", "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "InputShape", "Source", "UnreadableSample",
           "check_label_range", "checked_labels",
           "class_names_for", "fashion_mnist_file", "load_fashion_mnist", "open_source", "read_arrays",
           "read_batches", "read_idx", "Selection", "default_calibration_path", "select_calibration"]
