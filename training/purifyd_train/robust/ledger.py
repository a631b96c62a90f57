"""The attack batches an evaluation has finished, kept on disk so that a stopped evaluation resumes where it
stopped, and a later run with one more classifier attacks only that one: a full AutoAttack on a robust purifier
takes hours of CPU time per classifier.

Each entry is one batch of one attack on one pipeline: which of its images the model still classifies
correctly, and the seconds the attack took. Every attack is seeded afresh for each batch, and which images
a cascade attacks follows from the entries before it, so a resumed evaluation ends with exactly the
figures an uninterrupted one would.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from ..attacks.protocol import run_attack
from ..models.ops import predict
from ..runs import log


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return predict(model, x) == y


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings_digest(settings: dict) -> str:
    """A short name for everything that decides an evaluation's figures (files by content, not by path)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class AttackLedger:
    """Finished attack batches of one evaluation; in memory only when `path` is None."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.entries: dict[str, tuple[torch.Tensor, float]] = {}
        self.seconds_used = 0.0  # attack seconds of every entry handed out, whichever run computed it
        if path is not None and path.exists():
            self.entries = torch.load(path)
            log(f"resuming: {len(self.entries)} attack batches already done ({path})")

    def still_correct(self, key: str, model: nn.Module, attack, x: torch.Tensor, y: torch.Tensor, seed: int,
                      batch: int = 250) -> tuple[torch.Tensor, float]:
        """Which images `model` classifies correctly after `attack`, and the attack's seconds, batch by batch;
        each adversarial batch is checked against the attack's eps ball before it counts."""
        masks, seconds = [torch.zeros(0, dtype=torch.bool)], 0.0
        for start in range(0, len(x), batch):
            entry_key = f"{key} #{start}"
            entry = self.entries.get(entry_key)
            if entry is None:
                xb, yb = x[start:start + batch], y[start:start + batch]
                started = time.time()
                torch.manual_seed(seed)
                adv = run_attack(attack, xb, yb, batch)
                excess = float((adv - xb).abs().max()) - getattr(attack, "eps", float("inf"))
                if excess > 1e-5:
                    raise RuntimeError(f"{key} left the eps ball by {excess:.2e}")
                entry = (correct(model, adv, yb).cpu(), time.time() - started)
                self.entries[entry_key] = entry
                self.save()
                log(f"  {key}: images {start}-{start + len(xb)} of {len(x)}: {int(entry[0].sum())} still correct "
                    f"({entry[1]:.0f}s)")
            masks.append(entry[0])
            seconds += entry[1]
        self.seconds_used += seconds
        return torch.cat(masks), seconds

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save(self.entries, partial)
        os.replace(partial, self.path)
