"""The model families the engine must run, with random weights.

`ResidualUNet` is the shipped purifier's family (pix2pix U-Net with a residual block per encoder
level, in-graph scaling between [0, 1] and [-1, 1]); `SmallClassifier` is a CNN classifier of the
kind the daemon pairs with it. Used by make_fixtures.py and by bench/engine.
"""
import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.body(x)


class ResidualUNet(nn.Module):
    """U-Net generator: `depth` stride-2 encoder levels, each Conv4x4 + BN + LeakyReLU(0.2) +
    residual block; decoder ConvTranspose4x4 + BN + ReLU with concatenated skips; Tanh.
    Fully convolutional for sides that are multiples of 2**depth."""

    def __init__(self, channels: int = 3, ngf: int = 64, depth: int = 5, max_mult: int = 8):
        super().__init__()
        widths = [min(ngf * 2**i, ngf * max_mult) for i in range(depth)]
        self.down = nn.ModuleList()
        previous = channels
        for level, width in enumerate(widths):
            layers = [nn.Conv2d(previous, width, 4, 2, 1, bias=False)]
            if level > 0:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.LeakyReLU(0.2, True), ResidualBlock(width)]
            self.down.append(nn.Sequential(*layers))
            previous = width
        self.up = nn.ModuleList()
        for level in reversed(range(1, depth)):
            width_in = widths[level] if level == depth - 1 else widths[level] * 2
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(width_in, widths[level - 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[level - 1]), nn.ReLU(True)))
        self.final = nn.Sequential(nn.ConvTranspose2d(widths[0] * 2, channels, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        h = x * 2.0 - 1.0
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
        for index, block in enumerate(self.up):
            h = torch.cat([block(h), skips[-2 - index]], 1)
        return (self.final(h) + 1.0) * 0.5


class SmallClassifier(nn.Module):
    """CNN classifier with in-graph normalisation, ending in Gemm + Softmax; flattens with
    `view(x.size(0), -1)` so the exporter emits Shape/Gather/Unsqueeze/Concat/Reshape."""

    def __init__(self, channels: int = 3, classes: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45][:channels]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26][:channels]).view(1, -1, 1, 1))
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(True),
            nn.AvgPool2d(2),
            nn.Conv2d(32, 48, 3, 2, 1), nn.BatchNorm2d(48), nn.ReLU(True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Linear(48, 32), nn.Dropout(0.5), nn.ReLU(True), nn.Linear(32, classes))

    def forward(self, x):
        h = self.features((x - self.mean) / self.std)
        return torch.softmax(self.head(h.view(h.size(0), -1)), dim=1)


def randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial statistics so that folding them is actually tested."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def export(model: nn.Module, path: str, example: torch.Tensor, spatial_dynamic: bool) -> None:
    """Export as the project does: TorchScript exporter, opset 17, dynamic batch."""
    axes = {0: "batch", 2: "height", 3: "width"} if spatial_dynamic else {0: "batch"}
    torch.onnx.export(model.eval(), (example,), path, opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": axes, "output": axes if spatial_dynamic else {0: "batch"}})
