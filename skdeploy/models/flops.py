"""Multiply-accumulate count of a forward pass (convolutions and linear layers), as the SKNet paper
reports "GFLOPs"."""
import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: tuple) -> int:
    total = 0

    def conv_hook(module, inputs, output) -> None:
        nonlocal total
        kernel = module.weight[0].numel()  # (in/groups) * kh * kw
        total += output.numel() * kernel // output.shape[0]

    def linear_hook(module, inputs, output) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total
