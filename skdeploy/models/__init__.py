"""The model zoo: registered SKNets, timm's SK models, and any user module, loaded with checkpoints.

    load_model(arch="sknet50") / load_model(spec="timm:skresnet18") / load_model(spec="my.py:make")
returns a LoadedModel whose `config` is what the manifest records (input size, preprocessing).
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..deps import available, require
from ..errors import SkdeployError, UsageError
from ..fileio import sha256_file
from .entry import ModelEntry
from .registry import (
    DEMO_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    REGISTRY,
    TIMM_MODELS,
    ModelConfig,
    imagenet_preprocessing,
)

if TYPE_CHECKING:
    from torch import nn

    from ..fileio import PathLike

__all__ = ["DEMO_MODEL", "REGISTRY", "TIMM_MODELS", "ModelConfig", "ModelEntry", "LoadedModel", "load_model",
           "build_model", "load_from_manifest", "list_models", "is_model_code"]

SHIPPED_WEIGHTS_PREFIX = "skdeploy/weights/"


@dataclass
class LoadedModel:
    module: object  # torch.nn.Module in eval mode
    spec: str
    config: ModelConfig
    checkpoint: dict  # {"path", "sha256"} or None
    random_weights: str = None  # why the weights are random (no checkpoint, or kwargs that do not fit), else None

    def entry(self) -> ModelEntry:
        """What the manifest records about this model."""
        return ModelEntry(spec=self.spec, checkpoint=self.checkpoint, kwargs=self.config.kwargs,
                          num_classes=self.config.num_classes, dataset=self.config.dataset,
                          input_size=list(self.config.input_size))


def _import_factory(spec: str):
    path_part, sep, attr = spec.rpartition(":")
    if not sep or not path_part or not attr.isidentifier():
        raise UsageError(f"`spec` must be 'path/to/file.py:factory' or 'package.module:factory', got {spec!r}")
    if path_part.endswith(".py"):
        file = Path(path_part)
        if not file.is_file():
            raise UsageError(f"`spec` file {file} does not exist")
        name = f"skdeploy_user_{abs(hash(str(file.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # user code: any error is theirs to see in one line
            raise SkdeployError(f"importing {file} failed: {type(exc).__name__}: {exc}") from None
    else:
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", path_part):
            raise UsageError(f"`spec` module name {path_part!r} is not a Python module path")
        try:
            module = importlib.import_module(path_part)
        except ImportError as exc:
            raise UsageError(f"cannot import module {path_part!r} for `spec`: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"{path_part} has no callable {attr!r}")
    return factory


def _call_factory(factory, kwargs, what):
    try:
        return factory(**kwargs)
    except (SkdeployError, UsageError):
        raise
    except TypeError as exc:
        raise UsageError(f"{what} does not accept these `model_kwargs`: {exc}") from None
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise UsageError(f"{what} cannot be built with these settings: {exc}") from None


def _timm_config(name, module, kwargs) -> ModelConfig:
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = tuple(cfg.get("input_size", (3, 224, 224)))
    prep = imagenet_preprocessing(size[-1], cfg.get("crop_pct", 0.875), cfg.get("mean", IMAGENET_MEAN),
                                  cfg.get("std", IMAGENET_STD), cfg.get("interpolation", "bilinear"))
    return ModelConfig(f"timm:{name}", f"timm:{name}", size, int(getattr(module, "num_classes", 1000)), prep,
                       f"timm {name}", kwargs=dict(kwargs))


MAX_CHANNELS, MAX_SIDE = 64, 16384  # beyond any picture a classifier takes; the export's activations would not fit


def _with_input_size(config: ModelConfig, input_shape) -> ModelConfig:
    if input_shape is None or tuple(input_shape) == tuple(config.input_size):
        return config
    sizes = tuple(input_shape) + (0,) * (3 - len(input_shape))
    within = 1 <= sizes[0] <= MAX_CHANNELS and 1 <= min(sizes[1:]) <= max(sizes[1:]) <= MAX_SIDE
    if len(input_shape) != 3 or not within:
        raise UsageError(f"`input_shape` must be C x H x W with C 1..{MAX_CHANNELS} and H, W 1..{MAX_SIDE}, "
                         f"got {'x'.join(map(str, input_shape))}")
    old = config.preprocessing
    ratio = old.resize / old.crop[0]
    channels = input_shape[0]
    order = old.channel_order if channels == old.channels else ("GRAY" if channels == 1 else "RGB")
    mean, std = old.mean, old.std
    if len(mean) != channels:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels, (0.5,) * channels)
    prep = replace(old, resize=int(round(input_shape[1] * ratio)), crop=tuple(input_shape[1:]),
                   channel_order=order, mean=tuple(mean), std=tuple(std))
    return replace(config, input_size=tuple(input_shape), preprocessing=prep)


def load_model(arch: str | None = None, spec: str | None = None, model_kwargs: dict | None = None,
               checkpoint: PathLike | None = None, input_shape: Sequence[int] | None = None,
               pretrained: bool = True) -> LoadedModel:
    """Build a model by registered name (arch) or spec ('timm:NAME', 'file.py:fn', 'pkg.mod:fn')."""
    kwargs = dict(model_kwargs or {})
    if arch and spec:
        raise UsageError("give either `arch` or `spec`, not both")
    name = arch or spec or DEMO_MODEL
    module, config = _build(name, arch, kwargs)
    config = _with_input_size(config, input_shape)
    checkpoint_info, random, config = _load_weights(module, name, config, kwargs, checkpoint, pretrained)
    module.eval()
    return LoadedModel(module, config.name if name in REGISTRY else name, config, checkpoint_info,
                       None if checkpoint_info else random)


def _build(name: str, arch, kwargs: dict) -> tuple:
    """(module, config) with random weights, from the registry, timm or the user's factory."""
    torch = require("torch")
    if name in REGISTRY:
        config = REGISTRY[name]
        module = _call_factory(_resolve(config.factory), kwargs, name)
        if kwargs:
            config = replace(config, num_classes=int(kwargs.get("num_classes", config.num_classes)), kwargs=kwargs)
        return module, config
    if name.startswith("timm:"):
        timm = require("timm")
        model_name = name[len("timm:"):]
        if model_name not in timm.list_models():
            raise UsageError(f"timm has no model {model_name!r} (SK models: {', '.join(TIMM_MODELS)})")
        module = _call_factory(lambda **kw: timm.create_model(model_name, pretrained=False, **kw), kwargs, name)
        return module, _timm_config(model_name, module, kwargs)
    if arch:
        raise UsageError(f"unknown `arch` {arch!r}; known: {', '.join(REGISTRY)} (see 'skdeploy models')")
    module = _call_factory(_import_factory(name), kwargs, name)
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"{name} returned {type(module).__name__}, not a torch.nn.Module")
    return module, ModelConfig(name, name, (3, 224, 224), None, imagenet_preprocessing(),
                               f"user model {name}", kwargs=kwargs)


def _load_weights(module, name: str, config: ModelConfig, kwargs: dict, checkpoint, pretrained: bool) -> tuple:
    """(checkpoint record or None, why the weights are random or None, config): the checkpoint given, else
    the shipped weights when asked for and the kwargs keep the architecture."""
    from .checkpoint import apply_state_dict, read_state_dict

    if checkpoint is not None:
        apply_state_dict(module, read_state_dict(checkpoint), source=str(checkpoint))
        return {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}, None, config
    if not (pretrained and config.weights_path is not None):
        why = ("no `checkpoint` given and shipped weights not asked for" if config.weights_path is not None
               else f"no `checkpoint` given and {name} ships no weights")
        return None, why, config
    path = Path(str(config.weights_path))
    if not path.exists():
        raise SkdeployError(f"shipped weights for {name} are missing ({path}); reinstall skdeploy")
    try:  # kwargs that keep the architecture (the defaults, a dropout rate) keep the shipped weights
        apply_state_dict(module, read_state_dict(path), source=f"the shipped weights of {name}")
        return {"path": f"skdeploy/weights/{path.name}", "sha256": sha256_file(path)}, None, config
    except SkdeployError as exc:
        if not kwargs:
            raise
        if config.num_classes != REGISTRY[name].num_classes:  # the dataset's classes no longer apply
            config = replace(config, dataset=None)
        return None, f"these `model_kwargs` change the model: {str(exc).split(': ', 1)[-1]}", config


def is_model_code(spec: str) -> bool:
    """Whether building `spec` imports a user's Python file or module (not a registered or timm name)."""
    return spec not in REGISTRY and not spec.startswith("timm:")


def load_from_manifest(manifest: dict, artifact: PathLike, trust_model_code: bool = False) -> LoadedModel:
    """The FP32 PyTorch model `artifact`'s manifest records, with the checkpoint it was made from
    (shipped weights, or the recorded path, also looked for beside the artifact). The caller compares
    `checkpoint["sha256"]` with the manifest's to know whether it is still the same file. A manifest
    travels with its artifact, so model code it names is imported only with `trust_model_code`."""
    artifact = Path(artifact)
    model = ModelEntry.from_manifest(manifest)
    if not model.spec:
        raise UsageError(f"the manifest of {artifact.name} names no model (its model entry has no spec), so its FP32 "
                         "model cannot be rebuilt; pass `reference=MODEL` `checkpoint=PATH`")
    if is_model_code(model.spec) and not trust_model_code:
        raise UsageError(f"the manifest of {artifact.name} names model code {model.spec!r}, which building the "
                         "reference would import and run; pass `trust_model_code=True` if you trust it, or give "
                         "the model yourself with `reference=SPEC`")
    checkpoint = model.checkpoint
    if checkpoint is None:
        raise UsageError(f"the manifest of {artifact.name} records no checkpoint (exported with random weights), "
                         "so its FP32 model cannot be rebuilt; pass `reference=MODEL` `checkpoint=PATH`")
    file = None
    if not checkpoint["path"].startswith(SHIPPED_WEIGHTS_PREFIX):
        recorded = Path(checkpoint["path"])
        file = next((c for c in (recorded, artifact.parent / recorded, artifact.parent / recorded.name)
                     if c.is_file()), None)
        if file is None:
            raise UsageError(f"checkpoint {checkpoint['path']} recorded in the manifest of {artifact.name} is not "
                             "here; pass `reference=MODEL` `checkpoint=PATH`, or `reference=ref.npz`")
    loaded = load_model(spec=model.spec, checkpoint=file, model_kwargs=model.kwargs or None,
                        input_shape=tuple(model.input_size) if model.input_size else None)
    if loaded.checkpoint is None:  # shipped weights recorded for a model that has none
        raise UsageError(f"the manifest of {artifact.name} records shipped weights ({checkpoint['path']}) for "
                         f"{model.spec}, which has none; pass `reference=MODEL` `checkpoint=PATH`")
    return loaded


def build_model(name: str = DEMO_MODEL, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """The torch module for a registered name, with shipped weights when `pretrained`."""
    return load_model(arch=name, model_kwargs=kwargs, pretrained=pretrained).module


def _resolve(factory: str):
    module_name, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def list_models() -> list:
    """Every selectable name with parameters (when torch is installed), input shape and shipped weights."""
    rows = []
    have_torch = available("torch")
    for config in REGISTRY.values():
        params = None
        if have_torch:
            params = sum(p.numel() for p in _resolve(config.factory)().parameters())
        rows.append({"name": config.name, "params": params, "input_shape": list(config.input_size),
                     "num_classes": config.num_classes, "weights": config.weights is not None,
                     "description": config.description})
    have_timm = available("timm")
    for name in TIMM_MODELS:
        params = None
        if have_timm:
            import timm

            params = sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
        rows.append({"name": f"timm:{name}", "params": params, "input_shape": [3, 224, 224], "num_classes": 1000,
                     "weights": False, "description": "timm SK model (needs skdeploy[timm])"})
    return rows
