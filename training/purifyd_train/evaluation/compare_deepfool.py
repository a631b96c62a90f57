"""Compares torchattacks' DeepFool with the box-aware `BoxDeepFool` on a dataset's trained classifiers.

Prints, per classifier, each version's success rate (share of test images no longer classified
correctly), median L2 perturbation and wall time, with the evaluation's DeepFool parameters.
"""
from __future__ import annotations

import time

import torchattacks

from ..attacks.deepfool import BoxDeepFool
from ..attacks.protocol import evaluation_attacks
from ..data.datasets import spec, test_subset
from ..models.networks import classifier_zoo
from ..models.ops import predict
from ..runs import command_parser, log, setup
from ..training.trained import load_classifier


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=0)
    p.add_argument("--n", type=int, default=200, help="test images (a seeded subset)")
    args = p.parse_args(argv)
    setup(args.seed, args.threads, args.device)
    ds = spec(args.dataset)
    x, y = test_subset(ds, args.n, seed=args.seed, root=args.data)
    params = next(a for a in evaluation_attacks(ds.name, ds.eps) if a.name == "DeepFool").params
    for name in classifier_zoo(ds.name, ds.channels, ds.size):
        _, model = load_classifier(ds.name, name)
        for label, attack in (("torchattacks.DeepFool", torchattacks.DeepFool(model, **params)),
                              ("BoxDeepFool", BoxDeepFool(model, **params))):
            start = time.time()
            adv = attack(x, y)
            seconds = time.time() - start
            success = (predict(model, adv) != y).float().mean().item()
            l2 = (adv - x).flatten(1).norm(dim=1).median().item()
            log(f"{ds.name} {name} {label}: success {100 * success:.1f}%, median L2 {l2:.3f}, {seconds:.1f} s for {len(x)} images")


if __name__ == "__main__":
    main()
