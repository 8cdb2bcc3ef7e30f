"""Is the deployed model still the model? Run the FP32 reference and every candidate on the same
preprocessed batches, compare, and give one verdict per candidate against thresholds.

    result = validate(["demo.onnx", "demo.int8.onnx"], settings=ValidateSettings(min_agreement=0.99))
    result.passed, [(c.name, c.metrics["agreement"]) for c in result.candidates]

The reference is a PyTorch model (a name plus checkpoint, or the one a candidate's manifest records)
or a saved reference (.npz: FP32 logits plus the inputs' sha256), which needs no PyTorch.
"""
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .compare import accuracy, error_histogram, logit_agreement, prediction_agreement
from .data import FASHION_MNIST_DIR, LoadedData, Preprocessing, class_names_for, load_data
from .errors import SkdeployError, UsageError
from .fileio import check_output_path
from .log import log
from .manifest import artifact_precision, last_stage, load_manifest
from .reference import resolve_reference, save_reference
from .runners import runner_kind


# Default logit-closeness limits per candidate precision (docs/validation.md: the demo's real FP32 / FP16 /
# INT8 candidates measure 132 / 71 / 31 dB SNR, cosine 1.0 / 1.0 / 0.9997); anything else gets INT8's.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}
MIN_SNR_DB = {"fp32": 60.0, "fp16": 40.0, "int8": 20.0}
# a labelled candidate this many points (plus three standard errors of the sample) below the top-1 its
# manifest records fails: the data, labels or preprocessing are not what the artifact was measured on
RECORDED_TOP1_TOLERANCE = 10.0


@dataclass
class ValidateSettings:
    max_top1_drop: float = 0.5  # accuracy points (percent) a candidate may lose vs FP32; needs labels
    min_agreement: float = 0.99  # fraction of samples whose top-1 equals FP32's
    batch: int = 256
    limit: int = None  # first N samples only
    max_examples: int = 24  # disagreeing samples listed per candidate
    min_cosine: float = None  # least mean cosine of the logit vectors; None: MIN_COSINE of the precision
    min_snr_db: float = None  # least logit SNR in dB; None: MIN_SNR_DB of the precision

    def __post_init__(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"`min_agreement` must be between 0 and 1, got {self.min_agreement:g}")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise UsageError(f"`min_cosine` must be between -1 and 1, got {self.min_cosine:g}")
        if self.min_snr_db is not None and math.isnan(self.min_snr_db):
            raise UsageError("`min_snr_db` must be a number of dB, got nan")
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

    def described_checks(self) -> list:
        """[(phrase, passed)] per check, as the report lists them."""
        return [(describe_check(check), check["passed"]) for check in self.checks]

    def failure_reasons(self) -> str:
        return ", ".join(describe_check(check) for check in self.failed_checks())

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


def describe_check(check: dict) -> str:
    """One check as a phrase for the failure line: `cosine 0.52 vs limit >= 0.99`."""
    value, limit = check["value"], check["limit"]
    if isinstance(value, str):
        return f"{check['name']} {value} vs {limit}"
    return f"{check['name']} {value:.4g} vs limit {check['rule']} {limit:g}"


def _check(name, value, limit, rule) -> dict:
    passed = value >= limit if rule == ">=" else value <= limit + 1e-9 if rule == "<=" else value == limit
    return {"name": name, "value": value, "limit": limit, "rule": rule, "passed": bool(passed)}


def compare_candidate(reference_logits, logits, labels, settings: ValidateSettings, reference_top1=None,
                      precision: str = "unknown") -> dict:
    """Metrics, checks against the thresholds (cosine and SNR limits by `precision` unless set) and the
    verdict for one candidate. Any NaN or Inf in its outputs fails it."""
    non_finite = int(np.size(logits) - np.count_nonzero(np.isfinite(logits)))
    metrics = logit_agreement(reference_logits, logits)
    predictions = prediction_agreement(reference_logits, logits)
    metrics.update(agreement=predictions["agreement"], top5_overlap=predictions["top5_overlap"])
    min_cosine = settings.min_cosine if settings.min_cosine is not None else \
        MIN_COSINE.get(precision, MIN_COSINE["int8"])
    min_snr_db = settings.min_snr_db if settings.min_snr_db is not None else \
        MIN_SNR_DB.get(precision, MIN_SNR_DB["int8"])
    checks = [_check("non-finite outputs", non_finite, 0, "=="),
              _check("top-1 agreement", predictions["agreement"], settings.min_agreement, ">="),
              _check("cosine", metrics["cosine_mean"], min_cosine, ">="),
              _check("SNR dB", metrics["snr_db"], min_snr_db, ">=")]
    if labels is not None:
        metrics["top1"] = accuracy(logits, labels, 1)
        metrics["top5"] = accuracy(logits, labels, 5)
        drop = (reference_top1 - metrics["top1"]) * 100.0
        metrics["top1_drop"] = drop
        checks.append(_check("top-1 drop (points)", drop, settings.max_top1_drop, "<="))
    reference_class = np.argmax(reference_logits, axis=1)
    candidate_class = np.argmax(logits, axis=1)
    examples = [{"index": int(i), "label": None if labels is None else int(labels[i]),
                 "reference": int(reference_class[i]), "candidate": int(candidate_class[i])}
                for i in predictions["disagreements"][:settings.max_examples]]
    return {"metrics": metrics, "per_class_agreement": predictions["per_class"],
            "disagreements": len(predictions["disagreements"]), "examples": examples,
            "error_histogram": error_histogram(reference_logits, logits), "checks": checks,
            "passed": all(check["passed"] for check in checks)}


def preprocessing_check(manifest, used: Preprocessing):
    """The candidate's manifest must record the preprocessing the reference was computed with: a
    tampered or foreign manifest would feed the deployed model other inputs. None without a record."""
    recorded = (manifest or {}).get("preprocessing")
    if not recorded:
        return None
    recorded, expected = Preprocessing.from_dict(recorded).to_dict(), used.to_dict()
    differing = [key for key in expected if recorded[key] != expected[key]]
    value = "; ".join(f"{key} {recorded[key]}" for key in differing) or "every field"
    limit = "the reference's " + ("; ".join(f"{key} {expected[key]}" for key in differing) or "fields")
    return {"name": "manifest preprocessing", "value": value, "limit": limit, "rule": "==", "passed": not differing}


def recorded_top1_check(manifest, top1: float, count: int):
    """Labelled top-1 far below the one the candidate's calibration measured (its manifest) fails; the
    allowance is RECORDED_TOP1_TOLERANCE points plus three standard errors of a `count`-sample top-1."""
    calibration = last_stage(manifest or {}, "calibrate") or {}
    recorded = (calibration.get("accuracy") or {}).get("top1")
    if recorded is None:
        return None
    spread = 3.0 * math.sqrt(recorded * (1.0 - recorded) / count) * 100.0
    below = (recorded - top1) * 100.0
    check = _check("top-1 below the recorded (points)", below, RECORDED_TOP1_TOLERANCE + spread, "<=")
    check["recorded"] = recorded
    return check


def check_finite_inputs(samples: LoadedData):
    """NaN or Inf in the inputs would make every comparison meaningless: refuse, naming the first sample."""
    finite = np.isfinite(samples.inputs).reshape(len(samples.inputs), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise UsageError(f"the data ({samples.source}) holds NaN or Inf in {len(bad)} sample"
                         f"{'s' if len(bad) != 1 else ''}, the first is sample {int(bad[0])}; inputs must be finite")


def check_finite_reference(logits: np.ndarray, source: str):
    if not np.isfinite(logits).all():
        bad = np.flatnonzero(~np.isfinite(logits).reshape(len(logits), -1).all(axis=1))
        raise SkdeployError(f"the FP32 reference ({source}) outputs NaN or Inf for {len(bad)} sample"
                            f"{'s' if len(bad) != 1 else ''}, the first is sample {int(bad[0])}; it cannot judge")


def validate(candidates, reference=None, checkpoint=None, data=None, settings: ValidateSettings = None,
             save_reference_to=None, force=False, runner_options=None, trust_model_code=False) -> ValidationResult:
    """Validate every candidate against the FP32 reference. A reference taken from a manifest that names
    model code (a .py file or module) is built only with `trust_model_code`."""
    settings = settings or ValidateSettings()
    candidates = _existing_candidates(candidates, save_reference_to, force)
    ref = resolve_reference(reference, checkpoint, candidates, trust_model_code)
    if ref.kind == "saved" and save_reference_to:
        raise UsageError("`save_reference_to` needs a PyTorch reference, not a saved one")
    manifests = {c: load_manifest(c, required=False) for c in candidates}
    used = _data_preprocessing(ref, manifests)
    samples = _samples(ref, manifests, data, settings.limit)
    check_finite_inputs(samples)
    reference_logits = _reference_logits(ref, samples, settings.batch)
    check_finite_reference(reference_logits, ref.source)
    if save_reference_to:
        save_reference(save_reference_to, reference_logits, samples, replace(ref, preprocessing=used.to_dict()),
                       force)
    labels = samples.labels
    result = ValidationResult(
        reference={"source": ref.source, "kind": ref.kind, "model": ref.model.spec},
        data={"source": samples.source, "count": int(len(samples.inputs)), "labels": labels is not None,
              "inputs_sha256": samples.sha256(), "class_names": list(samples.class_names or []),
              "preprocessing": used.to_dict()},
        thresholds=settings, candidates=[], saved_reference=str(save_reference_to or "") or None, samples=samples)
    reference_top1 = None
    if labels is not None:
        reference_top1 = accuracy(reference_logits, labels, 1)
        result.reference.update(top1=reference_top1, top5=accuracy(reference_logits, labels, 5))
    for path in candidates:
        started = time.time()
        logits, runner_name = _run_candidate(path, samples.inputs, settings.batch, runner_options)
        if logits.shape != reference_logits.shape:
            raise SkdeployError(f"{Path(path).name} outputs {logits.shape[1:]} per sample but the reference outputs "
                                f"{reference_logits.shape[1:]}; is it the same model?")
        precision = artifact_precision(manifests[path])
        judged = compare_candidate(reference_logits, logits, labels, settings, reference_top1, precision)
        judged["checks"] += _manifest_checks(manifests[path], used, judged["metrics"], len(logits))
        judged["passed"] = all(check["passed"] for check in judged["checks"])
        result.candidates.append(CandidateResult(path, Path(path).name, runner_name, precision,
                                                 round(time.time() - started, 2), **judged))
    return result


def _manifest_checks(manifest, used: Preprocessing, metrics: dict, count: int) -> list:
    """What the candidate's manifest promises: the reference's preprocessing, and (with labels) about the
    top-1 its calibration measured."""
    checks = [preprocessing_check(manifest, used)]
    if "top1" in metrics:
        checks.append(recorded_top1_check(manifest, metrics["top1"], count))
    return [check for check in checks if check is not None]


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


def _data_preprocessing(ref, manifests: dict) -> Preprocessing:
    """The reference's preprocessing, which its model or saved outputs fix; the first candidate's manifest's
    when the reference is user model code (whose preprocessing is a default guess)."""
    recorded = next((m["preprocessing"] for m in manifests.values() if m and m.get("preprocessing")), None)
    if recorded and not ref.preprocessing_known:
        return Preprocessing.from_dict(recorded)
    return Preprocessing.from_dict(ref.preprocessing)


def _samples(ref, manifests: dict, data, limit):
    """The data, prepared as the reference was (_data_preprocessing); by default the data a saved reference
    was made from, else the model's dataset (as the first candidate's manifest, else the reference, names it)."""
    context = next((m for m in manifests.values() if m), None) or {"model": ref.model.record()}
    preprocessing = _data_preprocessing(ref, manifests)
    dataset = context["model"].get("dataset")
    if data is None and ref.kind == "saved":
        data = ref.saved["meta"]["data"]["source"].split(":", 1)[1]
        limit = limit or ref.saved["meta"]["data"]["count"]
    if data is None:
        if dataset != "fashion-mnist":
            raise UsageError(f"`data` is required: the model ({context['model'].get('spec')}) has no default dataset")
        data = FASHION_MNIST_DIR
    return load_data(data, preprocessing, limit, class_names_for(dataset))


def _reference_logits(ref, samples, batch: int) -> np.ndarray:
    """FP32 logits: saved ones (whose labels the samples take when they have none), or the PyTorch model's."""
    if ref.kind == "saved":
        logits = ref.saved_logits(samples.inputs, samples.source)
        if samples.labels is None and ref.saved.get("labels") is not None:
            samples.labels = ref.saved["labels"]
        return logits
    with ref.runner() as runner, log.progress(len(samples.inputs), "FP32 PyTorch reference") as advance:
        check_input_shape(runner, samples.inputs, "the reference model")
        return runner.run_batched(samples.inputs, batch, advance)


def _run_candidate(path, inputs: np.ndarray, batch: int, runner_options=None) -> tuple:
    """(logits, runner name) of one candidate over `inputs`."""
    with candidate_runner(path, runner_options) as runner, \
            log.progress(len(inputs), f"{Path(path).name} ({runner.name})") as advance:
        check_input_shape(runner, inputs, Path(path).name)
        return runner.run_batched(inputs, batch, advance), runner.name
