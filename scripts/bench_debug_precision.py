"""Time and peak memory of `skdeploy debug-precision` against a plain `skdeploy validate` of the same INT8 model on
the same samples, each in a fresh process (peak RSS from the kernel, wait4), for the demo model and SKNet-50.

    .venv/bin/python scripts/bench_debug_precision.py [--models demo sknet50] [--samples 500 16] [--work DIR]

demo: the shipped demo model, exported and calibrated (INT8, mse, shipped calibration data); the samples are the
first N Fashion-MNIST test images in one .npz. sknet50: SKNet-50 at 224x224 with random weights and randomized
BatchNorm statistics saved as a checkpoint (validate builds its PyTorch reference from it), calibrated on 64
random crops of the photos scikit-image and scikit-learn ship; the samples are N other crops in a folder.
Both commands read the same file or folder, all of it. validate runs with thresholds that cannot fail (only its
cost is measured); debug-precision with `--min-agreement` per model (the SKNet-50 run with random weights sets 0:
its agreement search would add layer after layer to a model whose classes mean nothing).
The memory target: debug-precision's peak RSS within 2x validate's.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_calibration import ROOT, export_sknet50, run_counted, write_crops  # noqa: E402

SKDEPLOY = [sys.executable, "-m", "skdeploy"]
LAX = ["--min-agreement", "0", "--min-cosine", "-1", "--min-snr-db", "-1000", "--max-top1-drop", "100"]


def skdeploy(*args, cwd):
    subprocess.run(SKDEPLOY + [str(a) for a in args], check=True, cwd=cwd, stdout=subprocess.DEVNULL)


def prepare_demo(work: Path, samples: int) -> tuple:
    from skdeploy.data import load_fashion_mnist

    if not (work / "demo_int8.onnx").exists():
        skdeploy("export", "-o", "demo.onnx", "--dynamic-batch", "--force", cwd=work)
        skdeploy("calibrate", "demo.onnx", "--int8", "-o", "demo_int8.onnx", "--force", cwd=work)
    pixels, labels = load_fashion_mnist("test")
    data = work / f"demo_samples_{samples}.npz"
    np.savez(data, images=pixels[:samples], labels=labels[:samples])
    return work / "demo_int8.onnx", data, "0.99"


def prepare_sknet50(work: Path, samples: int) -> tuple:
    import torch

    from skdeploy.models import load_model
    from skdeploy.stages.export import ExportSettings, export_model

    if not (work / "sknet50_int8.onnx").exists():
        loaded = export_sknet50(work / "sknet50_plain.onnx")
        torch.save(loaded.module.state_dict(), work / "sknet50.pt")
        export_model(load_model(arch="sknet50", checkpoint=work / "sknet50.pt"), work / "sknet50.onnx",
                     ExportSettings(dynamic_batch=True), force=True)
        write_crops(work / "calib", 64, seed=0)
        skdeploy("calibrate", "sknet50.onnx", "--int8", "--calib-data", "calib", "--calib-images", 64,
                 "--holdout-images", 0, "-o", "sknet50_int8.onnx", "--force", cwd=work)
    data = work / f"sknet50_samples_{samples}"
    write_crops(data, samples, seed=1)
    return work / "sknet50_int8.onnx", data, "0"


def measure(model: str, samples: int, work: Path) -> dict:
    candidate, data, min_agreement = {"demo": prepare_demo, "sknet50": prepare_sknet50}[model](work, samples)
    validate_s, validate_mb = run_counted(SKDEPLOY + ["validate", "--candidate", str(candidate), "--data", str(data),
                                                      "--json"] + LAX, cwd=work)
    report = work / f"{model}_debug_{samples}.json"
    debug_s, debug_mb = run_counted(SKDEPLOY + ["debug-precision", str(candidate), "--data", str(data), "--samples",
                                                str(samples), "--min-agreement", min_agreement, "--json"],
                                    stdout=report, cwd=work)
    record = json.loads(report.read_text())
    return {"model": model, "samples": samples, "layers": len(record["layers"]), "passes": record["passes"],
            "validate_s": round(validate_s, 1), "validate_peak_mb": round(validate_mb),
            "debug_precision_s": round(debug_s, 1), "debug_precision_peak_mb": round(debug_mb),
            "memory_ratio": round(debug_mb / validate_mb, 2), "within_2x": debug_mb <= 2 * validate_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "sknet50"], choices=["demo", "sknet50"])
    parser.add_argument("--samples", nargs="+", type=int, default=[500, 16],
                        help="samples per model, in the order of --models")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench_debug_precision")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [measure(model, samples, args.work) for model, samples in zip(args.models, args.samples, strict=True)]
    print(json.dumps(rows, indent=2))
    if not all(row["within_2x"] for row in rows):
        sys.exit("debug-precision's peak memory exceeds 2x validate's")


if __name__ == "__main__":
    main()
