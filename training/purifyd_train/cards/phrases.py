"""The phrases and tables that both cards build from recorded values: the card of a dataset bundle and the card
of a bundle made from class folders."""
from __future__ import annotations

import json

from ..attacks.protocol import L2_ATTACKS, PAPER_ATTACKS
from ..models.networks import FAMILY_SOURCES
from ..training.gan import LEARNING_RATE, PAPER_LOSS_WEIGHTS, recorded_loss_weights
from .template import phrase


PAPER = ("Zhang, Yao, Sakurai, Saitoh, \"Leveraging Generalizability of Image-to-Image Translation for "
         "Enhanced Adversarial Defense\", arXiv 2504.01399")


def points(value: float, signed: bool = False) -> str:
    """Percentage points to one decimal, without the negative zero that a value just below zero rounds to."""
    return f"{round(value, 1) + 0.0:{'+' if signed else ''}.1f} pp"


def pct(record: dict) -> str:
    lo, hi = record["ci95"]
    return f"{100 * record['acc']:.1f} ({100 * lo:.1f}–{100 * hi:.1f})"


def verdict(excess: float, needed: float | None = None, ceiling: float | None = None) -> str:
    """"met" for a target exceeded by `excess` ≥ 0, else by how much it is missed, and whether the accuracy it
    `needed` lies above `ceiling`, the clean accuracy of the classifier it is measured on."""
    if excess >= 0:
        return "met"
    text = phrase("verdict", "missed", points=points(-100 * excess))
    if needed is not None and ceiling is not None and needed > ceiling:
        text += phrase("verdict", "out_of_reach", needed=f"{100 * needed:.1f}", ceiling=f"{100 * ceiling:.1f}")
    return text


def mean_interval(per_attack: dict, defense: str) -> tuple[float, float]:
    """A 95% interval for the mean accuracy over the 7 paper attacks: the means of their Wilson bounds.

    The attacks share their test images, so their outcomes are correlated; the standard deviation of
    a mean is at most the mean of the standard deviations, so this interval is never narrower than
    one from the per-image outcomes would be (in the normal approximation; exact for perfectly correlated
    attacks).
    """
    bounds = [per_attack[a][defense]["ci95"] for a in PAPER_ATTACKS]
    return (sum(lo for lo, _ in bounds) / len(bounds), sum(hi for _, hi in bounds) / len(bounds))


def loss_line(weights: dict, reason: str | None = None) -> str:
    """The generator's loss as trained, and how it departs from the paper's (`reason`: where the card's reader
    learns why; by default the bundle's attempts.md)."""
    weights = recorded_loss_weights(weights)
    text = phrase("loss", "start", gan="cGAN" if weights["gan"] == 1 else f"{weights['gan']:g}·cGAN",
                  l1=f"{weights['l1']:g}", perceptual=f"{weights['perceptual']:g}")
    for term in ("guidance", "feature_guidance"):
        if weights[term]:
            text += phrase("loss", term, weight=f"{weights[term]:g}")
    if weights["source_guidance"]:
        text += phrase("loss", "source_guidance", weight=f"{weights['source_guidance']:g}",
                       sources=" and ".join(f"`{name}`" for name in FAMILY_SOURCES))
    if weights == PAPER_LOSS_WEIGHTS:
        return text + phrase("loss", "paper")
    text += phrase("loss", "departs", reason=reason or phrase("loss", "reason"))
    if not weights["gan"]:
        text += phrase("loss", "no_gan")
    return text


def schedule_line(schedule: dict | None) -> str:
    """The optimiser and what the shipped weights are: the last step's, or an average of the steps."""
    schedule = schedule or {}
    text = phrase("schedule", "start", rate=f"{LEARNING_RATE:g}")
    if schedule.get("decay_from") is not None:
        text += phrase("schedule", "decay", percent=f"{100 * schedule['decay_from']:g}")
    if schedule.get("weight_average"):
        text += phrase("schedule", "average", decay=f"{schedule['weight_average']:g}")
    if schedule.get("flip"):
        text += phrase("schedule", "flip")
    if schedule.get("fresh_attacks"):
        text += phrase("schedule", "fresh")
    return text + "."


def noise_pairs(pairs: dict) -> str:
    """The pairs.json's random-sign noise pairs, independent and spatially correlated, as card text."""
    def budgets(entry: dict) -> str:
        return "{" + ", ".join(f"{e:.4g}" for e in entry["eps"]) + "}"
    text = phrase("pairs", "noise", budgets=budgets(pairs["noise"]), n=pairs["noise"]["n"]) if "noise" in pairs else ""
    correlated = pairs.get("correlated_noise", {"n": 0})
    if correlated["n"]:
        low, high = correlated["sigma"]
        text += phrase("pairs", "correlated_noise", low=f"{low:g}", high=f"{high:g}", budgets=budgets(correlated),
                       n=correlated["n"])
    return text


def pair_attack_parameters(pairs: dict) -> str:
    """The parameters of the attacks that made the training pairs, each kind once: its ε is in each pair's label,
    and PGD's step is given as a share of it."""
    kinds: dict[str, str] = {}
    for label, record in pairs.get("attacks", {}).items():
        params = dict(record.get("params", {}))
        eps = params.pop("eps", None)
        if eps and "alpha" in params:
            params["alpha"] = f"ε/{eps / params['alpha']:.3g}"
        kinds.setdefault(label.split("(")[0].split(" ")[0], f"`{json.dumps(params, ensure_ascii=False)}`" if params else "ε only")
    if not kinds:
        return ""
    return phrase("pairs", "attack_parameters", seed=f", seed {pairs['seed']}" if "seed" in pairs else "",
                  kinds="; ".join(f"{kind} {params}" for kind, params in kinds.items()))


GUIDANCE_COLUMNS = {"guide": "guidance", "fguide": "feature guidance", "sguide": "source guidance"}
"""The guidance terms' history keys and column names; source guidance gets a column only where a run trained with it."""


def history_table(history: list[dict]) -> list[str]:
    """The GAN training history as a Markdown table, one row per epoch of each run."""
    keys = [k for k in GUIDANCE_COLUMNS if k != "sguide" or any(h.get(k) for h in history)]
    rows = ["| run | epoch | D loss | cGAN | L1 | perceptual | " + " | ".join(GUIDANCE_COLUMNS[k] for k in keys)
            + " | val PGD purified acc | val clean purified acc |", "|---" * (8 + len(keys)) + "|"]
    return rows + [f"| {h.get('run', 'gan')} | {h['epoch']} | {h['d']:.3f} | {h['gan']:.3f} | {h['l1']:.4f} | {h['perc']:.4f} | "
                   + " | ".join(f"{h[k]:.4f}" if k in h else "–" for k in keys)
                   + f" | {100 * h['val_pgd_purified_acc']:.1f} | {100 * h['val_clean_purified_acc']:.1f} |" for h in history]


NEAR_ZERO = 0.05  # the most undefended accuracy an attack may leave the seen classifier before the card says why
WEAK_BY_DESIGN = ("FGSM", "Square")  # attacks that may stay above it: phrases.toml says why


def weak_attacks(per_attack: dict) -> list[str]:
    """A paragraph on the attacks that leave the undefended seen classifier above NEAR_ZERO, and why (an attack
    weak by design, or a configuration to fix)."""
    weak = {a: r["none"]["acc"] for a, r in per_attack.items() if a not in L2_ATTACKS and r["none"]["acc"] > NEAR_ZERO}
    if not weak:
        return []
    return [phrase("weak_attacks", "sentence", near_zero=f"{100 * NEAR_ZERO:.0f}", attacks="; ".join(
        f"{a} {100 * acc:.1f}%, " + phrase("weak_attacks", a if a in WEAK_BY_DESIGN else "other") for a, acc in weak.items())),
            ""]
