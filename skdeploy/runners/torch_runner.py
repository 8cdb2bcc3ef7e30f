"""The FP32 PyTorch reference: the model every deployed artifact is validated against.

    with TorchRunner.from_model(arch="sknet-fmnist") as runner:
        logits = runner.infer(batch)["logits"]
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..deps import require
from .base import Runner, TensorSpec, check_threads

if TYPE_CHECKING:
    from ..fileio import PathLike

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class TorchRunner(Runner):
    """Runs a torch.nn.Module in eval mode, FP32, on the CPU, without autograd.

    `model` is a torch.nn.Module or a models.LoadedModel; `input_shape` (C, H, W) is taken from a
    LoadedModel's config when not given."""

    name = "pytorch"

    def __init__(self, model, input_shape=None, threads: int = 0) -> None:
        super().__init__()
        config = getattr(model, "config", None)
        self.module = getattr(model, "module", model)
        self.input_shape = tuple(input_shape or config.input_size)
        self.threads = check_threads(threads)
        self.loaded = model if config is not None else None
        self.torch = None

    @classmethod
    def from_model(cls, arch: str | None = None, spec: str | None = None, checkpoint: PathLike | None = None,
                   model_kwargs: dict | None = None, pretrained: bool = True, threads: int = 0) -> TorchRunner:
        """Load through the model zoo (skdeploy.models.load_model) with its shipped or given weights."""
        from ..models import load_model

        return cls(load_model(arch=arch, spec=spec, checkpoint=checkpoint, model_kwargs=model_kwargs,
                              pretrained=pretrained), threads=threads)

    def activate_impl(self) -> None:
        self.torch = require("torch")
        if self.threads:
            self.torch.set_num_threads(self.threads)
        self.module.eval().float()

    def deactivate_impl(self) -> None:
        self.torch = None

    def input_specs(self) -> list:
        return [TensorSpec(INPUT_NAME, (None, *self.input_shape), np.dtype(np.float32))]

    def output_names(self) -> list:
        return [OUTPUT_NAME]

    def infer_impl(self, feed: dict) -> dict:
        with self.torch.inference_mode():
            output = self.module(self.torch.from_numpy(feed[INPUT_NAME]))
        return {OUTPUT_NAME: output.float().numpy()}
