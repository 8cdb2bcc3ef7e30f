"""Calibration end to end on real ONNX exports, real data (Fashion-MNIST train split, skimage/sklearn
photos) and real onnxruntime; TensorRT-RTX builds of the results in test_calib_build.py."""
import json
import re
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skdeploy.errors import SkdeployError, UsageError
from skdeploy.manifest import load_manifest
from skdeploy.models import REGISTRY
from skdeploy.runners import OnnxRuntimeRunner
from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model
from tests.support.helpers import REPO, as_stored, recorded_stage, run_cli

QUICK = dict(calib_images=64, holdout_images=200)


@pytest.fixture(scope="session")
def demo(exported):
    return exported("sknet-fmnist", dynamic_batch=True)


@pytest.fixture(scope="session")
def demo_no_passes(exported):
    return exported("sknet-fmnist", dynamic_batch=True, fold_bn=False, sk_rewrite=False)


@pytest.fixture(scope="session")
def fmnist_images():
    """Real Fashion-MNIST pictures (train split) from the shipped calibration set."""
    return np.load(REPO / "calibration" / "fashion-mnist-train-2048.npz")["images"][:64]


@pytest.fixture(scope="session")
def calibrated(demo, tmp_path_factory):
    """calibrated(precision, method=..., ...) -> (CalibrationResult, output path), cached per settings."""
    results = {}

    def run(precision="int8", source=None, **settings):
        source = source or demo
        key = (str(source), precision, tuple(sorted(settings.items())))
        if key not in results:
            folder = tmp_path_factory.mktemp("calibrated")
            output = folder / f"out_{precision}.onnx"
            merged = dict(QUICK, **settings)
            results[key] = (calibrate_model(source, output, CalibrationSettings(precision=precision, **merged)),
                            output)
        return results[key]

    return run


def producers(model):
    return {out: node for node in model.graph.node for out in node.output}


def fp32_and_candidate(fp32_path, candidate_path, batch):
    with OnnxRuntimeRunner(fp32_path) as reference, OnnxRuntimeRunner(candidate_path) as candidate:
        return reference.infer(batch)["logits"], candidate.infer(batch)["logits"]


def demo_batch(images):
    return REGISTRY["sknet-fmnist"].preprocessing.arrays(images[:32])


def assert_tensorrt_placement(model):
    """Per-channel INT8 weights and per-tensor activations on every Conv, FP32 bias, one quantized side
    per residual Add, no Q/DQ on Sigmoid/Softmax/Reshape/Mul inputs nor on the 10-class classifier."""
    made_by = producers(model)
    inits = {init.name: init for init in model.graph.initializer}
    dq = lambda name: made_by.get(name) is not None and made_by[name].op_type == "DequantizeLinear"  # noqa: E731
    layers = [n for n in model.graph.node if n.op_type == "Conv"]
    assert layers
    classifier = next(n for n in model.graph.node if n.op_type == "Gemm")  # 10 outputs: too small for INT8
    assert not any(dq(name) for name in classifier.input)
    for node in layers:
        assert dq(node.input[0]), f"{node.name}: activation not quantized"
        activation_scale = numpy_helper.to_array(inits[made_by[node.input[0]].input[1]])
        assert activation_scale.ndim == 0 and activation_scale > 0
        weight_dq = made_by[node.input[1]]
        assert weight_dq.op_type == "DequantizeLinear"
        weights = numpy_helper.to_array(inits[weight_dq.input[0]])
        scales = numpy_helper.to_array(inits[weight_dq.input[1]])
        zero = numpy_helper.to_array(inits[weight_dq.input[2]])
        axis = next(a.i for a in weight_dq.attribute if a.name == "axis")
        assert weights.dtype == np.int8 and axis == 0 and scales.shape == (weights.shape[0],)
        assert (scales > 0).all() and not zero.any() and np.abs(weights).max() == 127
        if len(node.input) > 2:
            assert node.input[2] in inits and inits[node.input[2]].data_type == TensorProto.FLOAT
    for node in model.graph.node:
        if node.op_type in ("Sigmoid", "Softmax", "Reshape", "Mul"):
            assert not any(dq(name) for name in node.input), f"Q/DQ before {node.op_type} {node.name}"
        if node.op_type == "Add":
            quantized = [dq(name) for name in node.input]
            assert sum(quantized) <= 1
            from_conv = [made_by.get(n) is not None and made_by[n].op_type == "Conv" for n in node.input]
            if any(from_conv):
                assert sum(quantized) == 1, f"residual {node.name} should quantize its shortcut"
                assert not quantized[from_conv.index(True)] or all(from_conv)


@pytest.mark.parametrize("passes", ["with graph passes", "without graph passes"])
def test_int8_placement_and_accuracy_on_real_images(passes, demo, demo_no_passes, calibrated, fmnist_images):
    source = demo if passes == "with graph passes" else demo_no_passes
    result, output = calibrated("int8", source=source, method="entropy")
    model = onnx.load(output)
    onnx.checker.check_model(model)
    assert_tensorrt_placement(model)
    reference, got = fp32_and_candidate(source, output, demo_batch(fmnist_images))
    assert np.linalg.norm(got - reference) <= 0.1 * np.linalg.norm(reference)  # random weights: no accuracy
    assert result.output == output and result.manifest == output.with_name(output.name + ".json")
    assert result.precision == "int8" and result.method == "entropy"
    assert result.data["images"] == 64 and len(result.data["sha256"]) == 64
    assert result.data["path"].endswith("fashion-mnist-train-2048.npz")  # the demo's shipped default
    assert result.accuracy["images"] == 200 and result.accuracy["metric"] == "labels"
    assert result.accuracy["reference"] == "onnx-fp32"  # random weights: no PyTorch checkpoint to load
    assert result.fallback_layers == [] and result.fallback_search is None
    assert (output.parent / result.ranges_file).exists() and (output.parent / result.calibration_table).exists()
    stage = recorded_stage(output)
    assert stage == as_stored(result.record())
    assert load_manifest(output)["stages"][-1]["stage"] == "calibrate"
    assert list(stage) == ["precision", "method", "settings", "source", "data", "ranges_file", "ranges_cache",
                           "calibration_table", "budget", "quantized_units", "qdq_tensors", "fallback_layers",
                           "accuracy", "accuracy_plain_int8", "node_counts", "seconds", "collect_seconds"]
    assert 0 < stage["collect_seconds"] < stage["seconds"]
    assert stage["budget"] == {"max_top1_drop": None, "fallback": "fp16"} and stage["settings"]["method"] == "entropy"


def test_judge_gives_agreement_and_top1_as_fractions_and_the_drop_in_points():
    from skdeploy.calib.accuracy import Judge

    reference, predictions = np.array([0, 1, 2, 0]), np.array([0, 1, 2, 3])
    # candidate agrees with the reference on 3 of 4; with labels the reference is right on samples 0, 1
    # (2 of 4) and the candidate on 0, 1, 3 (3 of 4), so it "drops" -25 points
    assert Judge(reference, np.array([0, 1, 1, 3]), "pytorch").score(predictions) == {
        "images": 4, "reference": "pytorch", "agreement": 0.75, "metric": "labels", "reference_top1": 0.5,
        "top1": 0.75, "drop": -25.0}
    assert Judge(reference, None, "onnx-fp32").score(predictions) == {
        "images": 4, "reference": "onnx-fp32", "agreement": 0.75, "metric": "agreement", "drop": 25.0}


def test_agreement_is_a_fraction_in_json_and_a_percentage_on_screen(demo, tmp_path):
    args = ("calibrate", demo, "--int8", "--calib-images", 16, "--holdout-images", 40)
    shown = run_cli(*args, "-o", tmp_path / "a.onnx")
    assert shown.exit_code == 0, shown.stderr
    accuracy = json.loads(run_cli(*args, "-o", tmp_path / "b.onnx", "--json").stdout)["accuracy"]
    assert accuracy == json.loads((tmp_path / "a.onnx.json").read_text())["stages"][-1]["accuracy"]
    assert 0 <= accuracy["agreement"] <= 1 and 0 <= accuracy["top1"] <= 1 and 0 <= accuracy["reference_top1"] <= 1
    assert accuracy["drop"] == pytest.approx(100 * (accuracy["reference_top1"] - accuracy["top1"]), abs=1e-3)
    line = next(line for line in shown.stdout.splitlines() if line.startswith("top-1 drop"))
    agreement, top1, reference_top1 = (float(x) for x in re.findall(r"([0-9.]+)%", line))
    assert agreement == pytest.approx(100 * accuracy["agreement"], abs=0.005)
    expected = (100 * accuracy["top1"], 100 * accuracy["reference_top1"])
    assert (top1, reference_top1) == pytest.approx(expected, abs=0.005)


def test_methods_give_different_ranges_on_real_data(calibrated):
    ranges = {}
    for method in ("max", "entropy", "percentile"):
        _, output = calibrated("int8", method=method, percentile=99.9)
        tensors = json.loads((output.parent / (output.name + ".ranges.json")).read_text())["tensors"]
        ranges[method] = {name: entry["amax"] for name, entry in tensors.items() if "amax" in entry}
    names = sorted(ranges["max"])
    assert names and all(sorted(ranges[m]) == names for m in ranges)
    assert ranges["entropy"]["input"] == ranges["percentile"]["input"] == ranges["max"]["input"]  # never clipped
    names.remove("input")
    maxima = np.array([ranges["max"][n] for n in names])
    entropy = np.array([ranges["entropy"][n] for n in names])
    percentile = np.array([ranges["percentile"][n] for n in names])
    assert (entropy <= maxima + 1e-6).all() and (percentile <= maxima + 1e-6).all()
    # pairwise: a good share of tensors get a range more than 1% apart (measured: about 1/2 to 4/5)
    assert np.mean(entropy < 0.99 * maxima) > 0.25
    assert np.mean(percentile < 0.99 * maxima) > 0.25
    assert np.mean(np.abs(entropy - percentile) > 0.01 * maxima) > 0.25


def test_cache_is_reused_for_the_same_inputs_and_table_matches_ranges(demo, tmp_path, capsys):
    output = tmp_path / "demo_int8.onnx"
    settings = CalibrationSettings(precision="int8", method="percentile", calib_images=32, holdout_images=0)
    first = calibrate_model(demo, output, settings)
    assert first.ranges_cache == "computed"
    first_bytes = output.read_bytes()
    capsys.readouterr()
    second = calibrate_model(demo, output, settings, force=True)
    assert second.ranges_cache == "reused" and recorded_stage(output)["ranges_cache"] == "reused"
    assert "reusing calibration ranges" in capsys.readouterr().err
    assert output.read_bytes() == first_bytes
    cached = json.loads((tmp_path / "demo_int8.onnx.ranges.json").read_text())
    assert cached["key"]["method"] == "percentile" and cached["key"]["data_sha256"] == first.data["sha256"]
    table = (tmp_path / "demo_int8.onnx.calib.table").read_text().splitlines()
    assert table[0] == "TRT-100300-EntropyCalibration2"
    assert len(table) - 1 == len(cached["tensors"])
    other = CalibrationSettings(precision="int8", method="max", calib_images=32, holdout_images=0)
    assert calibrate_model(demo, output, other, force=True).ranges_cache == "computed"
    with pytest.raises(UsageError, match="already exists"):
        calibrate_model(demo, output, other)


def test_fp16_keeps_io_fp32_and_named_nodes(demo, calibrated, fmnist_images):
    result, output = calibrated("fp16")
    model = onnx.load(output)
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inits = {init.name: init for init in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in convs)
    reference, got = fp32_and_candidate(demo, output, demo_batch(fmnist_images))
    assert np.abs(got - reference).max() <= 0.01 * np.abs(reference).max()
    assert result.kept_fp32 == [] and result.accuracy["images"] == 200 and result.method is None
    stage = recorded_stage(output)
    assert stage == as_stored(result.record())
    assert list(stage) == ["precision", "method", "settings", "source", "data", "ranges_file", "ranges_cache",
                           "calibration_table", "budget", "fp16_nodes", "kept_fp32", "fp16_io", "accuracy",
                           "node_counts", "seconds", "collect_seconds"]
    assert stage["method"] is None and stage["calibration_table"] is None

    keep = convs[0].name
    result, output = calibrated("fp16", keep_fp32=(keep,), fp16_io=True)
    model = onnx.load(output)
    inits = {init.name: init for init in model.graph.initializer}
    kept = next(n for n in model.graph.node if n.name == keep)
    assert inits[kept.input[1]].data_type == TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert load_manifest(output)["inputs"][0]["dtype"] == "float16"
    assert result.kept_fp32 == [{"name": keep, "reason": "named by --keep-fp32"}]
    assert recorded_stage(output)["kept_fp32"] == result.kept_fp32


def small_model(path, nodes, initializers, input_shape, output_shape):
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_fp16_keeps_overflowing_nodes_fp32(tmp_path):
    """Values beyond FP16 on the calibration data keep every node that reads or writes them FP32; a model
    without a manifest calibrates from already-preprocessed float arrays without preprocessing options."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    gain = numpy_helper.from_array(np.array(1e5, np.float32), "gain")
    shrink = numpy_helper.from_array(np.array(1e-5, np.float32), "shrink")
    nodes = [helper.make_node("Mul", ["input", "gain"], ["big"], name="amplify"),
             helper.make_node("Conv", ["big", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["conv", "shrink"], ["small"], name="attenuate"),
             helper.make_node("Relu", ["small"], ["relu"], name="relu"),
             helper.make_node("GlobalAveragePool", ["relu"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["logits"], name="flatten")]
    model = small_model(tmp_path / "overflow.onnx", nodes, [weights, gain, shrink], ["N", 1, 8, 8], ["N", 4])
    data = tmp_path / "inputs.npy"
    np.save(data, rng.standard_normal((40, 1, 8, 8)).astype(np.float32))
    output = tmp_path / "overflow_fp16.onnx"
    result = calibrate_model(model, output, CalibrationSettings(precision="fp16", calib_data=str(data),
                                                                calib_images=20, holdout_images=20))
    kept = {entry["name"] for entry in result.kept_fp32}
    assert kept == {"amplify", "conv", "attenuate"}
    batch = np.load(data)[:8]
    reference, got = fp32_and_candidate(model, output, batch)
    assert np.isfinite(got).all() and np.abs(got - reference).max() <= 0.01 * np.abs(reference).max()
    assert result.accuracy["metric"] == "agreement"  # no labels in the npy


def budget_model(path, delta):
    """Two logits over a 4x4 input that differ only by `delta` times one pixel: FP32 predicts the sign
    of that pixel. INT8's per-channel weight scale cannot keep such a small difference."""
    weights = np.ones((2, 1, 4, 4), np.float32)
    weights[1, 0, 1, 2] += delta
    nodes = [helper.make_node("Conv", ["input", "w"], ["conv"], name="decide"),
             helper.make_node("Flatten", ["conv"], ["logits"], name="flatten")]
    return small_model(path, nodes, [numpy_helper.from_array(weights, "w")], ["N", 1, 4, 4], ["N", 2])


@pytest.fixture()
def budget_data(tmp_path):
    path = tmp_path / "budget.npy"
    np.save(path, np.random.default_rng(1).standard_normal((400, 1, 4, 4)).astype(np.float32))
    return path


def test_budget_moves_the_worst_layer_to_fp16_when_int8_misses(tmp_path, budget_data):
    model = budget_model(tmp_path / "m.onnx", delta=0.004)
    settings = CalibrationSettings(precision="int8", calib_data=str(budget_data), calib_images=100,
                                   holdout_images=300, max_top1_drop=2.0)
    result = calibrate_model(model, tmp_path / "m_int8.onnx", settings)
    assert result.accuracy_plain_int8["drop"] > 2.0  # plain INT8 misses the budget...
    assert result.accuracy["drop"] <= 2.0  # ...and the fallback meets it
    assert result.fallback_layers and result.fallback_layers[0]["name"] == "decide"
    assert result.fallback_layers[0]["precision"] == "fp16"
    assert result.fallback_search == {"1": result.accuracy["drop"]}  # one quantized layer: all of it, once
    stage = recorded_stage(tmp_path / "m_int8.onnx")
    assert stage == as_stored(result.record()) and list(stage)[-4:] == ["fallback_search", "node_counts", "seconds",
                                                                         "collect_seconds"]
    result = onnx.load(tmp_path / "m_int8.onnx")
    inits = {init.name: init for init in result.graph.initializer}
    decide = next(n for n in result.graph.node if n.name == "decide")
    assert inits[decide.input[1]].data_type == TensorProto.FLOAT16


def test_budget_fails_with_a_report_when_even_fp16_misses(tmp_path, budget_data):
    model = budget_model(tmp_path / "m.onnx", delta=1e-4)  # FP16 rounds 1.0001 to 1: a tie
    settings = CalibrationSettings(precision="int8", calib_data=str(budget_data), calib_images=100,
                                   holdout_images=300, max_top1_drop=2.0)
    with pytest.raises(SkdeployError, match=r"cannot be met.*all 1 quantized layers in fp16.*decide"):
        calibrate_model(model, tmp_path / "m_int8.onnx", settings)
    assert not (tmp_path / "m_int8.onnx").exists()
    settings.fallback = "fp32"
    result = calibrate_model(model, tmp_path / "m_int8.onnx", settings)
    assert result.fallback_layers[0]["precision"] == "fp32" and result.accuracy["drop"] <= 2.0


# ---- bad input: one clear line and the right exit code ----

def write_image(path, mode, seed, size=(40, 36)):
    """Random pixels in any PIL mode; len(mode) is its band count (L, LA, RGB, RGBA, CMYK)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.frombytes(mode, size, pixels.tobytes()).save(path)


def cli_calibrate(model, output, *args):
    return run_cli("calibrate", model, "--int8", "--calib-images", 4, "--holdout-images", 0, "-o", output, *args)


def test_empty_folder_and_folder_of_non_images(demo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", empty)
    assert result.exit_code == 2 and "error: no images in" in result.stderr
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(3):
        (texts / f"note{i}.txt").write_text("not a picture")
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", texts)
    assert result.exit_code == 2 and "found 3 other files" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o.onnx").exists()


def test_any_colour_mode_converts_and_unreadable_files_are_counted(demo, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "nested").mkdir(parents=True)
    for seed, (name, mode) in enumerate([("a.png", "RGBA"), ("b.jpg", "CMYK"), ("c.png", "LA"),
                                         ("nested/d.bmp", "RGB"), ("nested/e.webp", "RGB"), ("f.png", "L")]):
        write_image(folder / name, mode, seed)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "nested" / "broken.png").write_bytes(b"not a png")
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", folder, "--calib-images", 6)
    assert result.exit_code == 0, result.stderr
    assert "skipped 2 unreadable files" in result.stderr
    stage = json.loads((tmp_path / "o.onnx.json").read_text())["stages"][-1]
    assert stage["data"]["images"] == 6 and stage["data"]["skipped_unreadable"] == 2


def test_zero_usable_images_is_an_error(demo, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"garbage")
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", folder)
    assert result.exit_code == 2 and "no usable calibration samples" in result.stderr


def test_arrays_of_the_wrong_shape_or_channels(demo, tmp_path):
    two_channel = tmp_path / "two.npy"
    np.save(two_channel, np.zeros((8, 28, 28, 2), np.uint8))
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", two_channel)
    assert result.exit_code == 2 and "C = 1, 3 or 4 channels" in result.stderr
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((8, 3, 32, 32), np.float32))  # the demo takes 1x32x32
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", wrong)
    assert result.exit_code == 2 and "(N, 1, 32, 32)" in result.stderr
    rgba = tmp_path / "rgba.npz"  # uint8 RGBA pictures are fine: converted to the model's GRAY
    np.savez(rgba, images=np.random.default_rng(0).integers(0, 255, (8, 30, 30, 4), dtype=np.uint8))
    assert cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", rgba).exit_code == 0


def test_model_without_manifest_asks_for_preprocessing(demo, tmp_path, fmnist_images):
    bare = tmp_path / "bare.onnx"
    shutil.copy(demo, bare)
    folder = tmp_path / "pictures"
    folder.mkdir()
    from PIL import Image

    for i, picture in enumerate(fmnist_images[:6]):
        Image.fromarray(picture).save(folder / f"{i}.png")
    result = cli_calibrate(bare, tmp_path / "o.onnx", "--calib-data", folder)
    assert result.exit_code == 2
    assert "has no manifest" in result.stderr and "--mean" in result.stderr and "--std" in result.stderr
    manifest = json.loads((demo.parent / (demo.name + ".json")).read_text())
    (tmp_path / "bare.onnx.json").write_text(json.dumps(dict(manifest, preprocessing=None)))
    result = cli_calibrate(bare, tmp_path / "o.onnx", "--calib-data", folder)
    assert result.exit_code == 2 and "its manifest records no preprocessing" in result.stderr
    (tmp_path / "bare.onnx.json").unlink()
    result = cli_calibrate(demo, tmp_path / "o.onnx", "--calib-data", folder, "--mean", "0.3", "--std", "0.35")
    assert result.exit_code == 2 and "records its preprocessing" in result.stderr
    result = cli_calibrate(bare, tmp_path / "o.onnx", "--calib-data", folder, "--mean", "0.286", "--std", "0.353")
    assert result.exit_code == 0, result.stderr
    written = json.loads((tmp_path / "o.onnx.json").read_text())
    assert written["preprocessing"]["mean"] == [0.286] and written["preprocessing"]["channel_order"] == "GRAY"
    # the model entry of an ONNX without a manifest: the input size its graph gives, nothing else known
    assert written["model"] == {"spec": None, "checkpoint": None, "kwargs": {}, "num_classes": None,
                                "dataset": None, "input_size": [1, 32, 32]}
    ready = tmp_path / "ready.npy"  # already-preprocessed float inputs need no preprocessing options
    np.save(ready, REGISTRY["sknet-fmnist"].preprocessing.arrays(fmnist_images[:6]))
    result = cli_calibrate(bare, tmp_path / "f.onnx", "--calib-data", ready)
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "f.onnx.json").read_text())["preprocessing"] is None


def test_calibrate_needs_a_precision_and_rejects_quantized_input(demo, calibrated, tmp_path):
    result = run_cli("calibrate", demo, "-o", tmp_path / "o.onnx")
    assert result.exit_code == 2 and "choose --int8 or --fp16" in result.stderr
    _, quantized = calibrated("int8", method="entropy")
    result = cli_calibrate(quantized, tmp_path / "o.onnx")
    assert result.exit_code == 2 and "already has Q/DQ nodes" in result.stderr
