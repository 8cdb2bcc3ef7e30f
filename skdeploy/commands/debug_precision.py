import contextlib
import dataclasses

import click

from .. import ui
from . import force_option, json_option, verify_option
from .flags import FINITE_FLOAT


@click.command("debug-precision")
@click.argument("candidate", type=click.Path(dir_okay=False))
@click.option("--fp32", type=click.Path(dir_okay=False), help="The FP32 ONNX. Default: the one CANDIDATE's "
              "manifest was calibrated from (as recorded, else beside CANDIDATE), checked by sha256.")
@click.option("--samples", type=int, default=500, show_default=True,
              help="Samples to measure on: the calibration data's held-out ones, or the first of --data.")
@click.option("--data", type=click.Path(), help="Other samples (folder of images, .npy/.npz, IDX) in the manifest's "
              "preprocessing. Default: the calibration data CANDIDATE's manifest records.")
@click.option("--seed", type=int, help="Seed of the sample order. Default: calibration's.")
@click.option("--min-agreement", type=FINITE_FLOAT, help="Top-1 agreement with FP32 the fewest wide layers must "
              "reach. Default: 1 - calibrate's --max-top1-drop / 100, else 0.99.")
@click.option("--fallback", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
              help="What a layer kept wide computes in (calibrate's --keep-fp16 or --keep-fp32).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Samples per onnxruntime run.")
@click.option("--tensors-per-pass", type=int, default=8, show_default=True,
              help="Layers compared per pass over the samples; fewer keep peak memory lower, more run fewer passes.")
@click.option("--top", type=click.IntRange(min=0), default=15, show_default=True,
              help="Rows of the table (--json and --html: all).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write a self-contained HTML page: SNR along the depth, the minimal set, the ranked table.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False),
              help="Calibrate the FP32 model again with the minimal set kept wide, into this .onnx (+ manifest, "
              "ranges, table), as 'skdeploy calibrate' with the printed flags does.")
@force_option
@verify_option
@json_option
def command(candidate, fp32, samples, data, seed, min_agreement, fallback, batch_size, tensors_per_pass, top, html_path,
            write_path, force, as_json):
    """Find the INT8 layers that cost accuracy, and the fewest to keep in FP16 (or FP32).

    CANDIDATE is an INT8 ONNX from 'skdeploy calibrate'. Per quantized layer (ONNX node), against
    the FP32 model on held-out samples: the accumulated error (the INT8 model's output of that layer)
    and the isolated error (the layer alone quantized, fed FP32 inputs) as SNR dB and cosine, and
    the top-1 agreement gained by keeping that layer wide. Then a greedy search by that gain and a
    pruning pass find the smallest set to keep wide for --min-agreement, printing each step, and the
    calibrate flags that make it. Runs in onnxruntime on the CPU; no GPU needed.

    \b
    Examples:
      skdeploy debug-precision out/demo_int8.onnx
      skdeploy debug-precision out/demo_int8.onnx --min-agreement 0.999 --samples 1000 --html out/precision.html
      skdeploy debug-precision out/demo_int8.onnx --min-agreement 0.999 --write out/demo_mixed.onnx
      skdeploy debug-precision sknet50_int8.onnx --fp32 sknet50.onnx --data photos/ --samples 64 --json
    """
    from ..calib.sensitivity import PrecisionSettings, debug_precision
    from ..calib.sensitivity_page import write_page
    from ..errors import SkdeployError
    from ..fileio import output_transaction
    from ..stages.calibrate import CalibrationSettings, calibrate_model, calibration_outputs

    settings = PrecisionSettings(samples=samples, fp32=fp32, data=data, seed=seed, min_agreement=min_agreement,
                                 fallback=fallback, batch_size=batch_size, tensors_per_pass=tensors_per_pass)
    outputs = ([html_path] if html_path else []) + (calibration_outputs(write_path, "int8") if write_path else [])
    written = None
    with output_transaction(outputs, force) if outputs else contextlib.nullcontext():
        report = debug_precision(candidate, settings)
        if write_path:
            if report.minimal is None:
                raise SkdeployError(f"no set of layers in {fallback} reaches agreement {report.min_agreement:.2%} "
                                    f"(all of them: {report.search['agreement']:.2%}); nothing written")
            known = {f.name for f in dataclasses.fields(CalibrationSettings)}
            settings = CalibrationSettings(**{key: value for key, value in report.calibration_settings().items()
                                              if key in known})
            written = calibrate_model(report.fp32, write_path, settings, force=force)
        record = report.record()
        if html_path:
            write_page(html_path, record)
    if written is not None:
        record["written"] = {"output": str(write_path), "accuracy": written.accuracy}
    if as_json:
        ui.emit_json(dict(record, html=html_path))
        return
    print_report(record, top)
    if written is not None:
        accuracy = written.accuracy
        ui.out.print(f"wrote {write_path} (+ manifest, ranges, TensorRT table)"
                     + (f": agreement {accuracy['agreement']:.2%} on {accuracy['images']} held-out samples "
                        f"(reference {accuracy['reference']})" if accuracy else ""))
    if html_path:
        ui.out.print(f"report: {html_path}")


def _snr(value) -> str:
    return "exact" if value is None else f"{value:.1f}"


def print_report(record: dict, top: int) -> None:
    data, search = record["data"], record["search"]
    wide = set(search["minimal"] or ())
    rows = [(row["rank"], ("* " if row["name"] in wide else "") + row["name"], row["op"],
             _snr(row["accumulated"]["snr_db"]), f"{row['accumulated']['cosine']:.5f}",
             _snr(row["isolated"]["snr_db"]), f"{row['isolated']['cosine']:.5f}", f"{row['agreement_gain']:+.2%}")
            for row in record["layers"][:top]]
    ui.table(f"{len(record['layers'])} INT8 layers of {record['candidate']} vs FP32 on {data['samples']} samples "
             f"({data['split']}); top-1 agreement {record['agreement']:.2%}; * = kept wide",
             ["rank", "ONNX node", "op", "acc. SNR dB", "acc. cosine", "iso. SNR dB", "iso. cosine",
              f"gain in {record['fallback']}"], rows)
    for number, step in enumerate(search["steps"]):
        what = {"start": "every layer INT8", "add": f"+ {step['layer']}", "drop": f"- {step['layer']} (not needed)",
                "keep": f"  {step['layer']} stays (needed)"}[step["action"]]
        ui.out.print(f"step {number}: {what}: agreement {step['agreement']:.2%}")
    if search["minimal"] is None:
        ui.out.print(f"no set reaches {record['min_agreement']:.2%}: with every layer in {record['fallback']} the "
                     f"agreement is {search['agreement']:.2%}")
    elif not search["minimal"]:
        ui.out.print(f"every layer can stay INT8: agreement {record['agreement']:.2%} meets "
                     f"{record['min_agreement']:.2%}")
    else:
        ui.out.print(f"fewest layers to keep in {record['fallback']}: {len(search['minimal'])}, agreement "
                     f"{search['agreement']:.2%} (target {record['min_agreement']:.2%})")
        ui.out.print(f"calibrate flags: {' '.join(record['flags'])}")
        ui.out.print(f"command: {record['command']}")
