"""Selective Kernel building blocks and the SK-ResNeXt networks built from them.

`SKConv` keeps the parameter names of the reference module users' checkpoints come from
(conv.{i}.{0,1}, fc1.{0,1}, fc2), so those state_dicts load key for key.
"""
import torch
from torch import nn

from ..errors import UsageError


class SKConv(nn.Module):
    """Split into M dilated grouped 3x3 branches, fuse by pooling, select with a per-channel softmax."""

    def __init__(self, in_channels, out_channels, stride: int = 1, M: int = 2, r: int = 16, L: int = 32,
                 groups: int = 32) -> None:
        super().__init__()
        if M < 1 or r < 1 or L < 1:
            raise UsageError(f"SK unit needs M, r and L of at least 1 (got M={M}, r={r}, L={L})")
        if in_channels % groups or out_channels % groups:
            raise UsageError(f"SK unit with groups={groups} needs channel counts divisible by {groups} "
                             f"(got in={in_channels}, out={out_channels})")
        d = max(in_channels // r, L)
        self.M = M
        self.out_channels = out_channels
        self.conv = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, stride, padding=1 + i, dilation=1 + i,
                          groups=groups, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True))
            for i in range(M))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Sequential(nn.Conv2d(out_channels, d, 1, bias=False), nn.BatchNorm2d(d),
                                 nn.ReLU(inplace=True))
        self.fc2 = nn.Conv2d(d, out_channels * M, 1, bias=False)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [conv(x) for conv in self.conv]
        fused = torch.stack(branches).sum(0) if self.M > 1 else branches[0]
        logits = self.fc2(self.fc1(self.global_pool(fused)))
        weights = self.softmax(logits.reshape(x.shape[0], self.M, self.out_channels, -1))
        selected = branches[0] * weights[:, 0].reshape(x.shape[0], self.out_channels, 1, 1)
        for i in range(1, self.M):
            selected = selected + branches[i] * weights[:, i].reshape(x.shape[0], self.out_channels, 1, 1)
        return selected


class SKBottleneck(nn.Module):
    """ResNeXt bottleneck whose grouped 3x3 convolution is an SK unit."""

    def __init__(self, in_channels, width, out_channels, stride: int = 1, M: int = 2, r: int = 16, L: int = 32,
                 groups: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.sk = SKConv(width, width, stride, M=M, r=r, L=L, groups=groups)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.sk(out)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class SKResNeXt(nn.Module):
    """A stem, stages of SK bottlenecks, global pooling and a linear classifier.

    stages: (blocks, width, out_channels, stride) per stage.
    stem:   "imagenet" (7x7/2 conv + 3x3/2 max pool) or "small" (3x3 conv, for 32x32 inputs).
    """

    def __init__(self, stages, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 stem_channels: int = 64,
                 M: int = 2, r: int = 16, L: int = 32, groups: int = 32) -> None:
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, stem_channels, 7, 2, 3, bias=False), nn.BatchNorm2d(stem_channels),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, stem_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_channels),
                nn.ReLU(inplace=True))
        layers, channels = [], stem_channels
        for blocks, width, out_channels, stride in stages:
            for index in range(blocks):
                layers.append(SKBottleneck(channels, width, out_channels, stride if index == 0 else 1,
                                           M=M, r=r, L=L, groups=groups))
                channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def _paper_stages(blocks):
    """ResNeXt 32x4d widths (128..1024) and outputs (256..2048), strides 1,2,2,2."""
    return [(n, 128 * 2 ** i, 256 * 2 ** i, 1 if i == 0 else 2) for i, n in enumerate(blocks)]


def sknet26(num_classes: int = 1000, in_chans: int = 3) -> SKResNeXt:
    return SKResNeXt(_paper_stages((2, 2, 2, 2)), num_classes, in_chans)


def sknet50(num_classes: int = 1000, in_chans: int = 3) -> SKResNeXt:
    return SKResNeXt(_paper_stages((3, 4, 6, 3)), num_classes, in_chans)


def sknet101(num_classes: int = 1000, in_chans: int = 3) -> SKResNeXt:
    return SKResNeXt(_paper_stages((3, 4, 23, 3)), num_classes, in_chans)


def sknet_fmnist(num_classes: int = 10, in_chans: int = 1) -> SKResNeXt:
    """The demo model: about 1M parameters for 32x32 grayscale input."""
    return SKResNeXt([(1, 64, 128, 2), (2, 128, 256, 2), (2, 256, 512, 2)], num_classes, in_chans,
                     stem="small", stem_channels=32)
