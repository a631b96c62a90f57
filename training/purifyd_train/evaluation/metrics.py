"""The evaluation's measures: accuracy with its Wilson interval, PSNR, SSIM and perturbation norms."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..intervals import wilson
from ..models.ops import gaussian_kernel


def acc_record(pred: torch.Tensor, y: torch.Tensor) -> dict:
    correct = int((pred == y).sum())
    lo, hi = wilson(correct, len(y))
    return {"acc": correct / len(y), "n": len(y), "ci95": [lo, hi]}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004): 11x11 Gaussian window, σ=1.5, per channel, valid region."""
    c = a.shape[1]
    g = gaussian_kernel(5, 1.5)
    window = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()
    conv = lambda t: F.conv2d(t, window, groups=c)
    mu_a, mu_b = conv(a), conv(b)
    var_a = conv(a * a) - mu_a ** 2
    var_b = conv(b * b) - mu_b ** 2
    cov = conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def perturbation_norms(adv: torch.Tensor, x: torch.Tensor) -> dict:
    d = (adv - x).flatten(1)
    return {"median_l2": float(d.norm(dim=1).median()), "max_linf": float(d.abs().max(dim=1).values.max())}
