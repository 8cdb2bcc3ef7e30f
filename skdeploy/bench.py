"""Latency percentiles and throughput per batch size, for any runner (onnxruntime, TensorRT, PyTorch).

    rows = bench_runner(runner, BenchSettings(batches=(1, 8, 32), iterations=50))
    result = bench(["demo.onnx", "demo.int8.onnx"])       # every target, speedups vs the first

Each batch size gets `warmup` untimed calls, then `iterations` timed calls of runner.infer() on the
same seeded random batch; latency is wall time per call, throughput is samples per second over the
timed calls.
"""
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data import MAX_BATCH
from .errors import UsageError, check_field_types, require_memory
from .log import log
from .manifest import artifact_precision
from .reference import reference_from_manifest


@dataclass
class BenchSettings:
    batches: tuple = (1, 8, 32)
    iterations: int = 50
    warmup: int = 5

    def __post_init__(self):
        check_field_types(self)
        if not self.batches or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in self.batches):
            raise UsageError(f"`batches` sizes must be positive integers, got {self.batches}")
        if max(self.batches) > MAX_BATCH:
            raise UsageError(f"`batches` sizes must be at most {MAX_BATCH}, got {self.batches}")
        if self.iterations < 1 or self.warmup < 0:
            raise UsageError("`iterations` must be at least 1 and `warmup` 0 or more")


def latency_stats(seconds: list, batch: int) -> dict:
    """p50/p90/p99/mean latency in ms and throughput in samples/s from per-call wall times."""
    ms = np.asarray(seconds, np.float64) * 1000.0
    return {"batch": batch, "iterations": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "throughput": float(batch * len(ms) / (ms.sum() / 1000.0))}


@dataclass
class TargetTimings:
    """One benchmarked target: a row per batch size (latency_stats, or {batch, skipped})."""

    target: str
    runner: str
    precision: str
    rows: list


@dataclass
class BenchResult:
    """Every target timed with the same settings; `record()` is the --json form."""

    settings: BenchSettings
    baseline: str  # the target speedups are relative to
    targets: list  # TargetTimings, in the order benchmarked

    def record(self) -> dict:
        return {"settings": {"batches": list(self.settings.batches), "iterations": self.settings.iterations,
                             "warmup": self.settings.warmup}, "baseline": self.baseline,
                "results": [asdict(timings) for timings in self.targets]}


def add_speedups(tables: list) -> None:
    """Give each timed row its speedup: the first table's p50 at that batch size over the row's p50
    (`tables`: one list of rows per target)."""
    baseline = {row["batch"]: row for row in tables[0] if "skipped" not in row}
    for rows in tables:
        for row in rows:
            base = baseline.get(row["batch"])
            if "skipped" not in row and base:
                row["speedup"] = base["p50_ms"] / row["p50_ms"]


def bench_runner(runner, settings: BenchSettings, advance=None) -> list:
    """One row per batch size; sizes the model cannot take get a row with "skipped" and the reason."""
    spec = runner.input_specs()[0]
    if any(not isinstance(d, int) for d in spec.shape[1:]):
        raise UsageError(f"{runner.name}: input '{spec.name}' {spec.shape_text} has dynamic dimensions besides the "
                         "batch; benchmarking needs a fixed sample shape")
    low, high = runner.batch_limits()
    rng = np.random.default_rng(0)
    rows = []
    for batch in settings.batches:
        if batch < low or (high is not None and batch > high):
            rows.append({"batch": batch, "skipped": f"the model takes batches {low}..{high or 'any'}"})
            if advance:
                advance(settings.warmup + settings.iterations)
            continue
        shape = (batch, *spec.shape[1:])
        require_memory(int(np.prod(shape)) * 8, f"a batch of {batch} samples of shape {list(spec.shape[1:])}")
        feed = rng.standard_normal(shape).astype(spec.dtype)
        for _ in range(settings.warmup):
            runner.infer(feed)
            if advance:
                advance()
        seconds = []
        for _ in range(settings.iterations):
            start = time.perf_counter()
            runner.infer(feed)
            seconds.append(time.perf_counter() - start)
            if advance:
                advance()
        rows.append(latency_stats(seconds, batch))
    return rows


def target_runner(target, checkpoint=None, runner_options=None):
    """(runner, precision) for an ONNX file, an engine, or a model name/spec (PyTorch eager, FP32)."""
    from .runners import load_runner, runner_kind

    kind = runner_kind(target)
    wanted = ("cuda_graph",) if kind == "tensorrt" else ("threads",)
    options = {key: value for key, value in (runner_options or {}).items() if key in wanted}
    if kind == "pytorch":
        return load_runner(target, checkpoint=checkpoint, **options), "fp32"
    if checkpoint:
        raise UsageError("`checkpoint` applies to a PyTorch model name, not to an ONNX file or engine")
    if not Path(target).is_file():
        raise UsageError(f"{target} does not exist")
    runner = load_runner(target, **options)
    return runner, artifact_precision(runner.manifest)


def bench(targets, settings: BenchSettings | None = None, checkpoint=None, runner_options=None,
          reference: bool = False, trust_model_code: bool = False) -> BenchResult:
    """Benchmark every target with the same settings; rows carry speedup vs the first one benchmarked
    (the PyTorch model of the first artifact's manifest when `reference`; model code it names is
    imported only with `trust_model_code`)."""
    settings = settings or BenchSettings()
    targets = [str(t) for t in targets]
    if not targets:
        raise UsageError("give at least one ONNX file, engine or model name to benchmark")
    threads = (runner_options or {}).get("threads", 0)
    plan = [(f"pytorch:{Path(targets[0]).name}",
             lambda: (reference_from_manifest(targets[0], trust_model_code=trust_model_code).runner(threads),
                      "fp32"))] if reference else []
    plan += [(target, lambda target=target: target_runner(target, checkpoint, runner_options)) for target in targets]
    timed = []
    for label, make in plan:
        runner, precision = make()
        total = len(settings.batches) * (settings.warmup + settings.iterations)
        with runner, log.progress(total, f"{Path(label).name} ({runner.name})") as advance:
            rows = bench_runner(runner, settings, advance)
        timed.append(TargetTimings(label, runner.name, precision, rows))
    add_speedups([timings.rows for timings in timed])
    return BenchResult(settings, timed[0].target, timed)
