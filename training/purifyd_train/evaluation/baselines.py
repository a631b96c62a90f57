"""Classic input-transformation defenses, evaluated under the same protocol as the purifier."""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..attacks.protocol import AttackConfig, run_attack
from ..models.ops import predict


def jpeg(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """JPEG re-encoding (Pillow, 4:2:0 for colour) at the given quality."""
    out = []
    for img in (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy():
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        out.append(dec.reshape(img.shape))
    return torch.from_numpy(np.stack(out)).to(x.device).permute(0, 3, 1, 2).float() / 255


def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Feature squeezing (Xu et al. 2018): quantise each channel to 2**bits levels."""
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def median3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter, reflect-padded (feature squeezing's spatial smoothing)."""
    n, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3)
    return patches.view(n, c, 9, h * w).median(dim=2).values.view(n, c, h, w)


def total_variation(x: torch.Tensor, weight: float, steps: int = 100) -> torch.Tensor:
    """TV minimisation (Guo et al. 2018, without pixel dropout): argmin_z ½‖z−x‖² + weight·TV(z).

    Solved by 100 Adam steps on an isotropic, smoothed TV; the result is clamped to [0,1].
    """
    z = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.01)
    with torch.enable_grad():
        for _ in range(steps):
            dh = z[..., 1:, :-1] - z[..., :-1, :-1]
            dw = z[..., :-1, 1:] - z[..., :-1, :-1]
            tv = torch.sqrt(dh ** 2 + dw ** 2 + 1e-6).sum(dim=(1, 2, 3))
            loss = (0.5 * ((z - x) ** 2).sum(dim=(1, 2, 3)) + weight * tv).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return z.detach().clamp_(0, 1)


# Candidate settings for the baselines with a strength to choose.
BIT_DEPTHS = (1, 2, 3, 4, 5, 6)
TV_WEIGHTS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def tune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> dict:
    """Chooses the bit depth and the TV weight on validation images (never the test images).

    Each candidate is scored by the mean of its clean accuracy and its accuracy under PGD-20 at
    ε against the classifier alone (the oblivious setting of the evaluation), so a baseline is
    neither too weak to remove the perturbation nor so strong that it destroys clean images.
    """
    steps = 20
    adv = run_attack(AttackConfig("PGD", dict(eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True))
                     .build(model, seed), x, y)

    def score(fn) -> dict:
        clean = (predict(model, fn(x)) == y).float().mean().item()
        attacked = (predict(model, fn(adv)) == y).float().mean().item()
        return {"clean": clean, "pgd": attacked, "score": (clean + attacked) / 2}

    bits = {b: score(lambda t: bit_depth(t, b)) for b in BIT_DEPTHS}
    tv = {w: score(lambda t: total_variation(t, w)) for w in TV_WEIGHTS}
    best = lambda table: max(table, key=lambda k: table[k]["score"])
    return {"bits": best(bits), "tv_weight": best(tv), "n": len(x), "attack": f"PGD-{steps} at eps {eps:.4f}",
            "bitdepth_scores": {str(k): v for k, v in bits.items()}, "tv_scores": {str(k): v for k, v in tv.items()}}


def baselines(tuned: dict) -> dict:
    """name -> (callable, parameters), with the bit depth and TV weight that `tune` chose."""
    bits, tv_weight = tuned["bits"], tuned["tv_weight"]
    return {
        "jpeg75": (lambda x: jpeg(x, 75), {"quality": 75}),
        f"bitdepth{bits}": (lambda x: bit_depth(x, bits), {"bits": bits}),
        "median3": (median3, {"window": 3}),
        "tv": (lambda x: total_variation(x, tv_weight), {"weight": tv_weight, "steps": 100, "optimizer": "Adam lr 0.01"}),
    }
