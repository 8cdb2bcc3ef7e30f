"""Graph passes over ONNX models (BatchNorm folding, SK select rewrite). Owned by issue 3."""


def optimize_graph(model, fold_bn=True, sk_rewrite=True):
    """Return (model, pass reports). The passes land with issue 3; until then the graph is unchanged."""
    return model, []
