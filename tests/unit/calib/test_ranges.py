"""Range math of skdeploy.calib.ranges pinned on tiny inputs whose answers are worked out by hand:
histogram binning and power-of-two growth, used bins, and the max / percentile / entropy thresholds."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from skdeploy.calib.ranges import (
    TensorHistogram,
    amax_of,
    clipping_divergences,
    entropy_amax,
    mse_amax,
    percentile_amax,
    quantisation_errors,
    without_spikes,
)
from skdeploy.errors import UsageError


def histogram(values, bins):
    hist = TensorHistogram(bins)
    hist.update(np.asarray(values, np.float32))
    return hist


def histogram_of_counts(counts, bin_width=1.0, exact_zeros=0):
    """A histogram in a given state: `counts` occupy the first bins, the maximum sits mid last bin."""
    counts = np.asarray(counts, np.int64)
    hist = TensorHistogram(len(counts))  # size 2 x len(counts): the used bins end where counts end
    hist.counts[:len(counts)] = counts
    hist.top = hist.size * bin_width
    hist.absmax = (len(counts) - 0.5) * bin_width
    hist.exact_zeros = exact_zeros
    return hist


# ---- binning and growth -------------------------------------------------------------------------------

def test_a_histogram_keeps_twice_the_requested_bins_and_starts_empty():
    hist = TensorHistogram(3)
    assert hist.size == 6
    assert hist.counts.tolist() == [0] * 6 and hist.counts.dtype == np.int64  # exact counts
    assert (hist.top, hist.absmax, hist.exact_zeros) == (0.0, 0.0, 0)
    assert hist.used_bins().size == 0


def test_first_batch_sets_the_range_and_bins_magnitudes():
    # 4 bins over [0, 0.5]: width 0.125; |x| = 0.5 is the top edge and goes to the last bin
    hist = histogram([0.5, -0.25, 0.125, 0.0, 0.45, -0.37], bins=2)
    assert hist.top == 0.5 and hist.absmax == 0.5
    assert hist.bin_width == 0.125
    #                 0.0 | 0.125 | 0.25, 0.37 | 0.45, 0.5
    assert hist.counts.tolist() == [1, 1, 2, 2]
    assert hist.exact_zeros == 1
    assert hist.used_bins().tolist() == [1, 1, 2, 2]


def test_growth_doubles_the_range_and_merges_neighbouring_bins():
    hist = histogram([0.5, 0.05, 0.15, 0.275, 0.4], bins=4)  # 8 bins of width 1/16
    assert hist.counts.tolist() == [1, 0, 1, 0, 1, 0, 1, 1]

    hist.update(np.array([0.75], np.float32))  # 1.5 x top: one doubling, to [0, 1]
    assert hist.top == 1.0 and hist.absmax == 0.75
    assert hist.counts.tolist() == [1, 1, 1, 2, 0, 0, 1, 0]
    assert hist.used_bins().tolist() == [1, 1, 1, 2, 0, 0, 1]  # 0.75 is in bin 6 of width 1/8

    hist.update(np.array([3.5], np.float32))  # 3.5 x top: two doublings (x4), to [0, 4]
    assert hist.top == 4.0
    assert hist.counts.tolist() == [5, 1, 0, 0, 0, 0, 0, 1]
    assert hist.used_bins().tolist() == [5, 1, 0, 0, 0, 0, 0, 1]

    hist.update(np.array([-50.0], np.float32))  # 12.5 x top: x16 is more than the 8 bins, all in bin 0
    assert hist.top == 64.0 and hist.absmax == 50.0
    assert hist.counts.tolist() == [7, 0, 0, 0, 0, 0, 1, 0]
    assert hist.used_bins().tolist() == [7, 0, 0, 0, 0, 0, 1]
    assert hist.counts.sum() == 8  # every value ever seen is still counted once
    assert hist.counts.dtype == np.int64 and hist.used_bins().dtype == np.int64


def test_batches_of_any_shape_are_binned_element_by_element():
    nchw = np.array([[[[0.5, -0.25]], [[0.125, 0.0]]], [[[0.45, -0.37]], [[0.3, 0.2]]]], np.float32)
    hist = histogram(nchw, bins=2)
    assert hist.counts.tolist() == [1, 2, 3, 2]  # 0 | 0.125, 0.2 | 0.25, 0.3, 0.37 | 0.45, 0.5


def test_a_peak_of_exactly_twice_the_top_doubles_once_and_lands_in_the_last_bin():
    hist = histogram([0.5], bins=2)
    hist.update(np.array([1.0], np.float32))
    assert hist.top == 1.0
    assert hist.counts.tolist() == [0, 1, 0, 1]


def test_a_peak_equal_to_the_top_does_not_grow():
    hist = histogram([0.5, 0.1], bins=2)
    hist.update(np.array([0.5], np.float32))
    assert hist.top == 0.5
    assert hist.counts.tolist() == [1, 0, 0, 2]


def test_a_stride_bins_every_nth_value_from_a_moving_offset_but_takes_the_maximum_from_all():
    hist = TensorHistogram(2)
    # first batch, offset 0: 4, 2, 0, 3 are binned over [0, 4] (width 1); 4 sits on the top edge: last bin
    hist.update(np.array([4, 1, 2, 3, 0, 1, 3, 2], np.float32), stride=2)
    assert hist.counts.tolist() == [1, 0, 1, 2] and hist.exact_zeros == 1 and hist.absmax == 4.0
    # second batch, offset 1: only 1 and 3 are binned, yet -9 (not sampled) sets the maximum and grows the
    # range twice, to [0, 16] (width 4): the old counts merge into bin 0, and 1 and 3 land there too
    hist.update(np.array([-9, 1, 0.5, 3], np.float32), stride=2)
    assert hist.top == 16.0 and hist.absmax == 9.0
    assert hist.counts.tolist() == [6, 0, 0, 0] and hist.exact_zeros == 1
    assert hist.used_bins().tolist() == [6, 0, 0]  # 9 is in bin 2 of width 4


def test_zeros_before_the_first_nonzero_batch_land_in_bin_zero():
    hist = TensorHistogram(2)
    hist.update(np.zeros(3, np.float32))
    hist.update(np.zeros(0, np.float32))
    hist.update(np.zeros((2, 1), np.float32))
    assert hist.top == 0.0 and hist.counts.sum() == 0 and hist.used_bins().size == 0
    assert hist.used_bins().dtype == np.int64
    assert [amax_of(hist, method) for method in ("max", "percentile", "entropy", "mse")] == [0.0] * 4
    hist.update(np.array([0.5, 0.0], np.float32))
    assert hist.counts.tolist() == [6, 0, 0, 1]
    assert hist.exact_zeros == 6


def test_an_empty_batch_after_the_range_is_set_changes_nothing():
    hist = histogram([0.5, 0.2], bins=2)
    hist.update(np.zeros(0, np.float32))
    assert hist.counts.tolist() == [0, 1, 0, 1] and hist.top == 0.5


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_activation_is_refused(bad):
    with pytest.raises(ValueError, match="^non-finite activation$"):
        TensorHistogram(2).update(np.array([1.0, bad], np.float32))


odd_chunks = st.lists(st.lists(st.integers(-2048, 2047).map(lambda k: 2 * k + 1), max_size=20), min_size=1,
                     max_size=6)


@settings(max_examples=60, deadline=None)
@given(first_exponent=st.integers(-3, 3), chunks=odd_chunks, bins=st.sampled_from([1, 2, 4, 16]))
def test_streaming_equals_binning_everything_once_over_the_final_range(first_exponent, chunks, bins):
    """A power-of-two first peak and values on odd multiples of 1/256 make every product exact and keep the
    values off every possible top; any split into batches must then give the one-shot histogram over the
    smallest power-of-two multiple of the first peak covering every value. The first peak itself stays
    in the bin whose upper edge it was when it set the range."""
    first_peak = 2.0 ** first_exponent
    later = [np.array(c, np.float32) / 256 for c in chunks]
    hist = TensorHistogram(bins)
    for batch in [np.array([first_peak], np.float32)] + later:
        hist.update(batch)
    values = np.abs(np.concatenate(later)).astype(np.float64)
    largest = max(first_peak, values.max(initial=0.0))
    top = first_peak
    while top < largest:
        top *= 2
    size = 2 * bins
    expected = np.bincount(np.minimum(np.floor(values * size / top).astype(np.int64), size - 1), minlength=size)
    expected[max(0, int(size * first_peak / top) - 1)] += 1
    assert hist.top == top
    assert hist.absmax == largest
    assert hist.exact_zeros == 0
    assert hist.counts.tolist() == expected.tolist()


# ---- percentile ---------------------------------------------------------------------------------------

def four_equal_bins():
    """Bins of width 0.25 over [0, 1], one value each; the largest value is 0.9."""
    hist = histogram([1.0], bins=2)
    hist.counts[:] = [1, 1, 1, 1]
    hist.absmax = 0.9
    return hist


@pytest.mark.parametrize("percentile, amax", [
    (0.0, 0.25),    # target 0: the first bin already reaches it
    (25.0, 0.25),   # target 1 value: bin 0 holds it, its upper edge is 0.25
    (25.1, 0.5),    # target 1.004 values: needs bin 1
    (50.0, 0.5),
    (50.1, 0.75),
    (75.0, 0.75),
    (100.0, 0.9),   # the last bin's edge (1.0) is above the largest value: capped at 0.9
])
def test_percentile_is_the_upper_edge_of_the_bin_reaching_that_share(percentile, amax):
    assert percentile_amax(four_equal_bins(), percentile) == pytest.approx(amax, rel=1e-12)


def test_percentile_of_a_uniform_grid():
    # 1/1024 .. 1024/1024 over 1024 bins of width 1/1024: value k sits in bin k (1024 is clamped to 1023)
    values = np.arange(1, 1025) / 1024
    hist = histogram(values, bins=512)
    assert hist.counts[0] == 0 and hist.counts[1:1023].tolist() == [1] * 1022 and hist.counts[1023] == 2
    # p% of 1024 values is t = 10.24 p values; value t sits in bin t, whose upper edge is (t + 1) / 1024
    assert percentile_amax(hist, 50.0) == 513 / 1024
    assert percentile_amax(hist, 25.0) == 257 / 1024
    assert percentile_amax(hist, 99.9) == 1.0


def test_percentile_of_an_empty_histogram_is_zero():
    assert percentile_amax(TensorHistogram(2), 99.0) == 0.0


# ---- entropy (KL) -------------------------------------------------------------------------------------

def kl_of_clip(counts, kept, levels=128):
    """KL(P || Q) of clipping after `kept` bins, as the recipe reads: P is the kept bins with the clipped
    mass added to the last one; Q merges the kept bins into `levels` levels and spreads each level's mass
    evenly over the bins where P is non-zero."""
    p = counts[:kept].astype(np.float64)
    p[-1] += counts[kept:].sum()
    q = np.zeros(kept)
    for level in range(levels):
        start, stop = level * kept // levels, (level + 1) * kept // levels
        support = p[start:stop] > 0
        if support.any():
            q[start:stop][support] = counts[start:stop].sum() / support.sum()
    if q.sum() == 0:
        return math.inf
    p, q = p / p.sum(), q / q.sum()
    support = p > 0
    if np.any(q[support] == 0):
        return math.inf
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


no_numpy_warnings = pytest.mark.filterwarnings("error::RuntimeWarning")


@no_numpy_warnings
def test_entropy_of_129_bins_clips_the_lone_tail_bin():
    # bins 0..126 hold a = 100, bin 127 b = 100, bin 128 c = 1; only 128 and 129 kept bins are candidates
    a, b, c = 100, 100, 1
    total = 127 * a + b + c
    # keep 129: one level merges bins 127 and 128 into (b + c) / 2 each, the others are exact
    kl_keep_all = (b * math.log(2 * b / (b + c)) + c * math.log(2 * c / (b + c))) / total
    # keep 128: every level is one bin; P folds c into bin 127, Q is the kept bins renormalised
    kl_clip = (127 * a * math.log((total - c) / total)
               + (b + c) * math.log((b + c) * (total - c) / (total * b))) / total
    assert kl_clip < kl_keep_all  # 0.005 / total against 64.4 / total
    hist = histogram_of_counts([a] * 127 + [b, c], bin_width=0.5)
    assert entropy_amax(hist) == 128 * 0.5
    assert amax_of(hist, "entropy") == 64.0


@no_numpy_warnings
@pytest.mark.parametrize("counts", [
    [100] * 127 + [100, 100],
    [1] + [100] * 126 + [100, 100],  # a bin of one value: its level still matches exactly
], ids=["flat", "single-value-first-bin"])
def test_entropy_of_129_bins_keeps_everything_when_every_level_is_flat(counts):
    # keeping all 129 bins quantizes exactly (KL 0, the least there is), so the range is the maximum
    hist = histogram_of_counts(counts, bin_width=0.5)
    assert entropy_amax(hist) == hist.absmax == 64.25


@no_numpy_warnings
def test_entropy_keeps_everything_when_the_bin_before_the_tail_is_empty():
    # clipping at 128 bins would fold the tail into an empty level Q cannot represent (KL infinite)
    hist = histogram_of_counts([100] * 127 + [0, 7], bin_width=0.5)
    assert entropy_amax(hist) == hist.absmax


@no_numpy_warnings
def test_entropy_spreads_a_level_over_the_empty_bin_that_the_clipped_value_fills():
    """Bins 0..127 hold 100 each, bin 128 is empty and bin 129 holds one value. Keeping all 130 bins is
    exact (KL 0). Keeping 129 folds that value into empty bin 128, which shares a level with bin 127:
    Q must give that level's 100 values to both bins (50 each), a KL of about 65 / 12801 > 0."""
    hist = histogram_of_counts([100] * 128 + [0, 1], bin_width=0.5)
    assert entropy_amax(hist) == hist.absmax == 64.75


@no_numpy_warnings
@pytest.mark.parametrize("bins", [1, 100, 128])
def test_entropy_of_at_most_128_bins_is_the_maximum(bins):
    hist = histogram_of_counts([1000] * (bins - 1) + [1], bin_width=0.5)
    assert entropy_amax(hist) == hist.absmax == (bins - 0.5) * 0.5


@no_numpy_warnings
def test_entropy_of_a_clean_uniform_is_about_its_maximum():
    values = np.random.default_rng(0).uniform(0, 1, 20_000)
    hist = histogram(values, bins=256)
    assert 0.99 * hist.absmax <= entropy_amax(hist) <= hist.absmax


@no_numpy_warnings
def test_entropy_clips_a_few_far_outliers_to_the_bulk():
    values = np.concatenate([np.random.default_rng(0).uniform(0, 1, 20_000), [2.5, 3.0]])
    hist = histogram(values, bins=256)  # bins of width 3/512: the bulk ends in bin 170
    assert hist.absmax == 3.0
    assert 0.99 <= entropy_amax(hist) <= 1.01


@no_numpy_warnings
def test_entropy_ignores_exact_zeros():
    """Half of a ReLU output is exact zeros; counted, that spike would halve the threshold here."""
    magnitudes = np.abs(np.random.default_rng(0).standard_normal(20_000))
    with_zeros = histogram(np.concatenate([magnitudes, np.zeros(20_000)]), bins=256)
    without = histogram(magnitudes, bins=256)
    assert with_zeros.counts[0] == without.counts[0] + 20_000
    assert entropy_amax(with_zeros) == entropy_amax(without)
    assert entropy_amax(without) > 0.9 * without.absmax


def test_a_spike_is_cut_to_its_larger_neighbour_and_no_bin_empties():
    # bin 1 is a peak (cut to 6), the last bin only has a smaller neighbour (cut to 3); the lone 1 stays
    assert without_spikes(np.array([5, 100, 6, 0, 1, 0, 3, 4])).tolist() == [5, 6, 6, 0, 1, 0, 3, 3]


@no_numpy_warnings
def test_entropy_is_not_pulled_down_by_a_constant_background():
    """A constant value in a third of all positions (a black background after a convolution) is one spike
    bin: the plain KL search clips just above it; without spikes the threshold stays at the bulk's top."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 1, 20_000), np.full(10_000, 0.1)])
    hist = histogram(values, bins=2048)
    counts = hist.used_bins().astype(np.float64)
    kept, kl = clipping_divergences(counts)
    assert kept[int(np.argmin(kl))] * hist.bin_width < 0.5  # the textbook search clips half the range away
    assert entropy_amax(hist) >= 0.95 * hist.absmax


def brute_force_mse_threshold(values, edges):
    """The edge whose symmetric INT8 fake quantisation of `values` (round to the step edge / 127, clip to
    +-127 steps) has the least summed squared error: quantizes the values themselves, no histogram."""
    errors = [np.sum((values - np.clip(np.round(values / (edge / 127)), -127, 127) * (edge / 127)) ** 2)
              for edge in edges]
    return edges[int(np.argmin(errors))]


@pytest.mark.parametrize("shape", ["laplace", "uniform", "two-clusters"])
def test_mse_threshold_equals_brute_force_quantisation_of_the_values(shape):
    """Values placed at bin centres (where the histogram is exact), quantized directly at every candidate
    edge (bin 128 up to the maximum's bin), give the same threshold as mse_amax."""
    rng = np.random.default_rng(1)
    bins, width = 512, 0.01
    sample = {"laplace": rng.laplace(0, 0.4, 20_000), "uniform": rng.uniform(-5, 5, 20_000),
              "two-clusters": np.concatenate([rng.normal(0.5, 0.05, 5_000), rng.normal(4.5, 0.05, 50)])}[shape]
    index = np.minimum((np.abs(sample) / width).astype(int), bins - 1)
    index[0] = bins - 1  # the maximum sits in the last bin
    values = (index + 0.5) * width
    hist = histogram_of_counts(np.bincount(index, minlength=bins), bin_width=width)
    expected = brute_force_mse_threshold(values, [k * width for k in range(128, bins + 1)])
    assert mse_amax(hist) == pytest.approx(min(expected, hist.absmax), rel=1e-9)


def test_mse_keeps_a_uniform_range_and_clips_a_laplace_tail():
    """Uniform on [0, 1]: clipping at T costs (1 - T)^3 / 3 against T^2 / (12 x 127^2) of rounding, balanced
    near T = 0.997; a Laplace sample's rare tail is cheaper to clip than to spread the steps over."""
    rng = np.random.default_rng(2)
    uniform = histogram(rng.uniform(0, 1, 200_000), bins=2048)
    assert 0.99 * uniform.absmax <= mse_amax(uniform) <= uniform.absmax
    laplace = histogram(rng.laplace(0, 1, 200_000), bins=2048)
    assert mse_amax(laplace) < 0.8 * laplace.absmax


def test_all_thresholds_at_once_give_each_thresholds_own_quantisation_error():
    """The cumulative-sum errors against quantizing every bin centre at every candidate edge one by one."""
    counts = np.random.default_rng(4).integers(0, 1000, 300).astype(np.float64)
    centres = np.arange(300) + 0.5
    candidates, errors = quantisation_errors(counts)
    assert candidates.tolist() == list(range(128, 301))
    direct = [counts @ (centres - np.minimum(np.round(centres / (edge / 127)), 127) * (edge / 127)) ** 2
              for edge in candidates]
    assert errors == pytest.approx(direct, rel=1e-9)


def test_mse_leaves_exact_zeros_out():
    magnitudes = np.abs(np.random.default_rng(3).laplace(0, 1, 20_000))
    with_zeros = histogram(np.concatenate([magnitudes, np.zeros(20_000)]), bins=256)
    without = histogram(magnitudes, bins=256)
    assert mse_amax(with_zeros) == mse_amax(without)


def assert_kl_follows_the_recipe(counts, exact_zeros):
    """clipping_divergences gives the plain recipe's KL for every clip, and entropy_amax picks the least
    for the histogram without exact zeros and spikes."""
    counts = np.array(counts, np.int64)
    counts[-1] = max(counts[-1], 1)  # the maximum lies in the last used bin
    hist = histogram_of_counts(counts, bin_width=0.25, exact_zeros=exact_zeros)
    counts[0] -= exact_zeros
    counts = without_spikes(counts)
    expected = {kept: kl_of_clip(counts, kept) for kept in range(128, len(counts) + 1)}

    kept, kl = clipping_divergences(counts.astype(np.float64))
    assert kept.tolist() == list(expected)
    assert kl.tolist() == pytest.approx(list(expected.values()), rel=1e-7, abs=1e-10)

    threshold = entropy_amax(hist)
    chosen = len(counts) if threshold == hist.absmax else threshold / 0.25
    assert chosen == int(chosen) and 128 <= chosen <= len(counts)
    assert expected[int(chosen)] <= min(expected.values()) + 1e-12


sparse_counts = st.lists(st.one_of(st.just(0), st.integers(1, 3), st.integers(50, 5000)), min_size=129, max_size=190)


@no_numpy_warnings
@settings(max_examples=30, deadline=None)
@given(counts=sparse_counts, zero_share=st.floats(0, 1))
def test_kl_of_every_clip_on_sparse_histograms(counts, zero_share):
    assert_kl_follows_the_recipe(counts, int(counts[0] * zero_share))


@no_numpy_warnings
@settings(max_examples=30, deadline=None)
@given(bins=st.integers(129, 200), decay=st.floats(5, 300), peak=st.sampled_from([30, 1000, 30_000]),
       holes=st.sampled_from([0.0, 0.2]), seed=st.integers(0, 2**32 - 1), zero_share=st.floats(0, 1))
def test_kl_of_every_clip_on_decaying_histograms(bins, decay, peak, holes, seed, zero_share):
    """Activation-like shapes: Poisson counts under an exponential decay, optionally with empty bins."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(peak * np.exp(-np.arange(bins) / decay)) * (rng.random(bins) >= holes)
    assert_kl_follows_the_recipe(counts, int(counts[0] * zero_share))


# ---- dispatch -----------------------------------------------------------------------------------------

def test_max_is_the_largest_magnitude_not_the_histogram_top():
    hist = histogram([0.5], bins=2)
    hist.update(np.array([-0.7], np.float32))
    assert hist.top == 1.0
    assert amax_of(hist, "max") == pytest.approx(0.7)


def test_percentile_defaults_to_99_99():
    hist = histogram([0.9], bins=2)  # 4 bins of width 0.225
    hist.update(np.full(19_999, 0.1, np.float32))
    # 99.99% of 20000 values is 19998, fewer than bin 0 holds; 99.999% (19999.8) needs the bin of 0.9
    assert amax_of(hist, "percentile") == pytest.approx(0.225, rel=1e-7)
    assert amax_of(hist, "percentile", 99.999) == pytest.approx(0.9, rel=1e-7)


def test_unknown_method_is_a_usage_error():
    with pytest.raises(UsageError,
                       match=r"unknown calibration method 'minmax'; choose one of mse, max, entropy, percentile"):
        amax_of(histogram([1.0], bins=2), "minmax")


@no_numpy_warnings
def test_kl_of_keeping_a_trailing_empty_bin_spreads_nothing_onto_it():
    """Bins 0..126 hold 100, bin 127 50, bin 128 30 and bin 129 is empty. Keeping all 130 bins clips nothing
    and bin 129 stays empty: its level (bins 128 and 129) gives its 30 values to bin 128 alone, every other
    level is one bin, so Q equals P and the KL is exactly 0."""
    counts = np.array([100] * 127 + [50, 30, 0], np.float64)
    kept, kl = clipping_divergences(counts)
    assert kept.tolist() == [128, 129, 130]
    assert kl[-1] == pytest.approx(0.0, abs=1e-12)
    assert kl.tolist() == pytest.approx([kl_of_clip(counts, k) for k in (128, 129, 130)], rel=1e-7, abs=1e-10)


def test_mse_never_goes_below_the_percentile_point():
    hist = histogram(np.random.default_rng(2).laplace(0, 1, 200_000), bins=2048)
    clipped = mse_amax(hist)
    high = percentile_amax(hist, 99.999)
    assert clipped < high  # the tail beyond the least-error threshold holds more than 0.001% of the values
    assert amax_of(hist, "mse", 99.999) == high
    assert amax_of(hist, "mse", 50.0) == clipped


def test_a_nonnegative_batch_is_binned_like_its_absolute_values_negative_zeros_included():
    """Calibration passes nonnegative=True for tensors whose measured minimum is not below zero and skips
    the absolute value; a Relu can still return -0.0, which must count as an exact zero all the same."""
    values = np.array([0.0, -0.0, 0.125, 0.25, 0.37, 0.45, 0.5, -0.0], np.float32)
    plain, fast = TensorHistogram(2), TensorHistogram(2)
    plain.update(values)
    fast.update(values, peak=0.5, nonnegative=True)
    assert fast.counts.tolist() == plain.counts.tolist() == [3, 1, 2, 2]
    assert fast.exact_zeros == plain.exact_zeros == 3
