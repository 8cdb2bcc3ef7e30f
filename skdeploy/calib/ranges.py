"""Activation ranges from streamed batches: a histogram of |x| per tensor, then mse, max, percentile or entropy.

Only histograms survive a batch. Each histogram keeps 2 x `bins` bins over [0, top]; when a batch
exceeds `top`, the range doubles (as often as needed) and neighbouring bins merge, so counts stay exact
and [0, max] always spans at least `bins` bins.
"""
import math

import numpy as np

from ..errors import UsageError

METHODS = ("mse", "max", "entropy", "percentile")
QUANT_LEVELS = 128  # int8 symmetric: 127 steps each side of zero (TensorRT uses 128 for the KL search)
MIN_BINS = 2048
MAX_BINS = 1 << 16  # finer bins change no range; each histogram holds twice its bins as int64
INT8_STEPS = 127  # symmetric INT8: amax maps to 127
ALGORITHM = "skdeploy-ranges-6"  # part of the cache key: bump when the range computation changes


class TensorHistogram:
    """Streaming histogram of absolute values with power-of-two range growth."""

    def __init__(self, bins: int = MIN_BINS) -> None:
        self.size = 2 * bins
        self.counts = np.zeros(self.size, np.int64)
        self.top = 0.0  # upper edge of the last bin; 0 until a non-zero value arrives
        self.absmax = 0.0
        self.exact_zeros = 0  # e.g. ReLU outputs: exact at any scale, so they do not steer the KL search
        self.zeros_before_range = 0
        self.batches = 0  # updates so far: the sampling offset

    def update(self, values: np.ndarray, stride: int = 1, peak: float | None = None, nonnegative: bool = False) -> None:
        """Fold in `values`: the counts from every `stride`-th (starting at a different offset each batch, so
        every position of a tensor is sampled over the batches), the maximum from all of them, or `peak` when
        the caller measured it on more values than it passes (calibration's in-graph maximum).
        `nonnegative`: the caller knows no value is below zero, so no absolute value is taken."""
        flat = values.reshape(-1)
        if peak is None:
            peak = max(float(flat.max()), -float(flat.min())) if flat.size else 0.0  # no temporary array
        if not math.isfinite(peak):
            raise ValueError("non-finite activation")
        self.absmax = max(self.absmax, peak)
        sample = flat[self.batches % stride::stride] if stride > 1 else flat
        self.batches += 1
        if self.top == 0.0:
            if peak == 0.0:
                self.zeros_before_range += sample.size
                self.exact_zeros += sample.size
                return
            self.top = peak
            self.counts[0] += self.zeros_before_range
        if peak > self.top:
            self._grow(2 ** math.ceil(math.log2(peak / self.top)))
        if nonnegative:  # a Relu can still return -0.0: zeros are compared as floats
            magnitudes = np.ascontiguousarray(sample, np.float32)
            self.exact_zeros += magnitudes.size - int(np.count_nonzero(magnitudes))
        else:  # abs made every zero +0.0, the one float32 whose bits are all zero: counting non-zero words is faster
            magnitudes = np.abs(sample, dtype=np.float32)
            self.exact_zeros += magnitudes.size - int(np.count_nonzero(magnitudes.view(np.int32)))
        index = np.empty(magnitudes.shape, np.intp)  # the bin: the scaled value truncated (NaN: negative, refused)
        np.multiply(magnitudes, np.float32(self.size / self.top), out=index, casting="unsafe")
        counts = np.bincount(index, minlength=self.size)
        self.counts += counts[:self.size]
        self.counts[-1] += counts[self.size:].sum()  # |x| at the top edge (or rounded onto it) is in the last bin

    def _grow(self, factor: int) -> None:
        merged = np.zeros(self.size, np.int64)
        if factor >= self.size:
            merged[0] = self.counts.sum()
        else:
            merged[:self.size // factor] = self.counts.reshape(-1, factor).sum(axis=1)
        self.counts = merged
        self.top *= factor

    def used_bins(self) -> np.ndarray:
        """The bins from 0 up to the one holding the maximum."""
        if self.top == 0.0:
            return np.zeros(0, np.int64)
        last = min(self.size, int(self.absmax / self.top * self.size) + 1)
        return self.counts[:last]

    @property
    def bin_width(self) -> float:
        return self.top / self.size


def percentile_amax(hist: TensorHistogram, percentile: float) -> float:
    counts = hist.used_bins()
    if not counts.size or counts.sum() == 0:
        return hist.absmax
    cumulative = np.cumsum(counts)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return min(hist.absmax, (index + 1) * hist.bin_width)


def without_spikes(counts: np.ndarray) -> np.ndarray:
    """`counts` with every bin capped at its larger neighbour (at least one value, so the bins that hold values
    stay the same). A peak one bin wide is a constant value (a
    black background after a convolution, one value per channel): it quantizes with at most half a step of
    error at any threshold, but as a spike it makes the KL search give it a level of its own and clip
    everything above. TensorRT's recipe (as in pytorch-quantization) does this for the zero bin only."""
    padded = np.concatenate([[0], counts, [0]])
    return np.minimum(counts, np.maximum(np.maximum(padded[:-2], padded[2:]), 1))  # a non-empty bin stays non-empty


def entropy_amax(hist: TensorHistogram) -> float:
    """TensorRT-style KL calibration: the clipping threshold whose 128-level quantisation of the
    distribution below it (clipped mass folded into the last bin) diverges least from the original.
    Exact zeros are left out and single-bin spikes cut to their neighbours (`without_spikes`): both
    quantize almost exactly at any scale, and as spikes (half of every ReLU output, a constant background)
    they would pull the threshold down to where their bin stands alone."""
    counts = hist.used_bins().astype(np.float64)
    if counts.size:
        counts[0] -= hist.exact_zeros
    counts = without_spikes(counts)
    if counts.size <= QUANT_LEVELS or counts.sum() == 0:
        return hist.absmax
    candidates, kl = clipping_divergences(counts)
    best = int(candidates[int(np.argmin(kl))])
    return min(hist.absmax, best * hist.bin_width)


def mse_amax(hist: TensorHistogram) -> float:
    """The threshold (a bin edge from bin 128 to the maximum) whose symmetric INT8 quantisation has the
    least squared error over the histogram, each bin's values taken at its centre: rounding error below
    the threshold, clipping error above it. Exact zeros are left out (they quantize exactly)."""
    counts = hist.used_bins().astype(np.float64)
    if counts.size:
        counts[0] -= hist.exact_zeros
    if counts.size <= QUANT_LEVELS or counts.sum() == 0:
        return hist.absmax
    candidates, errors = quantisation_errors(counts)
    return min(hist.absmax, int(candidates[int(np.argmin(errors))]) * hist.bin_width)


def quantisation_errors(counts: np.ndarray) -> tuple:
    """(e, squared error) of symmetric INT8 quantisation with amax at bin edge e, for every e from 128 to all
    of `counts`, in bin widths, each bin's values (n of them) at its centre c = j + 0.5. All thresholds at
    once: with step s = e / 127, the bins from b_k on round to level k or higher (level 127 runs to the end,
    which is the clipping), so by summation by parts the error sum(n (c - level s)^2) is
    S2 - 2 s (127 S1 - sum_k C1[b_k]) + s^2 (127^2 S0 - sum_k (2k - 1) C0[b_k]), k = 1..127, with S the
    totals and C the cumulative sums of n, n c (and S2 of n c^2)."""
    centres = np.arange(counts.size) + 0.5
    below_mass = np.concatenate([[0.0], np.cumsum(counts)])  # C0[m]: bins [0, m)
    below_moment = np.concatenate([[0.0], np.cumsum(counts * centres)])  # C1[m]
    candidates = np.arange(QUANT_LEVELS, counts.size + 1)
    odd = 2 * np.arange(1, INT8_STEPS + 1) - 1  # 2k - 1
    # bin j rounds to level >= k when (j + 0.5) * 127 / e > k - 0.5: b_k = floor((2k - 1) e / 254 + 1/2); at an
    # exact tie the bin's error is the same in either level, so float rounding there is harmless
    starts = np.floor(np.multiply.outer(candidates, odd / (2 * INT8_STEPS)) + 0.5).astype(np.intp)
    step = candidates / INT8_STEPS
    first = INT8_STEPS * below_moment[-1] - below_moment[starts].sum(axis=1)
    second = INT8_STEPS ** 2 * below_mass[-1] - below_mass[starts] @ odd
    errors = float(counts @ centres ** 2) - 2 * step * first + step ** 2 * second
    return candidates, errors


def clipping_divergences(counts: np.ndarray) -> tuple:
    """(i, KL(P || Q)) of clipping after i bins, for every i from 128 to all of `counts`: P is bins [0, i)
    with the clipped mass added to the last, Q merges them into 128 levels spread evenly over the bins
    where P is non-zero. Infinite where Q misses mass that P has."""
    total = counts.sum()
    below = np.concatenate([[0.0], np.cumsum(counts)])  # below[m] = mass of bins [0, m)
    nonzero_below = np.concatenate([[0], np.cumsum(counts > 0)])
    plogp = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0)), 0.0)
    plogp_below = np.concatenate([[0.0], np.cumsum(plogp)])

    candidates = np.arange(QUANT_LEVELS, counts.size + 1)  # keep bins [0, i)
    edges = (np.arange(QUANT_LEVELS + 1)[None, :] * candidates[:, None]) // QUANT_LEVELS
    level_mass = np.diff(below[edges], axis=1)  # the kept histogram merged into 128 levels
    level_nonzero = np.diff(nonzero_below[edges], axis=1).astype(np.float64)

    outliers = total - below[candidates]
    last_bin = counts[candidates - 1]
    folded_last = last_bin + outliers  # the reference distribution folds clipped mass into its last bin
    # the folded last bin may be non-zero where the original was empty: it then shares its level's mass
    level_nonzero[:, -1] += (last_bin == 0) & (folded_last > 0)
    reference_mass = level_mass.copy()
    reference_mass[:, -1] += outliers

    with np.errstate(divide="ignore", invalid="ignore"):
        plogp_reference = plogp_below[candidates - 1] + np.where(folded_last > 0, folded_last * np.log(
            np.where(folded_last > 0, folded_last, 1.0)), 0.0)
        per_level = np.where(reference_mass > 0, reference_mass * np.log(level_mass / level_nonzero), 0.0)
        kl = (plogp_reference - per_level.sum(axis=1)) / total - math.log(total) + np.log(below[candidates])
    kl[~np.isfinite(kl)] = np.inf  # a level whose whole reference mass came from clipping cannot be matched
    return candidates, kl


def amax_of(hist: TensorHistogram, method: str, percentile: float = 99.99) -> float:
    if method == "mse":
        # never below the percentile point: measured on the demo model, the floor turned 99.73% agreement
        # with FP32 into 99.75% (docs/precision.md, ablation)
        return max(mse_amax(hist), percentile_amax(hist, percentile))
    if method == "max":
        return hist.absmax
    if method == "percentile":
        return percentile_amax(hist, percentile)
    if method == "entropy":
        return entropy_amax(hist)
    raise UsageError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
