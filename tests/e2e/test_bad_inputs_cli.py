"""Bad input on the command line: internal errors and wrong exit codes, Click's own
errors in the one-line `error:` form, and contradictory options. Each row runs the real CLI on a private copy
of the demo artifacts and checks the exit code, the one error line and that nothing was written."""
import json
import zipfile

import pytest

from tests.support.bad_input_cases import DEMO_ENGINE, DEMO_IMAGES, DEMO_ONNX, Case, run_case
from tests.support.helpers import run_cli


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
    # internal errors and wrong exit codes
    Case("manifest without model: inspect", ("inspect", ONNX), 2, r"demo\.onnx\.json has no 'model' entry",
         drop_model_entry),
    Case("manifest without model: validate", ("validate", "--reference", f"{{ws}}/{DEMO_ENGINE}", "--candidate", ONNX,
                                              "--limit", "4"), 2, r"demo\.onnx\.json has no 'model' entry",
         drop_model_entry),
    Case("manifest without model: calibrate", CALIBRATE_INT8, 2, r"demo\.onnx\.json has no 'model' entry",
         drop_model_entry),
    Case("reference npz that is not a zip", ("validate", "--reference", "{ws}/ref.npz", "--candidate", ONNX), 2,
         r"ref\.npz as a numpy file: it is not a \.npz archive", write_not_a_zip),
    Case("reference npz truncated", ("validate", "--reference", "{ws}/ref.npz", "--candidate", ONNX), 2,
         r"ref\.npz as a numpy file: it is damaged", write_truncated_npz),
    Case("data npz truncated", (*VALIDATE, "--data", "{ws}/ref.npz"), 2, r"ref\.npz as a numpy file: it is damaged",
         write_truncated_npz),
    Case("calibration npz truncated", (*CALIBRATE_INT8, "--calib-data", "{ws}/ref.npz"), 2,
         r"ref\.npz as a numpy file: it is damaged", write_truncated_npz),
    Case("opset 5", ("export", "--opset", "5", "-o", OUT), 2,
         r"--opset must be 11\.\.20 for the torchscript exporter, got 5"),
    Case("opset 99", ("export", "--opset", "99", "-o", OUT), 2,
         r"--opset must be 11\.\.20 for the torchscript exporter, got 99"),
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
    # Click's own errors, one line
    Case("bad int value", (*CALIBRATE_INT8, "--calib-images", "many"), 2,
         r"^error: invalid value for '--calib-images': 'many' is not a valid integer "
         r"\(see 'skdeploy calibrate --help'\)$"),
    Case("bad float value", (*VALIDATE, "--min-agreement", "most"), 2,
         r"invalid value for '--min-agreement': 'most' is not a valid float"),
    Case("bad choice", (*CALIBRATE_INT8, "--method", "median"), 2,
         r"invalid value for '--method': 'median' is not one of"),
    Case("missing -o", ("calibrate", ONNX, "--int8"), 2,
         r"^error: missing option '-o' / '--output' \(see 'skdeploy calibrate --help'\)$"),
    Case("missing argument", ("inspect",), 2, r"missing argument 'ARTIFACT'"),
    Case("unknown option", ("export", "--bogus", "-o", OUT), 2, r"no such option '--bogus'"),
    Case("unknown option before the command", ("--bogus", "models"), 2,
         r"^error: no such option '--bogus' \(see 'skdeploy --help'\)$"),
    Case("unknown command", ("bogus",), 2, r"^error: no such command 'bogus' \(see 'skdeploy --help'\)$"),
    Case("folder as the input file", ("inspect", f"{{ws}}/{DEMO_IMAGES}"), 2,
         r"'ARTIFACT': File '.*images' is a directory"),
    Case("folder as the output file", (*CALIBRATE_INT8[:3], f"{{ws}}/{DEMO_IMAGES}", "--int8"), 2,
         r"'-o' / '--output': File '.*images' is a directory"),
    # contradictory options
    Case("calibrate --int8 --fp16", (*CALIBRATE_INT8, "--fp16"), 2, r"--int8 and --fp16 exclude each other"),
    Case("build-engine --fp16 --int8",
         ("build-engine", ONNX, "--fp16", "--int8", "--calib-images", "4", "-o", "{ws}/out.engine"), 2,
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
    result = run_cli("calibrate", "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout
    assert "skdeploy calibrate out/demo.onnx" in result.stdout


def test_the_truncated_npz_fixture_is_really_a_broken_zip(tmp_path):
    """The row above must test a damaged archive, not some other refusal."""
    write_truncated_npz(tmp_path)
    assert not zipfile.is_zipfile(tmp_path / "ref.npz")
    assert (tmp_path / "ref.npz").read_bytes()[:2] == b"PK"


# The library is as strict as the command line: the settings objects and readers refuse the same values.

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("where, fields, message", [
    ("stages.calibrate.CalibrationSettings", dict(max_top1_drop=NAN),
     "`max_top1_drop` must be a finite number, got nan"),
    ("stages.calibrate.CalibrationSettings", dict(percentile=INF), "`percentile` must be a finite number, got inf"),
    ("stages.calibrate.CalibrationSettings", dict(fp16_limit=NAN), "`fp16_limit` must be a finite number, got nan"),
    ("stages.calibrate.CalibrationSettings", dict(trt_version="10.x"),
     "`trt_version` must look like 10.3.0 or 8.6, got '10.x'"),
    ("stages.validate.ValidateSettings", dict(max_top1_drop=NAN), "`max_top1_drop` must be a finite number, got nan"),
    ("stages.validate.ValidateSettings", dict(min_agreement=-INF), "`min_agreement` must be a finite number, got -inf"),
    ("stages.export.ExportSettings", dict(opset=10), "`opset` must be 11..20 for the torchscript exporter, got 10"),
    ("stages.export.ExportSettings", dict(exporter="dynamo", opset=24),
     "`opset` must be 11..23 for the dynamo exporter, got 24"),
    ("stages.export.ExportSettings", dict(parity_tolerance=NAN), "`parity_tolerance` must be a finite number, got nan"),
])
def test_settings_refuse_what_the_flags_refuse(where, fields, message):
    import importlib

    from skdeploy.errors import UsageError

    module, name = where.rsplit(".", 1)
    with pytest.raises(UsageError) as raised:
        getattr(importlib.import_module(f"skdeploy.{module}"), name)(**fields)
    assert str(raised.value) == message


@pytest.mark.parametrize("fields, message", [
    ({"std": (0.0,)}, r"^`std` must be positive, got \(0\.0,\)$"),
    ({"std": (-1.0,)}, r"^`std` must be positive"),
    ({"mean": (NAN,)}, r"^`mean` must be finite numbers, got \(nan,\)$"),
    ({"std": (INF,)}, r"^`std` must be finite numbers"),
    ({"mean": (), "std": ()}, r"^`mean` and `std` need the same number of values"),
    ({"mean": (0.5, 0.5)}, r"^`mean` and `std` need the same number of values"),
    ({"scale": 0.0}, r"^the preprocessing scale must be a positive number, got 0\.0$"),
    ({"crop": ()}, r"^`resize` must be positive and `crop` two positive sizes"),
    ({"resize": 0}, r"^`resize` must be positive and `crop` two positive sizes"),
])
def test_preprocessing_refuses_numbers_that_make_inputs_nan(fields, message):
    """--std 0 is refused as a bad std, not reported later as a NaN from the FP32 model dividing by it."""
    from skdeploy.data import Preprocessing
    from skdeploy.errors import UsageError

    good = {"resize": 32, "crop": (32, 32), "mean": (0.286,), "std": (0.353,), "channel_order": "GRAY"}
    with pytest.raises(UsageError, match=message):
        Preprocessing(**{**good, **fields})
    assert Preprocessing(**good).std == (0.353,)


def test_a_runner_refuses_a_negative_thread_count(demo_artifacts):
    from skdeploy.errors import UsageError
    from skdeploy.runners.onnxrt import OnnxRuntimeRunner

    with pytest.raises(UsageError, match=r"^`threads` must be 0 \(the default\) or more, got -2$"):
        OnnxRuntimeRunner(demo_artifacts / DEMO_ONNX, threads=-2)
    assert OnnxRuntimeRunner(demo_artifacts / DEMO_ONNX, threads=1).threads == 1


# Fuzz (hypothesis): whatever text a float option gets, and however a manifest or a saved reference is
# damaged, the answer is a result or one usage-error line, never an internal error.

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

MISSING = "/nonexistent-skdeploy-fuzz/missing.onnx"  # every fuzzed command line stops at this input at the latest
FLOAT_OPTIONS = [  # (command line, option, which numbers the option takes)
    (("calibrate", MISSING, "--int8", "-o", "/nonexistent-skdeploy-fuzz/out.onnx"), "--percentile",
     lambda x: 0 < x <= 100),
    (("calibrate", MISSING, "--int8", "-o", "/nonexistent-skdeploy-fuzz/out.onnx"), "--max-top1-drop",
     lambda x: x >= 0),
    (("validate", "--candidate", MISSING), "--max-top1-drop", lambda x: x >= 0),
    (("validate", "--candidate", MISSING), "--min-agreement", lambda x: 0 <= x <= 1),
]
NUMBER_TEXT = st.one_of(st.floats().map(str), st.floats(width=32).map(repr), st.integers().map(str),
                        st.text(max_size=8),
                        st.sampled_from(["nan", "-NaN", "inf", "+Infinity", "1e309", "-0", "1_0", " 0.5 ", "0x10", ""]))


def cli_result(args):
    from click.testing import CliRunner

    from skdeploy.cli import cli

    return CliRunner().invoke(cli, list(args), prog_name="skdeploy")


def assert_one_line_answer(result, allowed=(0, 2)):
    """Exit 0 with no error line, or a usage error on exactly one line; no traceback, no internal error."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code in allowed, result.stderr
    assert len(errors) == (0 if result.exit_code == 0 else 1), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    return errors[0] if errors else ""


def takes(text, valid) -> bool:
    """Whether `text` is a number the option takes: Python's float syntax, finite, and in range."""
    try:
        number = float(text)
    except ValueError:
        return False
    return number == number and abs(number) != float("inf") and valid(number)


@pytest.mark.parametrize("args, option, valid", FLOAT_OPTIONS, ids=[f"{a[0]} {o}" for a, o, _ in FLOAT_OPTIONS])
@settings(max_examples=60, deadline=None)
@given(text=NUMBER_TEXT)
def test_fuzz_float_options(args, option, valid, text):
    line = assert_one_line_answer(cli_result([*args, f"{option}={text}"]), allowed=(2,))
    if takes(text, valid):
        assert "missing.onnx" in line and option not in line, line
    else:
        assert option in line, line


def json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=6)


def json_paths(value, prefix=()):
    """Every place in a JSON document: dict keys and list positions, nested."""
    places = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        places.append((*prefix, key))
        places.extend(json_paths(child, (*prefix, key)))
    return places


DELETE = object()


def damaged(document, path, value):
    """A deep copy of `document` with the entry at `path` replaced by `value`, or removed for DELETE."""
    import copy

    document = copy.deepcopy(document)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


@st.composite
def damaged_documents(draw, document):
    path = draw(st.sampled_from(json_paths(document)))
    return damaged(document, path, draw(st.one_of(st.just(DELETE), json_values())))


@pytest.fixture(scope="module")
def demo_manifest(demo_artifacts):
    return json.loads((demo_artifacts / f"{DEMO_ONNX}.json").read_text())


def test_fuzz_damaged_manifests(demo_artifacts, demo_manifest, tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifest_fuzz")
    (folder / DEMO_ONNX).symlink_to(demo_artifacts / DEMO_ONNX)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(manifest=damaged_documents(demo_manifest))
    def inspect_and_validate(manifest):
        (folder / f"{DEMO_ONNX}.json").write_text(json.dumps(manifest))
        onnx = str(folder / DEMO_ONNX)
        assert_one_line_answer(cli_result(["inspect", onnx]))
        assert_one_line_answer(cli_result(["validate", "--reference", onnx, "--candidate", onnx, "--data",
                                           "/nonexistent-skdeploy-fuzz/data.npz"]), allowed=(2,))

    inspect_and_validate()


def saved_reference_bytes(meta: dict) -> bytes:
    """A saved reference as `validate --save-reference` lays it out: logits, the inputs' sha256 and meta."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, logits=np.eye(4, 10, dtype=np.float32), inputs_sha256=np.array("0" * 64),
                        labels=np.arange(4), meta=np.array(json.dumps(meta)))
    return buffer.getvalue()


REFERENCE_META = {"format": "skdeploy-reference/1", "skdeploy_version": "0.1.0",
                  "model": {"spec": "sknet-fmnist", "checkpoint": None, "kwargs": {}, "num_classes": 10,
                            "dataset": "fashion-mnist", "input_size": [1, 32, 32]},
                  "preprocessing": {"resize": 32, "crop": [32, 32], "mean": [0.286], "std": [0.353],
                                    "channel_order": "GRAY"},
                  "data": {"source": "fashion-mnist:/usr/share/datasets/fashion-mnist", "count": 4}}


def load_or_refuse(path):
    """A saved reference loads, or is refused with a UsageError; any other exception fails the test."""
    from skdeploy.errors import UsageError
    from skdeploy.reference import load_saved_reference

    try:
        return load_saved_reference(path)
    except UsageError:
        return None


def test_the_fuzzed_saved_reference_loads_when_whole(tmp_path):
    (tmp_path / "ref.npz").write_bytes(saved_reference_bytes(REFERENCE_META))
    assert load_or_refuse(tmp_path / "ref.npz").saved["meta"] == REFERENCE_META


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3))
def test_fuzz_damaged_saved_reference_bytes(tmp_path_factory, cut, flips):
    whole = bytearray(saved_reference_bytes(REFERENCE_META))
    for position, mask in flips:
        whole[position % len(whole)] ^= mask
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    path.write_bytes(bytes(whole[:len(whole) - cut % len(whole)]))
    load_or_refuse(path)


@settings(max_examples=150, deadline=None)
@given(meta=damaged_documents(REFERENCE_META))
def test_fuzz_damaged_saved_reference_meta(tmp_path_factory, meta):
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    path.write_bytes(saved_reference_bytes(meta))
    load_or_refuse(path)
