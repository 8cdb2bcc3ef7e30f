"""bench's numbers by hand: --batch parsing and the sizes BenchSettings takes, latency percentiles and
throughput, speedups, which batch sizes a model can take."""
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

from skdeploy.bench import BenchSettings, add_speedups, bench_runner, latency_stats
from skdeploy.commands.bench import parse_batches
from skdeploy.errors import UsageError
from skdeploy.runners.onnxrt import OnnxRuntimeRunner


# ---- parse_batches / BenchSettings' own checks ---------------------------------------------------------
@pytest.mark.parametrize("text, batches", [("1,8,32", (1, 8, 32)), (" 1, 8 ,32 ", (1, 8, 32)), ("1", (1,)),
                                           ("4,,2,", (4, 2)), (16, (16,))])
def test_parse_batches(text, batches):
    assert parse_batches(text) == batches


@pytest.mark.parametrize("text", ["1.5", "a,8"])
def test_parse_batches_refuses_what_is_not_integers(text):
    with pytest.raises(UsageError) as error:
        parse_batches(text)
    assert str(error.value) == f"--batch must be comma-separated integers like 1,8,32, got {text!r}"


@pytest.mark.parametrize("text, parsed", [("", ()), (" , ", ()), ("0", (0,)), ("8,0", (8, 0)), ("-1", (-1,))])
def test_sizes_that_parse_but_are_not_positive_are_the_settings_to_refuse(text, parsed):
    assert parse_batches(text) == parsed
    with pytest.raises(UsageError, match=r"^`batches` sizes must be positive integers"):
        BenchSettings(batches=parsed)


@pytest.mark.parametrize("fields", [dict(batches=(1,)), dict(iterations=1), dict(warmup=0)])
def test_bench_settings_accept_their_boundaries(fields):
    BenchSettings(**fields)


@pytest.mark.parametrize("fields, message", [
    (dict(batches=()), "`batches` sizes must be positive integers, got ()"),
    (dict(batches=(4, 0)), "`batches` sizes must be positive integers, got (4, 0)"),
    (dict(iterations=0), "`iterations` must be at least 1 and `warmup` 0 or more"),
    (dict(warmup=-1), "`iterations` must be at least 1 and `warmup` 0 or more")])
def test_bench_settings_refuse_values_past_their_boundaries(fields, message):
    with pytest.raises(UsageError) as error:
        BenchSettings(**fields)
    assert str(error.value) == message


# ---- latency_stats -------------------------------------------------------------------------------
def test_latency_stats_by_hand():
    # sorted ms 1, 2, 3, 4, 10; percentile p sits at position p/100 * 4, linearly interpolated:
    # p50 -> 3; p90 -> 3.6: 4 + 0.6 * 6 = 7.6; p99 -> 3.96: 4 + 0.96 * 6 = 9.76
    stats = latency_stats([0.010, 0.001, 0.004, 0.002, 0.003], batch=2)
    assert stats == {"batch": 2, "iterations": 5, "p50_ms": pytest.approx(3.0, rel=1e-12),
                     "p90_ms": pytest.approx(7.6, rel=1e-12), "p99_ms": pytest.approx(9.76, rel=1e-12),
                     "mean_ms": pytest.approx(4.0, rel=1e-12),
                     "throughput": pytest.approx(500.0, rel=1e-12)}  # 2 samples x 5 calls in 20 ms


def test_latency_stats_of_one_call():
    stats = latency_stats([0.005], batch=1)
    assert (stats["p50_ms"], stats["p99_ms"], stats["mean_ms"]) == pytest.approx((5.0, 5.0, 5.0), rel=1e-12)
    assert stats["iterations"] == 1 and stats["throughput"] == pytest.approx(200.0, rel=1e-12)


@settings(deadline=None, max_examples=50)
@given(st.lists(st.floats(1e-5, 1.0), min_size=1, max_size=40), st.integers(1, 256))
def test_throughput_is_batch_over_mean_latency_and_percentiles_are_ordered(seconds, batch):
    stats = latency_stats(seconds, batch)
    assert stats["throughput"] == pytest.approx(batch / (sum(seconds) / len(seconds)), rel=1e-9)
    assert stats["mean_ms"] == pytest.approx(1000 * sum(seconds) / len(seconds), rel=1e-9)
    low, high = 1000 * min(seconds), 1000 * max(seconds)
    assert low * (1 - 1e-12) <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= high * (1 + 1e-12)


# ---- add_speedups --------------------------------------------------------------------------------
def test_speedup_is_baseline_p50_over_row_p50_per_batch_size():
    tables = [[{"batch": 1, "p50_ms": 12.0}, {"batch": 8, "skipped": "static batch"}, {"batch": 32, "p50_ms": 100.0}],
              [{"batch": 1, "p50_ms": 3.0}, {"batch": 8, "p50_ms": 10.0}, {"batch": 32, "skipped": "profile"}],
              [{"batch": 1, "p50_ms": 24.0}, {"batch": 32, "p50_ms": 40.0}]]
    add_speedups(tables)
    assert [[row.get("speedup") for row in rows] for rows in tables] == [
        [1.0, None, 1.0], [4.0, None, None], [0.5, 2.5]]


# ---- bench_runner: which batch sizes run -------------------------------------------------------
def doubling_model(batch, features=3):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, features])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


WANTED = (1, 3, 4, 5, 64)


@pytest.mark.parametrize("batch, timed", [(4, [4]), ("N", list(WANTED))])  # fixed 4: 3 and 5 are out
def test_bench_runner_times_only_batches_within_the_models_limits(batch, timed):
    steps = []
    with OnnxRuntimeRunner(doubling_model(batch)) as runner:
        rows = bench_runner(runner, BenchSettings(batches=WANTED, iterations=2, warmup=1),
                            lambda count=1: steps.append(count))
    assert [row["batch"] for row in rows] == list(WANTED)
    assert [row["batch"] for row in rows if "skipped" not in row] == timed
    for row in rows:
        if "skipped" in row:
            assert row["skipped"] == "the model takes batches 4..4"
        else:  # wall times of a 3-number Add: well under a second each
            assert row["iterations"] == 2 and 0 < row["p50_ms"] <= row["p99_ms"] < 1000
    assert sum(steps) == len(WANTED) * 3  # warmup + iterations per size, skipped or not


def test_bench_runner_refuses_dynamic_sample_dims():
    with OnnxRuntimeRunner(doubling_model("N", "F")) as runner:
        with pytest.raises(UsageError, match="dynamic dimensions besides the batch"):
            bench_runner(runner, BenchSettings(batches=(1,), iterations=1, warmup=0))
