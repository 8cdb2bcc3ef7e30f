"""Bad inputs for file integrity: recorded hashes, existing outputs, --force, a full disk, racing writers, SIGINT.

Rows run the real CLI on a private copy of the demo artifacts (`workspace`) and check the harness's promise:
the exit code, one `error:` line, and the workspace exactly as it was. The rows here: artifacts that are not
what their manifest recorded (truncated, corrupt, foreign or renamed), outputs that exist without --force
(every file a command writes, not only the main one), --force onto files that are not regular files, a full
disk at the last rename, SIGINT at several points of calibrate and build-engine, and two calibrations
racing for the same output.
"""
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from tests.support.bad_input_cases import (
    DEMO_ENGINE,
    DEMO_ONNX,
    FAST_CALIBRATION,
    RTX_BUILD,
    Case,
    build_int8_to,
    calibrate_to,
    error_lines,
    interrupt_when,
    run_case,
    snapshot,
    start,
)
from tests.support.helpers import run_cli

DISK_FULL = os.strerror(28)  # ENOSPC


def mismatch(name):
    """The one line a hash mismatch gives: the file, its manifest, both hashes' first 12 hex digits."""
    return rf"{re.escape(name)} does not match its manifest {re.escape(name)}\.json: sha256 [0-9a-f]{{12}}, " \
           r"recorded [0-9a-f]{12}"


# ---- ways to break a workspace ----------------------------------------------------------------------
def truncated(name):
    def prepare(workspace):
        content = (workspace / name).read_bytes()
        (workspace / name).write_bytes(content[:len(content) // 2])
    return prepare


def one_byte_flipped(name):
    """Same size, one byte in the middle changed: a parser may not notice, the hash does."""
    def prepare(workspace):
        content = bytearray((workspace / name).read_bytes())
        content[len(content) // 2] ^= 0xFF
        (workspace / name).write_bytes(bytes(content))
    return prepare


def recorded_sha256(name, sha256):
    def prepare(workspace):
        manifest_file = workspace / f"{name}.json"
        manifest = json.loads(manifest_file.read_text())
        manifest["artifact"]["sha256"] = sha256
        manifest_file.write_text(json.dumps(manifest))
    return prepare


def foreign_sidecar(workspace):
    """demo.engine with the sidecar of another engine (a 1x1-conv network, really built)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from skdeploy.log import QUIET, log
    from skdeploy.stages.build import BuildSettings, build_engine

    weight = numpy_helper.from_array(np.full((1, 1, 1, 1), 2.0, np.float32), "weight")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "weight"], ["logits"])], "other",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 2, 2])], [weight])
    other = workspace / "other"
    other.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other / "other.onnx"))
    with log.verbosity(QUIET):
        build_engine(other / "other.onnx", other / "other.engine", BuildSettings(backend="tensorrt-rtx"))
    (workspace / f"{DEMO_ENGINE}.json").write_bytes((other / "other.engine.json").read_bytes())


def onnx_renamed_engine(workspace):
    """The demo ONNX and its manifest copied to renamed.engine(.json): their hashes agree, their kind does not."""
    (workspace / "renamed.engine").write_bytes((workspace / DEMO_ONNX).read_bytes())
    (workspace / "renamed.engine.json").write_bytes((workspace / f"{DEMO_ONNX}.json").read_bytes())


def existing(name):
    def prepare(workspace):
        (workspace / name).write_text("an older file that must stay\n")
    return prepare


def fifo(name):
    def prepare(workspace):
        os.mkfifo(workspace / name)
    return prepare


def link_to_dev_full(name):
    def prepare(workspace):
        os.symlink("/dev/full", workspace / name)
    return prepare


# ---- recorded sha256s are checked ------------------------------------------------------------------------
OTHER_SHA256 = hashlib.sha256(b"another file").hexdigest()
HASH_ROWS = [
    Case("inspect: truncated ONNX", ("inspect", f"{{ws}}/{DEMO_ONNX}"), 1, mismatch(DEMO_ONNX), truncated(DEMO_ONNX)),
    Case("inspect: truncated engine", ("inspect", f"{{ws}}/{DEMO_ENGINE}"), 1, mismatch(DEMO_ENGINE),
         truncated(DEMO_ENGINE)),
    Case("inspect: manifest records another sha256", ("inspect", f"{{ws}}/{DEMO_ONNX}"), 1, mismatch(DEMO_ONNX),
         recorded_sha256(DEMO_ONNX, OTHER_SHA256)),
    Case("calibrate: truncated ONNX", ("calibrate", f"{{ws}}/{DEMO_ONNX}", *FAST_CALIBRATION, "-o", "{ws}/out.onnx"),
         1, mismatch(DEMO_ONNX), truncated(DEMO_ONNX)),
    Case("calibrate: ONNX with one byte changed",
         ("calibrate", f"{{ws}}/{DEMO_ONNX}", *FAST_CALIBRATION, "-o", "{ws}/out.onnx"), 1, mismatch(DEMO_ONNX),
         one_byte_flipped(DEMO_ONNX)),
    Case("optimize: manifest records another sha256", ("optimize", f"{{ws}}/{DEMO_ONNX}", "-o", "{ws}/out.onnx"), 1,
         mismatch(DEMO_ONNX), recorded_sha256(DEMO_ONNX, OTHER_SHA256)),
    Case("build-engine: manifest records another sha256",
         ("build-engine", f"{{ws}}/{DEMO_ONNX}", *RTX_BUILD, "-o", "{ws}/out.engine"), 1, mismatch(DEMO_ONNX),
         recorded_sha256(DEMO_ONNX, OTHER_SHA256)),
    Case("validate: manifest records another sha256",
         ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--limit", "4"), 1, mismatch(DEMO_ONNX),
         recorded_sha256(DEMO_ONNX, OTHER_SHA256)),
    Case("validate: engine with another engine's sidecar",
         ("validate", "--candidate", f"{{ws}}/{DEMO_ENGINE}", "--limit", "4"), 1, mismatch(DEMO_ENGINE),
         foreign_sidecar),
    Case("validate: truncated engine", ("validate", "--candidate", f"{{ws}}/{DEMO_ENGINE}", "--limit", "4"), 1,
         mismatch(DEMO_ENGINE), truncated(DEMO_ENGINE)),
    Case("bench: truncated engine", ("bench", f"{{ws}}/{DEMO_ENGINE}", "--batch", "1", "--iterations", "1"), 1,
         mismatch(DEMO_ENGINE), truncated(DEMO_ENGINE)),
    Case("bench: an ONNX renamed .engine", ("bench", "{ws}/renamed.engine", "--batch", "1", "--iterations", "1"), 1,
         r"renamed\.engine's manifest describes an onnx artifact, not an engine", onnx_renamed_engine),
]


@pytest.mark.parametrize("case", HASH_ROWS, ids=str)
def test_an_artifact_that_is_not_what_its_manifest_recorded(case, workspace):
    run_case(case, workspace)


def test_no_verify_reads_the_changed_artifact_anyway(workspace):
    """The escape hatch: --no-verify shows the manifest of a file that no longer matches it."""
    truncated(DEMO_ONNX)(workspace)
    result = run_cli("inspect", workspace / DEMO_ONNX, "--no-verify", "--json")
    assert result.exit_code == 0, result.stderr
    recorded = json.loads((workspace / f"{DEMO_ONNX}.json").read_text())["artifact"]["sha256"]
    assert json.loads(result.stdout)["manifest"]["artifact"]["sha256"] == recorded


# ---- every output is checked before the work starts ------------------------------------------------------


EXISTING_ROWS = [
    Case("calibrate: only the manifest exists", calibrate_to("out.onnx"), 2,
         r"out\.onnx\.json already exists; pass --force", existing("out.onnx.json")),
    Case("calibrate: only the TensorRT table exists", calibrate_to("out.onnx"), 2,
         r"out\.onnx\.calib\.table already exists; pass --force", existing("out.onnx.calib.table")),
    Case("calibrate: only the ranges cache exists", calibrate_to("out.onnx"), 2,
         r"out\.onnx\.ranges\.json already exists; pass --force", existing("out.onnx.ranges.json")),
    Case("build-engine: only the sidecar exists",
         ("build-engine", f"{{ws}}/{DEMO_ONNX}", *RTX_BUILD, "-o", "{ws}/out.engine"), 2,
         r"out\.engine\.json already exists; pass --force", existing("out.engine.json")),
    Case("build-engine --int8: only the calibration's ranges cache exists", build_int8_to("out.engine"), 2,
         r"out\.int8\.onnx\.ranges\.json already exists; pass --force", existing("out.int8.onnx.ranges.json")),
    Case("export: only the manifest exists", ("export", "-o", "{ws}/out.onnx"), 2,
         r"out\.onnx\.json already exists; pass --force", existing("out.onnx.json")),
    Case("optimize: only the manifest exists", ("optimize", f"{{ws}}/{DEMO_ONNX}", "-o", "{ws}/out.onnx"), 2,
         r"out\.onnx\.json already exists; pass --force", existing("out.onnx.json")),
]


@pytest.mark.parametrize("case", EXISTING_ROWS, ids=str)
def test_an_existing_output_of_any_kind_needs_force(case, workspace):
    run_case(case, workspace)


# ---- --force replaces regular files only --------------------------------------------------------------------
NOT_REGULAR = r"is not a regular file; --force replaces only regular files"
SPECIAL_ROWS = [
    Case("validate --report onto a fifo",
         ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--limit", "4", "--report", "{ws}/report.html", "--force"),
         2, r"report\.html " + NOT_REGULAR, fifo("report.html")),
    Case("calibrate -o onto a link to /dev/full", (*calibrate_to("full.onnx"), "--force"), 2,
         r"full\.onnx " + NOT_REGULAR, link_to_dev_full("full.onnx")),
    Case("build-engine whose sidecar name is a fifo",
         ("build-engine", f"{{ws}}/{DEMO_ONNX}", *RTX_BUILD, "-o", "{ws}/out.engine", "--force"), 2,
         r"out\.engine\.json " + NOT_REGULAR, fifo("out.engine.json")),
]


@pytest.mark.parametrize("case", SPECIAL_ROWS, ids=str)
def test_force_never_replaces_a_special_file(case, workspace):
    run_case(case, workspace)


# ---- a full disk at the last rename leaves no part of the output set ---------------------------------------
FULL_DISK_ROWS = [
    (Case("export: the manifest cannot be written", ("export", "-o", "{ws}/out.onnx"), 1,
          rf"cannot write .*out\.onnx\.json: {DISK_FULL}"), "out.onnx.json"),
    (Case("calibrate: the manifest cannot be written", calibrate_to("out.onnx"), 1,
          rf"cannot write .*out\.onnx\.json: {DISK_FULL}"), "out.onnx.json"),
    (Case("build-engine --int8: the sidecar cannot be written", build_int8_to("out.engine"), 1,
          rf"cannot write .*out\.engine\.json: {DISK_FULL}"), "out.engine.json"),
    (Case("validate: the report cannot be written after the saved reference",
          ("validate", "--candidate", f"{{ws}}/{DEMO_ONNX}", "--limit", "4", "--save-reference", "{ws}/ref.npz",
           "--report", "{ws}/report.html"), 1, rf"cannot write .*report\.html: {DISK_FULL}"), "report.html"),
]


@pytest.mark.parametrize("case, failing", FULL_DISK_ROWS, ids=[str(row[0]) for row in FULL_DISK_ROWS])
def test_a_full_disk_leaves_no_part_of_the_outputs(case, failing, workspace, monkeypatch):
    """The disk fills up (ENOSPC) exactly at the rename onto `failing`: every other write goes through."""
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target).name == failing:
            raise OSError(28, DISK_FULL)
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    run_case(case, workspace)


# ---- SIGINT: exit 130, one line, nothing left ---------------------------------------------------------------


CALIBRATE_WITH_HOLDOUT = ("calibrate", f"{{ws}}/{DEMO_ONNX}", "--int8", "--calib-images", "64", "--holdout-images",
                          "32", "-o", "{ws}/out.onnx")


@pytest.mark.parametrize("args, point", [
    (CALIBRATE_WITH_HOLDOUT, r"^collected \d+ histograms"),  # ranges computed, the hold-out about to run
    (CALIBRATE_WITH_HOLDOUT, r"^FP32 PyTorch reference"),  # the reference is done, INT8 is being scored
    (build_int8_to("out.engine"), r"^collected \d+ histograms"),  # inside the calibration stage
    (build_int8_to("out.engine"), r"^building int8 engine"),  # inside TensorRT-RTX's builder
], ids=["calibrate: ranges collected", "calibrate: scoring", "build-engine --int8: calibrating",
        "build-engine --int8: building"])
def test_sigint_exits_130_and_leaves_nothing(args, point, workspace):
    before = snapshot(workspace)
    process = start(args, workspace)
    stderr = "".join(interrupt_when(process, point))
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and error_lines(stderr) == ["error: interrupted"], stderr
    assert snapshot(workspace) == before


# ---- two writers, one output ----------------------------------------------------------------------------------
def test_two_calibrations_racing_for_one_output_leave_one_whole_set(workspace):
    """Started together with different methods: exactly one succeeds, the other fails in one line, and the
    four files all come from the winner (a mixed set would disagree on the method)."""
    before = snapshot(workspace)
    runs = {method: start(("calibrate", f"{{ws}}/{DEMO_ONNX}", "--int8", "--method", method, "--calib-images", "64",
                           "--holdout-images", "0", "-o", "{ws}/out.onnx"), workspace)
            for method in ("max", "percentile")}
    results = {method: (process.wait(timeout=600), process.stderr.read()) for method, process in runs.items()}
    winners = [method for method, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser_code, loser_stderr), = [result for method, result in results.items() if method not in winners]
    assert loser_code in (1, 2) and "Traceback" not in loser_stderr, loser_stderr
    assert len(error_lines(loser_stderr)) == 1 and re.search(
        r"another skdeploy command is writing .*out\.onnx now|out\.onnx already exists", loser_stderr), loser_stderr
    written = set(snapshot(workspace)) - set(before)
    assert written == {"out.onnx", "out.onnx.json", "out.onnx.calib.table", "out.onnx.ranges.json"}
    manifest = json.loads((workspace / "out.onnx.json").read_text())
    ranges = json.loads((workspace / "out.onnx.ranges.json").read_text())
    header = (workspace / "out.onnx.calib.table").read_text().splitlines()[0]
    assert manifest["artifact"]["sha256"] == hashlib.sha256((workspace / "out.onnx").read_bytes()).hexdigest()
    assert manifest["stages"][-1]["method"] == ranges["key"]["method"] == winners[0]
    assert header.endswith({"max": "MinMaxCalibration", "percentile": "EntropyCalibration2"}[winners[0]])


# ---- the embedding API: load_runner and TensorRTRunner check before they deserialize -----------------------
class NoGpu:
    """Stands in for device memory, which cannot exist on this GPU-less machine: the checks under test must
    refuse the engine before the runner asks for a GPU."""

    def device(self):
        raise AssertionError("the runner reached the GPU before refusing the engine")


@pytest.mark.parametrize("prepare, engine, message", [
    (foreign_sidecar, DEMO_ENGINE, mismatch(DEMO_ENGINE)),
    (truncated(DEMO_ENGINE), DEMO_ENGINE, mismatch(DEMO_ENGINE)),
    (onnx_renamed_engine, "renamed.engine", r"describes an onnx artifact, not an engine"),
], ids=["foreign sidecar", "truncated engine", "ONNX renamed .engine"])
def test_tensorrt_runner_refuses_before_deserializing(prepare, engine, message, workspace):
    from skdeploy.errors import SkdeployError
    from skdeploy.runners import TensorRTRunner

    prepare(workspace)
    with pytest.raises(SkdeployError, match=message):
        TensorRTRunner(workspace / engine, backend="tensorrt-rtx", memory=NoGpu()).activate()


def test_load_runner_checks_the_hash_unless_told_not_to(workspace):
    import numpy as np

    from skdeploy import load_runner
    from skdeploy.errors import SkdeployError

    recorded_sha256(DEMO_ONNX, OTHER_SHA256)(workspace)
    with pytest.raises(SkdeployError, match=mismatch(DEMO_ONNX)):
        load_runner(workspace / DEMO_ONNX)
    with load_runner(workspace / DEMO_ONNX, verify=False) as runner:
        logits = runner.infer(np.zeros((1, 1, 32, 32), np.float32))[runner.output_names()[0]]
    assert logits.shape == (1, 10)
