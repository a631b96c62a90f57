"""The evaluation's end-to-end mode: an adversarial test set as PNG files, through the `purify` CLI.

Writes PGD examples (against the bundle's seen classifier, the oblivious setting) as 8-bit PNGs,
runs `purify --bundle models/<dataset>` over them, reads the purified top-1 from each JSON report,
and compares that accuracy with PyTorch running the bundle's own ONNX graphs (purifier, then
classifier; `OnnxGraph`) on the very same PNG pixels, the purified image rounded to 8 bits between
them as purify rounds it before classifying. The two must agree within 0.3 percentage points.
Only the bundle is read, so the check runs on a fresh clone, without a training run.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import torch
from PIL import Image

from ..attacks.protocol import evaluation_attacks, run_attack
from ..data.datasets import spec, test_subset
from ..models.onnx_graph import bundle_networks
from ..models.ops import batched, predict
from ..runs import REPO_ROOT, log, write_json

TOLERANCE_PP = 0.3


def to_bytes(x: torch.Tensor) -> torch.Tensor:
    """8-bit pixels as purify makes them: clamped to [0, 1], scaled to 0–255 and rounded half up."""
    return torch.floor(x.clamp(0, 1) * 255 + 0.5).byte()


def as_8bit(x: torch.Tensor) -> torch.Tensor:
    """An image as purify keeps it: its 8-bit pixels (`to_bytes`) back in [0, 1]."""
    return to_bytes(x).float() / 255


def write_pngs(x: torch.Tensor, y: torch.Tensor, folder: Path) -> None:
    """Saves each image as an 8-bit PNG (`to_bytes`) named <index>_<label>.png."""
    for i, (img, label) in enumerate(zip(to_bytes(x).permute(0, 2, 3, 1).numpy(), y.tolist())):
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{i:05d}_{label}.png")


def read_reports(folder: Path) -> dict[str, dict]:
    return {r["input"]["name"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


def run(dataset: str, purify: Path, n: int, seed: int, bundle: Path | None = None) -> dict:
    ds = spec(dataset)
    bundle = bundle or REPO_ROOT / "models" / ds.name
    seen, purifier = bundle_networks(bundle)
    x, y = test_subset(ds, n, seed=seed)
    pgd = next(a for a in evaluation_attacks(ds.name, ds.eps) if a.name == "PGD")
    adv = run_attack(pgd.build(seen, seed), x, y)
    with tempfile.TemporaryDirectory(prefix="purify-check-") as tmp:
        inbox, outbox = Path(tmp) / "in", Path(tmp) / "out"
        inbox.mkdir()
        write_pngs(adv, y, inbox)
        log(f"{ds.name}: running {purify} over {n} PGD PNGs")
        subprocess.run([str(purify), "--bundle", str(bundle), str(inbox), "--out", str(outbox), "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        reports = read_reports(outbox)
    names = [f"{i:05d}_{label}.png" for i, label in enumerate(y.tolist())]
    missing = [name for name in names if name not in reports or reports[name].get("status") != "purified"]
    if missing:
        raise SystemExit(f"purify produced no successful report for {len(missing)} images, e.g. {missing[:3]}")
    purify_pred = torch.tensor([reports[name]["classification"]["purified"][0]["index"] for name in names])
    torch_pred = predict(seen, as_8bit(batched(purifier, as_8bit(adv), 250)))
    acc_purify = (purify_pred == y).float().mean().item()
    acc_torch = (torch_pred == y).float().mean().item()
    result = {"dataset": ds.name, "n": n, "seed": seed, "attack": pgd.describe(),
              "accuracy_purify": acc_purify, "accuracy_pytorch": acc_torch,
              "difference_pp": 100 * (acc_purify - acc_torch),
              "prediction_agreement": (purify_pred == torch_pred).float().mean().item(),
              "tolerance_pp": TOLERANCE_PP, "within_tolerance": abs(acc_purify - acc_torch) * 100 <= TOLERANCE_PP}
    log(f"{ds.name}: purify {100 * acc_purify:.2f}% vs PyTorch {100 * acc_torch:.2f}% "
        f"({result['difference_pp']:+.2f} pp, per-image agreement {100 * result['prediction_agreement']:.2f}%)")
    return result


def main(dataset: str, purify: Path, n: int, seed: int, out: Path, bundle: Path | None = None) -> None:
    result = run(dataset, purify, n, seed, bundle)
    write_json(out / "through_purify.json", result)
    if not result["within_tolerance"]:
        raise SystemExit(f"purify and PyTorch differ by {result['difference_pp']:+.2f} pp (> {TOLERANCE_PP})")
