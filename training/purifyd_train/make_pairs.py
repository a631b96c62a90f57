"""Builds the purifier's training set: (adversarial, clean) pairs from FGSM + PGD + C&W on training images.

Adversarial examples are made against the seen classifier only. A share of clean images is kept
as (clean, clean) pairs so the purifier learns to leave clean inputs alone, and a share gets
random-sign noise at the attack budgets (no classifier involved).
"""
from __future__ import annotations

import torch

from .attacks import run_attack, training_attacks
from .common import command_parser, freeze, log, predict, run_dir, setup, write_json
from .data import load_split, shuffled, spec
from .models import classifier_zoo


def load_classifier(dataset: str, name: str | None = None) -> tuple[str, torch.nn.Module]:
    """A trained classifier from the run directory (the seen one when name is None)."""
    ds = spec(dataset)
    zoo = classifier_zoo(ds.name, ds.channels, ds.size)
    name = name or next(iter(zoo))
    model = zoo[name]
    model.load_state_dict(torch.load(run_dir(ds.name) / "classifiers" / f"{name}.pt"))
    return name, freeze(model)


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=1)
    p.add_argument("--per-attack", type=int, default=4000, help="images per attack configuration")
    p.add_argument("--noise", type=int, default=4000, help="(random-sign noise at the budgets, clean) pairs")
    p.add_argument("--clean", type=int, default=8000, help="(clean, clean) pairs")
    args = p.parse_args(argv)
    setup(args.seed, args.threads)
    ds = spec(args.dataset)
    name, model = load_classifier(ds.name)
    x, y = shuffled(*load_split(ds, "train", args.data), args.seed)
    configs = training_attacks(ds.name, ds.eps)
    advs, cleans, kinds, stats = [], [], [], {}
    start = 0
    for config in configs:
        n = args.per_attack * (2 if config.name == "CW" else 1)
        xb, yb = x[start:start + n], y[start:start + n]
        start = (start + n) % len(x)
        adv = run_attack(config.build(model, args.seed), xb, yb)
        acc = (predict(model, adv) == yb).float().mean().item()
        label = f"{config.name}(eps={config.params['eps']:.4f})" if "eps" in config.params else config.name
        log(f"{ds.name}: {label} on {n} training images: seen-classifier accuracy {acc:.4f}")
        stats[label] = {"n": n, "seen_accuracy": acc, "params": config.params}
        advs.append(adv.half())
        cleans.append(xb.half())
        kinds += [label] * n
    # Random-sign noise at the training budgets: no classifier involved, it teaches the purifier to
    # remove dense perturbations whatever model they were made against (the unseen MLP's are dense).
    xn = x[start:start + args.noise]
    start = (start + args.noise) % len(x)
    budgets = ds.eps * torch.tensor([0.5, 0.75, 1.0])[torch.randint(0, 3, (len(xn),))].view(-1, 1, 1, 1)
    advs.append((xn + budgets * torch.randint(0, 2, xn.shape).float().mul_(2).sub_(1)).clamp_(0, 1).half())
    cleans.append(xn.half())
    kinds += ["noise"] * len(xn)
    xc = x[start:start + args.clean]
    advs.append(xc.half())
    cleans.append(xc.half())
    kinds += ["clean"] * len(xc)
    out = run_dir(ds.name)
    torch.save({"adv": torch.cat(advs), "clean": torch.cat(cleans), "kind": kinds}, out / "pairs.pt")
    write_json(out / "pairs.json", {"classifier": name, "seed": args.seed, "attacks": stats, "clean": len(xc),
                                       "noise": {"n": len(xn), "eps": [ds.eps * f for f in (0.5, 0.75, 1.0)]}})
    log(f"{ds.name}: wrote {sum(len(a) for a in advs)} pairs")


if __name__ == "__main__":
    main()
