"""Bad input on the command line (issue 10, causes 11-13): internal errors and wrong exit codes, Click's own
errors in the one-line `error:` form, and contradictory options. Each row runs the real CLI on a private copy
of the demo artifacts and checks the exit code, the one error line and that nothing was written."""
import json
import zipfile

import pytest

from bad_input_cases import DEMO_ENGINE, DEMO_IMAGES, DEMO_ONNX, Case, run_case


def drop_model_entry(workspace):
    """A manifest that lost its `model` entry (hand-edited or cut down)."""
    manifest = workspace / f"{DEMO_ONNX}.json"
    data = json.loads(manifest.read_text())
    del data["model"]
    manifest.write_text(json.dumps(data))


def write_not_a_zip(workspace):
    (workspace / "ref.npz").write_bytes(b"these bytes are no zip archive, and no pickle either\n")


def write_truncated_npz(workspace):
    """A real .npz cut after its first half: the zip's central directory is gone."""
    import numpy as np

    with open(workspace / "whole.npz", "wb") as handle:
        np.savez(handle, images=np.zeros((4, 28, 28), np.uint8), labels=np.arange(4))
    whole = (workspace / "whole.npz").read_bytes()
    (workspace / "whole.npz").unlink()
    (workspace / "ref.npz").write_bytes(whole[:len(whole) // 2])


def strip_manifest(workspace):
    """An ONNX with no manifest, so calibration takes --mean/--std from the command line."""
    (workspace / f"{DEMO_ONNX}.json").unlink()


ONNX, OUT = f"{{ws}}/{DEMO_ONNX}", "{ws}/out.onnx"
CALIBRATE = ("calibrate", ONNX, "-o", OUT)
CALIBRATE_INT8 = (*CALIBRATE, "--int8", "--calib-images", "4", "--holdout-images", "0")  # quick if it runs
PLAIN_CALIBRATE = (*CALIBRATE_INT8, "--calib-data", f"{{ws}}/{DEMO_IMAGES}")
VALIDATE = ("validate", "--candidate", ONNX, "--limit", "4")
NOT_FINITE = "must be a finite number, got"

CASES = [
    # cause 11: internal errors and wrong exit codes
    Case("manifest without model: inspect", ("inspect", ONNX), 2, r"demo\.onnx\.json has no 'model' entry", drop_model_entry),
    Case("manifest without model: validate", ("validate", "--reference", f"{{ws}}/{DEMO_ENGINE}", "--candidate", ONNX,
                                              "--limit", "4"), 2, r"demo\.onnx\.json has no 'model' entry", drop_model_entry),
    Case("manifest without model: calibrate", CALIBRATE_INT8, 2, r"demo\.onnx\.json has no 'model' entry", drop_model_entry),
    Case("reference npz that is not a zip", ("validate", "--reference", "{ws}/ref.npz", "--candidate", ONNX), 2,
         r"ref\.npz as a numpy file: it is not a \.npz archive", write_not_a_zip),
    Case("reference npz truncated", ("validate", "--reference", "{ws}/ref.npz", "--candidate", ONNX), 2,
         r"ref\.npz as a numpy file: it is damaged", write_truncated_npz),
    Case("data npz truncated", (*VALIDATE, "--data", "{ws}/ref.npz"), 2, r"ref\.npz as a numpy file: it is damaged", write_truncated_npz),
    Case("calibration npz truncated", (*CALIBRATE_INT8, "--calib-data", "{ws}/ref.npz"), 2, r"ref\.npz as a numpy file: it is damaged",
         write_truncated_npz),
    Case("opset 5", ("export", "--opset", "5", "-o", OUT), 2, r"--opset must be 11\.\.20 for the torchscript exporter, got 5"),
    Case("opset 99", ("export", "--opset", "99", "-o", OUT), 2, r"--opset must be 11\.\.20 for the torchscript exporter, got 99"),
    Case("trt-version banana", (*CALIBRATE_INT8, "--trt-version", "banana"), 2,
         r"--trt-version must look like 10\.3\.0 or 8\.6, got 'banana'"),
    Case("std 0", (*PLAIN_CALIBRATE, "--mean", "0.3", "--std", "0"), 2, r"`?std`? must be positive", strip_manifest),
    Case("std negative", (*PLAIN_CALIBRATE, "--mean", "0.3", "--std", "-0.5"), 2, r"`?std`? must be positive",
         strip_manifest),
    Case("std nan", (*PLAIN_CALIBRATE, "--mean", "0.3", "--std", "nan"), 2, r"--std must be finite numbers",
         strip_manifest),
    Case("mean inf", (*PLAIN_CALIBRATE, "--mean", "inf", "--std", "0.35"), 2, r"--mean must be finite numbers",
         strip_manifest),
    # every float option of every command: nan, inf, out of range
    *[Case(f"calibrate {option} {value}", (*CALIBRATE_INT8, option, value), 2, f"{option} {NOT_FINITE} {value}")
      for option in ("--percentile", "--max-top1-drop") for value in ("nan", "inf", "-inf")],
    Case("calibrate --max-top1-drop negative", (*CALIBRATE_INT8, "--max-top1-drop", "-0.5"), 2,
         r"--max-top1-drop must be 0 or more points, got -0\.5"),
    Case("calibrate --percentile above 100", (*CALIBRATE_INT8, "--percentile", "100.5"), 2,
         r"--percentile must be in \(0, 100\], got 100\.5"),
    *[Case(f"validate {option} {value}", (*VALIDATE, option, value), 2, f"{option} {NOT_FINITE} {value}")
      for option in ("--max-top1-drop", "--min-agreement") for value in ("nan", "inf", "-inf")],
    Case("validate --min-agreement above 1", (*VALIDATE, "--min-agreement", "1.5"), 2,
         r"--min-agreement must be between 0 and 1, got 1\.5"),
    Case("validate --max-top1-drop negative", (*VALIDATE, "--max-top1-drop", "-1"), 2,
         r"--max-top1-drop must not be negative"),
    # cause 12: Click's own errors, one line
    Case("bad int value", (*CALIBRATE_INT8, "--calib-images", "many"), 2,
         r"^error: invalid value for '--calib-images': 'many' is not a valid integer \(see 'skdeploy calibrate --help'\)$"),
    Case("bad float value", (*VALIDATE, "--min-agreement", "most"), 2,
         r"invalid value for '--min-agreement': 'most' is not a valid float"),
    Case("bad choice", (*CALIBRATE_INT8, "--method", "median"), 2, r"invalid value for '--method': 'median' is not one of"),
    Case("missing -o", ("calibrate", ONNX, "--int8"), 2,
         r"^error: missing option '-o' / '--output' \(see 'skdeploy calibrate --help'\)$"),
    Case("missing argument", ("inspect",), 2, r"missing argument 'ARTIFACT'"),
    Case("unknown option", ("export", "--bogus", "-o", OUT), 2, r"no such option '--bogus'"),
    Case("unknown option before the command", ("--bogus", "models"), 2,
         r"^error: no such option '--bogus' \(see 'skdeploy --help'\)$"),
    Case("unknown command", ("bogus",), 2, r"^error: no such command 'bogus' \(see 'skdeploy --help'\)$"),
    Case("folder as the input file", ("inspect", f"{{ws}}/{DEMO_IMAGES}"), 2, r"'ARTIFACT': File '.*images' is a directory"),
    Case("folder as the output file", (*CALIBRATE_INT8[:3], f"{{ws}}/{DEMO_IMAGES}", "--int8"), 2,
         r"'-o' / '--output': File '.*images' is a directory"),
    # cause 13: contradictory options
    Case("calibrate --int8 --fp16", (*CALIBRATE_INT8, "--fp16"), 2, r"--int8 and --fp16 exclude each other"),
    Case("build-engine --fp16 --int8", ("build-engine", ONNX, "--fp16", "--int8", "--calib-images", "4", "-o", "{ws}/out.engine"), 2,
         r"--int8 and --fp16 exclude each other"),
    Case("unknown --keep-fp32 node with --int8", (*CALIBRATE_INT8, "--keep-fp32", "/no/such/Conv"), 2,
         r"--keep-fp32 names no node '/no/such/Conv'"),
    Case("bench --threads -2", ("bench", ONNX, "--threads", "-2", "--batch", "1", "--iterations", "1"), 2,
         r"invalid value for '--threads': -2 is not in the range x>=0"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_command_line(case, workspace):
    run_case(case, workspace)


def test_help_still_shows_the_examples():
    from click.testing import CliRunner

    from skdeploy.cli import cli

    result = CliRunner().invoke(cli, ["calibrate", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.stdout and "skdeploy calibrate out/demo.onnx" in result.stdout


def test_the_truncated_npz_fixture_is_really_a_broken_zip(tmp_path):
    """The row above must test a damaged archive, not some other refusal."""
    write_truncated_npz(tmp_path)
    assert not zipfile.is_zipfile(tmp_path / "ref.npz")
    assert (tmp_path / "ref.npz").read_bytes()[:2] == b"PK"
