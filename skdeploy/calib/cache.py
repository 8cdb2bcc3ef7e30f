"""The ranges cache beside the output, and the TensorRT calibration table written from the same ranges.

Ranges file (JSON, format "skdeploy-ranges/1"):
  key     {onnx_sha256, data_sha256, images, method, percentile, bins}  a rerun reuses it only on equality
  tensors {name: {"absmax": largest |x| seen, "amax": clipping range of the scale}}  amax only for
          the tensors INT8 Q/DQ may use (histogrammed); the others are only needed for FP16 overflow
TensorRT calibration table: the text an IInt8Calibrator's writeCalibrationCache produces, one
"tensor: <float32 scale as big-endian hex>" line per tensor under a "TRT-<version>-<algorithm>" header;
scales come from amax where calibrated and from absmax (max calibration) for every other tensor.
"""
import json
import struct
from pathlib import Path

from ..errors import UsageError
from ..fileio import PathLike, read_json, write_text_atomic
from ..log import log
from .qdq import activation_scale

FORMAT = "skdeploy-ranges/1"
MAX_BYTES = 64 << 20
TABLE_ALGORITHM = {"entropy": "EntropyCalibration2", "max": "MinMaxCalibration",
                   "percentile": "EntropyCalibration2", "mse": "EntropyCalibration2"}


def ranges_path(output: PathLike) -> Path:
    return Path(str(output) + ".ranges.json")


def table_path(output: PathLike) -> Path:
    return Path(str(output) + ".calib.table")


def load_ranges(path: Path, key: dict) -> dict | None:
    """The cached tensors when `path` holds ranges for exactly `key`, else None."""
    if not path.exists():
        return None
    try:
        data = read_json(path, MAX_BYTES, "calibration cache")
    except UsageError:
        log.warning(f"ignoring unreadable calibration cache {path}")
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    return data.get("tensors")


def save_ranges(path: Path, key: dict, tensors: dict) -> None:
    write_text_atomic(path, json.dumps({"format": FORMAT, "key": key, "tensors": tensors}, indent=1) + "\n")


def trt_version_code(version: str) -> int:
    """'8.6.2' -> 8602 (TensorRT 8 numbering), '10.3.0' -> 100300 (TensorRT 10 numbering)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def calibration_table(tensors: dict, method: str, trt_version: str) -> str:
    lines = [f"TRT-{trt_version_code(trt_version)}-{TABLE_ALGORITHM[method]}"]
    for name, entry in tensors.items():
        scale = activation_scale(entry.get("amax", entry["absmax"]))
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def write_table(path: Path, tensors: dict, method: str, trt_version: str) -> None:
    write_text_atomic(path, calibration_table(tensors, method, trt_version))
