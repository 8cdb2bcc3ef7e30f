"""PyTorch -> ONNX: trace, check, simplify, run the graph passes, and prove parity in onnxruntime.

    result = export_model(load_model(arch="sknet50"), "sknet50.onnx", ExportSettings(dynamic_batch=True))
    result.parity["max_rel"], result.passes    # also in sknet50.onnx.json's "export" stage: result.record()

Nothing is written unless parity holds: a model that does not reproduce PyTorch is not an output.
"""
import contextlib
import io
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..compare import compare_outputs, merge_comparisons
from ..deps import require
from ..errors import SkdeployError, UsageError, check_field_types, require_finite
from ..log import log
from ..manifest import StageResult
from ..models.entry import new_manifest
from ..onnx.io import graph_inputs, io_spec, node_counts, opset_of, save_onnx
from ..reference import Reference, reference_of
from .stage import run_stage, source_record

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_TOLERANCE = 1e-4
EXPORTERS = ("torchscript", "dynamo")
# opsets each exporter can write: from 11, the least the SK rewrite and TensorRT's parser take, to the
# newest the exporter knows (torch's TorchScript exporter stops at 20)
OPSETS = {"torchscript": range(11, 21), "dynamo": range(11, 24)}


@dataclass
class ExportSettings:
    batch: int = 1
    dynamic_batch: bool = False
    opset: int | None = None  # default: 17 for torchscript, 18 for dynamo
    exporter: str = "torchscript"  # or "dynamo" (EXPORTERS)
    simplify: bool = True
    fold_bn: bool = True
    sk_rewrite: bool = True
    parity_tolerance: float = PARITY_TOLERANCE
    raw_input: bool = False  # preprocessing in the graph: the model takes raw pixels (graph/preprocess.py)
    layout: str = "NCHW"  # of the raw input: NCHW or NHWC
    raw_dtype: str = "uint8"  # of the raw input: uint8 or float32 (0-255)

    def __post_init__(self):
        check_field_types(self)
        if (self.layout != "NCHW" or self.raw_dtype != "uint8") and not self.raw_input:
            raise UsageError("`layout` and `raw_dtype` apply to a raw input: add `raw_input`")
        if self.exporter not in EXPORTERS:
            raise UsageError(f"`exporter` must be torchscript or dynamo, got {self.exporter!r}")
        if self.batch < 1:
            raise UsageError(f"`batch` must be at least 1, got {self.batch}")
        opsets = OPSETS[self.exporter]
        if self.opset is not None and self.opset not in opsets:
            raise UsageError(f"`opset` must be {opsets.start}..{opsets.stop - 1} for the {self.exporter} exporter, "
                             f"got {self.opset}")
        require_finite(parity_tolerance=self.parity_tolerance)

    def resolved_opset(self) -> int:
        return self.opset or (18 if self.exporter == "dynamo" else 17)


@dataclass
class ExportResult(StageResult):
    """What one export made and measured; `record()` is its "export" stage in the manifest."""

    settings: ExportSettings
    source: dict  # {file, sha256} of the checkpoint; both None for a model without one
    simplified: bool  # False when onnx-simplifier could not handle the model
    parity: dict  # worst case vs PyTorch: {max_abs, mean_abs, max_rel, tolerance, passed, batches, inputs}
    passes: list  # graph.PassReport per pass run
    node_counts_exported: dict  # op type -> count, as traced
    node_counts: dict  # as written
    seconds: float | None  # None until the stage skeleton (stages/stage.py) times the stage
    raw_input: dict | None = None  # with `raw_input`: the raw graph vs numpy preprocessing + the normalized graph
    random_weights: str | None = None  # why the exported weights are random, else None

    def record(self) -> dict:
        return {"exporter": self.settings.exporter, "settings": asdict(self.settings), "source": self.source,
                "simplified": self.simplified,
                "parity": self.parity, "passes": [report.as_dict() for report in self.passes],
                "node_counts_exported": self.node_counts_exported, "node_counts": self.node_counts,
                "seconds": self.seconds, "raw_input": self.raw_input, "random_weights": self.random_weights}


def trace_to_onnx(module, input_shape, settings: ExportSettings):
    """Run the chosen PyTorch exporter and return the onnx.ModelProto."""
    torch = require("torch")
    onnx = require("onnx")
    trace_batch = max(settings.batch, 2) if settings.dynamic_batch else settings.batch
    example = torch.randn(trace_batch, *input_shape)
    opset = settings.resolved_opset()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        path = os.path.join(folder, "model.onnx")
        try:
            if settings.exporter == "dynamo":
                dims = {0: torch.export.Dim("batch", min=1)} if settings.dynamic_batch else None
                program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                            dynamic_shapes=(dims,) if dims else None, verbose=False)
                program.save(path)
            else:
                axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if settings.dynamic_batch else None
                torch.onnx.export(module, (example,), path, dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                                  do_constant_folding=True)
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
            raise SkdeployError(f"{settings.exporter} export failed: {str(exc).strip().splitlines()[0]}") from None
        model = onnx.load(path)
    if opset_of(model) != opset:
        raise UsageError(f"the {settings.exporter} exporter could not produce opset {opset} for this model "
                         f"(it produced {opset_of(model)}); pass `opset={opset_of(model)}` "
                         "or use the other `exporter`")
    onnx.checker.check_model(model)
    return model


def parity_inputs(input_shape, settings: ExportSettings, real_images=None):
    """Seeded random batches at two batch sizes (one when the batch is static), plus real images."""
    rng = np.random.default_rng(0)
    sizes = [1, 4] if settings.dynamic_batch else [settings.batch]
    batches = [("random", rng.standard_normal((n, *input_shape)).astype(np.float32)) for n in sizes]
    if real_images is not None and len(real_images):
        for n in sizes:
            batches.append(("real", np.ascontiguousarray(real_images[:n], dtype=np.float32)))
    return batches


def check_parity(reference: Reference, model, batches, tolerance) -> dict:
    """Compare onnxruntime against the FP32 PyTorch reference on every batch; worst case over all."""
    from ..onnx.run import run_model

    input_name, output_name = graph_inputs(model)[0].name, model.graph.output[0].name
    outputs = run_model(model, [{input_name: batch} for _, batch in batches])
    results = []
    with reference.runner() as torch_runner:
        for (kind, batch), got in zip(batches, outputs, strict=True):
            expected = torch_runner.run_batched(batch, len(batch))
            results.append(dict(compare_outputs(expected, got[output_name]), batch=len(batch), inputs=kind))
    worst = merge_comparisons(results)
    return dict(worst, tolerance=tolerance, passed=worst["max_rel"] <= tolerance,
                batches=sorted({r["batch"] for r in results}), inputs=sorted({r["inputs"] for r in results}))


def dataset_images(config, count: int = 8):
    """A few real, preprocessed images for models trained on a known dataset (else None)."""
    if config.dataset != "fashion-mnist":
        return None
    from ..data import load_fashion_mnist

    pixels, _ = load_fashion_mnist("test")
    return config.preprocessing.arrays(pixels[:count])


def export_model(loaded, output, settings: ExportSettings, force: bool = False) -> ExportResult:
    """Export `loaded` (models.LoadedModel) to `output` plus its manifest, both or neither."""
    checkpoint = (getattr(loaded, "checkpoint", None) or {}).get("path")
    return run_stage("export", output, lambda: _export(loaded, Path(output), settings), force=force,
                     inputs=[checkpoint])


def _export(loaded, output: Path, settings: ExportSettings) -> tuple:
    input_shape = tuple(loaded.config.input_size)
    random_weights = loaded.random_weights
    if random_weights:  # an untrained model is worth a word: every later number would measure noise
        log.warning(f"exporting {loaded.spec} with random weights ({random_weights})")
    with log.status(f"exporting {loaded.spec} with the {settings.exporter} exporter"):
        model = trace_to_onnx(loaded.module, input_shape, settings)
    exported_counts = node_counts(model)
    simplified = False
    if settings.simplify:
        with log.status("simplifying"):
            from ..graph.simplify import simplify

            model, simplified = simplify(model)
    passes = []
    if settings.fold_bn or settings.sk_rewrite:
        from ..graph import optimize_graph

        model, passes = optimize_graph(model, fold_bn=settings.fold_bn, sk_rewrite=settings.sk_rewrite)
    with log.status("checking parity with onnxruntime"):
        parity = check_parity(reference_of(loaded), model,
                              parity_inputs(input_shape, settings, dataset_images(loaded.config)),
                              settings.parity_tolerance)
    log.info(f"parity vs PyTorch (batches {parity['batches']}, {'+'.join(parity['inputs'])} inputs): "
             f"max abs {parity['max_abs']:.3g}, max rel {parity['max_rel']:.3g} "
             f"(tolerance {settings.parity_tolerance:g})")
    if not parity["passed"]:
        raise SkdeployError(f"exported ONNX does not match PyTorch: max relative error {parity['max_rel']:.3g} "
                            f"exceeds {settings.parity_tolerance:g}; nothing written")
    preprocessing, raw_parity = loaded.config.preprocessing, None
    if settings.raw_input:
        from ..graph.preprocess import with_raw_input

        model, preprocessing, raw_parity = with_raw_input(model, preprocessing, settings.layout, settings.raw_dtype,
                                                          loaded.config.dataset)
    inputs, outputs = io_spec(model)
    entry = loaded.entry()
    if outputs and entry.num_classes is None:
        last = outputs[0]["shape"][-1]
        entry = replace(entry, num_classes=last if isinstance(last, int) else None)
    manifest = new_manifest(entry, preprocessing.to_dict())
    manifest["inputs"], manifest["outputs"] = inputs, outputs
    manifest["opset"] = opset_of(model)
    checkpoint = entry.checkpoint or {}
    source = source_record(checkpoint.get("path"), checkpoint.get("sha256"))
    result = ExportResult(output, settings, source, simplified, parity, passes, exported_counts, node_counts(model),
                          None, raw_parity, random_weights)
    save_onnx(model, output)
    return result, manifest
