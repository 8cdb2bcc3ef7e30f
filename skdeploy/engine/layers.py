"""What the builder made of the graph: the engine's kernels, their precisions and its memory.

Two sources, one schema. TensorRT-RTX (no GPU needed) prints the engine's layer list after "Layers:" in
its VERBOSE build log when the config asks for DETAILED profiling verbosity; classic TensorRT builds on the
GPU that runs it, so its engine is deserialized and read through `IEngineInspector` (JSON). Both log
"Total Activation Memory" and "Total Weights Memory". Each layer becomes

    {"name", "type", "inputs": [{"name", "dtype", "format", "shape"}], "outputs": [...], "tactic",
     "onnx_nodes": [ONNX node names the kernel computes]}

with dtype one of int8, fp16, bf16, fp32, ... `summarize` turns the list into the sidecar's "layers"
section and `unrealized_int8` names the Convs the ONNX quantizes that the engine runs in higher precision.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SkdeployError

if TYPE_CHECKING:
    from onnx import ModelProto

# RTX pseudo-layers that order streams or compute shapes: no kernel runs for them
MARKER_TYPES = {"signal", "wait", "shape_call"}
CONVOLUTION_TYPES = {"correlation", "convolution", "caskconvolution", "caskgemmconvolution", "cudnnconvolution",
                     "caskdeconvolution", "deconvolution"}
REFORMAT_TYPES = {"reformat", "copy", "reformatting"}
# generated-kernel op codes that only move or convert data (a kernel of only these is a reformat)
MOVE_OPS = {"Tran", "Resh", "Copy", "Move", "Cast", "Conc", "Repl", "Slic", "Spli", "Squ", "Unsq", "Expa", "Gath"}
DTYPES = {"int8": "int8", "half": "fp16", "fp16": "fp16", "float": "fp32", "fp32": "fp32", "bf16": "bf16",
          "bfloat16": "bf16", "fp8": "fp8", "int32": "int32", "int64": "int64", "bool": "bool", "uint8": "uint8",
          "int4": "int4", "fp4": "fp4"}
# messages of the build log this module reads (the logger keeps only these of its INFO/VERBOSE ones)
REPORT_PREFIXES = ("Layers:", "Total Activation Memory:", "Total Weights Memory:", "Layer: ")
SK_SELECT_OPS = {"Softmax", "Reshape", "ReduceSum"}


class LayerFormatError(SkdeployError):
    """The builder's layer list is not in the format this module reads (a TensorRT change)."""


def layers_path(engine_path: Path) -> Path:
    """ENGINE.layers.json: the full layer list beside the engine."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".layers.json")


def is_report(message: str) -> bool:
    return message.startswith(REPORT_PREFIXES)


# ---- TensorRT-RTX: the VERBOSE build log -------------------------------------------------------------------

_LINE = re.compile(r"Name: (?P<name>.*?), LayerType: (?P<type>[^,]*), Inputs: \[(?P<inputs>.*?)\], "
                   r"Constants: \[(?P<constants>.*?)\], Outputs: \[(?P<outputs>.*?)\], TacticName: (?P<tactic>[^,]*),"
                   r".*?Metadata: (?P<metadata>.*)$")
_TENSOR = re.compile(r"\{ Name: (?P<name>[^,]*), Dimensions: \[(?P<shape>[^\]]*)\],.*?Datatype: (?P<dtype>[^,]*), "
                     r"Format: (?P<format>[^}]*?) \}")
_ONNX_NODE = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
_BYTES = re.compile(r"^(Total Activation Memory|Total Weights Memory): (\d+) bytes")
_SCRATCH = re.compile(r"^Layer: (?P<name>.*) Host Persistent: \d+ bytes Device Persistent: \d+ bytes "
                      r"Scratch Memory: (?P<bytes>\d+) bytes")


def dtype_of(text: str) -> str:
    """'Int8', 'Half', 'Row major linear FP16 format', 'Thirty-two wide channel vectorized row major Int8
    format.' -> int8 / fp16 / ...; '' when no type is named."""
    for word in re.findall(r"[A-Za-z0-9]+", text):
        if word.lower() in DTYPES:
            return DTYPES[word.lower()]
    return ""


def _tensors(text: str) -> list:
    found = [{"name": m["name"], "dtype": dtype_of(m["dtype"]), "format": m["format"].strip(),
              "shape": [int(d) for d in m["shape"].split(",") if d.strip()]} for m in _TENSOR.finditer(text)]
    if text.count("{ Name:") != len(found):
        raise LayerFormatError(f"unreadable tensor list in the builder's layer list: {text[:160]}")
    return found


def parse_build_log(messages: Iterable[str]) -> dict:
    """{"layers": [...], "activation_bytes", "weights_bytes", "scratch": [{"layer", "bytes"}]} from the
    builder's log messages; layers None when the log has no "Layers:" list. A list in another format
    raises LayerFormatError."""
    report = {"layers": None, "activation_bytes": None, "weights_bytes": None, "scratch": []}
    for message in messages:
        if message.startswith("Layers:"):
            report["layers"] = parse_layer_list(message)
        elif (memory := _BYTES.match(message)) is not None:
            key = "activation_bytes" if memory.group(1) == "Total Activation Memory" else "weights_bytes"
            report[key] = int(memory.group(2))
        elif (scratch := _SCRATCH.match(message)) is not None:
            report["scratch"].append({"layer": scratch["name"], "bytes": int(scratch["bytes"])})
    return report


def parse_layer_list(message: str) -> list:
    """The layers of one "Layers:" message (one "Name: ..." line each, up to the I/O tensor list)."""
    layers = []
    for line in message.splitlines()[1:]:
        if not line.strip():
            break  # "I/O Tensors:" and "Engine Metadata:" follow a blank line
        match = _LINE.match(line)
        if match is None:
            raise LayerFormatError(f"unreadable line in the builder's layer list: {line[:160]}")
        layers.append({"name": match["name"], "type": match["type"].strip(), "inputs": _tensors(match["inputs"]),
                       "outputs": _tensors(match["outputs"]), "tactic": match["tactic"].strip(),
                       "onnx_nodes": _ONNX_NODE.findall(match["metadata"])})
    if not layers:
        raise LayerFormatError("the builder's \"Layers:\" list has no layer in a known format")
    return layers


# ---- classic TensorRT: IEngineInspector JSON -----------------------------------------------------------------

def parse_inspector_json(text: str) -> list:
    """The layers of `IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`; a layer is
    a plain name string where the engine was built without DETAILED profiling verbosity."""
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise LayerFormatError(f"the engine inspector's output is not JSON: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise LayerFormatError("the engine inspector's JSON has no \"Layers\" list")

    def tensors(entries) -> list:
        return [{"name": t.get("Name", ""), "dtype": dtype_of(t.get("Format/Datatype", "")),
                 "format": t.get("Format/Datatype", ""), "shape": list(t.get("Dimensions", []))}
                for t in entries or [] if isinstance(t, dict)]

    layers = []
    for entry in info["Layers"]:
        if isinstance(entry, str):
            entry = {"Name": entry}
        layers.append({"name": entry.get("Name", ""), "type": entry.get("LayerType", ""),
                       "inputs": tensors(entry.get("Inputs")), "outputs": tensors(entry.get("Outputs")),
                       "tactic": entry.get("TacticName", ""),
                       "onnx_nodes": _ONNX_NODE.findall(str(entry.get("Metadata", "")))})
    return layers


def inspect_engine(trt: Any, logger: Any, serialized: Any) -> list:
    """Classic TensorRT, on the GPU that built it: the engine's layers through IEngineInspector; None when
    this GPU cannot deserialize the engine."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    if engine is None:
        return None
    inspector = engine.create_engine_inspector()
    return parse_inspector_json(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


# ---- the summary ------------------------------------------------------------------------------------------

def kernels(layers: Iterable[dict]) -> list:
    return [layer for layer in layers if layer["type"].lower() not in MARKER_TYPES]


def is_convolution(layer: dict) -> bool:
    return layer["type"].lower() in CONVOLUTION_TYPES


def _ops_in_name(name: str) -> list:
    """'__myl_MulMinMaxRounCast_myl0_1' -> ['Mul', 'Min', 'Max', 'Roun', 'Cast']."""
    match = re.match(r"__myl_([A-Za-z]+)_", name)
    return re.findall(r"[A-Z][a-z]*", match.group(1)) if match else []


def is_reformat(layer: dict) -> bool:
    if layer["type"].lower() in REFORMAT_TYPES or "Reformat" in layer["name"] or "CopyNode" in layer["name"]:
        return True
    ops = _ops_in_name(layer["name"])
    return bool(ops) and set(ops) <= MOVE_OPS


def input_precision(layer: dict) -> str:
    """The precision a kernel reads its data in: its first input's (weights are RTX "Constants")."""
    return next((t["dtype"] for t in layer["inputs"] if t["dtype"]), "")


def conv_name(layer: dict, conv_nodes: Any = None) -> str:
    """The ONNX Conv a convolution kernel computes: from its metadata (the node that is a Conv when the
    graph's Convs are known), else the kernel's own name."""
    nodes = layer["onnx_nodes"]
    named = [n for n in nodes if conv_nodes is None or n in conv_nodes]
    return (named or nodes or [layer["name"]])[0]


def summarize(report: dict, source: str, model: ModelProto | None = None, layers_file: str | None = None) -> dict:
    """The sidecar's "layers" section: kernel count, convolutions by input precision, reformat and fused
    kernels, memory at the profile's max, and where the full list is."""
    layers = report["layers"]
    conv_nodes = {n.name for n in model.graph.node if n.op_type == "Conv"} if model is not None else None
    run = kernels(layers)
    by_precision = {"int8": [], "fp16": [], "fp32": [], "other": []}
    for layer in filter(is_convolution, run):
        precision = input_precision(layer)
        by_precision[precision if precision in by_precision else "other"].append(conv_name(layer, conv_nodes))
    total = sum(len(names) for names in by_precision.values())
    reformats = [layer["name"] for layer in run if is_reformat(layer)]
    fused = [layer["name"] for layer in run if not is_convolution(layer) and not is_reformat(layer)
             and (len(layer["onnx_nodes"]) > 1 or len(_ops_in_name(layer["name"])) > 1)]
    return {"source": source, "kernels": len(run), "convolutions": by_precision,
            "int8_convolution_share": round(len(by_precision["int8"]) / total, 4) if total else None,
            "reformats": reformats, "fused": fused, "activation_bytes": report["activation_bytes"],
            "weights_bytes": report["weights_bytes"], "scratch": report["scratch"],
            "file": str(layers_file) if layers_file else None}


def summary_line(summary: dict) -> str:
    """The summary in one line: kernels, INT8 convolutions, reformats, fused kernels, memory."""
    convs = summary["convolutions"]
    total = sum(len(names) for names in convs.values())
    sizes = (("activations", "activation_bytes"), ("weights", "weights_bytes"))
    memory = ", ".join(f"{what} {summary[key] / 2**20:.1f} MiB" for what, key in sizes if summary.get(key) is not None)
    higher = [f"{len(convs[p])} {p}" for p in ("fp16", "fp32", "other") if convs[p]]
    return (f"{summary['kernels']} kernels, {len(convs['int8'])}/{total} convolutions INT8"
            + (f" ({', '.join(higher)})" if higher else "")
            + f", {len(summary['reformats'])} reformats, {len(summary['fused'])} fused"
            + (f"; {memory}" if memory else ""))


def quantized_convs(model: ModelProto) -> list:
    """Conv nodes the ONNX quantizes: a DequantizeLinear feeds their data or their weights. One with INT8
    weights but no Q/DQ on its data is a placement TensorRT cannot run in INT8."""
    dequantized = {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and set(n.input[:2]) & dequantized]


def unrealized_int8(layers: list, model: ModelProto) -> list:
    """[(conv, precision)] for each Conv the ONNX quantizes whose engine kernel reads FP16/FP32 data: a Q/DQ
    placement TensorRT could not fuse. A Conv no kernel names is not judged."""
    precision_of = {}
    for layer in filter(is_convolution, kernels(layers)):
        for node in layer["onnx_nodes"] or [layer["name"]]:
            precision_of.setdefault(node, input_precision(layer))
    return [(name, precision_of[name]) for name in quantized_convs(model)
            if precision_of.get(name) not in (None, "int8")]


def sk_select_leftovers(layers: list, model: ModelProto) -> list:
    """Kernels that compute nothing but an SK select's Softmax/Reshape/ReduceSum: a select not fused."""
    op_of = {n.name: n.op_type for n in model.graph.node}
    return [layer["name"] for layer in kernels(layers)
            if layer["onnx_nodes"] and {op_of.get(n) for n in layer["onnx_nodes"]} <= SK_SELECT_OPS]


def load_layers(engine_path: Path) -> dict:
    """ENGINE.layers.json as written by a build: {"summary": ..., "layers": [...]}."""
    path = layers_path(engine_path)
    if not path.exists():
        raise SkdeployError(f"no layer list beside {engine_path} ({path.name}); engines built by this "
                            "skdeploy have one: rebuild the engine")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SkdeployError(f"{path} is not a layer list: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list) or "summary" not in data:
        raise SkdeployError(f"{path} is not a layer list: no \"summary\" and \"layers\"")
    return data


def record(trt: Any, backend: str, logger: Any, serialized: Any, engine_path: Path, model: ModelProto,
           strict: bool = False) -> dict:
    """Collect the engine's layers (RTX: the build log `logger` kept; classic: the inspector), write ENGINE.layers.json
    (staged with the engine when a transaction holds it), check that every Conv the ONNX quantizes runs in
    INT8, and return the sidecar's summary; None where the layers cannot be read (with a warning). With
    `strict`, an unrealized INT8 Conv or an unreadable layer list is an error."""
    from ..fileio import write_text_atomic
    from ..log import log

    try:
        report = parse_build_log(logger.reports)
        source = "build-log"
        if backend == "tensorrt":
            report["layers"], source = inspect_engine(trt, logger, serialized), "engine-inspector"
    except LayerFormatError as exc:
        if strict:
            raise SkdeployError(f"cannot check the engine's precision: {exc}") from None
        log.warning(f"engine layers not recorded: {exc}")
        return None
    if report["layers"] is None:
        if strict:
            raise SkdeployError("cannot check the engine's precision: the builder gave no layer list")
        log.warning("engine layers not recorded: the builder gave no layer list")
        return None
    file = layers_path(engine_path)
    summary = summarize(report, source, model, file.name)
    wrong = unrealized_int8(report["layers"], model)
    summary["unrealized_int8"] = [{"conv": name, "precision": precision or "unknown"} for name, precision in wrong]
    if wrong:
        listed = ", ".join(f"{name} ({precision or 'unknown'})" for name, precision in wrong)
        message = (f"{len(wrong)} Conv(s) the ONNX quantizes run in higher precision in the engine (a Q/DQ "
                   f"placement TensorRT could not fuse): {listed}")
        if strict:
            raise SkdeployError(message + "; `strict_precision` makes this an error")
        log.warning(message)
    write_text_atomic(file, json.dumps({"summary": summary, "layers": report["layers"]}, indent=1) + "\n")
    return summary
