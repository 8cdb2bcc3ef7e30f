"""The engine layer-list parser on a saved real TensorRT-RTX build log (tests/unit/fixtures/rtx_build_log.txt).

The fixture holds the report messages (the ones engine/layers.py keeps) of a real TensorRT-RTX 1.7 CPU build
at compute capability 8.6, batch profile 1/8/32, DETAILED profiling verbosity, of `tiny_qdq_model()`: a Conv
whose input and weights are quantized, a Relu, and a Conv left in FP32. Every field is asserted, so a
change of TensorRT-RTX's log format fails here before it silently empties a sidecar.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.engine import layers as engine_layers
from skdeploy.engine.layers import LayerFormatError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rtx_build_log.txt"


def fixture_messages() -> list:
    """The log's messages as the logger got them ('[TRT] [V] ' starts each; list lines continue one)."""
    messages = []
    for line in FIXTURE.read_text().splitlines():
        start = re.match(r"^\[TRT\] \[[VI]\] (.*)", line)
        if start:
            messages.append(start.group(1))
        else:
            messages[-1] += "\n" + line
    return messages


def tiny_qdq_model(quantize_second=False):
    """The fixture's graph: Q/DQ -> Conv (INT8 weights) -> Relu -> Conv (FP32). With `quantize_second`, the
    second Conv's input is quantized too (the engine in the fixture still runs it in FP32, as it would a
    Q/DQ pair it could not fuse)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    scale = (np.abs(w1).max((1, 2, 3)) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(np.round(w1 / scale[:, None, None, None]).astype(np.int8), "w1_q"),
             numpy_helper.from_array(scale, "w1_s"), numpy_helper.from_array(np.zeros(16, np.int8), "w1_z"),
             numpy_helper.from_array(rng.standard_normal((16, 16, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(0.05, np.float32), "x_s"),
             numpy_helper.from_array(np.array(0, np.int8), "x_z")]
    second_input = "r1"
    nodes = [helper.make_node("QuantizeLinear", ["input", "x_s", "x_z"], ["xq"], name="input_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xdq"], name="input_DequantizeLinear"),
             helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_z"], ["w1dq"], name="w1_DequantizeLinear",
                              axis=0),
             helper.make_node("Conv", ["xdq", "w1dq"], ["c1"], name="/conv_int8/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="/relu/Relu")]
    if quantize_second:
        nodes += [helper.make_node("QuantizeLinear", ["r1", "x_s", "x_z"], ["rq"], name="r1_QuantizeLinear"),
                  helper.make_node("DequantizeLinear", ["rq", "x_s", "x_z"], ["rdq"], name="r1_DequantizeLinear")]
        second_input = "rdq"
    nodes.append(helper.make_node("Conv", [second_input, "w2"], ["output"], name="/conv_fp32/Conv"))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["batch", 8, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 16, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_saved_log_parses_layer_by_layer():
    report = engine_layers.parse_build_log(fixture_messages())
    assert report["activation_bytes"] == 8454144 and report["weights_bytes"] == 4420
    assert report["scratch"] == [{"layer": "{ForeignNode[tmp_weight_1.../conv_fp32/Conv]}", "bytes": 8454144}]
    layers = report["layers"]
    assert [(layer["name"], layer["type"]) for layer in layers] == [
        ("__mye136_0_myl0_0", "shape_call"), ("__myl_MulMinMaxRounCast_myl0_1", "kgen"),
        ("/conv_int8/Conv_myl0_2", "correlation"), ("__myl_MulRelu_myl0_3", "kgen"),
        ("/conv_fp32/Conv_myl0_4", "correlation"), ("__myl_Tran_myl0_5", "kgen")]
    dtypes = [([t["dtype"] for t in layer["inputs"]], [t["dtype"] for t in layer["outputs"]]) for layer in layers]
    assert dtypes == [([], []), (["fp32"], ["int8"]), (["int8"], ["fp32"]), (["fp32"], ["fp32"]),
                      (["fp32"], ["fp32"]), (["fp32"], ["fp32"])]
    quantize = layers[1]["inputs"][0]
    assert quantize == {"name": "input", "dtype": "fp32", "format": "(Linear) Row major linear format",
                        "shape": [-1, 8, 8, 8]}
    assert layers[2]["inputs"][0]["format"] == "(NHWC) Channel major format"
    assert "/conv_int8/Conv" in layers[2]["onnx_nodes"] and "/conv_fp32/Conv" in layers[4]["onnx_nodes"]
    assert all(layer["tactic"] for layer in layers[1:])


def test_the_summary_of_the_saved_log():
    report = engine_layers.parse_build_log(fixture_messages())
    summary = engine_layers.summarize(report, "build-log", tiny_qdq_model(), "tiny.engine.layers.json")
    assert summary["kernels"] == 5  # the shape_call marker runs no kernel
    assert summary["convolutions"] == {"int8": ["/conv_int8/Conv"], "fp16": [], "fp32": ["/conv_fp32/Conv"],
                                       "other": []}
    assert summary["int8_convolution_share"] == 0.5
    assert summary["reformats"] == ["__myl_Tran_myl0_5"]
    assert "__myl_MulRelu_myl0_3" in summary["fused"] and "__myl_Tran_myl0_5" not in summary["fused"]
    assert (summary["activation_bytes"], summary["weights_bytes"]) == (8454144, 4420)


def test_the_check_names_a_quantized_conv_the_engine_runs_in_fp32():
    layers = engine_layers.parse_build_log(fixture_messages())["layers"]
    assert engine_layers.unrealized_int8(layers, tiny_qdq_model()) == []
    assert engine_layers.unrealized_int8(layers, tiny_qdq_model(quantize_second=True)) == [("/conv_fp32/Conv", "fp32")]


@pytest.mark.parametrize("change", [("LayerType: ", "Kind: "), ("Datatype: ", "Type: "), ("Outputs: [", "Out: [")])
def test_a_changed_log_format_fails_loudly(change):
    messages = [m.replace(*change) if m.startswith("Layers:") else m for m in fixture_messages()]
    with pytest.raises(LayerFormatError, match="builder's layer list"):
        engine_layers.parse_build_log(messages)


def test_inspector_json_takes_the_same_schema():
    """Classic TensorRT's IEngineInspector output (written here by hand in its documented key names)."""
    text = json.dumps({"Layers": [
        {"Name": "/conv/Conv + /relu/Relu", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [32, 8, 8, 8],
                     "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
         "Outputs": [{"Name": "y", "Dimensions": [32, 16, 8, 8], "Format/Datatype": "Row major linear FP16 format"}],
         "TacticName": "sm86_xmma_fprop", "Metadata": "[ONNX Layer: /conv/Conv]\x1f[ONNX Layer: /relu/Relu]"},
        "Reformatting CopyNode for Output Tensor 0"], "Bindings": ["x", "y"]})
    conv, copy = engine_layers.parse_inspector_json(text)
    assert conv == {"name": "/conv/Conv + /relu/Relu", "type": "CaskConvolution",
                    "inputs": [{"name": "x", "dtype": "int8", "shape": [32, 8, 8, 8],
                                "format": "Thirty-two wide channel vectorized row major Int8 format"}],
                    "outputs": [{"name": "y", "dtype": "fp16", "shape": [32, 16, 8, 8],
                                 "format": "Row major linear FP16 format"}],
                    "tactic": "sm86_xmma_fprop", "onnx_nodes": ["/conv/Conv", "/relu/Relu"]}
    assert engine_layers.is_convolution(conv) and engine_layers.is_reformat(copy)
    with pytest.raises(LayerFormatError, match="no \"Layers\" list"):
        engine_layers.parse_inspector_json('{"Bindings": []}')
