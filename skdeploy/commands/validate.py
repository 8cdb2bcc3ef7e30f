import contextlib

import click

from .. import ui
from . import force_option, json_option, verify_option
from .flags import FINITE_FLOAT


@click.command("validate")
@click.option("--reference", help="FP32 reference: a model name/spec (with --checkpoint), an ONNX/engine or its "
              "manifest (the model it was exported from), or a saved reference .npz. Default: the model the first "
              "candidate's manifest records, or the shipped demo model.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights for a --reference model name.")
@click.option("--candidate", "candidates", multiple=True, type=click.Path(dir_okay=False),
              help="ONNX file or TensorRT engine to validate (repeatable).")
@click.option("--data", type=click.Path(), help="Fashion-MNIST folder, .npz (inputs or images, labels) or a folder of "
              "images (class subfolders give labels). Default for the demo model: the Fashion-MNIST test split.")
@click.option("--limit", type=int, help="Use only the first N samples.")
@click.option("--batch", type=int, default=256, show_default=True, help="Batch size for dynamic-batch models.")
@click.option("--max-top1-drop", type=FINITE_FLOAT, default=0.5, show_default=True,
              help="Most top-1 accuracy (percentage points) a candidate may lose vs FP32 (needs labels).")
@click.option("--min-agreement", type=FINITE_FLOAT, default=0.99, show_default=True,
              help="Least fraction of samples whose top-1 class equals FP32's.")
@click.option("--min-cosine", type=FINITE_FLOAT, help="Least mean cosine similarity of each sample's logits to FP32's. "
              "Default by the candidate's precision: 0.9999 FP32, 0.999 FP16, 0.99 INT8 (and unknown).")
@click.option("--min-snr-db", type=FINITE_FLOAT, help="Least SNR of the logits vs FP32, in dB. Default by the "
              "candidate's precision: 60 FP32, 40 FP16, 20 INT8 (and unknown).")
@click.option("--trust-model-code", is_flag=True, help="Let a manifest's model spec that is a Python file or module "
              "be imported to build the reference (it runs that code); registered names need no trust.")
@click.option("--save-reference", type=click.Path(dir_okay=False),
              help="Store the FP32 outputs, the inputs' sha256 and labels in this .npz for later runs without PyTorch.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a self-contained HTML report here.")
@force_option
@verify_option
@json_option
def command(reference, checkpoint, candidates, data, limit, batch, max_top1_drop, min_agreement, min_cosine,
            min_snr_db, trust_model_code, save_reference, report, force, as_json) -> None:
    """Validate ONNX models and engines against the FP32 PyTorch model; exit 1 when any fails.

    Runs the reference and every candidate on the same preprocessed data and reports top-1/top-5
    accuracy, top-1 agreement with FP32, top-5 overlap, logit error (max, mean), cosine similarity,
    SNR and per-class agreement, with a pass/fail verdict per threshold. A candidate also fails on
    NaN/Inf outputs, a manifest whose preprocessing differs from the reference's, or labelled top-1
    far below the one its manifest records.

    \b
    Examples:
      skdeploy validate --candidate out/demo.onnx --candidate out/demo.int8.onnx --report out/report.html
      skdeploy validate --candidate out/demo.onnx --save-reference out/ref.npz
      skdeploy validate --reference out/ref.npz --candidate engines/demo.engine     # no PyTorch needed
      skdeploy validate --reference sknet50 --checkpoint sknet50.pth --candidate sknet50.onnx --data val_images/
      skdeploy validate --candidate out/demo.int8.onnx --min-cosine 0.999 --min-snr-db 25
    """
    from ..errors import SkdeployError
    from ..fileio import output_transaction
    from ..stages.validate import ValidateSettings, validate

    settings = ValidateSettings(max_top1_drop=max_top1_drop, min_agreement=min_agreement, batch=batch, limit=limit,
                                min_cosine=min_cosine, min_snr_db=min_snr_db)
    outputs = [path for path in (report, save_reference) if path]
    inputs = [*candidates, reference, checkpoint, data]
    with output_transaction(outputs, force, inputs=inputs) if outputs else contextlib.nullcontext():
        result = validate(candidates, reference=reference, checkpoint=checkpoint, data=data, settings=settings,
                          save_reference_to=save_reference, force=force, trust_model_code=trust_model_code)
        if report:
            from ..report import write_report

            write_report(report, result)
    if as_json:
        ui.emit_json(dict(result.record(), report=str(report)) if report else result.record())
    else:
        print_table(result)
        if save_reference:
            ui.out.print(f"saved the FP32 reference to {save_reference}")
        if report:
            ui.out.print(f"report: {report}")
    failed = [c for c in result.candidates if not c.passed]
    if failed:
        reasons = [f"{c.name} ({c.failure_reasons()})" for c in failed]
        raise SkdeployError("validation failed: " + "; ".join(reasons))


def print_table(result) -> None:
    def pct(value) -> str:
        return "n/a" if value is None else f"{value * 100:.2f}%"

    reference = result.reference
    runner = {"pytorch": "pytorch", "onnx-fp32": "onnxruntime"}.get(reference["kind"], "saved .npz")
    rows = [("FP32 reference", runner, "fp32",
             pct(reference.get("top1")), pct(reference.get("top5")), "", "", "", "", "", "", "")]
    for c in result.candidates:
        m = c.metrics
        rows.append((c.name, c.runner, c.precision, pct(m.get("top1")), pct(m.get("top5")),
                     f"{m['top1_drop']:+.2f}" if "top1_drop" in m else "n/a", pct(m["agreement"]),
                     pct(m["top5_overlap"]), f"{m['max_abs']:.3g}", f"{m['cosine_mean']:.6f}",
                     f"{m['snr_db']:.1f}", "PASS" if c.passed else "FAIL"))
    data = result.data
    ui.table(f"validation over {data['count']} samples of {data['source']}",
             ["model", "runner", "precision", "top-1", "top-5", "drop (pts)", "agreement", "top-5 overlap",
              "max |err|", "cosine", "SNR dB", "verdict"], rows)
