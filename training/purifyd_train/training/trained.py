"""The networks `classifiers` trained, loaded back from the run folder."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.datasets import spec
from ..models.networks import classifier_zoo, source_networks
from ..models.ops import freeze
from ..runs import load, run_dir


def trained_weights_path(dataset: str, name: str) -> Path:
    """Where `classifiers` saves the weights of network `name`."""
    return run_dir(dataset) / "classifiers" / f"{name}.pt"


def trained_weights(dataset: str, name: str, kind: str) -> dict:
    """The weights `classifiers` saved for network `name`; SystemExit naming the command that trains it
    when they are missing (`kind` says what the network is, for that message)."""
    path = trained_weights_path(dataset, name)
    if not path.exists():
        raise SystemExit(f"{dataset}: the {kind} {name} is not trained ({path} is missing): "
                         f"train it with `classifiers --dataset {dataset} --only {name}`")
    return load(path)


def load_classifier(dataset: str, name: str | None = None) -> tuple[str, torch.nn.Module]:
    """A trained classifier from the run directory (the seen one when name is None)."""
    ds = spec(dataset)
    zoo = classifier_zoo(ds.name, ds.channels, ds.size)
    name = name or next(iter(zoo))
    model = zoo[name]
    model.load_state_dict(trained_weights(ds.name, name, "classifier"))
    return name, freeze(model)


def load_source_network(dataset: str, name: str) -> torch.nn.Module:
    """A trained source network (`features`, `fc` or `res`, see `source_networks`) from the run directory."""
    ds = spec(dataset)
    network = source_networks(ds.channels, ds.size)[name]
    network.load_state_dict(trained_weights(ds.name, name, "source network"))
    return freeze(network)
