"""Shared test helpers: the article-layout SK module fixture, BN randomisation, CLI invocation."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTICLE_SKNET = REPO / "tests" / "fixtures" / "article_sknet.py"


@pytest.fixture(scope="session")
def article_sknet():
    """The SK unit users' checkpoints come from, as an in-repo fixture (imported lazily: it needs torch)."""
    from fixtures import article_sknet as module

    return module


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


_EXPORT_CACHE = {}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """exported(arch_or_spec, **ExportSettings fields) -> path of a cached ONNX export (random weights,
    randomised BN) shared by every test of the session; the manifest lies beside it."""

    def export(name="sknet-fmnist", pretrained=False, model_kwargs=None, **settings):
        from skdeploy.models import REGISTRY, load_model
        from skdeploy.stages.export import ExportSettings, export_model

        key = (name, pretrained, repr(sorted((model_kwargs or {}).items())), tuple(sorted(settings.items())))
        if key not in _EXPORT_CACHE:
            folder = tmp_path_factory.mktemp("exports")
            kind = {"arch": name} if name in REGISTRY else {"spec": name}
            loaded = load_model(**kind, model_kwargs=model_kwargs, pretrained=pretrained)
            if not pretrained:
                randomize_bn(loaded.module)
            path = folder / (name.replace(":", "_") + ".onnx")
            export_model(loaded, path, ExportSettings(**settings))
            _EXPORT_CACHE[key] = path
        return _EXPORT_CACHE[key]

    return export


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


@pytest.fixture(scope="session")
def demo_checkpoint_export(tmp_path_factory):
    """(checkpoint, onnx) of the demo model with random features (randomised BN) and a least-squares
    fitted head, exported (dynamic batch) from a saved checkpoint, so its manifest can rebuild the FP32
    reference and its predictions depend on the input."""
    import torch

    from skdeploy.data import load_fashion_mnist
    from skdeploy.models import REGISTRY, load_model
    from skdeploy.stages.export import ExportSettings, export_model

    folder = tmp_path_factory.mktemp("demo_checkpoint")
    checkpoint = folder / "demo_random.pt"
    pixels, labels = load_fashion_mnist("train")
    inputs = REGISTRY["sknet-fmnist"].preprocessing.arrays(pixels[:256])
    module = fit_classifier_head(randomize_bn(load_model(pretrained=False).module, seed=3), inputs, labels[:256])
    torch.save(module.state_dict(), checkpoint)
    onnx_path = folder / "demo.onnx"
    export_model(load_model(checkpoint=checkpoint), onnx_path, ExportSettings(dynamic_batch=True))
    return checkpoint, onnx_path


@pytest.fixture(scope="session")
def demo_artifacts(tmp_path_factory):
    """A folder with the shipped demo model as ONNX (+ manifest), as a checkpoint, as a TensorRT-RTX FP32
    engine (+ sidecar), and 16 test images: the inputs the bad-input suite breaks (see bad_input_cases)."""
    import torch
    from PIL import Image

    from bad_input_cases import DEMO_CHECKPOINT, DEMO_ENGINE, DEMO_IMAGES, DEMO_ONNX
    from skdeploy.data import load_fashion_mnist
    from skdeploy.log import QUIET, log
    from skdeploy.models import load_model
    from skdeploy.stages.build import BuildSettings, build_engine
    from skdeploy.stages.export import ExportSettings, export_model

    folder = tmp_path_factory.mktemp("demo_artifacts")
    with log.verbosity(QUIET):
        loaded = load_model()
        torch.save(loaded.module.state_dict(), folder / DEMO_CHECKPOINT)
        export_model(loaded, folder / DEMO_ONNX, ExportSettings(dynamic_batch=True))
        build_engine(folder / DEMO_ONNX, folder / DEMO_ENGINE,
                     BuildSettings(backend="tensorrt-rtx", compute_capabilities=["8.9"], max_batch=8))
    pixels, labels = load_fashion_mnist("test")
    (folder / DEMO_IMAGES).mkdir()
    for index in range(16):
        Image.fromarray(pixels[index]).save(folder / DEMO_IMAGES / f"{labels[index]}_{index}.png")
    return folder


@pytest.fixture
def workspace(demo_artifacts, tmp_path):
    """A private copy of `demo_artifacts` that a test may break."""
    import shutil

    return Path(shutil.copytree(demo_artifacts, tmp_path / "ws"))
