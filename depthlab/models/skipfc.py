"""The `skipfc` family (SPEC 2.3): a small CNN with a skip over its hidden linear layer.

On 32x32 inputs (``mnist32``)::

    conv 1x1 (1->7) [BN] ReLU -> avgpool 5 (32->6) -> conv 2x2 (7->12) [BN] ReLU -> 12x5x5
    flatten (300) -> z;  h = ReLU(linear 300->300 (z) + z)  [the skip];  logits = linear 300->10 (h)

The 1x1 conv and the 5x5 pooling throw most spatial detail away: this is a small model.

Two options re-create the bugs of the hand-written reference, so that what fixing them
changes can be measured rather than asserted:

- ``legacy_bn``: the reference kept its BN modules in a plain Python list, so they were never
  registered: their scale/shift were never trained (stay 1 and 0) and ``model.eval()`` never
  reached them (they normalise with batch statistics at test time too). That is exactly
  ``BatchNorm2d(affine=False, track_running_stats=False)``.
- ``softmax_out``: the reference applied a softmax before the cross-entropy loss (which applies
  its own log-softmax), squashing the gradients. With this option the model returns
  probabilities and the engine's cross-entropy treats them as logits, as the reference did.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .specs import SkipFCSpec


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv (same parameters as ``nn.Conv2d(c_in, c_out, 1)``) computed as a broadcast
    multiply-add when there is a single input channel: oneDNN's CPU kernel for that case is
    about ten times slower than the elementwise form, and it dominated skipfc's step time."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels != 1:
            return super().forward(x)
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class SkipFCNet(nn.Module):
    def __init__(self, spec: SkipFCSpec, input_shape=(1, 32, 32), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        c, h, w = input_shape

        def norm(channels: int) -> nn.Module:
            if not spec.bn:
                return nn.Identity()
            if spec.legacy_bn:
                return nn.BatchNorm2d(channels, affine=False, track_running_stats=False)
            return nn.BatchNorm2d(channels)

        self.features = nn.Sequential(
            PointwiseConv(c, 7),
            norm(7),
            nn.ReLU(),
            nn.AvgPool2d(5),
            nn.Conv2d(7, 12, 2),
            norm(12),
            nn.ReLU(),
        )
        h, w = h // 5 - 1, w // 5 - 1
        if h < 1 or w < 1:
            raise ConfigError(f"skipfc needs inputs of at least 10x10 pixels, got {input_shape}")
        width = 12 * h * w  # 300 on 32x32 inputs
        self.hidden = nn.Linear(width, width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x).flatten(1)
        u = self.hidden(z)
        h = torch.relu(u + z if self.spec.skip else u)
        logits = self.classifier(h)
        return torch.softmax(logits.float(), dim=1) if self.spec.softmax_out else logits
