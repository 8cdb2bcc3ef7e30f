"""Graph passes: BatchNorm folding and the SK select rewrite on real exports.

Every model here goes through the real exporters, onnx-simplifier, the passes, onnxruntime and (for the
rewritten graphs) a real CPU-only TensorRT-RTX build for compute capability 8.6. Exports are cached per
session (`exported` in conftest.py, `unit_export` below); the paper-size models use one exporter each to
keep the suite's time in budget, both exporters being covered by the small models of the same forms.
"""
import functools
import json
import operator
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from skdeploy.errors import SkdeployError, UsageError
from skdeploy.fileio import sha256_file
from skdeploy.graph import optimize_graph, sk_select
from skdeploy.graph.passes import as_report
from skdeploy.graph.rewrite import TOLERANCE
from skdeploy.manifest import load_manifest
from skdeploy.onnx.io import node_counts
from skdeploy.runners import OnnxRuntimeRunner
from skdeploy.stages.optimize import optimize_onnx
from tests.support.helpers import ARTICLE_SKNET, as_stored, randomize_bn, recorded_stage, run_cli

PARITY = 1e-5  # max |onnx - pytorch| / max |pytorch| after all passes
SHAPE_OPS = ("Shape", "Gather", "ConstantOfShape", "Split")
REFERENCE = f"{ARTICLE_SKNET}:SKNet"
TIMM_SK = "timm.layers.selective_kernel:SelectiveKernel"


# ------------------------------------------------------------------------------------------- helpers

def audit(model) -> dict:
    """Op counts, every tensor's rank (onnx shape inference, independent of skdeploy) and softmaxes."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    ranks = [len(v.type.tensor_type.shape.dim) if v.type.tensor_type.HasField("shape") else None for v in values]
    softmaxes = []
    for node in model.graph.node:
        if node.op_type == "Softmax":
            axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
            rank = next(len(v.type.tensor_type.shape.dim) for v in values if v.name == node.input[0])
            softmaxes.append((axis, rank))
    return {"ops": node_counts(model), "ranks": ranks, "softmaxes": softmaxes}


def assert_tensorrt_friendly(model, branches=2):
    """No shape computation, no Split, nothing above 4-D; Softmax only for M > 2, 4-D over its last axis."""
    facts = audit(model)
    assert not {op: n for op, n in facts["ops"].items() if op in SHAPE_OPS}, facts["ops"]
    assert None not in facts["ranks"] and max(facts["ranks"]) <= 4
    assert "BatchNormalization" not in facts["ops"]
    if branches == 2:
        assert facts["softmaxes"] == []
    else:
        assert facts["softmaxes"] and all(axis in (3, -1) and rank == 4 for axis, rank in facts["softmaxes"])


def sk_report(passes):
    """The SK rewrite's report among a stage's `passes` (PassReports, or their manifest dicts)."""
    return next(report for report in map(as_report, passes) if report.name == "sk_rewrite")


def ort_parity(reference, candidate, shape, batches=(1, 2)) -> float:
    """Worst max-abs / max-ref of two ONNX models on the same random inputs."""
    worst = 0.0
    with OnnxRuntimeRunner(reference) as old, OnnxRuntimeRunner(candidate) as new:
        for batch in batches:
            x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
            expected, got = old.infer(x), new.infer(x)
            for name in expected:
                worst = max(worst, float(np.abs(expected[name] - got[name]).max() / np.abs(expected[name]).max()))
    return worst


def rtx_build(path, tmp_path):
    """A real TensorRT-RTX build (CPU only, compute capability 8.6); returns the BuildResult."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install 'skdeploy[rtx]') builds the engines")
    from skdeploy.stages.build import BuildSettings, build_engine

    engine = tmp_path / (path.stem + ".engine")
    result = build_engine(path, engine, BuildSettings(backend="tensorrt-rtx", target="rtx",
                                                      compute_capabilities=["8.6"], max_batch=4, opt_batch=2))
    assert engine.stat().st_size == result.engine.engine_bytes > 0
    return result


_UNIT_CACHE = {}


@pytest.fixture(scope="session")
def unit_export(tmp_path_factory):
    """unit_export(spec, kwargs, input_shape, exporter, **settings) -> (path, ExportResult): a small module
    exported through `export_model` with all passes, parity against PyTorch held to 1e-5."""
    from skdeploy.models import load_model
    from skdeploy.stages.export import ExportSettings, export_model

    def export(spec, kwargs, input_shape, exporter, **settings):
        key = (spec, json.dumps(kwargs, sort_keys=True), input_shape, exporter, tuple(sorted(settings.items())))
        if key not in _UNIT_CACHE:
            torch.manual_seed(0)
            loaded = load_model(spec=spec, model_kwargs=kwargs, input_shape=input_shape)
            randomize_bn(loaded.module, seed=1)
            path = tmp_path_factory.mktemp("units") / "unit.onnx"
            settings = dict(dict(dynamic_batch=True, parity_tolerance=PARITY), **settings)
            _UNIT_CACHE[key] = (path, export_model(loaded, path, ExportSettings(exporter=exporter, **settings)))
        return _UNIT_CACHE[key]

    return export


# ------------------------------------------------------------- the forms the SK select is exported in

@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("branches,stride", [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_reference_unit_rewritten_exactly(unit_export, tmp_path, exporter, branches, stride):
    kwargs = {"in_channels": 64, "out_channels": 64, "stride": stride, "M": branches}
    path, result = unit_export(REFERENCE, kwargs, (64, 16, 16), exporter)
    report = sk_report(result.passes)
    assert report.blocks_found == 1 and report.left == []
    assert [(r["M"], r["C"]) for r in report.rewritten] == [(branches, 64)]
    assert result.parity["max_rel"] <= PARITY
    assert result.parity["batches"] == [1, 4]
    assert_tensorrt_friendly(onnx.load(str(path)), branches)
    rtx_build(path, tmp_path)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("split_input", [True, False])
def test_timm_selective_kernel_rewritten(unit_export, tmp_path, exporter, split_input):
    kwargs = {"in_channels": 64, "out_channels": 64, "split_input": split_input}
    path, result = unit_export(TIMM_SK, kwargs, (64, 16, 16), exporter)
    report = sk_report(result.passes)
    assert [(r["M"], r["form"]) for r in report.rewritten] == [(2, "stacked")]
    assert report.stacked_sums_unrolled == 1  # the 5-D fuse sum, too
    assert report.splits_to_slices == (1 if split_input else 0)
    assert result.parity["max_rel"] <= PARITY
    assert_tensorrt_friendly(onnx.load(str(path)))
    rtx_build(path, tmp_path)


class ChannelMajorSK(nn.Module):
    """A user's SK unit that lays the logits out (N, C, M) and takes the softmax over the last axis,
    with a biased fc2: the rewrite must find which fc2 channel feeds which branch."""

    def __init__(self, channels=32, branches=2):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1 + i, dilation=1 + i),
                                                    nn.ReLU()) for i in range(branches))
        self.fc1 = nn.Sequential(nn.Conv2d(channels, 16, 1), nn.ReLU())
        self.fc2 = nn.Conv2d(16, channels * branches, 1)

    def forward(self, x):
        u = [branch(x) for branch in self.branches]
        z = self.fc1(functools.reduce(operator.add, u).mean((2, 3), keepdim=True))
        a = self.fc2(z).reshape(x.shape[0], -1, len(u)).softmax(-1)
        return functools.reduce(operator.add, [u_m * a[:, :, m, None, None] for m, u_m in enumerate(u)])


@pytest.mark.parametrize("branches,exporter", [(2, "torchscript"), (4, "dynamo")])
def test_user_module_with_channel_major_logits(unit_export, tmp_path, exporter, branches):
    path, result = unit_export(f"{__name__}:ChannelMajorSK", {"branches": branches}, (32, 8, 8), exporter)
    report = sk_report(result.passes)
    assert [r["M"] for r in report.rewritten] == [branches]
    assert result.parity["max_rel"] <= PARITY
    assert_tensorrt_friendly(onnx.load(str(path)), branches)
    rtx_build(path, tmp_path)


def test_static_batch_export_rewritten(unit_export, tmp_path):
    path, result = unit_export(REFERENCE, {"in_channels": 64, "out_channels": 64, "M": 3}, (64, 16, 16),
                               "torchscript", dynamic_batch=False, batch=2)
    assert [r["M"] for r in sk_report(result.passes).rewritten] == [3]
    assert result.parity["max_rel"] <= PARITY and result.parity["batches"] == [2]
    model = onnx.load(str(path))
    assert_tensorrt_friendly(model, 3)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    rtx_build(path, tmp_path)


# ------------------------------------------------------------------------------- the model zoo

PAPER_SIZE = pytest.mark.slow  # paper-size models: `make slow` (CI) runs them, `make test` does not
ZOO = [  # (model, exporter, SK blocks); dynamo on the small ones (its exports take twice as long)
    pytest.param("sknet-fmnist", "torchscript", 5, id="sknet-fmnist-torchscript"),
    pytest.param("sknet-fmnist", "dynamo", 5, id="sknet-fmnist-dynamo"),
    pytest.param("sknet26", "torchscript", 8, id="sknet26-torchscript", marks=PAPER_SIZE),
    pytest.param("sknet50", "torchscript", 16, id="sknet50-torchscript", marks=PAPER_SIZE),
    pytest.param("sknet101", "torchscript", 33, id="sknet101-torchscript", marks=PAPER_SIZE),
    pytest.param("timm:skresnet18", "torchscript", 8, id="timm:skresnet18-torchscript"),
    pytest.param("timm:skresnet34", "torchscript", 16, id="timm:skresnet34-torchscript", marks=PAPER_SIZE),
    pytest.param("timm:skresnext50_32x4d", "torchscript", 16, id="timm:skresnext50_32x4d-torchscript",
                 marks=PAPER_SIZE),
]


@pytest.mark.parametrize("name,exporter,blocks", ZOO)
def test_zoo_models_rewritten_with_parity(exported, tmp_path, name, exporter, blocks):
    settings = {"dynamic_batch": True} if exporter == "torchscript" else {"dynamic_batch": True, "exporter": exporter}
    path = exported(name, **settings)
    stage = load_manifest(path)["stages"][-1]
    report = sk_report(stage["passes"])
    assert report.blocks_found == blocks and len(report.rewritten) == blocks and report.left == []
    assert {r["M"] for r in report.rewritten} == {2}
    assert stage["parity"]["max_rel"] <= PARITY
    model = onnx.load(str(path))
    assert_tensorrt_friendly(model)
    assert node_counts(model)["Sigmoid"] == blocks
    rtx_build(path, tmp_path)


def test_rewritten_nodes_carry_the_block_names(exported):
    torchscript = onnx.load(str(exported("sknet-fmnist", dynamic_batch=True)))
    dynamo = onnx.load(str(exported("sknet-fmnist", dynamic_batch=True, exporter="dynamo")))
    for model, block in ((torchscript, "/layers/layers.1/sk"), (dynamo, "layers.1.sk")):
        names = {node.name for node in model.graph.node if node.op_type in ("Sigmoid", "Sub")}
        assert {f"{block}/branch_weight", f"{block}/branch_gap"} <= names


# ------------------------------------------------------------------------------------- BatchNorm

class BatchNormEverywhere(nn.Module):
    """BatchNorm after Conv (with bias), grouped ConvTranspose, MaxPool, Linear, and after a Conv whose
    output is also used elsewhere (cannot be folded into it)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn_conv = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.up, self.bn_up = nn.ConvTranspose2d(8, 8, 2, stride=2, groups=2), nn.BatchNorm2d(8)
        self.pool, self.bn_pool = nn.MaxPool2d(2), nn.BatchNorm2d(8)
        self.shared, self.bn_shared = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.fc, self.bn_fc = nn.Linear(8, 6), nn.BatchNorm1d(6)

    def forward(self, x):
        y = self.bn_pool(self.pool(self.bn_up(self.up(torch.relu(self.bn_conv(self.conv(x)))))))
        s = self.shared(y)
        return self.bn_fc(self.fc((self.bn_shared(s) + s).mean((2, 3))))


def torch_export(module, shape, path, training=torch.onnx.TrainingMode.PRESERVE):
    """TorchScript export keeping BatchNorm (no constant folding), dynamic batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, *shape),), str(path), dynamo=False, training=training,
                          do_constant_folding=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return onnx.load(str(path))


def test_batchnorm_folds_into_layers_or_becomes_scale_and_shift(tmp_path):
    module = randomize_bn(BatchNormEverywhere())
    model = torch_export(module, (3, 16, 16), tmp_path / "bn.onnx")
    assert node_counts(model)["BatchNormalization"] == 5
    original = onnx.load(str(tmp_path / "bn.onnx"))
    optimized, reports = optimize_graph(model, sk_rewrite=False)
    assert reports[0].folded == {"Conv": 1, "ConvTranspose": 1, "Gemm": 1}
    assert reports[0].scale_and_shift == 2 and reports[0].left == []
    assert "BatchNormalization" not in node_counts(optimized)
    assert ort_parity(original, optimized, (3, 16, 16), batches=(1, 3)) <= PARITY
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad(), OnnxRuntimeRunner(optimized) as runner:
        expected = module(x).numpy()
        assert np.abs(runner.infer(x.numpy())["logits"] - expected).max() <= PARITY * np.abs(expected).max()
    onnx.save(optimized, str(tmp_path / "folded.onnx"))
    rtx_build(tmp_path / "folded.onnx", tmp_path)


def test_training_preserve_export_of_sk_net_ends_without_batchnorm(article_sknet, tmp_path):
    module = randomize_bn(article_sknet.SKNet(64, 64, stride=2, M=2))
    model = torch_export(module, (64, 8, 8), tmp_path / "preserve.onnx")
    assert node_counts(model)["BatchNormalization"] == 3
    result = run_cli("optimize", tmp_path / "preserve.onnx", "-o", tmp_path / "out.onnx", "--json")
    assert result.exit_code == 0, result.output
    passes = json.loads(result.stdout)["passes"]
    assert passes[0]["folded"] == {"Conv": 3} and len(passes[1]["rewritten"]) == 1
    optimized = onnx.load(str(tmp_path / "out.onnx"))
    assert_tensorrt_friendly(optimized)
    assert ort_parity(model, optimized, (64, 8, 8)) <= PARITY
    rtx_build(tmp_path / "out.onnx", tmp_path)


def test_training_mode_batchnorm_is_left_with_a_reason(tmp_path):
    module = BatchNormEverywhere().train()
    model = torch_export(module, (3, 16, 16), tmp_path / "train.onnx", training=torch.onnx.TrainingMode.TRAINING)
    before = node_counts(model)
    optimized, reports = optimize_graph(model, sk_rewrite=False)
    assert node_counts(optimized) == before
    assert reports[0].left and all("batch statistics" in entry["reason"] for entry in reports[0].left)


def test_no_fold_bn_and_no_sk_rewrite_switch_the_passes_off(article_sknet, tmp_path):
    module = randomize_bn(article_sknet.SKNet(64, 64, M=2))
    model = torch_export(module, (64, 8, 8), tmp_path / "in.onnx")
    result = run_cli("optimize", tmp_path / "in.onnx", "-o", tmp_path / "bn_kept.onnx", "--no-fold-bn", "--json")
    assert result.exit_code == 0, result.output
    kept = node_counts(onnx.load(str(tmp_path / "bn_kept.onnx")))
    assert kept["BatchNormalization"] == 3 and "Softmax" not in kept
    result = run_cli("optimize", tmp_path / "in.onnx", "-o", tmp_path / "sk_kept.onnx", "--no-sk-rewrite")
    assert result.exit_code == 0, result.output
    assert "fold_bn: 3 BatchNormalization: 3 folded (into Conv 3)" in result.stdout
    assert "sk_rewrite" not in result.stdout
    kept = node_counts(onnx.load(str(tmp_path / "sk_kept.onnx")))
    assert "BatchNormalization" not in kept and kept["Softmax"] == 1
    assert node_counts(model)["Softmax"] == 1
    for rewritten in ("bn_kept", "sk_kept"):
        rtx_build(tmp_path / f"{rewritten}.onnx", tmp_path)


# ---------------------------------------------------------------------------------- safety net

class ChannelSoftmaxSK(ChannelMajorSK):
    """A near miss: laid out (N, M, C) like the paper, but the softmax runs over the channel axis."""

    def forward(self, x):
        u = [branch(x) for branch in self.branches]
        z = self.fc1(functools.reduce(operator.add, u).mean((2, 3), keepdim=True))
        a = self.fc2(z).reshape(x.shape[0], len(u), -1).softmax(2)
        return functools.reduce(operator.add, [u_m * a[:, m, :, None, None] for m, u_m in enumerate(u)])


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_softmax_over_channels_is_left_untouched(unit_export, exporter):
    path, _ = unit_export(f"{__name__}:ChannelSoftmaxSK", {}, (32, 8, 8), exporter, sk_rewrite=False)
    model = onnx.load(str(path))
    optimized, reports = optimize_graph(onnx.load(str(path)))
    report = reports[-1]
    assert report.blocks_found == 0 and report.rewritten == []
    assert len(report.left) == 1 and "softmax slots" in report.left[0]["reason"]
    assert node_counts(optimized)["Softmax"] == 1
    assert ort_parity(model, optimized, (32, 8, 8)) <= PARITY


def test_failed_parity_leaves_the_block_as_exported(unit_export, monkeypatch):
    """Fault injection: a rewrite that swaps the branches is numerically wrong and must not be applied."""
    path, _ = unit_export(REFERENCE, {"in_channels": 64, "out_channels": 64}, (64, 16, 16), "torchscript",
                          sk_rewrite=False)
    correct = sk_select.two_branch_select

    def swapped(f, select, weight, bias):
        select.branches = select.branches[::-1]
        correct(f, select, weight, bias)

    monkeypatch.setattr(sk_select, "two_branch_select", swapped)
    model = onnx.load(str(path))
    optimized, reports = optimize_graph(onnx.load(str(path)))
    report = reports[-1]
    assert report.blocks_found == 1 and report.rewritten == []
    assert "parity failed" in report.left[0]["reason"]
    assert node_counts(optimized) == node_counts(model)


def test_graph_without_sk_blocks_reports_zero(tmp_path):
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
                           nn.Softmax(dim=1)).eval()
    model = torch_export(module, (3, 16, 16), tmp_path / "plain.onnx")
    result = run_cli("optimize", tmp_path / "plain.onnx", "-o", tmp_path / "out.onnx", "--json")
    assert result.exit_code == 0, result.output
    sk = json.loads(result.stdout)["passes"][1]
    assert (sk["blocks_found"], sk["rewritten"], sk["left"]) == (0, [], [])
    optimized = onnx.load(str(tmp_path / "out.onnx"))
    onnx.checker.check_model(optimized)
    assert node_counts(optimized) == node_counts(model)


# ------------------------------------------------------------------------ optimize: files, manifest

def test_optimize_derives_the_export_manifest(unit_export, tmp_path):
    path, _ = unit_export(REFERENCE, {"in_channels": 64, "out_channels": 64}, (64, 16, 16), "dynamo",
                          sk_rewrite=False)
    result = optimize_onnx(path, tmp_path / "opt.onnx")
    assert [report.name for report in result.passes] == ["fold_bn", "sk_rewrite"]
    assert result.node_counts_before["Softmax"] == 1 and "Softmax" not in result.node_counts_after
    assert result.parity["passed"] and result.parity["batches"] == [1, 3]
    assert result.source == {"file": str(path), "sha256": sha256_file(path)}
    assert result.settings == {"fold_bn": True, "sk_rewrite": True, "tolerance": TOLERANCE, "sizes": {},
                               "raw_input": None}
    assert result.simplified is True
    manifest, exported_manifest = load_manifest(tmp_path / "opt.onnx"), load_manifest(path)
    assert result.manifest == tmp_path / "opt.onnx.json"
    assert [s["stage"] for s in manifest["stages"]] == ["export", "optimize"]
    assert manifest["model"] == exported_manifest["model"]
    assert manifest["preprocessing"] == exported_manifest["preprocessing"]
    assert recorded_stage(tmp_path / "opt.onnx") == as_stored(result.record())
    assert list(result.record()) == ["source", "settings", "simplified", "passes", "node_counts_before",
                                     "node_counts_after", "parity", "seconds", "raw_input"]
    rtx_build(tmp_path / "opt.onnx", tmp_path)


def test_optimize_starts_a_manifest_for_foreign_onnx(article_sknet, tmp_path):
    torch_export(randomize_bn(article_sknet.SKNet(64, 64, M=3)), (64, 8, 8), tmp_path / "foreign.onnx")
    result = run_cli("optimize", tmp_path / "foreign.onnx", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 0, result.output
    assert "sk_rewrite: 1 SK blocks found, 1 rewritten (M=3: 1)" in result.stdout
    assert "Softmax" in result.stdout and "wrote" in result.stdout
    manifest = load_manifest(tmp_path / "out.onnx")
    assert manifest["model"] == {"spec": "onnx:foreign.onnx", "checkpoint": None, "kwargs": {}, "num_classes": None,
                                 "dataset": None, "input_size": [64, 8, 8]}
    assert manifest["preprocessing"] is None
    assert [s["stage"] for s in manifest["stages"]] == ["optimize"]
    assert_tensorrt_friendly(onnx.load(str(tmp_path / "out.onnx")), 3)
    rtx_build(tmp_path / "out.onnx", tmp_path)


def test_optimize_bad_inputs(tmp_path, exported):
    good = exported("sknet-fmnist", dynamic_batch=True)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    for source, code in ((truncated, 1), (text, 1), (tmp_path / "missing.onnx", 2)):
        output = tmp_path / f"from_{source.stem}.onnx"
        result = run_cli("optimize", source, "-o", output)
        assert result.exit_code == code, result.output
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
        assert not output.exists() and not (tmp_path / f"{output.name}.json").exists()
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"keep me")
    result = run_cli("optimize", good, "-o", taken)
    assert result.exit_code == 2 and "--force" in result.stderr and taken.read_bytes() == b"keep me"
    result = run_cli("optimize", good, "-o", tmp_path / "x.onnx", "--no-fold-bn", "--no-sk-rewrite")
    assert result.exit_code == 2 and not (tmp_path / "x.onnx").exists()
    with pytest.raises(UsageError):
        optimize_onnx(tmp_path / "missing.onnx", tmp_path / "y.onnx")
    with pytest.raises(SkdeployError, match="not a readable ONNX model"):
        optimize_onnx(text, tmp_path / "y.onnx")


def test_export_prints_what_each_pass_did(tmp_path):
    args = ["export", "--model", "skdeploy.models.sk:sknet_fmnist", "--input-shape", "1x32x32"]
    result = run_cli(*args, "-o", tmp_path / "demo.onnx")
    assert result.exit_code == 0, result.output
    assert "fold_bn: 0 BatchNormalization" in result.stdout
    assert "sk_rewrite: 5 SK blocks found, 5 rewritten (M=2: 5)" in result.stdout
    assert "nodes by op type" in result.stdout and "Sigmoid" in result.stdout
    rtx_build(tmp_path / "demo.onnx", tmp_path)
    result = run_cli(*args, "--no-sk-rewrite", "--no-fold-bn", "-o", tmp_path / "plain.onnx")
    assert result.exit_code == 0, result.output
    assert "sk_rewrite" not in result.stdout
    assert node_counts(onnx.load(str(tmp_path / "plain.onnx")))["Softmax"] == 5
    assert load_manifest(tmp_path / "plain.onnx")["stages"][-1]["passes"] == []


def test_topological_sort_places_a_node_reading_two_outputs_of_one_producer_once():
    from onnx import helper

    from skdeploy.onnx.toposort import replace_nodes

    graph = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["c"], axis=0, name="concat"),
                               helper.make_node("Split", ["x"], ["a", "b"], axis=0, name="split")], "g", [], [])
    replace_nodes(graph, graph.node)
    assert [node.name for node in graph.node] == ["split", "concat"]
