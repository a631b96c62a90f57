"""Builds the purifier's training set: (adversarial, clean) pairs from FGSM + PGD + C&W on training images.

Adversarial examples are made against the seen classifier and, with `--feature-attacks`,
`--fc-attacks` and `--res-attacks`, also against the source networks: the feature network the
perceptual loss uses, and a fully connected and a residual network trained for this alone (the
unseen classifiers never take part). A share of clean images is kept as (clean, clean) pairs so the
purifier learns to leave clean inputs alone, and a share gets random-sign noise at the attack
budgets (no classifier involved): independent per pixel, and optionally spatially correlated (the
sign of blurred Gaussian noise).

Each pair of a round takes its own training image. `--rounds R` makes R rounds over the same
images, the images moved along by a 1/R share of them each round so that an image meets other
attacks (and new PGD starts and noise draws): R times the pairs without touching the images after
them, which the GAN holds out for validation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attacks.protocol import run_attack, training_attacks
from ..data.datasets import load_split, shuffled, spec
from ..models.networks import FAMILY_SOURCES
from ..models.ops import gaussian_kernel, predict
from ..runs import command_parser, log, run_dir, setup, write_json
from .trained import load_classifier, load_source_network

NOISE_BUDGETS = (0.5, 0.75, 1.0)
"""Random-sign noise budgets, as fractions of the dataset's ε (the training attacks' budgets)."""
CORRELATION_SIGMAS = (0.5, 3.0)
"""Range of the Gaussian blur (pixels) that sets how far correlated noise's signs extend."""


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an NCHW batch, reflect-padded so the size is kept."""
    radius, c = max(1, int(3 * sigma)), x.shape[1]
    kernel = gaussian_kernel(radius, sigma).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(c, 1, -1, 1), groups=c)


def sign_noise(x: torch.Tensor, eps: float, correlated: bool) -> torch.Tensor:
    """x plus ±budget per pixel, the budget drawn per image from NOISE_BUDGETS·eps, clipped to [0, 1].

    Correlated noise takes the sign of Gaussian noise blurred with a per-image σ drawn uniformly
    from CORRELATION_SIGMAS: blobs of one sign a few pixels wide, a shape that independent
    per-pixel noise never takes.
    """
    budgets = eps * torch.tensor(NOISE_BUDGETS)[torch.randint(0, len(NOISE_BUDGETS), (len(x),))].view(-1, 1, 1, 1)
    if correlated:
        sigmas = torch.empty(len(x)).uniform_(*CORRELATION_SIGMAS)
        signs = torch.cat([gaussian_blur(torch.randn(1, *x.shape[1:]), s.item()) for s in sigmas]).sign()
    else:
        signs = torch.randint(0, 2, x.shape).float().mul_(2).sub_(1)
    return (x + budgets * signs).clamp_(0, 1)


def pair_images(jobs: list[tuple], noise: int, correlated_noise: int, clean: int) -> int:
    """How many training images a round of pairs takes: one per pair."""
    return sum(n for *_, n in jobs) + noise + correlated_noise + clean


def make_pair_set(x: torch.Tensor, y: torch.Tensor, jobs: list[tuple], eps: float, seen: str, *, seed: int,
                  rounds: int = 1, noise: int = 0, correlated_noise: int = 0, clean: int = 0,
                  progress=None) -> tuple[dict, dict]:
    """(adversarial, clean) pairs from the first images of x: each job (attack config, target name, network,
    n) attacks its own n images, then noise, correlated-noise and clean pairs take theirs; `rounds` rounds
    move the images along by a 1/rounds share each. Returns the pairs ({adv, clean: float16, label, kind})
    and per-attack statistics; `progress` (a tqdm bar, optional) advances by each job's images.

    ValueError when the pairs need more images than x holds."""
    images = pair_images(jobs, noise, correlated_noise, clean)
    if images > len(x):
        raise ValueError(f"{images} pairs a round asked for, but the training set has {len(x)} images "
                         "and each pair of a round needs its own; ask for fewer")
    advs, cleans, labels, kinds, stats = [], [], [], [], {}
    for round_ in range(rounds):
        shift = round_ * (images // rounds)
        xr, yr = x[:images].roll(-shift, 0), y[:images].roll(-shift, 0)
        start = 0
        for config, target, victim, n in jobs:
            xb, yb = xr[start:start + n], yr[start:start + n]
            start += n
            adv = run_attack(config.build(victim, seed + round_), xb, yb)
            acc = (predict(victim, adv) == yb).float().mean().item()
            label = f"{config.name}(eps={config.params['eps']:.4f})" if "eps" in config.params else config.name
            label += "" if target == seen else f" on {target}"
            (progress.write if progress is not None else log)(
                f"round {round_ + 1}: {label} on {n} training images: {target} accuracy {acc:.4f}")
            entry = stats.setdefault(label, {"n": 0, "classifier": target, "accuracy": 0.0, "params": config.params})
            entry["accuracy"] = (entry["accuracy"] * entry["n"] + acc * n) / (entry["n"] + n)
            entry["n"] += n
            advs.append(adv.half())
            cleans.append(xb.half())
            labels.append(yb)
            kinds += [label] * n
            if progress is not None:
                progress.update(n)
        # Random-sign noise at the training budgets: no classifier involved, it teaches the purifier to
        # remove dense perturbations whatever model they were made against (the unseen MLP's are dense).
        for kind, n, correlated in (("noise", noise, False), ("correlated-noise", correlated_noise, True)):
            if n == 0:
                continue
            xn = xr[start:start + n]
            advs.append(sign_noise(xn, eps, correlated).half())
            cleans.append(xn.half())
            labels.append(yr[start:start + n])
            kinds += [kind] * len(xn)
            start += n
        xc = xr[start:start + clean]
        advs.append(xc.half())
        cleans.append(xc.half())
        labels.append(yr[start:start + clean])
        kinds += ["clean"] * len(xc)
        if progress is not None:
            progress.update(noise + correlated_noise + len(xc))
    return {"adv": torch.cat(advs), "clean": torch.cat(cleans), "label": torch.cat(labels), "kind": kinds}, stats


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=1)
    p.add_argument("--per-attack", type=int, default=4000, help="images per attack configuration")
    p.add_argument("--noise", type=int, default=4000, help="(random-sign noise at the budgets, clean) pairs")
    p.add_argument("--correlated-noise", type=int, default=0,
                   help="(spatially correlated random-sign noise at the budgets, clean) pairs")
    p.add_argument("--feature-attacks", type=int, default=0,
                   help="images per FGSM and PGD budget made against the feature network instead of the seen classifier")
    for source, (kind, _) in FAMILY_SOURCES.items():
        p.add_argument(f"--{source}-attacks", type=int, default=0,
                       help=f"images per FGSM and PGD budget made against the {kind.lower()} source network `{source}`")
    p.add_argument("--clean", type=int, default=8000, help="(clean, clean) pairs")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds over the same training images, each pairing them with other attacks (every count above is per round)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    setup(args.seed, args.threads, args.device)
    ds = spec(args.dataset)
    name, model = load_classifier(ds.name)
    x, y = shuffled(*load_split(ds, "train", args.data), args.seed)
    configs = training_attacks(ds.name, ds.eps)
    jobs = [(config, name, model, args.per_attack * (2 if config.name == "CW" else 1)) for config in configs]
    counts = {"features": args.feature_attacks, **{source: getattr(args, f"{source}_attacks") for source in FAMILY_SOURCES}}
    for source, n in counts.items():
        if n:
            network = load_source_network(ds.name, source)
            jobs += [(config, source, network, n) for config in configs if config.name != "CW"]
    # Every pair of a round takes its own training image; the GAN validates on the images after the last one.
    images = pair_images(jobs, args.noise, args.correlated_noise, args.clean)
    if images > len(x):
        raise SystemExit(f"{ds.name}: {images} pairs a round asked for, but the training set has {len(x)} images "
                         "and each pair of a round needs its own; ask for fewer")
    pairs, stats = make_pair_set(x, y, jobs, ds.eps, name, seed=args.seed, rounds=args.rounds, noise=args.noise,
                                 correlated_noise=args.correlated_noise, clean=args.clean)
    out = run_dir(ds.name)
    torch.save(pairs, out / "pairs.pt")
    budgets = [ds.eps * f for f in NOISE_BUDGETS]
    write_json(out / "pairs.json", {"classifier": name, "seed": args.seed, "images": images, "rounds": args.rounds,
                                       "attacks": stats, "clean": args.clean * args.rounds,
                                       "noise": {"n": args.noise * args.rounds, "eps": budgets},
                                       "correlated_noise": {"n": args.correlated_noise * args.rounds, "eps": budgets,
                                                            "sigma": list(CORRELATION_SIGMAS)}})
    log(f"{ds.name}: wrote {len(pairs['adv'])} pairs")


if __name__ == "__main__":
    main()
