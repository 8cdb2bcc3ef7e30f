"""bench: percentile arithmetic, and real onnxruntime/PyTorch runs through the API and the CLI."""
import json

import pytest

from skdeploy.bench import BenchSettings, bench, bench_runner, latency_stats
from skdeploy.commands.bench import parse_batches
from skdeploy.errors import UsageError
from skdeploy.runners import OnnxRuntimeRunner
from tests.support.helpers import run_cli
from tests.support.validation_helpers import static_batch_copy


def test_latency_stats_percentiles_and_throughput():
    seconds = [i / 1000 for i in range(1, 101)]  # 1 .. 100 ms
    stats = latency_stats(seconds, batch=8)
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01) and stats["mean_ms"] == pytest.approx(50.5)
    assert stats["throughput"] == pytest.approx(8 * 100 / sum(seconds))


def test_parse_batches():
    assert parse_batches("1,8, 32") == (1, 8, 32)
    with pytest.raises(UsageError):
        parse_batches("a,b")


def test_bench_runner_skips_batches_a_static_model_cannot_take(demo_checkpoint_export, tmp_path):
    static_batch_copy(demo_checkpoint_export[1], tmp_path / "static.onnx", 4)
    with OnnxRuntimeRunner(tmp_path / "static.onnx") as runner:
        rows = bench_runner(runner, BenchSettings(batches=(1, 4), iterations=3, warmup=1))
    assert rows[0] == {"batch": 1, "skipped": "the model takes batches 4..4"}
    assert rows[1]["batch"] == 4 and rows[1]["iterations"] == 3
    assert 0 < rows[1]["p50_ms"] <= rows[1]["p90_ms"] <= rows[1]["p99_ms"]


def test_bench_api_with_pytorch_baseline(demo_checkpoint_export):
    result = bench([demo_checkpoint_export[1]], BenchSettings(batches=(1, 2), iterations=2, warmup=1),
                   reference=True)
    assert [timings.runner for timings in result.targets] == ["pytorch", "onnxruntime"]
    assert [timings.precision for timings in result.targets] == ["fp32", "fp32"]
    assert result.baseline == result.targets[0].target == "pytorch:demo.onnx"
    baseline, onnx_rows = result.targets[0].rows, result.targets[1].rows
    assert [r["speedup"] for r in baseline] == [1.0, 1.0]
    for row, base in zip(onnx_rows, baseline, strict=True):
        assert row["speedup"] == pytest.approx(base["p50_ms"] / row["p50_ms"])
    record = result.record()
    assert record["settings"] == {"batches": [1, 2], "iterations": 2, "warmup": 1}
    assert record["baseline"] == "pytorch:demo.onnx"
    assert record["results"][1] == {"target": str(demo_checkpoint_export[1]), "runner": "onnxruntime",
                                    "precision": "fp32", "rows": onnx_rows}


def test_bench_cli_json_and_table(demo_checkpoint_export):
    result = run_cli("bench", demo_checkpoint_export[1], "--batch", "1,3", "--iterations", "3", "--warmup", "0",
                     "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["settings"] == {"batches": [1, 3], "iterations": 3, "warmup": 0}
    assert [row["batch"] for row in data["results"][0]["rows"]] == [1, 3]
    assert data["results"][0]["precision"] == "fp32"
    table = run_cli("bench", demo_checkpoint_export[1], "--batch", "2", "--iterations", "2")
    assert table.exit_code == 0 and "samples/s" in table.stdout and "onnxruntime" in table.stdout
    missing = run_cli("bench", "nope.onnx")
    assert missing.exit_code == 2 and "nope.onnx does not exist" in missing.stderr
    bad = run_cli("bench", demo_checkpoint_export[1], "--iterations", "0")
    assert bad.exit_code == 2 and "--iterations must be at least 1" in bad.stderr
