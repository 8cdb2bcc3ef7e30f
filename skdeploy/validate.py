"""Is the deployed model still the model? Run the FP32 reference and every candidate on the same
preprocessed batches, compare, and give one verdict per candidate against thresholds.

    result = validate(["demo.onnx", "demo.int8.onnx"], settings=ValidateSettings(min_agreement=0.99))
    result.passed, [(c.name, c.metrics["agreement"]) for c in result.candidates]

The reference is a PyTorch model (a name plus checkpoint, or the one a candidate's manifest records)
or a saved reference (.npz: FP32 logits plus the inputs' sha256), which needs no PyTorch.
"""
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .compare import accuracy, error_histogram, logit_agreement, prediction_agreement
from .data import FASHION_MNIST_DIR, LoadedData, Preprocessing, class_names_for, load_data
from .errors import SkdeployError, UsageError
from .fileio import check_output_path
from .log import log
from .manifest import artifact_precision, load_manifest
from .reference import resolve_reference, save_reference
from .runners import runner_kind


@dataclass
class ValidateSettings:
    max_top1_drop: float = 0.5  # accuracy points (percent) a candidate may lose vs FP32; needs labels
    min_agreement: float = 0.99  # fraction of samples whose top-1 equals FP32's
    batch: int = 256
    limit: int = None  # first N samples only
    max_examples: int = 24  # disagreeing samples listed per candidate

    def __post_init__(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"`min_agreement` must be between 0 and 1, got {self.min_agreement:g}")
        if self.max_top1_drop < 0:
            raise UsageError(f"`max_top1_drop` must not be negative, got {self.max_top1_drop:g}")
        if self.batch < 1:
            raise UsageError(f"`batch` must be at least 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"`limit` must be at least 1, got {self.limit}")


@dataclass
class CandidateResult:
    """One candidate against the reference: metrics, threshold checks and the verdict."""

    path: str
    name: str
    runner: str
    precision: str
    seconds: float
    metrics: dict  # agreement, top5_overlap, logit errors, cosine, SNR; top1, top5, top1_drop with labels
    per_class_agreement: list  # per FP32-predicted class, None for a class FP32 never predicts
    disagreements: int  # samples whose top-1 differs from the reference's
    examples: list  # [{index, label, reference, candidate}] of the first disagreements
    error_histogram: dict
    checks: list  # [{name, value, limit, rule, passed}]
    passed: bool

    def failed_checks(self) -> list:
        return [check for check in self.checks if not check["passed"]]

    def record(self) -> dict:
        return asdict(self)


@dataclass
class ValidationResult:
    """Every candidate's verdict against one reference on one data set; `record()` is the --json form."""

    reference: dict  # {source, kind, model}; top1 and top5 with labels
    data: dict  # {source, count, labels, inputs_sha256, class_names}
    thresholds: ValidateSettings
    candidates: list  # CandidateResult per candidate, in the order given
    saved_reference: str  # where --save-reference wrote the FP32 outputs, else None
    samples: LoadedData = field(repr=False, compare=False)  # the preprocessed data (the HTML report shows it)

    @property
    def passed(self) -> bool:
        return all(candidate.passed for candidate in self.candidates)

    def record(self) -> dict:
        return {"reference": self.reference, "data": self.data, "thresholds": asdict(self.thresholds),
                "candidates": [candidate.record() for candidate in self.candidates],
                "saved_reference": self.saved_reference, "passed": self.passed}


# ---- running ------------------------------------------------------------------------------------
def candidate_runner(path, runner_options=None):
    from .runners import load_runner

    path = Path(path)
    if runner_kind(path) == "pytorch":
        raise UsageError(f"candidate {path} is neither an ONNX file (.onnx) nor an engine (.engine/.plan)")
    return load_runner(path, **(runner_options or {}))


def check_input_shape(runner, inputs: np.ndarray, what: str):
    spec = runner.input_specs()[0]
    want = tuple(spec.shape[1:])
    got = tuple(inputs.shape[1:])
    if len(want) != len(got) or any(isinstance(w, int) and w != g for w, g in zip(want, got)):
        raise UsageError(f"{what} takes inputs {spec.shape_text} but the data is preprocessed to (N, "
                         f"{', '.join(map(str, got))}); check `data` and the manifest's preprocessing")


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


def validate(candidates, reference=None, checkpoint=None, data=None, settings: ValidateSettings = None,
             save_reference_to=None, force=False, runner_options=None) -> ValidationResult:
    """Validate every candidate against the FP32 reference."""
    settings = settings or ValidateSettings()
    candidates = _existing_candidates(candidates, save_reference_to, force)
    ref = resolve_reference(reference, checkpoint, candidates)
    if ref.kind == "saved" and save_reference_to:
        raise UsageError("`save_reference_to` needs a PyTorch reference, not a saved one")
    manifests = {c: load_manifest(c, required=False) for c in candidates}
    samples = _samples(ref, manifests, data, settings.limit)
    reference_logits = _reference_logits(ref, samples, settings.batch)
    if save_reference_to:
        save_reference(save_reference_to, reference_logits, samples, ref, force)
    labels = samples.labels
    result = ValidationResult(
        reference={"source": ref.source, "kind": ref.kind, "model": ref.model.spec},
        data={"source": samples.source, "count": int(len(samples.inputs)), "labels": labels is not None,
              "inputs_sha256": samples.sha256(), "class_names": list(samples.class_names or [])},
        thresholds=settings, candidates=[], saved_reference=str(save_reference_to or "") or None, samples=samples)
    reference_top1 = None
    if labels is not None:
        reference_top1 = accuracy(reference_logits, labels, 1)
        result.reference.update(top1=reference_top1, top5=accuracy(reference_logits, labels, 5))
    for path in candidates:
        started = time.time()
        inputs = samples.inputs
        if _prepared_otherwise(manifests[path], samples):  # e.g. raw pixels beside a normalized candidate
            inputs = _samples(ref, {path: manifests[path]}, data, settings.limit).inputs
        logits, runner_name = _run_candidate(path, inputs, settings.batch, runner_options)
        if logits.shape != reference_logits.shape:
            raise SkdeployError(f"{Path(path).name} outputs {logits.shape[1:]} per sample but the reference outputs "
                                f"{reference_logits.shape[1:]}; is it the same model?")
        result.candidates.append(CandidateResult(
            path, Path(path).name, runner_name, artifact_precision(manifests[path]), round(time.time() - started, 2),
            **compare_candidate(reference_logits, logits, labels, settings, reference_top1)))
    return result


def _existing_candidates(candidates, save_reference_to, force) -> list:
    """The candidate paths as text, each an existing file; at least one unless only saving the reference."""
    candidates = [str(c) for c in candidates]
    if not candidates and not save_reference_to:
        raise UsageError("nothing to validate: give `candidates` (or `save_reference_to` to store the FP32 outputs)")
    for path in candidates:
        if not Path(path).is_file():
            raise UsageError(f"candidate {path} does not exist")
    if save_reference_to:
        check_output_path(save_reference_to, force)
    return candidates


def _samples(ref, manifests: dict, data, limit):
    """The data, prepared as the first candidate's manifest (else the reference) says; by default the data
    a saved reference was made from, else the model's dataset."""
    context = next((m for m in manifests.values() if m), None) or {"model": ref.model.record(),
                                                                    "preprocessing": ref.preprocessing}
    preprocessing = Preprocessing.from_dict(context["preprocessing"])
    dataset = context["model"].get("dataset")
    if data is None and ref.kind == "saved":
        data = ref.saved["meta"]["data"]["source"].split(":", 1)[1]
        limit = limit or ref.saved["meta"]["data"]["count"]
    if data is None:
        if dataset != "fashion-mnist":
            raise UsageError(f"`data` is required: the model ({context['model'].get('spec')}) has no default dataset")
        data = FASHION_MNIST_DIR
    return load_data(data, preprocessing, limit, class_names_for(dataset))


def _prepared_otherwise(manifest, samples) -> bool:
    """Whether the candidate takes its inputs in another form (raw or normalized, layout) than `samples`."""
    recorded = (manifest or {}).get("preprocessing")
    return bool(recorded) and samples.preprocessing is not None and \
        Preprocessing.from_dict(recorded) != samples.preprocessing


def _reference_logits(ref, samples, batch: int) -> np.ndarray:
    """FP32 logits: saved ones (whose labels the samples take when they have none), or the PyTorch model's."""
    if ref.kind == "saved":
        logits = ref.saved_logits(samples.inputs, samples.source)
        if samples.labels is None and ref.saved.get("labels") is not None:
            samples.labels = ref.saved["labels"]
        return logits
    inputs = samples.reference_inputs()
    with ref.runner() as runner, log.progress(len(inputs), "FP32 PyTorch reference") as advance:
        check_input_shape(runner, inputs, "the reference model")
        return runner.run_batched(inputs, batch, advance)


def _run_candidate(path, inputs: np.ndarray, batch: int, runner_options=None) -> tuple:
    """(logits, runner name) of one candidate over `inputs`."""
    with candidate_runner(path, runner_options) as runner, \
            log.progress(len(inputs), f"{Path(path).name} ({runner.name})") as advance:
        check_input_shape(runner, inputs, Path(path).name)
        return runner.run_batched(inputs, batch, advance), runner.name
