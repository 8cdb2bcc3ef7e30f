"""The deploy bundle: the artifacts with their manifests, the saved reference, labels, the runtime configs,
the validation report and a README.txt with the commands to run on the target (layout in docs/deploy.md).

The bundle is written into a temporary folder beside its destination and renamed into place, so a bundle
either exists whole or not at all. It carries MARKER, which is what lets a later `deploy --force` replace
it: a folder without one is not deploy's to delete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.layers import layers_path
from ..errors import UsageError
from ..fileio import write_text_atomic
from ..manifest import load_manifest, manifest_path
from .deepstream import deepstream_config, deepstream_labels, softmax_onnx
from .labels import class_labels
from .triton import write_triton_repository

if TYPE_CHECKING:
    from ..data import Source

MARKER = ".skdeploy-bundle"  # written last into every bundle; `deploy --force` replaces only folders holding it
EXAMPLE = "example.png"  # the first validation picture, so every README command runs as written
SAMPLES = "samples.npz"  # the validation subset's pictures and labels, when they are a uint8 array
SAMPLE_FOLDER = "samples"  # the validation subset's image files, when they came from an image folder


def is_bundle(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def _copy_with_manifest(artifact: Path, folder: Path) -> Path:
    shutil.copyfile(artifact, folder / artifact.name)
    shutil.copyfile(manifest_path(artifact), manifest_path(folder / artifact.name))
    return folder / artifact.name


def triton_folders(plan: dict) -> dict:
    """Where the Triton variants live: the onnxruntime repository (runs anywhere) and, for a classic target,
    the tensorrt_plan repository whose engine the README's command builds on the server."""
    return {"onnx": "triton/model_repository", "plan": "triton/plan_repository",
            "plan_file": f"triton/plan_repository/{plan['name']}/1/model.plan"}


def bundled_samples(source: Source) -> str | None:
    """The name under which the bundle carries the validation pictures of `source` (so README's validate step
    names data that is there), or None for data it does not carry (preprocessed float arrays)."""
    from ..data.sources import ImageFolder

    if isinstance(source, ImageFolder):
        return SAMPLE_FOLDER
    pictures = source.pictures
    return SAMPLES if hasattr(pictures, "dtype") and pictures.dtype.name == "uint8" else None


def readme_steps(plan: dict) -> list:
    """The commands to run on the target from the bundle's folder, in order, each exactly as typed."""
    engine = plan["engine"]
    steps = [plan["build_command"] or f"skdeploy inspect {engine}",
             f"skdeploy validate --reference reference.npz --candidate {engine} --data {plan['data_arg']}"]
    for kind in plan["formats"]:
        if kind == "plain":
            steps.append(f"python -c \"from PIL import Image; from skdeploy import load_runner, classify; "
                         f"print(classify(load_runner('{engine}'), [Image.open('{EXAMPLE}')]))\"")
        if kind == "triton":
            folders = triton_folders(plan)
            steps.append(f"tritonserver --model-repository={folders['onnx']}")
            steps.append(f"python triton/client.py {EXAMPLE}")
            if plan["triton_build_command"]:
                steps.append(plan["triton_build_command"])
                steps.append(f"tritonserver --model-repository={folders['plan']}")
        if kind == "deepstream":
            if plan["deepstream_build_command"]:
                steps.append(plan["deepstream_build_command"])
    return steps


NOTES = {
    "skdeploy validate": "checks the engine against the saved FP32 outputs on the same samples (sha256 of the "
                         "inputs must match)",
    "skdeploy inspect": "shows what the engine was built for",
    "tritonserver --model-repository=triton/model_repository": "onnxruntime backend with the TensorRT "
                                                               "accelerator: loads on any Triton GPU server",
    "python triton/client.py": "asks the server for the top classes of a picture",
    "tritonserver --model-repository=triton/plan_repository": "the tensorrt_plan variant, once the command "
                                                              "above built its engine with the server's TensorRT",
    "skdeploy build-engine deepstream/": "the engine nvinfer runs; without it nvinfer builds it from "
                                         "onnx-file on its first start",
}


REFERENCE_KINDS = {"pytorch": "PyTorch", "onnx-fp32": "ONNX (onnxruntime)"}  # what reference.npz's logits came from


def readme(plan: dict) -> str:
    """README.txt: what is here and the commands to run on the target, in order."""
    engine, onnx = plan["engine"], plan["onnx"]
    lines = [f"skdeploy bundle: {plan['model']} for {plan['target']} ({plan['precision']})", "",
             "Files:",
             f"  {onnx} (+ .json manifest)   the deployed ONNX" +
             (" (preprocessing inside: it takes raw pixels)" if plan["raw_input"] else ""),
             f"  {engine} (+ .json sidecar, .layers.json)   " + ("the engine" if not plan["build_command"] else
                                                   "built on the device by command 1"),
             f"  reference.npz   FP32 {REFERENCE_KINDS.get(plan.get('reference_kind'), 'PyTorch')} outputs on the "
             "validation subset (validation needs no PyTorch)",
             f"  {EXAMPLE}   the first validation picture",
             "  labels.txt   class names, one per line",
             "  validation.json, validation.html   the validation run that admitted this bundle (validation.json's "
             "`runtime`: agreement under each runtime's own preprocessing)"]
    if plan["samples"] == SAMPLES:
        lines.append(f"  {SAMPLES}   the validation pictures and labels the reference was saved from")
    elif plan["samples"]:
        lines.append(f"  {SAMPLE_FOLDER}/   the validation image files the reference was saved from, as they were "
                     "(class subfolders and names kept)")
    if plan["calibration_table"]:
        fp32 = Path(plan["implicit_onnx"]).name
        lines.append(f"  {fp32} (+ .json manifest), {plan['calibration_table']}   the FP32 ONNX and its TensorRT "
                     "calibration table: implicit INT8 (TensorRT <= 10, DLA) builds from these")
    for kind in plan["formats"]:
        if kind == "triton":
            lines.append("  triton/model_repository/   Triton, onnxruntime backend + TensorRT accelerator")
            if plan["triton_build_command"]:
                lines.append("  triton/plan_repository/   Triton, tensorrt_plan backend (engine built on the server)")
            lines.append("  triton/client.py   tritonclient HTTP example (pip install tritonclient[http])")
        if kind == "deepstream":
            lines.append("  deepstream/   Gst-nvinfer configs (primary and secondary GIE), label file, and "
                         "model_softmax.onnx: the deployed ONNX ending in a Softmax, which nvinfer runs")
    lines += ["", "On the target, from this folder (base install: pip install skdeploy, plus the TensorRT of the "
              "device); each line runs as written:"]
    for number, step in enumerate(readme_steps(plan), 1):
        lines.append(f"  {number}. {step}")
        note = next((text for start, text in NOTES.items() if step.startswith(start)), None)
        if note:
            lines.append(f"     ({note})")
    if "deepstream" in plan["formats"]:
        lines += ["", "DeepStream: in your deepstream-app config, set [primary-gie] config-file="
                  f"deepstream/config_infer_primary_{plan['name']}.txt (or [secondary-gie] config-file="
                  f"deepstream/config_infer_secondary_{plan['name']}.txt)."]
    return "\n".join(lines) + "\n"


def assemble(bundle: Path, plan: dict, onnx_path: Path, engine_path: Path | None, validation: Any, reference: Path,
             runtime_check: Callable[[Path, dict], dict] | None = None) -> Path:
    """Write the bundle for `plan` (DeploySettings as a dict plus what the run made) whole, or nothing.
    `runtime_check(staging, plan)` measures the staged bundle under its runtimes' preprocessing and returns
    the figures for validation.json (it raises to refuse the bundle)."""
    from ..report import write_report

    bundle = Path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", dir=bundle.parent))
    try:
        onnx = _copy_with_manifest(onnx_path, staging)
        manifest = load_manifest(onnx)
        labels = class_labels(manifest, validation.data.get("class_names"))
        write_text_atomic(staging / "labels.txt", "\n".join(labels) + "\n")
        shutil.copyfile(reference, staging / "reference.npz")
        _write_samples(staging, plan, validation)
        write_report(staging / "validation.html", validation)
        if plan["calibration_table"]:
            shutil.copyfile(plan["calibration_table_source"], staging / plan["calibration_table"])
        if plan["implicit_onnx"]:
            _copy_with_manifest(Path(plan["implicit_onnx"]), staging)
        engine = _copy_with_manifest(Path(engine_path), staging) if engine_path else None
        if engine_path and layers_path(engine_path).exists():  # what TensorRT built (inspect --layers)
            shutil.copyfile(layers_path(engine_path), layers_path(engine))
        if "triton" in plan["formats"]:
            _write_triton(staging, plan, onnx, engine, manifest, labels)
        if "deepstream" in plan["formats"]:
            served = staging / Path(plan["implicit_onnx"]).name if plan["implicit_onnx"] else onnx
            _write_deepstream(staging / "deepstream", plan, served, labels)
        record = validation.record()
        if runtime_check is not None:
            record["runtime"] = runtime_check(staging, plan)
        write_text_atomic(staging / "validation.json", json.dumps(record, indent=1) + "\n")
        write_text_atomic(staging / "README.txt", readme(plan))
        write_text_atomic(staging / MARKER, json.dumps({"model": plan["model"], "target": plan["target"]}) + "\n")
        for folder in [staging, *(path for path in staging.rglob("*") if path.is_dir())]:
            os.chmod(folder, 0o755)
        if bundle.exists():
            if not is_bundle(bundle):
                raise UsageError(f"{bundle} is not a bundle deploy wrote (no {MARKER}); it was left as it is")
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return bundle


def _write_samples(staging: Path, plan: dict, validation) -> None:
    """example.png, and samples.npz when the validation pictures are a uint8 array (Fashion-MNIST, .npz, IDX),
    or samples/ with the first `count` image files copied byte for byte below the same relative paths, when
    they came from an image folder: the same sorted order, classes and decoding, so the same input sha256."""
    import numpy as np

    samples = validation.samples
    samples.picture(0).save(staging / EXAMPLE)
    if plan["samples"] == SAMPLE_FOLDER:
        source = samples.source
        for file in source.files[:samples.count]:
            target = staging / SAMPLE_FOLDER / file.relative_to(source.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    elif plan["samples"]:
        arrays = {"images": np.ascontiguousarray(samples.source.pictures[:samples.count])}
        if samples.labels is not None:
            arrays["labels"] = np.asarray(samples.labels)
        np.savez_compressed(staging / SAMPLES, **arrays)


def _write_triton(staging: Path, plan: dict, onnx: Path, engine, manifest: dict, labels) -> None:
    """The onnxruntime variant always; the tensorrt_plan one with this machine's engine, or waiting for the
    engine the server builds (classic targets without classic TensorRT here)."""
    folders = triton_folders(plan)
    if engine is not None:
        write_triton_repository(staging / folders["onnx"], plan["name"], engine, load_manifest(engine), labels,
                                max_batch=plan["max_batch"])
        return
    write_triton_repository(staging / folders["onnx"], plan["name"], onnx, manifest, labels,
                            max_batch=plan["max_batch"], precision=plan["precision"])
    write_triton_repository(staging / folders["plan"], plan["name"], None, manifest, labels,
                            max_batch=plan["max_batch"], kind="engine")


def _write_deepstream(folder: Path, plan: dict, onnx: Path, labels) -> None:
    """model_softmax.onnx, a primary and a secondary GIE config; paths are relative to the config file, as
    nvinfer reads them."""
    folder.mkdir()
    softmax = softmax_onnx(onnx, folder / "model_softmax.onnx")
    manifest = load_manifest(softmax)
    write_text_atomic(folder / "labels.txt", deepstream_labels(labels))
    common = dict(onnx_file=softmax.name, engine_file="model_softmax.engine", labels_file="labels.txt",
                  precision=plan["precision"], dla_core=plan["dla_core"],
                  calib_file=f"../{plan['calibration_table']}" if plan["calibration_table"] else None)
    write_text_atomic(folder / f"config_infer_primary_{plan['name']}.txt",
                      deepstream_config(manifest, batch_size=plan["max_batch"], process_mode="primary", gie_id=1,
                                        **common))
    write_text_atomic(folder / f"config_infer_secondary_{plan['name']}.txt",
                      deepstream_config(manifest, batch_size=plan["max_batch"], process_mode="secondary", gie_id=2,
                                        operate_on_gie_id=1, **common))
