"""Running the passes in order, reporting what each did, and the file-to-file `optimize` stage."""
import collections
import time
from pathlib import Path

import numpy as np

from .. import ui
from ..compare import compare_outputs, merge_comparisons
from ..errors import SkdeployError
from ..fileio import check_output_path, sha256_file
from ..manifest import add_stage, derive, load_manifest, new_manifest, write_manifest
from ..onnxutil import io_spec, load_onnx, node_counts, opset_of, save_onnx
from .fold_bn import fold_batchnorms
from .rewrite import TOLERANCE
from .shapes import infer_types, parity_batches
from .sk_select import rewrite_sk_blocks

PASSES = (("fold_bn", "folding BatchNormalization", fold_batchnorms),
          ("sk_rewrite", "rewriting SK selects", rewrite_sk_blocks))


def optimize_graph(model, fold_bn=True, sk_rewrite=True, tolerance=TOLERANCE):
    """Run the enabled passes on `model` (changed in place); returns (model, [report per pass])."""
    import onnx

    enabled = {"fold_bn": fold_bn, "sk_rewrite": sk_rewrite}
    reports = []
    for name, message, run in PASSES:
        if not enabled[name]:
            continue
        before, started = node_counts(model), time.time()
        with ui.status(message):
            report = run(model, tolerance)
        report.update(node_counts_before=before, node_counts_after=node_counts(model),
                      seconds=round(time.time() - started, 2))
        report["summary"] = describe(report)[0]
        reports.append(report)
    onnx.checker.check_model(model)
    return model, reports


def describe(report) -> list:
    """What one pass did, as lines for the terminal."""
    nodes = f"nodes {sum(report['node_counts_before'].values())} -> {sum(report['node_counts_after'].values())}"
    if report["name"] == "fold_bn":
        folded = report["folded"]
        into = f" (into {', '.join(f'{op} {n}' for op, n in folded.items())})" if folded else ""
        lines = [f"fold_bn: {report['batchnorms']} BatchNormalization: {sum(folded.values())} folded{into}, "
                 f"{report['scale_and_shift']} made scale-and-shift, {len(report['left'])} left; {nodes}"]
        return lines + [f"  left {entry['node']}: {entry['reason']}" for entry in report["left"]]
    by_m = collections.Counter(entry["M"] for entry in report["rewritten"])
    kinds = ", ".join(f"M={m}: {n}" for m, n in sorted(by_m.items()))
    lines = [f"sk_rewrite: {report['blocks_found']} SK blocks found, {len(report['rewritten'])} rewritten"
             f"{f' ({kinds})' if kinds else ''}; {report['stacked_sums_unrolled']} stacked sums unrolled, "
             f"{report['splits_to_slices']} Splits made Slices; worst block parity {report['max_rel']:.2g}; {nodes}"]
    return lines + [f"  left {entry['block']}: {entry['reason']}" for entry in report["left"]]


def show_passes(reports) -> None:
    """Print what each pass did and the node counts by op type before the first and after the last."""
    if not reports:
        return
    for report in reports:
        for line in describe(report):
            ui.out.print(line)
    before, after = reports[0]["node_counts_before"], reports[-1]["node_counts_after"]
    rows = [(op, before.get(op, 0), after.get(op, 0)) for op in sorted(set(before) | set(after))]
    rows.append(("total", sum(before.values()), sum(after.values())))
    ui.table("nodes by op type", ["op", "before passes", "after passes"], rows)


def model_parity(reference, candidate, seed=0) -> dict:
    """Both models on the same random inputs at the parity batch sizes (worst case over outputs)."""
    from ..runners.onnxrt import OnnxRuntimeRunner

    rng = np.random.default_rng(seed)
    results, sizes = [], []
    with OnnxRuntimeRunner(reference) as old, OnnxRuntimeRunner(candidate) as new:
        for batch in parity_batches(reference):
            types = infer_types(reference, batch)
            feed = {}
            for spec in old.input_specs():
                shape = types[spec.name].shape
                if shape is None:
                    return {"skipped": f"input {spec.name} has symbolic dimensions besides the batch"}
                feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            expected, got = old.infer(feed), new.infer(feed)
            results += [compare_outputs(expected[name], got[name]) for name in old.output_names()]
            sizes.append(next(iter(feed.values())).shape[0])
    return dict(merge_comparisons(results), batches=sizes)


def _manifest_for(path, model):
    parent = load_manifest(path, required=False)
    if parent is not None:
        return derive(parent)
    inputs, _ = io_spec(model)
    size = inputs[0]["shape"][1:] if inputs else None
    entry = {"spec": f"onnx:{Path(path).name}", "checkpoint": None, "kwargs": {}, "num_classes": None,
             "dataset": None, "input_size": size if size and all(isinstance(d, int) for d in size) else None}
    return new_manifest(entry, None)


def optimize_onnx(source, output, fold_bn=True, sk_rewrite=True, force=False, tolerance=TOLERANCE) -> dict:
    """Optimize the ONNX file `source` into `output` plus its manifest; returns the manifest.

    Nothing is written unless the whole optimized model matches the input in onnxruntime.
    """
    import onnx

    output = check_output_path(output, force)
    started = time.time()
    model = load_onnx(source)
    manifest = _manifest_for(source, model)
    original = onnx.ModelProto()
    original.CopyFrom(model)
    before = node_counts(model)
    model, reports = optimize_graph(model, fold_bn=fold_bn, sk_rewrite=sk_rewrite, tolerance=tolerance)
    with ui.status("checking the optimized model against the input in onnxruntime"):
        parity = model_parity(original, model)
    if "skipped" not in parity:
        parity.update(tolerance=tolerance, passed=parity["max_rel"] <= tolerance)
        if not parity["passed"]:
            raise SkdeployError(f"optimized model differs from {Path(source).name}: max relative error "
                                f"{parity['max_rel']:.3g} > {tolerance:g}; nothing written")
    manifest["inputs"], manifest["outputs"] = io_spec(model)
    manifest["opset"] = opset_of(model)
    add_stage(manifest, "optimize", source={"file": str(source), "sha256": sha256_file(source)},
              settings={"fold_bn": fold_bn, "sk_rewrite": sk_rewrite, "tolerance": tolerance}, passes=reports,
              node_counts_before=before, node_counts_after=node_counts(model), parity=parity,
              seconds=round(time.time() - started, 2))
    save_onnx(model, output)
    write_manifest(output, manifest, kind="onnx")
    return manifest
