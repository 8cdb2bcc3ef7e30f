"""Running the passes in order, reporting what each did, and the file-to-file `optimize` stage."""
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ui
from ..compare import compare_outputs, merge_comparisons
from ..data import Preprocessing
from ..errors import SkdeployError, UsageError
from ..fileio import output_transaction, sha256_file
from ..log import log
from ..manifest import StageResult, add_stage, load_manifest, manifest_path, write_manifest
from ..models.entry import ModelEntry, derive_manifest, new_manifest
from ..onnx.cleanup import list_initializers_as_inputs
from ..onnx.io import graph_inputs, io_spec, load_onnx, node_counts, opset_of, save_onnx
from ..onnx.run import run_model
from ..onnx.shapes import infer_types, unsized_dims
from .fold_bn import FoldReport, fold_batchnorms
from .rewrite import TOLERANCE, parity_batches
from .simplify import simplify
from .sk_select import SkRewriteReport, rewrite_sk_blocks

PASSES = ((FoldReport, "folding BatchNormalization", fold_batchnorms),
          (SkRewriteReport, "rewriting SK selects", rewrite_sk_blocks))
REPORT_TYPES = {report_type.name: report_type for report_type, _, _ in PASSES}


def optimize_graph(model, fold_bn=True, sk_rewrite=True, tolerance=TOLERANCE, sizes=None):
    """Run the enabled passes on `model` (changed in place); returns (model, [PassReport per pass]).
    `sizes` ({dim name: size}) sizes the inputs' symbolic dimensions besides the batch for the checks."""
    import onnx

    enabled = {"fold_bn": fold_bn, "sk_rewrite": sk_rewrite}
    reports = []
    for report_type, message, run in PASSES:
        if not enabled[report_type.name]:
            continue
        before, started = node_counts(model), time.time()
        with log.status(message):
            report = run(model, tolerance, sizes)
        report.node_counts_before, report.node_counts_after = before, node_counts(model)
        report.seconds = round(time.time() - started, 2)
        reports.append(report)
    list_initializers_as_inputs(model)
    onnx.checker.check_model(model)
    return model, reports


def as_report(report):
    """`report` as a PassReport: reports read back from a manifest are plain dicts."""
    return REPORT_TYPES[report["name"]].from_dict(report) if isinstance(report, dict) else report


def describe(report) -> list:
    """What one pass did, as lines for the terminal (a PassReport or its manifest dict)."""
    return as_report(report).describe()


def show_passes(reports) -> None:
    """Print what each pass did and the node counts by op type before the first and after the last."""
    if not reports:
        return
    reports = [as_report(report) for report in reports]
    for report in reports:
        for line in report.describe():
            ui.out.print(line)
    before, after = reports[0].node_counts_before, reports[-1].node_counts_after
    rows = [(op, before.get(op, 0), after.get(op, 0)) for op in sorted(set(before) | set(after))]
    rows.append(("total", sum(before.values()), sum(after.values())))
    ui.table("nodes by op type", ["op", "before passes", "after passes"], rows)


def require_sizes(model, sizes) -> None:
    """The checks run the model on concrete inputs: every symbolic input dimension besides the batch needs
    a size from `sizes` ({dim name: size}); one line saying which when one has none."""
    for dim, size in (sizes or {}).items():
        if not isinstance(size, int) or size < 1:
            raise UsageError(f"`sizes` must give each dimension a positive whole size, got {dim}={size!r}")
    for name, axis, dim in unsized_dims(model, sizes):
        if dim is None:
            raise UsageError(f"input {name} has an unnamed dynamic dimension (axis {axis}) besides the batch: "
                             "the checks need concrete sizes; give it a name and a size in `sizes`, or fix it")
        raise UsageError(f"input {name} has the symbolic dimension {dim!r} (axis {axis}) besides the batch: "
                         f"the checks need concrete sizes; give one in `sizes`, e.g. {dim}=224")


def model_parity(reference, candidate, seed=0, sizes=None) -> dict:
    """Both models on the same random inputs at the parity batch sizes (worst case over outputs)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for batch in parity_batches(reference):
        types = infer_types(reference, batch, sizes)
        feeds.append({value.name: rng.standard_normal(types[value.name].shape).astype(types[value.name].dtype)
                      for value in graph_inputs(reference)})
    results = [compare_outputs(expected[name], got[name])
               for expected, got in zip(run_model(reference, feeds), run_model(candidate, feeds)) for name in expected]
    return dict(merge_comparisons(results), batches=[next(iter(feed.values())).shape[0] for feed in feeds])


@dataclass
class OptimizeResult(StageResult):
    """What the optimize stage did to one file; `record()` is its "optimize" stage in the manifest."""

    source: dict  # {file, sha256} of the input ONNX
    settings: dict  # {fold_bn, sk_rewrite, tolerance, sizes, raw_input}
    simplified: bool  # False when onnx-simplifier could not handle the model (the passes ran on it as given)
    passes: list  # PassReport per pass run
    node_counts_before: dict
    node_counts_after: dict
    parity: dict  # output vs input: {max_abs, mean_abs, max_rel, batches, tolerance, passed}
    seconds: float
    raw_input: dict = None  # with `raw_input`: the raw graph vs numpy preprocessing + the passes' output

    def record(self) -> dict:
        return {"source": self.source, "settings": self.settings, "simplified": self.simplified,
                "passes": [report.as_dict() for report in self.passes], "node_counts_before": self.node_counts_before,
                "node_counts_after": self.node_counts_after, "parity": self.parity, "seconds": self.seconds,
                "raw_input": self.raw_input}


def _manifest_for(path, model):
    parent = load_manifest(path, required=False)
    if parent is not None:
        return derive_manifest(parent)
    return new_manifest(ModelEntry.of_graph(io_spec(model)[0], spec=f"onnx:{Path(path).name}"), None)


def optimize_onnx(source, output, fold_bn=True, sk_rewrite=True, force=False, tolerance=TOLERANCE,
                  sizes=None, raw_input=None) -> OptimizeResult:
    """Optimize the ONNX file `source` into `output` plus its manifest: onnx-simplifier first (as export
    does), then the passes. `sizes` ({dim name: size}) sizes symbolic input dimensions besides the batch for
    the checks; the written model keeps them symbolic. `raw_input` = {"layout", "raw_dtype"} then puts the
    manifest's preprocessing into the graph (graph/preprocess.py).

    Nothing is written unless the whole optimized model matches the input in onnxruntime.
    """
    output = Path(output)
    with output_transaction([output, manifest_path(output)], force):
        return _optimize(source, output, fold_bn, sk_rewrite, tolerance, sizes, raw_input)


def _optimize(source, output: Path, fold_bn, sk_rewrite, tolerance, sizes, raw_input) -> OptimizeResult:
    import onnx

    started = time.time()
    model = load_onnx(source)
    require_sizes(model, sizes)
    manifest = _manifest_for(source, model)
    original = onnx.ModelProto()
    original.CopyFrom(model)
    before = node_counts(model)
    with log.status("simplifying"):
        model, simplified = simplify(model)
    model, reports = optimize_graph(model, fold_bn=fold_bn, sk_rewrite=sk_rewrite, tolerance=tolerance, sizes=sizes)
    with log.status("checking the optimized model against the input in onnxruntime"):
        parity = model_parity(original, model, sizes=sizes)
    parity.update(tolerance=tolerance, passed=parity["max_rel"] <= tolerance)
    if not parity["passed"]:
        raise SkdeployError(f"optimized model differs from {Path(source).name}: max relative error "
                            f"{parity['max_rel']:.3g} > {tolerance:g}; nothing written")
    raw_parity = None
    if raw_input:
        from .preprocess import with_raw_input

        if not manifest.get("preprocessing"):
            raise UsageError(f"`raw_input` needs the preprocessing, and {Path(source).name} has no manifest that "
                             "records it")
        model, raw, raw_parity = with_raw_input(model, Preprocessing.from_dict(manifest["preprocessing"]),
                                                raw_input["layout"], raw_input["raw_dtype"],
                                                manifest["model"].get("dataset"))
        manifest["preprocessing"] = raw.to_dict()
    manifest["inputs"], manifest["outputs"] = io_spec(model)
    manifest["opset"] = opset_of(model)
    result = OptimizeResult(output, {"file": str(source), "sha256": sha256_file(source)},
                            {"fold_bn": fold_bn, "sk_rewrite": sk_rewrite, "tolerance": tolerance,
                             "sizes": sizes or {}, "raw_input": raw_input}, simplified, reports,
                            before, node_counts(model), parity, round(time.time() - started, 2), raw_parity)
    add_stage(manifest, "optimize", result.record())
    save_onnx(model, output)
    write_manifest(output, manifest, kind="onnx")
    return result
