"""Is the deployed model still the model? Run the FP32 reference and every candidate on the same
preprocessed batches, compare, and give one verdict per candidate against thresholds.

    result, data = validate(["demo.onnx", "demo.int8.onnx"], settings=ValidateSettings(min_agreement=0.99))

The reference is a PyTorch model (a name plus checkpoint, or the one a candidate's manifest records)
or a saved reference (.npz: FP32 logits plus the inputs' sha256), which needs no PyTorch.
"""
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, ui
from .compare import accuracy, logit_agreement, prediction_agreement
from .data import FASHION_MNIST_DIR, LoadedData, Preprocessing, class_names_for, load_data, pad_batch
from .errors import SkdeployError, UsageError
from .fileio import atomic_path, check_output_path
from .manifest import last_stage, load_manifest, manifest_path
from .runners import runner_kind

REFERENCE_FORMAT = "skdeploy-reference/1"


@dataclass
class ValidateSettings:
    max_top1_drop: float = 0.5  # accuracy points (percent) a candidate may lose vs FP32; needs labels
    min_agreement: float = 0.99  # fraction of samples whose top-1 equals FP32's
    batch: int = 256
    limit: int = None  # first N samples only
    max_examples: int = 24  # disagreeing samples listed per candidate

    def check(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"--min-agreement must be between 0 and 1, got {self.min_agreement:g}")
        if self.max_top1_drop < 0:
            raise UsageError(f"--max-top1-drop must not be negative, got {self.max_top1_drop:g}")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, got {self.limit}")


# ---- the reference ------------------------------------------------------------------------------
@dataclass
class Reference:
    """FP32 logits for the data, or the means to compute them (a PyTorch model)."""

    source: str
    kind: str  # "pytorch" or "saved"
    model: dict  # the manifest's "model" entry
    preprocessing: dict
    loaded: object = None  # models.LoadedModel for kind "pytorch"
    saved: dict = field(default_factory=dict)  # logits, labels, inputs_sha256, meta for kind "saved"


def reference_from_model(spec, checkpoint=None, input_shape=None, model_kwargs=None, pretrained=True) -> Reference:
    from .models import load_model

    return _reference_of(load_model(spec=spec, checkpoint=checkpoint, input_shape=input_shape,
                                    model_kwargs=model_kwargs, pretrained=pretrained))


def _reference_of(loaded) -> Reference:
    source = f"{loaded.spec}" + (f" ({loaded.checkpoint['path']})" if loaded.checkpoint else " (random weights)")
    return Reference(source, "pytorch", loaded.manifest_entry(), loaded.config.preprocessing.to_dict(), loaded)


def reference_from_manifest(artifact) -> Reference:
    """The PyTorch model a manifest says its artifact was exported from, with the same checkpoint."""
    from .models import load_from_manifest

    path = Path(artifact)
    if path.suffix == ".json":
        path = path.with_suffix("")
    manifest = load_manifest(path)
    loaded = load_from_manifest(manifest, path)
    recorded = manifest["model"]["checkpoint"]
    if loaded.checkpoint["sha256"] != recorded["sha256"]:
        ui.warn(f"checkpoint {recorded['path']} changed since {path.name} was made (sha256 differs)")
    return _reference_of(loaded)


def load_saved_reference(path) -> Reference:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"reference {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            saved = {key: archive[key] for key in archive.files}
        meta = json.loads(str(saved["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path} is not a saved skdeploy reference ({exc})") from None
    if meta.get("format") != REFERENCE_FORMAT or "logits" not in saved or "inputs_sha256" not in saved:
        raise UsageError(f"{path} is not a saved skdeploy reference (format {REFERENCE_FORMAT})")
    saved["meta"] = meta
    return Reference(f"saved {path.name} ({meta['model'].get('spec')})", "saved", meta["model"],
                     meta["preprocessing"], saved=saved)


def resolve_reference(reference=None, checkpoint=None, candidates=()) -> Reference:
    """--reference as given (ref.npz, an artifact or its manifest, a model name/spec), else the model
    the first candidate's manifest records, else the shipped demo model."""
    if reference is None:
        if checkpoint:
            raise UsageError("--checkpoint needs --reference MODEL")
        with_manifest = [c for c in candidates if manifest_path(c).exists()]
        if with_manifest:
            return reference_from_manifest(with_manifest[0])
        if candidates:
            raise UsageError(f"{candidates[0]} has no manifest to take the reference from; pass --reference")
        from .models import DEMO_MODEL

        return reference_from_model(DEMO_MODEL)
    text = str(reference)
    if text.endswith(".npz"):
        if checkpoint:
            raise UsageError("--checkpoint does not apply to a saved reference (.npz)")
        return load_saved_reference(text)
    if text.endswith(".json") or (Path(text).is_file() and manifest_path(text).exists()):
        return reference_from_manifest(text)
    if Path(text).is_file() and not text.endswith(".py"):
        raise UsageError(f"--reference {text}: give a model name with --checkpoint, a manifest, or a saved .npz")
    return reference_from_model(text, checkpoint=checkpoint)


def save_reference(path, logits, data: LoadedData, reference: Reference, force=False) -> Path:
    """FP32 logits, the inputs' sha256 and the labels, so validation can run later without PyTorch."""
    path = check_output_path(path, force)
    meta = {"format": REFERENCE_FORMAT, "skdeploy_version": __version__, "model": reference.model,
            "preprocessing": reference.preprocessing, "data": {"source": data.source, "count": len(data.inputs)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    arrays = {"logits": logits.astype(np.float32), "inputs_sha256": np.array(data.sha256()),
              "meta": np.array(json.dumps(meta))}
    if data.labels is not None:
        arrays["labels"] = data.labels
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return path


# ---- running ------------------------------------------------------------------------------------
def run_batched(runner, inputs: np.ndarray, batch: int, advance=None) -> np.ndarray:
    """The runner's first output over all inputs, in chunks its batch limits accept (a fixed-batch
    model gets its batch, the last chunk padded with copies of its last sample)."""
    low, high = runner.batch_limits()
    step = low if low == high else min(batch, high or batch)
    name = runner.output_names()[0]
    outputs = []
    for start in range(0, len(inputs), step):
        chunk = inputs[start:start + step]
        count = len(chunk)
        outputs.append(runner.infer(pad_batch(chunk, low))[name][:count])
        if advance:
            advance(count)
    return np.concatenate(outputs).astype(np.float32)


def candidate_runner(path, runner_options=None):
    from .runners import load_runner

    path = Path(path)
    if runner_kind(path) == "pytorch":
        raise UsageError(f"candidate {path} is neither an ONNX file (.onnx) nor an engine (.engine/.plan)")
    return load_runner(path, **(runner_options or {}))


def candidate_precision(manifest) -> str:
    if not manifest:
        return "unknown"
    if manifest.get("engine"):
        return manifest["engine"].get("precision", "unknown")
    calibration = last_stage(manifest, "calibrate")
    return (calibration or {}).get("precision") or (calibration or {}).get("settings", {}).get("precision") or "fp32"


def check_input_shape(runner, data: LoadedData, what: str):
    spec = runner.input_specs()[0]
    want = tuple(spec.shape[1:])
    got = tuple(data.inputs.shape[1:])
    if len(want) != len(got) or any(isinstance(w, int) and w != g for w, g in zip(want, got)):
        raise UsageError(f"{what} takes inputs {spec.shape_text} but the data is preprocessed to (N, "
                         f"{', '.join(map(str, got))}); check --data and the manifest's preprocessing")


def compare_candidate(reference_logits, logits, labels, settings: ValidateSettings, reference_top1=None) -> dict:
    """Metrics, checks against the thresholds and the verdict for one candidate."""
    metrics = logit_agreement(reference_logits, logits)
    predictions = prediction_agreement(reference_logits, logits)
    metrics.update(agreement=predictions["agreement"], top5_overlap=predictions["top5_overlap"])
    checks = [{"name": "top-1 agreement", "value": predictions["agreement"], "limit": settings.min_agreement,
               "rule": ">=", "passed": predictions["agreement"] >= settings.min_agreement}]
    if labels is not None:
        metrics["top1"] = accuracy(logits, labels, 1)
        metrics["top5"] = accuracy(logits, labels, 5)
        drop = (reference_top1 - metrics["top1"]) * 100.0
        metrics["top1_drop"] = drop
        checks.append({"name": "top-1 drop (points)", "value": drop, "limit": settings.max_top1_drop, "rule": "<=",
                       "passed": drop <= settings.max_top1_drop + 1e-9})
    reference_class = np.argmax(reference_logits, axis=1)
    candidate_class = np.argmax(logits, axis=1)
    examples = [{"index": int(i), "label": None if labels is None else int(labels[i]),
                 "reference": int(reference_class[i]), "candidate": int(candidate_class[i])}
                for i in predictions["disagreements"][:settings.max_examples]]
    return {"metrics": metrics, "per_class_agreement": predictions["per_class"],
            "disagreements": len(predictions["disagreements"]), "examples": examples,
            "error_histogram": error_histogram(reference_logits, logits), "checks": checks,
            "passed": all(check["passed"] for check in checks)}


def error_histogram(reference, candidate, bins: int = 24) -> dict:
    """Counts of |candidate - reference| per logit in log-spaced bins from 1e-7 up to the largest error."""
    errors = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)).ravel()
    top = max(float(errors.max()) if errors.size else 0.0, 1e-6)
    edges = np.logspace(-7, np.log10(top) + 1e-9, bins + 1)
    counts, _ = np.histogram(np.clip(errors, edges[0], edges[-1]), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def validate(candidates, reference=None, checkpoint=None, data=None, settings: ValidateSettings = None,
             save_reference_to=None, force=False, runner_options=None):
    """Validate every candidate against the FP32 reference; returns (result dict, LoadedData)."""
    settings = settings or ValidateSettings()
    settings.check()
    candidates = [str(c) for c in candidates]
    if not candidates and not save_reference_to:
        raise UsageError("nothing to validate: give --candidate (or --save-reference to store the FP32 outputs)")
    for path in candidates:
        if not Path(path).is_file():
            raise UsageError(f"candidate {path} does not exist")
    if save_reference_to:
        check_output_path(save_reference_to, force)
    ref = resolve_reference(reference, checkpoint, candidates)
    if ref.kind == "saved" and save_reference_to:
        raise UsageError("--save-reference needs a PyTorch reference, not a saved one")
    manifests = {c: load_manifest(c, required=False) for c in candidates}
    context = next((m for m in manifests.values() if m), None) or {"model": ref.model,
                                                                    "preprocessing": ref.preprocessing}
    preprocessing = Preprocessing.from_dict(context["preprocessing"])
    dataset = context["model"].get("dataset")
    limit = settings.limit
    if data is None and ref.kind == "saved":
        data = ref.saved["meta"]["data"]["source"].split(":", 1)[1]
        limit = limit or ref.saved["meta"]["data"]["count"]
    if data is None:
        if dataset != "fashion-mnist":
            raise UsageError(f"--data is required: the model ({context['model'].get('spec')}) has no default dataset")
        data = FASHION_MNIST_DIR
    samples = load_data(data, preprocessing, limit, class_names_for(dataset))
    if ref.kind == "saved":
        reference_logits = _saved_logits(ref, samples)
    else:
        from .runners.torch_runner import TorchRunner

        with TorchRunner(ref.loaded) as runner, ui.progress(len(samples.inputs), "FP32 PyTorch reference") as advance:
            check_input_shape(runner, samples, "the reference model")
            reference_logits = run_batched(runner, samples.inputs, settings.batch, advance)
    if save_reference_to:
        save_reference(save_reference_to, reference_logits, samples, ref, force)
    labels = samples.labels
    result = {"reference": {"source": ref.source, "kind": ref.kind, "model": ref.model.get("spec")},
              "data": {"source": samples.source, "count": int(len(samples.inputs)), "labels": labels is not None,
                       "inputs_sha256": samples.sha256(), "class_names": list(samples.class_names or [])},
              "thresholds": asdict(settings), "candidates": [], "saved_reference": str(save_reference_to or "") or None}
    reference_top1 = None
    if labels is not None:
        reference_top1 = accuracy(reference_logits, labels, 1)
        result["reference"].update(top1=reference_top1, top5=accuracy(reference_logits, labels, 5))
    for path in candidates:
        started = time.time()
        with candidate_runner(path, runner_options) as runner, \
                ui.progress(len(samples.inputs), f"{Path(path).name} ({runner.name})") as advance:
            check_input_shape(runner, samples, Path(path).name)
            logits = run_batched(runner, samples.inputs, settings.batch, advance)
            runner_name = runner.name
        if logits.shape != reference_logits.shape:
            raise SkdeployError(f"{Path(path).name} outputs {logits.shape[1:]} per sample but the reference outputs "
                                f"{reference_logits.shape[1:]}; is it the same model?")
        entry = {"path": path, "name": Path(path).name, "runner": runner_name,
                 "precision": candidate_precision(manifests[path]), "seconds": round(time.time() - started, 2)}
        entry.update(compare_candidate(reference_logits, logits, labels, settings, reference_top1))
        result["candidates"].append(entry)
    result["passed"] = all(c["passed"] for c in result["candidates"])
    return result, samples


def _saved_logits(ref: Reference, samples: LoadedData) -> np.ndarray:
    logits = ref.saved["logits"]
    if len(logits) != len(samples.inputs) or str(ref.saved["inputs_sha256"]) != samples.sha256():
        raise UsageError(f"the data ({samples.source}, {len(samples.inputs)} samples) is not what {ref.source} was "
                         f"saved from ({ref.saved['meta']['data']['source']}, {len(logits)} samples): input sha256 "
                         "differs; use the same --data, --limit and preprocessing")
    saved_labels = ref.saved.get("labels")
    if samples.labels is None and saved_labels is not None:
        samples.labels = saved_labels
    return logits.astype(np.float32)
