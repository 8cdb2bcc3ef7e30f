"""Shared test helpers: the article-layout SK module fixture, BN randomisation, CLI invocation."""
from pathlib import Path

import pytest

from tests.support.helpers import fit_classifier_head, randomize_bn


@pytest.fixture(scope="session")
def article_sknet():
    """The SK unit users' checkpoints come from, as an in-repo fixture (imported lazily: it needs torch)."""
    from tests.support import article_sknet as module

    return module


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
    engine (+ sidecar), and 16 test images: the inputs the bad-input suite breaks (see
    tests/support/bad_input_cases.py)."""
    import torch
    from PIL import Image

    from skdeploy.data import load_fashion_mnist
    from skdeploy.log import QUIET, log
    from skdeploy.models import load_model
    from skdeploy.stages.build import BuildSettings, build_engine
    from skdeploy.stages.export import ExportSettings, export_model
    from tests.support.bad_input_cases import DEMO_CHECKPOINT, DEMO_ENGINE, DEMO_IMAGES, DEMO_ONNX

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
