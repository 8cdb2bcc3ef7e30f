"""The FP32 reference (skdeploy/reference.py): rebuilt from a manifest, refused or warned about when its
checkpoint changed, and saved references that only answer for the inputs they were saved from."""
import hashlib
import json
import shutil

import numpy as np
import pytest

from skdeploy.calib.accuracy import pytorch_reference
from skdeploy.data import inputs_sha256
from skdeploy.errors import SkdeployError, UsageError
from skdeploy.manifest import load_manifest
from skdeploy.models import ModelEntry
from skdeploy.reference import Reference, load_saved_reference, reference_from_manifest, save_reference
from skdeploy.runners import OnnxRuntimeRunner


def test_reference_from_manifest_runs_the_model_the_onnx_was_exported_from(demo_checkpoint_export):
    checkpoint, onnx_path = demo_checkpoint_export
    reference = reference_from_manifest(onnx_path)
    assert reference.kind == "pytorch" and reference.source == f"sknet-fmnist ({checkpoint})"
    inputs = np.random.default_rng(1).standard_normal((7, 1, 32, 32)).astype(np.float32)
    with reference.runner() as runner:
        logits = runner.run_batched(inputs, 3)
    with OnnxRuntimeRunner(onnx_path) as onnx_runner:  # export proved the ONNX equal to its PyTorch model
        expected = onnx_runner.infer(inputs)["logits"]
    assert logits.shape == (7, 10)
    assert np.max(np.abs(logits - expected)) <= 1e-4 * np.max(np.abs(expected))  # export's parity tolerance


@pytest.fixture
def changed_checkpoint_export(demo_checkpoint_export, tmp_path):
    """A copy of the demo export whose manifest points at a checkpoint edited after the export."""
    import torch

    checkpoint, onnx_path = demo_checkpoint_export
    state = torch.load(checkpoint, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0
    edited = tmp_path / "edited.pt"
    torch.save(state, edited)
    copy = tmp_path / "demo.onnx"
    shutil.copy(onnx_path, copy)
    manifest = load_manifest(onnx_path)
    manifest["model"]["checkpoint"]["path"] = str(edited)
    (tmp_path / "demo.onnx.json").write_text(json.dumps(manifest))
    return copy


def test_changed_checkpoint_is_a_warning_for_validation_and_refused_by_calibration(changed_checkpoint_export, capsys):
    reference = reference_from_manifest(changed_checkpoint_export)
    expected = f"warning: checkpoint {changed_checkpoint_export.parent / 'edited.pt'} changed since demo.onnx was " \
               "made (sha256 differs)"
    assert "".join(capsys.readouterr().err.split()) == "".join(expected.split())  # rich wraps and folds lines
    assert reference.kind == "pytorch"
    with pytest.raises(SkdeployError, match="changed since demo.onnx was made"):
        reference_from_manifest(changed_checkpoint_export, same_weights=True)
    # calibration then scores against the FP32 ONNX instead
    assert pytorch_reference(load_manifest(changed_checkpoint_export), changed_checkpoint_export) is None


def test_saved_reference_answers_only_for_its_own_inputs(tmp_path):
    inputs = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    logits = np.array([[1.0, 2.0], [3.0, 0.5]], np.float32)
    data = {"source": "npz:samples.npz", "count": 2, "inputs_sha256": hashlib.sha256(inputs.tobytes()).hexdigest()}
    model = Reference("toy (toy.pt)", "pytorch", ModelEntry(spec="toy", input_size=[3, 2, 2]), {"resize": 2})
    save_reference(tmp_path / "ref.npz", logits, np.array([1, 0]), data, model)
    saved = load_saved_reference(tmp_path / "ref.npz")
    assert saved.kind == "saved" and saved.source == "saved ref.npz (toy)" and saved.preprocessing == {"resize": 2}
    assert saved.model == ModelEntry(spec="toy", input_size=[3, 2, 2])
    assert saved.saved["logits"].tolist() == logits.tolist()
    saved.check_saved_data(2, inputs_sha256(inputs.copy()), "npz:samples.npz")
    saved.check_saved_data(2, None, "npz:samples.npz")
    assert saved.saved["labels"].tolist() == [1, 0]
    changed = inputs.copy()
    changed[1, 0, 0, 0] += 1
    with pytest.raises(UsageError, match=r"the data \(npz:other, 2 samples\) is not what saved ref.npz \(toy\) was "
                                         r"saved from \(npz:samples.npz, 2 samples\): input sha256 differs"):
        saved.check_saved_data(2, inputs_sha256(changed), "npz:other")
    with pytest.raises(UsageError, match=r"the data \(npz:other, 3 samples\)"):
        saved.check_saved_data(3, None, "npz:other")
    with pytest.raises(UsageError, match="holds saved outputs, not a model to run"):
        saved.runner()
