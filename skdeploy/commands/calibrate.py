import click

from .. import ui
from ..errors import UsageError
from . import force_option, json_option, precision_options, preprocessing_options, preprocessing_settings, verify_option
from .flags import FINITE_FLOAT


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False))
@precision_options(int8="INT8: Q/DQ pairs from calibration ranges.",
                   fp16="FP16: FP16 types, FP32 kept where values overflow.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@click.option("--calib-data", type=click.Path(), help="Folder of images (recursive), .npy/.npz, or a "
              "*-images-idx3-ubyte[.gz] file. Default for the demo model: calibration/fashion-mnist-train-2048.npz.")
@click.option("--calib-images", type=int, default=512, show_default=True, help="Seeded random subset size.")
@click.option("--holdout-images", type=int, default=1000, show_default=True,
              help="Samples after the calibration subset used to measure accuracy (0: do not measure).")
@click.option("--method", type=click.Choice(["mse", "percentile", "entropy", "max"]), default="mse",
              show_default=True, help="INT8 activation range: the least squared quantisation error, a percentile "
              "of |x|, TensorRT's KL divergence search over >= 2048 bins, or the absolute max.")
@click.option("--percentile", type=FINITE_FLOAT, default=99.99, show_default=True,
              help="For --method percentile, and the lowest range --method mse may pick.")
@click.option("--bins", type=int, default=2048, show_default=True, help="Histogram bins over [0, max] (>= 2048).")
@click.option("--max-top1-drop", type=FINITE_FLOAT, help="Accuracy budget in points vs the FP32 model; INT8 layers "
              "with the worst own error move to --fallback until it holds.")
@click.option("--fallback", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
              help="Precision of layers moved out of INT8 by the budget.")
@click.option("--keep-fp32", multiple=True, metavar="NODE", help="Node name to keep FP32 (repeatable).")
@click.option("--keep-fp16", multiple=True, metavar="NODE", help="INT8: layer to compute in FP16 instead "
              "(repeatable; 'skdeploy debug-precision' prints which).")
@click.option("--fp16-io", is_flag=True, help="FP16 graph inputs and outputs (default: FP32).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset selection.")
@click.option("--batch-size", type=int, help="Calibration batch (default: fit --memory-mb of activations).")
@click.option("--memory-mb", type=int, default=512, show_default=True, help="Activation memory per batch.")
@click.option("--trt-version", default="10.3.0", show_default=True,
              help="TensorRT version in the calibration table header (JetPack 6.2: 10.3.0, 6.0: 8.6.2).")
@click.option("--no-cache", is_flag=True, help="Recompute ranges even when the cache beside OUT matches.")
@preprocessing_options
@force_option
@verify_option
@json_option
def command(model, precision, output, calib_data, calib_images, holdout_images, method, percentile, bins,
            max_top1_drop, fallback, keep_fp32, keep_fp16, fp16_io, seed, batch_size, memory_mb, trt_version,
            no_cache, mean, std, resize, crop, channel_order, force, as_json) -> None:
    """Calibrate an FP32 ONNX into explicit INT8 (Q/DQ) or FP16 for TensorRT 11 / TensorRT-RTX.

    Preprocessing comes from MODEL's manifest. Writes OUT.onnx, its manifest OUT.onnx.json, the ranges
    cache OUT.onnx.ranges.json (reused by a rerun with the same model, data and settings) and, for INT8,
    a TensorRT calibration table OUT.onnx.calib.table. Accuracy is measured on held-out samples
    against the FP32 model (PyTorch when its weights are known, else the FP32 ONNX).

    \b
    Examples:
      skdeploy calibrate out/demo.onnx --int8 -o out/demo_int8.onnx
      skdeploy calibrate out/demo.onnx --int8 --method entropy -o out/demo_kl.onnx
      skdeploy calibrate out/demo.onnx --int8 --max-top1-drop 0.3 -o out/demo_int8.onnx
      skdeploy calibrate out/demo.onnx --fp16 --keep-fp32 /fc/Gemm -o out/demo_fp16.onnx
      skdeploy calibrate sknet50.onnx --int8 --calib-data photos/ --calib-images 1024 -o sknet50_int8.onnx
      skdeploy calibrate plain.onnx --int8 --calib-data imgs/ --mean 0.485,0.456,0.406 \\
          --std 0.229,0.224,0.225 --resize 256 --crop 224 -o plain_int8.onnx
    """
    from ..stages.calibrate import CalibrationSettings, calibrate_model

    if precision is None:
        raise UsageError("choose --int8 or --fp16")
    settings = CalibrationSettings(
        precision=precision, method=method, percentile=percentile, calib_data=calib_data, calib_images=calib_images,
        holdout_images=holdout_images, seed=seed, bins=bins, batch_size=batch_size, memory_mb=memory_mb,
        max_top1_drop=max_top1_drop, fallback=fallback, keep_fp32=tuple(keep_fp32),
        keep_fp16=tuple(keep_fp16), fp16_io=fp16_io,
        trt_version=trt_version, reuse_cache=not no_cache,
        preprocessing=preprocessing_settings(mean, std, resize, crop, channel_order))
    result = calibrate_model(model, output, settings, force=force)
    fallback_layers, kept_fp32 = result.fallback_layers or [], result.kept_fp32 or []
    if as_json:
        ui.emit_json({"output": str(output), "manifest": str(output) + ".json", "precision": result.precision,
                      "method": result.method, "data": result.data, "ranges_file": result.ranges_file,
                      "ranges_cache": result.ranges_cache, "calibration_table": result.calibration_table,
                      "accuracy": result.accuracy, "fallback_layers": fallback_layers, "kept_fp32": kept_fp32})
        return
    ui.out.print(f"wrote {output} (+ manifest, ranges {result.ranges_file}"
                 + (f", TensorRT table {result.calibration_table})" if result.calibration_table else ")"))
    accuracy = result.accuracy
    if accuracy:
        line = f"top-1 drop {accuracy['drop']:.2f} points, agreement {accuracy['agreement']:.2%}"
        if accuracy["metric"] == "labels":
            line += f" ({accuracy['top1']:.2%} vs FP32 {accuracy['reference_top1']:.2%})"
        ui.out.print(f"{line} on {accuracy['images']} held-out samples, reference {accuracy['reference']}")
    else:
        ui.out.print("accuracy not measured: no held-out samples beyond the calibration subset")
    for layer in fallback_layers:
        ui.out.print(f"moved to {layer['precision']}: {layer['name']} "
                     f"({layer['op']}, own error {layer['own_error']:.3g})")
    for kept in kept_fp32:
        ui.out.print(f"kept FP32: {kept['name']} ({kept['reason']})")
