"""A small synthetic class-folder dataset and tiny ONNX classifiers trained on it, for the bundle tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from purifyd_train.bundles.export import WithSoftmax, to_onnx
from purifyd_train.models.networks import Normalize

CLASSES = ("circle", "diagonal", "horizontal", "vertical")
SIZE = 16


def pattern(label: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A grey image of its class: a bright disc, diagonal, horizontal or vertical stripes, at a random phase,
    contrast and noise level, in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period, phase = rng.uniform(3.5, 5.5), rng.uniform(0, 2 * np.pi)
    if label == 0:
        cy, cx, r = rng.uniform(5, size - 5, 2).tolist() + [rng.uniform(3, 5)]
        image = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float64)
    elif label == 1:
        image = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + yy) / (1.41 * period) + phase)
    elif label == 2:
        image = 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
    else:
        image = 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase)
    image = rng.uniform(0.15, 0.3) + rng.uniform(0.5, 0.7) * image + rng.normal(0, 0.04, image.shape)
    return np.clip(image, 0, 1)


def write_dataset(root: Path, per_class: int, seed: int = 0, jpeg_share: float = 0.25, size: int = SIZE) -> Path:
    """CLASSES as sub-folders of root, per_class images each; a share of them JPEG (quality 95), the rest PNG,
    some at twice the size so that the loader's resize is exercised."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            big = i % 5 == 4
            pixels = pattern(label, rng, 2 * size if big else size)
            image = Image.fromarray((pixels * 255).round().astype(np.uint8))
            if rng.random() < jpeg_share:
                image.save(folder / f"{i:04d}.jpg", quality=95)
            else:
                image.save(folder / f"{i:04d}.png")
    return root


def synthetic_tensors(n_per_class: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = np.stack([pattern(label, rng, size) for label in range(len(CLASSES)) for _ in range(n_per_class)])
    y = np.repeat(np.arange(len(CLASSES)), n_per_class)
    return torch.from_numpy(x).float().unsqueeze(1), torch.from_numpy(y)


class TinyNet(nn.Module):
    def __init__(self, classes: int = len(CLASSES)):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_tiny(seed: int = 0, mean: float | None = None, std: float | None = None, epochs: int = 30) -> nn.Module:
    """A TinyNet trained on freshly drawn synthetic images (not the folder's); with mean/std it is trained on
    (x - mean) / std, so its graph takes normalised input."""
    torch.manual_seed(seed)
    x, y = synthetic_tensors(200, seed + 100)
    if mean is not None:
        x = (x - mean) / std
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(); loss.backward(); opt.step()
    return model.eval()


def export_classifier(model: nn.Module, path: Path, probabilities: bool = False, channels: int = 1,
                      size: int = SIZE) -> Path:
    net = WithSoftmax(model) if probabilities else model
    path.write_bytes(to_onnx(net.eval(), torch.rand(2, channels, size, size), "input",
                             "probabilities" if probabilities else "logits", False))
    return path


def normalised_accuracy(model: nn.Module, mean: float, std: float) -> float:
    x, y = synthetic_tensors(50, 7)
    with torch.no_grad():
        return (nn.Sequential(Normalize([mean], [std]), model)(x).argmax(1) == y).float().mean().item()
