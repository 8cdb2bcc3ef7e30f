from pathlib import Path

import click
from rich.markup import escape

from .. import ui
from ..errors import SkdeployError
from ..log import log
from . import json_option, verify_option

MIB = 2**20


def _stage_summary(stage: dict) -> str:
    """The few results of a stage worth a glance; the full record is in --json."""
    parts = []
    parity = stage.get("parity")
    if isinstance(parity, dict) and isinstance(parity.get("max_rel"), (int, float)):
        parts.append(f"parity max rel {parity['max_rel']:.2g}")
    passes = stage.get("passes")
    for report in passes if isinstance(passes, list) else []:
        if isinstance(report, dict) and "name" in report:
            parts.append(str(report.get("summary", report["name"])))
    for key in ("exporter", "precision", "method", "backend", "target", "build_seconds", "engine_bytes"):
        if key in stage:
            parts.append(f"{key} {stage[key]}")
    return "; ".join(parts)


@click.command("inspect")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--layers", "show_layers", is_flag=True, help="Engines: the kernels TensorRT built (from "
              "ENGINE.layers.json): type, precision in/out, the ONNX nodes each computes, and the summary.")
@verify_option
@json_option
def command(artifact, show_layers, as_json) -> None:
    """Show what an ONNX file or engine says about itself, and the manifest beside it when there is one.

    \b
    ONNX: producer, opsets, inputs and outputs, nodes by op, weights' size, Q/DQ nodes.
    Engine: size, sha256, first bytes, and what the installed TensorRT makes of it (a plan
    deserialises only in the runtime that built it, on a GPU; elsewhere the reason is shown).
    Manifest (ARTIFACT.json): the model, preprocessing and every stage that made the file.

    \b
    Examples:
      skdeploy inspect out/demo/sknet-fmnist.onnx
      skdeploy inspect engines/sknet-fmnist-rtx-int8.engine --json
      skdeploy inspect engines/sknet-fmnist-rtx-int8.engine --layers          # which convolutions run INT8
      skdeploy inspect engines/sknet-fmnist-rtx-int8.engine --layers --json   # the full layer list
      skdeploy inspect resnet50.onnx                 # any ONNX file, no manifest needed
    """
    if show_layers:
        _show_layers(artifact, as_json)
        return
    from ..manifest import load_manifest

    manifest = load_manifest(artifact, required=False)
    summary = _summarize(artifact, manifest)
    if as_json:
        ui.emit_json({"file": summary, "manifest": manifest})
        return
    _show_file(artifact, summary)
    if manifest is None:
        ui.out.print(f"manifest: none beside it ({artifact}.json); skdeploy writes one with each artifact")
        return
    _show_manifest(artifact, manifest)


def is_onnx(path, manifest) -> bool:
    """By the manifest's word, else by the name, else by the first byte: an ONNX ModelProto starts with its
    ir_version (field 1, a varint: 0x08); a TensorRT plan starts with its own tag."""
    kind = ((manifest or {}).get("artifact") or {}).get("kind")
    if kind in ("onnx", "engine"):
        return kind == "onnx"
    if Path(path).suffix.lower() == ".onnx":
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x08"


def _summarize(artifact, manifest) -> dict:
    """What the file says; with a manifest (which --no-verify may have kept against a changed file), a file
    that cannot be read is a warning and the manifest is still shown."""
    from ..engine.plan import summarize_engine
    from ..fileio import existing_file, sha256_file
    from ..onnx.summary import summarize_onnx

    path = existing_file(artifact)
    try:
        if is_onnx(path, manifest):
            return summarize_onnx(path)
        return summarize_engine(path, ((manifest or {}).get("engine") or {}).get("backend"))
    except SkdeployError as exc:
        if manifest is None:
            raise
        log.warning(str(exc))
        return {"file": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path), "unreadable": str(exc)}


def _show_file(artifact, summary: dict) -> None:
    kind = {"onnx": "ONNX", "engine": "engine"}.get(summary.get("format"), "unreadable")
    head = f", starts with {summary['head']!r}" if "head" in summary else ""
    ui.out.print(f"{artifact}: {kind}, {summary['bytes'] / MIB:.1f} MiB, sha256 {summary['sha256'][:16]}...{head}")
    if summary.get("format") == "onnx":
        _show_onnx(summary)
    elif summary.get("format") == "engine":
        _show_engine(summary)


def _show_onnx(summary: dict) -> None:
    opsets = ", ".join(f"{domain} {version}" for domain, version in summary["opsets"].items())
    ui.out.print(f"  made by {summary['producer'] or 'an unnamed producer'}, IR version {summary['ir_version']}, "
                 f"opsets {opsets}")
    for direction in ("inputs", "outputs"):
        for tensor in summary[direction]:
            ui.out.print(f"  {direction[:-1]:<6} {tensor['name']}: {tensor['dtype']} {tensor['shape']}")
    counts = ", ".join(f"{op} {count}" for op, count in sorted(summary["node_counts"].items(),
                                                               key=lambda item: (-item[1], item[0])))
    ui.out.print(f"  {summary['nodes']} nodes: {counts}")
    weights = summary["initializers"]
    dtypes = ", ".join(f"{dtype} {size / MIB:.1f} MiB" for dtype, size in weights["by_dtype"].items())
    ui.out.print(f"  weights: {weights['count']} initializers, {weights['bytes'] / MIB:.1f} MiB"
                 + (f" ({dtypes})" if dtypes else "") + (", in external data" if summary["external_data"] else ""))
    qdq = summary["qdq"]
    ui.out.print("  Q/DQ: " + (", ".join(f"{count} {op}" for op, count in qdq.items()) + " (quantized)"
                               if any(qdq.values()) else "none (not quantized)"))


def _show_engine(summary: dict) -> None:
    runtime = summary["runtime"]
    if runtime is None:
        ui.out.print("  no TensorRT installed here to read the plan (pip install 'skdeploy[rtx]' or 'skdeploy[trt]')")
        return
    name = f"{runtime['backend']} {runtime.get('version') or ''}".strip()
    if not runtime["deserialized"]:
        ui.out.print(f"  {name}: {escape(runtime['reason'])}")
        return
    ui.out.print(f"  {name}: deserialised, {runtime['layers']} layers")
    for tensor in runtime["io"]:
        ui.out.print(f"  {tensor['mode']:<6} {tensor['name']}: {tensor['dtype']} {tensor['shape']}")


def _show_manifest(artifact, manifest: dict) -> None:
    from ..data import Preprocessing
    from ..models.entry import ModelEntry

    model = ModelEntry.from_manifest(manifest)
    recorded = manifest.get("artifact") or {"kind": "artifact", "sha256": "(not recorded)"}
    ui.out.print(f"manifest {artifact}.json: {recorded['kind']} sha256 {recorded['sha256'][:16]}...")
    ui.out.print(f"model: {model.spec}  checkpoint: {(model.checkpoint or {}).get('path', '-')}")
    for tensor in manifest.get("inputs", []) + manifest.get("outputs", []):
        ui.out.print(f"  {tensor['name']}: {tensor['dtype']} {tensor['shape']}")
    if manifest["preprocessing"]:
        prep = Preprocessing.from_dict(manifest["preprocessing"])  # a malformed entry is a usage error
        ui.out.print(f"preprocessing: resize {prep.resize}, crop {list(prep.crop)}, {prep.channel_order}, "
                     f"mean {list(prep.mean)}, std {list(prep.std)}")
    ui.table("stages", ["stage", "time", "results"],
             [(s["stage"], str(s.get("time", "-")), _stage_summary(s)) for s in manifest["stages"]])


def _show_layers(artifact, as_json) -> None:
    from ..engine import load_layers
    from ..engine.layers import kernels, summary_line
    from ..fileio import existing_file

    data = load_layers(existing_file(artifact, "engine"))
    if as_json:
        ui.emit_json(data)
        return
    summary = data["summary"]
    ui.table(f"{artifact}: engine layers ({summary['source']})", ["#", "kernel", "type", "in", "out", "ONNX nodes"],
             [(str(i), layer["name"], layer["type"], ",".join(t["dtype"] for t in layer["inputs"]) or "-",
               ",".join(t["dtype"] for t in layer["outputs"]) or "-", str(len(layer["onnx_nodes"])))
              for i, layer in enumerate(data["layers"]) if layer in kernels(data["layers"])])
    ui.out.print(f"{summary_line(summary)} ({summary['file']})")
    for precision in ("fp16", "fp32", "other"):
        if summary["convolutions"][precision]:
            ui.out.print(f"{precision} convolutions: {', '.join(summary['convolutions'][precision])}")
    for entry in summary.get("unrealized_int8") or []:
        ui.out.print(f"quantized in the ONNX, {entry['precision']} in the engine: {entry['conv']}")
