import click

from .. import ui
from ..errors import UsageError
from . import force_option, json_option, raw_input_options, raw_input_settings, verify_option


@click.command("optimize")
@click.argument("source", metavar="IN.onnx", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@click.option("--no-fold-bn", is_flag=True, help="Keep BatchNormalization nodes.")
@click.option("--no-sk-rewrite", is_flag=True, help="Keep the SK softmax-select as exported.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Size of a symbolic input dimension besides the batch, for the checks (repeatable).")
@raw_input_options
@force_option
@verify_option
@json_option
def command(source, output, no_fold_bn, no_sk_rewrite, dims, raw_input, layout, raw_dtype, force, as_json) -> None:
    """Run the graph passes on an ONNX file exported elsewhere: fold BatchNorm, rewrite SK selects.

    The input is simplified first (constant folding, shape inference), as `export` does. Each rewrite
    is checked against what it replaces in onnxruntime and left out when they disagree; the whole
    output is checked against the input before anything is written. The manifest beside
    IN.onnx is carried on (a new one is started when there is none) with an "optimize" stage.

    \b
    Examples:
      skdeploy optimize sknet50.onnx -o sknet50.opt.onnx
      skdeploy optimize sknet50.onnx -o sknet50.bn.onnx --no-sk-rewrite
      skdeploy optimize model.onnx -o model.opt.onnx --force --json
      skdeploy optimize any_size.onnx -o any_size.opt.onnx --dim height=224 --dim width=224
      skdeploy optimize demo.int8.onnx -o demo.int8.raw.onnx --no-fold-bn --no-sk-rewrite --raw-input
    """
    from ..fileio import check_output_path
    from ..manifest import manifest_path
    from ..stages.optimize import optimize_onnx
    from .passes import show_passes

    raw = raw_input_settings(raw_input, layout, raw_dtype)
    if no_fold_bn and no_sk_rewrite and not raw_input:
        raise UsageError("--no-fold-bn with --no-sk-rewrite leaves no pass to run")
    for path in (output, manifest_path(output)):
        check_output_path(path, force)
    result = optimize_onnx(source, output, fold_bn=not no_fold_bn, sk_rewrite=not no_sk_rewrite, force=force,
                           sizes=dim_sizes(dims),
                           raw_input={"layout": raw["layout"], "raw_dtype": raw_dtype} if raw_input else None)
    if as_json:
        ui.emit_json({"output": str(output), "manifest": str(output) + ".json",
                      "passes": [report.as_dict() for report in result.passes],
                      "node_counts_before": result.node_counts_before, "node_counts_after": result.node_counts_after,
                      "parity": result.parity, "raw_input": result.raw_input})
        return
    show_passes(result.passes)
    parity = result.parity
    ui.out.print(f"output vs input in onnxruntime (batches {parity['batches']}): max rel {parity['max_rel']:.3g} "
                 f"(tolerance {parity['tolerance']:g})")
    ui.out.print(f"wrote {output} (+ manifest {output}.json)")


def dim_sizes(dims) -> dict:
    """--dim NAME=SIZE values as {name: size}."""
    sizes = {}
    for text in dims:
        name, _, size = text.partition("=")
        if not name or not size.isdigit() or int(size) < 1:
            raise UsageError(f"--dim takes NAME=SIZE with a positive whole SIZE, got {text!r}")
        sizes[name] = int(size)
    return sizes
