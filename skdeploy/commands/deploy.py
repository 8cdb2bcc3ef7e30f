import click

from .. import ui
from . import (
    force_option,
    json_option,
    preprocessing_options,
    preprocessing_settings,
    raw_input_options,
    raw_input_settings,
)

RUNTIME_FIGURES = {"deepstream_nvinfer": "DeepStream (nvinfer's transform, emulated)",
                   "triton_client": "Triton (client.py's preprocessing)"}


@click.command("deploy")
@click.argument("onnx", metavar="[ONNX]", required=False, type=click.Path(dir_okay=False))
@click.option("--arch", help="Registered model name (see 'skdeploy models'). Default: the demo model.")
@click.option("--model", "spec", help="timm:NAME, path/to/file.py:factory or package.module:factory.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="state_dict checkpoint for --arch/--model.")
@click.option("--target", type=click.Choice(["jetson-orin", "rtx", "desktop"]), default="rtx", show_default=True,
              help="Where the engine runs; rtx engines are built here, the others on the device.")
@click.option("--int8", "precision", flag_value="int8", help="INT8 (calibrated, with the accuracy check).")
@click.option("--fp16", "precision", flag_value="fp16", help="FP16.")
@click.option("--calib-data", type=click.Path(), help="Calibration data (default: the demo model's shipped set).")
@click.option("--calib-images", type=int, default=512, show_default=True, help="Calibration samples.")
@click.option("--holdout-images", type=int, default=1000, show_default=True,
              help="Held-out samples for calibration's accuracy check.")
@click.option("--data", type=click.Path(), help="Validation data (default: the model's dataset).")
@click.option("--limit", type=int, default=1000, show_default=True,
              help="Validation subset, also saved as reference.npz for the device.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["plain", "triton", "deepstream"]),
              help="Runtime configs to write (repeatable; default plain).")
@preprocessing_options
@raw_input_options
@click.option("--compute-capability", "compute_capabilities", help="rtx: e.g. 8.6,8.9 (default: the target's).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="Largest batch of the engine profile.")
@click.option("--dla-core", type=int, help="jetson-orin: build for this DLA core (GPU fallback on).")
@click.option("--trt-version", help="INT8: the device's TensorRT, e.g. 8.6 (calibration table header). 10 or "
              "lower, or --dla-core: implicit INT8, the bundle carries the FP32 ONNX and its table.")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="Least top-1 agreement with FP32 for the bundle to be written.")
@click.option("--max-top1-drop", type=float, default=0.5, show_default=True,
              help="Most top-1 accuracy drop (points) vs FP32 for the bundle to be written.")
@click.option("--name", help="Model name in the Triton repository and DeepStream files: letters, digits, _ - . "
              "(default: the model's).")
@click.option("--random-weights", is_flag=True,
              help="Deploy a model without trained weights (no --checkpoint, none shipped); refused otherwise.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Bundle folder.")
@force_option
@json_option
def command(onnx, arch, spec, checkpoint, target, precision, calib_data, calib_images, holdout_images, data, limit,
            formats, mean, std, resize, crop, channel_order, raw_input, layout, raw_dtype, compute_capabilities,
            max_batch, dla_core, trt_version, min_agreement, max_top1_drop, name, random_weights, output, force,
            as_json) -> None:
    """Export, optimize, calibrate, build and validate in one go, and write a bundle to run on the target.

    An ONNX made elsewhere is its own FP32 reference (run in onnxruntime); when no manifest records its
    preprocessing, give it as calibrate takes it: --mean and --std, plus --resize/--crop/--channel-order.

    Triton and DeepStream load classic TensorRT engines only: --format triton/deepstream needs
    --target desktop or jetson-orin (docs/deploy.md has the target x runtime table). --force replaces
    only a bundle deploy wrote; --name may use letters, digits, '_', '-' and '.'.

    The bundle (docs/deploy.md) holds the ONNX and engine with their manifests, reference.npz (FP32 outputs
    on the validation subset, so the device validates without PyTorch), labels.txt, the chosen runtime
    configs, the validation report and README.txt with the three commands to run on the target. Nothing is
    written when validation fails (exit 1). Work is kept in .BUNDLE.work/ beside the bundle: a second run
    reuses every artifact whose manifest records the same inputs (sha256) and settings.

    \b
    Examples:
      skdeploy deploy -o bundles/demo                                   # demo model, RTX, FP32
      skdeploy deploy --target desktop --int8 --format triton --format deepstream -o bundles/demo-int8
      skdeploy deploy --arch sknet50 --checkpoint sknet50.pth --target jetson-orin --int8 \\
          --calib-data photos/ --data val/ --format deepstream -o bundles/sknet50-orin
      skdeploy deploy theirs.onnx --target desktop --fp16 --calib-data photos/ --data val/ \\
          --mean 0.286 --std 0.353 -o bundles/theirs --json
    """
    from ..deployment import DeploySettings, deploy

    raw = raw_input_settings(raw_input, layout, raw_dtype)
    settings = DeploySettings(
        arch=arch, spec=spec, onnx=onnx, checkpoint=checkpoint, target=target, precision=precision or "fp32",
        calib_data=calib_data, calib_images=calib_images, holdout_images=holdout_images, data=data, limit=limit,
        formats=formats or ("plain",),
        compute_capabilities=compute_capabilities.split(",") if compute_capabilities else None, max_batch=max_batch,
        dla_core=dla_core, trt_version=trt_version, min_agreement=min_agreement, max_top1_drop=max_top1_drop,
        name=name, random_weights=random_weights,
        preprocessing=preprocessing_settings(mean, std, resize, crop, channel_order), **raw)
    result = deploy(output, settings, force=force)
    if as_json:
        ui.emit_json(result.record())
        return
    candidate = result.validation.candidates[0]
    ui.out.print(f"validation: PASS, agreement {candidate.metrics['agreement']:.2%} on "
                 f"{result.validation.data['count']} samples (reference preprocessing)")
    for figure, value in result.runtime.items():
        if figure != "reference_preprocessing":
            ui.out.print(f"  as deployed, {RUNTIME_FIGURES.get(figure, figure)}: agreement {value:.2%}")
    ui.out.print(f"wrote {result.bundle}/ (built: {', '.join(result.built) or 'nothing'}; "
                 f"reused: {', '.join(result.reused) or 'nothing'})")
    if result.build_command:
        ui.out.print(f"the engine is built on the device: {result.build_command}")
    ui.out.print(f"next: {result.bundle}/README.txt")
