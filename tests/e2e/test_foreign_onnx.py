"""`optimize` on ONNX from other toolchains: old IR versions and opsets, odd weight forms, NHWC, symbolic dims.

Each form is built here with onnx.helper (or re-saved from a real export) and sent through `optimize`;
the test then runs the input and the written file in onnxruntime itself and compares them, and counts
the nodes against what the form must become, worked out by hand from the graph.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.errors import UsageError
from skdeploy.graph import optimize_graph
from skdeploy.onnx.io import node_counts
from skdeploy.stages.optimize import optimize_onnx
from tests.support.helpers import randomize_bn, run_cli

PARITY = 1e-5
NEWEST_OPSET = onnx.defs.onnx_opset_version()


# ------------------------------------------------------------------------------------------- helpers

def weight(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def bn_weights(prefix, channels, rng):
    """Scale, bias, mean, variance with no channel near identity, so a skipped fold would show."""
    return [weight(f"{prefix}.scale", rng.uniform(0.5, 1.5, channels)),
            weight(f"{prefix}.bias", rng.normal(0, 0.3, channels)),
            weight(f"{prefix}.mean", rng.normal(0, 0.3, channels)),
            weight(f"{prefix}.var", rng.uniform(0.5, 1.5, channels))]


def batchnorm(prefix, x, y):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}.{p}" for p in ("scale", "bias", "mean", "var")],
                            [y], name=prefix)


def classifier(opset=13, ir=7, input_dims=("N", 3, 8, 8), nhwc=False, initializers_as_inputs=False, seed=0):
    """BN before a Conv, a bias-less Conv then BN, ReLU, global pool, Flatten, Gemm then BN (on 2-D (N, 5)).
    The conv weight (1728 bytes) is above onnx's 1 kB threshold for storing a tensor as external data."""
    rng = np.random.default_rng(seed)
    inits = [weight("conv.w", rng.normal(0, 0.3, (16, 3, 3, 3))), weight("fc.w", rng.normal(0, 0.3, (5, 16))),
             weight("fc.b", rng.normal(0, 0.1, 5))]
    inits += bn_weights("bn_in", 3, rng) + bn_weights("bn_conv", 16, rng) + bn_weights("bn_fc", 5, rng)
    nodes = [batchnorm("bn_in", "nchw", "x0"),
             helper.make_node("Conv", ["x0", "conv.w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             batchnorm("bn_conv", "c", "cb"),
             helper.make_node("Relu", ["cb"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["g"], transB=1, name="fc"),
             batchnorm("bn_fc", "g", "y")]
    if nhwc:
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]))
    else:
        nodes[0].input[0] = "x"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims))]
    if initializers_as_inputs or ir < 4:
        inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, "classifier", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_dims[0], 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


# By hand: the first BN has no layer before it, so it becomes Mul + Add; the other two fold into the Conv
# and the Gemm; nothing else changes.
CLASSIFIER_OPTIMIZED = {"Add": 1, "Conv": 1, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1, "Mul": 1, "Relu": 1}


def run_ort(model_or_path, feed):
    import onnxruntime

    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))


def max_rel(expected, got) -> float:
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


def assert_same_outputs(source, written, shape, batches=(1, 3), input_name="x"):
    """Input and output file, both in onnxruntime, on the same random inputs at each batch size."""
    rng = np.random.default_rng(1)
    for batch in batches:
        feed = {input_name: rng.standard_normal((batch, *shape)).astype(np.float32)}
        expected, got = run_ort(str(source), feed), run_ort(str(written), feed)
        assert expected.keys() == got.keys()
        for name in expected:
            assert max_rel(expected[name], got[name]) <= PARITY, name


def optimize_file(model, tmp_path, name="in.onnx", **save):
    source, output = tmp_path / name, tmp_path / ("opt." + name)
    onnx.save(model, str(source), **save)
    result = optimize_onnx(source, output)
    return source, output, result


# ----------------------------------------------------------------------------- IR versions and opsets

IR_SWEEP = [(9, ir) for ir in range(3, 11)]
OPSET_SWEEP = [(opset, helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
               for opset in range(9, NEWEST_OPSET + 1)]


@pytest.mark.parametrize("opset, ir", IR_SWEEP + OPSET_SWEEP, ids=lambda v: str(v))
def test_every_ir_version_and_opset_gets_a_checked_result(opset, ir, tmp_path):
    source, output, result = optimize_file(classifier(opset=opset, ir=ir), tmp_path)
    written = onnx.load(str(output))
    onnx.checker.check_model(written, full_check=True)
    assert node_counts(written) == CLASSIFIER_OPTIMIZED
    assert result.parity["passed"] and result.parity["batches"] == [1, 3]
    assert_same_outputs(source, output, (3, 8, 8))


def test_ir3_fold_lists_the_new_initializers_as_inputs():
    """Without simplification first (the passes alone, as when onnx-simplifier gives up), IR 3's rule that
    every initializer is also a graph input must hold for the folded weights too."""
    model, reports = optimize_graph(classifier(opset=9, ir=3), sk_rewrite=False)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 3
    assert {init.name for init in model.graph.initializer} <= {value.name for value in model.graph.input}
    assert reports[0].folded == {"Conv": 1, "Gemm": 1} and reports[0].scale_and_shift == 1


def test_initializers_listed_as_inputs_at_ir4_and_later(tmp_path):
    source, output, _ = optimize_file(classifier(ir=8, initializers_as_inputs=True), tmp_path)
    written = onnx.load(str(output))
    assert [value.name for value in written.graph.input] == ["x"]
    assert node_counts(written) == CLASSIFIER_OPTIMIZED
    assert_same_outputs(source, output, (3, 8, 8))


# ------------------------------------------------------------------------- weights, BatchNorm variants

def test_weights_from_constant_and_constant_of_shape_nodes_are_folded_first(tmp_path):
    """The conv weight and BN scale/variance come from Constant nodes, the BN bias and mean from
    ConstantOfShape (zeros): the BN folds only once constant folding has made them initializers."""
    rng = np.random.default_rng(2)
    conv_w, scale, var = rng.normal(0, 0.3, (4, 3, 3, 3)), rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4)
    channels = numpy_helper.from_array(np.array([4], dtype=np.int64))
    nodes = [helper.make_node("Constant", [], ["w"], value=weight("w", conv_w)),
             helper.make_node("Constant", [], ["s"], value=weight("s", scale)),
             helper.make_node("Constant", [], ["v"], value=weight("v", var)),
             helper.make_node("Constant", [], ["shape"], value=channels),
             helper.make_node("ConstantOfShape", ["shape"], ["zeros"], value=weight("zero", [0.0])),
             helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "zeros", "zeros", "v"], ["y"])]
    graph = helper.make_graph(nodes, "constants",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    source, output, result = optimize_file(model, tmp_path)
    assert node_counts(onnx.load(str(output))) == {"Conv": 1}
    assert result.passes[0].folded == {"Conv": 1}
    assert_same_outputs(source, output, (3, 8, 8))


def test_training_mode_batchnorm_is_kept_with_its_reason_and_the_rest_checked(tmp_path):
    """opset 15 BatchNormalization with training_mode=1 normalises with the batch's own statistics: no
    fixed affine map, so it stays; the result is still written and checked against the input. (onnxruntime
    wants the running mean and variance outputs named in training mode; nothing reads them.)"""
    model = classifier(opset=15, ir=8)
    bn = next(node for node in model.graph.node if node.name == "bn_conv")
    bn.attribute.append(helper.make_attribute("training_mode", 1))
    bn.output.extend(["running_mean", "running_var"])
    source, output, result = optimize_file(model, tmp_path)
    counts = node_counts(onnx.load(str(output)))
    assert counts["BatchNormalization"] == 1 and counts["Gemm"] == 1 and counts["Mul"] == 1
    assert [entry["node"] for entry in result.passes[0].left] == ["bn_conv"]
    assert "batch statistics" in result.passes[0].left[0]["reason"]
    assert_same_outputs(source, output, (3, 8, 8))


# ------------------------------------------------------------------------ storage, outputs, layouts

def test_external_data_in_and_out(tmp_path, monkeypatch):
    """Weights stored beside the model (onnx's external-data save, threshold lowered to 64 bytes) are read;
    an output above skdeploy's 2 GB limit (lowered to 64 bytes) is written with its large weights beside it."""
    from skdeploy.onnx import io as onnx_io

    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_ABOVE", 64)
    source, output, _ = optimize_file(classifier(), tmp_path, save_as_external_data=True, location="in.onnx.data",
                                      size_threshold=64)
    assert (tmp_path / "in.onnx.data").stat().st_size > 0
    assert (tmp_path / "opt.in.onnx.data").stat().st_size > 0
    written = onnx.load(str(output), load_external_data=False)
    assert any(init.data_location == TensorProto.EXTERNAL for init in written.graph.initializer)
    assert node_counts(written) == CLASSIFIER_OPTIMIZED
    assert_same_outputs(source, output, (3, 8, 8))


def test_several_outputs_are_each_checked(tmp_path):
    """A second output reads the conv's BatchNorm: that BN cannot fold into the conv (the fold keeps the
    output's name) and must still give both outputs as before."""
    model = classifier()
    model.graph.output.append(helper.make_tensor_value_info("cb", TensorProto.FLOAT, ["N", 16, 8, 8]))
    source, output, result = optimize_file(model, tmp_path)
    written = onnx.load(str(output))
    assert [value.name for value in written.graph.output] == ["y", "cb"]
    assert "BatchNormalization" not in node_counts(written)
    assert_same_outputs(source, output, (3, 8, 8))


def test_nhwc_input_with_a_transpose_first(tmp_path):
    source, output, _ = optimize_file(classifier(input_dims=("N", 8, 8, 3), nhwc=True), tmp_path)
    assert node_counts(onnx.load(str(output))) == dict(CLASSIFIER_OPTIMIZED, Transpose=1)
    assert_same_outputs(source, output, (8, 8, 3))


@pytest.mark.parametrize("batch_dim", ["batch_size", None], ids=["named", "unnamed"])
def test_symbolic_batch_named_or_not(batch_dim, tmp_path):
    source, output, result = optimize_file(classifier(input_dims=(batch_dim, 3, 8, 8)), tmp_path)
    assert result.parity["batches"] == [1, 3]
    assert node_counts(onnx.load(str(output))) == CLASSIFIER_OPTIMIZED
    assert_same_outputs(source, output, (3, 8, 8))


def test_dynamic_spatial_dims_need_a_size_and_stay_symbolic(tmp_path):
    model = classifier(input_dims=("N", 3, "height", "width"))
    onnx.save(model, str(tmp_path / "in.onnx"))
    result = run_cli("optimize", tmp_path / "in.onnx", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: input x has the symbolic dimension 'height' (axis 2) besides the batch: the checks need "
        "concrete sizes; give one in --dim, e.g. height=224"]
    assert not (tmp_path / "out.onnx").exists()
    result = run_cli("optimize", tmp_path / "in.onnx", "-o", tmp_path / "out.onnx", "--dim", "height")
    assert result.exit_code == 2
    assert result.stderr == "error: --dim takes NAME=SIZE with a positive whole SIZE, got 'height'\n"
    with pytest.raises(UsageError, match="positive whole size, got height=0"):
        optimize_onnx(tmp_path / "in.onnx", tmp_path / "out.onnx", sizes={"height": 0, "width": 8})
    result = run_cli("optimize", tmp_path / "in.onnx", "-o", tmp_path / "out.onnx", "--dim", "height=8",
                     "--dim", "width=12")
    assert result.exit_code == 0, result.output
    written = onnx.load(str(tmp_path / "out.onnx"))
    assert [d.dim_param for d in written.graph.input[0].type.tensor_type.shape.dim] == ["N", "", "height", "width"]
    assert node_counts(written) == CLASSIFIER_OPTIMIZED
    assert_same_outputs(tmp_path / "in.onnx", tmp_path / "out.onnx", (3, 16, 5))


def test_unnamed_dynamic_dim_besides_the_batch_is_explained(tmp_path):
    onnx.save(classifier(input_dims=("N", 3, None, 8)), str(tmp_path / "in.onnx"))
    result = run_cli("optimize", tmp_path / "in.onnx", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unnamed dynamic dimension (axis 2)" in result.stderr and not (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------- plain PyTorch exports of real models

_PLAIN_EXPORTS = {}


def plain_export(name, exporter, folder, opset=None):
    """`name` exported the ordinary way, not through skdeploy, cached per session: TorchScript at opset 13
    (or `opset`) with do_constant_folding=False, or dynamo at its default opset; dynamic batch either way."""
    import torch

    from skdeploy.models import REGISTRY, load_model

    key = (name, exporter, opset)
    if key not in _PLAIN_EXPORTS:
        kind = {"arch": name} if name in REGISTRY else {"spec": name}
        loaded = load_model(**kind, pretrained=False)
        module = randomize_bn(loaded.module)
        example = torch.randn(2, *loaded.config.input_size)
        path = folder / f"{name.replace(':', '_')}.{exporter}.onnx"
        if exporter == "dynamo":
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=["input"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
            program.save(str(path))
        else:
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset or 13,
                              input_names=["input"], output_names=["logits"], do_constant_folding=False,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        _PLAIN_EXPORTS[key] = path
    return _PLAIN_EXPORTS[key]


@pytest.fixture(scope="session")
def plain_exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain_exports")
    return lambda name, exporter, **options: plain_export(name, exporter, folder, **options)


def batchnorm_count(path) -> int:
    return node_counts(onnx.load(str(path))).get("BatchNormalization", 0)


TIMM_SK_MODELS = [("timm:skresnet18", 8), ("timm:skresnet34", 16), ("timm:skresnext50_32x4d", 16)]  # SK blocks


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name, blocks", TIMM_SK_MODELS, ids=[name for name, _ in TIMM_SK_MODELS])
def test_plain_timm_export_optimizes_like_skdeploy_export(plain_exports, exported, name, blocks, exporter, tmp_path):
    """timm's SK models exported without constant folding: every BN folded, every SK block rewritten, and the
    same node counts as `skdeploy export` of the model with that exporter."""
    source = plain_exports(name, exporter)
    batchnorms = batchnorm_count(source)
    if name == "timm:skresnet18" and exporter == "torchscript":
        # stem 1; per SK basic block 2 branch BNs, the attention's reduce BN and conv2's BN (8 x 4); 3 shortcuts
        assert batchnorms == 1 + 8 * 4 + 3
    result = optimize_onnx(source, tmp_path / "opt.onnx")
    fold, sk = result.passes
    assert sum(fold.folded.values()) == batchnorms and not fold.left
    assert len(sk.rewritten) == sk.blocks_found == blocks and not sk.left
    via_export = node_counts(onnx.load(str(exported(name, dynamic_batch=True, exporter=exporter))))
    assert result.node_counts_after == via_export
    assert result.parity["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("opset, ir", [(9, 3), (13, 8)])
def test_real_export_resaved_at_an_old_ir_with_initializers_as_inputs(plain_exports, exported, opset, ir, tmp_path):
    """The demo SKNet exported plainly, re-saved with an older IR version and every initializer listed as a
    graph input (IR 3 requires it). Every BatchNorm folds; at opset 13 all 5 SK blocks are rewritten and the
    result is what `skdeploy export` writes; at opset 9 the SK rewrite says why it leaves them (it needs 11)."""
    model = onnx.load(str(plain_exports("sknet-fmnist", "torchscript", opset=opset)))
    model.ir_version = ir
    listed = {value.name for value in model.graph.input}
    model.graph.input.extend(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
                             for init in model.graph.initializer if init.name not in listed)
    onnx.checker.check_model(model)
    source, output, result = optimize_file(model, tmp_path)
    assert batchnorm_count(output) == 0 and not result.passes[0].left
    if opset >= 11:
        assert len(result.passes[1].rewritten) == 5 and not result.passes[1].left
        assert result.node_counts_after == node_counts(onnx.load(str(exported("sknet-fmnist", dynamic_batch=True))))
    else:
        assert result.passes[1].left == [{"block": "(model)", "reason": "opset 9 is below 11"}]
    assert_same_outputs(source, output, (1, 32, 32), input_name="input")
