"""Peak memory and wall time of INT8 calibration for SKNet-50 at 224x224 with 128, 512 and 1024 images.

    .venv/bin/python scripts/bench_calibration.py [--counts 128 512 1024] [--method entropy]

Images: random square crops (random size and position) of the colour photos that ship with
scikit-image and scikit-learn, saved as JPEG, so decoding and preprocessing are part of the cost.
Weights: SKNet-50 with its PyTorch initialisation (no trained weights exist); calibration cost does
not depend on the weight values. Each count runs `skdeploy calibrate` in a fresh process whose peak
RSS comes from the kernel (wait4), so counts do not share memory. Targets (issue 4): peak RSS under
3 GB at 1024 images, time linear in images.
"""
import argparse
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


def export_sknet50(path: Path) -> None:
    if path.exists():
        return
    subprocess.run([str(ROOT / ".venv/bin/skdeploy"), "export", "--arch", "sknet50", "--dynamic-batch",
                    "-o", str(path)], check=True)


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
    parser.add_argument("--counts", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--method", default="entropy", choices=["entropy", "max", "percentile"])
    parser.add_argument("--work", default=str(ROOT / "out" / "bench_calibration"))
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "sknet50.onnx"
    export_sknet50(model)
    images = work / "images"
    write_crops(images, max(args.counts))
    rows = []
    for count in args.counts:
        output = work / f"sknet50_int8_{count}.onnx"
        wall, peak = run_counted([str(ROOT / ".venv/bin/skdeploy"), "calibrate", str(model), "--int8",
                                  "--method", args.method, "--calib-data", str(images), "--calib-images",
                                  str(count), "--holdout-images", "0", "--no-cache", "--force", "-o", str(output)])
        stage = json.loads(Path(str(output) + ".json").read_text())["stages"][-1]
        rows.append({"images": count, "wall_s": round(wall, 1), "s_per_image": round(wall / count, 3),
                     "peak_rss_mb": round(peak), "calibrate_stage_s": stage["seconds"]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nSKNet-50 224x224, INT8 {args.method}, {os.cpu_count()} CPUs, onnxruntime CPU")
    print(f"{'images':>7} {'wall s':>8} {'s/image':>8} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['images']:>7} {row['wall_s']:>8} {row['s_per_image']:>8} {row['peak_rss_mb']:>12}")
    if len(rows) > 1:
        slope = np.polyfit([r["images"] for r in rows], [r["wall_s"] for r in rows], 1)
        print(f"fit: wall = {slope[1]:.1f} s + {slope[0]:.3f} s/image")


if __name__ == "__main__":
    main()
