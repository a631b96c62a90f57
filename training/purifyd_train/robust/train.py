"""End-to-end adversarial fine-tuning of a bundle's purifier: the attacks see purifier + classifier as one
network, the classifier stays frozen (a user's classifier is never retrained), and only the purifier learns.

    python -m purifyd_train robust-train --dataset mnist [--iterations N] [--objective trades|pgd]

The run lives in training/runs/<dataset>-robust: `checkpoint.pt` (resumed on the next call, so a run can be
stopped and continued later), `best.pt` (the highest PGD accuracy on held-out training images),
and `progress.jsonl` (one line per validation). Test images are never used here.
"""
from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from ..runs import REPO_ROOT, command_parser, log, run_dir, setup
from ..data.datasets import DEFAULT_DATA_ROOT, load_split, shuffled, spec
from ..models.networks import Purifier
from ..models.ops import channels_last
from ..bundles.onnx_classifier import _inert_torchvision, load_classifier


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a robust run learns; stored in its checkpoints and its card."""

    dataset: str
    source_bundle: str             # path of the bundle whose purifier is fine-tuned and whose classifier is frozen
    eps: float                     # the l-inf budget trained for
    objective: str = "trades"      # "trades": CE(clean) + beta·KL(clean || adv); "pgd": CE(adv) (Madry et al.)
    beta: float = 6.0
    attack_steps: int = 10
    step_size_fraction: float = 0.25   # PGD step as a fraction of eps
    ramp_fraction: float = 0.3     # eps grows linearly from 0 over this fraction of the iterations
    reconstruction_weight: float = 1.0  # L1 between purified and clean images, so outputs stay images
    iterations: int = 3000
    batch: int = 100
    learning_rate: float = 1e-4
    validation_images: int = 500
    validation_every: int = 100
    seed: int = 0

    def eps_at(self, iteration: int) -> float:
        ramp = max(1, int(self.ramp_fraction * self.iterations))
        return self.eps * min(1.0, (iteration + 1) / ramp)

    def learning_rate_at(self, iteration: int) -> float:
        return self.learning_rate * 0.5 * (1 + math.cos(math.pi * min(iteration, self.iterations) / self.iterations))


@dataclass
class Progress:
    """One validation: clean and PGD-20 accuracy of purifier + classifier on held-out training images."""

    iteration: int
    eps: float
    clean: float
    robust: float
    loss: float
    seconds: float


@dataclass
class Models:
    purifier: Purifier          # trainable
    classifier: nn.Module       # frozen, outputs logits
    multiple: int

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purifier(x))


def bundle_settings(bundle: Path) -> dict:
    with open(bundle / "bundle.toml", "rb") as f:
        return tomllib.load(f)


def bundle_purifier(bundle: Path) -> Purifier:
    """The bundle's purifier as a torch module (onnx2torch of its ONNX file) on the default device, padding
    to the bundle's size multiple."""
    settings = bundle_settings(bundle)["purifier"]
    _inert_torchvision()
    from onnx2torch import convert
    generator = convert(onnx.load(str(bundle / settings["file"])))
    # onnx2torch builds on the CPU; the run's device is the one `setup` made the default.
    return Purifier(generator, int(settings.get("size_multiple", 1))).to(torch.get_default_device())


def onnx_classifier(path: Path, sample: torch.Tensor, bundle: Path | None = None) -> nn.Module:
    """A classifier file as a frozen torch module on the default device, checked against ONNX Runtime on
    `sample`; a bundle's own classifier gets the normalisation its bundle.toml declares."""
    settings = bundle_settings(bundle)["classifier"] if bundle else {}
    module = load_classifier(path, sample.cpu(), settings.get("mean"), settings.get("std"))[1]
    return module.to(torch.get_default_device())


def bundle_classifier(bundle: Path, sample: torch.Tensor) -> nn.Module:
    return onnx_classifier(bundle / bundle_settings(bundle)["classifier"]["file"], sample, bundle)


def load_models(bundle: Path, sample: torch.Tensor) -> Models:
    """The bundle's purifier, trainable, and its classifier, frozen and checked against ONNX Runtime on
    `sample`."""
    purifier = channels_last(bundle_purifier(bundle))
    for p in purifier.parameters():
        p.requires_grad_(True)
    return Models(purifier, channels_last(bundle_classifier(bundle, sample)), purifier.multiple)


def pgd(models: Models, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float,
        clean_probabilities: torch.Tensor | None = None) -> torch.Tensor:
    """l-inf PGD through purifier + classifier with the purifier in eval mode: maximises the cross-entropy, or,
    given the clean output's probabilities, the KL divergence from them (TRADES' inner maximisation)."""
    was_training = models.purifier.training
    models.purifier.eval()
    if clean_probabilities is None:
        adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    else:
        adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        logits = models.logits(adv)
        if clean_probabilities is None:
            loss = F.cross_entropy(logits, y)
        else:
            loss = F.kl_div(F.log_softmax(logits, 1), clean_probabilities, reduction="batchmean")
        grad, = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    models.purifier.train(was_training)
    return adv.detach()


def training_loss(models: Models, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    step = recipe.step_size_fraction * eps
    if recipe.objective == "pgd":
        adv = pgd(models, x, y, eps, recipe.attack_steps, step)
        purified_adv = models.purifier(adv)
        loss = F.cross_entropy(models.classifier(purified_adv), y)
        purified_clean = models.purifier(x)
    elif recipe.objective == "trades":
        with torch.no_grad():
            models.purifier.eval()
            clean_probabilities = F.softmax(models.logits(x), 1)
            models.purifier.train()
        adv = pgd(models, x, y, eps, recipe.attack_steps, step, clean_probabilities)
        purified_clean = models.purifier(x)
        purified_adv = models.purifier(adv)
        clean_logits = models.classifier(purified_clean)
        loss = F.cross_entropy(clean_logits, y) + recipe.beta * F.kl_div(
            F.log_softmax(models.classifier(purified_adv), 1), F.softmax(clean_logits, 1), reduction="batchmean")
    else:
        raise SystemExit(f"unknown objective {recipe.objective!r}; choose trades or pgd")
    if recipe.reconstruction_weight:
        loss = loss + recipe.reconstruction_weight * (purified_clean - x).abs().mean()
    return loss


def validate(models: Models, recipe: Recipe, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Clean and PGD-20 (step eps/8, random start) accuracy at the full budget."""
    models.purifier.eval()
    clean, robust = 0, 0
    for i in range(0, len(x), 250):
        xb, yb = x[i:i + 250], y[i:i + 250]
        with torch.no_grad():
            clean += int((models.logits(xb).argmax(1) == yb).sum())
        adv = pgd(models, xb, yb, recipe.eps, 20, recipe.eps / 8)
        with torch.no_grad():
            robust += int((models.logits(adv).argmax(1) == yb).sum())
    models.purifier.train()
    return clean / len(x), robust / len(x)


def save(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(value, tmp)
    tmp.replace(path)


def train(recipe: Recipe, folder: Path, data_root: Path = DEFAULT_DATA_ROOT, deadline: float | None = None,
          until: int | None = None) -> list[Progress]:
    """Runs (or resumes) a recipe until its last iteration, iteration `until`, or the deadline (time.time()),
    leaving a checkpoint to resume from; returns the validations."""
    ds = spec(recipe.dataset)
    x, y = shuffled(*load_split(ds, "train", data_root), recipe.seed)
    x_val, y_val = x[-recipe.validation_images:], y[-recipe.validation_images:]
    x, y = x[:-recipe.validation_images], y[:-recipe.validation_images]
    models = load_models(REPO_ROOT / recipe.source_bundle, x_val[:64])
    optimizer = torch.optim.Adam(models.purifier.parameters(), lr=recipe.learning_rate, betas=(0.5, 0.999))
    checkpoint_path, best_path, progress_path = folder / "checkpoint.pt", folder / "best.pt", folder / "progress.jsonl"
    iteration, best, history = 0, -1.0, []
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        if state["recipe"] != asdict(recipe):
            raise SystemExit(f"{checkpoint_path} was made by another recipe; move it away to start again\n"
                             f"  saved: {state['recipe']}\n  now:   {asdict(recipe)}")
        models.purifier.load_state_dict(state["purifier"])
        optimizer.load_state_dict(state["optimizer"])
        iteration, best = state["iteration"], state["best"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed at iteration {iteration} of {recipe.iterations} (best validation PGD {best:.4f})")
    if progress_path.exists():
        # Validations after the checkpoint (a run killed between the two) are repeated after resuming.
        history = [p for p in (Progress(**json.loads(line)) for line in progress_path.read_text().splitlines()
                               if line.strip()) if p.iteration <= iteration]
        progress_path.write_text("".join(json.dumps(asdict(p)) + "\n" for p in history))
    models.purifier.train()
    per_epoch = len(x) // recipe.batch

    def epoch_order(epoch: int) -> np.ndarray:
        return np.random.default_rng(recipe.seed * 1000 + epoch).permutation(len(x))

    order = epoch_order(iteration // per_epoch)
    started, losses = time.time(), []
    stop = min(recipe.iterations, until or recipe.iterations)
    saved = iteration

    def checkpoint() -> None:
        save(checkpoint_path, {"recipe": asdict(recipe), "purifier": models.purifier.state_dict(),
                               "optimizer": optimizer.state_dict(), "iteration": iteration, "best": best,
                               "torch_rng": torch.get_rng_state()})

    while iteration < stop and (deadline is None or time.time() < deadline):
        position = iteration % per_epoch
        if position == 0:
            order = epoch_order(iteration // per_epoch)
        index = torch.from_numpy(order[position * recipe.batch:(position + 1) * recipe.batch])
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate_at(iteration)
        loss = training_loss(models, recipe, x[index], y[index], recipe.eps_at(iteration))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        iteration += 1
        if iteration % recipe.validation_every == 0 or iteration == recipe.iterations:
            clean, robust = validate(models, recipe, x_val, y_val)
            entry = Progress(iteration, recipe.eps_at(iteration - 1), clean, robust, float(np.mean(losses)),
                             time.time() - started)
            history.append(entry)
            with progress_path.open("a") as f:
                f.write(json.dumps(asdict(entry)) + "\n")
            log(f"iteration {iteration}/{recipe.iterations} eps {entry.eps:.3f} loss {entry.loss:.4f} "
                f"validation clean {clean:.4f} PGD-20 {robust:.4f} [{entry.seconds:.0f}s]")
            # Only at the full budget: during the ramp a low eps flatters the robust accuracy.
            if entry.eps >= recipe.eps and robust > best:
                best = robust
                save(best_path, {"recipe": asdict(recipe), "purifier": models.purifier.state_dict(),
                                 "iteration": iteration, "validation": asdict(entry)})
            checkpoint()
            saved, started, losses = iteration, time.time(), []
    if iteration != saved:
        checkpoint()
    if iteration < recipe.iterations:
        log(f"stopped at iteration {iteration} of {recipe.iterations}; run again to resume")
    return history


RECIPES = {
    "mnist": dict(source_bundle="models/mnist", eps=0.3),
    "fashion-mnist": dict(source_bundle="models/fashion-mnist", eps=0.1),
    "cifar10": dict(source_bundle="models/cifar10", eps=8 / 255, beta=6.0, step_size_fraction=0.25),
}


def recipe_for(dataset: str, **overrides) -> Recipe:
    if dataset not in RECIPES:
        raise SystemExit(f"no robust recipe for {dataset!r}; choose one of {', '.join(RECIPES)}")
    return Recipe(dataset=dataset, **{**RECIPES[dataset], **{k: v for k, v in overrides.items() if v is not None}})


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, seed=0)
    p.add_argument("--objective", choices=("trades", "pgd"))
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--attack-steps", type=int)
    p.add_argument("--validation-images", type=int)
    p.add_argument("--validation-every", type=int)
    p.add_argument("--hours", type=float, help="stop (with a checkpoint) after this long; run again to resume")
    p.add_argument("--until", type=int, help="stop (with a checkpoint) at this iteration; run again to resume")
    p.add_argument("--run", help="run folder name under training/runs (default <dataset>-robust)")
    args = p.parse_args(argv)
    setup(args.seed, args.threads, args.device)
    recipe = recipe_for(args.dataset, objective=args.objective, iterations=args.iterations, batch=args.batch,
                        attack_steps=args.attack_steps, validation_images=args.validation_images,
                        validation_every=args.validation_every, seed=args.seed)
    folder = run_dir(args.run or f"{args.dataset}-robust")
    log(f"robust fine-tuning {json.dumps(asdict(recipe))} in {folder}")
    deadline = time.time() + args.hours * 3600 if args.hours else None
    train(recipe, folder, Path(args.data), deadline, args.until)
