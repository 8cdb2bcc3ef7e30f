"""The shared ONNX toolkit (skdeploy/onnx/) on small hand-built graphs, run in real onnx and onnxruntime:
expected values are worked out by hand in each test."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.calib.qdq import insert_qdq, plan_int8
from skdeploy.errors import SkdeployError
from skdeploy.graph import describe
from skdeploy.graph.fold_bn import FoldReport
from skdeploy.graph.sk_select import SkRewriteReport
from skdeploy.onnx.cleanup import prune_initializers, remove_dead_code
from skdeploy.onnx.index import GraphIndex
from skdeploy.onnx.run import run_model
from skdeploy.onnx.shapes import SMALL_CONSTANT, infer_types
from skdeploy.onnx.toposort import replace_nodes, toposort


def tensor(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def constant(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


# ------------------------------------------------------------------------------------------ GraphIndex

def test_consumers_list_a_reader_once_per_input_it_reads():
    add = helper.make_node("Add", ["x", "x"], ["y"], name="add")
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    index = GraphIndex(make_model([add, relu], [tensor("x", [2])], [tensor("z", [2])]))
    assert [node.name for node in index.consumers["x"]] == ["add", "add"]
    assert index.only_reader("x") is None  # read twice
    assert index.only_reader("y").name == "relu"
    assert index.only_reader("z") is None  # a graph output
    assert index.inputs == ["x"] and index.outputs == ["z"]


def test_constant_reads_initializers_and_every_constant_node_form():
    nodes = [helper.make_node("Constant", [], ["t"], value=constant("t", np.array([[1.5, -2.0]], np.float32))),
             helper.make_node("Constant", [], ["f"], value_float=2.5),
             helper.make_node("Constant", [], ["i"], value_int=7),
             helper.make_node("Constant", [], ["fs"], value_floats=[0.5, 0.25]),
             helper.make_node("Constant", [], ["is"], value_ints=[1, 2, 3]),
             helper.make_node("Add", ["x", "w"], ["y"])]
    model = make_model(nodes, [tensor("x", [1, 2])], [tensor("y", [1, 2])], [constant("w", np.float32([[3, 4]]))])
    index = GraphIndex(model)
    assert index.constant("t").tolist() == [[1.5, -2.0]]
    assert float(index.constant("f")) == 2.5 and int(index.constant("i")) == 7
    assert index.constant("fs").tolist() == [0.5, 0.25] and index.constant("is").tolist() == [1, 2, 3]
    assert index.constant("w").tolist() == [[3.0, 4.0]]
    assert index.constant("y") is None and index.constant("x") is None
    assert index.is_constant("f") and index.is_constant("w") and not index.is_constant("y")


def test_index_types_keep_symbolic_dims_unknown_and_depth_counts_the_longest_path():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Add", ["x", "b"], ["y"])]
    index = GraphIndex(make_model(nodes, [tensor("x", ["N", 3])], [tensor("y", None)]))
    assert index.shape("x") == [None, 3] and index.shape("y") == [None, 3]
    assert index.is_float("b") and index.activations() == ["x", "a", "b", "y"]
    assert index.depth() == {"x": 0, "a": 1, "b": 2, "y": 3}


# ----------------------------------------------------------------------------------- shape inference

def reshape_through_table(table_size):
    """x (N, 48) reshaped to the first two entries (6, 8) of an int64 table of `table_size` elements."""
    table = np.zeros(table_size, np.int64)
    table[:2] = [6, 8]
    nodes = [helper.make_node("Slice", ["table", "starts", "ends"], ["target"]),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [constant("table", table), constant("starts", np.int64([0])), constant("ends", np.int64([2]))]
    return make_model(nodes, [tensor("x", ["N", 48])], [tensor("y", None)], inits)


def test_shape_inference_reads_constant_values_up_to_the_documented_limit():
    assert SMALL_CONSTANT == 1024
    kept = infer_types(reshape_through_table(SMALL_CONSTANT), batch=1)
    assert kept["y"].shape == (6, 8)  # the target's values were read
    dropped = infer_types(reshape_through_table(SMALL_CONSTANT + 1), batch=1)
    assert dropped["y"].dims == (None, None) and dropped["y"].shape is None
    assert dropped["table"].dims == (SMALL_CONSTANT + 1,)  # a weight-free input still has its shape
    measured = infer_types(reshape_through_table(SMALL_CONSTANT + 1), batch=1, measure_missing=True)
    assert measured["y"].shape == (6, 8) and measured["y"].dtype == np.float32  # one onnxruntime run


def test_shape_inference_sets_the_batch_and_propagates_shape_arithmetic():
    # y = Reshape(x, [N, 12]) with N read from Shape(x) at run time: data propagation resolves it
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "twelve"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [constant("zero", np.int64(0)), constant("axes", np.int64([0])), constant("twelve", np.int64([12]))]
    model = make_model(nodes, [tensor("x", ["N", 3, 4])], [tensor("y", None)], inits)
    assert infer_types(model, batch=5)["y"].shape == (5, 12)
    assert infer_types(model, batch=5)["x"].shape == (5, 3, 4)
    unbatched = infer_types(model)
    assert unbatched["x"].dims == (None, 3, 4) and unbatched["y"].dims == (None, 12)
    assert unbatched["y"].dtype == np.float32


# ------------------------------------------------------------------------------------- topological sort

def test_toposort_keeps_a_sorted_graph_and_places_appended_nodes_when_needed():
    a = helper.make_node("Relu", ["x"], ["a"], name="A")
    b = helper.make_node("Neg", ["a"], ["b"], name="B")
    c = helper.make_node("Abs", ["q"], ["c"], name="C")  # reads D's output, D comes last
    d = helper.make_node("Identity", ["a"], ["q"], name="D")
    # ready: A; after A: B (1) and D (3) -> B first; after B: D; after D: C
    assert [n.name for n in toposort([a, b, c, d])] == ["A", "B", "D", "C"]
    assert [n.name for n in toposort([a, b, d, c])] == ["A", "B", "D", "C"]
    graph = helper.make_graph([c, d, a], "g", [], [])
    replace_nodes(graph, graph.node)
    assert [n.name for n in graph.node] == ["A", "D", "C"]


def test_toposort_refuses_a_cycle():
    loop = [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    with pytest.raises(ValueError, match="cycle"):
        toposort(loop)


# ------------------------------------------------------------------------------------------- cleanup

def test_prune_initializers_drops_unread_weights_and_their_input_entries():
    inits = [constant("used", np.float32([1.0])), constant("unused", np.float32([2.0])),
             constant("passthrough", np.float32([3.0]))]
    inputs = [tensor("x", [1]), tensor("used", [1]), tensor("unused", [1])]  # old exports list weights too
    model = make_model([helper.make_node("Add", ["x", "used"], ["y"])], inputs,
                       [tensor("y", [1]), tensor("passthrough", [1])], inits)
    prune_initializers(model.graph)
    assert [init.name for init in model.graph.initializer] == ["used", "passthrough"]
    assert [value.name for value in model.graph.input] == ["x", "used"]


def test_remove_dead_code_drops_nodes_no_output_needs_and_what_only_they_used():
    nodes = [helper.make_node("Add", ["x", "w_live"], ["y"]), helper.make_node("Mul", ["x", "w_dead"], ["dead"]),
             helper.make_node("Relu", ["dead"], ["dead2"])]
    model = make_model(nodes, [tensor("x", [1])], [tensor("y", [1])],
                       [constant("w_live", np.float32([1.0])), constant("w_dead", np.float32([2.0]))])
    model.graph.value_info.extend([tensor("dead", [1]), tensor("dead2", [1])])
    remove_dead_code(model)
    assert [node.op_type for node in model.graph.node] == ["Add"]
    assert [init.name for init in model.graph.initializer] == ["w_live"]
    assert list(model.graph.value_info) == []


def test_qdq_of_a_model_listing_weights_as_inputs_still_takes_only_the_image():
    """The FP32 weight of a quantized Conv is replaced by INT8; its old graph-input entry must go too,
    or onnxruntime and TensorRT would ask the caller to feed the weight."""
    weight = constant("w", np.ones((2, 3, 1, 1), np.float32))
    graph_inputs = [tensor("x", [1, 3, 2, 2]), tensor("w", [2, 3, 1, 1])]
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], graph_inputs,
                       [tensor("y", None)], [weight])
    quantized = insert_qdq(model, plan_int8(model), {"x": 1.0})
    assert [value.name for value in quantized.graph.input] == ["x"]
    x = np.float32([0.1, -0.5, 0.33, 1.0] * 3).reshape(1, 3, 2, 2)
    got = run_model(quantized, [{"x": x}])[0]["y"]
    # scale 1/127 for x, weights all 1 (exact in INT8): each output is the sum over channels of round(127 x)/127
    expected = np.repeat((np.round(x * 127) / 127).sum(axis=1, keepdims=True), 2, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# ----------------------------------------------------------------------------------------- onnxruntime

def test_run_model_runs_every_feed_in_one_session_and_names_load_failures():
    model = make_model([helper.make_node("Mul", ["x", "two"], ["y"])], [tensor("x", ["N", 2])],
                       [tensor("y", ["N", 2])], [constant("two", np.float32([2.0]))])
    first, second = run_model(model, [{"x": np.float32([[1, 2]])}, {"x": np.float32([[3, 4], [5, 6]])}])
    assert first["y"].tolist() == [[2, 4]] and second["y"].tolist() == [[6, 8], [10, 12]]
    broken = make_model([helper.make_node("NoSuchOp", ["x"], ["y"])], [tensor("x", [1])], [tensor("y", [1])])
    with pytest.raises(SkdeployError, match="onnxruntime cannot load the model"):
        run_model(broken, [{"x": np.float32([1])}])


def test_graph_passes_run_without_loading_the_runners(tmp_path):
    """graph/ sits below runners/: folding a BatchNorm (parity check included) must not import them."""
    bn = [constant(name, np.float32(value)) for name, value in
          (("scale", [2.0]), ("bias", [1.0]), ("mean", [0.5]), ("var", [3.0]))]
    model = make_model([helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                                         epsilon=1.0)], [tensor("x", ["N", 1, 2, 2])], [tensor("y", ["N", 1, 2, 2])],
                       bn)
    onnx.save(model, str(tmp_path / "bn.onnx"))
    script = ("import json, sys, onnx\n"
              "from skdeploy.graph import optimize_graph\n"
              f"model, reports = optimize_graph(onnx.load({str(tmp_path / 'bn.onnx')!r}), sk_rewrite=False)\n"
              "print(json.dumps([[n.op_type for n in model.graph.node], reports[0].scale_and_shift,"
              " sorted(m for m in sys.modules if m.startswith('skdeploy.runners'))]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    ops, scale_and_shift, runners = json.loads(done.stdout.strip().splitlines()[-1])
    # y = 2 (x - 0.5) / sqrt(3 + 1) + 1 = x + 0.5: one Mul and one Add, no runner module loaded
    assert (ops, scale_and_shift, runners) == (["Mul", "Add"], 1, [])


# -------------------------------------------------------------------------------------- pass reports

def test_fold_report_says_what_it_did_and_round_trips_through_the_manifest_form():
    report = FoldReport(batchnorms=4, folded={"Conv": 2, "Gemm": 1}, scale_and_shift=0,
                        left=[{"node": "bn3", "reason": "training-mode"}], max_rel=1e-7,
                        node_counts_before={"Conv": 2, "BatchNormalization": 4}, node_counts_after={"Conv": 2, "X": 1},
                        seconds=0.5)
    lines = ["fold_bn: 4 BatchNormalization: 3 folded (into Conv 2, Gemm 1), 0 made scale-and-shift, 1 left; "
             "nodes 6 -> 3", "  left bn3: training-mode"]
    assert report.describe() == lines
    stored = json.loads(json.dumps(report.as_dict()))
    assert list(stored) == ["name", "batchnorms", "folded", "scale_and_shift", "left", "max_rel",
                            "node_counts_before", "node_counts_after", "seconds", "summary"]
    assert stored["name"] == "fold_bn" and stored["summary"] == lines[0]
    assert FoldReport.from_dict(stored) == report
    assert describe(stored) == lines


def test_sk_report_counts_blocks_by_branch_count():
    rewritten = [{"block": f"b{i}", "M": m, "C": 8, "form": "stacked", "rewritten_as": "sigmoid", "max_rel": 0.0}
                 for i, m in enumerate((3, 2, 2))]
    report = SkRewriteReport(blocks_found=4, rewritten=rewritten, left=[{"block": "b3", "reason": "why"}],
                             stacked_sums_unrolled=2, splits_to_slices=0, max_rel=2.5e-7,
                             node_counts_before={"Softmax": 4}, node_counts_after={"Sigmoid": 2, "Softmax": 2})
    assert report.describe() == ["sk_rewrite: 4 SK blocks found, 3 rewritten (M=2: 2, M=3: 1); 2 stacked sums "
                                 "unrolled, 0 Splits made Slices; worst block parity 2.5e-07; nodes 4 -> 4",
                                 "  left b3: why"]
    assert describe(json.loads(json.dumps(report.as_dict()))) == report.describe()
