"""Bad inputs to judging: NaN and Inf in inputs and outputs,
tampered preprocessing, accuracy far below the recorded one, model code named by a manifest, 16-bit
pictures, logits off in scale, classify()'s arguments, and checkpoints that are not checkpoints.

CLI rows run through the harness (exit code, one `error:` line, the workspace unchanged); what is not a
command (classify(), the preprocessed values of 16-bit pictures) is a plain test. Data is the
workspace's 16 Fashion-MNIST test images, so every validation here runs the demo model on 16 samples."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from skdeploy.fileio import sha256_file
from skdeploy.manifest import load_manifest, write_manifest
from tests.support.bad_input_cases import DEMO_CHECKPOINT, DEMO_IMAGES, DEMO_ONNX, Case, run_case
from tests.support.helpers import run_cli

VALIDATE_DEMO = ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--data", f"{{ws}}/{DEMO_IMAGES}")
MARKER = "model-code-ran"


# ---- ways to break the inputs ------------------------------------------------------------------------
def pictures_and_labels(workspace):
    """The workspace's images as uint8 (N, 28, 28) and their labels (from the names <label>_<index>.png)."""
    files = sorted((workspace / DEMO_IMAGES).iterdir())
    pixels = np.stack([np.asarray(Image.open(f)) for f in files])
    return pixels, np.array([int(f.name.split("_")[0]) for f in files])


def float_inputs_with(value, sample):
    """Preprocessed-looking float32 inputs (4, 1, 32, 32) with `value` in one pixel of each `sample`."""
    def prepare(workspace):
        inputs = np.random.default_rng(0).normal(size=(4, 1, 32, 32)).astype(np.float32)
        inputs[sample, 0, 5, 7] = value
        np.save(workspace / "bad.npy", inputs)
    return prepare


def edit_demo_onnx(change):
    """Apply change(name -> numpy initializer) to demo.onnx and re-record its sha256 in the manifest, so
    only the weights differ from what the manifest describes (as after a faulty conversion)."""
    def prepare(workspace):
        path = workspace / DEMO_ONNX
        model = onnx.load(path)
        for index, tensor in enumerate(model.graph.initializer):
            array = change(tensor.name, numpy_helper.to_array(tensor).copy())
            if array is not None:
                model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, tensor.name))
        onnx.save(model, path)
        write_manifest(path, load_manifest(path, verify=False), "onnx")
    return prepare


def nan_bias(name, array):
    if name == "fc.bias":
        array[3] = np.nan
        return array
    return None


def classifier_weights_times_50(name, array):
    return array * 50 if name == "fc.weight" else None


def edit_manifest(change):
    def prepare(workspace):
        path = workspace / (DEMO_ONNX + ".json")
        manifest = json.loads(path.read_text())
        change(manifest, workspace)
        path.write_text(json.dumps(manifest))
    return prepare


def tampered_mean_std(manifest, workspace):
    manifest["preprocessing"].update(mean=[0.9], std=[0.01])


def without_model_spec(manifest, workspace):
    """A model entry without its spec, as the damaged-manifest fuzz makes: a usage error, not an internal one."""
    del manifest["model"]["spec"]


def model_code_that_leaves_a_marker(manifest, workspace):
    """Model code that builds the demo network (the workspace's checkpoint fits it) and, on import, writes
    a marker file: what any code in a .py file a manifest names could do."""
    (workspace / "evil.py").write_text(
        f"open({str(workspace / MARKER)!r}, 'w').write('imported')\n"
        "def build(**kwargs):\n"
        "    from skdeploy.models import build_model\n"
        "    return build_model('sknet-fmnist', pretrained=False)\n")
    checkpoint = workspace / DEMO_CHECKPOINT
    manifest["model"].update(spec=f"{workspace / 'evil.py'}:build",
                             checkpoint={"path": str(checkpoint), "sha256": sha256_file(checkpoint)})


def nan_reference(workspace):
    """A saved reference of four samples whose FP32 logits hold a NaN, and those samples as .npy."""
    from skdeploy.data import InputsDigest
    from skdeploy.models.entry import ModelEntry
    from skdeploy.reference import Reference, save_reference

    manifest = load_manifest(workspace / DEMO_ONNX)
    inputs = np.zeros((4, 1, 32, 32), np.float32)
    np.save(workspace / "zeros.npy", inputs)
    logits = np.zeros((4, 10), np.float32)
    logits[2, 5] = np.nan
    reference = Reference("demo", "saved", ModelEntry.from_manifest(manifest), manifest["preprocessing"])
    digest = InputsDigest()
    digest.update(inputs)
    data = {"source": f"npy:{workspace / 'zeros.npy'}", "count": len(inputs), "inputs_sha256": digest.hexdigest()}
    save_reference(workspace / "ref.npz", logits, None, data, reference)


def random_bytes(workspace):
    (workspace / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))


def truncated_checkpoint(workspace):
    data = (workspace / DEMO_CHECKPOINT).read_bytes()
    (workspace / "truncated.pt").write_bytes(data[:len(data) // 2])


def mislabelled_fp16_candidate(workspace):
    """A real FP16 calibration of the demo ONNX (its manifest records the top-1 it measured, about 0.9),
    and the 16 images with every label shifted by one class: accuracy near 0 on the same pictures."""
    from skdeploy.log import QUIET, log
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    with log.verbosity(QUIET):
        calibrate_model(workspace / DEMO_ONNX, workspace / "demo.fp16.onnx",
                        CalibrationSettings(precision="fp16", calib_images=32, holdout_images=100))
    pixels, labels = pictures_and_labels(workspace)
    np.savez(workspace / "mislabelled.npz", images=pixels, labels=(labels + 1) % 10)


CASES = [
    Case("NaN in the inputs", ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--data", "{ws}/bad.npy"), 2,
         r"bad\.npy.*holds NaN or Inf in sample 2; inputs must be finite",
         float_inputs_with(np.nan, [2])),
    Case("Inf in the inputs", ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--data", "{ws}/bad.npy"), 2,
         r"holds NaN or Inf in sample 0 and 2 more of its batch", float_inputs_with(-np.inf, [0, 1, 3])),
    Case("a candidate that outputs NaN", VALIDATE_DEMO, 1,
         r"validation failed: demo\.onnx \(non-finite outputs 16 vs limit == 0", edit_demo_onnx(nan_bias)),
    Case("a reference that outputs NaN",
         ("validate", "--reference", "{ws}/ref.npz", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--data", "{ws}/zeros.npy"),
         1, r"the FP32 reference \(saved ref\.npz .*\) outputs NaN or Inf for sample 2",
         nan_reference),
    Case("manifest with tampered mean and std", VALIDATE_DEMO, 1,
         r"demo\.onnx \(manifest preprocessing mean \[0\.9\]; std \[0\.01\] vs the reference's mean \[0\.286\]; "
         r"std \[0\.353\]\)", edit_manifest(tampered_mean_std)),
    Case("manifest naming a .py model", VALIDATE_DEMO, 2,
         r"the manifest of demo\.onnx names model code '.*evil\.py:build'.*pass --trust-model-code",
         edit_manifest(model_code_that_leaves_a_marker)),
    Case("manifest whose model entry has no spec", VALIDATE_DEMO, 2,
         r"the manifest of demo\.onnx names no model \(its model entry has no spec\).*pass --reference MODEL",
         edit_manifest(without_model_spec)),
    Case("bench --torch of a manifest naming a .py model",
         ("bench", f"{{ws}}/{DEMO_ONNX}", "--torch", "--batch", "1", "--iterations", "1", "--warmup", "0"), 2,
         r"names model code '.*evil\.py:build'.*pass --trust-model-code",
         edit_manifest(model_code_that_leaves_a_marker)),
    Case("classifier weights x50", VALIDATE_DEMO, 1, r"demo\.onnx \(.*SNR dB -3\d\.\d+ vs limit >= 60",
         edit_demo_onnx(classifier_weights_times_50)),
    Case("top-1 far below the recorded one",
         ("validate", "--candidate", "{ws}/demo.fp16.onnx", "--data", "{ws}/mislabelled.npz"), 1,
         r"demo\.fp16\.onnx \(top-1 below the recorded \(points\) \d+\.?\d* vs limit <= \d+",
         mislabelled_fp16_candidate),
    Case("a checkpoint of random bytes", ("export", "--checkpoint", "{ws}/random.pt", "-o", "{ws}/out.onnx"), 1,
         r"random\.pt is not a PyTorch checkpoint \(corrupt or truncated: Unsupported operand \d+\)$", random_bytes),
    Case("a truncated checkpoint", ("export", "--checkpoint", "{ws}/truncated.pt", "-o", "{ws}/out.onnx"), 1,
         r"truncated\.pt is not a PyTorch checkpoint \(PytorchStreamReader failed reading zip archive: "
         r"failed finding central directory\)$", truncated_checkpoint),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case, workspace):
    run_case(case, workspace)


# ---- the rules' other side: trusted code runs, real 16-bit pictures keep their values ----------------
def test_trusted_model_code_is_imported(workspace):
    edit_manifest(model_code_that_leaves_a_marker)(workspace)
    args = [str(a).format(ws=workspace) for a in VALIDATE_DEMO] + ["--trust-model-code", "--limit", "4", "--json"]
    result = run_cli(*args)
    assert (workspace / MARKER).read_text() == "imported"
    assert result.exit_code == 0, result.stderr  # the user's own model with the checkpoint is the demo model
    assert json.loads(result.stdout)["candidates"][0]["metrics"]["agreement"] == 1.0


def sixteen_bit_copy(workspace):
    """The images as 16-bit PNGs with every value times 257, which maps 0..255 exactly onto 0..65535."""
    folder = workspace / "images16"
    folder.mkdir()
    for file in sorted((workspace / DEMO_IMAGES).iterdir()):
        wide = np.asarray(Image.open(file)).astype(np.uint16) * 257
        Image.fromarray(wide).save(folder / file.name)
        assert Image.open(folder / file.name).mode == "I;16"
    return folder


def test_sixteen_bit_images_give_the_inputs_of_their_eight_bit_originals(workspace):
    from skdeploy.data import Preprocessing, open_data

    def read(folder):
        return np.concatenate([inputs for _, inputs in open_data(folder, preprocessing).batches(64)])

    preprocessing = Preprocessing.from_dict(load_manifest(workspace / DEMO_ONNX)["preprocessing"])
    eight, sixteen = read(workspace / DEMO_IMAGES), read(sixteen_bit_copy(workspace))
    # v * 257 * 255 / 65535 = v: the same pictures, not a saturated white. Resizing 28 -> 32 rounds 8-bit
    # pixels to whole gray levels and keeps 16-bit ones fractional: they differ by under one gray level
    one_gray_level = 1 / 255 / preprocessing.std[0]
    assert np.abs(sixteen - eight).max() < one_gray_level
    assert np.abs(sixteen - eight).mean() < one_gray_level / 4


# ---- classify(): its arguments -----------------------------------------------------------------------
@pytest.fixture
def demo_runner(workspace):
    from skdeploy import load_runner

    with load_runner(workspace / DEMO_ONNX) as runner:
        yield runner


def test_classify_sixteen_bit_images_as_their_eight_bit_originals(demo_runner, workspace):
    from skdeploy import classify

    files = sorted((workspace / DEMO_IMAGES).iterdir())
    eight = classify(demo_runner, [Image.open(f) for f in files])
    sixteen = classify(demo_runner, [Image.open(f) for f in sorted(sixteen_bit_copy(workspace).iterdir())])
    # the same best class; its probability within 0.02 (the pictures differ by under one gray level)
    assert [row[0][0] for row in sixteen] == [row[0][0] for row in eight]
    np.testing.assert_allclose([row[0][1] for row in sixteen], [row[0][1] for row in eight], atol=0.02)


def test_classify_of_no_images_is_no_answers(demo_runner):
    from skdeploy import classify

    assert classify(demo_runner, []) == []


def test_classify_takes_an_array_of_uint8_pictures_as_the_same_pictures(demo_runner, workspace):
    from skdeploy import classify

    pixels, labels = pictures_and_labels(workspace)
    from_array = classify(demo_runner, pixels, top_k=3)
    from_images = classify(demo_runner, [Image.fromarray(p) for p in pixels], top_k=3)
    assert from_array == from_images and len(from_array) == 16
    # the shipped model gets most of these right: the best class is the label's name for at least 12 of 16
    from skdeploy.data import FASHION_MNIST_CLASSES

    assert sum(row[0][0] == FASHION_MNIST_CLASSES[label] for row, label in zip(from_array, labels, strict=True)) >= 12


def test_classify_answers_every_class_with_top_k_equal_to_the_classes(demo_runner, workspace):
    from skdeploy import classify

    (row,) = classify(demo_runner, [Image.open(next((workspace / DEMO_IMAGES).iterdir()))], top_k=10)
    assert len({name for name, _ in row}) == 10 and sum(p for _, p in row) == pytest.approx(1.0)
    assert [p for _, p in row] == sorted((p for _, p in row), reverse=True)


@pytest.mark.parametrize("top_k, message", [(-1, "at least 1, got -1"), (0, "at least 1, got 0"),
                                            (11, "at most 10, the model's number of classes, got 11"),
                                            (2.5, "whole number"), (True, "whole number")])
def test_classify_refuses_a_top_k_outside_the_classes(demo_runner, workspace, top_k, message):
    from skdeploy import classify
    from skdeploy.errors import UsageError

    with pytest.raises(UsageError, match=message):
        classify(demo_runner, [Image.open(next((workspace / DEMO_IMAGES).iterdir()))], top_k=top_k)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 28, 28), np.float32), "uint8 pictures"), (np.zeros((28,), np.uint8), "uint8 pictures"),
    (Image.new("L", (28, 28)), "got one Image; wrap it"), ([np.zeros((28, 28), np.uint8)], "got a ndarray")])
def test_classify_refuses_what_is_not_pictures(demo_runner, images, message):
    from skdeploy import classify
    from skdeploy.errors import UsageError

    with pytest.raises(UsageError, match=message):
        classify(demo_runner, images)


def test_a_checkpoint_with_python_objects_is_still_described_as_such(tmp_path):
    """The other side of the random-bytes row: a real pickled module is what "Python objects" means."""
    import torch

    from skdeploy.errors import SkdeployError
    from skdeploy.models.checkpoint import read_state_dict

    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(SkdeployError, match="holds Python objects beyond tensors"):
        read_state_dict(tmp_path / "module.pt")
