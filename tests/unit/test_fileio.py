"""Outputs appear whole under their final name or not at all.

skdeploy.fileio itself, then the writer of every command's output (export, calibrate, build-engine,
validate), each called directly on tiny inputs with a failure injected at its write or its rename.
What must remain afterwards: no temporary file, no final file, an older file untouched.
"""
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from skdeploy.errors import SkdeployError, UsageError
from skdeploy.fileio import (
    atomic_path,
    check_output_path,
    output_transaction,
    readable_path,
    sha256_file,
    write_bytes_atomic,
    write_text_atomic,
)

DISK_FULL = os.strerror(errno.ENOSPC)


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, DISK_FULL)


def fail_rename_onto(monkeypatch, name):
    """os.replace onto a file called `name` fails as on a full disk; every other rename goes through."""
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target).name == name:
            disk_full()
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def write_half_then_fail(path, data):
    """Path.write_bytes that runs out of space halfway."""
    with open(path, "wb") as handle:
        handle.write(data[:len(data) // 2])
    disk_full()


def files_in(folder):
    """Every file below `folder`, temporary ones included, as sorted relative names."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def temporary_files(folder):
    return [name for name in files_in(folder) if name.endswith(".tmp")]


def tiny_model():
    """input (1, 1, 2, 2) -> 1x1 Conv (weight 2) -> Relu: valid for onnxruntime, calibration and TensorRT-RTX."""
    weight = numpy_helper.from_array(np.full((1, 1, 1, 1), 2.0, np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "weight"], ["scaled"], name="conv"),
         helper.make_node("Relu", ["scaled"], ["logits"], name="relu")],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 2, 2])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tiny_onnx_file(folder):
    path = Path(folder) / "tiny.onnx"
    onnx.save(tiny_model(), str(path))
    return path


# ---- check_output_path ---------------------------------------------------------------------------
def test_check_output_path_accepts_a_new_name_in_folders_yet_to_make(tmp_path):
    """Checking makes nothing: the output transaction makes the folders, and removes them if it fails."""
    target = tmp_path / "a" / "b" / "out.onnx"
    assert check_output_path(str(target), force=False) == target
    assert not (tmp_path / "a").exists()


def test_the_transaction_makes_the_folders_and_removes_them_on_failure(tmp_path):
    target = tmp_path / "a" / "b" / "out.onnx"
    with pytest.raises(RuntimeError), output_transaction([target]):
        assert target.parent.is_dir()
        raise RuntimeError("the work failed")
    assert not (tmp_path / "a").exists()
    with output_transaction([target]):
        write_bytes_atomic(target, b"x")
    assert target.read_bytes() == b"x"


def test_check_output_path_relative_name_lands_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_path("out.onnx", force=False) == Path("out.onnx")


def test_check_output_path_refuses_an_existing_file_without_force(tmp_path):
    target = tmp_path / "out.onnx"
    target.write_bytes(b"keep")
    with pytest.raises(UsageError) as failure:
        check_output_path(target, force=False)
    assert str(failure.value) == f"{target} already exists; pass `force=True` to overwrite it"
    assert check_output_path(target, force=True) == target
    assert target.read_bytes() == b"keep"  # checking never deletes


@pytest.mark.parametrize("force", [False, True])
def test_check_output_path_folder_given_as_file(tmp_path, force):
    with pytest.raises(UsageError) as failure:
        check_output_path(tmp_path, force=force)
    assert str(failure.value) == f"{tmp_path} is a folder, not a file name"  # force would not help


def test_check_output_path_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "plain").write_text("a file where a folder should be")
    folder = tmp_path / "plain" / "sub"
    with pytest.raises(SkdeployError) as failure:
        check_output_path(folder / "out.onnx", force=False)
    assert failure.value.exit_code == 1
    assert str(failure.value) == f"cannot create output folder {folder}: Not a directory"


def test_check_output_path_unwritable_folder(tmp_path, monkeypatch):
    real_access = os.access
    # root may write anywhere, so the folder answers "not writable" to exactly the question the check asks
    monkeypatch.setattr(os, "access", lambda path, mode: False if (Path(path), mode) == (tmp_path, os.W_OK)
                        else real_access(path, mode))
    with pytest.raises(SkdeployError) as failure:
        check_output_path(tmp_path / "out.onnx", force=False)
    assert failure.value.exit_code == 1 and str(failure.value) == f"output folder {tmp_path} is not writable"


@pytest.mark.parametrize("make", [lambda path: os.mkfifo(path), lambda path: os.symlink("/dev/null", path),
                                  lambda path: os.symlink(path.parent / "missing", path)],
                         ids=["fifo", "link to a device", "dangling link"])
def test_check_output_path_force_refuses_what_is_not_a_regular_file(tmp_path, make):
    target = tmp_path / "out.html"
    make(target)
    with pytest.raises(UsageError) as failure:
        check_output_path(target, force=True)
    assert str(failure.value) == f"{target} is not a regular file; `force=True` replaces only regular files"


def test_check_output_path_force_accepts_a_link_to_a_regular_file(tmp_path):
    (tmp_path / "real.onnx").write_bytes(b"old")
    os.symlink(tmp_path / "real.onnx", tmp_path / "link.onnx")
    assert check_output_path(tmp_path / "link.onnx", force=True) == tmp_path / "link.onnx"


# ---- output_transaction: one command's outputs ----------------------------------------------------
def test_transaction_outputs_appear_together_when_the_block_ends(tmp_path):
    model, manifest = tmp_path / "m.onnx", tmp_path / "m.onnx.json"
    with output_transaction([model, manifest]):
        write_bytes_atomic(model, b"model")
        write_text_atomic(manifest, "{}")
        assert not model.exists() and not manifest.exists()
        assert readable_path(model).read_bytes() == b"model"  # a later step of the command reads it there
        assert sha256_file(model) == hashlib.sha256(b"model").hexdigest()
        assert ".m.onnx.lock" in files_in(tmp_path) and len(temporary_files(tmp_path)) == 2
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.json"]
    assert model.read_bytes() == b"model" and manifest.read_text() == "{}"


@pytest.mark.parametrize("failure", [ZeroDivisionError, KeyboardInterrupt])
def test_transaction_failure_keeps_the_older_files_and_removes_every_temporary(tmp_path, failure):
    model, manifest = tmp_path / "m.onnx", tmp_path / "m.onnx.json"
    model.write_bytes(b"old model")
    manifest.write_bytes(b"old manifest")
    with pytest.raises(failure):
        with output_transaction([model, manifest], force=True):
            write_bytes_atomic(model, b"new model")
            raise failure()
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.json"]
    assert model.read_bytes() == b"old model" and manifest.read_bytes() == b"old manifest"


def test_transaction_failed_rename_puts_back_the_files_already_renamed(tmp_path, monkeypatch):
    model, manifest = tmp_path / "m.onnx", tmp_path / "m.onnx.json"
    model.write_bytes(b"old model")
    manifest.write_bytes(b"old manifest")
    fail_rename_onto(monkeypatch, "m.onnx.json")  # m.onnx is renamed first, then the disk is full
    with pytest.raises(SkdeployError, match=f"cannot write {manifest}: {DISK_FULL}"):
        with output_transaction([model, manifest], force=True):
            write_bytes_atomic(model, b"new model")
            write_bytes_atomic(manifest, b"new manifest")
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.json"]
    assert model.read_bytes() == b"old model" and manifest.read_bytes() == b"old manifest"


def test_transaction_checks_every_output_before_the_block_runs(tmp_path):
    (tmp_path / "m.onnx.json").write_bytes(b"keep")
    ran = []
    with pytest.raises(UsageError, match=r"m\.onnx\.json already exists; pass `force=True`"):
        with output_transaction([tmp_path / "m.onnx", tmp_path / "m.onnx.json"]):
            ran.append(True)
    assert ran == [] and files_in(tmp_path) == ["m.onnx.json"]


def test_a_second_writer_of_the_same_output_fails_at_once(tmp_path):
    import contextvars

    model = tmp_path / "m.onnx"

    def second_command():  # a fresh context: no transaction to join, as in another process
        with output_transaction([model]):
            pass

    with output_transaction([model]):
        with pytest.raises(SkdeployError) as failure:
            contextvars.Context().run(second_command)
    assert str(failure.value) == (f"another skdeploy command is writing {model} now; wait for it to finish, "
                                  "or choose another output")
    assert files_in(tmp_path) == []  # the lock file goes with the transaction
    contextvars.Context().run(second_command)  # and the output is free again


def test_a_transaction_knows_its_outputs_however_they_are_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with output_transaction(["m.onnx"]):
        write_bytes_atomic(tmp_path / "m.onnx", b"model")  # absolute here, relative when the command began
        assert readable_path("./m.onnx").read_bytes() == b"model"
    assert files_in(tmp_path) == ["m.onnx"]


def test_a_nested_transaction_joins_the_outer_one(tmp_path):
    engine, calibrated = tmp_path / "x.engine", tmp_path / "x.int8.onnx"
    with output_transaction([engine]) as outer:
        with output_transaction([calibrated]) as inner:
            write_bytes_atomic(calibrated, b"int8")
        assert inner is outer and not calibrated.exists()
        write_bytes_atomic(engine, readable_path(calibrated).read_bytes() + b" engine")
    assert engine.read_bytes() == b"int8 engine" and files_in(tmp_path) == ["x.engine", "x.int8.onnx"]


# ---- atomic_path and the write helpers -----------------------------------------------------------
def test_atomic_path_writes_under_a_hidden_temporary_name_beside_the_target(tmp_path):
    target = tmp_path / "model.onnx"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and not target.exists()  # nothing under the final name until the block ends
        tmp.write_bytes(b"whole")
    assert files_in(tmp_path) == ["model.onnx"] and target.read_bytes() == b"whole"


def test_atomic_path_replaces_an_older_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert files_in(tmp_path) == ["model.onnx"] and target.read_bytes() == b"new"


def test_atomic_path_disk_full_in_the_block_leaves_nothing_and_keeps_the_older_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(SkdeployError) as failure:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            disk_full()
    assert failure.value.exit_code == 1 and str(failure.value) == f"cannot write {target}: {DISK_FULL}"
    assert files_in(tmp_path) == ["model.onnx"] and target.read_bytes() == b"old"


def test_atomic_path_failed_rename_leaves_nothing_and_keeps_the_older_file(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    fail_rename_onto(monkeypatch, "model.onnx")
    with pytest.raises(SkdeployError, match=f"cannot write {target}: {DISK_FULL}"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert files_in(tmp_path) == ["model.onnx"] and target.read_bytes() == b"old"


def test_atomic_path_a_bug_in_the_block_propagates_as_itself_and_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"half")
            _ = 1 / 0
    assert files_in(tmp_path) == []


def test_atomic_path_into_a_missing_folder(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(SkdeployError) as failure:
        with atomic_path(missing / "model.onnx"):
            pass
    assert str(failure.value) == f"cannot write into {missing}: No such file or directory"


def test_atomic_results_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "out.onnx", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.onnx").stat().st_mode) == 0o644  # rw-r--r--


@settings(max_examples=30, deadline=None)
@given(umask=st.integers(0, 0o777))
def test_atomic_results_follow_the_umask_like_open_does(umask):
    with tempfile.TemporaryDirectory() as folder:
        previous = os.umask(umask)
        try:
            write_bytes_atomic(Path(folder) / "out", b"x")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(os.stat(Path(folder) / "out").st_mode) == 0o666 & ~umask


def test_write_text_atomic_writes_utf8(tmp_path):
    write_text_atomic(tmp_path / "note.json", "é\n")
    assert (tmp_path / "note.json").read_bytes() == b"\xc3\xa9\n"


@pytest.mark.parametrize("write, content", [(write_bytes_atomic, b"new bytes"), (write_text_atomic, "new text")])
@pytest.mark.parametrize("failure", ["disk full midway", "rename"])
def test_write_helpers_leave_the_older_file_and_no_temporary(tmp_path, monkeypatch, write, content, failure):
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    if failure == "rename":
        fail_rename_onto(monkeypatch, "out.json")
    else:
        monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
    with pytest.raises(SkdeployError, match=f"cannot write {target}: {DISK_FULL}"):
        write(target, content)
    assert files_in(tmp_path) == ["out.json"] and target.read_bytes() == b"old"


# ---- sha256_file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content, digest", [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),  # FIPS 180-2 test vectors
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
])
def test_sha256_file_known_digests(tmp_path, content, digest):
    (tmp_path / "f").write_bytes(content)
    assert sha256_file(tmp_path / "f") == digest


@pytest.mark.parametrize("size", [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7])
def test_sha256_file_reads_past_its_block_size(tmp_path, size):
    content = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    (tmp_path / "f").write_bytes(content)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(content).hexdigest()


# ---- every command's output: refuse to overwrite ----------------------------------------------------
def _export(folder, output, force):
    from skdeploy.stages.export import ExportSettings, export_model

    export_model(None, output, ExportSettings(), force=force)  # the output check comes before the model


def _calibrate(folder, output, force):
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    calibrate_model(tiny_onnx_file(folder), output, CalibrationSettings(), force=force)


def _build_engine(folder, output, force):
    from skdeploy.stages.build import BuildSettings, build_engine

    build_engine(tiny_onnx_file(folder), output, BuildSettings(backend="tensorrt-rtx"), force=force)


def _save_reference(folder, output, force):
    from skdeploy.reference import save_reference

    save_reference(output, *reference_parts(), force=force)


@pytest.mark.parametrize("write", [_export, _calibrate, _build_engine, _save_reference])
def test_command_outputs_are_not_overwritten_without_force(tmp_path, write):
    output = tmp_path / "existing.out"
    output.write_bytes(b"keep")
    with pytest.raises(UsageError, match="existing.out already exists; pass `force=True`"):
        write(tmp_path, output, force=False)
    assert output.read_bytes() == b"keep"


# ---- export: the ONNX, then its manifest -----------------------------------------------------------
def export_writes(folder):
    """What every writing stage does through run_stage: the ONNX, then its manifest."""
    from dataclasses import dataclass

    from skdeploy.manifest import StageResult
    from skdeploy.models.entry import ModelEntry, new_manifest
    from skdeploy.onnx.io import save_onnx
    from skdeploy.stages.stage import run_stage

    @dataclass
    class Written(StageResult):
        seconds: float = None

        def record(self):
            return {}

    output = Path(folder) / "m.onnx"

    def work():
        save_onnx(tiny_model(), output)
        return Written(output), new_manifest(ModelEntry(spec="tiny"), None)

    run_stage("export", output, work)


def test_export_writes_the_onnx_then_a_manifest_with_its_hash(tmp_path):
    export_writes(tmp_path)
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.json"]
    onnx_bytes = (tmp_path / "m.onnx").read_bytes()
    assert onnx.load_from_string(onnx_bytes) == tiny_model()
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["artifact"] == {"file": "m.onnx", "kind": "onnx", "sha256": hashlib.sha256(onnx_bytes).hexdigest()}


def test_export_onnx_write_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    real_write = Path.write_bytes

    def onnx_half_written(self, data):  # the manifest (JSON) would still be written
        if data.lstrip()[:1] != b"{":
            write_half_then_fail(self, data)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", onnx_half_written)
    with pytest.raises(SkdeployError, match=DISK_FULL):
        export_writes(tmp_path)
    assert files_in(tmp_path) == []


def test_export_manifest_write_failing_leaves_no_manifest_and_no_temporary(tmp_path, monkeypatch):
    fail_rename_onto(monkeypatch, "m.onnx.json")
    with pytest.raises(SkdeployError, match=f"cannot write {tmp_path / 'm.onnx.json'}: {DISK_FULL}"):
        export_writes(tmp_path)
    assert "m.onnx.json" not in files_in(tmp_path) and temporary_files(tmp_path) == []


def test_export_manifest_write_failing_leaves_no_onnx_either(tmp_path, monkeypatch):
    fail_rename_onto(monkeypatch, "m.onnx.json")
    with pytest.raises(SkdeployError):
        export_writes(tmp_path)
    assert files_in(tmp_path) == []


# ---- calibrate: ranges cache, TensorRT table, ONNX, manifest ------------------------------------------
CALIBRATION_INPUTS = ["data.npy", "tiny.onnx"]


def calibrate_tiny(folder):
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    data = Path(folder) / "data.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4, 1, 2, 2)).astype(np.float32))
    calibrate_model(tiny_onnx_file(folder), Path(folder) / "out.onnx",
                    CalibrationSettings(precision="int8", calib_data=str(data), calib_images=4, holdout_images=0))


def test_calibrate_writes_four_files(tmp_path):
    calibrate_tiny(tmp_path)
    assert files_in(tmp_path) == sorted(CALIBRATION_INPUTS + ["out.onnx", "out.onnx.calib.table", "out.onnx.json",
                                                              "out.onnx.ranges.json"])


@pytest.mark.parametrize("failing", ["out.onnx", "out.onnx.calib.table", "out.onnx.ranges.json", "out.onnx.json"])
def test_calibrate_any_write_failing_leaves_only_its_inputs(tmp_path, monkeypatch, failing):
    """The four files are one transaction: the ranges cache goes too, not only the model and its manifest."""
    fail_rename_onto(monkeypatch, failing)
    with pytest.raises(SkdeployError, match=f"cannot write .*{failing}: {DISK_FULL}"):
        calibrate_tiny(tmp_path)
    assert files_in(tmp_path) == CALIBRATION_INPUTS


def test_calibrate_manifest_write_failing_leaves_no_manifest_and_no_temporary(tmp_path, monkeypatch):
    fail_rename_onto(monkeypatch, "out.onnx.json")
    with pytest.raises(SkdeployError):
        calibrate_tiny(tmp_path)
    assert "out.onnx.json" not in files_in(tmp_path) and temporary_files(tmp_path) == []



# ---- build-engine: the engine, then ENGINE.json; the timing cache ------------------------------------
def build_tiny(folder):
    from skdeploy.stages.build import BuildSettings, build_engine

    return build_engine(tiny_onnx_file(folder), Path(folder) / "x.engine", BuildSettings(backend="tensorrt-rtx"))


def test_build_engine_writes_the_engine_then_its_sidecar(tmp_path):
    result = build_tiny(tmp_path)
    assert files_in(tmp_path) == ["tiny.onnx", "x.engine", "x.engine.json", "x.engine.layers.json"]
    engine_bytes = (tmp_path / "x.engine").read_bytes()
    assert result.engine.engine_bytes == len(engine_bytes) > 0
    sidecar = json.loads((tmp_path / "x.engine.json").read_text())
    assert sidecar["artifact"]["sha256"] == hashlib.sha256(engine_bytes).hexdigest()


def test_build_engine_engine_write_failing_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)  # engine/builder.py writes the engine with it
    with pytest.raises(SkdeployError, match=f"cannot write {tmp_path / 'x.engine'}: {DISK_FULL}"):
        build_tiny(tmp_path)
    assert files_in(tmp_path) == ["tiny.onnx"]


def test_build_engine_sidecar_write_failing_leaves_no_sidecar_and_no_temporary(tmp_path, monkeypatch):
    fail_rename_onto(monkeypatch, "x.engine.json")
    with pytest.raises(SkdeployError):
        build_tiny(tmp_path)
    assert "x.engine.json" not in files_in(tmp_path) and temporary_files(tmp_path) == []


def test_build_engine_sidecar_write_failing_leaves_no_engine_either(tmp_path, monkeypatch):
    fail_rename_onto(monkeypatch, "x.engine.json")
    with pytest.raises(SkdeployError):
        build_tiny(tmp_path)
    assert files_in(tmp_path) == ["tiny.onnx"]


def test_timing_cache_save_failing_leaves_no_file(tmp_path, monkeypatch):
    import tensorrt_rtx as trt

    from skdeploy.engine.timing import TimingCache

    cache = TimingCache(trt, trt.Builder(trt.Logger()).create_builder_config(), tmp_path / "timing.cache")
    fail_rename_onto(monkeypatch, "timing.cache")
    with pytest.raises(SkdeployError, match=f"cannot write {tmp_path / 'timing.cache'}: {DISK_FULL}"):
        cache.save()
    assert files_in(tmp_path) == [] and cache.saved_bytes == 0
    monkeypatch.undo()
    cache.save()
    assert files_in(tmp_path) == ["timing.cache"] and cache.saved_bytes == (tmp_path / "timing.cache").stat().st_size


# ---- validate: the saved reference and the HTML report ----------------------------------------------
def reference_parts():
    """(logits, labels, data record, Reference) for two 1x2x2 samples."""
    from skdeploy.models.entry import ModelEntry
    from skdeploy.reference import Reference

    inputs = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    data = {"source": "npy:data.npy", "count": 2, "inputs_sha256": hashlib.sha256(inputs.tobytes()).hexdigest()}
    reference = Reference("tiny (random weights)", "pytorch", ModelEntry(spec="tiny"),
                          {"resize": 2, "crop": [2, 2], "mean": [0.0], "std": [1.0], "channel_order": "GRAY"})
    return np.array([[1.0, -1.0], [0.5, 2.0]], np.float32), np.array([0, 1]), data, reference


def test_save_reference_round_trips(tmp_path):
    from skdeploy.reference import load_saved_reference, save_reference

    logits, labels, data, reference = reference_parts()
    save_reference(tmp_path / "ref.npz", logits, labels, data, reference)
    saved = load_saved_reference(tmp_path / "ref.npz").saved
    np.testing.assert_array_equal(saved["logits"], logits)
    np.testing.assert_array_equal(saved["labels"], [0, 1])
    assert str(saved["inputs_sha256"]) == data["inputs_sha256"]
    assert saved["meta"]["data"] == {"source": "npy:data.npy", "count": 2}


def test_save_reference_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    from skdeploy.reference import save_reference

    def savez_half(handle, **arrays):
        handle.write(b"PK\x03\x04")  # the start of a zip archive, then the disk is full
        disk_full()

    monkeypatch.setattr(np, "savez_compressed", savez_half)
    with pytest.raises(SkdeployError, match=f"cannot write {tmp_path / 'ref.npz'}: {DISK_FULL}"):
        save_reference(tmp_path / "ref.npz", *reference_parts())
    assert files_in(tmp_path) == []


def test_report_failing_rename_leaves_nothing(tmp_path, monkeypatch):
    from skdeploy.report import write_report
    from skdeploy.stages.validate import ValidateSettings, ValidationResult

    result = ValidationResult(reference={"source": "saved ref.npz", "kind": "saved"},
                              data={"source": "npy:data.npy", "count": 2, "labels": False, "inputs_sha256": "0" * 64,
                                    "class_names": []},
                              thresholds=ValidateSettings(), candidates=[], saved_reference=None, samples=None)
    write_report(tmp_path / "ok.html", result)
    assert (tmp_path / "ok.html").read_text().startswith("<!DOCTYPE html>")
    fail_rename_onto(monkeypatch, "report.html")
    with pytest.raises(SkdeployError, match=f"cannot write {tmp_path / 'report.html'}: {DISK_FULL}"):
        write_report(tmp_path / "report.html", result)
    assert files_in(tmp_path) == ["ok.html"]
