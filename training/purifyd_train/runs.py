"""The run folder and its records, and what every command sets up: options, seeds, threads, device, logging."""
from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from .data.datasets import DEFAULT_DATA_ROOT

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS_ROOT = REPO_ROOT / "training" / "runs"


def command_parser(description: str | None, seed: int) -> argparse.ArgumentParser:
    """A parser with the options every training command takes: --dataset, --data, --seed, --threads, --device."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", default=DEFAULT_DATA_ROOT)
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="torch device for data, networks and attacks (e.g. cuda)")
    return p


def setup(seed: int, threads: int | None = None, device: str = "cpu") -> None:
    """Seeds every generator, sets torch's intra-op threads (default: all cores) and makes `device`
    the default for new tensors and networks; data and saved weights are loaded onto it too."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    if torch.device(device).type != "cpu":  # the default-device mode costs a little on every op: only when needed
        torch.set_default_device(device)


def load(path: Path) -> object:
    """torch.load onto the device `setup` chose, wherever the file was written."""
    return torch.load(path, map_location=torch.get_default_device())


def autocast(enabled: bool) -> torch.autocast:
    """bfloat16 autocast on the default device when enabled (weights and optimizer state stay float32)."""
    device = torch.get_default_device().type
    if enabled and device == "cpu":
        _warn_if_bf16_is_emulated()
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)


@functools.cache
def _warn_if_bf16_is_emulated() -> None:
    """Asks oneDNN once (autocast runs every step) whether this CPU has native bfloat16."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log("warning: this CPU has no native bfloat16 (no AVX-512 BF16 or AMX): --bf16 is emulated here and "
            "several times slower than float32; leave it out")


def run_dir(dataset: str) -> Path:
    """training/runs/<dataset>, or under $PURIFYD_RUNS when set (the tests use a temporary one)."""
    path = Path(os.environ.get("PURIFYD_RUNS", RUNS_ROOT)) / dataset
    path.mkdir(parents=True, exist_ok=True)
    return path


def progress_options() -> dict:
    """tqdm options: a bar redrawn often on a terminal, a line every 30 s in a log file."""
    import sys
    return {"mininterval": 0.5 if sys.stderr.isatty() else 30.0, "dynamic_ncols": True}


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def write_json(path: Path, value: object) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def update_json(path: Path, key: str, value: object) -> None:
    """Sets one key of the JSON object in path; a lock on its folder keeps parallel commands' updates."""
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = value
        write_json(path, data)
    finally:
        os.close(folder)
