"""The simplification both `export` and `optimize` run before the graph passes: onnx-simplifier's
constant folding (Constant / ConstantOfShape weights become initializers, Shape arithmetic becomes
constants) and shape inference.

Without it a plain PyTorch export (TorchScript, `do_constant_folding=False`) keeps BatchNorm parameters and
reshape targets behind Shape -> Gather chains whose sizes the passes cannot read, so most BatchNorms and SK
blocks are left; with it both paths start from the same graph and give the same node counts.
"""
from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

from ..deps import require
from ..log import log
from ..onnx.scopes import copy_node_metadata

if TYPE_CHECKING:
    from onnx import ModelProto


def simplify(model: ModelProto) -> tuple:
    """(model, True) simplified by onnx-simplifier, or (model, False) as given when it cannot handle it
    (reported as a warning, not fatal: the passes still run and every rewrite is still checked).
    onnxsim's own BatchNorm fusion is off: the fold_bn pass folds them, checks each and reports it, and
    --no-fold-bn keeps them."""
    onnxsim = require("onnxsim")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(model, skip_fuse_bn=True)
    except Exception as exc:  # onnxsim raises bare RuntimeErrors and C++ errors alike
        log.warning(f"simplification skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return model, False
    if not ok:
        log.warning("simplification skipped: the simplified model failed onnxsim's own check")
        return model, False
    copy_node_metadata(model, simplified)
    return simplified, True
