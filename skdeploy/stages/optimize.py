"""ONNX -> ONNX through the graph passes, file to file: onnx-simplifier first (as export does), then the
passes, then a check that the whole output matches the input in onnxruntime.

    result = optimize_onnx("elsewhere.onnx", "elsewhere.opt.onnx")
    result.passes, result.parity["max_rel"]     # also in the output's manifest: its "optimize" stage
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..compare import compare_outputs, merge_comparisons
from ..data import Preprocessing
from ..errors import SkdeployError, UsageError
from ..graph import optimize_graph
from ..graph.rewrite import TOLERANCE, parity_batches
from ..graph.simplify import simplify
from ..log import log
from ..manifest import StageResult, load_manifest
from ..models.entry import ModelEntry, derive_manifest, new_manifest
from ..onnx.io import graph_inputs, io_spec, load_onnx, node_counts, opset_of, save_onnx
from ..onnx.run import run_model
from ..onnx.shapes import infer_types, unsized_dims
from .stage import run_stage, source_record

if TYPE_CHECKING:
    from onnx import ModelProto

    from ..fileio import PathLike


def require_sizes(model: ModelProto, sizes: dict | None) -> None:
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


def model_parity(reference: ModelProto, candidate: ModelProto, seed: int = 0, sizes: dict | None = None) -> dict:
    """Both models on the same random inputs at the parity batch sizes (worst case over outputs)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for batch in parity_batches(reference):
        types = infer_types(reference, batch, sizes)
        feeds.append({value.name: rng.standard_normal(types[value.name].shape).astype(types[value.name].dtype)
                      for value in graph_inputs(reference)})
    results = [compare_outputs(expected[name], got[name])
               for expected, got in zip(run_model(reference, feeds), run_model(candidate, feeds),
               strict=False) for name in expected]
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
    seconds: float | None  # None until the stage skeleton (stages/stage.py) times the stage
    raw_input: dict | None = None  # with `raw_input`: the raw graph vs numpy preprocessing + the passes' output

    def record(self) -> dict:
        return {"source": self.source, "settings": self.settings, "simplified": self.simplified,
                "passes": [report.as_dict() for report in self.passes], "node_counts_before": self.node_counts_before,
                "node_counts_after": self.node_counts_after, "parity": self.parity, "seconds": self.seconds,
                "raw_input": self.raw_input}


def _manifest_for(path, model):
    parent = load_manifest(path, required=False)
    if parent is not None:
        return derive_manifest(parent)
    inputs, outputs = io_spec(model)
    return new_manifest(ModelEntry.of_graph(inputs, spec=f"onnx:{Path(path).name}", outputs=outputs), None)


def optimize_onnx(source: PathLike, output: PathLike, fold_bn: bool = True, sk_rewrite: bool = True,
                  force: bool = False, tolerance: float = TOLERANCE, sizes: dict | None = None,
                  raw_input: dict | None = None, preprocessing: dict | None = None) -> OptimizeResult:
    """Optimize the ONNX file `source` into `output` plus its manifest: onnx-simplifier first (as export
    does), then the passes. `sizes` ({dim name: size}) sizes symbolic input dimensions besides the batch for
    the checks; the written model keeps them symbolic. `raw_input` = {"layout", "raw_dtype"} then puts the
    manifest's preprocessing into the graph (graph/preprocess.py). `preprocessing` (a Preprocessing dict)
    records the preprocessing of an ONNX whose manifest has none, so later stages can prepare its data.

    Nothing is written unless the whole optimized model matches the input in onnxruntime.
    """
    return run_stage("optimize", output, lambda: _optimize(source, Path(output), fold_bn, sk_rewrite, tolerance,
                                                               sizes, raw_input, preprocessing), force=force,
                     inputs=[source])


def _optimize(source, output: Path, fold_bn, sk_rewrite, tolerance, sizes, raw_input, preprocessing) -> tuple:
    import onnx

    model = load_onnx(source)
    require_sizes(model, sizes)
    manifest = _manifest_for(source, model)
    if preprocessing:
        if manifest.get("preprocessing"):
            raise UsageError(f"{Path(source).name} has a manifest that records its preprocessing; give "
                             "one only for an ONNX without it")
        manifest["preprocessing"] = Preprocessing.from_dict(preprocessing).to_dict()
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
        from ..graph.preprocess import with_raw_input

        if not manifest.get("preprocessing"):
            raise UsageError(f"`raw_input` needs the preprocessing, and {Path(source).name} has no manifest that "
                             "records it")
        model, raw, raw_parity = with_raw_input(model, Preprocessing.from_dict(manifest["preprocessing"]),
                                                raw_input["layout"], raw_input["raw_dtype"],
                                                manifest["model"].get("dataset"))
        manifest["preprocessing"] = raw.to_dict()
    manifest["inputs"], manifest["outputs"] = io_spec(model)
    manifest["opset"] = opset_of(model)
    settings = {"fold_bn": fold_bn, "sk_rewrite": sk_rewrite, "tolerance": tolerance, "sizes": sizes or {},
                "raw_input": raw_input}
    if preprocessing:
        settings["preprocessing"] = manifest["preprocessing"]
    result = OptimizeResult(output, source_record(source), settings, simplified, reports,
                            before, node_counts(model), parity, None, raw_parity)
    save_onnx(model, output)
    return result, manifest
