"""The manifest's "model" entry, one type for every stage that writes it and every reader.

    entry = ModelEntry.from_manifest(manifest)     # also reads manifests of earlier versions
    manifest = new_manifest(entry, preprocessing)  # the first stage of an artifact's history
    manifest = derive_manifest(parent)             # every later stage

Pure metadata: importing this needs no torch.
"""
import copy
from dataclasses import dataclass, field, fields

from ..manifest import FORMAT


@dataclass
class ModelEntry:
    """The PyTorch model an artifact came from: enough to rebuild the FP32 reference. An ONNX that
    skdeploy did not export has an entry too, with what its graph tells (the input size) and None for
    the rest."""

    spec: str | None = None  # registered name, "timm:NAME", "file.py:factory", or "onnx:FILE" for a foreign ONNX
    checkpoint: dict | None = None  # {"path", "sha256"}; None: random weights or unknown
    kwargs: dict = field(default_factory=dict)
    num_classes: int | None = None
    dataset: str | None = None  # "fashion-mnist" gives default calibration and validation data
    input_size: list | None = None  # [C, H, W]; None when the graph's sample dimensions are symbolic

    def record(self) -> dict:
        """The form stored in manifests (and in saved references)."""
        entry = {f.name: getattr(self, f.name) for f in fields(self)}
        entry["input_size"] = list(self.input_size) if self.input_size is not None else None
        return entry

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ModelEntry":
        """The entry of a manifest (or of a saved reference's metadata); earlier versions wrote some
        entries without `input_size`, and a manifest may have no entry at all."""
        recorded = (manifest or {}).get("model") or {}
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in recorded.items() if key in known})

    @classmethod
    def of_graph(cls, inputs: list, spec: str | None = None, outputs: list | None = None) -> "ModelEntry":
        """The entry of an ONNX without a manifest, from its `inputs` ([{name, shape, dtype}]); with
        `outputs`, a single (N, K) output gives the class count K."""
        size = inputs[0]["shape"][1:] if inputs else None
        shape = outputs[0]["shape"] if outputs and len(outputs) == 1 else []
        classes = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        return cls(spec=spec, input_size=list(size) if size and all(isinstance(d, int) for d in size) else None,
                   num_classes=classes)


def new_manifest(entry: ModelEntry, preprocessing: dict | None) -> dict:
    """A manifest for a new artifact history; `preprocessing` (a Preprocessing dict) is None when unknown."""
    return {"format": FORMAT, "artifact": None, "model": entry.record(), "preprocessing": preprocessing or None,
            "inputs": [], "outputs": [], "stages": []}


def derive_manifest(parent: dict) -> dict:
    """A copy of an input's manifest for the next stage to extend, its model entry and preprocessing
    written in the current form (earlier versions left out `input_size` and wrote unknown preprocessing
    as {})."""
    manifest = copy.deepcopy(parent)
    manifest["model"] = ModelEntry.from_manifest(parent).record()
    manifest["preprocessing"] = parent.get("preprocessing") or None
    return manifest
