"""`skdeploy export`: checkpoints, parity, manifest, and every bad input with its exit code."""
import argparse
import json
import os

import onnx
import pytest
import torch

from skdeploy.models import load_model
from skdeploy.models.checkpoint import read_state_dict
from tests.support.helpers import as_stored, randomize_bn, recorded_stage, run_cli


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    """A random-weight demo-model state_dict with randomised BN, saved in every container form."""
    model = randomize_bn(load_model(arch="sknet-fmnist", pretrained=False).module, seed=3)
    state = model.state_dict()
    folder = tmp_path_factory.mktemp("ckpt")
    forms = {
        "raw": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {"lr": torch.tensor(0.1)}},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }
    paths = {}
    for name, payload in forms.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(payload, paths[name])
    return state, paths


@pytest.mark.parametrize("form", ["raw", "state_dict", "model", "module_prefix"])
def test_checkpoint_containers_load(demo_state, form):
    state, paths = demo_state
    loaded = read_state_dict(paths[form])
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_export_cli_writes_onnx_and_manifest(demo_state, tmp_path):
    _, paths = demo_state
    out = tmp_path / "demo.onnx"
    result = run_cli("export", "--arch", "sknet-fmnist", "--checkpoint", paths["module_prefix"], "--dynamic-batch",
                     "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "max rel" in result.stdout
    model = onnx.load(out)
    onnx.checker.check_model(model)
    manifest = json.loads((tmp_path / "demo.onnx.json").read_text())
    assert manifest["format"] == "skdeploy-manifest/1"
    assert manifest["artifact"]["kind"] == "onnx"
    assert manifest["model"]["spec"] == "sknet-fmnist"
    assert manifest["model"]["checkpoint"]["sha256"] == __import__("skdeploy.fileio").fileio.sha256_file(
        paths["module_prefix"])
    assert manifest["inputs"] == [{"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]
    assert manifest["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert manifest["preprocessing"]["channel_order"] == "GRAY"
    assert manifest["preprocessing"]["crop"] == [32, 32]
    assert manifest["opset"] == 17
    stage = manifest["stages"][0]
    assert stage["stage"] == "export" and stage["exporter"] == "torchscript"
    assert stage["parity"]["passed"] and stage["parity"]["max_rel"] < 1e-4
    assert stage["parity"]["batches"] == [1, 4] and stage["parity"]["inputs"] == ["random", "real"]
    assert stage["node_counts"]["Conv"] >= 30


def test_export_api_returns_the_result_its_manifest_records(demo_state, tmp_path):
    from skdeploy.fileio import sha256_file
    from skdeploy.stages.export import ExportSettings, export_model

    _, paths = demo_state
    out = tmp_path / "demo.onnx"
    settings = ExportSettings(dynamic_batch=True)
    result = export_model(load_model(arch="sknet-fmnist", checkpoint=paths["raw"]), out, settings)
    assert result.output == out and result.manifest == tmp_path / "demo.onnx.json" and result.settings is settings
    assert result.parity["passed"] and result.parity["batches"] == [1, 4] and result.simplified is True
    assert [report.name for report in result.passes] == ["fold_bn", "sk_rewrite"]
    assert result.node_counts_exported["Softmax"] == 5 and "Softmax" not in result.node_counts  # 5 SK blocks, M=2
    assert recorded_stage(out) == as_stored(result.record())
    assert list(result.record()) == ["exporter", "settings", "source", "simplified", "parity", "passes",
                                     "node_counts_exported", "node_counts", "seconds", "raw_input",
                                     "random_weights"]
    assert result.source == {"file": str(paths["raw"]), "sha256": sha256_file(paths["raw"])}
    assert result.raw_input is None and result.random_weights is None  # trained weights from the checkpoint
    manifest = json.loads((tmp_path / "demo.onnx.json").read_text())
    assert manifest["preprocessing"]["in_graph"] is False  # the graph takes normalized inputs
    assert manifest["model"] == {"spec": "sknet-fmnist", "checkpoint": {"path": str(paths["raw"]),
                                                                        "sha256": sha256_file(paths["raw"])},
                                 "kwargs": {}, "num_classes": 10, "dataset": "fashion-mnist", "input_size": [1, 32, 32]}


def test_export_static_batch_with_dynamo(demo_state, tmp_path):
    _, paths = demo_state
    out = tmp_path / "static.onnx"
    result = run_cli("export", "--arch", "sknet-fmnist", "--checkpoint", paths["raw"], "--batch", "3",
                     "--exporter", "dynamo", "--json", "-o", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parity"]["batches"] == [3]
    assert [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim] == [3, 1, 32, 32]


def test_refuses_to_overwrite_without_force(demo_state, tmp_path):
    _, paths = demo_state
    out = tmp_path / "demo.onnx"
    out.write_bytes(b"keep me")
    result = run_cli("export", "--arch", "sknet-fmnist", "--checkpoint", paths["raw"], "-o", out)
    assert result.exit_code == 2
    assert "--force" in result.stderr and out.read_bytes() == b"keep me"
    assert run_cli("export", "--arch", "sknet-fmnist", "--checkpoint", paths["raw"], "-o", out,
                   "--force").exit_code == 0
    onnx.checker.check_model(onnx.load(out))


def _assert_one_line_error(result, code, text, folder):
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], result.stderr  # progress may precede it; the error is one final line
    assert text in errors[0]
    assert "Traceback" not in result.stderr
    left = os.listdir(folder) if folder.exists() else []  # a folder the command made goes with its outputs
    assert not [p for p in left if p.endswith((".onnx", ".json", ".tmp"))]


class Unpicklable:
    pass


def test_bad_checkpoints(demo_state, tmp_path):
    state, _ = demo_state
    out = tmp_path / "o.onnx"
    export = lambda ckpt: run_cli("export", "--arch", "sknet-fmnist", "--checkpoint", ckpt, "-o", out)  # noqa: E731

    _assert_one_line_error(export(tmp_path / "missing.pt"), 2, "does not exist", tmp_path)

    text = tmp_path / "notes.txt"
    text.write_text("these are not weights")
    _assert_one_line_error(export(text), 1, "not a PyTorch checkpoint", tmp_path)
    text.unlink()

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1), "obj": Unpicklable()}, pickled)
    result = export(pickled)
    _assert_one_line_error(result, 1, "weights_only=True", tmp_path)
    assert "refuses" in result.stderr and "state_dict()" in result.stderr
    pickled.unlink()

    broken = {k: v for k, v in state.items() if not k.startswith("fc.")}
    broken["extra.weight"] = torch.zeros(1)
    mismatched = tmp_path / "mismatch.pt"
    torch.save(broken, mismatched)
    result = export(mismatched)
    _assert_one_line_error(result, 1, "missing keys: fc.weight, fc.bias", tmp_path)
    assert "unexpected keys: extra.weight" in result.stderr
    mismatched.unlink()

    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    _assert_one_line_error(export(empty), 1, "holds no state_dict", tmp_path)


def test_usage_errors(tmp_path, article_sknet):
    out = tmp_path / "o.onnx"
    cases = [
        (("--model", "nonsense"), "must be"),
        (("--model", "timm:skresnet18", "--model-kwargs", "{bad json"), "not valid JSON"),
        (("--model", f"{article_sknet.__file__}:SKNet", "--model-kwargs",
          '{"in_channels": 40, "out_channels": 40}'), "cannot be built"),
        (("--arch", "sknet-fmnist", "--input-shape", "32x32"), "--input-shape"),
        (("--arch", "resnet50"), "unknown --arch"),
    ]
    for args, text in cases:
        _assert_one_line_error(run_cli("export", *args, "-o", out), 2, text, tmp_path)


def test_unwritable_output_folder(demo_state, tmp_path):
    _, paths = demo_state
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run_cli("export", "--arch", "sknet-fmnist", "--checkpoint", paths["raw"], "-o", blocker / "x.onnx")
    assert result.exit_code == 1 and result.stderr.startswith("error: cannot create output folder")


def test_parity_failure_keeps_no_output(tmp_path):
    source = tmp_path / "tricky.py"
    source.write_text(
        "import torch\n"
        "class Tricky(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 8, 3)\n"
        "    def forward(self, x):\n"
        "        y = self.conv(x).mean((2, 3))\n"
        "        return y * 1.01 if torch.onnx.is_in_onnx_export() else y\n"
        "def build():\n"
        "    return Tricky()\n")
    out_folder = tmp_path / "out"
    result = run_cli("export", "--model", f"{source}:build", "--input-shape", "3x16x16", "-o", out_folder / "t.onnx")
    _assert_one_line_error(result, 1, "does not match PyTorch", out_folder)
