"""Numeric comparison of two output arrays, and the threshold checks on the figures; it knows nothing of
where they came from."""
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike


class Check(dict):
    """One threshold check: {name, value, limit, rule, passed} plus any extra fields. A dict, so results and
    manifests hold it as JSON and a check read back from one is described the same way: `Check(entry)`."""

    @classmethod
    def of(cls, name: str, value, limit, rule: str, passed: bool | None = None) -> "Check":
        """The check of `value` against `limit` under `rule` (">=", "<=" or "==") unless `passed` is given
        (a check whose value is text: it says itself whether it holds)."""
        if passed is None:
            passed = value >= limit if rule == ">=" else value <= limit + 1e-9 if rule == "<=" else value == limit
        return cls(name=name, value=value, limit=limit, rule=rule, passed=bool(passed))

    def describe(self) -> str:
        """The check as a phrase for a failure line: `cosine 0.52 vs limit >= 0.99`; a check whose value is
        text reads `manifest preprocessing std [0.5] vs the reference's std [1.0]`."""
        value, limit = self["value"], self["limit"]
        if isinstance(value, str) or isinstance(limit, str):
            return f"{self['name']} {value} vs {limit}"
        return f"{self['name']} {value:.4g} vs limit {self['rule']} {limit:g}"


def compare_outputs(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """max/mean absolute error and relative error = max abs error / max |reference|."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    diff = np.abs(reference - candidate)
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    return {"max_abs": max_abs, "mean_abs": float(diff.mean()) if diff.size else 0.0,
            "max_rel": max_abs / scale if scale > 0 else max_abs}


def merge_comparisons(results: Iterable[dict]) -> dict:
    """Worst case over several comparisons (several batches or batch sizes)."""
    results = list(results)
    return {"max_abs": max(r["max_abs"] for r in results),
            "mean_abs": float(np.mean([r["mean_abs"] for r in results])),
            "max_rel": max(r["max_rel"] for r in results)}


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits per row, best first (k clipped to the class count); ties go to
    the lower index, as np.argmax does, so top-1 here is the class the report shows."""
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def logit_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How close two (N, classes) logit arrays are: absolute error, cosine similarity, SNR in dB.
    NaN or Inf in either gives NaN metrics, quietly (validate fails such a candidate on its own check)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _logit_agreement(reference, candidate)


def _logit_agreement(reference, candidate) -> dict:
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    base = compare_outputs(reference, candidate)
    noise = float(np.sum((reference - candidate) ** 2))
    signal = float(np.sum(reference ** 2))
    cosine = row_cosines(reference, candidate)
    snr = snr_db(signal, noise)
    return {"max_abs": base["max_abs"], "mean_abs": base["mean_abs"], "max_rel": base["max_rel"],
            "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()), "snr_db": snr}


def snr_db(signal: float, noise: float) -> float:
    """10 log10(signal power / noise power): inf without noise, -inf without signal."""
    if noise == 0:
        return float("inf")
    return float(10.0 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def cosines_from_sums(dot: ArrayLike, reference_square: ArrayLike, candidate_square: ArrayLike) -> np.ndarray:
    """Cosine similarity from per-row sums (x.y, x.x, y.y), with row_cosines' rule for zero vectors."""
    dot, norms = np.asarray(dot, np.float64), np.sqrt(np.asarray(reference_square, np.float64)
                                                      * np.asarray(candidate_square, np.float64))
    both_zero = (np.asarray(reference_square) == 0) & (np.asarray(candidate_square) == 0)
    return np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair (float64 arrays)."""
    # a zero vector has no direction: two of them are identical (1), one alone shares nothing (0)
    return cosines_from_sums(np.sum(reference * candidate, axis=1), np.sum(reference ** 2, axis=1),
                             np.sum(candidate ** 2, axis=1))


def prediction_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 5) -> dict:
    """Top-1 agreement, mean top-k overlap, and top-1 agreement per reference-predicted class."""
    ref_top, cand_top = top_k(reference, k), top_k(candidate, k)
    same = ref_top[:, 0] == cand_top[:, 0]
    overlap = [len(set(a) & set(b)) / ref_top.shape[1] for a, b in zip(ref_top, cand_top, strict=True)]
    classes = reference.shape[1]
    per_class = [float(same[ref_top[:, 0] == c].mean()) if np.any(ref_top[:, 0] == c) else None
                 for c in range(classes)]
    return {"agreement": float(same.mean()), "top5_overlap": float(np.mean(overlap)), "per_class": per_class,
            "disagreements": np.flatnonzero(~same).tolist()}


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the k best logits."""
    return float(np.mean(np.any(top_k(logits, k) == np.asarray(labels)[:, None], axis=1)))


def error_histogram(reference: np.ndarray, candidate: np.ndarray, bins: int = 24) -> dict:
    """Counts of |candidate - reference| per logit in log-spaced bins from 1e-7 up to the largest error;
    NaN and Inf errors have no bin and are left out (the verdict counts them)."""
    errors = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)).ravel()
    errors = errors[np.isfinite(errors)]
    top = max(float(errors.max()) if errors.size else 0.0, 1e-6)
    edges = np.logspace(-7, np.log10(top) + 1e-9, bins + 1)
    counts, _ = np.histogram(np.clip(errors, edges[0], edges[-1]), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


# ---- the same numbers batch by batch, in memory that does not grow with the data --------------------
FINE_BINS_PER_DECADE = 100
FINE_EXPONENTS = (-7, 39)  # 1e-7 up to past float32's largest value


class ErrorHistogram:
    """|candidate - reference| counted batch by batch in fixed bins of 1/100 decade from 1e-7, regrouped at
    the end into error_histogram's log-spaced bins up to the largest error. Each fine bin goes where its
    centre falls, so an error within 1/100 decade (2.3%) of a reported edge may be counted on its other side."""

    def __init__(self) -> None:
        low, high = FINE_EXPONENTS
        self.fine = np.zeros((high - low) * FINE_BINS_PER_DECADE, np.int64)
        self.largest = 0.0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        errors = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)).ravel()
        errors = errors[np.isfinite(errors)]
        if not errors.size:
            return
        self.largest = max(self.largest, float(errors.max()))
        low, high = FINE_EXPONENTS
        exponents = np.log10(np.clip(errors, 10.0 ** low, 10.0 ** high))
        positions = np.minimum(((exponents - low) * FINE_BINS_PER_DECADE).astype(np.int64), len(self.fine) - 1)
        self.fine += np.bincount(positions, minlength=len(self.fine))

    def result(self, bins: int = 24) -> dict:
        top = max(self.largest, 1e-6)
        edges = np.logspace(-7, np.log10(top) + 1e-9, bins + 1)
        centres = 10.0 ** (FINE_EXPONENTS[0] + (np.arange(len(self.fine)) + 0.5) / FINE_BINS_PER_DECADE)
        positions = np.clip(np.searchsorted(edges, centres, side="right") - 1, 0, bins - 1)
        counts = np.bincount(positions, weights=self.fine, minlength=bins)
        return {"edges": edges.tolist(), "counts": [int(c) for c in counts]}


class TopKHits:
    """How many rows have their label among the top 1 and top k logits, batch by batch."""

    def __init__(self, k: int = 5) -> None:
        self.k, self.rows, self.top1, self.topk = k, 0, 0, 0

    def add(self, logits: np.ndarray, labels: np.ndarray) -> None:
        hits = top_k(logits, self.k) == np.asarray(labels)[:, None]
        self.rows += len(logits)
        self.top1 += int(hits[:, 0].sum())
        self.topk += int(hits.any(axis=1).sum())

    def accuracy(self) -> tuple:
        """(top-1, top-k) as fractions, what accuracy(logits, labels, 1 and k) gives over every row."""
        return self.top1 / self.rows, self.topk / self.rows


class RunningComparison:
    """A candidate's (N, classes) logits against the reference's, fed batch by batch: the sums behind
    logit_agreement, prediction_agreement, accuracy and the error histogram, plus the first `keep`
    samples whose top-1 differs, so a 50,000-sample check holds no logits."""

    def __init__(self, keep: int, k: int = 5) -> None:
        self.keep, self.k = keep, k
        self.rows = self.logits = self.same = self.non_finite = 0
        self.abs_sum = self.max_abs = self.scale = self.noise = self.signal = 0.0
        self.cosine_sum, self.cosine_min = 0.0, np.inf
        self.overlap_sum = 0.0
        # per reference-predicted class: rows, and rows whose top-1 agrees (sized by the first batch)
        self.class_rows = self.class_same = np.zeros(0, np.int64)
        self.disagreements = 0
        self.examples: list[dict] = []  # the first `keep` disagreeing rows
        self.histogram = ErrorHistogram()
        self.hits = TopKHits(k)

    def add(self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> None:
        """The next rows; `labels` (their ground truth) or None. NaN or Inf in the candidate is counted
        (`non_finite`) and makes the error figures NaN, quietly: the verdict fails it on that count."""
        self.non_finite += int(np.size(candidate) - np.count_nonzero(np.isfinite(candidate)))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            self._add(reference, candidate, labels)

    def _add(self, reference, candidate, labels) -> None:
        if not self.class_rows.size:
            self.class_rows = np.zeros(reference.shape[1], np.int64)
            self.class_same = np.zeros(reference.shape[1], np.int64)
        first = self.rows
        self.histogram.add(reference, candidate)
        reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
        errors = np.abs(reference - candidate)
        self.rows += len(reference)
        self.logits += errors.size
        self.abs_sum += float(errors.sum())
        if errors.size:
            self.max_abs = float(np.max([self.max_abs, errors.max()]))  # NaN stays NaN
            self.scale = max(self.scale, float(np.abs(reference).max()))
        self.noise += float(np.sum((reference - candidate) ** 2))
        self.signal += float(np.sum(reference ** 2))
        cosines = row_cosines(reference, candidate)
        self.cosine_sum += float(cosines.sum())
        self.cosine_min = float(np.min([self.cosine_min, cosines.min(initial=np.inf)]))
        reference_top, candidate_top = top_k(reference, self.k), top_k(candidate, self.k)
        same = reference_top[:, 0] == candidate_top[:, 0]
        self.same += int(same.sum())
        shared = (reference_top[:, :, None] == candidate_top[:, None, :]).any(axis=2).sum(axis=1)
        self.overlap_sum += float(np.sum(shared / reference_top.shape[1]))
        self.class_rows += np.bincount(reference_top[:, 0], minlength=len(self.class_rows))
        self.class_same += np.bincount(reference_top[same, 0], minlength=len(self.class_rows))
        differing = np.flatnonzero(~same)
        self.disagreements += len(differing)
        for row in differing[:max(0, self.keep - len(self.examples))]:
            self.examples.append({"index": first + int(row), "label": None if labels is None else int(labels[row]),
                                  "reference": int(reference_top[row, 0]), "candidate": int(candidate_top[row, 0])})
        if labels is not None:
            self.hits.add(candidate, labels)

    def metrics(self) -> dict:
        """logit_agreement's and prediction_agreement's figures over every row so far; top1/top5 with labels."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._metrics()

    def _metrics(self) -> dict:
        snr = snr_db(self.signal, self.noise)
        metrics = {"max_abs": self.max_abs, "mean_abs": self.abs_sum / self.logits if self.logits else 0.0,
                   "max_rel": self.max_abs / self.scale if self.scale > 0 else self.max_abs,
                   "cosine_mean": self.cosine_sum / self.rows, "cosine_min": self.cosine_min,
                   "snr_db": snr, "agreement": self.same / self.rows, "top5_overlap": self.overlap_sum / self.rows}
        if self.hits.rows:
            metrics["top1"], metrics["top5"] = self.hits.accuracy()
        return metrics

    def per_class(self) -> list:
        """Top-1 agreement per reference-predicted class, None for a class the reference never predicts."""
        return [float(same / rows) if rows else None
                for same, rows in zip(self.class_same, self.class_rows, strict=True)]
