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
artifact was made.
"""
import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import UsageError
from .fileio import sha256_file, write_text_atomic

FORMAT = "skdeploy-manifest/1"
# the entries a manifest's readers rely on, with their JSON types (None: null allowed), and the further
# entries that are checked when present (every written manifest has them; hand-made ones may not)
REQUIRED = {"model": (dict,), "preprocessing": (dict, type(None)), "stages": (list,)}
CHECKED = {"artifact": (dict,), "inputs": (list,), "outputs": (list,), "engine": (dict,)}


def manifest_path(artifact) -> Path:
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


def load_manifest(artifact, required: bool = True):
    """The manifest beside `artifact`, or None when absent and not required."""
    path = manifest_path(artifact)
    if not path.exists():
        if required:
            raise UsageError(f"no manifest beside {artifact} (expected {path}); "
                             "it is written by 'skdeploy export' and every later stage")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"manifest {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a skdeploy manifest (format {FORMAT})")
    check_layout(data, path)
    return data


def check_layout(manifest: dict, path) -> None:
    """A damaged manifest (an entry cut out or of the wrong kind) is refused when read, not met later as a
    missing key; its stages must be entries that name their stage."""
    for key, kinds in {**REQUIRED, **CHECKED}.items():
        if key not in manifest:
            if key in CHECKED:
                continue
            raise UsageError(f"{path} has no '{key}' entry; the manifest is damaged (remake the artifact)")
        if not isinstance(manifest[key], kinds):
            raise UsageError(f"{path} is damaged: its '{key}' entry is a {type(manifest[key]).__name__}")
    if not all(isinstance(stage, dict) and isinstance(stage.get("stage"), str) for stage in manifest["stages"]):
        raise UsageError(f"{path} is damaged: every entry of its 'stages' must name its stage")


def add_stage(manifest: dict, stage: str, record: dict) -> dict:
    """Append `stage`'s entry: who and when, then `record` (a stage result's record())."""
    entry = {"stage": stage, "skdeploy_version": __version__,
             "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    entry.update(record)
    manifest["stages"].append(entry)
    return entry


def last_stage(manifest: dict, stage: str):
    for entry in reversed(manifest.get("stages", [])):
        if entry["stage"] == stage:
            return entry
    return None


def write_manifest(artifact, manifest: dict, kind: str) -> Path:
    """Point the manifest at `artifact` (hashing it) and write it atomically beside it."""
    artifact = Path(artifact)
    manifest["artifact"] = {"file": artifact.name, "kind": kind, "sha256": sha256_file(artifact)}
    path = manifest_path(artifact)
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def artifact_precision(manifest) -> str:
    """What an artifact runs in, from its manifest: the engine's precision, else the calibrated ONNX's,
    else fp32; "unknown" without a manifest."""
    if not manifest:
        return "unknown"
    if manifest.get("engine"):
        return manifest["engine"].get("precision", "unknown")
    calibration = last_stage(manifest, "calibrate")
    return calibration["precision"] if calibration else "fp32"
