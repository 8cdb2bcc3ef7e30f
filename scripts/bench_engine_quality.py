"""Engine quality side by side: what one builder makes of each quantizer's graph.

    /tmp/venv-modelopt/bin/python scripts/bench_engine_quality.py                        # demo and SKNet-50
    /tmp/venv-modelopt/bin/python scripts/bench_engine_quality.py --models demo --json

Each model (the trained demo model; SKNet-50 with random weights and randomized BatchNorm statistics, see
scripts/bench_calibration.py) is exported once with the SK rewrite and once without; the graphs below are
built by TensorRT-RTX on this CPU (compute capability 8.6, batch profile 1/8/32), and each build's layer
list (skdeploy/engine/layers.py) gives the columns:

    ours INT8 (default)     skdeploy calibrate, default settings
    ours INT8, no SK rewrite  the same, on the export without the SK select rewrite
    ours FP16               skdeploy calibrate --fp16
    ModelOpt max / entropy  NVIDIA ModelOpt ONNX PTQ (scripts/compare_modelopt.py's call)
    onnxruntime             quantize_static, Q/DQ, symmetric per-channel INT8 (scripts/compare_modelopt.py's call),
                            biases left FP32: TensorRT cannot parse its INT32 bias DequantizeLinear

Run it with the Python of the ModelOpt venv (docs/precision.md); without ModelOpt its rows are left out with
a note. All quantizers get the same preprocessed calibration images. Prints a Markdown table or JSON.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from compare_modelopt import modelopt, onnxruntime_static, ours, preprocessed

CCS = ["8.6"]


def inputs(model: str, work: Path, calib_images: int):
    """(FP32 export with the SK rewrite, the export without it, calibration .npy) for `model`."""
    from skdeploy.stages.export import ExportSettings, export_model

    if model == "demo":
        from skdeploy.data import default_calibration_path
        from skdeploy.manifest import load_manifest
        from skdeploy.models import load_model

        loaded = load_model()
        source = work / "demo.onnx"
        export_model(loaded, source, ExportSettings(dynamic_batch=True), force=True)
        data = default_calibration_path(load_manifest(source))
    else:
        from bench_calibration import export_sknet50, write_crops

        source = work / "sknet50.onnx"
        loaded = export_sknet50(source)
        data = work / "crops"
        write_crops(data, calib_images)
    plain = work / f"{source.stem}-no-sk-rewrite.onnx"
    export_model(loaded, plain, ExportSettings(dynamic_batch=True, sk_rewrite=False), force=True)
    array = preprocessed(data, loaded.config.input_size, loaded.config.preprocessing, calib_images)
    np.save(work / "calibration.npy", array)
    return source, plain, work / "calibration.npy"


def graphs(source: Path, plain: Path, calibration: Path, calib_images: int, with_modelopt: bool) -> dict:
    """name -> how to make that graph at a path. onnxruntime runs before ModelOpt: ModelOpt patches
    onnxruntime.quantization's calibrators in the process (see scripts/compare_modelopt.py)."""
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    def fp16(out):
        calibrate_model(source, out, CalibrationSettings(precision="fp16", calib_data=str(calibration),
                                                         calib_images=calib_images, holdout_images=0), force=True)

    made = {"ours INT8 (default)": lambda out: ours(source, calibration, out, calib_images),
            "ours INT8, no SK rewrite": lambda out: ours(plain, calibration, out, calib_images),
            "ours FP16": fp16,
            "onnxruntime quantize_static": lambda out: onnxruntime_static(source, calibration, out,
                                                                          quantize_bias=False)}
    if with_modelopt:
        made["ModelOpt max"] = lambda out: modelopt(source, calibration, out, "max")
        made["ModelOpt entropy"] = lambda out: modelopt(source, calibration, out, "entropy")
    return made


def measure(onnx_path: Path, engine_path: Path) -> dict:
    """One TensorRT-RTX CPU build of `onnx_path` and what its layer list says."""
    from skdeploy.engine import load_layers
    from skdeploy.engine.layers import sk_select_leftovers
    from skdeploy.stages.build import BuildSettings, build_engine

    result = build_engine(onnx_path, engine_path, BuildSettings(backend="tensorrt-rtx", compute_capabilities=CCS,
                                                                min_batch=1, opt_batch=8, max_batch=32), force=True)
    summary = result.engine.layers
    convs = summary["convolutions"]
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {"kernels": summary["kernels"], "int8_convs": len(convs["int8"]),
            "convs": sum(len(names) for names in convs.values()), "not_int8": convs["fp16"] + convs["fp32"],
            "reformats": len(summary["reformats"]), "activation_mib": summary["activation_bytes"] / 2**20,
            "weights_mib": summary["weights_bytes"] / 2**20, "engine_mib": result.engine.engine_bytes / 2**20,
            "build_seconds": result.engine.build_seconds,
            "sk_select_leftovers": len(sk_select_leftovers(load_layers(engine_path)["layers"], model)),
            "backend_version": result.engine.backend_version}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,sknet50", help="demo, sknet50 or both (comma separated)")
    parser.add_argument("--calib-images", type=int, default=64, help="calibration images per quantizer")
    parser.add_argument("--out", help="keep the graphs and engines here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from skdeploy.log import QUIET, log

    try:
        import modelopt.onnx.quantization  # noqa: F401
        with_modelopt = True
    except ImportError as exc:
        with_modelopt = False
        print(f"ModelOpt rows left out: {exc} (run with the ModelOpt venv's Python, docs/precision.md)",
              file=sys.stderr)
    rows = []
    work_root = Path(args.out or tempfile.mkdtemp(prefix="bench_engine_quality_")).resolve()
    for model in args.models.split(","):
        work = work_root / model
        work.mkdir(parents=True, exist_ok=True)
        with log.verbosity(QUIET):
            source, plain, calibration = inputs(model, work, args.calib_images)
        for name, make in graphs(source, plain, calibration, args.calib_images, with_modelopt).items():
            stem = name.lower().replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
            graph = work / f"{stem}.onnx"
            started = time.time()
            with log.verbosity(QUIET):
                make(graph)
                row = {"model": model, "graph": name, "quantize_seconds": round(time.time() - started, 1),
                       **measure(graph, work / f"{stem}.engine")}
            rows.append(row)
            print(f"{model} / {name}: {json.dumps(row)}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"TensorRT-RTX {rows[0]['backend_version']}, CPU-only build, compute capability {', '.join(CCS)}, "
          f"batch profile 1/8/32, {args.calib_images} calibration images per quantizer\n")
    print("| model | graph | kernels | INT8 convs | reformat kernels | activation MiB | weights MiB | engine MiB "
          "| build s | SK select kernels left |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['model']} | {row['graph']} | {row['kernels']} | {row['int8_convs']}/{row['convs']} | "
              f"{row['reformats']} | {row['activation_mib']:.1f} | {row['weights_mib']:.1f} | "
              f"{row['engine_mib']:.1f} | {row['build_seconds']:.1f} | {row['sk_select_leftovers']} |")


if __name__ == "__main__":
    main()
