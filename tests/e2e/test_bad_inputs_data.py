"""Bad inputs in the data and the weights: labels that do not name the model's classes, pictures in every
format Pillow reads (and none of 0x0 pixels or bomb size), saved references of the wrong shape, weights
that are random or integer, graphs with control flow, Python warnings, and the runner API's arguments.

CLI rows run through the harness (exit code, one `error:` line, the workspace unchanged); what succeeds
with a different result, or is not a command (the runner API), is a plain test. Data is the workspace's
16 Fashion-MNIST test images, named <label>_<index>.png."""
import json
import struct
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from skdeploy.data import FASHION_MNIST_CLASSES
from skdeploy.manifest import load_manifest
from tests.support.bad_input_cases import DEMO_CHECKPOINT, DEMO_IMAGES, DEMO_ONNX, Case, run_case
from tests.support.helpers import run_cli

VALIDATE_DEMO = ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--data")


def pictures_and_labels(workspace):
    """The workspace's images as uint8 (N, 28, 28) and their labels (from the names <label>_<index>.png)."""
    files = sorted((workspace / DEMO_IMAGES).iterdir())
    return np.stack([np.asarray(Image.open(f)) for f in files]), np.array([int(f.name.split("_")[0]) for f in files])


# ---- ways to break the inputs ------------------------------------------------------------------------
def labels_npz(change):
    """labelled.npz: the 16 pictures with labels change(labels) (any dtype or shape)."""
    def prepare(workspace):
        pixels, labels = pictures_and_labels(workspace)
        np.savez(workspace / "labelled.npz", images=pixels, labels=change(labels))
    return prepare


def with_label(position, value):
    def change(labels):
        labels = labels.astype(np.float64 if isinstance(value, float) else np.int64)
        labels[position] = value
        return labels
    return change


def class_folders(name_of):
    """classes/<name_of(label)>/<file> for each of the 16 pictures."""
    def prepare(workspace):
        for file in sorted((workspace / DEMO_IMAGES).iterdir()):
            folder = workspace / "classes" / name_of(int(file.name.split("_")[0]))
            folder.mkdir(parents=True, exist_ok=True)
            file.rename(folder / file.name)
        (workspace / DEMO_IMAGES).rmdir()
    return prepare


def png_header(width, height):
    """A PNG that says it is width x height gray pixels (its data is empty): Pillow reads the size first."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def bomb_in_images(workspace):
    (workspace / DEMO_IMAGES / "bomb.png").write_bytes(png_header(30000, 30000))


def empty_pictures(workspace):
    np.save(workspace / "empty.npy", np.zeros((4, 0, 0), np.uint8))


def saved_reference(logits_of, labels_of):
    """ref.npz over the 16 images (really hashed), with logits_of(n) and labels_of(n) as its arrays."""
    def prepare(workspace):
        from skdeploy.data import Preprocessing, inputs_sha256, open_data
        from skdeploy.models.entry import ModelEntry
        from skdeploy.reference import Reference, save_reference

        manifest = load_manifest(workspace / DEMO_ONNX)
        data = open_data(workspace / DEMO_IMAGES, Preprocessing.from_dict(manifest["preprocessing"]))
        inputs = np.concatenate([batch for _, batch in data.batches(16)])
        count = len(inputs)
        reference = Reference("demo", "saved", ModelEntry.from_manifest(manifest), manifest["preprocessing"])
        record = {"source": data.origin, "count": count, "inputs_sha256": inputs_sha256(inputs)}
        save_reference(workspace / "ref.npz", logits_of(count), labels_of(count), record, reference)
    return prepare


def integer_checkpoint(workspace):
    """The demo checkpoint with every floating tensor as int8 (as a quantized export might store them)."""
    import torch

    state = torch.load(workspace / DEMO_CHECKPOINT, weights_only=True)
    torch.save({k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state.items()},
               workspace / "int8.pt")


def random_weight_export(workspace):
    """random.onnx: the demo model exported with a num_classes its shipped weights do not have."""
    from skdeploy.log import QUIET, log
    from skdeploy.models import load_model
    from skdeploy.stages.export import ExportSettings, export_model

    with log.verbosity(QUIET):
        export_model(load_model(model_kwargs={"num_classes": 5}), workspace / "random.onnx",
                     ExportSettings(dynamic_batch=True))


def control_flow_onnx(workspace):
    """branch.onnx: a valid FP32 graph (checked, runs in onnxruntime) whose If picks y or -y by y's sum."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 32, 32])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1])
    branch = [helper.make_graph([helper.make_node(op, ["y"], [f"{op}_out"])], f"{op}_branch", [],
                                [helper.make_tensor_value_info(f"{op}_out", TensorProto.FLOAT, [1, 1, 32, 32])])
              for op in ("Identity", "Neg")]
    nodes = [helper.make_node("Conv", ["input", "weight"], ["y"], name="conv"),
             helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0, name="sum"),
             helper.make_node("Greater", ["total", "zero"], ["positive"], name="test"),
             helper.make_node("If", ["positive"], ["z"], then_branch=branch[0], else_branch=branch[1], name="pick"),
             helper.make_node("GlobalAveragePool", ["z"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["logits"], name="flat")]
    weights = [numpy_helper.from_array(np.full((1, 1, 1, 1), 2.0, np.float32), "weight"),
               numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    model = helper.make_model(helper.make_graph(nodes, "branch", [x], [out], weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, workspace / "branch.onnx")


LABEL_ROWS = [
    ("label 99", with_label(3, 99), r"labelled\.npz: label 99 of sample 3 is outside the model's classes 0-9"),
    ("label -1", with_label(0, -1), r"labelled\.npz: label -1 of sample 0 is outside the model's classes 0-9"),
    ("label NaN", with_label(5, np.nan), r"labels must be whole class indices, got nan for sample 5"),
    ("label 3.7", with_label(2, 3.7), r"labels must be whole class indices, got 3\.7 for sample 2"),
    ("2-D labels", lambda labels: np.stack([labels, labels], axis=1),
     r"labels must be one class index per sample \(a 1-D array\), got shape \(16, 2\)"),
    ("text labels", lambda labels: np.array([FASHION_MNIST_CLASSES[v] for v in labels]),
     r"labels must be whole class indices, got dtype <U\d+"),
]

CASES = [
    *[Case(f"validate: .npz {name}", (*VALIDATE_DEMO, "{ws}/labelled.npz"), 2, message, labels_npz(change))
      for name, change, message in LABEL_ROWS],
    Case("calibrate: .npz label 99",
         ("calibrate", f"{{ws}}/{DEMO_ONNX}", "--int8", "--calib-data", "{ws}/labelled.npz", "--calib-images", "8",
          "--holdout-images", "8", "-o", "{ws}/out.onnx"), 2,
         r"labelled\.npz: label 99 of sample 3 is outside the model's classes 0-9", labels_npz(with_label(3, 99))),
    Case("class folders named neither by class nor by index", (*VALIDATE_DEMO, "{ws}/classes"), 2,
         r"class folder 'kind\d' in .*classes is not one of the model's classes \(T-shirt/top, .*\) or class "
         r"index 0-9", class_folders(lambda label: f"kind{label}")),
    Case("class folder with an index beyond the classes", (*VALIDATE_DEMO, "{ws}/classes"), 2,
         r"class folder '1[0-9]' in .*classes is not one of the model's classes .* or class index 0-9",
         class_folders(lambda label: str(label + 10))),
    Case("a decompression bomb", (*VALIDATE_DEMO, f"{{ws}}/{DEMO_IMAGES}"), 2,
         r"images/bomb\.png is too large to decode safely: Image size \(900000000 pixels\) exceeds limit",
         bomb_in_images),
    Case("pictures of 0x0 pixels", (*VALIDATE_DEMO, "{ws}/empty.npy"), 2,
         r"empty\.npy holds pictures of 0x0 pixels; there is nothing to resize", empty_pictures),
    Case("saved reference with 1-D logits",
         ("validate", "--reference", "{ws}/ref.npz", "--candidate", f"{{ws}}/{DEMO_ONNX}"), 2,
         r"ref\.npz is damaged: its logits must be numbers of shape \(samples, classes\), got float32 \(16,\)",
         saved_reference(lambda n: np.zeros(n, np.float32), lambda n: None)),
    Case("saved reference with fewer labels than logits",
         ("validate", "--reference", "{ws}/ref.npz", "--candidate", f"{{ws}}/{DEMO_ONNX}"), 2,
         r"ref\.npz is damaged: it holds 15 labels for 16 samples of logits",
         saved_reference(lambda n: np.zeros((n, 10), np.float32), lambda n: np.zeros(n - 1, np.int64))),
    Case("saved reference with a label beyond its logits",
         ("validate", "--reference", "{ws}/ref.npz", "--candidate", f"{{ws}}/{DEMO_ONNX}"), 2,
         r"ref\.npz \(its saved labels\): label 10 of sample 0 is outside the model's classes 0-9",
         saved_reference(lambda n: np.zeros((n, 10), np.float32), lambda n: np.full(n, 10, np.int64))),
    Case("a checkpoint of int8 tensors", ("export", "--checkpoint", "{ws}/int8.pt", "-o", "{ws}/out.onnx"), 1,
         r"int8\.pt does not fit the model: integer tensors for floating-point parameters: \S+ int8, .*\(\d+ in all\)",
         integer_checkpoint),
    Case("deploy of an ONNX exported with random weights",
         ("deploy", "{ws}/random.onnx", "-o", "{ws}/bundle"), 2,
         r"random\.onnx was exported with random weights \(these --model-kwargs change the model: .*\); a bundle "
         r"of an untrained model classifies noise\. Give --checkpoint, or pass --random-weights",
         random_weight_export),
    Case("deploy of a model that ships no weights, without a checkpoint", ("deploy", "--arch", "sknet26", "-o",
                                                                            "{ws}/bundle"), 2,
         r"no --checkpoint given and sknet26 ships no weights; a bundle of an untrained model classifies noise"),
    Case("calibrate of a graph with an If node",
         ("calibrate", "{ws}/branch.onnx", "--int8", "--calib-data", f"{{ws}}/{DEMO_IMAGES}", "--calib-images", "8",
          "--holdout-images", "0", "--mean", "0.5", "--std", "0.5", "-o", "{ws}/out.onnx"), 2,
         r"branch\.onnx has control flow \(If node 'pick' with subgraphs\), which calibration does not handle",
         control_flow_onnx),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case, workspace):
    run_case(case, workspace)


def validated(workspace, data, *extra):
    result = run_cli("validate", "--candidate", workspace / DEMO_ONNX, "--data", data, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


# ---- class folders: named by the model's classes, whichever are present --------------------------------
@pytest.mark.parametrize("name_of", [lambda label: FASHION_MNIST_CLASSES[label].replace("/", "-").lower(), str],
                         ids=["class names", "class indices"])
def test_class_folders_label_by_name_or_index_with_classes_absent(workspace, name_of):
    """The 16 pictures hold 8 of the 10 classes: numbering folders by position would shift the labels."""
    class_folders(name_of)(workspace)
    assert len(list((workspace / "classes").iterdir())) < len(FASHION_MNIST_CLASSES)
    report, _ = validated(workspace, workspace / "classes")
    _, labels = pictures_and_labels_of(workspace / "classes")
    by_file, _ = validated_from_npz(workspace, labels)
    assert report["reference"]["top1"] == by_file["reference"]["top1"] >= 0.75
    assert report["data"]["class_names"] == list(FASHION_MNIST_CLASSES)


def pictures_and_labels_of(folder):
    files = sorted(folder.rglob("*.png"), key=lambda f: f.name)
    return np.stack([np.asarray(Image.open(f)) for f in files]), np.array([int(f.name.split("_")[0]) for f in files])


def validated_from_npz(workspace, labels):
    pixels, _ = pictures_and_labels_of(workspace / "classes")
    np.savez(workspace / "by_file.npz", images=pixels, labels=labels)
    return validated(workspace, workspace / "by_file.npz")


# ---- every picture format Pillow reads ---------------------------------------------------------------
def test_gif_and_tiff_pictures_are_read_and_other_files_are_counted(workspace):
    folder = workspace / DEMO_IMAGES
    as_png, _ = validated(workspace, folder)
    for file, suffix in zip(sorted(folder.iterdir())[:4], (".gif", ".tif", ".tiff", ".ppm"), strict=True):
        Image.open(file).save(file.with_suffix(suffix))  # lossless for 8-bit gray: the very same pixels
        file.unlink()
    (folder / "README.txt").write_text("the 16 test pictures")
    report, stderr = validated(workspace, folder)
    assert report["data"]["count"] == 16 and report["data"]["inputs_sha256"] == as_png["data"]["inputs_sha256"]
    assert "skipped 1 file in" in stderr and "not a picture format Pillow reads (first: README.txt)" in stderr


# ---- weights: shipped ones kept for compatible model_kwargs, random ones said --------------------------
def test_default_model_kwargs_keep_the_shipped_weights(tmp_path):
    result = run_cli("export", "--model-kwargs", '{"num_classes": 10}', "-o", tmp_path / "demo.onnx")
    assert result.exit_code == 0, result.stderr
    manifest = load_manifest(tmp_path / "demo.onnx")
    assert manifest["model"]["checkpoint"]["path"] == "skdeploy/weights/sknet_fmnist.pt"
    assert manifest["stages"][-1]["random_weights"] is None and "random weights" not in result.stderr


def test_model_kwargs_that_change_the_model_export_random_weights_and_say_so(tmp_path):
    result = run_cli("export", "--model-kwargs", '{"num_classes": 5}', "-o", tmp_path / "five.onnx")
    assert result.exit_code == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if "random weights" in line)
    assert warning.startswith("warning: exporting sknet-fmnist with random weights (these --model-kwargs change")
    manifest = load_manifest(tmp_path / "five.onnx")
    assert manifest["model"]["checkpoint"] is None and manifest["model"]["num_classes"] == 5
    assert manifest["model"]["dataset"] is None  # five outputs are not Fashion-MNIST's ten classes
    assert "fc.weight" in manifest["stages"][-1]["random_weights"]


# ---- Python warnings: one line through the logger ------------------------------------------------------
def test_pillow_warnings_are_one_warning_line(workspace, monkeypatch):
    """Pillow warns of a possible decompression bomb between its limit and twice it; with the limit
    lowered to 500 pixels, every 28x28 picture (784 pixels) warns."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    result = run_cli("validate", "--candidate", workspace / DEMO_ONNX, "--data", workspace / DEMO_IMAGES, "--json")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "DecompressionBomb" in line]
    assert lines == ["warning: DecompressionBombWarning: Image size (784 pixels) exceeds limit of 500 pixels, could "
                     "be decompression bomb DOS attack."], result.stderr
    assert "warnings.warn" not in result.stderr and ".py:" not in result.stderr


def test_numpy_warnings_are_one_warning_line(capsys):
    import warnings

    from skdeploy.log import log

    with log.python_warnings():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            np.log(np.zeros(2))
            np.log(np.zeros(3))  # said once
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: RuntimeWarning: divide by zero encountered in log"]
    assert warnings.showwarning.__module__ == "warnings"  # put back when the block ends


# ---- the runner API: before activation, empty and negative batches, no target --------------------------
@pytest.fixture
def onnx_runner(workspace):
    from skdeploy import load_runner

    return load_runner(workspace / DEMO_ONNX)


@pytest.mark.parametrize("call", ["input_specs", "output_names", "batch_limits", "classify"])
def test_an_inactive_runner_refuses_with_a_usage_error(onnx_runner, workspace, call):
    from skdeploy import classify
    from skdeploy.errors import UsageError

    with pytest.raises(UsageError, match=r"onnxruntime is not active; use it in a 'with' block or call activate\(\)"):
        if call == "classify":
            classify(onnx_runner, [Image.open(next((workspace / DEMO_IMAGES).iterdir()))])
        else:
            getattr(onnx_runner, call)()
    with onnx_runner:  # the same runner answers once active
        assert onnx_runner.output_names() and onnx_runner.batch_limits() == (1, None)


def test_an_inactive_pytorch_runner_refuses_too():
    from skdeploy import load_runner
    from skdeploy.errors import UsageError

    runner = load_runner("sknet-fmnist")
    with pytest.raises(UsageError, match="pytorch is not active"):
        runner.input_specs()


@pytest.mark.parametrize("batch, inputs, message", [
    (0, 4, r"`batch` must be a whole number of samples, at least 1, got 0"),
    (-1, 4, r"`batch` must be a whole number of samples, at least 1, got -1"),
    (2.5, 4, r"`batch` must be a whole number of samples, at least 1, got 2\.5"),
    (8, 0, r"no samples to run: the inputs are empty")])
def test_run_batched_refuses_batches_that_hold_nothing(onnx_runner, batch, inputs, message):
    from skdeploy.errors import UsageError

    with onnx_runner, pytest.raises(UsageError, match=message):
        onnx_runner.run_batched(np.zeros((inputs, 1, 32, 32), np.float32), batch)


@pytest.mark.parametrize("target", ["", "  ", None])
def test_load_runner_refuses_an_empty_target(target):
    from skdeploy import load_runner
    from skdeploy.errors import UsageError

    with pytest.raises(UsageError, match="`target` must be an ONNX file, an engine file or a model name"):
        load_runner(target)
