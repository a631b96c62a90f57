"""What one evaluation runs on, as a typed record."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..attacks.protocol import AttackConfig


@dataclass
class EvaluationInputs:
    """Everything one evaluation runs on: test images, the purifier, the classifiers (the seen one first),
    the images the baselines are tuned on, the budget and the attacks."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    purifier: nn.Module
    generator: dict                      # generator_record of the purifier's generator
    classifiers: dict[str, nn.Module]    # the seen classifier first
    tuning: tuple[torch.Tensor, torch.Tensor]
    eps: float
    attacks: list[AttackConfig]
    sweep_attacks: Callable[[float], list[AttackConfig]]
    figures: Path
    seed: int
    quick: bool
    adaptive_n: int
    sweep_n: int
    n_classes: int = 10
    ablation: tuple[nn.Module, dict] | None = None   # the no-residual purifier and its generator_record
    progress: bool = False
