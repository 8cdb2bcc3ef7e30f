"""Range math of skdeploy.calib: streaming histograms, the three methods, the TensorRT table format.
Pure numpy; the end-to-end tests on real models and data are in test_calib.py."""
import itertools
import math
import struct

import numpy as np
import pytest

from skdeploy.calib.cache import calibration_table, trt_version_code
from skdeploy.calib.ranges import QUANT_LEVELS, TensorHistogram, amax_of, entropy_amax, percentile_amax, without_spikes


def kl_threshold_by_loop(hist: TensorHistogram) -> float:
    """The TensorRT entropy recipe written as its plain loop over candidate thresholds (slow, obvious), on
    the histogram without its single-bin spikes as entropy_amax searches it."""
    counts = without_spikes(hist.used_bins().astype(np.float64))
    best, best_kl = None, math.inf
    for i in range(QUANT_LEVELS, len(counts) + 1):
        reference = counts[:i].copy()
        reference[-1] += counts[i:].sum()
        kept = counts[:i]
        expanded = np.zeros(i)
        edges = [(j * i) // QUANT_LEVELS for j in range(QUANT_LEVELS + 1)]
        for start, stop in itertools.pairwise(edges):
            nonzero = reference[start:stop] > 0
            if nonzero.any():
                expanded[start:stop][nonzero] = kept[start:stop].sum() / nonzero.sum()
        p = reference / reference.sum()
        q = expanded / expanded.sum() if expanded.sum() else expanded
        mask = p > 0
        if np.any(q[mask] == 0):
            continue
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best_kl:
            best, best_kl = i, kl
    return best * hist.bin_width


def streamed(values, bins=2048, chunks=7):
    hist = TensorHistogram(bins)
    for chunk in np.array_split(values, chunks):
        hist.update(chunk)
    return hist


@pytest.mark.parametrize("kind", ["gaussian", "relu-laplace", "heavy-tail"])
def test_vectorised_entropy_matches_the_plain_loop(kind):
    rng = np.random.default_rng(1)
    values = {"gaussian": rng.standard_normal(200_000),
              "relu-laplace": np.maximum(rng.laplace(size=200_000), 0),
              "heavy-tail": rng.standard_t(3, size=200_000)}[kind].astype(np.float32)
    hist = streamed(values, bins=2048)
    # the loop is O(n^2): compare on a coarser copy of the same histogram to keep the test quick
    coarse = TensorHistogram(256)
    coarse.top, coarse.absmax = hist.top, hist.absmax
    coarse.counts = hist.counts.reshape(-1, 8).sum(axis=1)
    assert entropy_amax(coarse) == pytest.approx(kl_threshold_by_loop(coarse), rel=1e-9)
    assert 0 < entropy_amax(hist) <= hist.absmax
    if kind != "gaussian":  # long tails are clipped; a Gaussian of this size may keep its whole range
        assert entropy_amax(hist) < 0.8 * hist.absmax


def test_streaming_histogram_equals_one_shot_histogram():
    """Range doubling merges bins exactly: chunked updates with a growing max give the same counts as
    binning everything at once over the final range."""
    rng = np.random.default_rng(2)
    values = (rng.standard_normal(100_000) * np.linspace(0.01, 5, 100_000)).astype(np.float32)
    hist = streamed(values, chunks=20)
    direct = np.bincount(np.minimum((np.abs(values) * np.float32(hist.size / hist.top)).astype(np.int64),
                                    hist.size - 1), minlength=hist.size)
    assert hist.counts.sum() == values.size
    assert np.abs(hist.counts - direct).sum() <= 2  # float rounding at a bin edge at most
    assert hist.absmax == pytest.approx(float(np.abs(values).max()))
    assert len(hist.used_bins()) >= 2048  # [0, max] always spans at least the requested bins


def test_zeros_before_the_first_nonzero_batch_are_counted():
    hist = TensorHistogram(2048)
    hist.update(np.zeros(500, np.float32))
    hist.update(np.array([0.5, 1.0], np.float32))
    assert hist.counts.sum() == 502 and hist.counts[0] == 500


def test_percentile_and_max():
    rng = np.random.default_rng(3)
    values = rng.standard_normal(400_000).astype(np.float32)
    hist = streamed(values)
    assert amax_of(hist, "max") == pytest.approx(float(np.abs(values).max()))
    exact = float(np.percentile(np.abs(values), 99.0))
    assert percentile_amax(hist, 99.0) == pytest.approx(exact, abs=2 * hist.bin_width)
    assert percentile_amax(hist, 99.0) < percentile_amax(hist, 99.99) <= amax_of(hist, "max")


def test_nonfinite_activation_is_refused():
    with pytest.raises(ValueError):
        TensorHistogram().update(np.array([1.0, np.inf], np.float32))


def test_tensorrt_calibration_table_format():
    text = calibration_table({"input": {"absmax": 2.54}, "conv_out": {"absmax": 9.0, "amax": 6.35}},
                             "entropy", "8.6.2")
    lines = text.splitlines()
    assert lines[0] == "TRT-8602-EntropyCalibration2"
    scales = {name: struct.unpack(">f", bytes.fromhex(value))[0]
              for name, value in (line.split(": ") for line in lines[1:])}
    assert scales["input"] == pytest.approx(2.54 / 127)
    assert scales["conv_out"] == pytest.approx(6.35 / 127)  # the calibrated range wins over the max
    assert trt_version_code("10.3.0") == 100300 and trt_version_code("8.5.2") == 8502
