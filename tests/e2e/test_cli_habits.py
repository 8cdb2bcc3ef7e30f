"""Habits users bring from trtexec and Polygraphy, through the real CLI: -v/--verbose and -q/--quiet on every
command, --workspace with units, and `inspect` on any ONNX or engine file, manifest or not."""
import hashlib
import json
import re
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.cli import COMMANDS
from skdeploy.commands.build_engine import parse_size
from skdeploy.errors import UsageError
from tests.support.bad_input_cases import DEMO_ENGINE, DEMO_ONNX, Case, run_case
from tests.support.helpers import run_cli

# ---- -v / -q ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_takes_verbose_and_quiet(name):
    result = run_cli(name, "--help")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"-v, --verbose\s", result.stdout) and re.search(r"-q, --quiet\s", result.stdout)


@pytest.mark.parametrize("name, args", [("models", ()), ("optimize", ("m.onnx", "-o", "o.onnx")),
                                        ("inspect", ("m.onnx",))])
def test_verbose_and_quiet_together_are_refused_in_one_line(name, args):
    result = run_cli(name, *args, "-v", "-q")
    assert result.exit_code == 2
    assert re.fullmatch(f"error: -v/--verbose and -q/--quiet exclude each other; choose one "
                        f"\\(see '\\S+ {name} --help'\\)\n", result.stderr), result.stderr


def debug_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("debug: ")]


def test_optimize_verbose_names_each_pass_it_applied(exported, tmp_path):
    source = exported()
    verbose = run_cli("optimize", source, "-o", tmp_path / "v.onnx", "--no-sk-rewrite", "-v")
    assert verbose.exit_code == 0, verbose.stderr
    passes = [line.split(":")[1].split()[1] for line in debug_lines(verbose.stderr)]
    assert passes == ["fold_bn", "sk_rewrite"]
    assert "debug: pass sk_rewrite: off" in debug_lines(verbose.stderr)
    default = run_cli("optimize", source, "-o", tmp_path / "d.onnx", "--no-sk-rewrite")
    assert default.exit_code == 0 and "debug:" not in default.stderr and "folding" in default.stderr
    quiet = run_cli("optimize", source, "-o", tmp_path / "q.onnx", "--no-sk-rewrite", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout.startswith("fold_bn: ")  # the result stays


def test_calibrate_verbose_shows_the_range_chosen_for_every_quantized_tensor(exported, tmp_path):
    output = tmp_path / "m.int8.onnx"
    result = run_cli("calibrate", exported(), "--int8", "-o", output, "--calib-images", "32",
                     "--holdout-images", "0", "--method", "percentile", "-v")
    assert result.exit_code == 0, result.stderr
    ranges = json.loads((tmp_path / "m.int8.onnx.ranges.json").read_text())["tensors"]
    shown = {}
    for line in debug_lines(result.stderr):
        name, amax, absmax = re.fullmatch(r"debug: range (\S+): amax (\S+) of largest \|x\| (\S+) \(percentile\)",
                                          line).groups()
        shown[name] = (float(amax), float(absmax))
    expected = {name: (entry["amax"], entry["absmax"]) for name, entry in ranges.items() if "amax" in entry}
    assert shown.keys() == expected.keys() and len(shown) > 10
    for name, (amax, absmax) in shown.items():
        assert (amax, absmax) == pytest.approx(expected[name], rel=1e-3)


def test_build_engine_verbose_shows_the_builder_configuration(workspace):
    result = run_cli("build-engine", workspace / DEMO_ONNX, "--backend", "tensorrt-rtx", "--compute-capability",
                     "8.6", "--max-batch", "16", "--workspace", "512MiB", "-o", workspace / "v.engine", "-v",
                     "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["workspace_bytes"] == 512 * 2**20  # --json keeps stdout JSON under -v
    assert debug_lines(result.stderr) == [
        "debug: builder config: tensorrt-rtx for rtx, fp32 (strongly typed); flags none; compute capabilities 8.6; "
        "workspace 536870912 bytes; profile input min [1, 1, 32, 32] opt [8, 1, 32, 32] max [16, 1, 32, 32]; "
        "timing cache none"]


# ---- --workspace ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, size", [
    ("512MiB", 512 * 2**20), ("4GiB", 4 * 2**30), ("2048MB", 2048 * 10**6), ("1.5GiB", 3 * 2**29),
    ("64kib", 64 * 2**10), ("3 GB", 3 * 10**9), ("1048576", 2**20), ("2000000B", 2 * 10**6)])
def test_workspace_sizes_take_binary_and_decimal_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, message", [
    ("2048", "--workspace 2048 is 2048 bytes, below 1 MiB; give a unit, e.g. 2048MiB (B, KB, MB, GB, KiB, MiB, "
             "GiB)"),
    ("1048575", "--workspace 1048575 is 1048575 bytes, below 1 MiB"),
    ("2G", "--workspace must be a size with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 2GiB or 512MiB; got '2G'"),
    ("lots", "--workspace must be a size with a unit"), ("-1GiB", "--workspace must be a size with a unit")])
def test_workspace_refuses_bare_small_numbers_and_unknown_units(text, message):
    with pytest.raises(UsageError) as refused:
        parse_size(text)
    assert str(refused.value).startswith(message)


def test_build_engine_refuses_a_bare_workspace_before_building(workspace):
    run_case(Case("bare --workspace", ("build-engine", f"{{ws}}/{DEMO_ONNX}", "--workspace", "2048", "-o",
                                       "{ws}/w.engine"), 2, r"^error: --workspace 2048 is 2048 bytes, below 1 MiB"),
             workspace)


# ---- inspect ----------------------------------------------------------------------------------------------


def quantized_onnx(path):
    """A Q/DQ graph made by hand: x -> Quantize -> Dequantize -> MatMul by a 4x3 float weight -> y."""
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("MatMul", ["xd", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                              [weight, scale, zero])
    model = helper.make_model(graph, producer_name="handmade", producer_version="7",
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


def test_inspect_reads_an_onnx_file_without_a_manifest(tmp_path):
    path = quantized_onnx(tmp_path / "q.onnx")
    result = run_cli("inspect", path, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["manifest"] is None
    assert shown["file"] == {
        "file": str(path), "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "format": "onnx", "ir_version": onnx.load(path).ir_version, "producer": "handmade 7",
        "opsets": {"ai.onnx": 13},
        "inputs": [{"name": "x", "shape": ["n", 4], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": ["n", 3], "dtype": "float32"}],
        "nodes": 3, "node_counts": {"DequantizeLinear": 1, "MatMul": 1, "QuantizeLinear": 1},
        "initializers": {"count": 3, "bytes": 12 * 4 + 4 + 1, "by_dtype": {"float32": 52, "int8": 1}},
        "external_data": False, "qdq": {"QuantizeLinear": 1, "DequantizeLinear": 1}}
    text = run_cli("inspect", path)
    assert text.exit_code == 0 and text.stderr == ""
    assert "  made by handmade 7, IR version" in text.stdout and "  3 nodes: DequantizeLinear 1, MatMul 1, " \
        "QuantizeLinear 1\n" in text.stdout
    assert "  Q/DQ: 1 QuantizeLinear, 1 DequantizeLinear (quantized)" in text.stdout
    assert text.stdout.endswith(f"manifest: none beside it ({path}.json); skdeploy writes one with each artifact\n")


def test_inspect_reads_an_engine_without_its_sidecar(workspace):
    engine = workspace / "bare.engine"
    shutil.copy(workspace / DEMO_ENGINE, engine)
    result = run_cli("inspect", engine, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    data = engine.read_bytes()
    assert shown["manifest"] is None
    assert {key: shown["file"][key] for key in ("bytes", "sha256", "format", "head")} == {
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "format": "engine", "head": "vtrt"}
    runtime = shown["file"]["runtime"]
    assert runtime["backend"] == "tensorrt-rtx"
    if runtime["deserialized"]:  # a GPU TensorRT-RTX supports: the plan's own IO
        assert [(t["name"], t["mode"]) for t in runtime["io"]] == [("input", "input"), ("logits", "output")]
    else:  # here, without one: the runtime's reason, in one line
        assert runtime["reason"].startswith("TensorRT-RTX could not deserialise the plan here")
        assert "\n" not in runtime["reason"]


def test_inspect_shows_the_file_and_its_manifest(workspace):
    result = run_cli("inspect", workspace / DEMO_ONNX, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["manifest"] == json.loads((workspace / f"{DEMO_ONNX}.json").read_text())
    assert shown["file"]["sha256"] == shown["manifest"]["artifact"]["sha256"]
    assert [t["name"] for t in shown["file"]["inputs"]] == [t["name"] for t in shown["manifest"]["inputs"]]
    text = run_cli("inspect", workspace / DEMO_ONNX).stdout
    assert text.index("  Q/DQ: none (not quantized)") < text.index(f"manifest {workspace / DEMO_ONNX}.json: onnx")


def test_inspect_tells_an_engine_from_an_onnx_file_by_its_bytes(workspace, tmp_path):
    """Without a manifest or a telling name, the first byte decides (an ONNX model starts with ir_version)."""
    shutil.copy(workspace / DEMO_ONNX, tmp_path / "model.bin")
    shutil.copy(workspace / DEMO_ENGINE, tmp_path / "plan.bin")
    assert json.loads(run_cli("inspect", tmp_path / "model.bin", "--json").stdout)["file"]["format"] == "onnx"
    assert json.loads(run_cli("inspect", tmp_path / "plan.bin", "--json").stdout)["file"]["format"] == "engine"


def test_inspect_refuses_an_unreadable_onnx_without_a_manifest(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07 not really")
    result = run_cli("inspect", tmp_path / "broken.onnx")
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {tmp_path / 'broken.onnx'} is not a readable "
                                                              "ONNX model")
    assert len(result.stderr.splitlines()) == 1
