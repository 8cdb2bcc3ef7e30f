"""Engine building: real TensorRT-RTX builds (CPU-only, compute capabilities 8.6 + 8.9), the classic
TensorRT version paths against a recording fake (tests/support/fake_tensorrt.py), errors, and a gpu-marked build
that runs a real engine where TensorRT and a GPU exist.

Each RTX configuration is built once per session (`rtx_build`); the tests read its sidecar field by field.
"""
import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from skdeploy.engine import TARGETS, plan_build
from skdeploy.errors import MissingDependency, SkdeployError, UsageError
from skdeploy.fileio import sha256_file
from skdeploy.manifest import load_manifest
from skdeploy.stages.build import BuildSettings, build, build_engine
from skdeploy.trt import capabilities_of
from tests.support.fake_tensorrt import API, PLAN_MARKER, make_fake_tensorrt, plan_summary
from tests.support.helpers import as_stored, recorded_stage, run_cli
from tests.support.tiny_models import tiny_onnx

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install 'skdeploy[rtx]') builds the engines")

RTX_CCS = ["8.6", "8.9"]
MODELS = {"demo": "sknet-fmnist", "sknet50": "sknet50"}
PRECISIONS = ["fp32", "fp16", "int8"]
CALIB_IMAGES = 8  # enough to exercise the calibration stage; accuracy is the calibration tests' business
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "cat", "colorwheel"]


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of real colour photos (scikit-image) to calibrate the ImageNet-size model with."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def rtx_build(exported, photos, tmp_path_factory):
    """rtx_build(model, precision) -> (fp32 onnx, engine path, BuildResult): one real CPU-only TensorRT-RTX
    build per configuration per session, dynamic batch 1/8/32, for compute capabilities 8.6 and 8.9.
    FP16/INT8 go through the pipeline's calibration stage from the FP32 export."""
    built = {}

    def build_once(model, precision):
        if (model, precision) not in built:
            source = exported(MODELS[model], dynamic_batch=True)
            path = tmp_path_factory.mktemp(f"engine-{model}-{precision}") / f"{model}.engine"
            settings = BuildSettings(
                backend="tensorrt-rtx", target="rtx", compute_capabilities=RTX_CCS, min_batch=1, opt_batch=8,
                max_batch=32, precision=None if precision == "fp32" else precision,
                calib_data=None if model == "demo" else str(photos), calib_images=CALIB_IMAGES,
                calibration={"holdout_images": 0})
            built[model, precision] = (source, path, build(source, path, settings))
        return built[model, precision]

    return build_once


# ------------------------------------------------------------------------------- real TensorRT-RTX builds

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("model", ["demo", pytest.param("sknet50", marks=pytest.mark.slow)])
def test_rtx_build_sidecar_field_by_field(rtx_build, model, precision):
    source, path, result = rtx_build(model, precision)
    sidecar = load_manifest(path)
    assert result.output == path and result.manifest == path.with_name(path.name + ".json")
    assert sidecar["engine"] == as_stored(asdict(result.engine))  # the section is the result's, field by field
    assert recorded_stage(path) == as_stored(result.record())
    assert list(result.record()) == ["settings", "source", "backend", "backend_version", "target", "precision",
                                     "build_seconds", "peak_rss_mb", "engine_bytes", "seconds"]
    source_manifest = load_manifest(source)
    channels, height, width = source_manifest["inputs"][0]["shape"][1:]
    classes = source_manifest["model"]["num_classes"]
    engine = sidecar["engine"]

    assert engine["backend"] == "tensorrt-rtx"
    assert engine["backend_version"] == trt_rtx.__version__
    assert engine["target"] == "rtx"
    assert engine["compute_capabilities"] == RTX_CCS
    assert engine["hardware_compatibility"] == "none" and engine["version_compatible"] is False
    assert engine["precision"] == precision and engine["precision_from"] == "onnx"
    assert engine["strongly_typed"] is True and engine["builder_flags"] == []
    assert engine["dla_core"] is None and engine["dla_fallback_layers"] == []
    assert engine["profiles"] == [{"input": {"min": [1, channels, height, width], "opt": [8, channels, height, width],
                                             "max": [32, channels, height, width]}}]
    assert engine["io"] == [
        {"name": "input", "mode": "input", "shape": [-1, channels, height, width], "dtype": "float32"},
        {"name": "logits", "mode": "output", "shape": [-1, classes], "dtype": "float32"}]

    built_from = source if precision == "fp32" else path.with_name(f"{path.stem}.{precision}.onnx")
    assert engine["source_onnx"] == {"file": str(built_from), "sha256": sha256_file(built_from),
                                     "manifest": str(built_from) + ".json"}
    assert result.source == {"file": str(built_from), "sha256": sha256_file(built_from)}
    if precision == "fp32":
        assert engine["calibration"] is None
    else:  # the calibration stage ran on the FP32 export and its record travels with the engine
        calibrated = load_manifest(built_from)
        assert engine["calibration"] == calibrated["stages"][-1]
        assert engine["calibration"]["stage"] == "calibrate" and engine["calibration"]["precision"] == precision
        assert engine["calibration"]["source"]["sha256"] == sha256_file(source)
        assert engine["calibration"]["data"]["images"] == CALIB_IMAGES

    assert engine["engine_bytes"] == path.stat().st_size > 1_000_000
    assert sidecar["artifact"] == {"file": path.name, "kind": "engine", "sha256": sha256_file(path)}
    assert 0 < engine["build_seconds"] < 600
    assert engine["peak_rss_mb"] > 100  # the builder holds the network and its weights
    assert isinstance(engine["warnings"], list) and all(isinstance(w, str) for w in engine["warnings"])
    assert engine["timing_cache"] is None and engine["workspace_bytes"] is None

    # the manifest is the source's, extended: same model and preprocessing, one more stage
    assert sidecar["format"] == source_manifest["format"]
    assert sidecar["model"] == source_manifest["model"]
    assert sidecar["preprocessing"] == source_manifest["preprocessing"]
    stages = [s["stage"] for s in sidecar["stages"]]
    assert stages == ["export"] + (["calibrate"] if precision != "fp32" else []) + ["build-engine"]
    assert sidecar["stages"][-1]["settings"]["compute_capabilities"] == RTX_CCS


@pytest.mark.slow
def test_rtx_reduced_precision_engines_carry_smaller_weights(rtx_build):
    """SKNet-50's 25M weights dominate its engine, so precision shows in the size (the demo model's 1M
    weights do not: there kernels dominate, and INT8 adds some)."""
    sizes = {p: rtx_build("sknet50", p)[2].engine.engine_bytes for p in PRECISIONS}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"], sizes


def test_rtx_engine_file_is_the_builders_bytes(rtx_build, tmp_path):
    """No header of ours: the file starts with the plan magic TensorRT-RTX itself writes."""
    path = tiny_onnx(tmp_path / "tiny.onnx")
    logger = trt_rtx.Logger(trt_rtx.Logger.ERROR)
    builder = trt_rtx.Builder(logger)
    network = builder.create_network(0)
    assert trt_rtx.OnnxParser(network, logger).parse_from_file(str(path))
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt_rtx.ComputeCapability.SM86, 0)
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 8, 8), (1, 3, 8, 8), (2, 3, 8, 8))
    config.add_optimization_profile(profile)
    direct = bytes(builder.build_serialized_network(network, config))
    engine = rtx_build("demo", "fp32")[1].read_bytes()
    assert engine[:4] == direct[:4] and engine[:1] != b"{"


def test_rtx_static_model_has_a_fixed_profile(exported, tmp_path):
    source = exported("sknet-fmnist")  # static batch 1
    result = build_engine(source, tmp_path / "static.engine",
                          BuildSettings(backend="tensorrt-rtx", compute_capabilities=["8.6"]))
    engine = result.engine
    assert engine.io[0]["shape"] == [1, 1, 32, 32]
    assert engine.profiles == [{"input": {"min": [1, 1, 32, 32], "opt": [1, 1, 32, 32], "max": [1, 1, 32, 32]}}]
    assert engine.compute_capabilities == ["8.6"]


def test_rtx_sidecar_of_an_onnx_without_manifest_records_what_the_graph_tells(tmp_path):
    result = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine",
                          BuildSettings(backend="tensorrt-rtx", compute_capabilities=["8.6"]))
    sidecar = load_manifest(tmp_path / "e.engine")
    assert sidecar["model"] == {"spec": None, "checkpoint": None, "kwargs": {}, "num_classes": None, "dataset": None,
                                "input_size": [3, 8, 8]}
    assert sidecar["preprocessing"] is None
    assert sidecar["inputs"] == [{"name": "input", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    assert result.engine.source_onnx["manifest"] is None


def test_rtx_sidecar_rewrites_a_previous_version_model_entry(tmp_path):
    """Earlier versions wrote engine sidecars of bare ONNX files without `input_size` and with {} for unknown
    preprocessing; a stage reading such a manifest carries it on in the current form."""
    source = tiny_onnx(tmp_path / "m.onnx")
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    previous = {"format": "skdeploy-manifest/1", "artifact": {"file": "m.onnx", "kind": "onnx", "sha256": sha256},
                "model": {"spec": None, "checkpoint": None, "kwargs": {}, "num_classes": None, "dataset": None},
                "preprocessing": {}, "inputs": [], "outputs": [], "stages": [{"stage": "optimize", "passes": []}]}
    (tmp_path / "m.onnx.json").write_text(json.dumps(previous))
    build_engine(source, tmp_path / "e.engine", BuildSettings(backend="tensorrt-rtx", compute_capabilities=["8.6"]))
    sidecar = load_manifest(tmp_path / "e.engine")
    assert sidecar["model"] == dict(previous["model"], input_size=None)
    assert sidecar["preprocessing"] is None
    assert [stage["stage"] for stage in sidecar["stages"]] == ["optimize", "build-engine"]


def test_cli_json_and_default_output_folder(exported, tmp_path, monkeypatch):
    source = exported("sknet-fmnist")
    monkeypatch.chdir(tmp_path)
    result = run_cli("build-engine", source, "--target", "rtx", "--compute-capability", "8.9", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["engine"] == os.path.join("engines", "sknet-fmnist-rtx.engine")
    assert (tmp_path / report["engine"]).stat().st_size == report["engine_bytes"]
    assert report["compute_capabilities"] == ["8.9"] and report["precision"] == "fp32"
    assert load_manifest(tmp_path / report["engine"])["engine"]["backend"] == "tensorrt-rtx"


# ------------------------------------------------------------------------------------------------- errors

def test_existing_output_needs_force(exported, tmp_path):
    source, output = exported("sknet-fmnist"), tmp_path / "x.engine"
    output.write_bytes(b"keep me")
    result = run_cli("build-engine", source, "--target", "rtx", "-o", output)
    assert result.exit_code == 2 and "already exists; pass --force" in result.stderr
    assert output.read_bytes() == b"keep me"
    result = run_cli("build-engine", source, "--target", "rtx", "-o", output, "--force")
    assert result.exit_code == 0, result.output
    engine = load_manifest(output)["engine"]
    assert output.read_bytes() != b"keep me" and engine["target"] == "rtx"
    assert engine["compute_capabilities"] == list(TARGETS["rtx"].default_compute_capabilities)


def test_unwritable_output_folder(exported, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("build-engine", exported("sknet-fmnist"), "--target", "rtx", "-o", blocker / "sub" / "x.engine")
    assert result.exit_code == 1 and result.stderr.startswith("error: cannot create output folder")
    assert len(result.stderr.strip().splitlines()) == 1


def test_rtx_cannot_build_compute_capability_9_0(exported, tmp_path):
    buildable = sorted((m for m in trt_rtx.ComputeCapability.__members__ if m.startswith("SM")),
                       key=lambda m: int(m[2:]))
    result = run_cli("build-engine", exported("sknet-fmnist"), "--compute-capability", "8.6,9.0",
                     "-o", tmp_path / "x.engine")
    assert result.exit_code == 2
    assert "cannot build for compute capability 9.0" in result.stderr
    assert "it builds for " + ", ".join(f"{m[2:-1]}.{m[-1]}" for m in buildable) in result.stderr
    assert not (tmp_path / "x.engine").exists()


@pytest.mark.parametrize("args, message", [
    (["--backend", "tensorrt-rtx", "--target", "jetson-orin"], "tensorrt-rtx builds: rtx"),
    (["--target", "rtx", "--dla-core", "0", "--int8"],
     "target rtx has no DLA; DLA targets: jetson-orin, jetson-xavier"),
    (["--target", "rtx", "--hardware-compatibility", "ampere-plus"], "through --compute-capability"),
    (["--target", "rtx", "--version-compatible"], "cannot build version-compatible engines"),
    (["--target", "rtx", "--weakly-typed"], "builds strongly typed networks only"),
    (["--target", "rtx", "--timing-cache", "x.cache"], "has no timing cache"),
    (["--target", "rtx", "--min-batch", "8", "--max-batch", "4"], "1 <= min <= opt <= max"),
    (["--target", "rtx", "--workspace", "lots"], "size with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 2GiB"),
])
def test_rtx_refuses_what_it_cannot_build(exported, tmp_path, args, message):
    result = run_cli("build-engine", exported("sknet-fmnist", dynamic_batch=True), *args, "-o", tmp_path / "x.engine")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.engine").exists()


def test_rtx_parse_failure_names_nodes_and_op_types(tmp_path):
    path = tiny_onnx(tmp_path / "custom.onnx", op="Frobnicate", domain="com.example")
    with pytest.raises(SkdeployError) as failure:
        build_engine(path, tmp_path / "x.engine", BuildSettings(backend="tensorrt-rtx"))
    message = str(failure.value)
    assert "could not parse" in message and "node 1 frobnicate_last (Frobnicate): " in message
    assert message.split("(Frobnicate): ", 1)[1].strip()  # the parser's own words follow
    assert not (tmp_path / "x.engine").exists()


@pytest.mark.parametrize("backend, extra, hint", [
    ("tensorrt", "skdeploy[trt]", "RTX targets, which build without a GPU"),
    ("tensorrt-rtx", "skdeploy[rtx]", "builds 'rtx' targets without a GPU"),
])
def test_missing_backend_is_one_line_naming_the_extra(exported, tmp_path, monkeypatch, backend, extra, hint):
    monkeypatch.setitem(sys.modules, backend.replace("-", "_"), None)  # import now fails as if not installed
    result = run_cli("build-engine", exported("sknet-fmnist"), "--backend", backend, "-o", tmp_path / "x.engine")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install '{extra}'" in lines[0] and hint in lines[0]


def test_no_backend_at_all(exported, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(MissingDependency, match=r"no TensorRT backend is installed.*skdeploy\[rtx\]"):
        build_engine(exported("sknet-fmnist"), tmp_path / "x.engine")


def test_engine_stage_refuses_an_fp32_onnx_that_needs_calibration(tmp_path):
    """TensorRT-RTX takes INT8 from Q/DQ nodes; the engine stage never calibrates, the pipeline does."""
    path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match=r"takes int8 from the ONNX, and m\.onnx is FP32: calibrate it first"):
        build_engine(path, tmp_path / "x.engine", BuildSettings(backend="tensorrt-rtx", precision="int8"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_precision_already_in_the_onnx_cannot_change(tmp_path):
    path = tiny_onnx(tmp_path / "q.onnx", qdq=True)
    with pytest.raises(UsageError, match=r"already int8 \(Q/DQ nodes\); build it without `precision=fp16`"):
        build_engine(path, tmp_path / "x.engine", BuildSettings(backend="tensorrt-rtx", precision="fp16"))


# ------------------------------------------------- classic TensorRT: version choices against the fake

CLASSIC = ["8.6.1", "10.3.0", "11.0.0"]


def calls_named(trt, prefix):
    return [c for c in trt.calls if c[0].startswith(prefix)]


def test_capabilities_per_version():
    expected = {  # version: (explicit batch flag, strong typing, precision flags, DLA, hardware levels)
        "8.2.1": (True, "unavailable", ("FP16", "INT8"), True, ()),
        "8.5.2": (True, "unavailable", ("FP16", "INT8"), True, ()),
        "8.6.1": (True, "unavailable", ("FP16", "INT8"), True, ("none", "ampere-plus")),
        "10.3.0": (False, "optional", ("FP16", "INT8"), True, ("none", "ampere-plus")),
        "10.13.0": (False, "optional", ("FP16", "INT8"), True, ("none", "ampere-plus", "same-cc")),
        "11.0.0": (False, "always", (), False, ("none", "ampere-plus", "same-cc")),  # no DLA in 11.0-11.3
        "11.4.1": (False, "always", (), True, ("none", "ampere-plus", "same-cc")),  # DLA again (Orin)
    }
    assert set(expected) == set(API)
    for version, (explicit, typing, flags, dla, levels) in expected.items():
        caps = capabilities_of(make_fake_tensorrt(version), "tensorrt")
        assert (caps.explicit_batch_flag, caps.strong_typing, caps.precision_flags, caps.dla,
                caps.hardware_compatibility) == (explicit, typing, flags, dla, levels), version
        assert caps.compute_capabilities == () and caps.memory_pool_limit == (version != "8.2.1")
    rtx = capabilities_of(trt_rtx, "tensorrt-rtx")
    assert rtx.strong_typing == "always" and rtx.precision_flags == () and not rtx.dla
    assert {"8.6", "8.9"} <= set(rtx.compute_capabilities) and "9.0" not in rtx.compute_capabilities
    assert rtx.hardware_compatibility == () and not rtx.version_compatible


@pytest.mark.parametrize("version, network_flags", [("8.6.1", 1 << 0), ("10.3.0", 0), ("11.0.0", 0)])
def test_classic_fp32_dynamic_batch(fake_trt, exported, tmp_path, version, network_flags):
    trt = fake_trt(version)
    source = exported("sknet-fmnist", dynamic_batch=True)
    result = build_engine(source, tmp_path / "e.engine", BuildSettings(backend="tensorrt", min_batch=2, opt_batch=4,
                                                                        max_batch=16))
    assert calls_named(trt, "create_network") == [("create_network", network_flags)]
    assert calls_named(trt, "config.set_flag") == []
    assert calls_named(trt, "profile.set_shape") == [
        ("profile.set_shape", "input", [2, 1, 32, 32], [4, 1, 32, 32], [16, 1, 32, 32])]
    engine = result.engine
    assert (engine.backend, engine.backend_version, engine.target) == ("tensorrt", version, "desktop")
    assert engine.compute_capabilities == [] and engine.strongly_typed is (version == "11.0.0")
    assert engine.warnings == ["fake builder: no tactics were timed"]
    # the engine file is exactly what the builder returned
    assert (tmp_path / "e.engine").read_bytes().startswith(PLAN_MARKER)
    assert plan_summary(tmp_path / "e.engine")["inputs"] == ["input"]


@pytest.mark.parametrize("version, network_flags, flags, calibrate", [
    ("8.6.1", 1 << 0, ["FP16"], False),   # weakly typed: the FP16 builder flag
    ("10.3.0", 0, ["FP16"], False),       # flag still exists; strong typing stays off
    ("11.0.0", 0, [], True),              # no flag: precision must come from the ONNX (calibration stage)
])
def test_classic_fp16_from_fp32_onnx(fake_trt, exported, tmp_path, version, network_flags, flags, calibrate):
    trt = fake_trt(version)
    source = exported("sknet-fmnist", dynamic_batch=True)
    settings = BuildSettings(backend="tensorrt", precision="fp16", calib_images=CALIB_IMAGES,
                             calibration={"holdout_images": 0})
    result = build(source, tmp_path / "e.engine", settings)
    assert calls_named(trt, "create_network") == [("create_network", network_flags)]
    assert [c[1] for c in calls_named(trt, "config.set_flag")] == flags
    engine = result.engine
    assert engine.precision == "fp16" and engine.builder_flags == flags
    assert engine.precision_from == ("onnx" if calibrate else "builder-flags")
    assert (engine.calibration is not None) is calibrate
    assert engine.source_onnx["file"].endswith("e.fp16.onnx" if calibrate else "sknet-fmnist.onnx")


@pytest.mark.parametrize("precision", ["int8", "fp16"])
@pytest.mark.parametrize("version, network_flags, weak_flag", [
    ("8.6.1", 1 << 0, True),   # weakly typed: Q/DQ needs the INT8 flag, FP16 tensors the FP16 flag
    ("10.3.0", 1 << 1, False),  # opt in to strong typing: precision comes from the ONNX, no flags
    ("11.0.0", 0, False),       # always strongly typed, no flag to pass
])
def test_classic_precision_already_in_the_onnx(fake_trt, tmp_path, version, network_flags, weak_flag, precision):
    trt = fake_trt(version)
    path = tiny_onnx(tmp_path / "m.onnx", qdq=precision == "int8",
                     elem=TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT)
    result = build_engine(path, tmp_path / "e.engine", BuildSettings(backend="tensorrt", target="datacenter"))
    assert calls_named(trt, "create_network") == [("create_network", network_flags)]
    assert [c[1] for c in calls_named(trt, "config.set_flag")] == ([precision.upper()] if weak_flag else [])
    assert result.engine.precision == precision and result.engine.calibration is None
    assert plan_summary(tmp_path / "e.engine")["strongly_typed"] is not weak_flag


def test_classic_10x_weak_typing_on_request(fake_trt, tmp_path):
    trt = fake_trt("10.3.0")
    build_engine(tiny_onnx(tmp_path / "q.onnx", qdq=True), tmp_path / "e.engine",
                 BuildSettings(backend="tensorrt", strongly_typed=False))
    assert calls_named(trt, "create_network") == [("create_network", 0)]
    assert [c[1] for c in calls_named(trt, "config.set_flag")] == ["INT8"]


@pytest.mark.parametrize("version, call", [
    ("8.2.1", ("config.max_workspace_size", 2 << 30)),
    ("8.6.1", ("config.set_memory_pool_limit", "WORKSPACE", 2 << 30)),
    ("11.0.0", ("config.set_memory_pool_limit", "WORKSPACE", 2 << 30)),
])
def test_classic_workspace_api(fake_trt, tmp_path, version, call):
    trt = fake_trt(version)
    build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine",
                 BuildSettings(backend="tensorrt", workspace=2 << 30))
    assert call in trt.calls


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_classic_dla_static_shape_gpu_fallback_and_listed_layers(fake_trt, exported, tmp_path, version):
    trt = fake_trt(version)
    source = exported("sknet-fmnist", dynamic_batch=True)
    settings = BuildSettings(backend="tensorrt", target="jetson-orin", dla_core=1, precision="fp16", opt_batch=4)
    with pytest.raises(UsageError,
                       match=r"layers cannot run on the DLA \(.*\(GLOBALAVERAGEPOOL\).*`gpu_fallback=True`"):
        build_engine(source, tmp_path / "e.engine", settings)
    trt.calls.clear()
    settings.gpu_fallback = True
    engine = build_engine(source, tmp_path / "e.engine", settings).engine
    assert ("config.default_device_type", "DLA") in trt.calls and ("config.DLA_core", 1) in trt.calls
    assert [c[1] for c in calls_named(trt, "config.set_flag")] == ["FP16", "GPU_FALLBACK"]
    assert calls_named(trt, "profile.set_shape") == [
        ("profile.set_shape", "input", [4, 1, 32, 32], [4, 1, 32, 32], [4, 1, 32, 32])]
    assert engine.dla_core == 1 and engine.profiles[0]["input"]["min"] == [4, 1, 32, 32]
    model = onnx.load(str(source))
    from tests.support.fake_tensorrt import NOT_ON_DLA
    assert engine.dla_fallback_layers == [f"{n.name} ({n.op_type.upper()})" for n in model.graph.node
                                          if n.op_type in NOT_ON_DLA]


def test_classic_dla_int8_sets_fp16_too_and_needs_reduced_precision(fake_trt, tmp_path):
    trt = fake_trt("8.6.1")
    build_engine(tiny_onnx(tmp_path / "q.onnx", qdq=True), tmp_path / "e.engine",
                 BuildSettings(backend="tensorrt", target="jetson-xavier", dla_core=0))
    assert [c[1] for c in calls_named(trt, "config.set_flag")] == ["INT8", "FP16"]
    with pytest.raises(UsageError, match="DLA runs FP16 or INT8 only"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "f.engine",
                     BuildSettings(backend="tensorrt", target="jetson-xavier", dla_core=0))


@pytest.mark.parametrize("settings, message", [
    (dict(target="jetson-orin", dla_core=0, precision="fp16"), "cannot build for DLA"),
    (dict(target="desktop", dla_core=0, precision="fp16"), "target desktop has no DLA"),
    (dict(compute_capabilities=["8.6"]), "builds for the GPU it runs on"),
    (dict(hardware_compatibility="ampere-plus", target="jetson-orin"), "cannot build hardware-compatible"),
    (dict(strongly_typed=False), "builds strongly typed networks only"),
])
def test_classic_11_refusals(fake_trt, tmp_path, settings, message):
    fake_trt("11.0.0")
    with pytest.raises(UsageError, match=message):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine",
                     BuildSettings(backend="tensorrt", **settings))


@pytest.mark.parametrize("version, level, allowed", [
    ("8.6.1", "ampere-plus", True), ("8.6.1", "same-cc", False),
    ("10.3.0", "same-cc", False), ("10.13.0", "same-cc", True),
])
def test_classic_hardware_compatibility_levels(fake_trt, tmp_path, version, level, allowed):
    trt = fake_trt(version)
    settings = BuildSettings(backend="tensorrt", hardware_compatibility=level)
    if not allowed:
        refusal = f"cannot build hardware compatibility {level}; it can: none, ampere-plus$"
        with pytest.raises(UsageError, match=refusal):
            build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine", settings)
        return
    engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine", settings).engine
    member = {"ampere-plus": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}[level]
    assert ("config.hardware_compatibility_level", member) in trt.calls
    assert engine.hardware_compatibility == level


def test_classic_version_compatible_lean_runtime_and_optimization_level(fake_trt, tmp_path):
    trt = fake_trt("10.3.0")
    engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "e.engine",
                          BuildSettings(backend="tensorrt", version_compatible=True, exclude_lean_runtime=True,
                                        optimization_level=5)).engine
    assert [c[1] for c in calls_named(trt, "config.set_flag")] == ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]
    assert ("config.builder_optimization_level", 5) in trt.calls
    assert engine.version_compatible is True and engine.lean_runtime_excluded is True
    fake_trt("8.2.1")
    with pytest.raises(UsageError, match="cannot build version-compatible engines"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "f.engine",
                     BuildSettings(backend="tensorrt", version_compatible=True))


def test_classic_timing_cache_merges_into_the_file(fake_trt, tmp_path):
    cache = tmp_path / "trt.cache"
    trt = fake_trt("10.3.0")
    build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "a.engine",
                 BuildSettings(backend="tensorrt", timing_cache=str(cache)))
    first = set(json.loads(cache.read_text())["entries"])
    assert ("config.set_timing_cache", False) in trt.calls and len(first) == 1
    build_engine(tiny_onnx(tmp_path / "q.onnx", qdq=True), tmp_path / "b.engine",
                 BuildSettings(backend="tensorrt", timing_cache=str(cache), strongly_typed=False))
    second = set(json.loads(cache.read_text())["entries"])
    assert first < second and len(second) == 2  # the second build's entries were added, none lost
    assert ("timing_cache.combine", False) in trt.calls


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_classic_parse_failure_names_nodes_and_op_types(fake_trt, tmp_path, version):
    fake_trt(version)  # 8.6's parser reports only the node index: names and op types come from the ONNX
    path = tiny_onnx(tmp_path / "custom.onnx", op="Frobnicate", domain="com.example")
    with pytest.raises(SkdeployError, match=r"node 1 frobnicate_last \(Frobnicate\): No importer registered for op: "
                                            r"Frobnicate"):
        build_engine(path, tmp_path / "e.engine", BuildSettings(backend="tensorrt"))
    assert not (tmp_path / "e.engine").exists()


def test_auto_backend_prefers_classic_tensorrt_then_rtx(fake_trt, monkeypatch, tmp_path):
    fake_trt("10.3.0")
    assert build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "a.engine").engine.backend == "tensorrt"
    auto_rtx = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "b.engine",
                            BuildSettings(compute_capabilities=["8.6"])).engine
    assert auto_rtx.backend == "tensorrt-rtx"  # a compute-capability list is TensorRT-RTX's
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "c.engine").engine.target == "rtx"


def test_plan_checks_run_before_any_build(fake_trt, tmp_path):
    trt = fake_trt("10.3.0")
    model = onnx.load(str(tiny_onnx(tmp_path / "m.onnx")))
    with pytest.raises(UsageError, match="`optimization_level` must be 0..5"):
        plan_build(BuildSettings(optimization_level=7), capabilities_of(trt, "tensorrt"), "desktop", model)
    assert trt.calls == []


# ------------------------------------------------------------- real GPU: build and run (skipped elsewhere)

def gpu_backend():
    """(backend, reason to skip or None): classic TensorRT with a GPU, else TensorRT-RTX on a GPU it supports."""
    if shutil.which("nvidia-smi") is None and not os.path.exists("/dev/nvidia0"):
        return None, "no NVIDIA GPU on this machine"
    from skdeploy.trt import installed

    if installed("tensorrt"):
        return "tensorrt", None
    if installed("tensorrt-rtx"):
        return "tensorrt-rtx", None
    return None, "neither tensorrt nor tensorrt_rtx installed"


@pytest.mark.gpu
def test_gpu_build_and_run_matches_onnxruntime(exported, tmp_path):
    backend, reason = gpu_backend()
    if backend is None:
        pytest.skip(f"needs a GPU and TensorRT: {reason}")
    from skdeploy.runners.onnxrt import OnnxRuntimeRunner
    from skdeploy.runners.trt import TensorRTRunner

    source = exported("sknet-fmnist", dynamic_batch=True)
    settings = BuildSettings(backend=backend, compute_capabilities=None, max_batch=8)
    if backend == "tensorrt-rtx":
        settings.compute_capabilities = [gpu_compute_capability()]
    engine_path = tmp_path / "gpu.engine"
    try:
        build_engine(source, engine_path, settings)
    except UsageError as exc:
        pytest.skip(f"this GPU cannot take a {backend} engine: {exc}")
    batch = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    with OnnxRuntimeRunner(source) as reference, TensorRTRunner(engine_path) as runner:
        expected = reference.infer(batch)["logits"]
        got = runner.infer(batch)["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-3)


def gpu_compute_capability() -> str:
    import subprocess

    out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[0]
