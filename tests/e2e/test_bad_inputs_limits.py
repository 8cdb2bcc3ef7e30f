"""Bad inputs for sizes and types: sizes that cannot fit in memory (checked before anything is allocated),
too little memory to run at all, manifests that never end or nest without end, integer options out of
range, and settings fields of the wrong type.

Rows that could allocate run as a real process under a 4 GiB address-space limit (`ulimit -v`), so a
size that slipped through fails there at once instead of taking the machine's memory.
"""
import gzip
import struct

import pytest

from tests.support.bad_input_cases import (
    DEMO_ONNX,
    FAST_CALIBRATION,
    Case,
    calibrate_to,
    run_case,
    run_case_in_subprocess,
)

ONNX = f"{{ws}}/{DEMO_ONNX}"
LIMIT = 4 << 30


def gzip_bomb(workspace):
    """An IDX header for 16 28x28 pictures, then 6 GiB of zeros: 6 MiB on disk (repeated gzip members)."""
    member = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    with open(workspace / "bomb-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(gzip.compress(b"\0\0\x08\x03" + struct.pack(">3I", 16, 28, 28)))
        for _ in range(96):
            handle.write(member)


def strip_manifest(workspace):
    (workspace / f"{DEMO_ONNX}.json").unlink()


MEMORY_ROWS = [
    Case("export --input-shape 3x100000x100000", ("export", "--input-shape", "3x100000x100000", "-o", "{ws}/out.onnx"),
         2, r"--input-shape must be C x H x W with C 1\.\.64 and H, W 1\.\.16384, got 3x100000x100000"),
    Case("bench --batch 100000", ("bench", ONNX, "--batch", "100000", "--iterations", "1", "--warmup", "0"), 2,
         r"--batch sizes must be at most 4096, got \(100000,\)"),
    Case("calibrate --bins 100000000", (*calibrate_to("out.onnx"), "--bins", "100000000"), 2,
         r"--bins must be 2048\.\.65536, got 100000000"),
    Case("calibrate on a gzip-bomb IDX file",
         ("calibrate", ONNX, *FAST_CALIBRATION[:1], "--calib-data", "{ws}/bomb-images-idx3-ubyte.gz",
          "-o", "{ws}/out.onnx"), 2,
         r"bomb-images-idx3-ubyte\.gz is truncated or padded: header promises \(16, 28, 28\)", gzip_bomb),
]


@pytest.mark.parametrize("case", MEMORY_ROWS, ids=str)
def test_a_size_beyond_memory_is_refused_before_allocating(case, workspace):
    run_case_in_subprocess(case, workspace, address_space=LIMIT)


@pytest.mark.parametrize("case", [
    Case("export under ulimit -v 600000", ("export", "-o", "{ws}/out.onnx"), 1,
         r"torch is installed but cannot be loaded \(.*\); if memory is limited \(ulimit -v\), allow more"),
    Case("calibrate under ulimit -v 400000", calibrate_to("out.onnx"), 1,
         r"out of memory|onnxruntime is installed but cannot be loaded"),
], ids=str)
def test_too_little_memory_is_one_line_that_says_so(case, workspace):
    kilobytes = int(case.name.rsplit(" ", 1)[1])
    run_case_in_subprocess(case, workspace, address_space=kilobytes << 10)


def endless_manifest(workspace):
    (workspace / f"{DEMO_ONNX}.json").unlink()
    (workspace / f"{DEMO_ONNX}.json").symlink_to("/dev/zero")


def deep_manifest(workspace):
    (workspace / f"{DEMO_ONNX}.json").write_text('{"format": ' + "[" * 100000 + "]" * 100000 + "}")


@pytest.mark.parametrize("case", [
    Case("inspect: a manifest linked to /dev/zero", ("inspect", ONNX), 2,
         r"manifest .*demo\.onnx\.json is not a regular file", endless_manifest),
    Case("calibrate: a manifest nested 100000 deep", calibrate_to("out.onnx"), 2,
         r"manifest .*demo\.onnx\.json is nested too deeply to be one skdeploy writes", deep_manifest),
], ids=str)
def test_a_manifest_is_read_within_bounds(case, workspace):
    run_case_in_subprocess(case, workspace, address_space=LIMIT)


INT_ROWS = [
    Case("calibrate --seed -1", (*calibrate_to("out.onnx"), "--seed", "-1"), 2,
         r"--seed must be 0\.\.4294967295, got -1"),
    Case("calibrate --memory-mb 0", (*calibrate_to("out.onnx"), "--memory-mb", "0"), 2,
         r"--memory-mb must be at least 1, got 0"),
    Case("calibrate --resize 0 (no manifest)", (*calibrate_to("out.onnx"), "--mean", "0.3", "--std", "0.35",
                                                "--resize", "0"), 2,
         r"--resize must be a positive integer, got 0", strip_manifest),
    Case("calibrate --batch-size 100000", (*calibrate_to("out.onnx"), "--batch-size", "100000"), 2,
         r"--batch-size must be at most 4096, got 100000"),
    Case("validate --batch 100000", ("validate", "--candidate", ONNX, "--limit", "4", "--batch", "100000"), 2,
         r"--batch must be 1\.\.4096, got 100000"),
]


@pytest.mark.parametrize("case", INT_ROWS, ids=str)
def test_integer_options_are_range_checked(case, workspace):
    run_case(case, workspace)


@pytest.mark.parametrize("where, fields, message", [
    ("stages.calibrate.CalibrationSettings", dict(calib_images=3.7),
     "`calib_images` must be an integer, got 3.7 (float)"),
    ("stages.calibrate.CalibrationSettings", dict(calib_images=True),
     "`calib_images` must be an integer, got True (bool)"),
    ("stages.calibrate.CalibrationSettings", dict(percentile="99.9"),
     "`percentile` must be a number, got '99.9' (str)"),
    ("stages.calibrate.CalibrationSettings", dict(keep_fp32="/fc/Gemm"),
     "`keep_fp32` must be a list, got '/fc/Gemm' (str)"),
    ("stages.build.BuildSettings", dict(compute_capabilities="8.6"),
     "`compute_capabilities` must be a list, got '8.6' (str)"),
    ("stages.build.BuildSettings", dict(max_batch="32"), "`max_batch` must be an integer, got '32' (str)"),
    ("stages.export.ExportSettings", dict(batch="1"), "`batch` must be an integer, got '1' (str)"),
    ("stages.validate.ValidateSettings", dict(min_agreement="0.99"),
     "`min_agreement` must be a number, got '0.99' (str)"),
    ("bench.BenchSettings", dict(iterations=2.5), "`iterations` must be an integer, got 2.5 (float)"),
    ("bench.BenchSettings", dict(batches=("8",)), "`batches` sizes must be positive integers, got ('8',)"),
])
def test_settings_name_the_field_and_the_type_it_takes(where, fields, message):
    import importlib

    from skdeploy.errors import UsageError

    module, name = where.rsplit(".", 1)
    with pytest.raises(UsageError) as raised:
        getattr(importlib.import_module(f"skdeploy.{module}"), name)(**fields)
    assert str(raised.value) == message


def test_settings_still_take_what_their_fields_hold():
    """Integers where a float belongs, tuples or lists for sequences, None where the default is None."""
    from skdeploy.stages.build import BuildSettings
    from skdeploy.stages.calibrate import CalibrationSettings

    assert CalibrationSettings(percentile=99, keep_fp32=["/fc/Gemm"], max_top1_drop=None).percentile == 99
    assert BuildSettings(compute_capabilities=("8.6", "12.0"), max_batch=16).max_batch == 16
