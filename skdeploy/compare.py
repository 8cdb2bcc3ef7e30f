"""Numeric comparison of two output arrays; it knows nothing of where they came from."""
import numpy as np


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


def merge_comparisons(results) -> dict:
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
    reference_norms, candidate_norms = np.linalg.norm(reference, axis=1), np.linalg.norm(candidate, axis=1)
    norms = reference_norms * candidate_norms
    dots = np.sum(reference * candidate, axis=1)
    # a zero vector has no direction: two of them are identical (1), one alone shares nothing (0)
    both_zero = (reference_norms == 0) & (candidate_norms == 0)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    snr = float("inf") if noise == 0 else (10.0 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    return {"max_abs": base["max_abs"], "mean_abs": base["mean_abs"], "max_rel": base["max_rel"],
            "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()), "snr_db": snr}


def prediction_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 5) -> dict:
    """Top-1 agreement, mean top-k overlap, and top-1 agreement per reference-predicted class."""
    ref_top, cand_top = top_k(reference, k), top_k(candidate, k)
    same = ref_top[:, 0] == cand_top[:, 0]
    overlap = [len(set(a) & set(b)) / ref_top.shape[1] for a, b in zip(ref_top, cand_top)]
    classes = reference.shape[1]
    per_class = [float(same[ref_top[:, 0] == c].mean()) if np.any(ref_top[:, 0] == c) else None
                 for c in range(classes)]
    return {"agreement": float(same.mean()), "top5_overlap": float(np.mean(overlap)), "per_class": per_class,
            "disagreements": np.flatnonzero(~same).tolist()}


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the k best logits."""
    return float(np.mean(np.any(top_k(logits, k) == np.asarray(labels)[:, None], axis=1)))


def error_histogram(reference, candidate, bins: int = 24) -> dict:
    """Counts of |candidate - reference| per logit in log-spaced bins from 1e-7 up to the largest error;
    NaN and Inf errors have no bin and are left out (the verdict counts them)."""
    errors = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)).ravel()
    errors = errors[np.isfinite(errors)]
    top = max(float(errors.max()) if errors.size else 0.0, 1e-6)
    edges = np.logspace(-7, np.log10(top) + 1e-9, bins + 1)
    counts, _ = np.histogram(np.clip(errors, edges[0], edges[-1]), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}
