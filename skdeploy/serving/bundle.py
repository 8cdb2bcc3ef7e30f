"""The deploy bundle: the artifacts with their manifests, the saved reference, labels, the runtime configs,
the validation report and a README.txt with the commands to run on the target (layout in docs/deploy.md).

The bundle is written into a temporary folder beside its destination and renamed into place, so a bundle
either exists whole or not at all.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..fileio import write_text_atomic
from ..manifest import load_manifest, manifest_path
from .deepstream import deepstream_config, deepstream_labels
from .labels import class_labels
from .triton import write_triton_repository


def _copy_with_manifest(artifact: Path, folder: Path) -> Path:
    shutil.copyfile(artifact, folder / artifact.name)
    shutil.copyfile(manifest_path(artifact), manifest_path(folder / artifact.name))
    return folder / artifact.name


def readme(plan: dict) -> str:
    """README.txt: what is here and the three commands to run on the target, in order."""
    engine, onnx = plan["engine"], plan["onnx"]
    first = plan["build_command"] or f"skdeploy inspect {engine}"
    runtime = {"triton": "tritonserver --model-repository=triton/model_repository   # then: python triton/client.py "
                         "picture.png",
               "deepstream": f"deepstream-app -c YOUR_APP.txt   # with [primary-gie] config-file="
                             f"deepstream/config_infer_primary_{plan['name']}.txt (secondary: "
                             f"config_infer_secondary_{plan['name']}.txt)",
               "plain": f"python -c \"from PIL import Image; from skdeploy import load_runner, classify; "
                        f"print(classify(load_runner('{engine}'), [Image.open('picture.png')]))\""}
    lines = [f"skdeploy bundle: {plan['model']} for {plan['target']} ({plan['precision']})", "",
             "Files:",
             f"  {onnx} (+ .json manifest)   the deployed ONNX" +
             (" (preprocessing inside: it takes raw pixels)" if plan["raw_input"] else ""),
             f"  {engine} (+ .json sidecar)   " + ("the engine" if not plan["build_command"] else
                                                   "built on the device by command 1"),
             "  reference.npz   FP32 PyTorch outputs on the validation subset (validation needs no PyTorch)",
             "  labels.txt   class names, one per line",
             "  validation.json, validation.html   the validation run that admitted this bundle"]
    if plan["calibration_table"]:
        lines.append(f"  {plan['calibration_table']}   TensorRT calibration table (implicit INT8, TensorRT <= 10, DLA)")
    for kind in plan["formats"]:
        if kind == "triton":
            lines.append("  triton/model_repository/, triton/client.py   Triton Inference Server")
        if kind == "deepstream":
            lines.append("  deepstream/   Gst-nvinfer configs (primary and secondary GIE) and their label file")
    lines += ["", "On the target, from this folder (base install: pip install skdeploy, plus the TensorRT of the "
              "device):", f"  1. {first}",
              f"  2. skdeploy validate --reference reference.npz --candidate {engine} --data {plan['data']}",
              "     (the same data the reference was saved from: first " + str(plan["count"]) + " samples)"]
    lines += [f"  3. {runtime[kind]}" for kind in plan["formats"][:1]]
    lines += [f"     or {runtime[kind]}" for kind in plan["formats"][1:]]
    return "\n".join(lines) + "\n"


def assemble(bundle: Path, plan: dict, onnx_path: Path, engine_path, validation, reference: Path) -> Path:
    """Write the bundle for `plan` (DeploySettings as a dict plus what the run made) whole, or nothing."""
    from ..report import write_report

    bundle = Path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", dir=bundle.parent))
    try:
        onnx = _copy_with_manifest(onnx_path, staging)
        manifest = load_manifest(onnx)
        labels = class_labels(manifest)
        write_text_atomic(staging / "labels.txt", "\n".join(labels) + "\n")
        shutil.copyfile(reference, staging / "reference.npz")
        write_text_atomic(staging / "validation.json", json.dumps(validation.record(), indent=1) + "\n")
        write_report(staging / "validation.html", validation)
        if plan["calibration_table"]:
            shutil.copyfile(onnx_path.with_name(plan["calibration_table"]), staging / plan["calibration_table"])
        engine = _copy_with_manifest(Path(engine_path), staging) if engine_path else None
        if "triton" in plan["formats"]:
            served = engine or onnx
            write_triton_repository(staging / "triton" / "model_repository", plan["name"], served,
                                    load_manifest(served), labels, max_batch=plan["max_batch"])
        if "deepstream" in plan["formats"]:
            _write_deepstream(staging / "deepstream", plan, manifest, labels)
        write_text_atomic(staging / "README.txt", readme(plan))
        if bundle.exists():
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return bundle


def _write_deepstream(folder: Path, plan: dict, manifest: dict, labels) -> None:
    """A primary and a secondary GIE config; paths are relative to the config file, as nvinfer reads them."""
    folder.mkdir()
    write_text_atomic(folder / "labels.txt", deepstream_labels(labels))
    common = dict(onnx_file=f"../{plan['onnx']}", engine_file=f"../{plan['engine']}", labels_file="labels.txt",
                  precision=plan["precision"], dla_core=plan["dla_core"],
                  calib_file=f"../{plan['calibration_table']}" if plan["calibration_table"] else None)
    write_text_atomic(folder / f"config_infer_primary_{plan['name']}.txt",
                      deepstream_config(manifest, batch_size=plan["max_batch"], process_mode="primary", gie_id=1,
                                        **common))
    write_text_atomic(folder / f"config_infer_secondary_{plan['name']}.txt",
                      deepstream_config(manifest, batch_size=plan["max_batch"], process_mode="secondary", gie_id=2,
                                        operate_on_gie_id=1, **common))
