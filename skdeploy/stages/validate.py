"""Is the deployed model still the model? Run the FP32 reference and every candidate on the same
preprocessed batches, compare, and give one verdict per candidate against thresholds.

The data streams: each batch is decoded once (a thread pool over files), hashed, and run through the
reference and every candidate before the next, and only running metrics plus the first disagreeing
samples are kept, so memory does not grow with the data set (50,000 ImageNet images fit in 2 GB).

    result = validate(["demo.onnx", "demo.int8.onnx"], settings=ValidateSettings(min_agreement=0.99))
    result.passed, [(c.name, c.metrics["agreement"]) for c in result.candidates]

The reference is a PyTorch model (a name plus checkpoint, or the one a candidate's manifest records), a
foreign FP32 ONNX run in onnxruntime, or a saved reference (.npz: FP32 logits plus the inputs' sha256),
which needs no PyTorch.
"""
import math
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..compare import Check, RunningComparison, TopKHits
from ..data import (
    FASHION_MNIST_DIR,
    MAX_BATCH,
    DataOrigin,
    InputsDigest,
    Preprocessing,
    StreamedData,
    check_label_range,
    class_names_for,
    open_data,
)
from ..data.preprocessing import FORM_FIELDS
from ..errors import SkdeployError, UsageError, check_field_types, require_finite
from ..fileio import PathLike, check_output_path, output_transaction
from ..log import log
from ..manifest import artifact_precision, last_stage, load_manifest
from ..reference import resolve_reference, save_reference
from ..runners import Runner, runner_kind

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
    limit: int | None = None  # first N samples only
    max_examples: int = 24  # disagreeing samples listed per candidate
    min_cosine: float | None = None  # least mean cosine of the logit vectors; None: MIN_COSINE of the precision
    min_snr_db: float | None = None  # least logit SNR in dB; None: MIN_SNR_DB of the precision

    def __post_init__(self):
        check_field_types(self)
        require_finite(max_top1_drop=self.max_top1_drop, min_agreement=self.min_agreement,
                       min_cosine=self.min_cosine, min_snr_db=self.min_snr_db)
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"`min_agreement` must be between 0 and 1, got {self.min_agreement:g}")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise UsageError(f"`min_cosine` must be between -1 and 1, got {self.min_cosine:g}")
        if self.max_top1_drop < 0:
            raise UsageError(f"`max_top1_drop` must not be negative, got {self.max_top1_drop:g}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise UsageError(f"`batch` must be 1..{MAX_BATCH}, got {self.batch}")
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
    checks: list  # [compare.Check]
    passed: bool

    def failed_checks(self) -> list:
        return [check for check in self.checks if not check["passed"]]

    def described_checks(self) -> list:
        """[(phrase, passed)] per check, as the report lists them."""
        return [(Check(check).describe(), check["passed"]) for check in self.checks]

    def failure_reasons(self) -> str:
        return ", ".join(Check(check).describe() for check in self.failed_checks())

    def record(self) -> dict:
        return asdict(self)


@dataclass
class ValidationResult:
    """Every candidate's verdict against one reference on one data set; `record()` is the --json form."""

    reference: dict  # {source, kind, model}; top1 and top5 with labels
    data: dict  # {source, count, labels, inputs_sha256, class_names}
    thresholds: ValidateSettings
    candidates: list  # CandidateResult per candidate, in the order given
    saved_reference: str | None  # where --save-reference wrote the FP32 outputs, else None
    samples: StreamedData = field(repr=False, compare=False)  # the data it ran on (the HTML report shows it)

    @property
    def passed(self) -> bool:
        return all(candidate.passed for candidate in self.candidates)

    def record(self) -> dict:
        return {"reference": self.reference, "data": self.data, "thresholds": asdict(self.thresholds),
                "candidates": [candidate.record() for candidate in self.candidates],
                "saved_reference": self.saved_reference, "passed": self.passed}


# ---- running ------------------------------------------------------------------------------------
def candidate_runner(path: PathLike, runner_options: dict | None = None) -> Runner:
    from ..runners import load_runner

    path = Path(path)
    if runner_kind(path) == "pytorch":
        raise UsageError(f"candidate {path} is neither an ONNX file (.onnx) nor an engine (.engine/.plan)")
    return load_runner(path, **(runner_options or {}))


def check_input_shape(runner: Runner, inputs: np.ndarray, what: str) -> None:
    spec = runner.input_specs()[0]
    want = tuple(spec.shape[1:])
    got = tuple(inputs.shape[1:])
    if len(want) != len(got) or any(isinstance(w, int) and w != g for w, g in zip(want, got, strict=True)):
        raise UsageError(f"{what} takes inputs {spec.shape_text} but the data is preprocessed to (N, "
                         f"{', '.join(map(str, got))}); check `data` and the manifest's preprocessing")


def compare_candidate(reference_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray | None,
                      settings: ValidateSettings, reference_top1: float | None = None,
                      precision: str = "unknown") -> dict:
    """Metrics, checks against the thresholds and the verdict for one candidate's whole logits."""
    comparison = RunningComparison(settings.max_examples)
    comparison.add(reference_logits, logits, labels)
    return judge(comparison, settings, reference_top1, precision)


def judge(comparison: RunningComparison, settings: ValidateSettings, reference_top1: float | None = None,
          precision: str = "unknown") -> dict:
    """Metrics, checks against the thresholds (cosine and SNR limits by `precision` unless set) and the
    verdict from a candidate's running comparison (top-1 and its drop when the data has labels). Any NaN
    or Inf in its outputs fails it."""
    metrics = comparison.metrics()
    min_cosine = settings.min_cosine if settings.min_cosine is not None else \
        MIN_COSINE.get(precision, MIN_COSINE["int8"])
    min_snr_db = settings.min_snr_db if settings.min_snr_db is not None else \
        MIN_SNR_DB.get(precision, MIN_SNR_DB["int8"])
    checks = [Check.of("non-finite outputs", comparison.non_finite, 0, "=="),
              Check.of("top-1 agreement", metrics["agreement"], settings.min_agreement, ">="),
              Check.of("cosine", metrics["cosine_mean"], min_cosine, ">="),
              Check.of("SNR dB", metrics["snr_db"], min_snr_db, ">=")]
    if "top1" in metrics:
        drop = (reference_top1 - metrics["top1"]) * 100.0
        metrics["top1_drop"] = drop
        checks.append(Check.of("top-1 drop (points)", drop, settings.max_top1_drop, "<="))
    return {"metrics": metrics, "per_class_agreement": comparison.per_class(),
            "disagreements": comparison.disagreements, "examples": comparison.examples,
            "error_histogram": comparison.histogram.result(), "checks": checks,
            "passed": all(check["passed"] for check in checks)}


def preprocessing_check(manifest: dict | None, used: Preprocessing) -> Check | None:
    """The candidate's manifest must record the preprocessing the reference was computed with (in any
    form: raw pixels or normalized, either layout): a tampered or foreign manifest would feed the deployed
    model other inputs. None without a record."""
    recorded = (manifest or {}).get("preprocessing")
    if not recorded:
        return None
    recorded, expected = Preprocessing.from_dict(recorded).to_dict(), used.to_dict()
    differing = [key for key in expected if recorded[key] != expected[key] and key not in FORM_FIELDS]
    value = "; ".join(f"{key} {recorded[key]}" for key in differing) or "every field"
    limit = "the reference's " + ("; ".join(f"{key} {expected[key]}" for key in differing) or "fields")
    return Check.of("manifest preprocessing", value, limit, "==", passed=not differing)


def recorded_top1_check(manifest: dict | None, top1: float, count: int) -> Check | None:
    """Labelled top-1 far below the one the candidate's calibration measured (its manifest) fails; the
    allowance is RECORDED_TOP1_TOLERANCE points plus three standard errors of a `count`-sample top-1."""
    calibration = last_stage(manifest or {}, "calibrate") or {}
    recorded = (calibration.get("accuracy") or {}).get("top1")
    if recorded is None:
        return None
    spread = 3.0 * math.sqrt(recorded * (1.0 - recorded) / count) * 100.0
    below = (recorded - top1) * 100.0
    check = Check.of("top-1 below the recorded (points)", below, RECORDED_TOP1_TOLERANCE + spread, "<=")
    check["recorded"] = recorded
    return check


def check_finite_inputs(inputs: np.ndarray, start: int, origin: str) -> None:
    """NaN or Inf in the inputs would make every comparison meaningless: refuse, naming the first sample
    (`start` is the batch's first sample number)."""
    finite = np.isfinite(inputs).reshape(len(inputs), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise UsageError(f"the data ({origin}) holds NaN or Inf in sample {start + int(bad[0])}"
                         f"{f' and {len(bad) - 1} more of its batch' if len(bad) > 1 else ''}; inputs must be finite")


def check_finite_reference(logits: np.ndarray, start: int, source: str) -> None:
    if not np.isfinite(logits).all():
        bad = np.flatnonzero(~np.isfinite(logits).reshape(len(logits), -1).all(axis=1))
        raise SkdeployError(f"the FP32 reference ({source}) outputs NaN or Inf for sample {start + int(bad[0])}; "
                            "it cannot judge")


def validate(candidates: Sequence[PathLike], reference: PathLike | None = None, checkpoint: PathLike | None = None,
             data: PathLike | None = None, settings: ValidateSettings | None = None,
             save_reference_to: PathLike | None = None, force: bool = False, runner_options: dict | None = None,
             trust_model_code: bool = False) -> ValidationResult:
    """Validate every candidate against the FP32 reference. A reference taken from a manifest that names
    model code (a .py file or module) is built only with `trust_model_code`."""
    settings = settings or ValidateSettings()
    candidates = list(candidates or ())
    if not save_reference_to:
        return _validate(candidates, reference, checkpoint, data, settings, None, force, runner_options,
                         trust_model_code)
    with output_transaction([save_reference_to], force, inputs=[*candidates, reference, checkpoint, data]):
        return _validate(candidates, reference, checkpoint, data, settings, save_reference_to, force, runner_options,
                         trust_model_code)


def _validate(candidates, reference, checkpoint, data, settings, save_reference_to, force, runner_options,
              trust_model_code) -> ValidationResult:
    candidates = _existing_candidates(candidates, save_reference_to, force)
    ref = resolve_reference(reference, checkpoint, candidates, trust_model_code)
    if ref.kind == "saved" and save_reference_to:
        raise UsageError("`save_reference_to` needs a PyTorch reference, not a saved one")
    manifests = {c: load_manifest(c, required=False) for c in candidates}
    used = _data_preprocessing(ref, manifests)
    samples = _samples(ref, manifests, data, settings.limit)
    if not len(samples):
        raise UsageError(f"no samples to validate on in {samples.origin.path}")
    if ref.kind == "saved":
        ref.check_saved_data(len(samples), None, samples.origin)
        if samples.labels is None and ref.saved.get("labels") is not None:
            samples.labels = ref.saved["labels"]
    labels = samples.labels
    streamed = _stream(ref, samples, candidates, manifests, settings, runner_options,
                       keep_reference=bool(save_reference_to))
    if ref.kind == "saved":
        ref.check_saved_data(len(samples), streamed.sha256, samples.origin)
    data_record = {"source": samples.origin, "count": len(samples), "labels": labels is not None,
                   "inputs_sha256": streamed.sha256, "class_names": list(samples.class_names or []),
                   "preprocessing": used.to_dict()}
    if save_reference_to:
        save_reference(save_reference_to, streamed.reference_logits, labels, data_record,
                       replace(ref, preprocessing=used.to_dict()), force)
    result = ValidationResult(
        reference={"source": ref.source, "kind": ref.kind, "model": ref.model.spec}, data=data_record,
        thresholds=settings, candidates=[], saved_reference=str(save_reference_to or "") or None, samples=samples)
    reference_top1 = None
    if labels is not None:
        reference_top1, reference_top5 = streamed.reference_hits.accuracy()
        result.reference.update(top1=reference_top1, top5=reference_top5)
    for path, runner_name, comparison, spent in zip(candidates, streamed.runner_names, streamed.comparisons,
                                                    streamed.seconds, strict=True):
        precision = artifact_precision(manifests[path])
        judged = judge(comparison, settings, reference_top1, precision)
        judged["checks"] += _manifest_checks(manifests[path], used, judged["metrics"], len(samples))
        judged["passed"] = all(check["passed"] for check in judged["checks"])
        result.candidates.append(CandidateResult(path, Path(path).name, runner_name, precision, round(spent, 2),
                                                 **judged))
    return result


def _manifest_checks(manifest, used: Preprocessing, metrics: dict, count: int) -> list:
    """What the candidate's manifest promises: the reference's preprocessing, and (with labels) about the
    top-1 its calibration measured."""
    checks = [preprocessing_check(manifest, used)]
    if "top1" in metrics:
        checks.append(recorded_top1_check(manifest, metrics["top1"], count))
    return [check for check in checks if check is not None]


@dataclass
class _Streamed:
    """What one pass over the data leaves: the inputs' sha256 and running figures, never the inputs."""

    sha256: str | None  # None until the pass is over
    reference_hits: TopKHits  # the reference's top-1/top-5 hits when the data has labels
    comparisons: list  # RunningComparison per candidate
    runner_names: list
    seconds: list  # time each candidate spent running
    reference_logits: np.ndarray | None  # all FP32 logits, only when they are to be saved


def _stream(ref, samples: StreamedData, candidates, manifests: dict, settings: ValidateSettings, runner_options,
            keep_reference: bool) -> _Streamed:
    """Decode each batch once, then run it through the reference and every candidate before the next."""
    labels = samples.labels
    streamed = _Streamed(None, TopKHits(), [RunningComparison(settings.max_examples) for _ in candidates], [],
                         [0.0] * len(candidates), None)
    digest, kept = InputsDigest(), []
    plural = "s" if len(candidates) != 1 else ""
    with ExitStack() as opened:
        reference_runner = opened.enter_context(ref.runner()) if ref.kind != "saved" else None
        runners = [opened.enter_context(candidate_runner(path, runner_options)) for path in candidates]
        streamed.runner_names = [runner.name for runner in runners]
        progress = opened.enter_context(
            log.progress(len(samples), f"validating {len(candidates)} candidate{plural} on {len(samples)} samples"))
        forms = [_input_form(manifests[path], samples) for path in candidates]
        for start, inputs in samples.batches(settings.batch):
            check_finite_inputs(inputs, start, samples.origin)
            reference_inputs = samples.reference_inputs(inputs)
            digest.update(reference_inputs)
            batch_labels = None if labels is None else labels[start:start + len(inputs)]
            reference_logits = _reference_batch(ref, reference_runner, start, reference_inputs, settings.batch)
            check_finite_reference(reference_logits, start, ref.source)
            if start == 0:  # the model's own number of classes, when no manifest gave it
                check_label_range(labels, reference_logits.shape[1], samples.origin.split(":", 1)[1])
            if keep_reference:
                kept.append(reference_logits)
            if batch_labels is not None:
                streamed.reference_hits.add(reference_logits, batch_labels)
            for number, (path, runner, form) in enumerate(zip(candidates, runners, forms, strict=True)):
                started = time.time()
                candidate_inputs = samples.inputs_for(inputs, form)  # e.g. raw pixels for a raw-input graph
                if start == 0:
                    check_input_shape(runner, candidate_inputs, Path(path).name)
                logits = runner.run_batched(candidate_inputs, settings.batch)
                streamed.seconds[number] += time.time() - started
                if logits.shape != reference_logits.shape:
                    raise SkdeployError(f"{Path(path).name} outputs {logits.shape[1:]} per sample but the reference "
                                        f"outputs {reference_logits.shape[1:]}; is it the same model?")
                streamed.comparisons[number].add(reference_logits, logits, batch_labels)
            progress(len(inputs))
    streamed.sha256 = digest.hexdigest()
    streamed.reference_logits = np.concatenate(kept) if keep_reference else None
    return streamed


def _input_form(manifest, samples: StreamedData):
    """The form (raw or normalized, layout, dtype) in which a candidate takes its inputs: its manifest's."""
    recorded = (manifest or {}).get("preprocessing")
    return Preprocessing.from_dict(recorded) if recorded else samples.preprocessing


def _reference_batch(ref, runner, start: int, inputs: np.ndarray, batch: int) -> np.ndarray:
    """FP32 logits for the batch starting at sample `start`: the saved ones, or the reference model's."""
    if runner is None:
        return ref.saved["logits"][start:start + len(inputs)].astype(np.float32)
    if start == 0:
        check_input_shape(runner, inputs, "the reference model")
    return runner.run_batched(inputs, batch)


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
    if not ref.preprocessing:
        raise UsageError(f"the reference {ref.source} records no preprocessing and no candidate's manifest does; "
                         "record it first (deploy or calibrate with `mean` and `std`)")
    return Preprocessing.from_dict(ref.preprocessing)


def _samples(ref, manifests: dict, data, limit):
    """The data, prepared as the reference was (_data_preprocessing); by default the data a saved reference
    was made from, else the model's dataset (as the first candidate's manifest, else the reference, names it)."""
    context = next((m for m in manifests.values() if m), None) or {"model": ref.model.record()}
    preprocessing = _data_preprocessing(ref, manifests)
    dataset = context["model"].get("dataset")
    if ref.kind == "saved":  # the saved samples: the first `count` of the data, wherever it is read from
        data = data or DataOrigin.parse(ref.saved["meta"]["data"]["source"]).path
        limit = limit or ref.saved["meta"]["data"]["count"]
    if data is None:
        if dataset != "fashion-mnist":
            raise UsageError(f"`data` is required: the model ({context['model'].get('spec')}) has no default dataset")
        data = FASHION_MNIST_DIR
    classes = ref.model.num_classes or context["model"].get("num_classes")
    return open_data(data, preprocessing, limit, class_names_for(dataset), classes)

