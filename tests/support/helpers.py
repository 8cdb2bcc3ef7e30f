"""Plain helpers the tests import: the repository root, the article-layout SK module, BN
randomisation, a fitted head, CLI invocation and stage records."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTICLE_SKNET = REPO / "tests" / "support" / "article_sknet.py"


def randomize_bn(module, seed=0):
    """Give every BatchNorm random statistics and affine terms, so no branch is silently zero
    (timm zero-initialises the last BN of residual blocks) and folding is really exercised."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                n = layer.num_features
                layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                layer.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                layer.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return module.eval()


def run_cli(*args):
    """Invoke the skdeploy CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from skdeploy.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def recorded_stage(artifact) -> dict:
    """The newest stage entry of the manifest beside `artifact`, without who wrote it and when: what the
    stage's result `record()` must equal (compared after a JSON round trip, as the file stores it)."""
    from skdeploy.manifest import load_manifest

    entry = dict(load_manifest(artifact)["stages"][-1])
    for key in ("stage", "skdeploy_version", "time"):
        entry.pop(key)
    return entry


def as_stored(record: dict) -> dict:
    """`record` as a manifest stores it (tuples become lists)."""
    import json

    return json.loads(json.dumps(record))


def fit_classifier_head(module, inputs, labels, classes=10):
    """Give a random-weight model real BatchNorm statistics from `inputs`, then fit its final Linear
    layer by least squares on the frozen features, so it predicts input-dependent classes (a random
    model predicts one class for every input)."""
    import numpy as np
    import torch

    batchnorms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in batchnorms:  # real statistics, so random features keep their spread through the depth
        layer.reset_running_stats()
        layer.momentum = None
    module.train()
    with torch.no_grad():
        module(torch.from_numpy(inputs))
    module.eval()
    features = []
    hook = module.fc.register_forward_hook(lambda layer, args, output: features.append(args[0]))
    with torch.no_grad():
        module(torch.from_numpy(inputs))
    hook.remove()
    x = features[0].double().numpy()
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    targets = np.eye(classes)[labels] * 10 - 5
    solution = np.linalg.solve(z.T @ z + 1.0 * np.eye(z.shape[1]), z.T @ targets)
    weight = (solution[:-1] / std[:, None]).T
    bias = solution[-1] - weight @ mean
    with torch.no_grad():
        module.fc.weight.copy_(torch.from_numpy(weight))
        module.fc.bias.copy_(torch.from_numpy(bias))
    return module
