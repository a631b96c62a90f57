"""Attack configurations (torchattacks), one place for every parameter the model cards report."""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch
import torchattacks
from torch import nn
from torchattacks.attack import Attack

from .deepfool import BoxDeepFool

# The seven attacks of the paper's evaluation, then the black-box check.
PAPER_ATTACKS = ("FGSM", "BIM", "PGD", "CW", "MIFGSM", "AutoAttack", "DeepFool")
ALL_ATTACKS = PAPER_ATTACKS + ("Square",)
# Unbounded minimum-norm attacks: reported with success rate and median L2, not an l-inf budget.
L2_ATTACKS = ("CW", "DeepFool")


@dataclass(frozen=True)
class AttackConfig:
    name: str
    params: dict = field(default_factory=dict)

    def build(self, model: nn.Module, seed: int = 0, n_classes: int = 10) -> Attack:
        p = dict(self.params)
        if self.name == "AutoAttack":
            return torchattacks.AutoAttack(model, n_classes=n_classes, seed=seed, **p)
        if self.name == "Square":
            return torchattacks.Square(model, seed=seed, **p)
        if self.name == "DeepFool":
            return BoxDeepFool(model, **p)
        return getattr(torchattacks, self.name)(model, **p)

    def describe(self) -> dict:
        return asdict(self)


def cw_params(dataset: str) -> dict:
    # c well above torchattacks' default of 1: with c=1 C&W leaves most MNIST digits correctly classified.
    return {"mnist": dict(c=10.0, kappa=0.0, steps=100, lr=0.1),
            "fashion-mnist": dict(c=5.0, kappa=0.0, steps=100, lr=0.05)}.get(dataset, dict(c=1.0, kappa=0.0, steps=100, lr=0.01))


def folder_cw_params(channels: int) -> dict:
    """C&W for a bundle made from a folder: grey images get Fashion-MNIST's stronger setting (saturated
    backgrounds need a larger c), colour images CIFAR-10's. The card reports its success rate."""
    return cw_params("fashion-mnist" if channels == 1 else "cifar10")


def evaluation_attacks(dataset: str, eps: float, quick: bool = False, cw: dict | None = None) -> list[AttackConfig]:
    """The evaluation protocol's attacks at budget eps (l-inf); `cw` overrides the dataset's C&W parameters."""
    steps = 10 if quick else 40
    return [
        AttackConfig("FGSM", dict(eps=eps)),
        AttackConfig("BIM", dict(eps=eps, alpha=eps / 8, steps=steps // 2)),
        AttackConfig("PGD", dict(eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)),
        AttackConfig("CW", cw or cw_params(dataset)),
        AttackConfig("MIFGSM", dict(eps=eps, alpha=eps / 8, steps=steps // 2, decay=1.0)),
        AttackConfig("AutoAttack", dict(norm="Linf", eps=eps, version="standard")),
        AttackConfig("DeepFool", dict(steps=50, overshoot=0.02)),
        AttackConfig("Square", dict(norm="Linf", eps=eps, n_queries=500 if quick else 2000, n_restarts=1, p_init=0.8)),
    ]


def training_attacks(dataset: str, eps: float, cw: dict | None = None) -> list[AttackConfig]:
    """FGSM + PGD + C&W, the paper's training mix; FGSM and PGD at three budgets up to eps (`cw` overrides the
    dataset's C&W parameters)."""
    cw = dict(cw or cw_params(dataset), steps=50)
    out = []
    for frac in (0.5, 0.75, 1.0):
        out.append(AttackConfig("FGSM", dict(eps=eps * frac)))
        out.append(AttackConfig("PGD", dict(eps=eps * frac, alpha=eps * frac / 4, steps=10, random_start=True)))
    out.append(AttackConfig("CW", cw))
    return out


def run_attack(attack: Attack, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Runs an attack in batches; returns adversarial images clamped to [0,1].

    torchattacks places its own tensors explicitly and keeps some bookkeeping on the CPU, so it runs
    with the CPU as the default device whatever `setup` chose (its images follow the model's device).
    """
    out = []
    with torch.device("cpu") if torch.get_default_device().type != "cpu" else contextlib.nullcontext():
        for i in range(0, len(x), batch):
            out.append(attack(x[i:i + batch], y[i:i + batch]).detach().clamp_(0, 1))
    return torch.cat(out)
