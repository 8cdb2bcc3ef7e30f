"""The manifest's model entry (skdeploy/models/entry.py): one form written by every stage, and manifests of
the previous version (no `input_size`, {} for unknown preprocessing) read and carried on in that form."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skdeploy.manifest import FORMAT
from skdeploy.models.entry import ModelEntry, derive_manifest, new_manifest

REPO = Path(__file__).resolve().parents[3]
DEMO_ENTRY = {"spec": "sknet-fmnist", "checkpoint": {"path": "skdeploy/weights/sknet_fmnist.pt", "sha256": "ab"},
              "kwargs": {}, "num_classes": 10, "dataset": "fashion-mnist", "input_size": [1, 32, 32]}
PREVIOUS_BARE_ENTRY = {"spec": None, "checkpoint": None, "kwargs": {}, "num_classes": None, "dataset": None}


def test_record_lists_every_field_in_manifest_order():
    entry = ModelEntry(spec="sknet-fmnist", checkpoint=DEMO_ENTRY["checkpoint"], num_classes=10,
                       dataset="fashion-mnist", input_size=(1, 32, 32))
    assert entry.record() == DEMO_ENTRY
    assert list(entry.record()) == ["spec", "checkpoint", "kwargs", "num_classes", "dataset", "input_size"]
    assert json.dumps(entry.record()) == json.dumps(DEMO_ENTRY)  # the tuple is stored as a list


def test_an_entry_reads_back_from_its_manifest():
    assert ModelEntry.from_manifest({"model": DEMO_ENTRY}).record() == DEMO_ENTRY


def test_previous_version_entries_read_with_input_size_unknown():
    entry = ModelEntry.from_manifest({"model": PREVIOUS_BARE_ENTRY})
    assert entry == ModelEntry() and entry.record() == dict(PREVIOUS_BARE_ENTRY, input_size=None)


@pytest.mark.parametrize("manifest", [None, {}, {"model": None}, {"model": {}}])
def test_a_missing_entry_reads_as_nothing_known(manifest):
    assert ModelEntry.from_manifest(manifest) == ModelEntry(spec=None, checkpoint=None, kwargs={}, num_classes=None,
                                                            dataset=None, input_size=None)


def test_fields_of_a_later_version_are_ignored():
    later = dict(DEMO_ENTRY, trained_on="2031-01-01")
    assert ModelEntry.from_manifest({"model": later}).record() == DEMO_ENTRY


@pytest.mark.parametrize("inputs, input_size", [
    ([{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}], [3, 224, 224]),
    ([{"name": "input", "shape": [1, 1, 32, 32], "dtype": "float32"}], [1, 32, 32]),
    ([{"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}], None),
    ([{"name": "input", "shape": ["batch"], "dtype": "float32"}], None),
    ([], None),
])
def test_a_graph_gives_only_its_input_size(inputs, input_size):
    entry = ModelEntry.of_graph(inputs, spec="onnx:foreign.onnx")
    assert entry.record() == {"spec": "onnx:foreign.onnx", "checkpoint": None, "kwargs": {}, "num_classes": None,
                              "dataset": None, "input_size": input_size}


@pytest.mark.parametrize("preprocessing, written", [({"resize": 36}, {"resize": 36}), (None, None), ({}, None)])
def test_new_manifest_layout(preprocessing, written):
    manifest = new_manifest(ModelEntry(spec="tiny", input_size=[3, 8, 8]), preprocessing)
    assert manifest == {"format": FORMAT, "artifact": None,
                        "model": {"spec": "tiny", "checkpoint": None, "kwargs": {}, "num_classes": None,
                                  "dataset": None, "input_size": [3, 8, 8]},
                        "preprocessing": written, "inputs": [], "outputs": [], "stages": []}


def test_derive_rewrites_a_previous_version_manifest_in_the_current_form():
    parent = {"format": FORMAT, "artifact": {"file": "m.onnx", "kind": "onnx", "sha256": "00"},
              "model": dict(PREVIOUS_BARE_ENTRY), "preprocessing": {}, "inputs": [{"name": "x", "shape": [1, 3]}],
              "outputs": [], "stages": [{"stage": "optimize", "passes": []}]}
    before = json.dumps(parent)
    derived = derive_manifest(parent)
    assert derived["model"] == dict(PREVIOUS_BARE_ENTRY, input_size=None) and derived["preprocessing"] is None
    assert list(derived) == list(parent)  # same layout, fields in place
    assert {key: derived[key] for key in ("format", "artifact", "inputs", "outputs", "stages")} == \
        {key: parent[key] for key in ("format", "artifact", "inputs", "outputs", "stages")}
    derived["stages"].append({"stage": "calibrate"})
    derived["inputs"][0]["shape"][0] = "batch"
    assert json.dumps(parent) == before  # the next stage extends a copy, never its input's manifest


def test_derive_keeps_a_current_manifest_as_it_is():
    parent = {"format": FORMAT, "artifact": None, "model": DEMO_ENTRY, "preprocessing": {"resize": 32},
              "inputs": [], "outputs": [], "stages": [], "opset": 17}
    assert json.dumps(derive_manifest(parent)) == json.dumps(parent)


def test_importable_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from skdeploy.models.entry import ModelEntry\n"
            "print(ModelEntry(spec='x').record()['spec'], 'torch' in sys.modules and sys.modules['torch'] is not None)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["x", "False"]
