"""CPU runtime benchmark: PyTorch eager vs onnxruntime FP32 (optimized graph) vs FP16 vs INT8 (Q/DQ),
side by side in one run, for the demo model and SKNet-50, as ratios to PyTorch eager.

    .venv/bin/python scripts/bench_runtime.py                       # both models, default settings
    .venv/bin/python scripts/bench_runtime.py --models sknet-fmnist --iterations 100

Each model is exported (dynamic batch, BN folded, SK select rewritten), calibrated to FP16 and INT8
with skdeploy.calib, and every variant is timed with skdeploy.bench on the same batches. The demo
model calibrates on its shipped Fashion-MNIST set; SKNet-50 (no trained weights exist) on crops of
scikit-image's sample photos, which is enough for speed. Prints a table and writes JSON.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skdeploy import ui  # noqa: E402
from skdeploy.bench import BenchSettings, bench_runner  # noqa: E402
from skdeploy.log import log  # noqa: E402
from skdeploy.models import REGISTRY, load_model  # noqa: E402
from skdeploy.runners import OnnxRuntimeRunner, TorchRunner  # noqa: E402
from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model  # noqa: E402
from skdeploy.stages.export import ExportSettings, export_model  # noqa: E402

BATCHES = {"sknet-fmnist": (1, 32), "sknet50": (1, 8)}
ITERATIONS = {"sknet-fmnist": 30, "sknet50": 5}


def photo_crops(path: Path, count=32, size=256, seed=0) -> Path:
    """Random size x size crops of scikit-image's colour sample photos, as uint8 (N, H, W, 3)."""
    from skimage import data

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")]
    photos = [p for p in photos if p.ndim == 3 and min(p.shape[:2]) >= size]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        crops.append(photo[top:top + size, left:left + size, :3])
    np.savez(path, images=np.stack(crops).astype(np.uint8))
    return path


def prepare(arch: str, folder: Path) -> tuple:
    """(loaded model, {precision: onnx path}) with FP32, FP16 and INT8 ONNX files."""
    config = REGISTRY[arch]
    pretrained = config.weights_path is not None and Path(str(config.weights_path)).exists()
    if config.weights and not pretrained:
        log.warning(f"{arch}: shipped weights not found; timing random weights")
    loaded = load_model(arch=arch, pretrained=pretrained)
    fp32 = folder / f"{arch}.onnx"
    export_model(loaded, fp32, ExportSettings(dynamic_batch=True), force=True)
    calib_data = None if config.dataset == "fashion-mnist" else str(photo_crops(folder / f"{arch}-photos.npz"))
    paths = {"fp32": fp32}
    for precision in ("fp16", "int8"):
        paths[precision] = folder / f"{arch}.{precision}.onnx"
        calibrate_model(fp32, paths[precision], CalibrationSettings(
            precision=precision, calib_data=calib_data, calib_images=32 if calib_data else 256, holdout_images=0),
            force=True)
    return loaded, paths


def run(models, iterations, warmup, threads, folder: Path) -> dict:
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "python": platform.python_version()}, "models": {}}
    for arch in models:
        started = time.time()
        loaded, paths = prepare(arch, folder)
        settings = BenchSettings(batches=BATCHES.get(arch, (1, 8)), iterations=iterations or ITERATIONS.get(arch, 10),
                                 warmup=warmup)
        variants = [("pytorch eager fp32", TorchRunner(loaded, threads=threads))]
        variants += [(f"onnxruntime {p}", OnnxRuntimeRunner(paths[p], threads=threads))
                     for p in ("fp32", "fp16", "int8")]
        rows = {}
        for label, runner in variants:
            with runner:
                rows[label] = bench_runner(runner, settings)
            log.info(f"{arch}: {label} done")
        results["models"][arch] = {"settings": {"batches": list(settings.batches), "iterations": settings.iterations,
                                                "warmup": settings.warmup, "threads": threads},
                                   "seconds": round(time.time() - started, 1), "rows": rows}
    return results


def print_table(results):
    columns = ["model", "batch", "variant", "p50 ms", "p90 ms", "p99 ms", "samples/s", "vs PyTorch eager"]
    table = []
    for arch, entry in results["models"].items():
        rows = entry["rows"]
        base = {r["batch"]: r for r in rows["pytorch eager fp32"]}
        for batch in entry["settings"]["batches"]:
            for label, variant_rows in rows.items():
                row = next(r for r in variant_rows if r["batch"] == batch)
                table.append((arch, batch, label, *(f"{row[key]:.2f}" for key in ("p50_ms", "p90_ms", "p99_ms")),
                              f"{row['throughput']:.1f}", f"{base[batch]['p50_ms'] / row['p50_ms']:.2f}x"))
    ui.table("CPU latency: PyTorch eager vs onnxruntime (p50 ratio > 1 = faster than eager)", columns, table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sknet-fmnist,sknet50", help="comma-separated registered names")
    parser.add_argument("--iterations", type=int, default=0, help="timed calls per batch (default per model)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for every runtime (default 1: equal footing and stable numbers on a "
                             "shared machine; 0: each runtime's default)")
    parser.add_argument("--out", default=str(REPO / "out" / "bench_runtime"), help="folder for models and JSON")
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in REGISTRY]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(REGISTRY)}")
    results = run(models, args.iterations, args.warmup, args.threads, folder)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {folder / 'results.json'}")


if __name__ == "__main__":
    main()
