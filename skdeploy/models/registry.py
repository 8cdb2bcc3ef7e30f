"""Named models with their default configs (timm style). Pure metadata: importing this needs no torch.

The config is what the manifest records as preprocessing, so every later stage (calibration,
validation, the application) prepares images exactly as the model was trained for.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

from ..data import Preprocessing

if TYPE_CHECKING:
    from importlib.abc import Traversable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    factory: str  # "module:function", imported lazily
    input_size: tuple  # (C, H, W)
    num_classes: int
    preprocessing: Preprocessing
    description: str
    weights: str | None = None  # file name under skdeploy/weights when weights ship
    dataset: str | None = None  # dataset the shipped weights were trained on
    kwargs: dict = field(default_factory=dict)

    @property
    def weights_path(self) -> Traversable | None:
        if self.weights is None:
            return None
        return resources.files("skdeploy") / "weights" / self.weights


def imagenet_preprocessing(size: int = 224, crop_pct: float = 0.875, mean: Sequence[float] = IMAGENET_MEAN,
                           std: Sequence[float] = IMAGENET_STD, interpolation: str = "bilinear") -> Preprocessing:
    return Preprocessing(resize=int(size / crop_pct), crop=(size, size), mean=tuple(mean), std=tuple(std),
                         channel_order="RGB", interpolation=interpolation)


DEMO_MODEL = "sknet-fmnist"

REGISTRY = {
    DEMO_MODEL: ModelConfig(
        DEMO_MODEL, "skdeploy.models.sk:sknet_fmnist", (1, 32, 32), 10,
        Preprocessing(resize=32, crop=(32, 32), mean=(0.286,), std=(0.353,), channel_order="GRAY"),
        "demo: small SK-ResNeXt trained on Fashion-MNIST (shipped weights)",
        weights="sknet_fmnist.pt", dataset="fashion-mnist"),
    "sknet26": ModelConfig("sknet26", "skdeploy.models.sk:sknet26", (3, 224, 224), 1000,
                           imagenet_preprocessing(), "SKNet-26 (paper: SK-ResNeXt 32x4d, [2,2,2,2])"),
    "sknet50": ModelConfig("sknet50", "skdeploy.models.sk:sknet50", (3, 224, 224), 1000,
                           imagenet_preprocessing(), "SKNet-50 (paper: SK-ResNeXt 32x4d, [3,4,6,3])"),
    "sknet101": ModelConfig("sknet101", "skdeploy.models.sk:sknet101", (3, 224, 224), 1000,
                            imagenet_preprocessing(), "SKNet-101 (paper: SK-ResNeXt 32x4d, [3,4,23,3])"),
}

TIMM_MODELS = ("skresnet18", "skresnet34", "skresnext50_32x4d")
