"""Trains the purifier GAN: cGAN + 100·L1 + 1·perceptual, resumable from per-epoch checkpoints.

The weights are the paper's by default. `--perceptual-weight` scales the perceptual term and
`--guidance-weight` adds the high-level guidance of Liao et al. (HGD, CVPR 2018): the L1 distance
between the seen classifier's logits on the purified and on the clean image;
`--feature-guidance-weight` the same for the logits of the feature network that gives the
perceptual features, and `--source-guidance-weight` for the mean over the other source networks
(`fc` and `res`, trained here only for the purifier). All are recorded in the generator file, and the
model card reads them from there.

`--decay-from` holds the learning rates until that fraction of the run and then lowers them linearly
to zero at its end (pix2pix: half of the run); `--weight-average` validates and ships an exponential
moving average of the generator's weights and BatchNorm statistics instead of the last step's.
`--flip` mirrors a random half of each batch's pairs left to right (the adversarial image and its
clean target alike), for datasets whose classes keep their meaning when mirrored. `--fresh-attacks`
remakes the pairs' FGSM, PGD and noise perturbations at the start of every epoch after the first,
each on another of those pairs' clean images: the mix of attacks stays, but no (image, perturbation)
pair is seen twice (the C&W and clean pairs stay as made).

Every epoch is validated on held-out training images; `generator.pt` keeps the best epoch's weights
and `checkpoint.pt` the last epoch's, from which `--init` and resuming continue (resuming only under
the options the run started with: `--epochs`, `--minutes`, `--threads`, `--device` and `--bf16` may
change).
"""
from __future__ import annotations

import copy
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..attacks.protocol import AttackConfig, run_attack
from ..data.datasets import spec, train_tail
from ..models.networks import FAMILY_SOURCES, FeatureNet, PatchDiscriminator, Purifier, UNetGenerator, reflect_pad_to
from ..models.ops import freeze, predict
from ..runs import autocast, command_parser, load, log, run_dir, setup, write_json
from .pairs import sign_noise
from .trained import load_classifier, load_source_network

# The run folders under training/runs/D that the export, evaluation and card read.
SHIPPED_RUN, ABLATION_RUN = "gan", "gan-nores"
PAPER_LOSS_WEIGHTS = {"gan": 1.0, "l1": 100.0, "perceptual": 1.0, "guidance": 0.0, "feature_guidance": 0.0,
                      "source_guidance": 0.0}
# Recorded in each history entry: runs before this set validated on 500 test images (seed 99).
VALIDATION_IMAGES = "held-out training"
# generator.pt keeps the weights of the run's best epoch on that validation set (checkpoint.pt the last).
SELECTION = "the best sum of validation PGD and clean purified accuracy"
# Adam's learning rate for both networks, as in pix2pix (the ceiling that --decay-from lowers).
LEARNING_RATE = 2e-4
# What a checkpoint's record of its options meant by a loss term or schedule option that it predates.
RECORDED_DEFAULTS = {"loss_weights": PAPER_LOSS_WEIGHTS, "schedule": {"fresh_attacks": False}}
DEFAULT_WIDTHS = {"mnist": (16, 64), "fashion-mnist": (16, 64), "cifar10": (32, 128)}


def generator_config(dataset: str, residual: bool, residual_output: bool) -> dict:
    ngf, cap = DEFAULT_WIDTHS.get(dataset, (16, 64))
    return {"ngf": ngf, "cap": cap, "res_blocks": [1, 2, 2, 2] if residual else [0, 0, 0, 0],
            "residual_output": residual_output}


def run_folder(dataset: str, ablation: bool = False) -> Path:
    """The shipped generator's run folder, or the no-residual ablation's."""
    return run_dir(dataset) / (ABLATION_RUN if ablation else SHIPPED_RUN)


def recorded_loss_weights(weights: dict) -> dict:
    """A record's loss weights, the paper's for the terms that records from before them lack."""
    return {**PAPER_LOSS_WEIGHTS, **weights}


def load_generator(path) -> tuple[UNetGenerator, dict]:
    state = load(path)
    g = UNetGenerator(state["channels"], **{k: (tuple(v) if k == "res_blocks" else v) for k, v in state["config"].items()})
    g.load_state_dict(state["generator"])
    state["loss_weights"] = recorded_loss_weights(state.get("loss_weights", {}))
    return freeze(g), state


def held_out_images(ds, root, pairs: int, n: int, data) -> tuple[torch.Tensor, torch.Tensor]:
    """The last n images of the permutation the pairs were drawn from, whose first ones the pairs took
    (one per pair in files from before `pairs --rounds`)."""
    record = json.loads((root / "pairs.json").read_text())
    try:
        return train_tail(ds, n, record["seed"], data, after=record.get("images", pairs))
    except ValueError as error:
        raise SystemExit(f"{ds.name}: {error}: the pairs use them, so fewer than --val-n {n} are held out "
                         "for validation; lower --val-n or make fewer pairs") from None


def selection_score(record: dict) -> float:
    """An epoch's SELECTION score from its history record."""
    return record["val_pgd_purified_acc"] + record["val_clean_purified_acc"]


def best_epoch(history: list[dict], run: str) -> dict:
    """This run's epoch with the highest SELECTION score; epochs validated on test images never count."""
    eligible = [h for h in history if h.get("run") == run and h.get("val_images") == VALIDATION_IMAGES]
    return max(eligible, key=selection_score)


def run_progress(epochs_done: float, epochs: int, seconds: float, minutes: float | None) -> float:
    """How far the run is, 0 to 1: by epochs, or by the time budget when that runs out first."""
    progress = epochs_done / epochs
    if minutes:
        progress = max(progress, seconds / (60 * minutes))
    return min(progress, 1.0)


def learning_rate_factor(progress: float, decay_from: float | None) -> float:
    """1 until `decay_from`, then falling linearly to 0 at the end of the run."""
    if decay_from is None or progress <= decay_from:
        return 1.0
    return max(0.0, (1.0 - progress) / (1.0 - decay_from))


class WeightAverage:
    """An exponential moving average of a network's parameters and BatchNorm statistics.

    The decay warms up as (1 + n) / (10 + n) over the first updates, so that the average does not
    keep the random initialisation for thousands of steps.
    """

    def __init__(self, net: torch.nn.Module, decay: float):
        self.net, self.decay, self.updates = freeze(copy.deepcopy(net)), decay, 0
        # Each averaged tensor beside the one it follows, listed once: both are updated in place.
        self._tensors = list(zip(self.net.state_dict().values(), net.state_dict().values()))

    @torch.no_grad()
    def update(self) -> None:
        """Moves the average one step towards the network's current weights and statistics."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in self._tensors:
            if average.is_floating_point():
                average.lerp_(current, 1.0 - decay)
            else:
                average.copy_(current)
        self.updates += 1


def attacked_networks(dataset: str, record: dict, loaded: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    """Every network the pairs' attacks were made against (`record` is pairs.json), by name: those in
    `loaded` as they are (the seen classifier must be), the other source networks loaded."""
    return {name: loaded[name] if name in loaded else load_source_network(dataset, name)
            for name in {attack["classifier"] for attack in record["attacks"].values()}}


class FreshPerturbations:
    """Remakes a pair file's FGSM, PGD and noise pairs in place, each with its recorded attack (against
    the network it was made against) or noise; C&W and clean pairs stay as they are.

    Each remake first deals those pairs' clean images (and labels) out again among them in a new order,
    so an image meets another attack, budget or noise draw every time.
    """

    REMADE_ATTACKS = ("FGSM", "PGD")

    def __init__(self, pairs: dict, record: dict, networks: dict[str, torch.nn.Module], eps: float, seed: int):
        if "label" not in pairs:
            raise SystemExit("the pair file holds no labels (it predates them): make the pairs again for --fresh-attacks")
        self.pairs = pairs
        self.groups: list[tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = []
        for kind in dict.fromkeys(pairs["kind"]):
            name, made = kind.split("(")[0], record["attacks"].get(kind)
            if made and name in self.REMADE_ATTACKS:
                attack = AttackConfig(name, made["params"]).build(networks[made["classifier"]], seed)
                make = functools.partial(run_attack, attack)
            elif kind in ("noise", "correlated-noise"):
                make = functools.partial(lambda x, _, correlated: sign_noise(x, eps, correlated),
                                         correlated=kind == "correlated-noise")
            else:
                continue
            self.groups.append((torch.tensor([i for i, k in enumerate(pairs["kind"]) if k == kind]), make))
        self.rows = torch.cat([rows for rows, _ in self.groups]) if self.groups else torch.zeros(0, dtype=torch.long)

    def remake(self) -> None:
        """Deals the remade pairs' images out anew and perturbs each with its pair's attack or noise."""
        adv, clean, label = self.pairs["adv"], self.pairs["clean"], self.pairs["label"]
        order = self.rows[torch.randperm(len(self.rows))]
        clean[self.rows], label[self.rows] = clean[order], label[order]
        for rows, make in self.groups:
            adv[rows] = make(clean[rows].float(), label[rows]).to(adv.dtype)


def perceptual(features: FeatureNet, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return sum(F.l1_loss(a.float(), b.float()) for a, b in zip(features.features(fake), features.features(real)))


def guidance(classifier: torch.nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """HGD's high-level guidance: the L1 between a classifier's logits on purified and clean images."""
    return F.l1_loss(classifier(fake).float(), classifier(real).float())


def guiding_sources(dataset: str) -> dict[str, torch.nn.Module]:
    """The trained source networks that `--source-guidance-weight` averages over: all but the feature
    network, which has its own term."""
    return {name: load_source_network(dataset, name) for name in FAMILY_SOURCES}


@dataclass
class GanParts:
    """The networks, optimisers and loss weights one GAN training step needs."""

    g: UNetGenerator
    d: PatchDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    features: FeatureNet
    seen: torch.nn.Module
    sources: dict[str, torch.nn.Module]
    weights: dict
    average: WeightAverage | None = None


def train_epoch(parts: GanParts, adv: torch.Tensor, clean: torch.Tensor, *, batch: int, flip: bool = False,
                bf16: bool = False, lr_factor: Callable[[float], float] = lambda done: 1.0, progress=None) -> dict:
    """One epoch over the pairs in a random order: a discriminator step, then a generator step, per batch.
    `lr_factor(share of the epoch done)` scales the learning rates; `progress` (tqdm, optional) advances by
    each batch. Returns the summed per-pair losses."""
    g, d, opt_g, opt_d, features, seen, sources, weights, average = (
        parts.g, parts.d, parts.opt_g, parts.opt_d, parts.features, parts.seen, parts.sources, parts.weights, parts.average)
    multiple = g.multiple
    g.train(); d.train()
    perm = torch.randperm(len(adv))
    sums = {"d": 0.0, "gan": 0.0, "l1": 0.0, "perc": 0.0, "guide": 0.0, "fguide": 0.0, "sguide": 0.0}
    for i in range(0, len(adv), batch):
        factor = lr_factor(i / len(adv))
        for group in (*opt_g.param_groups, *opt_d.param_groups):
            group["lr"] = LEARNING_RATE * factor
        idx = perm[i:i + batch]
        a, c = adv[idx].float(), clean[idx].float()
        if flip:
            mirrored = torch.rand(len(idx)) < 0.5
            a[mirrored], c[mirrored] = a[mirrored].flip(-1), c[mirrored].flip(-1)
        a, (left, _, top, _) = reflect_pad_to(a, multiple)
        c = reflect_pad_to(c, multiple)[0]
        crop = lambda x: x[..., top:top + adv.shape[-2], left:left + adv.shape[-1]]
        with autocast(bf16):
            fake = g(a)
            real_score, fake_score = d(a, c).float(), d(a, fake.detach()).float()
        loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score))
                        + F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score)))
        opt_d.zero_grad(set_to_none=True); loss_d.backward(); opt_d.step()
        with autocast(bf16):
            score = d(a, fake).float()
            loss_perc = perceptual(features, fake, c)
            loss_guide = guidance(seen, crop(fake), crop(c)) if weights["guidance"] else torch.zeros(())
            loss_fguide = (guidance(features, crop(fake), crop(c)) if weights["feature_guidance"]
                           else torch.zeros(()))
            loss_sguide = (sum(guidance(net, crop(fake), crop(c)) for net in sources.values()) / len(sources)
                           if sources else torch.zeros(()))
        loss_gan = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
        fake = fake.float()
        loss_l1 = F.l1_loss(fake * 2 - 1, c * 2 - 1)
        loss_g = (weights["gan"] * loss_gan + weights["l1"] * loss_l1 + weights["perceptual"] * loss_perc
                  + weights["guidance"] * loss_guide + weights["feature_guidance"] * loss_fguide
                  + weights["source_guidance"] * loss_sguide)
        opt_g.zero_grad(set_to_none=True); loss_g.backward(); opt_g.step()
        if average:
            average.update()
        for k, v in zip(sums, (loss_d, loss_gan, loss_l1, loss_perc, loss_guide, loss_fguide, loss_sguide)):
            sums[k] += v.item() * len(idx)
        if progress is not None:
            progress.update(1)
    return sums


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=2)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--minutes", type=float, default=None, help="stop after the epoch that crosses this budget")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-residual", action="store_true", help="ablation: the same U-Net without residual blocks")
    p.add_argument("--limit", type=int, default=None, help="train on a random subset of this many pairs")
    p.add_argument("--val-n", type=int, default=500,
                   help="held-out training images (none of them in a pair) for the per-epoch PGD check")
    p.add_argument("--gan-weight", type=float, default=PAPER_LOSS_WEIGHTS["gan"],
                   help="weight of the cGAN term (paper: 1; 0 leaves the discriminator without a say)")
    p.add_argument("--perceptual-weight", type=float, default=PAPER_LOSS_WEIGHTS["perceptual"],
                   help="weight of the perceptual term (paper: 1)")
    p.add_argument("--guidance-weight", type=float, default=PAPER_LOSS_WEIGHTS["guidance"],
                   help="weight of the L1 between the seen classifier's logits on purified and clean images (paper: 0)")
    p.add_argument("--feature-guidance-weight", type=float, default=PAPER_LOSS_WEIGHTS["feature_guidance"],
                   help="weight of the L1 between the feature network's logits on purified and clean images (paper: 0)")
    p.add_argument("--source-guidance-weight", type=float, default=PAPER_LOSS_WEIGHTS["source_guidance"],
                   help=f"weight of the same L1 averaged over the source networks {' and '.join(FAMILY_SOURCES)} (paper: 0)")
    p.add_argument("--residual-output", action="store_true",
                   help="the generator outputs a correction added to its input (a global skip; paper: no)")
    p.add_argument("--name", default=None,
                   help=f"run folder under training/runs/D (default {SHIPPED_RUN}, or {ABLATION_RUN} with --no-residual)")
    p.add_argument("--init", default=None,
                   help="start the generator and discriminator from this run folder's last epoch (a fine-tune)")
    p.add_argument("--decay-from", type=float, default=None,
                   help="hold the learning rates until this fraction of the run (of --epochs, or of --minutes if that "
                        "runs out first), then lower them linearly to zero (pix2pix: 0.5; default: constant)")
    p.add_argument("--weight-average", type=float, default=None, metavar="DECAY",
                   help="validate and ship an exponential moving average of the generator with this decay per step "
                        "(e.g. 0.999; default: the last step's weights)")
    p.add_argument("--flip", action="store_true",
                   help="mirror a random half of each batch's pairs left to right (for classes that mirroring keeps, "
                        "as CIFAR-10's)")
    p.add_argument("--fresh-attacks", action="store_true",
                   help="remake the FGSM, PGD and noise pairs on other of their clean images at the start of every epoch "
                        "after the first (C&W and clean pairs stay as made)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the networks (faster on GPUs and on CPUs with AVX-512 BF16); losses, weights and Adam stay float32")
    args = p.parse_args(argv)
    if args.decay_from is not None and not 0 <= args.decay_from < 1:
        p.error("--decay-from must be in [0, 1)")
    if args.weight_average is not None and not 0 < args.weight_average < 1:
        p.error("--weight-average must be in (0, 1)")
    setup(args.seed, args.threads, args.device)
    ds = spec(args.dataset)
    root = run_dir(ds.name)
    out = root / args.name if args.name else run_folder(ds.name, ablation=args.no_residual)
    out.mkdir(exist_ok=True)
    weights = {**PAPER_LOSS_WEIGHTS, "gan": args.gan_weight, "perceptual": args.perceptual_weight,
               "guidance": args.guidance_weight, "feature_guidance": args.feature_guidance_weight,
               "source_guidance": args.source_guidance_weight}
    pairs = load(root / "pairs.pt")
    schedule = {"decay_from": args.decay_from, "weight_average": args.weight_average, "flip": args.flip,
                "fresh_attacks": args.fresh_attacks}
    total = len(pairs["adv"])
    xv, yv = held_out_images(ds, root, total, args.val_n, args.data)
    if args.limit:
        perm = torch.randperm(total)[:args.limit]
        pairs = {**{k: v[perm] for k, v in pairs.items() if k != "kind"}, "kind": [pairs["kind"][i] for i in perm.tolist()]}
    adv, clean = pairs["adv"], pairs["clean"]
    config = generator_config(ds.name, residual=not args.no_residual, residual_output=args.residual_output)
    # What makes a run the run it is: resuming its checkpoint with other values would train a hybrid.
    options = {"seed": args.seed, "pairs": total, "limit": args.limit, "batch": args.batch,
               "val_n": args.val_n, "config": config, "loss_weights": weights, "schedule": schedule}
    g = UNetGenerator(ds.channels, config["ngf"], config["cap"], tuple(config["res_blocks"]), config["residual_output"])
    d = PatchDiscriminator(ds.channels)
    features = load_source_network(ds.name, "features")
    _, seen = load_classifier(ds.name)
    sources = guiding_sources(ds.name) if weights["source_guidance"] else {}
    fresh = None
    if args.fresh_attacks:
        record = json.loads((root / "pairs.json").read_text())
        networks = attacked_networks(ds.name, record, {record["classifier"]: seen, "features": features})
        fresh = FreshPerturbations(pairs, record, networks, ds.eps, args.seed)
    opt_g = torch.optim.Adam(g.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    checkpoint = out / "checkpoint.pt"
    resuming = checkpoint.exists()
    start = checkpoint if resuming else (root / args.init / "checkpoint.pt" if args.init else None)
    epoch, history, state = 0, [], None
    if start:
        # Resuming restores the optimisers too; a fine-tune (--init) starts them afresh.
        state = load(start)
        g.load_state_dict(state["generator"]); d.load_state_dict(state["discriminator"])
        epoch, history = state["epoch"], state["history"]
        if resuming:
            recorded = {k: {**RECORDED_DEFAULTS[k], **v} if k in RECORDED_DEFAULTS else v
                        for k, v in state.get("options", {}).items()}  # checkpoints from before the record resume unchecked
            changed = [f"{k} {recorded[k]} (now {v})" for k, v in options.items() if k in recorded and recorded[k] != v]
            if changed:
                raise SystemExit(f"{ds.name}: {out.name}'s checkpoint was trained with {'; '.join(changed)}: "
                                 "resume it with the same options, or train afresh under another --name")
            opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"])
        else:
            history = [{"run": args.init, **h} for h in history]
        log(f"{'resumed' if resuming else f'initialised from {args.init}'} at epoch {epoch}")
    average = None
    if args.weight_average:
        average = WeightAverage(g, args.weight_average)
        if resuming and "generator_average" in state:
            average.net.load_state_dict(state["generator_average"])
            average.updates = state["average_updates"]
    # A fixed validation set: PGD at the protocol budget on held-out images, against the seen classifier.
    pgd = AttackConfig("PGD", dict(eps=ds.eps, alpha=ds.eps / 4, steps=10, random_start=True)).build(seen, 99)
    xv_adv = run_attack(pgd, xv, yv)
    log(f"{ds.name}: generator {sum(p.numel() for p in g.parameters())} parameters, {config}; {len(adv)} pairs; loss weights {weights}")
    # The L1 column's yardstick: what passing every input through unchanged would score.
    log(f"{ds.name}: L1 of the identity on these pairs {F.l1_loss(adv.float() * 2 - 1, clean.float() * 2 - 1).item():.4f}")
    started = time.time()
    while epoch < args.epochs:
        if fresh and epoch > 0:
            remade = time.time()
            fresh.remake()
            log(f"{ds.name}: remade {len(fresh.rows)} pairs in {time.time() - remade:.0f} s")
        parts = GanParts(g, d, opt_g, opt_d, features, seen, sources, weights, average)
        sums = train_epoch(parts, adv, clean, batch=args.batch, flip=args.flip, bf16=args.bf16,
                           lr_factor=lambda done: learning_rate_factor(
                               run_progress(epoch + done, args.epochs, time.time() - started, args.minutes), args.decay_from))
        epoch += 1
        shipped = average.net if average else g
        purifier = Purifier(shipped).eval()
        val_adv = (predict(seen, predict_purified(purifier, xv_adv)) == yv).float().mean().item()
        val_clean = (predict(seen, predict_purified(purifier, xv)) == yv).float().mean().item()
        record = {"epoch": epoch, "run": out.name, **{k: v / len(adv) for k, v in sums.items()},
                  "val_images": VALIDATION_IMAGES, "val_n": len(xv), "val_pgd_purified_acc": val_adv, "val_clean_purified_acc": val_clean,
                  "lr": opt_g.param_groups[0]["lr"], "minutes": (time.time() - started) / 60}
        history.append(record)
        log(f"{ds.name}: epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
        torch.save({"generator": g.state_dict(), "discriminator": d.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "epoch": epoch, "history": history, "options": options,
                    **({"generator_average": average.net.state_dict(), "average_updates": average.updates}
                       if average else {})}, checkpoint)
        if record is best_epoch(history, out.name):
            torch.save({"generator": shipped.state_dict(), "config": config, "channels": ds.channels, "epoch": epoch,
                        "selection": SELECTION, "history": history, "pairs": len(adv), "loss_weights": weights,
                        "schedule": schedule},
                       out / "generator.pt")
        write_json(out / "history.json", history)
        if args.minutes and (time.time() - started) / 60 >= args.minutes:
            log("time budget reached")
            break


@torch.no_grad()
def predict_purified(purifier: Purifier, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([purifier(x[i:i + 250]) for i in range(0, len(x), 250)])


if __name__ == "__main__":
    main()
