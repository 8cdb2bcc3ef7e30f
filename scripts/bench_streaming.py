"""Peak memory and images/s of `skdeploy validate` at ImageNet scale: 5,000 and 50,000 JPEGs at 224x224.

    .venv/bin/python scripts/bench_streaming.py [--counts 5000 50000] [--work /tmp/skdeploy_bench_streaming]

Model: a tiny classifier with a 3x224x224 input and 1000 classes (a strided convolution, global pooling
and one linear layer, random weights saved as a checkpoint), exported to ONNX; the cost is reading,
decoding and preprocessing the images plus running both the PyTorch reference and the ONNX candidate,
which is what validation's memory depends on. Images: 1,000 random crops (170 to 512 pixels square) of
the photos that ship with scikit-image and scikit-learn, saved as JPEG (scripts/bench_calibration.py);
a folder of N images holds N separate files copied from them in turn. Each count runs `skdeploy
validate` in a fresh process whose peak RSS comes from the kernel (wait4). Targets: peak RSS
<= 2 GB at 50,000 images and < 10% growth from 5,000.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_calibration import run_counted, write_crops  # noqa: E402

UNIQUE_IMAGES = 1000
TINY_CLASSIFIER = '''
import torch


def make():
    """3x224x224 -> 1000 logits."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 8, stride=8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 1000))
'''


def skdeploy(*args) -> list:
    """The command line running this checkout's skdeploy with this interpreter."""
    return [sys.executable, "-m", "skdeploy", *map(str, args)]


def export_tiny_classifier(work: Path) -> Path:
    """The ONNX export of the tiny classifier, with the checkpoint its manifest names for the reference."""
    import torch

    onnx_path, checkpoint = work / "tiny1000.onnx", work / "tiny1000.pt"
    if not onnx_path.exists():
        (work / "tiny1000.py").write_text(TINY_CLASSIFIER)
        namespace = {}
        exec(TINY_CLASSIFIER, namespace)
        torch.manual_seed(0)
        torch.save(namespace["make"]().state_dict(), checkpoint)
        subprocess.run(skdeploy("export", "--model", f"{work / 'tiny1000.py'}:make", "--checkpoint", checkpoint,
                                "--input-shape", "3x224x224", "--dynamic-batch", "--force", "-o", onnx_path),
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return onnx_path


def image_folders(work: Path, counts) -> dict:
    """{count: folder of exactly that many JPEG files}, copies of UNIQUE_IMAGES crops in turn."""
    unique = work / "unique"
    write_crops(unique, UNIQUE_IMAGES)
    crops = sorted(unique.glob("*.jpg"))[:UNIQUE_IMAGES]
    folders = {}
    for count in counts:
        folder = folders[count] = work / f"images_{count}"
        folder.mkdir(exist_ok=True)
        for index in range(count):
            target = folder / f"image_{index:05d}.jpg"
            if not target.exists():
                shutil.copyfile(crops[index % len(crops)], target)
    return folders


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--work", default="/tmp/skdeploy_bench_streaming")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = export_tiny_classifier(work)
    started = time.time()
    folders = image_folders(work, args.counts)
    print(f"images ready in {time.time() - started:.0f} s", flush=True)
    rows = []
    for count in sorted(args.counts):
        report = work / f"validate_{count}.json"
        # the reference is built from this script's own model file, which validate imports only when trusted
        wall, peak = run_counted(skdeploy("validate", "--candidate", model, "--data", folders[count], "--batch",
                                          args.batch, "--min-agreement", 0, "--max-top1-drop", 100, "--json",
                                          "--trust-model-code"),
                                 stdout=report, cwd=ROOT)
        result = json.loads(report.read_text())
        assert result["data"]["count"] == count, result["data"]
        rows.append({"images": count, "wall_s": round(wall, 1), "images_per_s": round(count / wall, 1),
                     "peak_rss_mb": round(peak), "agreement": result["candidates"][0]["metrics"]["agreement"]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nskdeploy validate, 3x224x224 -> 1000 classes, PyTorch reference + onnxruntime candidate, "
          f"batch {args.batch}, {os.cpu_count()} CPUs")
    print(f"{'images':>7} {'wall s':>8} {'images/s':>9} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['images']:>7} {row['wall_s']:>8} {row['images_per_s']:>9} {row['peak_rss_mb']:>12}")
    if len(rows) > 1:
        growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
        print(f"peak RSS growth {rows[0]['images']} -> {rows[-1]['images']}: {growth * 100:+.1f}% "
              f"(target < 10%); at {rows[-1]['images']}: {rows[-1]['peak_rss_mb']} MB (target <= 2048)")


if __name__ == "__main__":
    main()
