"""The JSON manifest that travels beside every artifact (ONNX file or engine).

Layout (format "skdeploy-manifest/1"; see docs/manifest.md):
  artifact       {file, kind, sha256}
  model          {spec, checkpoint {path, sha256} | null, kwargs, num_classes, dataset, input_size}
                 (models.entry.ModelEntry writes and reads it)
  inputs/outputs [{name, shape, dtype}]   shape entries are ints or a symbolic name ("batch")
  preprocessing  {resize, crop, interpolation, mean, std, channel_order, scale, layout} | null
  opset          ONNX opset of the artifact (ONNX artifacts)
  stages         [{stage, skdeploy_version, time, ...settings and results}] oldest first
Each stage copies its input's manifest (models.entry.derive_manifest), points `artifact` at its own
output and appends its result's record, so the newest manifest tells the whole history of how an
artifact was made. Reading a manifest checks its artifact against the recorded sha256 (`verify_artifact`),
unless a caller turns the check off for a block (`hash_checks(False)`, the CLI's --no-verify).
"""
import contextlib
import contextvars
import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import SkdeployError, UsageError
from .fileio import PathLike, read_json, readable_path, sha256_file, write_text_atomic

FORMAT = "skdeploy-manifest/1"
PRECISIONS = ("fp32", "fp16", "int8")  # what an artifact runs in: the one vocabulary of every stage and command
CALIBRATED_PRECISIONS = ("int8", "fp16")  # what calibration makes of an FP32 ONNX
MAX_BYTES = 64 << 20  # a manifest of the largest model is well under 1 MiB
_CHECK_HASHES = contextvars.ContextVar("skdeploy_check_hashes", default=True)
NULL = type(None)
# What a manifest's readers rely on, as JSON types: entry -> its type and, for an object, {field: types}.
# Entries and fields marked optional may be absent (hand-made manifests and earlier versions leave them out).
LAYOUT = {"model": (dict,), "preprocessing": (dict, NULL), "stages": (list,)}
OPTIONAL = {"artifact": (dict,), "inputs": (list,), "outputs": (list,), "engine": (dict,)}
ARTIFACT_FIELDS = {"file": (str,), "kind": (str,), "sha256": (str,)}
MODEL_FIELDS = {"spec": (str, NULL), "checkpoint": (dict, NULL), "kwargs": (dict,), "num_classes": (int, NULL),
                "dataset": (str, NULL), "input_size": (list, NULL)}
TENSOR_FIELDS = {"name": (str,), "shape": (list,), "dtype": (str,)}
CHECKPOINT_FIELDS = {"path": (str,), "sha256": (str,)}


def manifest_path(artifact: PathLike) -> Path:
    return Path(str(artifact) + ".json")


@dataclass
class StageResult:
    """Base of what a stage returns: the artifact it wrote (its manifest beside it) and, from `record()`,
    the entry the stage appended to that manifest."""

    output: Path

    @property
    def manifest(self) -> Path:
        return manifest_path(self.output)

    def record(self) -> dict:
        raise NotImplementedError


@contextlib.contextmanager
def hash_checks(enabled: bool) -> Iterator[None]:
    """Whether reading a manifest checks its artifact's sha256, for the length of a block (default: on)."""
    token = _CHECK_HASHES.set(enabled)
    try:
        yield
    finally:
        _CHECK_HASHES.reset(token)


def verify_artifact(artifact: PathLike, manifest: dict, verify: bool | None = None, sha256: str | None = None) -> None:
    """Fail when `artifact` is not the file its manifest describes: truncated, changed, or the manifest
    belongs to another file. `verify` None follows hash_checks; a missing artifact is left to its reader;
    `sha256` is the artifact's when the caller has just hashed it."""
    if not (_CHECK_HASHES.get() if verify is None else verify):
        return
    record = manifest.get("artifact")
    recorded = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(recorded, str) or not readable_path(artifact).is_file():
        return
    actual = sha256 or sha256_file(artifact)
    if actual != recorded:
        raise SkdeployError(f"{artifact} does not match its manifest {manifest_path(artifact).name}: sha256 "
                            f"{actual[:12]}, recorded {recorded[:12]} (the file changed or the manifest belongs "
                            "to another file; `verify=False` skips this check)")


def verify_beside(artifact: PathLike, sha256: str | None = None) -> bool:
    """verify_artifact against the manifest beside `artifact`, when it has a readable one (the stage that
    reads the manifest reports an unreadable one). True when the artifact is, byte for byte, the file a
    skdeploy stage wrote (its sha256 checked)."""
    try:
        manifest = load_manifest(artifact, required=False, verify=False)
    except UsageError:
        return False
    if manifest is None or not _CHECK_HASHES.get():
        return False
    record = manifest.get("artifact")
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return False
    verify_artifact(artifact, manifest, sha256=sha256)
    return True


def load_manifest(artifact: PathLike, required: bool = True, verify: bool | None = None) -> dict | None:
    """The manifest beside `artifact`, or None when absent and not required; its artifact's sha256 is
    checked (verify_artifact)."""
    path = manifest_path(artifact)
    if not readable_path(path).exists():
        if required:
            raise UsageError(f"no manifest beside {artifact} (expected {path}); "
                             "it is written by 'skdeploy export' and every later stage")
        return None
    data = read_json(path, MAX_BYTES, "manifest")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a skdeploy manifest (format {FORMAT})")
    verify_artifact(artifact, data, verify)
    check_layout(data, path)
    return data


def damaged(path: PathLike, what: str) -> UsageError:
    return UsageError(f"{path} is damaged: {what}; remake the artifact")


def check_fields(entry: dict, fields: dict, path: PathLike, where: str, required: bool) -> None:
    """Each of `fields` ({name: JSON types}) in `entry` has one of its types; with `required`, is there."""
    for field, kinds in fields.items():
        if field not in entry:
            if required:
                raise damaged(path, f"{where} has no '{field}'")
        elif not isinstance(entry[field], kinds) or isinstance(entry[field], bool) and bool not in kinds:
            raise damaged(path, f"{where} '{field}' is a {type(entry[field]).__name__}")


def check_model_entry(model: dict, path: PathLike) -> None:
    """The model entry of a manifest or saved reference, as models.entry.ModelEntry reads it."""
    check_fields(model, MODEL_FIELDS, path, "its model", required=False)
    if model.get("checkpoint") is not None:
        check_fields(model["checkpoint"], CHECKPOINT_FIELDS, path, "its model checkpoint", required=True)
    size = model.get("input_size")
    if size is not None and not all(_is_size(d) for d in size):
        raise damaged(path, f"its model 'input_size' must hold positive sizes, not {size}")


def check_layout(manifest: dict, path: PathLike) -> None:
    """A damaged manifest (an entry cut out or of the wrong kind) is refused when read, not met later as a
    missing key or a wrong type deep inside a stage."""
    for key in LAYOUT:
        if key not in manifest:
            raise UsageError(f"{path} has no '{key}' entry; the manifest is damaged (remake the artifact)")
    check_fields(manifest, {**LAYOUT, **OPTIONAL}, path, "its", required=False)
    if "artifact" in manifest:
        check_fields(manifest["artifact"], ARTIFACT_FIELDS, path, "its artifact", required=True)
    check_model_entry(manifest["model"], path)
    for key in ("inputs", "outputs"):
        for tensor in manifest.get(key, []):
            if not isinstance(tensor, dict):
                raise damaged(path, f"an entry of its '{key}' is a {type(tensor).__name__}")
            check_fields(tensor, TENSOR_FIELDS, path, f"an entry of its '{key}'", required=True)
            if not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in tensor["shape"]):
                raise damaged(path, f"the shape of its tensor {tensor['name']!r} holds {tensor['shape']}")
    if not all(isinstance(stage, dict) and isinstance(stage.get("stage"), str) for stage in manifest["stages"]):
        raise damaged(path, "every entry of its 'stages' must name its stage")


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def add_stage(manifest: dict, stage: str, record: dict) -> dict:
    """Append `stage`'s entry: who and when, then `record` (a stage result's record())."""
    entry = {"stage": stage, "skdeploy_version": __version__,
             "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    entry.update(record)
    manifest["stages"].append(entry)
    return entry


def last_stage(manifest: dict, stage: str) -> dict | None:
    for entry in reversed(manifest.get("stages", [])):
        if entry["stage"] == stage:
            return entry
    return None


def write_manifest(artifact: PathLike, manifest: dict, kind: str) -> Path:
    """Point the manifest at `artifact` (hashing it) and write it atomically beside it."""
    artifact = Path(artifact)
    manifest["artifact"] = {"file": artifact.name, "kind": kind, "sha256": sha256_file(artifact)}
    path = manifest_path(artifact)
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def artifact_precision(manifest: dict | None) -> str:
    """What an artifact runs in, from its manifest: the engine's precision, else the calibrated ONNX's,
    else fp32; "unknown" without a manifest."""
    if not manifest:
        return "unknown"
    if manifest.get("engine"):
        return manifest["engine"].get("precision", "unknown")
    calibration = last_stage(manifest, "calibrate")
    return calibration["precision"] if calibration else "fp32"


def recorded_source(manifest: dict, entry: dict) -> dict:
    """The {file, sha256} a stage entry was made from; manifests written before every stage recorded `source`
    kept it as `source_onnx`, or (engines) in the engine section."""
    if "source" in entry:
        return entry["source"]
    if "source_onnx" in entry:
        return entry["source_onnx"]
    return (manifest.get("engine") or {}).get("source_onnx") or {}
