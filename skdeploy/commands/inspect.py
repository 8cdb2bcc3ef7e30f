import click

from .. import ui
from . import json_option, verify_option


def _stage_summary(stage: dict) -> str:
    """The few results of a stage worth a glance; the full record is in --json."""
    parts = []
    if "parity" in stage:
        parts.append(f"parity max rel {stage['parity']['max_rel']:.2g}")
    for report in stage.get("passes", []):
        if isinstance(report, dict) and "name" in report:
            parts.append(report.get("summary", report["name"]))
    for key in ("exporter", "precision", "method", "backend", "target", "build_seconds", "engine_bytes"):
        if key in stage:
            parts.append(f"{key} {stage[key]}")
    return "; ".join(parts)


@click.command("inspect")
@click.argument("artifact", type=click.Path(dir_okay=False))
@verify_option
@json_option
def command(artifact, as_json):
    """Show the manifest that travels beside an ONNX file or engine: what made it and how.

    \b
    Examples:
      skdeploy inspect out/demo/sknet-fmnist.onnx
      skdeploy inspect engines/sknet-fmnist.int8.engine --json
    """
    from ..manifest import load_manifest
    from ..models.entry import ModelEntry

    manifest = load_manifest(artifact)
    if as_json:
        ui.emit_json(manifest)
        return
    model = ModelEntry.from_manifest(manifest)
    ui.out.print(f"{artifact}: {manifest['artifact']['kind']} sha256 {manifest['artifact']['sha256'][:16]}...")
    ui.out.print(f"model: {model.spec}  checkpoint: {(model.checkpoint or {}).get('path', '-')}")
    for tensor in manifest.get("inputs", []) + manifest.get("outputs", []):
        ui.out.print(f"  {tensor['name']}: {tensor['dtype']} {tensor['shape']}")
    prep = manifest.get("preprocessing")
    if prep:
        ui.out.print(f"preprocessing: resize {prep['resize']}, crop {prep['crop']}, {prep['channel_order']}, "
                     f"mean {prep['mean']}, std {prep['std']}")
    ui.table("stages", ["stage", "time", "results"],
             [(s["stage"], s["time"], _stage_summary(s)) for s in manifest["stages"]])
