"""What a runtime needs besides the engine: Triton model repositories, DeepStream nvinfer configs, labels
and the bundle's README. Everything is derived from an artifact's manifest (an ONNX's or an engine's
sidecar), so a config cannot disagree with the model it serves; docs/deploy.md shows the layouts.

    write_triton_repository("bundle/model_repository", "sknet", "demo.engine", load_manifest("demo.engine"), labels)
    text = deepstream_config(manifest, onnx_file="demo.onnx", engine_file="demo.engine", labels_file="labels.txt")
"""
from .deepstream import DeepStreamPreprocessing, deepstream_config, nvinfer_preprocessing
from .labels import class_labels
from .triton import triton_config, write_triton_repository

__all__ = ["DeepStreamPreprocessing", "deepstream_config", "nvinfer_preprocessing", "class_labels", "triton_config",
           "write_triton_repository"]
