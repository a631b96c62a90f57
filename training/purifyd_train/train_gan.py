"""Trains the purifier GAN: cGAN + 100·L1 + 1·perceptual, resumable from per-epoch checkpoints."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .attacks import AttackConfig, run_attack
from .common import command_parser, freeze, log, predict, run_dir, setup, write_json
from .data import spec, test_subset
from .make_pairs import load_classifier
from .models import FeatureNet, PatchDiscriminator, Purifier, UNetGenerator, reflect_pad_to

L1_WEIGHT = 100.0
PERCEPTUAL_WEIGHT = 1.0
DEFAULT_WIDTHS = {"mnist": (16, 64), "fashion-mnist": (16, 64), "cifar10": (32, 128)}


def generator_config(dataset: str, residual: bool) -> dict:
    ngf, cap = DEFAULT_WIDTHS.get(dataset, (16, 64))
    return {"ngf": ngf, "cap": cap, "res_blocks": [1, 2, 2, 2] if residual else [0, 0, 0, 0]}


def load_generator(path) -> tuple[UNetGenerator, dict]:
    state = torch.load(path)
    g = UNetGenerator(state["channels"], **{k: (tuple(v) if k == "res_blocks" else v) for k, v in state["config"].items()})
    g.load_state_dict(state["generator"])
    return freeze(g), state


def perceptual(features: FeatureNet, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return sum(F.l1_loss(a.float(), b.float()) for a, b in zip(features.features(fake), features.features(real)))


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=2)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--minutes", type=float, default=None, help="stop after the epoch that crosses this budget")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-residual", action="store_true", help="ablation: the same U-Net without residual blocks")
    p.add_argument("--limit", type=int, default=None, help="use only this many pairs (tests)")
    p.add_argument("--val-n", type=int, default=500, help="test images for the per-epoch PGD check")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the networks (faster on CPUs with AVX-512 BF16); losses stay float32")
    args = p.parse_args(argv)
    setup(args.seed, args.threads)
    ds = spec(args.dataset)
    root = run_dir(ds.name)
    out = root / ("gan-nores" if args.no_residual else "gan")
    out.mkdir(exist_ok=True)
    pairs = torch.load(root / "pairs.pt")
    adv, clean = pairs["adv"], pairs["clean"]
    if args.limit:
        perm = torch.randperm(len(adv))[:args.limit]
        adv, clean = adv[perm], clean[perm]
    config = generator_config(ds.name, residual=not args.no_residual)
    g = UNetGenerator(ds.channels, config["ngf"], config["cap"], tuple(config["res_blocks"]))
    d = PatchDiscriminator(ds.channels)
    features = FeatureNet(ds.channels, ds.size)
    features.load_state_dict(torch.load(root / "classifiers" / "features.pt"))
    freeze(features)
    _, seen = load_classifier(ds.name)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    checkpoint = out / "checkpoint.pt"
    epoch, history = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint)
        g.load_state_dict(state["generator"]); d.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"])
        epoch, history = state["epoch"], state["history"]
        log(f"resumed at epoch {epoch}")
    # A fixed validation set: PGD at the protocol budget on test images, against the seen classifier.
    xv, yv = test_subset(ds, args.val_n, seed=99, root=args.data)
    pgd = AttackConfig("PGD", dict(eps=ds.eps, alpha=ds.eps / 4, steps=10, random_start=True)).build(seen, 99)
    xv_adv = run_attack(pgd, xv, yv)
    multiple = g.multiple
    # Forward and backward under bfloat16 autocast when asked; losses, weights and Adam stay float32.
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)
    log(f"{ds.name}: generator {sum(p.numel() for p in g.parameters())} parameters, {config}; {len(adv)} pairs")
    started = time.time()
    while epoch < args.epochs:
        g.train(); d.train()
        perm = torch.randperm(len(adv))
        sums = {"d": 0.0, "gan": 0.0, "l1": 0.0, "perc": 0.0}
        for i in range(0, len(adv), args.batch):
            idx = perm[i:i + args.batch]
            a = reflect_pad_to(adv[idx].float(), multiple)[0]
            c = reflect_pad_to(clean[idx].float(), multiple)[0]
            with autocast():
                fake = g(a)
                real_score, fake_score = d(a, c).float(), d(a, fake.detach()).float()
            loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score))
                            + F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score)))
            opt_d.zero_grad(set_to_none=True); loss_d.backward(); opt_d.step()
            with autocast():
                score = d(a, fake).float()
                loss_perc = perceptual(features, fake, c)
            loss_gan = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            fake = fake.float()
            loss_l1 = F.l1_loss(fake * 2 - 1, c * 2 - 1)
            loss_g = loss_gan + L1_WEIGHT * loss_l1 + PERCEPTUAL_WEIGHT * loss_perc
            opt_g.zero_grad(set_to_none=True); loss_g.backward(); opt_g.step()
            for k, v in zip(sums, (loss_d, loss_gan, loss_l1, loss_perc)):
                sums[k] += v.item() * len(idx)
        epoch += 1
        purifier = Purifier(g).eval()
        val_adv = (predict(seen, predict_purified(purifier, xv_adv)) == yv).float().mean().item()
        val_clean = (predict(seen, predict_purified(purifier, xv)) == yv).float().mean().item()
        record = {"epoch": epoch, **{k: v / len(adv) for k, v in sums.items()},
                  "val_pgd_purified_acc": val_adv, "val_clean_purified_acc": val_clean,
                  "minutes": (time.time() - started) / 60}
        history.append(record)
        log(f"{ds.name}: epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
        torch.save({"generator": g.state_dict(), "discriminator": d.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "epoch": epoch, "history": history}, checkpoint)
        torch.save({"generator": g.state_dict(), "config": config, "channels": ds.channels, "epoch": epoch,
                    "history": history, "pairs": len(adv)}, out / "generator.pt")
        write_json(out / "history.json", history)
        if args.minutes and (time.time() - started) / 60 >= args.minutes:
            log("time budget reached")
            break


@torch.no_grad()
def predict_purified(purifier: Purifier, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([purifier(x[i:i + 250]) for i in range(0, len(x), 250)])


if __name__ == "__main__":
    main()
