"""The demo model's precision table: FP32, INT8 (mse / max / entropy / percentile) and FP16 in onnxruntime on all
10,000 Fashion-MNIST test images, each against the FP32 PyTorch model (top-1 drop and agreement).

    .venv/bin/python scripts/measure_precision.py [--modelopt-python /work/venv-modelopt/bin/python]

Calibration uses the shipped default set (calibration/, Fashion-MNIST train split) with the default
512 images, exactly as `skdeploy calibrate` does. With --modelopt-python (a separate venv holding
nvidia-modelopt, never the project's), NVIDIA ModelOpt's ONNX PTQ quantizes the same export from the same
512 preprocessed images and is measured the same way, with its Q/DQ placement summarised beside ours.
Targets: the default INT8 method drop <= 0.10 points and agreement >= 99.75%, every other INT8 method
drop <= 0.3 and agreement >= 99%, every quantizable layer INT8; FP16 drop <= 0.05 and agreement >= 99.9%.
"""
import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

from skdeploy.calib.ranges import METHODS
from skdeploy.data import (
    InputShape,
    Preprocessing,
    default_calibration_path,
    load_fashion_mnist,
    open_source,
    select_calibration,
)
from skdeploy.manifest import load_manifest
from skdeploy.models import load_model
from skdeploy.reference import reference_of
from skdeploy.runners import OnnxRuntimeRunner
from skdeploy.stages.calibrate import CalibrationSettings, calibrate_model
from skdeploy.stages.export import ExportSettings, export_model

# (max drop in points, min agreement as a fraction)
TARGETS = {"int8-default": (0.10, 0.9975), "int8": (0.3, 0.99), "fp16": (0.05, 0.999)}
MODELOPT_SNIPPET = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
source, data, method, output = sys.argv[1:5]
quantize(source, quantize_mode="int8", calibration_data=np.load(data), calibration_method=method,
         calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=output, log_level="WARNING")
"""


def predict(path, images, batch=500) -> np.ndarray:
    with OnnxRuntimeRunner(path) as runner:
        return runner.run_batched(images, batch).argmax(1)


def placement(path) -> dict:
    """Q/DQ count and which op inputs read a DequantizeLinear (weights = initializer behind the DQ)."""
    model = onnx.load(path)
    made_by = {out: node for node in model.graph.node for out in node.output}
    initializers = {init.name for init in model.graph.initializer}
    fed = collections.Counter()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.input:
            source = made_by.get(name)
            if source is not None and source.op_type == "DequantizeLinear":
                behind = made_by.get(source.input[0])
                weight = source.input[0] in initializers or (behind is not None and behind.input[0] in initializers)
                fed[f"{node.op_type}:{'weight' if weight else 'activation'}"] += 1
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return {"Q": counts["QuantizeLinear"], "DQ": counts["DequantizeLinear"],
            "inputs_from_DQ": dict(sorted(fed.items()))}


def modelopt_rows(python, source, work, methods):
    """Quantize with ModelOpt in its own interpreter from our 512 preprocessed calibration images."""
    manifest = load_manifest(source)
    shape = InputShape(*manifest["inputs"][0]["shape"][1:])
    prep = Preprocessing.from_dict(manifest["preprocessing"])
    selection = select_calibration(open_source(default_calibration_path(manifest), shape, lambda _: prep), shape,
                                   512, 0, 0)
    data = work / "modelopt_calibration.npy"
    np.save(data, np.concatenate([b for b, _ in selection.batches(selection.calibration, 512)]))
    outputs = {}
    for method in methods:
        output = work / f"demo_int8_modelopt_{method}.onnx"
        done = subprocess.run([python, "-c", MODELOPT_SNIPPET, str(source), str(data), method, str(output)],
                              capture_output=True, text=True, cwd="/tmp")
        if done.returncode != 0:
            print(f"ModelOpt {method} failed: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            continue
        outputs[f"INT8 ModelOpt {method}"] = output
    return outputs


def fit_probe_head(loaded, count=10_000, ridge=1e-4):
    """A stand-in classifier while no trained weights exist: the random SK backbone's pooled features of
    `count` training-split images, and a ridge-regression head on one-hot labels in place of `fc`."""
    import torch

    pixels, labels = load_fashion_mnist("train")
    images = torch.from_numpy(loaded.config.preprocessing.arrays(pixels[:count]))
    module = loaded.module
    with torch.no_grad():
        features = torch.cat([torch.flatten(module.pool(module.layers(module.stem(images[i:i + 500]))), 1)
                              for i in range(0, len(images), 500)]).double()
        features = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], 1)
        targets = torch.nn.functional.one_hot(torch.from_numpy(labels[:count]), 10).double()
        gram = features.T @ features + ridge * len(features) * torch.eye(features.shape[1], dtype=torch.float64)
        solution = torch.linalg.solve(gram, features.T @ targets)
        module.fc.weight.copy_(solution[:-1].T.float())
        module.fc.bias.copy_(solution[-1].float())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/precision")
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--modelopt-python", help="python of a venv with nvidia-modelopt (compared when given)")
    parser.add_argument("--random-weights", action="store_true",
                        help="before the trained weights exist: random backbone + least-squares classifier head")
    args = parser.parse_args()
    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)

    import torch

    torch.manual_seed(0)
    loaded = load_model(arch="sknet-fmnist", pretrained=not args.random_weights)
    if args.random_weights:
        fit_probe_head(loaded)
    source = work / "demo.onnx"
    export_model(loaded, source, ExportSettings(dynamic_batch=True), force=True)
    pixels, labels = load_fashion_mnist("test")
    pixels, labels = pixels[:args.test_images], labels[:args.test_images]
    images = loaded.config.preprocessing.arrays(pixels)
    with reference_of(loaded).runner() as runner:
        reference = runner.run_batched(images, 500).argmax(1)
    reference_top1 = float(np.mean(reference == labels))

    variants = {"FP32 (onnxruntime)": (source, None)}
    default = CalibrationSettings().method
    for method in METHODS:
        path = work / f"demo_int8_{method}.onnx"
        calibrate_model(source, path, CalibrationSettings(precision="int8", method=method), force=True)
        name = f"INT8 {method}" + (" (default)" if method == default else "")
        variants[name] = (path, "int8-default" if method == default else "int8")
    path = work / "demo_fp16.onnx"
    calibrate_model(source, path, CalibrationSettings(precision="fp16"), force=True)
    variants["FP16"] = (path, "fp16")
    if args.modelopt_python:
        for name, path in modelopt_rows(args.modelopt_python, source, work, ("entropy", "max")).items():
            variants[name] = (path, "int8")

    rows = []
    for name, (path, precision) in variants.items():
        predictions = predict(path, images)
        top1 = float(np.mean(predictions == labels))
        agreement = float(np.mean(predictions == reference))
        drop = 100 * (reference_top1 - top1)
        met = None
        if precision:
            max_drop, min_agreement = TARGETS[precision]
            met = drop <= max_drop and agreement >= min_agreement
        rows.append({"variant": name, "file": path.name, "top1": round(top1, 4), "drop": round(drop, 2),
                     "agreement": round(agreement, 4), "meets_target": met,
                     "placement": placement(path) if precision and precision.startswith("int8") else None})
        print(json.dumps(rows[-1]), flush=True)
    (work / "precision.json").write_text(json.dumps({"pytorch_fp32_top1": reference_top1, "images": len(labels),
                                                     "rows": rows}, indent=1))
    print(f"\nDemo model (sknet-fmnist), {len(labels)} Fashion-MNIST test images; FP32 PyTorch top-1 "
          f"{reference_top1:.2%}\n")
    print("| variant | top-1 % | drop vs FP32 PyTorch (points) | agreement with FP32 PyTorch % | target met |")
    print("|---|---|---|---|---|")
    for row in rows:
        met = "-" if row["meets_target"] is None else ("yes" if row["meets_target"] else "NO")
        print(f"| {row['variant']} | {100 * row['top1']:.2f} | {row['drop']:.2f} "
              f"| {100 * row['agreement']:.2f} | {met} |")
    print()
    for row in rows:
        if row["placement"]:
            print(f"{row['variant']}: {row['placement']}")


if __name__ == "__main__":
    main()
