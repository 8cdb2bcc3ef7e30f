"""INT8 calibration of SKNet-50 at 224x224 against a plain FP32 forward pass of the same graph, side by side in two
processes per image count and round: seconds per image of each, their ratio, and calibration's peak memory.

    .venv/bin/python scripts/bench_calibration.py [--counts 128 1024] [--rounds 3] [--method mse]

Images: random square crops (random size and position) of the colour photos that ship with
scikit-image and scikit-learn, saved as JPEG. Weights: SKNet-50 with random weights and randomized
BatchNorm statistics (no trained weights exist; calibration cost does not depend on the values, but
folded BatchNorm must be real). Each round runs two fresh processes back to back (peak RSS from the kernel,
wait4), both with their modules imported before the clock starts: the FP32 forward, onnxruntime over the same images
in the batch size calibration uses, with the session's time, the time to decode and preprocess the images,
and the time to load the model and open its session each kept apart; then `calibrate_model` (no held-out
scoring, no cache), whose manifest records the seconds of its image loop (decoding, the probed model,
binning) within everything it does: loading and hashing the model, choosing and hashing the images, opening
the probed session, the thresholds, the Q/DQ model and writing the outputs. Three ratios per image: the
image loops (decoding in both), everything from the file on disk (the forward's load and session start
counted too), and everything against the forward's image loop alone. The machine's speed drifts between
runs, so each round compares two phases run seconds apart, and the table gives medians over the rounds.
Targets: calibration per image <= 1.5x the forward per image; peak RSS <= 1 GB at 1024 images.
"""
import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def photos():
    import skimage.data
    from sklearn.datasets import load_sample_images

    pictures = [np.asarray(p) for p in load_sample_images().images]
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "cat"):
        pictures.append(np.asarray(getattr(skimage.data, name)()))
    return pictures


def write_crops(folder: Path, count: int, seed: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) >= count:
        return
    rng = np.random.default_rng(seed)
    pictures = photos()
    for index in range(count):
        picture = pictures[index % len(pictures)]
        height, width = picture.shape[:2]
        side = int(rng.integers(min(height, width) // 3, min(height, width) + 1))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        Image.fromarray(picture[top:top + side, left:left + side]).convert("RGB").save(
            folder / f"crop_{index:04d}.jpg", quality=90)


def export_sknet50(path: Path, seed: int = 0):
    """SKNet-50 (224x224, dynamic batch) with random weights and randomized BatchNorm statistics, so folding
    is real; returns the loaded model (its config has the preprocessing)."""
    import torch

    from skdeploy.models import load_model
    from skdeploy.stages.export import ExportSettings, export_model

    torch.manual_seed(seed)
    loaded = load_model(arch="sknet50", pretrained=False)
    randomize_batchnorm(loaded.module)
    export_model(loaded, path, ExportSettings(dynamic_batch=True), force=True)
    return loaded


def randomize_batchnorm(model):
    """Random BatchNorm statistics and affine terms (from torch's global generator), so no branch is
    silently zero and folding is really exercised."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


def measure(model: Path, images: Path, count: int, method: str, phase: str, batch: int | None = None) -> dict:
    """In this process, over `count` images: the FP32 forward ("forward") or their calibration ("calibrate"),
    in seconds per image. Only what calibrate needs is imported (not torch), so the peak RSS is the phase's."""
    import onnx

    from skdeploy.calib.collect import batch_size_for
    from skdeploy.data import InputShape, Preprocessing, open_source, select_calibration
    from skdeploy.log import QUIET, log
    from skdeploy.manifest import load_manifest
    from skdeploy.onnx.index import GraphIndex
    from skdeploy.runners import OnnxRuntimeRunner
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    for module in ("onnxruntime", "PIL.Image"):  # both phases start their clocks with these already imported
        importlib.import_module(module)

    if phase == "calibrate":
        started = time.perf_counter()
        with log.verbosity(QUIET):
            result = calibrate_model(model, model.with_name(f"sknet50_int8_{count}.onnx"),
                                     CalibrationSettings(method=method, calib_data=str(images), calib_images=count,
                                                         holdout_images=0, reuse_cache=False, batch_size=batch),
                                     force=True)
        return {"calibration_s_per_image": (time.perf_counter() - started) / count,
                "loop_s_per_image": result.collect_seconds / count}
    preprocessing = Preprocessing.from_dict(load_manifest(model)["preprocessing"])
    started = time.perf_counter()
    index = GraphIndex(onnx.load(model))
    with OnnxRuntimeRunner(model) as runner:
        start = time.perf_counter() - started  # loading the model and opening its session
        batch = batch or batch_size_for(index, index.activations(), CalibrationSettings().memory_mb)  # calibration's
        shape = InputShape(*index.shape(index.inputs[0])[1:])
        selection = select_calibration(open_source(images, shape, lambda _: preprocessing), shape, count, 0, 0)
        decode = forward = 0.0
        started = time.perf_counter()
        for samples, _ in selection.batches(selection.calibration, batch):
            loaded = time.perf_counter()
            runner.infer({index.inputs[0]: samples})
            decode, forward = decode + loaded - started, forward + time.perf_counter() - loaded
            started = time.perf_counter()
    return {"batch": batch, "forward_s_per_image": forward / count, "decode_s_per_image": decode / count,
            "forward_start_s": start}


def run_counted(command, stdout=None, cwd=None) -> tuple:
    """(wall seconds, peak RSS in MB) of one child process; its stdout goes to the file `stdout`, if given."""
    started = time.time()
    with open(stdout or os.devnull, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True, cwd=cwd)
        errors = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.time() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(map(str, command[:3]))} failed: "
                 f"{errors.strip().splitlines()[-1] if errors.strip() else status}")
    return wall, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--method", default="mse", choices=["mse", "entropy", "max", "percentile"])
    parser.add_argument("--rounds", type=int, default=3, help="forward/calibration pairs per count (default 3)")
    parser.add_argument("--batch", type=int, help="batch size of both phases (default: what calibration picks)")
    parser.add_argument("--work", default=str(ROOT / "out" / "bench_calibration"))
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # a child process: one count, one phase
    parser.add_argument("--phase", choices=["forward", "calibrate"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    work = Path(args.work)
    model, images = work / "sknet50.onnx", work / "images"
    if args.measure:
        print(json.dumps(measure(model, images, args.measure, args.method, args.phase, args.batch)))
        return
    work.mkdir(parents=True, exist_ok=True)
    if not model.exists():
        export_sknet50(model)
    write_crops(images, max(args.counts))
    rows = []
    for count in args.counts:
        rounds = []
        for _ in range(args.rounds):
            row = {"images": count}
            for phase in ("forward", "calibrate"):  # back to back, each in a fresh process
                report = work / f"measure_{count}_{phase}.json"
                _, peak = run_counted([sys.executable, __file__, "--work", str(work), "--method", args.method,
                                       "--measure", str(count), "--phase", phase]
                                      + (["--batch", str(args.batch)] if args.batch else []), stdout=report, cwd=ROOT)
                row.update(json.loads(report.read_text()))
            row["peak_rss_mb"] = round(peak)  # calibration's
            forward = row["forward_s_per_image"] + row["decode_s_per_image"]
            row.update(ratio=row["calibration_s_per_image"] / forward,
                       loop_ratio=row["loop_s_per_image"] / forward,
                       ratio_both_started=row["calibration_s_per_image"] / (forward + row["forward_start_s"] / count))
            rounds.append(row)
            print(json.dumps(row), flush=True)
        rows.append({key: (float(np.median([r[key] for r in rounds])) if key != "peak_rss_mb" else
                           max(r[key] for r in rounds)) for key in rounds[0]} | {"rounds": len(rounds)})
    print(f"\nSKNet-50 224x224, INT8 {args.method}, {os.cpu_count()} CPUs, onnxruntime CPU, s per image; medians "
          "over the rounds (peak RSS: the largest)")
    print("| images | rounds | batch | decode | forward (session) | forward: load + session start s "
          "| calibration: image loop | calibration: all | ratio: image loop | ratio: all, both from the file "
          "| ratio: all, to the forward's images alone | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['images']:.0f} | {row['rounds']} | {row['batch']:.0f} | {row['decode_s_per_image']:.3f} "
              f"| {row['forward_s_per_image']:.3f} | {row['forward_start_s']:.2f} | {row['loop_s_per_image']:.3f} "
              f"| {row['calibration_s_per_image']:.3f} | {row['loop_ratio']:.2f} | {row['ratio_both_started']:.2f} "
              f"| {row['ratio']:.2f} | {row['peak_rss_mb']} |")

if __name__ == "__main__":
    main()
