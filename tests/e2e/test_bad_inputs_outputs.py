"""Bad inputs for where a command writes: outputs that are one file with another output or with an input,
output names no file can have, SIGTERM and SIGHUP, a stdout that cannot take the result, and the folders
a failed command made.

Rows run the real CLI on a private copy of the demo artifacts (`workspace`) and check the harness's promise:
the exit code, one `error:` line, and the workspace exactly as it was. Signals and stdout need a real
process; those rows start one.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.support.bad_input_cases import (
    DEMO_CHECKPOINT,
    DEMO_ONNX,
    FAST_CALIBRATION,
    Case,
    build_int8_to,
    calibrate_to,
    checkout_environment,
    error_lines,
    interrupt_when,
    run_case,
    run_case_in_subprocess,
    snapshot,
    start,
)

ONNX = f"{{ws}}/{DEMO_ONNX}"
VALIDATE = ("validate", "--candidate", ONNX, "--limit", "4")
CALIBRATION_OUTPUTS = {"out.onnx", "out.onnx.json", "out.onnx.calib.table", "out.onnx.ranges.json"}


def link(name, target):
    def prepare(workspace):
        (workspace / name).symlink_to(workspace / target)
    return prepare


# ---- outputs that are one file with another output or an input ------------------------------------------------
COLLISION_ROWS = [
    Case("validate: --report and --save-reference on one file",
         (*VALIDATE, "--report", "{ws}/same.npz", "--save-reference", "{ws}/same.npz"), 2,
         r"same\.npz is named for two outputs; give each output its own path"),
    Case("calibrate -o onto the input's manifest",
         ("calibrate", ONNX, *FAST_CALIBRATION, "-o", f"{{ws}}/{DEMO_ONNX}.json", "--force"), 2,
         r"output .*demo\.onnx\.json would overwrite the input .*demo\.onnx\.json"),
    Case("validate --report onto the candidate", (*VALIDATE, "--report", ONNX, "--force"), 2,
         r"output .*demo\.onnx would overwrite the input .*demo\.onnx;"),
    Case("optimize -o onto a link to its input", ("optimize", ONNX, "-o", "{ws}/link.onnx", "--force"), 2,
         r"output .*link\.onnx would overwrite the input .*demo\.onnx", link("link.onnx", DEMO_ONNX)),
    Case("export -o onto the checkpoint it reads",
         ("export", "--checkpoint", f"{{ws}}/{DEMO_CHECKPOINT}", "-o", f"{{ws}}/{DEMO_CHECKPOINT}", "--force"), 2,
         r"output .*demo\.pt would overwrite the input .*demo\.pt"),
]


@pytest.mark.parametrize("case", COLLISION_ROWS, ids=str)
def test_an_output_on_another_output_or_an_input_is_refused(case, workspace):
    run_case(case, workspace)


# ---- output names: '-', a folder, too long, not UTF-8 ---------------------------------------------------------
NAME_ROWS = [
    Case("export -o -", ("export", "-o", "-"), 2, r"an output cannot be '-' \(stdout\); give a file name"),
    Case("export -o newdir/ (a trailing slash)", ("export", "-o", "{ws}/newdir/"), 2,
         r"output .*newdir/ names a folder; give a file name inside it, e\.g\. .*newdir/out\.onnx"),
    Case("export -o a 300-character name", ("export", "-o", "{ws}/" + "n" * 295 + ".onnx"), 2,
         r"output name n+\.\.\. is 300 bytes long; with its temporary name \(written first\) it must stay within "
         r"\d+ bytes"),
    # legal itself, but its ranges cache's temporary name (.NAME.onnx.ranges.json.XXXXXXXX.tmp) is not
    Case("calibrate -o a legal 235-character name", calibrate_to("c" * 230 + ".onnx"), 2,
         r"output name c+\.\.\. is 247 bytes long"),
]


@pytest.mark.parametrize("case", NAME_ROWS, ids=str)
def test_an_output_name_no_file_can_have_is_refused_first(case, workspace):
    run_case(case, workspace)


def test_a_non_utf8_output_name_is_refused_in_one_line(workspace):
    """The name reaches the process as bytes (a real argv), which Python holds as surrogate escapes."""
    name = os.fsdecode(b"out-\xff\xfe.onnx")
    run_case_in_subprocess(Case("export -o a non-UTF-8 name", ("export", "-o", f"{{ws}}/{name}"), 2,
                                r"output name .*out-\\xff\\xfe\.onnx is not valid UTF-8"), workspace)


# ---- a failed command removes the folders it made -------------------------------------------------------------
@pytest.mark.parametrize("case", [
    Case("calibrate into new folders, missing data",
         ("calibrate", ONNX, *FAST_CALIBRATION[:1], "--calib-data", "{ws}/nowhere", "-o", "{ws}/new1/new2/out.onnx"),
         2, r"--calib-data .*nowhere does not exist"),
    Case("validate --report into new folders, missing data",
         (*VALIDATE, "--data", "{ws}/nowhere", "--report", "{ws}/new1/new2/report.html"), 2,
         r"nowhere does not exist"),
], ids=str)
def test_a_failed_command_leaves_no_folder_it_made(case, workspace):
    run_case(case, workspace)
    assert not (workspace / "new1").exists(), "the failed command left the folders it made for its outputs"


# ---- SIGTERM and SIGHUP: one line, 128 + the signal, nothing left ------------------------------------------------
CALIBRATE_WITH_HOLDOUT = ("calibrate", ONNX, "--int8", "--calib-images", "64", "--holdout-images", "32",
                          "-o", "{ws}/out.onnx")


@pytest.mark.parametrize("args, point, signum", [
    (CALIBRATE_WITH_HOLDOUT, r"^collected \d+ histograms", signal.SIGTERM),
    (build_int8_to("out.engine"), r"^building int8 engine", signal.SIGHUP),  # inside TensorRT-RTX's builder
], ids=["calibrate: SIGTERM after the ranges", "build-engine --int8: SIGHUP while building"])
def test_sigterm_and_sighup_unwind_like_sigint(args, point, signum, workspace):
    before = snapshot(workspace)
    process = start(args, workspace)
    stderr = "".join(interrupt_when(process, point, signum=signum))
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and error_lines(stderr) == [f"error: terminated by {name}"], stderr
    assert snapshot(workspace) == before, "the terminated command left files (a lock or a temporary file)"


def test_a_later_run_removes_the_temporary_files_a_killed_run_left(workspace):
    """What SIGKILL leaves (no handler runs): the lock and temporary files beside the outputs. The next run
    on the same outputs removes its own outputs' leftovers, and no one else's."""
    leftovers = [".out.onnx.lock", ".out.onnx.k1lled_x.tmp", ".out.onnx.json.a8c2zq0_.tmp"]
    for name in leftovers + [".other.onnx.k1lled_x.tmp"]:
        (workspace / name).write_bytes(b"left by a killed run")
    done = subprocess.run([sys.executable, "-m", "skdeploy", "export", "-o", "out.onnx"], cwd=workspace,
                          capture_output=True, text=True, timeout=600, env=checkout_environment())
    assert done.returncode == 0, done.stderr
    assert not [name for name in leftovers if (workspace / name).exists()]
    assert (workspace / ".other.onnx.k1lled_x.tmp").exists() and (workspace / "out.onnx.json").is_file()


# ---- a stdout that cannot take the result ------------------------------------------------------------------------
def run_with_stdout(args, workspace, stdout=subprocess.PIPE, env=None, close_stdout=False):
    return subprocess.run([sys.executable, "-m", "skdeploy", *[a.format(ws=workspace) for a in args]],
                          cwd=workspace, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=600,
                          env={**checkout_environment(), **(env or {})},
                          preexec_fn=(lambda: os.close(1)) if close_stdout else None)


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["table", "json"])
def test_a_full_stdout_after_the_work_says_the_files_are_written(json_flag, workspace):
    with open("/dev/full", "w") as full:
        done = run_with_stdout((*calibrate_to("out.onnx"), *json_flag), workspace, stdout=full)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert error_lines(done.stderr) == [f"error: cannot print the result to stdout ({os.strerror(28)}); the work "
                                        "is done and its files are written"], done.stderr
    assert CALIBRATION_OUTPUTS <= set(snapshot(workspace))
    json.loads((workspace / "out.onnx.json").read_text())


def test_a_closed_stdout_takes_the_result_without_failing(workspace):
    done = run_with_stdout(("inspect", ONNX, "--json"), workspace, close_stdout=True)
    assert done.returncode == 0 and not error_lines(done.stderr) and "Traceback" not in done.stderr, done.stderr


def test_an_ascii_console_shows_what_it_cannot_print_as_question_marks(workspace):
    for suffix in ("", ".json"):
        (workspace / f"modèle.onnx{suffix}").write_bytes((workspace / f"{DEMO_ONNX}{suffix}").read_bytes())
    done = run_with_stdout(("inspect", "{ws}/modèle.onnx"), workspace, env={"LANG": "C", "LC_ALL": "C",
                                                                         "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and not error_lines(done.stderr), done.stderr
    assert "mod?le.onnx" in done.stdout
