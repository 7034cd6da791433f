"""Width-scalable models, each with optional BatchNorm.

    mlp       in -> [Linear(width) -> (BN) -> ReLU] x depth -> Linear(num_classes)
    cnn       two conv blocks with width and 2*width channels, then global average
              pooling and a linear head; 1D convolutions for (C, L) or (L,) inputs
              (MNIST-1D), 2D convolutions for (C, H, W) inputs (images)
    resnet18  the paper's ResNet18 of width k: stem k, stages k, 2k, 4k, 8k
              (k = 64 is the standard ResNet18)

``evaluate`` (loss and accuracy of a model on tensors) lives here, beside the models,
so that measuring a model never needs the training module.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("mlp", "cnn", "resnet18")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode over all of ``(x, y)``.

    x: (n, *in_shape); y: (n,). The model's mode is restored afterwards. Runs in the
    model's own dtype (float32 for every model here), whatever precision trained it.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    n = max(1, x.shape[0])
    return loss_sum / n, correct / n


def build_model(name: str, width: int, in_shape: tuple[int, ...], num_classes: int,
                batch_norm: bool = False, depth: int = 2) -> nn.Module:
    """Build a model by name. ``in_shape`` is the shape of one input, without batch."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if int(width) <= 0:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if name == "mlp":
        return MLP(math.prod(in_shape), int(width), num_classes, depth=depth, batch_norm=batch_norm)
    if name == "cnn":
        return SmallCNN(in_shape, int(width), num_classes, batch_norm=batch_norm)
    if len(in_shape) != 3:
        raise ValueError(f"resnet18 needs image inputs (C, H, W), got in_shape={in_shape}")
    return ResNet18(in_shape[0], int(width), num_classes, batch_norm=batch_norm)


def _norm(kind: str, channels: int, on: bool) -> nn.Module:
    if not on:
        return nn.Identity()
    return {"1d": nn.BatchNorm1d, "2d": nn.BatchNorm2d}[kind](channels)


class MLP(nn.Module):
    """Fully connected network. Input (batch, *in_shape) -> logits (batch, num_classes)."""

    def __init__(self, in_features: int, width: int, num_classes: int, depth: int = 2,
                 batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = in_features
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), _norm("1d", width, batch_norm), nn.ReLU()]
            d_in = width
        layers.append(nn.Linear(d_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks (width, 2*width channels) + global average pool + linear head.

    ``in_shape`` (L,) or (C, L) uses 1D convolutions; (C, H, W) uses 2D ones.
    Input (batch, *in_shape) -> logits (batch, num_classes).
    """

    def __init__(self, in_shape: tuple[int, ...], width: int, num_classes: int,
                 batch_norm: bool = False):
        super().__init__()
        self.in_shape = tuple(in_shape)
        kind = "2d" if len(in_shape) == 3 else "1d"
        conv = nn.Conv2d if kind == "2d" else nn.Conv1d
        pool = nn.MaxPool2d if kind == "2d" else nn.MaxPool1d
        c_in = in_shape[0] if len(in_shape) >= 2 else 1
        self.features = nn.Sequential(
            conv(c_in, width, 3, padding=1), _norm(kind, width, batch_norm), nn.ReLU(), pool(2),
            conv(width, 2 * width, 3, padding=1), _norm(kind, 2 * width, batch_norm), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.in_shape) == 1:
            x = x.unsqueeze(1)  # (batch, L) -> (batch, 1, L)
        h = self.features(x)
        return self.head(h.flatten(2).mean(-1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a projection shortcut when shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not batch_norm)
        self.bn1 = _norm("2d", c_out, batch_norm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not batch_norm)
        self.bn2 = _norm("2d", c_out, batch_norm)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=not batch_norm), _norm("2d", c_out, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet18 of width k: 3x3 stem with k channels, four stages of two
    basic blocks with k, 2k, 4k, 8k channels, global average pool, linear head.

    Input (batch, C, H, W) -> logits (batch, num_classes).
    """

    def __init__(self, in_channels: int, width: int, num_classes: int, batch_norm: bool = True):
        super().__init__()
        k = width
        self.conv1 = nn.Conv2d(in_channels, k, 3, 1, 1, bias=not batch_norm)
        self.bn1 = _norm("2d", k, batch_norm)
        stages, c_in = [], k
        for c_out, stride in ((k, 1), (2 * k, 2), (4 * k, 2), (8 * k, 2)):
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride, batch_norm),
                                        BasicBlock(c_out, c_out, 1, batch_norm)))
            c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(8 * k, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return self.linear(out.mean(dim=(2, 3)))
