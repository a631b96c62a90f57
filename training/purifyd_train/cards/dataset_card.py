"""The card of a dataset bundle (models/<dataset>/card.md), rendered from templates/dataset_card.md with the
evaluation's results.json and the training records it keeps."""
from __future__ import annotations

import json
from pathlib import Path

from ..attacks.protocol import L2_ATTACKS, PAPER_ATTACKS
from ..models.networks import FAMILY_SOURCES, classifier_zoo, source_networks
from ..training.gan import VALIDATION_IMAGES, recorded_loss_weights
from ..training.records import training_records
from .phrases import (PAPER, history_table, loss_line, mean_interval, noise_pairs, pair_attack_parameters, pct, points,
                      schedule_line, verdict, weak_attacks)
from .robust_card import autoattack_section
from .template import fill, phrase


TARGET_MEAN = 0.80  # mean purified accuracy over the 7 paper attacks
TARGET_BASELINE_MARGIN = 0.10  # over the best baseline's mean
TARGET_CLEAN_LOSS_PP = 2.0  # clean accuracy lost to purification
TARGET_UNSEEN_GAP = 0.10  # an unseen classifier's purified mean below the seen one's

ATTEMPTS_FILE = "attempts.md"


def purifier_origin(weights: dict) -> str:
    """What the purifier is, for the card's first line: the paper's GAN, or its generator alone."""
    return phrase("dataset_card", "purifier" if recorded_loss_weights(weights)["gan"] else "purifier_without_gan", paper=PAPER)


def attack_pairs(label: str, record: dict, seen: str) -> str:
    """One attack's share of the training pairs and the accuracy it left its target classifier."""
    target = record.get("classifier", seen)
    accuracy = record.get("accuracy", record.get("seen_accuracy"))  # the key before feature-network attacks
    return f"{label}: n={record['n']}, {target} accuracy {100 * accuracy:.1f}%"


def made_pairs(network: str, pairs: dict) -> bool:
    """Whether training pairs were made against this network (pairs.json's per-attack records name it)."""
    return any(v.get("classifier") == network for v in pairs.get("attacks", {}).values())


def source_role(name: str, generator: dict, pairs: dict) -> str:
    """What the purifier's training took from a source network (`features`, `fc`, `res`), for the card's list."""
    uses = []
    if name == "features":
        uses.append("perceptual features")
        if generator.get("loss_weights", {}).get("feature_guidance"):
            uses.append("feature guidance")
    elif generator.get("loss_weights", {}).get("source_guidance"):
        uses.append("source guidance")
    if made_pairs(name, pairs):
        uses.append("training attacks")
    return ", ".join(uses) + ("; never evaluated" if len(uses) > 1 else " only")


def _architecture(network) -> str:
    """A zoo network's shape in a few words: hidden layers of a fully connected one, width and blocks of a ResNet."""
    if hasattr(network, "hidden"):
        return f"hidden layers {list(network.hidden)}"
    return f"width {network.width}, residual blocks per stage {list(network.blocks)}"


def unseen_role(name: str, pairs: dict) -> str:
    """An unseen classifier's role for its section heading, naming the source network of its family, if any
    made training pairs: the purifier then met that family's perturbations, though never this network's."""
    family = [source for source, (_, counterpart) in FAMILY_SOURCES.items()
              if counterpart == name and made_pairs(source, pairs)]
    return phrase("dataset_card", "unseen_family", source=family[0]) if family else phrase("dataset_card", "unseen")


def epochs_compared(history: list, ablation_history: list) -> str:
    """How many epochs each generator trained, from the runs' training records."""
    if not history or not ablation_history:
        return "epochs not recorded"
    a, b = history[-1]["epoch"], ablation_history[-1]["epoch"]
    return f"{a} epochs each" if a == b else f"{a} epochs with residual blocks, {b} without"


def trained_epochs(generator: dict, history: list) -> str:
    """How long the shipped generator's run trained."""
    return f"{history[-1]['epoch'] if history else generator['epoch']} epochs"


def selected_epoch(generator: dict) -> str:
    """Which epoch's weights ship, when validation chose one."""
    if not generator.get("selection"):
        return ""
    return phrase("dataset_card", "selected_epoch", epoch=generator["epoch"], selection=generator["selection"])


def kept_epochs(generator: dict, ablation: dict | None) -> str:
    """Which epoch each of the compared generators keeps, when validation chose them."""
    if not generator.get("selection"):
        return ""
    if not ablation:
        return phrase("dataset_card", "kept_epochs")
    return phrase("dataset_card", "kept_epochs_both", epoch=generator["epoch"], ablation=ablation["epoch"])


def pair_rounds(pairs: dict) -> str:
    """How many rounds the pairs made over their training images, when more than one."""
    if pairs.get("rounds", 1) == 1:
        return ""
    return phrase("pairs", "rounds", rounds=pairs["rounds"], images=f"{pairs['images']:,}")


def validation_images(kind: str, n: int) -> str:
    """The images a run validated on: held-out training images, or, in runs from before them, test images."""
    return phrase("dataset_card", "validation_held_out" if kind == VALIDATION_IMAGES else "validation_test", n=n)


def validation_sets(history: list[dict]) -> str:
    """Which images each run validated on; entries without `val_images` predate held-out validation."""
    runs: dict[tuple, list[str]] = {}
    for h in history:
        runs.setdefault((h.get("val_images", "test"), h.get("val_n", 500)), []).append(h.get("run", "gan"))
    if len(runs) == 1:
        return validation_images(*next(iter(runs)))
    return "; ".join(f"{validation_images(*k)} for {', '.join(dict.fromkeys(v))}" for k, v in runs.items())


def share(purified: float, clean: float) -> str:
    """A purified accuracy as a share of the classifier's clean accuracy ("–" for a classifier that gets nothing right)."""
    return f"{100 * purified / clean:.0f}%" if clean else "–"


def source_network_line(ds, metrics: dict, name: str, seen: str, guided: bool) -> str:
    """The card's account of a source network beside the evaluated classifier of its family; `guided` when the
    generator's loss held source guidance."""
    kind, counterpart = FAMILY_SOURCES[name]
    return fill("dataset_card/source_network", kind=kind, name=name,
                architecture=_architecture(source_networks(ds.channels, ds.size)[name]), seed=metrics[name]["seed"],
                guided=phrase("dataset_card", "source_guided") if guided else "",
                role="seen" if counterpart == seen else "unseen", counterpart=counterpart,
                counterpart_architecture=_architecture(classifier_zoo(ds.name, ds.channels, ds.size)[counterpart]),
                counterpart_seed=metrics[counterpart]["seed"])


def jpeg_source_caveat(ds) -> str:
    """Why the JPEG baseline is flattered on a dataset copy compressed at the baseline's own quality."""
    return fill("dataset_card/jpeg_caveat", quality=ds.source_jpeg_quality, dataset=ds.name)


def sweep_section(results: dict, sweep_n: int) -> str:
    """The figure's ε sweep as a table, with its attacks and the number of images it ran on (`sweep_n`)."""
    attacks = list(results["sweep"])
    rows = [f"| {row[0]['eps']:.4g} | " + " | ".join(f"{100 * point[d]:.1f}" for point in row for d in ("none", "purifier"))
            + " |" for row in zip(*(results["sweep"][a] for a in attacks))]
    return fill("dataset_card/sweep", attacks=" and ".join(attacks), sweep_n=sweep_n,
                header=" | ".join(f"{a}, {d}" for a in attacks for d in ("none", "purifier")),
                rule="|---" * (1 + 2 * len(attacks)) + "|", rows="\n".join(rows))


def through_purify_section(dataset: str, check: dict) -> str:
    """The card's section on `evaluate --through-purify`, from its through_purify.json."""
    return fill("dataset_card/through_purify", n=check["n"], seed=check["seed"], dataset=dataset,
                accuracy_purify=f"{100 * check['accuracy_purify']:.2f}",
                accuracy_pytorch=f"{100 * check['accuracy_pytorch']:.2f}", difference=f"{check['difference_pp']:+.2f}",
                agreement=f"{100 * check['prediction_agreement']:.2f}", tolerance=check["tolerance_pp"])


def target_rows(results: dict, interval: tuple[float, float]) -> list[tuple[str, str, str]]:
    """The targets for the seen classifier as (target, measured, verdict).

    No purifier lifts a classifier above its clean accuracy, so a target beyond it is named out of reach:
    the baseline margin when the best baseline is within 10 pp of the seen classifier's clean accuracy, an
    unseen classifier whose clean accuracy is more than 10 pp below the seen classifier's purified mean.
    """
    seen = results["seen"]
    s = results["summary"][seen]
    purified = s["mean_purified"]
    best_name, best = max(s["mean_baselines"].items(), key=lambda kv: kv[1])
    clean = {c: results["clean"][c]["none"]["acc"] for c in results["summary"]}
    lo, hi = interval
    rows = [(phrase("targets", "mean", target=f"{100 * TARGET_MEAN:.0f}"),
             phrase("targets", "mean_measured", purified=f"{100 * purified:.1f}", low=f"{100 * lo:.1f}", high=f"{100 * hi:.1f}"),
             verdict(purified - TARGET_MEAN, TARGET_MEAN, clean[seen])),
            (phrase("targets", "baseline_margin", margin=f"{100 * TARGET_BASELINE_MARGIN:.0f}"),
             phrase("targets", "baseline_margin_measured", baseline=best_name, best=f"{100 * best:.1f}",
                    measured=points(100 * (purified - best), signed=True)),
             verdict(purified - best - TARGET_BASELINE_MARGIN, best + TARGET_BASELINE_MARGIN, clean[seen])),
            (phrase("targets", "clean_loss", limit=f"{TARGET_CLEAN_LOSS_PP:g}"), points(s["clean_drop_pp"]),
             verdict((TARGET_CLEAN_LOSS_PP - s["clean_drop_pp"]) / 100))]
    for c, entry in results["summary"].items():
        if c != seen:
            gap = entry["mean_purified"] - purified
            rows.append((phrase("targets", "unseen_gap", name=c, gap=f"{100 * TARGET_UNSEEN_GAP:.0f}"),
                         points(100 * gap, signed=True),
                         verdict(gap + TARGET_UNSEEN_GAP, purified - TARGET_UNSEEN_GAP, clean[c])))
    return rows


def targets_section(results: dict, interval: tuple[float, float], bundle: Path) -> str:
    """The card's targets table and, when one is missed, where what was tried is: the bundle's attempts.md,
    its history with the command behind each figure."""
    rows = target_rows(results, interval)
    parts = [fill("dataset_card/targets", rows="\n".join(f"| {target} | {measured} | {v} |" for target, measured, v in rows))]
    unreachable = [target for target, _, v in rows if "out of reach" in v]
    if unreachable:
        unseen = any(target.startswith("unseen") for target in unreachable)
        parts.append(fill("dataset_card/out_of_reach", ending="; the last column of the headline compares classifiers "
                                                              "of different strength." if unseen else "."))
    if not all(v == "met" for _, _, v in rows):
        parts.append(fill("dataset_card/attempts" if (bundle / ATTEMPTS_FILE).exists() else "dataset_card/no_attempts"))
    return "\n\n".join(parts) + "\n"


def oblivious_section(name: str, role: str, per_attack: dict, seen: bool) -> str:
    """One classifier's table of oblivious attacks under each defense, and, for the seen one, why an attack left
    it above NEAR_ZERO."""
    defenses = [d for d in per_attack[PAPER_ATTACKS[0]] if d != "norms"]
    rows = []
    for attack, r in per_attack.items():
        extra = f" (success {100 * r['success_rate']:.1f}%)" if attack in L2_ATTACKS else ""
        rows.append(f"| {attack}{extra} | " + " | ".join(pct(r[d]) for d in defenses) + f" | {r['norms']['median_l2']:.3f} |")
    text = fill("dataset_card/oblivious", name=name, role=role, defense_header=" | ".join(defenses),
                rule="|---" * (len(defenses) + 2) + "|", rows="\n".join(rows)) + "\n"
    weak = weak_attacks(per_attack) if seen else []
    return text + (f"\n{weak[0]}\n" if weak else "")


def ablation_text(results: dict, records: dict) -> str:
    """The no-residual ablation's comparison, when the evaluation ran one."""
    s = results["summary"][results["seen"]]
    if "mean_purified_no_residual" not in s:
        return fill("dataset_card/ablation_not_run")
    with_blocks, without = s["mean_purified"], s["mean_purified_no_residual"]
    return fill("dataset_card/ablation", **{"with": f"{100 * with_blocks:.1f}"}, without=f"{100 * without:.1f}",
                epochs=epochs_compared(records["history"], records["ablation_history"]),
                kept=kept_epochs(results["generator"], results.get("ablation_generator")),
                effect="add" if with_blocks >= without else "cost", difference=points(abs(100 * (with_blocks - without))))


def model_lines(ds, results: dict, records: dict) -> str:
    """The Model section: generator, discriminator and loss, schedule, feature and source networks, pairs, export."""
    g, metrics, pairs, history = results["generator"], records["metrics"], records["pairs"], records["history"]
    attacked = pairs.get("classifier", results["seen"])  # the pairs' default target
    guided = bool(g.get("loss_weights", {}).get("source_guidance"))
    sources = [source_network_line(ds, metrics, name, results["seen"], guided) for name in FAMILY_SOURCES if name in metrics]
    parameters = pair_attack_parameters(pairs)
    return fill("dataset_card/model", parameters=f"{g['parameters']:,}", config=g["config"],
                res_blocks=sum(g["config"]["res_blocks"]), trained=trained_epochs(g, history), pairs=f"{g['pairs']:,}",
                selected=selected_epoch(g),
                residual_output=fill("dataset_card/residual_output") + "\n" if g["config"].get("residual_output") else "",
                loss_line=loss_line(g.get("loss_weights", {})), schedule_line=schedule_line(g.get("schedule")),
                source_lines="".join(line + "\n" for line in sources), attacked=attacked,
                pair_list="; ".join(attack_pairs(k, v, attacked) for k, v in pairs.get("attacks", {}).items())
                          + noise_pairs(pairs) + f"; clean pairs: {pairs.get('clean', 0)}" + pair_rounds(pairs),
                pair_parameters=parameters + "\n" if parameters else "",
                multiple=2 ** len(g["config"]["res_blocks"]),
                onnx_error=records["export"].get("max_abs_error", "not exported yet"))


def classifier_lines(results: dict, records: dict) -> str:
    g, pairs, seen, summary = results["generator"], records["pairs"], results["seen"], results["summary"]
    lines = []
    for name, m in records["metrics"].items():
        role = "seen" if name == seen else ("unseen" if name in summary else source_role(name, g, pairs))
        lines.append(f"- `{name}` ({role}): {100 * m['test_accuracy']:.2f}% ({m['epochs']} epochs, "
                     f"{m['train_images']} training images)")
    return "\n".join(lines)


def tuning_section(results: dict) -> str:
    tuning = results.get("baseline_tuning")
    if not tuning:
        return ""
    rows = [f"| {label} {k} | {100 * v['clean']:.1f} | {100 * v['pgd']:.1f} | {100 * v['score']:.1f} |"
            for label, table in (("bits", tuning["bitdepth_scores"]), ("TV weight", tuning["tv_scores"]))
            for k, v in table.items()]
    return "\n" + fill("dataset_card/tuning", n=tuning["n"], attack=tuning["attack"], rows="\n".join(rows)) + "\n"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def render_card(ds, results: dict, out: Path, sweep_n: int) -> str:
    """card.md from results.json (and, for results written before it kept them, the run folder's records);
    `out` is the bundle folder, where attempts.md and through_purify.json are read; `sweep_n` the images of the
    ε sweep."""
    records = results.get("training_records") or training_records(ds.name)
    seen, summary = results["seen"], results["summary"]
    intervals = {name: mean_interval(results["oblivious"][name], "purifier") for name in summary}
    headline = []
    for name, s in summary.items():
        clean = results["clean"][name]
        lo, hi = intervals[name]
        headline.append(f"| {name} | {'seen' if name == seen else 'unseen'} | {pct(clean['none'])} | {pct(clean['purifier'])} | "
                        f"{100 * s['mean_undefended']:.1f} | **{100 * s['mean_purified']:.1f}** ({100 * lo:.1f}–{100 * hi:.1f}) | "
                        f"{share(s['mean_purified'], clean['none']['acc'])} |")
    oblivious = [oblivious_section(name, "seen" if name == seen else unseen_role(name, records["pairs"]), per_attack,
                                   name == seen) for name, per_attack in results["oblivious"].items()]
    check = _read(out / "through_purify.json")
    history = records["history"]
    quality = results["quality"]
    jpeg_baseline = ds.source_jpeg_quality and any(v.get("quality") == ds.source_jpeg_quality
                                                   for v in results["baselines"].values())
    return fill("dataset_card", name=ds.name, dataset=ds.note or ds.name,
                purifier_origin=purifier_origin(results["generator"].get("loss_weights", {})),
                command=results["command"], n=results["n"], seed=results["seed"], headline_rows="\n".join(headline),
                targets_section=targets_section(results, intervals[seen], out),
                adaptive_rows="\n".join(f"| {name} | {json.dumps(r['params'])} | {pct(r)} (n = {r['n']}) |"
                                         for name, r in results["adaptive"].items()),
                autoattack_section=autoattack_section(out),
                oblivious_sections="\n".join(oblivious),
                clean_psnr=f"{quality['clean']['psnr']:.2f}", clean_ssim=f"{quality['clean']['ssim']:.4f}",
                pgd_psnr_adv=f"{quality['pgd']['psnr_adversarial']:.2f}",
                pgd_ssim_adv=f"{quality['pgd']['ssim_adversarial']:.4f}",
                pgd_psnr_pur=f"{quality['pgd']['psnr_purified']:.2f}", pgd_ssim_pur=f"{quality['pgd']['ssim_purified']:.4f}",
                sweep_section=sweep_section(results, sweep_n),
                through_purify_section=through_purify_section(ds.name, check) + "\n\n" if check else "",
                ablation=ablation_text(results, records), model_lines=model_lines(ds, results, records),
                classifier_lines=classifier_lines(results, records),
                history_section=fill("dataset_card/history", validation_sets=validation_sets(history),
                                     table="\n".join(history_table(history))) + "\n" if history else "",
                eps=f"{results['eps']:.4g}",
                attack_list="\n".join(f"- {name}: `{json.dumps(params)}`" for name, params in results["attacks"].items()),
                baseline_list="; ".join(f"{k} `{json.dumps(v)}`" for k, v in results["baselines"].items()),
                jpeg_caveat="\n" + jpeg_source_caveat(ds) + "\n" if jpeg_baseline else "",
                tuning_section=tuning_section(results)) + "\n"


def write_card(ds, results: dict, out: Path, sweep_n: int) -> None:
    """Writes out/card.md (see render_card)."""
    (out / "card.md").write_text(render_card(ds, results, out, sweep_n))
