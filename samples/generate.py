"""Writes samples/<bundle>/: a few clean test images and the same images attacked, for a first run.

    PYTHONPATH=training .venv/bin/python samples/generate.py [--count 3]

For each shipped bundle, the first `count` test images its classifier gets right (in the test split's
seeded order) are written as `clean-<i>-<label>.png`, and the same images after PGD-40 at the bundle's
eps against the bundle's classifier alone (the attacker does not know the purifier) as
`adversarial-<i>-<label>.png`, kept only where the attack fools the classifier. Dropped into an inbox,
an adversarial sample's report says `suspected_adversarial: true` and the purified image is classified
as <label> again. The images are 8-bit PNGs, so what is written is exactly what the daemon reads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from purifyd_train.data.datasets import spec, test_subset
from purifyd_train.robust.train import bundle_classifier, bundle_settings

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLES = ("mnist", "fashion-mnist", "cifar10")


def to_png(image: torch.Tensor, path: Path) -> None:
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)


def quantised(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round() / 255


def pgd(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 40) -> torch.Tensor:
    """PGD on 8-bit pixels: the last step lands on the 8-bit grid inside the eps ball."""
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        grad, = torch.autograd.grad(torch.nn.functional.cross_entropy(model(adv), y), adv)
        adv = torch.min(torch.max(adv.detach() + 2.5 * eps / steps * grad.sign(), x - eps), x + eps).clamp(0, 1)
    # Round towards the clean image so rounding never leaves the ball.
    return torch.where(adv > x, torch.floor(adv * 255) / 255, torch.ceil(adv * 255) / 255)


def write_bundle_samples(name: str, count: int, seed: int) -> list[str]:
    bundle = REPOSITORY / "models" / name
    ds = spec(name)
    eps = float(bundle_settings(bundle)["training"]["epsilon_linf"])
    x, y = test_subset(ds, 200, seed)
    x = quantised(x)
    classifier = bundle_classifier(bundle, x[:64])
    with torch.no_grad():
        right = (classifier(x).argmax(1) == y).nonzero().squeeze(1)[:count]
    x, y = x[right], y[right]
    torch.manual_seed(seed)
    adv = pgd(classifier, x, y, eps)
    with torch.no_grad():
        fooled = classifier(adv).argmax(1) != y
    out = REPOSITORY / "samples" / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    written = []
    for i in range(len(x)):
        label = ds.labels[int(y[i])].split("/")[0].replace(" ", "-").lower()
        to_png(x[i], out / f"clean-{i}-{label}.png")
        written.append(f"clean-{i}-{label}.png")
        if fooled[i]:
            to_png(adv[i], out / f"adversarial-{i}-{label}.png")
            written.append(f"adversarial-{i}-{label}.png")
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    for name in BUNDLES:
        files = write_bundle_samples(name, args.count, args.seed)
        print(f"samples/{name}: {', '.join(files)}")


if __name__ == "__main__":
    main()
