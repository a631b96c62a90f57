"""Operations on networks and tensors that training, attacks and evaluation share."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Applies fn over x in chunks without gradients."""
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return batched(lambda b: model(b).argmax(1), x, batch)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x) == y).float().mean().item()


def gaussian_kernel(radius: int, sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of 2·radius + 1 taps."""
    g = torch.exp(-((torch.arange(2 * radius + 1) - float(radius)) ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def channels_last(model: nn.Module) -> nn.Module:
    """The model with its weights in channels-last layout, so that oneDNN's convolutions on a CPU run without
    reordering their activations (outputs follow the weights' layout); end-to-end attacks and robust
    training are almost all convolutions."""
    return model.to(memory_format=torch.channels_last)


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
