import click

from .. import ui
from ..errors import UsageError
from . import json_option, verify_option


def parse_batches(text) -> tuple:
    """--batch: '1,8,32' -> (1, 8, 32); BenchSettings checks the sizes."""
    try:
        return tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--batch must be comma-separated integers like 1,8,32, got {text!r}") from None


@click.command("bench")
@click.argument("targets", nargs=-1, required=True)
@click.option("--batch", "batches", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--iterations", type=int, default=50, show_default=True, help="Timed calls per batch size.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed calls per batch size first.")
@click.option("--torch", "with_torch", is_flag=True,
              help="Also benchmark (first, as the baseline) the PyTorch model the first artifact's manifest records.")
@click.option("--trust-model-code", is_flag=True, help="With --torch: let a manifest's model spec that is a Python "
              "file or module be imported (it runs that code).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights for a PyTorch model name target.")
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="CPU threads for onnxruntime/PyTorch (0: their default).")
@click.option("--cuda-graph", is_flag=True, help="TensorRT: capture and replay the enqueue as a CUDA graph.")
@verify_option
@json_option
def command(targets, batches, iterations, warmup, with_torch, trust_model_code, checkpoint, threads, cuda_graph,
            as_json) -> None:
    """Latency p50/p90/p99 and throughput per batch size of ONNX models, engines or PyTorch models.

    TARGETS are .onnx files (onnxruntime, CPU), engines (.engine/.plan, TensorRT) or model names
    (PyTorch eager, FP32). Speedups are relative to the first one benchmarked.

    \b
    Examples:
      skdeploy bench out/demo.onnx out/demo.fp16.onnx out/demo.int8.onnx --torch
      skdeploy bench engines/demo.engine --batch 1,8,32 --iterations 200 --cuda-graph
      skdeploy bench sknet50 --batch 1,8 --iterations 10 --json
    """
    from ..bench import BenchSettings, bench

    settings = BenchSettings(batches=parse_batches(batches), iterations=iterations, warmup=warmup)
    result = bench(targets, settings, checkpoint=checkpoint, runner_options={"threads": threads,
                                                                            "cuda_graph": cuda_graph},
                   reference=with_torch, trust_model_code=trust_model_code)
    if as_json:
        ui.emit_json(result.record())
        return
    rows = []
    for timings in result.targets:
        for row in timings.rows:
            if "skipped" in row:
                rows.append((timings.target, timings.runner, timings.precision, row["batch"], "-", "-", "-",
                             "-", f"skipped: {row['skipped']}"))
                continue
            rows.append((timings.target, timings.runner, timings.precision, row["batch"],
                         f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}", f"{row['p99_ms']:.2f}",
                         f"{row['throughput']:.1f}", f"{row['speedup']:.2f}x" if "speedup" in row else "-"))
    ui.table(f"latency (ms) and throughput (samples/s), {settings.iterations} iterations; speedup vs "
             f"{result.baseline} (p50)",
             ["target", "runner", "precision", "batch", "p50", "p90", "p99", "samples/s", "speedup"], rows)
