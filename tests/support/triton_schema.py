"""Triton's model_config schema, to parse config.pbtxt files strictly in tests."""
import importlib.util
from pathlib import Path

import pytest


def model_config_pb2():
    """Triton's model_config.proto compiled for Python, as the tritonclient wheel ships it (imported from its
    file: tritonclient.grpc's package __init__ needs grpcio, which this schema does not)."""
    tritonclient = pytest.importorskip("tritonclient")
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_pbtxt(text):
    from google.protobuf import text_format

    schema = model_config_pb2()
    return schema, text_format.Parse(text, schema.ModelConfig())
