import click

from .. import ui
from . import json_option, verify_option


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
def command(artifact, show_layers, as_json):
    """Show the manifest that travels beside an ONNX file or engine: what made it and how.

    \b
    Examples:
      skdeploy inspect out/demo/sknet-fmnist.onnx
      skdeploy inspect engines/sknet-fmnist-rtx-int8.engine --json
      skdeploy inspect engines/sknet-fmnist-rtx-int8.engine --layers          # which convolutions run INT8
      skdeploy inspect engines/sknet-fmnist-rtx-int8.engine --layers --json   # the full layer list
    """
    if show_layers:
        _show_layers(artifact, as_json)
        return
    from ..data import Preprocessing
    from ..manifest import load_manifest
    from ..models.entry import ModelEntry

    manifest = load_manifest(artifact)
    if as_json:
        ui.emit_json(manifest)
        return
    model = ModelEntry.from_manifest(manifest)
    recorded = manifest.get("artifact") or {"kind": "artifact", "sha256": "(not recorded)"}
    ui.out.print(f"{artifact}: {recorded['kind']} sha256 {recorded['sha256'][:16]}...")
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
