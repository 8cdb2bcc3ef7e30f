"""The FP32 reference every deployed artifact is judged against: built here, run one way.

    reference = reference_from_manifest("out/demo.int8.onnx")   # the PyTorch model its manifest records
    with reference.runner() as runner:
        logits = runner.run_batched(inputs, 256)

A reference is a PyTorch model (a name plus checkpoint, an already loaded model, or the model an
artifact's manifest records), an FP32 ONNX made elsewhere (no PyTorch model exists for it; onnxruntime
runs it), or a saved reference: an .npz of FP32 logits plus the inputs' sha256, which needs no PyTorch.
Export parity, calibration's accuracy budget, validation and bench all take their reference from here
and run it through one Runner's run_batched, so "the FP32 model" is the same thing in every stage.
Metrics comparing it with a candidate live in compare.py.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .data import DataOrigin, check_label_range, checked_labels, read_arrays
from .errors import SkdeployError, UsageError
from .fileio import PathLike, atomic_path, check_output_path, output_transaction
from .log import log
from .manifest import NULL, check_fields, check_model_entry, damaged, load_manifest, manifest_path
from .models.entry import ModelEntry

if TYPE_CHECKING:
    from .models import LoadedModel
    from .runners.base import Runner

REFERENCE_FORMAT = "skdeploy-reference/1"
SAVED_META_FIELDS = {"model": (dict,), "preprocessing": (dict, NULL), "data": (dict,)}


@dataclass
class Reference:
    """FP32 logits for the data, or the means to compute them (a PyTorch model)."""

    source: str
    kind: str  # "pytorch", "onnx-fp32" or "saved"
    model: ModelEntry
    preprocessing: dict
    loaded: object = None  # models.LoadedModel for kind "pytorch", the ONNX path for kind "onnx-fp32"
    saved: dict = field(default_factory=dict)  # logits, labels, inputs_sha256, meta for kind "saved"
    preprocessing_known: bool = True  # False for user model code: its preprocessing is a default guess

    def runner(self, threads: int = 0) -> Runner:
        """A TorchRunner over the FP32 PyTorch model, an onnxruntime runner over the FP32 ONNX; a saved
        reference has none."""
        if self.kind == "saved":
            raise UsageError(f"{self.source} holds saved outputs, not a model to run; give a model as `reference`")
        if self.kind == "onnx-fp32":
            from .runners.onnxrt import OnnxRuntimeRunner

            return OnnxRuntimeRunner(str(self.loaded), threads=threads)
        from .runners.torch_runner import TorchRunner

        return TorchRunner(self.loaded, threads=threads)

    def check_saved_data(self, count: int, sha256: str | None, described: str) -> None:
        """UsageError unless `count` samples whose inputs hash to `sha256` (`described` in the error) are
        what the saved logits came from; with `sha256` None, before streaming, the count alone."""
        logits = self.saved["logits"]
        if len(logits) != count or (sha256 is not None and str(self.saved["inputs_sha256"]) != sha256):
            raise UsageError(f"the data ({described}, {count} samples) is not what {self.source} was saved "
                             f"from ({self.saved['meta']['data']['source']}, {len(logits)} samples): input sha256 "
                             "differs; use the same `data`, `limit` and preprocessing")


def reference_of(loaded: LoadedModel) -> Reference:
    """The reference for an already loaded PyTorch model (models.LoadedModel). The preprocessing of user
    model code is a default guess (ImageNet's, or derived from the input shape), not the model's own."""
    from .models import is_model_code

    source = f"{loaded.spec}" + (f" ({loaded.checkpoint['path']})" if loaded.checkpoint else " (random weights)")
    return Reference(source, "pytorch", loaded.entry(), loaded.config.preprocessing.to_dict(), loaded,
                     preprocessing_known=not is_model_code(loaded.spec))


def reference_from_model(spec: str, checkpoint: PathLike | None = None, input_shape: Any = None,
                         model_kwargs: dict | None = None, pretrained: bool = True) -> Reference:
    from .models import load_model

    return reference_of(load_model(spec=spec, checkpoint=checkpoint, input_shape=input_shape,
                                   model_kwargs=model_kwargs, pretrained=pretrained))


def reference_from_manifest(artifact: PathLike, same_weights: bool = False,
                            trust_model_code: bool = False) -> Reference:
    """The PyTorch model a manifest says its artifact was exported from, with the same checkpoint file.
    A checkpoint changed since (another sha256) is a warning, or an SkdeployError with `same_weights`.
    Model code (a .py or module spec) is imported only with `trust_model_code`."""
    from .models import load_from_manifest

    path = Path(artifact)
    if path.suffix == ".json":
        path = path.with_suffix("")
    manifest = load_manifest(path)
    loaded = load_from_manifest(manifest, path, trust_model_code)
    recorded = ModelEntry.from_manifest(manifest).checkpoint
    if loaded.checkpoint["sha256"] != recorded["sha256"]:
        changed = f"checkpoint {recorded['path']} changed since {path.name} was made (sha256 differs)"
        if same_weights:
            raise SkdeployError(changed)
        log.warning(changed)
    return reference_of(loaded)


def is_foreign_onnx(path: PathLike) -> bool:
    """An ONNX that no PyTorch model skdeploy can load stands behind: no manifest, or one whose model entry
    is the ONNX itself (`onnx:FILE`, as optimize and calibrate record a foreign ONNX)."""
    manifest = load_manifest(path, required=False)
    return manifest is None or str(ModelEntry.from_manifest(manifest).spec or "").startswith("onnx:")


def reference_from_onnx(path: PathLike) -> Reference:
    """A foreign FP32 ONNX as its own candidates' reference, run in onnxruntime. Its preprocessing is its
    manifest's, else unknown here (`preprocessing_known` False): validation then takes the candidates'."""
    from .onnx.io import io_spec, load_onnx, lowered_precision

    path = Path(path)
    model = load_onnx(path)
    lowered = lowered_precision(model)
    if lowered:
        raise UsageError(f"`reference={path}` is not an FP32 ONNX (it has {lowered}); give the FP32 model its "
                         "candidates were made from")
    manifest = load_manifest(path, required=False) or {}
    preprocessing = manifest.get("preprocessing")
    if (preprocessing or {}).get("in_graph"):
        raise UsageError(f"`reference={path}` takes raw pixels (preprocessing in its graph); give the FP32 ONNX "
                         "that takes normalized inputs")
    model_entry = ModelEntry.from_manifest(manifest) if manifest else ModelEntry.of_graph(io_spec(model)[0],
                                                                                          spec=f"onnx:{path.name}")
    return Reference(f"FP32 ONNX {path} (onnxruntime)", "onnx-fp32", model_entry, preprocessing, loaded=path,
                     preprocessing_known=bool(preprocessing))


def load_saved_reference(path: PathLike) -> Reference:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"reference {path} does not exist")
    saved = read_arrays(path)
    try:
        meta = json.loads(str(saved["meta"]))
    except (TypeError, IndexError, ValueError, KeyError) as exc:
        raise UsageError(f"{path} is not a saved skdeploy reference (no readable 'meta': {exc})") from None
    if not isinstance(meta,
    dict) or meta.get("format") != REFERENCE_FORMAT or "logits" not in saved or "inputs_sha256" not in saved:
        raise UsageError(f"{path} is not a saved skdeploy reference (format {REFERENCE_FORMAT})")
    check_fields(meta, SAVED_META_FIELDS, path, "its meta", required=True)
    check_model_entry(meta["model"], path)
    check_fields(meta["data"], {"source": (str,), "count": (int,)}, path, "its meta data", required=True)
    try:
        DataOrigin.parse(meta["data"]["source"])
        named = meta["data"]["count"] >= 1
    except ValueError:
        named = False
    if not named:
        raise damaged(path, "its meta data must name its source as KIND:PATH and count at least 1 sample")
    _check_saved_arrays(saved, path)
    saved["meta"] = meta
    model = ModelEntry.from_manifest(meta)
    return Reference(f"saved {path.name} ({model.spec})", "saved", model, meta["preprocessing"], saved=saved)


def _check_saved_arrays(saved: dict, path: Path) -> None:
    """Logits (N, classes) of a number type and, when saved, one label per sample within those classes:
    anything else would fail deep inside validation, or score against the wrong samples."""
    logits = saved["logits"]
    if logits.ndim != 2 or logits.shape[1] < 1 or logits.dtype.kind not in "fiu":
        raise damaged(path, f"its logits must be numbers of shape (samples, classes), got {logits.dtype} "
                            f"{logits.shape}")
    if "labels" in saved:
        what = f"{path} (its saved labels)"
        labels = checked_labels(saved["labels"], what)
        if len(labels) != len(logits):
            raise damaged(path, f"it holds {len(labels)} labels for {len(logits)} samples of logits")
        check_label_range(labels, logits.shape[1], what)
        saved["labels"] = labels


def resolve_reference(reference: PathLike | None = None, checkpoint: PathLike | None = None,
                      candidates: Sequence[PathLike] = (), trust_model_code: bool = False) -> Reference:
    """`reference` as given (ref.npz, a foreign FP32 ONNX, an artifact or its manifest, a model name/spec),
    else the model the first candidate's manifest records, else the shipped demo model."""
    if reference is None:
        if checkpoint:
            raise UsageError("`checkpoint` needs `reference=MODEL`")
        with_manifest = [c for c in candidates if manifest_path(c).exists()]
        if with_manifest:
            if is_foreign_onnx(with_manifest[0]):
                spec = ModelEntry.from_manifest(load_manifest(with_manifest[0])).spec
                raise UsageError(f"{with_manifest[0]} comes from an ONNX made elsewhere ({spec}), with no PyTorch "
                                 "model behind it; give that FP32 ONNX as `reference`")
            return reference_from_manifest(with_manifest[0], trust_model_code=trust_model_code)
        if candidates:
            raise UsageError(f"{candidates[0]} has no manifest to take the reference from; pass `reference`")
        from .models import DEMO_MODEL

        return reference_from_model(DEMO_MODEL)
    text = str(reference)
    if text.endswith(".npz"):
        if checkpoint:
            raise UsageError("`checkpoint` does not apply to a saved reference (.npz)")
        return load_saved_reference(text)
    if text.endswith(".onnx") and Path(text).is_file() and is_foreign_onnx(text):
        if checkpoint:
            raise UsageError("`checkpoint` does not apply to an ONNX reference")
        return reference_from_onnx(text)
    if text.endswith(".json") or (Path(text).is_file() and manifest_path(text).exists()):
        return reference_from_manifest(text, trust_model_code=trust_model_code)
    if Path(text).is_file() and not text.endswith(".py"):
        raise UsageError(f"`reference={text}`: give a model name with `checkpoint`, a manifest, a saved .npz, or "
                         "an FP32 ONNX made elsewhere")
    return reference_from_model(text, checkpoint=checkpoint)


def save_reference(path: PathLike, logits, labels: np.ndarray | None, data: dict, reference: Reference,
                   force: bool = False) -> Path:
    """FP32 logits, the inputs' sha256 and the labels (or None), so validation can run later without
    PyTorch. `data` describes the samples the logits came from: {source, count, inputs_sha256}, as
    validation records it."""
    path = check_output_path(path, force)
    meta = {"format": REFERENCE_FORMAT, "skdeploy_version": __version__, "model": reference.model.record(),
            "preprocessing": reference.preprocessing, "data": {"source": data["source"], "count": data["count"]},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    arrays = {"logits": logits.astype(np.float32), "inputs_sha256": np.array(data["inputs_sha256"]),
              "meta": np.array(json.dumps(meta))}
    if labels is not None:
        arrays["labels"] = labels
    with output_transaction([path], force), atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return path
