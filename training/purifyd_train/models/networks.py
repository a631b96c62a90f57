"""Networks: classifiers, the perceptual feature network, and the paper's purifier GAN.

Every model takes NCHW float32 in [0, 1] (../shared/DESIGN.md §2); classifiers carry their
own normalisation and the generator its own [0,1] <-> [-1,1] scaling, so the exported ONNX
graphs need nothing from the daemon but pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std with per-channel constants (exports as Sub and Div)."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, identity or 1x1 projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _stats(channels: int) -> tuple[list[float], list[float]]:
    return ([0.5] * channels, [0.5] * channels) if channels == 1 else ([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])


class PlainCNN(nn.Module):
    """VGG-style CNN: the "seen" classifier for MNIST and Fashion-MNIST."""

    def __init__(self, channels: int, size: int, classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            Normalize(*_stats(channels)),
            *conv_bn_relu(channels, w), *conv_bn_relu(w, w), nn.MaxPool2d(2),
            *conv_bn_relu(w, 2 * w), *conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),
        )
        side = size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * side * side, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNetSmall(nn.Module):
    """A small ResNet with global average pooling: "seen" for CIFAR-10, "unseen" elsewhere."""

    def __init__(self, channels: int, classes: int = 10, width: int = 32, blocks: tuple[int, ...] = (1, 1, 1)):
        super().__init__()
        self.width, self.blocks = width, blocks
        layers: list[nn.Module] = [Normalize(*_stats(channels)), *conv_bn_relu(channels, width)]
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """A fully connected classifier: an "unseen" architecture with no convolutions at all.

    `hidden` gives the width of each hidden layer; dropout follows the first.
    """

    def __init__(self, channels: int, size: int, classes: int = 10, hidden: tuple[int, ...] = (512, 256)):
        super().__init__()
        self.hidden = hidden
        layers: list[nn.Module] = [Normalize(*_stats(channels)), nn.Flatten()]
        width = channels * size * size
        for i, h in enumerate(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)] + ([nn.Dropout(0.2)] if i == 0 else [])
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FeatureNet(nn.Module):
    """VGG-style network trained here as a classifier; its activations give the perceptual loss.

    Stands in for ImageNet VGG19, whose weights the training never downloads. It is trained
    separately from the seen classifier so that the purifier is not tuned to the seen model's features.
    """

    def __init__(self, channels: int, size: int, classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.blocks = nn.ModuleList([
            nn.Sequential(Normalize(*_stats(channels)), *conv_bn_relu(channels, w), *conv_bn_relu(w, w)),
            nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(w, 2 * w), *conv_bn_relu(2 * w, 2 * w)),
            nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(2 * w, 4 * w)),
        ])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])


def classifier_zoo(dataset: str, channels: int, size: int) -> dict[str, nn.Module]:
    """The seen classifier first, then the unseen ones (other architectures), per dataset."""
    if dataset == "cifar10":
        return {"resnet": ResNetSmall(channels, width=32, blocks=(2, 2, 2)),
                "vgg": PlainCNN(channels, size, width=48), "mlp": MLP(channels, size, hidden=(1024, 512))}
    return {"cnn": PlainCNN(channels, size), "resnet": ResNetSmall(channels, width=16), "mlp": MLP(channels, size)}


def source_networks(channels: int, size: int) -> dict[str, nn.Module]:
    """Networks trained here only to train the purifier, never evaluated: the perceptual feature network;
    a fully connected network with one hidden layer (the unseen MLP has two) and a residual network with
    two stages of width 24 (the unseen ResNet of MNIST and Fashion-MNIST has three of width 16), whose
    attacks give training pairs from those architecture families."""
    return {"features": FeatureNet(channels, size), "fc": MLP(channels, size, hidden=(1024,)),
            "res": ResNetSmall(channels, width=24, blocks=(1, 1))}


FAMILY_SOURCES = {"fc": ("Fully connected", "mlp"), "res": ("Residual", "resnet")}
"""The source networks besides the feature network, each standing for an architecture family: its kind, and
the evaluated classifier of that family, which it must never be."""


# ---- the purifier GAN (Zhang et al., arXiv 2504.01399) -------------------------------------

class ResidualBlock(nn.Module):
    """Conv3x3-BN-LeakyReLU-Conv3x3-BN plus identity: the encoder's residual unit."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UNetGenerator(nn.Module):
    """pix2pix U-Net with residual blocks in the encoder's downsampling path.

    Stem conv at full resolution, then `len(res_blocks)` stride-2 4x4 conv levels, each followed by
    its residual blocks (the paper's seven in total by default); the decoder mirrors it with
    stride-2 4x4 transposed convs and concatenated skips, ending in a 3x3 conv and Tanh. Channels
    double per level from `ngf` up to `cap`. Input sides must be multiples of 2**levels.

    With `residual_output` the Tanh output is a correction added to the input and clipped to [0, 1]
    (a global skip, as in HGD's denoiser): the generator starts as the identity, its last conv
    zero-initialised, and learns only the perturbation to remove.
    """

    def __init__(self, channels: int, ngf: int = 16, cap: int = 64, res_blocks: tuple[int, ...] = (1, 2, 2, 2),
                 residual_output: bool = False):
        super().__init__()
        self.residual_output = residual_output
        self.levels = len(res_blocks)
        self.res_blocks = tuple(res_blocks)
        widths = [ngf] + [min(ngf * 2 ** (i + 1), cap) for i in range(self.levels)]
        self.stem = nn.Sequential(nn.Conv2d(channels, ngf, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
        self.down = nn.ModuleList()
        for i, n in enumerate(res_blocks):
            self.down.append(nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(widths[i + 1]),
                nn.LeakyReLU(0.2, inplace=True), *[ResidualBlock(widths[i + 1]) for _ in range(n)]))
        self.up = nn.ModuleList()
        for i in reversed(range(self.levels)):
            cin = widths[i + 1] if i == self.levels - 1 else 2 * widths[i + 1]
            self.up.append(nn.Sequential(nn.ConvTranspose2d(cin, widths[i], 4, 2, 1, bias=False),
                                         nn.BatchNorm2d(widths[i]), nn.ReLU(inplace=True)))
        self.out = nn.Sequential(nn.Conv2d(2 * ngf, channels, 3, 1, 1), nn.Tanh())
        if residual_output:
            nn.init.zeros_(self.out[0].weight)
            nn.init.zeros_(self.out[0].bias)

    @property
    def multiple(self) -> int:
        return 2 ** self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x * 2.0 - 1.0)
        skips = [h]
        for level in self.down:
            h = level(h)
            skips.append(h)
        skips.pop()
        for level in self.up:
            h = torch.cat([level(h), skips.pop()], dim=1)
        if self.residual_output:
            return (x + self.out(h)).clamp(0.0, 1.0)
        return (self.out(h) + 1.0) * 0.5


def reflect_pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflect-pads H and W up to a multiple, centred: top=(P-H)//2, the rest at the bottom (same for W).

    purifyd's image layer pads the same way before running the exported generator.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(x, pad, mode="reflect") if ph or pw else x), pad


class Purifier(nn.Module):
    """The generator at any image size: centred reflect padding, generate, crop back.

    `multiple` is the side multiple the generator needs (a `UNetGenerator` knows its own; an exported
    graph's comes from its bundle).
    """

    def __init__(self, generator: nn.Module, multiple: int | None = None):
        super().__init__()
        self.generator = generator
        self.multiple = multiple or generator.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (left, right, top, bottom) = reflect_pad_to(x, self.multiple)
        y = self.generator(padded)
        return y[..., top:top + x.shape[-2], left:left + x.shape[-1]]


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN with residual blocks: scores (input, output) pairs per patch."""

    def __init__(self, channels: int, ndf: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True), ResidualBlock(ndf),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2, inplace=True),
            ResidualBlock(2 * ndf),
            nn.Conv2d(2 * ndf, 1, 3, 1, 1))

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition * 2 - 1, image * 2 - 1], dim=1))
