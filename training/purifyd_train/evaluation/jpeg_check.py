"""JPEG re-encoding at several qualities, alone and after a bundle's purifier, on its own ONNX graphs.

Prints the seen classifier's accuracy on clean, PGD and C&W test images (the evaluation's parameters,
oblivious setting) under: no defense, the purifier, JPEG at each `--quality`, and the purifier
followed by JPEG. On a dataset that is itself a JPEG copy (CIFAR-10 here: quality 75), re-encoding
at the source's quality lands near the source's own pixels, so the JPEG baseline at that quality
owes part of its score to the copy; the other qualities show how much. Only the bundle is read.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..attacks.protocol import evaluation_attacks, run_attack
from ..data.datasets import spec, test_subset
from ..models.networks import Purifier
from ..models.onnx_graph import bundle_networks
from ..models.ops import batched, predict
from ..runs import REPO_ROOT, command_parser, log, setup
from .baselines import jpeg

ATTACKS = ("PGD", "CW")


def accuracies(seen, purifier: Purifier, images: torch.Tensor, y: torch.Tensor, qualities: list[int]) -> dict:
    """Accuracy per defense: none, the purifier, JPEG at each quality alone and after the purifier."""
    purified = batched(purifier, images, 250)
    inputs = {"none": images, "purifier": purified}
    for q in qualities:
        inputs[f"jpeg{q}"], inputs[f"purifier+jpeg{q}"] = jpeg(images, q), jpeg(purified, q)
    return {name: (predict(seen, x) == y).float().mean().item() for name, x in inputs.items()}


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=0)
    p.add_argument("--n", type=int, default=1000, help="test images (a seeded subset)")
    p.add_argument("--quality", type=int, nargs="+", default=[50, 75, 90], help="JPEG qualities")
    p.add_argument("--bundle", type=Path, default=None, help="the bundle folder (default models/D)")
    args = p.parse_args(argv)
    setup(args.seed, args.threads, args.device)
    ds = spec(args.dataset)
    seen, purifier = bundle_networks(args.bundle or REPO_ROOT / "models" / ds.name)
    x, y = test_subset(ds, args.n, seed=args.seed, root=args.data)
    inputs = {"clean": x}
    for attack in evaluation_attacks(ds.name, ds.eps):
        if attack.name in ATTACKS:
            inputs[attack.name] = run_attack(attack.build(seen, args.seed), x, y)
    for label, images in inputs.items():
        accuracy = accuracies(seen, purifier, images, y, args.quality)
        log(f"{ds.name} {label} (n={len(x)}): " + ", ".join(f"{name} {100 * a:.1f}%" for name, a in accuracy.items()))


if __name__ == "__main__":
    main()
