"""The harness itself: a row that the CLI handles right passes, and the checks catch each broken promise."""
import pytest

from tests.support.bad_input_cases import DEMO_ONNX, Case, check_failure, run_case, run_case_in_subprocess, snapshot


def test_a_missing_input_is_a_usage_error_that_leaves_nothing(workspace):
    run_case(Case("missing onnx", ("calibrate", "{ws}/nope.onnx", "--int8", "-o", "{ws}/o.onnx"), 2,
                  "nope.onnx does not exist"),
             workspace)


def test_a_wrong_exit_code_is_caught(workspace):
    with pytest.raises(AssertionError, match="exit 2, wanted 1"):
        run_case(Case("wrong code", ("calibrate", "{ws}/nope.onnx", "-o", "{ws}/o.onnx"), 1, "nope"), workspace)


def test_a_file_left_behind_is_caught(workspace):

    case = Case("left temp", (), 1, "disk full")
    before = snapshot(workspace)
    (workspace / ".out.onnx.tmp").write_bytes(b"partial")
    with pytest.raises(AssertionError, match="changed, left or removed"):
        check_failure(1, "error: disk full\n", case, before, workspace)


def test_the_same_row_runs_as_a_real_process(workspace):
    done = run_case_in_subprocess(Case("existing output", ("export", "-o", f"{{ws}}/{DEMO_ONNX}"), 2,
                                       "already exists"), workspace)
    assert done.stdout == ""
