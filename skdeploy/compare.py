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
