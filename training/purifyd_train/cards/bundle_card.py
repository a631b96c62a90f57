"""Renders the card.md of a bundle made from class folders from its results.json and templates/bundle_card.md.

The prose lives in the template; this module only turns results into the table rows and short phrases
that fill its $placeholders.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..attacks.protocol import L2_ATTACKS, PAPER_ATTACKS
from .phrases import (PAPER, history_table, loss_line, mean_interval, noise_pairs, pair_attack_parameters, pct, points,
                      schedule_line, verdict, weak_attacks)
from .template import fill, phrase

SEEN = "classifier"
TARGET_PGD_MARGIN = 0.10   # purified PGD accuracy over the best classic baseline's
TARGET_CLEAN_COST_PP = 2.0  # clean accuracy lost to purification
NOT_BASELINES = ("none", "purifier", "purifier-no-residual", "norms", "success_rate")


def baseline_names(per_attack: dict) -> list[str]:
    return [d for d in per_attack["PGD"] if d not in NOT_BASELINES]


def targets(results: dict) -> list[tuple[str, str, str, bool]]:
    """(target, measured, verdict, met) for the folder bundle's two targets."""
    pgd = results["oblivious"][SEEN]["PGD"]
    best = max(baseline_names(results["oblivious"][SEEN]), key=lambda d: pgd[d]["acc"])
    purified, best_acc = pgd["purifier"]["acc"], pgd[best]["acc"]
    clean = results["clean"][SEEN]
    cost = 100 * (clean["none"]["acc"] - clean["purifier"]["acc"])
    margin = purified - best_acc - TARGET_PGD_MARGIN
    return [(phrase("targets", "pgd_margin", margin=f"{100 * TARGET_PGD_MARGIN:.0f}"),
             phrase("targets", "pgd_margin_measured", purified=f"{100 * purified:.1f}", baseline=best,
                    best=f"{100 * best_acc:.1f}", measured=points(100 * (purified - best_acc), signed=True)),
             verdict(margin, best_acc + TARGET_PGD_MARGIN, clean["none"]["acc"]), margin >= 0),
            (phrase("targets", "clean_loss", limit=f"{TARGET_CLEAN_COST_PP:g}"),
             phrase("targets", "clean_cost_measured", clean=f"{100 * clean['none']['acc']:.1f}",
                    purified=f"{100 * clean['purifier']['acc']:.1f}", cost=points(cost)),
             verdict((TARGET_CLEAN_COST_PP - cost) / 100), cost <= TARGET_CLEAN_COST_PP)]


def _mean(per_attack: dict, defense: str) -> float:
    return statistics.mean(per_attack[a][defense]["acc"] for a in PAPER_ATTACKS)


def headline_rows(results: dict) -> list[str]:
    rows = []
    for name, per_attack in results["oblivious"].items():
        clean = results["clean"][name]
        lo, hi = mean_interval(per_attack, "purifier")
        rows.append(f"| {name} | {'seen (trained against)' if name == SEEN else 'extra: transfer'} | {pct(clean['none'])} | "
                    f"{pct(clean['purifier'])} | {100 * _mean(per_attack, 'none'):.1f} | "
                    f"**{100 * _mean(per_attack, 'purifier'):.1f}** ({100 * lo:.1f}–{100 * hi:.1f}) |")
    return rows


def attack_rows(per_attack: dict, defenses: list[str]) -> list[str]:
    rows = []
    for attack, r in per_attack.items():
        extra = f" (success {100 * r['success_rate']:.1f}%)" if attack in L2_ATTACKS else ""
        rows.append(f"| {attack}{extra} | " + " | ".join(pct(r[d]) for d in defenses) + f" | {r['norms']['median_l2']:.3f} |")
    return rows


def transfer_section(results: dict) -> str:
    """The tables of the extra classifiers, which the purifier was not trained against."""
    extras = [name for name in results["oblivious"] if name != SEEN]
    if not extras:
        return fill("bundle_card/no_transfer") + "\n"
    return "\n\n".join(fill("bundle_card/transfer", name=name, file=results["extra_classifiers"][name]["file"],
                            rows="\n".join(attack_rows(results["oblivious"][name], ["none", "purifier"])))
                       for name in extras) + "\n"


def extra_classifier_lines(results: dict) -> str:
    return "\n".join(fill("bundle_card/extra_classifier", name=name, file=r["file"], architecture=r["architecture"],
                          output=r["output"]) for name, r in results["extra_classifiers"].items())


def normalisation(record: dict) -> str:
    """What the classifier takes: pixels in [0, 1], or the normalisation it applies first."""
    if all(m == 0 for m in record["mean"]) and all(s == 1 for s in record["std"]):
        return phrase("bundle_card", "pixels")
    fmt = lambda values: "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
    return phrase("bundle_card", "normalised", mean=fmt(record["mean"]), std=fmt(record["std"]))


def render_card(results: dict, notes: str | None = None) -> str:
    """card.md for a bundle that `bundle` made, from its results.json."""
    bundle, split, spec = results["bundle"], results["split"], results["classifier"]
    records = results["training_records"]
    pairs, history, features = records["pairs"], records["history"], records["features"]
    seen_attacks = results["oblivious"][SEEN]
    defenses = [d for d in seen_attacks["PGD"] if d not in ("norms", "success_rate")]
    rows = targets(results)
    missed = [target for target, _, _, met in rows if not met]
    generator = results["generator"]
    size = f"{spec['input_size'][0]}×{spec['input_size'][1]}"
    sweep = results["sweep"]
    sweep_attacks = list(sweep)
    tuning = results["baseline_tuning"]
    command_words = results["command"].split()
    data_path = command_words[command_words.index("--data") + 1] if "--data" in command_words else "the data folder"
    eps_text = f"{results['eps']:.4g}"
    values = {
        "name": bundle["name"], "description": bundle["description"], "command": results["command"],
        "images": f"{split['train'] + split['val'] + split['test']:,}", "data": data_path,
        "classes": len(bundle["labels"]), "classifier_file": spec["file"], "classifier_sha256": bundle["classifier_sha256"],
        "purifier_origin": phrase("bundle_card", "purifier", paper=PAPER),
        "n": results["n"], "test_seed": results["sizes"].get("test_seed", "seed + 4"),
        "target_rows": "\n".join(f"| {t} | {m} | {v} |" for t, m, v, _ in rows),
        "target_note": fill("bundle_card/missed", missed="; ".join(missed),
                            ending="." if notes else " (no notes were given to the command).") + "\n" if missed else "",
        "labels": ", ".join(f"`{label}`" for label in bundle["labels"]), "input_size": size,
        "channel_word": "grey images" if spec["channels"] == 1 else "RGB images",
        "split_seed": split["seed"], "test_percent": f"{100 * split['test_fraction']:g}",
        "val_percent": f"{100 * split['val_fraction']:g}",
        "split_rows": "\n".join(f"| {name} | {c['train']} | {c['val']} | {c['test']} |" for name, c in split["per_class"].items())
                      + f"\n| all | {split['train']} | {split['val']} | {split['test']} |",
        "architecture": spec["architecture"], "channels": spec["channels"], "normalisation": normalisation(spec),
        "output": spec["output"], "probe": results["sizes"].get("probe", 256),
        "output_reason": phrase("bundle_card", "probabilities" if spec["output"] == "probabilities" else "logits"),
        "extra_classifiers": extra_classifier_lines(results),
        "headline_rows": "\n".join(headline_rows(results)),
        "defense_header": " | ".join(defenses), "defense_rule": "---|" * (len(defenses) + 2),
        "oblivious_rows": "\n".join(attack_rows(seen_attacks, defenses)),
        "weak_attacks": "\n".join(weak_attacks(seen_attacks)),
        "transfer_section": transfer_section(results),
        "adaptive_rows": "\n".join(f"| {name} | `{json.dumps(r['params'])}` | {pct(r)} (n = {r['n']}) |"
                                   for name, r in results["adaptive"].items()),
        "clean_psnr": f"{results['quality']['clean']['psnr']:.2f}", "clean_ssim": f"{results['quality']['clean']['ssim']:.4f}",
        "pgd_psnr_adv": f"{results['quality']['pgd']['psnr_adversarial']:.2f}",
        "pgd_ssim_adv": f"{results['quality']['pgd']['ssim_adversarial']:.4f}",
        "pgd_psnr_pur": f"{results['quality']['pgd']['psnr_purified']:.2f}",
        "pgd_ssim_pur": f"{results['quality']['pgd']['ssim_purified']:.4f}",
        "sweep_n": results["sizes"]["sweep_n"],
        "sweep_header": " | ".join(f"{a}, {d}" for a in sweep_attacks for d in ("none", "purifier")),
        "sweep_rule": "---|" * (1 + 2 * len(sweep_attacks)),
        "sweep_rows": "\n".join(f"| {row[0]['eps']:.4g} | " + " | ".join(f"{100 * p[d]:.1f}" for p in row for d in ("none", "purifier")) + " |"
                                for row in zip(*(sweep[a] for a in sweep_attacks))),
        "parameters": f"{generator['parameters']:,}", "generator_config": generator["config"],
        "epochs_trained": history[-1]["epoch"] if history else generator["epoch"], "pairs": f"{generator['pairs']:,}",
        "epoch": generator["epoch"], "selection": generator["selection"],
        "loss_line": loss_line(generator["loss_weights"],
                               reason="the guidance terms are those of the shipped MNIST and Fashion-MNIST bundles"),
        "schedule_line": schedule_line(generator.get("schedule")),
        "feature_epochs": features["epochs"], "feature_accuracy": f"{100 * features['val_accuracy']:.1f}",
        "pair_list": "; ".join(f"{label}: n={r['n']}, classifier accuracy {100 * r['accuracy']:.1f}%"
                               for label, r in pairs["attacks"].items()) + noise_pairs(pairs) + f"; clean pairs: {pairs['clean']}",
        "pair_parameters": pair_attack_parameters(pairs),
        "multiple": 2 ** len(generator["config"]["res_blocks"]),
        "onnx_error": f"{results['onnx_max_abs_error']:.2e}",
        "gan_val_n": history[-1]["val_n"] if history else "–", "eps_text": eps_text,
        "history_table": "\n".join(history_table(history)),
        "attack_list": "\n".join(f"- {name}: `{json.dumps(params)}`" for name, params in results["attacks"].items()),
        "baseline_list": "; ".join(f"{k} `{json.dumps(v)}`" for k, v in results["baselines"].items()),
        "tuning_n": tuning["n"], "tuning_attack": tuning["attack"],
        "tuning_rows": "\n".join(f"| {label} {k} | {100 * v['clean']:.1f} | {100 * v['pgd']:.1f} | {100 * v['score']:.1f} |"
                                 for label, table in (("bits", tuning["bitdepth_scores"]), ("TV weight", tuning["tv_scores"]))
                                 for k, v in table.items()),
        "notes": f"\n## Notes\n\n{notes.strip()}\n" if notes else "",
    }
    return fill("bundle_card", **values) + "\n"


def main(argv: list[str] | None = None) -> None:
    """python -m purifyd_train bundle-card --bundle DIR [--notes FILE]: rewrites a folder bundle's card.md from
    its results.json (after a template change, or to add notes)."""
    import argparse
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--notes", type=Path, default=None, help="Markdown the card ends with under Notes")
    args = p.parse_args(argv)
    results = json.loads((args.bundle / "results.json").read_text())
    (args.bundle / "card.md").write_text(render_card(results, args.notes.read_text() if args.notes else None))
