"""Build time, peak memory and engine size per model and precision, with TensorRT-RTX on this CPU.

    .venv/bin/python scripts/bench_engines.py                       # demo + sknet50, fp32/fp16/int8
    .venv/bin/python scripts/bench_engines.py --models sknet-fmnist --compute-capability 8.6 --json

Each model is exported once (dynamic batch; the demo model with its shipped weights when present, else
random weights: build cost does not depend on the values) and calibrated to FP16 and INT8 in this
process; then every engine is built by `skdeploy build-engine --json` in a fresh process, for the same
compute capabilities and batch profile 1/8/32, so its peak RSS is what a user's build costs.
Prints a Markdown table (the one in docs/engines.md) or JSON.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "cat", "colorwheel"]


def export(name, folder: Path) -> Path:
    from skdeploy.models import load_model
    from skdeploy.stages.export import ExportSettings, export_model

    try:
        loaded, weights = load_model(arch=name, pretrained=True), "trained"
    except Exception:  # no shipped weights for this model (or not yet): build cost is the same
        loaded, weights = load_model(arch=name, pretrained=False), "random"
    path = folder / f"{name}.onnx"
    export_model(loaded, path, ExportSettings(dynamic_batch=True))
    print(f"exported {name} ({weights} weights)", file=sys.stderr)
    return path


def photo_folder(folder: Path) -> Path:
    """Colour photos from scikit-image: calibration data for the ImageNet-size models."""
    import skimage.data
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.png")
    return folder


def measure(args) -> list:
    """One row per model and precision: calibration and engine build costs."""
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = photo_folder(tmp / "photos")
        for model in args.models.split(","):
            source = export(model, tmp)
            for precision in args.precisions.split(","):
                onnx, calibration_seconds = source, None
                if precision != "fp32":
                    onnx = tmp / f"{model}.{precision}.onnx"
                    calibration_seconds = calibrate_model(source, onnx, CalibrationSettings(
                        precision=precision, calib_data=None if model == "sknet-fmnist" else str(photos),
                        calib_images=args.calib_images, holdout_images=0)).seconds
                started = time.time()
                skdeploy = str(Path(sys.executable).with_name("skdeploy"))
                done = subprocess.run([skdeploy, "build-engine", str(onnx), "--target",
                                       "rtx", "--compute-capability", args.compute_capability,
                                       "-o", str(tmp / f"{model}-{precision}.engine"), "--json"],
                                      capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{model} {precision}: {done.stderr.strip()}")
                engine = json.loads(done.stdout)
                rows.append({"model": model, "precision": precision,
                             "compute_capabilities": engine["compute_capabilities"],
                             "build_seconds": engine["build_seconds"], "peak_rss_mb": engine["peak_rss_mb"],
                             "engine_mib": round(engine["engine_bytes"] / 2**20, 1),
                             "calibration_seconds": calibration_seconds,
                             "process_seconds": round(time.time() - started, 1),
                             "warnings": len(engine["warnings"]), "backend_version": engine["backend_version"]})
                print(f"{model} {precision}: {rows[-1]}", file=sys.stderr)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sknet-fmnist,sknet50")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--compute-capability", default="8.6,8.9")
    parser.add_argument("--calib-images", type=int, default=64, help="calibration samples (the demo model's set; "
                        "ImageNet-size models use the 8 scikit-image photos)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from skdeploy.log import QUIET, log

    with log.verbosity(QUIET):
        rows = measure(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"TensorRT-RTX {rows[0]['backend_version']}, CPU-only, compute capabilities "
          f"{', '.join(rows[0]['compute_capabilities'])}, batch profile 1/8/32\n")
    print("| model | precision | build (s) | whole command (s) | peak RSS (MiB) | engine (MiB) | calibration (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        calib = "—" if row["calibration_seconds"] is None else f"{row['calibration_seconds']:.1f}"
        print(f"| {row['model']} | {row['precision']} | {row['build_seconds']:.1f} | {row['process_seconds']:.1f} | "
              f"{row['peak_rss_mb']:.0f} | {row['engine_mib']:.1f} | {calib} |")


if __name__ == "__main__":
    main()
