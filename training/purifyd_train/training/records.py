"""The records a training run leaves in its run folder, gathered for results.json and the card."""
from __future__ import annotations

import json
from pathlib import Path

from ..runs import run_dir
from .gan import run_folder


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def training_records(dataset: str) -> dict:
    """The run folder's records the card cites: classifier metrics, pairs, both GANs' histories, the export check.

    The evaluation keeps them in results.json, so `--card-only` rewrites a card once the run folder is gone.
    """
    root = run_dir(dataset)
    return {"metrics": _read(root / "classifiers" / "metrics.json"), "pairs": _read(root / "pairs.json"),
            "history": _read(run_folder(dataset) / "history.json"),
            "ablation_history": _read(run_folder(dataset, ablation=True) / "history.json"),
            "export": _read(root / "export.json")}
