import json
import re

import click

from .. import ui
from ..errors import UsageError
from . import force_option, json_option, raw_input_options, raw_input_settings


def parse_kwargs(text) -> dict:
    """--model-kwargs: a JSON object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--model-kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--model-kwargs must be a JSON object, e.g. '{\"num_classes\": 10}'")
    return value


def parse_input_shape(text) -> tuple:
    """--input-shape: '3x224x224' -> (3, 224, 224)."""
    if not re.fullmatch(r"\d+x\d+x\d+", text or ""):
        raise UsageError(f"--input-shape must look like 3x224x224 (C x H x W), got {text!r}")
    shape = tuple(int(v) for v in text.split("x"))
    if min(shape) < 1:
        raise UsageError(f"--input-shape dimensions must be positive, got {text!r}")
    return shape


@click.command("export")
@click.option("--arch", help="Registered model name (see 'skdeploy models'), e.g. sknet50.")
@click.option("--model", "spec", help="timm:NAME, path/to/file.py:factory or package.module:factory.")
@click.option("--model-kwargs", help="JSON object of keyword arguments for the model factory.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="state_dict checkpoint (.pt/.pth), loaded safely.")
@click.option("--input-shape", help="C x H x W, e.g. 3x224x224 (default: the model's config).")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension.")
@click.option("--opset", type=int, help="ONNX opset (default 17 for torchscript, 18 for dynamo).")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="PyTorch ONNX exporter.")
@click.option("--no-simplify", is_flag=True, help="Skip onnx-simplifier.")
@click.option("--no-fold-bn", is_flag=True, help="Keep BatchNormalization nodes.")
@click.option("--no-sk-rewrite", is_flag=True, help="Keep the SK softmax-select as exported.")
@raw_input_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@force_option
@json_option
def command(arch, spec, model_kwargs, checkpoint, input_shape, batch, dynamic_batch, opset, exporter, no_simplify,
            no_fold_bn, no_sk_rewrite, raw_input, layout, raw_dtype, output, force, as_json) -> None:
    """Export a model to ONNX, simplify it, rewrite SK blocks and check parity in onnxruntime.

    With no --arch/--model it exports the shipped demo model (sknet-fmnist). Writes OUT.onnx and
    its manifest OUT.onnx.json; writes nothing when parity vs PyTorch fails (exit 1).

    \b
    Examples:
      skdeploy export -o out/demo.onnx
      skdeploy export --arch sknet50 --checkpoint sknet50.pth --dynamic-batch -o sknet50.onnx
      skdeploy export --model timm:skresnet18 --input-shape 3x256x256 -o skresnet18.onnx
      skdeploy export --model my_net.py:build --model-kwargs '{"width": 64}' -o my_net.onnx
      skdeploy export --raw-input --layout nhwc -o out/demo.raw.onnx   # takes uint8 pixels, NHWC
    """
    from ..fileio import check_output_path
    from ..manifest import manifest_path
    from ..models import load_model
    from ..stages.export import ExportSettings, export_model

    for path in (output, manifest_path(output)):  # before the model loads; export checks again under a lock
        check_output_path(path, force)
    settings = ExportSettings(batch=batch, dynamic_batch=dynamic_batch, opset=opset, exporter=exporter,
                              simplify=not no_simplify, fold_bn=not no_fold_bn, sk_rewrite=not no_sk_rewrite,
                              **raw_input_settings(raw_input, layout, raw_dtype))
    shape = parse_input_shape(input_shape) if input_shape else None
    loaded = load_model(arch=arch, spec=spec, model_kwargs=parse_kwargs(model_kwargs), checkpoint=checkpoint,
                        input_shape=shape)
    result = export_model(loaded, output, settings, force=force)
    if as_json:
        ui.emit_json({"output": str(output), "manifest": str(output) + ".json", "parity": result.parity,
                      "passes": [report.as_dict() for report in result.passes], "node_counts": result.node_counts,
                      "raw_input": result.raw_input})
        return
    from .passes import show_passes

    show_passes(result.passes)
    parity = result.parity
    ui.out.print(f"wrote {output} (+ manifest {output}.json)")
    ui.out.print(f"parity: max abs {parity['max_abs']:.3g}, max rel {parity['max_rel']:.3g} "
                 f"(tolerance {parity['tolerance']:g}) over batches {parity['batches']}")
    if result.raw_input:
        ui.out.print(f"raw input vs numpy preprocessing: max rel {result.raw_input['max_rel']:.3g} "
                     f"(tolerance {result.raw_input['tolerance']:g}) on {result.raw_input['images']} images")
