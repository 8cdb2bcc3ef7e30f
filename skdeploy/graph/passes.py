"""Running the passes in order and reading back what each did (skdeploy.stages.optimize runs them file to
file; commands/passes.py prints their reports)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..log import log
from ..onnx.cleanup import list_initializers_as_inputs
from ..onnx.io import node_counts
from .fold_bn import FoldReport, fold_batchnorms
from .rewrite import TOLERANCE
from .sk_select import SkRewriteReport, rewrite_sk_blocks

if TYPE_CHECKING:
    from onnx import ModelProto

    from .report import PassReport

PASSES = ((FoldReport, "folding BatchNormalization", fold_batchnorms),
          (SkRewriteReport, "rewriting SK selects", rewrite_sk_blocks))
REPORT_TYPES = {report_type.name: report_type for report_type, _, _ in PASSES}


def optimize_graph(model: ModelProto, fold_bn: bool = True, sk_rewrite: bool = True, tolerance: float = TOLERANCE,
                   sizes: dict | None = None) -> tuple:
    """Run the enabled passes on `model` (changed in place); returns (model, [PassReport per pass]).
    `sizes` ({dim name: size}) sizes the inputs' symbolic dimensions besides the batch for the checks."""
    import onnx

    enabled = {"fold_bn": fold_bn, "sk_rewrite": sk_rewrite}
    reports = []
    for report_type, message, run in PASSES:
        if not enabled[report_type.name]:
            log.debug(f"pass {report_type.name}: off")
            continue
        before, started = node_counts(model), time.time()
        with log.status(message):
            report = run(model, tolerance, sizes)
        report.node_counts_before, report.node_counts_after = before, node_counts(model)
        report.seconds = round(time.time() - started, 2)
        headline, *left = report.describe()
        log.debug(f"pass {headline} ({report.seconds:.2f} s)")
        for line in left:
            log.debug(f"pass {report.name}: {line.strip()}")
        reports.append(report)
    list_initializers_as_inputs(model)
    onnx.checker.check_model(model)
    return model, reports


def as_report(report: PassReport | dict) -> PassReport:
    """`report` as a PassReport: reports read back from a manifest are plain dicts."""
    return REPORT_TYPES[report["name"]].from_dict(report) if isinstance(report, dict) else report


def describe(report: PassReport | dict) -> list:
    """What one pass did, as lines for the terminal (a PassReport or its manifest dict)."""
    return as_report(report).describe()
