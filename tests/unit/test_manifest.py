"""A manifest's recorded sha256 is checked when the manifest is read, and only where the caller wants it."""
import hashlib
import json

import pytest

from skdeploy.errors import SkdeployError
from skdeploy.manifest import hash_checks, load_manifest, verify_artifact


def artifact_with_manifest(folder, content: bytes, recorded: bytes):
    """model.onnx holding `content`, with a manifest that records the sha256 of `recorded`."""
    path = folder / "model.onnx"
    path.write_bytes(content)
    manifest = {"format": "skdeploy-manifest/1", "model": {}, "preprocessing": None, "stages": [],
                "artifact": {"file": "model.onnx", "kind": "onnx", "sha256": hashlib.sha256(recorded).hexdigest()}}
    (folder / "model.onnx.json").write_text(json.dumps(manifest))
    return path


def test_a_matching_file_loads(tmp_path):
    path = artifact_with_manifest(tmp_path, b"weights", b"weights")
    assert load_manifest(path)["artifact"]["sha256"] == hashlib.sha256(b"weights").hexdigest()


def test_a_changed_file_is_one_line_with_both_hashes(tmp_path):
    path = artifact_with_manifest(tmp_path, b"weights, truncat", b"weights, truncated later")
    actual = hashlib.sha256(b"weights, truncat").hexdigest()
    recorded = hashlib.sha256(b"weights, truncated later").hexdigest()
    with pytest.raises(SkdeployError) as failure:
        load_manifest(path)
    assert failure.value.exit_code == 1
    assert str(failure.value) == (f"{path} does not match its manifest model.onnx.json: sha256 {actual[:12]}, recorded "
                                  f"{recorded[:12]} (the file changed or the manifest belongs to another file; "
                                  "`verify=False` skips this check)")


def test_checks_can_be_turned_off_per_call_or_per_block(tmp_path):
    path = artifact_with_manifest(tmp_path, b"changed", b"original")
    assert load_manifest(path, verify=False)["artifact"]["kind"] == "onnx"
    with hash_checks(False):
        assert load_manifest(path)["artifact"]["kind"] == "onnx"
        with pytest.raises(SkdeployError):
            load_manifest(path, verify=True)  # an explicit argument wins over the block
    with pytest.raises(SkdeployError):
        load_manifest(path)  # the block ended: checks are on again


@pytest.mark.parametrize("manifest", [{}, {"artifact": None}, {"artifact": {"file": "model.onnx"}}])
def test_a_manifest_without_a_recorded_hash_has_nothing_to_check(tmp_path, manifest):
    (tmp_path / "model.onnx").write_bytes(b"anything")
    verify_artifact(tmp_path / "model.onnx", manifest)


def test_a_missing_artifact_is_left_to_its_reader(tmp_path):
    verify_artifact(tmp_path / "gone.onnx", {"artifact": {"sha256": "0" * 64}})
