"""The scenarios, each a function from a ``Context`` to a ``ScenarioResult``."""
from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import threading
import time
from typing import Callable

from ..daemon import Daemon, Layout
from ..results import ScenarioResult


@dataclasses.dataclass
class Sizes:
    """How hard each scenario pushes; ``QUICK`` for a smoke run, ``FULL`` for the figures."""

    burst_files: int
    kill_rounds: int
    full_outbox_files: int
    full_outbox_size: str
    readonly_files: int
    control_requests: int


FULL = Sizes(burst_files=10_000, kill_rounds=20, full_outbox_files=2_000, full_outbox_size="2m",
             readonly_files=600, control_requests=10_000)
QUICK = Sizes(burst_files=600, kill_rounds=4, full_outbox_files=300, full_outbox_size="512k",
              readonly_files=120, control_requests=1_000)


@dataclasses.dataclass
class Context:
    purifyd: pathlib.Path
    bundle: pathlib.Path
    data: pathlib.Path
    work: pathlib.Path
    sizes: Sizes
    rng: random.Random
    threads: int

    def daemon(self, layout: Layout, **options) -> Daemon:
        return Daemon(self.purifyd, self.bundle, layout, threads=self.threads, **options)


Scenario = Callable[[Context], ScenarioResult]


def drop_in_background(staging: pathlib.Path, inbox: pathlib.Path, names: list[str], chunk: int = 200,
                       pause: float = 0.05) -> threading.Thread:
    """Renames the staged `names` into the inbox, `chunk` at a time with a short pause between
    chunks (a burst that lasts a few seconds rather than an instant)."""
    def drop() -> None:
        for start in range(0, len(names), chunk):
            for name in names[start:start + chunk]:
                os.rename(staging / name, inbox / name)
            time.sleep(pause)
    thread = threading.Thread(target=drop, daemon=True)
    thread.start()
    return thread


def count_reports(folder: pathlib.Path) -> int:
    return sum(1 for name in os.listdir(folder) if name.endswith(".json") and not name.startswith("."))


def wait_for_reports(daemon: Daemon, folders: list[pathlib.Path], count: int, timeout: float) -> int:
    """Waits until `folders` hold `count` reports (or the daemon dies, or `timeout`); the count."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and daemon.pid is not None:
        seen = sum(count_reports(folder) for folder in folders)
        if seen >= count:
            return seen
        time.sleep(0.25)
    return seen


def metric(daemon: Daemon, name: str) -> float:
    """One inbox's value of a metric from `metrics`."""
    text = daemon.request("metrics")["text"]
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)

