"""CIFAR-10 networks (SPEC §2.4): He et al.'s ``resnet-cifar`` (resnet20 ... resnet110), the
CIFAR ``resnet18`` and its shortcut-free twin ``plain18``, and the small ``cifar-cnn``.

Every spec takes ``bn_impl``: ``"torch"`` (``nn.BatchNorm2d``) or ``"scratch"``
(`depthlab.models.layers.BatchNorm`, the teaching version), so any of these models can be trained with
the from-scratch layer in place of torch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import batch_norm
from .specs import CifarCnnSpec, ResNet18Spec, ResNetCifarSpec


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-in, ReLU gain) as He et al.; BN weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif hasattr(m, "running_mean") and hasattr(m, "weight"):  # torch's or our BatchNorm
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Blocks


class ShortcutA(nn.Module):
    """Option A (parameter-free): subsample by the stride and zero-pad the new channels."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


def shortcut_b(c_in: int, c_out: int, stride: int, bn_impl: str) -> nn.Module:
    """Option B: a 1x1 projection conv + BN."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), batch_norm(c_out, bn_impl))


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the shortcut (identity where shapes match), then ReLU.
    ``shortcut`` None makes the plain (shortcut-free) block."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str | None, bn_impl: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = batch_norm(c_out, bn_impl)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = batch_norm(c_out, bn_impl)
        self.use_shortcut = shortcut is not None
        if shortcut is None or (stride == 1 and c_in == c_out):
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(c_in, c_out, stride)
        else:
            self.shortcut = shortcut_b(c_in, c_out, stride, bn_impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.use_shortcut:
            out = out + self.shortcut(x)
        return F.relu(out)


# ---------------------------------------------------------------------------------------------
# resnet-cifar (He et al. 2015, section 4.2)


class ResNetCifar(nn.Module):
    def __init__(self, spec: ResNetCifarSpec, input_shape=(3, 32, 32), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False),
            batch_norm(16, spec.bn_impl),
            nn.ReLU(inplace=True),
        )
        stacks, c_in = [], 16
        for i, c_out in enumerate((16, 32, 64)):
            blocks = [
                BasicBlock(
                    c_in if j == 0 else c_out,
                    c_out,
                    2 if (i > 0 and j == 0) else 1,
                    spec.shortcut,
                    spec.bn_impl,
                )
                for j in range(spec.n)
            ]
            stacks.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stacks = nn.Sequential(*stacks)
        self.classifier = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stacks(self.stem(x))
        return self.classifier(x.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------
# resnet18 / plain18 (the CIFAR variant: 3x3 stem, no max-pool)


class ResNet18(nn.Module):
    def __init__(self, spec: ResNet18Spec, input_shape=(3, 32, 32), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, 3, padding=1, bias=False),
            batch_norm(64, spec.bn_impl),
            nn.ReLU(inplace=True),
        )
        stages, c_in = [], 64
        for i, c_out in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    BasicBlock(c_in, c_out, stride, "B" if spec.skip else None, spec.bn_impl),
                    BasicBlock(c_out, c_out, 1, "B" if spec.skip else None, spec.bn_impl),
                )
            )
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1)  # the 4x4 average pool at 32x32 input, any size otherwise
        return self.classifier(x.flatten(1))


# ---------------------------------------------------------------------------------------------
# cifar-cnn (the learning-rate / momentum / batch-norm lessons)


class CifarCnn(nn.Module):
    def __init__(self, spec: CifarCnnSpec, input_shape=(3, 32, 32), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        c, h, w = input_shape

        def unit(c_in, c_out):
            norm = batch_norm(c_out, spec.bn_impl) if spec.bn else nn.Identity()
            return [nn.Conv2d(c_in, c_out, 3, padding=1), norm, nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*unit(c, 16), *unit(16, 32))
        self.classifier = nn.Linear(32 * (h // 4) * (w // 4), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
