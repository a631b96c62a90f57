"""Writes a robust run's best purifier as a bundle variant beside its source bundle.

    python -m purifyd_train robust-export --dataset mnist [--out models/mnist-robust]

The bundle keeps its source's classifier byte for byte (it was frozen throughout) and its input domain;
its purifier is the run's `best.pt`, exported like every purifier (dynamic batch, height and width) and
checked against ONNX Runtime. `recipe.json` records the recipe and the validation the checkpoint won.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from ..runs import REPO_ROOT, log, run_dir, setup, write_json
from ..data.datasets import DEFAULT_DATA_ROOT, load_split, shuffled, spec
from ..bundles.export import TOLERANCE, check_purifier
from ..bundles.manifest import BundleManifest
from .train import Recipe, bundle_settings, load_models

VERSION = "1.0.0"


def manifest_for(source: dict, dataset: str, recipe: Recipe, purifier_sha: str, classifier_sha: str) -> BundleManifest:
    """The source bundle's manifest with the new purifier, the variant's name, and the adaptive threat model."""
    data_input, purifier, classifier = source["input"], source["purifier"], source["classifier"]
    return BundleManifest(
        name=f"{source['name']}-robust", version=VERSION,
        description=f"{source.get('description', source['name'])}, purifier trained against end-to-end attacks",
        channels=data_input["channels"], trained_size=tuple(data_input["trained_size"]),
        min_size=tuple(data_input.get("min_size", data_input["trained_size"])),
        max_size=tuple(data_input.get("max_size", data_input["trained_size"])),
        size_multiple=purifier["size_multiple"], purifier_sha256=purifier_sha, classifier_sha256=classifier_sha,
        architecture=classifier.get("architecture", ""), input_size=tuple(classifier["input_size"]),
        output=classifier["output"], labels=tuple(classifier["labels"]),
        attacks=(f"{recipe.objective.upper()} PGD-{recipe.attack_steps} through purifier and classifier",),
        epsilon_linf=recipe.eps, mean=tuple(classifier["mean"]) if "mean" in classifier else None,
        std=tuple(classifier["std"]) if "std" in classifier else None, resize=classifier.get("resize"),
        threat_model="adaptive", dataset=dataset,
        writer="`python -m purifyd_train robust-export` (training/purifyd_train/robust/export.py)")


def export(run: Path, out: Path, data_root: Path = DEFAULT_DATA_ROOT) -> dict:
    """Writes the bundle; returns what recipe.json records."""
    best = torch.load(run / "best.pt", weights_only=False)
    recipe = Recipe(**best["recipe"])
    source_dir = REPO_ROOT / recipe.source_bundle
    source = bundle_settings(source_dir)
    ds = spec(recipe.dataset)
    x, _ = shuffled(*load_split(ds, "train", data_root), recipe.seed)
    models = load_models(source_dir, x[-64:])
    models.purifier.load_state_dict(best["purifier"])
    generator = models.purifier.generator.eval()
    generator.multiple = models.multiple
    purifier_onnx, error = check_purifier(generator, source["input"]["channels"], tuple(source["input"]["trained_size"]))
    if error > TOLERANCE:
        raise SystemExit(f"ONNX Runtime disagrees with PyTorch by {error:.2e} (tolerance {TOLERANCE})")
    classifier_onnx = (source_dir / source["classifier"]["file"]).read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    (out / "purifier.onnx").write_bytes(purifier_onnx)
    (out / "classifier.onnx").write_bytes(classifier_onnx)
    manifest = manifest_for(source, ds.name, recipe, hashlib.sha256(purifier_onnx).hexdigest(),
                            hashlib.sha256(classifier_onnx).hexdigest())
    (out / "bundle.toml").write_text(manifest.to_toml())
    record = {"recipe": best["recipe"], "iteration": best["iteration"], "validation": best["validation"],
              "onnx_max_abs_error": error, "source_bundle": recipe.source_bundle}
    write_json(out / "recipe.json", record)
    log(f"wrote {out} from iteration {best['iteration']} (validation {json.dumps(best['validation'])})")
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--run", help="run folder name under training/runs (default <dataset>-robust)")
    p.add_argument("--out", type=Path, help="default models/<dataset>-robust")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT)
    args = p.parse_args(argv)
    setup(0)
    export(run_dir(args.run or f"{args.dataset}-robust"), args.out or REPO_ROOT / "models" / f"{spec(args.dataset).name}-robust",
           args.data)
