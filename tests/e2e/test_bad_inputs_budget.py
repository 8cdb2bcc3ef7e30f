"""Bad-input suite, area: the accuracy budget.

These are success rows: ranges are collected for the full Q/DQ plan, so a plan with layers taken out (by the
budget's fallback or by --keep-fp32), which can move a residual Add's Q/DQ onto the output of a taken-out
Conv, still finds a range for every tensor it quantizes. The command must succeed and, for the budget,
meet it."""
import json

import onnx

from tests.support.bad_input_cases import DEMO_ONNX, error_lines
from tests.support.helpers import run_cli

MAIN_CONV = "/layers/layers.0/conv3/Conv"  # the residual Add of block 0 fuses into it
DOWNSAMPLE = "/layers/layers.0/downsample/downsample.0/Conv"  # the Add's other input, its shortcut
CONVS = 34  # in the demo model


def calibrate(workspace, *options):
    output = workspace / "b.onnx"
    result = run_cli("calibrate", workspace / DEMO_ONNX, "--int8", "--calib-images", "64", *options, "-o", output)
    assert result.exit_code == 0, error_lines(result.stderr)
    stages = json.loads((workspace / "b.onnx.json").read_text())["stages"]
    return next(stage for stage in stages if stage["stage"] == "calibrate")


def test_the_budget_fallback_meets_a_zero_drop_budget(workspace):
    record = calibrate(workspace, "--method", "percentile", "--holdout-images", "200", "--max-top1-drop", "0")
    assert record["accuracy_plain_int8"]["drop"] > 0, "plain INT8 met the budget: the fallback was not exercised"
    assert record["fallback_search"] and record["fallback_layers"]
    assert record["accuracy"]["drop"] <= 0
    # what the budget is about: the layers it names really left INT8 in the written graph, the rest did not
    model = onnx.load(workspace / "b.onnx")
    dequantized = {node.name for node in model.graph.node
                   if node.op_type == "Conv" and node.input[1].endswith("_dequantized")}
    fallen = {layer["name"] for layer in record["fallback_layers"]}
    assert fallen and not fallen & dequantized and len(dequantized) > CONVS // 2


def test_keeping_the_main_conv_of_a_residual_fp32_calibrates_the_rest(workspace):
    record = calibrate(workspace, "--keep-fp32", MAIN_CONV, "--holdout-images", "0")
    # the demo's Convs and 5 residual Adds, less the kept Conv and the Add that would fuse into it
    assert record["quantized_units"] == CONVS + 5 - 2
    model = onnx.load(workspace / "b.onnx")
    quantized = {node.input[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    assert f"{MAIN_CONV}_output_0" not in quantized and f"{DOWNSAMPLE}_output_0" not in quantized
    kept = next(node for node in model.graph.node if node.name == MAIN_CONV)
    assert not kept.input[1].endswith("_dequantized")  # FP32 weights
    # and the rest is calibrated: every other Conv reads dequantized INT8 weights
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert len(convs) == CONVS
    assert [node.name for node in convs if not node.input[1].endswith("_dequantized")] == [MAIN_CONV]
