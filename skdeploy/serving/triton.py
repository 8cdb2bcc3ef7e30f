"""A Triton Inference Server model repository for one engine or ONNX: config.pbtxt, 1/model.plan (or
model.onnx) and labels.txt, plus a client.py example beside the repository.

Every field of config.pbtxt comes from the artifact's manifest: for an engine, the sidecar's I/O (names,
dtypes, shapes) and its optimization profile (max_batch_size = the profile's largest batch, the preferred
batch = the batch it was tuned for); for an ONNX, its recorded inputs and outputs. Field names follow
Triton's model_config.proto (tests parse the file with tritonclient's model_config_pb2).

An ONNX config runs on Triton's onnxruntime backend with the TensorRT execution accelerator (the
bundle's precision, engine cache on), so it loads on any Triton server with a GPU; the tensorrt_plan
config serves an engine the server's own TensorRT built. Model names follow Triton's rules
(`check_model_name`) and are quoted as protobuf text strings.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..fileio import write_text_atomic

if TYPE_CHECKING:
    from ..fileio import PathLike

PLATFORMS = {"engine": ("tensorrt_plan", "model.plan"), "onnx": ("onnxruntime_onnx", "model.onnx")}
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "uint8": "TYPE_UINT8",
              "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
DEFAULT_MAX_BATCH = 8  # an ONNX with a dynamic batch: what Triton may batch up to
QUEUE_DELAY_US = 100  # how long dynamic batching waits to fill the preferred batch
# the onnxruntime backend's TensorRT accelerator: its precision_mode per bundle precision (INT8 comes from
# the graph's Q/DQ nodes, which TensorRT needs FP16 enabled beside)
ACCELERATOR_PRECISIONS = {"fp32": "FP32", "fp16": "FP16", "int8": "FP16"}
MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_model_name(name: str) -> str:
    """A model name Triton accepts as a repository folder: letters, digits, `_`, `-` and `.`, not `.` or `..`."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"`name` {name!r} is not a Triton model name: use letters, digits, '_', '-' and '.' "
                         "(no path separators, not '.' or '..')")
    return name


def pbtxt_string(text: str) -> str:
    """`text` as a quoted protobuf text-format string (JSON's escapes are a subset protobuf reads)."""
    return json.dumps(text)


def _tensors(manifest) -> list:
    """[{name, mode, shape (-1 = dynamic), dtype}] of the artifact."""
    engine = manifest.get("engine")
    if engine:
        return engine["io"]
    return [{"name": t["name"], "mode": mode, "dtype": t["dtype"],
             "shape": [d if isinstance(d, int) else -1 for d in t["shape"]]}
            for mode, key in (("input", "inputs"), ("output", "outputs")) for t in manifest[key]]


def batching(manifest: dict, max_batch: int | None = None) -> tuple:
    """(max_batch_size, preferred batch): 0 and None for a fixed batch, which Triton then never batches."""
    tensors = _tensors(manifest)
    if not any(t["shape"] and t["shape"][0] < 0 for t in tensors):
        return 0, None
    engine = manifest.get("engine")
    if engine and engine.get("profiles"):
        shapes = next(iter(engine["profiles"][0].values()))
        return shapes["max"][0], shapes["opt"][0]
    size = max_batch or DEFAULT_MAX_BATCH
    return size, size


def _tensor_block(tensor, batched: bool, extra: str = "") -> str:
    dims = tensor["shape"][1:] if batched else tensor["shape"]
    if tensor["dtype"] not in DATA_TYPES:
        raise UsageError(f"tensor {tensor['name']!r} has dtype {tensor['dtype']}, which Triton has no type for")
    return (f'  {{\n    name: "{tensor["name"]}"\n    data_type: {DATA_TYPES[tensor["dtype"]]}\n'
            f'{extra}    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}')


def triton_config(manifest: dict, name: str, labels_file: str = "labels.txt", max_batch: int | None = None,
                  instances: int = 1, kind: str | None = None, precision: str = "fp32") -> str:
    """config.pbtxt text for the artifact `manifest` describes (an engine's sidecar or an ONNX's manifest);
    `kind="engine"` with an ONNX's manifest: the tensorrt_plan config of the engine the server builds from it."""
    check_model_name(name)
    kind = kind or ("engine" if manifest.get("engine") else "onnx")
    platform, _ = PLATFORMS[kind]
    max_batch_size, preferred = batching(manifest, max_batch)
    tensors = _tensors(manifest)
    layout = (manifest.get("preprocessing") or {}).get("layout", "NCHW")
    inputs = [_tensor_block(t, max_batch_size > 0, f"    format: FORMAT_{layout}\n")
              for t in tensors if t["mode"] == "input"]
    outputs = [_tensor_block(t, max_batch_size > 0, f'    label_filename: "{labels_file}"\n' if i == 0 else "")
               for i, t in enumerate(t for t in tensors if t["mode"] == "output")]
    lines = [f"name: {pbtxt_string(name)}", f"platform: {pbtxt_string(platform)}", f"max_batch_size: {max_batch_size}",
             "input [\n" + ",\n".join(inputs) + "\n]", "output [\n" + ",\n".join(outputs) + "\n]"]
    if max_batch_size:
        lines.append(f"dynamic_batching {{\n  preferred_batch_size: [ {preferred} ]\n"
                     f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n  }}\n]")
    if kind == "onnx":
        lines.append(
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator : [ {\n"
            '      name : "tensorrt"\n'
            f'      parameters {{ key: "precision_mode" value: "{ACCELERATOR_PRECISIONS[precision]}" }}\n'
            '      parameters { key: "trt_engine_cache_enable" value: "true" }\n'
            '      parameters { key: "trt_engine_cache_path" value: "/tmp/triton_trt_cache" }\n'
            "    } ]\n  }\n}")
    return "\n".join(lines) + "\n"


CLIENT = '''"""Ask the Triton server for the model's top classes (tritonclient HTTP; pip install tritonclient[http]).

    python client.py picture.png [--url localhost:8000]

Preprocessing as {name}'s manifest records it: {preprocessing}.
"""
import argparse

import numpy as np
from PIL import Image

MODEL, INPUT, OUTPUT = {name!r}, {input!r}, {output!r}
SIZE, MODE, LAYOUT, DTYPE = {size}, "{mode}", "{layout}", "{dtype}"
IN_GRAPH, SCALE, MEAN, STD, BGR = {in_graph}, {scale!r}, {mean}, {std}, {bgr}
RESAMPLE = Image.{resample}


def prepare_image(image):
    """Resize the shorter side to {resize}, centre-crop, then (unless the graph does it) scale and normalize:
    one PIL picture -> the model input without the batch axis."""
    image = image.convert(MODE)
    ratio = {resize} / min(image.size)
    image = image.resize((max(SIZE[1], round(image.width * ratio)), max(SIZE[0], round(image.height * ratio))),
                         RESAMPLE)
    left, top = (image.width - SIZE[1]) // 2, (image.height - SIZE[0]) // 2
    pixels = np.asarray(image.crop((left, top, left + SIZE[1], top + SIZE[0])), np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else (pixels[..., ::-1] if BGR else pixels)
    if not IN_GRAPH:
        pixels = (pixels * SCALE - np.float32(MEAN)) / np.float32(STD)
    pixels = pixels.transpose(2, 0, 1) if LAYOUT == "NCHW" else pixels
    if np.dtype(DTYPE) == np.uint8:
        pixels = np.clip(np.rint(pixels), 0, 255)
    return np.ascontiguousarray(pixels, dtype=DTYPE)


def prepare(path):
    """A picture file -> a batch of one."""
    return prepare_image(Image.open(path))[None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--url", default="localhost:8000")
    args = parser.parse_args()
    try:
        import tritonclient.http as httpclient
    except (ImportError, RuntimeError) as exc:  # RuntimeError: tritonclient without its http extra
        raise SystemExit(f"error: this needs tritonclient's HTTP client (pip install 'tritonclient[http]'): {{exc}}")

    client = httpclient.InferenceServerClient(url=args.url)
    batch = prepare(args.image)
    request = httpclient.InferInput(INPUT, list(batch.shape), {triton_dtype!r})
    request.set_data_from_numpy(batch)
    try:
        answer = client.infer(MODEL, [request], outputs=[httpclient.InferRequestedOutput(OUTPUT, class_count=3)])
    except Exception as exc:  # the server's answer or the connection's failure, as one line
        raise SystemExit(f"error: this needs a Triton server serving {{MODEL}} at {{args.url}}: {{exc}}")
    for entry in answer.as_numpy(OUTPUT)[0]:  # "score:index:label", best first (label_filename)
        print(entry.decode() if isinstance(entry, bytes) else entry)


if __name__ == "__main__":
    main()
'''


def client_example(manifest: dict, name: str) -> str:
    """client.py: one picture through the served model, preprocessed as the manifest records."""
    tensors = _tensors(manifest)
    image = next(t for t in tensors if t["mode"] == "input")
    output = next(t for t in tensors if t["mode"] == "output")
    prep = manifest.get("preprocessing") or {}
    if not prep:
        raise UsageError("the manifest records no preprocessing; a client cannot prepare pictures for it")
    channels = len(prep["mean"])
    return CLIENT.format(
        name=name, input=image["name"], output=output["name"], size=tuple(prep["crop"]), resize=prep["resize"],
        mode="L" if prep["channel_order"] == "GRAY" else "RGB", layout=prep.get("layout", "NCHW"),
        dtype=image["dtype"], triton_dtype=DATA_TYPES[image["dtype"]].replace("TYPE_", ""),
        in_graph=bool(prep.get("in_graph")), scale=prep["scale"],
        mean=list(prep["mean"]) if channels > 1 else prep["mean"][0],
        std=list(prep["std"]) if channels > 1 else prep["std"][0], bgr=prep["channel_order"] == "BGR",
        resample=prep.get("interpolation", "bilinear").upper(),
        preprocessing=", ".join(f"{key} {value}" for key, value in prep.items()))


def write_triton_repository(repository: PathLike, name: str, artifact: PathLike | None, manifest: dict,
                            labels: Iterable[str], max_batch: int | None = None, kind: str | None = None,
                            precision: str = "fp32") -> Path:
    """repository/name/{config.pbtxt, 1/model.plan|model.onnx, labels.txt} and repository/../client.py;
    returns the model folder. `artifact` None: the version folder waits for the engine the server builds
    (`kind="engine"`)."""
    kind = kind or ("engine" if manifest.get("engine") else "onnx")
    folder = Path(repository) / check_model_name(name)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    if artifact is not None:
        shutil.copyfile(artifact, folder / "1" / PLATFORMS[kind][1])
    write_text_atomic(folder / "labels.txt", "\n".join(labels) + "\n")
    write_text_atomic(folder / "config.pbtxt", triton_config(manifest, name, max_batch=max_batch, kind=kind,
                                                             precision=precision))
    write_text_atomic(Path(repository).parent / "client.py", client_example(manifest, name))
    return folder
