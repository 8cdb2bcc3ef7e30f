"""Our INT8 calibrator against NVIDIA ModelOpt's ONNX PTQ and onnxruntime's quantize_static, in one process, on the
same FP32 ONNX and the same preprocessed calibration images.

    /tmp/venv-modelopt/bin/python scripts/compare_modelopt.py --model demo     # 512 calibration images
    /tmp/venv-modelopt/bin/python scripts/compare_modelopt.py --model sknet50 --calib-images 128

Run it with a Python that has nvidia-modelopt (installed without its [onnx] extra, see docs/precision.md)
and onnxruntime; `pip install 'skdeploy[compare]'` lists what that takes. Each row prints the calibration
wall time, the peak RSS while it ran (sampled every 20 ms; the process's baseline is included), the Q/DQ
node count, and top-1 agreement with the FP32 ONNX (demo: with FP32 PyTorch, on the Fashion-MNIST test
images) and top-1 (demo only). SKNet-50 uses random weights with randomized BatchNorm statistics (its
agreement is over random photo crops and says little; its row is for time and memory).
Targets: our agreement >= ModelOpt's and our calibration wall time <= ModelOpt's.
"""
import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]


class PeakRss:
    """The largest resident set size of this process while the `with` block runs (MB)."""

    def __enter__(self):
        self.peak, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while True:
            with open("/proc/self/status") as status:
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            self.peak = max(self.peak, rss // 1024)
            if self._done.wait(0.02):
                return

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def preprocessed(folder_or_file, shape, preprocessing, count) -> np.ndarray:
    """The first `count` samples of the seeded permutation calibrate uses, preprocessed: (count, C, H, W)."""
    from skdeploy.data import InputShape, open_source, select_calibration

    shape = InputShape(*shape)
    selection = select_calibration(open_source(folder_or_file, shape, lambda _: preprocessing), shape, count, 0, 0)
    return np.concatenate([batch for batch, _ in selection.batches(selection.calibration, 256)])


def demo_inputs(work: Path, calib_images: int, test_images: int):
    """(FP32 ONNX, calibration array, test array, labels, reference top-1) for the trained demo model."""
    from skdeploy.data import default_calibration_path, load_fashion_mnist
    from skdeploy.manifest import load_manifest
    from skdeploy.models import load_model
    from skdeploy.reference import reference_of
    from skdeploy.stages.export import ExportSettings, export_model

    loaded = load_model()
    source = work / "demo.onnx"
    export_model(loaded, source, ExportSettings(dynamic_batch=True), force=True)
    calibration = preprocessed(default_calibration_path(load_manifest(source)), loaded.config.input_size,
                               loaded.config.preprocessing, calib_images)
    pixels, labels = load_fashion_mnist("test")
    images = loaded.config.preprocessing.arrays(pixels[:test_images])
    with reference_of(loaded).runner() as runner:
        reference = runner.run_batched(images, 500).argmax(1)
    return source, calibration, images, labels[:test_images], reference


def sknet50_inputs(work: Path, calib_images: int, test_images: int, seed=0):
    """SKNet-50 at 224x224 with random weights and randomized BatchNorm statistics (so folding is real),
    calibrated and tested on random crops of sample photos (no labels; the FP32 ONNX is the reference)."""
    from bench_calibration import export_sknet50, write_crops

    source = work / "sknet50.onnx"
    loaded = export_sknet50(source, seed)
    crops = work / "crops"
    write_crops(crops, calib_images + test_images, seed)
    array = preprocessed(crops, loaded.config.input_size, loaded.config.preprocessing, calib_images + test_images)
    calibration, images = array[:calib_images], array[calib_images:]
    return source, calibration, images, None, predict(source, images)


def predict(model, images, batch=100) -> np.ndarray:
    from skdeploy.runners import OnnxRuntimeRunner

    with OnnxRuntimeRunner(model) as runner:
        return runner.run_batched(images, batch).argmax(1)


def ours(source, calibration_npy, output, calib_images):
    from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model

    calibrate_model(source, output, CalibrationSettings(calib_data=str(calibration_npy), calib_images=calib_images,
                                                        holdout_images=0), force=True)


def modelopt(source, calibration_npy, output, method):
    from modelopt.onnx.quantization import quantize

    quantize(str(source), quantize_mode="int8", calibration_data=np.load(calibration_npy),
             calibration_method=method, calibration_eps=["cpu"], high_precision_dtype="fp32",
             output_path=str(output), log_level="WARNING")


def onnxruntime_static(source, calibration_npy, output, batch=16, quantize_bias=True):
    """onnxruntime's quantize_static with its default MinMax calibration, as a Q/DQ graph comparable to ours:
    symmetric INT8 activations, per-channel symmetric INT8 weights. The reader must name the graph's input.
    `quantize_bias=False` keeps biases FP32 (TensorRT takes no INT32 DequantizeLinear)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    data = np.load(calibration_npy)
    input_name = onnx.load(source).graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(data[start:start + batch] for start in range(0, len(data), batch))

        def get_next(self):
            samples = next(self.batches, None)
            return None if samples is None else {input_name: samples}

    quantize_static(str(source), str(output), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": quantize_bias})


def qdq_count(path) -> int:
    return sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in onnx.load(path).graph.node)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["demo", "sknet50"], default="demo")
    parser.add_argument("--calib-images", type=int, help="default: 512 (demo), 128 (sknet50)")
    parser.add_argument("--test-images", type=int, help="default: 10000 (demo), 32 (sknet50)")
    parser.add_argument("--only", nargs="*", help="row names to run (default: all)")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    demo = args.model == "demo"
    calib_images = args.calib_images or (512 if demo else 128)
    test_images = args.test_images or (10_000 if demo else 32)
    work = Path(args.out or tempfile.mkdtemp(prefix="compare_modelopt_")).resolve()
    work.mkdir(parents=True, exist_ok=True)

    from skdeploy.log import QUIET, log

    with log.verbosity(QUIET):
        prepare = demo_inputs if demo else sknet50_inputs
        source, calibration, images, labels, reference = prepare(work, calib_images, test_images)
    calibration_npy = work / "calibration.npy"
    np.save(calibration_npy, calibration.astype(np.float32))
    # quantize_static before ModelOpt: ModelOpt's quantize patches onnxruntime.quantization's calibrators in the
    # process (its ort_patching), after which quantize_static fails ("Quantization parameters are not specified
    # for param input")
    rows = {"skdeploy (default)": lambda out: ours(source, calibration_npy, out, len(calibration)),
            "onnxruntime quantize_static (MinMax)": lambda out: onnxruntime_static(source, calibration_npy, out),
            "ModelOpt entropy (its default)": lambda out: modelopt(source, calibration_npy, out, "entropy"),
            "ModelOpt max": lambda out: modelopt(source, calibration_npy, out, "max")}
    results = []
    for position, (name, run) in enumerate(rows.items()):
        if args.only and name not in args.only:
            continue
        output = work / f"{args.model}_int8_{position}.onnx"
        with log.verbosity(QUIET), PeakRss() as memory:
            started = time.perf_counter()
            run(output)
            seconds = time.perf_counter() - started
        predictions = predict(output, images)
        row = {"method": name, "seconds": round(seconds, 1), "peak_rss_mb": memory.peak, "qdq_nodes": qdq_count(output),
               "agreement": round(float(np.mean(predictions == reference)), 4),
               "top1": None if labels is None else round(float(np.mean(predictions == labels)), 4)}
        results.append(row)
        print(json.dumps(row), flush=True)
    reference_of = "FP32 PyTorch" if demo else "FP32 ONNX"
    print(f"\n{args.model}: {len(calibration)} calibration images, {len(images)} test images"
          + ("" if labels is None else f"; FP32 PyTorch top-1 {np.mean(reference == labels):.2%}") + "\n")
    print(f"| method | calibration wall s | peak RSS MB | Q/DQ nodes | agreement with {reference_of} % | top-1 % |")
    print("|---|---|---|---|---|---|")
    for row in results:
        top1 = "-" if row["top1"] is None else f"{100 * row['top1']:.2f}"
        print(f"| {row['method']} | {row['seconds']:.1f} | {row['peak_rss_mb']} | {row['qdq_nodes']} | "
              f"{100 * row['agreement']:.2f} | {top1} |")


if __name__ == "__main__":
    main()
