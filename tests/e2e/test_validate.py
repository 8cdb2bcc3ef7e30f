"""validate: metrics on known arrays, and the command end to end on real exports (pass, fail, saved
references without PyTorch, data sources, bad input)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from skdeploy.compare import accuracy, error_histogram, logit_agreement, prediction_agreement, top_k
from skdeploy.data import FASHION_MNIST_CLASSES, Preprocessing, inputs_sha256, open_data
from skdeploy.errors import UsageError
from tests.support.helpers import run_cli
from tests.support.validation_helpers import perturbed_copy

LIMIT = 96


# ---- metrics ------------------------------------------------------------------------------------

def test_identical_logits_agree_completely():
    logits = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32)
    metrics = logit_agreement(logits, logits.copy())
    assert metrics["max_abs"] == 0 and metrics["snr_db"] == float("inf")
    assert metrics["cosine_mean"] == pytest.approx(1.0) and metrics["cosine_min"] == pytest.approx(1.0)
    predictions = prediction_agreement(logits, logits)
    assert predictions["agreement"] == 1.0 and predictions["top5_overlap"] == 1.0 and predictions["disagreements"] == []


def test_metrics_match_hand_computed_values():
    reference = np.array([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
                          [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
                          [1.0, 0.5, 0.4, 0.3, 0.2, 0.1],
                          [0.5, 0.4, 0.3, 0.2, 0.1, 9.0]])
    candidate = reference.copy()
    candidate[1] = [5.0, 1.0, 2.0, 3.0, 4.0, 0.0]  # swaps the best and the worst class of sample 1
    candidate[2] = [-1.0, 0.5, 0.4, 0.3, 0.2, 0.1]
    predictions = prediction_agreement(reference, candidate)
    assert predictions["agreement"] == 0.5 and predictions["disagreements"] == [1, 2]
    # sample 1: top-5 {5,4,3,2,1} vs {0,4,3,2,1} share 4; sample 2: {0,1,2,3,4} vs {1,2,3,4,5} share 4
    assert predictions["top5_overlap"] == pytest.approx((1 + 0.8 + 0.8 + 1) / 4)
    assert predictions["per_class"][0] == 0.5 and predictions["per_class"][5] == 0.5
    assert predictions["per_class"][1] is None
    metrics = logit_agreement(reference, candidate)
    noise = 25 + 25 + 4
    assert metrics["snr_db"] == pytest.approx(10 * np.log10(np.sum(reference ** 2) / noise))
    assert metrics["max_abs"] == 5.0 and metrics["mean_abs"] == pytest.approx(12 / 24)
    assert metrics["cosine_min"] == pytest.approx(-0.45 / 1.55)
    labels = np.array([0, 5, 0, 4])
    assert accuracy(reference, labels, 1) == 0.75 and accuracy(candidate, labels, 1) == 0.25
    assert accuracy(reference, labels, 5) == 0.75  # label 4 of the last sample ranks last
    assert top_k(reference, 3).tolist()[0] == [0, 1, 2]


def test_error_histogram_counts_every_logit():
    reference = np.zeros((4, 10))
    candidate = reference + np.logspace(-6, 0, 40).reshape(4, 10)
    histogram = error_histogram(reference, candidate, bins=12)
    assert sum(histogram["counts"]) == 40 and len(histogram["edges"]) == 13
    assert histogram["edges"][-1] >= 1.0


# ---- data sources -------------------------------------------------------------------------------

GRAY = Preprocessing(resize=32, crop=(32, 32), mean=(0.5,), std=(0.5,), channel_order="GRAY")


def read_all(data):
    """Every input of a StreamedData, read in batches of 4."""
    return np.concatenate([batch for _, batch in data.batches(4)])


def test_data_from_npz_and_image_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", images=pictures, labels=np.arange(6))
    data = open_data(tmp_path / "images.npz", GRAY, limit=4)
    inputs = read_all(data)
    assert inputs.shape == (4, 1, 32, 32) and len(data) == 4 and data.labels.tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "inputs.npz", inputs=inputs)
    again = open_data(tmp_path / "inputs.npz", GRAY)
    assert again.labels is None and inputs_sha256(read_all(again)) == inputs_sha256(inputs)
    for label, name in enumerate(("bag", "coat")):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(pictures[label * 3 + i]).save(tmp_path / "folder" / name / f"{i}.png")
    folder = open_data(tmp_path / "folder", GRAY, class_names=FASHION_MNIST_CLASSES)  # by name, not position
    assert folder.labels.tolist() == [8, 8, 8, 4, 4, 4] and folder.class_names == FASHION_MNIST_CLASSES
    assert folder.picture(4).size == (28, 28)
    np.testing.assert_array_equal(read_all(folder)[:3], inputs[:3])
    np.savez(tmp_path / "bad.npz", other=np.zeros(3), more=np.zeros(3))
    with pytest.raises(UsageError, match="name the samples one of"):
        open_data(tmp_path / "bad.npz", GRAY)
    np.savez(tmp_path / "flat.npz", inputs=np.zeros(3))
    with pytest.raises(UsageError, match=r"the model takes \(N, 1, 32, 32\)"):
        open_data(tmp_path / "flat.npz", GRAY)


# ---- the command --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def candidates(demo_checkpoint_export, tmp_path_factory):
    _, onnx_path = demo_checkpoint_export
    folder = tmp_path_factory.mktemp("candidates")
    return {"fp32": onnx_path, "noisy": perturbed_copy(onnx_path, folder / "noisy.onnx", scale=0.01),
            "folder": folder}


def json_result(result):
    return json.loads(result.stdout)


def test_validate_passes_and_reports_every_metric(candidates):
    result = run_cli("validate", "--candidate", candidates["fp32"], "--limit", LIMIT, "--json")
    assert result.exit_code == 0, result.stderr
    report = json_result(result)
    assert report["passed"] is True and report["reference"]["kind"] == "pytorch"
    assert report["data"]["count"] == LIMIT and report["data"]["labels"] is True
    assert report["data"]["class_names"][7] == "Sneaker"
    candidate = report["candidates"][0]
    assert candidate["runner"] == "onnxruntime" and candidate["precision"] == "fp32"
    metrics = candidate["metrics"]
    assert metrics["agreement"] == 1.0 and metrics["top5_overlap"] == 1.0 and metrics["max_abs"] < 1e-3
    assert metrics["cosine_min"] > 0.9999 and metrics["snr_db"] > 60
    assert metrics["top1"] == report["reference"]["top1"] and metrics["top1_drop"] == 0.0
    assert [c["name"] for c in candidate["checks"]] == ["non-finite outputs", "top-1 agreement", "cosine", "SNR dB",
                                                       "top-1 drop (points)", "manifest preprocessing"]
    assert all(c["passed"] for c in candidate["checks"])
    assert len(candidate["per_class_agreement"]) == 10


def test_validate_api_returns_typed_verdicts_whose_record_is_the_json(candidates, tmp_path):
    from skdeploy.stages.validate import ValidateSettings, validate

    settings = ValidateSettings(limit=LIMIT, max_examples=3)
    result = validate([candidates["fp32"], candidates["noisy"]], settings=settings)
    fp32, noisy = result.candidates
    assert (fp32.name, fp32.runner, fp32.precision) == ("demo.onnx", "onnxruntime", "fp32")
    assert fp32.passed and fp32.failed_checks() == [] and fp32.disagreements == 0 and fp32.examples == []
    assert noisy.name == "noisy.onnx" and not noisy.passed and not result.passed
    assert noisy.failed_checks() == [check for check in noisy.checks if not check["passed"]] != []
    assert len(noisy.examples) == min(3, noisy.disagreements)
    assert result.thresholds is settings and result.saved_reference is None
    assert len(result.samples) == LIMIT and result.data["count"] == LIMIT
    shown = run_cli("validate", "--candidate", candidates["fp32"], "--candidate", candidates["noisy"], "--limit", LIMIT,
                    "--max-top1-drop", 100, "--min-agreement", 0, "--min-cosine", -1, "--min-snr-db", -1000, "--json")
    assert shown.exit_code == 0, shown.stderr
    on_screen = json_result(shown)
    assert list(on_screen) == ["reference", "data", "thresholds", "candidates", "saved_reference", "passed"]
    record = json.loads(json.dumps(result.record()))
    assert list(record) == list(on_screen) and record["data"] == on_screen["data"]
    assert [list(c) for c in record["candidates"]] == [list(c) for c in on_screen["candidates"]]
    for recorded, printed in zip(record["candidates"], on_screen["candidates"], strict=True):
        assert recorded["metrics"] == pytest.approx(printed["metrics"])


def test_validate_fails_a_drifted_model_with_exit_code_1(candidates):
    result = run_cli("validate", "--candidate", candidates["fp32"], "--candidate", candidates["noisy"],
                     "--limit", LIMIT, "--min-agreement", "0.999", "--max-top1-drop", "100")
    assert result.exit_code == 1
    assert "error: validation failed: noisy.onnx (top-1 agreement" in result.stderr
    assert "demo.onnx" not in result.stderr.split("validation failed:")[1]
    lines = result.stdout.splitlines()
    assert any(line.split("│")[1].strip() == "noisy.onnx" and "FAIL" in line for line in lines if "│" in line)
    assert any(line.split("│")[1].strip() == "demo.onnx" and "PASS" in line for line in lines if "│" in line)


def test_saved_reference_validates_without_pytorch(candidates, tmp_path):
    reference = tmp_path / "ref.npz"
    saved = run_cli("validate", "--candidate", candidates["fp32"], "--limit", LIMIT, "--save-reference", reference)
    assert saved.exit_code == 0 and reference.exists()
    with np.load(reference, allow_pickle=False) as archive:
        assert archive["logits"].shape == (LIMIT, 10) and archive["labels"].shape == (LIMIT,)
        assert len(str(archive["inputs_sha256"])) == 64
    again = run_cli("validate", "--candidate", candidates["fp32"], "--limit", LIMIT, "--save-reference", reference)
    assert again.exit_code == 2 and "already exists; pass --force" in again.stderr
    # a fresh interpreter in which importing torch fails: the base install on a Jetson
    code = ("import sys; sys.modules['torch'] = None; from skdeploy.cli import main; "
            f"sys.argv = ['skdeploy', 'validate', '--reference', {str(reference)!r}, '--candidate', "
            f"{str(candidates['noisy'])!r}, '--json', '--min-agreement', '0', '--max-top1-drop', '100', "
            "'--min-cosine', '-1', '--min-snr-db', '-1000']; main()")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, SKDEPLOY_DEBUG="1"))
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["reference"]["kind"] == "saved" and report["data"]["count"] == LIMIT
    assert 0 < report["candidates"][0]["metrics"]["agreement"] <= 1
    direct = run_cli("validate", "--candidate", candidates["noisy"], "--limit", LIMIT, "--json",
                     "--min-agreement", "0", "--max-top1-drop", "100", "--min-cosine", "-1", "--min-snr-db", "-1000")
    assert json_result(direct)["candidates"][0]["metrics"] == pytest.approx(report["candidates"][0]["metrics"])
    other = run_cli("validate", "--reference", reference, "--candidate", candidates["fp32"], "--limit", LIMIT // 2)
    assert other.exit_code == 2 and "input sha256 differs" in other.stderr


def test_reference_needs_a_checkpoint_in_the_manifest(candidates):
    folder = candidates["folder"]
    shutil.copy(candidates["fp32"], folder / "nockpt.onnx")
    manifest = json.loads(open(str(candidates["fp32"]) + ".json").read())
    manifest["model"]["checkpoint"] = None
    (folder / "nockpt.onnx.json").write_text(json.dumps(manifest))
    result = run_cli("validate", "--candidate", folder / "nockpt.onnx", "--limit", 8)
    assert result.exit_code == 2 and "records no checkpoint" in result.stderr
    named = run_cli("validate", "--reference", "sknet-fmnist", "--checkpoint", manifest_checkpoint(candidates),
                    "--candidate", folder / "nockpt.onnx", "--limit", 8, "--json")
    assert named.exit_code == 0, named.stderr
    assert json_result(named)["candidates"][0]["metrics"]["agreement"] == 1.0


def manifest_checkpoint(candidates):
    return json.loads(open(str(candidates["fp32"]) + ".json").read())["model"]["checkpoint"]["path"]


@pytest.mark.parametrize("args, message", [
    ((), "nothing to validate"),
    (("--candidate", "missing.onnx"), "missing.onnx does not exist"),
    (("--min-agreement", "1.5", "--candidate", "x.onnx"), "--min-agreement must be between 0 and 1"),
    (("--reference", "nope.npz", "--save-reference", "out/never.npz"), "reference nope.npz does not exist"),
])
def test_bad_usage_exits_2_with_one_line(args, message):
    result = run_cli("validate", *args)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_that_does_not_fit_the_model_is_a_usage_error(candidates, tmp_path):
    np.savez(tmp_path / "rgb.npz", inputs=np.zeros((4, 3, 32, 32), np.float32))
    result = run_cli("validate", "--candidate", candidates["fp32"], "--data", tmp_path / "rgb.npz")
    assert result.exit_code == 2 and "the model takes (N, 1, 32, 32)" in result.stderr
