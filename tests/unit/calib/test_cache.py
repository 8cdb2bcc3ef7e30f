"""The TensorRT calibration table text and version code, and the ranges cache beside the output, checked
against values worked out by hand (float32 bit patterns included)."""
import json
import struct

import pytest

from skdeploy.calib.cache import (
    calibration_table,
    load_ranges,
    ranges_path,
    save_ranges,
    table_path,
    trt_version_code,
    write_table,
)
from skdeploy.log import log


@pytest.mark.parametrize("version, code", [
    ("8.6.2", 8602),
    ("8.5.3.1", 8503),   # a build number after the patch is ignored
    ("8.6", 8600),       # missing parts count as 0
    ("8", 8000),
    ("9.3.0", 9300),     # the last TensorRT numbered major x 1000
    ("10.0.0", 100000),  # from 10 on: major x 10000
    ("10.3.0", 100300),
    ("10.13.2", 101302),
])
def test_trt_version_code(version, code):
    assert trt_version_code(version) == code


def scales_of(table: str) -> dict:
    return {name: struct.unpack(">f", bytes.fromhex(bits))[0]
            for name, bits in (line.split(": ") for line in table.splitlines()[1:])}


def test_table_lines_are_big_endian_float32_bits_of_amax_over_127():
    table = calibration_table({"input": {"absmax": 2.54},
                               "conv_out": {"absmax": 9.0, "amax": 127.0},
                               "half": {"absmax": 63.5},
                               "double": {"absmax": 300.0, "amax": 254.0}}, "entropy", "8.6.2")
    # 1.0 = 0x3f800000, 0.5 = 0x3f000000, 2.0 = 0x40000000;
    # 0.02 = 1.28 x 2^-6: exponent 127 - 6 = 121, mantissa round(0.28 x 2^23) = 0x23d70a -> 0x3ca3d70a
    assert table == ("TRT-8602-EntropyCalibration2\n"
                     "input: 3ca3d70a\n"
                     "conv_out: 3f800000\n"
                     "half: 3f000000\n"
                     "double: 40000000\n")
    assert struct.pack(">f", 0.02).hex() == "3ca3d70a"


def test_the_calibrated_amax_wins_over_the_max_and_a_zero_range_gets_the_smallest_scale():
    scales = scales_of(calibration_table({"clipped": {"absmax": 10.0, "amax": 6.35},
                                          "dead": {"absmax": 0.0}}, "percentile", "10.3.0"))
    assert scales["clipped"] == struct.unpack(">f", struct.pack(">f", 0.05))[0]
    assert scales["dead"] == struct.unpack(">f", struct.pack(">f", 1e-8 / 127))[0]


@pytest.mark.parametrize("method, header", [
    ("entropy", "TRT-100300-EntropyCalibration2"),
    ("percentile", "TRT-100300-EntropyCalibration2"),  # a clipped range: TensorRT reads it like entropy's
    ("max", "TRT-100300-MinMaxCalibration"),
])
def test_table_header_names_version_and_algorithm(method, header):
    assert calibration_table({}, method, "10.3.0") == header + "\n"


def test_write_table_writes_the_table_text(tmp_path):
    path = table_path(tmp_path / "model.int8.onnx")
    assert path.name == "model.int8.onnx.calib.table"
    write_table(path, {"x": {"absmax": 127.0}}, "max", "8.6.1")
    assert path.read_text() == "TRT-8601-MinMaxCalibration\nx: 3f800000\n"


KEY = {"onnx_sha256": "ab", "data_sha256": "cd", "images": 64, "method": "entropy", "percentile": 99.99,
       "bins": 2048}
TENSORS = {"input": {"absmax": 2.5, "amax": 2.0}, "logits": {"absmax": 7.0}}


def test_ranges_round_trip_only_for_the_same_key(tmp_path):
    path = ranges_path(tmp_path / "model.int8.onnx")
    assert path.name == "model.int8.onnx.ranges.json"
    assert load_ranges(path, KEY) is None
    save_ranges(path, KEY, TENSORS)
    assert json.loads(path.read_text())["format"] == "skdeploy-ranges/1"
    assert load_ranges(path, KEY) == TENSORS
    assert load_ranges(path, {**KEY, "images": 65}) is None
    assert load_ranges(path, {**KEY, "method": "max"}) is None


def test_a_cache_of_another_format_is_ignored(tmp_path):
    path = tmp_path / "old.ranges.json"
    path.write_text(json.dumps({"format": "skdeploy-ranges/0", "key": KEY, "tensors": TENSORS}))
    assert load_ranges(path, KEY) is None
    path.write_text(json.dumps([KEY]))
    assert load_ranges(path, KEY) is None


def test_an_unreadable_cache_is_ignored_with_a_warning(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(log, "warning", warnings.append)
    path = tmp_path / "broken.ranges.json"
    path.write_text('{"format": "skdeploy-ranges/1", "key": ')
    assert load_ranges(path, KEY) is None
    assert warnings == [f"ignoring unreadable calibration cache {path}"]
