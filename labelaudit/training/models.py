"""Stage 3a — proxy networks. Small on purpose: the proxy only has to learn the clean signal faster
than it memorises the noise, and the default must train 10k images × 15–30 epochs in minutes on 2 CPU
cores.

``small`` (default): an airbench-style CNN (conv-pool-BN-GELU blocks, global max pool) narrowed
for the CPU, 0.66M parameters, 2,141 images/s training on 2 CPU cores at 32 px
(benchmarks/detection.py, CIFAR-10N 10k). ``medium``: the same, twice as wide. ``resnet18``:
torchvision's ResNet-18 with a 3×3 stride-1 stem and no max-pool, the usual adaptation to 32 px.
"""
from __future__ import annotations

import torch
from torch import nn



class ConvGroup(nn.Module):
    """conv → max-pool(2) → BN → GELU → conv → BN → GELU (airbench's block, halving resolution)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class SmallCNN(nn.Module):
    """(B, 3, S, S) float → (B, K) logits. A stride-2 stem then three ConvGroups: S/16 at the end."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int, int] = (24, 48, 96, 192)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(w0), nn.GELU())
        self.layers = nn.Sequential(ConvGroup(w0, w1), ConvGroup(w1, w2), ConvGroup(w2, w3))
        self.head = nn.Linear(w3, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))  # (B, w3, S/16, S/16)
        x = torch.amax(x, dim=(2, 3))  # global max pool → (B, w3)
        return self.head(x)


def _resnet18(num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)  # never downloads: weights=None
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)  # small-image stem
    net.maxpool = nn.Identity()
    return net


MIN_IMAGE_SIZE = 16  # the CNNs halve the resolution four times before their global pool
DEFAULT_IMAGE_SIZE = 32  # the side the scan decodes at, unless the weights or --image-size say otherwise

MODELS = {
    "tiny": lambda k: SmallCNN(k, widths=(16, 32, 64, 128)),
    "small": lambda k: SmallCNN(k),
    "medium": lambda k: SmallCNN(k, widths=(32, 96, 192, 384)),
    "resnet18": _resnet18,
}


def build_model(name: str, num_classes: int) -> nn.Module:
    """A freshly initialised proxy network (initialisation follows torch's global seed)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"name={name!r}: unknown model; choose one of {', '.join(MODELS)}") from None
    return factory(num_classes)
